"""Explorations of session 25.

    PYTHONPATH=src TORCHINDUCTOR_CACHE_DIR=$(mktemp -d) \
        python scripts/explore_session25.py inductor1b --out DIR

- ``inductor1b``: Llama-3.2-1B at one token, where ``torch.compile``'s max-autotune beat ours
  in two of three benchmark processes of this session's ``max1b`` stage (17.2-17.3 us against
  our 17.8-17.9; 18.6 against 17.7 in the first). Max-autotune's kernel there is a
  matrix-vector reduction (session 10: one or two weight rows of 2048 columns a program, 16
  warps), the structure of our matrix-vector kernel (``_linear_gemv_kernel``). For bf16 and
  fp16 this stage compiles the benchmark's ``compile-max`` function once with its source
  captured (``torch._inductor.utils.run_and_get_code``; saved as
  ``inductor1b_<dtype>_code.py.txt``, its Triton kernels' launch parameters printed), then
  times on ``COPIES`` copies of the benchmark's inputs, in one set of rotated rounds: ours
  (the benchmark's call), the compiled function, and the matrix-vector kernel with the
  block shapes in ``GEMV_1B``. A candidate replaces the routing of 1B one-token calls only
  if its slowest round beats ours's fastest on every copy. -> ``inductor1b.json``.

- ``gemv1``: after ``inductor1b`` found the matrix-vector kernel with 2048-column rows over
  4 warps 2-3% ahead of ours on 1B: every model of the benchmark at one token, in each dtype
  of ``GEMV1_DTYPES`` (environment, default ``bfloat16,float16``), on ``COPIES`` copies in
  one set of rotated rounds: ours (the benchmark's call) and the matrix-vector kernel with
  each block shape of ``GEMV_ONE`` that fits K (no step wider than K), K compiled in.
  -> ``gemv1.json``; ``gemv1_table.json``: per shape and dtype, the fastest candidate whose
  slowest round beat ours's fastest on every copy.

Run with a fresh ``TORCHINDUCTOR_CACHE_DIR`` so that the compile autotunes here instead of
reusing an earlier process's choice.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import explore_session11 as S11
import explore_session12 as S12
import explore_session15 as S15
import explore_session16 as S16
import explore_session21 as S21
import explore_session23 as S23

from flash_swiglu import reference
from flash_swiglu.bench.cases.linear import LinearCase
from flash_swiglu.bench.harness import SEED, fresh_inputs, preparer, timed_call

say = S16.say
COPIES = 3
MODEL = "llama-3.2-1b"
GEMV_1B = [  # (BLOCK_N, BLOCK_K, warps, W_CACHE); every one with K compiled in (STATIC_K)
    (1, 2048, 8, ""),  # the bf16 `m1` entry
    (1, 2048, 16, ""),
    (2, 2048, 16, ""),
    (2, 2048, 8, ""),
    (4, 2048, 16, ""),
    (1, 2048, 4, ""),
    (1, 2048, 8, ".cg"),
]

GEMV_ONE = [  # (BLOCK_N, BLOCK_K, warps, UNROLL, W_CACHE), K compiled in
    (1, 2048, 4, 1, ""),
    (1, 2048, 2, 1, ""),
    (1, 2048, 1, 1, ""),
    (1, 1024, 2, 2, ""),
    (1, 1024, 4, 1, ""),
    (2, 2048, 4, 1, ""),
    (1, 2048, 4, 1, ".cg"),
    (1, 4096, 4, 1, ""),
    (1, 4096, 8, 1, ""),  # the fp16 `m1:float16` entry
]


def _gemv_cfg(bn, bk, warps, cache, unroll=1) -> dict:
    cfg = dict(BLOCK_N=bn, BLOCK_K=bk, num_warps=warps, num_stages=1, UNROLL=unroll, STATIC_K=True)
    if cache:
        cfg["W_CACHE"] = cache
    return cfg


def _gemv_label(bn, bk, warps, unroll, cache) -> str:
    return (
        f"gemv bn{bn} bk{bk} w{warps}"
        + (f" u{unroll}" if unroll > 1 else "")
        + (f" {cache}" if cache else "")
    )


def _ahead_every_copy(ms: dict, labels, copies: int = COPIES) -> list[str]:
    """Those of ``labels`` whose slowest round beat ours's (``triton``) fastest on every one
    of ``copies`` copies (``ms``: ``{"<label> #<copy>": [ms of each round]}``)."""
    return [
        lb
        for lb in labels
        if all(max(ms[f"{lb} #{i}"]) < min(ms[f"triton #{i}"]) for i in range(copies))
    ]


def time_on_copies(case, inputs, dout, ref, cands: dict, path: str, copies: int = COPIES):
    """Ours (the benchmark's call, ``triton``) and each of ``cands`` (configurations of the
    launcher's ``path``) on ``copies`` copies of ``inputs``, one set of rotated rounds, every
    candidate's result checked against ``ref`` first: ``(ms, mean, ahead)``, the rounds of
    each call, each label's mean over the copies of its median round, and the candidates
    ahead on every copy (``_ahead_every_copy``)."""
    calls = {}
    for i in range(copies):
        args = fresh_inputs(inputs, "fwd")
        fn, prepare = case.function("triton"), preparer(case, "triton")
        calls[f"triton #{i}"] = timed_call(fn, args, dout, "fwd", prepare)
        for label, cfg in cands.items():
            f = S11._triton_maker(path, cfg)(*args, None)
            assert S11._ok(f().reshape(ref.shape), ref), f"{label}: wrong result"
            calls[f"{label} #{i}"] = f
    ms, med = S15._rotated_rounds(calls, 100.0)
    ahead = _ahead_every_copy(ms, cands, copies)
    mean = {lb: sum(med[f"{lb} #{i}"] for i in range(copies)) / copies
            for lb in ["triton", *cands]}  # fmt: skip
    return ms, mean, ahead


def _kernel_params(code: str) -> list[str]:
    """The ``@triton_heuristics`` decorators, the lines naming ``XBLOCK`` and the kernel
    launches (``.run(``, ``grid=``) of Inductor's generated module, shortened: what kernel
    it launches and with which block sizes."""
    found = []
    for line in code.splitlines():
        s = line.strip()
        if s.startswith("@triton_heuristics") or ("XBLOCK" in s and "=" in s and len(s) < 160):
            found.append(s[:160])
        elif re.match(r"^\s*(triton_\w+)\.run\(", line) or ("grid=" in s and len(s) < 200):
            found.append(s[:200])
    return found


def inductor1b(out: Path) -> list[dict]:
    S21.need_read_eviction("inductor1b")
    S23._board()
    device = torch.device("cuda")
    rows = []
    for dtype in (torch.bfloat16, torch.float16):
        k, n = S15.MODELS[MODEL]
        case = LinearCase(MODEL, k, n, 1, dtype)
        inputs, dout = case.make_inputs(device, torch.Generator(device=device).manual_seed(SEED))
        ref = reference.swiglu_linear_reference(*(t.double() for t in inputs))
        dt = str(dtype).removeprefix("torch.")
        compiled = case.function("compile-max")
        from torch._inductor.utils import run_and_get_code

        got, codes = run_and_get_code(compiled, *inputs)
        assert S11._ok(got.reshape(ref.shape), ref), "compile-max: wrong result"
        (out / f"inductor1b_{dt}_code.py.txt").write_text("\n\n# ----\n\n".join(codes))
        params = [p for c in codes for p in _kernel_params(c)]
        for p in params:
            say(f"inductor1b {dt} code: {p}")
        gemv = {_gemv_label(bn, bk, w, 1, c): _gemv_cfg(bn, bk, w, c) for bn, bk, w, c in GEMV_1B}
        calls, addresses = {}, []
        for i in range(COPIES):
            args = fresh_inputs(inputs, "fwd")
            for backend in ("triton", "compile-max"):
                fn = compiled if backend == "compile-max" else case.function(backend)
                prepare = preparer(case, backend)
                calls[f"{backend} #{i}"] = timed_call(fn, args, dout, "fwd", prepare)
            for label, cfg in gemv.items():
                f = S11._triton_maker("gemv", cfg)(*args, None)
                assert S11._ok(f().reshape(ref.shape), ref), f"{label}: wrong result"
                calls[f"{label} #{i}"] = f
            addresses.append([f"{t.data_ptr():#x}" for t in args])
        ms, med = S15._rotated_rounds(calls, 100.0)
        labels = ["triton", "compile-max", *gemv]
        ahead = _ahead_every_copy(ms, labels[1:])
        rows.append(dict(model=MODEL, m=1, dtype=dt, copies=COPIES, gemv=gemv, params=params,
                         addresses=addresses, ms=ms, ahead_every_copy=ahead))  # fmt: skip
        (out / "inductor1b.json").write_text(json.dumps(rows, indent=1))
        for lb in labels:
            us = [med[f"{lb} #{i}"] * 1e3 for i in range(COPIES) if f"{lb} #{i}" in med]
            say(f"inductor1b {dt} {lb:24s} " + " / ".join(f"{t:.2f}" for t in us) + " us")
        say(f"inductor1b {dt}: ahead of ours on every copy: {', '.join(ahead) or 'none'}")
        del inputs, dout, calls, ref, compiled
    return rows


def gemv1(out: Path) -> list[dict]:
    S21.need_read_eviction("gemv1")
    S23._board()
    device = torch.device("cuda")
    dtypes = [
        getattr(torch, d) for d in os.environ.get("GEMV1_DTYPES", "bfloat16,float16").split(",")
    ]
    rows, table = [], {}
    for dtype in dtypes:
        dt = str(dtype).removeprefix("torch.")
        for model in ("llama-3.2-1b", "llama-3-8b", "qwen2.5-7b", "llama-3-70b"):
            k, n = S15.MODELS[model]
            case = LinearCase(model, k, n, 1, dtype)
            gen = torch.Generator(device=device).manual_seed(SEED)
            inputs, dout = case.make_inputs(device, gen)
            ref = reference.swiglu_linear_reference(*(t.double() for t in inputs))
            cands = {_gemv_label(bn, bk, w, u, c): _gemv_cfg(bn, bk, w, c, u)
                     for bn, bk, w, u, c in GEMV_ONE if bk * u <= k}  # fmt: skip
            ms, mean, ahead = time_on_copies(case, inputs, dout, ref, cands, "gemv")
            best = min(ahead, key=mean.get) if ahead else None
            rows.append(dict(model=model, m=1, n=n, k=k, dtype=dt, copies=COPIES, configs=cands,
                             ms=ms, ahead_every_copy=ahead, best=best))  # fmt: skip
            if best is not None:
                table[f"m1_n{n}_k{k}:{dt}"] = dict(
                    cands[best], ours_us=round(mean["triton"] * 1e3, 2),
                    best_us=round(mean[best] * 1e3, 2), label=best)  # fmt: skip
            (out / "gemv1.json").write_text(json.dumps(rows, indent=1))
            (out / "gemv1_table.json").write_text(json.dumps(table, indent=1))
            order = sorted(mean, key=mean.get)[:4]
            say(f"gemv1 {dt} {model:12s} ours {mean['triton'] * 1e3:.2f} us; fastest "
                + ", ".join(f"{lb} {mean[lb] * 1e3:.2f}" for lb in order)
                + f"; ahead on every copy: {len(ahead)}, best {best}")  # fmt: skip
            del inputs, dout, ref
    return rows


def main() -> None:
    S12.run_stages({"inductor1b": inductor1b, "gemv1": gemv1}, ["inductor1b"])


if __name__ == "__main__":
    main()

"""Session-49 exploration on the H200: the decode kernels as programmatic dependent launches.

    PYTHONPATH=src python scripts/explore_session49.py pdl --out DIR

Why: issue 3 asks for the weights streamed at >= 90% of the copy bandwidth at 1-32 tokens.
Llama-3.2-1B stays at 85-90% (session 48: 90.4 / 87.4 / 85.6% at 1 / 8 / 32 tokens, about
18 us a call), and every tile, split and schedule tried since session 9 left that gap. A
decode call of 67 MB is short enough that the launch and the programs' start are a visible
part of it: in the benchmark (and in a model) the kernel waits for the kernel before it to
finish, then for its own programs to be launched and set up before the first byte is read.

Since this session the decode kernels (``decode``, ``decode_tma``, ``gemv``) launch as
programmatic dependent launches on sm_90 (``ops.linear.use_pdl``; ``FLASH_SWIGLU_PDL=0``
turns it off): a launch may begin while the previous kernel drains, and each program waits
for the previous kernel (``griddepcontrol.wait``) before its first access to memory. So the
data dependencies hold as before, and only the launch overlaps.

- ``pdl``: the four models at 1 / 8 / 32 tokens, bf16 and fp16. Per case the outputs of ours
  with PDL on and off (bit-identical expected) and against float64 (the 2% rule of
  ``explore_session11._ok``), then ours with PDL on and off, the cuBLAS product and Liger's
  ``gemm_swiglu`` (where importable) through the benchmark's case functions, each settled
  100 ms, ``ROUNDS`` rotated rounds of ``measure_graph`` (CUDA-graph replays after an L2
  eviction, the benchmark's timing), and the copy bandwidth of the benchmark
  (``roofline.copy_bandwidth``) measured at the start. -> ``pdl.json`` and one line a case.
- ``nowait``: the negative control of ``test_linear.py``'s
  ``test_gpu_decode_waits_for_the_kernel_before_it`` (the wait compiled out; the function's
  doc). Run it in a process of its own: it replaces a kernel helper.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import triton
import triton.language as tl

sys.path.insert(0, str(Path(__file__).resolve().parent))

import explore_session11 as S11
import explore_session12 as S12

import flash_swiglu
from flash_swiglu import reference
from flash_swiglu.bench.backends import unavailable
from flash_swiglu.bench.cases.linear import MODELS, LinearCase
from flash_swiglu.bench.harness import preparer, timed_call
from flash_swiglu.bench.roofline import copy_bandwidth
from flash_swiglu.bench.timing import interleaved_rounds, measure_graph
from flash_swiglu.ops import linear as L

say = S11.say
ROUNDS = 5
SETTLE_MS = 100.0
CASE_MODELS = ("llama-3.2-1b", "llama-3-8b", "qwen2.5-7b", "llama-3-70b")
TOKENS = (1, 8, 32)
DTYPES = (torch.bfloat16, torch.float16)
TRIALS = 20  # nowait: calls a case


def _without_pdl(fn):
    """``fn`` called with ``FLASH_SWIGLU_PDL=0`` (a plan of its own: the variable is in the
    plan key), the variable restored after."""

    def call():
        old = os.environ.get(L.PDL_ENV)
        os.environ[L.PDL_ENV] = "0"
        try:
            return fn()
        finally:
            if old is None:
                os.environ.pop(L.PDL_ENV)
            else:
                os.environ[L.PDL_ENV] = old

    return call


def _plan_pdl(x, wg, wu) -> bool | None:
    """Whether the plan the launcher kept for this call launches with ``launch_pdl``."""
    plan = L.planned(x, wg, wu, None, None, "silu", 1.702, 7.0)
    bound = getattr(plan, "bound", None) if plan is not None else None
    kwargs = getattr(bound, "kwargs", None)
    if kwargs is None:
        kwargs = getattr(getattr(bound, "__self__", None), "kwargs", None)
    return None if kwargs is None else bool(kwargs.get("launch_pdl"))


def pdl(out: Path) -> list[dict]:
    device = torch.device("cuda")
    bw = copy_bandwidth(device)
    say(f"pdl: copy bandwidth {bw:.0f} GB/s")
    rows = []
    for dtype in DTYPES:
        for model in CASE_MODELS:
            k, n = MODELS[model]
            for m in TOKENS:
                case = LinearCase(model, k, n, m, dtype)
                gen = torch.Generator(device=device).manual_seed(0)
                inputs, dout = case.make_inputs(device, gen)
                calls = {}
                for backend in ("triton", "cublas", "liger"):
                    if unavailable(backend, device) is None:
                        fn = case.function(backend)
                        calls[backend] = timed_call(fn, inputs, dout, "fwd",
                                                    preparer(case, backend))  # fmt: skip
                calls["triton nopdl"] = _without_pdl(calls["triton"])
                x, wg, wu = (t.reshape(-1, t.shape[-1]) for t in inputs[:3])
                ref = reference.swiglu_linear_reference(x.double(), wg.double(), wu.double())
                on = calls["triton"]().reshape(ref.shape)
                off = calls["triton nopdl"]().reshape(ref.shape)
                torch.cuda.synchronize()
                same = bool(torch.equal(on, off))
                ok = S11._ok(on, ref) and S11._ok(off, ref)
                engaged = _plan_pdl(*inputs[:3])
                rounds = interleaved_rounds(
                    list(calls), lambda lb, c=calls: measure_graph(c[lb], SETTLE_MS), ROUNDS
                )
                ms = {lb: [t.median_ms for t in ts if not isinstance(t, Exception)]
                      for lb, ts in rounds.items()}  # fmt: skip
                med = {lb: sorted(t)[len(t) // 2] for lb, t in ms.items() if t}
                nbytes = (2 * n * k + m * k + m * n) * dtype.itemsize
                frac = {lb: nbytes / (t * 1e-3) / 1e9 / bw for lb, t in med.items()}
                rows.append(dict(model=model, m=m, n=n, k=k, dtype=str(dtype), ms=ms,
                                 copy_gbps=bw, bytes=nbytes, bit_identical=same, ok=ok,
                                 pdl_engaged=engaged))  # fmt: skip
                (out / "pdl.json").write_text(json.dumps(rows, indent=1))
                peers = {lb: t for lb, t in med.items() if not lb.startswith("triton")}
                best = min(peers, key=peers.get) if peers else None
                tag = "bf16" if dtype == torch.bfloat16 else "fp16"
                say(f"pdl {tag} {model:12s} M={m:2d} on {med['triton'] * 1e3:6.2f} us "
                    f"({frac['triton']:.1%}) off {med['triton nopdl'] * 1e3:6.2f} "
                    f"({frac['triton nopdl']:.1%}) "
                    f"on/off {med['triton nopdl'] / med['triton']:.3f}x"
                    + (f", {best} {peers[best] * 1e3:6.2f} ({frac[best]:.1%}) "
                       f"vs on {peers[best] / med['triton']:.3f}x" if best else "")
                    + f"; same={same} ok={ok} pdl={engaged}")  # fmt: skip
                del inputs, dout, calls, x, wg, wu, ref, on, off
    return rows


def nowait(out: Path) -> list[dict]:
    """Whether ``test_linear.py``'s ``test_gpu_decode_waits_for_the_kernel_before_it`` can
    fail: its scenario (a kernel that lets the next one start at once rewrites x and both
    weights, then the call) with the decode kernels' wait compiled out (``_pdl_wait``
    replaced by a no-op before anything compiles; the launches stay programmatic dependent
    ones). ``TRIALS`` calls a case, each compared bit for bit with the same call made after a
    synchronization. -> ``nowait.json``"""
    from flash_swiglu.kernels import linear as KL

    @triton.jit
    def _no_wait(PDL: tl.constexpr):
        pass

    @triton.jit
    def _copy_early(src, dst, n, BLOCK: tl.constexpr):  # the test's _copy_triggering_early
        tl.extra.cuda.gdc_launch_dependents()
        for start in range(tl.program_id(0) * BLOCK, n, tl.num_programs(0) * BLOCK):
            offs = start + tl.arange(0, BLOCK).to(tl.int64)
            tl.store(dst + offs, tl.load(src + offs, mask=offs < n), mask=offs < n)

    KL._pdl_wait = _no_wait
    rows = []
    for m in (1, 8, 32):
        k, n = MODELS["llama-3.2-1b"]
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        wg, wu = (torch.randn(n, k, device="cuda", dtype=torch.bfloat16) / k**0.5 for _ in "gu")
        bad = 0
        for _ in range(TRIALS):
            new = [torch.randn_like(t) for t in (x, wg, wu)]
            for t in (x, wg, wu):
                t.zero_()
            for dst, src in zip((x, wg, wu), new, strict=True):
                nel = dst.numel()
                _copy_early[(4,)](src, dst, nel, BLOCK=1024)
            got = flash_swiglu.swiglu_linear(x, wg, wu)
            torch.cuda.synchronize()
            bad += not torch.equal(got, flash_swiglu.swiglu_linear(x, wg, wu))
        rows.append(dict(m=m, trials=TRIALS, mismatches=bad))
        say(f"nowait 1B M={m:2d}: {bad} of {TRIALS} calls differ from the synchronized call")
    (out / "nowait.json").write_text(json.dumps(rows, indent=1))
    return rows


def main() -> None:
    S12.run_stages({"pdl": pdl, "nowait": nowait}, ["pdl"])


if __name__ == "__main__":
    main()

"""Explorations written in session 16, which spent its device time on the settled runs, for
the next session's H200 time: the questions its runs left.

    PYTHONPATH=src python scripts/explore_session16.py \
        glu-mid decode8b mid70b host small recompute --out DIR

- ``small``: run ``h200-s16-mlp-8b-small`` had the Llama-3-8B MLP step 1.5% (1024 tokens) and
  1.9% (2048) behind the fastest peer, with our forward that saves the pre-activation 1.119
  ms against Liger's 1.089 at 2048 (and our forward without saving, recompute's, at 1.062).
  In session 16's table, below 8192 rows that forward was the Triton kernel (``MIN_M``
  8192), below 2048 the backward too (``mlp_backward_ws`` ``MIN_M`` 2048). At 1024, 2048 and
  4096 tokens: eager, ``torch.compile``, ``LigerSwiGLUMLP`` and ours, and ours with those
  entries' ``MIN_M`` moved (the Gluon forward from 1024 rows; the Triton backward at every
  count; both) and with the Gluon kernels off, each a step of the benchmark's own
  (``bench.cases.mlp.Step``), its gradients checked against the float64 step, then timed as
  the benchmark times (``measure_steps``: settled, three rotated rounds), fwd+bwd and fwd.
  -> ``small.json``.
- ``recompute``: ``recompute=True`` at 4096 tokens peaked at 484 MiB against half of eager's,
  408 (issue 4's target). Its backward walks the columns in slices of ``chunk_width(M)``
  (4096 columns at 4096 rows: three [4096, 4096] buffers, 96 MiB). At 4096, 8192 and 16384
  tokens: the peak and the step time with ``ops.train.CHUNK_N`` = the default, 2048, 1024,
  512 and 256, eager's peak beside them. -> ``recompute.json``.
- ``host``: the host time of one launch, the question behind the example's 0.77x at its
  default size (README, "At 16 x 512 tokens the step is bound by the host"). At the
  example's MLP (hidden 1024, intermediate 2816) and 128 tokens (GPU time far below the
  host's): the Gluon forward through ``ws_mlp.glu_forward_ws``, its bare JIT launch with
  prebuilt descriptors, and the same compiled kernel launched directly
  (``CompiledKernel[grid](*bound_args)``, Triton's binder and cache lookup skipped), the
  descriptors prebuilt or built each call; the same for the elementwise forward kernel
  (pointer arguments). Each direct launch's output compared bit for bit with the JIT's.
  -> ``host.json``. A direct path in the library would need its own cache keyed as finely
  as Triton's specialization (dtypes, 16-byte alignment, integer divisibility); this stage
  only measures what it could save.
- ``glu-mid``: the unfused route (two cuBLAS products and our elementwise kernel) ran level
  with eager on Qwen at 200 and 256 tokens in run ``h200-s16-linear-bf16-mid-b`` (111.5
  against 111.2 us at 200), 2.6% behind Liger's two linears + ``LigerSiLUMulFunction``
  (108.7), the same structure. The elementwise forward alone at [M, N] for M = 65, 160, 300,
  384 and N = 14336, 18944, 28672 (the route's shapes), bf16: ours as committed and with
  other tiles (``ops.elementwise.TILE_ELEMS`` / ``MAX_BLOCK_N`` 2048 and 4096, 4 and 8
  warps), Liger's kernel (one row a program, the whole row a block) and eager's two
  kernels; CUDA-graph replays, each after 100 ms of its own, three rotated rounds; every
  variant's output compared bit for bit with ours. -> ``glu_mid.json``.
- ``decode8b``: Llama-3-8B at 8 and 32 tokens, where Liger's fused kernel was 0.5% and 2.5%
  ahead in run ``h200-s16-linear-bf16-decode`` (66.8 against 65.1 us at 32 tokens, every
  round). The committed entries (128 weight rows a program, pointer loads) give 112
  programs for 132 SMs, one wave with 20 SMs idle, as Liger's 64 x 128 tiles do. Candidates:
  split-K 2 of the same tile (224 programs), 64- and 32-row tiles, other K steps and stage
  counts, pointer and TMA loads; ``explore_session15.decode``'s harness (ours, Liger's kernel,
  the cuBLAS product and the candidates, each after 100 ms of its own replays, three rotated
  rounds, every candidate checked against float64). -> ``decode8b.json``.
- ``mid70b``: Llama-3-70B at 65 and 96 tokens ran 0.994 / 0.978x eager in run
  ``h200-s16-linear-bf16-mid-b``, on the decode kernel's 128-token TMA tile with 64 weight
  rows a program (the ``m128`` entry): about 85% of copy bandwidth, against 97% for the
  32-token tile; each of its 448 programs reads all of x (2 MiB at 128 tokens) through L2.
  At 65, 96 and 128 tokens, through ``explore_session15.decode``'s harness (the launcher,
  Liger's kernel and the cuBLAS product from the benchmark's case functions, each call after
  100 ms of its own CUDA-graph replays, three rotated rounds, every candidate checked
  against float64): eager, the unfused route (two ``F.linear`` and our elementwise kernel)
  and the decode kernel's TMA variant with 64 or 128 weight rows, 64 or 128 columns a step,
  3-5 stages, 4 or 8 warps. -> ``mid70b.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

import explore_session11 as S11
import explore_session12 as S12
import explore_session15 as S15

from flash_swiglu.bench.backends import Skip, unavailable
from flash_swiglu.bench.cases import mlp as B
from flash_swiglu.bench.timing import host_ms
from flash_swiglu.ops import train as T

say = S11.say
MODEL, HIDDEN, INTERMEDIATE = "llama-3-8b", 4096, 14336
PEERS = ("torch", "compile", "liger")
DEVICE, DTYPE = torch.device("cuda"), torch.bfloat16  # module constants: a CPU dry run
SMALL_TOKENS = (1024, 2048, 4096)
RECOMPUTE_TOKENS = (4096, 8192, 16384)


@contextlib.contextmanager
def _table(entries: dict | None = None, gluon: bool = True, chunk_n: int | None = None):
    """The training table with ``entries`` replaced (``{kind: {key: value}}`` merged into the
    committed entry), the Gluon kernels on or off, ``ops.train.CHUNK_N`` set; restored after."""
    real, env, chunk = T.load_table, os.environ.get(T.GLUON_ENV), T.CHUNK_N

    def patched(name: str) -> dict:
        table = dict(real(name))
        for kind, update in (entries or {}).items():
            table[kind] = {**table.get(kind, {}), **update}
        return table

    T.load_table, T.CHUNK_N = patched, chunk_n
    os.environ[T.GLUON_ENV] = "1" if gluon else "0"
    try:
        yield
    finally:
        T.load_table, T.CHUNK_N = real, chunk
        if env is None:
            os.environ.pop(T.GLUON_ENV, None)
        else:
            os.environ[T.GLUON_ENV] = env


# label -> (backend, table entries, Gluon on, CHUNK_N)
SMALL_VARIANTS = {
    "ours": ("triton", None, True, None),
    "ours fwd-ws": ("triton", {"forward_saving_ws": {"MIN_M": 1024}}, True, None),
    "ours bwd-triton": ("triton", {"mlp_backward_ws": {"MIN_M": 1 << 30}}, True, None),
    "ours fwd-ws bwd-triton": (
        "triton",
        {"forward_saving_ws": {"MIN_M": 1024}, "mlp_backward_ws": {"MIN_M": 1 << 30}},
        True,
        None,
    ),
    "ours gluon-off": ("triton", None, False, None),
}
RECOMPUTE_WIDTHS = (None, 2048, 1024, 512, 256)


class _Configured:
    """A benchmark ``Step`` whose calls all run under one variant's settings (``_table``),
    so the benchmark's own check and timing (``bench.cases.mlp._check``, ``_time``) take it
    as they take a backend's step."""

    def __init__(self, step: B.Step, settings: tuple) -> None:
        self.step, self.settings = step, settings

    def _under(self, fn):
        def call():
            with _table(*self.settings):
                return fn()

        return call

    def outputs(self) -> list[torch.Tensor]:
        return self._under(self.step.outputs)()

    def peak_mib(self, pass_: str) -> float | None:
        return self._under(lambda: self.step.peak_mib(pass_))()

    def pass_call(self, pass_: str):
        setup, call = self.step.pass_call(pass_)
        return self._under(setup), self._under(call)


def _measured(
    m: int,
    variants: dict,
    passes: tuple[str, ...],
    case: B.MLPCase | None = None,
    configured: type[_Configured] = _Configured,
) -> dict[str, dict]:
    """``{pass: {label: result}}`` for the 8B MLP at ``m`` tokens (or ``case``): each variant
    (those available) built, checked against the float64 step and timed (peak memory, rotated
    rounds) by the benchmark's own functions; ``variants`` must hold eager as ``torch``.
    ``configured``: the wrapper that applies a variant's settings to its step's calls."""
    case = case or B.MLPCase(MODEL, HIDDEN, INTERMEDIATE, m, DTYPE)
    inputs, dout = case.make_inputs(DEVICE, torch.Generator(device=DEVICE).manual_seed(0))
    steps = {}
    for label, (backend, *settings) in variants.items():
        if unavailable(backend, DEVICE) is not None:
            continue
        try:
            module = case.module(backend, DEVICE)
        except Skip as e:
            say(f"  {label}: skipped ({e})")
            continue
        steps[label] = configured(B.Step(backend, module, inputs, dout), tuple(settings))
    checks = B._check(case, steps, inputs, dout, passes)
    results = {}
    for pass_ in passes:
        results[pass_] = {lb: dict(checks[lb][pass_]) for lb in steps}
        B._time(steps, pass_, results[pass_], DEVICE)
    del steps, inputs, dout
    torch.cuda.empty_cache()
    return results


def _ok(result: dict) -> str:
    return "" if result.get("passed") else f" WRONG {result.get('error', '')}"


def small(out: Path) -> list[dict]:
    variants = {p: (p, None, True, None) for p in PEERS} | SMALL_VARIANTS
    rows = []
    for m in SMALL_TOKENS:
        for pass_, results in _measured(m, variants, ("fwd+bwd", "fwd")).items():
            rows.append(dict(m=m, pass_=pass_, results=results))
            (out / "small.json").write_text(json.dumps(rows, indent=1))
            eager = results["torch"].get("median_ms") or float("nan")
            say(f"small M={m:5d} {pass_:7s} " + ", ".join(
                f"{lb} {r.get('median_ms') or float('nan'):.3f} ms "
                f"({eager / (r.get('median_ms') or float('nan')):.3f}x){_ok(r)}"
                for lb, r in results.items()))  # fmt: skip
    return rows


def recompute(out: Path) -> list[dict]:
    variants = {"torch": ("torch", None, True, None), "ours": ("triton", None, True, None)}
    for w in RECOMPUTE_WIDTHS:
        variants[f"recompute chunk {w or 'default'}"] = ("triton-recompute", None, True, w)
    rows = []
    for m in RECOMPUTE_TOKENS:
        results = _measured(m, variants, ("fwd+bwd",))["fwd+bwd"]
        rows.append(dict(m=m, chunk_default=T.chunk_width(m), results=results))
        (out / "recompute.json").write_text(json.dumps(rows, indent=1))
        mib = {lb: "-" if r.get("peak_mib") is None else f"{r['peak_mib']:.0f}"
               for lb, r in results.items()}  # fmt: skip
        eager_peak = results["torch"].get("peak_mib")
        half = "-" if eager_peak is None else f"{eager_peak / 2:.0f}"
        say(f"recompute M={m:5d} (default chunk {T.chunk_width(m)}), half eager's peak {half} "
            "MiB: " + ", ".join(
                f"{lb} {r.get('median_ms') or float('nan'):.2f} ms {mib[lb]} MiB{_ok(r)}"
                for lb, r in results.items()))  # fmt: skip
    return rows


def _host_us(fn, reps: int = 300) -> float:
    """Mean host time of ``fn()`` over ``reps`` calls issued back to back (the GPU's part
    of each far below it), the queue drained before and after."""
    for _ in range(20):
        fn()
    return host_ms(fn, reps) * 1e3


def _bound_args(jit, grid, args, kwargs):
    """``(compiled kernel, [every argument in signature order])`` of one JIT launch: the
    binder's bound arguments captured while ``jit[grid](*args, **kwargs)`` runs."""
    device = torch.cuda.current_device()
    caches = jit.device_caches[device]
    captured = {}

    def spy(*a, **k):
        result = caches[4](*a, **k)
        captured["bound"] = result[0]
        return result

    jit.device_caches[device] = (*caches[:4], spy)
    try:
        compiled = jit[grid](*args, **kwargs)
    finally:
        jit.device_caches[device] = caches
    return compiled, list(captured["bound"].values())


def host(out: Path) -> list[dict]:
    from flash_swiglu.kernels import _glu_fwd_kernel
    from flash_swiglu.kernels import ws_mlp as W
    from flash_swiglu.ops import elementwise as E

    device = torch.device("cuda")
    m, k, n = 128, 1024, 2816
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(m, k, device=device, dtype=torch.bfloat16, generator=g)
    wg, wu = (torch.randn(n, k, device=device, dtype=torch.bfloat16, generator=g) * k**-0.5
              for _ in range(2))  # fmt: skip
    h = torch.empty(m, n, device=device, dtype=torch.bfloat16)
    act = dict(activation="silu", alpha=1.702, limit=7.0)
    cfg = dict(W.WS_FORWARD_CONFIG)
    bm, bh, bk = cfg.pop("BLOCK_M"), cfg.pop("BLOCK_H"), cfg.pop("BLOCK_K")
    grid = W._grid(device, -(-m // bm) * -(-n // bh), None)
    grid = (*grid, 1, 1)[:3]  # CompiledKernel's runner indexes all three

    def descs():
        return W._desc(x, [bm, bk]), W._desc(wg, [bh, bk]), W._desc(wu, [bh, bk])

    def jit_args(d):
        return (*d, h, h, 0, 0, h, h, h, h.stride(0), h.stride(0), h.stride(0), m, n, k)

    kw = dict(HAS_BG=False, HAS_BU=False, STORE_GU=False, ACTIVATION="silu", ALPHA=1.702,
              LIMIT=7.0, num_warps=4, enable_fp_fusion=W.ENABLE_FP_FUSION, **cfg)  # fmt: skip
    prebuilt = descs()
    compiled, bound = _bound_args(W.glu_forward_ws_kernel, grid, jit_args(prebuilt), kw)
    torch.cuda.synchronize()
    ref = h.clone()
    h.zero_()
    compiled[grid](*bound)
    torch.cuda.synchronize()
    same_ws = torch.equal(h, ref)
    slots = [i for i, v in enumerate(bound) if any(v is d for d in prebuilt)]

    def direct_fresh():
        args = list(bound)
        for i, d in zip(slots, descs(), strict=True):
            args[i] = d
        compiled[grid](*args)

    gate, up = (torch.randn(m, n, device=device, dtype=torch.bfloat16, generator=g)
                for _ in range(2))  # fmt: skip
    eact = (gate, up, "silu", 1.702, 7.0)
    eout = E._fwd_triton(*eact)
    ekw = dict(ACTIVATION="silu", ALPHA=1.702, LIMIT=7.0, INTERLEAVED=False, TWO_GROUPS=False)
    bm_e, bn_e, warps = E.launch_config(m, n, "fwd")
    egrid = (-(-m // bm_e) * -(-n // bn_e), 1, 1)
    eargs = (gate, up, eout, m, n, m, *(0, gate.stride(0), 1), *(0, up.stride(0), 1),
             *(0, eout.stride(0), 1))  # fmt: skip
    ekw.update(BLOCK_M=bm_e, BLOCK_N=bn_e, num_warps=warps, enable_fp_fusion=E.ENABLE_FP_FUSION)
    ecompiled, ebound = _bound_args(_glu_fwd_kernel, egrid, eargs, ekw)
    eref = eout.clone()
    eout.zero_()
    ecompiled[egrid](*ebound)
    torch.cuda.synchronize()
    same_e = torch.equal(eout, eref)

    def launcher():
        W.glu_forward_ws(x, wg, wu, None, None, h, **act)

    def jit_prebuilt():
        W.glu_forward_ws_kernel[grid](*jit_args(prebuilt), **kw)

    def jit_fresh():
        W.glu_forward_ws_kernel[grid](*jit_args(descs()), **kw)

    cases = {
        "gluon fwd: ws_mlp.glu_forward_ws": launcher,
        "gluon fwd: JIT, descriptors prebuilt": jit_prebuilt,
        "gluon fwd: JIT, descriptors each call": jit_fresh,
        "gluon fwd: direct, args prebuilt": lambda: compiled[grid](*bound),
        "gluon fwd: direct, descriptors each call": direct_fresh,
        "gluon: three host descriptors": descs,
        "elementwise fwd: ops.elementwise._fwd_triton": lambda: E._fwd_triton(*eact),
        "elementwise fwd: JIT": lambda: _glu_fwd_kernel[egrid](*eargs, **ekw),
        "elementwise fwd: direct, args prebuilt": lambda: ecompiled[egrid](*ebound),
        "torch.mm": lambda: torch.mm(x, wg.t()),
        "torch.empty": lambda: torch.empty(m, n, device=device, dtype=torch.bfloat16),
    }
    rows = []
    for rep in range(3):
        for label, fn in cases.items():
            rows.append(dict(label=label, rep=rep, host_us=_host_us(fn)))
    (out / "host.json").write_text(
        json.dumps(dict(rows=rows, same_bits_gluon=same_ws, same_bits_elementwise=same_e), indent=1)
    )
    say(f"host: direct launch output identical to the JIT's: Gluon {same_ws}, "
        f"elementwise {same_e}")  # fmt: skip
    for label in cases:
        us = sorted(r["host_us"] for r in rows if r["label"] == label)
        say(f"host {label:48s} {us[1]:6.1f} us (of {us[0]:.1f}-{us[2]:.1f})")
    return rows


GLU_TILES = {  # label -> (TILE_ELEMS, MAX_BLOCK_N, forward warps)
    "tile 2048 w4": (2048, 2048, 4),
    "tile 2048 w8": (2048, 2048, 8),
    "tile 4096 w4": (4096, 4096, 4),
    "tile 4096 w8": (4096, 4096, 8),
    "tile 1024x2 w4": (2048, 1024, 4),  # two rows of 1024 columns
}


@contextlib.contextmanager
def _glu_tile(tile: int, block_n: int, warps: int):
    from flash_swiglu.ops import elementwise as E

    saved = E.TILE_ELEMS, E.MAX_BLOCK_N, dict(E.NUM_WARPS)
    E.TILE_ELEMS, E.MAX_BLOCK_N = tile, block_n
    E.NUM_WARPS["fwd"] = warps
    try:
        yield
    finally:
        E.TILE_ELEMS, E.MAX_BLOCK_N = saved[:2]
        E.NUM_WARPS.clear()
        E.NUM_WARPS.update(saved[2])


def glu_mid(out: Path) -> list[dict]:
    from flash_swiglu.ops import elementwise as E

    try:
        from liger_kernel.ops.swiglu import LigerSiLUMulFunction
    except ImportError:
        LigerSiLUMulFunction = None
    g = torch.Generator(device=DEVICE).manual_seed(0)
    rows = []
    for n in (14336, 18944, 28672):
        for m in (65, 160, 300, 384):
            gate, up = (torch.randn(m, n, device=DEVICE, dtype=DTYPE, generator=g)
                        for _ in range(2))  # fmt: skip
            ref = E._fwd_triton(gate, up, "silu", 1.702, 7.0)
            calls = {"ours": lambda: E._fwd_triton(gate, up, "silu", 1.702, 7.0)}
            for label, tile in GLU_TILES.items():

                def call(tile=tile):
                    with _glu_tile(*tile):
                        return E._fwd_triton(gate, up, "silu", 1.702, 7.0)

                if torch.equal(call(), ref):
                    calls[label] = call
                else:
                    say(f"glu-mid [{m}, {n}] {label}: WRONG")
            if LigerSiLUMulFunction is not None:
                calls["liger"] = lambda: LigerSiLUMulFunction.apply(gate, up)
            calls["eager"] = lambda: F.silu(gate) * up
            ms, med = S15._rotated_rounds(calls, 100.0)
            rows.append(dict(m=m, n=n, ms=ms))
            (out / "glu_mid.json").write_text(json.dumps(rows, indent=1))
            best = min(med, key=med.get)
            rest = [f"{lb} {t * 1e3:.1f}" for lb, t in med.items() if lb not in ("ours", best)]
            say(f"glu-mid [{m:3d}, {n}] ours {med['ours'] * 1e3:5.1f} us, best '{best}' "
                f"{med[best] * 1e3:5.1f}; " + ", ".join(rest))  # fmt: skip
    return rows


def decode_tile_candidates(tiles) -> list:
    """``(label, fn_maker)`` of the decode kernel in each tile ``(TMA, BLOCK_N, BLOCK_K,
    num_warps, num_stages[, SPLIT_K])``; the split, where given, is in the config and the
    label."""
    cands = []
    for tma, bn, bk, warps, stages, *split in tiles:
        cfg = dict(BLOCK_N=bn, BLOCK_K=bk, num_warps=warps, num_stages=stages)
        label = f"{'tma' if tma else 'ptr'} bn{bn} bk{bk} w{warps} s{stages}"
        if split:
            cfg["SPLIT_K"] = split[0]
            label += f" split{split[0]}"
        if tma:
            cfg["TMA"] = True
        cands.append((label, S11._triton_maker("decode", cfg)))
    return cands


def _decode8b_candidates():
    """``(label, fn_maker)``: the decode kernel with the tiles of ``decode8b``."""
    return decode_tile_candidates([
        (False, 128, 128, 8, 3, 2), (False, 128, 64, 8, 4, 1), (False, 128, 256, 8, 2, 1),
        (False, 64, 128, 4, 3, 1), (False, 64, 128, 4, 3, 2), (False, 32, 256, 2, 3, 1),
        (True, 128, 128, 8, 4, 1), (True, 128, 128, 8, 5, 1), (True, 128, 128, 8, 3, 2),
        (True, 64, 256, 4, 3, 1), (True, 64, 128, 4, 3, 2),
    ])  # fmt: skip


def decode8b(out: Path) -> list[dict]:
    cases = [("llama-3-8b", 8), ("llama-3-8b", 32)]
    return S15.decode(out, cases, _decode8b_candidates, "decode8b")


def _mid70b_candidates():
    """``(label, fn_maker)``: eager, the unfused route (two ``F.linear`` and our elementwise
    kernel) and the decode kernel's TMA variant in the tiles of ``mid70b``."""
    from flash_swiglu.ops import elementwise as E

    cands = [
        ("eager", lambda x, wg, wu, _: lambda: F.silu(F.linear(x, wg)) * F.linear(x, wu)),
        (
            "unfused route",
            lambda x, wg, wu, _: lambda: E.forward(F.linear(x, wg), F.linear(x, wu), *S11.ACT),
        ),
    ]
    for bn, bk, warps, stages in [
        (64, 64, 4, 3), (64, 64, 4, 4), (64, 128, 4, 3), (64, 128, 4, 4), (64, 128, 8, 3),
        (128, 64, 8, 3), (128, 64, 8, 4), (128, 128, 8, 3), (64, 64, 4, 5), (128, 64, 4, 4),
    ]:  # fmt: skip
        cfg = dict(BLOCK_N=bn, BLOCK_K=bk, num_warps=warps, num_stages=stages, TMA=True)
        label = f"decode tma bn{bn} bk{bk} w{warps} s{stages}"
        cands.append((label, S11._triton_maker("decode", cfg)))
    return cands


def mid70b(out: Path) -> list[dict]:
    cases = [("llama-3-70b", 65), ("llama-3-70b", 96), ("llama-3-70b", 128)]
    return S15.decode(out, cases, _mid70b_candidates, "mid70b")


def main() -> None:
    stages = {"small": small, "recompute": recompute, "host": host, "glu-mid": glu_mid}
    stages.update(decode8b=decode8b, mid70b=mid70b)
    S12.run_stages(stages, ["host"])


if __name__ == "__main__":
    main()

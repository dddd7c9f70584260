"""Session 13 explorations for the H200, written without device time (session 13 had none
left): the moved last token tile, and the host time of three MLP compositions.

    PYTHONPATH=src python scripts/explore_session13.py STAGE... --out DIR

(stages: tiles, host3)

- ``tiles``: session 12 padded x to a whole number of token tiles before the TMA kernels
  (a copy of about 2 us, ``h200-session12-explore/call2``); since session 13 the kernels end
  their last token tile at row M (``kernels.linear._tile_start``) and only x with fewer
  rows than one tile is padded. On the four model shapes at token counts that are not
  multiples of 128 (65, 96, 160, 200, 300, 640, 1000, 2000): the launcher as committed, the
  launcher with session 12's padding restored (``_padded_rows`` padding to a multiple: the
  copy on top of the same kernel work), the launcher with no padding at all (differs from
  the committed one below one tile only: does padding pay there on every shape? On 1B at
  96 tokens it cost 2.2 us in session 12), eager and the cuBLAS product, each checked
  against the float64 reference first, then timed in turn three times. Counts the launch
  table routes unfused run the same call in the launcher columns. -> ``tiles.json``.

- ``host3``: the host time to issue one MLP forward + backward, and its GPU time, for three
  compositions with the same weights: eager (``down(silu(gate(x)) * up(x))``), ``SwiGLUMLP``
  (the fused kernels) and a composite of the same three ``nn.Linear`` with the fused
  elementwise kernel between them (``down(flash_swiglu.swiglu(gate(x), up(x)))``), at the
  example's MLP (hidden 1024, intermediate 2816; 512, 2048, 8192 tokens) and Llama-3-8B's
  (512, 1024, 2048 tokens). The example at its default size is bound by the host (0.66x
  eager in session 12): this says whether a composite route for small problems would fix
  that, and at what GPU cost. Host time as ``explore_session11.host``; GPU time from CUDA
  graph replays of the whole forward + backward (``bench.timing.measure_graph``; None where
  capture fails). -> ``host3.json``.

A short table is printed last (also ``summary.txt``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

import explore_session11 as S11
import explore_session12 as S12

from flash_swiglu import reference
from flash_swiglu.bench.timing import measure_graph
from flash_swiglu.ops import linear as L

DT = torch.bfloat16
ACT = S11.ACT
say = S11.say
MODELS = {"1b": (2048, 8192), "8b": (4096, 14336), "qwen7b": (3584, 18944),
          "70b": (8192, 28672)}  # fmt: skip


def _session12_padding(x2: torch.Tensor, rows: int) -> torch.Tensor:
    """Session 12's ``_padded_rows``: zero rows up to the next multiple of ``rows``."""
    pad = -x2.shape[0] % rows
    return F.pad(x2, (0, 0, 0, pad)) if pad else x2


def _launcher(padding: str):
    """The launcher with ``padding`` "committed" (x padded below one tile), "session 12" (to
    a whole number of tiles) or "none" (``PAD_TMA_ROWS`` off), for one call."""

    def call(x, wg, wu):
        real, flag = L._padded_rows, L.PAD_TMA_ROWS
        if padding == "session 12":
            L._padded_rows = _session12_padding
        L.PAD_TMA_ROWS = padding != "none"
        try:
            return L._forward_triton(x, wg, wu, None, None, *ACT)
        finally:
            L._padded_rows, L.PAD_TMA_ROWS = real, flag

    return call


def tiles(out: Path) -> list[dict]:
    rows = []
    for name, (k, n) in MODELS.items():
        wg = torch.randn(n, k, device="cuda", dtype=DT) / k**0.5
        wu = torch.randn(n, k, device="cuda", dtype=DT) / k**0.5
        wcat = torch.cat([wg, wu])
        for m in (65, 96, 160, 200, 300, 640, 1000, 2000):
            x = torch.randn(m, k, device="cuda", dtype=DT)
            ref = reference.swiglu_linear_reference(x.double(), wg.double(), wu.double())
            calls = {
                label: (lambda p=padding: _launcher(p)(x, wg, wu))
                for label, padding in (("launcher", "committed"),
                                       ("session 12 padding", "session 12"),
                                       ("no padding", "none"))
            }  # fmt: skip
            results = {label: f() for label, f in calls.items()}
            ok = {label: S11._ok(r, ref) for label, r in results.items()}
            same = all(torch.equal(results["launcher"], r) for r in results.values())
            calls["eager"] = lambda: S11._eager(x, wg, wu)
            calls["cublas product"] = lambda: x @ wcat.T
            times, best = S12._rounds(calls)
            rows.append(dict(model=name, m=m, n=n, k=k, ok=ok, same_bits=same, ms=times))
            (out / "tiles.json").write_text(json.dumps(rows, indent=1))
            cells = ", ".join(f"{label} {t * 1e3:.1f}" for label, t in best.items())
            say(f"tiles {name:6s} M={m:4d} {cells} us; same bits {same}; wrong: "
                f"{[label for label, good in ok.items() if not good]}")  # fmt: skip
    return rows


def _mlp_variants(k: int, n: int, m: int, device: str = "cuda", dtype=DT):
    """``(x, mlp, {label: fwd+bwd call})`` over one set of weights."""
    import flash_swiglu
    from flash_swiglu import SwiGLUMLP

    mlp = SwiGLUMLP(k, n, device=device, dtype=dtype)
    gate, up, down = mlp.gate_proj, mlp.up_proj, mlp.down_proj
    x = torch.randn(m, k, device=device, dtype=dtype, requires_grad=True)
    dy = torch.randn(m, k, device=device, dtype=dtype)

    # Each call starts with the gradients unset, as after ``zero_grad()``: no call adds into
    # an earlier call's gradients (which a graph of several calls would otherwise do).
    def eager():
        _clear(x, mlp)
        down(F.silu(gate(x)) * up(x)).backward(dy)

    def fused():
        _clear(x, mlp)
        mlp(x).backward(dy)

    def composite():
        _clear(x, mlp)
        down(flash_swiglu.swiglu(gate(x), up(x))).backward(dy)

    return x, mlp, {"eager": eager, "SwiGLUMLP": fused, "composite": composite}


def _clear(x, mlp) -> None:
    x.grad = None
    for p in mlp.parameters():
        p.grad = None


def _grads(x, mlp, f):
    f()
    return [t.grad.float() for t in (x, *mlp.parameters())]


def host3(out: Path) -> list[dict]:
    shapes = [("example", 1024, 2816, m) for m in (512, 2048, 8192)]
    shapes += [("8b", 4096, 14336, m) for m in (512, 1024, 2048)]
    rows = []
    for name, k, n, m in shapes:
        x, mlp, calls = _mlp_variants(k, n, m)
        grads = {label: _grads(x, mlp, f) for label, f in calls.items()}
        # Largest gradient difference against eager, relative to eager's largest value.
        diff = {
            label: max(((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()
                       for a, b in zip(g, grads["eager"], strict=True))
            for label, g in grads.items() if label != "eager"
        }  # fmt: skip
        row = dict(model=name, m=m, n=n, k=k, rel_diff_vs_eager=diff, host_us={}, gpu_ms={})
        for label, f in calls.items():
            row["host_us"][label] = S11._host_us(f)
            try:
                row["gpu_ms"][label] = measure_graph(f).median_ms
            except Exception as e:  # capture of an autograd backward can fail
                row["gpu_ms"][label] = None
                row.setdefault("errors", {})[label] = repr(e)[:300]
        rows.append(row)
        (out / "host3.json").write_text(json.dumps(rows, indent=1))
        cells = ", ".join(
            f"{label} {row['host_us'][label]:.0f} us host / "
            + (f"{row['gpu_ms'][label] * 1e3:.0f} us GPU" if row["gpu_ms"][label] else "no graph")
            for label in calls
        )
        say(f"host3 {name:7s} M={m:5d} {cells}; rel diff {diff}")
    return rows


def main() -> None:
    S12.run_stages({"tiles": tiles, "host3": host3}, ["tiles"])


if __name__ == "__main__":
    main()

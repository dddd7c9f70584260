"""Session 12 explorations on the H200: the wide decode route below its 128-token bucket.

    PYTHONPATH=src python scripts/explore_session12.py STAGE... --out DIR

(stages: wide, pad, mid2)

- ``wide``: session 11 measured the wide decode entries (``ops.linear.wide_decode_config``:
  the TMA decode kernel with one tile of all the tokens, for the 65-128-token bucket on
  Llama-3-8B and Llama-3-70B) at 128 tokens only, yet the whole bucket runs them. Here, at
  65, 72, 80, 96, 112, 120 and 128 tokens on those two shapes: the launcher as committed,
  the launcher with the wide route off (``WIDE_DECODE_MAX_TOKENS`` = 64: the TMA path's
  entry for the bucket runs instead), eager and the cuBLAS product, each checked against
  the float64 reference first, then timed in turn three times. -> ``wide.json``.

- ``pad`` (call 2, after ``wide`` found the TMA kernels slower at 65-96 tokens than at
  128): the launcher with ``PAD_TMA_ROWS`` 0 (x's TMA boxes run past its last row), 1 (a
  partial last token tile reads x from a zero-padded copy) and 2 (the Triton TMA kernel's
  output padded too), on the four model shapes at 65, 96, 128, 200 and 300 tokens (the
  decode, Triton TMA and Gluon paths), with the wide route off as well on 8B and 70B up to
  128 tokens; eager and the cuBLAS product alongside. -> ``pad.json``. Mode 2 existed at
  commit ``30fa339`` only; later commits treat it as 1.

- ``mid2`` (call 3): token counts between the buckets' tops (65, 96, 160, 200, 300, 384,
  640) on the four shapes, where ``pad`` found the launcher slower than eager (its entries
  were tuned at 128, 256, 512, 1024 tokens): the launcher (x padded), eager, the cuBLAS
  product, the Triton TMA kernel and the Gluon forward with 64-row token tiles (less padding
  where M is just past a multiple of 64) and with 128-row tiles, and up to 128 tokens the
  TMA decode kernel with one token tile; timed as ``explore_session11.mid`` does (each
  once, the fastest three, the launcher, eager and cuBLAS three more times). -> ``mid2.json``.

Kernel times are GPU time from CUDA-graph replays with a cold L2 (``bench.timing``). A short
table is printed last (also ``summary.txt``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import triton

sys.path.insert(0, str(Path(__file__).resolve().parent))

import explore_session11 as S11

from flash_swiglu import reference
from flash_swiglu.bench.timing import measure_graph
from flash_swiglu.ops import linear as L

DT = torch.bfloat16
ACT = S11.ACT
say = S11.say


def _rounds(calls: dict) -> tuple[dict, dict]:
    """Each call timed in turn three times: ``(times, best)``, lists and minima by label."""
    times = {label: [] for label in calls}
    for _ in range(3):
        for label, f in calls.items():
            times[label].append(measure_graph(f).median_ms)
    return times, {label: min(t) for label, t in times.items()}


def wide(out: Path) -> list[dict]:
    models = {"8b": (4096, 14336), "70b": (8192, 28672)}
    rows = []
    for name, (k, n) in models.items():
        wg = torch.randn(n, k, device="cuda", dtype=DT) / k**0.5
        wu = torch.randn(n, k, device="cuda", dtype=DT) / k**0.5
        wcat = torch.cat([wg, wu])
        for m in (65, 72, 80, 96, 112, 120, 128):
            x = torch.randn(m, k, device="cuda", dtype=DT)
            ref = reference.swiglu_linear_reference(x.double(), wg.double(), wu.double())
            calls = {
                "wide route": lambda: L._forward_triton(x, wg, wu, None, None, *ACT),
                "route off": lambda: _launcher(L.PAD_TMA_ROWS, route=False)(x, wg, wu),
                "eager": lambda: S11._eager(x, wg, wu),
                "cublas product": lambda: x @ wcat.T,
            }
            ok = {label: S11._ok(calls[label](), ref) for label in ("wide route", "route off")}
            times, best = _rounds(calls)
            rows.append(dict(model=name, m=m, n=n, k=k, ok=ok, ms=times))
            (out / "wide.json").write_text(json.dumps(rows, indent=1))
            say(
                f"wide {name:3s} M={m:3d} route {best['wide route'] * 1e3:6.1f} us, off "
                f"{best['route off'] * 1e3:6.1f} ({best['route off'] / best['wide route']:.3f}x), "
                f"eager {best['eager'] * 1e3:6.1f} ({best['eager'] / best['wide route']:.3f}x), "
                f"cublas {best['cublas product'] * 1e3:6.1f}; ok {ok}"
            )
    return rows


def _launcher(pad: int, route: bool = True):
    """The launcher with ``PAD_TMA_ROWS`` set to ``pad`` and, without ``route``, the wide
    decode route off, for one call."""

    def call(x, wg, wu):
        saved = L.PAD_TMA_ROWS, L.WIDE_DECODE_MAX_TOKENS
        L.PAD_TMA_ROWS = pad
        if not route:
            L.WIDE_DECODE_MAX_TOKENS = L.DECODE_MAX_TOKENS
        try:
            return L._forward_triton(x, wg, wu, None, None, *ACT)
        finally:
            L.PAD_TMA_ROWS, L.WIDE_DECODE_MAX_TOKENS = saved

    return call


def pad(out: Path) -> list[dict]:
    models = {"1b": (2048, 8192), "8b": (4096, 14336), "qwen7b": (3584, 18944),
              "70b": (8192, 28672)}  # fmt: skip
    rows = []
    for name, (k, n) in models.items():
        wg = torch.randn(n, k, device="cuda", dtype=DT) / k**0.5
        wu = torch.randn(n, k, device="cuda", dtype=DT) / k**0.5
        wcat = torch.cat([wg, wu])
        for m in (65, 96, 128, 200, 300):
            x = torch.randn(m, k, device="cuda", dtype=DT)
            ref = reference.swiglu_linear_reference(x.double(), wg.double(), wu.double())
            calls = {f"pad{p}": _launcher(p) for p in (0, 1, 2)}
            if name in ("8b", "70b") and m <= 128:
                calls.update({f"off pad{p}": _launcher(p, route=False) for p in (0, 1, 2)})
            calls = {label: (lambda f=f: f(x, wg, wu)) for label, f in calls.items()}
            ok = {label: S11._ok(f(), ref) for label, f in calls.items()}
            calls["eager"] = lambda: S11._eager(x, wg, wu)
            calls["cublas product"] = lambda: x @ wcat.T
            times, best = _rounds(calls)
            rows.append(dict(model=name, m=m, n=n, k=k, ok=ok, ms=times))
            (out / "pad.json").write_text(json.dumps(rows, indent=1))
            cells = ", ".join(f"{label} {t * 1e3:.1f}" for label, t in best.items())
            say(f"pad {name:6s} M={m:3d} {cells} us; wrong: "
                f"{[label for label, good in ok.items() if not good]}")  # fmt: skip
    return rows


def _mid2_candidates(m):
    from flash_swiglu.kernels.ws_mlp import WS_FORWARD_CONFIG, glu_forward_ws

    def ws(cfg):
        def make(x, wg, wu, wcat):
            h = torch.empty(m, wg.shape[0], device=x.device, dtype=x.dtype)
            xp = L._padded_rows(x, cfg["BLOCK_M"])

            def call():
                glu_forward_ws(xp, wg, wu, None, None, h, activation="silu", alpha=1.702,
                               limit=7.0, config=cfg)  # fmt: skip
                return h

            return call

        return make

    cands = [(label, make) for label, make in S11._mid_candidates(m)
             if label in ("launcher", "eager", "cublas product")]  # fmt: skip
    if m <= 128:
        cfg = dict(BLOCK_N=64, BLOCK_K=64, num_warps=4, num_stages=3, TMA=True, SPLIT_K=1)
        cands.append(("decode tma bn64 bk64 w4 s3", S11._triton_maker("decode", cfg)))
    for bm, bn, w, st, pps in [(64, 128, 4, 4, 1), (64, 64, 4, 4, 2), (128, 64, 8, 3, 2),
                               (128, 128, 8, 3, 1)]:  # fmt: skip
        cfg = dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=64, GROUP_M=8, num_warps=w, num_stages=st,
                   PROGRAMS_PER_SM=pps)  # fmt: skip
        cands.append((f"tma bm{bm} bn{bn} w{w} s{st} pps{pps}", S11._triton_maker("tma", cfg)))
    for bm, bh, st, coop in [(64, 64, 6, False), (64, 128, 4, False), (128, 64, 6, False),
                             (128, 128, 4, True)]:  # fmt: skip
        cfg = dict(WS_FORWARD_CONFIG, BLOCK_M=bm, BLOCK_H=bh, STAGES=st, COOP=coop)
        cands.append((f"ws bm{bm} h{bh} s{st}" + (" coop" if coop else ""), ws(cfg)))
    return cands


def run_stages(stages: dict, default: list[str]) -> None:
    """The command line of the session scripts: ``STAGE... --out DIR``, each stage called
    with the output folder on a side stream of its own (``measure_graph`` captures there),
    then the printed summary written to ``summary.txt``."""
    ap = argparse.ArgumentParser()
    ap.add_argument("parts", nargs="*", default=default)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    say(f"{torch.cuda.get_device_name()} torch {torch.__version__} triton {triton.__version__} "
        f"python {sys.version.split()[0]}")  # fmt: skip
    for part in args.parts:
        if part not in stages:
            raise SystemExit(f"unknown part {part}")
        t0 = time.time()
        torch.cuda.set_stream(torch.cuda.Stream())
        stages[part](out)
        say(f"== {part}: {time.time() - t0:.0f} s")
    (out / "summary.txt").write_text("\n".join(S11.SUMMARY) + "\n")


def main() -> None:
    mid2 = lambda out: S11.mid(out, _mid2_candidates, (65, 96, 160, 200, 300, 384, 640), "mid2")
    run_stages({"wide": wide, "mid2": mid2, "pad": pad}, ["wide"])


if __name__ == "__main__":
    main()

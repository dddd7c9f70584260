"""Elementwise launch-configuration sweep, timed as the benchmark times (GPU time from CUDA
graph replays with a cold L2), next to torch.compile and Liger on the same inputs.

    PYTHONPATH=src python scripts/tune_elementwise_small.py
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from flash_swiglu.bench.timing import measure_graph
from flash_swiglu.ops import elementwise as E

TILES = [1024, 2048, 4096]
WARPS = [2, 4, 8]
CASES = [
    ((4096, 4096), torch.bfloat16),
    ((4096, 4096), torch.float32),
    ((8192, 14336), torch.bfloat16),
]


def main() -> None:
    try:
        from liger_kernel.ops.swiglu import LigerSiLUMulFunction
    except ImportError:
        LigerSiLUMulFunction = None
    eager = lambda g, u: F.silu(g) * u
    compiled = torch.compile(eager)
    torch.cuda.set_stream(torch.cuda.Stream())
    for (rows, cols), dtype in CASES:
        g = torch.randn(rows, cols, device="cuda", dtype=dtype)
        u = torch.randn(rows, cols, device="cuda", dtype=dtype)
        d = torch.randn(rows, cols, device="cuda", dtype=dtype)
        nb = g.numel() * g.element_size()
        print(f"{rows}x{cols} {dtype}")
        peers = {"compile": compiled}
        if LigerSiLUMulFunction is not None:
            peers["liger"] = lambda a, b: LigerSiLUMulFunction.apply(a, b)
        for name, fn in peers.items():
            t = measure_graph(lambda fn=fn: fn(g, u)).median_ms
            gg, uu = g.clone().requires_grad_(True), u.clone().requires_grad_(True)
            out = fn(gg, uu)
            tb = measure_graph(
                lambda out=out, gg=gg, uu=uu: torch.autograd.grad(
                    out, (gg, uu), d, retain_graph=True
                )
            ).median_ms
            print(f"  peer {name:8s} fwd {t * 1e3:7.2f} us  bwd(autograd) {tb * 1e3:7.2f} us")
        for pass_ in ("fwd", "bwd"):
            res = []
            for tile, warps in itertools.product(TILES, WARPS):
                E.TILE_ELEMS = tile
                E.MAX_BLOCK_N = tile
                E.NUM_WARPS = {"fwd": warps, "bwd": warps}
                if pass_ == "fwd":
                    fn = lambda: E.forward(g, u, "silu", 1.702, 7.0)
                else:
                    fn = lambda: E.backward(g, u, d, "silu", 1.702, 7.0)
                res.append((measure_graph(fn).median_ms, tile, warps))
            res.sort()
            k = 3 if pass_ == "fwd" else 5
            print(
                f"  {pass_}: "
                + ", ".join(
                    f"{t}/{w}: {ms * 1e3:.2f} us {k * nb / ms * 1e-6:.0f} GB/s"
                    for ms, t, w in res[:5]
                )
            )


if __name__ == "__main__":
    main()

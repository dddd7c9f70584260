"""Second sweep for the brief's 4096 x 4096 case, where launch/tail effects matter.

    PYTHONPATH=src python scripts/tune_elementwise_small.py

Times each candidate by median with L2 flush (do_bench) and as CUDA-graph replays (no host
overhead), next to a device copy of the same number of bytes and to the peers.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
import triton

from flash_swiglu.ops import elementwise as E

TILES = [2048, 4096, 8192]
WARPS = [2, 4, 8]


def bench(fn):
    med = triton.testing.do_bench(fn, warmup=50, rep=300, return_mode="median")
    with torch.cuda.stream(torch.cuda.Stream()):
        graph = triton.testing.do_bench_cudagraph(fn, rep=300, return_mode="median")
    return med, graph


def main() -> None:
    try:
        from liger_kernel.ops.swiglu import LigerSiLUMulFunction
    except ImportError:
        LigerSiLUMulFunction = None
    eager = lambda g, u: F.silu(g) * u
    compiled = torch.compile(eager)
    for (rows, cols), dtype in itertools.product(
        [(4096, 4096), (8192, 14336)], [torch.bfloat16, torch.float16, torch.float32]
    ):
        g = torch.randn(rows, cols, device="cuda", dtype=dtype)
        u = torch.randn(rows, cols, device="cuda", dtype=dtype)
        d = torch.randn(rows, cols, device="cuda", dtype=dtype)
        n_bytes = g.numel() * g.element_size()
        src = torch.randn(3 * n_bytes // 4, device="cuda")
        dst = torch.empty(3 * n_bytes // 4, device="cuda")
        half = 3 * n_bytes // 8
        copy_fwd = bench(lambda: dst[:half].copy_(src[:half]))  # reads+writes 3 n s bytes
        print(
            f"{rows}x{cols} {dtype}: same-size copy {3 * n_bytes / copy_fwd[0] * 1e-6:.0f} GB/s "
            f"(graph {3 * n_bytes / copy_fwd[1] * 1e-6:.0f})"
        )
        peers = {"eager": eager, "compile": compiled}
        if LigerSiLUMulFunction is not None:
            peers["liger"] = LigerSiLUMulFunction.apply
        for name, fn in peers.items():
            ms, gms = bench(lambda fn=fn: fn(g, u))
            print(f"  peer {name:8s} fwd {ms * 1e3:7.1f} us  graph {gms * 1e3:7.1f} us")
        for pass_ in ("fwd", "bwd"):
            nb = (3 if pass_ == "fwd" else 5) * n_bytes
            res = []
            for tile, warps in itertools.product(TILES, WARPS):
                E.TILE_ELEMS = tile
                E.MAX_BLOCK_N = tile
                E.NUM_WARPS = {"fwd": warps, "bwd": warps}
                if pass_ == "fwd":
                    fn = lambda: E.glu_fwd(g, u, "silu", 1.702, 7.0)
                else:
                    fn = lambda: E.glu_bwd(g, u, d, "silu", 1.702, 7.0)
                ms, gms = bench(fn)
                res.append((ms, gms, tile, warps))
            res.sort()
            for ms, gms, tile, warps in res[:4]:
                print(
                    f"  {pass_} tile {tile:5d} warps {warps}: {ms * 1e3:7.1f} us "
                    f"({nb / ms * 1e-6:5.0f} GB/s)  graph {gms * 1e3:7.1f} us "
                    f"({nb / gms * 1e-6:5.0f} GB/s)"
                )


if __name__ == "__main__":
    main()

"""Sweep the elementwise launch configuration on the GPU and print the best per case.

    PYTHONPATH=src python scripts/tune_elementwise.py [--json PATH]

For each case (shape x dtype x pass) it times every candidate (elements per program, widest
column block, warps) with ``triton.testing.do_bench`` and reports the rate as a fraction of the
device-to-device copy bandwidth measured in the same run. The winners go into
``flash_swiglu.ops.elementwise`` by hand, with the measurement cited there.
"""

from __future__ import annotations

import argparse
import itertools
import json

import torch
import triton

import flash_swiglu
from flash_swiglu.ops import elementwise as E

SHAPES = [(4096, 4096), (8192, 14336), (16, 14336), (1000, 4097)]
DTYPES = [torch.bfloat16, torch.float16, torch.float32]
TILES = [4096, 8192, 16384]
MAX_BN = [1024, 4096]
WARPS = [4, 8]


def copy_bandwidth() -> float:
    src = torch.randn(2**29, device="cuda")  # 2 GiB
    dst = torch.empty_like(src)
    ms = triton.testing.do_bench(lambda: dst.copy_(src), warmup=50, rep=300)
    return 2 * 2**31 / ms * 1e-6  # GB/s


def run_case(rows, cols, dtype, pass_, cfg):
    tile, max_bn, warps = cfg
    E.TILE_ELEMS = tile
    E.MAX_BLOCK_N = max_bn
    E.NUM_WARPS = {"fwd": warps, "bwd": warps}
    gate = torch.randn(rows, cols, device="cuda", dtype=dtype)
    up = torch.randn(rows, cols, device="cuda", dtype=dtype)
    dout = torch.randn(rows, cols, device="cuda", dtype=dtype)
    if pass_ == "fwd":
        fn = lambda: E.glu_fwd(gate, up, "silu", 1.702, 7.0)
        nbytes = 3 * gate.numel() * gate.element_size()
    else:
        fn = lambda: E.glu_bwd(gate, up, dout, "silu", 1.702, 7.0)
        nbytes = 5 * gate.numel() * gate.element_size()
    ms = triton.testing.do_bench(fn, warmup=25, rep=100)
    return ms, nbytes / ms * 1e-6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    args = ap.parse_args()
    assert flash_swiglu.swiglu  # the package imports
    bw = copy_bandwidth()
    print(f"copy bandwidth {bw:.0f} GB/s")
    defaults = {d: (E.TILE_ELEMS, E.MAX_BLOCK_N, E.NUM_WARPS["fwd"]) for d in DTYPES}
    rows_out = []
    for (rows, cols), dtype, pass_ in itertools.product(SHAPES, DTYPES, ["fwd", "bwd"]):
        results = []
        for cfg in itertools.product(TILES, MAX_BN, WARPS):
            ms, gbps = run_case(rows, cols, dtype, pass_, cfg)
            results.append((ms, gbps, cfg))
            rows_out.append(
                dict(rows=rows, cols=cols, dtype=str(dtype), pass_=pass_, cfg=cfg, ms=ms, gbps=gbps)
            )
        results.sort()
        best = results[0]
        default = next((r for r in results if r[2] == defaults[dtype]), results[-1])
        print(
            f"{rows}x{cols} {dtype!s:15s} {pass_}: best {best[2]} {best[0] * 1e3:.1f} us "
            f"{best[1] / bw:.1%} of copy | default {defaults[dtype]} {default[0] * 1e3:.1f} us "
            f"{default[1] / bw:.1%}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(copy_gbps=bw, rows=rows_out), f, indent=1)


if __name__ == "__main__":
    main()

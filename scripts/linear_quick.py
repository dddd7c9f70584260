"""First look at swiglu_linear on the GPU: the fused forward against cuBLAS's product of the
same FLOPs, and (optionally) a restricted retune of the launch table.

    PYTHONPATH=src python scripts/linear_quick.py [--retune OUT.json [--retune-tokens 8,32]
                                                   [--merge MERGED.json]]

Times are GPU times from CUDA-graph replays with a cold L2 (flash_swiglu.bench.timing).
"""

from __future__ import annotations

import argparse
import json

import torch

import flash_swiglu
from flash_swiglu.bench.timing import measure_graph
from flash_swiglu.ops import linear as L

MODELS = {"1b": (2048, 8192), "8b": (4096, 14336), "qwen7b": (3584, 18944), "70b": (8192, 28672)}
TMA = [
    dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=64, GROUP_M=g, num_warps=8, num_stages=s)
    for bm, bn in ((128, 128), (128, 64), (64, 128))
    for g in (8, 16)
    for s in (3, 4)
]
DECODE = [
    dict(BLOCK_N=bn, BLOCK_K=bk, num_warps=w, num_stages=s)
    for bn in (32, 64)
    for bk in (128, 256)
    for w in (4,)
    for s in (3, 4, 5)
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--retune", help="write the retuned table to this file")
    ap.add_argument("--retune-tokens", default="1,8192", help="token counts to retune")
    ap.add_argument("--merge", help="also write this table with the retuned entries merged in")
    args = ap.parse_args()
    torch.cuda.set_stream(torch.cuda.Stream())
    from flash_swiglu.bench.roofline import copy_bandwidth

    copy = copy_bandwidth(torch.device("cuda"))
    print(f"copy {copy:.0f} GB/s")
    for name, (k, n) in MODELS.items():
        wg = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) / k**0.5
        wu = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) / k**0.5
        wcat = torch.cat([wg, wu])
        for m in (1, 8, 32, 2048, 8192):
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            path = L.choose_path(x, wg, wu, m)
            t_ours = measure_graph(lambda: flash_swiglu.swiglu_linear(x, wg, wu)).median_ms
            t_cub = measure_graph(lambda: x @ wcat.T).median_ms
            flops = 4 * m * n * k
            line = (
                f"{name:7s} M={m:5d} {path:7s} ours {t_ours * 1e3:8.1f} us "
                f"{flops / t_ours * 1e-9:6.0f} TF/s | cublas {t_cub * 1e3:8.1f} us "
                f"{flops / t_cub * 1e-9:6.0f} TF/s | ratio {t_cub / t_ours:.3f}"
            )
            if m <= 64:
                nbytes = (2 * n * k + m * k + m * n) * 2
                line += (
                    f" | weights {nbytes / t_ours * 1e-6 / copy:.0%} of copy "
                    f"(cublas {nbytes / t_cub * 1e-6 / copy:.0%})"
                )
            print(line, flush=True)
    if args.retune:
        tokens = [int(t) for t in args.retune_tokens.split(",")]
        shapes = [(m, n, k) for m in tokens for k, n in MODELS.values()]
        table = L.retune(shapes, candidates={"tma": TMA, "decode": DECODE, "pointer": []})
        with open(args.retune, "w") as f:
            json.dump(table, f, indent=2)
        print(json.dumps(table, indent=1))
        if args.merge:  # the committed table with these entries added or replaced
            with open(L.CONFIG_DIR / "h200_linear.json") as f:
                merged = json.load(f)
            for path in ("tma", "decode", "pointer"):
                merged.setdefault(path, {}).update(table.get(path, {}))
            with open(args.merge, "w") as f:
                json.dump(merged, f, indent=2)
                f.write("\n")


if __name__ == "__main__":
    main()

"""Kernels that stream the gate/up weights at few tokens, one launch each, for Nsight Compute.

    ncu --clock-control none --profile-from-start off --csv --page details [--section ...] \\
        python scripts/ncu_decode.py [--models 8b,qwen7b]

Written in session 20. The 90% target at 8-32 tokens (issue 3) is missed on Llama-3-8B (84 /
83% of the copy bandwidth in the last runs) while the one-token kernel streams the same bytes
at 94% and a plain Triton read of them reached 90% (session 8): the question is what the
decode kernel does differently, in the DRAM and L2 traffic, the occupancy and the warps'
stalls. Every kernel runs first outside the profiled range (compiles, warms up), then once
each between ``cudaProfilerStart`` and ``cudaProfilerStop``: per model, the launcher's
kernel at 1, 8 and 32 tokens, the cuBLAS product ``x @ [Wg; Wu]^T`` at 8 tokens and a plain
Triton read of ``[Wg; Wu]`` (the sum of each program's 32 KB). Nsight Compute flushes the
caches before each profiled kernel (its default ``--cache-control all``), so each reads its
operands from HBM as the benchmark's cold-L2 replays do. The printed lines name each launch
in order, so the report's rows can be matched to them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import triton

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from explore_session8 import _read_kernel  # the plain read: one 32 KB chunk a program

import flash_swiglu

MODELS = {"1b": (2048, 8192), "8b": (4096, 14336), "qwen7b": (3584, 18944)}
DT = torch.bfloat16


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="8b,qwen7b")
    args = ap.parse_args()
    launches = []
    for name in args.models.split(","):
        k, n = MODELS[name]
        wg = torch.randn(n, k, device="cuda", dtype=DT) / k**0.5
        wu = torch.randn(n, k, device="cuda", dtype=DT) / k**0.5
        wcat = torch.cat([wg, wu])
        flat = wcat.view(-1)
        chunk = 16384  # elements: 32 KB a program
        partial = torch.empty(triton.cdiv(flat.numel(), chunk), device="cuda")
        for m in (1, 8, 32):
            x = torch.randn(m, k, device="cuda", dtype=DT)
            ours = lambda x=x, wg=wg, wu=wu: flash_swiglu.swiglu_linear(x, wg, wu)
            launches.append((f"{name} ours M={m}", ours))
        x8 = torch.randn(8, k, device="cuda", dtype=DT)
        launches.append((f"{name} cublas M=8", lambda x=x8, w=wcat: x @ w.T))
        grid = (partial.numel(),)
        launches.append((f"{name} read 32KB", lambda f=flat, p=partial, g=grid: _read_kernel[g](
            f, p, f.numel(), CHUNK=chunk, BLOCK=2048, num_warps=8)))  # fmt: skip
    for _, call in launches:  # compile and warm up, outside the profiled range
        for _ in range(3):
            call()
    torch.cuda.synchronize()
    torch.cuda.profiler.start()
    for label, call in launches:
        print(f"launch: {label}", flush=True)
        call()
        torch.cuda.synchronize()
    torch.cuda.profiler.stop()


if __name__ == "__main__":
    main()

"""Where the MLP training step's time goes, on the GPU: the fused kernels against the plain
cuBLAS products of the same shapes, and the whole step for several column-slice widths.

    PYTHONPATH=src python scripts/mlp_backward_probe.py [--tokens 8192] [--model llama-3-8b]

Prints one table; every time is a ``do_bench`` median (L2 flushed between calls). Written
after the first H200 run found the step at 0.95x eager (benchmarks/results/h200-mlp-8b): it
separates the fused backward kernel's own cost from the slicing around it.
"""

from __future__ import annotations

import argparse

import torch
from triton.testing import do_bench

import flash_swiglu
from flash_swiglu.bench.cases.linear import MODELS
from flash_swiglu.ops import train as T


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tokens", type=int, default=8192)
    p.add_argument("--model", default="llama-3-8b", choices=list(MODELS))
    p.add_argument("--chunks", default="2048,4096,7168,16384", help="T.CHUNK_N values")
    a = p.parse_args()
    k, n = MODELS[a.model]
    m = a.tokens
    dev, dt = "cuda", torch.bfloat16
    r = lambda *s, scale=1.0: torch.randn(*s, device=dev, dtype=dt) * scale
    x, dy = r(m, k), r(m, k)
    wg, wu, wd = r(n, k, scale=k**-0.5), r(n, k, scale=k**-0.5), r(k, n, scale=n**-0.5)
    g, u = r(m, n), r(m, n)
    outs = [torch.empty(m, n, device=dev, dtype=dt) for _ in range(3)]
    common = dict(activation="silu", alpha=1.702, limit=7.0)
    rows = []

    def bench(name, fn, flops):
        ms = do_bench(fn, warmup=25, rep=200, return_mode="median")
        rows.append((name, ms, flops / ms / 1e9))

    gemm = 2 * m * n * k
    bench("cuBLAS dh = dy @ Wd", lambda: dy @ wd, gemm)
    bench("cuBLAS x @ Wg^T", lambda: x @ wg.t(), gemm)
    bench("cuBLAS dWd = dy^T h", lambda: dy.t() @ g, gemm)
    bench("cuBLAS dx = dg @ Wg", lambda: g @ wg, gemm)
    bench(
        "fused mlp_backward (one launch, all N)",
        lambda: T.launch(
            m, n, k, dy=dy, wd=wd, g=g, u=u, dg=outs[0], du=outs[1], h=outs[2], **common
        ),
        gemm,
    )
    bench(
        "fused forward_saving (all N)",
        lambda: T.launch(
            m, n, k, x=x, wg=wg, wu=wu, g=outs[0], u=outs[1], h=outs[2], store_gu=True, **common
        ),
        2 * gemm,
    )
    params = [t.clone().requires_grad_() for t in (x, wg, wu, wd)]

    def step():
        for t in params:
            t.grad = None
        flash_swiglu.swiglu_mlp(*params).backward(dy)

    def eager_step():
        for t in params:
            t.grad = None
        xx, a_, b_, c_ = params
        h = torch.nn.functional.silu(xx @ a_.t()) * (xx @ b_.t())
        (h @ c_.t()).backward(dy)

    bench("eager MLP step (fwd+bwd)", eager_step, 9 * gemm)
    default = T.CHUNK_N
    for chunk in (int(c) for c in a.chunks.split(",")):
        T.CHUNK_N = chunk
        torch.cuda.reset_peak_memory_stats()
        bench(f"fused MLP step, CHUNK_N={chunk}", step, 9 * gemm)
        peak = torch.cuda.max_memory_allocated() / 2**20
        rows[-1] = (f"{rows[-1][0]} (peak {peak:.0f} MiB allocated)", *rows[-1][1:])
    T.CHUNK_N = default
    print(f"{a.model} M={m} N={n} K={k} bf16, {torch.cuda.get_device_name()}")
    print(f"{'what':<62} {'ms':>9} {'TFLOP/s':>8}")
    for name, ms, tflops in rows:
        print(f"{name:<62} {ms:9.3f} {tflops:8.0f}")


if __name__ == "__main__":
    main()

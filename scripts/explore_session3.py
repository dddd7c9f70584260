"""Session-3 exploration on the H200: one call that checks and times the variants the
session's changes opened, so the launch tables are chosen from measurements.

    PYTHONPATH=src python scripts/explore_session3.py [linear] [decode] [train] --out DIR

- ``linear``: the persistent TMA forward at M = 2048 and 8192 on the four model shapes, the
  committed configuration and a neighbour, each against the cuBLAS product
  ``x @ [Wg; Wu]^T`` timed in the same loop (twice, for the spread).
- ``decode``: decode-kernel candidates at M = 8, 16, 32, 64 on the four shapes; the best per
  (bucket, shape) is written as launch-table entries (``decode_table.json``).
- ``train``: the training kernel's modes on the Llama-3-8B slice (M=8192, N=14336, K=4096)
  over candidate tiles (registers and spills as compiled on this GPU), the cuBLAS products
  they stand against, and the MLP step at several column-slice widths with its peak memory.

Every time is GPU time from CUDA-graph replays with a cold L2 (``bench.timing``), except the
MLP steps (CUDA events per step, ``do_bench``). Each candidate is checked against the
reference before it is timed. Full results go to ``DIR/*.json``; a short table is printed.

As run for ``benchmarks/results/h200-session3-explore`` (commit 8c6c660), it also timed two
kernel options that commit added: ``FLATTEN`` for the TMA projection (one software pipeline
over every tile and K step; 0.75-0.85 of cuBLAS against 0.82-0.99 without) and
``PREFETCH_GU`` for the MLP backward kernel (g/u loaded before the K loop; 255 registers,
spills, 1.89 ms against 1.83). Both were slower and were removed, with their variants here.
The step timings at fixed slice widths set ``T.CHUNK_N``. Its ``train`` part replaces
``scripts/mlp_backward_probe.py`` (written in session 2, never run; removed).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from triton.testing import do_bench

import flash_swiglu
from flash_swiglu import reference
from flash_swiglu.bench.roofline import copy_bandwidth, same_size_copy_gbps
from flash_swiglu.bench.timing import measure_graph
from flash_swiglu.ops import linear as L
from flash_swiglu.ops import train as T

MODELS = {"1b": (2048, 8192), "8b": (4096, 14336), "qwen7b": (3584, 18944), "70b": (8192, 28672)}
DT = torch.bfloat16


def _w(n, k):
    return torch.randn(n, k, device="cuda", dtype=DT) / k**0.5


def _ok(out, ref) -> bool:
    err = (out.float() - ref.float()).abs().max().item()
    return err <= 0.05 * ref.float().abs().max().item()


def linear(out: Path) -> list[str]:
    base = dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, num_warps=8)
    variants = {
        "table": None,
        "g8_s3": dict(base, GROUP_M=8, num_stages=3),
    }
    rows, lines = [], []
    for name, (k, n) in MODELS.items():
        wg, wu = _w(n, k), _w(n, k)
        wcat = torch.cat([wg, wu])
        for m in (2048, 8192):
            x = torch.randn(m, k, device="cuda", dtype=DT)
            ref = reference.swiglu_linear_reference(x, wg, wu, None, None, "silu", 1.702, 7.0)
            flops = 4 * m * n * k
            times = {"cublas": measure_graph(lambda: x @ wcat.T).median_ms}
            for vname, cfg in variants.items():
                f = lambda: L._forward_triton(x, wg, wu, None, None, "silu", 1.702, 7.0, "tma", cfg)
                try:
                    if not _ok(f(), ref):
                        times[vname] = float("nan")
                        continue
                    times[vname] = measure_graph(f).median_ms
                except Exception as e:
                    print(f"{name} M={m} {vname}: {type(e).__name__}: {e}"[:300])
                    times[vname] = float("nan")
            times["cublas_again"] = measure_graph(lambda: x @ wcat.T).median_ms
            times["table_again"] = measure_graph(
                lambda: L._forward_triton(x, wg, wu, None, None, "silu", 1.702, 7.0)
            ).median_ms
            cub = min(times["cublas"], times["cublas_again"])
            row = dict(model=name, m=m, n=n, k=k, ms=times, tflops_cublas=flops / cub / 1e9)
            rows.append(row)
            ratios = " ".join(
                f"{v}={cub / t:.3f}" for v, t in times.items() if not v.startswith("cublas")
            )
            lines.append(f"linear {name:6s} M={m:5d} cublas {flops / cub / 1e9:4.0f} TF | {ratios}")
            print(lines[-1], flush=True)
    (out / "linear.json").write_text(json.dumps(rows, indent=1))
    return lines


DECODE_CANDS = [
    dict(BLOCK_N=bn, BLOCK_K=bk, num_warps=w, num_stages=s)
    for bn in (32, 64, 128)
    for bk in (128, 256)
    for w in (4,)
    for s in (3, 4, 6)
] + [dict(BLOCK_N=128, BLOCK_K=128, num_warps=8, num_stages=s) for s in (3, 4)]


def decode(out: Path, copy: float) -> list[str]:
    rows, lines, table = [], [], {}
    for name, (k, n) in MODELS.items():
        wg, wu = _w(n, k), _w(n, k)
        wcat = torch.cat([wg, wu])
        for m in (1, 8, 16, 32, 64):
            x = torch.randn(m, k, device="cuda", dtype=DT)
            ref = reference.swiglu_linear_reference(x, wg, wu, None, None, "silu", 1.702, 7.0)
            nbytes = (2 * n * k + m * k + m * n) * 2
            cub = measure_graph(lambda: x @ wcat.T).median_ms
            current = measure_graph(
                lambda: L._forward_triton(x, wg, wu, None, None, "silu", 1.702, 7.0)
            ).median_ms
            best = None
            cands = DECODE_CANDS if m > 1 else DECODE_CANDS[:6]  # M=1 has tuned entries
            for cfg in cands:
                f = lambda: L._forward_triton(
                    x, wg, wu, None, None, "silu", 1.702, 7.0, "decode", cfg
                )
                try:
                    if not _ok(f(), ref):
                        continue
                    ms = measure_graph(f).median_ms
                except Exception as e:
                    print(f"decode {name} M={m} {cfg}: {type(e).__name__}"[:200])
                    continue
                if best is None or ms < best[0]:
                    best = (ms, cfg)
            same = same_size_copy_gbps(nbytes, torch.device("cuda"))
            row = dict(model=name, m=m, n=n, k=k, cublas_ms=cub, current_ms=current)
            row.update(best_ms=best[0], best=best[1], copy_gbps=copy, same_size_copy_gbps=same)
            rows.append(row)
            bw = lambda ms: nbytes / ms / 1e6 / copy
            lines.append(
                f"decode {name:6s} M={m:3d} cublas {bw(cub):4.0%} current {bw(current):4.0%} "
                f"best {bw(best[0]):4.0%} same-size copy {same / copy:4.0%} {best[1]}"
            )
            print(lines[-1], flush=True)
            if m > 1:
                b = L.token_bucket(m)
                stamp = (
                    f"scripts/explore_session3.py decode on {torch.cuda.get_device_name()}, "
                    f"{time.strftime('%Y-%m-%d')}: {best[0] * 1e3:.1f} us "
                    f"({bw(best[0]):.0%} of copy bandwidth; cuBLAS product {bw(cub):.0%})"
                )
                table[f"m{b}_n{n}_k{k}"] = dict(best[1], source=stamp)
                (out / "decode_table.json").write_text(json.dumps(table, indent=2))
    (out / "decode.json").write_text(json.dumps(rows, indent=1))
    (out / "decode_table.json").write_text(json.dumps(table, indent=2))
    return lines


TRAIN_CANDS = {
    "mlp_backward": [
        dict(BLOCK_M=128, BLOCK_N=128, num_warps=8, num_stages=4, EPILOGUE_SPLIT=True),
        dict(BLOCK_M=128, BLOCK_N=128, num_warps=8, num_stages=3, EPILOGUE_SPLIT=True),
        dict(BLOCK_M=64, BLOCK_N=128, num_warps=4, num_stages=3, EPILOGUE_SPLIT=True),
        dict(BLOCK_M=64, BLOCK_N=128, num_warps=4, num_stages=4, EPILOGUE_SPLIT=True),
        dict(BLOCK_M=64, BLOCK_N=256, num_warps=8, num_stages=3, EPILOGUE_SPLIT=True),
    ],
    "forward_saving": [
        dict(BLOCK_M=128, BLOCK_N=128, num_warps=8, num_stages=4, EPILOGUE_SPLIT=True),
        dict(BLOCK_M=128, BLOCK_N=128, num_warps=8, num_stages=3, EPILOGUE_SPLIT=True),
        dict(BLOCK_M=64, BLOCK_N=128, num_warps=4, num_stages=3, EPILOGUE_SPLIT=True),
        dict(BLOCK_M=64, BLOCK_N=128, num_warps=4, num_stages=4, EPILOGUE_SPLIT=True),
    ],
    "mlp_backward_recompute": [
        dict(BLOCK_M=64, BLOCK_N=128, num_warps=4, num_stages=3, EPILOGUE_SPLIT=True),
        dict(BLOCK_M=128, BLOCK_N=128, num_warps=8, num_stages=3, EPILOGUE_SPLIT=True),
        dict(BLOCK_M=64, BLOCK_N=128, num_warps=4, num_stages=2, EPILOGUE_SPLIT=True),
    ],
}


def train(out: Path) -> list[str]:
    m, n, k = 8192, 14336, 4096
    r = lambda *s, sc=1.0: torch.randn(*s, device="cuda", dtype=DT) * sc
    x, dy = r(m, k), r(m, k)
    wg, wu, wd = r(n, k, sc=k**-0.5), r(n, k, sc=k**-0.5), r(k, n, sc=n**-0.5)
    g, u = r(m, n), r(m, n)
    names = ("h", "dg", "du", "g2", "u2")
    outs = {key: torch.empty(m, n, device="cuda", dtype=DT) for key in names}
    common = dict(activation="silu", alpha=1.702, limit=7.0)
    operands = {
        "forward_saving": dict(x=x, wg=wg, wu=wu, g=outs["g2"], u=outs["u2"], h=outs["h"],
                               store_gu=True),
        "mlp_backward": dict(dy=dy, wd=wd, g=g, u=u, dg=outs["dg"], du=outs["du"], h=outs["h"]),
        "mlp_backward_recompute": dict(x=x, wg=wg, wu=wu, dy=dy, wd=wd, dg=outs["dg"],
                                       du=outs["du"], h=outs["h"]),
    }  # fmt: skip
    gemm = 2 * m * n * k
    lines, rows = [], []
    # Reference outputs in fp32 from PyTorch, per mode.
    gf, uf = g.float(), u.float()
    dh = dy.float() @ wd.float()
    dgr, dur = reference.glu_backward(gf, uf, dh, "silu", 1.702, 7.0)
    hr = reference.act_glu(gf, uf, "silu", 1.702, 7.0)
    for mode, args in operands.items():
        flops = gemm * {"mlp_backward": 1, "mlp_backward_recompute": 3}.get(mode, 2)
        for cand in TRAIN_CANDS[mode]:
            cfg = dict(cand, BLOCK_K=64, GROUP_M=8)
            f = lambda: T.launch(m, n, k, **args, **common, _override=cfg)
            try:
                ck = f()
                if mode == "mlp_backward":
                    good = all(_ok(outs[a], b) for a, b in (("dg", dgr), ("du", dur), ("h", hr)))
                else:
                    good = True
                torch.cuda.synchronize()
                ms = measure_graph(f).median_ms
                info = (getattr(ck, "n_regs", None), getattr(ck, "n_spills", None))
            except Exception as e:
                print(f"train {mode} {cand}: {type(e).__name__}: {e}"[:300])
                continue
            rows.append(
                dict(mode=mode, cfg=cfg, ms=ms, ok=good, tflops=flops / ms / 1e9, regs_spills=info)
            )
            lines.append(
                f"train {mode:24s} {ms:7.3f} ms {flops / ms / 1e9:4.0f} TF ok={good} "
                f"{json.dumps(cand)} regs/spills {info}"
            )
            print(lines[-1], flush=True)
    cub = {
        "dh = dy @ Wd": lambda: dy @ wd,
        "x @ Wg^T": lambda: x @ wg.t(),
        "x @ [Wg;Wu]^T": (lambda wc: lambda: x @ wc.t())(torch.cat([wg, wu])),
        "dWd = dy^T h": lambda: dy.t() @ g,
        "dx = dg @ Wg": lambda: g @ wg,
        "dWg = dg^T x": lambda: g.t() @ x,
    }
    for name, fn in cub.items():
        ms = measure_graph(fn).median_ms
        fl = gemm * (2 if "[Wg;Wu]" in name else 1)
        rows.append(dict(mode="cublas " + name, ms=ms, tflops=fl / ms / 1e9))
        lines.append(f"cublas {name:24s} {ms:7.3f} ms {fl / ms / 1e9:4.0f} TF")
        print(lines[-1], flush=True)
    g = u = outs = None  # free before the steps allocate
    torch.cuda.empty_cache()
    # Whole steps (events per call, do_bench median), fused step at several slice widths.
    params = [t.clone().requires_grad_() for t in (x, wg, wu, wd)]

    def eager_step():
        for t in params:
            t.grad = None
        xx, a_, b_, c_ = params
        h = torch.nn.functional.silu(xx @ a_.t()) * (xx @ b_.t())
        (h @ c_.t()).backward(dy)

    def step(recompute=False):
        for t in params:
            t.grad = None
        flash_swiglu.swiglu_mlp(*params, recompute=recompute).backward(dy)

    def timed(name, fn):
        fn()
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
        ms = do_bench(fn, warmup=50, rep=400, return_mode="median")
        rows.append(dict(mode=name, ms=ms, peak_mib=peak, tflops=9 * gemm / ms / 1e9))
        tf = 9 * gemm / ms / 1e9
        lines.append(f"step {name:34s} {ms:7.3f} ms {tf:4.0f} TF peak {peak:6.0f} MiB")
        print(lines[-1], flush=True)

    timed("eager", eager_step)
    default = T.CHUNK_N
    for chunk in (2048, 3072, 4096, 7168, 14336):
        T.CHUNK_N = chunk
        timed(f"fused CHUNK_N={chunk}", step)
    T.CHUNK_N = default
    timed("fused recompute", lambda: step(True))
    timed("eager again", eager_step)
    (out / "train.json").write_text(json.dumps(rows, indent=1))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("parts", nargs="*", default=["linear", "decode", "train"])
    ap.add_argument("--out", default="/tmp/explore")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.cuda.set_stream(torch.cuda.Stream())
    copy = copy_bandwidth(torch.device("cuda"))
    lines = [f"{torch.cuda.get_device_name()} copy {copy:.0f} GB/s"]
    print(lines[0], flush=True)
    for part in a.parts:
        t0 = time.time()
        lines += {"linear": linear, "decode": lambda o: decode(o, copy), "train": train}[part](out)
        lines.append(f"== {part}: {time.time() - t0:.0f} s")
        print(lines[-1], flush=True)
        (out / "summary.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

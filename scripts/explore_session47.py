"""Session-47 exploration on the H200: where our route loses to ``liger-mul`` on Llama-3-70B.

    PYTHONPATH=src python scripts/explore_session47.py routeprof --out DIR

Why: session 46's benchmark run ``h200-s46-linear-bf16-late-peers`` had our unfused route
(two ``F.linear`` and ``flash_swiglu``'s elementwise kernel) 3% behind ``liger-mul`` (the same
two products and ``LigerSiLUMulFunction``) on 70B at 800 and 1025 tokens. ``explore_session46.py
routeliger`` times the two whole calls and the two elementwise kernels alone in rotated rounds.

- ``routeprof``: the kernels each call launches and their device times, from
  ``torch.profiler`` over ``CALLS`` calls of each, every call after an L2 eviction (a read of
  ``FLUSH_MB`` MB), so that a difference between the whole calls can be put on one kernel:
  eager, ours and ``liger-mul`` at 800 and 1025 tokens on 70B, bf16 and fp16. The outputs are
  checked against a float64 reference with the tolerance rule first. Needs Liger-Kernel
  importable (the ``.whl`` carry). -> ``routeprof.json`` and the table printed per case.

- ``placement70b`` (after call 2): call 2's ``routeliger`` had, in one process on one copy of
  the weights, our route 1.013-1.033x eager and 1.036-1.084x ``liger-mul`` on 70B at 800 and
  1025 tokens, while the benchmark runs of calls 3-4 (each backend on its own copy of the
  inputs, the harness's ``fresh_inputs``) had it at 0.977-0.999x eager at 800, 1025 and
  1064 in bf16. Whether where the weights land moves the two cuBLAS products by that much:
  ``COPIES`` copies of 70B's inputs, each read by eager, ours and ``liger-mul``, rotated
  rounds as ``explore_session46.py``'s (``ROUNDS``, ``SETTLE_MS``), at 800 and 1025 tokens in
  both dtypes. -> ``placement70b.json``: each call's rounds, per copy the three medians.

- ``qwen16`` (after call 7): Qwen2.5-7B in fp16 takes the fused projection at 769-800 tokens
  (session 44's run had it at 1.026x eager at 800, the route 1.014x), and the benchmark runs
  of calls 3 and 7 had it at 0.999 / 0.998x eager at 769 and 0.991 / 1.015x at 800. In one
  process, ``explore_session46.py``'s ``_ab`` (eager and ``swiglu_linear`` on two tables,
  five rotated rounds): the committed table against one with the route widened to 769-800
  (``widen_unfused.py``'s ``widened``; in bf16 both are the route there), at 769, 784 and 800
  tokens. -> ``qwen16.json``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

import explore_session12 as S12
import explore_session16 as S16
import explore_session46 as S46
import widen_unfused as W

import flash_swiglu
from flash_swiglu.bench.cases.linear import MODELS

CALLS = 20
COPIES = 4
FLUSH_MB = 512
TOKENS = (800, 1025)
DTYPES = (torch.bfloat16, torch.float16)


def kernel_table(prof, calls: int) -> list[dict]:
    """``[{name, count, us_per_call}]`` of the device kernels a profile holds, the time summed
    over the profile and divided by ``calls``, largest first. The eviction's read (a
    reduction) is listed with them."""
    rows = []
    for ev in prof.key_averages():
        total = getattr(ev, "device_time_total", None)
        if total is None:
            total = getattr(ev, "cuda_time_total", 0.0)
        dtype = str(getattr(ev, "device_type", ""))
        if not total or "CUDA" not in dtype or ev.key.startswith("cuda"):
            continue
        rows.append(dict(name=ev.key[:90], count=ev.count, us_per_call=total / calls))
    return sorted(rows, key=lambda r: -r["us_per_call"])


def routeprof(out: Path) -> list[dict]:
    from liger_kernel.ops.swiglu import LigerSiLUMulFunction
    from torch.profiler import ProfilerActivity, profile

    device = torch.device("cuda")
    k, n = MODELS["llama-3-70b"]
    gen = torch.Generator(device=device).manual_seed(47)
    flush = torch.empty(FLUSH_MB * 2**20 // 4, device=device, dtype=torch.float32)
    flush.fill_(1.0)
    rows = []
    for dt in DTYPES:
        wg = torch.randn(n, k, device=device, dtype=dt, generator=gen) / k**0.5
        wu = torch.randn(n, k, device=device, dtype=dt, generator=gen) / k**0.5
        for m in TOKENS:
            x = torch.randn(m, k, device=device, dtype=dt, generator=gen)
            calls = {
                "eager": lambda x=x: F.silu(F.linear(x, wg)) * F.linear(x, wu),
                "ours": lambda x=x: flash_swiglu.swiglu_linear(x, wg, wu),
                "liger-mul": lambda x=x: LigerSiLUMulFunction.apply(
                    F.linear(x, wg), F.linear(x, wu)
                ),
            }
            ref = flash_swiglu.reference.swiglu_linear_reference(
                x.double(), wg.double(), wu.double()
            )
            errs = {}
            for lb, call in calls.items():
                got = call().double()
                errs[lb] = (got - ref).abs().max().item()
                torch.testing.assert_close(got, ref, rtol=2e-2, atol=2e-2)
            kernels = {}
            for lb, call in calls.items():
                for _ in range(3):
                    call()
                torch.cuda.synchronize()
                with profile(activities=[ProfilerActivity.CUDA]) as prof:
                    for _ in range(CALLS):
                        flush.sum()
                        call()
                    torch.cuda.synchronize()
                kernels[lb] = kernel_table(prof, CALLS)
            row = dict(model="llama-3-70b", m=m, n=n, k=k, dtype=str(dt).split(".")[-1],
                       max_abs_err=errs, kernels=kernels)  # fmt: skip
            rows.append(row)
            (out / "routeprof.json").write_text(json.dumps(rows, indent=1))
            for lb, table in kernels.items():
                S16.say(
                    f"routeprof {row['dtype']:8s} M={m} {lb:9s}: "
                    + "; ".join(
                        f"{r['name'][:48]} x{r['count']} {r['us_per_call']:.1f} us" for r in table
                    )
                )
    return rows


def placement70b(out: Path) -> list[dict]:
    from liger_kernel.ops.swiglu import LigerSiLUMulFunction

    device = torch.device("cuda")
    k, n = MODELS["llama-3-70b"]
    gen = torch.Generator(device=device).manual_seed(4747)
    rows = []
    for dt in DTYPES:
        copies = [
            tuple(torch.randn(n, k, device=device, dtype=dt, generator=gen) / k**0.5 for _ in "gu")
            for _ in range(COPIES)
        ]
        for m in TOKENS:
            calls, errs = {}, {}
            for c, (wg, wu) in enumerate(copies):
                x = torch.randn(m, k, device=device, dtype=dt, generator=gen)
                calls[f"eager{c}"] = lambda x=x, wg=wg, wu=wu: (
                    F.silu(F.linear(x, wg)) * F.linear(x, wu)
                )
                calls[f"ours{c}"] = lambda x=x, wg=wg, wu=wu: flash_swiglu.swiglu_linear(x, wg, wu)
                calls[f"liger-mul{c}"] = lambda x=x, wg=wg, wu=wu: LigerSiLUMulFunction.apply(
                    F.linear(x, wg), F.linear(x, wu)
                )
                if c == 0:
                    ref = flash_swiglu.reference.swiglu_linear_reference(
                        x.double(), wg.double(), wu.double()
                    )
                    for lb in ("eager0", "ours0", "liger-mul0"):
                        got = calls[lb]().double()
                        errs[lb] = (got - ref).abs().max().item()
                        torch.testing.assert_close(got, ref, rtol=2e-2, atol=2e-2)
            rounds, med = S46._timed(calls)
            per_copy = [
                {b: med[f"{b}{c}"] for b in ("eager", "ours", "liger-mul")} for c in range(COPIES)
            ]
            row = dict(model="llama-3-70b", m=m, n=n, k=k, dtype=str(dt).split(".")[-1],
                       max_abs_err=errs, ms=rounds, median_ms=med, per_copy=per_copy)  # fmt: skip
            rows.append(row)
            (out / "placement70b.json").write_text(json.dumps(rows, indent=1))
            S16.say(
                f"placement70b {row['dtype']:8s} M={m}: per copy ms (eager / ours / liger-mul; "
                "ours vs eager, vs liger-mul) "
                + " | ".join(
                    f"{p['eager']:.4f} / {p['ours']:.4f} / {p['liger-mul']:.4f}; "
                    f"{p['eager'] / p['ours']:.3f}x {p['liger-mul'] / p['ours']:.3f}x"
                    for p in per_copy
                )
            )
        del copies
        torch.cuda.empty_cache()
    return rows


def qwen16(out: Path) -> list[dict]:
    from flash_swiglu.ops import linear as L

    S46._use_table("")
    table = L.load_table(torch.cuda.get_device_name())
    path = out / "route769.json"
    path.write_text(json.dumps(W.widened(table, 769, 800), indent=1))
    tables = {"committed": "", "route": str(path)}
    return S46._ab(out, "qwen16", "qwen2.5-7b", (769, 784, 800), tables)


def main() -> None:
    stages = {"routeprof": routeprof, "placement70b": placement70b, "qwen16": qwen16}
    S12.run_stages(stages, ["routeprof"])


if __name__ == "__main__":
    main()

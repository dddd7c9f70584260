"""``scripts/explore_session47.py``: the per-kernel table ``routeprof`` prints (device kernels
only, summed over the profile and divided by the calls, largest first), and the table
``qwen16`` timed against the committed one: the route widened to 769-800 tokens changes
only Qwen's fp16 range there, which the committed table has taken since session 47."""

from __future__ import annotations

import json
from types import SimpleNamespace

import torch

from _scripts import load_script


def test_kernel_table_keeps_device_kernels_per_call():
    S = load_script("explore_session47")
    ev = lambda key, count, total, dev="DeviceType.CUDA": SimpleNamespace(
        key=key, count=count, device_time_total=total, device_type=dev
    )
    prof = SimpleNamespace(
        key_averages=lambda: [
            ev("_glu_fwd_kernel", 20, 600.0),
            ev("nvjet_sm90_tst_192x160", 40, 19000.0),
            ev("aten::linear", 40, 19000.0, "DeviceType.CPU"),  # a host op: left out
            ev("cudaLaunchKernel", 60, 5.0),  # a runtime call: left out
            ev("Memset (Device)", 60, 0.0),  # no device time: left out
        ]
    )
    rows = S.kernel_table(prof, 20)
    assert [r["name"] for r in rows] == ["nvjet_sm90_tst_192x160", "_glu_fwd_kernel"]
    assert [r["us_per_call"] for r in rows] == [950.0, 30.0]
    assert [r["count"] for r in rows] == [40, 20]


def test_qwen16_table_differs_from_the_committed_one_only_where_it_was_measured():
    load_script("explore_session47")
    W = load_script("widen_unfused")
    from flash_swiglu.ops import linear as L

    committed = json.loads((L.CONFIG_DIR / "h200_linear.json").read_text())
    widened = W.widened(committed, 769, 800)

    def route(table, m, n, k, dt):
        entries = table["unfused"]
        key = next((c for c in (f"n{n}_k{k}:{str(dt)[6:]}", f"n{n}_k{k}") if c in entries), None)
        return key is not None and any(a <= m <= b for a, b in entries[key]["TOKENS"])

    # 8B, Qwen and 70B (1B keeps its fused projection at 769-800; qwen16 did not time it)
    for n, k in [(14336, 4096), (18944, 3584), (28672, 8192)]:
        for dt in (torch.bfloat16, torch.float16):
            for m in (768, 769, 784, 800, 801):
                got = L.unfused_route(m, n, k, dt, "NVIDIA H200")
                assert route(widened, m, n, k, dt) == got, (n, m, dt)
    # the committed table now routes what qwen16 measured: Qwen fp16 at 769-800
    assert all(L.unfused_route(m, 18944, 3584, torch.float16, "NVIDIA H200")
               for m in (769, 784, 800))  # fmt: skip

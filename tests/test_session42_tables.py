"""Session 42's table changes and ``scripts/widen_unfused.py``: 70B's 512 bucket runs the
merged forward; the widened table the benchmark ran beside the committed one sends every
count of its range on every model shape to the unfused route (so the ``-unfused`` runs timed
the route wherever the committed table now takes it) and leaves the other counts as they were."""

from __future__ import annotations

import json

import pytest
import torch

from _scripts import load_script
from _tables import launch_table

SHAPES = {"1b": (8192, 2048), "8b": (14336, 4096), "qwen": (18944, 3584), "70b": (28672, 8192)}


def test_70b_512_bucket_is_the_merged_forward():
    S40 = load_script("explore_session40")
    from flash_swiglu.ops import linear as L
    from flash_swiglu.ops import train as T

    table = json.loads((L.CONFIG_DIR / "h200_linear.json").read_text())["ws"]
    chosen = T.ws_entry(S40.entry("m_p4"), "projection_ws", "silu", None)
    assert T.ws_entry(table["m512_n28672_k8192"], "projection_ws", "silu", 433) == chosen
    assert '"COOP": true' in table["m512_n28672_k8192"]["source"]  # the replaced entry named


@pytest.mark.parametrize("dt", [torch.bfloat16, torch.float16])
def test_widened_table_routes_its_range_and_keeps_the_rest(monkeypatch, tmp_path, dt):
    W = load_script("widen_unfused")
    from flash_swiglu.ops import linear as L

    committed = json.loads((L.CONFIG_DIR / "h200_linear.json").read_text())
    before = json.dumps(committed)
    wide = W.widened(committed, 385, 768)
    assert json.dumps(committed) == before  # the input is not changed
    outside = (769, 1024, 2048)
    was = {(name, m): L.unfused_route(m, *shape, dt, "NVIDIA H200")
           for name, shape in SHAPES.items() for m in outside}  # fmt: skip
    with launch_table(monkeypatch, tmp_path, wide, L.unfused_route):
        for name, shape in SHAPES.items():
            for m in (385, 448, 512, 700, 768):
                assert L.unfused_route(m, *shape, dt, "NVIDIA H200"), (name, m)
            for m in outside:
                now = L.unfused_route(m, *shape, dt, "NVIDIA H200")
                assert now == was[name, m], (name, m)
    # every committed range of the route is still in the widened table
    for key, entry in committed["unfused"].items():
        assert all(r in wide["unfused"][key]["TOKENS"] for r in entry["TOKENS"]), key


def _launched_ws(ws, m, dtype):
    """The forward's ws configuration for 70B at ``m`` tokens from the ``ws`` section, or
    None (the Triton kernel)."""
    from flash_swiglu.ops import linear as L

    return L.ws_projection_config(ws, m, 28672, 8192, dtype, "silu")


def test_ws_bucket_gives_the_bucket_the_shape_wide_entry():
    # session 44's late44-70b: 70B's 1024 bucket (769-1024 tokens) on the shape-wide merged
    # entry, which the committed table applies from 1024 rows only (fp16 here: bf16 has had
    # its own bucket entry since session 44)
    W = load_script("widen_unfused")
    from flash_swiglu.ops import linear as L

    committed = json.loads((L.CONFIG_DIR / "h200_linear.json").read_text())
    before = json.dumps(committed)
    table = W.ws_bucket(committed, "n28672_k8192", 1024)
    assert json.dumps(committed) == before  # the input is not changed
    shape_wide = _launched_ws(committed["ws"], 1024, torch.float16)
    assert shape_wide["MERGED"]
    for m in (769, 800, 1023):
        assert _launched_ws(committed["ws"], m, torch.float16) is None  # the Triton kernel
        assert _launched_ws(table["ws"], m, torch.float16) == shape_wide
    for m in (300, 512, 1024, 1025, 4096):  # the other buckets as committed
        assert _launched_ws(table["ws"], m, torch.float16) == _launched_ws(
            committed["ws"], m, torch.float16)  # fmt: skip
    assert set(table["ws"]) - set(committed["ws"]) == {"m1024_n28672_k8192"}
    with pytest.raises(SystemExit):
        W.ws_bucket(committed, "n1_k1", 1024)


def test_dropped_takes_the_range_out_of_the_route_and_keeps_the_rest(monkeypatch, tmp_path):
    # session 45's late45-70b-fp16: fp16's route on 70B at 769-1023 dropped, so the merged
    # forward given the 1024 bucket (ws_bucket) runs those counts
    W = load_script("widen_unfused")
    from flash_swiglu.ops import linear as L

    committed = json.loads((L.CONFIG_DIR / "h200_linear.json").read_text())
    before = json.dumps(committed)
    table = W.dropped(W.ws_bucket(committed, "n28672_k8192", 1024), 769, 1023)
    assert json.dumps(committed) == before  # the input is not changed
    assert W.dropped({"unfused": {"n28672_k8192": {"TOKENS": [[700, 800], [900, 950],
        [1000, 1100]]}}}, 769, 1023)["unfused"]["n28672_k8192"]["TOKENS"] == [
        [700, 768], [1024, 1100]]  # fmt: skip
    fp16 = torch.float16
    shape_wide = _launched_ws(committed["ws"], 1024, fp16)
    for m in (769, 800, 1023):
        assert _launched_ws(table["ws"], m, fp16) == shape_wide
    outside = (300, 520, 768, 1025, 1088, 4096)
    was = {(name, m, dt): L.unfused_route(m, *shape, dt, "NVIDIA H200")
           for name, shape in SHAPES.items() for m in outside
           for dt in (torch.bfloat16, fp16)}  # fmt: skip
    with launch_table(monkeypatch, tmp_path, table, L.unfused_route):
        for name, shape in SHAPES.items():
            for dt in (torch.bfloat16, fp16):
                for m in (769, 800, 900, 1023):
                    assert not L.unfused_route(m, *shape, dt, "NVIDIA H200"), (name, m, dt)
                for m in outside:
                    now = L.unfused_route(m, *shape, dt, "NVIDIA H200")
                    assert now == was[name, m, dt], (name, m, dt)


def test_70b_1024_bucket_is_the_merged_forward_in_bf16():
    # session 44: bf16's 1024 bucket on 70B runs the shape-wide entry's merged forward where
    # the unfused section does not route (832-1023); fp16 has no such entry (and routes)
    from flash_swiglu.ops import linear as L

    ws = json.loads((L.CONFIG_DIR / "h200_linear.json").read_text())["ws"]
    shape_wide = _launched_ws(ws, 1024, torch.bfloat16)
    for m in (769, 832, 900, 1023):
        assert _launched_ws(ws, m, torch.bfloat16) == shape_wide, m
        assert _launched_ws(ws, m, torch.float16) is None, m
    # the bucket is 513-1024 tokens: the route takes 513-831 first (bf16), 513-1023 (fp16)
    route = lambda m, dt: L.unfused_route(m, 28672, 8192, dt, "NVIDIA H200")
    assert all(route(m, torch.bfloat16) for m in (513, 768, 769, 831))
    assert not any(route(m, torch.bfloat16) for m in (832, 900, 1023, 1024))
    assert all(route(m, torch.float16) for m in (513, 768, 769, 1023))


def test_committed_ranges_past_384_lie_inside_the_widened_runs():
    # The ranges past 384 (bf16 in session 42, fp16 in session 43) are inside 385-768, the
    # range the -unfused runs widened then, and those past 768 (session 44) inside 769-2047,
    # session 44's; all keyed per dtype: the generic entries stop at 384.
    from flash_swiglu.ops import linear as L

    table = json.loads((L.CONFIG_DIR / "h200_linear.json").read_text())["unfused"]
    for key, entry in table.items():
        late = [r for r in entry["TOKENS"] if r[1] > 384]
        if key.endswith((":bfloat16", ":float16")):
            assert late, key
            assert all(hi <= 768 or (lo >= 769 and hi <= 2047) for lo, hi in late), key
        else:
            assert not late, key

    # each shape with a bf16 key has an fp16 key too, which routes the generic key's counts
    # up to 384 and no others there
    def early(key):  # a shape without a generic key (1B) routes none
        ranges = table[key]["TOKENS"] if key in table else []
        return {m for lo, hi in ranges for m in range(lo, min(hi, 384) + 1)}

    for key in [k for k in table if k.endswith(":bfloat16")]:
        base = key.split(":")[0]
        assert early(f"{base}:float16") == early(base), base


def test_an_empty_table_variable_is_the_committed_table(monkeypatch):
    # FLASH_SWIGLU_LINEAR_CONFIGS / FLASH_SWIGLU_TRAIN_CONFIGS set but empty (a shell's
    # `VAR= command`) load the committed tables, as bench.env.library_env reports them.
    from flash_swiglu.bench.env import library_env
    from flash_swiglu.ops import linear as L
    from flash_swiglu.ops import train as T

    committed = json.loads((L.CONFIG_DIR / "h200_linear.json").read_text())
    for name in (L.CONFIG_ENV, T.TABLE_ENV):
        monkeypatch.setenv(name, "")
    L.load_table.cache_clear()
    T.load_table.cache_clear()
    try:
        assert L.load_table("NVIDIA H200") == committed
        assert T.load_table("NVIDIA H200")  # the committed training table, not an error
        assert library_env() == {}
    finally:
        monkeypatch.delenv(L.CONFIG_ENV)
        monkeypatch.delenv(T.TABLE_ENV)
        L.load_table.cache_clear()
        T.load_table.cache_clear()


def test_a_training_table_variable_naming_no_file_is_an_error(monkeypatch, tmp_path):
    from flash_swiglu.ops import train as T

    monkeypatch.setenv(T.TABLE_ENV, str(tmp_path / "missing.json"))
    T.load_table.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match="FLASH_SWIGLU_TRAIN_CONFIGS"):
            T.load_table("NVIDIA H200")
    finally:
        monkeypatch.delenv(T.TABLE_ENV)
        T.load_table.cache_clear()

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
    # entry, which applies from 1024 rows only: the table before session 44 (no bucket entry)
    # given the bucket gets what the committed bucket entry launches (both dtypes since
    # session 45)
    W = load_script("widen_unfused")
    from flash_swiglu.ops import linear as L

    committed = json.loads((L.CONFIG_DIR / "h200_linear.json").read_text())
    before = json.loads(json.dumps(committed))
    del before["ws"]["m1024_n28672_k8192"]
    frozen = json.dumps(before)
    table = W.ws_bucket(before, "n28672_k8192", 1024)
    assert json.dumps(before) == frozen  # the input is not changed
    for dt in (torch.bfloat16, torch.float16):
        shape_wide = _launched_ws(before["ws"], 1024, dt)
        assert shape_wide["MERGED"]
        for m in (769, 800, 1023):
            assert _launched_ws(before["ws"], m, dt) is None  # the Triton kernel
            assert _launched_ws(table["ws"], m, dt) == shape_wide
            assert _launched_ws(committed["ws"], m, dt) == shape_wide
        for m in (300, 512, 1024, 1025, 4096):  # the other buckets as they were
            assert _launched_ws(table["ws"], m, dt) == _launched_ws(before["ws"], m, dt)
    assert set(table["ws"]) - set(before["ws"]) == {"m1024_n28672_k8192"}
    with pytest.raises(SystemExit):
        W.ws_bucket(committed, "n1_k1", 1024)


def test_70b_1024_bucket_is_the_merged_forward():
    # session 44 (bf16) and 45 (fp16): the 1024 bucket on 70B runs the shape-wide entry's
    # merged forward where the unfused section does not route (832-1023)
    from flash_swiglu.ops import linear as L

    ws = json.loads((L.CONFIG_DIR / "h200_linear.json").read_text())["ws"]
    route = lambda m, dt: L.unfused_route(m, 28672, 8192, dt, "NVIDIA H200")
    for dt in (torch.bfloat16, torch.float16):
        shape_wide = _launched_ws(ws, 1024, dt)
        for m in (769, 832, 900, 1023):
            assert _launched_ws(ws, m, dt) == shape_wide, (m, dt)
        # the bucket is 513-1024 tokens: the route takes 513-831 first
        assert all(route(m, dt) for m in (513, 768, 769, 831)), dt
        assert not any(route(m, dt) for m in (832, 900, 1023, 1024)), dt


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

"""``scripts/explore_session27.py``: its candidates are launch-table entries the launcher
accepts, and their labels tell them apart."""

from __future__ import annotations

from _scripts import load_script


def test_candidates_are_entries_with_distinct_labels():
    from flash_swiglu.ops import linear as L

    S = load_script("explore_session27")
    known = set(L._CONFIG_KEYS) | set(L._OPTIONAL_KEYS)
    entry = dict(BLOCK_N=64, BLOCK_K=128, num_warps=4, num_stages=4, K_ROTATE=5)
    for overrides in [S.SPLITS, *S.ROWS16.values()]:
        assert overrides and all(set(o) <= known for o in overrides)
        labels = {S.label(dict(entry, **o)) for o in overrides}
        assert len(labels) == len(overrides)
    assert S.label(dict(entry, SPLIT_K=8, num_stages=2, K_ROTATE=0)) == "bn64 bk128 w4 s2 split8"


def test_stamp_summary():
    """Four programs on two SMs: the span, the last start, the ends' spread, each SM's busy
    time and the programs' own cycles, in microseconds."""
    import torch

    S = load_script("explore_session27")
    ns = [(1000, 5000), (1200, 9000), (5100, 8000), (9100, 11000)]  # (start, end)
    sms = [0, 1, 0, 1]
    st = torch.tensor([[a, b, 0, (b - a) * 2, s] for (a, b), s in zip(ns, sms, strict=True)])
    got = S._stamp_summary(st, sm_hz=2e9)
    assert got["programs"] == 4 and got["sms"] == 2
    assert got["span_us"] == 10.0
    assert got["start_us_min_med_max"][::2] == [0.0, 8.1]
    assert got["end_us_min_med_max"][::2] == [4.0, 10.0]
    assert got["sm_busy_us_min_med_max"][::2] == [7.0, 9.8]
    assert got["program_cycles_us_min_med_max"][::2] == [1.9, 7.8]

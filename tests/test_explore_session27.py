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

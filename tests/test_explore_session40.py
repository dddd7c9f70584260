"""``scripts/explore_session40.py``: its merged-forward candidates launch as ``MERGED`` entries
(every key ``ops.train.ws_entry`` passes on, the built-in configuration under them), and the
launch table's shape-wide ``ws`` entries are the candidate the exploration chose (``m_p4``),
the configuration its numbers were measured with, so the table and its ``source`` agree."""

from __future__ import annotations

import json

from _scripts import load_script


def test_candidates_launch_as_merged_forward_entries():
    S = load_script("explore_session40")
    from flash_swiglu.kernels import ws_mlp
    from flash_swiglu.ops import train as T

    assert S.CANDIDATES
    for name, keys in S.CANDIDATES.items():
        e = S.entry(name)
        cfg = T.ws_entry(e, "projection_ws", "silu", None)
        assert cfg == {**{k: e[k] for k in T.WS_KEYS["forward_merged"]}, "MERGED": True}
        for key, value in keys.items():
            assert cfg[key] == value
        for key in set(ws_mlp.FORWARD_MERGED_CONFIG) - set(keys):
            assert cfg[key] == ws_mlp.FORWARD_MERGED_CONFIG[key]


def test_shape_wide_ws_entries_are_the_chosen_candidate():
    S = load_script("explore_session40")
    from flash_swiglu.ops import linear as L
    from flash_swiglu.ops import train as T

    table = json.loads((L.CONFIG_DIR / "h200_linear.json").read_text())["ws"]
    chosen = T.ws_entry(S.entry("m_p4"), "projection_ws", "silu", None)
    shape_wide = {key: e for key, e in table.items() if not key.startswith("m")}
    # the four models the exploration measured
    assert set(shape_wide) == {f"n{n}_k{k}" for _, k, n, _, _ in S.CASES}
    for key, entry in shape_wide.items():
        assert T.ws_entry(entry, "projection_ws", "silu", None) == chosen, key
        assert "explore_session40.py fwd" in entry["source"], key
    # the retune's candidates include it
    assert any(T.ws_entry(c, "projection_ws", "silu", None) == chosen for c in L.WS_CANDIDATES)


def test_steps_entry_routes_as_a_saving_forward_and_the_mid_configs_are_entries():
    # ``steps`` gives the training table a merged forward_saving_ws entry from 1024 rows;
    # ``mid``'s cooperative configurations carry every key the launch takes.
    S = load_script("explore_session40")
    from flash_swiglu.ops import train as T

    cfg = T.ws_entry(dict(S.entry("m_p4"), MIN_M=1024), "forward_saving_ws", "silu", 1024)
    assert cfg is not None and cfg["MERGED"]
    for keys in (dict(GROUP_M=16, STAGES=4), dict(GROUP_M=8, STAGES=3)):
        coop = T.ws_entry(dict(S.COOP, **keys), "projection_ws", "silu", None)
        assert coop["COOP"] and "MERGED" not in coop
        assert all(key in coop for key in T.WS_KEYS["projection_ws"])

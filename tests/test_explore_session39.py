"""``scripts/explore_session39.py``: its candidates launch as merged backward entries (the keys
``ops.train.ws_entry`` passes on, the built-in configuration under them, ``MIN_M``), and the
merged kernel's launch takes gpt-oss's GLU in 16 epilogue parts. (The candidates' sm_90 builds
are the script's ``gate`` mode; the committed gate builds the built-in configuration.)"""

from __future__ import annotations

import pytest

from _scripts import load_script


@pytest.mark.parametrize("activation", ["silu", "swiglu_oai"])
def test_candidates_launch_as_merged_entries(activation):
    S = load_script("explore_session39")
    from flash_swiglu.kernels import ws_mlp
    from flash_swiglu.ops import train as T

    assert S.CANDIDATES
    for name, keys in S.CANDIDATES.items():
        e = S.entry(name)
        cfg = T.ws_entry(e, "mlp_backward_ws", activation, 8192)
        assert cfg == {**{k: e[k] for k in T.WS_KEYS["mlp_backward_merged"]}, "MERGED": True}
        for key, value in keys.items():
            assert cfg[key] == value
        for key in set(ws_mlp.MERGED_CONFIG) - set(keys):
            assert cfg[key] == ws_mlp.MERGED_CONFIG[key]
        assert T.ws_entry(e, "mlp_backward_ws", activation, S.MIN_M - 1) is None


def test_merged_parts_per_activation():
    from flash_swiglu.kernels import ws_mlp

    assert ws_mlp.merged_parts("swiglu_oai", 8) == 16
    assert ws_mlp.merged_parts("swiglu_oai", 32) == 32
    for act in ("silu", "gelu", "gelu_tanh", "relu"):
        assert ws_mlp.merged_parts(act, 8) == 8


def test_fp32_candidates_launch_as_hand_off_entries_with_fp32_dh():
    S = load_script("explore_session39")
    from flash_swiglu.kernels import ws_mlp
    from flash_swiglu.ops import train as T

    for name, keys in S.FP32_CANDIDATES.items():
        e = dict(ws_mlp.HANDOFF_CONFIG, **keys, HANDOFF=True)
        cfg = T.ws_entry(e, "mlp_backward_ws", "silu", None)
        assert cfg["HANDOFF"] is True and cfg["DH_FP32"] is True, name
    # an entry written before DH_FP32 existed hands dh over in the storage dtype
    old = {k: v for k, v in ws_mlp.HANDOFF_CONFIG.items() if k != "DH_FP32"}
    assert T.ws_entry(dict(old, HANDOFF=True), "mlp_backward_ws", "silu", None)["DH_FP32"] is False

"""``scripts/explore_session23.py``: the ``nvidia-smi`` sample reader its stages report with,
the ``rot1b`` candidates and table rule, and the constants of ``align70b`` and ``rotcopies``."""

from __future__ import annotations

from _scripts import load_script


def _script():
    return load_script("explore_session23")


def test_smi_medians(tmp_path):
    S = _script()
    smi = tmp_path / "smi.csv"
    smi.write_text(
        "2026/11/30 21:00:00.000, 1980, 350.50, 40\n"
        "2026/11/30 21:00:00.050, 1755, 690.00, 41\n"
        "garbage line\n"
        "2026/11/30 21:00:00.100, 1830, 600.25, 41\n"
        "2026/11/30 21:00:00.150, [N/A], 601.00, 41\n"
        "2026/11/30 21:00:00.200, 1980, [N/A], 41\n"
    )
    assert S.smi_medians(smi) == {"sm_mhz": 1830.0, "power_w": 600.25, "samples": 3}
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert S.smi_medians(empty) == {"sm_mhz": None, "power_w": None, "samples": 0}


def test_rot1b_configs_and_table():
    """The ``rot1b`` candidates are launch-table entries the launcher accepts (known keys
    only), one label each; the table takes a candidate only where its slowest round beat
    the launcher's fastest, keyed by the token bucket, with its source."""
    from flash_swiglu.ops import linear as L

    S = _script()
    configs = S.rot1b_configs()
    assert len(configs) == len(S.ROT1B_TILES)
    known = set(L._CONFIG_KEYS) | set(L._OPTIONAL_KEYS)
    assert all(set(cfg) <= known and cfg["K_ROTATE"] > 0 for cfg in configs.values())
    split = configs["ptr bn64 bk128 w4 s3 split2 rot5"]
    assert split["SPLIT_K"] == 2 and "TMA" not in split
    assert configs["tma bn32 bk128 w4 s4 rot5"]["TMA"] is True
    label = "ptr bn32 bk128 w4 s4 rot5"
    row = dict(model="llama-3.2-1b", n=8192, k=2048, ms={
        "triton": [0.0180, 0.0181, 0.0182], "liger": [0.0150] * 3, label: [0.0170, 0.0171, 0.0179],
    })  # fmt: skip
    other = dict(row, m=32, ms=dict(row["ms"], **{label: [0.0179, 0.0179, 0.0185]}))
    table = S.rot1b_table([dict(row, m=8), other], configs)
    assert list(table) == ["m8_n8192_k2048"]  # at 32 the slowest round lost
    entry = table["m8_n8192_k2048"]
    assert {k: v for k, v in entry.items() if k != "source"} == configs[label]
    assert entry["source"].startswith("scripts/explore_session23.py rot1b (llama-3.2-1b, 8 tokens")


def test_align_offsets_and_rotations():
    """``align70b``'s offsets are whole bf16 elements on 16-byte boundaries (what TMA needs),
    below 2 MiB, distinct as the KiB labels that key its calls; ``rotcopies`` times the entry
    as it is (rotation 0) beside each rotation, the rotations the decode kernel accepts."""
    S = _script()
    offsets = S.ALIGN_OFFSETS
    assert offsets[0] == 0 and all(o % 16 == 0 and 0 <= o < 2 << 20 for o in offsets)
    assert len({o >> 10 for o in offsets}) == len(offsets)
    assert 0 in S.ROTCOPIES_ROTATIONS and all(r >= 0 for r in S.ROTCOPIES_ROTATIONS)
    assert {m for _, m in S.ROTCOPIES_CASES} == {8, 32} and S.COPIES >= 2

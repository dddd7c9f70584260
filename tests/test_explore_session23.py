"""``scripts/explore_session23.py``: the ``nvidia-smi`` sample reader its stages report with."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    sys.path.insert(0, str(ROOT / "scripts"))
    spec = importlib.util.spec_from_file_location("s23", ROOT / "scripts/explore_session23.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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

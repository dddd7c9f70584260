"""``scripts/process_spread.py``: ours against the fastest peer over several runs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("spread", ROOT / "scripts/process_spread.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(case, backend, ms, commit="abc", passed=True):
    return dict(op="linear", case=case, backend=backend, median_ms=ms, passed=passed,
                commit=commit, **{"pass": "fwd"})  # fmt: skip


def test_spread_over_runs(tmp_path):
    S = _script()
    runs = {
        # ours 10 against the fastest peer's 11 (cublas is not a peer, liger-mul is)
        "a": [_row("M8", "triton", 10.0), _row("M8", "liger", 12.0), _row("M8", "liger-mul", 11.0),
              _row("M8", "cublas", 9.0), _row("M32", "triton", 5.0), _row("M32", "liger", 6.0)],
        # ours behind; a failed peer row does not count
        "b": [_row("M8", "triton", 12.0, "def"), _row("M8", "liger", 11.4, "def"),
              _row("M8", "torch", 1.0, "def", passed=False)],
        "c": [_row("M8", "triton", 11.0), _row("M8", "compile-max", 11.0)],
    }  # fmt: skip
    for name, rows in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "rows.json").write_text(json.dumps(rows))
    cases = S.spread([S.load(tmp_path / name) for name in runs])
    assert [c["case"] for c in cases] == ["M8"]  # M32: one run only
    (case,) = cases
    assert [(e["run"], e["peer"], e["commit"]) for e in case["runs"]] == [
        ("a", "liger-mul", "abc"), ("b", "liger", "def"), ("c", "compile-max", "abc")
    ]  # fmt: skip
    assert [round(e["ratio"], 3) for e in case["runs"]] == [1.1, 0.95, 1.0]
    assert (round(case["low"], 3), round(case["high"], 3)) == (0.95, 1.1)
    assert round(case["median"], 3) == 1.0 and case["ahead"] == 1
    text = S.render(cases)
    assert "0.950-1.100x" in text and "ahead in 1 of 3 runs" in text and "b (def)" in text


def test_one_run_says_so(tmp_path, monkeypatch):
    """A single run (or runs sharing no case) prints no table: the script exits with a line
    that says why, instead of printing nothing."""
    S = _script()
    (tmp_path / "a").mkdir()
    rows = [_row("M8", "triton", 10.0), _row("M8", "liger", 12.0)]
    (tmp_path / "a" / "rows.json").write_text(json.dumps(rows))
    monkeypatch.setattr("sys.argv", ["process_spread.py", str(tmp_path / "a")])
    with pytest.raises(SystemExit, match="two or more of the runs"):
        S.main()

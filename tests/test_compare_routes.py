"""``scripts/compare_routes.py``: the committed run against the widened one, read from run
directories or printed logs, and the ranges of measured counts where the route led."""

from __future__ import annotations

import json

import pytest

from _scripts import load_script
from _tables import launch_table


def _row(model, dtype, m, backend, ms):
    return {"op": "linear", "model": model, "dtype": dtype, "tokens": m, "backend": backend,
            "median_ms": ms, "passed": True}  # fmt: skip


def _log_line(model, dtype, m, backend, ms, verdict="pass"):
    case = f"silu/separate/{dtype}/{model}/M{m}"
    return f"| {backend} | {case} | fwd | {ms}* (0.1, 0.2) | {ms} | 0.1 | 500 | {verdict} |"


def test_ranges_from_a_run_directory_and_a_log(tmp_path, monkeypatch):
    S = load_script("compare_routes")
    from flash_swiglu.ops import linear as L

    # ours / eager: fused in the committed run, the route in the widened one
    fused = {400: 0.9, 448: 1.2, 520: 0.95, 576: 0.97, 640: 1.1, 768: 0.9}
    route = {400: 1.04, 448: 1.03, 520: 1.05, 576: 1.04, 640: 1.05, 768: 1.03}
    committed, widened = tmp_path / "committed", tmp_path / "widened.log"
    committed.mkdir()
    rows, lines = [], ["| backend | case | pass | median |", "| --- | --- | --- | --- |"]
    model, dt = "llama-3-8b", "float16"
    for m in fused:
        rows += [_row(model, dt, m, "torch", 1.0), _row(model, dt, m, "triton", 1 / fused[m])]
        lines += [_log_line(model, dt, m, "torch", 1.0),
                  _log_line(model, dt, m, "triton", round(1 / route[m], 6))]  # fmt: skip
    # 900: ours failed its check in the widened run, 960: no eager in the committed one
    rows += [_row(model, dt, 900, "torch", 1.0), _row(model, dt, 900, "triton", 1.0)]
    lines += [_log_line(model, dt, 900, "torch", 1.0),
              _log_line(model, dt, 900, "triton", 0.5, verdict="FAIL (vs eager)")]  # fmt: skip
    rows.append(_row(model, dt, 960, "triton", 1.0))
    lines += [_log_line(model, dt, 960, "torch", 1.0), _log_line(model, dt, 960, "triton", 1.0)]
    (committed / "rows.json").write_text(json.dumps(rows))
    widened.write_text("\n".join(lines) + "\n")

    table = {"unfused": {"n14336_k4096:float16": {"TOKENS": [[576, 576]]}}}
    with launch_table(monkeypatch, tmp_path, table, L.unfused_route):
        entries = S.compare(S.load(committed), S.load(widened))
        assert [e["tokens"] for e in entries] == sorted(fused)
        assert [e["committed_routes"] for e in entries] == [m == 576 for m in sorted(fused)]
        assert abs(entries[0]["committed"] - 0.9) < 1e-9
        assert abs(entries[0]["widened"] - 1.04) < 1e-5
        # 576 is routed already: it neither starts nor breaks 520's range; 448 (fused 1.2)
        # and 640 break them; 768 starts one of its own
        key = ("llama-3-8b", "float16")
        assert S.ranges(entries) == {key: [[400, 400], [520, 520], [768, 768]]}
        # a margin drops the counts where the route led by less
        assert S.ranges(entries, margin=0.12) == {key: [[400, 400], [768, 768]]}


def test_main_takes_pairs(tmp_path, capsys, monkeypatch):
    S = load_script("compare_routes")
    from flash_swiglu.ops import linear as L

    runs = []
    for name, ours in (("c1", 1.1), ("w1", 0.9), ("c2", 0.9), ("w2", 1.1)):
        run = tmp_path / name
        run.mkdir()
        m = 385 if name.endswith("1") else 700
        rows = [_row("llama-3.2-1b", "bfloat16", m, "torch", 1.0)]
        rows.append(_row("llama-3.2-1b", "bfloat16", m, "triton", ours))
        (run / "rows.json").write_text(json.dumps(rows))
        runs.append(str(run))
    with launch_table(monkeypatch, tmp_path, {"unfused": {}}, L.unfused_route):
        assert S.main(runs) == 0  # no route in the table: both counts ran fused
        out = capsys.readouterr().out
        assert "llama-3.2-1b bfloat16: route led at [[385, 385]]" in out
        with pytest.raises(SystemExit):
            S.main(runs[:3])

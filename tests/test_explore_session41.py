"""``scripts/explore_session41.py`` and session 41's table changes: the 1024-token bucket's
``ws`` entries of 8B and Qwen and the training table's 8B saving forward are the merged
forward session 40 chose (1B's bucket entry stays the ping-pong one), and the old ping-pong
entries the script timed against them carry every key the launch takes (and are what the
table's ``source`` says was replaced)."""

from __future__ import annotations

import json

from _scripts import load_script


def test_bucket_and_training_entries_are_the_merged_forward():
    S40 = load_script("explore_session40")
    from flash_swiglu.ops import linear as L
    from flash_swiglu.ops import train as T

    chosen = T.ws_entry(S40.entry("m_p4"), "projection_ws", "silu", None)
    table = json.loads((L.CONFIG_DIR / "h200_linear.json").read_text())["ws"]
    for key in ("m1024_n14336_k4096", "m1024_n18944_k3584"):
        assert T.ws_entry(table[key], "projection_ws", "silu", 513) == chosen, key
    # 1B's stays the ping-pong entry (the merged one ran 0.858 of cuBLAS at 640 tokens)
    assert "MERGED" not in table["m1024_n8192_k2048"]
    train = json.loads((L.CONFIG_DIR / "h200_train.json").read_text())["forward_saving_ws"]
    saving = T.ws_entry(train, "forward_saving_ws", "silu", 1024, (14336, 4096))
    assert saving == chosen
    assert T.ws_entry(train, "forward_saving_ws", "silu", 1023, (14336, 4096)) is None
    assert "MERGED" not in T.ws_entry(train, "forward_saving_ws", "silu", 1024)  # other shapes


def test_old_bucket_entries_launch_and_match_the_replaced_ones():
    S = load_script("explore_session41")
    from flash_swiglu.ops import linear as L
    from flash_swiglu.ops import train as T

    table = json.loads((L.CONFIG_DIR / "h200_linear.json").read_text())["ws"]
    kept = dict(table["m1024_n8192_k2048"])
    kept.pop("source")
    assert kept == S.OLD_M1024["1b"]
    entries = {"8b": "m1024_n14336_k4096", "qwen": "m1024_n18944_k3584"}
    for model, entry in entries.items():
        cfg = S.OLD_M1024[model]
        launched = T.ws_entry(cfg, "projection_ws", "silu", None)
        assert all(key in launched for key in T.WS_KEYS["projection_ws"])
        assert "MERGED" not in launched and launched["COOP"] is False
        source = table[entry]["source"]
        at = source.index("replaced: ") + len("replaced: ")
        assert json.JSONDecoder().raw_decode(source, at)[0] == cfg, model


def test_time_and_record_writes_every_row_and_reports_failures(tmp_path, monkeypatch, capsys):
    # explore_session40._time_and_record, shared by fwd, mid and explore_session41's low:
    # each call appends one row, rewrites the JSON with all rows so far, and adds the line
    # against cuBLAS and one per failed label.
    import sys
    import types

    S40 = load_script("explore_session40")
    rounds = {"cublas": [2.0, 2.0], "a": [1.0, 4.0]}
    fake37 = types.SimpleNamespace(_rounds=lambda calls, **kw: (dict(rounds), {"b": "boom"}))
    fake38 = types.SimpleNamespace(against_cublas=lambda model, m, ms, same: f"{model} {m} {ms}")
    monkeypatch.setitem(sys.modules, "explore_session37", fake37)
    monkeypatch.setitem(sys.modules, "explore_session38", fake38)
    rows, lines, out = [], [], tmp_path / "x.json"
    for m in (1, 2):
        S40._time_and_record({}, out, rows, lines, "1b", m, 8, 4, configs={"a": {}})
    assert [r["m"] for r in json.loads(out.read_text())] == [1, 2]
    assert rows[1] == dict(model="1b", m=2, n=8, k=4, ms=rounds, failed={"b": "boom"},
                           configs={"a": {}})  # fmt: skip
    assert lines == [f"1b 1 {rounds}", "  b FAILED: boom", f"1b 2 {rounds}", "  b FAILED: boom"]
    assert capsys.readouterr().out.splitlines() == lines

"""``scripts/explore_session33.py``: each variant's switch, the summary, and the tracer of
the compiled step wrapping functions that exist and putting them back."""

from __future__ import annotations

import os

import pytest

from _scripts import load_script


def test_variants_set_the_plan_switch(monkeypatch):
    S = load_script("explore_session33")
    monkeypatch.setenv(S.PLAN_ENV, "1")  # recorded: the switch is put back after the test
    for on in (False, True, False):
        S._plans(on)()
        assert os.environ[S.PLAN_ENV] == "01"[on]
    from flash_swiglu.ops import linear as L

    assert S.PLAN_ENV == L.PLAN_ENV


def test_summary_takes_medians_per_round_ratios_and_wins():
    S = load_script("explore_session33")
    per = {"plan": [1.0, 4.0, 3.0], "noplan": [2.0, 2.0, 4.0]}
    row = S._summary(per, "plan", "noplan")
    assert (row["plan"], row["noplan"]) == (3.0, 2.0)
    assert row["plan/noplan (median of rounds)"] == pytest.approx(0.75)
    assert row["rounds plan faster"] == 2


def test_the_runtime_tracer_wraps_our_functions_and_restores_them():
    S = load_script("explore_session33")
    from flash_swiglu.ops import mlp as MLP
    from flash_swiglu.ops import train as T

    before = (MLP.forward_train, MLP.backward, T.forward_saving, T._backward_over_saved)
    tr = S._runtime_tracer()
    labels = set(tr.acc)
    assert {"MLP.forward_train", "MLP.backward", "T.forward_saving", "_launch.launch"} <= labels
    assert MLP.forward_train is not before[0]
    tr.restore()
    assert (MLP.forward_train, MLP.backward, T.forward_saving, T._backward_over_saved) == before

"""``scripts/explore_session32.py``: the rounds' rotation and summary, and the two host-time
switches each variant sets and the stages put back."""

from __future__ import annotations

import os

import pytest

from _scripts import load_script


def test_rotation_puts_each_variant_first_in_turn():
    S = load_script("explore_session32")
    names = ["plan", "noplan", "Llama"]
    orders = [S._rotated(names, r) for r in range(4)]
    assert orders == [names, ["noplan", "Llama", "plan"], ["Llama", "plan", "noplan"], names]
    assert names == ["plan", "noplan", "Llama"]  # not reordered in place


def test_summary_takes_medians_per_round_ratios_and_wins():
    S = load_script("explore_session32")
    per = {"plan": [1.0, 4.0, 3.0], "noplan": [2.0, 2.0, 4.0], "Llama": [5.0, 6.0, 7.0]}
    row = S._summary(per, "plan", "noplan")
    assert (row["plan"], row["noplan"], row["Llama"]) == (3.0, 2.0, 6.0)
    # Ratios 0.5, 2.0, 0.75: their median, not the ratio of the medians (1.5).
    assert row["plan/noplan (median of rounds)"] == pytest.approx(0.75)
    assert row["rounds plan faster"] == 2
    assert row["rounds"] is per
    with pytest.raises(ValueError):  # rounds missing for one variant
        S._summary({"plan": [1.0], "noplan": []}, "plan", "noplan")


def test_switches_set_both_variables_and_restore_puts_back_unset(monkeypatch):
    S = load_script("explore_session32")
    plan_env, fast_env = S._envs()
    assert fast_env == "FLASH_SWIGLU_FAST_LAUNCH" and plan_env == "FLASH_SWIGLU_PLAN_CACHE"
    monkeypatch.delenv(plan_env, raising=False)
    monkeypatch.setenv(fast_env, "0")
    saved = S._saved_env()
    for plan, fast in ((True, True), (False, True), (False, False), (True, False)):
        S._switches(plan, fast)
        assert (os.environ[plan_env], os.environ[fast_env]) == ("01"[plan], "01"[fast])
    S._restore_env(saved)
    assert plan_env not in os.environ and os.environ[fast_env] == "0"
    variants = S.AB_VARIANTS
    assert variants["plan"][:2] == (True, True) and variants["noplan"][:2] == (False, True)
    gen = S.GENERATE_VARIANTS
    assert gen["patched, no plan"] == (True, False, True)
    assert gen["patched, neither"] == (True, False, False)

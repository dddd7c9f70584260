"""``scripts/explore_session31.py``: the tracer that the ``trace`` stages time the call path
with adds up each wrapped function's calls and puts every original back."""

from __future__ import annotations

import types

import torch

from _scripts import load_script


def test_tracer_counts_and_restores_functions_methods_and_inherited_methods():
    S = load_script("explore_session31")
    mod = types.SimpleNamespace(f=lambda a: a + 1)

    class K:
        @staticmethod
        def g(a):
            return a * 2

    f0, g0 = mod.f, K.__dict__["g"]
    assert "sum" not in torch.Tensor.__dict__  # a method of torch's C base class
    tr = S._Tracer()
    tr.wrap(mod, "f", "f")
    tr.wrap(K, "g", "g", static=True)
    tr.wrap(torch.Tensor, "sum", "sum")
    assert mod.f(1) == 2 and K.g(3) == 6 and torch.ones(3).sum().item() == 3
    assert mod.f(2) == 3
    steps = tr.per_step(1)
    assert {k: v["calls"] for k, v in steps.items()} == {"f": 2, "g": 1, "sum": 1}
    assert all(v["us"] >= 0 for v in steps.values())
    tr.on = False  # off: called through, not counted
    mod.f(0)
    assert tr.per_step(1)["f"]["calls"] == 2
    tr.reset()
    assert tr.per_step(1) == {}
    tr.restore()
    assert mod.f is f0 and K.__dict__["g"] is g0 and "sum" not in torch.Tensor.__dict__

"""``scripts/explore_session28.py``: each variant's calls run with its ``ops.train.LEAN`` and
its table settings, restored after."""

from __future__ import annotations

from _scripts import load_script


def test_lean_variants_set_and_restore_the_switch():
    from flash_swiglu.ops import train as T

    S = load_script("explore_session28")
    assert {v[-1] for v in S.VARIANTS.values()} == {True, False}
    seen = []

    class Step:  # the part of the benchmark's Step the wrapper calls
        def outputs(self):
            seen.append((T.LEAN, T.CHUNK_N))
            return []

    before = T.LEAN
    S._Lean(Step(), (None, True, 512, False)).outputs()
    S._Lean(Step(), (None, True, None, True)).outputs()
    assert seen == [(False, 512), (True, None)]
    assert T.LEAN is before and T.CHUNK_N is None

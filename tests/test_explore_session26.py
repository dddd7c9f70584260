"""``scripts/explore_session26.py``: the row counts ``rows`` tries and the candidates of
``rows2`` / ``rows3`` are launch-table entries the launcher accepts."""

from __future__ import annotations

from _scripts import load_script


def _script():
    return load_script("explore_session26")


def test_rows_cut_n_into_whole_waves():
    """Each row count is the fewest that put N in 1-4 whole waves of 132 programs, at least
    half and less than the tile's rows; the ones session 26 timed."""
    S = _script()
    for n, block_n, expected in [
        (8192, 64, [63, 32]),  # Llama-3.2-1B
        (14336, 128, [109]),  # Llama-3-8B
        (18944, 64, [48, 36]),  # Qwen2.5-7B
        (18944, 16, []),
        (28672, 128, [109, 73]),  # Llama-3-70B
    ]:
        got = S._rows_for(n, block_n)
        assert got == expected, (n, block_n, got)
        for rows in got:  # the fewest rows that fit N in some whole number of waves
            assert block_n // 2 <= rows < block_n
            assert any(-(-n // rows) <= S.SMS * w < -(-n // (rows - 1)) for w in range(1, 5)), rows


def test_overrides_are_entries():
    from flash_swiglu.ops import linear as L

    S = _script()
    known = set(L._CONFIG_KEYS) | set(L._OPTIONAL_KEYS)
    for spec in (S.ROWS2, S.ROWS3):
        for overrides in spec.values():
            assert overrides and all(set(o) <= known for o in overrides)
    assert S._label(dict(BLOCK_N=128, BLOCK_K=128, num_warps=8, num_stages=3, ROWS=110)) == (
        "bn128 bk128 w8 s3 rows110"
    )

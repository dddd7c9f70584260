"""``scripts/explore_session52.py``: its ``fine1b`` overrides are launch-table entries the
launcher accepts, with distinct labels, and ``xread``'s direct launch computes the token rows
it is given and stores nothing past them (through Triton's interpreter on the CPU)."""

from __future__ import annotations

import pytest
import torch

from _scripts import load_script
from flash_swiglu import reference


def test_fine1b_overrides_are_entries_with_distinct_labels():
    from flash_swiglu.ops import linear as L

    S = load_script("explore_session52")
    known = set(L._CONFIG_KEYS) | set(L._OPTIONAL_KEYS)
    entry = dict(BLOCK_N=64, BLOCK_K=128, num_warps=4, num_stages=4, K_ROTATE=5)
    for overrides in S.FINE_1B.values():
        assert all(set(o) <= known for o in overrides)
        assert len({S.label(dict(entry, **o)) for o in overrides}) == len(overrides)
        # a program owns at most its tile's rows
        assert all(0 <= o["ROWS"] < o["BLOCK_N"] for o in overrides)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the interpreter's check, on the CPU")
@pytest.mark.parametrize(("block_t", "m", "rot"), [(16, 8, 0), (16, 4, 1), (16, 0, 0), (32, 3, 1)])
def test_masked_launch_uses_only_its_tokens(block_t, m, rot):
    S = load_script("explore_session52")
    gen = torch.Generator().manual_seed(52 + m)
    n, k = 128, 256  # whole 64-row tiles and 128-column steps, as the kernel is launched
    wg = torch.randn(n, k, generator=gen) / k**0.5
    wu = torch.randn(n, k, generator=gen) / k**0.5
    x = torch.randn(block_t, k, generator=gen)
    x[m:] = float("nan")  # rows past m: not the kernel's tokens
    outs = torch.full((block_t, n), float("nan"))
    got = S.masked_launch(x, wg, wu, outs, m, block_t, rot)
    ref = reference.swiglu_linear_reference(x[:m].double(), wg.double(), wu.double())
    torch.testing.assert_close(got.double(), ref, rtol=1e-4, atol=1e-5)
    assert outs[m:].isnan().all()  # never stored

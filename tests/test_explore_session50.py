"""``scripts/explore_session50.py``: its dh-GEMM variants (the backward's loader and main loop
with an epilogue that only stores dh) compile for sm_90 as the script launches them: every
variant in twelve warps, within one block's shared memory, with wgmma and TMA loads and no
spills. Their numerics are checked by the script itself on the GPU, before it times them."""

from __future__ import annotations

from _scripts import load_script

from _gate import SMEM_LIMIT, run_gate


def test_dh_gemm_variants_compile_for_sm90():
    S = load_script("explore_session50")
    rows = run_gate("../scripts/explore_session50.py", "gate")  # run_gate's paths: tests/
    assert [r["variant"] for r in rows] == list(S.VARIANTS)
    for r in rows:
        assert r["warps"] == 12, r
        assert r["shared"] <= SMEM_LIMIT, r
        assert r["wgmma"] and r["bulk_tensor"], r
        assert not r["ptx_local"] and r["sass_spills"] == 0, r

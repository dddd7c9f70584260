"""``scripts/explore_session51.py``: its epilogue variants (the committed backward with parts
of its epilogue switched off, cache hints, stores and loads by TMA) compile for sm_90 as the
script launches them: every variant in twelve warps, within one block's shared memory, with
wgmma and TMA loads and no spills. Their numerics are checked by the script itself on the GPU,
before it times them; its ``ncu-read`` summary is checked here on a small source page."""

from __future__ import annotations

import csv
import gzip

from _scripts import load_script

from _gate import SMEM_LIMIT, run_gate


def test_epilogue_variants_compile_for_sm90():
    S = load_script("explore_session51")
    rows = run_gate("../scripts/explore_session51.py", "gate")  # run_gate's paths: tests/
    names = [r["variant"] for r in rows]
    assert names == ["epi silu", "epi trivial", "epi silu ef", "epi silu cg", *S.TMA_VARIANTS]
    for r in rows:
        assert r["warps"] == 12, r
        assert r["shared"] <= SMEM_LIMIT, r
        assert r["wgmma"] and r["bulk_tensor"], r
        assert not r["ptx_local"] and r["sass_spills"] == 0, r


def test_ncu_read_counts_the_spins_per_barrier(tmp_path):
    """Two kernels' source pages: the samples of each try-wait and of the retry branch on its
    predicate (not another predicate's) are summed per barrier offset."""
    S = load_script("explore_session51")
    cols = ["Address", "Source", "Warp Stall Sampling (All Samples)", "stall_long_sb",
            "stall_barrier", "stall_long_sb (Not Issued)"]  # fmt: skip
    page = [
        ["Kernel Name", "k0"],
        cols,
        ["0x0", "SYNCS.PHASECHK.TRANS64.TRYWAIT P0, [UR4+0x31000], R2", "3", "3", "0", "9"],
        ["0x10", "@!P1  BRA 0x100", "50", "50", "0", "0"],
        ["0x20", "@!P0  BRA 0x200", "7", "7", "0", "0"],
        ["0x30", "FFMA R1, R2, R3, R4", "40", "0", "40", "0"],
        ["Kernel Name", "k1"],
        cols,
        ["0x0", "SYNCS.PHASECHK.TRANS64.TRYWAIT P2, [R1+UR5+0x31060], R2", "1", "1", "0", "0"],
        ["0x10", "@!P2  BRA 0x100", "9", "9", "0", "0"],
    ]
    src = tmp_path / "src.csv.gz"
    with gzip.open(src, "wt", newline="") as f:
        csv.writer(f).writerows(page)
    lines = S.ncu_read(src)
    assert len(lines) == 2
    assert lines[0].startswith(f"{S.NCU_LABELS[0]:13s} k0: 100 samples;"), lines[0]
    assert "long_sb 60.0%" in lines[0] and "barrier 40.0%" in lines[0], lines[0]
    assert lines[0].endswith("barrier spins: 0x31000 10.0%"), lines[0]
    assert lines[1].endswith("barrier spins: 0x31060 100.0%"), lines[1]

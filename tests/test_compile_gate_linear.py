"""Compile gate for the fused gate/up projection: every kernel and committed config compiles
for sm_90 on the CPU, with the code we expect.

TMA path: ``wgmma`` and ``cp.async.bulk.tensor`` in the PTX. Every path: no local-memory
traffic in PTX or SASS, shared memory within the 232448-byte limit of a Hopper block.
"""

from __future__ import annotations

import json

import pytest

from _gate import SMEM_LIMIT, run_gate


@pytest.fixture(scope="module")
def compiled():
    return run_gate("compile_gate_linear.py")


def test_every_path_and_committed_config_compiled(compiled):
    from flash_swiglu.ops import linear as L

    assert {r["path"] for r in compiled} == {"tma", "pointer", "decode", "decode_tma", "gemv"}
    sources = {r["source"] for r in compiled}
    assert {"builtin K_ROTATE", "builtin TMA K_ROTATE"} <= sources  # the opt-in decode order
    assert {"builtin ROWS", "builtin TMA ROWS"} <= sources  # fewer rows a program than its tile
    for table in L.CONFIG_DIR.glob("*_linear.json"):
        data = json.loads(table.read_text())
        for path in L.BUILTIN:
            for key, entry in data.get(path, {}).items():
                if "KERNEL" not in entry:  # {"KERNEL": "decode"} names no configuration
                    assert f"{table.name}:{key}" in sources, key
    assert {r["activation"] for r in compiled} == {
        "silu",
        "gelu",
        "gelu_tanh",
        "relu",
        "swiglu_oai",
    }


def test_tma_path_uses_wgmma_and_bulk_tensor_copies(compiled):
    # The decode kernel's TMA variant too: its operands come by bulk tensor copies, never
    # by per-thread loads (cp.async).
    assert [r for r in compiled if r["path"] == "decode_tma"]
    for r in compiled:
        if r["path"] == "tma":
            assert r["wgmma"] and r["bulk_tensor"], r
        if r["path"] == "decode_tma":
            assert r["bulk_tensor"] and not r["cp_async"], r


def test_decode_kernels_wait_for_the_previous_kernel_first(compiled):
    # Launched as programmatic dependent launches on sm_90 (ops.linear.use_pdl), the decode
    # and matrix-vector kernels carry the wait (griddepcontrol.wait); the others do not.
    for r in compiled:
        assert r["grid_wait"] == (r["path"] in ("decode", "decode_tma", "gemv")), r


def test_split_k_decode_counts_arrivals_with_one_acq_rel_atomic(compiled):
    # The partials are published by one GPU-scope release-acquire increment per program,
    # issued by one thread after a barrier; kernels without SPLIT_K have no atomics.
    split = [r for r in compiled if r["config"].get("SPLIT_K", 1) > 1]
    assert split
    for r in compiled:
        if r["config"].get("SPLIT_K", 1) > 1:
            assert r["atomics"] == ["atom.global.gpu.acq_rel.add.u32"], r
        else:
            assert r["atomics"] == [], r


def _mma_rows(r: dict) -> int:
    """Rows of the MMA tile: the weight tile for the decode kernel (operands swapped)."""
    return r["config"]["BLOCK_N"] if r["path"].startswith("decode") else r["config"]["BLOCK_M"]


def test_16_bit_and_tf32_products_use_wgmma(compiled):
    # wgmma takes tiles of 64 rows or more. The decode kernel's swapped operands give such
    # tiles even for one token when BLOCK_N >= 64; the narrower weight tiles the table picks
    # for some decode shapes (more programs than SMs) run mma.sync, which is fine for a
    # memory-bound kernel but is checked to be what was compiled.
    mma = [r for r in compiled if r["precision"] not in ("ieee", "none")]
    assert [r for r in mma if _mma_rows(r) >= 64]
    for r in mma:
        assert r["wgmma"] if _mma_rows(r) >= 64 else r["mma_sync"], r


def test_gemv_kernel_runs_on_cuda_cores_with_vector_loads(compiled):
    # No MMA of any kind in the matrix-vector kernel; aligned weight rows are read 16 bytes
    # at a time (ld.global.v4 in the PTX) wherever a thread's share of a weight slice has
    # 16 bytes.
    gemv = [r for r in compiled if r["path"] == "gemv"]
    assert gemv
    itemsize = {"torch.bfloat16": 2, "torch.float16": 2, "torch.float32": 4}
    for r in gemv:
        assert not r["wgmma"] and not r["mma_sync"], r
        c = r["config"]
        share = c["BLOCK_N"] * c["BLOCK_K"] * itemsize[r["dtype"]] // (32 * c["num_warps"])
        if r["aligned"] and share >= 16:
            assert r["vector_loads"], r


def test_no_spills_and_shared_memory_fits(compiled):
    for r in compiled:
        assert not r["ptx_local"], r
        assert r["sass_checked"], "nvdisasm from Triton's wheel did not run"
        assert not r["sass_spills"], r
        assert r["shared"] <= SMEM_LIMIT, r


SM_SHARED = 233472  # shared memory of one Hopper SM, bytes (each resident block adds 1 KB)
SM_REGISTERS = 65536


def test_programs_per_sm_fit_one_sm(compiled):
    # A table entry that asks for two resident programs per SM (the persistent grid is then
    # twice the SM count) must fit them: shared memory and registers for both.
    two = [r for r in compiled if r["config"].get("PROGRAMS_PER_SM", 1) > 1]
    assert two, "no committed entry with PROGRAMS_PER_SM > 1"
    for r in two:
        p = r["config"]["PROGRAMS_PER_SM"]
        assert p * (r["shared"] + 1024) <= SM_SHARED, r
        if r["regs"] is not None:
            assert p * r["regs"] * r["config"]["num_warps"] * 32 <= SM_REGISTERS, r

"""Compile gate for the training kernel: every mode ``ops/train.py`` launches compiles for
sm_90 on the CPU with ``wgmma`` and bulk tensor copies (16-bit and TF32), no spills, and
shared memory within a Hopper block's 232448 bytes."""

from __future__ import annotations

import json

import pytest

from _gate import SMEM_LIMIT, run_gate


@pytest.fixture(scope="module")
def gate():
    return run_gate("compile_gate_mlp.py")


@pytest.fixture(scope="module")
def compiled(gate):
    """The GEMM kernel's variants."""
    from flash_swiglu.ops import train as T

    return [r for r in gate if r["mode"] != T.SPLIT_ENTRY]


@pytest.fixture(scope="module")
def split(gate):
    """``_glu_bwd_split_kernel``'s variants (the epilogue after a cuBLAS dh)."""
    from flash_swiglu.ops import train as T

    return [r for r in gate if r["mode"] == T.SPLIT_ENTRY]


def test_every_mode_and_activation_compiled(compiled):
    from flash_swiglu.ops import train as T

    assert {r["mode"] for r in compiled} == set(T.CONFIGS)
    for table in T.L.CONFIG_DIR.glob("*_train.json"):
        committed = {mode for mode in T.CONFIGS if mode in json.loads(table.read_text())}
        assert committed == {r["mode"] for r in compiled if r["source"] == table.name}
    assert {r["activation"] for r in compiled} == {
        "silu",
        "gelu",
        "gelu_tanh",
        "relu",
        "swiglu_oai",
    }


def test_mma_products_use_wgmma_and_bulk_tensor_copies(compiled):
    for r in compiled:
        assert r["bulk_tensor"], r
        if r["precision"] != "ieee":
            assert r["wgmma"], r


def test_no_spills_and_shared_memory_fits(compiled):
    for r in compiled:
        assert not r["ptx_local"], r
        assert r["sass_checked"], "nvdisasm from Triton's wheel did not run"
        assert not r["sass_spills"], r
        assert r["shared"] <= SMEM_LIMIT, r


def test_h200_backward_entry_fits_two_programs_per_sm(compiled):
    # The committed MLP backward tile was chosen (and measured) because two SiLU programs fit
    # one SM, so that one's epilogue overlaps the other's main loop. The erf/tanh GELUs and
    # gpt-oss's clamped GLU take 139-165 registers there: one program per SM, still correct.
    rows = [
        r
        for r in compiled
        if r["source"] == "h200_train.json"
        and r["mode"] == "mlp_backward"
        and r["activation"] in ("silu", "relu")
        and "float32" not in r["dtype"]
    ]
    assert rows
    for r in rows:
        assert 2 * (r["shared"] + 1024) <= 233472, r
        assert r["regs"] is not None and 2 * r["regs"] * r["config"]["num_warps"] * 32 <= 65536, r


def test_split_epilogue_compiled_without_spills(split):
    """Every activation in bf16 (silu in fp16 and fp32), with and without h: 128-bit global
    loads, no spills, no tensor-core or bulk-copy instructions (it has no product)."""
    assert {(r["dtype"], r["activation"], r["config"]["STORE_H"]) for r in split} >= {
        ("torch.bfloat16", act, store_h)
        for act in ("silu", "gelu", "gelu_tanh", "relu", "swiglu_oai")
        for store_h in (True, False)
    }
    for r in split:
        assert r["sass_checked"] and not r["sass_spills"] and not r["ptx_local"], r
        assert r["vector_loads"], r
        assert not r["wgmma"] and not r["bulk_tensor"], r

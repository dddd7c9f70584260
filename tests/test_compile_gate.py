"""Compile gate: every kernel compiles for sm_90 on the CPU, with the code we expect.

Elementwise kernels: 128-bit global loads and stores for aligned shapes, no local-memory
traffic in PTX or SASS, shared memory within the 232448-byte limit of a Hopper block.
"""

from __future__ import annotations

import pytest

from _gate import run_gate


@pytest.fixture(scope="module")
def compiled():
    return run_gate("compile_gate.py")


def test_every_variant_compiled(compiled):
    kinds = {(r["kernel"], r["interleaved"]) for r in compiled}
    assert kinds == {("fwd", False), ("fwd", True), ("bwd", False), ("bwd", True)}
    wide = {(r["kernel"], r["interleaved"]) for r in compiled if r["col_64"]}
    assert wide == kinds  # the 64-bit column offsets of spans past 2^31
    assert {r["activation"] for r in compiled} == {
        "silu",
        "gelu",
        "gelu_tanh",
        "relu",
        "swiglu_oai",
    }


def test_aligned_elementwise_loads_and_stores_are_128_bit(compiled):
    for r in compiled:
        if r["aligned"]:
            assert r["ld_v4"] and r["st_v4"], r


def test_no_spills_and_shared_memory_fits(compiled):
    for r in compiled:
        assert not r["ptx_local"], r
        assert r["sass_checked"], "nvdisasm from Triton's wheel did not run"
        assert not r["sass_spills"], r
        assert r["shared"] <= 232448, r

"""Test tiers.

- Kernel tier (every test not marked ``gpu``): runs the Triton kernels on CUDA when a GPU is
  present, otherwise on the CPU through Triton's interpreter. ``TRITON_INTERPRET=1`` has to
  be set before ``triton`` is first imported, which is why it is set here, at collection.
- Compile gate (``test_compile_gate.py``): compiles every kernel for sm_90 on the CPU.
- GPU tier (marker ``gpu``): bf16, large shapes, CUDA graphs; skipped without CUDA.
"""

import os
import zlib

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (GPU tier)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def device() -> str:
    return DEVICE


# Added to every test's seed: a stress run draws other inputs for the whole suite with
# ``FLASH_SWIGLU_TEST_SEED=N uv run pytest``.
SEED_OFFSET = int(os.environ.get("FLASH_SWIGLU_TEST_SEED", "0"))


@pytest.fixture(autouse=True)
def _seed(request):
    # Random inputs drawn from a seed of the test's own id: the same whether the test runs
    # alone or in the suite, in any order, so a failure is reproduced by re-running it.
    torch.manual_seed(zlib.crc32(request.node.nodeid.encode()) + SEED_OFFSET)


@pytest.fixture(autouse=True)
def _fresh_plans():
    # The projection launcher's plans (ops.linear._PLANS) are keyed by what its choices read,
    # but not by a test's monkeypatched helpers: every test starts without them.
    from flash_swiglu.ops import linear

    linear.clear_plans()
    yield
    linear.clear_plans()


@pytest.fixture
def row_invariant_dot(monkeypatch):
    """Under Triton's interpreter ``tl.dot`` is NumPy's ``matmul``, a BLAS call. On some CPUs
    (OpenBLAS's Haswell and Zen kernels, which an AMD EPYC machine takes) it rounds a row of
    the product differently by where the row sits in the tile. On the GPU a row's product
    does not depend on its place, and tests that compare the bits of a tile moved along M
    with an unmoved one's rely on that. This fixture gives the interpreter's dot the same
    property (``einsum``'s own loops, the accumulator's dtype as before; 8-bit floats keep
    Triton's path). Nothing changes on a GPU."""
    if DEVICE != "cpu":
        return
    from triton.runtime import interpreter as interp

    real = interp.InterpreterBuilder.create_dot

    def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
        if a.dtype.primitive_bitwidth == 8 or b.dtype.primitive_bitwidth == 8:
            return real(self, a, b, d, input_precision, max_num_imprecise_acc)
        acc = d.data.dtype
        prod = np.einsum("...ik,...kj->...ij", a.data.astype(acc), b.data.astype(acc))
        return interp.TensorHandle(prod + d.data, d.dtype.scalar)

    monkeypatch.setattr(interp.InterpreterBuilder, "create_dot", create_dot)

"""The implementations a benchmark compares, and why one may be unavailable.

``torch`` (PyTorch eager) is the baseline of every case: its error is the tolerance yardstick
and its time the speedup denominator, so it is always measured. ``compile`` is
``torch.compile`` of exactly the eager function, ``triton`` is this library, ``liger`` is
Liger-Kernel where it has a fused kernel for the case. Ops with more peers (``--op linear``:
``torch-packed``, ``compile-max``, ``cublas``, ``liger-mul``; ``--op mlp``: ``liger-fused``,
``triton-recompute``) list them in their case module.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import Any

import torch

BACKENDS = ("torch", "compile", "triton", "liger")
BASELINE = "torch"
# The plain cuBLAS product of a GEMM case: the rate every backend's is held against.
SPEED_OF_LIGHT = "cublas"


class Skip(Exception):
    """A backend cannot run a case; the message is the reason shown in the table."""


def unavailable(
    backend: str, device: torch.device, gemm_dtype: torch.dtype | None = None
) -> str | None:
    """Why ``backend`` cannot run on ``device`` at all (None when it can). ``gemm_dtype``: the
    dtype of a case whose library call runs matrix-product kernels (``--op linear``, ``mlp``)."""
    if backend == "triton" or backend.startswith("triton-"):  # triton-recompute (mlp)
        if importlib.util.find_spec("triton") is None:
            return "triton not installed"
        if device.type == "cpu":
            from flash_swiglu.kernels import interpreting

            if not interpreting():
                return (
                    "on the CPU the Triton kernels run only when TRITON_INTERPRET=1 is set "
                    "before triton is imported (otherwise the PyTorch fallback would be timed)"
                )
            if gemm_dtype == torch.bfloat16:
                return (
                    "bf16 matrix products on the CPU take the library's PyTorch path (the "
                    "interpreter's bf16 tl.dot is wrong): no kernel would be checked"
                )
    if backend.startswith("liger"):
        if importlib.util.find_spec("liger_kernel") is None:
            return "liger_kernel not installed"
        if device.type != "cuda":
            return "Liger-Kernel needs a CUDA device"
    return None


def compile_eager(
    fn: Callable[..., torch.Tensor], mode: str | None = None
) -> Callable[..., torch.Tensor]:
    """``torch.compile`` of ``fn`` with a clean Dynamo cache.

    Each case builds its eager function as a new closure of the same code object; without the
    reset those closures would share one recompile budget, and after it ran out Dynamo would
    silently fall back to eager. ``fullgraph=True`` makes a graph break an error instead of a
    silently slower measurement. ``mode`` is ``torch.compile``'s.

    Donated buffers are turned off: with them a compiled backward frees the tensors its
    forward saved, and the ``bwd`` pass runs one forward's backward many times
    (``retain_graph=True``), which they forbid.
    """
    import torch._functorch.config  # not imported by ``import torch``

    torch._functorch.config.donated_buffer = False
    torch._dynamo.reset()
    return torch.compile(fn, fullgraph=True, dynamic=False, mode=mode)


def liger_object(module: str, name: str) -> Any:
    """``liger_kernel.ops.<module>.<name>``, or :class:`Skip` saying why not."""
    try:
        return getattr(importlib.import_module(f"liger_kernel.ops.{module}"), name)
    except Exception as e:  # an incompatible Liger install must not stop the benchmark
        raise Skip(f"liger_kernel.ops.{module}.{name} unusable: {type(e).__name__}: {e}") from e


def liger_function(module: str, name: str) -> Callable[..., torch.Tensor]:
    """``liger_kernel.ops.<module>.<name>.apply``, or :class:`Skip` saying why not."""
    return liger_object(module, name).apply

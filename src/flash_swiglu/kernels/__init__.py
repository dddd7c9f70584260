"""``@triton.jit`` kernels only: no torch, no shape logic (that lives in ``flash_swiglu.ops``)."""

from flash_swiglu.kernels.elementwise import _glu_bwd_kernel, _glu_fwd_kernel


def interpreting() -> bool:
    """True when these kernels were defined under ``TRITON_INTERPRET=1`` (run on the CPU)."""
    return type(_glu_fwd_kernel).__name__ == "InterpretedFunction"


__all__ = ["_glu_bwd_kernel", "_glu_fwd_kernel", "interpreting"]

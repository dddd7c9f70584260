"""flash-swiglu: IO-aware Triton kernels for the gated MLP of LLMs."""

from flash_swiglu.functional import (
    swiglu,
    swiglu_linear,
    swiglu_linear_packed,
    swiglu_mlp,
    swiglu_packed,
)
from flash_swiglu.modules import SwiGLUMLP

__version__ = "0.1.0"
__all__ = [
    "SwiGLUMLP",
    "swiglu",
    "swiglu_linear",
    "swiglu_linear_packed",
    "swiglu_mlp",
    "swiglu_packed",
]

"""The tolerance rule of DESIGN.md, in one place.

A low-precision result passes when its error against the float64 reference is at most twice
the error of PyTorch computing the same thing in the same dtype, plus a floor of a few ulps
of the output's scale. fp32 and fp64 results are held to their own precision the same way:
PyTorch's fp32 error is itself a few fp32 ulps, so the bound stays near 1e-6 relative.
"""

from __future__ import annotations

import torch

FLOOR_ULPS = 2.0


def max_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    if x.numel() == 0:
        return 0.0
    return (x.double() - ref.double()).abs().max().item()


def bound(torch_result: torch.Tensor, ref: torch.Tensor, operand_scale: float = 0.0) -> float:
    """The rule's bound. The floor is a few ulps of the larger of the output's scale and
    ``operand_scale``: where a result is a difference of larger terms (the derivative of a GELU
    near its minimum), fp32 accuracy means ulps of those terms, and a tensor of a few elements
    can have an output scale far below them."""
    if ref.numel() == 0:
        return 0.0
    eps = torch.finfo(torch_result.dtype).eps
    scale = max(ref.double().abs().max().item(), operand_scale)
    return 2.0 * max_err(torch_result, ref) + FLOOR_ULPS * eps * max(scale, 1e-30)


def assert_within_rule(name: str, result, torch_result, ref, operand_scale: float = 0.0) -> None:
    assert result.shape == ref.shape, f"{name}: shape {tuple(result.shape)} != {tuple(ref.shape)}"
    assert result.dtype == torch_result.dtype, f"{name}: dtype {result.dtype}"
    err, b = max_err(result, ref), bound(torch_result, ref, operand_scale)
    assert err <= b, (
        f"{name}: max error {err:.3e} exceeds bound {b:.3e} "
        f"(torch: {max_err(torch_result, ref):.3e})"
    )

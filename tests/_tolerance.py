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


def bound(torch_result: torch.Tensor, ref: torch.Tensor) -> float:
    if ref.numel() == 0:
        return 0.0
    eps = torch.finfo(torch_result.dtype).eps
    scale = ref.double().abs().max().item()
    return 2.0 * max_err(torch_result, ref) + FLOOR_ULPS * eps * max(scale, 1e-30)


def assert_within_rule(name: str, result, torch_result, ref) -> None:
    assert result.shape == ref.shape, f"{name}: shape {tuple(result.shape)} != {tuple(ref.shape)}"
    assert result.dtype == torch_result.dtype, f"{name}: dtype {result.dtype}"
    err, b = max_err(result, ref), bound(torch_result, ref)
    assert err <= b, (
        f"{name}: max error {err:.3e} exceeds bound {b:.3e} "
        f"(torch: {max_err(torch_result, ref):.3e})"
    )

"""Oracles written independently of ``flash_swiglu.reference``, so that one slip cannot
agree with itself in the kernels' reference and in the tests."""

from __future__ import annotations

import torch


def gpt_oss_glu(gate: torch.Tensor, up: torch.Tensor, alpha: float, limit: float) -> torch.Tensor:
    """gpt-oss's clamped GLU from its model code: the gate clamped from above only, the up
    projection to [-limit, limit], then ``g * sigmoid(alpha * g) * (u + 1)``. The clamps are
    masks, so the gradient passes at exactly +-limit as the library's does (torch.clamp's
    convention there changed between PyTorch 2.13 and 2.15)."""
    g = torch.where(gate <= limit, gate, torch.full_like(gate, limit))
    inside = (up >= -limit) & (up <= limit)
    u = torch.where(inside, up, torch.sign(up) * limit)
    return g * torch.sigmoid(alpha * g) * (u + 1)

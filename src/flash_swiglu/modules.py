"""``SwiGLUMLP``: the gated MLP as an ``nn.Module`` whose state dict is a ``LlamaMLP``'s."""

from __future__ import annotations

import torch
from torch import nn

from flash_swiglu.functional import swiglu_mlp


class SwiGLUMLP(nn.Module):
    """``down_proj(act(gate_proj(x)) * up_proj(x))`` through ``swiglu_mlp``."""

    def __init__(
        self,
        hidden_size: int,
        intermediate_size: int,
        *,
        bias: bool = False,
        activation: str = "silu",
        recompute: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        kw = dict(bias=bias, device=device, dtype=dtype)
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, **kw)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, **kw)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, **kw)
        self.activation = activation
        self.recompute = recompute

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return swiglu_mlp(
            x,
            self.gate_proj.weight,
            self.up_proj.weight,
            self.down_proj.weight,
            self.gate_proj.bias,
            self.up_proj.bias,
            self.down_proj.bias,
            activation=self.activation,
            recompute=self.recompute,
        )

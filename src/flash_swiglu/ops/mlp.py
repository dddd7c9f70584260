"""The whole gated MLP ``down(act(x @ w_gate^T + b_gate) * (x @ w_up^T + b_up)) + b_down``.

(Being replaced by the fused forward/backward; for now the gate/up projection is the fused
``ops.linear`` kernel and the down projection a torch matmul.)
"""

from __future__ import annotations

import torch.nn.functional as F

from flash_swiglu.ops import linear as L


def check_down(x, w_gate, w_down, b_down) -> None:
    """Shapes: ``w_down [K, N]`` for ``x [..., K]`` and ``w_gate [N, K]``; ``b_down [K]``."""
    L._check_like(x, {"w_down": w_down, "b_down": b_down})
    n, k = w_gate.shape
    if w_down.dim() != 2 or tuple(w_down.shape) != (k, n):
        raise ValueError(
            f"w_down must have shape [K, N] = ({k}, {n}) for w_gate of shape "
            f"{tuple(w_gate.shape)}, got {tuple(w_down.shape)}"
        )
    if b_down is not None and tuple(b_down.shape) != (k,):
        raise ValueError(f"b_down must have shape [K] = ({k},), got {tuple(b_down.shape)}")


def mlp(x, wg, wu, wd, bg, bu, bd, activation, recompute, alpha, limit):
    h = L.linear(x, wg, wu, bg, bu, activation, alpha, limit)
    return F.linear(h, wd, bd)


__all__ = ["check_down", "mlp"]

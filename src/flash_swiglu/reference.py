"""Pure-PyTorch references: the CPU path, the tests' float64 oracle and the benchmark's checks.

They compute exactly what the kernels compute: inputs upcast to fp32 (fp64 stays fp64), the
activation in that precision, the result rounded once to the input dtype. Called on float64
inputs they are the oracle the kernels are tested against.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from flash_swiglu._names import OAI_ALPHA, OAI_LIMIT


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def act_glu(
    gate: torch.Tensor,
    up: torch.Tensor,
    activation: str = "silu",
    alpha: float = OAI_ALPHA,
    limit: float = OAI_LIMIT,
) -> torch.Tensor:
    """``act(gate) * up`` in the dtype of the inputs (no up- or down-casting)."""
    if activation == "silu":
        return F.silu(gate) * up
    if activation == "gelu":
        return F.gelu(gate) * up
    if activation == "gelu_tanh":
        return F.gelu(gate, approximate="tanh") * up
    if activation == "relu":
        return F.relu(gate) * up
    if activation == "swiglu_oai":
        # Clamps written with torch.where, not torch.clamp: the gradient at exactly +-limit
        # is a convention, and torch.clamp's changed between releases (it passes there in
        # PyTorch 2.13 and stops there in 2.15). Here, as in the kernels, it passes.
        gate = torch.where(gate > limit, limit, gate)
        up = torch.where(up > limit, limit, torch.where(up < -limit, -limit, up))
        return gate * torch.sigmoid(alpha * gate) * (up + 1)
    raise ValueError(f"unknown activation {activation!r}")


def glu_forward(
    gate: torch.Tensor,
    up: torch.Tensor,
    activation: str = "silu",
    alpha: float = OAI_ALPHA,
    limit: float = OAI_LIMIT,
) -> torch.Tensor:
    """``act(gate) * up`` computed in fp32 (fp64 for fp64 inputs), rounded once."""
    cd = _compute_dtype(gate.dtype)
    return act_glu(gate.to(cd), up.to(cd), activation, alpha, limit).to(gate.dtype)


def glu_backward(
    gate: torch.Tensor,
    up: torch.Tensor,
    dout: torch.Tensor,
    activation: str = "silu",
    alpha: float = OAI_ALPHA,
    limit: float = OAI_LIMIT,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(dgate, dup)`` computed in fp32 (fp64 for fp64 inputs), each rounded once.

    Written out rather than taken from autograd: it runs inside custom ops, where autograd is
    off. The tests hold it to float64 autograd of ``act_glu``.
    """
    cd = _compute_dtype(gate.dtype)
    g, u, d = gate.to(cd), up.to(cd), dout.to(cd)
    if activation == "silu":
        s = torch.sigmoid(g)
        dgate = d * u * s * (1 + g * (1 - s))
        dup = d * (g * s)  # products of the activation first, as the kernels: d * g can overflow
    elif activation == "gelu":
        cdf = 0.5 * (1 + torch.erf(g * math.sqrt(0.5)))
        pdf = torch.exp(-0.5 * g * g) / math.sqrt(2 * math.pi)
        dgate = d * u * (cdf + g * pdf)
        dup = d * (g * cdf)
    elif activation == "gelu_tanh":
        c = math.sqrt(2 / math.pi)
        t = torch.tanh(c * (g + 0.044715 * g**3))
        # g (1 - t^2) before anything that overflows with g (g^2 past 1.8e19 in fp32), as in
        # the kernels: where 1 - t^2 is 0 the term is 0, not 0 * inf
        gw = g * (1 - t * t)
        dgate = d * u * (0.5 * (1 + t) + 0.5 * c * (gw + 3 * 0.044715 * (gw * g) * g))
        dup = d * (0.5 * g * (1 + t))
    elif activation == "relu":
        dgate = torch.where(g <= 0, 0.0, d * u)  # at NaN d * u, as torch.relu's backward
        dup = d * torch.where(g < 0, 0.0, g)
    elif activation == "swiglu_oai":
        gc = torch.where(g > limit, limit, g)
        uc = torch.where(u > limit, limit, torch.where(u < -limit, -limit, u))
        s = torch.sigmoid(alpha * gc)
        dact = s + alpha * (gc * s) * (1 - s)  # gc * s first: alpha * gc can overflow
        dgate = torch.where(g <= limit, d * (uc + 1) * dact, 0.0)
        dup = torch.where((u >= -limit) & (u <= limit), d * (gc * s), 0.0)
    else:
        raise ValueError(f"unknown activation {activation!r}")
    return dgate.to(gate.dtype), dup.to(up.dtype)


def split_packed(x: torch.Tensor, layout: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The (gate, up) views of a packed ``[..., 2N]`` tensor."""
    n = x.shape[-1] // 2
    if layout == "concat":
        return x[..., :n], x[..., n:]
    if layout == "interleaved":
        return x[..., 0::2], x[..., 1::2]
    raise ValueError(f"unknown layout {layout!r}")


def merge_packed(dgate: torch.Tensor, dup: torch.Tensor, layout: str) -> torch.Tensor:
    """The packed ``[..., 2N]`` tensor whose (gate, up) views are ``dgate`` and ``dup``."""
    if layout == "concat":
        return torch.cat([dgate, dup], dim=-1)
    if layout == "interleaved":
        return torch.stack([dgate, dup], dim=-1).flatten(-2)
    raise ValueError(f"unknown layout {layout!r}")


def swiglu_linear_reference(
    x: torch.Tensor,
    w_gate: torch.Tensor,
    w_up: torch.Tensor,
    b_gate: torch.Tensor | None = None,
    b_up: torch.Tensor | None = None,
    activation: str = "silu",
    alpha: float = OAI_ALPHA,
    limit: float = OAI_LIMIT,
) -> torch.Tensor:
    """``act(x @ w_gate.T + b_gate) * (x @ w_up.T + b_up)`` in fp32 (fp64 for fp64 inputs),
    rounded once to the dtype of ``x``. fp32 products follow PyTorch's matmul precision."""
    cd = _compute_dtype(x.dtype)

    def proj(w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return F.linear(x.to(cd), w.to(cd), None if b is None else b.to(cd))

    return act_glu(proj(w_gate, b_gate), proj(w_up, b_up), activation, alpha, limit).to(x.dtype)

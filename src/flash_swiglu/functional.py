"""Autograd-aware entry points: validate, then call the custom ops in ``flash_swiglu.ops``."""

from __future__ import annotations

import torch

from flash_swiglu._names import OAI_ALPHA, OAI_LIMIT
from flash_swiglu.ops import _common as C
from flash_swiglu.ops import elementwise as E
from flash_swiglu.ops import linear as L
from flash_swiglu.ops import mlp as MLP


def swiglu(
    gate: torch.Tensor,
    up: torch.Tensor,
    *,
    activation: str = "silu",
    alpha: float = OAI_ALPHA,
    limit: float = OAI_LIMIT,
) -> torch.Tensor:
    """``act(gate) * up``, elementwise, in one pass (forward) and one fused pass (backward).

    Args:
        gate, up: tensors of the same shape ``[..., N]``, dtype (float16, bfloat16, float32)
            and device. Any strides are read in place (a view of a packed tensor is not
            copied).
        activation: ``"silu"`` (SwiGLU), ``"gelu"``, ``"gelu_tanh"``, ``"relu"`` or
            ``"swiglu_oai"`` (gpt-oss, with ``alpha`` and ``limit``).
        alpha, limit: gpt-oss's GLU only: ``alpha`` finite, ``limit`` positive (``inf``:
            no clamp). Compile-time constants of the kernels: each distinct pair compiles
            its own.

    Returns:
        A new contiguous tensor of the shape and dtype of ``gate``.
    """
    C.check_pair("gate", gate, "up", up)
    C.check_activation(activation)
    alpha, limit = C.check_oai_params(alpha, limit)
    return E.glu(gate, up, activation, alpha, limit)


def swiglu_packed(
    x: torch.Tensor,
    *,
    activation: str = "silu",
    layout: str = "concat",
    alpha: float = OAI_ALPHA,
    limit: float = OAI_LIMIT,
) -> torch.Tensor:
    """``act(gate) * up`` with gate and up packed in the last dimension of ``x[..., 2N]``.

    ``layout="concat"``: ``x[..., :N]`` is gate, ``x[..., N:]`` is up (the output of a fused
    ``gate_up_proj``). ``layout="interleaved"``: even columns are gate, odd columns are up
    (gpt-oss). The gradient with respect to ``x`` is produced packed the same way, in one
    kernel, with no concatenation.

    Returns:
        A new contiguous tensor ``[..., N]``.
    """
    C.check_tensor("x", x)
    C.check_activation(activation)
    C.check_layout(layout)
    alpha, limit = C.check_oai_params(alpha, limit)
    if x.shape[-1] % 2:
        raise ValueError(
            f"x must have an even last dimension (gate and up packed), got shape {tuple(x.shape)}"
        )
    return E.glu_packed(x, activation, layout, alpha, limit)


def swiglu_linear(
    x: torch.Tensor,
    w_gate: torch.Tensor,
    w_up: torch.Tensor,
    b_gate: torch.Tensor | None = None,
    b_up: torch.Tensor | None = None,
    *,
    activation: str = "silu",
    alpha: float = OAI_ALPHA,
    limit: float = OAI_LIMIT,
) -> torch.Tensor:
    """``act(x @ w_gate.T + b_gate) * (x @ w_up.T + b_up)`` in one kernel.

    Args:
        x: ``[..., K]``, read in place where its last dimension is contiguous and its rows
            form at most two evenly strided groups; the 16-bit Hopper paths above 64 tokens
            (tensor-memory accelerator, Gluon) copy it unless its rows are one such group
            (README, "Use").
        w_gate, w_up: ``[N, K]`` (``nn.Linear`` layout). b_gate, b_up: ``[N]`` or None.
        activation: ``"silu"``, ``"gelu"``, ``"gelu_tanh"``, ``"relu"`` or ``"swiglu_oai"``.

    Products accumulate in fp32 (fp32 inputs follow ``torch.get_float32_matmul_precision``),
    the activation runs in fp32, and the ``[..., N]`` result is rounded once. The backward
    saves only ``x`` and the weights: one kernel recomputes the pre-activation and turns
    ``dout`` into ``dgate, dup`` in its epilogue, and cuBLAS forms ``dx`` and the weight
    gradients (``ops/train.py``). Under ``torch.autocast`` the floating-point arguments but
    float64 ones are cast to autocast's dtype first, as for ``F.linear``.
    """
    C.check_activation(activation)
    alpha, limit = C.check_oai_params(alpha, limit)

    def call(x, w_gate, w_up, b_gate, b_up):
        L.check_linear(x, w_gate, w_up, b_gate, b_up)
        return L.linear(x, w_gate, w_up, b_gate, b_up, activation, alpha, limit)

    return C.autocast_call(call, x, w_gate, w_up, b_gate, b_up)


def swiglu_linear_packed(
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None = None,
    *,
    activation: str = "silu",
    layout: str = "concat",
    alpha: float = OAI_ALPHA,
    limit: float = OAI_LIMIT,
) -> torch.Tensor:
    """``swiglu_linear`` with one packed weight ``w [2N, K]`` (and bias ``b [2N]``):
    ``layout="concat"``: rows ``[:N]`` gate, ``[N:]`` up (Phi-3 ``gate_up_proj``);
    ``"interleaved"``: even rows gate, odd rows up (gpt-oss). Read in place, never split
    into copies; the weight gradient comes out packed the same way. Autocast as for
    ``swiglu_linear``."""
    C.check_activation(activation)
    C.check_layout(layout)
    alpha, limit = C.check_oai_params(alpha, limit)

    def call(x, w, b):
        L.check_linear_packed(x, w, b)
        return L.linear_packed(x, w, b, activation, layout, alpha, limit)

    return C.autocast_call(call, x, w, b)


def swiglu_mlp(
    x: torch.Tensor,
    w_gate: torch.Tensor,
    w_up: torch.Tensor,
    w_down: torch.Tensor,
    b_gate: torch.Tensor | None = None,
    b_up: torch.Tensor | None = None,
    b_down: torch.Tensor | None = None,
    *,
    activation: str = "silu",
    recompute: bool = False,
    alpha: float = OAI_ALPHA,
    limit: float = OAI_LIMIT,
) -> torch.Tensor:
    """The whole gated MLP: ``down(act(x @ w_gate.T + b_gate) * (x @ w_up.T + b_up))``.

    Args:
        x: ``[..., K]`` (K = hidden size). Inference reads it as ``swiglu_linear`` does. In
            training (a gradient wanted) the backward's products take it as one 2-D matrix
            ``[M, K]``, so a view whose rows are not one evenly strided group (a slice of
            a 3-D tensor along its second dimension, say) is copied once.
        w_gate, w_up: ``[N, K]``; w_down: ``[K, N]`` (all ``nn.Linear`` layout, as in a
            Hugging Face ``LlamaMLP``). b_gate, b_up: ``[N]``; b_down: ``[K]``; or None.
        activation: as for ``swiglu``.
        recompute: False saves what makes the backward fastest (the gate and up
            pre-activations); True saves only ``x`` and recomputes them in the backward.

    Returns:
        ``[..., K]`` in the dtype of ``x`` (under ``torch.autocast``, autocast's: the
        floating-point arguments but float64 ones are cast to it, as for ``F.linear``).
    """
    C.check_activation(activation)
    alpha, limit = C.check_oai_params(alpha, limit)
    if not isinstance(recompute, bool):
        raise TypeError(f"recompute must be a bool, got {type(recompute).__name__}")

    def call(x, w_gate, w_up, w_down, b_gate, b_up, b_down):
        L.check_linear(x, w_gate, w_up, b_gate, b_up)
        MLP.check_down(x, w_gate, w_down, b_down)
        return MLP.mlp(
            x, w_gate, w_up, w_down, b_gate, b_up, b_down, activation, recompute, alpha, limit
        )

    return C.autocast_call(call, x, w_gate, w_up, w_down, b_gate, b_up, b_down)

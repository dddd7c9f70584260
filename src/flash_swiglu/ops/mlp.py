"""The whole gated MLP ``y = down(act(x @ w_gate^T + b_gate) * (x @ w_up^T + b_up)) + b_down``.

Forward:
    no gradient needed     the fused gate/up kernel (``ops.linear``, decode path for few
                           tokens), then ``F.linear`` for the down projection
    recompute=False        ``_glu_gemm_kernel`` writes h and the gate/up pre-activation,
                           saved as two ``[M, N]`` tensors (eager autograd) or one
                           ``gu [M, 2N]`` (the custom op); ``F.linear`` for the down projection
    recompute=True         as without gradient; saves only x (and the weights)
Backward: ``ops.train.backward`` (dh in no tensor; pre-activation read or recomputed inside
the kernel that forms dh; the rest cuBLAS), see there. In the eager autograd functions, a
backward that is its graph's last (no ``retain_graph=True``, and none before it) writes the
gradient of the saved pre-activation over it in one pass; otherwise it takes the
column-sliced loop and leaves the saved tensor intact.

Under ``torch.compile`` the backward op declares that it writes over ``gu``
(``mutates_args``) and does so. Functionalization hands it a copy of the saved tensor
(Inductor re-inplaces a graph input only where the program itself writes it back), and
Inductor puts that copy in the saved tensor's own memory where the compiled backward may
reuse it (donated buffers, its default): one more pass over ``[M, 2N]``, no more memory. On
the H200 (torch 2.11, session 29) the compiled Llama-3-8B step at 4096 tokens peaked at 624
MiB against 672 for the column-sliced loop it replaces. Outside a trace (the op called
directly, or ``torch.compile``'s "eager" backend) the registered backward runs the
column-sliced loop: the forward op's caller may hold ``gu``.

Custom ops (opaque to ``torch.compile``, fake implementations, registered autograd):

    flash_swiglu::mlp_fwd(x, w_gate, w_up, w_down, b_gate?, b_up?, b_down?) -> y
    flash_swiglu::mlp_train_fwd(...same, recompute) -> (y, gu)   gu: [M, 2N] or [0]
    flash_swiglu::mlp_bwd(x, w_gate, w_up, w_down, b_gate?, b_up?, gu(a!)?, dy, needs)
        -> (dx, dw_gate, dw_up, dw_down, db_gate, db_up, db_down), empty where not needed;
        the gradient of gu may be written over it
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from flash_swiglu.ops import _common as C
from flash_swiglu.ops import linear as L
from flash_swiglu.ops import train as T


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


def forward(x, wg, wu, wd, bg, bu, bd, activation, alpha, limit):
    """Inference: nothing saved."""
    return F.linear(L.forward(x, wg, wu, bg, bu, activation, alpha, limit), wd, bd)


def forward_train(x, wg, wu, wd, bg, bu, bd, activation, recompute, alpha, limit, separate=False):
    """``(y, gu)``; ``gu`` is the saved pre-activation ``[M, 2N]`` (with ``separate`` a
    pair ``(g, u)``, see ``T.forward_saving``), empty with recompute."""
    if recompute:
        return forward(x, wg, wu, wd, bg, bu, bd, activation, alpha, limit), x.new_empty(0)
    x2 = T.rows(x)
    h, gu = T.forward_saving(x2, wg, wu, bg, bu, activation, alpha, limit, separate)
    return F.linear(h, wd, bd).view(x.shape), gu


def _saved(gu) -> tuple:
    """The saved pre-activation as two tensors for ``save_for_backward`` (None with recompute)."""
    return tuple(gu) if isinstance(gu, tuple) else (None, None)


def backward(
    x, wg, wu, wd, bg, bu, bd, gu, dy, activation, alpha, limit, needs, overwrite_gu=False
):
    """``(dx, dwg, dwu, dwd, dbg, dbu, dbd)``, None where ``needs`` (same order) is False.
    ``overwrite_gu``: the saved pre-activation may be overwritten (``T.backward``)."""
    x2, dy2 = T.rows(x), T.rows(dy)
    dx, dwg, dwu, dbg, dbu, dwd = T.backward(
        x2, wg, wu, bg, bu, activation, alpha, limit,
        dy=dy2, wd=wd, gu=gu if isinstance(gu, tuple) or (gu is not None and gu.numel()) else None,
        needs=(needs[0], needs[1], needs[2], needs[4], needs[5], needs[3]),
        overwrite_gu=overwrite_gu,
    )  # fmt: skip
    dbd = dy2.sum(0) if bd is not None and needs[6] else None
    return dx.view(x.shape) if dx is not None else None, dwg, dwu, dwd, dbg, dbu, dbd


# ----------------------------------------------------------------------------------------
# Custom ops
# ----------------------------------------------------------------------------------------


@torch.library.custom_op("flash_swiglu::mlp_fwd", mutates_args=())
@C.on_tensor_device
def mlp_fwd(
    x: torch.Tensor,
    w_gate: torch.Tensor,
    w_up: torch.Tensor,
    w_down: torch.Tensor,
    b_gate: torch.Tensor | None,
    b_up: torch.Tensor | None,
    b_down: torch.Tensor | None,
    activation: str,
    alpha: float,
    limit: float,
) -> torch.Tensor:
    return forward(x, w_gate, w_up, w_down, b_gate, b_up, b_down, activation, alpha, limit)


@mlp_fwd.register_fake
def _(x, w_gate, w_up, w_down, b_gate, b_up, b_down, activation, alpha, limit):
    return x.new_empty(x.shape)


@torch.library.custom_op("flash_swiglu::mlp_train_fwd", mutates_args=())
@C.on_tensor_device
def mlp_train_fwd(
    x: torch.Tensor,
    w_gate: torch.Tensor,
    w_up: torch.Tensor,
    w_down: torch.Tensor,
    b_gate: torch.Tensor | None,
    b_up: torch.Tensor | None,
    b_down: torch.Tensor | None,
    activation: str,
    recompute: bool,
    alpha: float,
    limit: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    return forward_train(
        x, w_gate, w_up, w_down, b_gate, b_up, b_down, activation, recompute, alpha, limit
    )


@mlp_train_fwd.register_fake
def _(x, w_gate, w_up, w_down, b_gate, b_up, b_down, activation, recompute, alpha, limit):
    m = x.shape[:-1].numel()
    gu = x.new_empty(0) if recompute else x.new_empty((m, 2 * w_gate.shape[0]))
    return x.new_empty(x.shape), gu


@torch.library.custom_op("flash_swiglu::mlp_bwd", mutates_args=("gu",))
@C.on_tensor_device
def mlp_bwd(
    x: torch.Tensor,
    w_gate: torch.Tensor,
    w_up: torch.Tensor,
    w_down: torch.Tensor,
    b_gate: torch.Tensor | None,
    b_up: torch.Tensor | None,
    b_down: torch.Tensor | None,
    gu: torch.Tensor | None,
    dy: torch.Tensor,
    activation: str,
    alpha: float,
    limit: float,
    needs: list[bool],
) -> tuple[
    torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor
]:
    grads = backward(
        x, w_gate, w_up, w_down, b_gate, b_up, b_down, gu, dy, activation, alpha, limit, needs,
        overwrite_gu=True,
    )  # fmt: skip
    return tuple(C.empty_if_none(g, x) for g in grads)


@mlp_bwd.register_fake
def _(x, w_gate, w_up, w_down, b_gate, b_up, b_down, gu, dy, activation, alpha, limit, needs):
    return C.fake_grads((x, w_gate, w_up, w_down, b_gate, b_up, b_down), needs, x)


def _setup(ctx, inputs, output):
    x, wg, wu, wd, bg, bu, bd, activation, recompute, alpha, limit = inputs
    _, gu = output
    ctx.save_for_backward(x, wg, wu, wd, bg, bu, bd, None if recompute else gu)
    ctx.args = (activation, alpha, limit)


def _backward(ctx, dy, _dgu):
    x, wg, wu, wd, bg, bu, bd, gu = ctx.saved_tensors
    needs = list(ctx.needs_input_grad[:7])
    if _traced():
        # AOTAutograd's trace: the op writes over gu, a copy of its own (module doc).
        grads = C.keep_needed(mlp_bwd(x, wg, wu, wd, bg, bu, bd, gu, dy, *ctx.args, needs), needs)
    else:
        # Run as it stands (a direct call of the op, torch.compile's "eager" backend): gu may
        # be the caller's (the forward op returns it), so it is left intact, and not handed
        # to the op, whose declared mutation would bump its version counter.
        grads = backward(x, wg, wu, wd, bg, bu, bd, gu, dy, *ctx.args, needs)
    return (*grads, None, None, None, None)


_TRACING_MODES = tuple(
    getattr(torch._C._TorchDispatchModeKey, k) for k in ("FAKE", "PROXY", "FUNCTIONAL")
)


def _traced() -> bool:
    """Whether a tracer runs this code: Dynamo, or AOTAutograd, which traces a backward
    under fake tensors, proxies and functionalization (torch 2.11 does not report that as
    compiling, 2.15 does). A user's dispatch mode (``FlopCounterMode``) is not a trace."""
    return torch.compiler.is_compiling() or any(
        torch._C._get_dispatch_mode(k) is not None for k in _TRACING_MODES
    )


mlp_train_fwd.register_autograd(_backward, setup_context=_setup)


# ----------------------------------------------------------------------------------------
# Eager autograd: the same functions without the custom-op dispatch
# ----------------------------------------------------------------------------------------


def _may_overwrite_saved(ctx) -> bool:
    """Whether this backward may write the gradient of the saved pre-activation over it:
    when it is the graph's last (no ``retain_graph=True``; PyTorch's AOTAutograd asks the
    engine the same question before it frees saved tensors early) and no earlier backward of
    this graph was retained. A retained graph takes the column-sliced loop in every one of
    its backwards, so each gives the same bits."""
    keep_graph = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)
    retained = keep_graph is None or keep_graph()
    ctx.retained = getattr(ctx, "retained", False) or retained
    return not ctx.retained


class _MLPFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, wg, wu, wd, bg, bu, bd, activation, recompute, alpha, limit):
        y, gu = forward_train(
            x, wg, wu, wd, bg, bu, bd, activation, recompute, alpha, limit, separate=True
        )
        ctx.save_for_backward(x, wg, wu, wd, bg, bu, bd, *_saved(gu))
        ctx.args = (activation, alpha, limit)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, wg, wu, wd, bg, bu, bd, g, u = ctx.saved_tensors
        gu = (g, u) if g is not None else None
        needs = ctx.needs_input_grad[:7]
        grads = backward(
            x, wg, wu, wd, bg, bu, bd, gu, dy, *ctx.args, needs,
            overwrite_gu=_may_overwrite_saved(ctx),
        )  # fmt: skip
        return (*grads, None, None, None, None)


class _MLPPackedFunction(torch.autograd.Function):
    """The MLP with one packed gate/up weight ``w [2N, K]`` (Phi-3's ``gate_up_proj``): its
    gradient is written packed, in place of autograd's two zero-filled ``[2N, K]`` buffers
    that the backward of two row views of ``w`` would add together."""

    @staticmethod
    def forward(ctx, x, w, wd, b, bd, activation, layout, recompute, alpha, limit):
        wg, wu, bg, bu = L.packed_views(w, b, layout)
        y, gu = forward_train(
            x, wg, wu, wd, bg, bu, bd, activation, recompute, alpha, limit, separate=True
        )
        ctx.save_for_backward(x, w, wd, b, bd, *_saved(gu))
        ctx.args = (activation, layout, alpha, limit)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, w, wd, b, bd, g, u = ctx.saved_tensors
        gu = (g, u) if g is not None else None
        activation, layout, alpha, limit = ctx.args
        need_x, need_w, need_wd, need_b, need_bd = ctx.needs_input_grad[:5]
        need_b = need_b and b is not None
        wg, wu, bg, bu = L.packed_views(w, b, layout)
        dw = w.new_empty(w.shape) if need_w else None
        dwg, dwu = L.packed_views(dw, None, layout)[:2] if need_w else (None, None)
        x2, dy2 = T.rows(x), T.rows(dy)
        dx, _, _, dbg, dbu, dwd = T.backward(
            x2, wg, wu, bg, bu, activation, alpha, limit, dy=dy2, wd=wd,
            gu=gu, needs=(need_x, need_w, need_w, need_b, need_b, need_wd), dwg=dwg, dwu=dwu,
            overwrite_gu=_may_overwrite_saved(ctx),
        )  # fmt: skip
        db = L.packed_bias_grad(b, dbg, dbu, layout) if need_b else None
        dbd = dy2.sum(0) if bd is not None and need_bd else None
        dx = dx.view(x.shape) if dx is not None else None
        return dx, dw, dwd, db, dbd, None, None, None, None, None


@C.on_tensor_device
def mlp_packed(x, w, wd, b, bd, activation, layout, recompute, alpha, limit):
    """``mlp`` with a packed ``w [2N, K]`` (``b [2N]``), ``layout`` as ``swiglu_packed``.
    Eager training takes ``_MLPPackedFunction``; inference and ``torch.compile`` the row views
    through ``mlp`` (the compiler sees the views' gradients and can fuse their scatter)."""
    if _wants_grad(x, w, wd, b, bd) and not torch.compiler.is_compiling():
        return _MLPPackedFunction.apply(
            x, w, wd, b, bd, activation, layout, recompute, alpha, limit
        )
    wg, wu, bg, bu = L.packed_views(w, b, layout)
    return mlp(x, wg, wu, wd, bg, bu, bd, activation, recompute, alpha, limit)


def _wants_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


@C.on_tensor_device
def mlp(x, wg, wu, wd, bg, bu, bd, activation, recompute, alpha, limit):
    if not _wants_grad(x, wg, wu, wd, bg, bu, bd):
        if torch.compiler.is_compiling():
            return mlp_fwd(x, wg, wu, wd, bg, bu, bd, activation, alpha, limit)
        return forward(x, wg, wu, wd, bg, bu, bd, activation, alpha, limit)
    if torch.compiler.is_compiling():
        y, _ = mlp_train_fwd(x, wg, wu, wd, bg, bu, bd, activation, recompute, alpha, limit)
        return y
    return _MLPFunction.apply(x, wg, wu, wd, bg, bu, bd, activation, recompute, alpha, limit)


__all__ = [
    "backward",
    "check_down",
    "forward",
    "forward_train",
    "mlp",
    "mlp_bwd",
    "mlp_fwd",
    "mlp_packed",
]

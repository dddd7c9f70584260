"""The whole gated MLP ``y = down(act(x @ w_gate^T + b_gate) * (x @ w_up^T + b_up)) + b_down``.

Forward:
    no gradient needed     the fused gate/up kernel (``ops.linear``, decode path for few
                           tokens), then ``F.linear`` for the down projection
    recompute=False        ``_glu_gemm_kernel`` writes h and the gate/up pre-activation,
                           saved as two ``[M, N]`` tensors g and u, each with a storage of
                           its own; ``F.linear`` for the down projection
    recompute=True         as without gradient; saves only x (and the weights)
Backward: ``ops.train.backward`` (dh in no tensor; pre-activation read or recomputed inside
the kernel that forms dh; the rest cuBLAS), see there. In the eager autograd functions, a
backward that is its graph's last (no ``retain_graph=True``, and none before it) writes the
gradient of the saved pre-activation over it in one pass; otherwise it takes the
column-sliced loop and leaves the saved tensor intact.

Under ``torch.compile`` the backward op declares that it writes over g and u
(``mutates_args``) and does so. Functionalization hands it copies of the saved tensors
(Inductor re-inplaces a graph input only where the program itself writes it back), and
Inductor puts each copy in its saved tensor's own memory where the compiled backward may
reuse it (donated buffers, its default): one more pass over ``[M, 2N]``, no more memory. The
op leaves dgate and dup in g and u on every path (``T.backward``'s ``overwrite_gu``) and
dW_up and db_up to the registered backward, which forms them from dup after the op returns,
so that the compiled graph frees g before it allocates dW_up, as the eager backward does.
Outside a trace (the op called directly, or ``torch.compile``'s "eager" backend) the
registered backward runs the column-sliced loop: the forward op's caller may hold g and u.

Custom ops (opaque to ``torch.compile``, fake implementations, registered autograd):

    flash_swiglu::mlp_fwd(x, w_gate, w_up, w_down, b_gate?, b_up?, b_down?) -> y
    flash_swiglu::mlp_train_fwd(...same, recompute) -> (y, g, u)   g, u: [M, N] or [0]
    flash_swiglu::mlp_bwd(x, w_gate, w_up, w_down, b_gate?, b_up?, b_down?, g(a!)?, u(b!)?,
                          dy, needs)
        -> (dx, dw_gate, dw_up, dw_down, db_gate, db_up, db_down), empty where not needed;
        the gradients of g and u may be written over them
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from flash_swiglu._names import ACTIVATIONS as _ACTIVATIONS
from flash_swiglu._names import OAI_ALPHA, OAI_LIMIT
from flash_swiglu.ops import _common as C
from flash_swiglu.ops import linear as L
from flash_swiglu.ops import train as T


def check_down(x, w_gate, w_down, b_down) -> None:
    """Shapes: ``w_down [K, N]`` for ``x [..., K]`` and ``w_gate [N, K]``; ``b_down [K]``."""
    n, k = w_gate.shape
    if (
        b_down is None
        and isinstance(w_down, torch.Tensor)
        and w_down.shape == (k, n)
        and w_down.dtype == x.dtype
        and w_down.device == x.device
    ):
        return  # the common case, checked in fewer steps (x and w_gate checked before)
    L._check_like(x, {"w_down": w_down, "b_down": b_down})
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


def infer(x, wg, wu, wd, bg, bu, bd, activation):
    """The MLP without gradient in the fewest host steps, or None where this does not apply:
    autograd recording, autocast on, a trace, x on a device other than the current one, or no
    launch plan yet for the gate/up call (``linear.planned``: any call that copied no
    operand, after its first). Where it applies, ``forward`` would run the same plan and
    ``F.linear``, after the checks done here too. A decode step's host time bounds it
    (Hugging Face ``generate`` without CUDA graphs); ``modules.mlp_forward`` calls it first."""
    if torch.is_grad_enabled() or torch.compiler.is_compiling():
        return None
    if not L._valid_weights(x, wg, wu) or bg is not None or bu is not None:
        return None  # biases, or bad input: the full path (and its errors)
    dev = x.device
    if dev.type != "cuda" or dev.index != torch.cuda.current_device():
        return None
    if torch.is_autocast_enabled("cuda") or activation not in _ACTIVATIONS:
        return None
    check_down(x, wg, wd, bd)
    plan = L.planned(x, wg, wu, None, None, activation, OAI_ALPHA, OAI_LIMIT)
    return F.linear(plan(x, wg, wu, None, None), wd, bd) if plan is not None else None


def plan_key(x, wg, wu, wd, bg, bu, activation, recompute, alpha, limit) -> tuple | None:
    """The training plan's key of a step (``T.train_key``), None where no plan applies
    (biases, ``recompute=True``)."""
    if recompute or bg is not None or bu is not None:
        return None
    return T.train_key(x, wg, wu, wd, activation, alpha, limit)


_KEY = object()  # "compute the plan key here"


def forward_train(x, wg, wu, wd, bg, bu, bd, activation, recompute, alpha, limit, key=_KEY):
    """``(y, saved)``: ``saved`` the pre-activation as a pair ``(g, u)`` of ``[M, N]``
    tensors, each with a storage of its own (``T.forward_saving``), None with recompute.
    ``key``: the step's ``plan_key`` where the caller has it."""
    if recompute:
        return forward(x, wg, wu, wd, bg, bu, bd, activation, alpha, limit), None
    if key is _KEY:
        key = plan_key(x, wg, wu, wd, bg, bu, activation, recompute, alpha, limit)
    plan = T.train_plan(key)
    if plan is not None:  # the launches an earlier call with this key made (``T.TrainPlan``)
        h, saved = plan.forward(x if x.dim() == 2 else x.reshape(plan.m, plan.k), wg, wu)
    else:
        x2 = T.rows(x)
        h, saved = T.forward_saving(x2, wg, wu, bg, bu, activation, alpha, limit)
        T.keep_train_plan(key, x, x2, wg, wu, wd, activation, alpha, limit)
    return F.linear(h, wd, bd).view(x.shape), saved


def _saved(saved) -> tuple:
    """The saved pre-activation as two tensors for ``save_for_backward`` (None with recompute)."""
    return tuple(saved) if saved is not None else (None, None)


def backward(
    x, wg, wu, wd, bg, bu, bd, gu, dy, activation, alpha, limit, needs, overwrite_gu=False,
    free_gate=True, key=_KEY,
):  # fmt: skip
    """``(dx, dwg, dwu, dwd, dbg, dbu, dbd)``, None where ``needs`` (same order) is False.
    ``gu``: the saved ``(g, u)``, or None to recompute. ``overwrite_gu``, ``free_gate``: the
    saved pre-activation may be overwritten, and g freed once spent (``T.backward``).
    ``key``: the forward's ``plan_key`` where the caller kept it."""
    x2, dy2 = T.rows(x), T.rows(dy)
    t_needs = (needs[0], needs[1], needs[2], needs[4], needs[5], needs[3])
    plan = None
    if gu is not None and overwrite_gu:
        if key is _KEY:
            key = plan_key(x, wg, wu, wd, bg, bu, activation, False, alpha, limit)
        plan = T.train_plan(key)
        if plan is not None and not plan.takes(dy2, *gu):
            plan = None
    if plan is not None:  # what T.backward runs for these operands, with the plan's launches
        dx, dwg, dwu, dbg, dbu, dwd = T._backward_over_saved(
            x2, wg, wu, dy2, wd, gu, t_needs, None, None, activation, alpha, limit, free_gate,
            plan=plan,
        )  # fmt: skip
    else:
        dx, dwg, dwu, dbg, dbu, dwd = T.backward(
            x2, wg, wu, bg, bu, activation, alpha, limit, dy=dy2, wd=wd, gu=gu, needs=t_needs,
            overwrite_gu=overwrite_gu, free_gate=free_gate,
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
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    y, saved = forward_train(
        x, w_gate, w_up, w_down, b_gate, b_up, b_down, activation, recompute, alpha, limit
    )
    g, u = saved if saved is not None else (x.new_empty(0), x.new_empty(0))
    return y, g, u


@mlp_train_fwd.register_fake
def _(x, w_gate, w_up, w_down, b_gate, b_up, b_down, activation, recompute, alpha, limit):
    shape = (0,) if recompute else (x.shape[:-1].numel(), w_gate.shape[0])
    return x.new_empty(x.shape), x.new_empty(shape), x.new_empty(shape)


@torch.library.custom_op("flash_swiglu::mlp_bwd", mutates_args=("g", "u"))
@C.on_tensor_device
def mlp_bwd(
    x: torch.Tensor,
    w_gate: torch.Tensor,
    w_up: torch.Tensor,
    w_down: torch.Tensor,
    b_gate: torch.Tensor | None,
    b_up: torch.Tensor | None,
    b_down: torch.Tensor | None,
    g: torch.Tensor | None,
    u: torch.Tensor | None,
    dy: torch.Tensor,
    activation: str,
    alpha: float,
    limit: float,
    needs: list[bool],
) -> tuple[
    torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor
]:
    saved = (g, u) if g is not None and u is not None and g.numel() and u.numel() else None
    grads = backward(
        x, w_gate, w_up, w_down, b_gate, b_up, b_down, saved, dy, activation, alpha, limit,
        needs, overwrite_gu=True, free_gate=False,  # g's storage stays its caller's
    )  # fmt: skip
    return tuple(C.empty_if_none(t, x) for t in grads)


@mlp_bwd.register_fake
def _(x, w_gate, w_up, w_down, b_gate, b_up, b_down, g, u, dy, activation, alpha, limit, needs):
    return C.fake_grads((x, w_gate, w_up, w_down, b_gate, b_up, b_down), needs, x)


def _setup(ctx, inputs, output):
    x, wg, wu, wd, bg, bu, bd, activation, recompute, alpha, limit = inputs
    _, g, u = output
    ctx.save_for_backward(x, wg, wu, wd, bg, bu, bd, *((None, None) if recompute else (g, u)))
    ctx.args = (activation, alpha, limit)


def _backward(ctx, dy, _dg, _du):
    x, wg, wu, wd, bg, bu, bd, g, u = ctx.saved_tensors
    needs = list(ctx.needs_input_grad[:7])
    saved = (g, u) if g is not None else None
    if not _traced():
        # Run as it stands (a direct call of the op, torch.compile's "eager" backend): g and
        # u may be the caller's (the forward op returns them), so they are left intact, and
        # not handed to the op, whose declared mutation would bump their version counters.
        return (*backward(x, wg, wu, wd, bg, bu, bd, saved, dy, *ctx.args, needs), *[None] * 4)
    if saved is None:  # recompute=True
        grads = mlp_bwd(x, wg, wu, wd, bg, bu, bd, None, None, dy, *ctx.args, needs)
        return (*C.keep_needed(grads, needs), *[None] * 4)
    # AOTAutograd's trace: the op writes dgate and dup over g and u, copies of its own
    # (module doc). dW_up and db_up are formed here, after it, from dup: the compiled graph
    # frees g once the op returns, before dW_up is allocated.
    first = [*needs[:2], False, *needs[3:5], False, needs[6]]
    dx, dwg, _, dwd, dbg, _, dbd = C.keep_needed(
        mlp_bwd(x, wg, wu, wd, bg, bu, bd, g, u, dy, *ctx.args, first), first
    )
    dwu = torch.mm(u.t(), x.reshape(x.shape[:-1].numel(), x.shape[-1])) if needs[2] else None
    dbu = u.sum(0) if needs[5] and bu is not None else None
    return dx, dwg, dwu, dwd, dbg, dbu, dbd, None, None, None, None


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
        key = plan_key(x, wg, wu, wd, bg, bu, activation, recompute, alpha, limit)
        y, saved = forward_train(
            x, wg, wu, wd, bg, bu, bd, activation, recompute, alpha, limit, key
        )
        ctx.save_for_backward(x, wg, wu, wd, bg, bu, bd, *_saved(saved))
        ctx.args, ctx.key = (activation, alpha, limit), key
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x, wg, wu, wd, bg, bu, bd, g, u = ctx.saved_tensors
        gu = (g, u) if g is not None else None
        needs = ctx.needs_input_grad[:7]
        grads = backward(
            x, wg, wu, wd, bg, bu, bd, gu, dy, *ctx.args, needs,
            overwrite_gu=_may_overwrite_saved(ctx), key=ctx.key,
        )  # fmt: skip
        return (*grads, None, None, None, None)


class _MLPPackedFunction(torch.autograd.Function):
    """The MLP with one packed gate/up weight ``w [2N, K]`` (Phi-3's ``gate_up_proj``): its
    gradient is written packed, in place of autograd's two zero-filled ``[2N, K]`` buffers
    that the backward of two row views of ``w`` would add together."""

    @staticmethod
    def forward(ctx, x, w, wd, b, bd, activation, layout, recompute, alpha, limit):
        wg, wu, bg, bu = L.packed_views(w, b, layout)
        y, saved = forward_train(x, wg, wu, wd, bg, bu, bd, activation, recompute, alpha, limit)
        ctx.save_for_backward(x, w, wd, b, bd, *_saved(saved))
        ctx.args = (activation, layout, alpha, limit)
        return y

    @staticmethod
    @once_differentiable
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
        return mlp_train_fwd(x, wg, wu, wd, bg, bu, bd, activation, recompute, alpha, limit)[0]
    return _MLPFunction.apply(x, wg, wu, wd, bg, bu, bd, activation, recompute, alpha, limit)


__all__ = [
    "backward",
    "check_down",
    "forward",
    "forward_train",
    "infer",
    "mlp",
    "mlp_bwd",
    "mlp_fwd",
    "mlp_packed",
    "plan_key",
]

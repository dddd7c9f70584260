"""``SwiGLUMLP``: the gated MLP as an ``nn.Module`` whose state dict is a ``LlamaMLP``'s.

Also home of the two helpers every module-level drop-in shares (the Hugging Face patching in
``flash_swiglu.integrations.transformers`` uses them too):

- ``infer_activation``: which of our activations an existing module's activation function
  computes, found by evaluating it, not by trusting a name;
- ``mlp_forward``: ``swiglu_mlp`` (which casts as ``nn.Linear`` does under
  ``torch.autocast``), or the inference plan's shorter path where one exists;
- ``projections_bypassed``: whether reading the projections' parameters, as the fused MLP
  does, would skip what calling the projection modules does (a hook, a LoRA wrapper).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.modules import module as _module_hooks

from flash_swiglu import reference
from flash_swiglu.functional import swiglu, swiglu_mlp
from flash_swiglu.ops._common import autocast_call, check_activation
from flash_swiglu.ops.mlp import infer as _infer

# Hugging Face ``hidden_act`` names that are exactly one of our activations. Only used when a
# module has no activation function to evaluate; otherwise ``infer_activation`` evaluates it.
HF_ACTIVATIONS: dict[str, str] = {
    "silu": "silu",
    "swish": "silu",
    "gelu": "gelu",
    "gelu_python": "gelu",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_python_tanh": "gelu_tanh",
    "gelu_new": "gelu_tanh",
    "relu": "relu",
}

# Activations an existing module's function can be recognised as (``swiglu_oai`` clamps the
# up projection too, so it is not a function of the gate alone).
_RECOGNISED = ("silu", "gelu", "gelu_tanh", "relu")


_FLOAT_WEIGHTS = (torch.float16, torch.bfloat16, torch.float32)


def plain_linear(module: nn.Module, name: str) -> nn.Linear | None:
    """``module.<name>`` where it is exactly an ``nn.Linear`` (no subclass, no wrapper) with
    floating-point weights, else None."""
    child = module._modules.get(name)
    if type(child) is nn.Linear and child._parameters["weight"].dtype in _FLOAT_WEIGHTS:
        return child
    return None


def projections_bypassed(module: nn.Module, names: tuple[str, ...]) -> str | None:
    """Why the fused MLP, which reads the projections' parameters and never calls the
    projection modules, would compute something else than calling them, or None.

    It would where a projection is not a plain ``nn.Linear`` with floating-point weights (a
    LoRA wrapper, a quantized layer, a subclass with a forward of its own) or has a forward
    or backward hook, or where a global module hook is registered: the hooks
    ``nn.Module.__call__`` runs around a forward. Checked on every call (1.2-1.3 us of host time
    for three projections on the 2-core CI machine), so a hook or wrapper added after the
    module was built or patched is seen."""
    g = _module_hooks
    if (
        g._global_forward_hooks
        or g._global_forward_pre_hooks
        or g._global_backward_hooks
        or g._global_backward_pre_hooks
    ):
        return "a global module hook is registered"
    for name in names:
        child = plain_linear(module, name)
        if child is None:
            return f"{name} is not a plain nn.Linear with floating-point weights"
        if (
            child._forward_hooks
            or child._forward_pre_hooks
            or child._backward_hooks
            or child._backward_pre_hooks
        ):
            return f"{name} has a hook"
    return None


_WARNED = "_flash_swiglu_warned"  # the instance attribute set once warn_unfused has warned


def warn_unfused(module: nn.Module, reason: str) -> None:
    """Warn, once per module, that ``module`` runs without the fused MLP because of
    ``reason``; nothing while ``torch.compile`` traces."""
    if module.__dict__.get(_WARNED) or torch.compiler.is_compiling():
        return
    warnings.warn(
        f"flash_swiglu: {type(module).__name__} calls its projections instead of the fused "
        f"MLP while {reason}",
        stacklevel=4,
    )
    module.__dict__[_WARNED] = True


def _probe() -> torch.Tensor:
    # A dense grid plus far points: a clipped or saturating look-alike (gelu_10, relu6)
    # differs somewhere on it.
    grid = torch.linspace(-12.0, 12.0, 97, dtype=torch.float64)
    far = torch.tensor([-1e3, -30.0, 30.0, 1e3], dtype=torch.float64)
    return torch.cat([grid, far])


def activation_of_function(act: Callable[[torch.Tensor], torch.Tensor]) -> str | None:
    """The name of the activation (``"silu"``, ``"gelu"``, ``"gelu_tanh"`` or ``"relu"``) that
    ``act`` computes, or None when it is none of them.

    ``act`` is evaluated in float64 on a grid and compared with the reference, to fp32
    accuracy. This identifies what the function does, whatever it or its config entry is
    called (``"swish"``, ``"gelu_new"``, ``"gelu_fast"`` and ``"gelu_accurate"`` are all one of
    ours, ``"quick_gelu"`` and ``"gelu_10"`` are not), across ``transformers`` versions.
    """
    x = _probe()
    try:
        with torch.no_grad():
            y = act(x.clone())
    except Exception:  # an activation with parameters on another device, say
        return None
    if not isinstance(y, torch.Tensor) or y.shape != x.shape:
        return None
    y = y.detach().to("cpu", torch.float64)
    one = torch.ones_like(x)
    for name in _RECOGNISED:
        if torch.allclose(y, reference.act_glu(x, one, name), rtol=1e-6, atol=1e-9):
            return name
    return None


def activation_function_of(mlp: nn.Module) -> Callable | None:
    """The activation function an MLP module applies to its gate (``act_fn`` in LLaMA-style
    modules, ``activation_fn`` in Phi-3), or None."""
    for attr in ("act_fn", "activation_fn"):
        act = getattr(mlp, attr, None)
        if callable(act):
            return act
    return None


def hidden_act_name(mlp: nn.Module) -> str | None:
    """The activation name in the config of a Hugging Face MLP module (Gemma 2 and 3 call it
    ``hidden_activation``, the others ``hidden_act``), or None."""
    config = getattr(mlp, "config", None)
    for attr in ("hidden_activation", "hidden_act"):
        name = getattr(config, attr, None)
        if isinstance(name, str):
            return name
    return None


def infer_activation(mlp: nn.Module) -> str | None:
    """Our name for the activation of an existing gated MLP module, or None if unsupported.

    The module's activation function is evaluated (``activation_of_function``); a module
    without one falls back to its config's activation name through ``HF_ACTIVATIONS``.
    """
    act = activation_function_of(mlp)
    if act is not None:
        return activation_of_function(act)
    name = hidden_act_name(mlp)
    return HF_ACTIVATIONS.get(name) if name is not None else None


def mlp_forward(
    x: torch.Tensor,
    w_gate: torch.Tensor,
    w_up: torch.Tensor,
    w_down: torch.Tensor,
    b_gate: torch.Tensor | None,
    b_up: torch.Tensor | None,
    b_down: torch.Tensor | None,
    *,
    activation: str,
    recompute: bool,
) -> torch.Tensor:
    """``swiglu_mlp`` (autocast-aware, as it is). Without gradient, a call whose launch
    plan exists takes ``ops.mlp.infer`` (the same kernels in fewer host steps)."""
    y = _infer(x, w_gate, w_up, w_down, b_gate, b_up, b_down, activation)
    if y is not None:
        return y
    return swiglu_mlp(
        x, w_gate, w_up, w_down, b_gate, b_up, b_down, activation=activation, recompute=recompute
    )


def mlp_packed_forward(
    x: torch.Tensor,
    w_gate_up: torch.Tensor,
    w_down: torch.Tensor,
    b_gate_up: torch.Tensor | None,
    b_down: torch.Tensor | None,
    *,
    activation: str,
    recompute: bool,
    layout: str = "concat",
) -> torch.Tensor:
    """``mlp_forward`` with one packed gate/up weight ``[2N, K]`` (Phi-3's ``gate_up_proj``,
    gate rows first for ``"concat"``), whose gradient comes out packed: no copies of the
    halves in the forward, no zero-filled ``[2N, K]`` buffers in the backward."""
    from flash_swiglu._names import OAI_ALPHA, OAI_LIMIT
    from flash_swiglu.ops import _common as C
    from flash_swiglu.ops import linear as L
    from flash_swiglu.ops import mlp as M

    C.check_activation(activation)
    C.check_layout(layout)

    def call(x, w, wd, b, bd):
        L.check_linear_packed(x, w, b)
        M.check_down(x, L.packed_views(w, None, layout)[0], wd, bd)
        return M.mlp_packed(x, w, wd, b, bd, activation, layout, recompute, OAI_ALPHA, OAI_LIMIT)

    return autocast_call(call, x, w_gate_up, w_down, b_gate_up, b_down)


_SPLIT = ("gate_proj", "up_proj", "down_proj")


class SwiGLUMLP(nn.Module):
    """``down_proj(act(gate_proj(x)) * up_proj(x))`` through the fused ``swiglu_mlp``.

    A drop-in for a Hugging Face ``LlamaMLP`` (and the Mistral, Qwen and Gemma MLPs): the
    children ``gate_proj``, ``up_proj`` and ``down_proj`` are ``nn.Linear``, so their state
    dicts load into each other unchanged. ``recompute=True`` keeps only the input for the
    backward and recomputes the pre-activations (less memory, more time).

    The fused MLP reads the projections' parameters; it does not call the projection
    modules. Where that would change the result (a projection wrapped or replaced, as a
    LoRA adapter does, or a hook on one: ``projections_bypassed``) the call runs
    ``down_proj(swiglu(gate_proj(x), up_proj(x)))`` instead, calling them, and warns once.
    """

    def __init__(
        self,
        hidden_size: int,
        intermediate_size: int,
        *,
        bias: bool = False,
        activation: str = "silu",
        recompute: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.activation = check_activation(activation)
        if not isinstance(recompute, bool):
            raise TypeError(f"recompute must be a bool, got {type(recompute).__name__}")
        self.recompute = recompute
        kw = dict(bias=bias, device=device, dtype=dtype)
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, **kw)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, **kw)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, **kw)

    @property
    def hidden_size(self) -> int:
        return self.gate_proj.in_features

    @property
    def intermediate_size(self) -> int:
        return self.gate_proj.out_features

    @classmethod
    def from_module(
        cls, mlp: nn.Module, *, activation: str | None = None, recompute: bool = False
    ) -> SwiGLUMLP:
        """A ``SwiGLUMLP`` that shares the ``gate_proj``, ``up_proj`` and ``down_proj``
        children of ``mlp`` (a Hugging Face ``LlamaMLP``, say): the very same ``nn.Linear``
        modules and parameters, nothing copied, so training either trains both. A child
        that is a subclass of ``nn.Linear`` is shared too, and called (see the class).

        ``activation`` defaults to what ``mlp``'s activation function computes (see
        ``infer_activation``); a function that is none of ours raises a ValueError.
        """
        linears = {}
        for name in ("gate_proj", "up_proj", "down_proj"):
            child = getattr(mlp, name, None)
            if not isinstance(child, nn.Linear):
                raise ValueError(
                    f"{type(mlp).__name__} has no nn.Linear {name!r} "
                    f"(got {type(child).__name__}); from_module needs gate_proj, up_proj and "
                    "down_proj"
                )
            linears[name] = child
        g, u, d = linears.values()
        if u.weight.shape != g.weight.shape or d.weight.shape != g.weight.shape[::-1]:
            raise ValueError(
                "from_module needs gate_proj and up_proj of shape [N, K] and down_proj of "
                f"shape [K, N], got {tuple(g.weight.shape)}, {tuple(u.weight.shape)} and "
                f"{tuple(d.weight.shape)}"
            )
        if activation is None:
            activation = infer_activation(mlp)
            if activation is None:
                act = activation_function_of(mlp)
                raise ValueError(
                    f"cannot use the activation of {type(mlp).__name__} "
                    f"({type(act).__name__ if act is not None else None}, config name "
                    f"{hidden_act_name(mlp)!r}): it is none of {_RECOGNISED}; pass "
                    "activation= to override"
                )
        # Build on the meta device (no allocation), then adopt the existing children.
        module = cls(
            g.in_features,
            g.out_features,
            activation=activation,
            recompute=recompute,
            device="meta",
        )
        module.gate_proj, module.up_proj, module.down_proj = g, u, d
        return module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reason = projections_bypassed(self, _SPLIT)
        if reason is not None:  # a hook or a wrapper on a projection: call them
            warn_unfused(self, reason)
            g, u = self.gate_proj(x), self.up_proj(x)
            return self.down_proj(swiglu(g, u, activation=self.activation))
        return mlp_forward(
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

    def extra_repr(self) -> str:
        return (
            f"hidden_size={self.hidden_size}, intermediate_size={self.intermediate_size}, "
            f"bias={self.gate_proj.bias is not None}, activation={self.activation!r}, "
            f"recompute={self.recompute}"
        )


__all__ = [
    "HF_ACTIVATIONS",
    "SwiGLUMLP",
    "activation_function_of",
    "activation_of_function",
    "hidden_act_name",
    "infer_activation",
    "mlp_forward",
    "plain_linear",
    "projections_bypassed",
]

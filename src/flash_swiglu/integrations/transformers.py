"""Hugging Face ``transformers``: run the dense MLPs of a loaded model through ``swiglu_mlp``.

``patch_hf_model(model)`` replaces, per module *instance*, the ``forward`` of every dense
MLP of the LLaMA, Mistral, Qwen2, Qwen3, Gemma (1, 2, 3; GeGLU) and Phi-3 (packed
``gate_up_proj``) families by one that calls the fused MLP on the module's own parameters.
The classes are never touched, so other models in the process are unaffected; nothing is
added to or removed from the module tree, so ``state_dict()`` and ``save_pretrained`` are
unchanged. ``unpatch_hf_model(model)`` restores the class's ``forward``.

Which modules: those whose class is one of ``SUPPORTED_MLP_CLASSES`` and defined inside
``transformers`` (not remote code, not a subclass renamed by a wrapper), whose projections are
plain ``nn.Linear`` with floating-point weights (a LoRA-wrapped or quantized projection is
left alone, since the fused call would bypass it). MoE experts are not patched.

The fused call reads the projections' parameters and never calls the projection modules.
So each call of a patched MLP first checks that it still may: that its projections are
still plain ``nn.Linear`` with floating-point weights and that no forward or backward hook
is registered on them (nor a global module hook; ``modules.projections_bypassed``). Where
one is (a LoRA adapter wrapped around a projection after patching, a hook), that call runs
the class's own ``forward``, which calls the projections, and a warning says so once per
MLP. The patched ``forward`` is
a ``functools.partial`` of a module-level function, so a patched model pickles (``torch.save``
of the whole model) and loads back patched.

This module does not import ``transformers``: it recognises the modules by class name.
"""

from __future__ import annotations

import functools
import warnings
from typing import NamedTuple

import torch
from torch import nn

from flash_swiglu.modules import (
    activation_function_of,
    hidden_act_name,
    infer_activation,
    mlp_forward,
    mlp_packed_forward,
    plain_linear,
    projections_bypassed,
    warn_unfused,
)

# The dense gated MLPs of the supported families, by class name.
SUPPORTED_MLP_CLASSES: frozenset[str] = frozenset(
    {
        "LlamaMLP",
        "MistralMLP",
        "Qwen2MLP",
        "Qwen3MLP",
        "GemmaMLP",
        "Gemma2MLP",
        "Gemma3MLP",
        "Phi3MLP",
    }
)

# The instance attribute that marks a patched module and holds its settings.
_PATCH_ATTR = "_flash_swiglu_patch"


class _Patch(NamedTuple):
    activation: str
    recompute: bool


_PROJECTIONS = {
    "split": ("gate_proj", "up_proj", "down_proj"),
    "packed": ("gate_up_proj", "down_proj"),
}


def _unfused(module: nn.Module, reason: str, x: torch.Tensor) -> torch.Tensor:
    """The class's own ``forward``, which calls the projections (``reason``: why)."""
    warn_unfused(module, reason)
    return type(module).forward(module, x)


def _split_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The patched ``forward`` of an MLP with ``gate_proj``, ``up_proj`` and ``down_proj``."""
    reason = projections_bypassed(self, _PROJECTIONS["split"])
    if reason is not None:
        return _unfused(self, reason, x)
    patch: _Patch = getattr(self, _PATCH_ATTR)
    g, u, d = self.gate_proj, self.up_proj, self.down_proj
    return mlp_forward(
        x, g.weight, u.weight, d.weight, g.bias, u.bias, d.bias,
        activation=patch.activation, recompute=patch.recompute,
    )  # fmt: skip


def _packed_forward(self: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    """The patched ``forward`` of Phi-3's MLP: ``gate_up_proj`` is ``[2N, K]`` with the gate
    rows first (``chunk(2)`` order). It is read in place and its gradient written packed
    (``modules.mlp_packed_forward``)."""
    reason = projections_bypassed(self, _PROJECTIONS["packed"])
    if reason is not None:
        return _unfused(self, reason, hidden_states)
    patch: _Patch = getattr(self, _PATCH_ATTR)
    gu, d = self.gate_up_proj, self.down_proj
    return mlp_packed_forward(
        hidden_states, gu.weight, d.weight, gu.bias, d.bias,
        activation=patch.activation, recompute=patch.recompute,
    )  # fmt: skip


_FORWARDS = {"split": _split_forward, "packed": _packed_forward}


def _kind(module: nn.Module) -> str | None:
    """``"split"`` or ``"packed"`` for a patchable MLP, else None."""
    cls = type(module)
    if cls.__name__ not in SUPPORTED_MLP_CLASSES or not cls.__module__.startswith("transformers."):
        return None
    down = plain_linear(module, "down_proj")
    if down is None:
        return None
    n, k = down.in_features, down.out_features
    gate, up = plain_linear(module, "gate_proj"), plain_linear(module, "up_proj")
    if gate is not None and up is not None:
        shapes = {tuple(gate.weight.shape), tuple(up.weight.shape)}
        return "split" if shapes == {(n, k)} else None
    packed = plain_linear(module, "gate_up_proj")
    if packed is not None and tuple(packed.weight.shape) == (2 * n, k):
        return "packed"
    return None


def _is_ours(module: nn.Module) -> bool:
    f = module.__dict__.get("forward")
    return (
        isinstance(f, functools.partial)
        and f.func in _FORWARDS.values()
        and len(f.args) == 1
        and f.args[0] is module
        and not f.keywords
    )


def patch_hf_model(model: nn.Module, *, recompute: bool = False) -> int:
    """Patch, in place, every supported dense MLP of ``model`` to run through ``swiglu_mlp``.

    Args:
        model: any ``nn.Module`` containing Hugging Face MLP modules (a ``*ForCausalLM``, a
            bare decoder, a single MLP).
        recompute: passed to ``swiglu_mlp`` (True: less activation memory in training).

    Returns:
        How many MLPs this call patched. Already patched ones are left as they are (with
        their settings) and not counted, so a second call returns 0; to change
        ``recompute``, unpatch first.

    Raises:
        ValueError: an MLP's activation function is not one flash-swiglu computes (SiLU,
            exact GELU, tanh-approximated GELU, ReLU). Raised before anything is patched.

    A module whose ``forward`` was already replaced on the instance by someone else (an
    ``accelerate`` hook, say) is skipped with a warning: replacing it would drop theirs.
    """
    if not isinstance(recompute, bool):
        raise TypeError(f"recompute must be a bool, got {type(recompute).__name__}")
    plan: list[tuple[nn.Module, str, str]] = []
    unsupported: list[str] = []
    for path, module in model.named_modules():
        kind = _kind(module)
        if kind is None or _PATCH_ATTR in module.__dict__:
            continue
        if "forward" in module.__dict__:
            warnings.warn(
                f"flash_swiglu: not patching {path or '<model>'} ({type(module).__name__}): its "
                "forward was already replaced on the instance",
                stacklevel=2,
            )
            continue
        activation = infer_activation(module)
        if activation is None:
            act = activation_function_of(module)
            unsupported.append(
                f"{path or '<model>'} ({type(module).__name__}): activation "
                f"{type(act).__name__} (config: {hidden_act_name(module)!r})"
            )
            continue
        plan.append((module, kind, activation))
    if unsupported:
        raise ValueError(
            "flash_swiglu cannot patch these MLPs: their activation is not SiLU/swish, GELU "
            "(erf), GELU (tanh approximation: gelu_pytorch_tanh, gelu_new) or ReLU; nothing "
            "was patched:\n  " + "\n  ".join(unsupported)
        )
    for module, kind, activation in plan:
        setattr(module, _PATCH_ATTR, _Patch(activation, recompute))
        module.forward = functools.partial(_FORWARDS[kind], module)  # pickles, unlike a method
    return len(plan)


def unpatch_hf_model(model: nn.Module) -> int:
    """Undo ``patch_hf_model``: every patched MLP gets its class's ``forward`` back.

    Returns how many were restored. Raises a RuntimeError, before changing anything, when a
    patched module's ``forward`` was replaced again after patching (restoring it would drop
    that wrapper, keeping it would call a patch that is gone).
    """
    patched = [m for m in model.modules() if _PATCH_ATTR in m.__dict__]
    for module in patched:
        if not _is_ours(module):
            raise RuntimeError(
                f"cannot unpatch {type(module).__name__}: its forward was replaced after "
                f"patching ({module.__dict__.get('forward')!r})"
            )
    for module in patched:
        del module.__dict__["forward"]
        delattr(module, _PATCH_ATTR)
    return len(patched)


def is_patched(module: nn.Module) -> bool:
    """Whether ``module`` (one MLP) is currently patched by ``patch_hf_model``."""
    return _PATCH_ATTR in module.__dict__


__all__ = ["SUPPORTED_MLP_CLASSES", "is_patched", "patch_hf_model", "unpatch_hf_model"]

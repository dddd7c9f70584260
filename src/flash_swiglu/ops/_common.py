"""Validation and dispatch helpers shared by every launcher."""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable

import torch

from flash_swiglu._names import ACTIVATIONS, LAYOUTS

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_tensor(name: str, t: object) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() == 0:
        raise ValueError(f"{name} must have at least one dimension, got a 0-d tensor")
    if t.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"{name} has dtype {t.dtype}; flash_swiglu supports float16, bfloat16 and float32 "
            "(float64 for reference checks)"
        )
    return t


def check_same(names: tuple[str, ...], tensors: tuple[torch.Tensor, ...]) -> None:
    """Same shape, dtype and device for every tensor; the message names the arguments."""
    first_name, first = names[0], tensors[0]
    for name, t in zip(names[1:], tensors[1:], strict=True):
        if t.shape != first.shape:
            raise ValueError(
                f"{first_name} and {name} must have the same shape, got "
                f"{tuple(first.shape)} and {tuple(t.shape)}"
            )
        if t.device != first.device:
            raise ValueError(
                f"{first_name} and {name} must be on the same device, got "
                f"{first.device} and {t.device}"
            )
        if t.dtype != first.dtype:
            raise TypeError(
                f"{first_name} and {name} must have the same dtype, got {first.dtype} and {t.dtype}"
            )


_SUPPORTED = frozenset(SUPPORTED_DTYPES)


def check_pair(gate_name: str, gate: object, up_name: str, up: object) -> None:
    """``check_tensor`` on both and ``check_same``, with a fast path for valid input (the
    checks are host time that an elementwise kernel of tens of microseconds cannot hide)."""
    if (
        type(gate) is torch.Tensor
        and type(up) is torch.Tensor
        and gate.dtype in _SUPPORTED
        and gate.dtype == up.dtype
        and gate.shape == up.shape
        and gate.device == up.device
        and gate.dim() > 0
    ):
        return
    check_tensor(gate_name, gate)
    check_tensor(up_name, up)
    check_same((gate_name, up_name), (gate, up))


def check_activation(activation: str) -> str:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    return activation


def check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    return layout


def check_oai_params(alpha: float, limit: float) -> tuple[float, float]:
    alpha, limit = float(alpha), float(limit)
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be finite, got {alpha}")
    if not limit > 0:
        raise ValueError(f"limit must be positive (inf: no clamp), got {limit}")
    return alpha, limit


def autocast_call(call: Callable[..., torch.Tensor], *tensors: torch.Tensor | None) -> torch.Tensor:
    """``call(*tensors)`` with the casts ``nn.Linear`` gets under ``torch.autocast``.

    Where autocast is on for the device of ``tensors[0]``, every floating-point tensor but a
    float64 one is cast to the autocast dtype (differentiably: gradients reach fp32
    parameters in fp32) and ``call`` runs with autocast off, its inputs already in the dtype
    autocast would give them. A custom op is on none of autocast's lists, so the functions
    and modules that run projections cast here. Anything else (autocast off, a device
    autocast does not know, a first argument that is not a tensor, left to ``call``'s
    checks) calls ``call`` unchanged: about 1 us of host time (on the CI machine).
    """
    first = tensors[0]
    if not isinstance(first, torch.Tensor):
        return call(*tensors)
    device_type = first.device.type  # the ops run on CUDA and (interpreted) CPU tensors only
    if device_type not in ("cuda", "cpu") or not torch.is_autocast_enabled(device_type):
        return call(*tensors)
    dtype = torch.get_autocast_dtype(device_type)

    def cast(t: torch.Tensor | None) -> torch.Tensor | None:
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            return t
        return t if t.dtype == torch.float64 else t.to(dtype)

    with torch.autocast(device_type, enabled=False):
        return call(*(cast(t) for t in tensors))


_triton_ok: bool | None = None


def triton_available() -> bool:
    global _triton_ok
    if _triton_ok is None:
        try:
            import triton  # noqa: F401

            _triton_ok = True
        except ImportError:
            _triton_ok = False
    return _triton_ok


def use_triton(device: torch.device) -> bool:
    """CUDA tensors run the Triton kernels; CPU tensors too when Triton interprets.

    Whether Triton interprets is decided when the kernels are defined (``TRITON_INTERPRET=1``
    must be set before ``triton`` is first imported), so the kernels themselves are asked.
    """
    if not triton_available():
        return False
    if device.type == "cuda":
        return True
    if device.type == "cpu":
        from flash_swiglu.kernels import interpreting

        return interpreting()
    return False


def gemm_kernels(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether the matrix-product kernels (projection, training) run for this device and
    dtype: ``use_triton``, but not float64 on CUDA (Triton has no fp64 ``tl.dot`` there) and
    not bfloat16 on the CPU (Triton's interpreter multiplies bf16 bit patterns in ``tl.dot``:
    garbage). Those take the reference path, which computes the same thing in PyTorch."""
    if not use_triton(device):
        return False
    if dtype == torch.float64:
        return device.type != "cuda"
    return not (dtype == torch.bfloat16 and device.type == "cpu")


def row_groups(tensors: list[torch.Tensor]) -> list[tuple[int, list[int]]]:
    """Collapse the leading dimensions shared by ``tensors`` into as few strided groups as
    their strides allow: ``[(size, [stride of each tensor]), ...]``, outermost first."""
    return [(size, strides) for size, strides, _ in row_group_dims(tensors)]


def row_group_dims(tensors: list[torch.Tensor]) -> list[tuple[int, list[int], int]]:
    """``row_groups`` with each group's first dimension: ``[(size, strides, dim), ...]``."""
    shape = tensors[0].shape[:-1]
    groups: list[tuple[int, list[int], int]] = []
    for d, size in enumerate(shape):
        if size == 1:
            continue
        strides = [t.stride(d) for t in tensors]
        if groups:
            prev_size, prev_strides, first = groups[-1]
            if all(ps == size * s for ps, s in zip(prev_strides, strides, strict=True)):
                groups[-1] = (prev_size * size, strides, first)
                continue
        groups.append((size, strides, d))
    return groups


# Backward custom ops return a fixed tuple of tensors: an empty one stands for "no gradient".


def empty_if_none(t: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return t if t is not None else like.new_empty(0)


def fake_grads(likes, needs, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The fake outputs of a backward op: a gradient shaped like each needed input."""
    return tuple(
        t.new_empty(t.shape) if need and t is not None else x.new_empty(0)
        for t, need in zip(likes, needs, strict=True)
    )


def keep_needed(grads, needs) -> tuple[torch.Tensor | None, ...]:
    """A backward op's outputs as autograd wants them: None where no gradient was asked."""
    return tuple(g if need else None for g, need in zip(grads, needs, strict=True))


_bound = threading.local()


def bind_cuda_context(device: torch.device) -> None:
    """Make the device's primary CUDA context current in this thread, once per thread.

    Host TMA descriptors are encoded by a driver call (``cuTensorMapEncodeTiled``) that needs a
    current context, and Triton's launcher binds one only for the launch itself. A thread
    whose first CUDA work is ours (autograd's device thread, when the first node of a backward
    is one of our ops) has none: PyTorch no longer calls ``cudaSetDevice`` when the device
    is already the current one. ``cudaStreamIsCapturing`` is a runtime call (so it binds the
    primary context) that is legal during CUDA graph capture and synchronizes nothing."""
    if device.type != "cuda" or getattr(_bound, "done", None) == device.index:
        return
    with torch.cuda.device(device):
        torch.cuda.is_current_stream_capturing()
    _bound.done = device.index


def on_tensor_device(fn: Callable) -> Callable:
    """Run ``fn`` (a custom op's implementation, or an eager entry point: ``ops.*.glu``,
    ``linear``, ``mlp`` and their packed forms) with its first argument's CUDA device as the
    current one. The eager forward runs inside it; autograd runs each backward on a thread
    whose current device is the graph's.

    Triton launches on the current device and its current stream, and a custom op's Python
    implementation gets no device guard from the dispatcher. Without this, tensors on
    ``cuda:1`` while ``cuda:0`` is current (a model spread over GPUs by
    ``device_map="auto"``) would be launched on GPU 0's stream: an illegal address, or a
    race with the PyTorch ops of the same call on GPU 1's stream. Where the device is
    already the current one (the usual case) nothing is entered."""

    @functools.wraps(fn)
    def guarded(first, *args, **kwargs):
        if torch.compiler.is_compiling():  # traced: the custom ops guard themselves when run
            return fn(first, *args, **kwargs)
        dev = first.device
        if dev.type != "cuda" or dev.index == torch.cuda.current_device():
            return fn(first, *args, **kwargs)
        with torch.cuda.device(dev):
            return fn(first, *args, **kwargs)

    return guarded

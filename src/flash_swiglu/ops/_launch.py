"""Launching a JIT kernel with less host time than ``kernel[grid](*args, **kwargs)``.

``JITFunction.run`` binds every argument, specializes each one and hashes the result into a
cache key before it reaches the compiled kernel's launcher: 14 of the 51 us that one launch
of the Gluon forward took on the H200 machine's host, 6 of 26 for a plain elementwise
kernel (``benchmarks/results/h200-session31-explore/call1``). Where the host bounds the step
(small batches, decode without CUDA graphs) that is time the GPU waits.

``launch`` keeps its own cache of compiled kernels, keyed by what Triton specializes on
(each tensor's dtype and 16-byte alignment; each integer's being 1, its divisibility by 16
and its width; a host TMA descriptor's dtype, block, layout, padding and the divisibility of
its base, shape and strides; the constexpr and option values), and on a hit calls the
compiled kernel's launcher as ``JITFunction.run`` does (same stream, launch metadata and
hooks). The key holds at least what Triton's specialization looks at, so two launches that
share it would have compiled to the same kernel. A miss, anything it does not know how to
key, an interpreted kernel, a stand-in with only ``__getitem__`` (tests' spies), or
``FLASH_SWIGLU_FAST_LAUNCH=0`` go through ``kernel[grid]`` as before.

Only the arguments change between launches with one key: the kernel was compiled for their
specialization by Triton itself, on the first launch that had the key.
"""

from __future__ import annotations

import os

import torch

FAST_ENV = "FLASH_SWIGLU_FAST_LAUNCH"
_I32 = (-(2**31), 2**31 - 1)


class _Unkeyable(Exception):
    """An argument this module does not know how to key: take Triton's own path."""


def _arg_key(v):
    """What Triton's specialization can see of one non-constexpr argument (or more)."""
    if v is None or isinstance(v, bool):
        return v
    t = type(v)
    if t is int:
        return (v == 1, v % 16 == 0, _I32[0] <= v <= _I32[1], v >= 0)
    if t is float:
        return "f"
    if isinstance(v, torch.Tensor):
        return (v.dtype, v.data_ptr() % 16 == 0)
    if t.__name__ == "TensorDescriptor":
        base = v.base
        return (
            t,
            base.dtype,
            base.data_ptr() % 16 == 0,
            tuple(v.block_shape),
            getattr(v, "layout", None),
            getattr(v, "padding", None),
            tuple(s % 16 == 0 for s in v.shape),
            tuple(s % 16 == 0 for s in v.strides),
            tuple(s == 1 for s in v.strides),
        )
    raise _Unkeyable(t)


class _KernelInfo:
    """Per kernel: its parameters' names and defaults, and the cache."""

    __slots__ = ("cache", "defaults", "names")

    def __init__(self, kernel) -> None:
        params = kernel.params
        self.names = [p.name for p in params]
        self.defaults = [p.default for p in params]
        self.cache: dict = {}


_ATTR = "_flash_swiglu_launch"  # the _KernelInfo, kept on the kernel object itself
_TRITON: dict = {}


def _triton():
    """Triton's driver and knobs, imported once."""
    if not _TRITON:
        from triton import knobs
        from triton.runtime import driver
        from triton.runtime.jit import JITFunction

        _TRITON.update(driver=driver, knobs=knobs, jit=JITFunction)
    return _TRITON


def enabled() -> bool:
    return os.environ.get(FAST_ENV, "1") != "0"


def launch(kernel, grid: tuple[int, ...], *args, **kwargs):
    """``kernel[grid](*args, **kwargs)``, through the compiled kernel's launcher when a
    launch with the same key has been seen (module doc). Positional ``args`` are the
    kernel's leading parameters; ``kwargs`` the rest and the launch options."""
    tr = _triton()
    if not isinstance(kernel, tr["jit"]) or not enabled() or kernel.pre_run_hooks:
        return kernel[grid](*args, **kwargs)
    info = kernel.__dict__.get(_ATTR)
    if info is None:
        info = _KernelInfo(kernel)
        setattr(kernel, _ATTR, info)
    knobs = tr["knobs"]
    try:
        key = (tuple(map(_arg_key, args)), tuple(kwargs.items()), knobs.runtime.debug)
        hash(key)
    except (_Unkeyable, TypeError):
        return kernel[grid](*args, **kwargs)
    driver = tr["driver"].active
    device = driver.get_current_device()
    entry = info.cache.get((device, key))
    if entry is None:
        compiled = kernel[grid](*args, **kwargs)
        if compiled is not None and not hasattr(compiled, "result"):  # not an async compile
            info.cache[(device, key)] = compiled
        return compiled
    values = list(args)
    for i in range(len(args), len(info.names)):
        name = info.names[i]
        values.append(kwargs[name] if name in kwargs else info.defaults[i])
    stream = driver.get_current_stream(device)
    g0 = grid[0]
    g1 = grid[1] if len(grid) > 1 else 1
    g2 = grid[2] if len(grid) > 2 else 1
    rt = knobs.runtime
    entry.run(
        g0, g1, g2, stream, entry.function, entry.packed_metadata,
        entry.launch_metadata(grid, stream, *values),
        rt.launch_enter_hook, rt.launch_exit_hook, *values,
    )  # fmt: skip
    return entry


def cached(kernel) -> int:
    """How many compiled kernels ``launch`` holds for ``kernel`` (tests)."""
    info = getattr(kernel, "__dict__", {}).get(_ATTR)
    return len(info.cache) if info is not None else 0


def clear(kernel) -> None:
    """Forget ``kernel``'s cached compiled kernels (tests)."""
    info = getattr(kernel, "__dict__", {}).get(_ATTR)
    if info is not None:
        info.cache.clear()

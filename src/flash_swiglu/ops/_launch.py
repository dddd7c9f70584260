"""Launching a JIT kernel with less host time than ``kernel[grid](*args, **kwargs)``.

``JITFunction.run`` binds every argument, specializes each one and hashes the result into a
cache key before it reaches the compiled kernel's launcher: 14 of the 51 us that one launch
of the Gluon forward took on the H200 machine's host, 6 of 26 for a plain elementwise
kernel (``benchmarks/results/h200-session31-explore/call1``). Where the host bounds the step
(small batches, decode without CUDA graphs) that is time the GPU waits.

``launch`` keeps its own cache of compiled kernels, keyed by what Triton specializes on
(each tensor's dtype and 16-byte alignment; each integer's being 1 (or 0), its divisibility
by 16, its width and sign; a host TMA descriptor's dtype, block, layout, padding and the
divisibility of its base, shape and strides; the constexpr and option values, with their
names; Triton's debug flag), and on a hit calls the
compiled kernel's launcher as ``JITFunction.run`` does (same stream, launch metadata and
hooks). The key holds at least what Triton's specialization looks at, so two launches that
share it would have compiled to the same kernel. A miss, anything it does not know how to
key, an interpreted kernel, a stand-in with only ``__getitem__`` (tests' spies), or
``FLASH_SWIGLU_FAST_LAUNCH=0`` go through ``kernel[grid]`` as before.

Only the positional arguments change between launches with one key: the keyword arguments
(constexprs, options) are part of it, so the parameters after the positional ones are the
same values every time and are kept with the compiled kernel. Launch hooks (Triton's
``knobs.runtime.launch_enter_hook`` / ``launch_exit_hook``) are honoured as Triton's own
launch does; only where both are empty hook chains are they, and the launch metadata made
for them alone, left out. Triton's check that the Python globals a kernel read have not
changed since it was compiled is not repeated on a hit: the library's kernels read no global
that changes at run time.
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
    t = type(v)
    if t is int:
        return (v == 1, v == 0, v % 16 == 0, _I32[0] <= v <= _I32[1], v >= 0)
    if isinstance(v, torch.Tensor):
        return (v.dtype, v.data_ptr() % 16 == 0)
    if v is None or t is bool:
        return v
    if t is float:
        return "f"
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
    """Per kernel: its parameters' names and defaults, the cache, and how often it hit."""

    __slots__ = ("cache", "defaults", "hits", "names")

    def __init__(self, kernel) -> None:
        params = kernel.params
        self.names = [p.name for p in params]
        self.defaults = [p.default for p in params]
        self.cache: dict = {}
        self.hits = 0

    def tail(self, n_args: int, kwargs: dict) -> tuple:
        """The values of the parameters after the first ``n_args``, in signature order."""
        return tuple(
            kwargs.get(name, default)
            for name, default in zip(self.names[n_args:], self.defaults[n_args:], strict=True)
        )


_ATTR = "_flash_swiglu_launch"  # the _KernelInfo, kept on the kernel object itself
# Keyword values the key holds as they are (a tensor passed by keyword would key by identity).
_PLAIN = frozenset((int, float, str, bool, type(None)))
MAX_ENTRIES = 4096  # per kernel; past it new keys take Triton's path (no unbounded growth)
_TRITON: dict = {}


class _NoJIT:
    """Matches no kernel: the fast path is off where Triton lacks what it uses."""


def _triton():
    """Triton's driver, knobs and JIT class, imported once (``jit`` is ``_NoJIT`` where this
    Triton has no ``knobs``: then every launch takes ``kernel[grid]``)."""
    if not _TRITON:
        try:
            from triton import knobs
            from triton.runtime import driver
            from triton.runtime.jit import JITFunction
        except ImportError:
            _TRITON.update(driver=None, knobs=None, jit=_NoJIT)
        else:
            _TRITON.update(driver=driver, knobs=knobs, jit=JITFunction)
    return _TRITON


def enabled() -> bool:
    return os.environ.get(FAST_ENV, "1") != "0"


def _idle(hook) -> bool:
    """Whether a launch hook does nothing: None, or an empty hook chain (Triton 3.6 on)."""
    return hook is None or (type(hook).__name__ == "HookChain" and not hook.calls)


def _key(args: tuple, kwargs: dict, rt) -> tuple:
    """A launch's cache key (without the device); raises ``_Unkeyable``."""
    return (tuple(map(_arg_key, args)), tuple(kwargs.items()), rt.debug)


def launch(kernel, grid: tuple[int, ...], *args, **kwargs):
    """``kernel[grid](*args, **kwargs)``, through the compiled kernel's launcher when a
    launch with the same key has been seen (module doc). Positional ``args`` are the
    kernel's leading parameters; ``kwargs`` the rest and the launch options."""
    tr = _TRITON or _triton()
    if not isinstance(kernel, tr["jit"]) or kernel.pre_run_hooks or not enabled():
        return kernel[grid](*args, **kwargs)
    info = kernel.__dict__.get(_ATTR)
    if info is None:
        info = _KernelInfo(kernel)
        setattr(kernel, _ATTR, info)
    rt = tr["knobs"].runtime
    try:
        key = _key(args, kwargs, rt)
    except _Unkeyable:
        return kernel[grid](*args, **kwargs)
    if not all(type(v) in _PLAIN for v in kwargs.values()):
        return kernel[grid](*args, **kwargs)
    driver = tr["driver"].active
    device = driver.get_current_device()
    hit = info.cache.get((device, key))
    if hit is None:
        compiled = kernel[grid](*args, **kwargs)
        usable = compiled is not None and all(
            hasattr(compiled, a) for a in ("run", "function", "packed_metadata", "launch_metadata")
        )  # not an async compile's future, nor a launcher of another shape
        if usable and len(info.cache) < MAX_ENTRIES:
            info.cache[(device, key)] = (compiled, info.tail(len(args), kwargs))
        return compiled
    compiled, tail = hit
    info.hits += 1
    _run(compiled, tail, grid, args, rt, driver.get_current_stream(device))
    return compiled


def _run(compiled, tail: tuple, grid: tuple[int, ...], args: tuple, rt, stream) -> None:
    """Call ``compiled``'s launcher as ``JITFunction.run`` does, on ``stream``."""
    n = len(grid)
    g0, g1, g2 = grid[0], grid[1] if n > 1 else 1, grid[2] if n > 2 else 1
    enter, exit_ = rt.launch_enter_hook, rt.launch_exit_hook
    if _idle(enter) and _idle(exit_):
        compiled.run(g0, g1, g2, stream, compiled.function, compiled.packed_metadata, None,
                     None, None, *args, *tail)  # fmt: skip
    else:
        values = (*args, *tail)
        meta = compiled.launch_metadata(grid, stream, *values)
        compiled.run(g0, g1, g2, stream, compiled.function, compiled.packed_metadata, meta,
                     enter, exit_, *values)  # fmt: skip


class Bound:
    """``kernel`` with its grid and keyword arguments fixed: ``bound(*args)`` launches it as
    ``launch(kernel, grid, *args, **kwargs)`` does. Once a launch has put the compiled kernel
    in ``launch``'s cache, later calls take it from here without building the key.

    For a caller whose own cache key already fixes everything ``launch``'s key holds (each
    argument's type, dtype and 16-byte alignment, each integer's value): ``ops.linear``'s
    launch plans. Triton's debug flag and ``FLASH_SWIGLU_FAST_LAUNCH`` are read on every
    call; where either changed, or the kernel gained pre-run hooks, the call goes through
    ``launch`` again."""

    __slots__ = ("compiled", "debug", "device", "grid", "kernel", "kwargs", "tail")

    def __init__(self, kernel, grid: tuple[int, ...], kwargs: dict) -> None:
        self.kernel, self.grid, self.kwargs = kernel, grid, kwargs
        self.compiled = self.tail = self.debug = self.device = None

    def __call__(self, *args) -> None:
        compiled = self.compiled
        tr = _TRITON
        if compiled is None or self.kernel.pre_run_hooks or not enabled():
            self._first(args)
            return
        rt = tr["knobs"].runtime
        driver = tr["driver"].active
        device = driver.get_current_device()
        if rt.debug != self.debug or device != self.device:
            self._first(args)
            return
        _run(compiled, self.tail, self.grid, args, rt, driver.get_current_stream(device))
        info = self.kernel.__dict__.get(_ATTR)
        if info is not None:
            info.hits += 1

    def _first(self, args: tuple) -> None:
        """Through ``launch``; keep the compiled kernel where ``launch`` cached it."""
        self.compiled = None
        kernel, kwargs = self.kernel, self.kwargs
        compiled = launch(kernel, self.grid, *args, **kwargs)
        info = getattr(kernel, "__dict__", {}).get(_ATTR)
        if info is None or not enabled() or kernel.pre_run_hooks:
            return
        rt = _TRITON["knobs"].runtime
        try:
            key = _key(args, kwargs, rt)
        except _Unkeyable:
            return
        device = _TRITON["driver"].active.get_current_device()
        hit = info.cache.get((device, key))
        if hit is not None and hit[0] is compiled:
            self.compiled, self.tail, self.debug, self.device = compiled, hit[1], rt.debug, device


class Launch:
    """``kernel`` with its grid and keyword arguments fixed: ``run(*args)`` is
    ``launch(kernel, grid, *args, **kwargs)``. ``keep()`` swaps in a ``Bound`` of the same
    launch for a caller that keeps this object under a key of its own (the training plans of
    ``ops.train``): later calls then skip ``launch``'s key."""

    __slots__ = ("grid", "kernel", "kwargs", "run")

    def __init__(self, kernel, grid: tuple[int, ...], kwargs: dict) -> None:
        self.kernel, self.grid, self.kwargs = kernel, grid, kwargs
        self.run = self._launch

    def _launch(self, *args):
        return launch(self.kernel, self.grid, *args, **self.kwargs)

    def keep(self) -> Launch:
        self.run = Bound(self.kernel, self.grid, self.kwargs)
        return self


def cached(kernel) -> int:
    """How many compiled kernels ``launch`` holds for ``kernel`` (tests)."""
    info = getattr(kernel, "__dict__", {}).get(_ATTR)
    return len(info.cache) if info is not None else 0


def hits(kernel) -> int:
    """How many launches of ``kernel`` took the compiled kernel's launcher (tests)."""
    info = getattr(kernel, "__dict__", {}).get(_ATTR)
    return info.hits if info is not None else 0


def clear(kernel) -> None:
    """Forget ``kernel``'s cached compiled kernels (tests)."""
    info = getattr(kernel, "__dict__", {}).get(_ATTR)
    if info is not None:
        info.cache.clear()

"""``ops._launch.launch``: the compiled-kernel cache that skips ``JITFunction.run``'s binding.

CPU tier: the dispatch logic against a stand-in kernel (Triton's classes swapped for fakes
that record how each launch went). GPU tier: real kernels, the fast path against Triton's
own, bit for bit, across launches whose specialization differs.
"""

from __future__ import annotations

import inspect

import pytest
import torch

from flash_swiglu.ops import _launch


class _Param:
    def __init__(self, name, default=inspect.Parameter.empty):
        self.name, self.default = name, default


class _Compiled:
    def __init__(self, log):
        self.log, self.function, self.packed_metadata = log, "fn", "meta"

    def launch_metadata(self, grid, stream, *values):
        return ("md", grid)

    def run(self, g0, g1, g2, stream, function, packed, md, enter, exit_, *values):
        self.log.append(("fast", (g0, g1, g2), stream, values, md, enter, exit_))


class _FakeJIT:
    """Stands in for a JITFunction: ``kernel[grid](...)`` "compiles" once per call."""

    def __init__(self, names, defaults=None):
        defaults = defaults or {}
        self.params = [_Param(n, defaults.get(n, inspect.Parameter.empty)) for n in names]
        self.pre_run_hooks = []
        self.log = []

    def __getitem__(self, grid):
        def run(*args, **kwargs):
            self.log.append(("slow", grid, args, kwargs))
            return _Compiled(self.log)

        return run


class _Driver:
    def get_current_device(self):
        return 0

    def get_current_stream(self, device):
        return 1234


class _Knobs:
    class runtime:
        debug = False
        launch_enter_hook = None
        launch_exit_hook = None


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(
        _launch,
        "_TRITON",
        {"jit": _FakeJIT, "driver": type("D", (), {"active": _Driver()}), "knobs": _Knobs},
    )
    monkeypatch.delenv(_launch.FAST_ENV, raising=False)
    return _FakeJIT(["x", "n", "s", "BLOCK", "FLAG"], defaults={"FLAG": False})


def _kinds(kernel):
    return [entry[0] for entry in kernel.log]


def test_second_launch_with_the_same_key_calls_the_compiled_launcher(fake):
    x = torch.zeros(64)
    _launch.launch(fake, (3,), x, 32, 1.5, BLOCK=16, num_warps=4)
    _launch.launch(fake, (5, 2), x, 48, 2.5, BLOCK=16, num_warps=4)
    assert _kinds(fake) == ["slow", "fast"]
    _, grid, stream, values, md, enter, exit_ = fake.log[1]
    assert grid == (5, 2, 1) and stream == 1234
    # every parameter in signature order: positional, then kwargs, then defaults
    assert values == (x, 48, 2.5, 16, False)
    assert (md, enter, exit_) == (None, None, None)  # no hooks: no launch metadata
    assert _launch.cached(fake) == 1 and _launch.hits(fake) == 1


@pytest.mark.parametrize(
    "first, second",
    [
        ((32,), (33,)),  # divisibility by 16
        ((2,), (1,)),  # the value 1
        ((32,), (2**31 + 16,)),  # 32 against 64 bits
        ((-16,), (16,)),  # sign
        ((16,), (0,)),  # zero
    ],
)
def test_integer_specializations_get_their_own_entries(fake, first, second):
    x = torch.zeros(64)
    _launch.launch(fake, (1,), x, *first, 1.0, BLOCK=16)
    _launch.launch(fake, (1,), x, *second, 1.0, BLOCK=16)
    assert _kinds(fake) == ["slow", "slow"]
    _launch.launch(fake, (1,), x, *second, 1.0, BLOCK=16)
    assert _kinds(fake)[-1] == "fast"


def test_tensor_alignment_and_dtype_get_their_own_entries(fake):
    base = torch.zeros(64, dtype=torch.float16)
    aligned, offset = base[:32], base[1:33]  # 2 bytes past a 16-byte boundary
    assert offset.data_ptr() % 16 != 0
    for x in (aligned, offset, base.float()):
        _launch.launch(fake, (1,), x, 16, 1.0, BLOCK=16)
    assert _kinds(fake) == ["slow"] * 3
    _launch.launch(fake, (1,), offset, 16, 1.0, BLOCK=16)
    assert _kinds(fake)[-1] == "fast"
    assert _launch.cached(fake) == 3


def test_constexpr_values_and_their_names_are_in_the_key(fake):
    x = torch.zeros(64)
    _launch.launch(fake, (1,), x, 16, 1.0, BLOCK=16, FLAG=True)
    _launch.launch(fake, (1,), x, 16, 1.0, BLOCK=True, FLAG=16)  # same values, other names
    _launch.launch(fake, (1,), x, 16, 1.0, BLOCK=32, FLAG=True)
    _launch.launch(fake, (1,), x, 16, 1.0, BLOCK=16, FLAG=True, num_warps=8)
    assert _kinds(fake) == ["slow"] * 4


def test_descriptor_fields_are_in_the_key(fake):
    from triton.tools.tensor_descriptor import TensorDescriptor

    t = torch.zeros(64, 64, dtype=torch.float16)

    def desc(rows, block):
        return TensorDescriptor(t[:rows], [rows, 64], [64, 1], block)

    _launch.launch(fake, (1,), desc(64, [16, 16]), 16, 1.0, BLOCK=16)
    _launch.launch(fake, (1,), desc(64, [32, 16]), 16, 1.0, BLOCK=16)  # block
    _launch.launch(fake, (1,), desc(40, [16, 16]), 16, 1.0, BLOCK=16)  # shape % 16
    assert _kinds(fake) == ["slow"] * 3
    _launch.launch(fake, (1,), desc(48, [16, 16]), 16, 1.0, BLOCK=16)  # as the first
    assert _kinds(fake)[-1] == "fast"


def test_unknown_argument_types_take_tritons_path_every_time(fake):
    x = torch.zeros(64)
    for _ in range(2):
        _launch.launch(fake, (1,), x, 16, object(), BLOCK=16)
        _launch.launch(fake, (1,), x, 16, 1.0, BLOCK=[16])  # unhashable
        _launch.launch(fake, (1,), x, 16, 1.0, BLOCK=16, FLAG=x)  # a tensor by keyword
    assert _kinds(fake) == ["slow"] * 6
    assert _launch.cached(fake) == 0


def test_launch_hooks_get_their_metadata(fake, monkeypatch):
    """A hook set: the compiled launcher gets the hooks and the launch metadata, as through
    Triton's own launch; empty hook chains count as none."""
    from triton.knobs import HookChain

    x = torch.zeros(64)
    chain = HookChain()
    monkeypatch.setattr(_Knobs.runtime, "launch_enter_hook", chain)
    monkeypatch.setattr(_Knobs.runtime, "launch_exit_hook", HookChain(reversed=True))
    for _ in range(2):
        _launch.launch(fake, (2,), x, 16, 1.0, BLOCK=16)
    assert fake.log[-1][4:] == (None, None, None)
    chain.add(lambda metadata: None)
    _launch.launch(fake, (2,), x, 16, 1.0, BLOCK=16)
    md, enter, exit_ = fake.log[-1][4:]
    assert md == ("md", (2,)) and enter is chain and exit_ is not None


def test_the_cache_is_bounded(fake, monkeypatch):
    monkeypatch.setattr(_launch, "MAX_ENTRIES", 2)
    x = torch.zeros(64)
    for block in (1, 2, 3, 3):
        _launch.launch(fake, (1,), x, 16, 1.0, BLOCK=block)
    assert _kinds(fake) == ["slow"] * 4 and _launch.cached(fake) == 2


def test_switched_off_by_the_environment(fake, monkeypatch):
    monkeypatch.setenv(_launch.FAST_ENV, "0")
    x = torch.zeros(64)
    for _ in range(2):
        _launch.launch(fake, (1,), x, 16, 1.0, BLOCK=16)
    assert _kinds(fake) == ["slow", "slow"]


def test_pre_run_hooks_and_stand_ins_take_tritons_path(fake):
    x = torch.zeros(64)
    fake.pre_run_hooks.append(lambda *a, **k: None)
    for _ in range(2):
        _launch.launch(fake, (1,), x, 16, 1.0, BLOCK=16)
    assert _kinds(fake) == ["slow", "slow"]
    seen = []
    spy = type("Spy", (), {"__getitem__": lambda _, grid: lambda *a, **k: seen.append(grid)})()
    _launch.launch(spy, (7,), x)
    assert seen == [(7,)]


def test_debug_mode_is_in_the_key(fake, monkeypatch):
    x = torch.zeros(64)
    _launch.launch(fake, (1,), x, 16, 1.0, BLOCK=16)
    monkeypatch.setattr(_Knobs.runtime, "debug", True)
    _launch.launch(fake, (1,), x, 16, 1.0, BLOCK=16)
    assert _kinds(fake) == ["slow", "slow"]


def test_bound_launches_through_the_cache_then_without_a_key(fake, monkeypatch):
    """``Bound``: its first call goes through ``launch`` (which compiles and caches); later
    calls take the compiled kernel with no key built, passing the tail in signature order."""
    x = torch.zeros(64)
    bound = _launch.Bound(fake, (3, 2), {"BLOCK": 16, "num_warps": 4})
    bound(x, 32, 1.5)
    keyed = []
    real = _launch._arg_key
    monkeypatch.setattr(_launch, "_arg_key", lambda v: keyed.append(v) or real(v))
    bound(x, 48, 2.5)
    bound(x, 64, 3.5)
    assert _kinds(fake) == ["slow", "fast", "fast"] and keyed == []
    _, grid, stream, values, md, _, _ = fake.log[-1]
    assert grid == (3, 2, 1) and stream == 1234 and md is None
    assert values == (x, 64, 3.5, 16, False)
    assert _launch.hits(fake) == 2


def test_bound_goes_back_to_launch_when_the_launch_would_differ(fake, monkeypatch):
    """Switched off, Triton's debug flag changed, another current device, a pre-run hook:
    each call goes through ``launch`` (and so through Triton where that does)."""
    x = torch.zeros(64)
    bound = _launch.Bound(fake, (1,), {"BLOCK": 16})
    bound(x, 16, 1.0)
    monkeypatch.setenv(_launch.FAST_ENV, "0")
    bound(x, 16, 1.0)
    monkeypatch.setenv(_launch.FAST_ENV, "1")
    bound(x, 16, 1.0)  # through launch again: a hit there, then bound again
    bound(x, 16, 1.0)
    assert _kinds(fake) == ["slow", "slow", "fast", "fast"]
    monkeypatch.setattr(_Knobs.runtime, "debug", True)
    bound(x, 16, 1.0)  # a new key for launch: compiled again
    assert _kinds(fake)[-1] == "slow"
    monkeypatch.setattr(_Knobs.runtime, "debug", False)
    bound(x, 16, 1.0)
    bound(x, 16, 1.0)
    assert _kinds(fake)[-2:] == ["fast", "fast"]
    monkeypatch.setattr(_Driver, "get_current_device", lambda self: 1)
    bound(x, 16, 1.0)  # another device: launch's cache has no entry for it
    assert _kinds(fake)[-1] == "slow"
    fake.pre_run_hooks.append(lambda *a, **k: None)
    bound(x, 16, 1.0)
    bound(x, 16, 1.0)
    assert _kinds(fake)[-2:] == ["slow", "slow"]


def test_bound_with_a_stand_in_kernel_calls_it_every_time(fake):
    seen = []
    spy = type("Spy", (), {"__getitem__": lambda _, grid: lambda *a, **k: seen.append(a)})()
    bound = _launch.Bound(spy, (7,), {})
    bound(1)
    bound(2)
    assert seen == [(1,), (2,)]


@pytest.mark.gpu
def test_fast_path_matches_tritons_own_launch_bit_for_bit(monkeypatch):
    """The library's kernels through the cache against ``kernel[grid]``: the elementwise GLU,
    the fused projection (decode, TMA and Gluon paths) and the MLP step, with aligned and
    misaligned views between launches that share a kernel."""
    from flash_swiglu import swiglu, swiglu_linear, swiglu_mlp

    dev, dt = "cuda", torch.bfloat16
    k, n = 1024, 2816
    wg, wu = (torch.randn(n, k, device=dev, dtype=dt) * k**-0.5 for _ in range(2))
    wd = torch.randn(k, n, device=dev, dtype=dt) * n**-0.5
    buf = torch.randn(4096 * k + 8, device=dev, dtype=dt)

    def calls():
        out = []
        for m in (1, 8, 256, 4096):
            for off in (0, 1, 8):  # 16-byte aligned, 2 bytes off, 16 bytes off
                x = buf[off : off + m * k].view(m, k) if off != 1 else None
                if x is None:  # a misaligned base: the pointer paths only
                    x = buf[1 : 1 + m * (k - 8)].view(m, k - 8)
                    out.append(swiglu(x, x.flip(0)))
                    continue
                out.append(swiglu_linear(x, wg, wu))
                out.append(swiglu(x, x.flip(0)))
        x = buf[: 2048 * k].view(2048, k).clone().requires_grad_()
        y = swiglu_mlp(x, wg, wu, wd)
        y.backward(torch.ones_like(y))
        out += [y, x.grad]
        return out

    from flash_swiglu.kernels import ws_mlp as W
    from flash_swiglu.kernels.elementwise import _glu_fwd_kernel
    from flash_swiglu.kernels.linear import _linear_decode_kernel, _linear_decode_tma_kernel

    monkeypatch.setenv(_launch.FAST_ENV, "0")
    slow = [calls() for _ in range(2)][-1]
    monkeypatch.setenv(_launch.FAST_ENV, "1")
    fast = [calls() for _ in range(2)][-1]  # the first run fills the cache
    for a, b in zip(slow, fast, strict=True):
        assert torch.equal(a, b)
    # the second run took the compiled launchers
    assert _launch.hits(_glu_fwd_kernel) > 0
    assert _launch.hits(_linear_decode_kernel) + _launch.hits(_linear_decode_tma_kernel) > 0
    assert _launch.hits(W.glu_forward_ws_kernel) > 0

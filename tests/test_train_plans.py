"""``ops.train``'s training plans (``_TRAIN_PLANS``): the saving forward of an MLP training
step leaves what it and the backward over its output launch (``TrainPlan``), and later steps
with the same ``train_key`` run those launches without the layers of the full path.

Kernel tier (interpreter on the CPU): steps through a plan give the full path's output and
every gradient bit for bit, on fresh inputs, with dh fused or split, 2-D and 3-D x, eager and
through the custom ops (``torch.compile``'s ``aot_eager``); what the key holds gets a plan of
its own; biases, ``recompute=True``, a copied x and the switch keep none; a dy the plan's
launches were not made for takes the full path; a plan holds no tensor.
GPU tier: bf16 steps on model shapes (Triton and Gluon forwards; split, Triton-fused and
warp-specialized backwards) through plans and without, bit for bit, and the plans' launches
taking the compiled kernels without ``launch``'s key.
"""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

import flash_swiglu
from flash_swiglu.ops import _launch
from flash_swiglu.ops import linear as L
from flash_swiglu.ops import train as T


@pytest.fixture
def full_forwards(monkeypatch):
    """The saving forwards that ran the full path (``T.forward_saving`` runs only there)."""
    seen = []
    real = T.forward_saving
    monkeypatch.setattr(T, "forward_saving", lambda *a: seen.append(1) or real(*a))
    return seen


def _inputs(m_shape, n, k, dtype, device, bias=False):
    x = torch.randn((*m_shape, k), device=device).to(dtype)
    wg, wu = ((torch.randn(n, k, device=device) * 2 / k**0.5).to(dtype) for _ in range(2))
    wd = (torch.randn(k, n, device=device) / n**0.5).to(dtype)
    bs = [torch.randn(s, device=device).to(dtype) if bias else None for s in (n, n, k)]
    return [x, wg, wu, wd, *bs]


def _step(inputs, dy, activation="silu", recompute=False, fn=None):
    """Output and every gradient of one training step of ``swiglu_mlp`` (or ``fn``)."""
    leaves = [t.detach().clone().requires_grad_(True) if t is not None else None for t in inputs]
    fn = fn or (lambda *a: flash_swiglu.swiglu_mlp(*a, activation=activation, recompute=recompute))
    y = fn(*leaves)
    grads = torch.autograd.grad(y, [t for t in leaves if t is not None], dy)
    return [y.detach(), *grads]


def _without_plans(monkeypatch, fn):
    monkeypatch.setenv(L.PLAN_ENV, "0")
    try:
        return fn()
    finally:
        monkeypatch.delenv(L.PLAN_ENV)


def _same(a, b):
    assert len(a) == len(b)
    for i, (p, q) in enumerate(zip(a, b, strict=True)):
        assert torch.equal(p, q), f"item {i} differs"


@pytest.mark.parametrize("split", [False, True], ids=["fused-dh", "split-dh"])
@pytest.mark.parametrize(
    "m_shape, activation", [((40,), "silu"), ((2, 19), "gelu_tanh"), ((3, 8), "swiglu_oai")]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_a_plan_serves_later_steps_bit_for_bit(device, full_forwards, monkeypatch, split,
                                               m_shape, activation, dtype):  # fmt: skip
    monkeypatch.setattr(T, "SPLIT_DH", split)
    n, k = 80, 48
    weights = _inputs(m_shape, n, k, dtype, device)[1:]
    for i in range(3):
        x = torch.randn((*m_shape, k), device=device).to(dtype)
        dy = torch.randn((*m_shape, k), device=device).to(dtype)
        got = _step([x, *weights], dy, activation)
        assert len(full_forwards) == 1 + i  # the first step made the plan, the others ran it
        assert len(T._TRAIN_PLANS) == 1
        want = _without_plans(monkeypatch, lambda: _step([x, *weights], dy, activation))  # noqa: B023
        assert len(full_forwards) == 2 + i
        _same(got, want)


def test_each_part_of_the_key_gets_a_plan_of_its_own(device, monkeypatch):
    dt = torch.float32
    x, wg, wu, wd, *_ = _inputs((16,), 64, 32, dt, device)
    dy = torch.randn(16, 32, device=device)
    _step([x, wg, wu, wd, None, None, None], dy)
    _step([x, wg, wu, wd, None, None, None], dy)
    assert len(T._TRAIN_PLANS) == 1
    _step([x[:8], wg, wu, wd, None, None, None], dy[:8])  # tokens
    _step([x, wg, wu, wd, None, None, None], dy, activation="gelu")  # activation
    assert len(T._TRAIN_PLANS) == 3
    monkeypatch.setattr(T, "SPLIT_DH", True)  # a module setting
    _step([x, wg, wu, wd, None, None, None], dy)
    assert len(T._TRAIN_PLANS) == 4
    torch.set_float32_matmul_precision("high")  # fp32's precision
    try:
        _step([x, wg, wu, wd, None, None, None], dy)
    finally:
        torch.set_float32_matmul_precision("highest")
    assert len(T._TRAIN_PLANS) == 5
    T.load_table.cache_clear()  # the training table's cache drops them
    assert not T._TRAIN_PLANS and not L._PLANS
    _step([x, wg, wu, wd, None, None, None], dy)
    L.clear_plans()
    assert not T._TRAIN_PLANS


def test_a_table_reader_put_in_place_gets_plans_of_its_own(device, monkeypatch, full_forwards):
    """A test or an exploration that swaps ``load_table`` (to try another entry) must not run
    a plan the real table's entries made."""
    dt = torch.float32
    x, wg, wu, wd, *_ = _inputs((16,), 64, 32, dt, device)
    dy = torch.randn(16, 32, device=device)
    inputs = [x, wg, wu, wd, None, None, None]
    want = _step(inputs, dy)
    assert len(T._TRAIN_PLANS) == 1 and len(full_forwards) == 1
    for module in (T, L):
        real = module.load_table
        monkeypatch.setattr(module, "load_table", lambda name, real=real: real(name))
        _same(_step(inputs, dy), want)  # the full path again: a plan of its own
        _same(_step(inputs, dy), want)  # through that plan
        monkeypatch.setattr(module, "load_table", real)
    assert len(T._TRAIN_PLANS) == 3 and len(full_forwards) == 3
    _same(_step(inputs, dy), want)  # the real readers back: the first plan
    assert len(T._TRAIN_PLANS) == 3 and len(full_forwards) == 3


def test_no_plan_where_the_full_path_must_run(device, monkeypatch):
    dt = torch.float16
    inputs = _inputs((12,), 64, 48, dt, device, bias=True)
    dy = torch.randn(12, 48, device=device).to(dt)
    _step(inputs, dy)  # biases
    _step([*inputs[:4], None, None, None], dy, recompute=True)  # recompute: nothing saved
    wide = torch.randn(12, 56, device=device).to(dt).requires_grad_(True)
    y = flash_swiglu.swiglu_mlp(wide[:, 1:49], *inputs[1:4])  # x misaligned: copied
    y.backward(dy)
    assert not T._TRAIN_PLANS
    monkeypatch.setenv(L.PLAN_ENV, "0")
    _step([*inputs[:4], None, None, None], dy)
    assert not T._TRAIN_PLANS
    monkeypatch.delenv(L.PLAN_ENV)
    _step([*inputs[:4], None, None, None], dy)
    assert len(T._TRAIN_PLANS) == 1


def test_a_dy_the_plan_was_not_made_for_takes_the_full_path(device, monkeypatch):
    """dy a strided view (rows 16-byte aligned, row stride not K): the full backward."""
    dt = torch.float16
    x, wg, wu, wd, *_ = _inputs((10,), 64, 48, dt, device)
    bwd = []
    real = T.backward
    monkeypatch.setattr(T, "backward", lambda *a, **kw: bwd.append(1) or real(*a, **kw))
    weights = [wg, wu, wd, None, None, None]
    dy = torch.randn(10, 48, device=device).to(dt)
    _step([x, *weights], dy)
    assert not bwd  # the first forward made the plan, and its backward took it
    _same(_step([x, *weights], dy), _without_plans(monkeypatch, lambda: _step([x, *weights], dy)))
    assert len(bwd) == 1  # the plan's backward, then the full one without plans
    wide = torch.randn(10, 56, device=device).to(dt)[:, :48]
    _same(
        _step([x, *weights], wide),
        _without_plans(monkeypatch, lambda: _step([x, *weights], wide)),
    )
    assert len(bwd) == 3  # both through the full backward


def test_compiled_steps_take_the_plan_bit_for_bit(device, monkeypatch, full_forwards):
    """The custom ops under ``torch.compile`` (``aot_eager``: AOTAutograd's graphs, our ops
    run as they are) through the plan, against the same compiled steps without plans."""
    dt = torch.float32
    x, wg, wu, wd, *_ = _inputs((2, 9), 64, 32, dt, device)
    fn = torch.compile(lambda *a: flash_swiglu.swiglu_mlp(*a), backend="aot_eager", fullgraph=True)
    weights = [wg, wu, wd, None, None, None]
    for _ in range(3):
        x = torch.randn(2, 9, 32, device=device)
        dy = torch.randn(2, 9, 32, device=device)
        got = _step([x, *weights], dy, fn=fn)
        want = _without_plans(monkeypatch, lambda: _step([x, *weights], dy, fn=fn))  # noqa: B023
        _same(got, want)
    assert len(T._TRAIN_PLANS) == 1
    assert len(full_forwards) == 1 + 3  # one to make the plan, then only the plan-off steps


def test_a_plan_holds_no_tensor(device):
    dt = torch.float16
    inputs = _inputs((8,), 64, 48, dt, device)
    dy = torch.randn(8, 48, device=device).to(dt)
    got = _step([*inputs[:4], None, None, None], dy)
    assert len(T._TRAIN_PLANS) == 1
    refs = [weakref.ref(t) for t in (*inputs[:4], dy, *got)]
    del inputs, dy, got
    gc.collect()
    assert all(r() is None for r in refs) and len(T._TRAIN_PLANS) == 1


@pytest.mark.gpu
@pytest.mark.parametrize(
    "rows, hidden, inter",
    [
        (256, 1024, 2816),  # the example's MLP: Triton forward, split dh
        (2048, 2048, 8192),  # Llama-3.2-1B: Gluon forward, split dh
        (512, 4096, 14336),  # Llama-3-8B: Triton forward, Triton fused backward
        (2048, 4096, 14336),  # Llama-3-8B: Gluon forward, warp-specialized backward
    ],
)
def test_plans_on_model_shapes_bit_for_bit(monkeypatch, rows, hidden, inter):
    """``SwiGLUMLP`` training steps in bf16 through plans and without, bit for bit, each
    route as the committed tables give it; the plans' launches take the compiled kernels
    held by ``_launch.Bound``."""
    from flash_swiglu import SwiGLUMLP

    dev, dt = "cuda", torch.bfloat16
    torch.manual_seed(0)
    mlp = SwiGLUMLP(hidden, inter, device=dev, dtype=dt)
    params = list(mlp.parameters())

    def step(x, dy):
        for p in params:
            p.grad = None
        xl = x.clone().requires_grad_(True)
        y = mlp(xl)
        y.backward(dy)
        return [y.detach(), xl.grad, *(p.grad.clone() for p in params)]

    for _ in range(3):
        x = torch.randn(rows, hidden, device=dev, dtype=dt)
        dy = torch.randn(rows, hidden, device=dev, dtype=dt)
        got = step(x, dy)
        _same(got, _without_plans(monkeypatch, lambda: step(x, dy)))  # noqa: B023
    (plan,) = T._TRAIN_PLANS.values()
    assert plan._dh  # the backward took the plan
    fwd = plan.fwd.ws.launch if hasattr(plan.fwd, "ws") else plan.fwd.launch
    assert isinstance(fwd.run, _launch.Bound) and fwd.run.compiled is not None

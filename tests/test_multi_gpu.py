"""GPU tier, two GPUs or more: every op on tensors of ``cuda:1`` while ``cuda:0`` is the
current device (a model spread over GPUs, ``device_map="auto"``).

Triton launches on the current device and its stream, and a custom op gets no device guard
from the dispatcher; the ops enter their inputs' device themselves
(``ops._common.on_tensor_device``). Each result is compared with the same call made with
``cuda:1`` current: the same kernels on the same GPU, so the bits must match."""

from __future__ import annotations

import pytest
import torch

import flash_swiglu

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs two GPUs"
    ),
]
DT = torch.bfloat16


def _grads(fn, inputs):
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    out = fn(*leaves)
    dout = torch.ones_like(out) / out.shape[-1] ** 0.5
    return [out.detach(), *torch.autograd.grad(out, leaves, dout)]


def _both_ways(fn, inputs):
    """``fn``'s output and gradients with ``cuda:0`` current, then with ``cuda:1``."""
    with torch.cuda.device(0):
        away = _grads(fn, inputs)
        torch.cuda.synchronize(1)
    with torch.cuda.device(1):
        home = _grads(fn, inputs)
        torch.cuda.synchronize(1)
    return away, home


def _inputs(m, *weights):
    """x ``[m, K]`` and weights of the given shapes on ``cuda:1``, scaled by their fan-in."""
    gen = torch.Generator(device="cuda:1").manual_seed(0)
    x = torch.randn(m, weights[0][1], device="cuda:1", generator=gen).to(DT)
    ws = [(torch.randn(s, device="cuda:1", generator=gen) / s[1] ** 0.5).to(DT) for s in weights]
    return [x, *ws]


def _same(away, home):
    assert len(away) == len(home)
    for a, h in zip(away, home, strict=True):
        assert a.device == torch.device("cuda:1")
        assert torch.equal(a, h)


def test_elementwise_on_another_gpu():
    gate, up = (torch.randn(2048, 4096, device="cuda:1").to(DT) for _ in range(2))
    _same(*_both_ways(flash_swiglu.swiglu, [gate, up]))
    packed = torch.randn(512, 8192, device="cuda:1").to(DT)
    fn = lambda t: flash_swiglu.swiglu_packed(t, layout="interleaved")
    _same(*_both_ways(fn, [packed]))


@pytest.mark.parametrize("m", [1, 16, 300, 2048])
def test_projection_on_another_gpu(m):
    """Llama-3.2-1B's shape: the matrix-vector kernel (one token), the decode kernel, the
    Gluon or TMA forward; the backward's fused kernel and cuBLAS."""
    x, wg, wu = _inputs(m, (8192, 2048), (8192, 2048))
    _same(*_both_ways(flash_swiglu.swiglu_linear, [x, wg, wu]))
    w = torch.cat([wg, wu])
    _same(*_both_ways(flash_swiglu.swiglu_linear_packed, [x, w]))


@pytest.mark.parametrize("m", [300, 2048])
@pytest.mark.parametrize("recompute", [False, True])
def test_mlp_on_another_gpu(m, recompute):
    """Llama-3-8B's MLP, forward and backward (the Gluon backward from 2048 rows)."""
    x, wg, wu, wd = _inputs(m, (14336, 4096), (14336, 4096), (4096, 14336))
    fn = lambda *a: flash_swiglu.swiglu_mlp(*a, recompute=recompute)
    _same(*_both_ways(fn, [x, wg, wu, wd]))

"""GPU tier (``pytest -m gpu``): bf16, real sizes, past 2^31 elements, CUDA graphs, compile."""

from __future__ import annotations

import pytest
import torch

import flash_swiglu
from flash_swiglu import reference
from flash_swiglu._names import ACTIVATIONS

from _tolerance import assert_within_rule

pytestmark = pytest.mark.gpu
DTYPES = [torch.bfloat16, torch.float16, torch.float32]


def _refs(gate, up, dout, activation):
    g64 = gate.double().requires_grad_(True)
    u64 = up.double().requires_grad_(True)
    out64 = reference.act_glu(g64, u64, activation)
    ref = (out64.detach(), *torch.autograd.grad(out64, (g64, u64), dout.double()))
    gt = gate.clone().requires_grad_(True)
    ut = up.clone().requires_grad_(True)
    out_t = reference.act_glu(gt, ut, activation)
    eager = (out_t.detach(), *torch.autograd.grad(out_t, (gt, ut), dout))
    return ref, eager


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_llama_8b_shape(activation, dtype):
    rows, cols = 2048, 14336
    gate = torch.randn(rows, cols, device="cuda", dtype=dtype) * 3
    up = torch.randn(rows, cols, device="cuda", dtype=dtype) * 3
    g, u = gate.clone().requires_grad_(True), up.clone().requires_grad_(True)
    out = flash_swiglu.swiglu(g, u, activation=activation)
    dout = torch.randn_like(out)
    dg, du = torch.autograd.grad(out, (g, u), dout)
    ref, eager = _refs(gate, up, dout, activation)
    for name, got, r, e in zip(("out", "dgate", "dup"), (out, dg, du), ref, eager, strict=True):
        assert_within_rule(name, got, e, r)


@pytest.mark.parametrize("layout", ["concat", "interleaved"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_packed_bf16(layout, dtype):
    x = torch.randn(4, 1000, 2 * 11008, device="cuda", dtype=dtype).requires_grad_(True)
    out = flash_swiglu.swiglu_packed(x, layout=layout)
    dout = torch.randn_like(out)
    (dx,) = torch.autograd.grad(out, x, dout)
    gate, up = reference.split_packed(x.detach(), layout)
    ref, eager = _refs(gate, up, dout, "silu")
    assert_within_rule("out", out, eager[0], ref[0])
    assert_within_rule(
        "dx",
        dx,
        reference.merge_packed(eager[1], eager[2], layout),
        reference.merge_packed(ref[1], ref[2], layout),
    )


def test_past_2_pow_31_elements():
    """2^31 + 4096 elements per operand: the last rows are only reachable with 64-bit offsets."""
    rows, cols = 2**31 // 4096 + 1, 4096
    gate = torch.randn(rows, cols, device="cuda", dtype=torch.bfloat16)
    up = torch.randn(rows, cols, device="cuda", dtype=torch.bfloat16)
    assert gate.numel() > 2**31
    out = flash_swiglu.swiglu(gate, up)
    dout = torch.randn_like(out)
    dgate, dup = torch.ops.flash_swiglu.glu_bwd(gate, up, dout, "silu", 1.702, 7.0)
    for sl in (slice(0, 2), slice(rows // 2, rows // 2 + 2), slice(rows - 3, rows)):
        ref, eager = _refs(gate[sl], up[sl], dout[sl], "silu")
        assert_within_rule("out", out[sl], eager[0], ref[0])
        assert_within_rule("dgate", dgate[sl], eager[1], ref[1])
        assert_within_rule("dup", dup[sl], eager[2], ref[2])
    del gate, up, out, dout, dgate, dup
    # The packed interleaved path past 2^31 elements of x.
    x = torch.randn(2**30 // 4096 + 1, 2 * 4096, device="cuda", dtype=torch.bfloat16)
    assert x.numel() > 2**31
    y = flash_swiglu.swiglu_packed(x, layout="interleaved")
    tail = x[-2:]
    ref = reference.act_glu(*reference.split_packed(tail.double(), "interleaved"))
    eager = reference.act_glu(*reference.split_packed(tail, "interleaved"))
    assert_within_rule("out", y[-2:], eager, ref)


def test_cuda_graph_capture():
    gate = torch.randn(512, 4096, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    up = torch.randn(512, 4096, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    dout = torch.randn(512, 4096, device="cuda", dtype=torch.bfloat16)

    def step():
        out = flash_swiglu.swiglu(gate, up)
        return (out, *torch.autograd.grad(out, (gate, up), dout))

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            step()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = step()
    with torch.no_grad():
        gate.copy_(torch.randn_like(gate))
        up.copy_(torch.randn_like(up))
    graph.replay()
    torch.cuda.synchronize()
    expected = step()
    for a, b in zip(captured, expected, strict=True):
        assert torch.equal(a, b)


def test_compile_inductor_cuda():
    def f(x, gate, up):
        return flash_swiglu.swiglu_packed(x, layout="interleaved").sum() + (
            flash_swiglu.swiglu(gate, up, activation="gelu_tanh").square().sum()
        )

    # fp32, so that Inductor's reordering of the surrounding sums stays within rounding.
    x = torch.randn(64, 2 * 512, device="cuda", requires_grad=True)
    gate = torch.randn(64, 512, device="cuda", requires_grad=True)
    up = torch.randn(64, 512, device="cuda", requires_grad=True)
    torch._dynamo.reset()
    loss = torch.compile(f, fullgraph=True)(x, gate, up)
    grads = torch.autograd.grad(loss, (x, gate, up))
    ref = f(x, gate, up)
    ref_grads = torch.autograd.grad(ref, (x, gate, up))
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-3)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b)

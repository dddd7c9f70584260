"""Kernel tier: error paths, custom-op contracts (opcheck) and torch.compile tracing."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import flash_swiglu
from flash_swiglu import reference

from _tolerance import assert_within_rule


def t(*shape, dtype=torch.float32, device="cpu"):
    return torch.randn(shape, dtype=dtype, device=device)


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("call", "exc", "words"),
    [
        (
            lambda: flash_swiglu.swiglu(t(4, 8), t(4, 9)),
            ValueError,
            ["gate", "up", "(4, 8)", "(4, 9)"],
        ),
        (lambda: flash_swiglu.swiglu(t(4, 8), t(8, 4)), ValueError, ["same shape"]),
        (
            lambda: flash_swiglu.swiglu(t(4, 8), t(4, 8, dtype=torch.float16)),
            TypeError,
            ["gate", "up", "torch.float32", "torch.float16"],
        ),
        (
            lambda: flash_swiglu.swiglu(t(4, 8), t(4, 8, device="meta")),
            ValueError,
            ["same device", "cpu", "meta"],
        ),
        (
            lambda: flash_swiglu.swiglu(torch.ones(4, 8, dtype=torch.int32), t(4, 8)),
            TypeError,
            ["gate", "torch.int32"],
        ),
        (
            lambda: flash_swiglu.swiglu(t(4, 8), torch.ones(4, 8, dtype=torch.bool)),
            TypeError,
            ["up", "torch.bool"],
        ),
        (lambda: flash_swiglu.swiglu(t(4, 8).numpy(), t(4, 8)), TypeError, ["gate", "ndarray"]),
        (lambda: flash_swiglu.swiglu(torch.tensor(1.0), torch.tensor(2.0)), ValueError, ["0-d"]),
        (
            lambda: flash_swiglu.swiglu(t(4, 8), t(4, 8), activation="swish"),
            ValueError,
            ["activation", "swish", "silu"],
        ),
        (
            lambda: flash_swiglu.swiglu(t(4, 8), t(4, 8), activation="swiglu_oai", limit=0),
            ValueError,
            ["limit"],
        ),
        (
            lambda: flash_swiglu.swiglu(t(4, 8), t(4, 8), activation="swiglu_oai", alpha=math.nan),
            ValueError,
            ["alpha", "finite", "nan"],
        ),
        (
            lambda: flash_swiglu.swiglu_mlp(
                t(2, 8), t(4, 8), t(4, 8), t(8, 4), activation="swiglu_oai", limit=math.nan
            ),
            ValueError,
            ["limit", "positive", "nan"],
        ),
        (lambda: flash_swiglu.swiglu_packed(t(4, 9)), ValueError, ["even", "(4, 9)"]),
        (
            lambda: flash_swiglu.swiglu_packed(t(4, 8), layout="split"),
            ValueError,
            ["layout", "split", "concat", "interleaved"],
        ),
        (
            lambda: flash_swiglu.swiglu_packed(torch.ones(4, 8, dtype=torch.int64)),
            TypeError,
            ["x", "torch.int64"],
        ),
    ],
)
def test_bad_input_raises_a_clear_error(call, exc, words):
    with pytest.raises(exc) as info:
        call()
    for w in words:
        assert w in str(info.value), f"{w!r} not in {info.value}"


_TWICE = {  # name: (call, inputs that require grad)
    "swiglu": (lambda a: flash_swiglu.swiglu(a["g"], a["u"]), ("g", "u")),
    "swiglu_packed": (lambda a: flash_swiglu.swiglu_packed(a["p"]), ("p",)),
    "swiglu_linear": (lambda a: flash_swiglu.swiglu_linear(a["x"], a["wg"], a["wu"]), ("x", "wg")),
    "swiglu_linear_packed": (lambda a: flash_swiglu.swiglu_linear_packed(a["x"], a["w"]), ("x",)),
    "swiglu_mlp": (
        lambda a: flash_swiglu.swiglu_mlp(a["x"], a["wg"], a["wu"], a["wd"]),
        ("x", "wg", "wd"),
    ),
}


@pytest.mark.parametrize("name", list(_TWICE))
def test_second_derivative_raises(name, device):
    """``create_graph=True`` gives the same first derivatives; differentiating them again
    raises (the backward kernels are not differentiable) instead of silently dropping the
    second-order terms."""
    call, needs = _TWICE[name]
    a = dict(g=t(3, 16, device=device), u=t(3, 16, device=device), p=t(3, 32, device=device),
             x=t(3, 16, device=device), wg=t(24, 16, device=device) / 4,
             wu=t(24, 16, device=device) / 4, w=t(48, 16, device=device) / 4,
             wd=t(16, 24, device=device) / 5)  # fmt: skip
    for key in needs:
        a[key].requires_grad_(True)
    inputs = [a[key] for key in needs]
    plain = torch.autograd.grad(call(a).square().sum(), inputs)
    twice = torch.autograd.grad(call(a).square().sum(), inputs, create_graph=True)
    for p, q in zip(plain, twice, strict=True):
        torch.testing.assert_close(q.detach(), p, rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        sum(q.square().sum() for q in twice).backward()


def test_bf16_on_the_cpu_takes_the_reference_path():
    """Triton's interpreter multiplies bf16 bit patterns in ``tl.dot``, so on the CPU the
    projection and the MLP run bf16 through the reference path: results and gradients within
    bf16 rounding of float64 (the kernels gave errors of 1e21 here)."""
    g = torch.Generator().manual_seed(3)
    x, wg, wu = (torch.randn(s, generator=g) for s in ((4, 32), (24, 32), (24, 32)))
    wd = torch.randn(32, 24, generator=g)
    wg, wu, wd = wg / 6, wu / 6, wd / 5
    b16 = [v.bfloat16().requires_grad_(True) for v in (x, wg, wu, wd)]
    f64 = [v.bfloat16().double().requires_grad_(True) for v in (x, wg, wu, wd)]
    h = reference.swiglu_linear_reference(*f64[:3])
    for got, want in [
        (flash_swiglu.swiglu_linear(*b16[:3]), h),
        (flash_swiglu.swiglu_linear_packed(b16[0], torch.cat(b16[1:3])), h),
        (flash_swiglu.swiglu_mlp(*b16), h @ f64[3].T),
    ]:
        assert got.dtype == torch.bfloat16
        assert (got.double() - want).abs().max() <= 2e-2 * want.abs().max()
    flash_swiglu.swiglu_mlp(*b16).square().sum().backward()
    (h @ f64[3].T).square().sum().backward()
    for a, b in zip(b16, f64, strict=True):
        assert (a.grad.double() - b.grad).abs().max() <= 3e-2 * b.grad.abs().max()


def test_scalar_swiglu_oai_params_are_plain_floats():
    out = flash_swiglu.swiglu(t(2, 4), t(2, 4), activation="swiglu_oai", alpha=2, limit=5)
    assert out.shape == (2, 4)


# ------------------------------------------------------------------------------ opcheck


def _opcheck_cases(device):
    g = lambda *shape, grad=False: t(*shape, device=device).requires_grad_(grad)
    return [
        ("glu_fwd", (g(3, 40, grad=True), g(3, 40, grad=True), "silu", 1.702, 7.0)),
        ("glu_bwd", (g(3, 40), g(3, 40), g(3, 40), "gelu", 1.702, 7.0)),
        ("glu_packed_fwd", (g(2, 3, 48, grad=True), "gelu_tanh", "concat", 1.702, 7.0)),
        ("glu_packed_fwd", (g(2, 3, 48, grad=True), "silu", "interleaved", 1.702, 7.0)),
        ("glu_packed_bwd", (g(2, 3, 48), g(2, 3, 24), "swiglu_oai", "interleaved", 1.7, 7.0)),
        ("glu_packed_bwd", (g(2, 3, 48), g(2, 3, 24), "relu", "concat", 1.702, 7.0)),
    ]


def test_opcheck(device):
    for name, args in _opcheck_cases(device):
        torch.library.opcheck(getattr(torch.ops.flash_swiglu, name).default, args)


# ------------------------------------------------------------------------------ compile


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_fullgraph_has_no_graph_break(device, backend):
    def mlp_piece(x, gate, up):
        a = flash_swiglu.swiglu(gate * 2, up, activation="gelu")
        b = flash_swiglu.swiglu_packed(x, layout="interleaved")
        return (a.sum(-1) + b.sum(-1)).sum()

    gate = t(4, 16, device=device).requires_grad_(True)
    up = t(4, 16, device=device).requires_grad_(True)
    x = t(4, 32, device=device).requires_grad_(True)
    torch._dynamo.reset()
    compiled = torch.compile(mlp_piece, fullgraph=True, backend=backend)
    loss = compiled(x, gate, up)
    grads = torch.autograd.grad(loss, (x, gate, up))

    ref = mlp_piece(x, gate, up)
    ref_grads = torch.autograd.grad(ref, (x, gate, up))
    torch.testing.assert_close(loss, ref)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b)


def test_reference_helpers_round_trip():
    x = t(3, 10)
    for layout in ("concat", "interleaved"):
        g, u = reference.split_packed(x, layout)
        assert torch.equal(reference.merge_packed(g, u, layout), x)


# ----------------------------------------------------------------------------- autocast


@pytest.mark.parametrize("fn", ["swiglu_linear", "swiglu_linear_packed", "swiglu_mlp"])
def test_functions_follow_autocast(device, fn):
    """Under autocast (float16) the projections' functions cast as ``F.linear`` does: x,
    weights and biases to float16, the output float16, the fp32 leaves' gradients fp32; all
    within the rule against float64, with eager under the same autocast as PyTorch's side.
    A float64 tensor stays float64 (autocast leaves it), so it must match."""
    k, n = 48, 40
    x = t(3, 5, k, device=device)
    w = t(2 * n, k, device=device) / k**0.5
    b = t(2 * n, device=device)
    wd = t(k, n, device=device) / n**0.5
    if fn == "swiglu_linear":
        args = [x, w[:n].clone(), w[n:].clone(), b[:n].clone(), b[n:].clone()]
        ours = flash_swiglu.swiglu_linear

        def eager(x, wg, wu, bg, bu):
            return torch.nn.functional.silu(F.linear(x, wg, bg)) * F.linear(x, wu, bu)

    elif fn == "swiglu_linear_packed":
        args = [x, w, b]
        ours = flash_swiglu.swiglu_linear_packed

        def eager(x, w, b):
            g, u = F.linear(x, w, b).chunk(2, dim=-1)
            return torch.nn.functional.silu(g) * u

    else:
        args = [x, w[:n].clone(), w[n:].clone(), wd, b[:n].clone(), b[n:].clone(), t(k)]
        args[-1] = args[-1].to(device)
        ours = flash_swiglu.swiglu_mlp

        def eager(x, wg, wu, wd, bg, bu, bd):
            h = torch.nn.functional.silu(F.linear(x, wg, bg)) * F.linear(x, wu, bu)
            return F.linear(h, wd, bd)

    def run(f, leaves, dout=None, cast=True):
        leaves = [a.detach().clone().requires_grad_(True) for a in leaves]
        with torch.autocast(device, dtype=torch.float16, enabled=cast):
            out = f(*leaves)
        dout = torch.randn(out.shape, device=device) if dout is None else dout
        return out, torch.autograd.grad(out.float(), leaves, dout), dout

    out, grads, dout = run(ours, args)
    want, want_grads, _ = run(eager, args, dout)
    ref, ref_grads, _ = run(eager, [a.double() for a in args], dout.double(), cast=False)
    assert out.dtype == want.dtype == torch.float16
    assert_within_rule(f"{fn} out", out, want, ref)
    for i, (g, e, r) in enumerate(zip(grads, want_grads, ref_grads, strict=True)):
        assert g.dtype == torch.float32, (fn, i)
        assert_within_rule(f"{fn} grad {i}", g, e, r)


def test_autocast_leaves_float64_and_mixed_dtypes_to_the_checks(device):
    """Autocast casts only what ``F.linear`` would: float64 arguments stay float64, and a
    float64 x with float32 weights under autocast is cast to float64 / float16 and refused
    with the usual dtype error, not silently computed."""
    x64 = t(2, 16, dtype=torch.float64, device=device)
    wg64, wu64 = (t(8, 16, dtype=torch.float64, device=device) for _ in range(2))
    with torch.autocast(device, dtype=torch.float16):
        out = flash_swiglu.swiglu_linear(x64, wg64, wu64)
        assert out.dtype == torch.float64
        with pytest.raises(TypeError, match="dtype"):
            flash_swiglu.swiglu_linear(x64, t(8, 16, device=device), t(8, 16, device=device))
    want = torch.nn.functional.silu(x64 @ wg64.T) * (x64 @ wu64.T)
    torch.testing.assert_close(out, want)

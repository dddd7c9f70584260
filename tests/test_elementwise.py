"""Kernel tier: the elementwise GLU against float64 references (interpreter on the CPU)."""

from __future__ import annotations

import math

import pytest
import torch

import flash_swiglu
from _oracles import gpt_oss_glu
from flash_swiglu import reference
from flash_swiglu._names import ACTIVATIONS

from _tolerance import assert_within_rule

# bf16 too, on the CPU as well: these kernels widen to fp32 before any arithmetic and use
# no tl.dot, so the interpreter computes them right (its bf16 tl.dot is what is wrong).
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
SCALE = {"swiglu_oai": 5.0}  # large enough that gpt-oss's clamps at +-7 are exercised


def make(shape, dtype, device, activation="silu"):
    s = SCALE.get(activation, 2.0)
    return (torch.randn(shape, device=device) * s).to(dtype)


def references(gate, up, dout, activation):
    """(out, dgate, dup) in float64, and the same computed by PyTorch eager in the dtype."""
    g64 = gate.detach().double().requires_grad_(True)
    u64 = up.detach().double().requires_grad_(True)
    out64 = reference.act_glu(g64, u64, activation)
    d64 = torch.autograd.grad(out64, (g64, u64), dout.double())
    gt = gate.detach().clone().requires_grad_(True)
    ut = up.detach().clone().requires_grad_(True)
    out_t = reference.act_glu(gt, ut, activation)
    dt = torch.autograd.grad(out_t, (gt, ut), dout)
    return (out64.detach(), *d64), (out_t.detach(), *dt)


def check_swiglu(gate, up, activation):
    gate = gate.detach().requires_grad_(True)
    up = up.detach().requires_grad_(True)
    out = flash_swiglu.swiglu(gate, up, activation=activation)
    dout = torch.randn_like(out)
    dgate, dup = torch.autograd.grad(out, (gate, up), dout)
    ref, eager = references(gate, up, dout, activation)
    # The floor is ulps of the operands' products, not of the result: act(gate) and act'(gate)
    # of the GELUs are ill-conditioned for negative gates (sigmoid(2z) amplifies the rounding
    # of z; act' is a difference of terms of order one near the minimum), and a tensor of a
    # few elements can have a result scale far below its operands'.
    g, u = gate.detach(), up.detach()
    if activation == "swiglu_oai":  # the clamps at the default limit 7
        g, u = g.clamp(max=7.0), u.clamp(-7.0, 7.0) + 1.0

    def top(x):
        return x.double().abs().max().item() if x.numel() else 0.0

    scales = (top(g * u), top(dout * u), top(dout * g))
    for name, got, r, e, s in zip(
        ("out", "dgate", "dup"), (out, dgate, dup), ref, eager, scales, strict=True
    ):
        assert_within_rule(f"{activation} {name}", got, e, r, s)
    return out


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cols", [1, 17, 1000, 4097])
def test_swiglu_matches_float64(device, activation, dtype, cols):
    gate = make((3, cols), dtype, device, activation)
    up = make((3, cols), dtype, device, activation)
    check_swiglu(gate, up, activation)


@pytest.mark.parametrize("shape", [(2, 3, 40), (2, 2, 3, 24), (5,)], ids=str)
def test_swiglu_any_leading_dims(device, shape):
    check_swiglu(make(shape, torch.float32, device), make(shape, torch.float32, device), "silu")


@pytest.mark.parametrize("layout", ["concat", "interleaved"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_swiglu_packed_matches_float64(device, layout, activation, dtype):
    x = make((2, 3, 2 * 37), dtype, device, activation).requires_grad_(True)
    out = flash_swiglu.swiglu_packed(x, activation=activation, layout=layout)
    dout = torch.randn_like(out)
    (dx,) = torch.autograd.grad(out, x, dout)
    gate, up = reference.split_packed(x.detach(), layout)
    ref, eager = references(gate, up, dout, activation)
    assert_within_rule("out", out, eager[0], ref[0])
    assert_within_rule(
        "dx",
        dx,
        reference.merge_packed(eager[1], eager[2], layout),
        reference.merge_packed(ref[1], ref[2], layout),
    )


def test_views_of_a_packed_tensor(device):
    # gate/up halves of a [B, S, 2N] tensor, further sliced along S: the rows form two strided
    # groups (B and S), each operand with its own strides.
    x = make((3, 8, 2 * 33), torch.float32, device)
    gate, up = x[:, 2:7, :33], x[:, 2:7, 33:]
    assert not gate.is_contiguous()
    check_swiglu(gate, up, "silu")


def test_views_with_three_row_groups(device):
    # Three non-mergeable leading groups: walked one launch per outer index.
    x = make((2, 3, 4, 2 * 9), torch.float16, device)
    gate, up = x[:, :2, 1:3, :9], x[:, 1:, :2, 9:]
    check_swiglu(gate, up, "gelu")


def test_views_with_four_row_groups(device):
    x = make((3, 3, 4, 5, 2 * 7), torch.float32, device)
    gate, up = x[:, :2, 1:3, :4, :7], x[:, 1:, :2, 1:, 7:]
    check_swiglu(gate, up, "silu")


@pytest.mark.parametrize(
    "shape, index, launches",
    [
        ((64, 3, 4, 18), (slice(None), slice(0, 2), slice(1, 3)), 2),  # groups 64, 2, 2
        ((16, 3, 4, 5, 14), (slice(None), slice(0, 2), slice(1, 3), slice(0, 4)), 4),  # 16, 2, 2, 4
        ((2, 3, 50, 18), (slice(None), slice(0, 2), slice(0, 40)), 2),  # 2, 2, 40
    ],
    ids=["3-groups", "4-groups", "small-outer"],
)
def test_views_walk_their_smallest_row_groups(shape, index, launches):
    """A view of more than two row groups is walked along its smallest groups, one launch
    per index of them, the two largest left to each launch; every row covered once."""
    from flash_swiglu.ops import elementwise as E

    x = torch.zeros(shape)
    gate = x[(*index, slice(0, shape[-1] // 2))]
    calls = []

    class Kernel:  # records each launch's rows instead of running one
        def __getitem__(self, grid):
            return lambda *args, **kw: calls.append((args[0].data_ptr(), args[2]))  # rows

    E._launch(Kernel(), [gate, gate], shape[-1] // 2, {})
    assert len(calls) == launches
    assert sum(n_rows for _, n_rows in calls) == gate.shape[:-1].numel()
    assert len({ptr for ptr, _ in calls}) == launches  # each launch its own rows


def test_strided_last_dimension(device):
    # Columns that are not contiguous (a transposed view) and a gradient with stride 0.
    gate = make((20, 6), torch.float32, device).t()
    up = make((6, 20), torch.float32, device)
    g = gate.detach().requires_grad_(True)
    u = up.detach().requires_grad_(True)
    out = flash_swiglu.swiglu(g, u)
    out.sum().backward()  # dout is an expanded tensor of ones (all strides 0)
    ref, _ = references(gate, up, torch.ones_like(out), "silu")
    torch.testing.assert_close(out.double(), ref[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g.grad.double(), ref[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(u.grad.double(), ref[2], rtol=1e-5, atol=1e-6)


def test_strided_last_dimension_past_2_31(device):
    """Column offsets past 2^31 elements (a last dimension of stride 2^29): computed in 64
    bits (``COL_64``), forward and both gradients right. The operands are views into one
    3 GiB storage of which only their elements are written."""
    from flash_swiglu.ops import elementwise

    stride, n = 2**29, 4
    base = torch.empty(stride * (n - 1) + 64, dtype=torch.float16, device=device)
    gate, up = (base.as_strided((2, n), (4, stride), off) for off in (0, 16))
    gate.copy_(make((2, n), torch.float16, device))
    up.copy_(make((2, n), torch.float16, device))
    assert elementwise.needs_col_64([gate, up], n, 1024)
    check_swiglu(gate, up, "silu")


@pytest.mark.parametrize("n_cols", [2**30 - 1024, 2**30, 2**31 - 512], ids=str)
def test_interleaved_kernels_past_2_30_columns(device, n_cols):
    """The interleaved kernels' bound ``2 * n_cols`` in 64 bits (``COL_64``): the first tile
    of a row said to have ``n_cols`` columns, launched alone on small tensors (the tile
    touches only its own 2 x 1024 elements of x), forward and backward, all stored, right."""
    from flash_swiglu.kernels import elementwise as K

    bn = 1024
    x = make((1, 2 * bn), torch.float32, device)
    dout = make((1, bn), torch.float32, device)
    out = torch.full((1, bn), float("nan"), device=device)
    dx = torch.full((1, 2 * bn), float("nan"), device=device)
    consts = dict(ACTIVATION="silu", ALPHA=1.702, LIMIT=7.0, INTERLEAVED=True, TWO_GROUPS=False,
                  BLOCK_M=1, BLOCK_N=bn, COL_64=True)  # fmt: skip
    x_strides, d_strides = [0, 2 * bn, 1], [0, bn, 1]
    K._glu_fwd_kernel[(1,)](x, x, out, 1, n_cols, 1, *x_strides * 2, *d_strides, **consts)
    K._glu_bwd_kernel[(1,)](
        x, x, dout, dx, dx, 1, n_cols, 1, *x_strides * 2, *d_strides, *x_strides * 2, **consts
    )
    g, u = x[:, 0::2].double(), x[:, 1::2].double()
    close = dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.double(), reference.act_glu(g, u, "silu"), **close)
    g, u = g.requires_grad_(), u.requires_grad_()
    dg, du = torch.autograd.grad(reference.act_glu(g, u, "silu"), (g, u), dout.double())
    torch.testing.assert_close(dx[:, 0::2].double(), dg, **close)
    torch.testing.assert_close(dx[:, 1::2].double(), du, **close)


def test_column_offsets_64_bit_only_where_needed():
    from flash_swiglu.ops import elementwise

    x = torch.empty(8, 2)
    assert not elementwise.needs_col_64([x, x], 2**29, 1024)  # unit stride, 2^29 columns
    assert elementwise.needs_col_64([x, x], 2**30 - 1024, 1024)  # interleaved: 2^31
    t = x.t()  # stride 2
    assert not elementwise.needs_col_64([x, t], 2**29 - 1025, 1024)
    assert elementwise.needs_col_64([x, t], 2**29 - 1024, 1024)


def test_packed_interleaved_strided_columns(device):
    # An interleaved x whose last dimension is strided is copied once, and still correct.
    base = make((4, 2 * 10, 2), torch.float32, device)
    x = base[..., 0]
    assert x.stride(-1) == 2
    out = flash_swiglu.swiglu_packed(x, layout="interleaved")
    ref = reference.act_glu(*reference.split_packed(x.double(), "interleaved"))
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(0, 16), (4, 0), (0,), (2, 0, 3)], ids=str)
def test_zero_size(device, shape):
    gate = torch.randn(shape, device=device, requires_grad=True)
    up = torch.randn(shape, device=device, requires_grad=True)
    out = flash_swiglu.swiglu(gate, up)
    assert out.shape == gate.shape
    out.sum().backward()
    assert gate.grad.shape == gate.shape and up.grad.shape == up.shape
    packed_shape = (*shape[:-1], 2 * shape[-1])
    x = torch.randn(packed_shape, device=device, requires_grad=True)
    for layout in ("concat", "interleaved"):
        y = flash_swiglu.swiglu_packed(x, layout=layout)
        assert y.shape == (*shape[:-1], shape[-1])
        (dx,) = torch.autograd.grad(y.sum(), x)
        assert dx.shape == x.shape


def test_no_copy_of_packed_views(device, monkeypatch):
    """Views of a packed tensor reach the kernels as views: the kernels read x's own memory."""
    from flash_swiglu.ops import elementwise

    launched = []
    real_launch = elementwise._launch

    def spy(kernel, tensors, n_cols, extra):
        launched.append([t.untyped_storage().data_ptr() for t in tensors])
        return real_launch(kernel, tensors, n_cols, extra)

    monkeypatch.setattr(elementwise, "_launch", spy)
    x = make((4, 6, 2 * 40), torch.float32, device).requires_grad_(True)
    base = x.untyped_storage().data_ptr()
    out = flash_swiglu.swiglu(x[..., :40], x[..., 40:])
    torch.autograd.grad(out.sum(), x)
    for layout in ("concat", "interleaved"):
        out = flash_swiglu.swiglu_packed(x, layout=layout)
        torch.autograd.grad(out.sum(), x)
    assert len(launched) == 6
    for ptrs in launched:
        assert ptrs[0] == base and ptrs[1] == base, "gate/up were copied before the kernel"


def test_backward_is_out_of_place_and_repeatable(device):
    x = make((5, 2 * 24), torch.float32, device).requires_grad_(True)
    x_before = x.detach().clone()
    out = flash_swiglu.swiglu_packed(x, layout="interleaved")
    dout = torch.randn_like(out)
    dout_before = dout.clone()
    (g1,) = torch.autograd.grad(out, x, dout, retain_graph=True)
    (g2,) = torch.autograd.grad(out, x, dout)
    assert torch.equal(g1, g2)
    assert torch.equal(x.detach(), x_before) and torch.equal(dout, dout_before)

    gate = make((5, 24), torch.float16, device).requires_grad_(True)
    up = make((5, 24), torch.float16, device).requires_grad_(True)
    out = flash_swiglu.swiglu(gate, up, activation="gelu_tanh")
    a = torch.autograd.grad(out, (gate, up), torch.ones_like(out), retain_graph=True)
    b = torch.autograd.grad(out, (gate, up), torch.ones_like(out))
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_nan_and_inf_propagate_like_pytorch(device, activation):
    gate = torch.tensor([[float("nan"), 1.0, float("inf"), -float("inf"), 0.5, 8.0]], device=device)
    up = torch.tensor([[1.0, float("nan"), 2.0, 3.0, float("inf"), -9.0]], device=device)
    out = flash_swiglu.swiglu(gate, up, activation=activation)
    ref = reference.act_glu(gate.double(), up.double(), activation)
    torch.testing.assert_close(out.double(), ref, equal_nan=True)
    # the gradients too, against the reference's derivative (its NaN and Inf conventions)
    dout = torch.ones_like(gate)
    g, u = gate.clone().requires_grad_(True), up.clone().requires_grad_(True)
    got = torch.autograd.grad(flash_swiglu.swiglu(g, u, activation=activation), (g, u), dout)
    want = reference.glu_backward(gate.double(), up.double(), dout.double(), activation)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-6, equal_nan=True)


# Gates from the edge of fp32's range to the activations' saturation, both signs.
EXTREME_GATES = [-3e38, -1e30, -1e20, -1e14, -1e12, -1e9, -1e5, -100.0, -50.0, -12.0, -10.0, -5.0]
EXTREME_GATES = EXTREME_GATES + [0.0] + [-v for v in reversed(EXTREME_GATES)]


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradients_at_extreme_gates(device, activation):
    """Finite gates of any size, with an upstream gradient of 0.5 and of 1e30 (where dout *
    gate overflows fp32): the output as the float64 reference's rounded to fp32, each
    gradient as the float64 autograd of the reference rounded to fp32, and the reference's
    own derivative in fp32 (the library's CPU and unfused paths) the same. Session 53:
    gelu_tanh's gate gradient grew as gate^3 * 4e-36 below a gate of about -1e10 (-11.6 at
    -1e12 where it is 0) and was NaN past |gate| 1.8e19; gpt-oss's was NaN below -2e38; at
    -inf gelu_tanh gave -inf where PyTorch gives NaN; and up's gradient of gelu, gelu_tanh
    and gpt-oss's was NaN or -inf where dout * gate overflowed (dout * (gate * s) now)."""
    row = [*EXTREME_GATES, -float("inf")]
    gate = torch.tensor([row, row], device=device)
    up = torch.full_like(gate, 3.0)
    dout = torch.tensor([[0.5], [1e30]], device=device).expand_as(gate).contiguous()
    g, u = gate.clone().requires_grad_(True), up.clone().requires_grad_(True)
    out = flash_swiglu.swiglu(g, u, activation=activation)
    ref = reference.act_glu(gate.double(), up.double(), activation).float()  # inf past 3.4e38
    torch.testing.assert_close(out.detach(), ref, rtol=1e-5, atol=1e-6, equal_nan=True)
    got = torch.autograd.grad(out, (g, u), dout)
    g64, u64 = gate.double().requires_grad_(True), up.double().requires_grad_(True)
    auto = torch.autograd.grad(reference.act_glu(g64, u64, activation), (g64, u64), dout.double())
    fallback = reference.glu_backward(gate, up, dout, activation)  # fp32, as the CPU path
    for a, b, c in zip(got, fallback, auto, strict=True):
        want = c.float() / dout  # inf where the true gradient is past fp32's range; the
        # absolute tolerance per unit of dout (the activations' tails are good to ~1e-11)
        torch.testing.assert_close(a / dout, want, rtol=1e-5, atol=1e-6, equal_nan=True)
        # the reference's tanh form cancels in fp32 near a gate of -5 (1 - t^2; eager's
        # too): 1.4e-6 per unit there, where the kernels' sigmoid form keeps 1e-6
        torch.testing.assert_close(b / dout, want, rtol=1e-5, atol=1e-5, equal_nan=True)


def test_relu_gradient_at_a_nan_gate_is_pytorchs(device):
    """torch.relu's backward passes the gradient where the input is NaN (it stops only where
    the input is <= 0); so do ours and the reference (session 25; they gave 0 there)."""
    gate = torch.tensor([[float("nan"), -1.0, 0.0, 2.0]], device=device, requires_grad=True)
    up = torch.full((1, 4), 7.0, device=device, requires_grad=True)
    dout = torch.ones(1, 4, device=device)
    got = torch.autograd.grad(flash_swiglu.swiglu(gate, up, activation="relu"), (gate, up), dout)
    ref = torch.autograd.grad(torch.relu(gate) * up, (gate, up), dout)
    for g, r in zip(got, ref, strict=True):
        torch.testing.assert_close(g, r, equal_nan=True)
    assert got[0][0, 0] == 7.0


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradcheck_float64(device, activation):
    gate = make((3, 7), torch.float64, device, activation).requires_grad_(True)
    up = make((3, 7), torch.float64, device, activation).requires_grad_(True)
    f = lambda g, u: flash_swiglu.swiglu(g, u, activation=activation)
    assert torch.autograd.gradcheck(f, (gate, up), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("layout", ["concat", "interleaved"])
def test_gradcheck_packed_float64(device, layout):
    x = make((2, 3, 10), torch.float64, device).requires_grad_(True)
    f = lambda x: flash_swiglu.swiglu_packed(x, layout=layout, activation="gelu")
    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-5)


def test_swiglu_oai_gradient_at_the_clamp_boundary(device):
    """At exactly +-limit the gradient passes (reference.act_glu's convention, which does not
    follow torch.clamp: its convention there changed between PyTorch 2.13 and 2.15)."""
    gate = torch.tensor([[7.0, -7.0, 6.5, 7.5]], device=device, requires_grad=True)
    up = torch.tensor([[7.0, -7.0, -7.5, 2.0]], device=device, requires_grad=True)
    out = flash_swiglu.swiglu(gate, up, activation="swiglu_oai")
    dgate, dup = torch.autograd.grad(out.sum(), (gate, up))
    assert dgate[0, 0] != 0 and dgate[0, 3] == 0  # gate == limit passes, gate > limit stops
    assert dup[0, 0] != 0 and dup[0, 1] != 0 and dup[0, 2] == 0
    ref, _ = references(gate.detach(), up.detach(), torch.ones_like(out), "swiglu_oai")
    torch.testing.assert_close(dgate.double(), ref[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(dup.double(), ref[2], rtol=1e-5, atol=1e-6)


def test_swiglu_oai_parameters(device):
    gate = make((4, 33), torch.float32, device, "swiglu_oai")
    up = make((4, 33), torch.float32, device, "swiglu_oai")
    out = flash_swiglu.swiglu(gate, up, activation="swiglu_oai", alpha=1.0, limit=3.0)
    ref = reference.act_glu(gate.double(), up.double(), "swiglu_oai", alpha=1.0, limit=3.0)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-6)
    default = flash_swiglu.swiglu(gate, up, activation="swiglu_oai")
    assert not torch.allclose(out, default)


@pytest.mark.parametrize("layout", [None, "interleaved"])
def test_swiglu_oai_parameters_backward(device, layout):
    """Non-default ``alpha`` / ``limit`` reach the backward too, split and packed as gpt-oss
    packs them; the oracle is an independent float64 transcription (``_oracles``), gates
    and ups on both sides of +-limit (none exactly on it)."""
    alpha, limit = 1.0, 3.0
    x = torch.randn(6, 2 * 40, device=device, dtype=torch.float64) * 3
    x = torch.where((x.abs() - limit).abs() < 1e-3, x + 0.01, x).float().requires_grad_(True)
    gate, up = reference.split_packed(x, layout or "concat")
    if layout is None:
        out = flash_swiglu.swiglu(gate, up, activation="swiglu_oai", alpha=alpha, limit=limit)
    else:
        out = flash_swiglu.swiglu_packed(
            x, layout=layout, activation="swiglu_oai", alpha=alpha, limit=limit
        )
    dout = torch.randn_like(out)
    (dx,) = torch.autograd.grad(out, x, dout)
    x64 = x.detach().double().requires_grad_(True)
    want = gpt_oss_glu(*reference.split_packed(x64, layout or "concat"), alpha, limit)
    (dx64,) = torch.autograd.grad(want, x64, dout.double())
    assert (gate < -limit).any() and (gate > limit).any() and (up.abs() > limit).any()
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dx.double(), dx64, rtol=1e-5, atol=1e-5)


def test_swiglu_oai_without_clamps(device):
    """``limit=inf`` is gpt-oss's GLU without its clamps (a compile-time infinity in the
    kernels): forward and both gradients as ``g * sigmoid(alpha g) * (u + 1)`` in float64."""
    gate = (torch.randn(5, 48, device=device) * 20).requires_grad_(True)
    up = (torch.randn(5, 48, device=device) * 20).requires_grad_(True)
    out = flash_swiglu.swiglu(gate, up, activation="swiglu_oai", alpha=1.5, limit=math.inf)
    dout = torch.randn_like(out)
    got = torch.autograd.grad(out, (gate, up), dout)
    g64, u64 = (t.detach().double().requires_grad_(True) for t in (gate, up))
    want = g64 * torch.sigmoid(1.5 * g64) * (u64 + 1)
    want_grads = torch.autograd.grad(want, (g64, u64), dout.double())
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-4)
    for a, b in zip(got, want_grads, strict=True):
        torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_reference_backward_is_the_derivative(activation):
    """``reference.glu_backward`` (the CPU path's and the unfused routes' derivative) is the
    float64 autograd derivative of ``reference.act_glu``, to float64 accuracy (away from the
    clamp points of gpt-oss's GLU); for gpt-oss's GLU with its defaults and with other
    ``alpha`` / ``limit``."""
    params = [{}] if activation != "swiglu_oai" else [{}, dict(alpha=1.0, limit=3.0)]
    for kw in params:
        g = torch.randn(4, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        g = (g * SCALE.get(activation, 2.0)).requires_grad_(True)
        u = (torch.randn(4, 64, dtype=torch.float64) * 5).requires_grad_(True)
        dout = torch.randn(4, 64, dtype=torch.float64)
        want = torch.autograd.grad(reference.act_glu(g, u, activation, **kw), (g, u), dout)
        got = reference.glu_backward(g.detach(), u.detach(), dout, activation, **kw)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_cpu_reference_path_without_interpreter(monkeypatch, activation):
    """CPU tensors without ``TRITON_INTERPRET`` take the pure-PyTorch path, same semantics."""
    from flash_swiglu.ops import elementwise

    monkeypatch.setattr(elementwise, "use_triton", lambda device: False)
    for layout in (None, "concat", "interleaved"):
        x = make((3, 2 * 13), torch.float16, "cpu", activation).requires_grad_(True)
        if layout is None:
            gate, up = x[:, :13], x[:, 13:]
            out = flash_swiglu.swiglu(gate, up, activation=activation)
        else:
            gate, up = reference.split_packed(x, layout)
            out = flash_swiglu.swiglu_packed(x, layout=layout, activation=activation)
        dout = torch.randn_like(out)
        (dx,) = torch.autograd.grad(out, x, dout)
        ref, eager = references(gate, up, dout, activation)
        assert_within_rule("out", out, eager[0], ref[0])
        lay = layout or "concat"
        assert_within_rule(
            "dx",
            dx,
            reference.merge_packed(eager[1], eager[2], lay),
            reference.merge_packed(ref[1], ref[2], lay),
        )


@pytest.mark.parametrize("dtype", DTYPES)
def test_gelu_holds_its_precision_over_the_whole_range(device, dtype):
    """GELU's CDF is a fitted sigmoid, not erf (``activations.gelu_cdf``). Over -12..12 (both
    tails, the clamp at |x| = 6 and the polynomial's whole range) the output and both
    gradients stay within 2 ulps of the dtype of ``max(|value|, 1)`` against float64 (at most
    1.55 in fp32 under the interpreter); a wrong coefficient misses by orders of magnitude.
    float64 keeps the exact erf."""
    x = torch.linspace(-12, 12, 100_001, device=device).to(dtype).requires_grad_(True)
    u = torch.ones_like(x).requires_grad_(True)
    out = flash_swiglu.swiglu(x, u, activation="gelu")
    grads = torch.autograd.grad(out, (x, u), torch.ones_like(out))
    x64, u64 = (t.detach().double().requires_grad_(True) for t in (x, u))
    ref = reference.act_glu(x64, u64, "gelu")
    refs = (ref, *torch.autograd.grad(ref, (x64, u64), torch.ones_like(ref)))
    eps = torch.finfo(dtype).eps
    for name, got, want in zip(("out", "dgate", "dup"), (out, *grads), refs, strict=True):
        ulps = ((got.double() - want).abs() / want.abs().clamp_min(1)).max().item() / eps
        assert ulps <= 2.0, f"{name}: {ulps:.2f} ulps"
    h64 = flash_swiglu.swiglu(x64.detach(), u64.detach(), activation="gelu")
    assert (h64 - ref.detach()).abs().max().item() < 1e-13

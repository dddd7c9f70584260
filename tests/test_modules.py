"""``SwiGLUMLP``: output and every gradient against float64, the ``LlamaMLP`` state dict,
``from_module`` (shared storage, inferred activation), autocast, and errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from flash_swiglu import SwiGLUMLP, reference
from flash_swiglu._names import ACTIVATIONS
from flash_swiglu.modules import activation_of_function, infer_activation

from _tolerance import assert_within_rule

K, N = 40, 56  # hidden, intermediate: small, not powers of two
HEADS = dict(num_attention_heads=4, num_key_value_heads=4)  # configs validate hidden % heads


def torch_mlp(x, wg, wu, wd, bg, bu, bd, activation):
    """The same MLP in PyTorch, in the dtype of its inputs."""
    h = reference.act_glu(F.linear(x, wg, bg), F.linear(x, wu, bu), activation)
    return F.linear(h, wd, bd)


def make_module(bias, activation="silu", recompute=False, dtype=torch.float32, device="cpu"):
    torch.manual_seed(0)
    m = SwiGLUMLP(K, N, bias=bias, activation=activation, recompute=recompute, device=device)
    if activation == "swiglu_oai":  # reach gpt-oss's clamps at +-7
        with torch.no_grad():
            m.gate_proj.weight.mul_(4)
            m.up_proj.weight.mul_(4)
    return m.to(dtype)


def params(m):
    """Weights (gate, up, down), then the biases that exist."""
    ws = [m.gate_proj.weight, m.up_proj.weight, m.down_proj.weight]
    return ws + [b for b in (m.gate_proj.bias, m.up_proj.bias, m.down_proj.bias) if b is not None]


def run_module(m, x, dout):
    """Output and the gradients of x and of every parameter (in ``params`` order)."""
    m.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    out = m(x)
    out.backward(dout)
    return out.detach(), [x.grad, *(p.grad for p in params(m))]


def run_torch(m, x, dout, dtype):
    """The same in PyTorch on ``dtype`` copies of the module's tensors."""
    x = x.detach().to(dtype).requires_grad_(True)
    ps = [p.detach().to(dtype).requires_grad_(True) for p in params(m)]
    wg, wu, wd, *bs = ps
    bg, bu, bd = bs if bs else (None, None, None)
    out = torch_mlp(x, wg, wu, wd, bg, bu, bd, m.activation)
    out.backward(dout.to(dtype))
    return out.detach(), [x.grad, *(p.grad for p in ps)]


@pytest.mark.parametrize(
    ("activation", "dtype", "bias"),
    [(a, torch.float32, True) for a in ACTIVATIONS]
    + [
        ("silu", torch.float32, False),
        ("silu", torch.float16, True),
        ("gelu_tanh", torch.float16, False),
    ],
    ids=str,
)
def test_matches_float64(device, activation, dtype, bias):
    m = make_module(bias, activation, dtype=dtype, device=device)
    x = torch.randn(2, 5, K, device=device).to(dtype)
    dout = torch.randn(2, 5, K, device=device).to(dtype)
    out, grads = run_module(m, x, dout)
    ref, ref_grads = run_torch(m, x, dout, torch.float64)
    eager, eager_grads = run_torch(m, x, dout, dtype)
    assert_within_rule("out", out, eager, ref)
    names = ["x", "w_gate", "w_up", "w_down", "b_gate", "b_up", "b_down"]
    for name, g, e, r in zip(names, grads, eager_grads, ref_grads, strict=False):
        assert_within_rule(f"grad {name}", g, e, r)
    assert len(grads) == (7 if bias else 4)


def test_recompute_same_results(device):
    m = make_module(True, device=device)
    x = torch.randn(3, 7, K, device=device)
    dout = torch.randn(3, 7, K, device=device)
    out, grads = run_module(m, x, dout)
    m.recompute = True
    out_r, grads_r = run_module(m, x, dout)
    torch.testing.assert_close(out_r, out, rtol=1e-6, atol=1e-6)
    for g, gr in zip(grads, grads_r, strict=True):
        torch.testing.assert_close(gr, g, rtol=1e-6, atol=1e-6)


def test_llama_state_dict_round_trip(device):
    transformers = pytest.importorskip("transformers")
    llama_mlp = pytest.importorskip("transformers.models.llama.modeling_llama").LlamaMLP
    for bias in (False, True):
        config = transformers.LlamaConfig(
            hidden_size=K, intermediate_size=N, mlp_bias=bias, **HEADS
        )
        hf = llama_mlp(config).to(device)
        ours = SwiGLUMLP(K, N, bias=bias, device=device)
        assert set(ours.state_dict()) == set(hf.state_dict())
        ours.load_state_dict(hf.state_dict())  # strict
        x = torch.randn(2, 3, K, device=device)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), hf(x), rtol=1e-5, atol=1e-5)
        hf.load_state_dict(SwiGLUMLP(K, N, bias=bias, device=device).state_dict())


def test_from_module_shares_parameters(device):
    transformers = pytest.importorskip("transformers")
    llama_mlp = pytest.importorskip("transformers.models.llama.modeling_llama").LlamaMLP
    config = transformers.LlamaConfig(hidden_size=K, intermediate_size=N, **HEADS)
    hf = llama_mlp(config).to(device)
    ours = SwiGLUMLP.from_module(hf, recompute=True)
    assert ours.activation == "silu" and ours.recompute
    assert (ours.hidden_size, ours.intermediate_size) == (K, N)
    for name in ("gate_proj", "up_proj", "down_proj"):
        a, b = getattr(ours, name), getattr(hf, name)
        assert a is b and a.weight.data_ptr() == b.weight.data_ptr()
    assert all(p.device.type != "meta" for p in ours.parameters())
    # Training one trains the other: the gradient lands on the shared parameters.
    x = torch.randn(2, 3, K, device=device)
    ours(x).square().sum().backward()
    g = hf.gate_proj.weight.grad.clone()
    hf.zero_grad()
    hf(x).square().sum().backward()
    torch.testing.assert_close(g, hf.gate_proj.weight.grad, rtol=1e-4, atol=1e-6)


def test_from_module_activation(device):
    transformers = pytest.importorskip("transformers")
    gemma_mlp = pytest.importorskip("transformers.models.gemma.modeling_gemma").GemmaMLP
    gemma = gemma_mlp(transformers.GemmaConfig(hidden_size=K, intermediate_size=N, **HEADS))
    assert SwiGLUMLP.from_module(gemma).activation == "gelu_tanh"
    assert SwiGLUMLP.from_module(gemma, activation="relu").activation == "relu"
    gemma.act_fn = nn.Tanh()
    with pytest.raises(ValueError, match=r"GemmaMLP.*Tanh.*activation="):
        SwiGLUMLP.from_module(gemma)
    with pytest.raises(ValueError, match="activation must be one of"):
        SwiGLUMLP.from_module(gemma, activation="tanh")


def test_hooks_and_wrapped_projections_are_called():
    """A hook on a projection, a projection replaced by a wrapper (as a LoRA adapter is), or
    an ``nn.Linear`` subclass shared by ``from_module``: the module calls its projections
    (warning once) and gives what calling them gives; without them, the fused MLP again."""
    m = make_module(bias=True)
    x = torch.randn(2, 3, K)
    with torch.no_grad():
        fused = m(x)
        want = torch_mlp(x, *(p.detach() for p in params(m)), "silu")
        torch.testing.assert_close(fused, want, rtol=1e-5, atol=1e-6)
        handle = m.up_proj.register_forward_hook(lambda mod, i, o: o * 2)
        with pytest.warns(UserWarning, match="up_proj has a hook"):
            hooked = m(x)
        h = reference.act_glu(m.gate_proj(x), m.up_proj(x), "silu")  # the hook doubles up
        torch.testing.assert_close(hooked, m.down_proj(h), rtol=1e-5, atol=1e-6)
        assert not torch.allclose(hooked, fused)
        handle.remove()
        assert torch.equal(m(x), fused)
        seen = []
        handle = nn.modules.module.register_module_forward_hook(lambda *a: seen.append(a[0]))
        try:
            with pytest.warns(UserWarning, match="global module hook"):
                m.__dict__.pop("_flash_swiglu_warned", None)  # warned once per module
                m(x)
        finally:
            handle.remove()
        assert m.gate_proj in seen and m.down_proj in seen  # the projections were called

    class Half(nn.Linear):  # a projection with a forward of its own
        def forward(self, t):
            return super().forward(t) * 0.5

    half = Half(K, N)
    half.load_state_dict(m.up_proj.state_dict())
    mlp = nn.Module()
    mlp.gate_proj, mlp.up_proj, mlp.down_proj = m.gate_proj, half, m.down_proj
    mlp.act_fn = nn.SiLU()
    shared = SwiGLUMLP.from_module(mlp)
    assert shared.up_proj is half
    with torch.no_grad(), pytest.warns(UserWarning, match="up_proj is not a plain nn.Linear"):
        got = shared(x)
    with torch.no_grad():
        h = reference.act_glu(m.gate_proj(x), half(x), "silu")
        torch.testing.assert_close(got, m.down_proj(h), rtol=1e-5, atol=1e-6)


class _Bare(nn.Module):
    """An MLP with the three projections, no activation function, a config name only."""

    def __init__(self, act_name):
        super().__init__()
        self.gate_proj, self.up_proj = nn.Linear(K, N), nn.Linear(K, N)
        self.down_proj = nn.Linear(N, K)
        self.config = type("Config", (), {"hidden_act": act_name})()


def test_infer_activation_without_function():
    assert infer_activation(_Bare("swish")) == "silu"
    assert infer_activation(_Bare("gelu_new")) == "gelu_tanh"
    assert infer_activation(_Bare("quick_gelu")) is None
    m = SwiGLUMLP.from_module(_Bare("gelu"))
    assert m.activation == "gelu" and m.gate_proj.bias is not None


def test_activation_of_function():
    assert activation_of_function(nn.SiLU()) == "silu"
    assert activation_of_function(nn.GELU()) == "gelu"
    assert activation_of_function(nn.GELU(approximate="tanh")) == "gelu_tanh"
    assert activation_of_function(torch.relu) == "relu"
    for other in (nn.ReLU6(), nn.Tanh(), nn.Mish(), lambda x: x * torch.sigmoid(1.702 * x)):
        assert activation_of_function(other) is None
    assert activation_of_function(lambda x: 1 / 0) is None


def test_autocast_casts_like_linear():
    """Under CPU autocast (float16) the module runs in float16, as nn.Linear does; its fp32
    parameters get fp32 gradients, and they and x's are within the rule against float64
    (the eager MLP under the same autocast as the PyTorch comparison)."""
    m = make_module(True)
    x = torch.randn(2, 4, K, requires_grad=True)
    leaves = [p.detach().clone().requires_grad_(True) for p in params(m)]
    with torch.autocast("cpu", dtype=torch.float16):
        out = m(x)
        ref = torch_mlp(x, *leaves, m.activation)  # bias=True: all six, in order
    assert out.dtype == ref.dtype == torch.float16
    torch.testing.assert_close(out, ref, rtol=2e-2, atol=2e-3)
    dout = torch.randn(out.shape)
    got = torch.autograd.grad(out.float(), [x, *params(m)], dout)
    eager = torch.autograd.grad(ref.float(), [x, *leaves], dout)
    x64, p64 = x.detach().double().requires_grad_(True), [p.detach().double() for p in leaves]
    p64 = [p.requires_grad_(True) for p in p64]
    out64 = torch_mlp(x64, *p64, m.activation)
    want = torch.autograd.grad(out64, [x64, *p64], dout.double())
    for i, (a, e, w) in enumerate(zip(got, eager, want, strict=True)):
        assert a.dtype == torch.float32, i
        assert_within_rule(f"grad {i}", a, e, w)


def test_errors_and_repr():
    with pytest.raises(ValueError, match=r"activation must be one of.*'swish'"):
        SwiGLUMLP(K, N, activation="swish")
    with pytest.raises(TypeError, match="recompute"):
        SwiGLUMLP(K, N, recompute=1)
    with pytest.raises(ValueError, match="up_proj"):
        SwiGLUMLP.from_module(nn.Module())
    bad = _Bare("silu")
    bad.down_proj = nn.Linear(N + 1, K)
    with pytest.raises(ValueError, match=r"shape \[K, N\]"):
        SwiGLUMLP.from_module(bad)
    text = repr(SwiGLUMLP(K, N, bias=True, activation="gelu", recompute=True))
    assert "hidden_size=40, intermediate_size=56, bias=True, activation='gelu'" in text
    assert "recompute=True" in text and "gate_proj" in text

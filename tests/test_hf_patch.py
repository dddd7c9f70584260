"""``patch_hf_model`` on tiny Hugging Face models of every supported family, built from a
config with random weights (no downloads): patched and unpatched copies give the same logits
and the same gradient for every parameter; the state dict and ``save_pretrained`` output are
unchanged; unpatching restores the class's forward; unsupported activations are refused
before anything is patched. GPU tier: bf16, ``torch.compile`` and CUDA graphs."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")

from flash_swiglu.integrations import transformers as hf  # noqa: E402

from _tolerance import assert_within_rule  # noqa: E402

# Two layers, hidden 64, intermediate 96, 4 heads of 16 (2 key/value heads), vocab 128.
COMMON = dict(
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    vocab_size=128,
    max_position_embeddings=64,
)

# family: (config class, model class, extra config, activation the MLPs get)
FAMILIES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}, "silu"),
    "llama_bias": ("LlamaConfig", "LlamaForCausalLM", {"mlp_bias": True}, "silu"),
    "mistral": ("MistralConfig", "MistralForCausalLM", {}, "silu"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}, "silu"),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {}, "silu"),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", {}, "gelu_tanh"),
    "gemma_relu": ("GemmaConfig", "GemmaForCausalLM", {"hidden_act": "relu"}, "relu"),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", {"query_pre_attn_scalar": 16}, "gelu_tanh"),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", {"query_pre_attn_scalar": 16}, "gelu_tanh"),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {"pad_token_id": 0}, "silu"),
}


def build(family: str, device: str = "cpu", **overrides) -> nn.Module:
    config_cls, model_cls, extra, _ = FAMILIES[family]
    config = getattr(transformers, config_cls)(**{**COMMON, **extra, **overrides})
    torch.manual_seed(0)
    return getattr(transformers, model_cls)(config).to(device).eval()


def step(model: nn.Module, ids: torch.Tensor):
    """Logits and the gradient of every parameter, for a loss that weighs every logit."""
    model.zero_grad(set_to_none=True)
    logits = model(ids).logits
    logits.float().square().mean().backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    return logits.detach(), grads


def assert_close_scaled(name: str, got: torch.Tensor, want: torch.Tensor, rtol: float) -> None:
    """Max error within ``rtol`` of the reference's largest magnitude (a gradient of zeros
    for some rows must not make the comparison vacuous or impossible)."""
    assert got.shape == want.shape and got.dtype == want.dtype, name
    scale = want.double().abs().max().item()
    err = (got.double() - want.double()).abs().max().item()
    assert err <= rtol * scale + 1e-12, f"{name}: max error {err:.3e}, scale {scale:.3e}"


@pytest.fixture
def calls(monkeypatch):
    """Counts the patched forwards' calls into the fused MLP."""
    count = [0]
    for name in ("mlp_forward", "mlp_packed_forward"):  # split and packed (Phi-3) weights
        real = getattr(hf, name)

        def spy(*args, real=real, **kwargs):
            count[0] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(hf, name, spy)
    return count


@pytest.mark.parametrize("family", list(FAMILIES))
def test_patched_matches_unpatched(family, calls):
    model = build(family)
    patched = copy.deepcopy(model)
    keys = list(patched.state_dict())
    n = hf.patch_hf_model(patched)
    layers = model.config.num_hidden_layers
    assert n == layers
    mlps = [m for m in patched.modules() if hf.is_patched(m)]
    assert [m.__dict__[hf._PATCH_ATTR].activation for m in mlps] == [FAMILIES[family][3]] * n
    assert list(patched.state_dict()) == keys
    assert not any("forward" in m.__dict__ for m in model.modules())  # the original untouched

    ids = torch.randint(0, COMMON["vocab_size"], (2, 8))
    want, want_grads = step(model, ids)
    got, got_grads = step(patched, ids)
    assert calls[0] == layers
    assert_close_scaled("logits", got, want, 1e-5)
    assert got_grads.keys() == want_grads.keys()
    for name, g in got_grads.items():
        assert_close_scaled(name, g, want_grads[name], 1e-4)

    assert hf.patch_hf_model(patched) == 0  # already patched: nothing new
    assert hf.unpatch_hf_model(patched) == n
    assert not any("forward" in m.__dict__ or hf.is_patched(m) for m in patched.modules())
    assert hf.unpatch_hf_model(patched) == 0
    calls[0] = 0
    with torch.no_grad():
        torch.testing.assert_close(patched(ids).logits, want, rtol=0, atol=0)
    assert calls[0] == 0


def test_recompute_option_and_single_module(monkeypatch):
    """``recompute=True`` reaches the fused MLP's calls (the backward it changes gives the
    class's gradients)."""
    seen = []
    real = hf.mlp_forward

    def spy(*args, **kwargs):
        seen.append(kwargs["recompute"])
        return real(*args, **kwargs)

    monkeypatch.setattr(hf, "mlp_forward", spy)
    model = build("llama")
    mlp = model.model.layers[0].mlp
    assert hf.patch_hf_model(mlp, recompute=True) == 1
    patch = mlp.__dict__[hf._PATCH_ATTR]
    assert (patch.activation, patch.recompute) == ("silu", True)
    x = torch.randn(2, 3, COMMON["hidden_size"], requires_grad=True)
    got = mlp(x)
    want = type(mlp).forward(mlp, x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    dout = torch.randn_like(got)
    params = [x, *mlp.parameters()]
    for a, b in zip(
        torch.autograd.grad(got, params, dout), torch.autograd.grad(want, params, dout), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert seen == [True]
    with pytest.raises(TypeError, match="recompute"):
        hf.patch_hf_model(model, recompute="yes")


def test_deepcopy_of_patched_model_stays_patched(calls):
    model = build("phi3")
    hf.patch_hf_model(model)
    clone = copy.deepcopy(model)
    mlp = clone.model.layers[0].mlp
    assert mlp.forward.args[0] is mlp  # bound to the copy, not to the original
    with torch.no_grad():
        clone(torch.randint(0, 128, (1, 4)))
    assert calls[0] == COMMON["num_hidden_layers"]


def test_torch_save_of_patched_model_loads_patched(calls):
    """A whole patched model pickled (``torch.save(model)``) loads back patched, with the
    same outputs."""
    import io

    model = build("llama")
    hf.patch_hf_model(model)
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert all(hf.is_patched(layer.mlp) for layer in loaded.model.layers)
    ids = torch.randint(0, 128, (1, 5))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=0, atol=0)
    assert calls[0] == 2 * COMMON["num_hidden_layers"]
    assert hf.unpatch_hf_model(loaded) == COMMON["num_hidden_layers"]


@pytest.mark.parametrize("family", ["llama", "phi3"])
def test_hooks_and_late_wrappers_are_honoured(family, calls):
    """A hook on a projection, or a projection wrapped after patching (as a LoRA adapter is),
    makes the patched MLP run the class's own forward, which calls them (warned once); when
    the hook is gone the fused call is back."""
    model = build(family)
    hf.patch_hf_model(model)
    mlp = model.model.layers[0].mlp
    proj = "gate_up_proj" if family == "phi3" else "up_proj"
    x = torch.randn(2, 3, COMMON["hidden_size"])
    with torch.no_grad():
        fused = mlp(x)
    assert calls[0] == 1

    handle = getattr(mlp, proj).register_forward_hook(lambda m, i, o: o * 2)
    with torch.no_grad(), pytest.warns(UserWarning, match=f"{proj} has a hook"):
        hooked = mlp(x)
    with torch.no_grad():
        hf.unpatch_hf_model(model)
        want = mlp(x)  # the class's forward, the hook in place
        hf.patch_hf_model(model)
    assert calls[0] == 1  # the fused MLP was not called
    torch.testing.assert_close(hooked, want, rtol=0, atol=0)
    assert not torch.allclose(hooked, fused)
    handle.remove()

    class Adapter(nn.Module):  # a wrapper exposing the base layer's weight, as peft's does
        def __init__(self, base):
            super().__init__()
            self.base_layer = base
            self.delta = nn.Linear(base.in_features, base.out_features, bias=False)

        @property
        def weight(self):
            return self.base_layer.weight

        def forward(self, t):
            return self.base_layer(t) + self.delta(t)

    with torch.no_grad():
        assert torch.equal(mlp(x), fused) and calls[0] == 2  # the hook removed: fused again
        mlp = model.model.layers[1].mlp  # (the warning is once per MLP)
        plain = mlp(x)
        assert calls[0] == 3
        setattr(mlp, proj, Adapter(getattr(mlp, proj)))
        with pytest.warns(UserWarning, match=f"{proj} is not a plain nn.Linear"):
            adapted = mlp(x)
        hf.unpatch_hf_model(model)
        want = mlp(x)
    assert calls[0] == 3
    torch.testing.assert_close(adapted, want, rtol=0, atol=0)
    assert not torch.allclose(adapted, plain)


def test_save_pretrained_unchanged(tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    model = build("llama_bias")
    model.save_pretrained(tmp_path / "before")
    hf.patch_hf_model(model)
    model.save_pretrained(tmp_path / "after")
    before = sorted(p.name for p in (tmp_path / "before").iterdir())
    assert before == sorted(p.name for p in (tmp_path / "after").iterdir())
    for name in before:
        if name.endswith(".safetensors"):
            a = safetensors.load_file(tmp_path / "before" / name)
            b = safetensors.load_file(tmp_path / "after" / name)
            assert a.keys() == b.keys()
            assert all(torch.equal(a[k], b[k]) for k in a)
        else:
            a, b = ((tmp_path / d / name).read_bytes() for d in ("before", "after"))
            assert a == b, name


def test_unsupported_activation_patches_nothing():
    model = build("llama", hidden_act="tanh")
    with pytest.raises(
        ValueError, match=r"model\.layers\.0\.mlp \(LlamaMLP\): activation Tanh \(config: 'tanh'\)"
    ):
        hf.patch_hf_model(model)
    assert not any(hf.is_patched(m) or "forward" in m.__dict__ for m in model.modules())

    # One bad layer among good ones: still nothing patched, and the message names it.
    model = build("qwen3")
    model.model.layers[1].mlp.act_fn = nn.Sigmoid()
    with pytest.raises(
        ValueError,
        match=r"(?s)nothing was patched.*layers\.1\.mlp \(Qwen3MLP\): activation Sigmoid",
    ):
        hf.patch_hf_model(model)
    assert not any(hf.is_patched(m) for m in model.modules())


def test_what_is_left_alone():
    """Projections that are not plain float nn.Linear (LoRA wrappers, quantized layers) and
    instance-level forwards of others are not patched over."""
    model = build("llama")
    layers = model.model.layers
    layers[0].mlp.up_proj = nn.Sequential(layers[0].mlp.up_proj)  # a wrapped projection
    layers[1].mlp.forward = lambda x: x  # someone else's instance forward
    with pytest.warns(UserWarning, match=r"layers\.1\.mlp"):
        assert hf.patch_hf_model(model) == 0

    class LlamaMLP(nn.Module):  # same name, not transformers' class
        def __init__(self):
            super().__init__()
            self.gate_proj, self.up_proj = nn.Linear(4, 8), nn.Linear(4, 8)
            self.down_proj, self.act_fn = nn.Linear(8, 4), nn.SiLU()

    assert hf.patch_hf_model(LlamaMLP()) == 0


def test_unpatch_refuses_a_rewrapped_forward():
    model = build("mistral")
    hf.patch_hf_model(model)
    mlp = model.model.layers[1].mlp
    inner = mlp.forward
    mlp.forward = lambda x: inner(x)
    with pytest.raises(RuntimeError, match="replaced after patching"):
        hf.unpatch_hf_model(model)
    assert hf.is_patched(model.model.layers[0].mlp)  # nothing restored


def test_activation_names_agree_with_transformers():
    """Every ``hidden_act`` name in ACT2FN is recognised exactly when its function is one of
    ours; the names table used without a function agrees with what the functions compute."""
    from transformers.activations import ACT2FN

    from flash_swiglu.modules import HF_ACTIVATIONS, activation_of_function

    expected = {
        "silu": "silu",
        "swish": "silu",
        "gelu": "gelu",
        "gelu_python": "gelu",
        "gelu_pytorch_tanh": "gelu_tanh",
        "gelu_new": "gelu_tanh",
        "gelu_fast": "gelu_tanh",  # tanh approximation with a 10-digit constant
        "gelu_accurate": "gelu_tanh",
        "relu": "relu",
        "quick_gelu": None,
        "gelu_10": None,
        "relu6": None,
        "relu2": None,
        "mish": None,
        "tanh": None,
        "sigmoid": None,
        "linear": None,
        "leaky_relu": None,
    }
    for name, want in expected.items():
        assert activation_of_function(ACT2FN[name]) == want, name
    for name, ours in HF_ACTIVATIONS.items():
        if name in ACT2FN:
            assert activation_of_function(ACT2FN[name]) == ours, name


def test_autocast_matches_unpatched():
    """Under CPU autocast (float16), the patched MLPs cast like the nn.Linear they replace:
    same output dtype, same values to fp16 accuracy, fp32 gradients for the fp32 weights."""
    model = build("llama", num_hidden_layers=1)
    patched = copy.deepcopy(model)
    hf.patch_hf_model(patched)
    x = torch.randn(2, 4, COMMON["hidden_size"])
    outs = []
    for m in (model, patched):
        mlp = m.model.layers[0].mlp
        with torch.autocast("cpu", dtype=torch.float16):
            out = mlp(x)
        out.float().square().sum().backward()
        outs.append(out)
        assert mlp.gate_proj.weight.grad.dtype == torch.float32
    assert outs[0].dtype == outs[1].dtype == torch.float16
    assert_close_scaled("out", outs[1], outs[0], 4e-3)
    for name in ("gate_proj", "up_proj", "down_proj"):
        g0, g1 = (getattr(m.model.layers[0].mlp, name).weight.grad for m in (model, patched))
        assert_close_scaled(name, g1, g0, 2e-2)


def test_compile_fullgraph_patched_model(calls):
    """Dynamo traces a patched model without graph breaks (``aot_eager``: the custom ops'
    fake and autograd registrations, no C++ compiler needed); the fused op is in the graph
    and logits and gradients match the unpatched model."""
    model = build("llama", num_hidden_layers=1)
    patched = copy.deepcopy(model)
    hf.patch_hf_model(patched)
    torch._dynamo.reset()
    compiled = torch.compile(patched, backend="aot_eager", fullgraph=True)
    ids = torch.randint(0, COMMON["vocab_size"], (2, 8))
    want, want_grads = step(model, ids)
    got, got_grads = step(compiled, ids)
    assert calls[0] == 1
    assert_close_scaled("logits", got, want, 1e-5)
    for name, g in got_grads.items():
        assert_close_scaled(name, g, want_grads[name.removeprefix("_orig_mod.")], 1e-4)


# ------------------------------------------------------------------------------- GPU tier


@pytest.mark.gpu
@pytest.mark.parametrize("family", ["llama", "gemma", "phi3"])
def test_gpu_bf16_patched_matches_unpatched(family):
    """bf16 on CUDA, the tolerance rule at model level: the patched model's logits and
    gradients are within twice the unpatched bf16 model's error against the fp32 model."""
    kw = dict(hidden_size=256, intermediate_size=704, num_attention_heads=4, head_dim=64)
    ref = build(family, "cuda", **kw)
    model = copy.deepcopy(ref).to(torch.bfloat16)
    patched = copy.deepcopy(model)
    assert hf.patch_hf_model(patched) == COMMON["num_hidden_layers"]
    ids = torch.randint(0, COMMON["vocab_size"], (4, 64), device="cuda")
    want, want_grads = step(ref, ids)
    eager, eager_grads = step(model, ids)
    got, got_grads = step(patched, ids)
    assert_within_rule("logits", got, eager, want)
    for name, g in got_grads.items():
        assert_within_rule(name, g, eager_grads[name], want_grads[name])


@pytest.mark.gpu
def test_gpu_compile_patched_model():
    """``torch.compile(fullgraph=True)`` (inductor) over a patched bf16 model: one graph,
    logits and gradients as the eager patched model's, to bf16 accuracy."""
    model = build("llama", "cuda").to(torch.bfloat16)
    hf.patch_hf_model(model)
    ids = torch.randint(0, COMMON["vocab_size"], (2, 32), device="cuda")
    want, want_grads = step(model, ids)
    torch._dynamo.reset()
    got, got_grads = step(torch.compile(model, fullgraph=True), ids)
    assert_close_scaled("logits", got, want, 2e-2)
    for name, g in got_grads.items():
        assert_close_scaled(name, g, want_grads[name.removeprefix("_orig_mod.")], 5e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("family", ["llama", "phi3"])
def test_gpu_cuda_graph_patched_mlp(family):
    """A patched MLP captured in a CUDA graph after warm-up replays to the eager result for
    new input written into the static buffer."""
    mlp = build(family, "cuda").to(torch.bfloat16).model.layers[0].mlp
    hf.patch_hf_model(mlp)
    static = torch.randn(2, 32, COMMON["hidden_size"], device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):  # kernels compiled and configs chosen before capture
                mlp(static)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = mlp(static)
        x = torch.randn_like(static)
        static.copy_(x)
        graph.replay()
        torch.cuda.synchronize()
        torch.testing.assert_close(out, mlp(x), rtol=0, atol=0)

"""``ops.linear``'s launch plans (``_PLANS``): a call leaves what the launcher decided (kernel,
grid, constexprs, integer arguments; the Gluon forward's kept launch; the unfused route), and a
later call with the same ``_plan_key`` runs it without the launcher's body.

Kernel tier (interpreter on the CPU): a plan's output is the body's, bit for bit, on fresh
inputs, for the decode paths and above them (the TMA and pointer kernels); what the key holds
gets a plan of its own; calls that copy an operand keep none; the switch, the table's cache
and the bound. GPU tier: the library's kernels on model shapes (the decode paths, the Gluon
forward, the unfused route), through plans and without, bit for bit, under CUDA graph capture
too.
"""

from __future__ import annotations

import pytest
import torch

import flash_swiglu
from flash_swiglu.ops import _launch
from flash_swiglu.ops import linear as L


@pytest.fixture
def body(monkeypatch):
    """The token counts the launcher's body chose a path for (``choose_path`` runs only there)."""
    seen = []
    real = L.choose_path
    monkeypatch.setattr(L, "choose_path", lambda *a: seen.append(a[-1]) or real(*a))
    return seen


def _weights(n, k, dtype, device, bias=False):
    wg, wu = (torch.randn(n, k, dtype=dtype, device=device) * k**-0.5 for _ in range(2))
    bg, bu = (torch.randn(n, dtype=dtype, device=device) if bias else None for _ in range(2))
    return wg, wu, bg, bu


def _without_plan(monkeypatch, fn):
    monkeypatch.setenv(L.PLAN_ENV, "0")
    try:
        return fn()
    finally:
        monkeypatch.delenv(L.PLAN_ENV)


@pytest.mark.parametrize(
    "shape, n, k, bias",
    [
        ((1, 72), 48, 72, False),  # one token: the matrix-vector kernel
        ((2, 1, 72), 48, 72, True),  # two tokens, 3-D, biases
        ((5, 72), 48, 72, True),  # the decode kernel, a ragged token tile
        ((3, 128), 32, 128, False),  # one weight tile over 3 programs: split-K
        ((130, 72), 48, 72, True),  # above the decode paths: TMA kernel (fp16), pointer (fp32)
        ((2, 67, 36), 40, 36, False),  # K * 2 bytes not a multiple of 16: the pointer kernel
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_a_plan_serves_later_calls_bit_for_bit(device, body, monkeypatch, shape, n, k, bias,
                                               dtype):  # fmt: skip
    wg, wu, bg, bu = _weights(n, k, dtype, device, bias)
    run = lambda x: flash_swiglu.swiglu_linear(x, wg, wu, bg, bu, activation="gelu")
    first = torch.randn(shape, dtype=dtype, device=device)
    y_first = run(first)
    assert len(L._PLANS) == 1 and len(body) == 1
    for i in range(2):  # fresh values, the same key
        x = torch.randn(shape, dtype=dtype, device=device)
        y = run(x)
        assert len(body) == 1 + i  # the plan: no body
        assert torch.equal(y, _without_plan(monkeypatch, lambda: run(x)))  # noqa: B023
        assert len(body) == 2 + i  # switched off: the body
    assert torch.equal(y_first, run(first)) and len(body) == 3
    tokens = first.numel() // k
    want = "gemv" if tokens == 1 else "decode" if tokens <= L.DECODE_MAX_TOKENS else None
    tma = dtype == torch.float16 and k * 2 % 16 == 0
    assert [p.kind for p in L._PLANS.values()] == [want or ("tma" if tma else "ptr")]


def test_a_plan_serves_strided_rows_and_the_decode_kernels_tma_variant(device, body,
                                                                       monkeypatch):  # fmt: skip
    """x as a view of every other token row of a 3-D tensor (two strided row groups, read in
    place), and the decode kernel's TMA variant (descriptors made at each call)."""
    dtype = torch.float16
    wg, wu, bg, bu = _weights(40, 64, dtype, device, bias=True)
    run = lambda x: flash_swiglu.swiglu_linear(x, wg, wu, bg, bu)
    big = torch.randn(2, 8, 64, dtype=dtype, device=device)
    for view in (big[:, ::2], big[:, 1::2]):
        y = run(view)
        assert torch.equal(y, _without_plan(monkeypatch, lambda: run(view)))  # noqa: B023
    assert len(body) == 3 and len(L._PLANS) == 1  # the second view: the first one's plan
    real = L.launch_config  # the decode entries with TMA, whatever the device's table says
    tma = lambda path, *a: dict(real(path, *a), TMA=1) if path == "decode" else real(path, *a)
    monkeypatch.setattr(L, "launch_config", tma)
    for _ in range(2):
        x = torch.randn(6, 64, dtype=dtype, device=device)
        y = run(x)
        assert torch.equal(y, _without_plan(monkeypatch, lambda: run(x)))  # noqa: B023
    plans = [p for p in L._PLANS.values() if p.kind == "decode_tma"]
    assert len(plans) == 1 and body[-2:] == [6, 6]  # once with a plan, once without


def test_what_the_key_holds_gets_a_plan_of_its_own(device, body, monkeypatch):
    dtype = torch.float16
    wg, wu, bg, bu = _weights(48, 64, dtype, device, bias=True)
    buf = torch.randn(4 * 64 + 8, dtype=dtype, device=device)
    aligned, offset = buf[:256].view(4, 64), buf[1:257].view(4, 64)
    calls = [
        lambda: flash_swiglu.swiglu_linear(aligned, wg, wu),
        lambda: flash_swiglu.swiglu_linear(offset, wg, wu),  # 2 bytes off 16
        lambda: flash_swiglu.swiglu_linear(aligned, wg, wu, bg, bu),  # biases
        lambda: flash_swiglu.swiglu_linear(aligned, wg, wu, activation="relu"),
        lambda: flash_swiglu.swiglu_linear(aligned.float(), wg.float(), wu.float()),  # dtype
        lambda: flash_swiglu.swiglu_linear(aligned[:3], wg, wu),  # tokens
    ]
    for i, call in enumerate(calls):
        assert torch.equal(call(), _without_plan(monkeypatch, call))
        assert len(L._PLANS) == i + 1
    for call in calls:
        call()
    assert len(L._PLANS) == len(calls) and len(body) == 2 * len(calls)
    torch.set_float32_matmul_precision("high")  # fp32's products follow it
    try:
        calls[4]()
    finally:
        torch.set_float32_matmul_precision("highest")
    monkeypatch.setattr(L, "PAD_TMA_ROWS", False)
    calls[0]()
    monkeypatch.setattr(L, "DECODE_MAX_TOKENS", 2)  # 4 tokens now take another path
    assert torch.equal(calls[0](), _without_plan(monkeypatch, calls[0]))
    assert len(body) == 2 * len(calls) + 4


def test_a_table_reader_put_in_place_gets_plans_of_its_own(device, body, monkeypatch):
    """A test or an exploration that swaps ``load_table`` must not run a plan that the real
    table's entries made."""
    dtype = torch.float16
    wg, wu, _, _ = _weights(48, 64, dtype, device)
    x = torch.randn(4, 64, dtype=dtype, device=device)
    want = flash_swiglu.swiglu_linear(x, wg, wu)
    assert len(L._PLANS) == 1 and len(body) == 1
    real = L.load_table
    monkeypatch.setattr(L, "load_table", lambda name: real(name))
    for _ in range(2):
        assert torch.equal(flash_swiglu.swiglu_linear(x, wg, wu), want)
    assert len(L._PLANS) == 2 and len(body) == 2  # the body once more, then its own plan
    monkeypatch.setattr(L, "load_table", real)
    assert torch.equal(flash_swiglu.swiglu_linear(x, wg, wu), want)
    assert len(L._PLANS) == 2 and len(body) == 2


def test_calls_that_copy_keep_no_plan(device, body, monkeypatch):
    dtype = torch.float16
    wg, wu, _, _ = _weights(48, 64, dtype, device)
    x = torch.randn(4, 64, dtype=dtype, device=device)
    cols = torch.randn(64, 4, dtype=dtype, device=device).t()  # last dimension strided
    rows3 = torch.randn(2, 3, 4, 64, dtype=dtype, device=device)[:, ::2, :3]  # three groups
    w_cols = torch.randn(64, 48, dtype=dtype, device=device)
    # 280 tokens in three row groups: the TMA kernel's path, on a copy of x
    many3 = torch.randn(2, 3, 70, 64, dtype=dtype, device=device)[:, ::2]
    calls = [
        lambda: flash_swiglu.swiglu_linear(cols, wg, wu),
        lambda: flash_swiglu.swiglu_linear(rows3, wg, wu),
        lambda: flash_swiglu.swiglu_linear(x, w_cols.t(), wu),  # a weight copied
        lambda: flash_swiglu.swiglu_linear(many3, wg, wu),
        lambda: flash_swiglu.swiglu_linear(many3[:1, :1, :66], w_cols.t(), wu),  # TMA, a weight
    ]
    for call in calls:
        for _ in range(2):
            y = call()
        assert torch.equal(y, _without_plan(monkeypatch, call))
    assert len(L._PLANS) == 0 and len(body) == 3 * len(calls)


def test_switch_table_cache_and_bound(device, body, monkeypatch):
    dtype = torch.float16
    wg, wu, _, _ = _weights(48, 64, dtype, device)
    x = torch.randn(4, 64, dtype=dtype, device=device)
    monkeypatch.setenv(L.PLAN_ENV, "0")
    for _ in range(2):
        flash_swiglu.swiglu_linear(x, wg, wu)
    assert len(L._PLANS) == 0 and len(body) == 2
    monkeypatch.delenv(L.PLAN_ENV)
    flash_swiglu.swiglu_linear(x, wg, wu)
    assert len(L._PLANS) == 1
    L.load_table.cache_clear()  # a new table: plans built from the old one go
    assert len(L._PLANS) == 0
    monkeypatch.setattr(L, "MAX_PLANS", 2)
    for m in (1, 2, 3, 4):
        flash_swiglu.swiglu_linear(x[:m], wg, wu)
    assert 0 < len(L._PLANS) <= 2


def test_plans_hold_no_tensor(device):
    """A plan outlives the call that made it (module-level cache): it must not keep the
    weights, input or output alive (a model deleted after decoding frees its memory)."""
    import gc
    import weakref

    dtype = torch.float16
    wg, wu, bg, bu = _weights(48, 64, dtype, device, bias=True)
    x = torch.randn(4, 64, dtype=dtype, device=device)
    y = flash_swiglu.swiglu_linear(x, wg, wu, bg, bu)
    assert len(L._PLANS) == 1
    refs = [weakref.ref(t) for t in (wg, wu, bg, bu, x, y)]
    del wg, wu, bg, bu, x, y
    gc.collect()
    assert all(r() is None for r in refs) and len(L._PLANS) == 1


@pytest.mark.gpu
def test_plans_on_model_shapes_bit_for_bit_and_under_graph_capture(monkeypatch):
    """Llama-3.2-1B's gate/up projection at 1, 8 and 32 tokens (the matrix-vector kernel, the
    decode kernel and its TMA variant as the launch table has them) and one tensor-parallel
    shard of 8B (split-K): through plans against the launcher's body, and a plan's launch
    captured in a CUDA graph and replayed on new inputs."""
    dev, dt = "cuda", torch.bfloat16
    for n, k, counts in ((8192, 2048, (1, 8, 32)), (14336 // 8, 4096, (8, 32))):
        wg, wu, _, _ = _weights(n, k, dt, dev)
        run = lambda x: flash_swiglu.swiglu_linear(x, wg, wu)  # noqa: B023
        for m in counts:
            for _ in range(3):
                x = torch.randn(1, m, k, dtype=dt, device=dev)
                assert torch.equal(run(x), _without_plan(monkeypatch, lambda: run(x)))  # noqa: B023
    kinds = {p.kind for p in L._PLANS.values()}
    assert {"gemv", "decode"} <= kinds
    assert sum(_launch.hits(p.bound.kernel) for p in L._PLANS.values()) > 0
    _replayed_plan_matches(monkeypatch, 8)


def _replayed_plan_matches(monkeypatch, tokens: int) -> None:
    """Llama-3.2-1B's projection at ``tokens`` tokens: a plan's launch captured in a CUDA
    graph and replayed on new inputs gives the launcher's body's output, bit for bit."""
    dev, dt = "cuda", torch.bfloat16
    wg, wu, _, _ = _weights(8192, 2048, dt, dev)
    static = torch.randn(tokens, 2048, dtype=dt, device=dev)
    run = lambda: flash_swiglu.swiglu_linear(static, wg, wu)
    run()  # a plan, then its warm launch
    run()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = run()
    for _ in range(2):
        static.copy_(torch.randn_like(static))
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(out, _without_plan(monkeypatch, run))


@pytest.mark.gpu
def test_plans_above_the_decode_paths_on_model_shapes(monkeypatch):
    """Llama-3.2-1B's projection at 2048 tokens (the Gluon forward), and with
    ``FLASH_SWIGLU_GLUON=0`` (the TMA kernel: a plan of its own), Llama-3-8B's at 200 tokens
    (the table's unfused route): through plans against the launcher's body, bit for bit, and
    the Gluon forward's plan captured in a CUDA graph and replayed on new inputs."""
    from flash_swiglu.ops import train as T

    dev, dt = "cuda", torch.bfloat16
    cases = ((8192, 2048, 2048, "1"), (8192, 2048, 2048, "0"), (14336, 4096, 200, "1"))
    for n, k, m, gluon in cases:
        monkeypatch.setenv(T.GLUON_ENV, gluon)
        wg, wu, _, _ = _weights(n, k, dt, dev)
        run = lambda x: flash_swiglu.swiglu_linear(x, wg, wu)  # noqa: B023
        for _ in range(3):
            x = torch.randn(1, m, k, dtype=dt, device=dev)
            assert torch.equal(run(x), _without_plan(monkeypatch, lambda: run(x)))  # noqa: B023
    kinds = [p.kind for p in L._PLANS.values()]
    gluon = T.gluon_available()
    assert kinds == ["ws" if gluon else "tma", "tma", "unfused"]
    monkeypatch.setenv(T.GLUON_ENV, "1")
    _replayed_plan_matches(monkeypatch, 2048)


@pytest.mark.gpu
def test_inference_through_a_plan_skips_the_layers_and_matches(monkeypatch):
    """``SwiGLUMLP`` and a patched Hugging Face MLP without gradient: once a decode call has
    left its plan, ``ops.mlp.infer`` serves the next ones (``swiglu_mlp`` is not entered), bit
    for bit with the full path; with gradient, under autocast, with biases or the plan cache
    off, the full path runs."""
    from flash_swiglu import SwiGLUMLP
    from flash_swiglu import functional as Fn
    from flash_swiglu import modules as Mod

    dev, dt = "cuda", torch.bfloat16
    mlp = SwiGLUMLP(2048, 8192, device=dev, dtype=dt)
    entered = []
    real = Fn.swiglu_mlp
    monkeypatch.setattr(Mod, "swiglu_mlp", lambda *a, **k: entered.append(1) or real(*a, **k))
    x = torch.randn(1, 8, 2048, device=dev, dtype=dt)
    with torch.no_grad():
        first = mlp(x)  # the full path, which leaves the plan
        assert len(entered) == 1
        for i in range(2):
            x = torch.randn(1, 8, 2048, device=dev, dtype=dt)
            y = mlp(x)
            assert len(entered) == 1 + i  # through the plan: swiglu_mlp not entered
            assert torch.equal(y, _without_plan(monkeypatch, lambda: mlp(x)))  # noqa: B023
            assert len(entered) == 2 + i  # the plan cache off: the full path
        assert len(entered) == 3
        with torch.autocast("cuda", dtype=dt):
            mlp(x)
        assert len(entered) == 4
    mlp(x)  # gradient recorded
    assert len(entered) == 5 and first.shape == x.shape
    biased = SwiGLUMLP(2048, 8192, bias=True, device=dev, dtype=dt)
    with torch.no_grad():
        biased(x)
        biased(x)
    assert len(entered) == 7

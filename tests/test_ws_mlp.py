"""GPU tier: the warp-specialized (Gluon) kernels of ``kernels/ws_mlp.py`` on Hopper.

The MLP backward against float64 references with the tolerance rule of DESIGN.md: tiles with
row and column tails, few programs (many tiles each, odd counts per consumer), dg/du written
over g/u, a column slice of a wider ``w_down`` (the sliced backward's operand), every
activation, bf16 and fp16, the ping-pong and the cooperative schedule, the hand-off kernel
(its epilogue in a partition of its own) and the merged one (its epilogue in the loader's
partition; bit for bit the hand-off's outputs); bit-identical reruns;
the routing of ``ops.train.launch`` (the table's ``mlp_backward_ws`` entry,
``FLASH_SWIGLU_GLUON=0``). The forward likewise (saving g and u or not, biases, both
schedules), its routing from the training table (``forward_saving_ws``) and from the launch
table's ``ws`` section, and each committed ``ws`` entry on its model shape."""

from __future__ import annotations

import pytest
import torch

from flash_swiglu import reference
from flash_swiglu._names import ACTIVATIONS
from flash_swiglu.ops import train as T

from _tolerance import assert_within_rule


def _hopper() -> bool:
    return torch.cuda.is_available() and torch.cuda.get_device_capability() == (9, 0)


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not _hopper() or not T.gluon_available(), reason="needs sm_90 and Gluon"),
]
ARGS = dict(alpha=1.702, limit=7.0)


def _operands(m, n, k, dtype, n_total=None, seed=0):
    g_ = torch.Generator(device="cuda").manual_seed(seed)
    r = lambda *s: torch.randn(*s, device="cuda", generator=g_)
    dy = r(m, k).to(dtype)
    wd_full = (r(k, n_total or n) / n**0.5).to(dtype)
    wd = wd_full[:, :n] if n_total else wd_full
    return dy, wd, (2 * r(m, n)).to(dtype), (2 * r(m, n)).to(dtype)


def _check(dy, wd, g, u, h, dg, du, act):
    dh64 = dy.double() @ wd.double()
    dg64, du64 = reference.glu_backward(g.double(), u.double(), dh64, act, **ARGS)
    h64 = reference.act_glu(g.double(), u.double(), act, **ARGS)
    dh_t = (dy @ wd).float()  # PyTorch in the same dtype: dh rounded once
    dg_t, du_t = reference.glu_backward(g.float(), u.float(), dh_t, act, **ARGS)
    h_t = reference.act_glu(g.float(), u.float(), act, **ARGS)
    for name, got, ours, ref in (
        ("h", h, h_t, h64),
        ("dg", dg, dg_t, dg64),
        ("du", du, du_t, du64),
    ):
        assert_within_rule(name, got, ours.to(got.dtype), ref)


def _run(dy, wd, g, u, act, aliased, sms=None, config=None):
    from flash_swiglu.kernels.ws_mlp import mlp_backward_ws

    h = torch.empty_like(g)
    if aliased:
        dg, du = g.clone(), u.clone()
        gg, uu = dg, du
    else:
        dg, du = torch.empty_like(g), torch.empty_like(u)
        gg, uu = g, u
    mlp_backward_ws(dy, wd, gg, uu, h, dg, du, activation=act, sms=sms, config=config, **ARGS)
    return h, dg, du


def _count_calls(monkeypatch, name: str) -> list:
    """Count the calls of ``ws_mlp.<name>`` (they still run). Every launch of a Gluon kernel
    is made by ``prepare_forward`` or ``prepare_backward`` (``ops.train.prepare`` calls them,
    and ``glu_forward_ws`` / ``mlp_backward_ws`` / ``mlp_backward_handoff`` through them)."""
    from flash_swiglu.kernels import ws_mlp

    calls, real = [], getattr(ws_mlp, name)
    monkeypatch.setattr(ws_mlp, name, lambda *a, **kw: calls.append(1) or real(*a, **kw))
    return calls


def _with_forward_entry(monkeypatch, kind: str, merged: bool = False) -> list:
    """Give this GPU's training table a ``kind`` entry of the Gluon forward's built-in
    configuration (with ``merged``, the merged forward's), from 256 rows; count that
    kernel's calls."""
    from flash_swiglu.kernels import ws_mlp

    table = dict(T.load_table(torch.cuda.get_device_name()))
    built_in = (
        dict(ws_mlp.FORWARD_MERGED_CONFIG, MERGED=True) if merged else ws_mlp.WS_FORWARD_CONFIG
    )
    table[kind] = dict(built_in, MIN_M=256)
    monkeypatch.setattr(T, "load_table", lambda name: table)
    return _count_calls(monkeypatch, "prepare_forward")


# The backward kernels' shapes: row and column tails with few programs (many tiles each, odd
# counts per consumer), and a grid of whole tiles on every SM.
BACKWARD_SHAPES = [(300, 200, 192, 3), (777, 520, 320, 7), (2048, 1536, 4096, None)]
# The cooperative schedule: both consumers on each 128 x 256 tile, 64 rows each.
COOP_BACKWARD = dict(BLOCK_N=256, STAGES=4, EPILOGUE_SPLIT=8, COOP=True)
COOP_FORWARD = dict(BLOCK_H=128, STAGES=4, COOP=True)
MERGED_FORWARD = dict(MERGED=True)  # the activation in the loader's partition (session 40)


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("m,n,k,sms", BACKWARD_SHAPES)
@pytest.mark.parametrize("coop", [False, True])
def test_gpu_ws_backward_within_rule(act, m, n, k, sms, coop):
    dy, wd, g, u = _operands(m, n, k, torch.bfloat16)
    config = T.ws_config(g.dtype, g.device, act)
    if coop:  # the ping-pong kernel's entry (the table's, unless it is a hand-off one)
        config = dict(config if config and not config.get("HANDOFF") else {}, **COOP_BACKWARD)
        if act in ("gelu_tanh", "swiglu_oai"):
            config["EPILOGUE_SPLIT"] = 16
    h, dg, du = _run(dy, wd, g, u, act, aliased=True, sms=sms, config=config)
    _check(dy, wd, g, u, h, dg, du, act)


@pytest.mark.parametrize(
    "config",
    [
        None,
        dict(COALESCE=False, EPILOGUE_SPLIT=16, PREFETCH=4),
        dict(STAGES=2, GROUP_M=1),
        COOP_BACKWARD,
        dict(COOP_BACKWARD, STAGES=2, PREFETCH=2),
    ],
)
def test_gpu_ws_options_fp16_and_separate_outputs(config):
    dy, wd, g, u = _operands(129, 136, 64, torch.float16)
    h, dg, du = _run(dy, wd, g, u, "silu", aliased=False, sms=2, config=config)
    _check(dy, wd, g, u, h, dg, du, "silu")


def test_gpu_ws_column_slice_of_w_down():
    # The sliced backward passes w_down[:, c0:c1] of a wider matrix: row stride != width.
    dy, wd, g, u = _operands(640, 384, 512, torch.bfloat16, n_total=1024)
    assert wd.stride(0) == 1024
    h, dg, du = _run(dy, wd, g, u, "silu", aliased=True, sms=5)
    _check(dy, wd, g, u, h, dg, du, "silu")


def test_gpu_ws_reruns_are_bit_identical():
    dy, wd, g, u = _operands(1000, 1000, 512, torch.bfloat16)
    first = _run(dy, wd, g, u, "silu", aliased=False)
    second = _run(dy, wd, g, u, "silu", aliased=False)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


def test_gpu_launch_routes_to_gluon_unless_disabled(monkeypatch):
    if T.ws_config(torch.bfloat16, torch.device("cuda"), "silu") is None:
        pytest.skip("no mlp_backward_ws entry for this GPU")
    calls = _count_calls(monkeypatch, "prepare_backward")
    m = max(2048, T.load_table(torch.cuda.get_device_name()).get("mlp_backward_ws")["MIN_M"])
    dy, wd, g, u = _operands(m, 256, 128, torch.bfloat16)
    outs = dict(h=torch.empty_like(g), dg=torch.empty_like(g), du=torch.empty_like(g))
    T.launch(m, 256, 128, dy=dy, wd=wd, g=g, u=u, activation="silu", **ARGS, **outs)
    assert calls == [1]
    T.launch(m // 2, 256, 128, dy=dy[: m // 2], wd=wd, g=g[: m // 2], u=u[: m // 2],
             activation="silu", **ARGS, **{k: v[: m // 2] for k, v in outs.items()})  # fmt: skip
    assert calls == [1]  # below MIN_M: the Triton kernel
    monkeypatch.setenv(T.GLUON_ENV, "0")
    T.launch(m, 256, 128, dy=dy, wd=wd, g=g, u=u, activation="silu", **ARGS, **outs)
    assert calls == [1]
    _check(dy, wd, g, u, outs["h"], outs["dg"], outs["du"], "silu")


# The hand-off backward (``ws_mlp.mlp_backward_handoff``): the epilogue in a partition of its
# own, dh rounded once to the storage dtype (as PyTorch's ``dy @ w_down``), routed by an
# ``mlp_backward_ws`` entry with HANDOFF.
HANDOFF = dict(HANDOFF=True)


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("m,n,k,sms", BACKWARD_SHAPES)
@pytest.mark.parametrize("aliased", [False, True])
def test_gpu_handoff_backward_within_rule(act, m, n, k, sms, aliased):
    dy, wd, g, u = _operands(m, n, k, torch.bfloat16)
    h, dg, du = _run(dy, wd, g, u, act, aliased=aliased, sms=sms, config=HANDOFF)
    _check(dy, wd, g, u, h, dg, du, act)


@pytest.mark.parametrize(
    "config", [HANDOFF, dict(HANDOFF, EPILOGUE_SPLIT=8), dict(HANDOFF, STAGES=2, GROUP_M=1)]
)
def test_gpu_handoff_fp16_and_column_slice(config):
    dy, wd, g, u = _operands(129, 136, 64, torch.float16)
    _check(dy, wd, g, u, *_run(dy, wd, g, u, "silu", aliased=False, sms=2, config=config),
           "silu")  # fmt: skip
    dy, wd, g, u = _operands(640, 384, 512, torch.bfloat16, n_total=1024)
    _check(dy, wd, g, u, *_run(dy, wd, g, u, "silu", aliased=True, sms=5, config=config),
           "silu")  # fmt: skip


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("m,n,k,sms", BACKWARD_SHAPES[:2])
def test_gpu_handoff_with_fp32_dh_equals_the_ping_pong_kernel(act, m, n, k, sms):
    # DH_FP32 (session 39; written after its device time was spent): dh handed over in fp32,
    # so the hand-off's outputs are the ping-pong kernel's (dh never rounded), bit for bit
    dy, wd, g, u = _operands(m, n, k, torch.bfloat16)
    got = _run(dy, wd, g, u, act, aliased=True, sms=sms, config=dict(HANDOFF, DH_FP32=True))
    _check(dy, wd, g, u, *got, act)
    ping_pong = {"EPILOGUE_SPLIT": 16} if act in ("gelu_tanh", "swiglu_oai") else {}
    ref = _run(dy, wd, g, u, act, aliased=True, sms=sms, config=ping_pong)
    for name, a, b in zip(("h", "dg", "du"), got, ref, strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("key", ["HANDOFF", "MERGED"])
def test_gpu_handoff_entry_routes_and_reruns_bit_identical(monkeypatch, key):
    # an mlp_backward_ws entry with HANDOFF (the hand-off kernel) or MERGED (the merged one)
    from flash_swiglu.kernels import ws_mlp

    table = dict(T.load_table(torch.cuda.get_device_name()))
    table["mlp_backward_ws"] = dict(getattr(ws_mlp, f"{key}_CONFIG"), MIN_M=1024, **{key: True})
    monkeypatch.setattr(T, "load_table", lambda name: table)
    calls, real = [], ws_mlp.prepare_backward
    monkeypatch.setattr(
        ws_mlp, "prepare_backward",
        lambda *a, **kw: calls.append(int(kw["config"][key])) or real(*a, **kw),
    )  # fmt: skip
    dy, wd, g, u = _operands(1024, 640, 256, torch.bfloat16)
    runs = []
    for _ in range(2):
        outs = dict(h=torch.empty_like(g), dg=torch.empty_like(g), du=torch.empty_like(g))
        T.launch(1024, 640, 256, dy=dy, wd=wd, g=g, u=u, activation="silu", **ARGS, **outs)
        runs.append(outs)
    assert calls == [1, 1]
    for name in ("h", "dg", "du"):
        assert torch.equal(runs[0][name], runs[1][name]), name
    _check(dy, wd, g, u, runs[0]["h"], runs[0]["dg"], runs[0]["du"], "silu")


# The merged backward (``ws_mlp.mlp_backward_merged_kernel``, session 39): 128 x 256 tiles, the
# hand-off's epilogue run by the loader's partition between its loads; routed by an
# ``mlp_backward_ws`` entry with MERGED. It rounds dh as the hand-off does and takes the same
# K steps, so its outputs are the hand-off's, bit for bit.
MERGED = dict(MERGED=True)


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("m,n,k,sms", BACKWARD_SHAPES)
@pytest.mark.parametrize("aliased", [False, True])
def test_gpu_merged_backward_within_rule_and_equal_to_the_hand_off(act, m, n, k, sms, aliased):
    dy, wd, g, u = _operands(m, n, k, torch.bfloat16)
    got = _run(dy, wd, g, u, act, aliased=aliased, sms=sms, config=MERGED)
    _check(dy, wd, g, u, *got, act)
    ref = _run(dy, wd, g, u, act, aliased=aliased, sms=sms, config=HANDOFF)
    for name, a, b in zip(("h", "dg", "du"), got, ref, strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize(
    "config",
    [MERGED, dict(MERGED, EVERY=1, LAG=5), dict(MERGED, EPILOGUE_SPLIT=16, GROUP_M=1),
     dict(MERGED, BLOCK_K=32, STAGES=6, EVERY=4, LAG=4)],
)  # fmt: skip
def test_gpu_merged_fp16_short_k_and_column_slice(config):
    # K = 64: one K step a tile, so every piece of the epilogue runs after the loads
    dy, wd, g, u = _operands(129, 136, 64, torch.float16)
    _check(dy, wd, g, u, *_run(dy, wd, g, u, "silu", aliased=False, sms=2, config=config),
           "silu")  # fmt: skip
    dy, wd, g, u = _operands(640, 384, 512, torch.bfloat16, n_total=1024)
    _check(dy, wd, g, u, *_run(dy, wd, g, u, "silu", aliased=True, sms=5, config=config),
           "silu")  # fmt: skip


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("store_gu,bias", [(True, False), (False, True)])
@pytest.mark.parametrize("m,n,k,sms", [(300, 200, 192, 3), (1000, 520, 4096, None)])
@pytest.mark.parametrize("config", [None, COOP_FORWARD, MERGED_FORWARD])
def test_gpu_ws_forward_within_rule(act, store_gu, bias, m, n, k, sms, config):
    import torch.nn.functional as F

    from flash_swiglu.kernels.ws_mlp import glu_forward_ws

    g_ = torch.Generator(device="cuda").manual_seed(1)
    r = lambda *s: torch.randn(*s, device="cuda", generator=g_)
    dt = torch.bfloat16
    x, wg, wu = r(m, k).to(dt), (2 * r(n, k) / k**0.5).to(dt), (2 * r(n, k) / k**0.5).to(dt)
    bg, bu = (r(n).to(dt), r(n).to(dt)) if bias else (None, None)
    h = torch.empty(m, n, device="cuda", dtype=dt)
    g, u = (torch.empty_like(h), torch.empty_like(h)) if store_gu else (None, None)
    glu_forward_ws(x, wg, wu, bg, bu, h, g, u, activation=act, sms=sms, config=config, **ARGS)
    g64 = F.linear(x.double(), wg.double(), None if bg is None else bg.double())
    u64 = F.linear(x.double(), wu.double(), None if bu is None else bu.double())
    g_t, u_t = F.linear(x, wg, bg), F.linear(x, wu, bu)  # PyTorch in the same dtype
    h_t = reference.act_glu(g_t.float(), u_t.float(), act, **ARGS).to(dt)
    assert_within_rule("h", h, h_t, reference.act_glu(g64, u64, act, **ARGS))
    if store_gu:
        assert_within_rule("g", g, g_t, g64)
        assert_within_rule("u", u, u_t, u64)


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("config", [{}, COOP_FORWARD])
def test_gpu_ws_forward_coalesce_out_stores_the_same_bits(act, config):
    """``COALESCE_OUT`` (session 37; no table entry sets it) moves only the outputs to
    the store layout, after the activation, instead of gate and up before it: the math runs
    in another layout, on the same values. h, g and u bit for bit with the default, with
    biases and ragged edges, saving the pre-activation and not."""
    from flash_swiglu.kernels.ws_mlp import glu_forward_ws

    g_ = torch.Generator(device="cuda").manual_seed(37)
    r = lambda *s: torch.randn(*s, device="cuda", generator=g_)
    dt = torch.bfloat16
    m, n, k = 777, 520, 320
    x, wg, wu = r(m, k).to(dt), (2 * r(n, k) / k**0.5).to(dt), (2 * r(n, k) / k**0.5).to(dt)
    bg, bu = r(n).to(dt), r(n).to(dt)
    runs = []
    for late in (False, True):
        cfg = dict(config, COALESCE_OUT=late)
        h, g, u, h_nb = (torch.empty(m, n, device="cuda", dtype=dt) for _ in range(4))
        glu_forward_ws(x, wg, wu, bg, bu, h, g, u, activation=act, sms=7, config=cfg, **ARGS)
        glu_forward_ws(x, wg, wu, None, None, h_nb, activation=act, sms=7, config=cfg, **ARGS)
        runs.append((h, g, u, h_nb))
    for name, a, b in zip(("h", "g", "u", "h without biases"), *runs, strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("m,n,k,sms", [(777, 520, 320, 7), (50, 384, 64, None)])
def test_gpu_merged_forward_rounds_gate_and_up_first(act, m, n, k, sms):
    """The merged forward hands gate and up over rounded to the storage dtype: its g and u
    are the cooperative kernel's bit for bit, its h is ``act(g) * u`` of those g and u
    (computed in fp32, rounded once), and h is the same whether g and u are stored or not.
    With biases and ragged edges; K of one step in the second case."""
    from flash_swiglu.kernels.ws_mlp import glu_forward_ws

    g_ = torch.Generator(device="cuda").manual_seed(40)
    r = lambda *s: torch.randn(*s, device="cuda", generator=g_)
    dt = torch.bfloat16
    x, wg, wu = r(m, k).to(dt), (2 * r(n, k) / k**0.5).to(dt), (2 * r(n, k) / k**0.5).to(dt)
    bg, bu = r(n).to(dt), r(n).to(dt)
    outs = {}
    for name, cfg in (("coop", COOP_FORWARD), ("merged", MERGED_FORWARD)):
        h, g, u, h_only = (torch.full((m, n), float("nan"), device="cuda", dtype=dt)
                           for _ in range(4))  # fmt: skip
        glu_forward_ws(x, wg, wu, bg, bu, h, g, u, activation=act, sms=sms, config=cfg, **ARGS)
        glu_forward_ws(x, wg, wu, bg, bu, h_only, activation=act, sms=sms, config=cfg, **ARGS)
        outs[name] = (h, g, u, h_only)
    h, g, u, h_only = outs["merged"]
    assert torch.equal(g, outs["coop"][1]) and torch.equal(u, outs["coop"][2])
    assert torch.equal(h, h_only)
    # h against act(g) * u of those g and u in float64: one rounding to bf16 (at most half an
    # ulp, bounded by eps * |want|) plus the kernel's fp32 activation, which holds 2 fp32 ulps
    # of max(|act(g)|, 1) (approximate ex2 and division; test_activations.py's bound), times
    # |u|. (PyTorch's fp32 GELU is no reference in the tails: 1 + erf(x) cancels there, and
    # a one-ulp bound against it failed on the H200 for gelu and gelu_tanh in session 40.)
    g64, u64 = g.double(), u.double()
    want = reference.act_glu(g64, u64, act, **ARGS)
    act_g = reference.act_glu(g64, torch.ones_like(u64), act, **ARGS).abs().clamp_min(1.0)
    fp32_ulp = torch.finfo(torch.float32).eps
    bound = torch.finfo(dt).eps * want.abs() + 4 * fp32_ulp * act_g * (u64.abs() + 1)
    assert ((h.double() - want).abs() <= bound).all()


@pytest.mark.parametrize("merged", [False, True])
def test_gpu_forward_saving_routing_with_an_entry(monkeypatch, merged):
    # The committed entry starts at 1024 rows: give the table one from 256 for this test
    # (the merged forward's too: a candidate for the training table since session 40).
    import torch.nn.functional as F

    from flash_swiglu.kernels import ws_mlp

    calls = _with_forward_entry(monkeypatch, "forward_saving_ws", merged)
    configs = []
    real_prepare = ws_mlp.prepare_forward  # (already counting: _count_calls wraps it)
    monkeypatch.setattr(ws_mlp, "prepare_forward",
                        lambda *a, **kw: configs.append(kw.get("config")) or real_prepare(
                            *a, **kw))  # fmt: skip
    g_ = torch.Generator(device="cuda").manual_seed(2)
    dt = torch.bfloat16
    x = torch.randn(512, 256, device="cuda", generator=g_).to(dt)
    wg, wu = (torch.randn(320, 256, device="cuda", generator=g_).div(16).to(dt) for _ in range(2))
    h, (g, u) = T.forward_saving(x, wg, wu, None, None, "silu", **ARGS)
    assert calls == [1]
    assert [bool(c.get("MERGED")) for c in configs] == [merged]
    T.forward_saving(x[:128], wg, wu, None, None, "silu", **ARGS)
    assert calls == [1]  # below MIN_M
    g64, u64 = F.linear(x.double(), wg.double()), F.linear(x.double(), wu.double())
    assert_within_rule("g", g, F.linear(x, wg), g64)
    assert_within_rule("u", u, F.linear(x, wu), u64)
    h_t = reference.act_glu(F.linear(x, wg).float(), F.linear(x, wu).float(), "silu").to(dt)
    assert_within_rule("h", h, h_t, reference.act_glu(g64, u64, "silu"))


def test_gpu_forward_saving_per_shape_item(monkeypatch):
    # An entry's ``shapes`` item applies to those weights only: here it moves MIN_M past the
    # call for [320, 256] weights (the Triton kernel runs) and gives [384, 256] weights the
    # cooperative tile. Both forwards checked against float64.
    import torch.nn.functional as F

    from flash_swiglu.kernels import ws_mlp

    table = dict(T.load_table(torch.cuda.get_device_name()))
    shapes = {T.shape_key(320, 256): {"MIN_M": 1 << 30}, T.shape_key(384, 256): COOP_FORWARD}
    table["forward_saving_ws"] = dict(ws_mlp.WS_FORWARD_CONFIG, MIN_M=256, shapes=shapes)
    monkeypatch.setattr(T, "load_table", lambda name: table)
    configs, real = [], ws_mlp.prepare_forward
    monkeypatch.setattr(
        ws_mlp, "prepare_forward", lambda *a, **kw: configs.append(kw["config"]) or real(*a, **kw)
    )
    g_ = torch.Generator(device="cuda").manual_seed(3)
    dt = torch.bfloat16
    x = torch.randn(512, 256, device="cuda", generator=g_).to(dt)
    for n in (320, 384):
        wg, wu = (torch.randn(n, 256, device="cuda", generator=g_).div(16).to(dt) for _ in "gu")
        h, (g, u) = T.forward_saving(x, wg, wu, None, None, "silu", **ARGS)
        g64, u64 = F.linear(x.double(), wg.double()), F.linear(x.double(), wu.double())
        assert_within_rule("g", g, F.linear(x, wg), g64)
        assert_within_rule("u", u, F.linear(x, wu), u64)
        h_t = reference.act_glu(F.linear(x, wg).float(), F.linear(x, wu).float(), "silu")
        assert_within_rule("h", h, h_t.to(dt), reference.act_glu(g64, u64, "silu"))
    assert len(configs) == 1  # [320, 256]: below its MIN_M
    assert configs[0]["COOP"] is True and configs[0]["BLOCK_H"] == 128


def _committed_forward_shape_items() -> list[str]:
    import json

    entry = json.loads((T.L.CONFIG_DIR / "h200_train.json").read_text())["forward_saving_ws"]
    return list(entry.get("shapes", {}))


@pytest.mark.parametrize("key", _committed_forward_shape_items())
def test_gpu_committed_forward_saving_shape_items(monkeypatch, key):
    """Each per-shape item of the committed saving forward, on its model's weights at 3 rows
    past the merged ``MIN_M`` (a ragged last row tile): ``forward_saving`` runs the Gluon
    kernel with the item's tile, g, u and h within the rule."""
    import torch.nn.functional as F

    from flash_swiglu.kernels import ws_mlp

    if "H200" not in torch.cuda.get_device_name():
        pytest.skip("the committed entries are the H200's")
    n, k = (int(part[1:]) for part in key.split("_"))
    entry = T.load_table(torch.cuda.get_device_name())["forward_saving_ws"]
    m = {**entry, **entry["shapes"][key]}.get("MIN_M", 0) + 3
    configs, real = [], ws_mlp.prepare_forward
    monkeypatch.setattr(
        ws_mlp, "prepare_forward", lambda *a, **kw: configs.append(kw["config"]) or real(*a, **kw)
    )
    g_ = torch.Generator(device="cuda").manual_seed(4)
    dt = torch.bfloat16
    x = torch.randn(m, k, device="cuda", generator=g_).to(dt)
    wg, wu = (torch.randn(n, k, device="cuda", generator=g_).div(k**0.5).to(dt) for _ in "gu")
    h, (g, u) = T.forward_saving(x, wg, wu, None, None, "silu", **ARGS)
    assert configs == [T.ws_entry(entry, "forward_saving_ws", "silu", m, (n, k))]
    assert configs[0] != T.ws_entry(entry, "forward_saving_ws", "silu", m)  # the item's own
    g64, u64 = F.linear(x.double(), wg.double()), F.linear(x.double(), wu.double())
    g_t, u_t = F.linear(x, wg), F.linear(x, wu)
    assert_within_rule("g", g, g_t, g64)
    assert_within_rule("u", u, u_t, u64)
    h_t = reference.act_glu(g_t.float(), u_t.float(), "silu").to(dt)
    assert_within_rule("h", h, h_t, reference.act_glu(g64, u64, "silu"))


def test_gpu_projection_routing_with_an_entry(monkeypatch):
    # The committed ws entries are for model shapes: give the launch table a default one.
    import torch.nn.functional as F

    import flash_swiglu
    from flash_swiglu.kernels import ws_mlp
    from flash_swiglu.ops import linear as L

    table = dict(L.load_table(torch.cuda.get_device_name()))
    table["ws"] = {"default": dict(ws_mlp.WS_FORWARD_CONFIG, MIN_M=256)}
    monkeypatch.setattr(L, "load_table", lambda name: table)
    calls = _count_calls(monkeypatch, "prepare_forward")
    g_ = torch.Generator(device="cuda").manual_seed(3)
    dt = torch.bfloat16
    x = torch.randn(2, 300, 256, device="cuda", generator=g_).to(dt)  # 600 rows
    wg, wu = (torch.randn(320, 256, device="cuda", generator=g_).div(16).to(dt) for _ in range(2))
    bg, bu = (torch.randn(320, device="cuda", generator=g_).to(dt) for _ in range(2))
    h = flash_swiglu.swiglu_linear(x, wg, wu, bg, bu, activation="gelu_tanh")
    assert calls == [1]
    g64 = F.linear(x.double(), wg.double(), bg.double())
    u64 = F.linear(x.double(), wu.double(), bu.double())
    h_t = reference.act_glu(F.linear(x, wg, bg).float(), F.linear(x, wu, bu).float(), "gelu_tanh")
    assert_within_rule("h", h, h_t.to(dt), reference.act_glu(g64, u64, "gelu_tanh"))
    flash_swiglu.swiglu_linear(x[:, :100], wg, wu, bg, bu)  # 200 rows: below MIN_M
    assert calls == [1]


def _committed_ws_entries() -> dict:
    import json

    from flash_swiglu.ops import linear as L

    return json.loads((L.CONFIG_DIR / "h200_linear.json").read_text()).get("ws", {})


def _projection_within_rule(m: int, n: int, k: int, dt, seed: int):
    """swiglu_linear on fresh ``[m, k]`` inputs and ``[n, k]`` weights on the GPU, checked
    against float64 with DESIGN.md's rule; returns ``(x, w_gate, w_up)``."""
    import torch.nn.functional as F

    import flash_swiglu

    g_ = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(m, k, device="cuda", generator=g_).to(dt)
    wg, wu = ((torch.randn(n, k, device="cuda", generator=g_) / k**0.5).to(dt) for _ in range(2))
    h = flash_swiglu.swiglu_linear(x, wg, wu)
    g64, u64 = F.linear(x.double(), wg.double()), F.linear(x.double(), wu.double())
    h_t = reference.act_glu(F.linear(x, wg).float(), F.linear(x, wu).float(), "silu").to(dt)
    assert_within_rule("h", h, h_t, reference.act_glu(g64, u64, "silu"))
    return x, wg, wu


@pytest.mark.parametrize("key", list(_committed_ws_entries()))
def test_gpu_committed_projection_entries_route_and_hold(monkeypatch, key):
    """Each committed ws entry of the launch table: swiglu_linear on its model shape runs the
    Gluon forward, within the rule: a token-bucket entry (``m256_n..._k...``) 3 rows short of
    its bucket's top (a ragged last row tile; the top itself where the unfused route takes
    that count), a shape-wide entry at 2048 rows. Below a shape-wide entry's MIN_M, a bucket
    with no entry of its own does not run the Gluon forward (the Triton kernel or the
    unfused route)."""
    import flash_swiglu
    from flash_swiglu.ops import linear as L

    if "H200" not in torch.cuda.get_device_name():
        pytest.skip("the committed ws entries are the H200's")
    table = _committed_ws_entries()
    base, _, dtype_name = key.partition(":")  # ``:bfloat16``: an entry for that dtype alone
    dt = getattr(torch, dtype_name) if dtype_name else torch.bfloat16
    entry, parts = table[key], base.split("_")
    n, k = int(parts[-2][1:]), int(parts[-1][1:])
    m = int(parts[0][1:]) - 3 if len(parts) == 3 else max(entry.get("MIN_M", 0), 2048)
    if L.unfused_route(m, n, k, dt, torch.cuda.get_device_name()):
        m += 3  # the bucket's top: the unfused route takes the ragged counts below it
    calls = _count_calls(monkeypatch, "prepare_forward")
    x, wg, wu = _projection_within_rule(m, n, k, dt, seed=4)
    assert calls == [1]
    if len(parts) == 2:
        uncovered = [b for b in (128, 256, 512, 1024)
                     if b < entry.get("MIN_M", 0) and f"m{b}_{key}" not in table]  # fmt: skip
        for b in uncovered:
            flash_swiglu.swiglu_linear(x[: b - 3], wg, wu)
        assert calls == [1]


@pytest.mark.parametrize("m", [832, 1021])
def test_gpu_70b_1024_bucket_entry_in_fp16(monkeypatch, m):
    """Session 45: the 70B 1024-bucket entry is keyed for both 16-bit dtypes (the committed
    test above runs a dtype-less key in bf16): fp16 at 832 (the route's end + 1) and 1021
    tokens runs the merged Gluon forward, within the rule."""
    from flash_swiglu.ops import linear as L

    if "H200" not in torch.cuda.get_device_name():
        pytest.skip("the committed ws entries are the H200's")
    n, k, dt = 28672, 8192, torch.float16
    assert not L.unfused_route(m, n, k, dt, torch.cuda.get_device_name())
    calls = _count_calls(monkeypatch, "prepare_forward")
    _projection_within_rule(m, n, k, dt, seed=5)
    assert calls == [1]


@pytest.mark.parametrize("config", [None, COOP_FORWARD, MERGED_FORWARD])
@pytest.mark.parametrize("store_gu", [False, True])
def test_gpu_ws_forward_fp16(config, store_gu):
    import torch.nn.functional as F

    from flash_swiglu.kernels.ws_mlp import glu_forward_ws

    g_ = torch.Generator(device="cuda").manual_seed(5)
    dt = torch.float16
    m, n, k = 777, 520, 320
    x = torch.randn(m, k, device="cuda", generator=g_).to(dt)
    wg, wu = ((torch.randn(n, k, device="cuda", generator=g_) / k**0.5).to(dt) for _ in range(2))
    h = torch.empty(m, n, device="cuda", dtype=dt)
    g, u = (torch.empty_like(h), torch.empty_like(h)) if store_gu else (None, None)
    glu_forward_ws(x, wg, wu, None, None, h, g, u, activation="silu", sms=7, config=config,
                   **ARGS)  # fmt: skip
    g64, u64 = F.linear(x.double(), wg.double()), F.linear(x.double(), wu.double())
    g_t, u_t = F.linear(x, wg), F.linear(x, wu)
    h_t = reference.act_glu(g_t.float(), u_t.float(), "silu", **ARGS).to(dt)
    assert_within_rule("h", h, h_t, reference.act_glu(g64, u64, "silu", **ARGS))
    if store_gu:
        assert_within_rule("g", g, g_t, g64)
        assert_within_rule("u", u, u_t, u64)


def test_gpu_retune_times_the_gluon_forward(tmp_path):
    """``ops.linear.retune`` on a TMA shape: a Triton entry, and a ``ws`` entry exactly when
    the Gluon candidate measured faster; the written table is the returned one."""
    import json
    import re

    from flash_swiglu.ops import linear as L

    cands = {"tma": L.CANDIDATES["tma"][:1], "ws": L.WS_CANDIDATES[-1:]}
    out = tmp_path / "table.json"
    table = L.retune([(2048, 1024, 512)], candidates=cands, out_path=out)
    assert json.loads(out.read_text()) == table
    key = "m2048_n1024_k512"
    us = lambda entry: float(re.search(r": ([0-9.]+) us", entry["source"]).group(1))
    tma = table["tma"][key]
    assert {k: v for k, v in tma.items() if k != "source"} == cands["tma"][0]
    if "ws" in table:
        ws = table["ws"][key]
        assert {k: v for k, v in ws.items() if k != "source"} == cands["ws"][0]
        assert us(ws) < us(tma)

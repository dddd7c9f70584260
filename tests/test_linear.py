"""The fused gate/up projection ``swiglu_linear`` against float64 references.

Kernel tier: every path (TMA, pointer, decode, gemv) through Triton's interpreter on the CPU, or on
the GPU when present. GPU tier (``gpu``): bf16 on real model shapes, CUDA graphs, configs.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn.functional as F
import triton
import triton.language as tl

import flash_swiglu
from _oracles import gpt_oss_glu
from _tables import launch_table
from flash_swiglu import reference
from flash_swiglu._names import ACTIVATIONS
from flash_swiglu.kernels.linear import _tile_start
from flash_swiglu.ops import linear as L

from _tolerance import assert_within_rule

DTYPES = [torch.float32, torch.float16]
SCALE = {"swiglu_oai": 4.0}  # pre-activations reach gpt-oss's clamps at +-7
PATHS = ["tma", "pointer", "decode", "gemv"]


def make_inputs(m_shape, n, k, dtype, device, activation="silu", bias=True, packed=None):
    """x, weights and biases whose pre-activations have a spread of about SCALE."""
    s = SCALE.get(activation, 2.0)
    x = torch.randn((*m_shape, k), device=device).to(dtype)
    w = (torch.randn(2 * n, k, device=device) * s / max(k, 1) ** 0.5).to(dtype)
    b = torch.randn(2 * n, device=device).to(dtype) if bias else None
    if packed:
        return x, w, b
    wg, wu = w[:n].clone(), w[n:].clone()
    bg, bu = (b[:n].clone(), b[n:].clone()) if bias else (None, None)
    return x, wg, wu, bg, bu


def torch_linear(x, wg, wu, bg, bu, activation):
    """The same math in PyTorch, in the dtype of the inputs (F.linear + the activation)."""
    return reference.act_glu(F.linear(x, wg, bg), F.linear(x, wu, bu), activation)


def run(fn, inputs, dout=None):
    """``fn``'s output and the gradients of every tensor input for ``dout`` (random if None)."""
    leaves = [t.detach().clone().requires_grad_(True) if t is not None else None for t in inputs]
    out = fn(*leaves)
    dout = torch.randn_like(out) if dout is None else dout
    grads = torch.autograd.grad(out, [t for t in leaves if t is not None], dout)
    return out.detach(), grads, dout


def check(fn, torch_fn, inputs, name=""):
    """Output and every gradient within the tolerance rule against float64 autograd, with
    ``torch_fn`` in the inputs' dtype as the PyTorch comparison."""
    out, grads, dout = run(fn, inputs)
    ref, ref_grads, _ = run(
        torch_fn, [t.double() if t is not None else None for t in inputs], dout.double()
    )
    eager, eager_grads, _ = run(torch_fn, inputs, dout)
    assert_within_rule(f"{name} out", out, eager, ref)
    for i, (g, e, r) in enumerate(zip(grads, eager_grads, ref_grads, strict=True)):
        assert_within_rule(f"{name} grad {i}", g, e, r)
    return out


def split_rows(w, layout):
    """(gate, up) rows of a packed [2N, K] weight, or of a packed [2N] bias."""
    if w is None:
        return None, None
    if w.dim() == 1:
        return reference.split_packed(w, layout)
    g, u = reference.split_packed(w.t(), layout)
    return g.t(), u.t()


def torch_packed(x, w, b, layout, activation):
    return torch_linear(x, *split_rows(w, layout), *split_rows(b, layout), activation)


@pytest.fixture
def force_path(monkeypatch):
    """Route every launch to one path; records the paths the launcher chose on its own."""
    chosen = []

    def force(path):
        real = L.choose_path

        def spy(*args):
            chosen.append(real(*args))
            return path

        monkeypatch.setattr(L, "choose_path", spy)

    force.chosen = chosen
    return force


# Token counts: the main paths need more than DECODE_MAX_TOKENS rows; the decode path fewer;
# the matrix-vector kernel's token tile holds 8 (5 tokens: a ragged tile).
M_SHAPE = {"tma": (80,), "pointer": (80,), "decode": (5,), "gemv": (5,)}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_matches_float64(device, force_path, path, activation, dtype):
    force_path(path)
    inputs = make_inputs(M_SHAPE[path], 48, 72, dtype, device, activation)
    fn = lambda *a: flash_swiglu.swiglu_linear(*a, activation=activation)
    check(fn, lambda *a: torch_linear(*a, activation), inputs, path)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("layout", ["concat", "interleaved"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_packed_layouts(device, force_path, path, layout, dtype):
    force_path(path)
    x, w, b = make_inputs(M_SHAPE[path], 40, 64, dtype, device, "gelu", packed=True)

    fn = lambda x, w, b: flash_swiglu.swiglu_linear_packed(
        x, w, b, activation="gelu", layout=layout
    )
    torch_fn = lambda x, w, b: torch_packed(x, w, b, layout, "gelu")
    check(fn, torch_fn, (x, w, b), f"{path} {layout}")


OAI = dict(alpha=1.0, limit=3.0)  # gpt-oss's GLU with other parameters than its 1.702 / 7


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("layout", [None, "interleaved"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_swiglu_oai_parameters(device, force_path, path, layout, dtype):
    """Non-default ``alpha`` / ``limit`` reach every path's forward and the backward, split
    and packed as gpt-oss packs them, against an oracle written apart from
    ``reference.act_glu`` (``_oracles.gpt_oss_glu``); pre-activations on both sides of the
    clamps."""
    force_path(path)
    x, w, b = make_inputs(M_SHAPE[path], 40, 64, dtype, device, "swiglu_oai", packed=True)
    pre = reference.split_packed(F.linear(x.double(), w.double(), b.double()), layout or "concat")
    assert (pre[0] > 3.0).any() and (pre[0] < -3.0).any() and (pre[1].abs() > 3.0).any()

    def oracle(x, w, b):
        return gpt_oss_glu(*reference.split_packed(F.linear(x, w, b), layout or "concat"), **OAI)

    if layout is None:
        n = w.shape[0] // 2
        fn = lambda x, w, b: flash_swiglu.swiglu_linear(
            x, w[:n], w[n:], b[:n], b[n:], activation="swiglu_oai", **OAI
        )
    else:
        fn = lambda x, w, b: flash_swiglu.swiglu_linear_packed(
            x, w, b, activation="swiglu_oai", layout=layout, **OAI
        )
    check(fn, oracle, (x, w, b), f"{path} {layout}")


@pytest.mark.parametrize("path", PATHS)
def test_3d_input_and_no_bias(device, force_path, path):
    force_path(path)
    m_shape = (2, 41) if path in ("tma", "pointer") else (2, 3)
    inputs = make_inputs(m_shape, 24, 32, torch.float32, device, bias=False)
    fn = lambda x, wg, wu, bg, bu: flash_swiglu.swiglu_linear(x, wg, wu)
    out = check(fn, lambda *a: torch_linear(*a, "silu"), inputs, path)
    assert out.shape == (*m_shape, 24)


@pytest.mark.parametrize("path", ["pointer", "decode", "gemv"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_unaligned_k_and_n(device, force_path, path, dtype):
    """K and N not multiples of 8: no TMA descriptor can take them."""
    force_path(path)
    m_shape = (70,) if path == "pointer" else (1,)
    inputs = make_inputs(m_shape, 19, 37, dtype, device)
    check(
        lambda *a: flash_swiglu.swiglu_linear(*a), lambda *a: torch_linear(*a, "silu"), inputs, path
    )
    natural = "decode" if path == "gemv" else path  # choose_path: "decode" for both
    assert force_path.chosen == [natural] * len(force_path.chosen)


@pytest.mark.parametrize(("m", "k", "split"), [(1, 200, 2), (5, 100, 3), (100, 128, 4), (3, 64, 8)])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_decode_split_k(device, m, k, split, dtype):
    """SPLIT_K programs per tile, the last adding the partials: right, deterministic, and
    every counter back at zero (K not a multiple of BLOCK_K; at M = 100, past what the
    launcher routes to this kernel, several token tiles each count their own arrivals)."""
    x, wg, wu, bg, bu = make_inputs((m,), 40, k, dtype, device, "gelu_tanh")
    cfg = dict(BLOCK_N=32, BLOCK_K=16, num_warps=4, num_stages=2, SPLIT_K=split)
    run = lambda c: L._forward_triton(x, wg, wu, bg, bu, "gelu_tanh", 1.702, 7.0, "decode", c)
    out = run(cfg)
    ref = reference.swiglu_linear_reference(*(t.double() for t in (x, wg, wu, bg, bu)), "gelu_tanh")
    assert_within_rule(f"split {split}", out, torch_linear(x, wg, wu, bg, bu, "gelu_tanh"), ref)
    assert torch.equal(run(cfg), out)  # the partials are added in slice order
    counters = L.split_k_counters(x.device, 1)  # the buffer the launches used
    assert not counters.any()
    if dtype == torch.float32 and -(-k // 16) > split:  # slices of several steps each: the
        assert not torch.equal(run(dict(cfg, SPLIT_K=1)), out)  # fp32 sums' rounding differs


@pytest.mark.parametrize(
    ("m", "n", "k", "split"), [(3, 40, 96, 1), (8, 72, 200, 3), (40, 40, 64, 2)]
)
def test_decode_tma(device, monkeypatch, m, n, k, split):
    """The decode kernel's TMA variant (``TMA`` in the configuration): fp16 and bf16 operands
    with 16-byte aligned rows. Tokens past M, weight rows past N and columns past K (K = 200
    is not a multiple of BLOCK_K) come in as zeros from the descriptors; split-K slices
    hand over as in the pointer kernel. Against the reference, deterministic, counters back at
    zero; the result is the pointer kernel's wherever one program sums a tile (no split)."""
    import flash_swiglu.kernels.linear as KL

    launched = []
    real = KL._linear_decode_tma_kernel
    spy = type("Spy", (), {"__getitem__": lambda _, grid: launched.append(grid) or real[grid]})
    monkeypatch.setattr(KL, "_linear_decode_tma_kernel", spy())
    dtype = torch.float16 if device == "cpu" else torch.bfloat16
    x, wg, wu, bg, bu = make_inputs((m,), n, k, dtype, device, "gelu")
    cfg = dict(BLOCK_N=32, BLOCK_K=32, num_warps=4, num_stages=2, SPLIT_K=split, TMA=True)
    run = lambda c: L._forward_triton(x, wg, wu, bg, bu, "gelu", 1.702, 7.0, "decode", c)
    out = run(cfg)
    ref = reference.swiglu_linear_reference(*(t.double() for t in (x, wg, wu, bg, bu)), "gelu")
    assert_within_rule(f"tma split {split}", out, torch_linear(x, wg, wu, bg, bu, "gelu"), ref)
    assert torch.equal(run(cfg), out)
    assert not L.split_k_counters(x.device, 1).any()
    assert len(launched) == 2
    if split == 1:
        assert torch.equal(run(dict(cfg, TMA=False)), out)


def _decode_dtype(device: str, tma: bool) -> torch.dtype:
    """The decode tests' dtype: on the interpreter fp32, or fp16 for the TMA variant (16-bit
    operands only); bf16 on the GPU."""
    if device == "cpu":
        return torch.float16 if tma else torch.float32
    return torch.bfloat16


@pytest.mark.parametrize(
    ("tma", "m", "n", "k", "split", "rotate"),
    [(False, 3, 72, 200, 1, 1), (False, 5, 100, 256, 2, 3), (False, 1, 40, 48, 1, 5),
     (True, 3, 72, 200, 1, 1), (True, 8, 100, 256, 2, 3)],
)  # fmt: skip
def test_decode_k_rotate(device, tma, m, n, k, split, rotate):
    """``K_ROTATE``: each program starts ``pid_n * K_ROTATE`` steps into its K loop (its
    slice's, with split-K) and wraps. Every step still summed once: against the reference
    (K not a multiple of BLOCK_K, rotations past the step count), deterministic, counters
    back at zero; in fp32 the sums' order, and so their rounding, differs from the
    unrotated kernel's."""
    x, wg, wu, bg, bu = make_inputs((m,), n, k, _decode_dtype(device, tma), device, "silu")
    cfg = dict(BLOCK_N=32, BLOCK_K=32 if tma else 16, num_warps=4, num_stages=2, SPLIT_K=split,
               K_ROTATE=rotate, TMA=tma)  # fmt: skip
    run = lambda c: L._forward_triton(x, wg, wu, bg, bu, "silu", 1.702, 7.0, "decode", c)
    out = run(cfg)
    ref = reference.swiglu_linear_reference(*(t.double() for t in (x, wg, wu, bg, bu)))
    assert_within_rule(f"rotate {rotate}", out, torch_linear(x, wg, wu, bg, bu, "silu"), ref)
    assert torch.equal(run(cfg), out)
    assert not L.split_k_counters(x.device, 1).any()
    if x.dtype == torch.float32 and -(-k // 16) // split > 1:
        assert not torch.equal(run(dict(cfg, K_ROTATE=0)), out)


@pytest.mark.parametrize(
    ("tma", "m", "n", "k", "rows", "split", "rotate"),
    [(False, 3, 100, 200, 31, 1, 0), (False, 5, 64, 96, 17, 2, 1), (False, 1, 40, 48, 1, 1, 0),
     (True, 3, 100, 200, 31, 1, 0), (True, 8, 70, 256, 20, 2, 3)],
)  # fmt: skip
def test_decode_rows(device, tma, m, n, k, rows, split, rotate):
    """``ROWS``: each program owns ``ROWS`` of its ``BLOCK_N``-row tile's weight rows and the
    grid has ``cdiv(N, ROWS)`` columns. Every output column is stored once and right (N not
    a multiple of ROWS, the TMA variant's rows past a program's own read but not stored),
    with split-K and rotation; deterministic, counters back at zero."""
    import flash_swiglu.kernels.linear as KL

    x, wg, wu, bg, bu = make_inputs((m,), n, k, _decode_dtype(device, tma), device, "silu")
    cfg = dict(BLOCK_N=32, BLOCK_K=32 if tma else 16, num_warps=4, num_stages=2, SPLIT_K=split,
               K_ROTATE=rotate, TMA=tma, ROWS=rows)  # fmt: skip
    kernel = "_linear_decode_tma_kernel" if tma else "_linear_decode_kernel"
    launched = []
    real = getattr(KL, kernel)
    spy = type("Spy", (), {"__getitem__": lambda _, grid: launched.append(grid) or real[grid]})
    run = lambda c: L._forward_triton(x, wg, wu, bg, bu, "silu", 1.702, 7.0, "decode", c)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(KL, kernel, spy())
        out = run(cfg)
    assert launched[0][0] == -(-n // rows)
    ref = reference.swiglu_linear_reference(*(t.double() for t in (x, wg, wu, bg, bu)))
    assert_within_rule(f"rows {rows}", out, torch_linear(x, wg, wu, bg, bu, "silu"), ref)
    assert torch.equal(run(cfg), out)
    assert not L.split_k_counters(x.device, 1).any()
    for bad in (33, -1):
        with pytest.raises(ValueError, match=rf"ROWS must be in 1\.\.BLOCK_N.*got {bad}"):
            run(dict(cfg, ROWS=bad))


def test_decode_tma_one_tile_of_up_to_128_tokens(device, monkeypatch):
    """The TMA variant takes one token tile of up to 128 tokens (the wide decode route,
    ``wide_decode_config``); the pointer kernel keeps tiles of at most 64."""
    import flash_swiglu.kernels.linear as KL

    launched = []
    real = KL._linear_decode_tma_kernel
    spy = type("Spy", (), {"__getitem__": lambda _, grid: launched.append(grid) or real[grid]})
    monkeypatch.setattr(KL, "_linear_decode_tma_kernel", spy())
    dtype = torch.float16 if device == "cpu" else torch.bfloat16
    x, wg, wu, bg, bu = make_inputs((100,), 48, 96, dtype, device)
    cfg = dict(BLOCK_N=32, BLOCK_K=32, num_warps=4, num_stages=2, SPLIT_K=1, TMA=True)
    out = L._forward_triton(x, wg, wu, bg, bu, "silu", 1.702, 7.0, "decode", cfg)
    ref = reference.swiglu_linear_reference(*(t.double() for t in (x, wg, wu, bg, bu)))
    assert_within_rule("one 128-token tile", out, torch_linear(x, wg, wu, bg, bu, "silu"), ref)
    assert [g[1] for g in launched] == [1]


@triton.jit
def _tile_starts_kernel(out_ptr, M, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    tl.store(out_ptr + pid, _tile_start(pid, M, BLOCK))


@pytest.mark.parametrize(
    ("m", "block", "starts"),
    [(80, 64, [0, 16]), (128, 64, [0, 64]), (200, 128, [0, 72]), (300, 128, [0, 128, 172]),
     (40, 64, [0]), (1, 16, [0])],
)  # fmt: skip
def test_the_last_token_tile_ends_at_row_m(device, m, block, starts):
    out = torch.full((len(starts),), -1, dtype=torch.int32, device=device)
    _tile_starts_kernel[(len(starts),)](out, m, BLOCK=block)
    assert out.tolist() == starts


def _spy_x_boxes(monkeypatch, rows_of_box: int) -> list[bool] | None:
    """Under the interpreter: for every TMA load of a box ``rows_of_box`` rows high (the
    token tile; the tests' weight tiles are lower), whether it stayed within the rows of its
    descriptor (None where the interpreter has no such hook: Triton 3.9's has)."""
    import numpy as np
    from triton.runtime.interpreter import InterpreterBuilder

    within = []
    real = getattr(InterpreterBuilder, "create_descriptor_load", None)
    if real is None:  # another Triton's interpreter: only the bits are compared
        return None

    def load(self, desc, indices, cache_policy):
        if desc.block_shape[0] == rows_of_box:
            top = int(np.max(indices[0].data)) + rows_of_box
            within.append(top <= int(np.min(desc.shape[0].data)))
        return real(self, desc, indices, cache_policy)

    monkeypatch.setattr(InterpreterBuilder, "create_descriptor_load", load)
    return within


@pytest.mark.parametrize(
    ("path", "m", "split"),
    [("tma", 80, 1), ("tma", 40, 1), ("tma", 128, 1), ("decode", 40, 1), ("decode", 150, 1),
     ("decode", 150, 2)],
)  # fmt: skip
def test_token_tiles_stay_within_x(device, monkeypatch, row_invariant_dot, path, m, split):
    """No TMA box of x runs past its last row: from one tile of rows the last token tile
    ends at row M (``kernels.linear._tile_start``), storing the bits a launch on x padded to
    a whole number of tiles stores; fewer rows than a tile are read from a zero-padded copy
    of one tile (``PAD_TMA_ROWS``), the unpadded launch's bits. x itself is not touched. On
    the CPU the interpreter's descriptor loads are watched (a box past x's end zero-fills, so
    the bits alone would not tell)."""
    dtype = torch.float16 if device == "cpu" else torch.bfloat16
    x, wg, wu, bg, bu = make_inputs((m,), 48, 96, dtype, device)
    if path == "tma":
        cfg = dict(BLOCK_M=64, BLOCK_N=32, BLOCK_K=32, GROUP_M=2, num_warps=4, num_stages=2)
    else:  # 150 tokens: two tiles of 128, the second moved back; split 2: K in two slices
        cfg = dict(BLOCK_N=32, BLOCK_K=32, num_warps=4, num_stages=2, SPLIT_K=split, TMA=True)
    tile = 64 if path == "tma" or m <= 64 else 128  # BLOCK_M; the decode tile (next 2^n)
    run = lambda t: L._forward_triton(t, wg, wu, bg, bu, "silu", 1.702, 7.0, path, cfg)
    copies = []
    real = L._padded_rows
    monkeypatch.setattr(L, "_padded_rows", lambda t, r: copies.append(r) or real(t, r))
    with monkeypatch.context() as mp:
        within = _spy_x_boxes(mp, tile) if device == "cpu" else None
        before = x.clone()
        out = run(x)
    assert torch.equal(x, before)
    ref = reference.swiglu_linear_reference(*(t.double() for t in (x, wg, wu, bg, bu)))
    assert_within_rule(path, out, torch_linear(x, wg, wu, bg, bu, "silu"), ref)
    assert copies == [tile]  # every case here runs a TMA kernel with this token tile
    if within is not None:
        assert within and all(within), within
    padded = run(F.pad(x, (0, 0, 0, -m % tile)))[:m]  # whole tiles: no tile moved
    assert torch.equal(out, padded)
    monkeypatch.setattr(L, "PAD_TMA_ROWS", False)
    assert torch.equal(run(x), out)
    assert (real(x, tile) is x) == (m >= tile)


def test_wide_decode_routing(monkeypatch, tmp_path):
    """A ``decode`` entry with ``TMA`` for exactly a token bucket of 65-128 tokens and a
    shape takes those calls from the TMA path (``wide_decode_config``); other buckets,
    shapes, dtypes and entries without ``TMA`` leave them there."""
    entry = dict(BLOCK_N=64, BLOCK_K=64, num_warps=4, num_stages=3, TMA=True)
    table = {"decode": {"m128_n64_k96": dict(entry, source="t"),
                        "m128_n64_k128": dict(entry, TMA=False, source="t"),
                        "m64_n64_k96": dict(entry, source="t"),
                        "m128": dict(entry, source="t")}}  # fmt: skip
    with launch_table(monkeypatch, tmp_path, table, L.wide_decode_config):
        assert L.wide_decode_config(128, 64, 96, torch.bfloat16, "NVIDIA H200") == entry
        assert L.wide_decode_config(128, 64, 96, torch.float16, "NVIDIA H200") == entry
        for m, n, k, dtype in ((128, 64, 96, torch.float32), (128, 64, 128, torch.bfloat16),
                               (64, 64, 96, torch.bfloat16), (256, 64, 96, torch.bfloat16),
                               (128, 32, 96, torch.bfloat16)):  # fmt: skip
            assert L.wide_decode_config(m, n, k, dtype, "NVIDIA H200") is None, (m, n, k)
    # The committed table's entries of that kind are found for their shapes.
    committed = json.loads((L.CONFIG_DIR / "h200_linear.json").read_text())["decode"]
    wide = [key for key in committed if re.fullmatch(r"m(\d+)_n\d+_k\d+", key)
            and int(key[1:].split("_")[0]) > L.DECODE_MAX_TOKENS]  # fmt: skip
    assert wide
    for key in wide:
        m, n, k = (int(v) for v in key[1:].replace("_n", " ").replace("_k", " ").split())
        cfg = L.wide_decode_config(m, n, k, torch.bfloat16, "NVIDIA H200")
        assert cfg == {c: v for c, v in committed[key].items() if c != "source"}


def test_decode_tile_and_register_budgets():
    # Token tiles: 16 to 64 tokens for aligned 16-bit pointer loads, to 128 for TMA;
    # otherwise 2048 elements with the tile's weight rows (32 tokens on 64 rows, 16 on 128).
    tiles = [L.decode_tile(m, 64, True, False) for m in (1, 17, 33, 64, 100)]
    assert tiles == [16, 32, 64, 64, 64]
    assert L.decode_tile(100, 64, True, True) == 128
    assert L.decode_tile(64, 64, False, False) == 32
    assert L.decode_tile(64, 128, False, False) == 16
    assert L.decode_tile(64, 32, False, False) == 32
    # Splits within the partials' budget; 8 warps beyond the 4-warp one.
    assert L.decode_split_warps(16, 64, 8, 4, True) == (8, 4)
    assert L.decode_split_warps(64, 64, 4, 4, True) == (4, 8)
    assert L.decode_split_warps(64, 64, 8, 4, True) == (4, 8)
    assert L.decode_split_warps(64, 128, 8, 8, True) == (2, 8)
    # Without aligned 16-bit operands: partials of at most 4096 elements, 8 warps for any
    # split or a 2048-element tile.
    assert L.decode_split_warps(16, 64, 8, 4, False) == (4, 8)
    assert L.decode_split_warps(32, 64, 1, 4, False) == (1, 8)
    assert L.decode_split_warps(32, 64, 4, 4, False) == (2, 8)
    assert L.decode_split_warps(16, 32, 1, 4, False) == (1, 4)
    # fp32's three TF32 products: 16-token tiles, unsplit.
    assert L.decode_tile(64, 64, False, False, tf32x3=True) == 16
    assert L.decode_split_warps(16, 32, 4, 4, False, tf32x3=True) == (1, 4)


def test_no_ws_entry_is_shadowed_by_a_wide_decode_entry():
    # The wide decode route comes before the Gluon forward: a ws entry for the same token
    # bucket and shape would never run.
    table = json.loads((L.CONFIG_DIR / "h200_linear.json").read_text())
    wide = {key for key in table["decode"] if re.fullmatch(r"m(\d+)_n\d+_k\d+", key)
            and int(key[1:].split("_")[0]) > L.DECODE_MAX_TOKENS}  # fmt: skip
    assert not wide & set(table.get("ws", {}))


def test_no_entry_is_shadowed_by_the_unfused_route():
    # The unfused route comes before the kernels' entries: a bucket entry of the tma or ws
    # sections whose every token count it takes would never run.
    table = json.loads((L.CONFIG_DIR / "h200_linear.json").read_text())
    assert table["unfused"]
    for section in ("tma", "ws"):
        for key in table[section]:
            found = re.fullmatch(r"m(\d+)_n(\d+)_k(\d+)(?::(\w+))?", key)
            if not found:
                continue
            top, n, k = (int(v) for v in found.groups()[:3])
            # an entry for one dtype (``:bfloat16``), or for both 16-bit ones
            dtypes = [getattr(torch, found[4])] if found[4] else [torch.bfloat16, torch.float16]
            for dt in dtypes:
                served = [m for m in range(top // 2 + 1, top + 1)
                          if not L.unfused_route(m, n, k, dt, "NVIDIA H200")]  # fmt: skip
                assert served, (section, key, dt)


def test_unfused_route(monkeypatch, tmp_path):
    """``unfused_route``: the inclusive token ranges of the table's ``unfused`` entry for the
    shape (its dtype's key first); other shapes, dtypes (fp32 always) and counts keep the
    kernels. The committed entries route 8B's 160 tokens and keep its bucket top, 256,
    route Qwen2.5-7B to 300 tokens in bf16 and 256 in fp16, Llama-3-70B's 65-120 tokens in
    both 16-bit dtypes, and the counts past 384 and 512 that sessions 42 (bf16) and 43 (fp16)
    measured on the route's side."""
    table = {"unfused": {"n64_k96:bfloat16": {"TOKENS": [[129, 200], [257, 300]]},
                         "n64_k128": {"TOKENS": [[65, 70]]}}}  # fmt: skip
    with launch_table(monkeypatch, tmp_path, table, L.unfused_route):
        route = lambda m, n=64, k=96, dt=torch.bfloat16: L.unfused_route(m, n, k, dt, "H200")
        assert [route(m) for m in (128, 129, 200, 201, 256, 257, 300, 301)] == [
            False, True, True, False, False, True, True, False]  # fmt: skip
        assert not route(150, dt=torch.float16) and not route(150, n=32)
        assert route(65, k=128, dt=torch.float16) and not route(70, k=128, dt=torch.float32)
    assert L.unfused_route(160, 14336, 4096, torch.bfloat16, "NVIDIA H200")
    assert not L.unfused_route(256, 14336, 4096, torch.bfloat16, "NVIDIA H200")
    assert L.unfused_route(160, 14336, 4096, torch.float16, "NVIDIA H200")
    assert not L.unfused_route(160, 14336, 4096, torch.float32, "NVIDIA H200")
    # Qwen2.5-7B: bf16 alone takes the route to 300 tokens (session 16); fp16 to 256.
    qwen = lambda m, dt: L.unfused_route(m, 18944, 3584, dt, "NVIDIA H200")
    assert [qwen(m, torch.bfloat16) for m in (64, 65, 256, 300, 301, 384)] == [
        False, True, True, True, False, False]  # fmt: skip
    assert [qwen(m, torch.float16) for m in (65, 256, 257, 300)] == [True, True, False, False]
    # Llama-3-70B: both 16-bit dtypes take the route at 65-120 tokens too (session 17).
    big = lambda m, dt: L.unfused_route(m, 28672, 8192, dt, "NVIDIA H200")
    assert [big(m, torch.bfloat16) for m in (64, 65, 120, 121, 128, 129, 256, 257, 384)] == [
        False, True, True, False, False, True, False, True, True]  # fmt: skip
    assert [big(m, torch.float16) for m in (64, 65, 120, 121, 129, 384)] == [
        False, True, True, False, True, True]  # fmt: skip
    # bf16 past 384 tokens (session 42): 8B to 432 and 513-576, Qwen at 385, 432 and 513-544,
    # 70B to 432 and 513-768; the bucket tops 512 and 1024 keep the fused projection, and so
    # do the counts where cuBLAS's products were slow (448) or the fused projection faster.
    eight = lambda m, dt: L.unfused_route(m, 14336, 4096, dt, "NVIDIA H200")
    assert [eight(m, torch.bfloat16) for m in (385, 432, 433, 448, 512, 513, 576, 577, 640)] == [
        True, True, False, False, False, True, True, False, False]  # fmt: skip
    # fp16 past 384 (session 43): 8B to 432 and 513-576, Qwen at 385, 432 and 513-520, 70B
    # to 432 and 513-768, the counts bf16 takes, Qwen's 521-544 aside.
    assert [eight(m, torch.float16) for m in (384, 385, 432, 433, 512, 513, 576, 577, 640)] == [
        True, True, True, False, False, True, True, False, False]  # fmt: skip
    assert [qwen(m, torch.bfloat16) for m in (385, 386, 431, 432, 448, 513, 544, 545)] == [
        True, False, False, True, False, True, True, False]  # fmt: skip
    assert [big(m, torch.bfloat16) for m in (385, 432, 433, 448, 512, 513, 768, 1024)] == [
        True, True, False, False, False, True, True, False]  # fmt: skip
    assert [qwen(m, torch.float16) for m in (385, 386, 431, 432, 448, 513, 520, 521, 544)] == [
        True, False, False, True, False, True, True, False, False]  # fmt: skip
    assert [big(m, torch.float16) for m in (385, 432, 433, 448, 512, 513, 768, 1024)] == [
        True, True, False, False, False, True, True, False]  # fmt: skip
    # Llama-3.2-1B: fp16 alone at 385 and 513-520 (session 43); bf16 keeps the kernels.
    small = lambda m, dt: L.unfused_route(m, 8192, 2048, dt, "NVIDIA H200")
    assert [small(m, torch.float16) for m in (384, 385, 386, 448, 512, 513, 520, 521)] == [
        False, True, False, False, False, True, True, False]  # fmt: skip
    assert not any(small(m, torch.bfloat16) for m in (385, 513, 520))
    # past 768 (session 44): the seventh and ninth rows of 128-row tiles, from 769 and 1025
    assert [eight(m, torch.bfloat16) for m in (768, 769, 800, 801, 1024, 1025, 1087, 1088)] == [
        False, True, True, False, False, True, True, False]  # fmt: skip
    assert [eight(m, torch.float16) for m in (769, 800, 801, 1024, 1025, 1088, 1089)] == [
        True, True, False, False, True, True, False]  # fmt: skip
    assert [qwen(m, torch.bfloat16) for m in (769, 800, 801, 1024, 1025, 1087, 1088)] == [
        True, True, False, False, True, True, False]  # fmt: skip
    # Qwen fp16 at 769-800 since session 47 (explore_session47.py qwen16), as in bf16
    assert [qwen(m, torch.float16) for m in (768, 769, 800, 801, 1024, 1025, 1088, 1089)] == [
        False, True, True, False, False, True, True, False]  # fmt: skip
    assert [big(m, torch.bfloat16) for m in (769, 831, 832, 1023, 1024, 1025, 1087, 1088)] == [
        True, True, False, False, False, True, True, False]  # fmt: skip
    # fp16 on 70B as bf16 since session 45: 832-1023 left to the 1024 bucket's merged forward
    assert [big(m, torch.float16) for m in (769, 831, 832, 900, 1023, 1024, 1025, 1088, 1089)] == [
        True, True, False, False, False, False, True, True, False]  # fmt: skip
    for dt in (torch.bfloat16, torch.float16):
        assert [small(m, dt) for m in (800, 1024, 1025, 1026, 1088)] == [
            False, False, True, False, False]  # fmt: skip


def test_decode_tma_falls_back(device, monkeypatch):
    # Operands a descriptor cannot take (fp32; a row stride of 37 elements) keep the
    # pointer kernel, whatever the configuration says.
    import flash_swiglu.kernels.linear as KL

    def refuse(*a, **k):
        raise AssertionError("the TMA decode kernel was launched")

    monkeypatch.setattr(KL, "_linear_decode_tma_kernel", type("K", (), {"__getitem__": refuse})())
    cfg = dict(BLOCK_N=32, BLOCK_K=32, num_warps=4, num_stages=2, TMA=True)
    for dtype, k in ((torch.float32, 64), (torch.float16, 37)):
        x, wg, wu, bg, bu = make_inputs((4,), 24, k, dtype, device)
        out = L._forward_triton(x, wg, wu, bg, bu, "silu", 1.702, 7.0, "decode", cfg)
        ref = reference.swiglu_linear_reference(*(t.double() for t in (x, wg, wu, bg, bu)))
        assert_within_rule("fallback", out, torch_linear(x, wg, wu, bg, bu, "silu"), ref)


def test_decode_split_k_reads_strided_rows_in_place(device):
    # x[:, :5] of a [2, 8, K] tensor: rows in two strided groups, read in place, split or not.
    x, wg, wu, bg, bu = make_inputs((2, 8), 40, 96, torch.float32, device)
    view = x[:, :5]
    cfg = dict(BLOCK_N=32, BLOCK_K=16, num_warps=4, num_stages=1, SPLIT_K=3)
    run = lambda t: L._forward_triton(t, wg, wu, bg, bu, "silu", 1.702, 7.0, "decode", cfg)
    out = run(view)
    assert torch.equal(out, run(view.contiguous()))
    ref = reference.swiglu_linear_reference(*(t.double() for t in (view, wg, wu, bg, bu)))
    assert_within_rule("strided", out, torch_linear(view, wg, wu, bg, bu, "silu"), ref)


def test_decode_split_k_partials_keep_float64(device):
    # The partials are stored in the accumulator's dtype: fp64 stays fp64 through a split.
    if device != "cpu":
        pytest.skip("fp64 decode products: checked through the interpreter")
    x, wg, wu, _, _ = make_inputs((3,), 40, 200, torch.float64, device, bias=False)
    cfg = dict(BLOCK_N=32, BLOCK_K=16, num_warps=4, num_stages=1, SPLIT_K=4)
    out = L._forward_triton(x, wg, wu, None, None, "silu", 1.702, 7.0, "decode", cfg)
    ref = reference.swiglu_linear_reference(x, wg, wu)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("m", "k", "unroll", "per_sm"),
    [(1, 200, 1, None), (1, 64, 2, None), (1, 100, 4, 1), (3, 48, 1, 2)],
)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gemv_unroll_persistence_and_ragged_k(device, m, k, unroll, per_sm, dtype):
    """The matrix-vector kernel with 1, 2 or 4 BLOCK_K steps per loop trip, K a multiple of
    them (no mask along K) or not, persistent programs (``PROGRAMS_PER_SM``: 3 or 6 programs
    under the interpreter for 10 blocks of rows) or one per block, one program row per token
    (3 tokens: a launch the launcher never makes, but right), deterministic."""
    extra = {"PROGRAMS_PER_SM": per_sm} if per_sm else {}
    if unroll == 4:
        extra["W_CACHE"] = ".cg"  # the weights through L2 only (ignored by the interpreter)
    x, wg, wu, bg, bu = make_inputs((m,), 40, k, dtype, device, "gelu_tanh")
    cfg = dict(BLOCK_N=4, BLOCK_K=32, num_warps=4, num_stages=1, UNROLL=unroll, **extra)
    run = lambda: L._forward_triton(x, wg, wu, bg, bu, "gelu_tanh", 1.702, 7.0, "gemv", cfg)
    out = run()
    ref = reference.swiglu_linear_reference(*(t.double() for t in (x, wg, wu, bg, bu)), "gelu_tanh")
    assert_within_rule(f"gemv m={m}", out, torch_linear(x, wg, wu, bg, bu, "gelu_tanh"), ref)
    assert torch.equal(run(), out)


@pytest.mark.parametrize("path", ["gemv", "decode"])
def test_offsets_32_and_64_bit(device, monkeypatch, path):
    # Both offset widths of the matrix-vector and decode kernels on the same operands agree
    # bit for bit (only the address arithmetic differs). The launcher takes 64 bits only for
    # operands of 2**30 elements or more, so that branch is forced here. N = 10 weight rows:
    # in blocks of 4 and 1 (gemv: masked rows, EVEN_N false, and none), of 16 (decode); K = 64
    # in steps of 32 (no mask along K) and K = 80 (masked), fp16.
    seen, force = [], []
    real = L.needs_int64
    monkeypatch.setattr(L, "needs_int64", lambda *t: seen.append(real(*t)) or bool(force))
    gemv = dict(BLOCK_K=32, num_warps=1, num_stages=1, UNROLL=2)
    decode = dict(BLOCK_N=16, BLOCK_K=32, num_warps=4, num_stages=2)
    cases = {
        "gemv": [(1, 64, dict(gemv, BLOCK_N=4)), (1, 80, dict(gemv, BLOCK_N=1))],
        "decode": [(1, 64, decode), (2, 80, decode)],
    }[path]
    for m, k, cfg in cases:
        x, wg, wu, bg, bu = make_inputs((m,), 10, k, torch.float16, device)
        run = lambda: L._forward_triton(x, wg, wu, bg, bu, "silu", 1.702, 7.0, path, cfg)  # noqa: B023
        out32 = run()
        force.append(True)
        out64 = run()
        force.clear()
        ref = reference.swiglu_linear_reference(*(t.double() for t in (x, wg, wu, bg, bu)))
        assert_within_rule(path, out32, torch_linear(x, wg, wu, bg, bu, "silu"), ref)
        assert torch.equal(out32, out64)
    assert seen == [False] * 4


@pytest.mark.parametrize("k", [64, 100])
def test_gemv_static_k(device, k):
    # K compiled into the matrix-vector kernel (``STATIC_K``) gives the same bits as K read
    # at run time: a K loop of 1 trip (64 = UNROLL * BLOCK_K) and a ragged one (100).
    x, wg, wu, bg, bu = make_inputs((1,), 10, k, torch.float16, device, "gelu")
    cfg = dict(BLOCK_N=1, BLOCK_K=32, num_warps=1, num_stages=1, UNROLL=2)
    run = lambda c: L._forward_triton(x, wg, wu, bg, bu, "gelu", 1.702, 7.0, "gemv", c)
    out = run(dict(cfg, STATIC_K=True))
    ref = reference.swiglu_linear_reference(*(t.double() for t in (x, wg, wu, bg, bu)), "gelu")
    assert_within_rule("gemv static K", out, torch_linear(x, wg, wu, bg, bu, "gelu"), ref)
    assert torch.equal(out, run(cfg))


def test_needs_int64():
    # The largest element offset over sizes and strides, against 2**30 (meta tensors: no
    # memory). Expanded (stride 0) dimensions add nothing.
    meta = lambda *shape: torch.empty(shape, device="meta")
    assert not L.needs_int64(meta(2**16, 2**14))  # largest offset 2**30 - 1
    assert L.needs_int64(meta(2**16 + 1, 2**14))
    assert L.needs_int64(meta(4, 2**14), meta(2**17 + 1, 2**13))
    assert not L.needs_int64(meta(1, 2**14).expand(2**20, 2**14), None)
    assert L.needs_int64(meta(2, 2**31).t())  # a transposed view: strides decide


def test_gemv_float64(device):
    # fp64 accumulates in fp64 (a forced launch: the launcher never routes fp64 here).
    if device != "cpu":
        pytest.skip("fp64 CUDA-core products: checked through the interpreter")
    x, wg, wu, _, _ = make_inputs((1,), 40, 200, torch.float64, device, bias=False)
    cfg = dict(BLOCK_N=4, BLOCK_K=32, num_warps=4, num_stages=1)
    out = L._forward_triton(x, wg, wu, None, None, "silu", 1.702, 7.0, "gemv", cfg)
    ref = reference.swiglu_linear_reference(x, wg, wu)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)


def test_gemv_routing():
    # Without a launch table (other GPUs, the interpreter): one token takes the
    # matrix-vector kernel, more tokens the decode kernel; fp64 never.
    assert L.gemv_config(1, 8, 8, torch.bfloat16, "Some GPU") == L.BUILTIN["gemv"]
    assert L.gemv_config(2, 8, 8, torch.bfloat16, "Some GPU") is None
    assert L.gemv_config(1, 8, 8, torch.float64, "Some GPU") is None
    assert L.gemv_config(1, 8, 8, torch.float32, "interpreter")["BLOCK_K"] == 16
    assert L.gemv_config(2, 8, 8, torch.bfloat16, "NVIDIA H200") is None
    # The H200 table decides by its gemv entries: per shape, then its one-token default
    # (then the built-in one, for a table without either).
    table = json.loads((L.CONFIG_DIR / "h200_linear.json").read_text())
    for key, entry in table.get("gemv", {}).items():
        key, _, dtype_name = key.partition(":")  # m1:float16: that dtype's entry
        dtype = getattr(torch, dtype_name or "bfloat16")
        bucket = int(key[1:].split("_")[0])
        assert bucket <= L.GEMV_MAX_TOKENS
        if "_n" in key:
            n, k = (int(v) for v in key.split("_n")[1].split("_k"))
            cfg = L.gemv_config(bucket, n, k, dtype, "NVIDIA H200")
            if entry.get("KERNEL") == "decode":
                assert cfg is None
            else:
                keys = L._CONFIG_KEYS + L._OPTIONAL_KEYS
                assert cfg == {c: entry[c] for c in keys if c in entry}
    # A shape without an entry of its own takes the one-token default, for its dtype if the
    # table has one; a shape's own entry comes before a dtype's default.
    assert L.gemv_config(1, 512, 512, torch.bfloat16, "NVIDIA H200")["BLOCK_N"] == 1
    keys = L._CONFIG_KEYS + L._OPTIONAL_KEYS
    for dtype in (torch.float16, torch.bfloat16):
        name = str(dtype).removeprefix("torch.")
        entry = table["gemv"].get(f"m1:{name}", table["gemv"]["m1"])
        assert L.gemv_config(1, 512, 512, dtype, "NVIDIA H200") == {
            c: entry[c] for c in keys if c in entry
        }
        shape = table["gemv"]["m1_n28672_k8192"]
        assert L.gemv_config(1, 28672, 8192, dtype, "NVIDIA H200") == {
            c: shape[c] for c in keys if c in shape
        }


def test_dtype_keys():
    assert L.table_keys(1, 8, 16, torch.float16) == (
        "m1_n8_k16:float16", "m1_n8_k16", "m1:float16", "m1",
        "n8_k16:float16", "n8_k16", "default:float16", "default",
    )  # fmt: skip
    assert L.dtype_keys(("a", "b"), None) == ("a", "b")


def test_natural_path_choice(device):
    x = torch.randn(80, 64, device=device)
    w = torch.randn(32, 64, device=device)
    assert L.choose_path(x, w, w, 1) == "decode"
    assert L.choose_path(x, w, w, 64) == "decode"
    with _tf32():
        assert L.choose_path(x, w, w, 80) == ("tma" if _has_tma(device) else "pointer")
    # IEEE fp32 products have no MMA to feed: pointer path.
    assert L.choose_path(x, w, w, 80) == "pointer"
    xh, wh = x.half(), w.half()
    assert L.choose_path(xh, wh, wh, 80) == ("tma" if _has_tma(device) else "pointer")
    w37 = torch.randn(32, 37, device=device).half()
    assert L.choose_path(None, w37, w37, 80) == "pointer"  # K * 2 bytes not a multiple of 16
    assert L.choose_path(xh[:, 1:], wh[:, 1:], wh[:, 1:], 80) == "pointer"  # unaligned views


def _has_tma(device):
    return device == "cpu" or torch.cuda.get_device_capability()[0] >= 9


class _tf32:
    def __enter__(self):
        self.prev = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("high")

    def __exit__(self, *exc):
        torch.set_float32_matmul_precision(self.prev)


def test_input_precision_follows_torch():
    assert L.input_precision(torch.float32) == "ieee"
    with _tf32():
        assert (
            L.input_precision(torch.float32) == "tf32x3"
        )  # three TF32 products: see input_precision
    assert L.input_precision(torch.float64) == "ieee"


def test_strided_views_read_in_place(device, force_path):
    """x sliced along the sequence (two row groups, row stride 80) and w_up a column slice
    of a wider matrix (its own row stride, 16-byte aligned so TMA can take it too)."""
    x = torch.randn(3, 9, 80, device=device)[:, 2:7, 8:72]
    _, wg, _, bg, bu = make_inputs((1,), 24, 64, torch.float32, device)
    wu = (torch.randn(24, 100, device=device) / 8)[:, 8:72]
    assert wu.stride(0) == 100 and x.stride(1) == 80
    ref = reference.swiglu_linear_reference(*(t.double() for t in (x, wg, wu, bg, bu)))
    for path in PATHS:
        force_path(path)
        out = flash_swiglu.swiglu_linear(x, wg, wu, bg, bu)
        torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5, msg=path)


@pytest.mark.parametrize("m_shape", [(0,), (2, 0)], ids=str)
def test_zero_tokens(device, m_shape):
    x, wg, wu, bg, bu = make_inputs(m_shape, 16, 32, torch.float32, device)
    leaves = [t.requires_grad_(True) for t in (x, wg, wu, bg, bu)]
    out = flash_swiglu.swiglu_linear(*leaves)
    assert out.shape == (*m_shape, 16)
    grads = torch.autograd.grad(out.sum(), leaves)
    for t, g in zip(leaves, grads, strict=True):
        assert g.shape == t.shape
    assert all(not g.any() for g in grads[1:])


def test_zero_k(device):
    """K = 0: the products are empty sums, the output is act(b_gate) * b_up, and every
    gradient (the biases' nonzero) matches autograd on the reference (session 25: the
    backward once failed on ``reshape(-1, 0)``)."""
    x, wg, wu, bg, bu = make_inputs((3,), 8, 0, torch.float32, device)
    out = flash_swiglu.swiglu_linear(x, wg, wu, bg, bu)
    torch.testing.assert_close(out, (F.silu(bg) * bu).expand(3, 8))
    leaves = [t.requires_grad_(True) for t in (x, wg, wu, bg, bu)]
    dout = torch.randn(3, 8, device=device)
    got = torch.autograd.grad(flash_swiglu.swiglu_linear(*leaves), leaves, dout)
    ref = torch.autograd.grad(reference.swiglu_linear_reference(*leaves), leaves, dout)
    for g, r in zip(got, ref, strict=True):
        torch.testing.assert_close(g, r)
    assert float(got[3].abs().sum()) > 0


@pytest.mark.parametrize("packed", [False, True], ids=["separate", "packed"])
def test_zero_n(device, packed):
    """N = 0: an empty output, and empty gradients for the weights and biases, x's zero."""
    x, *params = make_inputs((2, 3), 0, 16, torch.float32, device, packed=packed)
    leaves = [t.requires_grad_(True) for t in (x, *params)]
    fn = flash_swiglu.swiglu_linear_packed if packed else flash_swiglu.swiglu_linear
    out = fn(*leaves)
    assert out.shape == (2, 3, 0)
    grads = torch.autograd.grad(out.sum(), leaves)
    for t, g in zip(leaves, grads, strict=True):
        assert g.shape == t.shape
    assert not grads[0].any()


def test_backward_is_repeatable_and_out_of_place(device):
    x, w, b = make_inputs((70,), 16, 32, torch.float16, device, packed=True)
    before = [t.clone() for t in (x, w, b)]
    leaves = [t.requires_grad_(True) for t in (x, w, b)]
    out = flash_swiglu.swiglu_linear_packed(*leaves, layout="interleaved")
    dout = torch.randn_like(out)
    g1 = torch.autograd.grad(out, leaves, dout, retain_graph=True)
    g2 = torch.autograd.grad(out, leaves, dout)
    assert all(torch.equal(a, c) for a, c in zip(g1, g2, strict=True))
    assert all(torch.equal(t.detach(), c) for t, c in zip(leaves, before, strict=True))


def test_gradcheck_float64(device):
    x, wg, wu, bg, bu = make_inputs((3,), 4, 5, torch.float64, device, activation="gelu_tanh")
    leaves = [t.requires_grad_(True) for t in (x, wg, wu, bg, bu)]
    fn = lambda *a: flash_swiglu.swiglu_linear(*a, activation="gelu_tanh")
    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-5)


def test_custom_ops_pass_opcheck(device):
    x, wg, wu, bg, bu = make_inputs((5,), 16, 32, torch.float32, device)
    torch.library.opcheck(L.linear_fwd, (x, wg, wu, bg, bu, "silu", 1.702, 7.0))
    x, w, b = make_inputs((5,), 16, 32, torch.float32, device, packed=True)
    torch.library.opcheck(L.linear_packed_fwd, (x, w, b, "silu", "interleaved", 1.702, 7.0))


def test_torch_compile_fullgraph(device):
    x, w, b = make_inputs((2, 3), 16, 32, torch.float32, device, packed=True)
    leaves = [t.requires_grad_(True) for t in (x, w, b)]
    fn = lambda x, w, b: flash_swiglu.swiglu_linear_packed(x, w, b, layout="interleaved")
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    out = compiled(*leaves)
    grads = torch.autograd.grad(out.sum(), leaves)
    out_e = fn(*leaves)
    grads_e = torch.autograd.grad(out_e.sum(), leaves)
    torch.testing.assert_close(out, out_e)
    for g, e in zip(grads, grads_e, strict=True):
        torch.testing.assert_close(g, e)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_cpu_reference_path_without_interpreter(monkeypatch, activation):
    from flash_swiglu.ops import _common, elementwise

    monkeypatch.setattr(_common, "use_triton", lambda device: False)  # gemm_kernels asks it
    monkeypatch.setattr(elementwise, "use_triton", lambda device: False)
    inputs = make_inputs((2, 3), 16, 24, torch.float16, "cpu", activation)
    fn = lambda *a: flash_swiglu.swiglu_linear(*a, activation=activation)
    check(fn, lambda *a: torch_linear(*a, activation), inputs, "reference path")


def test_errors(device):
    x, wg, wu, bg, _ = make_inputs((4,), 8, 16, torch.float32, device)
    with pytest.raises(ValueError, match=r"w_gate.*\(8, 15\)"):
        flash_swiglu.swiglu_linear(x, wg[:, :15], wu)
    with pytest.raises(ValueError, match=r"w_gate and w_up.*\(8, 16\).*\(7, 16\)"):
        flash_swiglu.swiglu_linear(x, wg, wu[:7])
    with pytest.raises(ValueError, match=r"b_up.*\(9,\)"):
        flash_swiglu.swiglu_linear(x, wg, wu, bg, torch.zeros(9, device=device))
    with pytest.raises(TypeError, match=r"w_up.*float16"):
        flash_swiglu.swiglu_linear(x, wg, wu.half())
    with pytest.raises(TypeError, match=r"x has dtype torch.int64"):
        flash_swiglu.swiglu_linear(x.long(), wg, wu)
    with pytest.raises(ValueError, match=r"same device.*meta"):
        flash_swiglu.swiglu_linear(x, wg, wu.to("meta"))
    with pytest.raises(ValueError, match="activation"):
        flash_swiglu.swiglu_linear(x, wg, wu, activation="tanh")
    w = torch.randn(15, 16, device=device)
    with pytest.raises(ValueError, match=r"\[2N, K\].*\(15, 16\)"):
        flash_swiglu.swiglu_linear_packed(x, w)
    with pytest.raises(ValueError, match="layout"):
        flash_swiglu.swiglu_linear_packed(x, w[:14], layout="rows")
    with pytest.raises(ValueError, match=r"b must have shape \[2N\]"):
        flash_swiglu.swiglu_linear_packed(x, w[:14], torch.zeros(7, device=device))
    with pytest.raises(TypeError, match="w_gate must be a tensor, got None"):
        flash_swiglu.swiglu_linear(x, None, wu)
    with pytest.raises(TypeError, match="w must be a tensor, got None"):
        flash_swiglu.swiglu_linear_packed(x, None)


def test_one_token_decode_entries_are_reached():
    """A decode entry of the one-token bucket runs only where the gemv section sends that
    shape to the decode kernel (``{"KERNEL": "decode"}``): otherwise the matrix-vector
    kernel takes every one-token call and the entry is dead (sessions 21-22 tuned 1B's
    without noticing; session 23 found it)."""
    table = json.loads((L.CONFIG_DIR / "h200_linear.json").read_text())
    for key in table["decode"]:
        if key.startswith("m1_n"):
            n, k = (int(v) for v in key.removeprefix("m1_n").partition(":")[0].split("_k"))
            dtypes = (torch.bfloat16, torch.float16, torch.float32)
            reached = [d for d in dtypes if L.gemv_config(1, n, k, d, "NVIDIA H200") is None]
            assert reached, f"decode.{key}: every one-token call runs the matrix-vector kernel"
    # Llama-3.2-1B: sessions 23-24 sent bf16 to the decode kernel; since session 25 both
    # 16-bit dtypes take the shape's own matrix-vector entry (2048 columns over 4 warps).
    for dtype in (torch.bfloat16, torch.float16):
        cfg = L.gemv_config(1, 8192, 2048, dtype, "NVIDIA H200")
        assert cfg is not None and (cfg["BLOCK_K"], cfg["num_warps"]) == (2048, 4)


def test_config_table():
    table = json.loads((L.CONFIG_DIR / "h200_linear.json").read_text())
    for path in L.BUILTIN:
        for key, entry in table.get(path, {}).items():
            assert "source" in entry, (path, key)
            if entry.get("KERNEL") == "decode" and path == "gemv":
                continue
            assert set(L._CONFIG_KEYS) - {"BLOCK_M", "GROUP_M"} <= set(entry)
    assert L.table_keys(3000, 14336, 4096) == (
        "m4096_n14336_k4096",
        "m4096",
        "n14336_k4096",
        "default",
    )
    assert L.token_bucket(1 << 20) == L.MAX_TOKEN_BUCKET
    cfg = L.launch_config("tma", 8192, 14336, 4096, torch.bfloat16, "NVIDIA H200")
    assert cfg == {k: table["tma"]["default"][k] for k in L._CONFIG_KEYS}
    cfg32 = L.launch_config("tma", 8192, 14336, 4096, torch.float32, "NVIDIA H200")
    assert cfg32["BLOCK_K"] == cfg["BLOCK_K"] // 2  # same bytes per stage
    assert L.launch_config("decode", 1, 8, 8, torch.bfloat16, "Some GPU") == L.BUILTIN["decode"]
    # A shape the H200 table has no decode entry for (a tensor-parallel shard) takes its
    # default, which leaves SPLIT_K to auto_split_k.
    shard = L.launch_config("decode", 1, 1792, 4096, torch.bfloat16, "NVIDIA H200")
    assert shard == {k: table["decode"]["default"][k] for k in L._CONFIG_KEYS if k in shard}
    assert "SPLIT_K" not in shard


def test_auto_split_k():
    # Full model shapes (132 SMs, 64-row tiles, BLOCK_K 128): enough tiles, no split.
    assert L.auto_split_k(8192 // 64, 2048 // 128, 132) == 1
    assert L.auto_split_k(14336 // 64, 4096 // 128, 132) == 1
    # Tensor-parallel shards: 1B over 4 ranks, 8B over 8, Qwen2.5-7B over 4, 70B over 8.
    assert L.auto_split_k(2048 // 64, 2048 // 128, 132) == 4
    assert L.auto_split_k(1792 // 64, 4096 // 128, 132) == 4
    assert L.auto_split_k(-(-4736 // 64), 3584 // 128, 132) == 1
    assert L.auto_split_k(3584 // 64, 8192 // 128, 132) == 2
    # At most 8, and every slice keeps two BLOCK_K steps.
    assert L.auto_split_k(1, 1 << 10, 132) == 8
    assert L.auto_split_k(2, 4, 132) == 2
    assert L.auto_split_k(2, 3, 132) == 1


def test_two_programs_per_sm_and_register_cap(device, row_invariant_dot):
    # PROGRAMS_PER_SM multiplies the persistent grid (each program strides over the tiles by
    # the grid size); maxnreg is a compile option. Same result as the plain launch; both keys
    # are dropped for fp32, whose stages take twice the shared memory.
    x, wg, wu, bg, bu = make_inputs((200,), 96, 64, torch.float16, device)
    base = dict(L.INTERPRET["tma"])
    plain = L._forward_triton(x, wg, wu, bg, bu, "silu", 1.702, 7.0, "tma", base)
    two = dict(base, PROGRAMS_PER_SM=2, maxnreg=128)
    out = L._forward_triton(x, wg, wu, bg, bu, "silu", 1.702, 7.0, "tma", two)
    torch.testing.assert_close(out, plain, rtol=0, atol=0)
    assert "PROGRAMS_PER_SM" in L.adjust_config("tma", two, torch.bfloat16, True, "tf32")
    fp32 = L.adjust_config("tma", two, torch.float32, True, "tf32x3")
    assert "PROGRAMS_PER_SM" not in fp32 and "maxnreg" not in fp32
    entry = json.loads((L.CONFIG_DIR / "h200_linear.json").read_text())["tma"]["m128_n14336_k4096"]
    cfg = L.launch_config("tma", 128, 14336, 4096, torch.bfloat16, "NVIDIA H200")
    assert cfg["PROGRAMS_PER_SM"] == entry["PROGRAMS_PER_SM"] == 2


def test_decode_stages_for_slow_operands():
    """Unaligned or fp32 decode launches: at most 3 stages, 8 warps for 128-row tiles, and 2
    stages for a narrower tile at fewer than 8 warps that stores only ROWS of its rows (the
    register budgets the sm_90 compile gate found); aligned 16-bit launches as the table says."""
    tile = dict(BLOCK_N=64, BLOCK_K=128, num_warps=4, num_stages=4)
    adjust = L.adjust_config
    assert adjust("decode", tile, torch.bfloat16, True, "tf32")["num_stages"] == 4
    assert adjust("decode", tile, torch.bfloat16, False, "tf32")["num_stages"] == 3
    assert adjust("decode", tile, torch.float32, True, "ieee")["num_stages"] == 3
    rows = dict(tile, ROWS=48)
    assert adjust("decode", rows, torch.bfloat16, True, "tf32")["num_stages"] == 4
    for dtype, aligned in ((torch.bfloat16, False), (torch.float32, True)):
        assert adjust("decode", rows, dtype, aligned, "ieee")["num_stages"] == 2
        assert adjust("decode", dict(rows, ROWS=64), dtype, aligned, "ieee")["num_stages"] == 3
        assert adjust("decode", dict(rows, num_warps=8), dtype, aligned, "ieee")["num_stages"] == 3
    wide = adjust("decode", dict(tile, BLOCK_N=128, ROWS=110), torch.float32, True, "ieee")
    assert (wide["num_warps"], wide["num_stages"]) == (8, 3)


# ----------------------------------------------------------------------------------------
# GPU tier
# ----------------------------------------------------------------------------------------

MODELS = {"llama3-8b": (4096, 14336), "llama3.2-1b": (2048, 8192)}


@pytest.mark.gpu
@pytest.mark.parametrize("m", [1, 32, 2048])
@pytest.mark.parametrize("model", list(MODELS))
def test_gpu_bf16_model_shapes(m, model):
    k, n = MODELS[model]
    x, wg, wu, _, _ = make_inputs((m,), n, k, torch.bfloat16, "cuda", bias=False)
    out = flash_swiglu.swiglu_linear(x, wg, wu)
    ref = reference.swiglu_linear_reference(x.double(), wg.double(), wu.double())
    assert_within_rule(f"{model} m={m}", out, torch_linear(x, wg, wu, None, None, "silu"), ref)


@pytest.mark.gpu
@pytest.mark.parametrize("layout", ["concat", "interleaved"])
@pytest.mark.parametrize("m", [16, 1024])
def test_gpu_bf16_packed_with_grads(layout, m):
    x, w, b = make_inputs((m,), 2048, 1024, torch.bfloat16, "cuda", "swiglu_oai", packed=True)

    fn = lambda x, w, b: flash_swiglu.swiglu_linear_packed(
        x, w, b, activation="swiglu_oai", layout=layout
    )
    check(fn, lambda x, w, b: torch_packed(x, w, b, layout, "swiglu_oai"), (x, w, b), layout)


@pytest.mark.gpu
@pytest.mark.parametrize("m", [1, 8, 64])
def test_gpu_decode_under_cuda_graph(m):
    x, wg, wu, _, _ = make_inputs((m,), 14336, 4096, torch.bfloat16, "cuda", bias=False)
    expected = flash_swiglu.swiglu_linear(x, wg, wu)  # warm-up compiles outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = flash_swiglu.swiglu_linear(x, wg, wu)
    x.copy_(torch.randn_like(x))
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(out, flash_swiglu.swiglu_linear(x, wg, wu), rtol=0, atol=0)
    assert not torch.equal(out, expected)


@pytest.mark.gpu
@pytest.mark.parametrize("fresh_stream", [False, True])
def test_gpu_split_k_decode_under_cuda_graph(fresh_stream):
    """Split-K decode captured in a graph, on the warm-up's stream (its counters) or on a
    stream that never ran one (counters zeroed inside the graph); replays are exact."""
    x, wg, wu, _, _ = make_inputs((8,), 8192, 2048, torch.bfloat16, "cuda", bias=False)
    cfg = dict(BLOCK_N=64, BLOCK_K=128, num_warps=4, num_stages=2, SPLIT_K=4)
    run = lambda: L._forward_triton(x, wg, wu, None, None, "silu", 1.702, 7.0, "decode", cfg)
    stream = torch.cuda.Stream()
    warm = torch.cuda.Stream() if fresh_stream else stream
    with torch.cuda.stream(warm):
        run()  # compiles outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        out = run()
    for _ in range(3):
        x.copy_(torch.randn_like(x))
        graph.replay()
        torch.cuda.synchronize()
        torch.testing.assert_close(out, run(), rtol=0, atol=0)
        ref = reference.swiglu_linear_reference(x.double(), wg.double(), wu.double())
        assert_within_rule("graph", out, torch_linear(x, wg, wu, None, None, "silu"), ref)
    with torch.cuda.stream(stream):
        assert not L.split_k_counters(x.device, 1).any()  # the stream's own, if it has them


@triton.jit
def _copy_triggering_early(src, dst, n, BLOCK: tl.constexpr):
    """``dst[:n] = src[:n]`` by a few programs, each walking the tensor in steps of ``BLOCK``
    elements after first letting a programmatic dependent launch that follows start
    (``griddepcontrol.launch_dependents``): that kernel then runs on the other SMs while
    this one's stores go on for hundreds of microseconds, and only its own wait keeps it
    from reading ``dst`` too early."""
    tl.extra.cuda.gdc_launch_dependents()
    for start in range(tl.program_id(0) * BLOCK, n, tl.num_programs(0) * BLOCK):
        offs = start + tl.arange(0, BLOCK).to(tl.int64)
        tl.store(dst + offs, tl.load(src + offs, mask=offs < n), mask=offs < n)


def _overwrite(dst: torch.Tensor, src: torch.Tensor) -> None:
    _copy_triggering_early[(4,)](src, dst, dst.numel(), BLOCK=1024)


@pytest.mark.gpu
@pytest.mark.parametrize("graph", [False, True])
@pytest.mark.parametrize("m", [1, 8, 32])
def test_gpu_decode_waits_for_the_kernel_before_it(m, graph):
    """The decode paths launch as programmatic dependent launches (``ops.linear.use_pdl``).
    Right before the call a kernel rewrites x and both weights and lets the next kernel
    start at once; the call must still see every new value (eagerly and in a CUDA graph),
    bit-identical to the same call made after a synchronization. Without the kernels' wait
    the eager case failed on 57 of 60 calls (``scripts/explore_session49.py nowait``)."""
    assert L.use_pdl(torch.cuda.current_device(), False)
    x, wg, wu, _, _ = make_inputs((m,), 8192, 2048, torch.bfloat16, "cuda", bias=False)
    new = [torch.randn_like(t) for t in (x, wg, wu)]

    def step():
        for dst, src in zip((x, wg, wu), new, strict=True):
            _overwrite(dst, src)
        return flash_swiglu.swiglu_linear(x, wg, wu)

    step()  # compiles both kernels outside any capture
    if graph:
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            out = step()
    for t in (x, wg, wu):
        t.zero_()
    if graph:
        g.replay()
    else:
        out = step()
    torch.cuda.synchronize()
    assert torch.equal(x, new[0]) and torch.equal(wu, new[2])
    torch.testing.assert_close(out, flash_swiglu.swiglu_linear(x, wg, wu), rtol=0, atol=0)
    ref = reference.swiglu_linear_reference(x.double(), wg.double(), wu.double())
    assert_within_rule("pdl", out, torch_linear(x, wg, wu, None, None, "silu"), ref)


def test_pdl_switch(monkeypatch):
    """Programmatic dependent launches: never interpreted, off with ``FLASH_SWIGLU_PDL=0``,
    and the switch is part of a launch plan's key (a plan made with it on is not reused
    with it off)."""
    assert not L.use_pdl(0, True)
    x, wg, wu, _, _ = make_inputs((4,), 64, 32, torch.float32, "cpu", bias=False)
    args = (x, wg, wu, None, None, "silu", 1.702, 7.0)
    monkeypatch.delenv(L.PDL_ENV, raising=False)
    on = L._plan_key(*args)
    monkeypatch.setenv(L.PDL_ENV, "0")
    assert L._plan_key(*args) != on
    if torch.cuda.is_available():
        assert not L.use_pdl(torch.cuda.current_device(), False)


@pytest.mark.gpu
def test_gpu_wide_decode_entries(monkeypatch):
    """Every committed decode entry for more than 64 tokens, through ``swiglu_linear`` on
    its model shape: routed to the TMA decode kernel with one token tile, within the rule
    (at the counts the table's ``unfused`` route leaves to it: Llama-3-70B's 65-120 tokens
    take the route, so there it is checked at 128 alone)."""
    import flash_swiglu.kernels.linear as KL

    launched = []
    real = KL._linear_decode_tma_kernel
    spy = type("Spy", (), {"__getitem__": lambda _, grid: launched.append(grid) or real[grid]})
    monkeypatch.setattr(KL, "_linear_decode_tma_kernel", spy())
    committed = json.loads((L.CONFIG_DIR / "h200_linear.json").read_text())["decode"]
    wide = [key for key in committed if re.fullmatch(r"m(\d+)_n\d+_k\d+", key)
            and int(key[1:].split("_")[0]) > L.DECODE_MAX_TOKENS]  # fmt: skip
    assert wide
    for key in wide:
        bucket, n, k = (int(v) for v in key[1:].replace("_n", " ").replace("_k", " ").split())
        gpu = torch.cuda.get_device_name()
        counts = [m for m in (bucket, bucket - 20, bucket - 37)
                  if not L.unfused_route(m, n, k, torch.bfloat16, gpu)]  # fmt: skip
        assert bucket in counts, key
        for m in counts:
            launched.clear()
            x, wg, wu, bg, bu = make_inputs((m,), n, k, torch.bfloat16, "cuda")
            out = flash_swiglu.swiglu_linear(x, wg, wu, bg, bu)
            ref = reference.swiglu_linear_reference(*(t.double() for t in (x, wg, wu, bg, bu)))
            assert_within_rule(f"{key} M={m}", out, torch_linear(x, wg, wu, bg, bu, "silu"), ref)
            assert [g[1] for g in launched] == [1], (key, m, launched)


@pytest.mark.gpu
@pytest.mark.parametrize("m", [1, 8, 33, 64])
@pytest.mark.parametrize(
    ("dtype", "k", "precision"),
    [
        (torch.bfloat16, 1001, "highest"),  # K not a multiple of 8: pointer loads, unaligned
        (torch.float16, 1001, "highest"),
        (torch.float32, 1024, "highest"),  # IEEE fp32 products
        (torch.float32, 1024, "high"),  # three TF32 products (16-token unsplit tiles)
        (torch.float32, 1001, "highest"),
    ],
    ids=str,
)
def test_gpu_decode_fallbacks_within_register_budgets(m, dtype, k, precision):
    """The decode launches ``decode_tile`` / ``decode_split_warps`` narrow for operands that
    are not aligned 16-bit (fp32, unaligned K) at 1-64 tokens, through ``swiglu_linear`` on a
    shape whose few weight-row tiles make the launcher split K: within the rule. Checked on
    the CPU by the interpreter and the sm_90 compile gate; this runs them on the GPU."""
    n = 512  # 8 tiles of 64 rows: auto_split_k splits K where the tile allows
    x, wg, wu, bg, bu = make_inputs((m,), n, k, dtype, "cuda")
    prev = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)
    try:
        out = flash_swiglu.swiglu_linear(x, wg, wu, bg, bu)
        eager = torch_linear(x, wg, wu, bg, bu, "silu")
    finally:
        torch.set_float32_matmul_precision(prev)
    ref = reference.swiglu_linear_reference(*(t.double() for t in (x, wg, wu, bg, bu)))
    assert_within_rule(f"{dtype} K={k} {precision} M={m}", out, eager, ref)


@pytest.mark.gpu
@pytest.mark.parametrize("m", [65, 96, 200, 300])
@pytest.mark.parametrize("model", ["llama3-8b", "qwen2.5-7b"])
def test_gpu_token_tiles_stay_within_x(monkeypatch, m, model):
    """On real shapes: through every route the launcher takes at these token counts, padding
    x (``PAD_TMA_ROWS``) changes no bit; the Triton TMA kernel and the Gluon forward (both
    schedules, saving g and u too), whose last token tile ends at row M from 128 rows, store
    the bits of a launch on x padded to whole tiles."""
    from flash_swiglu.ops import train as T

    k, n = {"llama3-8b": (4096, 14336), "qwen2.5-7b": (3584, 18944)}[model]
    x, wg, wu, bg, bu = make_inputs((m,), n, k, torch.bfloat16, "cuda")
    out = flash_swiglu.swiglu_linear(x, wg, wu, bg, bu)
    ref = reference.swiglu_linear_reference(*(t.double() for t in (x, wg, wu, bg, bu)))
    assert_within_rule(f"{model} M={m}", out, torch_linear(x, wg, wu, bg, bu, "silu"), ref)
    with monkeypatch.context() as mp:
        mp.setattr(L, "PAD_TMA_ROWS", False)
        assert torch.equal(flash_swiglu.swiglu_linear(x, wg, wu, bg, bu), out)
    xp = F.pad(x, (0, 0, 0, -m % 128))
    cfg = dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, GROUP_M=8, num_warps=8, num_stages=3)
    tma = [L._forward_triton(t, wg, wu, bg, bu, "silu", 1.702, 7.0, "tma", cfg) for t in (x, xp)]
    assert torch.equal(tma[0], tma[1][:m])
    if T.ws_enabled(x.dtype, x.device):
        from flash_swiglu.kernels.ws_mlp import WS_FORWARD_CONFIG, glu_forward_ws

        for coop in (False, True):  # h, and g and u as the training forward saves them
            ws = dict(WS_FORWARD_CONFIG, BLOCK_H=128 if coop else 64, STAGES=4, COOP=coop)
            runs = []
            for t in (x, xp):
                h, g, u = (torch.empty(t.shape[0], n, device="cuda", dtype=x.dtype)
                           for _ in range(3))  # fmt: skip
                glu_forward_ws(t, wg, wu, bg, bu, h, g, u, activation="silu", alpha=1.702,
                               limit=7.0, config=ws)  # fmt: skip
                runs.append((h, g, u))
            for name, a, b in zip("hgu", *runs, strict=True):
                assert torch.equal(a, b[:m]), f"{name}, coop={coop}"


bf16, fp16 = torch.bfloat16, torch.float16


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("n", "k", "m", "unfused", "dtype"),
    [(14336, 4096, 200, True, bf16), (14336, 4096, 256, False, bf16),
     (14336, 4096, 300, True, bf16), (18944, 3584, 300, True, bf16),
     (18944, 3584, 301, False, bf16), (28672, 8192, 120, True, bf16),
     (28672, 8192, 121, False, bf16), (14336, 4096, 520, True, bf16),
     (14336, 4096, 608, False, bf16), (18944, 3584, 432, True, bf16),
     (18944, 3584, 448, False, bf16), (28672, 8192, 768, True, bf16),
     (28672, 8192, 1024, False, bf16), (14336, 4096, 520, True, fp16),
     (14336, 4096, 640, False, fp16), (18944, 3584, 520, True, fp16),
     (18944, 3584, 576, False, fp16), (28672, 8192, 385, True, fp16),
     (28672, 8192, 448, False, fp16), (8192, 2048, 385, True, fp16),
     (8192, 2048, 448, False, fp16), (14336, 4096, 1025, True, bf16),
     (14336, 4096, 1088, False, bf16), (28672, 8192, 800, True, bf16),
     (28672, 8192, 900, False, bf16), (28672, 8192, 900, False, fp16),
     (28672, 8192, 831, True, fp16),
     (8192, 2048, 1025, True, bf16)],
)  # fmt: skip
def test_gpu_unfused_route(monkeypatch, n, k, m, unfused, dtype):
    """The committed ``unfused`` entries: on Llama-3-8B 200, 300 and 520 tokens run two
    cuBLAS products and the fused elementwise kernel, 256 (a bucket's top) and 608 the fused
    projection; on Qwen2.5-7B in bf16 300 and 432 tokens the route, 301 and 448 the fused
    projection; on Llama-3-70B 120 and 768 tokens the route, 121 the decode kernel's wide
    tile and 1024 the fused projection. fp16 past 384 (session 43): 8B's 520, Qwen's 520 and
    70B's 385 the route, 8B's 640, Qwen's 576 and 70B's 448 the fused projection; 1B's 385
    the route, its 448 the fused projection. Past 768 (session 44): 8B's 1025 (bf16) the
    route and 1088 the fused projection, 70B's 800 the route and 900 the merged forward of the
    1024 bucket's entry (fp16 since session 45, which routes 831), 1B's 1025 (bf16) the route.
    All within the rule."""
    if "H200" not in torch.cuda.get_device_name():
        pytest.skip("the committed unfused entries are the H200's")
    calls = []
    real = L.E.forward
    monkeypatch.setattr(L.E, "forward", lambda *a: calls.append(1) or real(*a))
    x, wg, wu, bg, bu = make_inputs((m,), n, k, dtype, "cuda")
    out = flash_swiglu.swiglu_linear(x, wg, wu, bg, bu)
    assert calls == ([1] if unfused else [])
    ref = reference.swiglu_linear_reference(*(t.double() for t in (x, wg, wu, bg, bu)))
    assert_within_rule(f"M={m}", out, torch_linear(x, wg, wu, bg, bu, "silu"), ref)


@pytest.mark.gpu
def test_gpu_split_k_decode_deterministic_and_per_stream():
    x, wg, wu, bg, bu = make_inputs((3,), 14336, 4096, torch.bfloat16, "cuda")
    cfg = dict(BLOCK_N=64, BLOCK_K=128, num_warps=4, num_stages=3, SPLIT_K=8)
    run = lambda: L._forward_triton(x, wg, wu, bg, bu, "silu", 1.702, 7.0, "decode", cfg)
    first = run()
    assert all(torch.equal(run(), first) for _ in range(20))
    mine = L.split_k_counters(x.device, 1)
    assert L.split_k_counters(torch.device("cuda"), 1) is mine  # "cuda" means this device
    other = torch.cuda.Stream()
    with torch.cuda.stream(other):
        on_other = run()
        theirs = L.split_k_counters(x.device, 1)
    torch.cuda.synchronize()
    assert theirs.data_ptr() != mine.data_ptr()
    assert torch.equal(on_other, first)
    assert not mine.any() and not theirs.any()


def _committed_configs():
    for path, cfg in L.BUILTIN.items():
        yield path, "builtin", cfg
    for table in sorted(L.CONFIG_DIR.glob("*_linear.json")):
        data = json.loads(table.read_text())
        for path in L.BUILTIN:
            for key, cfg in data.get(path, {}).items():
                if "KERNEL" not in cfg:  # {"KERNEL": "decode"}: not a configuration
                    yield path, f"{table.name}:{key}", cfg


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize(("path", "source", "cfg"), list(_committed_configs()))
def test_gpu_every_committed_config(path, source, cfg, dtype):
    m = {"decode": 33, "gemv": 3}.get(path, 1000)
    x, wg, wu, bg, bu = make_inputs((m,), 1000, 1024, dtype, "cuda")
    cfg = {k: v for k, v in cfg.items() if k in L._CONFIG_KEYS + L._OPTIONAL_KEYS}
    cfg["BLOCK_K"] = max(16, cfg["BLOCK_K"] * 2 // dtype.itemsize)
    with _tf32():
        out = L._forward_triton(x, wg, wu, bg, bu, "silu", 1.702, 7.0, path, cfg)
        eager = torch_linear(x, wg, wu, bg, bu, "silu")
    ref = reference.swiglu_linear_reference(*(t.double() for t in (x, wg, wu, bg, bu)))
    # fp32 runs TF32 products (10-bit mantissa) in both, so eager's error sets the bound too.
    assert_within_rule(f"{path} {source}", out, eager, ref)


def test_retune_one_token_and_the_decode_marker(tmp_path, monkeypatch):
    """``retune`` at one token (through the interpreter): a decode entry and, from the
    matrix-vector candidates, a ``gemv`` entry or ``{"KERNEL": "decode"}``, whichever timed
    faster; and ``gemv_config`` sends a shape with that marker to the decode kernel."""
    if not torch.cuda.is_available():
        cands = {
            "decode": [dict(BLOCK_N=32, BLOCK_K=32, num_warps=4, num_stages=1)],
            "gemv": [dict(BLOCK_N=4, BLOCK_K=32, num_warps=4, num_stages=1, UNROLL=2)],
        }
        table = L.retune([(1, 40, 64)], dtype=torch.float32, candidates=cands, device="cpu")
        key = "m1_n40_k64"
        assert {k: v for k, v in table["decode"][key].items() if k != "source"} == cands["decode"][
            0
        ]
        gemv = table["gemv"][key]
        if gemv.get("KERNEL") != "decode":
            assert {k: v for k, v in gemv.items() if k != "source"} == cands["gemv"][0]
    marked = {"gemv": {"m1_n40_k64": {"KERNEL": "decode", "source": "test"}}}
    with launch_table(monkeypatch, tmp_path, marked, L.gemv_config):
        assert L.gemv_config(1, 40, 64, torch.bfloat16, "Some GPU") is None
        assert L.gemv_config(1, 48, 64, torch.bfloat16, "Some GPU") == L.BUILTIN["gemv"]


@pytest.mark.gpu
def test_gpu_retune_times_the_matrix_vector_kernel(tmp_path):
    """``retune`` at one token: a decode entry, and a ``gemv`` entry that is the candidate
    when it measured faster, else ``{"KERNEL": "decode"}`` (which ``gemv_config`` obeys)."""
    import re

    cands = {"decode": L.CANDIDATES["decode"][:1], "gemv": L.CANDIDATES["gemv"][:1]}
    out = tmp_path / "table.json"
    table = L.retune([(1, 1024, 512)], candidates=cands, out_path=out)
    assert json.loads(out.read_text()) == table
    key = "m1_n1024_k512"
    us = lambda text: [float(v) for v in re.findall(r"([0-9.]+) us", text)]
    decode_us = us(table["decode"][key]["source"])[0]
    gemv = table["gemv"][key]
    if gemv.get("KERNEL") == "decode":
        assert us(gemv["source"]) == [decode_us, us(gemv["source"])[1]]
        assert us(gemv["source"])[1] >= decode_us
    else:
        assert {k: v for k, v in gemv.items() if k != "source"} == cands["gemv"][0]
        assert us(gemv["source"])[0] < decode_us


@pytest.mark.gpu
def test_gpu_past_2_31_output_elements():
    m, n, k = 150_000, 14336, 256  # M * N = 2.15e9 > 2^31
    x, wg, wu, _, _ = make_inputs((m,), n, k, torch.bfloat16, "cuda", bias=False)
    for path in ("tma", "pointer"):
        out = L._forward_triton(x, wg, wu, None, None, "silu", 1.702, 7.0, path)
        tail = slice(m - 64, m)
        ref = reference.swiglu_linear_reference(x[tail].double(), wg.double(), wu.double())
        eager = torch_linear(x[tail], wg, wu, None, None, "silu")
        assert_within_rule(path, out[tail], eager, ref)
        del out


@pytest.mark.gpu
def test_gpu_torch_compile():
    x, wg, wu, bg, bu = make_inputs((4, 256), 1024, 512, torch.bfloat16, "cuda")
    fn = torch.compile(lambda *a: flash_swiglu.swiglu_linear(*a, activation="gelu"), fullgraph=True)
    torch.testing.assert_close(
        fn(x, wg, wu, bg, bu), flash_swiglu.swiglu_linear(x, wg, wu, bg, bu, activation="gelu")
    )

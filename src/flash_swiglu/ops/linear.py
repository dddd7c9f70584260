"""The fused gate/up projection ``act(x @ w_gate^T + b_gate) * (x @ w_up^T + b_up)``.

Two custom ops, each opaque to ``torch.compile`` (fake implementations, registered autograd):

    flash_swiglu::linear_fwd(x, w_gate, w_up, b_gate?, b_up?)   -> out [..., N]
    flash_swiglu::linear_packed_fwd(x, w, b?)                   -> out [..., N]
                                    w = [2N, K], layout "concat" or "interleaved"

Forward paths (``choose_path``): M <= 64 tokens -> the decode kernel (swapped operands),
or for one token the matrix-vector kernel (``gemv_config``: unless the launch table sends
the shape to the decode kernel); TMA-compatible operands
on sm_90+ -> the persistent TMA kernel (or, for 65-128 tokens where the launch table has a
decode entry for the shape, ``wide_decode_config``, the decode kernel's TMA variant with one
token tile); anything else -> the masked pointer kernel. Where the launch table's
``unfused`` section lists the token count for the shape (``unfused_route``: counts just past
a multiple of 128, where the kernels' power-of-two token tiles compute up to twice the rows
and cuBLAS's tile shapes do not), two cuBLAS products and the fused elementwise kernel
instead: the pre-activation then goes through memory. CPU
tensors run the same kernels under ``TRITON_INTERPRET=1`` and otherwise
``reference.swiglu_linear_reference``.

Backward (``ops.train``): the gate and up pre-activations are recomputed inside the kernel
that turns ``dout`` into ``dgate, dup`` (the activation's derivative in its epilogue, so no
elementwise pass over ``[M, N]`` tensors), then cuBLAS forms ``dx`` and the weight
gradients, over slices of the N columns. Only ``x`` and the weights are saved. Two more
custom ops carry it: ``flash_swiglu::linear_bwd`` and ``flash_swiglu::linear_packed_bwd``.

Launch configurations come from ``configs/h200_linear.json`` (on H100/H200) keyed by path,
token bucket and (N, K); production calls never autotune. ``retune(...)`` times candidates on
the current GPU and writes a new table; ``FLASH_SWIGLU_LINEAR_CONFIGS=<file>`` loads one.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from flash_swiglu import reference
from flash_swiglu.ops import _common as C
from flash_swiglu.ops import _launch
from flash_swiglu.ops import elementwise as E
from flash_swiglu.ops._common import on_tensor_device, row_groups

# ----------------------------------------------------------------------------------------
# Launch configurations
# ----------------------------------------------------------------------------------------

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
CONFIG_ENV = "FLASH_SWIGLU_LINEAR_CONFIGS"
# Device-name fragments -> table. H100 shares the H200's SM count and shared memory; its
# entries are a starting point there, not a measurement.
TABLES = {"H200": "h200_linear.json", "H100": "h200_linear.json"}

DECODE_MAX_TOKENS = 64
# Up to this many tokens a launch-table ``decode`` entry for the exact shape and token bucket
# (``m128_n{N}_k{K}``, with ``TMA``) takes a call from the TMA path: the decode kernel's TMA
# variant with one token tile of all the tokens, so each weight tile is read once
# (``wide_decode_config``). The pointer-load decode kernel keeps tiles of at most
# ``DECODE_MAX_TOKENS`` tokens.
WIDE_DECODE_MAX_TOKENS = 128
# A TMA box of x that runs past the last token row cost the TMA kernels up to 0.24 us per
# such load an SM (session 12, explore_session12.py pad, H200: Llama-3-70B at 65 tokens
# 371 against 254 us, Llama-3-8B at 300 tokens 184 against 139). The kernels end their last
# token tile at row M (``kernels.linear._tile_start``), which needs at least one tile of
# rows: x with fewer rows than a tile is read from a zero-padded copy of one tile
# (``_padded_rows``; False: off). Session 12 padded every partial last tile instead, a copy
# of about 2 us a call (1B at 200 tokens, call 2); it now remains below one tile only (for
# example 65-127 tokens on 128-row tiles). The moved tile recomputes rows of its predecessor
# where the padded tile computed zero rows: the same work without the copy (session 14,
# h200-session14-explore/call1: the same bits, and faster where the copy was made).
PAD_TMA_ROWS = True
# Tokens the matrix-vector kernel takes: one (each token streams the weights again there;
# at 2 tokens it was 1.2-1.4x slower than the decode kernel, h200-session9-explore/call2).
GEMV_MAX_TOKENS = 1
MAX_TOKEN_BUCKET = 8192

# Where a table has no entry. Not measured (but "gemv", the H200's one-token default): sized
# to fit the ~99 KB of shared memory of the smallest CUDA GPUs Triton supports, so the
# pointer and decode paths run everywhere.
BUILTIN = {
    "tma": dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, GROUP_M=16, num_warps=8, num_stages=3),
    "pointer": dict(BLOCK_M=64, BLOCK_N=64, BLOCK_K=64, GROUP_M=8, num_warps=4, num_stages=3),
    "decode": dict(BLOCK_N=64, BLOCK_K=128, num_warps=4, num_stages=2),
    "gemv": dict(BLOCK_N=1, BLOCK_K=2048, num_warps=8, num_stages=1, UNROLL=1, STATIC_K=True),
}
# Under the interpreter: one config per path, blocks wide enough to keep it quick.
INTERPRET = {
    "tma": dict(BLOCK_M=32, BLOCK_N=32, BLOCK_K=32, GROUP_M=2, num_warps=4, num_stages=1),
    "pointer": dict(BLOCK_M=32, BLOCK_N=32, BLOCK_K=32, GROUP_M=2, num_warps=4, num_stages=1),
    "decode": dict(BLOCK_N=32, BLOCK_K=32, num_warps=4, num_stages=1),
    "gemv": dict(BLOCK_N=4, BLOCK_K=32, num_warps=4, num_stages=1),
}
INTERPRET_NUM_SMS = 3  # several tiles per program, so the persistent loop is exercised
FP64 = dict(BLOCK_M=32, BLOCK_N=32, BLOCK_K=16, GROUP_M=4, num_warps=4, num_stages=2)
ENABLE_FP_FUSION = E.ENABLE_FP_FUSION
_CONFIG_KEYS = ("BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M", "num_warps", "num_stages")
# Optional table keys: programs resident per SM for the persistent TMA kernel (2: one
# program's epilogue overlaps the other's main loop; needs registers and shared memory for
# two), and a register cap per thread (Triton's ``maxnreg``) that makes room for them; for the
# decode kernel, programs per output tile (``SPLIT_K``; absent: ``auto_split_k`` decides)
# and its variant whose operands the tensor-memory accelerator fetches (``TMA``: 16-bit,
# aligned operands; others keep pointer loads); for the matrix-vector kernel, BLOCK_K steps
# whose loads are issued together (``UNROLL``), the weights' cache modifier (``W_CACHE``), K
# compiled into the kernel (``STATIC_K``: the loop's few trips unroll; one compile per K)
# and, as ``PROGRAMS_PER_SM``, persistent programs that each take several blocks of rows.
# ``K_ROTATE`` (decode, both variants): each program starts ``pid_n * K_ROTATE`` steps into
# its K loop and wraps, so concurrent programs read different column offsets (session 21;
# measured in session 22, where it won on 1B at 8 tokens and 8B at 8 / 32: those entries
# have it, benchmarks/results/h200-session22-explore/call1; 70B's 32-token entry had it from
# session 23 and 1B's one-token entry in sessions 23-24, until other tiles beat them).
# ``ROWS`` (decode, both variants): a program owns that many of its tile's BLOCK_N weight
# rows and the grid has cdiv(N, ROWS) columns, so N spreads over whole waves of the SMs
# (session 26: Qwen2.5-7B at 8 tokens, Llama-3-70B at 8 and 32,
# benchmarks/results/h200-session26-explore; with TMA a tile still reads all BLOCK_N rows).
_OPTIONAL_KEYS = (
    "PROGRAMS_PER_SM", "maxnreg", "SPLIT_K", "UNROLL", "W_CACHE", "STATIC_K", "TMA",
    "K_ROTATE", "ROWS",
)  # fmt: skip


def _config_of(entry: dict) -> dict:
    """A table entry's launch parameters (its ``source`` and markers dropped)."""
    return {key: entry[key] for key in _CONFIG_KEYS + _OPTIONAL_KEYS if key in entry}


def token_bucket(m: int) -> int:
    """``m`` rounded up to a power of two, capped at ``MAX_TOKEN_BUCKET``."""
    return min(1 << max(m - 1, 0).bit_length(), MAX_TOKEN_BUCKET)


@functools.lru_cache(maxsize=4096)
def table_keys(m: int, n: int, k: int, dtype: torch.dtype | None = None) -> tuple[str, ...]:
    """The keys a table is searched for, most specific first. With ``dtype``, each key is
    preceded by the same key for that dtype alone (``m1:float16``): an entry measured for
    one dtype comes before the shape's entry for all."""
    b = token_bucket(m)
    return dtype_keys((f"m{b}_n{n}_k{k}", f"m{b}", f"n{n}_k{k}", "default"), dtype)


def dtype_keys(keys: Iterable[str], dtype: torch.dtype | None) -> tuple[str, ...]:
    """``keys``, each preceded by its ``key:dtype`` form (none without ``dtype``)."""
    if dtype is None:
        return tuple(keys)
    name = str(dtype).removeprefix("torch.")
    return tuple(k for key in keys for k in (f"{key}:{name}", key))


def load_table(device_name: str) -> dict:
    """The launch table for a device (``{}`` where none applies), read once.
    ``load_table.cache_clear()`` forgets it, and the launch plans built from it."""
    return _read_table(device_name)


def _clear_tables() -> None:
    _read_table.cache_clear()
    clear_plans()


load_table.cache_clear = _clear_tables  # as for the functools.cache it was


@functools.cache
def _read_table(device_name: str) -> dict:
    path = os.environ.get(CONFIG_ENV) or None  # set but empty: the committed table
    if path is None:
        name = next((f for frag, f in TABLES.items() if frag in device_name), None)
        if name is None:
            return {}
        path = CONFIG_DIR / name
    with open(path) as f:
        return json.load(f)


@functools.cache
def _device_name(index: int) -> str:
    return torch.cuda.get_device_name(index)


@functools.cache
def _num_sms(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


@functools.cache
def capability(index: int) -> tuple[int, int]:
    """``torch.cuda.get_device_capability`` of a device index, once (it took 4.4 us a call on
    the H200 machine, and every launch asks)."""
    return torch.cuda.get_device_capability(index)


PDL_ENV = "FLASH_SWIGLU_PDL"


def use_pdl(index: int, interp: bool) -> bool:
    """Whether the decode kernels (M <= ``WIDE_DECODE_MAX_TOKENS``: ``decode``,
    ``decode_tma``, ``gemv``) launch as programmatic dependent launches: on sm_90 and later,
    compiled (not the interpreter), unless ``FLASH_SWIGLU_PDL=0``. Such a launch may start
    while the kernel before it in the stream drains, and waits for it before its first access
    to memory (``kernels.linear._pdl_wait``), so what it hides is the launch and the
    programs' start (part of a decode call's few microseconds), never a data dependency. It
    holds under CUDA graph capture (the dependency becomes a programmatic edge)."""
    return not interp and os.environ.get(PDL_ENV) != "0" and capability(index)[0] >= 9


def _index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


@functools.lru_cache(maxsize=4096)
def launch_config(
    path: str, m: int, n: int, k: int, dtype: torch.dtype, device_name: str = ""
) -> dict:
    """The kernel parameters for one call (cached: this is host time on every launch)."""
    if device_name == "interpreter":
        return dict(INTERPRET[path])
    if dtype == torch.float64:
        return dict(FP64)
    entries = load_table(device_name).get(path, {})
    keys = table_keys(m, n, k, dtype)
    cfg = next((entries[key] for key in keys if key in entries), BUILTIN[path])
    cfg = _config_of(cfg)
    # Table BLOCK_K is for 2-byte types; wider types halve it so a stage keeps its bytes.
    cfg["BLOCK_K"] = max(16, cfg["BLOCK_K"] * 2 // dtype.itemsize)
    return cfg


# Bytes of K per step where the integer arguments are not multiples of 16 (K or N not a
# multiple of 16, odd strides): Triton then cannot prove contiguity, every element gets its
# own 64-bit address, and wider steps spilled in the sm_90 compile gate (pointer kernel:
# bf16 BLOCK_K=64 and fp32 BLOCK_K=32 spilled at 4 warps; decode: bf16 BLOCK_K=128 did).
UNALIGNED_K_BYTES = {"pointer": 64, "decode": 128, "gemv": 256, "tma": 1 << 30}


@functools.lru_cache(maxsize=4096)
def gemv_config(m: int, n: int, k: int, dtype: torch.dtype, device_name: str = "") -> dict | None:
    """The matrix-vector kernel's parameters for ``m`` tokens (a token bucket), or None where
    the decode kernel runs instead: more than ``GEMV_MAX_TOKENS``, float64, or a launch-table
    entry ``{"KERNEL": "decode"}`` for the shape (where the decode kernel measured faster).
    The configuration: the table's ``gemv`` entry for the shape (``m1_n{N}_k{K}``), else its
    ``m1`` entry, else (no entry, no table: other GPUs) the built-in one; an entry for the
    dtype alone (``m1:float16``) before each (``table_keys``)."""
    if m > GEMV_MAX_TOKENS or dtype == torch.float64:
        return None
    if device_name == "interpreter":
        cfg = INTERPRET["gemv"]
    else:
        entries = load_table(device_name).get("gemv", {})
        keys = dtype_keys((f"m{m}_n{n}_k{k}", f"m{m}"), dtype)
        cfg = next((entries[key] for key in keys if key in entries), BUILTIN["gemv"])
    if cfg.get("KERNEL") == "decode":
        return None
    cfg = _config_of(cfg)
    cfg["BLOCK_K"] = max(16, cfg["BLOCK_K"] * 2 // dtype.itemsize)  # the same bytes per step
    return cfg


def adjust_config(path: str, cfg: dict, dtype: torch.dtype, aligned: bool, precision: str):
    """``cfg`` adapted to what the table cannot know: BLOCK_K capped for unaligned launches,
    8 warps for IEEE fp32 products in the pointer kernel (FMA, not MMA: two 64x64 fp32
    accumulators at 4 warps spilled in the compile gate once unaligned), at most 3 stages
    (and 8 warps for 128-row tiles; 2 stages for narrower tiles at fewer than 8 warps that
    store only ``ROWS`` of their rows) for unaligned or fp32 decode launches, and half-width
    TMA tiles for fp32's three-TF32 products."""
    cfg = dict(cfg)
    if not aligned:
        cfg["BLOCK_K"] = min(cfg["BLOCK_K"], max(16, UNALIGNED_K_BYTES[path] // dtype.itemsize))
    if precision == "ieee" and path == "pointer":
        cfg["num_warps"] = max(cfg["num_warps"], 8)
    if path == "decode" and (not aligned or dtype == torch.float32):
        # More live registers (a 64-bit address per element when unaligned, fp32 operands):
        # 4-stage 64-row tiles and 128-row tiles at 4 warps spilled in the sm_90 compile gate
        # (fp32 IEEE, unaligned 16-bit); 3 stages, and 8 warps for 128 rows, do not.
        cfg["num_stages"] = min(cfg["num_stages"], 3)
        if cfg["BLOCK_N"] >= 128:
            cfg["num_warps"] = max(cfg["num_warps"], 8)
        elif 0 < cfg.get("ROWS", 0) < cfg["BLOCK_N"] and cfg["num_warps"] < 8:
            # The row mask's registers: a 64-row fp32 IEEE tile with ROWS 48, 4 warps and 3
            # stages spilled (unaligned, with biases; Triton 3.9); 2 stages did not.
            cfg["num_stages"] = min(cfg["num_stages"], 2)
    if precision == "tf32x3" and path == "tma":
        # Three products per step: two 128x128 accumulators then spill (sm_90 compile gate).
        cfg["BLOCK_N"] = min(cfg["BLOCK_N"], 64)
    if dtype.itemsize > 2:
        # Two resident programs and their register cap are measured for 16-bit types only
        # (fp32 stages take twice the shared memory).
        cfg.pop("PROGRAMS_PER_SM", None)
        cfg.pop("maxnreg", None)
    return cfg


def input_precision(dtype: torch.dtype) -> str:
    """fp32 products follow ``torch.get_float32_matmul_precision()``, as ``torch.mm`` does."""
    if dtype == torch.float32 and torch.get_float32_matmul_precision() != "highest":
        # Three TF32 products (hi*hi + hi*lo + lo*hi): Triton's single TF32 product truncates
        # its fp32 inputs, a bias that gave 4x eager TF32's error on the H200 (K = 1024).
        return "tf32x3"
    if dtype in (torch.float32, torch.float64):
        return "ieee"
    return "tf32"  # 16-bit inputs: unused (Triton's default, so no extra variant)


# ----------------------------------------------------------------------------------------
# Path choice
# ----------------------------------------------------------------------------------------


def _tma_aligned(t: torch.Tensor) -> bool:
    """A 2-D operand a TMA descriptor can take: 16-byte aligned base and row stride."""
    es = t.element_size()
    return t.stride(-1) == 1 and t.data_ptr() % 16 == 0 and (t.stride(0) * es) % 16 == 0


def _tma_device(device: torch.device) -> bool:
    if device.type == "cpu":
        return True  # the interpreter emulates descriptors
    return capability(_index(device))[0] >= 9


def choose_path(x2: torch.Tensor | None, wg: torch.Tensor, wu: torch.Tensor, m: int) -> str:
    """``"decode"``, ``"tma"`` or ``"pointer"`` for ``m`` tokens. ``x2`` is x as one 2-D
    view, or None when its rows do not form one strided group (a TMA launch copies it)."""
    n, k = wg.shape
    if wg.dtype == torch.float64:
        return "pointer"
    if m <= DECODE_MAX_TOKENS:
        return "decode"
    if input_precision(wg.dtype) == "ieee":
        # IEEE fp32 products run on FMA units, not wgmma: TMA buys nothing, and the TMA
        # config's two 128x128 accumulators spill there (sm_90 compile gate).
        return "pointer"
    if (
        k > 0
        and _tma_device(wg.device)
        and (n * wg.element_size()) % 16 == 0  # the output's row stride
        and (k * wg.element_size()) % 16 == 0  # x's row stride once made contiguous
        and (x2 is None or _tma_aligned(x2))
        and _tma_aligned(wg)
        and _tma_aligned(wu)
    ):
        return "tma"
    return "pointer"


# ----------------------------------------------------------------------------------------
# Triton launchers
# ----------------------------------------------------------------------------------------


def _x_rows(x: torch.Tensor) -> tuple[torch.Tensor, int, int, int]:
    """``(x, inner_rows, stride_outer, stride_inner)``: x's rows as at most two strided
    groups, read in place; a view with more groups is copied once."""
    k = x.shape[-1]
    if x.stride(-1) != 1:
        x = x.contiguous()
    groups = row_groups([x])
    if len(groups) > 2:
        x = x.reshape(x.shape[:-1].numel(), k).contiguous()  # not -1: K may be 0
        groups = [(x.shape[0], [k])]
    if not groups:
        groups = [(1, [k])]
    if len(groups) == 1:
        groups = [(1, [0]), groups[0]]
    (_, [s_outer]), (n_inner, [s_inner]) = groups
    return x, n_inner, s_outer, s_inner


# ----------------------------------------------------------------------------------------
# Launch plans: the host time of a call the launcher has seen
# ----------------------------------------------------------------------------------------

PLAN_ENV = "FLASH_SWIGLU_PLAN_CACHE"
MAX_PLANS = 1024
_PLANS: dict = {}
PLAN_CACHES: list[dict] = [_PLANS]  # every plan cache of the library (``ops.train``'s too)


def _plan_key(x, wg, wu, bg, bu, activation, alpha, limit) -> tuple | None:
    """What ``_forward_triton``'s choices for a call depend on: each tensor's shape, strides,
    dtype, device and 16-byte alignment (the launch keys' and the path choice's), the
    activation's parameters, the module settings that tests and users change (the token
    limits, ``PAD_TMA_ROWS``), the table readers in place (``load_table`` here and in
    ``ops.train``, whose reader the Gluon forward's entries come from: a test or an
    exploration that puts in its own gets plans of its own), ``FLASH_SWIGLU_GLUON``,
    ``FLASH_SWIGLU_PDL`` and fp32's matmul precision. None without K, or with
    ``FLASH_SWIGLU_PLAN_CACHE=0``. The launch tables are read once (``load_table``), and
    ``load_table.cache_clear()`` drops the plans."""
    from flash_swiglu.ops import train as T

    k = x.shape[-1]
    if not k or os.environ.get(PLAN_ENV) == "0":
        return None
    bias = tuple(
        None if b is None else (b.shape, b.stride(), b.dtype, b.device, b.data_ptr() % 16 == 0)
        for b in (bg, bu)
    )
    return (
        x.shape, x.stride(), x.dtype, x.device, x.data_ptr() % 16 == 0,
        wg.shape, wg.stride(), wg.dtype, wg.device, wg.data_ptr() % 16 == 0,
        wu.shape, wu.stride(), wu.dtype, wu.device, wu.data_ptr() % 16 == 0,
        bias, activation, alpha, limit,
        DECODE_MAX_TOKENS, WIDE_DECODE_MAX_TOKENS, GEMV_MAX_TOKENS, MAX_TOKEN_BUCKET,
        PAD_TMA_ROWS, INTERPRET_NUM_SMS, ENABLE_FP_FUSION, load_table, T.load_table,
        os.environ.get(T.GLUON_ENV), os.environ.get(PDL_ENV),
        torch.get_float32_matmul_precision() if x.dtype == torch.float32 else None,
    )  # fmt: skip


def clear_plans() -> None:
    """Forget every launch plan, the training plans of ``ops.train`` too (tests;
    ``load_table.cache_clear()`` does it too)."""
    for plans in PLAN_CACHES:
        plans.clear()


def planned(x, wg, wu, bg, bu, activation, alpha, limit) -> _Plan | None:
    """The plan an earlier call with this ``_plan_key`` left, or None (``mlp.infer``)."""
    key = _plan_key(x, wg, wu, bg, bu, activation, alpha, limit)
    return _PLANS.get(key) if key is not None else None


class _Plan:
    """One launch with everything but its tensors decided: the kernel, grid, constexprs and
    integer arguments (or, for the unfused route, that route). A call allocates the output
    (and a split-K launch's partial sums and counters, a TMA launch's descriptors) and
    launches through ``_launch.Bound`` (the Gluon forward through its kept
    ``ForwardLaunch``). ``_forward_triton`` builds it and runs its first call too, so a call
    served by a plan runs what the full launcher would.

    Kinds, by the arguments' order: ``"gemv"`` and ``"ptr"`` (the matrix-vector and the
    masked pointer kernel), ``"decode"``, ``"decode_tma"``, ``"tma"`` (the persistent TMA
    kernel), ``"ws"`` (the Gluon forward) and ``"unfused"`` (two cuBLAS products and the
    fused elementwise kernel)."""

    __slots__ = ("acc", "act", "bound", "device", "dtype", "ints", "kept", "kind", "mnk",
                 "parts", "shape", "tiles", "tma_blocks")  # fmt: skip

    def __init__(self, x, m: int, n: int, k: int, ints: tuple, kept: bool) -> None:
        """``ints``: the pointer kernels' arguments after ``m, n, k`` (x's row groups, the
        weights' and biases' row strides, the output's); the decode kernel's TMA variant
        takes its last three, the TMA kernel the biases' strides. ``kept``: the plan will
        be kept (``_keep``), so its launch binds the compiled kernel for later calls; a plan
        for this call alone launches as ``_launch.launch`` does."""
        self.shape, self.dtype, self.device = (*x.shape[:-1], n), x.dtype, x.device
        self.mnk, self.ints, self.kept = (m, n, k), ints, kept
        self.tiles = self.parts = 0
        self.acc = self.act = self.tma_blocks = self.bound = self.kind = None

    def split(self, tiles: int, parts: int, acc: torch.dtype) -> None:
        """A split-K launch: ``tiles`` arrival counters and ``parts`` partial sums a call."""
        self.tiles, self.parts, self.acc = tiles, parts, acc

    def bind(self, kind: str, kernel, grid: tuple[int, ...], kwargs: dict) -> None:
        """A Triton kernel's launch of ``kind`` (the class doc)."""
        self.kind = kind
        self.bound = (_launch.Bound(kernel, grid, kwargs) if self.kept
                      else _launch.Launch(kernel, grid, kwargs).run)  # fmt: skip

    def bind_ws(self, launch, rows: int) -> None:
        """The Gluon forward's ``ForwardLaunch``; x's TMA boxes have ``rows`` rows."""
        self.kind, self.bound, self.tma_blocks = "ws", launch.keep() if self.kept else launch, rows

    def bind_unfused(self, activation: str, alpha: float, limit: float) -> None:
        self.kind, self.act = "unfused", (activation, alpha, limit)

    def __call__(self, x, wg, wu, bg, bu, out=None) -> torch.Tensor:
        kind = self.kind
        if kind == "unfused":
            return E.forward(F.linear(x, wg, bg), F.linear(x, wu, bu), *self.act)
        if out is None:
            out = torch.empty(self.shape, dtype=self.dtype, device=self.device)
        b0 = bg if bg is not None else out  # without a bias any pointer will do: never read
        b1 = bu if bu is not None else out
        m, n, k = self.mnk
        if kind == "ws":
            self.bound(_tma_rows(x, m, k, self.tma_blocks), wg, wu, bg, bu, out.view(m, n))
            return out
        if kind == "tma":
            (bm, bk), (bn, _) = self.tma_blocks
            x2 = _tma_rows(x, m, k, bm)
            descs = _host_descriptors(
                (x2, [bm, bk]), (wg, [bn, bk]), (wu, [bn, bk]), (out.view(m, n), [bm, bn])
            )
            self.bound(*descs, b0, b1, *self.ints, m, n, k)
            return out
        if kind in ("gemv", "ptr"):
            self.bound(x, wg, wu, b0, b1, out, m, n, k, *self.ints)
            return out
        parts = counts = out  # never read unsplit
        if self.tiles:
            parts = torch.empty(self.parts, dtype=self.acc, device=self.device)
            counts = split_k_counters(self.device, self.tiles)
        if kind == "decode_tma":
            rows, blocks = self.tma_blocks
            xt = _tma_rows(x, m, k, rows[0])
            descs = _host_descriptors((xt, rows), (wg, blocks), (wu, blocks))
            self.bound(*descs, b0, b1, out, parts, counts, m, n, k, *self.ints[5:])
        else:
            self.bound(x, wg, wu, b0, b1, out, parts, counts, m, n, k, *self.ints)
        return out


def _tma_rows(x: torch.Tensor, m: int, k: int, rows: int) -> torch.Tensor:
    """x as the ``[m, k]`` operand of a TMA launch whose boxes of x have ``rows`` rows
    (``_padded_rows`` where ``PAD_TMA_ROWS``)."""
    x2 = x.view(m, k)
    return _padded_rows(x2, rows) if PAD_TMA_ROWS else x2


def _one_view(x: torch.Tensor, x2: torch.Tensor | None, m: int, k: int) -> torch.Tensor:
    """x for a TMA launch: itself where its rows form one strided group (``x2``, its 2-D
    view, not None), else a contiguous copy (made once; such a call keeps no plan)."""
    return x if x2 is not None else x.reshape(m, k).contiguous()


def _keep(plan_key: tuple | None, plan: _Plan) -> None:
    """Keep ``plan`` under ``plan_key`` where it was made to be kept (``_Plan.kept``, which a
    call without a key never is). Bounded: a server's many shapes start over."""
    if plan.kept:
        if len(_PLANS) >= MAX_PLANS:
            _PLANS.clear()
        _PLANS[plan_key] = plan


def _forward_triton(x, wg, wu, bg, bu, activation, alpha, limit, path=None, config=None):
    """Launch one kernel; ``path`` and ``config`` override the choice (tests, ``retune``).
    A call that copied no operand leaves a ``_Plan`` in ``_PLANS`` that later calls with the
    same ``_plan_key`` run instead of this function's body."""
    auto = path is None and config is None
    plan_key = _plan_key(x, wg, wu, bg, bu, activation, alpha, limit) if auto else None
    if plan_key is not None:
        plan = _PLANS.get(plan_key)
        if plan is not None:
            return plan(x, wg, wu, bg, bu)
    from flash_swiglu.kernels import interpreting
    from flash_swiglu.kernels.linear import (
        _linear_decode_kernel,
        _linear_decode_tma_kernel,
        _linear_gemv_kernel,
        _linear_ptr_kernel,
        _linear_tma_kernel,
    )

    wg_in, wu_in = wg, wu
    k, n = x.shape[-1], wg.shape[0]
    out = torch.empty((*x.shape[:-1], n), dtype=x.dtype, device=x.device)
    if out.numel() == 0:
        return out
    if k == 0:  # no product: act(b_gate) * b_up
        return reference.swiglu_linear_reference(x, wg, wu, bg, bu, activation, alpha, limit)
    m = out.numel() // n
    wg = wg if wg.stride(-1) == 1 else wg.contiguous()
    wu = wu if wu.stride(-1) == 1 else wu.contiguous()
    one_group = x.stride(-1) == 1 and len(row_groups([x])) <= 1
    x2 = x.view(m, k) if one_group else None
    path = path or choose_path(x2, wg, wu, m)
    interp = interpreting()
    dev = x.device.index or 0
    # A plan is kept where the call copied nothing (later calls must not copy either).
    if wg is not wg_in or wu is not wu_in:
        plan_key = None
    unfused = path == "tma" and config is None and not interp
    if unfused and unfused_route(m, n, k, x.dtype, _device_name(dev)):
        del out
        plan = _Plan(x, m, n, k, (), plan_key is not None)
        plan.bind_unfused(activation, alpha, limit)
        _keep(plan_key, plan)
        return plan(x, wg, wu, bg, bu)
    if path == "tma" and config is None and m <= WIDE_DECODE_MAX_TOKENS and not interp:
        wide = wide_decode_config(token_bucket(m), n, k, x.dtype, _device_name(dev))
        if wide is not None and _decode_tma_ok(x2, wg, wu):
            path, config = "decode", wide
    ws = None
    if path == "tma" and config is None:
        ws = _ws_launch(x, wg, bg, bu, m, activation, alpha, limit)
    if ws is not None:
        plan = _Plan(x, m, n, k, (), plan_key is not None and x2 is not None)
        plan.bind_ws(*ws)
        _keep(plan_key, plan)
        return plan(_one_view(x, x2, m, k), wg, wu, bg, bu, out)
    if config is None:
        name = "interpreter" if interp else _device_name(dev)
        if path == "decode":
            config = gemv_config(token_bucket(m), n, k, x.dtype, name)
            path = "decode" if config is None else "gemv"
        if config is None:
            config = launch_config(path, token_bucket(m), n, k, x.dtype, name)
    # What Triton's specialisation sees: sizes, strides and addresses divisible by 16.
    ints = [k, n, wg.stride(0), wu.stride(0), *x.stride()[:-1]]
    addrs = [t.data_ptr() for t in (x, wg, wu)]
    aligned = path == "tma" or not any(v % 16 for v in ints + addrs)
    precision = input_precision(x.dtype)
    cfg = adjust_config(path, config, x.dtype, aligned, precision)
    consts = dict(
        HAS_BG=bg is not None,
        HAS_BU=bu is not None,
        ACTIVATION=activation,
        ALPHA=alpha,
        LIMIT=limit,
        INPUT_PRECISION=precision,
        num_warps=cfg.pop("num_warps"),
        num_stages=cfg.pop("num_stages"),
        enable_fp_fusion=ENABLE_FP_FUSION,
    )
    programs_per_sm = cfg.pop("PROGRAMS_PER_SM", None)
    maxnreg = cfg.pop("maxnreg", None)
    if maxnreg and not interp:
        consts["maxnreg"] = maxnreg
    bias_strides = [b.stride(0) if b is not None else 0 for b in (bg, bu)]
    if path == "tma":
        bm, bn, bk = cfg["BLOCK_M"], cfg["BLOCK_N"], cfg["BLOCK_K"]
        num_sms = (INTERPRET_NUM_SMS if interp else _num_sms(dev)) * (programs_per_sm or 1)
        grid = (min(num_sms, triton_cdiv(m, bm) * triton_cdiv(n, bn)),)
        plan = _Plan(x, m, n, k, tuple(bias_strides), plan_key is not None and x2 is not None)
        plan.bind("tma", _linear_tma_kernel, grid, dict(consts, **cfg, NUM_SMS=grid[0]))
        plan.tma_blocks = ([bm, bk], [bn, bk])
        _keep(plan_key, plan)
        return plan(_one_view(x, x2, m, k), wg, wu, bg, bu, out)
    xr, inner_rows, s_outer, s_inner = _x_rows(x)
    ints = (inner_rows, s_outer, s_inner, wg.stride(0), wu.stride(0), *bias_strides, n)
    plan = _Plan(x, m, n, k, ints, plan_key is not None and xr is x)
    if path in ("gemv", "decode"):
        if use_pdl(dev, interp):
            consts.update(PDL=True, launch_pdl=True)
        if path == "gemv":
            bk, unroll = cfg["BLOCK_K"], cfg.get("UNROLL", 1)
            del consts["INPUT_PRECISION"]  # fp32 FMA products: nothing to choose
            blocks = triton_cdiv(n, cfg["BLOCK_N"])
            sms = INTERPRET_NUM_SMS if interp else _num_sms(dev)
            persistent = programs_per_sm * sms if programs_per_sm else blocks  # if the config says
            grid = (min(blocks, persistent), m)  # one token per program
            kw = dict(consts, BLOCK_N=cfg["BLOCK_N"], BLOCK_K=bk, UNROLL=unroll,
                EVEN_K=k % (unroll * bk) == 0, EVEN_N=n % cfg["BLOCK_N"] == 0,
                INDEX_64=needs_int64(xr, wg, wu, out, bg, bu), W_CACHE=cfg.get("W_CACHE", ""),
                K_STATIC=k if cfg.get("STATIC_K") else 0,  # compiled in: one kernel per K
            )  # fmt: skip
            plan.bind("gemv", _linear_gemv_kernel, grid, kw)
        else:
            tma = bool(cfg.get("TMA")) and _decode_tma_ok(x2, wg, wu)
            fast = aligned and x.dtype.itemsize == 2
            block_t = decode_tile(m, cfg["BLOCK_N"], fast, tma, precision == "tf32x3")
            bn, bk = cfg["BLOCK_N"], cfg["BLOCK_K"]
            own = cfg.get("ROWS") or bn  # weight rows a program stores (ROWS: fewer than its tile)
            if not 0 < own <= bn:
                raise ValueError(
                    f"decode config: ROWS must be in 1..BLOCK_N ({bn}), or 0 for all of them; "
                    f"got {cfg['ROWS']}"
                )
            tiles, steps = triton_cdiv(n, own) * triton_cdiv(m, block_t), triton_cdiv(k, bk)
            split = cfg.get("SPLIT_K")
            if split is None:
                split = auto_split_k(tiles, steps, INTERPRET_NUM_SMS if interp else _num_sms(dev))
            split, consts["num_warps"] = decode_split_warps(
                block_t, bn, split, consts["num_warps"], fast, precision == "tf32x3"
            )
            split = max(1, min(split, steps))
            # Every slice of K the same number of BLOCK_K steps (the kernel's), none empty.
            split = triton_cdiv(steps, triton_cdiv(steps, split))
            if split > 1:
                acc = torch.float64 if x.dtype == torch.float64 else torch.float32  # to_compute
                plan.split(tiles, tiles * split * 2 * block_t * bn, acc)
            grid = (triton_cdiv(n, own), triton_cdiv(m, block_t), split)
            kw = dict(consts, BLOCK_N=bn, BLOCK_T=block_t, BLOCK_K=bk, SPLIT_K=split,
                      K_ROTATE=cfg.get("K_ROTATE", 0), ROWS=own if own < bn else 0)  # fmt: skip
            if tma:
                plan.tma_blocks = ([block_t, bk], [bn, bk])
                kw["INDEX_64"] = needs_int64(out, bg, bu)
                plan.bind("decode_tma", _linear_decode_tma_kernel, grid, kw)
            else:
                even_k = k % bk == 0 and steps % split == 0  # every program's K slice in range
                kw.update(EVEN_K=even_k, INDEX_64=needs_int64(xr, wg, wu, out, bg, bu))
                plan.bind("decode", _linear_decode_kernel, grid, kw)
    else:
        grid = (triton_cdiv(m, cfg["BLOCK_M"]) * triton_cdiv(n, cfg["BLOCK_N"]),)
        plan.bind("ptr", _linear_ptr_kernel, grid, dict(consts, **cfg))
    _keep(plan_key, plan)
    return plan(xr, wg, wu, bg, bu, out)


def decode_tile(m: int, block_n: int, fast: bool, tma: bool, tf32x3: bool = False) -> int:
    """The token tile (``BLOCK_T``) of a decode launch for ``m`` tokens: the next power of two
    from 16, at most ``WIDE_DECODE_MAX_TOKENS`` for the TMA variant and ``DECODE_MAX_TOKENS``
    for aligned 16-bit pointer loads (``fast``); otherwise (fp32, or K and N not multiples
    of 16: a 64-bit address per element) 2048 elements a tile with ``BLOCK_N`` weight rows
    (32 tokens on 64 rows, 16 on 128), and 16 tokens for fp32's three TF32 products
    (``tf32x3``, opt-in through ``torch.set_float32_matmul_precision``: 32-token tiles of 32
    or 128 rows spilled registers under Triton 3.9). See ``decode_split_warps``."""
    widest = WIDE_DECODE_MAX_TOKENS if tma else DECODE_MAX_TOKENS if fast else 32
    if not fast and not tma:
        widest = min(widest, 16 if tf32x3 else max(16, _SLOW_TILE // block_n))
    return min(max(16, 1 << max(m - 1, 0).bit_length()), widest)


# Register budgets of the decode kernel, in elements. Aligned 16-bit operands: the partial
# sums a split-K program's hand-over holds (BLOCK_T x BLOCK_N x SPLIT_K), at most
# _SPLIT_ELEMENTS at 4 warps and twice that at 8. Otherwise (a 64-bit address per element,
# or fp32 tiles): tiles of at most _SLOW_TILE elements, split while the partials stay within
# 2 * _SLOW_TILE, at 8 warps from _SLOW_TILE elements or any split.
_SPLIT_ELEMENTS = 8192
_SLOW_TILE = 2048


def decode_split_warps(
    block_t: int, block_n: int, split: int, num_warps: int, fast: bool, tf32x3: bool = False
) -> tuple[int, int]:
    """``(SPLIT_K, num_warps)`` of a decode launch within the register budgets above. From
    the sm_90 compile gate (Triton 3.6 and 3.9): beyond them the committed tiles spilled
    registers (64-token tiles at 4 warps unaligned or in fp32; 32 x 128 tiles at 8 warps
    unaligned or in fp32 under 3.9; split 4 of 64 x 64 tiles at 4 warps; split 8 of 32 x 64
    or 64 x 64 at 8; an fp32 split 4 of 32 x 64 at 8 under 3.9); within them none of the
    tiles of 16-128 rows and 16-64 tokens does. fp32's three TF32 products (``tf32x3``) run
    unsplit (under Triton 3.9 a split of 32 x 32 and 32 x 64 tiles spilled at 8 warps)."""
    tile = block_t * block_n
    if tf32x3:
        return 1, num_warps
    if fast:
        split = max(1, min(split, 2 * _SPLIT_ELEMENTS // tile))
        if tile * split > _SPLIT_ELEMENTS:
            num_warps = max(num_warps, 8)
    else:
        split = max(1, min(split, 2 * _SLOW_TILE // tile))
        if split > 1 or tile >= _SLOW_TILE:
            num_warps = max(num_warps, 8)
    return split, num_warps


@functools.lru_cache(maxsize=4096)
def wide_decode_config(m: int, n: int, k: int, dtype: torch.dtype, device_name: str = ""):
    """For a token bucket ``m`` above the decode path's (65 to ``WIDE_DECODE_MAX_TOKENS``
    tokens): the launch table's ``decode`` entry for exactly this bucket and shape (or its
    dtype's), where it asks for ``TMA``; else None (the TMA path runs)."""
    if m <= DECODE_MAX_TOKENS or m > WIDE_DECODE_MAX_TOKENS or dtype.itemsize != 2:
        return None
    entries = load_table(device_name).get("decode", {})
    keys = table_keys(m, n, k, dtype)[:2]  # m{bucket}_n{N}_k{K}, for the dtype, then for all
    entry = next((entries[key] for key in keys if key in entries), None)
    if entry is None or not entry.get("TMA"):
        return None
    return _config_of(entry)


@functools.lru_cache(maxsize=4096)
def unfused_route(m: int, n: int, k: int, dtype: torch.dtype, device_name: str = "") -> bool:
    """Whether ``m`` tokens of the shape ``[N, K]`` go to two cuBLAS products and the fused
    elementwise kernel: the launch table's ``unfused`` entry for ``n{N}_k{K}`` (or its dtype's,
    ``n{N}_k{K}:bfloat16``) lists ``m`` in one of its inclusive ``TOKENS`` ranges. 16-bit
    dtypes only: fp32's products follow ``input_precision``, which cuBLAS's do not."""
    if dtype.itemsize != 2:
        return False
    entries = load_table(device_name).get("unfused", {})
    key = next((key for key in dtype_keys([f"n{n}_k{k}"], dtype) if key in entries), None)
    if key is None:
        return False
    return any(lo <= m <= hi for lo, hi in entries[key]["TOKENS"])


def _padded_rows(x2: torch.Tensor, rows: int) -> torch.Tensor:
    """``x2 [M, K]`` itself if it has at least ``rows`` rows (the kernels' last token tile
    then ends at row M), else a copy with zero rows appended up to ``rows``: a TMA box of
    ``rows`` tokens then never runs past the tensor's end (``PAD_TMA_ROWS``). The kernels
    compute and store only the first M rows."""
    pad = rows - x2.shape[0]
    return F.pad(x2, (0, 0, 0, pad)) if pad > 0 else x2


def _host_descriptors(*operands: tuple[torch.Tensor, list[int]]) -> list:
    """Host TMA descriptors of 2-D row-major ``(tensor, block)`` pairs, after binding the
    tensors' CUDA context (encoding a descriptor needs it)."""
    from triton.tools.tensor_descriptor import TensorDescriptor

    C.bind_cuda_context(operands[0][0].device)
    return [TensorDescriptor(t, list(t.shape), [t.stride(0), 1], b) for t, b in operands]


def _decode_tma_ok(x2: torch.Tensor | None, wg: torch.Tensor, wu: torch.Tensor) -> bool:
    """Whether the decode kernel's TMA variant can take these operands: 16-bit (fp32 and fp64
    keep the pointer kernel), x one 2-D view, 16-byte aligned bases and row strides."""
    return (
        x2 is not None
        and x2.element_size() == 2
        and _tma_device(x2.device)
        and all(_tma_aligned(t) for t in (x2, wg, wu))
    )


def needs_int64(*tensors: torch.Tensor | None) -> bool:
    """Whether a kernel must compute element offsets into ``tensors`` in 64 bits: the largest
    offset over a tensor's sizes and strides reaches 2**30, half of int32's range, which
    leaves room for the masked lanes of a partial block past the last row or column."""
    for t in tensors:
        if t is None or (t.is_contiguous() and t.numel() <= 2**30):
            continue  # contiguous: the largest offset is numel - 1 (host time: the fast path)
        if sum((d - 1) * s for d, s in zip(t.shape, t.stride(), strict=True)) >= 2**30:
            return True
    return False


def auto_split_k(tiles: int, k_steps: int, num_sms: int) -> int:
    """Programs per decode tile where the launch configuration does not say: doubled (up to
    8) while the programs still fit in one wave over the SMs and each K slice keeps at least
    two ``BLOCK_K`` steps. 1 for every full model shape of the launch table (enough tiles
    already); 2-4 for tensor-parallel shards with few weight-row tiles."""
    split = 1
    while split < 8 and tiles * split * 2 <= num_sms and k_steps >= 4 * split:
        split *= 2
    return split


# Arrival counters of the split-K decode kernel, per (device, stream): each launch leaves the
# counters it used at zero, so launches in one stream's order can share them; two streams
# never do. Buffers are only ever replaced by larger ones, and the old ones are kept (a
# captured CUDA graph holds their address).
_COUNTERS: dict[tuple[str, int, int], torch.Tensor] = {}
_RETIRED: list[torch.Tensor] = []
_MIN_COUNTERS = 4096


def split_k_counters(device: torch.device, tiles: int) -> torch.Tensor:
    """Zeroed int32 counters, at least ``tiles`` of them, for one split-K decode launch on
    the current stream of ``device``.

    Under CUDA graph capture a stream without counters gets fresh ones whose zeroing is
    recorded in the graph (a memset node per launch): capture on the stream that ran the
    warm-up, or warm up on the capture stream, to share the eager counters instead. Two
    graphs captured on one stream share that stream's counters, so they must not be replayed
    concurrently (on two streams at once)."""
    if device.type == "cuda":
        index = _index(device)
        key = ("cuda", index, torch.cuda.current_stream(index).cuda_stream)
    else:
        key = (device.type, 0, 0)
    buf = _COUNTERS.get(key)
    if buf is not None and buf.numel() >= tiles:
        return buf
    fresh = torch.zeros(max(tiles, _MIN_COUNTERS), dtype=torch.int32, device=device)
    if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        return fresh  # zeroed inside the graph on every replay; not valid outside it
    if buf is not None:
        _RETIRED.append(buf)
    _COUNTERS[key] = fresh
    return fresh


def _ws_launch(x, wg, bg, bu, m, activation, alpha, limit) -> tuple | None:
    """``(ForwardLaunch, rows of x's TMA boxes)`` of the warp-specialized (Gluon) forward
    where the GPU's launch table has a ``ws`` entry for this call (keyed like the Triton
    paths' entries, from ``MIN_M`` rows; ``ops.train.ws_enabled``), else None."""
    from flash_swiglu.ops import train as T

    if not T.ws_enabled(x.dtype, x.device):
        return None
    n, k = wg.shape
    entries = load_table(_device_name(x.device.index or 0)).get("ws", {})
    ws = ws_projection_config(entries, m, n, k, x.dtype, activation)
    if ws is None:
        return None
    from flash_swiglu.kernels.ws_mlp import prepare_forward

    prepared = prepare_forward(
        m, n, k, x.device, has_bg=bg is not None, has_bu=bu is not None, store_gu=False,
        activation=activation, alpha=alpha, limit=limit, config=ws,
    )  # fmt: skip
    return prepared, ws["BLOCK_M"]  # ws_entry gives every key of the kind


def ws_projection_config(
    entries: dict, m: int, n: int, k: int, dtype: torch.dtype, activation: str
) -> dict | None:
    """The Gluon forward's configuration for ``m`` rows and weights ``[n, k]`` from a launch
    table's ``ws`` section ``entries`` (keyed like the Triton paths', from ``MIN_M`` rows;
    ``ops.train.ws_entry``), or None where no entry applies."""
    from flash_swiglu.ops import train as T

    entry = next((entries[key] for key in table_keys(m, n, k, dtype) if key in entries), None)
    return T.ws_entry(entry, "projection_ws", activation, m)


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


# ----------------------------------------------------------------------------------------
# Dispatch, packed views, backward
# ----------------------------------------------------------------------------------------


def packed_views(w: torch.Tensor, b: torch.Tensor | None, layout: str):
    """``(w_gate, w_up, b_gate, b_up)`` as views of a packed ``[2N, K]`` weight and ``[2N]``
    bias: ``"concat"`` = first half gate; ``"interleaved"`` = even rows gate (gpt-oss)."""
    n = w.shape[0] // 2
    if layout == "concat":
        sl = (slice(0, n), slice(n, 2 * n))
    else:
        sl = (slice(0, None, 2), slice(1, None, 2))
    if b is None:
        return w[sl[0]], w[sl[1]], None, None
    return w[sl[0]], w[sl[1]], b[sl[0]], b[sl[1]]


def forward(x, wg, wu, bg, bu, activation, alpha, limit):
    # float64 exists for gradcheck: the interpreter runs it in the kernels, but Triton has
    # no fp64 tl.dot on CUDA (a compile error on the H200 with Triton 3.6), so CUDA float64
    # takes the reference path; so does bf16 on the CPU (``_common.gemm_kernels``).
    if C.gemm_kernels(x.device, x.dtype):
        return _forward_triton(x, wg, wu, bg, bu, activation, alpha, limit)
    return reference.swiglu_linear_reference(x, wg, wu, bg, bu, activation, alpha, limit)


def packed_forward(x, w, b, activation, layout, alpha, limit):
    return forward(x, *packed_views(w, b, layout), activation, alpha, limit)


def backward(x, wg, wu, bg, bu, dout, args, needs):
    """``(dx, dw_gate, dw_up, db_gate, db_up)``, None where ``needs`` is False: the fused
    backward of ``ops.train`` (the pre-activation recomputed in the kernel that forms dgate
    and dup from dout; dx and the weight gradients by cuBLAS)."""
    from flash_swiglu.ops import train as T  # imports this module

    dx, dwg, dwu, dbg, dbu, _ = T.backward(
        T.rows(x), wg, wu, bg, bu, *args, dout=T.rows(dout), needs=(*needs[:5], False)
    )
    return dx.view(x.shape) if dx is not None else None, dwg, dwu, dbg, dbu


def packed_backward(x, w, b, dout, activation, layout, alpha, limit, needs):
    """``(dx, dw, db)``: as ``backward``, with the weight and bias gradients written packed
    (the same layout as ``w``), with no concatenation."""
    from flash_swiglu.ops import train as T  # imports this module

    wg, wu, bg, bu = packed_views(w, b, layout)
    dw = w.new_empty(w.shape) if needs[1] else None
    db = b.new_empty(b.shape) if b is not None and needs[2] else None
    dwg, dwu = packed_views(dw, None, layout)[:2] if dw is not None else (None, None)
    dx, _, _, dbg, dbu, _ = T.backward(
        T.rows(x), wg, wu, bg, bu, activation, alpha, limit, dout=T.rows(dout),
        needs=(needs[0], needs[1], needs[1], db is not None, db is not None, False),
        dwg=dwg, dwu=dwu,
    )  # fmt: skip
    if db is not None:
        db = packed_bias_grad(b, dbg, dbu, layout)
    return dx.view(x.shape) if dx is not None else None, dw, db


def packed_bias_grad(b, dbg, dbu, layout) -> torch.Tensor:
    """The gradient of a packed bias ``b [2N]`` from those of its gate and up halves."""
    db = b.new_empty(b.shape)
    db_g, db_u = packed_views(db.unsqueeze(1), None, layout)[:2]
    db_g.squeeze(1).copy_(dbg)
    db_u.squeeze(1).copy_(dbu)
    return db


# ----------------------------------------------------------------------------------------
# Custom ops: what torch.compile sees (opaque, with fake implementations)
# ----------------------------------------------------------------------------------------


@torch.library.custom_op("flash_swiglu::linear_fwd", mutates_args=())
@on_tensor_device
def linear_fwd(
    x: torch.Tensor,
    w_gate: torch.Tensor,
    w_up: torch.Tensor,
    b_gate: torch.Tensor | None,
    b_up: torch.Tensor | None,
    activation: str,
    alpha: float,
    limit: float,
) -> torch.Tensor:
    return forward(x, w_gate, w_up, b_gate, b_up, activation, alpha, limit)


@linear_fwd.register_fake
def _(x, w_gate, w_up, b_gate, b_up, activation, alpha, limit):
    return x.new_empty((*x.shape[:-1], w_gate.shape[0]))


@torch.library.custom_op("flash_swiglu::linear_packed_fwd", mutates_args=())
@on_tensor_device
def linear_packed_fwd(
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None,
    activation: str,
    layout: str,
    alpha: float,
    limit: float,
) -> torch.Tensor:
    return packed_forward(x, w, b, activation, layout, alpha, limit)


@linear_packed_fwd.register_fake
def _(x, w, b, activation, layout, alpha, limit):
    return x.new_empty((*x.shape[:-1], w.shape[0] // 2))


@torch.library.custom_op("flash_swiglu::linear_bwd", mutates_args=())
@on_tensor_device
def linear_bwd(
    x: torch.Tensor,
    w_gate: torch.Tensor,
    w_up: torch.Tensor,
    b_gate: torch.Tensor | None,
    b_up: torch.Tensor | None,
    dout: torch.Tensor,
    activation: str,
    alpha: float,
    limit: float,
    needs: list[bool],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    grads = backward(x, w_gate, w_up, b_gate, b_up, dout, (activation, alpha, limit), needs)
    return tuple(C.empty_if_none(g, x) for g in grads)


@linear_bwd.register_fake
def _(x, w_gate, w_up, b_gate, b_up, dout, activation, alpha, limit, needs):
    return C.fake_grads((x, w_gate, w_up, b_gate, b_up), needs, x)


@torch.library.custom_op("flash_swiglu::linear_packed_bwd", mutates_args=())
@on_tensor_device
def linear_packed_bwd(
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None,
    dout: torch.Tensor,
    activation: str,
    layout: str,
    alpha: float,
    limit: float,
    needs: list[bool],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    grads = packed_backward(x, w, b, dout, activation, layout, alpha, limit, needs)
    return tuple(C.empty_if_none(g, x) for g in grads)


@linear_packed_bwd.register_fake
def _(x, w, b, dout, activation, layout, alpha, limit, needs):
    return C.fake_grads((x, w, b), needs, x)


def _linear_setup(ctx, inputs, output):
    x, wg, wu, bg, bu, activation, alpha, limit = inputs
    ctx.save_for_backward(x, wg, wu, bg, bu)
    ctx.args = (activation, alpha, limit)


def _linear_backward(ctx, dout):
    needs = list(ctx.needs_input_grad[:5])
    grads = linear_bwd(*ctx.saved_tensors, dout, *ctx.args, needs)
    return (*C.keep_needed(grads, needs), None, None, None)


linear_fwd.register_autograd(_linear_backward, setup_context=_linear_setup)


def _packed_setup(ctx, inputs, output):
    x, w, b, activation, layout, alpha, limit = inputs
    ctx.save_for_backward(x, w, b)
    ctx.args = (activation, layout, alpha, limit)


def _packed_backward(ctx, dout):
    needs = list(ctx.needs_input_grad[:3])
    grads = linear_packed_bwd(*ctx.saved_tensors, dout, *ctx.args, needs)
    return (*C.keep_needed(grads, needs), None, None, None, None)


linear_packed_fwd.register_autograd(_packed_backward, setup_context=_packed_setup)


# ----------------------------------------------------------------------------------------
# Eager autograd: the same functions without the custom-op dispatch (see ops/elementwise.py)
# ----------------------------------------------------------------------------------------


class _LinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, wg, wu, bg, bu, activation, alpha, limit):
        ctx.save_for_backward(x, wg, wu, bg, bu)
        ctx.args = (activation, alpha, limit)
        return forward(x, wg, wu, bg, bu, activation, alpha, limit)

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        grads = backward(*ctx.saved_tensors, dout, ctx.args, ctx.needs_input_grad[:5])
        return (*grads, None, None, None)


class _PackedLinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, activation, layout, alpha, limit):
        ctx.save_for_backward(x, w, b)
        ctx.args = (activation, layout, alpha, limit)
        return packed_forward(x, w, b, activation, layout, alpha, limit)

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        x, w, b = ctx.saved_tensors
        grads = packed_backward(x, w, b, dout, *ctx.args, ctx.needs_input_grad[:3])
        return (*grads, None, None, None, None)


@on_tensor_device
def linear(x, w_gate, w_up, b_gate, b_up, activation, alpha, limit):
    if torch.compiler.is_compiling():
        return linear_fwd(x, w_gate, w_up, b_gate, b_up, activation, alpha, limit)
    return _LinearFunction.apply(x, w_gate, w_up, b_gate, b_up, activation, alpha, limit)


@on_tensor_device
def linear_packed(x, w, b, activation, layout, alpha, limit):
    if torch.compiler.is_compiling():
        return linear_packed_fwd(x, w, b, activation, layout, alpha, limit)
    return _PackedLinearFunction.apply(x, w, b, activation, layout, alpha, limit)


# ----------------------------------------------------------------------------------------
# Validation (DESIGN.md: ValueError for shapes and devices, TypeError for dtypes)
# ----------------------------------------------------------------------------------------


def _check_like(x: torch.Tensor, named: dict[str, torch.Tensor | None]) -> None:
    for name, t in named.items():
        if t is None:
            if name.startswith("w"):  # the weights are required, the biases optional
                raise TypeError(f"{name} must be a tensor, got None")
            continue
        C.check_tensor(name, t)
        if t.dtype != x.dtype:
            raise TypeError(f"x and {name} must have the same dtype, got {x.dtype} and {t.dtype}")
        if t.device != x.device:
            raise ValueError(
                f"x and {name} must be on the same device, got {x.device} and {t.device}"
            )


def check_linear(x, w_gate, w_up, b_gate=None, b_up=None) -> None:
    """Shapes: ``x [..., K]``, ``w_gate, w_up [N, K]``, ``b_gate, b_up [N]``."""
    if b_gate is None and b_up is None and _valid_weights(x, w_gate, w_up):
        return  # the common case, checked in fewer steps (host time on every call)
    C.check_tensor("x", x)
    _check_like(x, {"w_gate": w_gate, "w_up": w_up, "b_gate": b_gate, "b_up": b_up})
    k = x.shape[-1]
    for name, w in (("w_gate", w_gate), ("w_up", w_up)):
        if w.dim() != 2 or w.shape[1] != k:
            raise ValueError(
                f"{name} must have shape [N, K] with K = x.shape[-1] = {k}, got {name} "
                f"{tuple(w.shape)} and x {tuple(x.shape)}"
            )
    if w_up.shape != w_gate.shape:
        raise ValueError(
            f"w_gate and w_up must have the same shape, got {tuple(w_gate.shape)} and "
            f"{tuple(w_up.shape)}"
        )
    for name, b in (("b_gate", b_gate), ("b_up", b_up)):
        if b is not None and tuple(b.shape) != (w_gate.shape[0],):
            raise ValueError(
                f"{name} must have shape [N] = ({w_gate.shape[0]},) for weights of shape "
                f"{tuple(w_gate.shape)}, got {tuple(b.shape)}"
            )


def _valid_weights(x, *weights) -> bool:
    """Whether ``x [..., K]`` (a tensor, at least 1-D, of a supported dtype) and each of
    ``weights`` (tensors ``[N, K]`` of one shape, x's dtype and device) pass every check of
    ``check_linear``. False: let the full checks say what is wrong."""
    if not isinstance(x, torch.Tensor) or x.dtype not in C.SUPPORTED_DTYPES or x.dim() == 0:
        return False
    first = weights[0]
    if not isinstance(first, torch.Tensor) or first.dim() != 2 or first.shape[1] != x.shape[-1]:
        return False
    return all(
        isinstance(w, torch.Tensor)
        and w.shape == first.shape
        and w.dtype == x.dtype
        and w.device == x.device
        for w in weights
    )


def check_linear_packed(x, w, b=None) -> None:
    """Shapes: ``x [..., K]``, ``w [2N, K]``, ``b [2N]``."""
    C.check_tensor("x", x)
    _check_like(x, {"w": w, "b": b})
    k = x.shape[-1]
    if w.dim() != 2 or w.shape[1] != k or w.shape[0] % 2:
        raise ValueError(
            f"w must have shape [2N, K] with K = x.shape[-1] = {k} and an even first "
            f"dimension, got w {tuple(w.shape)} and x {tuple(x.shape)}"
        )
    if b is not None and tuple(b.shape) != (w.shape[0],):
        raise ValueError(
            f"b must have shape [2N] = ({w.shape[0]},) for w of shape {tuple(w.shape)}, "
            f"got {tuple(b.shape)}"
        )


# ----------------------------------------------------------------------------------------
# Opt-in retuning on the current GPU (never called by production code)
# ----------------------------------------------------------------------------------------

CANDIDATES = {
    "tma": [
        dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=g, num_warps=8, num_stages=s)
        for bm in (64, 128)
        for bn in (64, 128)
        for bk in (64, 128)
        for g in (8, 16)
        for s in (3, 4)
    ],
    "pointer": [
        dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=64, GROUP_M=8, num_warps=w, num_stages=s)
        for bm in (64, 128)
        for bn in (64, 128)
        for w in (4, 8)
        for s in (2, 3)
    ],
    "decode": [
        dict(BLOCK_N=bn, BLOCK_K=bk, num_warps=w, num_stages=s)
        for bn in (32, 64, 128)
        for bk in (64, 128, 256)
        for w in (4, 8)
        for s in (2, 3, 4, 5)
    ]
    # The TMA variant's tiles that won a shape in benchmarks/results/h200-session10-explore
    # (call 3); the launcher runs them with pointer loads where a descriptor cannot serve.
    + [
        dict(BLOCK_N=bn, BLOCK_K=128, num_warps=w, num_stages=s, TMA=True)
        for bn, w, s in ((64, 4, 4), (64, 4, 5), (64, 4, 6), (128, 8, 3))
    ]
    # The rotated K loops that won 1B and 8B (benchmarks/results/h200-session22-explore/call1),
    # and the TMA one that won Llama-3-70B at 32 tokens on three copies of the inputs
    # (h200-session23-explore/call3).
    + [
        dict(BLOCK_N=bn, BLOCK_K=128, num_warps=w, num_stages=s, K_ROTATE=r)
        for bn, w, s in ((64, 4, 4), (128, 8, 3))
        for r in (5, 11)
    ]
    + [dict(BLOCK_N=128, BLOCK_K=128, num_warps=8, num_stages=3, TMA=True, K_ROTATE=11)],
    # Programs of one weight row, the fastest family on the H200: 1024-4096 columns a step
    # over 4-8 warps with K compiled in (benchmarks/results/h200-session10-explore/call2;
    # Llama-3-70B's since h200-session21-explore/call3), and single-warp programs with K read
    # at run time (h200-session9-explore, calls 3, 4 and 6; the weights through L2 only won
    # 70B there, while the harness evicted the L2 by a write).
    "gemv": [
        dict(BLOCK_N=1, BLOCK_K=bk, num_warps=w, num_stages=1, UNROLL=u, STATIC_K=True)
        for bk, w in ((1024, 4), (2048, 4), (2048, 8), (4096, 8))
        for u in (1, 2)
        if bk * u <= 4096
    ]
    + [
        dict(BLOCK_N=1, BLOCK_K=bk, num_warps=1, num_stages=1, UNROLL=u, W_CACHE=c)
        for bk in (128, 256)
        for u in (2, 8)
        for c in ("", ".cg")
    ],
}


# The warp-specialized (Gluon) forward's candidates for ``retune`` (section ``ws``): the merged
# forward of the shape-wide entries (the activation in the loader's partition, session 40),
# then the ping-pong and cooperative schedules that won a shape in session 6's exploration
# (benchmarks/results/h200-session6-explore/call2; configs/h200_linear.json, ``ws``).
_WS_COMMON = dict(BLOCK_M=128, BLOCK_K=64, EPILOGUE_SPLIT=4, COALESCE=True, CONSUMER_REGS=232)
# The merged forward's configuration, defined here (kernels/ws_mlp.py imports this module, so
# its FORWARD_MERGED_CONFIG, the kernel's built-in, is this without MERGED).
WS_MERGED = dict(BLOCK_M=128, BLOCK_H=128, BLOCK_K=64, GROUP_M=16, STAGES=3, EPILOGUE_SPLIT=4,
                 LAG=3, EVERY=2, CONSUMER_REGS=192, MERGED=True)  # fmt: skip
WS_CANDIDATES = (
    [WS_MERGED]
    + [dict(_WS_COMMON, BLOCK_H=64, GROUP_M=8, STAGES=s, COOP=False) for s in (5, 6)]
    + [
        dict(_WS_COMMON, BLOCK_H=128, GROUP_M=g, STAGES=s, COOP=True)
        for s, g in ((3, 8), (4, 8), (4, 16))
    ]
)


def retune(
    shapes: Iterable[tuple[int, int, int]],
    *,
    dtype: torch.dtype = torch.bfloat16,
    out_path: str | os.PathLike | None = None,
    paths: Iterable[str] | None = None,
    candidates: dict[str, list[dict]] | None = None,
    device: str = "cuda",
) -> dict:
    """Time ``CANDIDATES`` for each ``(M, N, K)`` on the current GPU and return (and, with
    ``out_path``, write) a table in the format of ``configs/h200_linear.json``.
    ``device="cpu"`` runs the same selection through Triton's interpreter, one timed call per
    candidate (the CPU tests' check of this logic; its times mean nothing).

    Each candidate is checked against the reference before it is timed; failures to compile
    (shared memory) are skipped. Entries are keyed ``m{bucket}_n{N}_k{K}`` and carry a
    "source" field naming the GPU, versions and date. For one token the matrix-vector
    kernel's candidates (``candidates["gemv"]``) are timed too: a ``gemv`` entry if the
    fastest beats the decode kernel's, else ``{"KERNEL": "decode"}`` for the shape. Where the
    TMA path applies and the warp-specialized kernels may run (``ops.train.ws_enabled``:
    16-bit, sm_90), the Gluon forward's candidates (``candidates["ws"]``, default
    ``WS_CANDIDATES``) are timed too, and the fastest gets a ``ws`` entry if it beats the
    fastest Triton candidate. Load the result with ``FLASH_SWIGLU_LINEAR_CONFIGS=<out_path>``
    or by copying it over the packaged table.
    """
    import datetime

    import triton
    from triton.testing import do_bench

    from flash_swiglu.ops import train as T

    dev = torch.device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "interpreter"
    table: dict = {"device": name, "generated": "flash_swiglu.ops.linear.retune"}
    stamp = f"{name}, torch {torch.__version__}, triton {triton.__version__}"
    stamp += f", {datetime.date.today().isoformat()}"
    cands = candidates if candidates is not None else {**CANDIDATES, "ws": WS_CANDIDATES}

    def fastest(run, configs, ref):
        """``(ms, config)`` of the fastest correct config (``run(config)`` returns h)."""
        best = None
        for cand in configs:
            f = lambda: run(cand)  # noqa: B023
            try:
                err = (f().float() - ref.float()).abs().max().item()
                if not err <= 0.05 * ref.float().abs().max().item():
                    continue  # a wrong candidate is never a candidate
                if dev.type == "cuda":
                    ms = do_bench(f, warmup=25, rep=100, return_mode="median")
                else:
                    ms = T._cpu_ms(f)
            except Exception:  # out of shared memory or registers: not a candidate
                continue
            if best is None or ms < best[0]:
                best = (ms, cand)
        return best

    def record(section, key, best):
        ms, cand = best
        tflops = 4 * m * n * k / ms / 1e9
        entry = dict(cand, source=f"retune {stamp}: {ms * 1e3:.1f} us, {tflops:.0f} TFLOP/s")
        table.setdefault(section, {})[key] = entry

    for m, n, k in shapes:
        x = torch.randn(m, k, device=dev, dtype=dtype)
        wg = torch.randn(n, k, device=dev, dtype=dtype) / k**0.5
        wu = torch.randn(n, k, device=dev, dtype=dtype) / k**0.5
        ref = reference.swiglu_linear_reference(x, wg, wu, None, None, "silu", 1.702, 7.0)
        path = choose_path(x, wg, wu, m)
        if paths is not None and path not in paths:
            continue
        key = f"m{token_bucket(m)}_n{n}_k{k}"

        def triton_run(cand):
            cfg = dict(cand, BLOCK_K=max(16, cand["BLOCK_K"] * 2 // dtype.itemsize))
            return _forward_triton(x, wg, wu, None, None, "silu", 1.702, 7.0, path, cfg)  # noqa: B023

        best = fastest(triton_run, cands.get(path, []), ref)
        if best is not None:
            record(path, key, best)
        if path == "decode" and m <= GEMV_MAX_TOKENS and cands.get("gemv"):

            def gemv_run(cand):
                cfg = dict(cand, BLOCK_K=max(16, cand["BLOCK_K"] * 2 // dtype.itemsize))
                return _forward_triton(x, wg, wu, None, None, "silu", 1.702, 7.0, "gemv", cfg)  # noqa: B023

            gemv_best = fastest(gemv_run, cands["gemv"], ref)
            if gemv_best is not None and (best is None or gemv_best[0] < best[0]):
                record("gemv", key, gemv_best)
            elif gemv_best is not None:
                table.setdefault("gemv", {})[key] = dict(
                    KERNEL="decode",
                    source=f"retune {stamp}: decode kernel {best[0] * 1e3:.1f} us, fastest "
                    f"matrix-vector candidate {gemv_best[0] * 1e3:.1f} us",
                )
        if path == "tma" and cands.get("ws") and T.ws_enabled(dtype, dev):
            from flash_swiglu.kernels.ws_mlp import glu_forward_ws

            out = torch.empty(m, n, device=dev, dtype=dtype)

            def ws_run(cand):
                glu_forward_ws(x, wg, wu, None, None, out, activation="silu", alpha=1.702,  # noqa: B023
                               limit=7.0, config=cand)  # fmt: skip
                return out  # noqa: B023

            ws_best = fastest(ws_run, cands["ws"], ref)
            if ws_best is not None and (best is None or ws_best[0] < best[0]):
                record("ws", key, ws_best)
    if out_path is not None:
        with open(out_path, "w") as f:
            json.dump(table, f, indent=2)
            f.write("\n")
    return table


__all__ = [
    "WS_CANDIDATES",
    "backward",
    "check_linear",
    "check_linear_packed",
    "choose_path",
    "forward",
    "launch_config",
    "linear",
    "linear_fwd",
    "linear_packed",
    "linear_packed_fwd",
    "packed_backward",
    "packed_forward",
    "packed_views",
    "retune",
]

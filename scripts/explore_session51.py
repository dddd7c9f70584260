"""Session-51 exploration: what in the backward's epilogue costs the 13% that separates the
committed dh kernel from its own main loop. Run in session 51 (``benchmarks/results/
h200-session51-explore/``, calls 4-10 and 12); findings in ``docs/mlp.md``, "The main loop alone,
and what the epilogue costs".

    PYTHONPATH=src python scripts/explore_session51.py gate               (CPU or GPU)
    PYTHONPATH=src python scripts/explore_session51.py MODE --out DIR     (GPU)
    ncu ... python scripts/explore_session51.py ncu                       (GPU, Nsight Compute)
    python scripts/explore_session51.py ncu-read --src SRC.csv[.gz] [--out FILE]

Why: ``explore_session50.py dhgemm`` (call 2) timed ``ws_mlp``'s loader and main loop with an
epilogue that only stores dh at 0.970 of cuBLAS's ``dy @ W_down`` (8192 x 14336 x 4096, bf16),
and the committed backward, the same tile, ring, order and registers, at 0.839. The main loop
is not the lever; its epilogue is: load g and u, compute h = act(g) u and the GLU derivative,
store h, dg and du, in 8 column parts of 16 columns moved to 16-byte rows through shared
memory.

Every variant is the committed kernel's (``ws_mlp``'s loader, ``_main_loop``,
``_split_columns`` and coalesced layout; 128 x 128 x 64 tiles, 6 slots, ``GROUP_M`` 8, 8
parts, 232 registers, fp-fusion as the library launches) with a different epilogue:

- ``epi`` (``VARIANTS``, call 4): ``MATH`` silu (``glu_forward`` and ``glu_backward``, as
  committed) or trivial (h = g u, dg = dh u, du = dh g: three multiplies); ``load_rows`` and
  ``store_rows`` runtime bounds on the rows loaded and stored (``M`` or 0: with 0 no memory
  is touched but the compiler keeps everything else).
- ``tma`` (call 5), ``gutma`` (call 10) and ``guasync`` (call 12) (``TMA_VARIANTS``): stores
  by TMA from shared memory, g and u loaded ahead of the epilogue by TMA or by cp.async, or
  both.
- ``hints`` (call 7): the epilogue's loads and stores with cache hints; ``noh`` (call 8):
  without storing h; ``configs`` (call 9, ``CFG_VARIANTS``): the committed kernel's
  ``PREFETCH`` and the library's hand-off and merged backward kernels.
- ``ncu`` (call 6): one launch of each of ``NCU_LABELS`` inside a profiler range;
  ``ncu-read``: the warp-stall samples of Nsight Compute's source page, per mbarrier.

Each comparison runs cuBLAS, the committed entry and ``explore_session50``'s store-only main
loop beside its variants, with the outputs checked first (silu against float64, trivial
against torch's products, both to 1% of the largest entry; a variant that stores from no
loads must store zeros, one that stores nothing must leave its outputs untouched). Then five
rotated rounds of ``measure_graph``, then 1.5 s of back-to-back calls of each while
``nvidia-smi`` samples the SM clock and board power every 50 ms: a kernel slowed by the power
cap shows a lower clock, one slowed by its own work the same clock. -> ``MODE.json`` and one
line a variant.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (
    async_copy,
    fence_async_shared,
    mbarrier,
    tma,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import explore_session50 as S50

from flash_swiglu.activations import glu_backward, glu_forward
from flash_swiglu.kernels import ws_mlp
from flash_swiglu.kernels.linear import _grouped_tile
from flash_swiglu.ops.linear import ENABLE_FP_FUSION

ROUNDS = 5
SETTLE_MS = 100.0
SUSTAIN_S = 1.5  # back-to-back calls per variant for the clock samples; the first 0.5 s skipped
SHAPE = S50.SHAPE
# The committed backward entry's tile, ring, order, parts and registers (configs/h200_train.json)
CONSTS = dict(GROUP_M=8, STAGES=6, PARTS=8, CONSUMER_REGS=232)
BLOCKS = ([128, 64], [64, 128])  # dy [BLOCK_M, BLOCK_K], W_down [BLOCK_K, BLOCK_N]

# name -> (MATH, loads on, stores on[, HINT]): HINT "ef" loads and stores g, u, h, dg, du
# evict-first in L2, "cg" loads them past L1 and stores them streaming (".cs"), "noh" stores
# dg and du but not h
VARIANTS = {
    "silu": ("silu", True, True),
    "silu noload": ("silu", False, True),
    "silu nostore": ("silu", True, False),
    "silu none": ("silu", False, False),
    "trivial": ("trivial", True, True),
    "trivial noload": ("trivial", False, True),
    "trivial nostore": ("trivial", True, False),
    "trivial none": ("trivial", False, False),
    "silu ef": ("silu", True, True, "ef"),
    "silu cg": ("silu", True, True, "cg"),
    "trivial ef": ("trivial", True, True, "ef"),
    "silu noh": ("silu", True, True, "noh"),
}
EPI_RUN = list(VARIANTS)[:8]  # session 51's call 4 (``epi``); the hints: ``hints``


@gluon.jit
def _ld(ptr, mask, HINT: gl.constexpr):
    """A load of the epilogue: no hint, evict-first ("ef"), or L2 only ("cg")."""
    if HINT == "ef":
        x = gl.load(ptr, mask=mask, other=0.0, eviction_policy="evict_first")
    elif HINT == "cg":
        x = gl.load(ptr, mask=mask, other=0.0, cache_modifier=".cg")
    else:
        x = gl.load(ptr, mask=mask, other=0.0)
    return x


@gluon.jit
def _st(ptr, x, mask, HINT: gl.constexpr):
    """A store of the epilogue: no hint, evict-first ("ef"), or streaming (".cs" with "cg")."""
    if HINT == "ef":
        gl.store(ptr, x, mask=mask, eviction_policy="evict_first")
    elif HINT == "cg":
        gl.store(ptr, x, mask=mask, cache_modifier=".cs")
    else:
        gl.store(ptr, x, mask=mask)


@gluon.jit
def _epi_consumer(dy_desc, w_desc, a_ring, b_ring, ready, empty, turn, g_ptr, u_ptr, h_ptr,
                  dg_ptr, du_ptr, stride, load_rows, store_rows, M, N, K,
                  GROUP_M: gl.constexpr, STAGES: gl.constexpr, PARTS: gl.constexpr,
                  ROLE: gl.constexpr, MATH: gl.constexpr, HINT: gl.constexpr):  # fmt: skip
    BLOCK_M: gl.constexpr = dy_desc.block_type.shape[0]
    BLOCK_K: gl.constexpr = dy_desc.block_type.shape[1]
    BLOCK_N: gl.constexpr = w_desc.block_type.shape[1]
    WIDTH: gl.constexpr = BLOCK_N // PARTS
    layout: gl.constexpr = ws_mlp._acc_layout(BLOCK_M, BLOCK_N)
    part_layout: gl.constexpr = ws_mlp._coalesced_layout(BLOCK_M, WIDTH)
    num_pid_m, num_pid_n, num_tiles, k_steps, first, step, count, _ = ws_mlp._consumer_tiles(
        M, N, K, BLOCK_M, BLOCK_N, BLOCK_K, ROLE, False)  # fmt: skip
    out_ty: gl.constexpr = h_ptr.dtype.element_ty
    for t in range(first, num_tiles, step):
        i = (t - first) // step
        pid_m, pid_n = _grouped_tile(t, num_pid_m, num_pid_n, GROUP_M)
        off_m = pid_m * BLOCK_M
        off_n = pid_n * BLOCK_N
        acc, count = ws_mlp._main_loop(a_ring, b_ring, ready, empty, turn, count, i, k_steps,
                                       layout, BLOCK_M, BLOCK_N, STAGES, ROLE, False,
                                       False)  # fmt: skip
        parts = ws_mlp._split_columns(acc, PARTS)
        for p in gl.static_range(PARTS):
            dh = gl.convert_layout(parts[p], part_layout)
            rows = off_m + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, part_layout))
            cols = off_n + p * WIDTH + gl.arange(0, WIDTH, layout=gl.SliceLayout(0, part_layout))
            in_n = (cols < N)[None, :]
            offs = rows.to(gl.int64)[:, None] * stride + cols[None, :]
            lmask = (rows < load_rows)[:, None] & in_n
            smask = (rows < store_rows)[:, None] & in_n
            g = _ld(g_ptr + offs, lmask, HINT).to(gl.float32)
            u = _ld(u_ptr + offs, lmask, HINT).to(gl.float32)
            if MATH == "silu":
                h = glu_forward(g, u, "silu", 1.702, 7.0)
                dg, du = glu_backward(g, u, dh, "silu", 1.702, 7.0)
            else:
                h = g * u
                dg = dh * u
                du = dh * g
            if HINT != "noh":  # "noh": h not stored (as if the forward's h were kept)
                _st(h_ptr + offs, h.to(out_ty), smask, HINT)
            _st(dg_ptr + offs, dg.to(out_ty), smask, HINT)
            _st(du_ptr + offs, du.to(out_ty), smask, HINT)


@gluon.jit
def _pingpong_ring(dy_desc, w_desc, STAGES: gl.constexpr):
    """The ping-pong kernel's shared ring of STAGES dy / W_down tiles and its barriers
    (``ws_mlp._ring_barriers``), as ``ws_mlp.mlp_backward_ws_kernel`` sets them up."""
    dtype: gl.constexpr = dy_desc.dtype
    a_shape: gl.constexpr = [STAGES] + dy_desc.block_type.shape  # noqa: RUF005
    b_shape: gl.constexpr = [STAGES] + w_desc.block_type.shape  # noqa: RUF005
    a_ring = gl.allocate_shared_memory(dtype, a_shape, dy_desc.layout)
    b_ring = gl.allocate_shared_memory(dtype, b_shape, w_desc.layout)
    ready, empty, turn = ws_mlp._ring_barriers(STAGES, False)
    return a_ring, b_ring, ready, empty, turn


@gluon.jit
def epi_kernel(dy_desc, w_desc, g_ptr, u_ptr, h_ptr, dg_ptr, du_ptr, stride, load_rows,
               store_rows, M, N, K, GROUP_M: gl.constexpr, STAGES: gl.constexpr,
               PARTS: gl.constexpr, CONSUMER_REGS: gl.constexpr, MATH: gl.constexpr,
               HINT: gl.constexpr = ""):  # fmt: skip
    """The committed ping-pong backward (``ws_mlp.mlp_backward_ws_kernel``, COOP off) with an
    epilogue whose arithmetic (MATH), loads and stores can each be switched off."""
    a_ring, b_ring, ready, empty, turn = _pingpong_ring(dy_desc, w_desc, STAGES)
    # fmt: off
    gl.warp_specialize(
        [
            (ws_mlp._loader, (dy_desc, w_desc, a_ring, b_ring, ready, empty, M, N, K, GROUP_M,
                              STAGES)),
            (_epi_consumer, (dy_desc, w_desc, a_ring, b_ring, ready, empty, turn, g_ptr, u_ptr,
                             h_ptr, dg_ptr, du_ptr, stride, load_rows, store_rows, M, N, K,
                             GROUP_M, STAGES, PARTS, 0, MATH, HINT)),
            (_epi_consumer, (dy_desc, w_desc, a_ring, b_ring, ready, empty, turn, g_ptr, u_ptr,
                             h_ptr, dg_ptr, du_ptr, stride, load_rows, store_rows, M, N, K,
                             GROUP_M, STAGES, PARTS, 1, MATH, HINT)),
        ],
        [4, 4],
        [CONSUMER_REGS, CONSUMER_REGS],
    )
    # fmt: on


# The TMA store is ``async_copy_shared_to_global`` in Triton 3.6 and ``async_store`` later; the
# CTA barrier ``thread_barrier`` became ``barrier`` (as ``ws_mlp._tma_load``).
_tma_store = getattr(tma, "async_store", None) or tma.async_copy_shared_to_global
_sync = getattr(gl, "thread_barrier", None) or gl.barrier
# cp.async likewise: ``async_copy_global_to_shared`` in 3.6, ``async_load`` later
_cp_async = getattr(async_copy, "async_load", None) or async_copy.async_copy_global_to_shared

# name -> (STAGES, STORE_TMA, GU_BUFS). STORE_TMA: h, dg and du stored through shared memory by
# TMA (one buffer of the three parts per consumer). GU_BUFS > 0: g and u loaded by TMA into
# that many buffers per consumer, as many parts ahead (the first GU_BUFS issued before the
# main loop, so they arrive during it). Read in the accumulator's own layout where the stores
# are TMA's too (no layout move); otherwise g and u are read from shared memory in the
# committed kernel's 16-byte rows, dh is moved to them and h, dg and du are stored from them.
# With neither, the epilogue is the committed one. GU_BUFS < 0: -GU_BUFS buffers filled by
# cp.async (the LSU's asynchronous copy, not the TMA unit), each thread copying and later
# reading the same 16-byte pieces (no barrier between them), one commit group a part.
TMA_VARIANTS = {
    "tma store": (6, True, 0),
    "tma store s5": (5, True, 0),
    "tma all s5": (5, True, 2),
    "tma all s4": (4, True, 2),
    "gu tma3 s5": (5, False, 3),
    "gu tma2 s5": (5, False, 2),
    "gu async3 s5": (5, False, -3),
    "gu async1 s6": (6, False, -1),
}


@gluon.jit
def _gu_fetch(g_desc, u_desc, gu_smem, gu_bar, row, col, b):
    """TMA loads of the g and u part at (row, col) into buffer ``b`` (its barrier armed)."""
    bar = gu_bar.index(b)
    mbarrier.expect(bar, 2 * g_desc.block_type.nbytes)
    ws_mlp._tma_load(g_desc, [row, col], bar, gu_smem.index(2 * b))
    ws_mlp._tma_load(u_desc, [row, col], bar, gu_smem.index(2 * b + 1))


@gluon.jit
def _gu_async(g_ptr, u_ptr, stride, gu_smem, row, col, b, M, N, LAYOUT: gl.constexpr,
              BLOCK_M: gl.constexpr, WIDTH: gl.constexpr):  # fmt: skip
    """cp.async of the g and u part at (row, col) into buffer ``b``, one commit group."""
    rows = row + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, LAYOUT))
    cols = col + gl.arange(0, WIDTH, layout=gl.SliceLayout(0, LAYOUT))
    mask = (rows < M)[:, None] & (cols < N)[None, :]
    offs = rows.to(gl.int64)[:, None] * stride + cols[None, :]
    _cp_async(gu_smem.index(2 * b), g_ptr + offs, mask=mask)
    _cp_async(gu_smem.index(2 * b + 1), u_ptr + offs, mask=mask)
    async_copy.commit_group()


@gluon.jit
def _tma_consumer(dy_desc, w_desc, a_ring, b_ring, ready, empty, turn, g_desc, u_desc, h_desc,
                  dg_desc, du_desc, g_ptr, u_ptr, h_ptr, dg_ptr, du_ptr, stride, out_smem,
                  gu_smem, gu_bar, M, N, K, GROUP_M: gl.constexpr, STAGES: gl.constexpr,
                  ROLE: gl.constexpr, STORE_TMA: gl.constexpr,
                  GU_BUFS: gl.constexpr):  # fmt: skip
    BLOCK_M: gl.constexpr = dy_desc.block_type.shape[0]
    BLOCK_K: gl.constexpr = dy_desc.block_type.shape[1]
    BLOCK_N: gl.constexpr = w_desc.block_type.shape[1]
    WIDTH: gl.constexpr = h_desc.block_type.shape[1]
    PARTS: gl.constexpr = BLOCK_N // WIDTH
    layout: gl.constexpr = ws_mlp._acc_layout(BLOCK_M, BLOCK_N)
    MOVE: gl.constexpr = not (STORE_TMA and GU_BUFS > 0)  # dh moved to 16-byte rows
    NB: gl.constexpr = -GU_BUFS  # cp.async buffers (GU_BUFS < 0)
    part_layout: gl.constexpr = ws_mlp._part_probe(layout, BLOCK_M, BLOCK_N, PARTS,
                                                   MOVE).type.layout  # fmt: skip
    num_pid_m, num_pid_n, num_tiles, k_steps, first, step, count, _ = ws_mlp._consumer_tiles(
        M, N, K, BLOCK_M, BLOCK_N, BLOCK_K, ROLE, False)  # fmt: skip
    out_ty: gl.constexpr = h_desc.dtype
    for t in range(first, num_tiles, step):
        i = (t - first) // step
        pid_m, pid_n = _grouped_tile(t, num_pid_m, num_pid_n, GROUP_M)
        off_m = pid_m * BLOCK_M
        off_n = pid_n * BLOCK_N
        c0 = i * PARTS  # this consumer's count of g/u parts before this tile
        for q in gl.static_range(GU_BUFS):  # these arrive during the main loop
            _gu_fetch(g_desc, u_desc, gu_smem, gu_bar, off_m, off_n + q * WIDTH,
                      (c0 + q) % GU_BUFS)  # fmt: skip
        for q in gl.static_range(-GU_BUFS):  # cp.async: the same, one group each
            _gu_async(g_ptr, u_ptr, stride, gu_smem, off_m, off_n + q * WIDTH,
                      (c0 + q) % (-GU_BUFS), M, N, part_layout, BLOCK_M, WIDTH)  # fmt: skip
        acc, count = ws_mlp._main_loop(a_ring, b_ring, ready, empty, turn, count, i, k_steps,
                                       layout, BLOCK_M, BLOCK_N, STAGES, ROLE, False,
                                       False)  # fmt: skip
        parts = ws_mlp._split_columns(acc, PARTS)
        for p in gl.static_range(PARTS):
            col = off_n + p * WIDTH
            if MOVE:
                dh = gl.convert_layout(parts[p], part_layout)
            else:
                dh = parts[p]
            if GU_BUFS > 0:
                c = c0 + p
                b = c % GU_BUFS
                mbarrier.wait(gu_bar.index(b), (c // GU_BUFS) & 1)
                g = gu_smem.index(2 * b).load(part_layout).to(gl.float32)
                u = gu_smem.index(2 * b + 1).load(part_layout).to(gl.float32)
                _sync()  # every thread has read the buffer before it is refilled
                if p + GU_BUFS < PARTS:
                    _gu_fetch(g_desc, u_desc, gu_smem, gu_bar, off_m, col + GU_BUFS * WIDTH, b)
            elif GU_BUFS < 0:
                b = (c0 + p) % NB
                async_copy.wait_group(NB - 1)  # this part's group (one a part is committed)
                g = gu_smem.index(2 * b).load(part_layout).to(gl.float32)
                u = gu_smem.index(2 * b + 1).load(part_layout).to(gl.float32)
                if p + NB < PARTS:
                    _gu_async(g_ptr, u_ptr, stride, gu_smem, off_m, col + NB * WIDTH, b, M, N,
                              part_layout, BLOCK_M, WIDTH)  # fmt: skip
                else:
                    async_copy.commit_group()  # empty: the wait above stays one part behind
            else:
                gu = ws_mlp._gu_part(g_ptr, u_ptr, stride, stride, off_m, off_n, M, N, p,
                                     part_layout, BLOCK_M, WIDTH)  # fmt: skip
                g = gu[0].to(gl.float32)
                u = gu[1].to(gl.float32)
            h = glu_forward(g, u, "silu", 1.702, 7.0)
            dg, du = glu_backward(g, u, dh, "silu", 1.702, 7.0)
            if STORE_TMA:
                tma.store_wait(0)  # the previous part's stores have read the buffer
                _sync()
                out_smem.index(0).store(h.to(out_ty))
                out_smem.index(1).store(dg.to(out_ty))
                out_smem.index(2).store(du.to(out_ty))
                fence_async_shared()
                _sync()
                _tma_store(h_desc, [off_m, col], out_smem.index(0))
                _tma_store(dg_desc, [off_m, col], out_smem.index(1))
                _tma_store(du_desc, [off_m, col], out_smem.index(2))
            else:
                rows = off_m + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, part_layout))
                cols = col + gl.arange(0, WIDTH, layout=gl.SliceLayout(0, part_layout))
                mask = (rows < M)[:, None] & (cols < N)[None, :]
                offs = rows.to(gl.int64)[:, None] * stride + cols[None, :]
                gl.store(h_ptr + offs, h.to(out_ty), mask=mask)
                gl.store(dg_ptr + offs, dg.to(out_ty), mask=mask)
                gl.store(du_ptr + offs, du.to(out_ty), mask=mask)
    if STORE_TMA:
        tma.store_wait(0)


@gluon.jit
def tma_epi_kernel(dy_desc, w_desc, g_desc, u_desc, h_desc, dg_desc, du_desc, g_ptr, u_ptr,
                   h_ptr, dg_ptr, du_ptr, stride, M, N, K, GROUP_M: gl.constexpr,
                   STAGES: gl.constexpr, CONSUMER_REGS: gl.constexpr, STORE_TMA: gl.constexpr,
                   GU_BUFS: gl.constexpr):  # fmt: skip
    """The committed ping-pong backward (SiLU) with its stores (STORE_TMA) and / or its loads
    of g and u (GU_BUFS) by TMA through shared memory."""
    dtype: gl.constexpr = dy_desc.dtype
    part_shape: gl.constexpr = h_desc.block_type.shape
    a_ring, b_ring, ready, empty, turn = _pingpong_ring(dy_desc, w_desc, STAGES)
    if STORE_TMA:
        out0 = gl.allocate_shared_memory(dtype, [3] + part_shape, h_desc.layout)  # noqa: RUF005
        out1 = gl.allocate_shared_memory(dtype, [3] + part_shape, h_desc.layout)  # noqa: RUF005
    else:  # unused
        out0 = a_ring
        out1 = a_ring
    if GU_BUFS > 0:
        gu_shape: gl.constexpr = [2 * GU_BUFS] + part_shape  # noqa: RUF005
        gu0 = gl.allocate_shared_memory(dtype, gu_shape, g_desc.layout)
        gu1 = gl.allocate_shared_memory(dtype, gu_shape, g_desc.layout)
    elif GU_BUFS < 0:  # rows of 16-byte pieces, as each thread copies and reads them
        gu_shape: gl.constexpr = [-2 * GU_BUFS] + part_shape  # noqa: RUF005
        plain: gl.constexpr = gl.SwizzledSharedLayout(8, 1, 1, [1, 0])
        gu0 = gl.allocate_shared_memory(dtype, gu_shape, plain)
        gu1 = gl.allocate_shared_memory(dtype, gu_shape, plain)
    else:  # unused
        gu0 = a_ring
        gu1 = a_ring
    NBAR: gl.constexpr = max(GU_BUFS, 1)
    gu_bar0 = gl.allocate_shared_memory(gl.int64, [NBAR, 1], mbarrier.MBarrierLayout())
    gu_bar1 = gl.allocate_shared_memory(gl.int64, [NBAR, 1], mbarrier.MBarrierLayout())
    for i in gl.static_range(NBAR):
        mbarrier.init(gu_bar0.index(i), count=1)
        mbarrier.init(gu_bar1.index(i), count=1)
    # fmt: off
    gl.warp_specialize(
        [
            (ws_mlp._loader, (dy_desc, w_desc, a_ring, b_ring, ready, empty, M, N, K, GROUP_M,
                              STAGES)),
            (_tma_consumer, (dy_desc, w_desc, a_ring, b_ring, ready, empty, turn, g_desc,
                             u_desc, h_desc, dg_desc, du_desc, g_ptr, u_ptr, h_ptr, dg_ptr,
                             du_ptr, stride, out0, gu0, gu_bar0, M, N, K, GROUP_M, STAGES, 0,
                             STORE_TMA, GU_BUFS)),
            (_tma_consumer, (dy_desc, w_desc, a_ring, b_ring, ready, empty, turn, g_desc,
                             u_desc, h_desc, dg_desc, du_desc, g_ptr, u_ptr, h_ptr, dg_ptr,
                             du_ptr, stride, out1, gu1, gu_bar1, M, N, K, GROUP_M, STAGES, 1,
                             STORE_TMA, GU_BUFS)),
        ],
        [4, 4],
        [CONSUMER_REGS, CONSUMER_REGS],
    )
    # fmt: on


PART = [128, 16]  # the epilogue's parts: 8 of the tile's 128 columns


def _tma_consts(name: str) -> dict:
    stages, store_tma, gu_bufs = TMA_VARIANTS[name]
    return dict(GROUP_M=CONSTS["GROUP_M"], STAGES=stages, CONSUMER_REGS=CONSTS["CONSUMER_REGS"],
                STORE_TMA=store_tma, GU_BUFS=gu_bufs)  # fmt: skip


def _tma_launcher(name, dy, wd, g, u, outs):
    m, k = dy.shape
    n = wd.shape[1]
    grid = ws_mlp._grid(dy.device, -(-m // BLOCKS[0][0]) * -(-n // BLOCKS[1][1]), None)
    da, db = ws_mlp._desc(dy, BLOCKS[0]), ws_mlp._desc(wd, BLOCKS[1])
    parts = [ws_mlp._desc(t, PART) for t in (g, u, *outs)]
    consts = _tma_consts(name)

    def call():
        tma_epi_kernel[grid](da, db, *parts, g, u, *outs, g.stride(0), m, n, k, num_warps=4,
                             enable_fp_fusion=ENABLE_FP_FUSION, **consts)  # fmt: skip

    return call


def gate(out: Path | None) -> list[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from compile_gate_ws import _compile

    rows, lines = [], []
    for math, hint in (("silu", ""), ("trivial", ""), ("silu", "ef"), ("silu", "cg")):
        row = _compile(epi_kernel, {"dy_desc": BLOCKS[0], "w_desc": BLOCKS[1]},
                       dict(CONSTS, MATH=math, HINT=hint), torch.bfloat16)  # fmt: skip
        rows.append(dict(row, variant=f"epi {math} {hint}".strip()))
        lines.append(json.dumps(rows[-1]))
        print(lines[-1], flush=True)
    for name in TMA_VARIANTS:
        descs = {"dy_desc": BLOCKS[0], "w_desc": BLOCKS[1]}
        descs.update({f"{t}_desc": PART for t in ("g", "u", "h", "dg", "du")})
        row = _compile(tma_epi_kernel, descs, _tma_consts(name), torch.bfloat16)
        rows.append(dict(row, variant=name))
        lines.append(json.dumps(rows[-1]))
        print(lines[-1], flush=True)
    if out is not None:
        (out / "gate.json").write_text(json.dumps(rows, indent=1))
    return lines


def _launcher(name, dy, wd, g, u, outs):
    """A call of variant ``name``: dh = dy @ W_down and its epilogue into ``outs`` (h, dg, du)."""
    m, k = dy.shape
    n = wd.shape[1]
    math, loads, stores, *hint = VARIANTS[name]
    grid = ws_mlp._grid(dy.device, -(-m // BLOCKS[0][0]) * -(-n // BLOCKS[1][1]), None)
    da, db = ws_mlp._desc(dy, BLOCKS[0]), ws_mlp._desc(wd, BLOCKS[1])
    h, dg, du = outs

    def call():
        epi_kernel[grid](da, db, g, u, h, dg, du, g.stride(0), m if loads else 0,
                         m if stores else 0, m, n, k, MATH=math, HINT=(hint or [""])[0],
                         num_warps=4,
                         enable_fp_fusion=ENABLE_FP_FUSION, **CONSTS)  # fmt: skip

    return call


class _Sampler:
    """``nvidia-smi`` every 50 ms in a thread: ``(arrival time, SM MHz, board W)`` rows."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, float, float]] = []
        self.proc = subprocess.Popen(
            ["nvidia-smi", "--query-gpu=clocks.sm,power.draw", "--format=csv,noheader,nounits",
             "-lms", "50"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                mhz, watts = (float(v) for v in line.split(","))
            except ValueError:
                continue
            self.rows.append((time.time(), mhz, watts))

    def between(self, t0: float, t1: float) -> list[tuple[float, float]]:
        return [(mhz, w) for t, mhz, w in self.rows if t0 <= t <= t1]

    def stop(self) -> None:
        self.proc.terminate()


def _sustain(fn, sampler: _Sampler) -> dict:
    """``fn`` back to back for SUSTAIN_S (graph replays of 10 calls, no L2 eviction): its time
    a call and the median SM clock and power over all but the first 0.5 s."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=torch.cuda.current_stream()):
        for _ in range(10):
            fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    t_start = time.time()
    t_steady = t_start + 0.5
    replays, first = 0, None
    while time.time() - t_start < SUSTAIN_S:
        if first is None and time.time() >= t_steady:
            torch.cuda.synchronize()
            first = time.time()
            start.record()
            replays = 0
        graph.replay()
        replays += 1
        if replays % 8 == 0:
            torch.cuda.synchronize()
    end.record()
    torch.cuda.synchronize()
    last = time.time()
    samples = sampler.between(first, last)
    med = lambda xs: sorted(xs)[len(xs) // 2] if xs else None
    return dict(ms_per_call=start.elapsed_time(end) / (10 * replays), samples=len(samples),
                mhz=med([s[0] for s in samples]), watts=med([s[1] for s in samples]))  # fmt: skip


def _check(c: torch.Tensor, ref: torch.Tensor) -> float:
    return (c.double() - ref).abs().max().item() / ref.abs().max().item()


def epi(out: Path) -> list[str]:
    return _compare(out, "epi", EPI_RUN)


def hints(out: Path) -> list[str]:
    return _compare(out, "hints", ["silu", "silu ef", "silu cg", "trivial", "trivial ef"])


# name -> overrides of the committed entry, launched through ``ws_mlp.mlp_backward_ws``:
# g and u of the first PREFETCH parts loaded before the main loop and each part's one
# PREFETCH ahead (session 5 timed PREFETCH 2 only with 5 slots), and the library's other two
# backward kernels (hand-off: dh through shared memory to an epilogue partition, bf16 or fp32;
# merged: the epilogue in the loader's partition)
CFG_VARIANTS = {
    "pf1": dict(PREFETCH=1),
    "pf2": dict(PREFETCH=2),
    "handoff": dict(HANDOFF=True),
    "handoff fp32": dict(HANDOFF=True, DH_FP32=True),
    "merged": dict(MERGED=True),
}


def configs(out: Path) -> list[str]:
    return _compare(out, "configs", ["silu none", *CFG_VARIANTS])


def noh(out: Path) -> list[str]:
    return _compare(out, "noh", ["silu", "silu noh", "silu none"])


def tma_modes(out: Path) -> list[str]:
    return _compare(out, "tma", ["silu none", *list(TMA_VARIANTS)[:4]])


def gu_tma(out: Path) -> list[str]:
    return _compare(out, "gutma", ["silu", "gu tma3 s5", "gu tma2 s5", "merged"])


def gu_async(out: Path) -> list[str]:
    return _compare(out, "guasync", ["silu", "gu async3 s5", "gu async1 s6", "gu tma3 s5"])


def _inputs():
    """dy, W_down, g and u at SHAPE in bf16 (seeded, W_down scaled by K^-1/2) and the committed
    backward entry for SiLU at that token count."""
    from flash_swiglu.ops import train as T

    m, n, k = SHAPE
    gen = torch.Generator(device="cuda").manual_seed(0)
    r = lambda *s, sc=1.0: torch.randn(*s, device="cuda", dtype=torch.bfloat16,
                                       generator=gen) * sc  # fmt: skip
    dy, wd = r(m, k), r(k, n, sc=k**-0.5)
    g, u = r(m, n), r(m, n)
    entry = T.load_table(torch.cuda.get_device_name())["mlp_backward_ws"]
    return dy, wd, g, u, T.ws_entry(entry, "mlp_backward_ws", "silu", m)


def _compare(out: Path, mode: str, names: list[str]) -> list[str]:
    """cuBLAS, the committed entry, the store-only main loop and ``names`` (of VARIANTS,
    TMA_VARIANTS or CFG_VARIANTS): checked, timed in rotated rounds, then sustained with
    clock samples."""
    from flash_swiglu import reference
    from flash_swiglu.bench.timing import interleaved_rounds, measure_graph

    m, n, k = SHAPE
    dt = torch.bfloat16
    dy, wd, g, u, cfg = _inputs()
    common = dict(activation="silu", alpha=1.702, limit=7.0)
    outs = tuple(torch.empty(m, n, device="cuda", dtype=dt) for _ in range(3))
    calls, checks = {}, {}
    calls["cublas"] = lambda: torch.mm(dy, wd)
    committed = lambda: ws_mlp.mlp_backward_ws(dy, wd, g, u, *outs, config=cfg, **common)
    calls["committed"] = committed
    c = torch.zeros(m, n, device="cuda", dtype=dt)
    calls["store dh"] = S50._launcher("pp128", dy, wd, None, c)
    calls["store dh"]()
    dh = torch.mm(dy, wd)  # the product as cuBLAS rounds it, for the trivial epilogue
    checks["store dh"] = _check(c, dh.double())
    del c
    # silu against float64 (h, dg, du), as the committed kernel is checked
    dh64 = dy.double() @ wd.double()
    h64 = reference.glu_forward(g.double(), u.double(), "silu", 1.702, 7.0)
    dg64, du64 = reference.glu_backward(g.double(), u.double(), dh64, "silu", 1.702, 7.0)
    silu_ref = (h64, dg64, du64)
    del dh64
    committed()
    torch.cuda.synchronize()
    checks["committed"] = max(_check(o, e) for o, e in zip(outs, silu_ref, strict=True))
    trivial_ref = (g.double() * u.double(), dh.double() * u.double(), dh.double() * g.double())
    for name in names:
        math, loads, stores, *hint = VARIANTS.get(name, ("silu", True, True))
        try:
            if name in CFG_VARIANTS:
                over = CFG_VARIANTS[name]
                c = over if ("HANDOFF" in over or "MERGED" in over) else dict(cfg, **over)
                calls[name] = (lambda c=c: ws_mlp.mlp_backward_ws(dy, wd, g, u, *outs, config=c,
                                                                  **common))  # fmt: skip
            else:
                make = _launcher if name in VARIANTS else _tma_launcher
                calls[name] = make(name, dy, wd, g, u, outs)
            for o in outs:
                o.fill_(float("nan"))
            calls[name]()
            torch.cuda.synchronize()
        except Exception as e:  # a variant that does not launch is reported, the rest go on
            checks[name] = f"{type(e).__name__}: {str(e)[:200]}"
            calls.pop(name, None)
            continue
        if not stores:
            checks[name] = "untouched" if all(o.isnan().all() for o in outs) else "wrote!"
        elif not loads:
            checks[name] = "zeros" if all((o == 0).all() for o in outs) else "not zeros!"
        elif hint == ["noh"]:  # dg and du checked, h left as it was
            err = max(_check(o, e) for o, e in zip(outs[1:], silu_ref[1:], strict=True))
            checks[name] = err if outs[0].isnan().all() else "wrote h!"
        else:
            ref = silu_ref if math == "silu" else trivial_ref
            checks[name] = max(_check(o, e) for o, e in zip(outs, ref, strict=True))
    del silu_ref, trivial_ref, h64, dg64, du64
    ok = {lb: (isinstance(v, float) and v <= 0.01) or v in ("untouched", "zeros")
          for lb, v in checks.items()}  # fmt: skip
    ok["cublas"] = True
    timed = [lb for lb in calls if ok.get(lb)]
    sustained = {}
    with torch.cuda.stream(torch.cuda.Stream()):  # measure_graph captures on a side stream
        rounds = interleaved_rounds(timed, lambda lb: measure_graph(calls[lb], SETTLE_MS), ROUNDS)
        sampler = _Sampler()
        try:
            time.sleep(0.5)
            for lb in timed:
                sustained[lb] = _sustain(calls[lb], sampler)
                time.sleep(0.3)
        finally:
            sampler.stop()
    ms = {lb: [t.median_ms if not isinstance(t, Exception) else repr(t) for t in ts]
          for lb, ts in rounds.items()}  # fmt: skip
    med = {lb: sorted(x for x in t if isinstance(x, float))[len(t) // 2] for lb, t in ms.items()
           if all(isinstance(x, float) for x in t)}  # fmt: skip
    flops = 2 * m * n * k
    rows = dict(shape=SHAPE, consts=CONSTS, variants=VARIANTS, tma_variants=TMA_VARIANTS,
                cfg_variants=CFG_VARIANTS, part=PART, committed_config=cfg, checks=checks,
                ms=ms, sustained=sustained, smi=sampler.rows)  # fmt: skip
    (out / f"{mode}.json").write_text(json.dumps(rows, indent=1, default=str))
    lines = []
    base = sustained.get("cublas", {})
    for lb in calls:
        s = sustained.get(lb, {})
        if lb in med and s.get("mhz"):
            cyc = (s["ms_per_call"] * s["mhz"]) / (base["ms_per_call"] * base["mhz"])
            lines.append(f"{mode} {lb:16s} {med[lb]:6.3f} ms {flops / med[lb] / 1e9:4.0f} TF "
                         f"{med['cublas'] / med[lb]:.3f} of cuBLAS, rounds "
                         f"{min(ms[lb]):.3f}-{max(ms[lb]):.3f}; sustained "
                         f"{s['ms_per_call']:.3f} ms {s['mhz']:.0f} MHz {s['watts']:.0f} W "
                         f"cycles x{cyc:.3f} of cuBLAS; check {checks.get(lb)}")  # fmt: skip
        elif lb in med:
            lines.append(f"{mode} {lb:16s} {med[lb]:6.3f} ms, no clock samples; "
                         f"check {checks.get(lb)}")  # fmt: skip
        else:
            lines.append(f"{mode} {lb:16s} not timed: check {checks.get(lb)} {ms.get(lb)}")
        print(lines[-1], flush=True)
    return lines


NCU_LABELS = ("committed", "store dh", "silu", "silu none", "trivial", "trivial none")


def ncu_launches(out: Path | None) -> list[str]:
    """One launch of each of NCU_LABELS between ``cudaProfilerStart`` and ``Stop`` (each
    compiled and run twice before), for Nsight Compute with ``--profile-from-start off``;
    prints the labels in launch order."""
    m, n, _ = SHAPE
    dy, wd, g, u, cfg = _inputs()
    outs = tuple(torch.empty(m, n, device="cuda", dtype=dy.dtype) for _ in range(3))
    common = dict(config=cfg, activation="silu", alpha=1.702, limit=7.0)
    calls = {
        "committed": lambda: ws_mlp.mlp_backward_ws(dy, wd, g, u, *outs, **common),
        "store dh": S50._launcher("pp128", dy, wd, None, outs[0]),
    }
    for name in NCU_LABELS[2:]:
        calls[name] = _launcher(name, dy, wd, g, u, outs)
    for call in calls.values():
        call()
        call()
    torch.cuda.synchronize()
    lines = []
    torch.cuda.profiler.start()
    for label in NCU_LABELS:
        lines.append(f"launch: {label}")
        print(lines[-1], flush=True)
        calls[label]()
        torch.cuda.synchronize()
    torch.cuda.profiler.stop()
    return lines


def ncu_read(src: Path) -> list[str]:
    """From Nsight Compute's source page (``--page source --csv --print-source sass``, one
    block a kernel, in NCU_LABELS order; gzip or plain): per kernel the warp-stall samples, the
    largest stall reasons, and the samples spent spinning on each mbarrier (each
    ``SYNCS.PHASECHK`` try-wait with its retry branch, grouped by the barrier's shared-memory
    offset). In these kernels 0x31000 is the ring's ``ready`` barriers (a consumer waiting for
    TMA data), 0x31030 ``empty`` (the loader waiting for a free slot), 0x31060 / 0x31068 the
    consumers' ``turn`` barriers (a consumer waiting for the other's main loop to finish)."""
    import collections
    import csv
    import gzip
    import re

    opener = gzip.open if src.suffix == ".gz" else open
    with opener(src, "rt") as f:
        rows = list(csv.reader(f))
    kernels, header = [], None
    for r in rows:
        if r and r[0] == "Kernel Name":
            kernels.append((r[1], []))
            header = None
        elif r and r[0] == "Address":
            header = r
        elif header and r:
            kernels[-1][1].append(dict(zip(header, r, strict=False)))
    samples = "Warp Stall Sampling (All Samples)"
    wait = re.compile(r"SYNCS\.PHASECHK\.TRANS64\.TRYWAIT P(\d+), \[[^\]]*?(0x[0-9a-f]+)\]")
    lines = []
    for label, (name, ins) in zip(NCU_LABELS, kernels, strict=False):
        total = sum(int(i[samples]) for i in ins)
        reasons = collections.Counter()
        for i in ins:
            for col, v in i.items():
                if col.startswith("stall_") and "Not Issued" not in col:
                    reasons[col[6:]] += int(v or 0)
        spins = collections.Counter()
        for j, i in enumerate(ins):
            m = wait.search(i["Source"])
            if not m:
                continue
            pred, off = m.groups()
            n = int(i[samples])
            for nxt in ins[j + 1 : j + 16]:  # the retry branch on the same predicate
                if re.search(rf"@!P{pred}\s+BRA", nxt["Source"]):
                    n += int(nxt[samples])
                    break
            spins[off] += n
        top = ", ".join(f"{r} {v / total:.1%}" for r, v in reasons.most_common(5))
        waits = ", ".join(f"{off} {v / total:.1%}" for off, v in sorted(spins.items()))
        lines.append(f"{label:13s} {name}: {total} samples; {top}; barrier spins: {waits}")
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "mode",
        choices=(
            "gate",
            "epi",
            "tma",
            "hints",
            "noh",
            "configs",
            "gutma",
            "guasync",
            "ncu",
            "ncu-read",
        ),
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument("--src", type=Path, help="ncu-read: the source page CSV (.gz)")
    args = parser.parse_args()
    if args.mode == "ncu-read":
        lines = ncu_read(args.src)
        if args.out is not None:
            args.out.write_text("\n".join(lines) + "\n")
        return
    if args.out is None and args.mode not in ("gate", "ncu"):
        parser.error("--out DIR is required")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    modes = {
        "gate": gate,
        "epi": epi,
        "tma": tma_modes,
        "hints": hints,
        "noh": noh,
        "configs": configs,
        "gutma": gu_tma,
        "guasync": gu_async,
        "ncu": ncu_launches,
    }
    lines = modes[args.mode](args.out)
    if args.out is not None:
        (args.out / f"summary_{args.mode}.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

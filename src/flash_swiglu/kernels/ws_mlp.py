"""Warp-specialized (Gluon) kernels for Hopper: the MLP backward ``dh = dy @ w_down`` with the
GLU derivative in the epilogue, and the gate/up forward ``h = act(x Wg^T) * (x Wu^T)`` (below).

Why: the Triton kernel of ``kernels/mlp.py`` runs its main loop at about cuBLAS's rate, but its
epilogue (read g and u, write h, dg and du: five ``[M, N]`` tiles, 160 KB per 128x128 tile)
stalls the tensor cores for about a fifth of the kernel. Here one persistent program per SM
holds three roles (``gl.warp_specialize``):

    loader      4 warps (the default partition, registers given up to the consumers): TMA
                loads of dy and w_down tiles, tiles in the program's persistent order, into
                one ring of STAGES slots, one mbarrier pair (ready / empty) per slot
    consumer 0  4 warps, CONSUMER_REGS registers: the wgmma main loop of the program's
                even tiles, then their epilogue
    consumer 1  the same for the odd tiles

The consumers take turns through the ring (mbarrier pair ``turn``): a consumer starts its
main loop once the other has finished issuing its own, so their main loops alternate and
each epilogue overlaps the other consumer's main loop ("ping-pong"). The turns also keep
every parity wait at most one ring pass ahead of the barrier it waits on (a consumer that
waited on its own tiles' ring positions independently would look two or more passes ahead
when a tile takes STAGES steps or more, where a parity cannot tell phases apart). Each
consumer owns a whole ``[BLOCK_M, BLOCK_N]`` fp32 accumulator (128 registers per thread at
128x128) and runs its epilogue on EPILOGUE_SPLIT column parts; with COALESCE each part moves
through shared memory to a layout of 16-byte vectors before its loads and stores (on the
wgmma layout they are 4-byte accesses, and the epilogue was slower than the Triton kernel's);
PREFETCH parts of g and u can be loaded before the main loop. The forward's COALESCE_OUT
(session 37) moves h alone, in its storage dtype, after the activation, where g and u are
not stored; timed in session 38, it was no faster (docs/projection.md), so no table sets it.

COOP (the cooperative schedule, both kernels): no turns; both consumers run every tile of
the program, each on its own BLOCK_M / 2 rows of the ring's A tile, and a slot is free once
both have released it (``empty`` counts two arrivals). With BLOCK_N 256 a B tile then feeds
twice the products of ping-pong's 128-wide tiles (half the operand traffic per FLOP from B),
but the epilogues no longer overlap a main loop: the forward's light epilogue gains
(``configs/h200_linear.json``, ``ws``), the backward's heavy one loses (1.67-1.80 ms against
1.61 for ping-pong at the 8B shape, session 6).

Two more backward kernels share the consumers' cooperative main loop and hand dh, rounded to
the storage dtype, through shared memory: the hand-off kernel (``mlp_backward_handoff``, a
fourth partition runs the epilogue; 128 x 128 tiles, sixteen warps) and the merged one
(``mlp_backward_merged_kernel``, session 39: the loader's partition runs the epilogue between
its loads; 128 x 256 tiles, twelve warps). Both are options of ``mlp_backward_ws`` entries
(``HANDOFF`` / ``MERGED``); their sections below say why and what they measured. The forward
has a merged kernel too (``glu_forward_merged_kernel``, session 40: the consumers hand gate and
up, rounded to the storage dtype, to the loader's partition, which applies the activation and
stores h between its loads); the launch table's shape-wide ``ws`` entries run it (``MERGED``).

Semantics match ``_glu_gemm_kernel`` in the mode HAS_DY, BACKWARD, STORE_H (not HAS_X): read
g and u ``[M, N]``, write h = act(g) * u, dg and du (dg / du may alias g / u: each element
is read and written by the same thread, read first). The K loop accumulates in the same
order as the Triton kernel's (BLOCK_K steps, fp32), and the gradients measured bit-identical.
Gluon does not run in Triton's interpreter: CPU tests compile it for sm_90
(``tests/compile_gate_ws.py``); its numerics are tested on the GPU (``tests/test_ws_mlp.py``).
"""

import functools

import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (
    fence_async_shared,
    mbarrier,
    tma,
    warpgroup_mma,
    warpgroup_mma_wait,
)

from flash_swiglu.activations import glu_backward, glu_forward
from flash_swiglu.kernels.linear import _grouped_tile, _tile_start  # plain Triton: scalar math
from flash_swiglu.ops import _launch
from flash_swiglu.ops._common import bind_cuda_context
from flash_swiglu.ops.linear import ENABLE_FP_FUSION, WS_MERGED, _num_sms

# The TMA load is ``async_copy_global_to_shared`` in Triton 3.6 and ``async_load`` from 3.7 on
# (where the old name raises).
_tma_load = getattr(tma, "async_load", None) or tma.async_copy_global_to_shared


@gluon.constexpr_function
def _acc_layout(BLOCK_M, BLOCK_N):
    """wgmma accumulator layout of one warpgroup (4 warps stacked along M, n = BLOCK_N)."""
    return gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BLOCK_N, 16]
    )


@gluon.constexpr_function
def _coalesced_layout(BLOCK_M, WIDTH, WARPS=4):
    """Rows of 16-byte vectors (8 16-bit elements) per thread, a warp across the part's
    width: full-line loads and stores in the epilogue (the wgmma layout gives 4-byte ones).
    WARPS warps stacked along the rows."""
    vec = min(8, WIDTH)
    across = min(WIDTH // vec, 32)
    return gl.BlockedLayout(
        size_per_thread=[1, vec], threads_per_warp=[32 // across, across],
        warps_per_cta=[WARPS, 1], order=[1, 0],
    )  # fmt: skip


@gluon.jit
def _claim_slot(ready, empty, count, STAGES: gl.constexpr, nbytes: gl.constexpr):
    """The loader's ring position ``count``: wait until its slot is free, then arm the slot's
    ``ready`` barrier for ``nbytes``. Returns the slot and that barrier. The first pass over
    the ring finds every slot free (it waits on the parity opposite to the consumers')."""
    slot = count % STAGES
    mbarrier.wait(empty.index(slot), ((count // STAGES) & 1) ^ 1)
    bar = ready.index(slot)
    mbarrier.expect(bar, nbytes)
    return slot, bar


@gluon.jit
def _loader(dy_desc, wd_desc, a_ring, b_ring, ready, empty, M, N, K,
            GROUP_M: gl.constexpr, STAGES: gl.constexpr):  # fmt: skip
    BLOCK_M: gl.constexpr = dy_desc.block_type.shape[0]
    BLOCK_K: gl.constexpr = dy_desc.block_type.shape[1]
    BLOCK_N: gl.constexpr = wd_desc.block_type.shape[1]
    num_pid_m = gl.cdiv(M, BLOCK_M)
    num_pid_n = gl.cdiv(N, BLOCK_N)
    num_tiles = num_pid_m * num_pid_n
    k_steps = gl.cdiv(K, BLOCK_K)
    nbytes: gl.constexpr = dy_desc.block_type.nbytes + wd_desc.block_type.nbytes
    count = 0
    for t in range(gl.program_id(0), num_tiles, gl.num_programs(0)):
        pid_m, pid_n = _grouped_tile(t, num_pid_m, num_pid_n, GROUP_M)
        off_m = pid_m * BLOCK_M
        off_n = pid_n * BLOCK_N
        for ks in range(k_steps):
            slot, bar = _claim_slot(ready, empty, count, STAGES, nbytes)
            _tma_load(dy_desc, [off_m, ks * BLOCK_K], bar, a_ring.index(slot))
            _tma_load(wd_desc, [ks * BLOCK_K, off_n], bar, b_ring.index(slot))
            count += 1


@gluon.jit
def _split_columns(x, PARTS: gl.constexpr):
    """``x`` [BM, BN] as PARTS column blocks, left to right (PARTS a power of two).
    Register-local for the wgmma layout: a thread holds columns c and c + BN/2 alike."""
    parts = (x,)
    for _ in gl.static_range(PARTS.bit_length() - 1):
        halves = ()
        for j in gl.static_range(len(parts)):
            p = parts[j]
            halves += p.reshape(p.shape[0], 2, p.shape[1] // 2).permute(0, 2, 1).split()
        parts = halves
    return parts


@gluon.jit
def _part_probe(layout: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
                PARTS: gl.constexpr, COALESCE: gl.constexpr):  # fmt: skip
    """A (dead) tensor in the layout of one epilogue part: the coalesced layout, or that of a
    split of the wgmma accumulator (whose layout only the split itself can tell)."""
    if COALESCE:
        probe = gl.zeros((BLOCK_M, BLOCK_N // PARTS), gl.float32,
                         _coalesced_layout(BLOCK_M, BLOCK_N // PARTS))  # fmt: skip
    else:
        probe = _split_columns(gl.zeros((BLOCK_M, BLOCK_N), gl.float32, layout), PARTS)[0]
    return probe


@gluon.jit
def _gu_part(g_ptr, u_ptr, stride_g, stride_u, off_m, off_n, M, N, i,
             LAYOUT: gl.constexpr, BLOCK_M: gl.constexpr, WIDTH: gl.constexpr):  # fmt: skip
    """g and u (storage dtype) of column part ``i`` of the tile at (off_m, off_n)."""
    rows = off_m + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, LAYOUT))
    cols = off_n + i * WIDTH + gl.arange(0, WIDTH, layout=gl.SliceLayout(0, LAYOUT))
    mask = (rows < M)[:, None] & (cols < N)[None, :]
    r64 = rows.to(gl.int64)[:, None]
    g = gl.load(g_ptr + (r64 * stride_g + cols[None, :]), mask=mask)
    u = gl.load(u_ptr + (r64 * stride_u + cols[None, :]), mask=mask)
    return g, u


@gluon.jit
def _epilogue(acc, gu, off_m, off_n, g_ptr, u_ptr, h_ptr, dg_ptr, du_ptr, stride_g, stride_u,
              stride_h, stride_dg, stride_du, M, N, ACTIVATION: gl.constexpr,
              ALPHA: gl.constexpr, LIMIT: gl.constexpr, PARTS: gl.constexpr,
              PREFETCH: gl.constexpr, COALESCE: gl.constexpr,
              layout: gl.constexpr):  # fmt: skip
    """``gu``: the (g, u) of the first PREFETCH parts, loaded before the main loop; each
    step loads the part PREFETCH ahead, so no part waits a full memory round trip. With
    COALESCE each part of dh moves to ``layout`` (through shared memory) for the memory
    accesses; otherwise ``layout`` is the parts' own."""
    BLOCK_M: gl.constexpr = acc.shape[0]
    WIDTH: gl.constexpr = acc.shape[1] // PARTS
    parts = _split_columns(acc, PARTS)
    for i in gl.static_range(PARTS):
        dh = parts[i]
        if COALESCE:
            dh = gl.convert_layout(dh, layout)
        if PREFETCH == 0:
            gu += (_gu_part(g_ptr, u_ptr, stride_g, stride_u, off_m, off_n, M, N, i,
                            layout, BLOCK_M, WIDTH),)  # fmt: skip
        elif i + PREFETCH < PARTS:
            gu += (_gu_part(g_ptr, u_ptr, stride_g, stride_u, off_m, off_n, M, N, i + PREFETCH,
                            layout, BLOCK_M, WIDTH),)  # fmt: skip
        _derivative_part(gu[i], dh, off_m, off_n + i * WIDTH, h_ptr, dg_ptr, du_ptr, stride_h,
                         stride_dg, stride_du, M, N, ACTIVATION, ALPHA, LIMIT,
                         layout)  # fmt: skip


@gluon.jit
def _derivative_part(gu, dh, row0, col0, h_ptr, dg_ptr, du_ptr, stride_h, stride_dg, stride_du,
                     M, N, ACTIVATION: gl.constexpr, ALPHA: gl.constexpr, LIMIT: gl.constexpr,
                     layout: gl.constexpr):  # fmt: skip
    """One epilogue part at (row0, col0), all in ``layout``: from ``gu`` = (g, u) in the
    storage dtype and dh, store h = act(g) * u and the GLU derivative (dg, du)."""
    g = gu[0].to(gl.float32)
    u = gu[1].to(gl.float32)
    rows = row0 + gl.arange(0, dh.shape[0], layout=gl.SliceLayout(1, layout))
    cols = col0 + gl.arange(0, dh.shape[1], layout=gl.SliceLayout(0, layout))
    mask = (rows < M)[:, None] & (cols < N)[None, :]
    r64 = rows.to(gl.int64)[:, None]
    c2 = cols[None, :]
    h = glu_forward(g, u, ACTIVATION, ALPHA, LIMIT)
    gl.store(h_ptr + (r64 * stride_h + c2), h.to(h_ptr.dtype.element_ty), mask=mask)
    dgate, dup = glu_backward(g, u, dh, ACTIVATION, ALPHA, LIMIT)
    gl.store(dg_ptr + (r64 * stride_dg + c2), dgate.to(dg_ptr.dtype.element_ty), mask=mask)
    gl.store(du_ptr + (r64 * stride_du + c2), dup.to(du_ptr.dtype.element_ty), mask=mask)


@gluon.jit
def _consumer_tiles(M, N, K, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
                    BLOCK_K: gl.constexpr, ROLE: gl.constexpr, COOP: gl.constexpr):  # fmt: skip
    """The tile grid, K steps per tile, and this consumer's share of the program's tiles:
    ``range(first, num_tiles, step)``: every other tile of the program, from ROLE (ping-pong),
    or every tile of the program (COOP: the two consumers share each tile). Also the ring
    position of this consumer's first K step (``count``), and the first of its rows within a
    tile (``row0``: with COOP, ROLE picks a half)."""
    num_pid_m = gl.cdiv(M, BLOCK_M)
    num_pid_n = gl.cdiv(N, BLOCK_N)
    k_steps = gl.cdiv(K, BLOCK_K)
    if COOP:
        first = gl.program_id(0)
        step = gl.num_programs(0)
    else:
        first = gl.program_id(0) + ROLE * gl.num_programs(0)
        step = 2 * gl.num_programs(0)
    count = ROLE * k_steps * (1 - COOP)
    row0 = ROLE * (BLOCK_M // 2) * COOP
    return num_pid_m, num_pid_n, num_pid_m * num_pid_n, k_steps, first, step, count, row0


@gluon.jit
def _main_loop(a_ring, b_ring, ready, empty, turn, count, i, k_steps, layout: gl.constexpr,
               BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, STAGES: gl.constexpr,
               ROLE: gl.constexpr, B_KMAJOR: gl.constexpr, COOP: gl.constexpr):  # fmt: skip
    """One consumer's K loop over its ``i``-th tile, from ring position ``count``: wait for its
    turn, wgmma over the ring's slots (at most one in flight, each slot released as soon as
    its product is done), hand the turn over. ``B_KMAJOR``: the ring's B tiles are
    ``[BLOCK_N, BLOCK_K]`` rows of an ``nn.Linear`` weight (else ``[BLOCK_K, BLOCK_N]``).
    With COOP there are no turns: both consumers run every tile, each on its own BLOCK_M
    rows of the ring's A tiles (ROLE picks the half), and a slot is free once both have
    released it (``empty`` counts two arrivals).
    Returns the accumulator and the ring position of this consumer's next tile (with
    ping-pong the other consumer's tile comes between)."""
    if not COOP:
        mbarrier.wait(turn.index(ROLE), (i & 1) ^ (1 - ROLE))
    acc = gl.zeros((BLOCK_M, BLOCK_N), gl.float32, layout)
    for ks in range(k_steps):
        slot = count % STAGES
        mbarrier.wait(ready.index(slot), (count // STAGES) & 1)
        if B_KMAJOR:
            b = b_ring.index(slot).permute((1, 0))
        else:
            b = b_ring.index(slot)
        if COOP:
            a = a_ring.index(slot).slice(ROLE * BLOCK_M, BLOCK_M)
        else:
            a = a_ring.index(slot)
        acc = warpgroup_mma(a, b, acc, is_async=True)
        # At most one wgmma in flight: the previous step's slot is free again.
        acc = warpgroup_mma_wait(1, deps=(acc,))
        mbarrier.arrive(empty.index((count + STAGES - 1) % STAGES), pred=ks > 0)
        count += 1
    if not COOP:
        mbarrier.arrive(turn.index(1 - ROLE))
    acc = warpgroup_mma_wait(0, deps=(acc,))
    mbarrier.arrive(empty.index((count + STAGES - 1) % STAGES))
    return acc, count + k_steps * (1 - COOP)


@gluon.jit
def _consumer(dy_desc, wd_desc, a_ring, b_ring, ready, empty, turn, g_ptr, u_ptr, h_ptr,
              dg_ptr, du_ptr, stride_g, stride_u, stride_h, stride_dg, stride_du, M, N, K,
              ACTIVATION: gl.constexpr, ALPHA: gl.constexpr, LIMIT: gl.constexpr,
              GROUP_M: gl.constexpr, STAGES: gl.constexpr, EPILOGUE_SPLIT: gl.constexpr,
              PREFETCH: gl.constexpr, COALESCE: gl.constexpr, ROLE: gl.constexpr,
              COOP: gl.constexpr):  # fmt: skip
    BLOCK_M: gl.constexpr = dy_desc.block_type.shape[0]
    BLOCK_K: gl.constexpr = dy_desc.block_type.shape[1]
    BLOCK_N: gl.constexpr = wd_desc.block_type.shape[1]
    SUB_M: gl.constexpr = BLOCK_M // (1 + COOP)  # this consumer's rows of a tile
    WIDTH: gl.constexpr = BLOCK_N // EPILOGUE_SPLIT
    layout: gl.constexpr = _acc_layout(SUB_M, BLOCK_N)
    part_layout: gl.constexpr = _part_probe(layout, SUB_M, BLOCK_N, EPILOGUE_SPLIT,
                                            COALESCE).type.layout  # fmt: skip
    num_pid_m, num_pid_n, num_tiles, k_steps, first, step, count, row0 = _consumer_tiles(
        M, N, K, BLOCK_M, BLOCK_N, BLOCK_K, ROLE, COOP)  # fmt: skip
    # This consumer takes every other tile of the program's sequence, starting at ROLE. The
    # two take turns through the shared ring (barriers ``turn``): a consumer waits on a slot
    # only once the other has waited on that slot's previous fill, so that a parity wait
    # never looks two ring passes ahead, and the main loops alternate (ping-pong).
    for t in range(first, num_tiles, step):
        i = (t - first) // step  # this consumer's tile count
        pid_m, pid_n = _grouped_tile(t, num_pid_m, num_pid_n, GROUP_M)
        off_m = pid_m * BLOCK_M + row0
        off_n = pid_n * BLOCK_N
        gu = ()
        for p in gl.static_range(PREFETCH):  # before the main loop: loads overlap it
            gu += (_gu_part(g_ptr, u_ptr, stride_g, stride_u, off_m, off_n, M, N, p,
                            part_layout, SUB_M, WIDTH),)  # fmt: skip
        acc, count = _main_loop(a_ring, b_ring, ready, empty, turn, count, i, k_steps, layout,
                                SUB_M, BLOCK_N, STAGES, ROLE, False, COOP)  # fmt: skip
        _epilogue(acc, gu, off_m, off_n, g_ptr, u_ptr, h_ptr, dg_ptr, du_ptr, stride_g,
                  stride_u, stride_h, stride_dg, stride_du, M, N, ACTIVATION, ALPHA, LIMIT,
                  EPILOGUE_SPLIT, PREFETCH, COALESCE, part_layout)  # fmt: skip


@gluon.jit
def _ring_barriers(STAGES: gl.constexpr, COOP: gl.constexpr):
    """The barriers of a kernel whose two consumers share one ring (``mlp_backward_ws_kernel``,
    ``glu_forward_ws_kernel``), initialized: ``ready`` / ``empty`` per slot (with COOP a slot
    is free once both consumers released it) and the consumers' two ``turn`` barriers."""
    ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    turn = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    for i in gl.static_range(STAGES):
        mbarrier.init(ready.index(i), count=1)
        mbarrier.init(empty.index(i), count=1 + COOP)
    for i in gl.static_range(2):
        mbarrier.init(turn.index(i), count=1)
    return ready, empty, turn


@gluon.jit
def mlp_backward_ws_kernel(dy_desc, wd_desc, g_ptr, u_ptr, h_ptr, dg_ptr, du_ptr, stride_g,
                           stride_u, stride_h, stride_dg, stride_du, M, N, K,
                           ACTIVATION: gl.constexpr, ALPHA: gl.constexpr, LIMIT: gl.constexpr,
                           GROUP_M: gl.constexpr, STAGES: gl.constexpr,
                           EPILOGUE_SPLIT: gl.constexpr, PREFETCH: gl.constexpr,
                           COALESCE: gl.constexpr, CONSUMER_REGS: gl.constexpr,
                           COOP: gl.constexpr):  # fmt: skip
    dtype: gl.constexpr = dy_desc.dtype
    a_shape: gl.constexpr = [STAGES] + dy_desc.block_type.shape  # noqa: RUF005
    b_shape: gl.constexpr = [STAGES] + wd_desc.block_type.shape  # noqa: RUF005
    a_ring = gl.allocate_shared_memory(dtype, a_shape, dy_desc.layout)
    b_ring = gl.allocate_shared_memory(dtype, b_shape, wd_desc.layout)
    ready, empty, turn = _ring_barriers(STAGES, COOP)
    # fmt: off
    gl.warp_specialize(
        [
            (_loader, (dy_desc, wd_desc, a_ring, b_ring, ready, empty, M, N, K, GROUP_M,
                       STAGES)),
            (_consumer, (dy_desc, wd_desc, a_ring, b_ring, ready, empty, turn, g_ptr, u_ptr,
                         h_ptr, dg_ptr, du_ptr, stride_g, stride_u, stride_h, stride_dg,
                         stride_du, M, N, K, ACTIVATION, ALPHA, LIMIT, GROUP_M, STAGES,
                         EPILOGUE_SPLIT, PREFETCH, COALESCE, 0, COOP)),
            (_consumer, (dy_desc, wd_desc, a_ring, b_ring, ready, empty, turn, g_ptr, u_ptr,
                         h_ptr, dg_ptr, du_ptr, stride_g, stride_u, stride_h, stride_dg,
                         stride_du, M, N, K, ACTIVATION, ALPHA, LIMIT, GROUP_M, STAGES,
                         EPILOGUE_SPLIT, PREFETCH, COALESCE, 1, COOP)),
        ],
        [4, 4],
        [CONSUMER_REGS, CONSUMER_REGS],
    )
    # fmt: on


# ----------------------------------------------------------------------------------------
# Backward with a hand-off: the cooperative main loop, and the epilogue in a partition of its own
# ----------------------------------------------------------------------------------------
# In ping-pong a consumer's epilogue (g and u loaded, h, dg and du stored, the derivative's
# arithmetic) runs on the warps that issue the other tile's wgmma only by taking turns; with
# COOP it stops the tensor cores. Here the two consumers run the cooperative main loop and
# hand dh over through shared memory, rounded to the storage dtype (as eager's
# ``dy @ w_down`` rounds it), to a fourth partition that runs the epilogue while they start
# the next tile:
#
#     loader      the default partition, as above
#     consumer r  the wgmma K loop over rows [64 r, 64 r + 64) of the program's every tile; then
#                 wait until the epilogue has released ``dh_smem`` (``dh_empty``), store its
#                 dh rows there in PARTS column pieces, arrive on ``dh_full`` (two arrivals)
#     epilogue    EPILOGUE_WARPS warps: wait on ``dh_full``; per piece, g and u loaded one
#                 piece ahead, h, dg and du stored (16-byte accesses); arrive on ``dh_empty``
#
# Shared memory at 128 x 128 x 64 tiles: STAGES x 32 KB of ring plus 32 KB of dh.


@gluon.jit
def _handoff_consumer(dy_desc, wd_desc, a_ring, b_ring, ready, empty, dh_smem, dh_full,
                      dh_empty, M, N, K, PARTS: gl.constexpr, STAGES: gl.constexpr,
                      ROLE: gl.constexpr):  # fmt: skip
    BLOCK_M: gl.constexpr = dy_desc.block_type.shape[0]
    BLOCK_K: gl.constexpr = dy_desc.block_type.shape[1]
    BLOCK_N: gl.constexpr = wd_desc.block_type.shape[1]
    SUB_M: gl.constexpr = BLOCK_M // 2
    layout: gl.constexpr = _acc_layout(SUB_M, BLOCK_N)
    _, _, num_tiles, k_steps, first, step, count, _ = _consumer_tiles(
        M, N, K, BLOCK_M, BLOCK_N, BLOCK_K, ROLE, True)  # fmt: skip
    for t in range(first, num_tiles, step):
        i = (t - first) // step
        # COOP: no turns (the ``turn`` argument is not read).
        acc, count = _main_loop(a_ring, b_ring, ready, empty, ready, count, i, k_steps, layout,
                                SUB_M, BLOCK_N, STAGES, ROLE, False, True)  # fmt: skip
        parts = _split_columns(acc, PARTS)
        mbarrier.wait(dh_empty, (i & 1) ^ 1)  # the first tile finds the buffer free
        for p in gl.static_range(PARTS):
            dh_smem.index(ROLE * PARTS + p).store(parts[p].to(dh_smem.dtype))
        fence_async_shared()
        mbarrier.arrive(dh_full)


@gluon.jit
def _handoff_epilogue(dy_desc, wd_desc, dh_smem, dh_full, dh_empty, g_ptr, u_ptr, h_ptr,
                      dg_ptr, du_ptr, stride_g, stride_u, stride_h, stride_dg, stride_du, M, N,
                      ACTIVATION: gl.constexpr, ALPHA: gl.constexpr, LIMIT: gl.constexpr,
                      GROUP_M: gl.constexpr, PARTS: gl.constexpr,
                      WARPS: gl.constexpr):  # fmt: skip
    BLOCK_M: gl.constexpr = dy_desc.block_type.shape[0]
    BLOCK_N: gl.constexpr = wd_desc.block_type.shape[1]
    SUB_M: gl.constexpr = BLOCK_M // 2
    WIDTH: gl.constexpr = BLOCK_N // PARTS
    PIECES: gl.constexpr = 2 * PARTS
    layout: gl.constexpr = _coalesced_layout(SUB_M, WIDTH, WARPS)
    num_pid_m = gl.cdiv(M, BLOCK_M)
    num_pid_n = gl.cdiv(N, BLOCK_N)
    num_tiles = num_pid_m * num_pid_n
    first = gl.program_id(0)
    step = gl.num_programs(0)
    for t in range(first, num_tiles, step):
        i = (t - first) // step
        pid_m, pid_n = _grouped_tile(t, num_pid_m, num_pid_n, GROUP_M)
        off_n = pid_n * BLOCK_N
        # Piece q: the rows of consumer q % 2, column part q // 2; g and u loaded one piece
        # ahead. The row halves alternate so that no store goes to a 128-byte line whose
        # load is still in flight: with dg over g, ordering pieces by column part (piece q + 1
        # in the line piece q is stored to) took 4.3 ms against 1.55 without aliasing.
        gu = (_gu_part(g_ptr, u_ptr, stride_g, stride_u, pid_m * BLOCK_M, off_n, M, N, 0,
                       layout, SUB_M, WIDTH),)  # fmt: skip
        mbarrier.wait(dh_full, i & 1)
        for q in gl.static_range(PIECES):
            if q + 1 < PIECES:
                gu += (_gu_part(g_ptr, u_ptr, stride_g, stride_u,
                                pid_m * BLOCK_M + ((q + 1) % 2) * SUB_M, off_n, M, N,
                                (q + 1) // 2, layout, SUB_M, WIDTH),)  # fmt: skip
            dh = dh_smem.index((q % 2) * PARTS + q // 2).load(layout).to(gl.float32)
            _derivative_part(gu[q], dh, pid_m * BLOCK_M + (q % 2) * SUB_M,
                             off_n + (q // 2) * WIDTH, h_ptr, dg_ptr, du_ptr, stride_h,
                             stride_dg, stride_du, M, N, ACTIVATION, ALPHA, LIMIT,
                             layout)  # fmt: skip
        mbarrier.arrive(dh_empty)


@gluon.jit
def _handoff_buffers(dy_desc, wd_desc, STAGES: gl.constexpr, PARTS: gl.constexpr,
                     DH_FP32: gl.constexpr):  # fmt: skip
    """Shared memory of the kernels that hand dh over (hand-off, merged): the ring of STAGES
    dy / w_down tiles, dh as 2 x PARTS pieces of [BLOCK_M / 2, BLOCK_N / PARTS] (consumer r's
    rows in pieces r * PARTS ...; fp32 with DH_FP32, else the storage dtype), and the
    barriers: ``ready`` / ``empty`` per slot (a slot is free once both consumers released
    it), ``dh_full`` (both consumers stored their rows) and ``dh_empty`` (the epilogue read
    them), initialized."""
    dtype: gl.constexpr = dy_desc.dtype
    dh_dtype: gl.constexpr = gl.float32 if DH_FP32 else dtype
    BLOCK_M: gl.constexpr = dy_desc.block_type.shape[0]
    BLOCK_N: gl.constexpr = wd_desc.block_type.shape[1]
    WIDTH: gl.constexpr = BLOCK_N // PARTS
    a_shape: gl.constexpr = [STAGES] + dy_desc.block_type.shape  # noqa: RUF005
    b_shape: gl.constexpr = [STAGES] + wd_desc.block_type.shape  # noqa: RUF005
    a_ring = gl.allocate_shared_memory(dtype, a_shape, dy_desc.layout)
    b_ring = gl.allocate_shared_memory(dtype, b_shape, wd_desc.layout)
    dh_layout: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BLOCK_M // 2, WIDTH],
                                                                   dh_dtype)  # fmt: skip
    dh_smem = gl.allocate_shared_memory(dh_dtype, [2 * PARTS, BLOCK_M // 2, WIDTH], dh_layout)
    ready, empty, dh_full, dh_empty = _handoff_barriers(STAGES)
    return a_ring, b_ring, dh_smem, ready, empty, dh_full, dh_empty


@gluon.jit
def _handoff_barriers(STAGES: gl.constexpr):
    """The barriers of a kernel whose two cooperative consumers hand a tile over through
    shared memory (the hand-off and merged kernels), initialized: ``ready`` / ``empty`` per
    ring slot (a slot is free once both consumers released it), ``full`` (both consumers
    stored their rows) and ``empty`` of the hand-over buffer (its reader is done)."""
    ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    full = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    released = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    for i in gl.static_range(STAGES):
        mbarrier.init(ready.index(i), count=1)
        mbarrier.init(empty.index(i), count=2)
    mbarrier.init(full, count=2)
    mbarrier.init(released, count=1)
    return ready, empty, full, released


@gluon.jit
def mlp_backward_handoff_kernel(dy_desc, wd_desc, g_ptr, u_ptr, h_ptr, dg_ptr, du_ptr,
                                stride_g, stride_u, stride_h, stride_dg, stride_du, M, N, K,
                                ACTIVATION: gl.constexpr, ALPHA: gl.constexpr,
                                LIMIT: gl.constexpr, GROUP_M: gl.constexpr,
                                STAGES: gl.constexpr, EPILOGUE_SPLIT: gl.constexpr,
                                CONSUMER_REGS: gl.constexpr, EPILOGUE_REGS: gl.constexpr,
                                EPILOGUE_WARPS: gl.constexpr,
                                DH_FP32: gl.constexpr):  # fmt: skip
    a_ring, b_ring, dh_smem, ready, empty, dh_full, dh_empty = _handoff_buffers(
        dy_desc, wd_desc, STAGES, EPILOGUE_SPLIT, DH_FP32)  # fmt: skip
    # fmt: off
    gl.warp_specialize(
        [
            (_loader, (dy_desc, wd_desc, a_ring, b_ring, ready, empty, M, N, K, GROUP_M,
                       STAGES)),
            (_handoff_consumer, (dy_desc, wd_desc, a_ring, b_ring, ready, empty, dh_smem,
                                 dh_full, dh_empty, M, N, K, EPILOGUE_SPLIT, STAGES, 0)),
            (_handoff_consumer, (dy_desc, wd_desc, a_ring, b_ring, ready, empty, dh_smem,
                                 dh_full, dh_empty, M, N, K, EPILOGUE_SPLIT, STAGES, 1)),
            (_handoff_epilogue, (dy_desc, wd_desc, dh_smem, dh_full, dh_empty, g_ptr, u_ptr,
                                 h_ptr, dg_ptr, du_ptr, stride_g, stride_u, stride_h,
                                 stride_dg, stride_du, M, N, ACTIVATION, ALPHA, LIMIT,
                                 GROUP_M, EPILOGUE_SPLIT, EPILOGUE_WARPS)),
        ],
        [4, 4, EPILOGUE_WARPS],
        [CONSUMER_REGS, CONSUMER_REGS, EPILOGUE_REGS],
    )
    # fmt: on


# ----------------------------------------------------------------------------------------
# Backward with a hand-off to the loader: 128 x 256 tiles in twelve warps (session 39)
# ----------------------------------------------------------------------------------------
# The hand-off kernel above needs sixteen warps (loader, two consumers, epilogue), so a thread
# holds at most 128 registers at launch and its tile stays at 128 x 128 (a consumer's 64 x 256
# accumulator needs 154 in ptxas; ``HANDOFF_CONFIG``). Here the loader's partition also runs the
# epilogue: twelve warps, 168 registers at launch, and the cooperative main loop on 128 x 256
# tiles (the forward's tile; 11.7 bytes of operands per kFLOP from L2 against 15.6 at 128 x 128).
#
#     loader      the default partition: while it issues tile t's TMA loads, one K step at a
#                 time, it runs tile t - 1's epilogue in 2 x PARTS pieces of [64, BLOCK_N /
#                 PARTS], one piece every EVERY steps from step LAG on (the rest after the
#                 loads, where K is short): g and u of the next piece loaded ahead, dh from
#                 ``dh_smem``, h, dg and du stored; then it arrives on ``dh_empty``
#     consumer r  as in the hand-off kernel (``_handoff_consumer``)
#
# A piece costs the loader time between two of its loads; the ring (STAGES slots) covers that
# while the pieces stay shorter than a K step of the consumers. Shared memory at 128 x 256 x 64
# tiles: STAGES x 48 KB of ring plus 64 KB of dh.


@gluon.jit
def _loader_tiles(M, N, K, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
                  BLOCK_K: gl.constexpr):  # fmt: skip
    """The tile grid as a merged kernel's loader walks it: ``(num_pid_m, num_pid_n, k_steps,
    first, step, mine)``, the program's tiles being ``first + i * step`` for ``i < mine``."""
    num_pid_m = gl.cdiv(M, BLOCK_M)
    num_pid_n = gl.cdiv(N, BLOCK_N)
    first = gl.program_id(0)
    step = gl.num_programs(0)
    mine = gl.cdiv(num_pid_m * num_pid_n - first, step)  # at most one program per tile
    return num_pid_m, num_pid_n, gl.cdiv(K, BLOCK_K), first, step, mine


@gluon.jit
def _piece_due(has_prev, ks, done, LAG: gl.constexpr, EVERY: gl.constexpr,
               PIECES: gl.constexpr):  # fmt: skip
    """Whether the loader runs the previous tile's next piece after its K step ``ks``: one
    every EVERY steps from step LAG on, ``done`` of PIECES run so far."""
    return has_prev and ks >= LAG and (ks - LAG) % EVERY == 0 and done < PIECES


@gluon.jit
def _merged_gu(g_ptr, u_ptr, stride_g, stride_u, off_m, off_n, M, N, q, valid,
               PARTS: gl.constexpr, LAYOUT: gl.constexpr, SUB_M: gl.constexpr,
               WIDTH: gl.constexpr):  # fmt: skip
    """g and u of piece ``q`` of the tile at (off_m, off_n): rows of half q % 2, column part
    q // 2 (the halves alternate, so that no store goes to a line whose load is in flight
    when dg / du are g / u); nothing loaded unless ``valid``."""
    rows = off_m + (q % 2) * SUB_M + gl.arange(0, SUB_M, layout=gl.SliceLayout(1, LAYOUT))
    cols = off_n + (q // 2) * WIDTH + gl.arange(0, WIDTH, layout=gl.SliceLayout(0, LAYOUT))
    mask = ((rows < M) & valid)[:, None] & (cols < N)[None, :]
    r64 = rows.to(gl.int64)[:, None]
    g = gl.load(g_ptr + (r64 * stride_g + cols[None, :]), mask=mask)
    u = gl.load(u_ptr + (r64 * stride_u + cols[None, :]), mask=mask)
    return g, u


@gluon.jit
def _merged_piece(dh_smem, dh_full, g, u, q, tile, off_m, off_n, g_ptr, u_ptr, h_ptr, dg_ptr,
                  du_ptr, stride_g, stride_u, stride_h, stride_dg, stride_du, M, N,
                  ACTIVATION: gl.constexpr, ALPHA: gl.constexpr, LIMIT: gl.constexpr,
                  PARTS: gl.constexpr, LAYOUT: gl.constexpr, SUB_M: gl.constexpr,
                  WIDTH: gl.constexpr):  # fmt: skip
    """Piece ``q`` of the loader's ``tile``-th tile (at off_m, off_n) from its g and u; returns
    the next piece's g and u, loaded before this piece's work."""
    if q == 0:
        mbarrier.wait(dh_full, tile & 1)
    gn, un = _merged_gu(g_ptr, u_ptr, stride_g, stride_u, off_m, off_n, M, N, q + 1,
                        q + 1 < 2 * PARTS, PARTS, LAYOUT, SUB_M, WIDTH)  # fmt: skip
    dh = dh_smem.index((q % 2) * PARTS + q // 2).load(LAYOUT).to(gl.float32)
    _derivative_part((g, u), dh, off_m + (q % 2) * SUB_M, off_n + (q // 2) * WIDTH, h_ptr,
                     dg_ptr, du_ptr, stride_h, stride_dg, stride_du, M, N, ACTIVATION, ALPHA,
                     LIMIT, LAYOUT)  # fmt: skip
    return gn, un


@gluon.jit
def _merged_loader(dy_desc, wd_desc, a_ring, b_ring, ready, empty, dh_smem, dh_full, dh_empty,
                   g_ptr, u_ptr, h_ptr, dg_ptr, du_ptr, stride_g, stride_u, stride_h,
                   stride_dg, stride_du, M, N, K, ACTIVATION: gl.constexpr,
                   ALPHA: gl.constexpr, LIMIT: gl.constexpr, GROUP_M: gl.constexpr,
                   STAGES: gl.constexpr, PARTS: gl.constexpr, LAG: gl.constexpr,
                   EVERY: gl.constexpr):  # fmt: skip
    BLOCK_M: gl.constexpr = dy_desc.block_type.shape[0]
    BLOCK_K: gl.constexpr = dy_desc.block_type.shape[1]
    BLOCK_N: gl.constexpr = wd_desc.block_type.shape[1]
    SUB_M: gl.constexpr = BLOCK_M // 2
    WIDTH: gl.constexpr = BLOCK_N // PARTS
    PIECES: gl.constexpr = 2 * PARTS
    layout: gl.constexpr = _coalesced_layout(SUB_M, WIDTH)
    nbytes: gl.constexpr = dy_desc.block_type.nbytes + wd_desc.block_type.nbytes
    num_pid_m, num_pid_n, k_steps, first, step, mine = _loader_tiles(M, N, K, BLOCK_M, BLOCK_N,
                                                                     BLOCK_K)  # fmt: skip
    count = 0
    prev_m = 0
    prev_n = 0
    # Iteration i issues the loads of the program's tile i (none in the last, i == mine) and
    # runs the epilogue of tile i - 1 (none in the first).
    for i in range(mine + 1):
        pid_m, pid_n = _grouped_tile(first + i * step, num_pid_m, num_pid_n, GROUP_M)
        off_m = pid_m * BLOCK_M
        off_n = pid_n * BLOCK_N
        has_prev = i > 0
        g, u = _merged_gu(g_ptr, u_ptr, stride_g, stride_u, prev_m, prev_n, M, N, 0, has_prev,
                          PARTS, layout, SUB_M, WIDTH)  # fmt: skip
        done = 0
        for ks in range(k_steps * (i < mine).to(gl.int32)):
            slot, bar = _claim_slot(ready, empty, count, STAGES, nbytes)
            _tma_load(dy_desc, [off_m, ks * BLOCK_K], bar, a_ring.index(slot))
            _tma_load(wd_desc, [ks * BLOCK_K, off_n], bar, b_ring.index(slot))
            count += 1
            if _piece_due(has_prev, ks, done, LAG, EVERY, PIECES):
                g, u = _merged_piece(dh_smem, dh_full, g, u, done, i - 1, prev_m, prev_n, g_ptr,
                                     u_ptr, h_ptr, dg_ptr, du_ptr, stride_g, stride_u, stride_h,
                                     stride_dg, stride_du, M, N, ACTIVATION, ALPHA, LIMIT,
                                     PARTS, layout, SUB_M, WIDTH)  # fmt: skip
                done += 1
        if has_prev:
            for q in range(done, PIECES):  # what the K steps left (short K, the last tile)
                g, u = _merged_piece(dh_smem, dh_full, g, u, q, i - 1, prev_m, prev_n, g_ptr,
                                     u_ptr, h_ptr, dg_ptr, du_ptr, stride_g, stride_u, stride_h,
                                     stride_dg, stride_du, M, N, ACTIVATION, ALPHA, LIMIT,
                                     PARTS, layout, SUB_M, WIDTH)  # fmt: skip
            mbarrier.arrive(dh_empty)
        prev_m = off_m
        prev_n = off_n


@gluon.jit
def mlp_backward_merged_kernel(dy_desc, wd_desc, g_ptr, u_ptr, h_ptr, dg_ptr, du_ptr,
                               stride_g, stride_u, stride_h, stride_dg, stride_du, M, N, K,
                               ACTIVATION: gl.constexpr, ALPHA: gl.constexpr,
                               LIMIT: gl.constexpr, GROUP_M: gl.constexpr,
                               STAGES: gl.constexpr, EPILOGUE_SPLIT: gl.constexpr,
                               LAG: gl.constexpr, EVERY: gl.constexpr,
                               CONSUMER_REGS: gl.constexpr):  # fmt: skip
    a_ring, b_ring, dh_smem, ready, empty, dh_full, dh_empty = _handoff_buffers(
        dy_desc, wd_desc, STAGES, EPILOGUE_SPLIT, False)  # fmt: skip
    # fmt: off
    gl.warp_specialize(
        [
            (_merged_loader, (dy_desc, wd_desc, a_ring, b_ring, ready, empty, dh_smem, dh_full,
                              dh_empty, g_ptr, u_ptr, h_ptr, dg_ptr, du_ptr, stride_g,
                              stride_u, stride_h, stride_dg, stride_du, M, N, K, ACTIVATION,
                              ALPHA, LIMIT, GROUP_M, STAGES, EPILOGUE_SPLIT, LAG, EVERY)),
            (_handoff_consumer, (dy_desc, wd_desc, a_ring, b_ring, ready, empty, dh_smem,
                                 dh_full, dh_empty, M, N, K, EPILOGUE_SPLIT, STAGES, 0)),
            (_handoff_consumer, (dy_desc, wd_desc, a_ring, b_ring, ready, empty, dh_smem,
                                 dh_full, dh_empty, M, N, K, EPILOGUE_SPLIT, STAGES, 1)),
        ],
        [4, 4],
        [CONSUMER_REGS, CONSUMER_REGS],
    )
    # fmt: on


# ----------------------------------------------------------------------------------------
# Forward: h = act(x Wg^T + bg) * (x Wu^T + bu), optionally saving the pre-activation
# ----------------------------------------------------------------------------------------
# The same three roles. A ring slot holds an x tile [BLOCK_M, BLOCK_K] and one B tile of
# [2 * BLOCK_H, BLOCK_K]: BLOCK_H rows of w_gate over BLOCK_H rows of w_up (two TMA loads),
# so one wgmma of N = 2 * BLOCK_H forms gate and up side by side in one accumulator, and the
# epilogue pairs its left half (gate) with its right half (up) for h's [BLOCK_M, BLOCK_H]
# tile. ``ops.train.launch`` runs it for the forward that saves the pre-activation where the
# GPU's training table has a ``forward_saving_ws`` entry, and ``swiglu_linear``'s TMA path
# where its launch table has a ``ws`` entry (``ops.linear._forward_ws``). The last token tile
# of M >= BLOCK_M rows ends at row M (``_tile_start``), so no x box runs past x's end; the
# rows it shares with its predecessor are stored again with the same bits.


@gluon.jit
def _fwd_loader(x_desc, wg_desc, wu_desc, a_ring, b_ring, ready, empty, M, N, K,
                GROUP_M: gl.constexpr, STAGES: gl.constexpr):  # fmt: skip
    BLOCK_M: gl.constexpr = x_desc.block_type.shape[0]
    BLOCK_K: gl.constexpr = x_desc.block_type.shape[1]
    BLOCK_H: gl.constexpr = wg_desc.block_type.shape[0]
    num_pid_m = gl.cdiv(M, BLOCK_M)
    num_pid_n = gl.cdiv(N, BLOCK_H)
    num_tiles = num_pid_m * num_pid_n
    k_steps = gl.cdiv(K, BLOCK_K)
    nbytes: gl.constexpr = x_desc.block_type.nbytes + 2 * wg_desc.block_type.nbytes
    count = 0
    for t in range(gl.program_id(0), num_tiles, gl.num_programs(0)):
        pid_m, pid_n = _grouped_tile(t, num_pid_m, num_pid_n, GROUP_M)
        off_m = _tile_start(pid_m, M, BLOCK_M)
        off_n = pid_n * BLOCK_H
        for ks in range(k_steps):
            slot, bar = _claim_slot(ready, empty, count, STAGES, nbytes)
            b = b_ring.index(slot)
            _tma_load(x_desc, [off_m, ks * BLOCK_K], bar, a_ring.index(slot))
            _tma_load(wg_desc, [off_n, ks * BLOCK_K], bar, b.slice(0, BLOCK_H))
            _tma_load(wu_desc, [off_n, ks * BLOCK_K], bar, b.slice(BLOCK_H, BLOCK_H))
            count += 1


@gluon.jit
def _fwd_epilogue(acc, off_m, off_n, bg_ptr, bu_ptr, stride_bg, stride_bu, g_ptr, u_ptr,
                  h_ptr, stride_g, stride_u, stride_h, M, N, HAS_BG: gl.constexpr,
                  HAS_BU: gl.constexpr, STORE_GU: gl.constexpr, ACTIVATION: gl.constexpr,
                  ALPHA: gl.constexpr, LIMIT: gl.constexpr, PARTS: gl.constexpr,
                  COALESCE: gl.constexpr, COALESCE_OUT: gl.constexpr,
                  layout: gl.constexpr):  # fmt: skip
    """Part i of the accumulator's left half (gate) with part i of its right half (up):
    biases added in fp32, g and u stored rounded once (STORE_GU), h from the fp32 values.
    ``layout`` is where the stores run. With COALESCE alone, gate and up (fp32) move there
    before the math; with COALESCE_OUT too, where g and u are not stored, the math runs on
    the accumulator's own layout and only h, rounded to its storage dtype, moves (a quarter
    of the shared memory traffic). The values stored are the same either way. With g and u
    stored, COALESCE_OUT changes nothing: three 16-bit moves took more instructions than two
    fp32 ones in the sm_90 SASS (4456 against 4280), and GELU's spilled."""
    BLOCK_M: gl.constexpr = acc.shape[0]
    HALF: gl.constexpr = PARTS // 2
    WIDTH: gl.constexpr = acc.shape[1] // PARTS
    LATE: gl.constexpr = COALESCE and COALESCE_OUT and not STORE_GU
    parts = _split_columns(acc, PARTS)
    # where the bias is added and the activation computed
    math_layout: gl.constexpr = parts[0].type.layout if LATE else layout
    for i in gl.static_range(HALF):
        gate = parts[i]
        up = parts[i + HALF]
        if COALESCE and not LATE:
            gate = gl.convert_layout(gate, layout)
            up = gl.convert_layout(up, layout)
        rows = off_m + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, layout))
        cols = off_n + i * WIDTH + gl.arange(0, WIDTH, layout=gl.SliceLayout(0, layout))
        in_n = cols < N
        mask = (rows < M)[:, None] & in_n[None, :]
        bcols, b_in = cols, in_n
        if LATE:  # the biases in the accumulator's layout
            bcols = off_n + i * WIDTH + gl.arange(0, WIDTH, layout=gl.SliceLayout(0, math_layout))
            b_in = bcols < N
        if HAS_BG:
            gate += gl.load(bg_ptr + bcols * stride_bg, mask=b_in).to(gl.float32)[None, :]
        if HAS_BU:
            up += gl.load(bu_ptr + bcols * stride_bu, mask=b_in).to(gl.float32)[None, :]
        r64 = rows.to(gl.int64)[:, None]
        c2 = cols[None, :]
        if STORE_GU:
            gl.store(g_ptr + (r64 * stride_g + c2), gate.to(g_ptr.dtype.element_ty), mask=mask)
            gl.store(u_ptr + (r64 * stride_u + c2), up.to(u_ptr.dtype.element_ty), mask=mask)
        h = glu_forward(gate, up, ACTIVATION, ALPHA, LIMIT).to(h_ptr.dtype.element_ty)
        if LATE:
            h = gl.convert_layout(h, layout)
        gl.store(h_ptr + (r64 * stride_h + c2), h, mask=mask)


@gluon.jit
def _fwd_consumer(x_desc, wg_desc, a_ring, b_ring, ready, empty, turn, bg_ptr, bu_ptr,
                  stride_bg, stride_bu, g_ptr, u_ptr, h_ptr, stride_g, stride_u, stride_h, M,
                  N, K, HAS_BG: gl.constexpr, HAS_BU: gl.constexpr, STORE_GU: gl.constexpr,
                  ACTIVATION: gl.constexpr, ALPHA: gl.constexpr, LIMIT: gl.constexpr,
                  GROUP_M: gl.constexpr, STAGES: gl.constexpr, EPILOGUE_SPLIT: gl.constexpr,
                  COALESCE: gl.constexpr, COALESCE_OUT: gl.constexpr, ROLE: gl.constexpr,
                  COOP: gl.constexpr):  # fmt: skip
    BLOCK_M: gl.constexpr = x_desc.block_type.shape[0]
    BLOCK_K: gl.constexpr = x_desc.block_type.shape[1]
    BLOCK_H: gl.constexpr = wg_desc.block_type.shape[0]
    BLOCK_N: gl.constexpr = 2 * BLOCK_H
    SUB_M: gl.constexpr = BLOCK_M // (1 + COOP)  # this consumer's rows of a tile
    layout: gl.constexpr = _acc_layout(SUB_M, BLOCK_N)
    part_layout: gl.constexpr = _part_probe(layout, SUB_M, BLOCK_N, EPILOGUE_SPLIT,
                                            COALESCE).type.layout  # fmt: skip
    num_pid_m, num_pid_n, num_tiles, k_steps, first, step, count, row0 = _consumer_tiles(
        M, N, K, BLOCK_M, BLOCK_H, BLOCK_K, ROLE, COOP)  # fmt: skip
    for t in range(first, num_tiles, step):
        i = (t - first) // step  # this consumer's tile count
        pid_m, pid_n = _grouped_tile(t, num_pid_m, num_pid_n, GROUP_M)
        acc, count = _main_loop(a_ring, b_ring, ready, empty, turn, count, i, k_steps, layout,
                                SUB_M, BLOCK_N, STAGES, ROLE, True, COOP)  # fmt: skip
        _fwd_epilogue(acc, _tile_start(pid_m, M, BLOCK_M) + row0, pid_n * BLOCK_H, bg_ptr,
                      bu_ptr, stride_bg, stride_bu, g_ptr, u_ptr, h_ptr, stride_g, stride_u,
                      stride_h, M, N, HAS_BG, HAS_BU, STORE_GU, ACTIVATION, ALPHA, LIMIT,
                      EPILOGUE_SPLIT, COALESCE, COALESCE_OUT, part_layout)  # fmt: skip


@gluon.jit
def glu_forward_ws_kernel(x_desc, wg_desc, wu_desc, bg_ptr, bu_ptr, stride_bg, stride_bu,
                          g_ptr, u_ptr, h_ptr, stride_g, stride_u, stride_h, M, N, K,
                          HAS_BG: gl.constexpr, HAS_BU: gl.constexpr, STORE_GU: gl.constexpr,
                          ACTIVATION: gl.constexpr, ALPHA: gl.constexpr, LIMIT: gl.constexpr,
                          GROUP_M: gl.constexpr, STAGES: gl.constexpr,
                          EPILOGUE_SPLIT: gl.constexpr, COALESCE: gl.constexpr,
                          CONSUMER_REGS: gl.constexpr, COOP: gl.constexpr,
                          COALESCE_OUT: gl.constexpr):  # fmt: skip
    dtype: gl.constexpr = x_desc.dtype
    BLOCK_H: gl.constexpr = wg_desc.block_type.shape[0]
    BLOCK_K: gl.constexpr = wg_desc.block_type.shape[1]
    a_shape: gl.constexpr = [STAGES] + x_desc.block_type.shape  # noqa: RUF005
    b_layout: gl.constexpr = gl.NVMMASharedLayout.get_default_for([2 * BLOCK_H, BLOCK_K], dtype)
    a_ring = gl.allocate_shared_memory(dtype, a_shape, x_desc.layout)
    b_ring = gl.allocate_shared_memory(dtype, [STAGES, 2 * BLOCK_H, BLOCK_K], b_layout)
    ready, empty, turn = _ring_barriers(STAGES, COOP)
    # fmt: off
    gl.warp_specialize(
        [
            (_fwd_loader, (x_desc, wg_desc, wu_desc, a_ring, b_ring, ready, empty, M, N, K,
                           GROUP_M, STAGES)),
            (_fwd_consumer, (x_desc, wg_desc, a_ring, b_ring, ready, empty, turn, bg_ptr,
                             bu_ptr, stride_bg, stride_bu, g_ptr, u_ptr, h_ptr, stride_g,
                             stride_u, stride_h, M, N, K, HAS_BG, HAS_BU, STORE_GU,
                             ACTIVATION, ALPHA, LIMIT, GROUP_M, STAGES, EPILOGUE_SPLIT,
                             COALESCE, COALESCE_OUT, 0, COOP)),
            (_fwd_consumer, (x_desc, wg_desc, a_ring, b_ring, ready, empty, turn, bg_ptr,
                             bu_ptr, stride_bg, stride_bu, g_ptr, u_ptr, h_ptr, stride_g,
                             stride_u, stride_h, M, N, K, HAS_BG, HAS_BU, STORE_GU,
                             ACTIVATION, ALPHA, LIMIT, GROUP_M, STAGES, EPILOGUE_SPLIT,
                             COALESCE, COALESCE_OUT, 1, COOP)),
        ],
        [4, 4],
        [CONSUMER_REGS, CONSUMER_REGS],
    )
    # fmt: on


# ----------------------------------------------------------------------------------------
# Forward with the activation in the loader's partition (session 40)
# ----------------------------------------------------------------------------------------
# The cooperative forward stops its tensor cores while both consumers apply the activation
# to their tile and store it: about 2 x 16384 MUFU operations (ex2 and rcp for SiLU) a
# 128 x 128 tile of h, some 2000 cycles at 16 a cycle an SM, against about 33000 cycles of
# wgmma at K = 2048 (1B), 17000 per 1024 of K. Here the consumers hand gate and up over,
# rounded to the storage dtype (as eager's two ``F.linear`` round them), through shared
# memory, and go on to their next tile; the loader's partition applies the activation and
# stores h (and g, u with STORE_GU) in pieces between its TMA loads, as the merged backward
# runs its epilogue:
#
#     loader      the default partition: while it issues tile t's loads it runs tile t - 1's
#                 activation in 2 x PARTS pieces of [BLOCK_M / 2, BLOCK_H / PARTS], one every
#                 EVERY K steps from step LAG on (the rest after the loads, where K is short);
#                 then it arrives on ``gu_empty``
#     consumer r  the cooperative main loop on its BLOCK_M / 2 rows; biases added in fp32;
#                 wait on ``gu_empty``, store gate and up in 2 x PARTS pieces, arrive on
#                 ``gu_full`` (two arrivals)
#
# h = act(g) * u from the rounded g and u, so h differs from the cooperative kernel's (which
# uses the fp32 accumulator) by that rounding; g and u, where stored, are the same bits.
# Shared memory at 128 x (128 + 128) x 64 tiles: STAGES x 48 KB of ring plus 64 KB of g, u.


@gluon.jit
def _fwd_merged_consumer(x_desc, wg_desc, a_ring, b_ring, ready, empty, gu_smem, gu_full,
                         gu_empty, bg_ptr, bu_ptr, stride_bg, stride_bu, M, N, K,
                         HAS_BG: gl.constexpr, HAS_BU: gl.constexpr, GROUP_M: gl.constexpr,
                         STAGES: gl.constexpr, PARTS: gl.constexpr,
                         ROLE: gl.constexpr):  # fmt: skip
    BLOCK_M: gl.constexpr = x_desc.block_type.shape[0]
    BLOCK_K: gl.constexpr = x_desc.block_type.shape[1]
    BLOCK_H: gl.constexpr = wg_desc.block_type.shape[0]
    BLOCK_N: gl.constexpr = 2 * BLOCK_H
    SUB_M: gl.constexpr = BLOCK_M // 2
    WIDTH: gl.constexpr = BLOCK_H // PARTS
    layout: gl.constexpr = _acc_layout(SUB_M, BLOCK_N)
    num_pid_m, num_pid_n, num_tiles, k_steps, first, step, count, _ = _consumer_tiles(
        M, N, K, BLOCK_M, BLOCK_H, BLOCK_K, ROLE, True)  # fmt: skip
    for t in range(first, num_tiles, step):
        i = (t - first) // step
        # COOP: no turns (the ``turn`` argument is not read).
        acc, count = _main_loop(a_ring, b_ring, ready, empty, ready, count, i, k_steps, layout,
                                SUB_M, BLOCK_N, STAGES, ROLE, True, True)  # fmt: skip
        _, pid_n = _grouped_tile(t, num_pid_m, num_pid_n, GROUP_M)
        parts = _split_columns(acc, 2 * PARTS)  # PARTS pieces of gate, then PARTS of up
        mbarrier.wait(gu_empty, (i & 1) ^ 1)  # the first tile finds the buffer free
        for p in gl.static_range(2 * PARTS):
            part = parts[p]
            # Biases added in fp32, per piece. The loads are volatile so that each stays with
            # its piece: hoisted above the stores, as ptxas schedules plain ones, the eight
            # pieces' biases beside the accumulator spilled (12-47 registers in the sm_90 gate).
            if (HAS_BG and p < PARTS) or (HAS_BU and p >= PARTS):
                cols = pid_n * BLOCK_H + (p % PARTS) * WIDTH + gl.arange(
                    0, WIDTH, layout=gl.SliceLayout(0, part.type.layout))  # fmt: skip
                if p < PARTS:
                    bias = gl.load(bg_ptr + cols * stride_bg, mask=cols < N, volatile=True)
                else:
                    bias = gl.load(bu_ptr + cols * stride_bu, mask=cols < N, volatile=True)
                part = part + bias.to(gl.float32)[None, :]
            gu_smem.index(ROLE * 2 * PARTS + p).store(part.to(gu_smem.dtype))
        fence_async_shared()
        mbarrier.arrive(gu_full)


@gluon.jit
def _fwd_merged_piece(gu_smem, gu_full, q, tile, off_m, off_n, g_ptr, u_ptr, h_ptr, stride_g,
                      stride_u, stride_h, M, N, STORE_GU: gl.constexpr,
                      ACTIVATION: gl.constexpr, ALPHA: gl.constexpr, LIMIT: gl.constexpr,
                      PARTS: gl.constexpr, LAYOUT: gl.constexpr, SUB_M: gl.constexpr,
                      WIDTH: gl.constexpr):  # fmt: skip
    """Piece ``q`` of the loader's ``tile``-th tile (at off_m, off_n): the rows of consumer
    q % 2, column part q // 2."""
    if q == 0:
        mbarrier.wait(gu_full, tile & 1)
    base = (q % 2) * 2 * PARTS + q // 2
    g = gu_smem.index(base).load(LAYOUT)
    u = gu_smem.index(base + PARTS).load(LAYOUT)
    rows = off_m + (q % 2) * SUB_M + gl.arange(0, SUB_M, layout=gl.SliceLayout(1, LAYOUT))
    cols = off_n + (q // 2) * WIDTH + gl.arange(0, WIDTH, layout=gl.SliceLayout(0, LAYOUT))
    mask = (rows < M)[:, None] & (cols < N)[None, :]
    r64 = rows.to(gl.int64)[:, None]
    c2 = cols[None, :]
    if STORE_GU:
        gl.store(g_ptr + (r64 * stride_g + c2), g.to(g_ptr.dtype.element_ty), mask=mask)
        gl.store(u_ptr + (r64 * stride_u + c2), u.to(u_ptr.dtype.element_ty), mask=mask)
    h = glu_forward(g.to(gl.float32), u.to(gl.float32), ACTIVATION, ALPHA, LIMIT)
    gl.store(h_ptr + (r64 * stride_h + c2), h.to(h_ptr.dtype.element_ty), mask=mask)


@gluon.jit
def _fwd_merged_loader(x_desc, wg_desc, wu_desc, a_ring, b_ring, ready, empty, gu_smem,
                       gu_full, gu_empty, g_ptr, u_ptr, h_ptr, stride_g, stride_u, stride_h,
                       M, N, K, STORE_GU: gl.constexpr, ACTIVATION: gl.constexpr,
                       ALPHA: gl.constexpr, LIMIT: gl.constexpr, GROUP_M: gl.constexpr,
                       STAGES: gl.constexpr, PARTS: gl.constexpr, LAG: gl.constexpr,
                       EVERY: gl.constexpr):  # fmt: skip
    BLOCK_M: gl.constexpr = x_desc.block_type.shape[0]
    BLOCK_K: gl.constexpr = x_desc.block_type.shape[1]
    BLOCK_H: gl.constexpr = wg_desc.block_type.shape[0]
    SUB_M: gl.constexpr = BLOCK_M // 2
    WIDTH: gl.constexpr = BLOCK_H // PARTS
    PIECES: gl.constexpr = 2 * PARTS
    layout: gl.constexpr = _coalesced_layout(SUB_M, WIDTH)
    nbytes: gl.constexpr = x_desc.block_type.nbytes + 2 * wg_desc.block_type.nbytes
    num_pid_m, num_pid_n, k_steps, first, step, mine = _loader_tiles(M, N, K, BLOCK_M, BLOCK_H,
                                                                     BLOCK_K)  # fmt: skip
    count = 0
    prev_m = 0
    prev_n = 0
    # Iteration i issues the loads of the program's tile i (none in the last, i == mine) and
    # runs the activation of tile i - 1 (none in the first).
    for i in range(mine + 1):
        pid_m, pid_n = _grouped_tile(first + i * step, num_pid_m, num_pid_n, GROUP_M)
        off_m = _tile_start(pid_m, M, BLOCK_M)
        off_n = pid_n * BLOCK_H
        has_prev = i > 0
        done = 0
        for ks in range(k_steps * (i < mine).to(gl.int32)):
            slot, bar = _claim_slot(ready, empty, count, STAGES, nbytes)
            b = b_ring.index(slot)
            _tma_load(x_desc, [off_m, ks * BLOCK_K], bar, a_ring.index(slot))
            _tma_load(wg_desc, [off_n, ks * BLOCK_K], bar, b.slice(0, BLOCK_H))
            _tma_load(wu_desc, [off_n, ks * BLOCK_K], bar, b.slice(BLOCK_H, BLOCK_H))
            count += 1
            if _piece_due(has_prev, ks, done, LAG, EVERY, PIECES):
                _fwd_merged_piece(gu_smem, gu_full, done, i - 1, prev_m, prev_n, g_ptr, u_ptr,
                                  h_ptr, stride_g, stride_u, stride_h, M, N, STORE_GU,
                                  ACTIVATION, ALPHA, LIMIT, PARTS, layout, SUB_M,
                                  WIDTH)  # fmt: skip
                done += 1
        if has_prev:
            for q in range(done, PIECES):  # what the K steps left (short K, the last tile)
                _fwd_merged_piece(gu_smem, gu_full, q, i - 1, prev_m, prev_n, g_ptr, u_ptr,
                                  h_ptr, stride_g, stride_u, stride_h, M, N, STORE_GU,
                                  ACTIVATION, ALPHA, LIMIT, PARTS, layout, SUB_M,
                                  WIDTH)  # fmt: skip
            mbarrier.arrive(gu_empty)
        prev_m = off_m
        prev_n = off_n


@gluon.jit
def glu_forward_merged_kernel(x_desc, wg_desc, wu_desc, bg_ptr, bu_ptr, stride_bg, stride_bu,
                              g_ptr, u_ptr, h_ptr, stride_g, stride_u, stride_h, M, N, K,
                              HAS_BG: gl.constexpr, HAS_BU: gl.constexpr,
                              STORE_GU: gl.constexpr, ACTIVATION: gl.constexpr,
                              ALPHA: gl.constexpr, LIMIT: gl.constexpr, GROUP_M: gl.constexpr,
                              STAGES: gl.constexpr, EPILOGUE_SPLIT: gl.constexpr,
                              LAG: gl.constexpr, EVERY: gl.constexpr,
                              CONSUMER_REGS: gl.constexpr):  # fmt: skip
    dtype: gl.constexpr = x_desc.dtype
    BLOCK_M: gl.constexpr = x_desc.block_type.shape[0]
    BLOCK_H: gl.constexpr = wg_desc.block_type.shape[0]
    BLOCK_K: gl.constexpr = wg_desc.block_type.shape[1]
    WIDTH: gl.constexpr = BLOCK_H // EPILOGUE_SPLIT
    a_shape: gl.constexpr = [STAGES] + x_desc.block_type.shape  # noqa: RUF005
    b_layout: gl.constexpr = gl.NVMMASharedLayout.get_default_for([2 * BLOCK_H, BLOCK_K], dtype)
    a_ring = gl.allocate_shared_memory(dtype, a_shape, x_desc.layout)
    b_ring = gl.allocate_shared_memory(dtype, [STAGES, 2 * BLOCK_H, BLOCK_K], b_layout)
    gu_layout: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BLOCK_M // 2, WIDTH], dtype)
    # consumer r's pieces from r * 2 * PARTS: PARTS of gate, then PARTS of up
    gu_smem = gl.allocate_shared_memory(dtype, [4 * EPILOGUE_SPLIT, BLOCK_M // 2, WIDTH],
                                        gu_layout)  # fmt: skip
    ready, empty, gu_full, gu_empty = _handoff_barriers(STAGES)
    # fmt: off
    gl.warp_specialize(
        [
            (_fwd_merged_loader, (x_desc, wg_desc, wu_desc, a_ring, b_ring, ready, empty,
                                  gu_smem, gu_full, gu_empty, g_ptr, u_ptr, h_ptr, stride_g,
                                  stride_u, stride_h, M, N, K, STORE_GU, ACTIVATION, ALPHA,
                                  LIMIT, GROUP_M, STAGES, EPILOGUE_SPLIT, LAG, EVERY)),
            (_fwd_merged_consumer, (x_desc, wg_desc, a_ring, b_ring, ready, empty, gu_smem,
                                    gu_full, gu_empty, bg_ptr, bu_ptr, stride_bg, stride_bu, M,
                                    N, K, HAS_BG, HAS_BU, GROUP_M, STAGES, EPILOGUE_SPLIT, 0)),
            (_fwd_merged_consumer, (x_desc, wg_desc, a_ring, b_ring, ready, empty, gu_smem,
                                    gu_full, gu_empty, bg_ptr, bu_ptr, stride_bg, stride_bu, M,
                                    N, K, HAS_BG, HAS_BU, GROUP_M, STAGES, EPILOGUE_SPLIT, 1)),
        ],
        [4, 4],
        [CONSUMER_REGS, CONSUMER_REGS],
    )
    # fmt: on


@functools.cache
def _shared_layout(block: tuple[int, int], dtype):
    """The NVMMA shared layout of a ``block`` tile (128-byte swizzle where the row allows),
    built once per block and dtype: host time on every launch otherwise."""
    import torch

    gdt = {torch.bfloat16: gl.bfloat16, torch.float16: gl.float16}[dtype]
    return gl.NVMMASharedLayout.get_default_for(list(block), gdt)


def _desc(t, block: list[int]):
    """A Gluon host TMA descriptor of the 16-bit matrix ``t`` (128-byte swizzled blocks)."""
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    return TensorDescriptor.from_tensor(t, block, _shared_layout(tuple(block), t.dtype))


def _grid(device, tiles: int, sms: int | None) -> tuple[int]:
    """One persistent program per SM (``sms`` overrides the count), at most one per tile.
    Binds the device's CUDA context first: the launch encodes host TMA descriptors."""
    bind_cuda_context(device)
    return (max(1, min(_num_sms(device.index or 0) if sms is None else sms, tiles)),)


WS_CONFIG = dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, GROUP_M=8, STAGES=6, EPILOGUE_SPLIT=8,
                 PREFETCH=0, COALESCE=True, CONSUMER_REGS=232, COOP=False)  # fmt: skip


def mlp_backward_ws(dy, wd, g, u, h, dg, du, *, activation, alpha, limit, config=None, sms=None):
    """Launch ``mlp_backward_ws_kernel``: ``dy [M, K]``, ``wd [K, N]`` (row-major views with
    unit column stride, 16-byte aligned rows), ``g, u, h, dg, du [M, N]`` (unit column
    stride; dg / du may be g / u). One persistent program per SM. A config with ``HANDOFF``
    launches ``mlp_backward_handoff`` with the rest of it."""
    m, k = dy.shape
    prepared = prepare_backward(m, wd.shape[1], k, dy.device, activation=activation,
                                alpha=alpha, limit=limit, config=config, sms=sms)  # fmt: skip
    prepared(dy, wd, g, u, h, dg, du)


class BackwardLaunch:
    """One launch of a backward kernel of this module (``mlp_backward_ws_kernel`` or the
    hand-off's) with everything but its tensors decided: ``(dy, wd, g, u, h, dg, du)``."""

    __slots__ = ("dy_block", "k", "launch", "m", "n", "wd_block")

    def __init__(self, launch: _launch.Launch, m: int, n: int, k: int, blocks: tuple) -> None:
        self.launch, self.m, self.n, self.k = launch, m, n, k
        bm, bn, bk = blocks
        self.dy_block, self.wd_block = [bm, bk], [bk, bn]

    def keep(self) -> "BackwardLaunch":
        self.launch.keep()
        return self

    def __call__(self, dy, wd, g, u, h, dg, du) -> None:
        bind_cuda_context(dy.device)  # a kept launch may run on another thread (autograd's)
        self.launch.run(
            _desc(dy, self.dy_block), _desc(wd, self.wd_block), g, u, h, dg, du, g.stride(0),
            u.stride(0), h.stride(0), dg.stride(0), du.stride(0), self.m, self.n, self.k,
        )  # fmt: skip


def prepare_backward(m, n, k, device, *, activation, alpha, limit, config=None, sms=None):
    """The ``BackwardLaunch`` of ``mlp_backward_ws`` for ``dy [m, k]`` and ``wd [k, n]`` on
    ``device``: the ping-pong kernel, or with ``HANDOFF`` in ``config`` the hand-off's."""
    if config and config.get("MERGED"):
        kernel = mlp_backward_merged_kernel
        cfg = dict(MERGED_CONFIG, **{key: v for key, v in config.items() if key != "MERGED"})
        cfg["EPILOGUE_SPLIT"] = merged_parts(activation, cfg["EPILOGUE_SPLIT"])
    elif config and config.get("HANDOFF"):
        kernel = mlp_backward_handoff_kernel
        cfg = dict(HANDOFF_CONFIG, **{key: v for key, v in config.items() if key != "HANDOFF"})
        cfg["EPILOGUE_SPLIT"] = handoff_parts(activation, cfg["EPILOGUE_SPLIT"])
    else:
        kernel, cfg = mlp_backward_ws_kernel, dict(WS_CONFIG, **(config or {}))
    bm, bn, bk = cfg.pop("BLOCK_M"), cfg.pop("BLOCK_N"), cfg.pop("BLOCK_K")
    grid = _grid(device, triton.cdiv(m, bm) * triton.cdiv(n, bn), sms)
    kwargs = dict(ACTIVATION=activation, ALPHA=alpha, LIMIT=limit, num_warps=4,
                  enable_fp_fusion=ENABLE_FP_FUSION, **cfg)  # fmt: skip
    return BackwardLaunch(_launch.Launch(kernel, grid, kwargs), m, n, k, (bm, bn, bk))


# 128 x 128 tiles (each consumer 64 x 128: a 64-register accumulator): with 16 warps a
# thread may hold at most 128 registers at launch, and ptxas needs 154 for a consumer's
# 64 x 256 wgmma, so the 128 x 256 tile of the cooperative forward does not fit here.
HANDOFF_CONFIG = dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, GROUP_M=8, STAGES=5,
                      EPILOGUE_SPLIT=4, CONSUMER_REGS=152, EPILOGUE_REGS=152,
                      EPILOGUE_WARPS=4, maxnreg=128, DH_FP32=False)  # fmt: skip
# DH_FP32 (session 39, prepared): dh handed over in fp32, as the ping-pong kernel keeps it, so
# that the hand-off's gradients are the Triton kernel's; 64 KB of dh at 128 x 128 tiles.


# 128 x 256 tiles in twelve warps: 168 registers a thread at launch, CONSUMER_REGS for each
# consumer's 64 x 256 accumulator, the rest to the loader and its epilogue pieces. Shared memory:
# 3 x 48 KB of ring and 64 KB of dh.
MERGED_CONFIG = dict(BLOCK_M=128, BLOCK_N=256, BLOCK_K=64, GROUP_M=8, STAGES=3,
                     EPILOGUE_SPLIT=8, LAG=2, EVERY=2, CONSUMER_REGS=192)  # fmt: skip


def merged_parts(activation: str, parts: int) -> int:
    """Column parts of the merged kernel's epilogue as launched: at least 16 for gpt-oss's GLU
    (8 spilled in the loader's 120 registers in the sm_90 gate, Triton 3.9)."""
    return max(16, parts) if activation == "swiglu_oai" else parts


def handoff_parts(activation: str, parts: int) -> int:
    """Column parts of the hand-off epilogue as launched: at least 8 for gelu_tanh and
    gpt-oss's GLU (their 4-part epilogue spilled in the sm_90 gate: Triton 3.9 both, 3.6 the
    GLU)."""
    return max(8, parts) if activation in ("gelu_tanh", "swiglu_oai") else parts


def mlp_backward_handoff(dy, wd, g, u, h, dg, du, *, activation, alpha, limit, config=None,
                         sms=None):  # fmt: skip
    """Launch ``mlp_backward_handoff_kernel``: the operands of ``mlp_backward_ws``. Sixteen
    warps per program, so the launch caps registers at ``maxnreg`` (128: 65536 / 512); the
    partitions' own budgets (CONSUMER_REGS twice, EPILOGUE_REGS, and the loader's rest) share
    that total."""
    mlp_backward_ws(dy, wd, g, u, h, dg, du, activation=activation, alpha=alpha, limit=limit,
                    config={**(config or {}), "HANDOFF": True}, sms=sms)  # fmt: skip


WS_FORWARD_CONFIG = dict(BLOCK_M=128, BLOCK_H=64, BLOCK_K=64, GROUP_M=8, STAGES=4,
                         EPILOGUE_SPLIT=4, COALESCE=True, CONSUMER_REGS=232,
                         COOP=False, COALESCE_OUT=False)  # fmt: skip


# The forward with the activation in the loader's partition (``glu_forward_merged_kernel``;
# an entry with ``MERGED``): 128 x (128 + 128) tiles in twelve warps, 3 x 48 KB of ring and
# 64 KB of g and u (``ops.linear.WS_MERGED``, the shape-wide entries' and ``retune``'s first
# candidate, without its MERGED flag).
FORWARD_MERGED_CONFIG = {key: v for key, v in WS_MERGED.items() if key != "MERGED"}


def glu_forward_ws(x, wg, wu, bg, bu, h, g=None, u=None, *, activation, alpha, limit,
                   config=None, sms=None):  # fmt: skip
    """Launch ``glu_forward_ws_kernel``: ``x [M', K]`` (M' >= M rows; rows past h's M are
    read only where M is below one tile, never stored), ``wg, wu [N, K]`` (row-major views
    with unit column stride, 16-byte aligned rows), optional biases ``[N]``, ``h [M, N]``
    and, to save the pre-activation, ``g, u [M, N]``. One persistent program per SM."""
    prepared = prepare_forward(
        h.shape[0], wg.shape[0], x.shape[1], x.device, has_bg=bg is not None,
        has_bu=bu is not None, store_gu=g is not None, activation=activation, alpha=alpha,
        limit=limit, config=config, sms=sms,
    )  # fmt: skip
    prepared(x, wg, wu, bg, bu, h, g, u)


class ForwardLaunch:
    """One launch of ``glu_forward_ws_kernel`` with everything but its tensors decided:
    ``(x, wg, wu, bg, bu, h, g, u)`` as ``glu_forward_ws`` takes them."""

    __slots__ = ("k", "launch", "m", "n", "store_gu", "w_block", "x_block")

    def __init__(self, launch: _launch.Launch, m, n, k, blocks: tuple, store_gu: bool) -> None:
        self.launch, self.m, self.n, self.k, self.store_gu = launch, m, n, k, store_gu
        bm, bh, bk = blocks
        self.x_block, self.w_block = [bm, bk], [bh, bk]

    def keep(self) -> "ForwardLaunch":
        self.launch.keep()
        return self

    def __call__(self, x, wg, wu, bg, bu, h, g=None, u=None) -> None:
        bind_cuda_context(h.device)  # a kept launch may run on another thread
        gp, up_ = (g, u) if self.store_gu else (h, h)  # never written without STORE_GU
        self.launch.run(
            _desc(x, self.x_block), _desc(wg, self.w_block), _desc(wu, self.w_block),
            bg if bg is not None else h, bu if bu is not None else h,
            bg.stride(0) if bg is not None else 0, bu.stride(0) if bu is not None else 0,
            gp, up_, h, gp.stride(0), up_.stride(0), h.stride(0), self.m, self.n, self.k,
        )  # fmt: skip


def prepare_forward(m, n, k, device, *, has_bg, has_bu, store_gu, activation, alpha, limit,
                    config=None, sms=None) -> ForwardLaunch:  # fmt: skip
    """The ``ForwardLaunch`` of ``glu_forward_ws`` for ``h [m, n]`` from ``x [., k]`` on
    ``device``."""
    if config and config.get("MERGED"):
        kernel = glu_forward_merged_kernel
        cfg = dict(FORWARD_MERGED_CONFIG,
                   **{key: v for key, v in config.items() if key != "MERGED"})  # fmt: skip
    else:
        kernel, cfg = glu_forward_ws_kernel, dict(WS_FORWARD_CONFIG, **(config or {}))
    bm, bh, bk = cfg.pop("BLOCK_M"), cfg.pop("BLOCK_H"), cfg.pop("BLOCK_K")
    grid = _grid(device, triton.cdiv(m, bm) * triton.cdiv(n, bh), sms)
    kwargs = dict(HAS_BG=has_bg, HAS_BU=has_bu, STORE_GU=store_gu, ACTIVATION=activation,
                  ALPHA=alpha, LIMIT=limit, num_warps=4, enable_fp_fusion=ENABLE_FP_FUSION,
                  **cfg)  # fmt: skip
    launch = _launch.Launch(kernel, grid, kwargs)
    return ForwardLaunch(launch, m, n, k, (bm, bh, bk), store_gu)

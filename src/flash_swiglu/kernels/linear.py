"""The fused gate/up projection: ``out = act(x @ w_gate^T + b_gate) * (x @ w_up^T + b_up)``.

Each kernel keeps two fp32 accumulators (gate and up) fed by the same tile of ``x`` and
applies the activation in its epilogue (``activations.glu_forward``), so the ``[M, 2N]``
pre-activation never reaches memory. Every packed weight layout arrives here as two strided
views, one per half, which the launcher builds:

    separate weights       w_gate, w_up
    packed "concat"        w[:N], w[N:]         (row stride K)
    packed "interleaved"   w[0::2], w[1::2]     (row stride 2K, gpt-oss)

so the kernels only know "a gate weight and an up weight, each with a row stride". For the
interleaved layout a program reads the even rows (gate) and the odd rows (up) of the same
``2 * BLOCK_N`` packed rows, so every byte of those rows is still fetched once, in row
segments of ``BLOCK_K`` elements as for the other layouts; we expect no extra cost from the
2K row stride (not yet measured), and no in-register shuffle of a ``[2 * BLOCK_N, BLOCK_K]``
tile is needed (a TMA/wgmma operand has to stay in shared memory, where a split would not).

Four kernels:

- ``_linear_tma_kernel`` (Hopper main path): persistent over ``min(SMs, tiles)`` programs in
  grouped tile order, host TMA descriptors for every matrix, ``tl.dot`` (``wgmma`` on
  sm_90), the output tile stored through a descriptor. Needs TMA-compatible operands (16-byte
  aligned bases and row strides, unit last stride).
- ``_linear_ptr_kernel`` (fallback): the same math with masked pointer loads, a grouped 1-D
  grid, any row strides; for shapes TMA cannot take (K or N not a multiple of 8 in 16-bit,
  unaligned views) and for devices without TMA.
- ``_linear_decode_kernel`` (few tokens, M <= 64): operands swapped, ``W_tile @ x^T``, so
  the weight rows fill the MMA's M dimension and the handful of tokens is its N dimension.
  Parallelism comes from narrow tiles of weight rows and, optionally (``SPLIT_K``), from
  several programs per tile, each over a slice of K: the last of them to finish adds the
  slices' fp32 partials in a fixed order and applies the activation, so the epilogue stays
  in the kernel and the result is deterministic. It streams each weight byte once.
- ``_linear_decode_tma_kernel``: the decode kernel with its operands fetched by TMA (where
  the launch table says ``TMA`` and the operands are 16-bit and aligned).
- ``_linear_gemv_kernel`` (one token, where the launch table says): no MMA, a
  matrix-vector product on the CUDA cores over programs of a few weight rows each, for the
  single-token case that an MMA's 64 x 16 minimum tile serves poorly.

Rows of ``x`` are ``row = outer * inner_rows + inner`` in the pointer kernels, so a view of a
3-D tensor whose leading dimensions do not merge (``x[:, :S]``) is read in place. Offsets
are 64-bit in the pointer kernels but the matrix-vector kernel, which keeps them 32-bit where
every operand spans fewer than 2^31 elements; TMA coordinates are 32-bit (rows < 2^31).
"""

import triton
import triton.language as tl

from flash_swiglu.activations import glu_forward, to_compute


@triton.jit
def _grouped_tile(tile_id, num_pid_m, num_pid_n, GROUP_M: tl.constexpr):
    """(pid_m, pid_n) of ``tile_id`` in grouped order: GROUP_M row tiles share a weight
    column band while it is hot in L2."""
    group_size = GROUP_M * num_pid_n
    first_m = (tile_id // group_size) * GROUP_M
    rows_in_group = tl.minimum(num_pid_m - first_m, GROUP_M)
    pid_m = first_m + (tile_id % group_size) % rows_in_group
    pid_n = (tile_id % group_size) // rows_in_group
    return pid_m, pid_n


@triton.jit
def _tile_start(pid, M, BLOCK: tl.constexpr):
    """First row of token tile ``pid`` in the TMA kernels: ``pid * BLOCK``, but the last tile
    of ``M >= BLOCK`` rows is moved back to end at row M. A TMA box that runs past x's last
    row is slow (up to 0.24 us a load on an H200, session 12); from one tile of rows on, none
    does (x of fewer rows is padded to one tile by the launcher, ``PAD_TMA_ROWS``). The moved
    tile recomputes rows of its predecessor: each row's products and epilogue read only that
    row of x, in the same order, so it stores the same bits again."""
    return tl.maximum(tl.minimum(pid * BLOCK, M - BLOCK), 0)


@triton.jit
def _x_row_offsets(rows, inner_rows, stride_outer, stride_inner):
    """Element offsets of x's ``rows`` (int64) when x's rows form two strided groups:
    ``row = outer * inner_rows + inner`` (see the module docstring)."""
    outer = rows // inner_rows
    return outer * stride_outer + (rows - outer * inner_rows) * stride_inner


@triton.jit
def _bias(ptr, cols, n_cols, stride, HAS_BIAS: tl.constexpr):
    """The bias values at ``cols`` in fp32 (zeros without a bias)."""
    if HAS_BIAS:
        return to_compute(tl.load(ptr + cols * stride, mask=cols < n_cols, other=0.0))
    else:
        return tl.zeros(cols.shape, dtype=tl.float32)


@triton.jit
def _linear_tma_kernel(
    x_desc,  # [M, K] descriptor, block [BLOCK_M, BLOCK_K]
    wg_desc,  # [N, K] gate weight (view), block [BLOCK_N, BLOCK_K]
    wu_desc,  # [N, K] up weight (view), block [BLOCK_N, BLOCK_K]
    out_desc,  # [M, N] output, block [BLOCK_M, BLOCK_N]
    bg_ptr,  # [N] gate bias (read with stride_bg; unused without HAS_BG)
    bu_ptr,  # [N] up bias (unused without HAS_BU)
    stride_bg,  # element stride of the gate bias (2 for an interleaved packed bias)
    stride_bu,
    M,  # tokens
    N,  # output features
    K,  # input features
    HAS_BG: tl.constexpr,
    HAS_BU: tl.constexpr,
    ACTIVATION: tl.constexpr,  # one of activations.ACTIVATIONS
    ALPHA: tl.constexpr,  # swiglu_oai only
    LIMIT: tl.constexpr,  # swiglu_oai only
    INPUT_PRECISION: tl.constexpr,  # "ieee" or "tf32" (fp32 inputs; ignored for 16-bit)
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,  # row tiles per group of the tile order
    NUM_SMS: tl.constexpr,  # programs launched (the grid), the stride of the tile loop
):
    """Descriptors zero-fill out-of-bounds reads and clip out-of-bounds writes, so ragged
    edges need no masks; the last token tile ends at row M (``_tile_start``). Requirements
    (checked by the launcher): 16-byte aligned bases and row strides, unit last strides."""
    start_pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    k_tiles = tl.cdiv(K, BLOCK_K)
    for tile_id in tl.range(start_pid, num_pid_m * num_pid_n, NUM_SMS):
        pid_m, pid_n = _grouped_tile(tile_id, num_pid_m, num_pid_n, GROUP_M)
        off_m = _tile_start(pid_m, M, BLOCK_M)
        off_n = pid_n * BLOCK_N
        acc_g = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        acc_u = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for ki in range(k_tiles):
            off_k = ki * BLOCK_K
            a = x_desc.load([off_m, off_k])  # one x tile feeds both products
            wg = wg_desc.load([off_n, off_k])
            wu = wu_desc.load([off_n, off_k])
            acc_g = tl.dot(a, wg.T, acc_g, input_precision=INPUT_PRECISION)
            acc_u = tl.dot(a, wu.T, acc_u, input_precision=INPUT_PRECISION)
        cols = off_n + tl.arange(0, BLOCK_N)
        gate = acc_g + _bias(bg_ptr, cols, N, stride_bg, HAS_BG)[None, :]
        up = acc_u + _bias(bu_ptr, cols, N, stride_bu, HAS_BU)[None, :]
        out = glu_forward(gate, up, ACTIVATION, ALPHA, LIMIT)
        out_desc.store([off_m, off_n], out.to(out_desc.dtype))


@triton.jit
def _linear_ptr_kernel(
    x_ptr,  # [M, K] rows addressed as outer * stride_x_outer + inner * stride_x_inner
    wg_ptr,  # [N, K] gate weight, row stride stride_wg, unit column stride
    wu_ptr,  # [N, K] up weight, row stride stride_wu, unit column stride
    bg_ptr,  # [N] gate bias (unused without HAS_BG)
    bu_ptr,  # [N] up bias (unused without HAS_BU)
    out_ptr,  # [M, N] output, row stride stride_out, unit column stride
    M,
    N,
    K,
    inner_rows,  # rows of x per outer index (M when the rows form one group)
    stride_x_outer,  # strides of x's two row groups, in elements
    stride_x_inner,
    stride_wg,  # row strides of the weights (2K for an interleaved packed weight)
    stride_wu,
    stride_bg,
    stride_bu,
    stride_out,
    HAS_BG: tl.constexpr,
    HAS_BU: tl.constexpr,
    ACTIVATION: tl.constexpr,
    ALPHA: tl.constexpr,
    LIMIT: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    """Masked pointer loads: any K, N, alignment and row strides (last dimensions unit)."""
    pid_m, pid_n = _grouped_tile(
        tl.program_id(0), tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N), GROUP_M
    )
    rows = pid_m.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    x_rows = _x_row_offsets(rows, inner_rows, stride_x_outer, stride_x_inner)
    row_mask = rows < M
    col_mask = cols < N
    ks = tl.arange(0, BLOCK_K)
    x_ptrs = x_ptr + x_rows[:, None] + ks[None, :]
    wg_ptrs = wg_ptr + (cols * stride_wg)[:, None] + ks[None, :]
    wu_ptrs = wu_ptr + (cols * stride_wu)[:, None] + ks[None, :]
    acc_g = to_compute(tl.zeros((BLOCK_M, BLOCK_N), dtype=x_ptr.dtype.element_ty))  # fp32/64
    acc_u = tl.zeros_like(acc_g)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        k_mask = ks < K - k * BLOCK_K
        a = tl.load(x_ptrs, mask=row_mask[:, None] & k_mask[None, :], other=0.0)
        w_mask = col_mask[:, None] & k_mask[None, :]
        wg = tl.load(wg_ptrs, mask=w_mask, other=0.0)
        wu = tl.load(wu_ptrs, mask=w_mask, other=0.0)
        acc_g = tl.dot(a, wg.T, acc_g, input_precision=INPUT_PRECISION)
        acc_u = tl.dot(a, wu.T, acc_u, input_precision=INPUT_PRECISION)
        x_ptrs += BLOCK_K
        wg_ptrs += BLOCK_K
        wu_ptrs += BLOCK_K
    gate = acc_g + _bias(bg_ptr, cols, N, stride_bg, HAS_BG)[None, :]
    up = acc_u + _bias(bu_ptr, cols, N, stride_bu, HAS_BU)[None, :]
    out = glu_forward(gate, up, ACTIVATION, ALPHA, LIMIT)
    out_ptrs = out_ptr + (rows * stride_out)[:, None] + cols[None, :]
    tl.store(out_ptrs, out.to(out_ptr.dtype.element_ty), mask=row_mask[:, None] & col_mask[None, :])


@triton.jit
def _pdl_wait(PDL: tl.constexpr):
    """With ``PDL`` (the launcher's ``launch_pdl``, sm_90 on): wait until the kernel before
    this one in the stream has finished and its writes are visible. A kernel launched as a
    programmatic dependent launch may start while the previous one drains; every decode
    kernel calls this before its first access to global memory, so none of its reads (x,
    the weights, which a previous kernel may also have written) or writes can overlap the
    previous kernel's; what overlaps is only the launch and the programs' start."""
    if PDL:
        tl.extra.cuda.gdc_wait()


@triton.jit
def _linear_decode_kernel(
    x_ptr,  # [M, K] tokens (M <= BLOCK_T per column of the grid), rows as in the ptr kernel
    wg_ptr,  # [N, K] gate weight, row stride stride_wg, unit column stride
    wu_ptr,  # [N, K] up weight
    bg_ptr,  # [N] gate bias (unused without HAS_BG)
    bu_ptr,  # [N] up bias (unused without HAS_BU)
    out_ptr,  # [M, N] output, row stride stride_out, unit column stride
    part_ptr,  # [tiles, SPLIT_K, 2, BLOCK_T, BLOCK_N] partial sums, accumulator dtype
    count_ptr,  # int32 [tiles] arrivals per tile, zero before and after the launch
    M,
    N,
    K,
    inner_rows,
    stride_x_outer,
    stride_x_inner,
    stride_wg,
    stride_wu,
    stride_bg,
    stride_bu,
    stride_out,
    HAS_BG: tl.constexpr,
    HAS_BU: tl.constexpr,
    ACTIVATION: tl.constexpr,
    ALPHA: tl.constexpr,
    LIMIT: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    BLOCK_N: tl.constexpr,  # weight rows per program: the MMA's M dimension
    BLOCK_T: tl.constexpr,  # tokens per program (>= 16): the MMA's N dimension
    BLOCK_K: tl.constexpr,
    SPLIT_K: tl.constexpr,  # programs sharing one output tile, each a slice of K
    EVEN_K: tl.constexpr = False,  # every program's K slice in range: no mask along K
    INDEX_64: tl.constexpr = True,  # offsets may pass 2**30 (needs_int64): 64-bit offsets
    K_ROTATE: tl.constexpr = 0,  # > 0: program pid_n starts pid_n * K_ROTATE steps into K
    ROWS: tl.constexpr = 0,  # > 0: weight rows a program owns (<= BLOCK_N; 0: BLOCK_N)
    PDL: tl.constexpr = False,  # launched as a programmatic dependent launch (``_pdl_wait``)
):
    """Grid ``(cdiv(N, ROWS or BLOCK_N), cdiv(M, BLOCK_T), SPLIT_K)``. Accumulates ``out^T`` tiles
    ``[BLOCK_N, BLOCK_T] = W[BLOCK_N, K] @ x^T[K, BLOCK_T]``, so a single token still fills
    a 64-row MMA with weight rows instead of padding a 16-row tile of tokens.

    With ``SPLIT_K > 1`` the ``SPLIT_K`` programs of a tile each sum one contiguous slice of
    K, write the two partial accumulators to ``part_ptr`` and count themselves in at
    ``count_ptr``; the last to arrive adds the partials in slice order (the same order
    whichever program is last, so results are deterministic), applies the activation and
    stores the tile, and sets the counter back to zero for the next launch. The activation
    stays in this kernel: no pre-activation leaves it, only fp32 partials of the few tokens.

    With ``K_ROTATE > 0`` each program walks its K steps (its slice's, with ``SPLIT_K``) from
    step ``pid_n * K_ROTATE`` modulo their count and wraps around, so programs that run at
    the same time read the weights at different column offsets instead of all at the same
    one; each tile's sum is still taken in one fixed order.

    With ``0 < ROWS < BLOCK_N`` program ``pid_n`` owns weight rows ``[pid_n * ROWS, (pid_n +
    1) * ROWS)`` of a ``BLOCK_N``-row MMA tile, the rest masked off (their weights never read,
    nor stored; the bias loads of the epilogue still read them where they are below N): the
    grid has ``cdiv(N, ROWS)`` columns, so a shape whose ``N / BLOCK_N`` programs leave SMs
    idle can spread the same rows over more of them.
    """
    pid_n = tl.program_id(0)
    pid_t = tl.program_id(1)
    _pdl_wait(PDL)
    OWN: tl.constexpr = ROWS if ROWS > 0 else BLOCK_N
    if INDEX_64:
        cols = pid_n.to(tl.int64) * OWN + tl.arange(0, BLOCK_N)  # weight rows
        rows = pid_t.to(tl.int64) * BLOCK_T + tl.arange(0, BLOCK_T)  # tokens
    else:
        cols = pid_n * OWN + tl.arange(0, BLOCK_N)
        rows = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    x_rows = _x_row_offsets(rows, inner_rows, stride_x_outer, stride_x_inner)
    row_mask = rows < M
    col_mask = cols < N
    if OWN < BLOCK_N:
        col_mask = col_mask & (tl.arange(0, BLOCK_N) < OWN)
    k_steps = tl.cdiv(K, BLOCK_K)
    k_start = 0
    if SPLIT_K > 1:
        k_steps = tl.cdiv(k_steps, SPLIT_K)
        k_start = tl.program_id(2) * k_steps * BLOCK_K
    ks = tl.arange(0, BLOCK_K)
    xt_ptrs = x_ptr + (ks + k_start)[:, None] + x_rows[None, :]  # x^T tile [BLOCK_K, BLOCK_T]
    wg_ptrs = wg_ptr + (cols * stride_wg)[:, None] + (ks + k_start)[None, :]
    wu_ptrs = wu_ptr + (cols * stride_wu)[:, None] + (ks + k_start)[None, :]
    acc_g = to_compute(tl.zeros((BLOCK_N, BLOCK_T), dtype=x_ptr.dtype.element_ty))
    acc_u = tl.zeros_like(acc_g)
    k_rot = 0
    if K_ROTATE > 0:
        k_rot = (pid_n * K_ROTATE) % k_steps
    for k in range(0, k_steps):
        if K_ROTATE > 0:
            step = k + k_rot
            step = tl.where(step >= k_steps, step - k_steps, step)
            k_off = step * BLOCK_K  # within this program's slice
            xt_at, wg_at, wu_at = xt_ptrs + k_off, wg_ptrs + k_off, wu_ptrs + k_off
        else:
            k_off = k * BLOCK_K
            xt_at, wg_at, wu_at = xt_ptrs, wg_ptrs, wu_ptrs
        if EVEN_K:
            xt = tl.load(xt_at, mask=row_mask[None, :], other=0.0)
            w_mask = col_mask[:, None]
        else:
            k_mask = ks < K - k_start - k_off
            xt = tl.load(xt_at, mask=k_mask[:, None] & row_mask[None, :], other=0.0)
            w_mask = col_mask[:, None] & k_mask[None, :]
        wg = tl.load(wg_at, mask=w_mask, other=0.0)
        wu = tl.load(wu_at, mask=w_mask, other=0.0)
        acc_g = tl.dot(wg, xt, acc_g, input_precision=INPUT_PRECISION)
        acc_u = tl.dot(wu, xt, acc_u, input_precision=INPUT_PRECISION)
        if K_ROTATE == 0:
            xt_ptrs += BLOCK_K
            wg_ptrs += BLOCK_K
            wu_ptrs += BLOCK_K
    _decode_finish(
        acc_g, acc_u, cols, rows, col_mask, row_mask, bg_ptr, bu_ptr, out_ptr, part_ptr,
        count_ptr, pid_n * tl.num_programs(1) + pid_t, N, stride_bg, stride_bu, stride_out,
        HAS_BG, HAS_BU, ACTIVATION, ALPHA, LIMIT, SPLIT_K, BLOCK_N, BLOCK_T,
    )  # fmt: skip


@triton.jit
def _linear_decode_tma_kernel(
    x_desc,  # [M, K] tokens, descriptor block [BLOCK_T, BLOCK_K]
    wg_desc,  # [N, K] gate weight, descriptor block [BLOCK_N, BLOCK_K]
    wu_desc,  # [N, K] up weight, descriptor block [BLOCK_N, BLOCK_K]
    bg_ptr,  # [N] gate bias (unused without HAS_BG)
    bu_ptr,  # [N] up bias (unused without HAS_BU)
    out_ptr,  # [M, N] output, row stride stride_out, unit column stride
    part_ptr,  # [tiles, SPLIT_K, 2, BLOCK_T, BLOCK_N] partial sums (SPLIT_K > 1 only)
    count_ptr,  # int32 [tiles] arrivals per tile, zero before and after the launch
    M,
    N,
    K,
    stride_bg,
    stride_bu,
    stride_out,
    HAS_BG: tl.constexpr,
    HAS_BU: tl.constexpr,
    ACTIVATION: tl.constexpr,
    ALPHA: tl.constexpr,
    LIMIT: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    BLOCK_N: tl.constexpr,  # weight rows per program: the MMA's M dimension
    BLOCK_T: tl.constexpr,  # tokens per program (>= 16): the MMA's N dimension
    BLOCK_K: tl.constexpr,
    SPLIT_K: tl.constexpr,  # programs sharing one output tile, each a slice of K
    INDEX_64: tl.constexpr,  # output offsets may pass 2**30 (needs_int64): 64-bit
    K_ROTATE: tl.constexpr = 0,  # as in _linear_decode_kernel
    ROWS: tl.constexpr = 0,  # as in _linear_decode_kernel
    PDL: tl.constexpr = False,  # as in _linear_decode_kernel
):
    """``_linear_decode_kernel`` with its operands fetched by the tensor-memory accelerator:
    grid ``(cdiv(N, ROWS or BLOCK_N), cdiv(M, BLOCK_T), SPLIT_K)``, ``out^T`` tiles ``[BLOCK_N,
    BLOCK_T] = W[BLOCK_N, K] @ x^T``, the same split-K hand-over. One thread issues each
    weight tile's copy, so a program keeps its stages of weights in flight with a few
    instructions instead of a 16-byte load per thread and element group. Descriptors
    zero-fill reads past M (x of fewer rows than a tile, where the launcher does not pad it),
    N and K, and a last token tile of M >= BLOCK_T rows ends at row M (``_tile_start``): no
    masks in the loop. Requirements (checked by the launcher): 16-byte aligned bases and
    row strides, unit last strides. With ``0 < ROWS < BLOCK_N`` a program's tile starts at
    weight row ``pid_n * ROWS`` and its last ``BLOCK_N - ROWS`` rows, which the next program
    owns, are read (the descriptor's block is ``BLOCK_N`` rows) but not stored."""
    pid_n = tl.program_id(0)
    pid_t = tl.program_id(1)
    _pdl_wait(PDL)
    OWN: tl.constexpr = ROWS if ROWS > 0 else BLOCK_N
    off_n = pid_n * OWN
    off_t = _tile_start(pid_t, M, BLOCK_T)
    k_steps = tl.cdiv(K, BLOCK_K)
    k_first = 0
    if SPLIT_K > 1:
        k_steps = tl.cdiv(k_steps, SPLIT_K)
        k_first = tl.program_id(2) * k_steps
    acc_g = tl.zeros((BLOCK_N, BLOCK_T), dtype=tl.float32)
    acc_u = tl.zeros((BLOCK_N, BLOCK_T), dtype=tl.float32)
    k_rot = 0
    if K_ROTATE > 0:
        k_rot = (pid_n * K_ROTATE) % k_steps
    for ki in range(k_first, k_first + k_steps):
        off_k = ki * BLOCK_K
        if K_ROTATE > 0:
            step = ki - k_first + k_rot
            step = tl.where(step >= k_steps, step - k_steps, step)
            off_k = (k_first + step) * BLOCK_K
        xt = x_desc.load([off_t, off_k])  # [BLOCK_T, BLOCK_K], shared by both products
        wg = wg_desc.load([off_n, off_k])
        wu = wu_desc.load([off_n, off_k])
        acc_g = tl.dot(wg, xt.T, acc_g, input_precision=INPUT_PRECISION)
        acc_u = tl.dot(wu, xt.T, acc_u, input_precision=INPUT_PRECISION)
    cols = off_n + tl.arange(0, BLOCK_N)  # weight rows
    rows = off_t + tl.arange(0, BLOCK_T)  # tokens
    if INDEX_64:
        cols = cols.to(tl.int64)
        rows = rows.to(tl.int64)
    row_mask = rows < M
    col_mask = cols < N
    if OWN < BLOCK_N:
        col_mask = col_mask & (tl.arange(0, BLOCK_N) < OWN)
    _decode_finish(
        acc_g, acc_u, cols, rows, col_mask, row_mask, bg_ptr, bu_ptr, out_ptr, part_ptr,
        count_ptr, pid_n * tl.num_programs(1) + pid_t, N, stride_bg, stride_bu, stride_out,
        HAS_BG, HAS_BU, ACTIVATION, ALPHA, LIMIT, SPLIT_K, BLOCK_N, BLOCK_T,
    )  # fmt: skip


@triton.jit
def _decode_finish(
    acc_g, acc_u, cols, rows, col_mask, row_mask, bg_ptr, bu_ptr, out_ptr, part_ptr,
    count_ptr, tile, N, stride_bg, stride_bu, stride_out,
    HAS_BG: tl.constexpr, HAS_BU: tl.constexpr, ACTIVATION: tl.constexpr,
    ALPHA: tl.constexpr, LIMIT: tl.constexpr, SPLIT_K: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr,
):  # fmt: skip
    """The decode kernels' end: with ``SPLIT_K > 1`` the hand-over of ``_split_k_gather``
    (only the last program of ``tile`` goes on), then the biases, the activation and the
    store of the ``out^T [BLOCK_N, BLOCK_T]`` tile."""
    last = True
    if SPLIT_K > 1:
        acc_g, acc_u, last = _split_k_gather(
            acc_g, acc_u, part_ptr, count_ptr, tile, row_mask, SPLIT_K, BLOCK_N, BLOCK_T
        )
    if last:
        gate = acc_g + _bias(bg_ptr, cols, N, stride_bg, HAS_BG)[:, None]
        up = acc_u + _bias(bu_ptr, cols, N, stride_bu, HAS_BU)[:, None]
        out = glu_forward(gate, up, ACTIVATION, ALPHA, LIMIT)  # out^T [BLOCK_N, BLOCK_T]
        out_ptrs = out_ptr + cols[:, None] + (rows * stride_out)[None, :]
        mask = col_mask[:, None] & row_mask[None, :]
        tl.store(out_ptrs, out.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _split_k_gather(
    acc_g, acc_u, part_ptr, count_ptr, tile, row_mask,
    SPLIT_K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr,
):  # fmt: skip
    """Write this program's partials of ``tile``, count it in, and return the full sums
    and True in the last program to arrive (the partials and False elsewhere).

    Ordering: every thread's partial stores come before the barrier; one thread's
    release-acquire increment then publishes them at GPU scope and, in the last program,
    orders its reads (``.cg``: from L2, never a stale L1 line) after every other program's
    stores."""
    tile_elems: tl.constexpr = 2 * BLOCK_T * BLOCK_N
    offs = tl.arange(0, BLOCK_T)[None, :] * BLOCK_N + tl.arange(0, BLOCK_N)[:, None]
    mask = row_mask[None, :]  # only the real tokens' columns of out^T
    base = part_ptr + tile.to(tl.int64) * (SPLIT_K * tile_elems)
    mine = base + tl.program_id(2) * tile_elems
    tl.store(mine + offs, acc_g, mask=mask)
    tl.store(mine + BLOCK_T * BLOCK_N + offs, acc_u, mask=mask)
    tl.debug_barrier()
    arrived = tl.atomic_add(count_ptr + tile, 1, sem="acq_rel", scope="gpu")
    last = arrived == SPLIT_K - 1
    if last:
        acc_g = tl.zeros_like(acc_g)
        acc_u = tl.zeros_like(acc_u)
        for s in tl.static_range(SPLIT_K):
            part = base + s * tile_elems
            acc_g += tl.load(part + offs, mask=mask, other=0.0, cache_modifier=".cg")
            acc_u += tl.load(part + BLOCK_T * BLOCK_N + offs, mask=mask, other=0.0,
                             cache_modifier=".cg")  # fmt: skip
        tl.store(count_ptr + tile, 0)  # ready for the next launch (kernel boundary orders it)
    return acc_g, acc_u, last


@triton.jit
def _gemv_load_w(ptrs, mask, MASKED: tl.constexpr, W_CACHE: tl.constexpr):
    """A weight slice: ``evict_first``, or (``W_CACHE=".cg"``) through L2 only; masked only
    where the slice can leave the matrix."""
    if MASKED:
        if W_CACHE == ".cg":  # PTX takes no eviction hint with .cg
            return tl.load(ptrs, mask=mask, other=0.0, cache_modifier=".cg")
        else:
            return tl.load(ptrs, mask=mask, other=0.0, eviction_policy="evict_first")
    else:
        if W_CACHE == ".cg":
            return tl.load(ptrs, cache_modifier=".cg")
        else:
            return tl.load(ptrs, eviction_policy="evict_first")


@triton.jit
def _gemv_step(acc_g, acc_u, x_ptrs, wg_ptrs, wu_ptrs, ks, k0, K, col_mask,
               EVEN_K: tl.constexpr, EVEN_N: tl.constexpr, W_CACHE: tl.constexpr):  # fmt: skip
    """One BLOCK_K step of the matrix-vector kernel at offset ``k0`` along K. x, which every
    program reads, is loaded with ``evict_last``; the weights, read once, with ``evict_first``
    or (``W_CACHE=".cg"``) through L2 only."""
    if EVEN_K:
        w_mask = col_mask[:, None]
        x = to_compute(tl.load(x_ptrs + k0, eviction_policy="evict_last"))
    else:
        k_mask = ks < K - k0
        w_mask = col_mask[:, None] & k_mask[None, :]
        x = to_compute(tl.load(x_ptrs + k0, mask=k_mask, other=0.0, eviction_policy="evict_last"))
    masked: tl.constexpr = not (EVEN_K and EVEN_N)
    wg = _gemv_load_w(wg_ptrs + k0, w_mask, masked, W_CACHE)
    wu = _gemv_load_w(wu_ptrs + k0, w_mask, masked, W_CACHE)
    acc_g += to_compute(wg) * x[None, :]
    acc_u += to_compute(wu) * x[None, :]
    return acc_g, acc_u


@triton.jit
def _linear_gemv_kernel(
    x_ptr,  # [M, K] tokens, rows as in the pointer kernel
    wg_ptr,  # [N, K] gate weight, row stride stride_wg, unit column stride
    wu_ptr,  # [N, K] up weight
    bg_ptr,  # [N] gate bias (unused without HAS_BG)
    bu_ptr,  # [N] up bias (unused without HAS_BU)
    out_ptr,  # [M, N] output, row stride stride_out, unit column stride
    M,
    N,
    K,
    inner_rows,
    stride_x_outer,
    stride_x_inner,
    stride_wg,
    stride_wu,
    stride_bg,
    stride_bu,
    stride_out,
    HAS_BG: tl.constexpr,
    HAS_BU: tl.constexpr,
    ACTIVATION: tl.constexpr,
    ALPHA: tl.constexpr,
    LIMIT: tl.constexpr,
    BLOCK_N: tl.constexpr,  # weight rows (of each of gate and up) per program
    BLOCK_K: tl.constexpr,  # elements of a weight row per step
    UNROLL: tl.constexpr,  # BLOCK_K steps per trip of the K loop, their loads issued together
    EVEN_K: tl.constexpr,  # K % (UNROLL * BLOCK_K) == 0: no mask along K
    EVEN_N: tl.constexpr,  # N % BLOCK_N == 0: no mask along the weight rows
    INDEX_64: tl.constexpr,  # offsets may pass 2**30 (needs_int64): 64-bit offsets
    W_CACHE: tl.constexpr = "",  # "" (evict_first) or ".cg" (the weights bypass L1)
    K_STATIC: tl.constexpr = 0,  # K itself (compiled in), or 0: K read at run time
    PDL: tl.constexpr = False,  # as in _linear_decode_kernel
):
    """Grid ``(cdiv(N, BLOCK_N), M)``: one token per program. A matrix-vector product on the
    CUDA cores: no MMA pads the token to 16 rows or the weight rows to 64, so a program can
    own a single weight row (of gate and of up; the H200 table gives it 2048 columns a step
    over 8 warps), and the weights spread over thousands of programs that keep loads in
    flight on every SM and leave no partial last wave. ``K_STATIC`` compiles K in: the few
    trips of the K loop (one or two on model shapes) become straight-line code whose loads
    all issue at once, and a one-trip program holds fewer registers (sm_90, Triton 3.9: 31
    a thread against 53 for 4096 columns over 16 warps with K read at run time). The launcher
    sends it single tokens only (more tokens would each stream the weights again). Each step
    multiplies ``[BLOCK_N, BLOCK_K]`` slices of both weights by the token's slice of x into
    fp32 accumulators of that shape (fp64 for fp64), summed over K once after the loop (a
    fixed order: deterministic). Each weight byte is read once (``_gemv_step``:
    ``evict_first``, or L2 only). A grid narrower than
    ``cdiv(N, BLOCK_N)`` makes the programs persistent: each takes every ``grid``-th block of
    weight rows in turn. Offsets are 32-bit unless ``INDEX_64`` (the launcher sets it where
    an operand spans 2**30 elements or more)."""
    row = tl.program_id(1)
    _pdl_wait(PDL)
    if INDEX_64:
        row = row.to(tl.int64)
    ks = tl.arange(0, BLOCK_K)
    x_ptrs = x_ptr + _x_row_offsets(row, inner_rows, stride_x_outer, stride_x_inner) + ks
    for block in range(tl.program_id(0), tl.cdiv(N, BLOCK_N), tl.num_programs(0)):
        cols = block * BLOCK_N + tl.arange(0, BLOCK_N)  # weight rows
        if INDEX_64:
            cols = cols.to(tl.int64)
        col_mask = cols < N
        wg_ptrs = wg_ptr + (cols * stride_wg)[:, None] + ks[None, :]  # [BLOCK_N, BLOCK_K]
        wu_ptrs = wu_ptr + (cols * stride_wu)[:, None] + ks[None, :]
        acc_g = to_compute(tl.zeros((BLOCK_N, BLOCK_K), dtype=x_ptr.dtype.element_ty))
        acc_u = tl.zeros_like(acc_g)
        if K_STATIC > 0:  # a loop of known trips: one trip is straight-line code
            k_len = K_STATIC
        else:
            k_len = K
        for k0 in range(0, k_len, UNROLL * BLOCK_K):
            for u in tl.static_range(UNROLL):
                acc_g, acc_u = _gemv_step(acc_g, acc_u, x_ptrs, wg_ptrs, wu_ptrs, ks,
                                          k0 + u * BLOCK_K, k_len, col_mask, EVEN_K, EVEN_N,
                                          W_CACHE)  # fmt: skip
        gate = tl.sum(acc_g, axis=1) + _bias(bg_ptr, cols, N, stride_bg, HAS_BG)
        up = tl.sum(acc_u, axis=1) + _bias(bu_ptr, cols, N, stride_bu, HAS_BU)
        out = glu_forward(gate, up, ACTIVATION, ALPHA, LIMIT)  # [BLOCK_N]
        out_ptrs = out_ptr + row * stride_out + cols
        tl.store(out_ptrs, out.to(out_ptr.dtype.element_ty), mask=col_mask)

"""One GEMM kernel for every training-time product whose output has the ``[M, N]`` shape of
the intermediate activation, with the GLU (or its derivative) in the epilogue.

The three products that produce ``[M, N]`` tiles all reduce over the hidden size K:

    gate = x  @ w_gate^T     x [M, K], w_gate [N, K]
    up   = x  @ w_up^T       x [M, K], w_up   [N, K]
    dh   = dy @ w_down       dy [M, K], w_down [K, N]   (the down projection's input grad)

so one program can run any subset of them in the same K loop and finish with the epilogue
the caller needs. Modes (constexpr flags), as ``ops/train.py`` uses them:

    forward, saving        HAS_X                 -> h, and gate/up (STORE_GU) for backward
    swiglu_linear backward HAS_X, dout read      -> dgate, dup   (pre-activation recomputed)
    MLP backward           HAS_DY, gate/up read  -> dgate, dup, h  (dh never in memory)
    MLP backward, recompute HAS_X and HAS_DY     -> dgate, dup, h  (nothing saved but x)

``h = act(gate) * up`` is what the down projection's weight gradient needs
(``dW_down = dy^T h``); the backward writes it next to dgate and dup instead of saving it in
the forward. Operands of the K loop come through host TMA descriptors (zero-filled out of
bounds, so no masks); the epilogue reads and writes ``[M, N]`` tensors with masked pointer
accesses and 64-bit offsets (they are column slices of wider buffers, with row strides).
Non-persistent grid in grouped order: a one-accumulator configuration with its epilogue in
four column parts (126-128 registers for SiLU and ReLU, 98 KB of shared memory at 3 stages)
leaves room for two programs per SM, whose epilogues overlap each other's main loops.

``_glu_bwd_split_kernel`` is the MLP backward's epilogue alone, for small hidden sizes where
the K loop is too short to hide it: cuBLAS forms dh first (``ops.train.split_dh``).
"""

import triton
import triton.language as tl

from flash_swiglu.activations import glu_backward, glu_forward, to_compute
from flash_swiglu.kernels.linear import _bias, _grouped_tile


@triton.jit
def _tile_ptrs(ptr, off_m, off_n, stride, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Pointers of a ``[BLOCK_M, BLOCK_N]`` tile: the tile's corner in 64-bit, the offsets
    inside it in 32-bit (fewer registers in an epilogue that holds several tiles)."""
    corner = ptr + off_m.to(tl.int64) * stride + off_n
    inner = tl.arange(0, BLOCK_M)[:, None] * stride + tl.arange(0, BLOCK_N)[None, :]
    return corner + inner


@triton.jit
def _load_tile(ptr, off_m, off_n, stride, mask, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    return to_compute(tl.load(_tile_ptrs(ptr, off_m, off_n, stride, BLOCK_M, BLOCK_N), mask=mask))


@triton.jit
def _store_tile(
    ptr, off_m, off_n, stride, mask, value, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr
):
    tl.store(
        _tile_ptrs(ptr, off_m, off_n, stride, BLOCK_M, BLOCK_N),
        value.to(ptr.dtype.element_ty),
        mask=mask,
    )


@triton.jit
def _glu_gemm_kernel(
    x_desc,  # HAS_X: x [M, K], block [BLOCK_M, BLOCK_K]
    wg_desc,  # HAS_X: w_gate [N, K] (a view), block [BLOCK_N, BLOCK_K]
    wu_desc,  # HAS_X: w_up [N, K], block [BLOCK_N, BLOCK_K]
    dy_desc,  # HAS_DY: dy [M, K], block [BLOCK_M, BLOCK_K]
    wd_desc,  # HAS_DY: w_down [K, N] (column slice of [K, N_total]), block [BLOCK_K, BLOCK_N]
    bg_ptr,  # HAS_BG: gate bias [N] (added to recomputed gate only)
    bu_ptr,
    stride_bg,
    stride_bu,
    g_ptr,  # gate pre-activation [M, N]: written (STORE_GU) or read (not HAS_X)
    u_ptr,
    stride_g,  # row strides, elements
    stride_u,
    d_ptr,  # BACKWARD without HAS_DY: dout [M, N]
    stride_d,
    h_ptr,  # STORE_H: act(gate) * up [M, N]
    stride_h,
    dg_ptr,  # BACKWARD: dgate, dup [M, N]
    du_ptr,
    stride_dg,
    stride_du,
    M,
    N,
    K,
    HAS_X: tl.constexpr,
    HAS_DY: tl.constexpr,
    BACKWARD: tl.constexpr,
    STORE_GU: tl.constexpr,
    STORE_H: tl.constexpr,
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
    EPILOGUE_SPLIT: tl.constexpr,  # run the epilogue on 1, 2 or 4 column parts
):
    pid_m, pid_n = _grouped_tile(
        tl.program_id(0), tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N), GROUP_M
    )
    off_m = pid_m * BLOCK_M
    off_n = pid_n * BLOCK_N
    acc_g = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_u = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_d = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for ki in range(tl.cdiv(K, BLOCK_K)):
        off_k = ki * BLOCK_K
        if HAS_X:
            a = x_desc.load([off_m, off_k])  # one x tile feeds both products
            wg = wg_desc.load([off_n, off_k])
            wu = wu_desc.load([off_n, off_k])
            acc_g = tl.dot(a, wg.T, acc_g, input_precision=INPUT_PRECISION)
            acc_u = tl.dot(a, wu.T, acc_u, input_precision=INPUT_PRECISION)
        if HAS_DY:
            b = dy_desc.load([off_m, off_k])
            wd = wd_desc.load([off_k, off_n])
            acc_d = tl.dot(b, wd, acc_d, input_precision=INPUT_PRECISION)

    # The epilogue runs on EPILOGUE_SPLIT column parts (1, 2 or 4): fewer live registers.
    if EPILOGUE_SPLIT == 1:
        _epilogue(acc_g, acc_u, acc_d, off_m, off_n, bg_ptr, bu_ptr, stride_bg,
                  stride_bu, g_ptr, u_ptr, stride_g, stride_u, d_ptr, stride_d, h_ptr,
                  stride_h, dg_ptr, du_ptr, stride_dg, stride_du, M, N, HAS_X, HAS_DY,
                  BACKWARD, STORE_GU, STORE_H, HAS_BG, HAS_BU, ACTIVATION, ALPHA,
                  LIMIT, BLOCK_M, BLOCK_N, 1)  # fmt: skip
    else:
        HALF: tl.constexpr = BLOCK_N // 2
        PARTS: tl.constexpr = EPILOGUE_SPLIT // 2  # per half
        g0, g1 = _halves(acc_g, BLOCK_M, BLOCK_N)
        u0, u1 = _halves(acc_u, BLOCK_M, BLOCK_N)
        d0, d1 = _halves(acc_d, BLOCK_M, BLOCK_N)
        _epilogue(g0, u0, d0, off_m, off_n, bg_ptr, bu_ptr, stride_bg, stride_bu,
                  g_ptr, u_ptr, stride_g, stride_u, d_ptr, stride_d, h_ptr, stride_h,
                  dg_ptr, du_ptr, stride_dg, stride_du, M, N, HAS_X, HAS_DY, BACKWARD,
                  STORE_GU, STORE_H, HAS_BG, HAS_BU, ACTIVATION, ALPHA, LIMIT,
                  BLOCK_M, HALF, PARTS)  # fmt: skip
        _epilogue(g1, u1, d1, off_m, off_n + HALF, bg_ptr, bu_ptr, stride_bg,
                  stride_bu, g_ptr, u_ptr, stride_g, stride_u, d_ptr, stride_d, h_ptr,
                  stride_h, dg_ptr, du_ptr, stride_dg, stride_du, M, N, HAS_X, HAS_DY,
                  BACKWARD, STORE_GU, STORE_H, HAS_BG, HAS_BU, ACTIVATION, ALPHA,
                  LIMIT, BLOCK_M, HALF, PARTS)  # fmt: skip


@triton.jit
def _halves(t, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """The left and right ``[BLOCK_M, BLOCK_N / 2]`` halves of ``t``."""
    return tl.split(tl.permute(tl.reshape(t, (BLOCK_M, 2, BLOCK_N // 2)), (0, 2, 1)))


@triton.jit
def _epilogue(
    acc_g,
    acc_u,
    acc_d,
    off_m,
    off_n,
    bg_ptr,
    bu_ptr,
    stride_bg,
    stride_bu,
    g_ptr,
    u_ptr,
    stride_g,
    stride_u,
    d_ptr,
    stride_d,
    h_ptr,
    stride_h,
    dg_ptr,
    du_ptr,
    stride_dg,
    stride_du,
    M,
    N,
    HAS_X: tl.constexpr,
    HAS_DY: tl.constexpr,
    BACKWARD: tl.constexpr,
    STORE_GU: tl.constexpr,
    STORE_H: tl.constexpr,
    HAS_BG: tl.constexpr,
    HAS_BU: tl.constexpr,
    ACTIVATION: tl.constexpr,
    ALPHA: tl.constexpr,
    LIMIT: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    PARTS: tl.constexpr,  # 1 or 2 column parts of this tile
):
    """The epilogue on one ``[BLOCK_M, BLOCK_N]`` tile, whole or as two column halves."""
    if PARTS == 1:
        _epilogue_part(acc_g, acc_u, acc_d, off_m, off_n, bg_ptr, bu_ptr, stride_bg,
                       stride_bu, g_ptr, u_ptr, stride_g, stride_u, d_ptr, stride_d,
                       h_ptr, stride_h, dg_ptr, du_ptr, stride_dg, stride_du, M, N,
                       HAS_X, HAS_DY, BACKWARD, STORE_GU, STORE_H, HAS_BG, HAS_BU,
                       ACTIVATION, ALPHA, LIMIT, BLOCK_M, BLOCK_N)  # fmt: skip
    else:
        HALF: tl.constexpr = BLOCK_N // 2
        g0, g1 = _halves(acc_g, BLOCK_M, BLOCK_N)
        u0, u1 = _halves(acc_u, BLOCK_M, BLOCK_N)
        d0, d1 = _halves(acc_d, BLOCK_M, BLOCK_N)
        _epilogue_part(g0, u0, d0, off_m, off_n, bg_ptr, bu_ptr, stride_bg, stride_bu,
                       g_ptr, u_ptr, stride_g, stride_u, d_ptr, stride_d, h_ptr,
                       stride_h, dg_ptr, du_ptr, stride_dg, stride_du, M, N, HAS_X,
                       HAS_DY, BACKWARD, STORE_GU, STORE_H, HAS_BG, HAS_BU,
                       ACTIVATION, ALPHA, LIMIT, BLOCK_M, HALF)  # fmt: skip
        _epilogue_part(g1, u1, d1, off_m, off_n + HALF, bg_ptr, bu_ptr, stride_bg,
                       stride_bu, g_ptr, u_ptr, stride_g, stride_u, d_ptr, stride_d,
                       h_ptr, stride_h, dg_ptr, du_ptr, stride_dg, stride_du, M, N,
                       HAS_X, HAS_DY, BACKWARD, STORE_GU, STORE_H, HAS_BG, HAS_BU,
                       ACTIVATION, ALPHA, LIMIT, BLOCK_M, HALF)  # fmt: skip


@triton.jit
def _epilogue_part(
    acc_g,
    acc_u,
    acc_d,
    off_m,
    off_n,
    bg_ptr,
    bu_ptr,
    stride_bg,
    stride_bu,
    g_ptr,
    u_ptr,
    stride_g,
    stride_u,
    d_ptr,
    stride_d,
    h_ptr,
    stride_h,
    dg_ptr,
    du_ptr,
    stride_dg,
    stride_du,
    M,
    N,
    HAS_X: tl.constexpr,
    HAS_DY: tl.constexpr,
    BACKWARD: tl.constexpr,
    STORE_GU: tl.constexpr,
    STORE_H: tl.constexpr,
    HAS_BG: tl.constexpr,
    HAS_BU: tl.constexpr,
    ACTIVATION: tl.constexpr,
    ALPHA: tl.constexpr,
    LIMIT: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """The GLU or its derivative on one ``[BLOCK_M, BLOCK_N]`` tile at (off_m, off_n)."""
    rows = off_m + tl.arange(0, BLOCK_M)
    cols = off_n + tl.arange(0, BLOCK_N)
    mask = (rows < M)[:, None] & (cols < N)[None, :]
    if HAS_X:
        gate = acc_g + _bias(bg_ptr, cols, N, stride_bg, HAS_BG)[None, :]
        up = acc_u + _bias(bu_ptr, cols, N, stride_bu, HAS_BU)[None, :]
        if STORE_GU:
            _store_tile(g_ptr, off_m, off_n, stride_g, mask, gate, BLOCK_M, BLOCK_N)
            _store_tile(u_ptr, off_m, off_n, stride_u, mask, up, BLOCK_M, BLOCK_N)
    else:
        gate = _load_tile(g_ptr, off_m, off_n, stride_g, mask, BLOCK_M, BLOCK_N)
        up = _load_tile(u_ptr, off_m, off_n, stride_u, mask, BLOCK_M, BLOCK_N)
    if STORE_H:
        h = glu_forward(gate, up, ACTIVATION, ALPHA, LIMIT)
        _store_tile(h_ptr, off_m, off_n, stride_h, mask, h, BLOCK_M, BLOCK_N)
    if BACKWARD:
        if HAS_DY:
            dh = acc_d  # fp32, never rounded: dh does not exist in memory
        else:
            dh = _load_tile(d_ptr, off_m, off_n, stride_d, mask, BLOCK_M, BLOCK_N)
        dgate, dup = glu_backward(gate, up, dh, ACTIVATION, ALPHA, LIMIT)
        _store_tile(dg_ptr, off_m, off_n, stride_dg, mask, dgate, BLOCK_M, BLOCK_N)
        _store_tile(du_ptr, off_m, off_n, stride_du, mask, dup, BLOCK_M, BLOCK_N)


@triton.jit
def _glu_bwd_split_kernel(
    g_ptr,  # [M, N] saved gate pre-activation (dg may be the same memory)
    u_ptr,  # [M, N] saved up pre-activation (du may be the same memory)
    d_ptr,  # [M, N] dh = dy @ w_down, formed by a GEMM before this launch (h may be it)
    dg_ptr,
    du_ptr,
    h_ptr,  # unused without STORE_H
    stride_g,
    stride_u,
    stride_d,
    stride_dg,
    stride_du,
    stride_h,
    M,
    N,
    STORE_H: tl.constexpr,
    ACTIVATION: tl.constexpr,
    ALPHA: tl.constexpr,
    LIMIT: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """The MLP backward's epilogue as a pass of its own, for a ``dh`` that a GEMM wrote:
    ``dgate, dup = glu'(gate, up, dh)`` and (``STORE_H``) ``h = act(gate) * up``, over
    ``[BLOCK_M, BLOCK_N]`` tiles in row-major order. Every output may be the memory of an
    input of the same element (dg over g, du over u, h over dh): each program reads its
    whole tile before a barrier and writes it after."""
    pid = tl.program_id(0)
    tiles_n = tl.cdiv(N, BLOCK_N)
    off_m = (pid // tiles_n) * BLOCK_M
    off_n = (pid % tiles_n) * BLOCK_N
    rows = off_m + tl.arange(0, BLOCK_M)
    cols = off_n + tl.arange(0, BLOCK_N)
    mask = (rows < M)[:, None] & (cols < N)[None, :]
    gate = _load_tile(g_ptr, off_m, off_n, stride_g, mask, BLOCK_M, BLOCK_N)
    up = _load_tile(u_ptr, off_m, off_n, stride_u, mask, BLOCK_M, BLOCK_N)
    dh = _load_tile(d_ptr, off_m, off_n, stride_d, mask, BLOCK_M, BLOCK_N)
    tl.debug_barrier()
    dgate, dup = glu_backward(gate, up, dh, ACTIVATION, ALPHA, LIMIT)
    _store_tile(dg_ptr, off_m, off_n, stride_dg, mask, dgate, BLOCK_M, BLOCK_N)
    _store_tile(du_ptr, off_m, off_n, stride_du, mask, dup, BLOCK_M, BLOCK_N)
    if STORE_H:
        h = glu_forward(gate, up, ACTIVATION, ALPHA, LIMIT)
        _store_tile(h_ptr, off_m, off_n, stride_h, mask, h, BLOCK_M, BLOCK_N)

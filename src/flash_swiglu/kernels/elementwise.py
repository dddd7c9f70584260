"""Elementwise GLU kernels: ``out = act(gate) * up`` and its fused backward.

Every operand is viewed as a matrix of ``n_rows x n_cols`` whose row index is split into two
levels, ``row = outer * inner_rows + inner``, so that any view whose leading dimensions
collapse into at most two strided groups is read in place (a slice ``x[:, :S]`` of a
``[B, S, 2N]`` tensor, a gate/up half of a packed tensor, ...). The address of element
``(row, col)`` of operand ``T`` is::

    T_ptr + outer * stride_T_outer + inner * stride_T_inner + col * stride_T_col

Column strides equal to 1 are specialised to compile-time constants by Triton, which is what
lets the loads vectorise to 128 bits. When ``INTERLEAVED`` is set, gate and up are the even
and odd columns of one packed row-contiguous tensor (gpt-oss layout): the kernel loads
``2 * BLOCK_N`` contiguous elements and splits them in registers, and the backward writes its
two gradients back interleaved the same way.

Bytes moved (``s`` bytes per element, ``n`` elements per operand): forward ``3 n s``,
backward ``5 n s``. Both are single passes: the backward recomputes the activation from
``gate`` rather than reading a saved output.

Offsets are 64-bit: a program's row start is computed in int64, and its columns and their
bound are too where a column offset can pass 2^31 (``COL_64``: a strided last dimension
spanning that many elements, or 2^30 columns), so tensors past 2^31 elements work.
"""

import triton
import triton.language as tl

from flash_swiglu.activations import glu_backward, glu_forward, to_compute


@triton.jit
def _tile_rows_cols(
    pid,
    n_rows,
    n_cols,
    inner_rows,
    TWO_GROUPS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    COL_64: tl.constexpr,
):
    """This program's tile: its rows split into (outer, inner) in int64, its first column,
    and ``n_cols``. With ``COL_64`` the first column and ``n_cols`` are int64, so every column
    offset and bound computed from them (``2 * n_cols`` of the interleaved kernels included)
    is 64-bit."""
    if COL_64:
        n_cols = tl.cast(n_cols, tl.int64)
    n_col_tiles = tl.cdiv(n_cols, BLOCK_N)
    tile_m = pid // n_col_tiles
    col_start = (pid % n_col_tiles) * BLOCK_N
    rows = tile_m.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    if TWO_GROUPS:
        outer = rows // inner_rows
        inner = rows - outer * inner_rows
    else:  # one row group (any collapsible view): no 64-bit division
        outer = tl.zeros_like(rows)
        inner = rows
    row_mask = rows < n_rows
    return outer, inner, row_mask, col_start, n_cols


@triton.jit
def _glu_fwd_kernel(
    gate_ptr,  # [n_rows, n_cols] gate (or the packed [n_rows, 2 n_cols] x if INTERLEAVED)
    up_ptr,  # [n_rows, n_cols] up (ignored if INTERLEAVED)
    out_ptr,  # [n_rows, n_cols] output
    n_rows,  # rows of every operand (product of the leading dimensions)
    n_cols,  # columns of gate, up and out
    inner_rows,  # size of the inner row group (n_rows when the rows form one group)
    stride_gate_outer,  # strides of gate, in elements
    stride_gate_inner,
    stride_gate_col,
    stride_up_outer,  # strides of up (ignored if INTERLEAVED)
    stride_up_inner,
    stride_up_col,
    stride_out_outer,  # strides of out
    stride_out_inner,
    stride_out_col,
    ACTIVATION: tl.constexpr,  # one of activations.ACTIVATIONS
    ALPHA: tl.constexpr,  # swiglu_oai only
    LIMIT: tl.constexpr,  # swiglu_oai only
    INTERLEAVED: tl.constexpr,  # gate/up are the even/odd columns of a row-contiguous x
    TWO_GROUPS: tl.constexpr,  # rows split as outer * inner_rows + inner (else outer == 0)
    BLOCK_M: tl.constexpr,  # rows per tile
    BLOCK_N: tl.constexpr,  # output columns per tile (power of two)
    COL_64: tl.constexpr = False,  # 64-bit column offsets (a column offset may pass 2^31)
):
    pid = tl.program_id(0)
    outer, inner, row_mask, col_start, n_cols = _tile_rows_cols(
        pid, n_rows, n_cols, inner_rows, TWO_GROUPS, BLOCK_M, BLOCK_N, COL_64
    )
    cols = col_start + tl.arange(0, BLOCK_N)
    if INTERLEAVED:
        cols2 = 2 * col_start + tl.arange(0, 2 * BLOCK_N)
        x_row = outer * stride_gate_outer + inner * stride_gate_inner
        x_ptrs = gate_ptr + x_row[:, None] + cols2[None, :]
        mask2 = row_mask[:, None] & (cols2 < 2 * n_cols)[None, :]
        pair = to_compute(tl.load(x_ptrs, mask=mask2, other=0.0))
        gate, up = tl.split(tl.reshape(pair, (BLOCK_M, BLOCK_N, 2)))
    else:
        gate_row = outer * stride_gate_outer + inner * stride_gate_inner
        up_row = outer * stride_up_outer + inner * stride_up_inner
        mask = row_mask[:, None] & (cols < n_cols)[None, :]
        gate = to_compute(
            tl.load(
                gate_ptr + gate_row[:, None] + (cols * stride_gate_col)[None, :],
                mask=mask,
                other=0.0,
            )
        )
        up = to_compute(
            tl.load(
                up_ptr + up_row[:, None] + (cols * stride_up_col)[None, :], mask=mask, other=0.0
            )
        )
    out = glu_forward(gate, up, ACTIVATION, ALPHA, LIMIT)
    out_row = outer * stride_out_outer + inner * stride_out_inner
    out_mask = row_mask[:, None] & (cols < n_cols)[None, :]
    tl.store(
        out_ptr + out_row[:, None] + (cols * stride_out_col)[None, :],
        out.to(out_ptr.dtype.element_ty),
        mask=out_mask,
    )


@triton.jit
def _glu_bwd_kernel(
    gate_ptr,  # [n_rows, n_cols] gate (or the packed x if INTERLEAVED)
    up_ptr,  # [n_rows, n_cols] up (ignored if INTERLEAVED)
    dout_ptr,  # [n_rows, n_cols] gradient of the output
    dgate_ptr,  # [n_rows, n_cols] gradient of gate (or the packed dx if INTERLEAVED)
    dup_ptr,  # [n_rows, n_cols] gradient of up (ignored if INTERLEAVED)
    n_rows,
    n_cols,
    inner_rows,
    stride_gate_outer,
    stride_gate_inner,
    stride_gate_col,
    stride_up_outer,
    stride_up_inner,
    stride_up_col,
    stride_dout_outer,
    stride_dout_inner,
    stride_dout_col,
    stride_dgate_outer,  # strides of dgate (of the packed dx if INTERLEAVED)
    stride_dgate_inner,
    stride_dgate_col,
    stride_dup_outer,
    stride_dup_inner,
    stride_dup_col,
    ACTIVATION: tl.constexpr,
    ALPHA: tl.constexpr,
    LIMIT: tl.constexpr,
    INTERLEAVED: tl.constexpr,
    TWO_GROUPS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    COL_64: tl.constexpr = False,
):
    pid = tl.program_id(0)
    outer, inner, row_mask, col_start, n_cols = _tile_rows_cols(
        pid, n_rows, n_cols, inner_rows, TWO_GROUPS, BLOCK_M, BLOCK_N, COL_64
    )
    cols = col_start + tl.arange(0, BLOCK_N)
    mask = row_mask[:, None] & (cols < n_cols)[None, :]
    dout_row = outer * stride_dout_outer + inner * stride_dout_inner
    dout = to_compute(
        tl.load(
            dout_ptr + dout_row[:, None] + (cols * stride_dout_col)[None, :], mask=mask, other=0.0
        )
    )
    if INTERLEAVED:
        cols2 = 2 * col_start + tl.arange(0, 2 * BLOCK_N)
        mask2 = row_mask[:, None] & (cols2 < 2 * n_cols)[None, :]
        x_row = outer * stride_gate_outer + inner * stride_gate_inner
        pair = to_compute(
            tl.load(gate_ptr + x_row[:, None] + cols2[None, :], mask=mask2, other=0.0)
        )
        gate, up = tl.split(tl.reshape(pair, (BLOCK_M, BLOCK_N, 2)))
        dgate, dup = glu_backward(gate, up, dout, ACTIVATION, ALPHA, LIMIT)
        dpair = tl.reshape(tl.join(dgate, dup), (BLOCK_M, 2 * BLOCK_N))
        dx_row = outer * stride_dgate_outer + inner * stride_dgate_inner
        tl.store(
            dgate_ptr + dx_row[:, None] + cols2[None, :],
            dpair.to(dgate_ptr.dtype.element_ty),
            mask=mask2,
        )
    else:
        gate_row = outer * stride_gate_outer + inner * stride_gate_inner
        up_row = outer * stride_up_outer + inner * stride_up_inner
        gate = to_compute(
            tl.load(
                gate_ptr + gate_row[:, None] + (cols * stride_gate_col)[None, :],
                mask=mask,
                other=0.0,
            )
        )
        up = to_compute(
            tl.load(
                up_ptr + up_row[:, None] + (cols * stride_up_col)[None, :], mask=mask, other=0.0
            )
        )
        dgate, dup = glu_backward(gate, up, dout, ACTIVATION, ALPHA, LIMIT)
        dgate_row = outer * stride_dgate_outer + inner * stride_dgate_inner
        dup_row = outer * stride_dup_outer + inner * stride_dup_inner
        tl.store(
            dgate_ptr + dgate_row[:, None] + (cols * stride_dgate_col)[None, :],
            dgate.to(dgate_ptr.dtype.element_ty),
            mask=mask,
        )
        tl.store(
            dup_ptr + dup_row[:, None] + (cols * stride_dup_col)[None, :],
            dup.to(dup_ptr.dtype.element_ty),
            mask=mask,
        )

"""Launchers and ``torch.library`` custom ops for the elementwise GLU.

Four ops, each opaque to ``torch.compile`` (fake implementations, registered autograd):

    flash_swiglu::glu_fwd(gate, up)            -> out
    flash_swiglu::glu_bwd(gate, up, dout)      -> (dgate, dup)
    flash_swiglu::glu_packed_fwd(x)            -> out          x = [..., 2N], concat/interleaved
    flash_swiglu::glu_packed_bwd(x, dout)      -> dx           dx packed like x

Inputs are read in place through their strides; outputs are new contiguous tensors, so
backward never writes into anything the user can see.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from flash_swiglu import reference
from flash_swiglu.ops._common import on_tensor_device, row_group_dims, use_triton
from flash_swiglu.ops._launch import launch as fast_launch

# ----------------------------------------------------------------------------------------
# Launch configuration
# ----------------------------------------------------------------------------------------

# Measured on an H200 (scripts/tune_elementwise_small.py, 2026-11-22, Triton 3.6, GPU time
# from CUDA-graph replays with a cold L2): tiles of 1024 elements per operand and 4 warps
# (8 elements, one 16-byte vector per thread in 16-bit types) were within 0.6% of the best
# of tiles 1024/2048/4096 x warps 2/4/8 on 4096x4096 bf16 and fp32 and 8192x14336 bf16,
# forward and backward (8192x14336 bf16: 163.2 us fwd, 273.7 us bwd, 4.3 TB/s). In the
# first, wider sweep (scripts/tune_elementwise.py) the worst configuration ran 6x slower.
TILE_ELEMS = 1024
MAX_BLOCK_N = 1024
NUM_WARPS = {"fwd": 4, "bwd": 4}
# Pinned, not left to Triton's default (which 3.10 flips): a fused multiply-add rounds once,
# so it is at least as accurate as the separate multiply and add.
ENABLE_FP_FUSION = True


def launch_config(n_rows: int, n_cols: int, pass_: str = "fwd") -> tuple[int, int, int]:
    """``(BLOCK_M, BLOCK_N, num_warps)`` for an ``n_rows x n_cols`` problem."""
    block_n = min(1 << max(n_cols - 1, 0).bit_length(), MAX_BLOCK_N, TILE_ELEMS)
    block_m = max(1, TILE_ELEMS // block_n)
    block_m = min(block_m, 1 << max(n_rows - 1, 0).bit_length())
    num_warps = NUM_WARPS[pass_] if block_m * block_n >= 1024 else 2
    return block_m, block_n, num_warps


# ----------------------------------------------------------------------------------------
# Strided views -> (n_rows, inner_rows, per-operand strides)
# ----------------------------------------------------------------------------------------


def _launch(kernel, tensors: list[torch.Tensor], n_cols: int, extra: dict):
    """Launch ``kernel`` over operands that share the leading shape of ``tensors[0]``.

    Leading dimensions that collapse into at most two strided groups go in one launch. A view
    with more groups (rare: several non-mergeable slices) is walked along its smallest group,
    one index at a time, until two are left: as many launches as the groups other than the
    two largest hold rows together, still without a copy.
    """
    dims = row_group_dims(tensors)
    if len(dims) > 2:
        _, _, d = min(dims, key=lambda g: g[0])  # the first dimension of the smallest group
        for i in range(tensors[0].shape[d]):
            _launch(kernel, [t.select(d, i) for t in tensors], n_cols, extra)
        return
    groups = [(size, strides) for size, strides, _ in dims]
    two_groups = len(groups) == 2
    if not groups:
        groups = [(1, [0] * len(tensors))]
    if len(groups) == 1:
        groups = [(1, [0] * len(tensors)), groups[0]]
    (n_outer, outer_strides), (n_inner, inner_strides) = groups
    n_rows = n_outer * n_inner
    strides = []
    for t, so, si in zip(tensors, outer_strides, inner_strides, strict=True):
        strides += [so, si, t.stride(-1)]
    pass_ = "bwd" if len(tensors) == 5 else "fwd"
    block_m, block_n, num_warps = launch_config(n_rows, n_cols, pass_)
    col_64 = needs_col_64(tensors, n_cols, block_n)
    grid = (triton_cdiv(n_rows, block_m) * triton_cdiv(n_cols, block_n),)
    fast_launch(
        kernel,
        grid,
        *tensors,
        n_rows,
        n_cols,
        n_inner,
        *strides,
        **extra,
        TWO_GROUPS=two_groups,
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        COL_64=col_64,
        num_warps=num_warps,
        enable_fp_fusion=ENABLE_FP_FUSION,
    )


def needs_col_64(tensors: list[torch.Tensor], n_cols: int, block_n: int) -> bool:
    """Whether a column offset of the kernels (the column times the last stride, up to the
    last tile's end; twice the columns in the interleaved kernels) can pass 2^31, so they
    compute them in 64 bits (``COL_64``); 32-bit otherwise, as rows are."""
    return 2 * (n_cols + block_n) * max(abs(t.stride(-1)) for t in tensors) >= 2**31


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _constexprs(activation: str, alpha: float, limit: float, interleaved: bool) -> dict:
    return dict(ACTIVATION=activation, ALPHA=alpha, LIMIT=limit, INTERLEAVED=interleaved)


def _as_row_contiguous(x: torch.Tensor) -> torch.Tensor:
    # The interleaved fast path loads 2*BLOCK_N contiguous elements; a packed x whose last
    # dimension is strided (rare) is copied once instead.
    return x if x.stride(-1) == 1 else x.contiguous()


# ----------------------------------------------------------------------------------------
# Triton launchers
# ----------------------------------------------------------------------------------------


def _fwd_triton(gate, up, activation, alpha, limit):
    from flash_swiglu.kernels import _glu_fwd_kernel

    out = torch.empty(gate.shape, dtype=gate.dtype, device=gate.device)
    if out.numel():
        n = gate.shape[-1]
        extra = _constexprs(activation, alpha, limit, False)
        _launch(_glu_fwd_kernel, [gate, up, out], n, extra)
    return out


def _packed_fwd_triton(x, activation, layout, alpha, limit):
    from flash_swiglu.kernels import _glu_fwd_kernel

    n = x.shape[-1] // 2
    if layout == "concat":
        return _fwd_triton(x[..., :n], x[..., n:], activation, alpha, limit)
    x = _as_row_contiguous(x)
    out = torch.empty((*x.shape[:-1], n), dtype=x.dtype, device=x.device)
    if out.numel():
        # gate and up both point at x; the up operand's strides are not read.
        view = x[..., :n]  # carries x's leading strides with the output's shape
        extra = _constexprs(activation, alpha, limit, True)
        _launch(_glu_fwd_kernel, [view, view, out], n, extra)
    return out


def _bwd_triton(gate, up, dout, activation, alpha, limit):
    from flash_swiglu.kernels import _glu_bwd_kernel

    dgate = torch.empty(gate.shape, dtype=gate.dtype, device=gate.device)
    dup = torch.empty(up.shape, dtype=up.dtype, device=up.device)
    if dgate.numel():
        n = gate.shape[-1]
        extra = _constexprs(activation, alpha, limit, False)
        _launch(_glu_bwd_kernel, [gate, up, dout, dgate, dup], n, extra)
    return dgate, dup


def _packed_bwd_triton(x, dout, activation, layout, alpha, limit):
    from flash_swiglu.kernels import _glu_bwd_kernel

    n = x.shape[-1] // 2
    dx = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if not dx.numel():
        return dx
    if layout == "concat":
        extra = _constexprs(activation, alpha, limit, False)
        tensors = [x[..., :n], x[..., n:], dout, dx[..., :n], dx[..., n:]]
        _launch(_glu_bwd_kernel, tensors, n, extra)
    else:
        x = _as_row_contiguous(x)
        xv, dxv = x[..., :n], dx[..., :n]
        extra = _constexprs(activation, alpha, limit, True)
        _launch(_glu_bwd_kernel, [xv, xv, dout, dxv, dxv], n, extra)
    return dx


# ----------------------------------------------------------------------------------------
# Dispatch: Triton (CUDA, or CPU under the interpreter) or the PyTorch reference
# ----------------------------------------------------------------------------------------


def forward(gate, up, activation, alpha, limit):
    if use_triton(gate.device):
        return _fwd_triton(gate, up, activation, alpha, limit)
    return reference.glu_forward(gate, up, activation, alpha, limit)


def backward(gate, up, dout, activation, alpha, limit):
    if use_triton(gate.device):
        return _bwd_triton(gate, up, dout, activation, alpha, limit)
    return reference.glu_backward(gate, up, dout, activation, alpha, limit)


def packed_forward(x, activation, layout, alpha, limit):
    if use_triton(x.device):
        return _packed_fwd_triton(x, activation, layout, alpha, limit)
    gate, up = reference.split_packed(x, layout)
    return reference.glu_forward(gate, up, activation, alpha, limit)


def packed_backward(x, dout, activation, layout, alpha, limit):
    if use_triton(x.device):
        return _packed_bwd_triton(x, dout, activation, layout, alpha, limit)
    gate, up = reference.split_packed(x, layout)
    dgate, dup = reference.glu_backward(gate, up, dout, activation, alpha, limit)
    return reference.merge_packed(dgate, dup, layout)


# ----------------------------------------------------------------------------------------
# Custom ops: what torch.compile sees (opaque, with fake implementations)
# ----------------------------------------------------------------------------------------


@torch.library.custom_op("flash_swiglu::glu_fwd", mutates_args=())
@on_tensor_device
def glu_fwd(
    gate: torch.Tensor, up: torch.Tensor, activation: str, alpha: float, limit: float
) -> torch.Tensor:
    return forward(gate, up, activation, alpha, limit)


@glu_fwd.register_fake
def _(gate, up, activation, alpha, limit):
    return gate.new_empty(gate.shape)


@torch.library.custom_op("flash_swiglu::glu_bwd", mutates_args=())
@on_tensor_device
def glu_bwd(
    gate: torch.Tensor,
    up: torch.Tensor,
    dout: torch.Tensor,
    activation: str,
    alpha: float,
    limit: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    return backward(gate, up, dout, activation, alpha, limit)


@glu_bwd.register_fake
def _(gate, up, dout, activation, alpha, limit):
    return gate.new_empty(gate.shape), up.new_empty(up.shape)


@torch.library.custom_op("flash_swiglu::glu_packed_fwd", mutates_args=())
@on_tensor_device
def glu_packed_fwd(
    x: torch.Tensor, activation: str, layout: str, alpha: float, limit: float
) -> torch.Tensor:
    return packed_forward(x, activation, layout, alpha, limit)


@glu_packed_fwd.register_fake
def _(x, activation, layout, alpha, limit):
    return x.new_empty((*x.shape[:-1], x.shape[-1] // 2))


@torch.library.custom_op("flash_swiglu::glu_packed_bwd", mutates_args=())
@on_tensor_device
def glu_packed_bwd(
    x: torch.Tensor, dout: torch.Tensor, activation: str, layout: str, alpha: float, limit: float
) -> torch.Tensor:
    return packed_backward(x, dout, activation, layout, alpha, limit)


@glu_packed_bwd.register_fake
def _(x, dout, activation, layout, alpha, limit):
    return x.new_empty(x.shape)


def _glu_setup(ctx, inputs, output):
    gate, up, activation, alpha, limit = inputs
    ctx.save_for_backward(gate, up)
    ctx.args = (activation, alpha, limit)


def _glu_backward(ctx, dout):
    gate, up = ctx.saved_tensors
    dgate, dup = glu_bwd(gate, up, dout, *ctx.args)
    return dgate, dup, None, None, None


glu_fwd.register_autograd(_glu_backward, setup_context=_glu_setup)


def _packed_setup(ctx, inputs, output):
    x, activation, layout, alpha, limit = inputs
    ctx.save_for_backward(x)
    ctx.args = (activation, layout, alpha, limit)


def _packed_backward(ctx, dout):
    (x,) = ctx.saved_tensors
    return glu_packed_bwd(x, dout, *ctx.args), None, None, None, None


glu_packed_fwd.register_autograd(_packed_backward, setup_context=_packed_setup)


# ----------------------------------------------------------------------------------------
# Eager autograd: the same kernels without the custom-op dispatch
# ----------------------------------------------------------------------------------------
# A custom op costs ~10 us of host time per call on top of an autograd.Function (measured on
# the CPU: 20 vs 11 us for a tiny tensor). For a 100 MB elementwise kernel that runs ~25 us,
# that host time is what the GPU waits for, so eager calls take this path and only traced
# code (torch.compile) goes through the custom ops. Both paths run the functions above.


class _GLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate, up, activation, alpha, limit):
        ctx.save_for_backward(gate, up)
        ctx.args = (activation, alpha, limit)
        return forward(gate, up, activation, alpha, limit)

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        gate, up = ctx.saved_tensors
        dgate, dup = backward(gate, up, dout, *ctx.args)
        return dgate, dup, None, None, None


class _PackedGLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, activation, layout, alpha, limit):
        ctx.save_for_backward(x)
        ctx.args = (activation, layout, alpha, limit)
        return packed_forward(x, activation, layout, alpha, limit)

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        (x,) = ctx.saved_tensors
        return packed_backward(x, dout, *ctx.args), None, None, None, None


@on_tensor_device
def glu(gate, up, activation, alpha, limit):
    if torch.compiler.is_compiling():
        return glu_fwd(gate, up, activation, alpha, limit)
    return _GLUFunction.apply(gate, up, activation, alpha, limit)


@on_tensor_device
def glu_packed(x, activation, layout, alpha, limit):
    if torch.compiler.is_compiling():
        return glu_packed_fwd(x, activation, layout, alpha, limit)
    return _PackedGLUFunction.apply(x, activation, layout, alpha, limit)


__all__ = [
    "backward",
    "forward",
    "glu",
    "glu_bwd",
    "glu_fwd",
    "glu_packed",
    "glu_packed_bwd",
    "glu_packed_fwd",
    "launch_config",
    "packed_backward",
    "packed_forward",
]

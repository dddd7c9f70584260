"""Compile the training kernel (``kernels/mlp.py``) in every mode ``ops/train.py`` launches,
with the configuration it would use, for sm_90 on the CPU.

Run as a script where ``TRITON_INTERPRET`` is unset; prints one JSON object per variant
(``test_compile_gate_mlp.py`` checks them). Signatures mirror an aligned launch: host TMA
descriptors typed ``tensordesc<dtype[block]>``, pointers and integers divisible by 16.
"""

from __future__ import annotations

import json
import sys

import torch

from compile_gate_linear import compile_gemm
from flash_swiglu.kernels.mlp import _glu_bwd_split_kernel, _glu_gemm_kernel
from flash_swiglu.ops import train as T

# mode -> (HAS_X, HAS_DY, BACKWARD, STORE_GU, STORE_H)
MODES = {
    "forward_saving": (True, False, False, True, True),
    "linear_backward": (True, False, True, False, False),
    "mlp_backward": (False, True, True, False, True),
    "mlp_backward_recompute": (True, True, True, False, True),
}
ACTIVATIONS = ("silu", "gelu", "gelu_tanh", "relu", "swiglu_oai")


def table_configs():
    """``(source, mode, config)``: the built-in configs and every committed table entry."""
    for mode, cfg in T.CONFIGS.items():
        yield "builtin", mode, cfg
    for path in sorted(T.L.CONFIG_DIR.glob("*_train.json")):
        data = json.loads(path.read_text())
        for mode in MODES:
            if mode in data:
                keys = T._KEYS + tuple(k for k in T.OPTIONAL_KEYS if k in data[mode])
                yield path.name, mode, {k: data[mode][k] for k in keys}


def variants():
    for source, mode, cfg in table_configs():
        for dtype in (torch.bfloat16, torch.float16, torch.float32):
            ieee = dtype == torch.float32 and source == "builtin"  # one IEEE config for all
            mma = "tf32x3" if dtype == torch.float32 else "tf32"  # ops.linear.input_precision
            precisions = (mma, "ieee") if ieee else (mma,)
            for precision in precisions:
                acts = ACTIVATIONS if dtype == torch.bfloat16 else ("silu",)
                for act in acts:
                    yield source, mode, cfg, dtype, precision, act


def compile_variant(mode, cfg, dtype, precision, act):
    has_x, has_dy, backward, store_gu, store_h = MODES[mode]
    assert T.mode_of(has_x, has_dy, backward) == mode
    cfg = dict(T.IEEE_CONFIG) if precision == "ieee" else T.adjust(cfg, dtype, precision, act)
    bm, bn, bk = cfg["BLOCK_M"], cfg["BLOCK_N"], cfg["BLOCK_K"]
    blocks = {
        "x_desc": [bm, bk],
        "wg_desc": [bn, bk],
        "wu_desc": [bn, bk],
        "dy_desc": [bm, bk],
        "wd_desc": [bk, bn],
    }
    if not has_x:  # placeholders are the dy descriptor
        for name in ("x_desc", "wg_desc", "wu_desc"):
            blocks[name] = blocks["dy_desc"]
    if not has_dy:
        blocks["dy_desc"] = blocks["wd_desc"] = blocks["x_desc"]
    constexprs = dict(
        HAS_X=has_x,
        HAS_DY=has_dy,
        BACKWARD=backward,
        STORE_GU=store_gu,
        STORE_H=store_h,
        HAS_BG=has_x,
        HAS_BU=has_x,
        ACTIVATION=act,
        ALPHA=1.702,
        LIMIT=7.0,
        INPUT_PRECISION=precision,
        BLOCK_M=bm,
        BLOCK_N=bn,
        BLOCK_K=bk,
        GROUP_M=cfg["GROUP_M"],
        EPILOGUE_SPLIT=cfg["EPILOGUE_SPLIT"],
    )
    result = compile_gemm(_glu_gemm_kernel, dtype, blocks, constexprs, cfg)
    info = dict(mode=mode, dtype=str(dtype), precision=precision, activation=act, config=cfg)
    return dict(result, **info)


def compile_split(dtype, act, store_h):
    """``_glu_bwd_split_kernel`` (``ops.train.split_epilogue``: the backward's epilogue after
    a cuBLAS dh) as launched: no K loop, pointers only."""
    bm, bn, warps = T.SPLIT_BLOCK
    cfg = dict(num_warps=warps, num_stages=1)
    constexprs = dict(STORE_H=store_h, ACTIVATION=act, ALPHA=1.702, LIMIT=7.0, BLOCK_M=bm,
                      BLOCK_N=bn)  # fmt: skip
    result = compile_gemm(_glu_bwd_split_kernel, dtype, {}, constexprs, cfg)
    info = dict(mode=T.SPLIT_ENTRY, dtype=str(dtype), precision=None, activation=act,
                config=dict(cfg, BLOCK_M=bm, BLOCK_N=bn, STORE_H=store_h))  # fmt: skip
    return dict(result, **info)


def main() -> int:
    only = sys.argv[1:]  # optional filter: mode names
    for source, mode, cfg, dtype, precision, act in variants():
        if only and mode not in only:
            continue
        result = compile_variant(mode, cfg, dtype, precision, act)
        print(json.dumps(dict(result, source=source)), flush=True)
    if not only or T.SPLIT_ENTRY in only:
        for dtype in (torch.bfloat16, torch.float16, torch.float32):
            for act in ACTIVATIONS if dtype == torch.bfloat16 else ("silu",):
                for store_h in (True, False):
                    result = compile_split(dtype, act, store_h)
                    print(json.dumps(dict(result, source="builtin")), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Compile the warp-specialized (Gluon) MLP backward (``kernels/ws_mlp.py``) for sm_90 on the
CPU, with every committed ``mlp_backward_ws`` table entry as ``ops.train.ws_config`` adjusts
it, for every activation, bf16 and fp16.

Run as a script where ``TRITON_INTERPRET`` is unset; prints one JSON object per variant
(``test_compile_gate_ws.py`` checks them). Signatures mirror an aligned launch: Gluon host
TMA descriptors (128-byte swizzled shared layouts), pointers, row strides and sizes divisible
by 16 (as Triton specializes them at launch).
"""

from __future__ import annotations

import json
import re
import sys

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.experimental.gluon import language as gl
from triton.experimental.gluon._runtime import GluonASTSource
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor
from triton.runtime.jit import mangle_type

from compile_gate_linear import _registers
from flash_swiglu.kernels.ws_mlp import mlp_backward_ws_kernel
from flash_swiglu.ops import train as T

from compile_gate import _sass

ACTIVATIONS = ("silu", "gelu", "gelu_tanh", "relu", "swiglu_oai")
GL_DTYPES = {torch.bfloat16: gl.bfloat16, torch.float16: gl.float16}
PTR = {torch.bfloat16: "*bf16", torch.float16: "*fp16"}
SETMAXNREG = re.compile(r"setmaxnreg\.\w+\.sync\.aligned\.u32\s+(\d+)")


def _desc_type(block: list[int], dtype: torch.dtype) -> str:
    """The signature type of a Gluon host descriptor with this block, as a launch makes it."""
    layout = gl.NVMMASharedLayout.get_default_for(block, GL_DTYPES[dtype])
    t = torch.empty(1024, 1024, dtype=dtype)
    return mangle_type(TensorDescriptor.from_tensor(t, block, layout))


def entries():
    for path in sorted(T.L.CONFIG_DIR.glob("*_train.json")):
        entry = json.loads(path.read_text()).get("mlp_backward_ws")
        if entry is not None:
            yield path.name, {key: entry[key] for key in T.WS_KEYS}


def compile_variant(cfg: dict, dtype: torch.dtype, activation: str) -> dict:
    cfg = dict(cfg)
    if activation in ("gelu_tanh", "swiglu_oai"):  # as ops.train.ws_config launches them
        cfg["EPILOGUE_SPLIT"] = max(16, cfg["EPILOGUE_SPLIT"])
    bm, bn, bk = cfg.pop("BLOCK_M"), cfg.pop("BLOCK_N"), cfg.pop("BLOCK_K")
    names = list(mlp_backward_ws_kernel.arg_names)
    consts = dict(cfg, ACTIVATION=activation, ALPHA=1.702, LIMIT=7.0)
    types = {"dy_desc": _desc_type([bm, bk], dtype), "wd_desc": _desc_type([bk, bn], dtype)}
    signature, constexprs, attrs = {}, {}, {}
    for i, name in enumerate(names):
        if name in consts:
            signature[name] = "constexpr"
            constexprs[(i,)] = consts[name]
        elif name in types:
            signature[name] = types[name]
        else:
            signature[name] = PTR[dtype] if name.endswith("_ptr") else "i32"
            attrs[(i,)] = [["tt.divisibility", 16]]
    src = GluonASTSource(mlp_backward_ws_kernel, signature, constexprs=constexprs, attrs=attrs)
    options = {"num_warps": 4, "enable_fp_fusion": T.L.ENABLE_FP_FUSION}
    compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options)
    ptx = compiled.asm["ptx"]
    sass = _sass(compiled.asm["cubin"])
    return {
        "shared": compiled.metadata.shared,
        "regs": _registers(compiled.asm["cubin"]),
        "warps": compiled.metadata.num_warps,
        "setmaxnreg": sorted({int(v) for v in SETMAXNREG.findall(ptx)}),
        "wgmma": "wgmma.mma_async" in ptx,
        "bulk_tensor": "cp.async.bulk.tensor" in ptx,
        "ptx_local": "ld.local" in ptx or "st.local" in ptx,
        "sass_checked": bool(sass),
        "sass_spills": len(re.findall(r"\b(LDL|STL)\b", sass)),
        "config": dict(cfg, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk),
    }  # fmt: skip


def main() -> int:
    for source, cfg in entries():
        for dtype in (torch.bfloat16, torch.float16):
            for act in ACTIVATIONS if dtype == torch.bfloat16 else ("silu",):
                row = compile_variant(cfg, dtype, act)
                info = dict(source=source, dtype=str(dtype), activation=act)
                print(json.dumps(dict(row, **info)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

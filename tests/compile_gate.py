"""Compile every kernel for sm_90 on the CPU and report what its PTX and SASS show.

Run as a script (``python tests/compile_gate.py``) in a process where ``TRITON_INTERPRET``
is unset: under the interpreter ``@triton.jit`` yields interpreted functions, which cannot
be compiled. Prints one JSON object per compiled variant. ``test_compile_gate.py`` runs it
and checks the results. Signatures mirror what the runtime specialises for an aligned launch:
pointers and integer arguments divisible by 16, unit column strides as constants.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from flash_swiglu.kernels.elementwise import _glu_bwd_kernel, _glu_fwd_kernel
from flash_swiglu.ops.elementwise import ENABLE_FP_FUSION, launch_config

SMEM_LIMIT = 232448
PTR = {torch.float16: "*fp16", torch.bfloat16: "*bf16", torch.float32: "*fp32"}


def _sass(cubin: bytes) -> str:
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "nvdisasm")
    if not os.path.exists(tool):
        return ""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        return subprocess.run([tool, "-c", f.name], capture_output=True, text=True).stdout


def compile_variant(kernel, dtype, constexprs: dict, num_warps: int, aligned: bool = True):
    names = kernel.arg_names
    signature, consts, attrs = {}, {}, {}
    for i, name in enumerate(names):
        if name.endswith("_ptr"):
            signature[name] = PTR[dtype]
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif name.isupper():
            signature[name] = "constexpr"
            consts[(i,)] = constexprs[name]
        elif name.endswith("_col") and aligned:
            signature[name] = "constexpr"
            consts[(i,)] = 1
        else:
            signature[name] = "i32"
            if aligned:
                attrs[(i,)] = [["tt.divisibility", 16]]
    src = ASTSource(fn=kernel, signature=signature, constexprs=consts, attrs=attrs)
    options = {"num_warps": num_warps, "enable_fp_fusion": ENABLE_FP_FUSION}
    compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options)
    ptx = compiled.asm["ptx"]
    sass = _sass(compiled.asm["cubin"])
    return {
        "shared": compiled.metadata.shared,
        "ld_v4": bool(re.search(r"ld\.global(\.\w+)*\.v4", ptx)),
        "st_v4": bool(re.search(r"st\.global(\.\w+)*\.v4", ptx)),
        "ptx_local": "ld.local" in ptx or "st.local" in ptx,
        "sass_checked": bool(sass),
        "sass_spills": bool(re.search(r"\b(LDL|STL)\b", sass)),
    }


def variants():
    acts = ["silu", "gelu", "gelu_tanh", "relu", "swiglu_oai"]
    for kernel, kname in ((_glu_fwd_kernel, "fwd"), (_glu_bwd_kernel, "bwd")):
        for dtype in (torch.bfloat16, torch.float16, torch.float32):
            for interleaved in (False, True):
                for act in acts if (dtype == torch.bfloat16 and not interleaved) else ["silu"]:
                    yield kernel, kname, dtype, act, interleaved, True, False
        yield kernel, kname, torch.bfloat16, "silu", False, False, False  # unaligned shape
        for interleaved in (False, True):  # 64-bit column offsets (spans past 2^31)
            yield kernel, kname, torch.bfloat16, "silu", interleaved, True, True


def main() -> int:
    for kernel, kname, dtype, act, interleaved, aligned, col_64 in variants():
        block_m, block_n, warps = launch_config(4096, 4096 if aligned else 4097, kname)
        constexprs = dict(
            ACTIVATION=act,
            ALPHA=1.702,
            LIMIT=7.0,
            INTERLEAVED=interleaved,
            TWO_GROUPS=not aligned,
            BLOCK_M=block_m,
            BLOCK_N=block_n,
            COL_64=col_64,
        )
        result = compile_variant(kernel, dtype, constexprs, warps, aligned)
        result.update(
            kernel=kname,
            dtype=str(dtype),
            activation=act,
            interleaved=interleaved,
            aligned=aligned,
            col_64=col_64,
            block=[block_m, block_n],
            num_warps=warps,
        )
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

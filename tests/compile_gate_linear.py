"""Compile every fused gate/up projection kernel and config for sm_90 on the CPU.

Run as a script (``python tests/compile_gate_linear.py``) where ``TRITON_INTERPRET`` is
unset; prints one JSON object per compiled variant (``test_compile_gate_linear.py`` checks
them). Configs: every entry of every table in ``configs/*_linear.json`` plus the built-in
defaults of ``ops/linear.py`` (and the decode default with ``SPLIT_K`` 4). Signatures
mirror an aligned runtime launch: pointers and integers divisible by 16, unit bias strides
as constants, and host TMA descriptors as the ``tensordesc<dtype[block]>`` type the
runtime's specialisation gives a ``TensorDescriptor``.
An unaligned pointer-kernel variant (no divisibility) stands for K or N not a multiple of 8.
The matrix-vector and decode kernels compile with no masks along K and 32-bit offsets
(``EVEN_K``, not ``INDEX_64``) where aligned, and with the masks and 64-bit offsets where not;
decode entries with the widest token tile (and warps) they launch with
(``ops.linear.decode_tile``): their key's token bucket, 64 tokens for a default.
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

from flash_swiglu.kernels.linear import (
    _linear_decode_kernel,
    _linear_decode_tma_kernel,
    _linear_gemv_kernel,
    _linear_ptr_kernel,
    _linear_tma_kernel,
)
from flash_swiglu.ops import linear as L

from compile_gate import _sass

TY = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}
KERNELS = {
    "tma": _linear_tma_kernel,
    "pointer": _linear_ptr_kernel,
    "decode": _linear_decode_kernel,
    "decode_tma": _linear_decode_tma_kernel,
    "gemv": _linear_gemv_kernel,
}
H200_SMS = 132
PDL_PATHS = ("decode", "decode_tma", "gemv")  # programmatic dependent launches on sm_90
SCRATCH = {"part_ptr": "*fp32", "count_ptr": "*i32"}  # the split-K decode kernel's


def _registers(cubin: bytes) -> int | None:
    """Registers per thread of the compiled kernel (``cuobjdump``), None without the tool."""
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    if not os.path.exists(tool):
        return None
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run(
            [tool, "--dump-resource-usage", f.name], capture_output=True, text=True
        )
    found = re.search(r"REG:(\d+)", out.stdout)
    return int(found.group(1)) if found else None


def compile_gemm(kernel, dtype, blocks: dict, constexprs: dict, cfg: dict, aligned: bool = True):
    """Compile one GEMM kernel for sm_90 and report what its PTX and SASS show. ``blocks``:
    the block shape of each ``*_desc`` argument (typed ``tensordesc<dtype[block]>``)."""
    ty = TY[dtype]
    signature, consts, attrs = {}, {}, {}
    for i, (name, param) in enumerate(zip(kernel.arg_names, kernel.params, strict=True)):
        if name.endswith("_desc"):
            signature[name] = f"tensordesc<{ty}[{blocks[name][0]}, {blocks[name][1]}]>"
        elif name in SCRATCH:
            signature[name] = SCRATCH[name]
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif name.endswith("_ptr"):
            signature[name] = f"*{ty}"
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif param.is_constexpr:
            signature[name] = "constexpr"
            consts[(i,)] = constexprs[name]
        elif name in ("stride_bg", "stride_bu"):
            signature[name] = "constexpr"
            consts[(i,)] = 1
        else:
            signature[name] = "i32"
            if aligned:
                attrs[(i,)] = [["tt.divisibility", 16]]
    src = ASTSource(fn=kernel, signature=signature, constexprs=consts, attrs=attrs)
    options = {
        "num_warps": cfg["num_warps"],
        "num_stages": cfg["num_stages"],
        "enable_fp_fusion": L.ENABLE_FP_FUSION,
    }
    if cfg.get("maxnreg"):
        options["maxnreg"] = cfg["maxnreg"]
    compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options)
    ptx = compiled.asm["ptx"]
    sass = _sass(compiled.asm["cubin"])
    return {
        "shared": compiled.metadata.shared,
        "regs": _registers(compiled.asm["cubin"]),
        "wgmma": "wgmma.mma_async" in ptx,
        "mma_sync": bool(re.search(r"\bmma\.sync", ptx)),
        "bulk_tensor": "cp.async.bulk.tensor" in ptx,
        "cp_async": "cp.async.cg" in ptx or "cp.async.ca" in ptx,
        "vector_loads": bool(re.search(r"\bld\.global(\.[\w:]+)*\.v4\.", ptx)),
        "ptx_local": "ld.local" in ptx or "st.local" in ptx,
        "atomics": re.findall(r"\batom\.[\w.]+", ptx),
        "grid_wait": "griddepcontrol.wait" in ptx,
        "sass_checked": bool(sass),
        "sass_spills": bool(re.search(r"\b(LDL|STL)\b", sass)),
    }


def compile_variant(path: str, dtype, cfg: dict, constexprs: dict, aligned: bool = True):
    bm, bn, bk = cfg.get("BLOCK_M"), cfg["BLOCK_N"], cfg["BLOCK_K"]
    if path == "decode_tma":
        bm = constexprs["BLOCK_T"]  # the token tile
    blocks = {"x_desc": [bm, bk], "wg_desc": [bn, bk], "wu_desc": [bn, bk], "out_desc": [bm, bn]}
    return compile_gemm(KERNELS[path], dtype, blocks, constexprs, cfg, aligned)


def committed_configs():
    """``(path, source, config)`` for the built-in defaults and every table entry."""
    for path, cfg in L.BUILTIN.items():
        yield path, "builtin", cfg
    yield "decode", "builtin split-k", dict(L.BUILTIN["decode"], SPLIT_K=4)
    yield "decode", "builtin split-k 8", dict(L.BUILTIN["decode"], SPLIT_K=8)
    yield "decode", "builtin TMA", dict(L.BUILTIN["decode"], TMA=True)
    yield "decode", "builtin TMA split-k", dict(L.BUILTIN["decode"], TMA=True, SPLIT_K=4)
    yield "decode", "builtin K_ROTATE", dict(L.BUILTIN["decode"], K_ROTATE=1)
    yield "decode", "builtin TMA K_ROTATE", dict(L.BUILTIN["decode"], TMA=True, K_ROTATE=1)
    yield "decode", "builtin ROWS", dict(L.BUILTIN["decode"], ROWS=31)
    yield "decode", "builtin TMA ROWS", dict(L.BUILTIN["decode"], TMA=True, ROWS=31)
    for table in sorted(L.CONFIG_DIR.glob("*_linear.json")):
        data = json.loads(table.read_text())
        for path in L.BUILTIN:
            for key, cfg in data.get(path, {}).items():
                if "KERNEL" not in cfg:  # {"KERNEL": "decode"}: not a configuration
                    yield path, f"{table.name}:{key}", cfg
        default = data.get("decode", {}).get("default")
        if default is not None and "SPLIT_K" not in default:  # auto_split_k's widest split
            yield "decode", f"{table.name}:default split-k 8", dict(default, SPLIT_K=8)


def _constexprs(cfg: dict, activation: str, bias: bool, precision: str) -> dict:
    return dict(
        HAS_BG=bias,
        HAS_BU=bias,
        ACTIVATION=activation,
        ALPHA=1.702,
        LIMIT=7.0,
        INPUT_PRECISION=precision,
        BLOCK_M=cfg.get("BLOCK_M"),
        BLOCK_N=cfg["BLOCK_N"],
        BLOCK_K=cfg["BLOCK_K"],
        BLOCK_T=16,
        UNROLL=cfg.get("UNROLL", 1),
        W_CACHE=cfg.get("W_CACHE", ""),
        K_STATIC=cfg.get("K_STATIC", 0),
        EVEN_K=cfg.get("EVEN_K", True),
        EVEN_N=cfg.get("EVEN_N", True),
        INDEX_64=cfg.get("INDEX_64", False),
        GROUP_M=cfg.get("GROUP_M"),
        NUM_SMS=H200_SMS,
        SPLIT_K=cfg.get("SPLIT_K", 1),
        K_ROTATE=cfg.get("K_ROTATE", 0),
        ROWS=cfg.get("ROWS", 0),
        PDL=cfg.get("PDL", False),
    )


def _mma(dtype) -> str:
    """The input precision of an MMA launch: fp32 runs three TF32 products (``tf32x3``,
    ``ops.linear.input_precision``); 16-bit ignores it (Triton's default, ``tf32``)."""
    return "tf32x3" if dtype == torch.float32 else "tf32"


def _static_k(source: str, raw: dict) -> int:
    """The K a ``STATIC_K`` entry compiles in: its table key's, else 4096; 0 otherwise."""
    if not raw.get("STATIC_K"):
        return 0
    found = re.search(r"_k(\d+)$", source)
    return int(found.group(1)) if found else 4096


def _gemv_variants(source, raw):
    acts = ["silu", "gelu", "gelu_tanh", "relu", "swiglu_oai"]
    if source == "builtin":  # K compiled in, whatever the tables say
        yield from _gemv_variants("builtin static K", dict(raw, STATIC_K=True))
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        cfg = dict(raw, BLOCK_K=max(16, raw["BLOCK_K"] * 2 // dtype.itemsize))
        cfg["K_STATIC"] = _static_k(source, raw)
        for aligned in (True, False):
            # Aligned: no masks and 32-bit offsets (a model's weights); unaligned: masks on
            # both axes and 64-bit offsets, the other branch of each.
            c = dict(L.adjust_config("gemv", cfg, dtype, aligned, "none"), EVEN_K=aligned,
                     EVEN_N=aligned, INDEX_64=not aligned)  # fmt: skip
            for act in acts if dtype == torch.bfloat16 and aligned else ["silu"]:
                yield "gemv", source, c, dtype, act, act == "silu", aligned, "none"


def variants():
    """``(path, source, config, dtype, activation, bias, aligned, precision)``, with the
    config as the launcher would use it (BLOCK_K scaled per dtype, capped when unaligned)."""
    acts = ["silu", "gelu", "gelu_tanh", "relu", "swiglu_oai"]
    for path, source, raw in committed_configs():
        raw = {k: v for k, v in raw.items() if k in L._CONFIG_KEYS + L._OPTIONAL_KEYS}
        if path == "gemv":  # CUDA-core products: no input precision to vary
            yield from _gemv_variants(source, raw)
            continue
        if path == "decode" and raw.get("TMA"):  # 16-bit, aligned operands only
            for dtype in (torch.bfloat16, torch.float16):
                for act in acts if dtype == torch.bfloat16 else ["silu"]:
                    mma = _mma(dtype)
                    adjusted = L.adjust_config(path, raw, dtype, True, mma)
                    yield "decode_tma", source, adjusted, dtype, act, act == "silu", True, mma
            continue
        for dtype in (torch.bfloat16, torch.float16, torch.float32):
            cfg = dict(raw, BLOCK_K=max(16, raw["BLOCK_K"] * 2 // dtype.itemsize))
            for act in acts if dtype == torch.bfloat16 else ["silu"]:
                adjusted = L.adjust_config(path, cfg, dtype, True, _mma(dtype))
                yield path, source, adjusted, dtype, act, act == "silu", True, _mma(dtype)
            if path == "tma":
                continue  # TMA needs aligned operands, and never runs IEEE fp32 (pointer does)
            for aligned, precision in ((False, _mma(dtype)), (True, "ieee"), (False, "ieee")):
                if dtype != torch.float32 and precision == "ieee":
                    continue
                adjusted = L.adjust_config(path, cfg, dtype, aligned, precision)
                if path == "decode" and not aligned:  # the masks along K, 64-bit offsets
                    adjusted.update(EVEN_K=False, INDEX_64=True)
                yield path, source, adjusted, dtype, "silu", True, aligned, precision


def _decode_launch(path: str, source: str, cfg: dict, dtype, aligned: bool, precision) -> dict:
    """What a decode entry launches with at the most tokens it serves (its key's token
    bucket, 64 for a default): ``BLOCK_T``, ``SPLIT_K`` and ``num_warps`` as
    ``ops.linear.decode_tile`` and ``decode_split_warps`` set them."""
    found = re.search(r":m(\d+)", source)
    bucket = int(found.group(1)) if found else L.DECODE_MAX_TOKENS
    fast = aligned and dtype.itemsize == 2
    tf32x3 = precision == "tf32x3"
    block_t = L.decode_tile(bucket, cfg["BLOCK_N"], fast, path == "decode_tma", tf32x3)
    split, warps = L.decode_split_warps(
        block_t, cfg["BLOCK_N"], cfg.get("SPLIT_K", 1), cfg["num_warps"], fast, tf32x3
    )
    return dict(BLOCK_T=block_t, SPLIT_K=split, num_warps=warps)


def main() -> int:
    for path, source, cfg, dtype, act, bias, aligned, precision in variants():
        if path in PDL_PATHS:  # as they launch on sm_90 (ops.linear.use_pdl)
            cfg = dict(cfg, PDL=True)
        constexprs = _constexprs(cfg, act, bias, precision)
        if path in ("decode", "decode_tma"):  # the widest token tile the entry runs with
            launch = _decode_launch(path, source, cfg, dtype, aligned, precision)
            constexprs.update(BLOCK_T=launch["BLOCK_T"], SPLIT_K=launch["SPLIT_K"])
            cfg = dict(cfg, num_warps=launch["num_warps"], SPLIT_K=launch["SPLIT_K"])
        result = compile_variant(path, dtype, cfg, constexprs, aligned)
        result.update(
            path=path,
            source=source,
            dtype=str(dtype),
            activation=act,
            bias=bias,
            aligned=aligned,
            precision=precision,
            config=cfg,
        )
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

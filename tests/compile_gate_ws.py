"""Compile the warp-specialized (Gluon) kernels of ``kernels/ws_mlp.py`` for sm_90 on the CPU:
the MLP backward with every committed ``mlp_backward_ws`` table entry as
``ops.train.ws_config`` launches it for each activation (its ``activations`` items), the
hand-off backward with its built-in configuration (``HANDOFF_CONFIG``), and the forward
(saving the pre-activation or not, with and without biases) with its built-in configuration,
every committed ``forward_saving_ws`` entry (and each of its per-shape items) and every entry
of the launch tables' ``ws`` sections, and in bf16 with ``COALESCE_OUT`` on the built-in and
a cooperative configuration (without g and u, where it applies), and the forward with the
activation in the loader's partition (``glu_forward_merged_kernel``, built-in configuration);
every activation in bf16,
SiLU in fp16 (and in fp16 every activation whose backward entry launches a configuration of
its own).

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
from flash_swiglu.kernels.ws_mlp import (
    FORWARD_MERGED_CONFIG,
    HANDOFF_CONFIG,
    MERGED_CONFIG,
    WS_FORWARD_CONFIG,
    glu_forward_merged_kernel,
    glu_forward_ws_kernel,
    handoff_parts,
    merged_parts,
    mlp_backward_handoff_kernel,
    mlp_backward_merged_kernel,
    mlp_backward_ws_kernel,
)
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


def entries(kind: str = "mlp_backward_ws", activation: str = "silu"):
    """``(source, config)`` of every committed table entry ``kind`` as ``activation`` launches
    it: the training tables' entries (none where its ``activations`` item is null), or for
    ``projection_ws`` every entry of the launch tables' ``ws`` section."""
    if kind == "projection_ws":
        for path in sorted(T.L.CONFIG_DIR.glob("*_linear.json")):
            for key, entry in json.loads(path.read_text()).get("ws", {}).items():
                cfg = T.ws_entry(entry, kind, activation, None)
                if cfg is not None:
                    yield f"{path.name}:{key}", cfg
        return
    for path in sorted(T.L.CONFIG_DIR.glob("*_train.json")):
        entry = json.loads(path.read_text()).get(kind)
        if entry is not None:
            # ``ws_entry`` as a launch takes it (a HANDOFF entry: the hand-off kernel's keys;
            # its ``activations`` item for ``activation`` merged over it), each of its
            # per-shape items merged over it as well.
            sources = [(path.name, None)] + [
                (f"{path.name}:{key}", tuple(int(part[1:]) for part in key.split("_")))
                for key in entry.get("shapes", {})
            ]
            for source, shape in sources:
                cfg = T.ws_entry(entry, kind, activation, None, shape)
                if cfg is not None:
                    yield source, cfg


def _compile(kernel, descs: dict, consts: dict, dtype: torch.dtype, maxnreg=None) -> dict:
    """Compile ``kernel`` with these descriptor blocks and constexprs; other arguments are
    pointers of ``dtype`` or 32-bit integers, all divisible by 16."""
    names = list(kernel.arg_names)
    signature, constexprs, attrs = {}, {}, {}
    for i, name in enumerate(names):
        if name in consts:
            signature[name] = "constexpr"
            constexprs[(i,)] = consts[name]
        elif name in descs:
            signature[name] = _desc_type(descs[name], dtype)
        else:
            signature[name] = PTR[dtype] if name.endswith("_ptr") else "i32"
            attrs[(i,)] = [["tt.divisibility", 16]]
    src = GluonASTSource(kernel, signature, constexprs=constexprs, attrs=attrs)
    options = {"num_warps": 4, "enable_fp_fusion": T.L.ENABLE_FP_FUSION}
    if maxnreg:
        options["maxnreg"] = maxnreg
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
    }


def compile_variant(cfg: dict, dtype: torch.dtype, activation: str) -> dict:
    """The MLP backward with ``cfg``, a table entry as ``ops.train.ws_entry`` gives it for
    ``activation`` (its parts for that activation already decided there)."""
    cfg = dict(cfg)
    if cfg.pop("MERGED", False):
        return compile_merged(cfg, dtype, activation)
    if cfg.pop("HANDOFF", False):
        return compile_handoff(cfg, dtype, activation)
    bm, bn, bk = cfg.pop("BLOCK_M"), cfg.pop("BLOCK_N"), cfg.pop("BLOCK_K")
    descs = {"dy_desc": [bm, bk], "wd_desc": [bk, bn]}
    consts = dict(cfg, ACTIVATION=activation, ALPHA=1.702, LIMIT=7.0)
    row = _compile(mlp_backward_ws_kernel, descs, consts, dtype)
    return dict(row, kernel="mlp_backward", config=dict(cfg, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk))


def compile_handoff(cfg: dict, dtype: torch.dtype, activation: str) -> dict:
    """The hand-off backward (``ws_mlp.mlp_backward_handoff``) with ``cfg``, as it launches."""
    cfg = dict(cfg)
    cfg["EPILOGUE_SPLIT"] = handoff_parts(activation, cfg["EPILOGUE_SPLIT"])
    bm, bn, bk = cfg.pop("BLOCK_M"), cfg.pop("BLOCK_N"), cfg.pop("BLOCK_K")
    maxnreg = cfg.pop("maxnreg")
    descs = {"dy_desc": [bm, bk], "wd_desc": [bk, bn]}
    consts = dict(cfg, ACTIVATION=activation, ALPHA=1.702, LIMIT=7.0)
    row = _compile(mlp_backward_handoff_kernel, descs, consts, dtype, maxnreg)
    config = dict(cfg, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, maxnreg=maxnreg)
    return dict(row, kernel="mlp_backward_handoff", config=config)


def compile_merged(cfg: dict, dtype: torch.dtype, activation: str) -> dict:
    """The backward with the epilogue in the loader's partition
    (``ws_mlp.mlp_backward_merged_kernel``, session 39) with ``cfg``, as it launches."""
    cfg = dict(cfg)
    cfg["EPILOGUE_SPLIT"] = merged_parts(activation, cfg["EPILOGUE_SPLIT"])
    bm, bn, bk = cfg.pop("BLOCK_M"), cfg.pop("BLOCK_N"), cfg.pop("BLOCK_K")
    descs = {"dy_desc": [bm, bk], "wd_desc": [bk, bn]}
    consts = dict(cfg, ACTIVATION=activation, ALPHA=1.702, LIMIT=7.0)
    row = _compile(mlp_backward_merged_kernel, descs, consts, dtype)
    config = dict(cfg, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk)
    return dict(row, kernel="mlp_backward_merged", config=config)


def compile_forward(
    cfg: dict, dtype: torch.dtype, activation: str, store_gu: bool, bias: bool
) -> dict:
    cfg = dict(cfg)
    merged = cfg.pop("MERGED", False)
    bm, bh, bk = cfg.pop("BLOCK_M"), cfg.pop("BLOCK_H"), cfg.pop("BLOCK_K")
    descs = {"x_desc": [bm, bk], "wg_desc": [bh, bk], "wu_desc": [bh, bk]}
    consts = dict(cfg, HAS_BG=bias, HAS_BU=bias, STORE_GU=store_gu, ACTIVATION=activation,
                  ALPHA=1.702, LIMIT=7.0)  # fmt: skip
    kernel = glu_forward_merged_kernel if merged else glu_forward_ws_kernel
    row = _compile(kernel, descs, consts, dtype)
    info = dict(kernel="forward_merged" if merged else "forward", store_gu=store_gu, bias=bias)
    return dict(row, **info, config=dict(cfg, BLOCK_M=bm, BLOCK_H=bh, BLOCK_K=bk))


# ``COALESCE_OUT`` (session 37; timed in session 38, no gain, in no table): the built-in
# ping-pong configuration and the cooperative one of the launch table's shape-wide entries.
COALESCE_OUT_SOURCES = {
    "builtin": WS_FORWARD_CONFIG,
    "cooperative": dict(WS_FORWARD_CONFIG, BLOCK_H=128, GROUP_M=16, STAGES=4, COOP=True),
}


def main() -> int:
    silu = {json.dumps(cfg, sort_keys=True) for _, cfg in entries()}  # SiLU's launched entries
    for dtype in (torch.bfloat16, torch.float16):
        for act in ACTIVATIONS:
            info = dict(dtype=str(dtype), activation=act)
            # fp16: SiLU, and every other activation only where its entry launches a
            # configuration of its own (a per-activation item)
            every = dtype == torch.bfloat16 or act == "silu"
            backward = [
                (source, cfg) for source, cfg in entries("mlp_backward_ws", act)
                if every or json.dumps(cfg, sort_keys=True) not in silu
            ]  # fmt: skip
            if every:
                backward.append(("builtin handoff", dict(HANDOFF_CONFIG, HANDOFF=True)))
                backward.append(("builtin handoff fp32 dh",
                                 dict(HANDOFF_CONFIG, HANDOFF=True, DH_FP32=True)))  # fmt: skip
                backward.append(("builtin merged", dict(MERGED_CONFIG, MERGED=True)))
            for source, cfg in backward:
                row = compile_variant(cfg, dtype, act)
                print(json.dumps(dict(row, source=source, **info)), flush=True)
            if not every:
                continue
            forward = [("builtin", WS_FORWARD_CONFIG), *entries("forward_saving_ws", act),
                       *entries("projection_ws", act)]  # fmt: skip
            if dtype == torch.bfloat16:  # the outputs-only conversion, not in a table yet
                forward += [(f"{name} coalesce_out", dict(cfg, COALESCE_OUT=True))
                            for name, cfg in COALESCE_OUT_SOURCES.items()]  # fmt: skip
            # the activation in the loader's partition (session 40; no table entry)
            forward.append(("builtin merged", dict(FORWARD_MERGED_CONFIG, MERGED=True)))
            compiled = {}  # entries of one configuration (several shapes' buckets) compile once
            for source, cfg in forward:
                for store_gu, bias in ((True, False), (False, True)):
                    if store_gu and cfg.get("COALESCE_OUT"):
                        continue  # with g and u stored the flag changes nothing
                    key = (json.dumps(cfg, sort_keys=True), store_gu, bias)
                    if key not in compiled:
                        compiled[key] = compile_forward(cfg, dtype, act, store_gu, bias)
                    print(json.dumps(dict(compiled[key], source=source, **info)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

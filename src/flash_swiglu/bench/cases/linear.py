"""``--op linear``: the gate/up projection ``out = act(x @ w_gate^T) * (x @ w_up^T)``.

``x [M, K]`` (M tokens, K hidden), ``w_gate, w_up [N, K]`` (N intermediate, ``nn.Linear``
layout), ``out [M, N]``; x ~ N(0, 1), weights ~ N(0, 1/K), no bias. Shapes are the MLPs of
``MODELS`` at each token count M (BENCHMARKING.md).

FLOPs: ``4 M N K`` forward (two products), ``8 M N K`` backward (dx and the two weight
gradients), ``12 M N K`` both. Ideal bytes with ``s`` bytes per element: forward reads x and
both weights and writes out, ``(M K + 2 N K + M N) s``; backward reads x, the weights and
dout and writes dx and the weight gradients; forward + backward both. For M <= 64 the
weights dominate: the kernel streams ``2 N K s`` bytes and is held against the copy bandwidth.

Backends (every one reads the same inputs; what a backend needs packed is packed outside the
timed region by ``prepare``):
    torch         ``reference.act_glu(F.linear(x, w_gate), F.linear(x, w_up))``: eager
    torch-packed  one ``F.linear`` on ``[w_gate; w_up]``, the activation on its two halves
    compile       ``torch.compile`` of ``torch``
    compile-max   the same with ``mode="max-autotune-no-cudagraphs"``: max-autotune's kernel
                  choice without its own CUDA graphs, which could not be captured inside the
                  graphs every backend is timed in (``bench.timing``)
    cublas        ``x @ [w_gate; w_up]^T`` alone: the GEMM's speed of light, checked against
                  the float64 product (it computes no activation); forward only
    liger         Liger-Kernel's fused ``liger_kernel.ops.mlp.gemm_swiglu`` (its inference
                  path, ``store_preact=False``); silu, forward only (it has no autograd)
    liger-mul     two ``F.linear`` and Liger's fused GLU (``LigerSiLUMulFunction``)
    triton        ``flash_swiglu.swiglu_linear`` (``swiglu_linear_packed`` for a packed layout)
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

import flash_swiglu
from flash_swiglu import reference
from flash_swiglu.bench.backends import Skip, compile_eager, liger_function, liger_object
from flash_swiglu.bench.cases.elementwise import LIGER

BACKENDS = (
    "torch",
    "torch-packed",
    "compile",
    "compile-max",
    "cublas",
    "liger",
    "liger-mul",
    "triton",
)
# The peers flash-swiglu is compared with (``cublas`` computes no activation).
PEERS = ("torch", "torch-packed", "compile", "compile-max", "liger", "liger-mul")
FORWARD_ONLY = {
    "cublas": "the bare product has no SwiGLU backward to compare",
    "liger": "Liger's gemm_swiglu has no autograd (its backward is LigerMLPFunction's)",
}

# model -> (hidden K, intermediate N)
MODELS = {
    "llama-3.2-1b": (2048, 8192),
    "llama-3-8b": (4096, 14336),
    "qwen2.5-7b": (3584, 18944),
    "llama-3-70b": (8192, 28672),
}
TOKENS = (1, 8, 32, 128, 512, 2048, 8192, 16384)
MEMORY_BOUND_TOKENS = 64  # up to here the weights dominate the bytes (decode)
CUSTOM = "custom"  # the model name of --shape K,N

# Options left out take their value from the suite of the device.
SUITES: dict[str, dict[str, Any]] = {
    "cuda": {
        "models": tuple(MODELS),
        "tokens": TOKENS,
        "dtypes": ("bfloat16", "float16"),
        "passes": ("fwd",),
        "activations": ("silu",),
        "backends": BACKENDS,
    },
    # Through Triton's interpreter: a small custom shape, the decode and the tiled paths.
    "cpu": {
        "shape": (64, 96),
        "tokens": (1, 80),
        "dtypes": ("float32", "float16"),
        "passes": ("fwd",),
        "activations": ("silu",),
        "backends": ("torch", "torch-packed", "cublas", "triton"),
    },
}

PASS_FLOPS = {"fwd": 4, "bwd": 8, "fwd+bwd": 12}  # times M N K


def pack_weights(w_gate: torch.Tensor, w_up: torch.Tensor, layout: str) -> torch.Tensor:
    """``[2N, K]``: ``[w_gate; w_up]`` (``concat``) or their rows alternating (``interleaved``)."""
    if layout == "interleaved":
        return torch.stack([w_gate, w_up], dim=1).flatten(0, 1)
    return torch.cat([w_gate, w_up])


def product(x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor) -> torch.Tensor:
    """``[x w_gate^T, x w_up^T]``: what the ``cublas`` backend computes, by two products."""
    return torch.cat([F.linear(x, w_gate), F.linear(x, w_up)], dim=-1)


@dataclass(frozen=True)
class LinearCase:
    model: str
    hidden: int  # K
    intermediate: int  # N
    tokens: int  # M
    dtype: torch.dtype
    activation: str = "silu"
    layout: str = "separate"  # of the weight the triton backend reads
    op: str = "linear"

    @property
    def label(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.")
        return f"{self.activation}/{self.layout}/{dtype}/{self.model}/M{self.tokens}"

    def fields(self) -> dict[str, Any]:
        return {
            "activation": self.activation,
            "layout": self.layout,
            "dtype": str(self.dtype).removeprefix("torch."),
            "model": self.model,
            "tokens": self.tokens,
            "hidden": self.hidden,
            "intermediate": self.intermediate,
            "shape": [self.tokens, self.hidden, self.intermediate],
            "memory_bound": self.tokens <= MEMORY_BOUND_TOKENS,
        }

    def make_inputs(
        self, device: torch.device, generator: torch.Generator
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        def randn(*shape: int, std: float = 1.0) -> torch.Tensor:
            t = torch.randn(shape, generator=generator, device=device, dtype=self.dtype)
            return t.mul_(std)

        m, k, n = self.tokens, self.hidden, self.intermediate
        weights = [randn(n, k, std=k**-0.5) for _ in range(2)]
        return [randn(m, k), *weights], randn(m, n)

    def function(self, backend: str) -> Callable[..., torch.Tensor]:
        activation, layout = self.activation, self.layout
        if backend == "triton":
            if layout == "separate":
                return lambda x, w_gate, w_up: flash_swiglu.swiglu_linear(
                    x, w_gate, w_up, activation=activation
                )
            return lambda x, w: flash_swiglu.swiglu_linear_packed(
                x, w, activation=activation, layout=layout
            )
        if backend == "cublas":
            return lambda x, w: x @ w.T
        if backend == "torch-packed":
            return lambda x, w: reference.act_glu(*F.linear(x, w).chunk(2, dim=-1), activation)
        if backend == "liger":
            if activation != "silu":
                raise Skip(f"Liger's gemm_swiglu computes silu only, not {activation}")
            return _liger_gemm_swiglu()
        if backend == "liger-mul":
            if activation not in LIGER:
                raise Skip(f"Liger has no fused {activation}")
            glu = liger_function(*LIGER[activation])
            return lambda x, w_gate, w_up: glu(F.linear(x, w_gate), F.linear(x, w_up))

        def eager(x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor) -> torch.Tensor:
            return reference.act_glu(F.linear(x, w_gate), F.linear(x, w_up), activation)

        if backend == "torch":
            return eager
        if backend == "compile":
            return compile_eager(eager)
        if backend == "compile-max":
            return compile_eager(eager, mode="max-autotune-no-cudagraphs")
        raise ValueError(f"unknown backend {backend!r}")

    def prepare(self, backend: str, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        x, w_gate, w_up = inputs
        if backend in ("torch-packed", "cublas"):
            return [x, pack_weights(w_gate, w_up, "concat")]
        if backend == "triton" and self.layout != "separate":
            return [x, pack_weights(w_gate, w_up, self.layout)]
        return inputs

    def reference(self, backend: str) -> tuple[str, Callable[..., torch.Tensor]] | None:
        if backend == "cublas":
            return "the product x [w_gate; w_up]^T", product
        return None

    def unsupported(self, backend: str, pass_: str) -> str | None:
        return FORWARD_ONLY.get(backend) if pass_ != "fwd" else None

    def ideal_bytes(self, pass_: str) -> tuple[int, int]:
        s = self.dtype.itemsize
        x = self.tokens * self.hidden * s
        w = 2 * self.intermediate * self.hidden * s
        out = self.tokens * self.intermediate * s  # out, or dout
        if pass_ == "fwd":
            return x + w, out
        if pass_ == "bwd":
            return x + w + out, x + w
        return x + w + out, out + x + w

    def flops(self, pass_: str) -> int:
        return PASS_FLOPS[pass_] * self.tokens * self.intermediate * self.hidden


def _liger_gemm_swiglu() -> Callable[..., torch.Tensor]:
    """Liger's fused forward ``gemm_swiglu(input [B, S, K], w_gate, w_up, gate_multiplier,
    store_preact)`` as a function of ``(x [M, K], w_gate, w_up)``."""
    gemm_swiglu = liger_object("mlp", "gemm_swiglu")
    if liger_object("mlp", "TensorDescriptor") is None:
        raise Skip("Liger's gemm_swiglu needs triton.tools.tensor_descriptor, missing here")
    params = inspect.signature(gemm_swiglu).parameters
    if "store_preact" not in params or "gate_multiplier" not in params:
        raise Skip(f"liger_kernel.ops.mlp.gemm_swiglu has an unknown signature {list(params)}")

    def fused(x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor) -> torch.Tensor:
        out, _ = gemm_swiglu(x.unsqueeze(0), w_gate, w_up, 1.0, store_preact=False)
        return out.squeeze(0)

    return fused


def cases(args: argparse.Namespace) -> list[LinearCase]:
    """The cases of ``args``: every model x tokens x dtype x activation x layout asked for
    (``args.shapes``: ``[(model, K, N)]``)."""
    return [
        LinearCase(model, k, n, m, dtype, activation, layout)
        for model, k, n in args.shapes
        for dtype in args.dtypes
        for activation in args.activations
        for layout in args.layouts
        for m in args.tokens
    ]

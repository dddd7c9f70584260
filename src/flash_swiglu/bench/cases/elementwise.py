"""``--op elementwise``: ``out = act(gate) * up`` on ``rows x cols`` operands.

Layouts: ``separate`` (two tensors ``gate``, ``up``), ``concat`` and ``interleaved`` (one
``[rows, 2 * cols]`` tensor, as produced by a fused gate/up projection).

Ideal bytes with ``n = rows * cols`` elements per operand of ``s`` bytes: forward reads gate
and up and writes out (``3 n s``); backward reads gate, up and dout and writes dgate and dup
(``5 n s``); forward + backward ``8 n s``. The same bytes are used for every backend, so
GB/s compares times.

Backends:
    torch    ``reference.act_glu`` in the inputs' dtype (for packed layouts after
             ``reference.split_packed``): what a PyTorch model does
    compile  ``torch.compile`` of exactly that function
    triton   ``flash_swiglu.swiglu`` / ``flash_swiglu.swiglu_packed``
    liger    ``LigerSiLUMulFunction`` (silu) and ``LigerGELUMulFunction`` (gelu_tanh). Liger
             needs contiguous operands, so for packed layouts it is timed with the copies
             it makes of the two halves; its backward writes the gradients into the
             buffers saved by its forward (the inputs themselves, when they are contiguous),
             which is one reason every backend gets its own copies of the inputs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

import flash_swiglu
from flash_swiglu import _names, reference
from flash_swiglu.bench.backends import BACKENDS, Skip, compile_eager, liger_function

# Operand-sized tensors (read, written) per pass.
PASS_TENSORS = {"fwd": (2, 1), "bwd": (3, 2), "fwd+bwd": (5, 3)}

# --sweep: elements per operand, 2^16 ... 2^28, at a fixed number of columns.
SWEEP_ELEMENTS = tuple(1 << k for k in range(16, 29))

# Options left out take their value from the suite of the device.
SUITES: dict[str, dict[str, Any]] = {
    # The original brief: 4096 x 4096 per operand, every dtype, every backend.
    "cuda": {
        "rows": 4096,
        "cols": 4096,
        "dtypes": ("float16", "bfloat16", "float32"),
        "passes": ("fwd", "bwd"),
        "activations": ("silu",),
        "backends": BACKENDS,
    },
    # A correctness run through Triton's interpreter (torch.compile would need minutes of C++
    # compilation per case; ask for it with --backend compile).
    "cpu": {
        "rows": 64,
        "cols": 1000,
        "dtypes": ("float32", "float16"),
        "passes": ("fwd", "bwd"),
        "activations": _names.ACTIVATIONS,
        "backends": ("torch", "triton", "liger"),
    },
}

# Liger-Kernel's fused GLU of each activation: (module under liger_kernel.ops, class).
LIGER = {"silu": ("swiglu", "LigerSiLUMulFunction"), "gelu_tanh": ("geglu", "LigerGELUMulFunction")}


@dataclass(frozen=True)
class ElementwiseCase:
    activation: str
    layout: str
    dtype: torch.dtype
    rows: int
    cols: int
    op: str = "elementwise"

    @property
    def label(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.")
        return f"{self.activation}/{self.layout}/{dtype}/{self.rows}x{self.cols}"

    def fields(self) -> dict[str, Any]:
        return {
            "activation": self.activation,
            "layout": self.layout,
            "dtype": str(self.dtype).removeprefix("torch."),
            "shape": [self.rows, self.cols],
            "n_elements": self.rows * self.cols,
        }

    def make_inputs(
        self, device: torch.device, generator: torch.Generator
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        def randn(*shape: int) -> torch.Tensor:
            return torch.randn(shape, generator=generator, device=device, dtype=self.dtype)

        if self.layout == "separate":
            args = [randn(self.rows, self.cols), randn(self.rows, self.cols)]
        else:
            args = [randn(self.rows, 2 * self.cols)]
        return args, randn(self.rows, self.cols)

    def function(self, backend: str) -> Callable[..., torch.Tensor]:
        activation, layout = self.activation, self.layout
        if backend == "triton":
            if layout == "separate":
                return lambda gate, up: flash_swiglu.swiglu(gate, up, activation=activation)
            return lambda x: flash_swiglu.swiglu_packed(x, activation=activation, layout=layout)
        if backend == "liger":
            if activation not in LIGER:
                raise Skip(f"Liger has no fused {activation}")
            return self._packed(liger_function(*LIGER[activation]))
        eager = self._packed(lambda gate, up: reference.act_glu(gate, up, activation))
        if backend == "torch":
            return eager
        if backend == "compile":
            return compile_eager(eager)
        raise ValueError(f"unknown backend {backend!r}")

    def _packed(self, glu: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        """``glu(gate, up)`` itself for separate operands, else ``x -> glu(*split(x))``."""
        if self.layout == "separate":
            return glu
        layout = self.layout
        return lambda x: glu(*reference.split_packed(x, layout))

    def prepare(self, backend: str, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        return inputs  # every backend reads the operands as they are

    def reference(self, backend: str) -> None:
        return None  # every backend computes what the baseline computes

    def unsupported(self, backend: str, pass_: str) -> None:
        return None  # every backend has every pass

    def ideal_bytes(self, pass_: str) -> tuple[int, int]:
        operand = self.rows * self.cols * self.dtype.itemsize
        read, written = PASS_TENSORS[pass_]
        return read * operand, written * operand

    def flops(self, pass_: str) -> int:
        return 0  # memory-bound: rated in GB/s only


def cases(args: argparse.Namespace) -> list[ElementwiseCase]:
    """The cases of ``args``: every activation x layout x dtype x shape asked for."""
    if args.sweep:
        shapes = [(max(1, n // args.cols), args.cols) for n in SWEEP_ELEMENTS]
    else:
        shapes = [(args.rows, args.cols)]
    return [
        ElementwiseCase(activation, layout, dtype, rows, cols)
        for activation in args.activations
        for layout in args.layouts
        for dtype in args.dtypes
        for rows, cols in shapes
    ]

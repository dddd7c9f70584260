"""Benchmark ops: what each ``--op`` measures, as a list of cases the harness runs.

A case is one problem (shapes, dtype, variant) that every backend computes. The harness
(``flash_swiglu.bench.harness``) knows nothing about GLUs: it asks a case for random inputs,
for each backend's function of those inputs, and for the ideal bytes of each pass, and does
the rest (the float64 reference, the error check, timing, the roofline fractions) the same
way for every op. A new op (``linear``: the GEMM-fused projection; ``mlp``: the training
step) is a new module here that returns its cases, plus its entry in ``OPS``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, Protocol

import torch

from flash_swiglu.bench.cases import elementwise


class Case(Protocol):
    """One problem that every backend computes."""

    op: str

    @property
    def label(self) -> str:
        """Short name of the case in tables and plots, e.g. ``silu/separate/float16/4096x4096``."""
        ...

    def fields(self) -> dict[str, Any]:
        """JSON fields describing the case in a result row (activation, shape, ...)."""
        ...

    def make_inputs(
        self, device: torch.device, generator: torch.Generator
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Random inputs of the function (the tensors gradients are taken for) and a random
        gradient of its output."""
        ...

    def function(self, backend: str) -> Callable[..., torch.Tensor]:
        """``backend``'s implementation, called with the inputs; raises ``Skip`` if none."""
        ...

    def ideal_bytes(self, pass_: str) -> tuple[int, int]:
        """``(read, written)``: the bytes the pass must move at least, each input read once and
        each output written once."""
        ...


OPS: dict[str, Callable[[argparse.Namespace], list[Case]]] = {
    "elementwise": elementwise.cases,
}

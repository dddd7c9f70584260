"""Benchmark ops: what each ``--op`` measures, as a list of cases the harness runs.

A case is one problem (shapes, dtype, variant) that every backend computes. The harness
(``flash_swiglu.bench.harness``) knows nothing about GLUs: it asks a case for random inputs,
for each backend's function of those inputs (and the arguments it takes them as), for the
reference each backend is checked against, and for the ideal bytes and FLOPs of each pass,
and does the rest (the float64 reference, the error check, timing, the roofline fractions)
the same way for every op. A new op is a new module here that returns its cases, plus its
entry in ``OPS``: ``elementwise`` (the GLU alone), ``linear`` (the gate/up projection with the
GLU fused in) and ``mlp`` (a training step of the whole MLP). An op whose backends are modules
with state rather than functions of the inputs (``mlp``) brings its own loop (``Op.run``), in
the harness's terms: same checks, same rows.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import torch

from flash_swiglu.bench.cases import elementwise, linear, mlp


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
        """``backend``'s implementation, called with ``prepare(backend, inputs)``; raises
        ``Skip`` if none. The baseline (``torch``) takes the inputs as they are."""
        ...

    def prepare(self, backend: str, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        """The arguments ``backend``'s function takes, made from the inputs once, outside the
        timed region (a packed weight), and differentiably: gradients reach the inputs."""
        ...

    def reference(self, backend: str) -> tuple[str, Callable[..., torch.Tensor]] | None:
        """``(what it computes, eager function of the inputs)`` when ``backend`` computes
        something else than the baseline (a bare GEMM): its float64 run is then the oracle
        and its run in the case's dtype the error yardstick. None: the baseline's."""
        ...

    def unsupported(self, backend: str, pass_: str) -> str | None:
        """Why ``backend`` cannot run ``pass_`` (None when it can)."""
        ...

    def ideal_bytes(self, pass_: str) -> tuple[int, int]:
        """``(read, written)``: the bytes the pass must move at least, each input read once and
        each output written once."""
        ...

    def flops(self, pass_: str) -> int:
        """The floating-point operations of the pass (0 where they do not bound it)."""
        ...


class Op(NamedTuple):
    """One ``--op``: its cases for the parsed options, its backends, its suite per device, and
    its own measuring loop where ``harness.run_case`` does not fit (same arguments)."""

    cases: Callable[[argparse.Namespace], list[Case]]
    backends: tuple[str, ...]
    suites: dict[str, dict[str, Any]]
    run: Callable[..., list[dict[str, Any]]] | None = None


OPS: dict[str, Op] = {
    "elementwise": Op(elementwise.cases, elementwise.BACKENDS, elementwise.SUITES),
    "linear": Op(linear.cases, linear.BACKENDS, linear.SUITES),
    "mlp": Op(mlp.cases, mlp.BACKENDS, mlp.SUITES, mlp.run_case),
}

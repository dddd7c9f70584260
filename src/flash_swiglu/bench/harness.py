"""The measuring loop, the same for every op: check, time twice, make the result rows.

For each case and pass:

1. The float64 reference: the eager function (``torch`` backend) run with autograd on
   float64 copies of the inputs.
2. Every backend runs the pass once on fresh copies of the inputs (which also warms it up:
   compilation, autotuning) and its outputs are checked (``checks.check``).
3. Every backend is timed, then every backend is timed again (two rounds, interleaved, so a
   drift of the clocks or the machine shows as the spread between the two medians).

Passes: ``fwd`` times ``fn(*inputs)``; ``bwd`` runs the forward once outside the timed
region and times ``torch.autograd.grad(out, inputs, dout, retain_graph=True)``; ``fwd+bwd``
times the forward and that gradient together.

A backend that raises is reported as an error in its row; the others carry on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from flash_swiglu.bench.backends import BASELINE, Skip, unavailable
from flash_swiglu.bench.cases import Case
from flash_swiglu.bench.checks import check, max_abs_err
from flash_swiglu.bench.roofline import gbps
from flash_swiglu.bench.timing import Timing, measure

PASSES = ("fwd", "bwd", "fwd+bwd")
SEED = 0
ROUNDS = 2


def run_pass(
    fn: Callable[..., torch.Tensor], args: list[torch.Tensor], dout: torch.Tensor, pass_: str
) -> list[torch.Tensor]:
    """The outputs a pass produces: ``[out]``, the gradients, or both."""
    out = fn(*args)
    if pass_ == "fwd":
        return [out]
    grads = list(torch.autograd.grad(out, args, dout))
    return grads if pass_ == "bwd" else [out, *grads]


def timed_call(
    fn: Callable[..., torch.Tensor], args: list[torch.Tensor], dout: torch.Tensor, pass_: str
) -> Callable[[], object]:
    """The call to time for ``pass_`` (for ``bwd`` the forward runs here, once)."""
    if pass_ == "fwd":
        return lambda: fn(*args)
    if pass_ == "bwd":
        out = fn(*args)
        return lambda: torch.autograd.grad(out, args, dout, retain_graph=True)
    return lambda: torch.autograd.grad(fn(*args), args, dout)


def fresh_inputs(
    inputs: Sequence[torch.Tensor], pass_: str, dtype: torch.dtype | None = None
) -> list[torch.Tensor]:
    """Private copies of the inputs for one backend (Liger's backward overwrites its inputs),
    requiring grad unless the pass is ``fwd``."""
    return [t.detach().to(dtype=dtype, copy=True).requires_grad_(pass_ != "fwd") for t in inputs]


def backend_functions(
    case: Case, backends: Sequence[str], device: torch.device
) -> tuple[dict[str, Callable[..., torch.Tensor]], dict[str, str]]:
    """``({backend: function}, {backend: reason it is skipped})`` for one case."""
    functions: dict[str, Callable[..., torch.Tensor]] = {}
    skipped: dict[str, str] = {}
    for backend in backends:
        reason = unavailable(backend, device)
        if reason is None:
            try:
                functions[backend] = case.function(backend)
            except Skip as e:
                reason = str(e)
        if reason is not None:
            skipped[backend] = reason
    return functions, skipped


def run_case(
    case: Case,
    backends: Sequence[str],
    passes: Sequence[str],
    device: torch.device,
    copy_bw_gbps: float,
    on_pass_done: Callable[[str], None] = lambda label: None,
) -> list[dict[str, Any]]:
    """The result rows of one case: one per pass and backend (``torch`` always included)."""
    backends = [BASELINE, *(b for b in backends if b != BASELINE)]
    functions, skipped = backend_functions(case, backends, device)
    inputs, dout = case.make_inputs(device, torch.Generator(device=device).manual_seed(SEED))
    rows = []
    for pass_ in passes:
        results = _measure_pass(case, pass_, functions, inputs, dout, device)
        eager = results[BASELINE].get("median_ms")
        for backend in backends:
            row = _row(case, pass_, backend, device, copy_bw_gbps, results.get(backend, {}))
            row["skipped"] = skipped.get(backend)
            if row["median_ms"] is not None and eager is not None:
                row["speedup_vs_eager"] = eager / row["median_ms"]
            rows.append(row)
        on_pass_done(f"{case.label} {pass_}")
    return rows


def _measure_pass(
    case: Case,
    pass_: str,
    functions: dict[str, Callable[..., torch.Tensor]],
    inputs: list[torch.Tensor],
    dout: torch.Tensor,
    device: torch.device,
) -> dict[str, dict[str, Any]]:
    """``{backend: partial row}`` with the check and timing fields of one pass."""
    eager = functions[BASELINE]
    expected = [
        t.detach() for t in run_pass(eager, fresh_inputs(inputs, pass_, torch.float64), dout.double(), pass_)
    ]
    eager_outputs = run_pass(eager, fresh_inputs(inputs, pass_), dout, pass_)
    eager_errors = [max_abs_err(o, r) for o, r in zip(eager_outputs, expected, strict=True)]
    results: dict[str, dict[str, Any]] = {}
    for backend, fn in functions.items():
        try:
            outputs = run_pass(fn, fresh_inputs(inputs, pass_), dout, pass_)
            c = check(outputs, expected, eager_errors)
            results[backend] = {
                "max_abs_err": c.max_abs_err,
                "err_torch": c.err_torch,
                "passed": c.passed,
            }
        except Exception as e:
            results[backend] = {"passed": False, "error": f"{type(e).__name__}: {e}"}
    del expected, eager_outputs

    calls = {}
    for backend, fn in functions.items():
        if "error" not in results[backend]:
            try:
                calls[backend] = timed_call(fn, fresh_inputs(inputs, pass_), dout, pass_)
            except Exception as e:
                results[backend].update(passed=False, error=f"{type(e).__name__}: {e}")
    timings: dict[str, list[Timing]] = {backend: [] for backend in calls}
    for _ in range(ROUNDS):
        for backend, call in calls.items():
            if "error" in results[backend]:
                continue
            try:
                timings[backend].append(measure(call, device))
            except Exception as e:
                results[backend].update(passed=False, error=f"{type(e).__name__}: {e}")
    for backend, ts in timings.items():
        if len(ts) == ROUNDS:
            results[backend].update(
                median_ms=ts[0].median_ms,
                p20_ms=ts[0].p20_ms,
                p80_ms=ts[0].p80_ms,
                median_ms_repeat=ts[1].median_ms,
            )
    return results


def _row(
    case: Case,
    pass_: str,
    backend: str,
    device: torch.device,
    copy_bw_gbps: float,
    result: dict[str, Any],
) -> dict[str, Any]:
    ideal = case.ideal_bytes(pass_)
    median = result.get("median_ms")
    rate = gbps(ideal, median) if median else None
    return {
        "op": case.op,
        "pass": pass_,
        "backend": backend,
        **case.fields(),
        "device": device.type,
        "median_ms": median,
        "p20_ms": result.get("p20_ms"),
        "p80_ms": result.get("p80_ms"),
        "median_ms_repeat": result.get("median_ms_repeat"),
        "ideal_bytes": ideal,
        "gbps": rate,
        "frac_copy_bw": rate / copy_bw_gbps if rate else None,
        "copy_bw_gbps": copy_bw_gbps,
        "speedup_vs_eager": None,
        "max_abs_err": result.get("max_abs_err"),
        "err_torch": result.get("err_torch"),
        "passed": result.get("passed"),
        "skipped": None,
        "error": result.get("error"),
    }

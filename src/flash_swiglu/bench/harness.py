"""The measuring loop, the same for every op: check, time twice, make the result rows.

For each case and pass:

1. The float64 reference: the eager function (``torch`` backend) run with autograd on
   float64 copies of the inputs.
2. Every backend runs the pass once on fresh copies of the inputs (which also warms it up:
   compilation, autotuning) and its outputs are checked (``checks.check``).
3. Every backend is timed, then every backend is timed again (two rounds, interleaved, so a
   drift of the clocks or the machine shows as the spread between the two medians). On
   CUDA the times are GPU times from CUDA-graph replays (``timing.measure_graph``); the
   CPU time to issue one call (``host_ms``) and the per-call ``do_bench`` median
   (``call_median_ms``, which includes any wait for the CPU) are recorded beside them.

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
from flash_swiglu.bench.roofline import gbps, same_size_copy_gbps
from flash_swiglu.bench.timing import Timing, host_ms, measure, measure_call

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


def with_baseline(backends: Sequence[str]) -> list[str]:
    """``backends`` with the baseline (``torch``) first."""
    return [BASELINE, *(b for b in backends if b != BASELINE)]


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
    if device.type == "cuda":
        # One side stream for everything (inputs, the forward a bwd pass keeps, warm-up,
        # capture, timing): autograd runs a backward on the stream of its forward, and CUDA
        # graphs capture only from a side stream.
        with torch.cuda.stream(torch.cuda.Stream(device)):
            return _run_case(case, backends, passes, device, copy_bw_gbps, on_pass_done)
    return _run_case(case, backends, passes, device, copy_bw_gbps, on_pass_done)


def _run_case(case, backends, passes, device, copy_bw_gbps, on_pass_done):
    backends = with_baseline(backends)
    functions, skipped = backend_functions(case, backends, device)
    inputs, dout = case.make_inputs(device, torch.Generator(device=device).manual_seed(SEED))
    rows = []
    for pass_ in passes:
        results = _check(pass_, functions, inputs, dout)
        _time(pass_, functions, inputs, dout, device, results)
        eager_ms = results[BASELINE].get("median_ms")
        local_copy = same_size_copy_gbps(sum(case.ideal_bytes(pass_)), device)
        for backend in backends:
            result = {"skipped": skipped[backend]} if backend in skipped else results[backend]
            row = _row(case, pass_, backend, device, copy_bw_gbps, eager_ms, result)
            row["same_size_copy_gbps"] = local_copy
            row["frac_same_size_copy"] = row["gbps"] / local_copy if row["gbps"] else None
            rows.append(row)
        on_pass_done(f"{case.label} {pass_}")
    return rows


def _error(e: Exception) -> dict[str, Any]:
    return {"passed": False, "error": f"{type(e).__name__}: {e}"}


def _check(
    pass_: str,
    functions: dict[str, Callable[..., torch.Tensor]],
    inputs: list[torch.Tensor],
    dout: torch.Tensor,
) -> dict[str, dict[str, Any]]:
    """``{backend: {max_abs_err, err_torch, passed}}`` (or ``{passed, error}``) of one pass."""
    eager = functions[BASELINE]
    reference_inputs = fresh_inputs(inputs, pass_, torch.float64)
    expected = [t.detach() for t in run_pass(eager, reference_inputs, dout.double(), pass_)]
    eager_outputs = run_pass(eager, fresh_inputs(inputs, pass_), dout, pass_)
    eager_errors = [max_abs_err(o, r) for o, r in zip(eager_outputs, expected, strict=True)]
    del eager_outputs
    results = {}
    for backend, fn in functions.items():
        try:
            c = check(
                run_pass(fn, fresh_inputs(inputs, pass_), dout, pass_), expected, eager_errors
            )
            results[backend] = {
                "max_abs_err": c.max_abs_err,
                "err_torch": c.err_torch,
                "passed": c.passed,
            }
        except Exception as e:  # a failing backend is reported in its row
            results[backend] = _error(e)
    return results


def _time(
    pass_: str,
    functions: dict[str, Callable[..., torch.Tensor]],
    inputs: list[torch.Tensor],
    dout: torch.Tensor,
    device: torch.device,
    results: dict[str, dict[str, Any]],
) -> None:
    """Add ``median_ms``, ``p20_ms``, ``p80_ms``, ``median_ms_repeat`` (and on CUDA
    ``host_ms``) to ``results``."""
    calls = {}
    for backend, fn in functions.items():
        if "error" not in results[backend]:
            try:
                calls[backend] = timed_call(fn, fresh_inputs(inputs, pass_), dout, pass_)
            except Exception as e:
                results[backend].update(_error(e))
    timings: dict[str, list[Timing]] = {backend: [] for backend in calls}
    for _ in range(ROUNDS):
        for backend, call in calls.items():
            if "error" not in results[backend]:
                try:
                    timings[backend].append(measure(call, device))
                except Exception as e:
                    results[backend].update(_error(e))
    for backend, ts in timings.items():
        if len(ts) == ROUNDS:
            first, repeat = ts
            results[backend].update(
                median_ms=first.median_ms,
                p20_ms=first.p20_ms,
                p80_ms=first.p80_ms,
                median_ms_repeat=repeat.median_ms,
            )
            if device.type == "cuda":
                results[backend]["host_ms"] = host_ms(calls[backend])
                results[backend]["call_median_ms"] = measure_call(calls[backend]).median_ms


def _row(
    case: Case,
    pass_: str,
    backend: str,
    device: torch.device,
    copy_bw_gbps: float,
    eager_ms: float | None,
    result: dict[str, Any],
) -> dict[str, Any]:
    read, written = case.ideal_bytes(pass_)
    ideal = read + written
    median = result.get("median_ms")
    rate = gbps(ideal, median) if median else None
    return {
        "op": case.op,
        "case": case.label,
        "pass": pass_,
        "backend": backend,
        **case.fields(),
        "device": device.type,
        "median_ms": median,
        "p20_ms": result.get("p20_ms"),
        "p80_ms": result.get("p80_ms"),
        "median_ms_repeat": result.get("median_ms_repeat"),
        "host_ms": result.get("host_ms"),
        "call_median_ms": result.get("call_median_ms"),
        "timing": "cuda-graph replay, cold L2" if device.type == "cuda" else "cpu wall clock",
        "ideal_bytes": ideal,
        "ideal_read_bytes": read,
        "ideal_write_bytes": written,
        "gbps": rate,
        "frac_copy_bw": rate / copy_bw_gbps if rate else None,
        "copy_bw_gbps": copy_bw_gbps,
        "speedup_vs_eager": eager_ms / median if median and eager_ms else None,
        "max_abs_err": result.get("max_abs_err"),
        "err_torch": result.get("err_torch"),
        "passed": result.get("passed"),
        "skipped": result.get("skipped"),
        "error": result.get("error"),
    }

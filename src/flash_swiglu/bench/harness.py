"""The measuring loop, the same for every op: check, time in rounds, make the result rows.

For each case and pass:

1. The float64 reference: the eager function (``torch`` backend) run with autograd on
   float64 copies of the inputs (for a backend that computes something else, such as the
   bare GEMM of ``--op linear``, the case's own reference for it, ``Case.reference``).
2. Every backend runs the pass once on fresh copies of the inputs (which also warms it up:
   compilation, autotuning) and its outputs are checked (``checks.check``). A backend that
   takes its inputs in another form (a packed weight) gets them from ``Case.prepare``,
   outside the timed region.
3. Every backend is timed once a round in ``timing.ROUNDS`` rounds, each round's order
   rotated one place (``timing.interleaved_rounds``): a GPU at its power limit runs the
   work after a pause at a higher clock, and no backend gets that place every round. The
   median round is reported, the round farthest from it as ``median_ms_repeat`` (the
   spread), every round's median as ``median_ms_rounds`` (``timing.summarize_rounds``). On
   CUDA the times are GPU times from CUDA-graph replays (``timing.measure_graph``), each
   timing after ``timing.SETTLE_MS`` of the call's own untimed replays (``--settle-ms``); the
   CPU time to issue one call (``host_ms``) and the per-call ``do_bench`` median
   (``call_median_ms``, which includes any wait for the CPU) are recorded beside them.
   With ``COPIES`` above 1 (``--copies``) each backend is timed on that many copies of the
   inputs, each copy a call of its own in the rotation, and the rounds of all its copies are
   pooled before the median round is taken; ``median_ms_copies`` keeps each copy's median.
   Where a kernel's time depends on where its operands landed in memory (session 23: up to
   2.5% between three copies of Llama-3-70B's weights, for ours and for Liger's kernel
   alike), a single copy makes the ranking of close backends a draw of that placement.
4. The calls timed are checked as well: what each backend's call returned in the last
   round (every copy's; on CUDA, the last graph replay's) is compared with the same
   float64 reference (``_check_timed``). A backend right on its first call and wrong on the
   replayed ones (a missing dependency on the kernel before it, say) fails its row.

Passes: ``fwd`` times ``fn(*inputs)``; ``bwd`` runs the forward once outside the timed
region and times ``torch.autograd.grad(out, inputs, dout, retain_graph=True)``; ``fwd+bwd``
times the forward and that gradient together. Gradients are always taken with respect to
the inputs, through whatever ``Case.prepare`` made of them.

Rates: GB/s from the case's ideal bytes, TFLOP/s from its FLOPs (GEMM cases), and for those
the fraction of the rate of the plain cuBLAS product measured on the same case
(``frac_cublas``) and of the GEMM ceiling of the run.

A backend that raises is reported as an error in its row; the others carry on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from flash_swiglu.bench.backends import BASELINE, SPEED_OF_LIGHT, Skip, unavailable
from flash_swiglu.bench.cases import Case
from flash_swiglu.bench.checks import check, fail_recheck, max_abs_err
from flash_swiglu.bench.roofline import Ceilings, gbps, same_size_copy_gbps
from flash_swiglu.bench.timing import (
    cold_l2_note,
    host_ms,
    interleaved_rounds,
    measure,
    measure_call,
    median_round,
    settle_note,
    summarize_rounds,
)

PASSES = ("fwd", "bwd", "fwd+bwd")
SEED = 0
# Copies of the inputs each backend is timed on (``benchmark-swiglu --copies``); read at each
# call, so the command line can change it for a run.
COPIES = 1


def copies_note() -> str:
    """How many copies of the inputs each backend was timed on, for the rows' ``timing``."""
    return f", each backend on {COPIES} copies of its inputs" if COPIES > 1 else ""


Prepare = Callable[[list[torch.Tensor]], list[torch.Tensor]]


def run_pass(
    fn: Callable[..., torch.Tensor],
    args: list[torch.Tensor],
    dout: torch.Tensor,
    pass_: str,
    prepare: Prepare = list,
) -> list[torch.Tensor]:
    """The outputs a pass produces: ``[out]``, the gradients (with respect to ``args``), or
    both; ``fn`` is called with ``prepare(args)``."""
    out = fn(*prepare(args))
    if pass_ == "fwd":
        return [out]
    grads = list(torch.autograd.grad(out, args, dout))
    return grads if pass_ == "bwd" else [out, *grads]


def timed_call(
    fn: Callable[..., torch.Tensor],
    args: list[torch.Tensor],
    dout: torch.Tensor,
    pass_: str,
    prepare: Prepare = list,
) -> Callable[[], object]:
    """The call to time for ``pass_``: ``prepare`` runs here, once, and for ``bwd`` the
    forward too."""
    call_args = prepare(args)
    if pass_ == "fwd":
        return lambda: fn(*call_args)
    if pass_ == "bwd":
        out = fn(*call_args)
        return lambda: torch.autograd.grad(out, args, dout, retain_graph=True)
    return lambda: torch.autograd.grad(fn(*call_args), args, dout)


def preparer(case: Case, backend: str) -> Prepare:
    """``args -> case.prepare(backend, args)``."""
    return lambda args: case.prepare(backend, args)


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
        gemm_dtype = case.dtype if case.op == "linear" else None
        reason = unavailable(backend, device, gemm_dtype)
        if reason is None:
            try:
                functions[backend] = case.function(backend)
            except Skip as e:
                reason = str(e)
        if reason is not None:
            skipped[backend] = reason
    return functions, skipped


def pass_functions(
    case: Case, functions: dict[str, Callable[..., torch.Tensor]], pass_: str
) -> tuple[dict[str, Callable[..., torch.Tensor]], dict[str, str]]:
    """``functions`` less the backends that cannot run ``pass_``, and the reasons why not."""
    reasons = {b: r for b in functions if (r := case.unsupported(b, pass_)) is not None}
    return {b: f for b, f in functions.items() if b not in reasons}, reasons


def run_case(
    case: Case,
    backends: Sequence[str],
    passes: Sequence[str],
    device: torch.device,
    ceilings: Ceilings,
    on_pass_done: Callable[[str], None] = lambda label: None,
) -> list[dict[str, Any]]:
    """The result rows of one case: one per pass and backend (``torch`` always included)."""
    if device.type == "cuda":
        # One side stream for everything (inputs, the forward a bwd pass keeps, warm-up,
        # capture, timing): autograd runs a backward on the stream of its forward, and CUDA
        # graphs capture only from a side stream.
        with torch.cuda.stream(torch.cuda.Stream(device)):
            return _run_case(case, backends, passes, device, ceilings, on_pass_done)
    return _run_case(case, backends, passes, device, ceilings, on_pass_done)


def _run_case(case, backends, passes, device, ceilings, on_pass_done):
    backends = with_baseline(backends)
    all_functions, skipped = backend_functions(case, backends, device)
    inputs, dout = case.make_inputs(device, torch.Generator(device=device).manual_seed(SEED))
    rows = []
    for pass_ in passes:
        functions, unsupported = pass_functions(case, all_functions, pass_)
        results = _check(case, pass_, functions, inputs, dout)
        _time(case, pass_, functions, inputs, dout, device, results)
        eager_ms = results[BASELINE].get("median_ms")
        gemm_ms = results.get(SPEED_OF_LIGHT, {}).get("median_ms")
        local_copy = same_size_copy_gbps(sum(case.ideal_bytes(pass_)), device)
        for backend in backends:
            reason = skipped.get(backend) or unsupported.get(backend)
            result = {"skipped": reason} if reason else results[backend]
            row = _row(case, pass_, backend, device, ceilings, result)
            row["speedup_vs_eager"] = _ratio(eager_ms, row["median_ms"])
            row["frac_cublas"] = _ratio(gemm_ms, row["median_ms"])
            row["same_size_copy_gbps"] = local_copy
            row["frac_same_size_copy"] = row["gbps"] / local_copy if row["gbps"] else None
            rows.append(row)
        on_pass_done(f"{case.label} {pass_}")
    return rows


def _ratio(reference_ms: float | None, ms: float | None) -> float | None:
    """``reference_ms / ms``: how many times faster than the reference (None if unmeasured)."""
    return reference_ms / ms if reference_ms and ms else None


def _error(e: Exception) -> dict[str, Any]:
    return {"passed": False, "error": f"{type(e).__name__}: {e}"}


def _oracle(
    eager: Callable[..., torch.Tensor], inputs: list[torch.Tensor], dout: torch.Tensor, pass_: str
) -> tuple[list[torch.Tensor], list[float]]:
    """The float64 outputs of ``eager`` and its errors when run in the inputs' dtype."""
    reference_inputs = fresh_inputs(inputs, pass_, torch.float64)
    expected = [t.detach() for t in run_pass(eager, reference_inputs, dout.double(), pass_)]
    del reference_inputs
    eager_outputs = run_pass(eager, fresh_inputs(inputs, pass_), dout, pass_)
    return expected, [max_abs_err(o, r) for o, r in zip(eager_outputs, expected, strict=True)]


def _check(
    case: Case,
    pass_: str,
    functions: dict[str, Callable[..., torch.Tensor]],
    inputs: list[torch.Tensor],
    dout: torch.Tensor,
) -> dict[str, dict[str, Any]]:
    """``{backend: {max_abs_err, err_torch, passed, checked_against}}`` (or
    ``{passed, error}``) of one pass."""
    baseline = _oracle(functions[BASELINE], inputs, dout, pass_)
    results = {}
    for backend, fn in functions.items():
        own = case.reference(backend)
        try:
            expected, eager_errors = (
                baseline if own is None else _oracle(own[1], inputs, dout, pass_)
            )
            outputs = run_pass(
                fn, fresh_inputs(inputs, pass_), dout, pass_, preparer(case, backend)
            )
            c = check(outputs, expected, eager_errors)
            results[backend] = {
                "max_abs_err": c.max_abs_err,
                "err_torch": c.err_torch,
                "passed": c.passed,
                "checked_against": None if own is None else own[0],
                _ORACLE: (expected, eager_errors),  # for the timed calls (``_check_timed``)
            }
        except Exception as e:  # a failing backend is reported in its row
            results[backend] = _error(e)
    return results


_ORACLE = "_oracle"  # a result's (expected, eager errors) between _check and _check_timed


def _check_timed(
    pass_: str, results: dict[str, dict[str, Any]], kept: dict[tuple[str, int], list]
) -> None:
    """Check what each backend's timed calls last returned (every copy's, from the last
    round: on CUDA the graph replay's) against the float64 reference that ``_check`` used
    for its first call: the calls timed are the calls checked. The timed call of a ``bwd``
    or ``fwd+bwd`` pass returns the gradients only. A failure marks the row failed, with the
    larger error."""
    for (backend, copy), out in kept.items():
        result = results[backend]
        if not out or _ORACLE not in result or "error" in result:
            continue
        expected, eager_errors = result[_ORACLE]
        if pass_ == "fwd+bwd":
            expected, eager_errors = expected[1:], eager_errors[1:]
        outputs = [out[0]] if pass_ == "fwd" else list(out[0])
        c = check(outputs, expected, eager_errors)
        if not c.passed:
            fail_recheck(result, c, f"copy {copy}'s timed call failed its check")
    for result in results.values():
        result.pop(_ORACLE, None)


def _time(
    case: Case,
    pass_: str,
    functions: dict[str, Callable[..., torch.Tensor]],
    inputs: list[torch.Tensor],
    dout: torch.Tensor,
    device: torch.device,
    results: dict[str, dict[str, Any]],
) -> None:
    """Add ``median_ms``, ``p20_ms``, ``p80_ms``, ``median_ms_repeat``, ``median_ms_rounds``
    (``timing.summarize_rounds`` over the rounds of every copy), with ``COPIES`` above 1
    ``median_ms_copies``, and on CUDA ``host_ms`` and ``call_median_ms`` (the first copy's)
    to ``results``."""
    copies = COPIES
    calls: dict[tuple[str, int], Callable[[], object]] = {}  # (backend, copy) -> call
    for backend, fn in functions.items():
        if "error" not in results[backend]:
            try:
                for c in range(copies):
                    args = fresh_inputs(inputs, pass_)
                    prepare = preparer(case, backend)
                    calls[backend, c] = timed_call(fn, args, dout, pass_, prepare)
            except Exception as e:
                results[backend].update(_error(e))
                for c in range(copies):
                    calls.pop((backend, c), None)
    # Copy-major: every backend's first copy, then every backend's second, ...
    labels = [(b, c) for c in range(copies) for b in functions if (b, c) in calls]
    kept: dict[tuple[str, int], list] = {label: [] for label in labels}
    rounds = interleaved_rounds(labels, lambda label: measure(calls[label], device, kept[label]))
    _check_timed(pass_, results, kept)
    for backend in functions:
        per_copy = [rounds[backend, c] for c in range(copies) if (backend, c) in rounds]
        if not per_copy:
            continue
        ts = [t for copy_rounds in per_copy for t in copy_rounds]
        error = next((t for t in ts if isinstance(t, Exception)), None)
        if error is not None:
            results[backend].update(_error(error))
            continue
        results[backend].update(summarize_rounds(ts))
        if copies > 1:
            results[backend]["median_ms_copies"] = [r[median_round(r)].median_ms for r in per_copy]
        if device.type == "cuda":
            results[backend]["host_ms"] = host_ms(calls[backend, 0])
            results[backend]["call_median_ms"] = measure_call(calls[backend, 0]).median_ms


def _row(
    case: Case,
    pass_: str,
    backend: str,
    device: torch.device,
    ceilings: Ceilings,
    result: dict[str, Any],
) -> dict[str, Any]:
    read, written = case.ideal_bytes(pass_)
    ideal = read + written
    flops = case.flops(pass_)
    median = result.get("median_ms")
    rate = gbps(ideal, median) if median else None
    tflops = flops / (median * 1e-3) / 1e12 if median and flops else None
    gemm = ceilings.gemm_tflops
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
        "median_ms_rounds": result.get("median_ms_rounds"),
        "median_ms_copies": result.get("median_ms_copies"),
        "copies": COPIES,
        "host_ms": result.get("host_ms"),
        "call_median_ms": result.get("call_median_ms"),
        "timing": (
            f"cuda-graph replay, {cold_l2_note()}, {settle_note()}"
            if device.type == "cuda"
            else "cpu wall clock"
        )
        + copies_note(),
        "ideal_bytes": ideal,
        "ideal_read_bytes": read,
        "ideal_write_bytes": written,
        "gbps": rate,
        "frac_copy_bw": rate / ceilings.copy_gbps if rate else None,
        "copy_bw_gbps": ceilings.copy_gbps,
        "flops": flops or None,
        "tflops": tflops,
        "gemm_tflops": gemm,
        "frac_gemm_ceiling": tflops / gemm if tflops and gemm else None,
        "max_abs_err": result.get("max_abs_err"),
        "err_torch": result.get("err_torch"),
        "checked_against": result.get("checked_against"),
        "passed": result.get("passed"),
        "timed_check": result.get("timed_check"),
        "skipped": result.get("skipped"),
        "error": result.get("error"),
    }

"""Timing one call: ``triton.testing.do_bench`` on CUDA, a ``perf_counter`` loop on the CPU.

On CUDA, do_bench times every repetition with CUDA events after a warm-up, and clears the L2
cache before each one (the clearing is outside the timed interval), so every call reads its
operands from HBM, as it would inside a model. The result is the median with the 20th and
80th percentiles, in milliseconds.

On the CPU (Triton's interpreter), the numbers only say that the code ran.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

QUANTILES = (0.5, 0.2, 0.8)

# CPU loop: at least this many timed calls, then more until the budget is spent.
CPU_MIN_REPS = 3
CPU_MAX_REPS = 50
CPU_BUDGET_S = 0.1


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p20_ms: float
    p80_ms: float


def measure(fn: Callable[[], object], device: torch.device) -> Timing:
    """Median, p20 and p80 of the wall time of ``fn()`` on ``device``, in milliseconds."""
    if device.type == "cuda":
        from triton.testing import do_bench

        median, p20, p80 = do_bench(fn, quantiles=list(QUANTILES))
        return Timing(median, p20, p80)
    return _measure_cpu(fn)


def _measure_cpu(fn: Callable[[], object]) -> Timing:
    fn()  # warm-up
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < CPU_MIN_REPS or (
        len(times) < CPU_MAX_REPS and time.perf_counter() - start < CPU_BUDGET_S
    ):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    q = torch.tensor(times, dtype=torch.float64).quantile(
        torch.tensor(QUANTILES, dtype=torch.float64)
    )
    median, p20, p80 = q.tolist()
    return Timing(median, p20, p80)

"""The correctness check of every measured result: DESIGN.md's tolerance rule.

Each output (the forward result, each gradient) is compared with the float64 reference; it
passes when its max abs error is at most twice the error of PyTorch eager computing the same
output in the same dtype, plus a floor of ``FLOOR_ULPS`` ulps of the output's magnitude
(``FLOOR_ULPS * eps(dtype) * max|ref|``). A NaN where the reference has a number, or a shape
mismatch, fails.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

FLOOR_ULPS = 2.0


@dataclass(frozen=True)
class Check:
    max_abs_err: float  # the largest max abs error over the outputs
    err_torch: float  # the same for PyTorch eager in the same dtype
    passed: bool  # every output within its tolerance


def max_abs_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    """``max |x - ref|`` in float64; NaN if ``x`` has a NaN where ``ref`` has none."""
    if x.shape != ref.shape:
        return math.inf
    if x.numel() == 0:
        return 0.0
    diff = (x.double() - ref).abs()
    diff[torch.isnan(x) & torch.isnan(ref)] = 0.0
    return diff.max().item()


def tolerance(eager_err: float, ref: torch.Tensor, dtype: torch.dtype) -> float:
    """Largest error allowed for an output whose eager error is ``eager_err``."""
    scale = ref.abs().nan_to_num(0.0, 0.0, 0.0).max().item() if ref.numel() else 0.0
    return 2.0 * eager_err + FLOOR_ULPS * torch.finfo(dtype).eps * scale


def check(
    outputs: Sequence[torch.Tensor],
    expected: Sequence[torch.Tensor],
    eager_errors: Sequence[float],
) -> Check:
    """Check ``outputs`` against the float64 ``expected``, output by output.

    ``eager_errors[i]`` is PyTorch eager's error on output ``i`` (see :func:`max_abs_err`).
    """
    if len(outputs) != len(expected):
        return Check(math.inf, max(eager_errors, default=0.0), False)
    errors = [max_abs_err(o, r) for o, r in zip(outputs, expected, strict=True)]
    passed = all(
        err <= tolerance(eager_err, ref, out.dtype)  # False for NaN
        for out, ref, err, eager_err in zip(outputs, expected, errors, eager_errors, strict=True)
    )
    worst = max(errors, key=lambda e: math.inf if math.isnan(e) else e, default=0.0)
    return Check(worst, max(eager_errors, default=0.0), passed)


def fail_recheck(result: dict, c: Check, note: str) -> None:
    """Mark ``result`` (a row's check fields) failed by a later check ``c`` of the same
    backend (its timed calls), keeping the larger error (NaN counts as the larger)."""
    result["passed"] = False
    if not result["max_abs_err"] >= c.max_abs_err:
        result["max_abs_err"] = c.max_abs_err
    result["timed_check"] = note

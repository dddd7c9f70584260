"""The README's table of the MLP training step (``--op mlp``), from the stored rows.

One line per model, dtype, activation, pass and token count (each case from its most recent
run); for each backend, one cell: the median time, the speedup over PyTorch eager (same case,
same run) and the peak memory of the pass above its inputs (``peak_mib``). The step
(``fwd+bwd``) comes first, then its forward and backward alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flash_swiglu.bench.cases.mlp import BACKENDS as ALL_BACKENDS
from flash_swiglu.bench.report import markdown_table

# The table's columns: the implementations (the ``cublas`` products are a ceiling, not one;
# the rows of a run that timed them carry ``frac_cublas``).
BACKENDS = tuple(b for b in ALL_BACKENDS if b != "cublas")

PASS_ORDER = ("fwd+bwd", "fwd", "bwd")
TITLES = {
    "torch": "eager (LlamaMLP)",
    "compile": "torch.compile",
    "liger": "LigerSwiGLUMLP",
    "liger-fused": "LigerMLP (fused)",
    "triton": "flash-swiglu",
    "triton-recompute": "flash-swiglu recompute",
}

Cases = dict[tuple, dict[str, dict[str, Any]]]  # (op, case, pass) -> {backend: row}


def _cell(row: dict[str, Any] | None) -> str:
    """``ms · speedup · MiB`` of one backend's row; ``-`` where it did not run."""
    if row is None or row.get("skipped"):
        return "-"
    if not row.get("passed") or row.get("median_ms") is None:
        return "FAIL"
    parts = [f"{row['median_ms']:.3g} ms"]
    if row.get("speedup_vs_eager") is not None:
        parts.append(f"{row['speedup_vs_eager']:.2f}x")
    if row.get("peak_mib") is not None:
        cell = f"{row['peak_mib']:.0f} MiB"
        if row.get("weight_grad_mib"):
            cell += f" ({row['peak_mib'] - row['weight_grad_mib']:.0f})"
        parts.append(cell)
    return " · ".join(parts)


def _sort_key(by_backend: dict[str, dict[str, Any]]) -> tuple:
    row = next(iter(by_backend.values()))
    pass_ = row["pass"]
    order = PASS_ORDER.index(pass_) if pass_ in PASS_ORDER else len(PASS_ORDER)
    return (row.get("model"), row.get("dtype"), row.get("activation"), order, row.get("tokens"))


def render_mlp(cases: Cases) -> tuple[str, str, dict[str, dict[str, Any]]]:
    """The introduction and the markdown table of the ``mlp`` cases from
    ``summary_linear.latest_cases``, and the runs they cite (``{run: a row of it}``)."""
    lines: list[list[str]] = []
    runs: dict[str, dict[str, Any]] = {}
    for by_backend in sorted(cases.values(), key=_sort_key):
        first = next(iter(by_backend.values()))
        runs[first["run"]] = first
        model = first.get("model")
        if first.get("activation", "silu") != "silu":
            model = f"{model} {first['activation']}"
        cells = [_cell(by_backend.get(backend)) for backend in BACKENDS]
        case = [model, first.get("dtype"), first["pass"], str(first.get("tokens"))]
        lines.append([*case, *cells, f"`{first['run']}`"])
    header: Sequence[str] = ["model", "dtype", "pass", "tokens", *map(TITLES.get, BACKENDS)]
    intro = (
        "MLP training step `out = mlp(x); out.backward(dout)` (`benchmark-swiglu --op mlp`), "
        "one cell per backend: median time · speedup over PyTorch eager (Hugging Face "
        "`LlamaMLP`) · peak memory of the pass above its inputs (`max_memory_allocated` minus "
        "the memory before the step, gradients None before it; in parentheses without the "
        "weight gradients, which every backend allocates alike). Same shape, same run; bwd is "
        "the backward of a fresh forward, timed alone."
    )
    return intro, markdown_table([*header, "run"], lines), runs

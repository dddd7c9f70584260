"""The printed table and the files a run writes (``--json``, ``--run-id``).

The table is markdown, so the same text is printed and stored as ``table.md``. Its rate
columns depend on the op: GB/s for the elementwise GLU; TFLOP/s and the fraction of the cuBLAS
product's rate for the projection (``linear``), with GB/s where the weights dominate; TFLOP/s
and peak memory for the MLP training step (``mlp``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flash_swiglu.bench.roofline import GEMM_DTYPE, GEMM_SIZE, Ceilings

HEAD = ("backend", "case", "pass", "median ms (p20, p80)", "farthest round ms", "host ms")
TAIL = ("vs eager", "max err (eager)", "check")
COLUMNS = (*HEAD, "GB/s", "% copy BW", "% same-size copy", *TAIL)
LINEAR_COLUMNS = (*HEAD, "TFLOP/s", "vs cuBLAS", "% GEMM ceiling", "GB/s (M<=64)", "% copy BW")
LINEAR_COLUMNS += TAIL
MLP_COLUMNS = (*HEAD, "TFLOP/s", "vs cuBLAS", "% GEMM ceiling", "peak MiB", *TAIL)
PROFILE_COLUMN = "DRAM read, write vs ideal (ncu)"
# The median is marked when the CPU takes longer to issue the call than the GPU to run it.
LAUNCH_NOTE = (
    "* issuing the call takes the CPU longer (host ms) than the GPU takes to run it: called "
    "eagerly one after another, these calls keep the GPU waiting for the CPU (CUDA graphs remove "
    "that; the medians here are GPU time from graph replays)."
)


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _check_cell(row: dict[str, Any]) -> str:
    if row["skipped"]:
        return f"skipped: {row['skipped']}"
    if row["error"]:
        return "ERROR: " + row["error"].splitlines()[0][:160]
    verdict = "pass" if row["passed"] else "FAIL"
    if row.get("timed_check"):
        verdict += f" ({row['timed_check']})"
    against = row.get("checked_against")
    return f"{verdict} (vs {against})" if against else verdict


def _dram_cell(row: dict[str, Any]) -> str:
    if "dram_read_bytes" not in row:
        return "-"
    n = len(row["dram_kernels"])
    read = row["dram_read_bytes"] / row["ideal_read_bytes"]
    write = row["dram_write_bytes"] / row["ideal_write_bytes"]
    return f"{read:.2f}x, {write:.2f}x ({n} kernel{'s' * (n != 1)}, {row['ncu_kernel_ms']:.4g} ms)"


def _launch_bound(row: dict[str, Any]) -> bool:
    if row["op"] == "mlp":  # timed per call: a GPU waiting for the CPU is in the median
        return False
    host, median = row.get("host_ms"), row["median_ms"]
    return host is not None and median is not None and host > median


def _percent(fraction: float | None) -> str:
    return _fmt(fraction * 100 if fraction is not None else None, ".0f")


def _cells(row: dict[str, Any], profiled: bool) -> list[str]:
    median = row["median_ms"]
    timing = "-"
    if median is not None:
        mark = "*" if _launch_bound(row) else ""
        timing = f"{median:.4g}{mark} ({row['p20_ms']:.4g}, {row['p80_ms']:.4g})"
    head = [
        row["backend"],
        row["case"],
        row["pass"],
        timing,
        _fmt(row["median_ms_repeat"], ".4g"),
        _fmt(row.get("host_ms"), ".3g"),
    ]
    if row["op"] == "mlp":
        rates = [
            _fmt(row["tflops"], ".1f"),
            _fmt(row.get("frac_cublas"), ".2f"),
            _percent(row["frac_gemm_ceiling"]),
            _fmt(row.get("peak_mib"), ".0f"),
        ]
    elif row["op"] == "linear":
        memory_bound = row["memory_bound"]
        rates = [
            _fmt(row["tflops"], ".1f"),
            _fmt(row["frac_cublas"], ".2f"),
            _percent(row["frac_gemm_ceiling"]),
            _fmt(row["gbps"], ".0f") if memory_bound else "-",
            _percent(row["frac_copy_bw"]) if memory_bound else "-",
        ]
    else:
        rates = [
            _fmt(row["gbps"], ".0f"),
            _percent(row["frac_copy_bw"]),
            _percent(row.get("frac_same_size_copy")),
        ]
    speedup = row["speedup_vs_eager"]
    err = "-"
    if row["max_abs_err"] is not None:
        err = f"{row['max_abs_err']:.2e} ({row['err_torch']:.2e})"
    cells = [*head, *rates, "-" if speedup is None else f"{speedup:.2f}x", err, _check_cell(row)]
    return [*cells, _dram_cell(row)] if profiled else cells


def markdown_table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    """A markdown table with its columns padded to a common width."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines, strict=True)]

    def fmt(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "| " + " | ".join("-" * w for w in widths) + " |"
    return "\n".join([fmt(header), rule, *(fmt(line) for line in lines)])


def _title(rows: Sequence[dict[str, Any]], linear: bool, ceilings: Ceilings, where: str) -> str:
    if rows and rows[0]["op"] == "mlp":
        return _mlp_title(rows, ceilings, where)
    timing = rows[0].get("timing", "-") if rows else "-"
    copy = (
        f"Copy bandwidth (read + write, measured in this run on {where}): "
        f"{ceilings.copy_gbps:.0f} GB/s."
    )
    if not linear:
        return (
            f"{copy} Times: {timing}. GB/s = ideal bytes / median time; same-size copy = a "
            "device copy of the case's ideal bytes, timed the same way (the ceiling at that "
            "size); max err = max abs error vs float64 (PyTorch eager's in brackets)."
        )
    n = GEMM_SIZE.get(rows[0]["device"], GEMM_SIZE["cpu"])
    gemm = "-" if ceilings.gemm_tflops is None else f"{ceilings.gemm_tflops:.0f}"
    dtype = str(GEMM_DTYPE).removeprefix("torch.")
    return (
        f"{copy} GEMM ceiling ({dtype} torch.mm {n}^3, random data, this run): {gemm} TFLOP/s.\n"
        f"Times: {timing}. TFLOP/s = 4 M N K per forward (8 per backward) / median time; "
        "vs cuBLAS = the time of the cuBLAS product x [w_gate; w_up]^T on the same shape in "
        "this run / the time; GB/s (M <= 64, the weights dominate) = (M K + 2 N K + M N) "
        "bytes / median time; max err = max abs error vs float64 (PyTorch eager's in brackets)."
    )


def _mlp_title(rows: Sequence[dict[str, Any]], ceilings: Ceilings, where: str) -> str:
    n = GEMM_SIZE.get(rows[0]["device"], GEMM_SIZE["cpu"])
    gemm = "-" if ceilings.gemm_tflops is None else f"{ceilings.gemm_tflops:.0f}"
    dtype = str(GEMM_DTYPE).removeprefix("torch.")
    return (
        f"GEMM ceiling ({dtype} torch.mm {n}^3, random data, measured in this run on {where}): "
        f"{gemm} TFLOP/s.\n"
        f"One training step of the MLP, out = mlp(x); out.backward(dout), grads None before. "
        f"Times: {rows[0].get('timing', '-')} (bwd: a fresh forward before each backward, "
        "outside the timed region). TFLOP/s = 6 M N K per forward, 12 per backward, 18 per "
        "step / median time (recompute's extra 4 M N K not counted); vs cuBLAS = the time of "
        "the pass's matrix products alone (backend cublas: the step's nine products by cuBLAS, "
        "nothing between them) in this run / the time; peak MiB = "
        "max_memory_allocated during the pass - memory allocated before the step (bwd: the "
        "backward's peak over that same baseline, saved activations included); max err = max "
        "abs error of out and the gradients of x and each weight vs float64 (PyTorch eager's "
        "in brackets)."
    )


def format_table(rows: Sequence[dict[str, Any]], ceilings: Ceilings, where: str) -> str:
    """The results table, headed by the ceilings it is measured against."""
    profiled = any("dram_read_bytes" in row for row in rows)
    linear = any(row["op"] == "linear" for row in rows)
    mlp = any(row["op"] == "mlp" for row in rows)
    columns = MLP_COLUMNS if mlp else LINEAR_COLUMNS if linear else COLUMNS
    header = [*columns, PROFILE_COLUMN] if profiled else list(columns)
    title = _title(rows, linear, ceilings, where)
    notes = [LAUNCH_NOTE] if any(_launch_bound(row) for row in rows) else []
    if profiled:
        notes.append(
            "DRAM: bytes read and written per call as measured by ncu (caches flushed before "
            "each kernel; writes still in L2 when a kernel ends are not counted), over the ideal."
        )
    table = markdown_table(header, [_cells(row, profiled) for row in rows])
    return "\n".join([title, *notes, "", table])


def _json_safe(value: Any) -> Any:
    """NaN and infinities (a broken output's error) as null: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_json_safe(data), indent=1) + "\n")


def save_run(directory: Path, rows: Sequence[dict[str, Any]], env: dict, table: str) -> None:
    """``rows.json``, ``env.json`` and ``table.md`` of a run (``--run-id``)."""
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / "rows.json", list(rows))
    write_json(directory / "env.json", env)
    (directory / "table.md").write_text(table + "\n")

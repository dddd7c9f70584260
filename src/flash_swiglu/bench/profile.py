"""``--profile``: the DRAM bytes each backend's kernels really move, from Nsight Compute.

The parent re-runs the same command line in a child process under::

    ncu --csv --clock-control none
        --metrics dram__bytes_read.sum,dram__bytes_write.sum,gpu__time_duration.sum
        --nvtx --nvtx-push-pop-scope process --nvtx-include regex:fsb_unit_.*/
        --log-file <tmp>/ncu.csv
        python -m flash_swiglu.bench.cli <same arguments> --profile-child <tmp>/units.json

The child (:func:`child_main`) prepares every (case, pass, backend) exactly as the timed run
does, runs the call once to warm it up, then ``REPEATS`` times inside an NVTX range
``fsb_unit_<i>``; only kernels inside those ranges are profiled (so input generation and the
forward a ``bwd`` pass needs are left out). The parent sums the counters per range, divides
by ``REPEATS`` and puts into each row ``dram_read_bytes``, ``dram_write_bytes``,
``dram_kernels`` (the kernels of one call) and ``ncu_kernel_ms`` (their summed duration:
the GPU time alone, without launch overhead).

How to read the bytes: ncu flushes the caches before each kernel it replays, so every read
is counted; but written lines still in L2 when the kernel ends (H200: 50 MB) reach DRAM
after it and are not counted, so writes come out below the ideal for outputs of a few tens
of MB. Reads above the ideal mean a kernel reads something twice.

Anything that goes wrong is reported as a note; the benchmark results stand without it.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from flash_swiglu.bench.cases import Case
from flash_swiglu.bench.harness import (
    SEED,
    backend_functions,
    fresh_inputs,
    pass_functions,
    preparer,
    timed_call,
    with_baseline,
)

# ncu metric -> (field of UnitCounters, {unit: factor to bytes or milliseconds})
BYTE_UNITS = {"byte": 1, "Kbyte": 10**3, "Mbyte": 10**6, "Gbyte": 10**9, "Tbyte": 10**12}
TIME_UNITS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}
TIME_UNITS |= {"nsecond": 1e-6, "usecond": 1e-3, "msecond": 1.0, "second": 1e3}
METRICS = {
    "dram__bytes_read.sum": ("read", BYTE_UNITS),
    "dram__bytes_write.sum": ("write", BYTE_UNITS),
    "gpu__time_duration.sum": ("ms", TIME_UNITS),
}
RANGE = "fsb_unit_"
REPEATS = 2


def find_ncu() -> str | None:
    """The ncu executable: on PATH, else the newest /opt/nvidia/nsight-compute, else CUDA's."""
    found = shutil.which("ncu")
    if found:
        return found
    newest_first = sorted(glob.glob("/opt/nvidia/nsight-compute/*/ncu"), reverse=True)
    candidates = [*newest_first, "/usr/local/cuda/bin/ncu"]
    return next((c for c in candidates if os.access(c, os.X_OK)), None)


# ----------------------------------------------------------------------------------------
# Child: run every unit under an NVTX range
# ----------------------------------------------------------------------------------------


def child_main(
    cases: Sequence[Case],
    backends: Sequence[str],
    passes: Sequence[str],
    device: torch.device,
    manifest: Path,
) -> int:
    """Run each (case, pass, backend) ``REPEATS`` times in its own NVTX range; write the list
    of units (range index -> case, pass, backend) to ``manifest``."""
    units: list[dict[str, Any]] = []
    try:
        for case in cases:
            all_functions, _ = backend_functions(case, with_baseline(backends), device)
            generator = torch.Generator(device=device).manual_seed(SEED)
            inputs, dout = case.make_inputs(device, generator)
            for pass_ in passes:
                functions, _ = pass_functions(case, all_functions, pass_)
                for backend, fn in functions.items():
                    unit = {"case": case.label, "pass": pass_, "backend": backend}
                    units.append(unit)
                    try:
                        args = fresh_inputs(inputs, pass_)
                        call = timed_call(fn, args, dout, pass_, preparer(case, backend))
                        _profiled_calls(call, f"{RANGE}{len(units) - 1}")
                    except Exception as e:
                        unit["error"] = f"{type(e).__name__}: {e}"
    finally:
        manifest.write_text(json.dumps(units))
    return 0


def _profiled_calls(call: Any, name: str) -> None:
    call()  # warm-up (compilation, autotuning) outside the range
    torch.cuda.synchronize()
    torch.cuda.nvtx.range_push(name)
    try:
        for _ in range(REPEATS):
            call()
        torch.cuda.synchronize()
    finally:
        torch.cuda.nvtx.range_pop()


# ----------------------------------------------------------------------------------------
# Parent: run the child under ncu, parse, attach to the rows
# ----------------------------------------------------------------------------------------


@dataclass
class UnitCounters:
    read: float = 0.0  # bytes
    write: float = 0.0  # bytes
    ms: float = 0.0  # kernel time
    kernels: dict[str, str] = field(default_factory=dict)  # ncu kernel ID -> name


def parse_ncu_csv(text: str) -> dict[int, UnitCounters]:
    """Sum the counters of ``ncu --csv`` output per ``fsb_unit_<i>`` range.

    Raises ``ValueError`` when the output is not what ncu's CSV looks like.
    """
    lines = [line for line in text.splitlines() if line.startswith('"')]
    if not lines:
        raise ValueError("no CSV rows in the ncu output")
    reader = csv.DictReader(lines)
    columns = reader.fieldnames or []
    needed = {"ID", "Kernel Name", "Metric Name", "Metric Unit", "Metric Value"}
    if not needed <= set(columns):
        raise ValueError(f"ncu CSV lacks columns {sorted(needed - set(columns))}")
    nvtx_columns = [c for c in columns if "Push/Pop" in c]
    units: dict[int, UnitCounters] = {}
    for record in reader:
        where = " ".join(record[c] or "" for c in [*nvtx_columns, "Kernel Name"])
        match = re.search(rf"{RANGE}(\d+)", where)
        if match is None or record["Metric Name"] not in METRICS:
            continue
        name, scales = METRICS[record["Metric Name"]]
        scale = scales.get(record["Metric Unit"])
        if scale is None:
            raise ValueError(
                f"unexpected unit {record['Metric Unit']!r} of {record['Metric Name']}"
            )
        unit = units.setdefault(int(match.group(1)), UnitCounters())
        value = float(record["Metric Value"].replace(",", "")) * scale
        setattr(unit, name, getattr(unit, name) + value)
        unit.kernels[record["ID"]] = record["Kernel Name"]
    return units


def profile_rows(ncu: str, argv: Sequence[str], rows: list[dict[str, Any]]) -> list[str]:
    """Measure the DRAM bytes of every row under ncu; return notes on anything that failed."""
    with tempfile.TemporaryDirectory(prefix="benchmark-swiglu-ncu-") as tmp:
        log, manifest = Path(tmp, "ncu.csv"), Path(tmp, "units.json")
        command = [
            ncu,
            "--csv",
            "--clock-control",
            "none",
            "--metrics",
            ",".join(METRICS),
            "--nvtx",
            "--nvtx-push-pop-scope",
            "process",  # backward kernels are launched from autograd's own thread
            "--nvtx-include",
            f"regex:{RANGE}.*/",
            "--log-file",
            str(log),
            sys.executable,
            "-m",
            "flash_swiglu.bench.cli",
            *argv,
            "--profile-child",
            str(manifest),
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        text = log.read_text(errors="replace") if log.exists() else ""
        notes = []
        if done.returncode != 0:
            tail = (done.stderr or done.stdout or text).strip().splitlines()[-5:]
            notes.append(f"ncu exited with status {done.returncode}: " + " / ".join(tail))
        if "ERR_NVGPUCTRPERM" in text:
            notes.append(
                "ncu may not read the GPU performance counters here (ERR_NVGPUCTRPERM): run as "
                "root or allow profiling for all users (NVreg_RestrictProfilingToAdminUsers=0)"
            )
        try:
            units = json.loads(manifest.read_text())
            measured = parse_ncu_csv(text)
        except (OSError, ValueError) as e:
            return [*notes, f"no DRAM measurements: {type(e).__name__}: {e}"]
    return notes + _attach(rows, units, measured)


def _attach(
    rows: list[dict[str, Any]], units: list[dict[str, Any]], measured: dict[int, UnitCounters]
) -> list[str]:
    notes = []
    by_key = {(r["case"], r["pass"], r["backend"]): r for r in rows}
    for index, unit in enumerate(units):
        name = f"{unit['backend']} {unit['case']} {unit['pass']}"
        row = by_key.get((unit["case"], unit["pass"], unit["backend"]))
        if "error" in unit:
            notes.append(f"profiling {name} failed: {unit['error']}")
        elif index not in measured:
            notes.append(f"ncu measured no kernel for {name}")
        elif row is not None:
            m = measured[index]
            names = [m.kernels[k] for k in sorted(m.kernels, key=int)]
            if len(names) % REPEATS:
                notes.append(f"{name}: {len(names)} kernels in {REPEATS} calls; bytes averaged")
            row["dram_read_bytes"] = round(m.read / REPEATS)
            row["dram_write_bytes"] = round(m.write / REPEATS)
            row["dram_kernels"] = names[: max(1, len(names) // REPEATS)]  # one call's
            row["ncu_kernel_ms"] = m.ms / REPEATS
    return notes

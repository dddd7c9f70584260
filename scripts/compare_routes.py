"""Compare a benchmark run on the committed launch table with one on a table whose unfused
route is widened over a token range (``scripts/widen_unfused.py``): per model, dtype and token
count, ours against eager in each run, the path the committed table takes, and the ranges of
measured counts where the route led.

    PYTHONPATH=src python scripts/compare_routes.py COMMITTED WIDENED [COMMITTED WIDENED ...] \
        [--table JSON] [--margin M]

Each pair is compared within itself; the ranges are over every pair's counts. A run is a
directory of ``benchmark-swiglu`` with ``rows.json``, or a log of its printed table
(the lines ``| backend | case | pass | median ...``), for runs whose directory did not come
back from the machine. Speeds against eager are each from their own run (eager runs in both).
A proposed range spans consecutive measured counts on the route's side and ends at measured
counts: a count between a route count and a fused count stays as the table has it. Only
``--op linear`` rows of the four benchmark models are read. ``--table`` names the launch table
the committed run ran on, where it is not the one in the tree (``git show REV:src/flash_swiglu/
configs/h200_linear.json > old.json``): which counts it already routed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from flash_swiglu.bench.cases.linear import MODELS
from flash_swiglu.ops import linear as L

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def _from_rows(path: Path) -> dict[tuple[str, str, int, str], float]:
    out = {}
    for r in json.loads((path / "rows.json").read_text()):
        if r.get("op") == "linear" and r.get("median_ms") and r.get("passed"):
            out[r["model"], r["dtype"], r["tokens"], r["backend"]] = r["median_ms"]
    return out


def _from_log(path: Path) -> dict[tuple[str, str, int, str], float]:
    out = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        # the last cell is the check: "pass", "pass (vs ...)", "FAIL ...", "ERROR: ...", ...
        if len(cells) < 4 or not cells[-1].startswith("pass"):
            continue
        parts = cells[1].split("/")  # activation/layout/dtype/model/M<tokens>
        if len(parts) != 5 or not parts[4][1:].isdigit():
            continue
        try:
            ms = float(cells[3].split()[0].rstrip("*"))
        except (IndexError, ValueError):
            continue
        out[parts[3], parts[2], int(parts[4][1:]), cells[0]] = ms
    return out


def load(path: Path) -> dict[tuple[str, str, int, str], float]:
    """``{(model, dtype, tokens, backend): median ms}`` of a run directory or a printed log."""
    return _from_rows(path) if path.is_dir() else _from_log(path)


def compare(committed: dict, widened: dict) -> list[dict]:
    """One entry per (model, dtype, tokens) measured with eager and ours in both runs."""
    out = []
    for model, dtype, m, backend in sorted(committed):
        key = (model, dtype, m)
        if backend != "triton" or model not in MODELS or dtype not in DTYPES:
            continue
        if not all((*key, b) in run for run in (committed, widened) for b in ("torch", "triton")):
            continue
        k, n = MODELS[model]
        out.append({
            "model": model, "dtype": dtype, "tokens": m,
            "committed_routes": L.unfused_route(m, n, k, DTYPES[dtype], "NVIDIA H200"),
            "committed": committed[(*key, "torch")] / committed[(*key, "triton")],
            "widened": widened[(*key, "torch")] / widened[(*key, "triton")],
        })  # fmt: skip
    return out


def ranges(entries: list[dict], margin: float = 0.0) -> dict[tuple[str, str], list[list[int]]]:
    """Per (model, dtype), the ranges of consecutive measured counts where the widened run
    (the route) was faster against eager than the committed one by more than ``margin``.
    Counts the committed table already routes compare the route with itself: they neither
    start nor break a range, and a range only bounds them where they lie inside it."""
    out: dict[tuple[str, str], list[list[int]]] = {}
    for group in sorted({(e["model"], e["dtype"]) for e in entries}):
        counts = sorted((e for e in entries if (e["model"], e["dtype"]) == group),
                        key=lambda e: e["tokens"])  # fmt: skip
        found, run = [], None
        for e in counts:
            if e["committed_routes"]:
                continue
            if e["widened"] > e["committed"] * (1 + margin):
                run = [e["tokens"], e["tokens"]] if run is None else [run[0], e["tokens"]]
            elif run is not None:
                found.append(run)
                run = None
        if run is not None:
            found.append(run)
        out[group] = found
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", type=Path, nargs="+", help="COMMITTED WIDENED, one or more pairs")
    ap.add_argument("--table", type=Path, help="the launch table the committed run ran on")
    ap.add_argument("--margin", type=float, default=0.0,
                    help="the route must lead by more than this fraction (default 0)")  # fmt: skip
    args = ap.parse_args(argv)
    if args.table is not None:
        os.environ[L.CONFIG_ENV] = str(args.table)
        L.load_table.cache_clear()
    if len(args.runs) % 2:
        ap.error("runs come in pairs: COMMITTED WIDENED")
    pairs = zip(args.runs[::2], args.runs[1::2], strict=True)
    entries = [e for c, w in pairs for e in compare(load(c), load(w))]
    if not entries:
        print("no (model, dtype, tokens) with eager and ours in both runs", file=sys.stderr)
        return 1
    print("| model | dtype | tokens | committed table | committed run | widened run (route) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for e in entries:
        path = "route" if e["committed_routes"] else "fused"
        print(f"| {e['model']} | {e['dtype']} | {e['tokens']} | {path} | "
              f"{e['committed']:.3f}x | {e['widened']:.3f}x |")  # fmt: skip
    print()
    for (model, dtype), found in ranges(entries, args.margin).items():
        print(f"{model} {dtype}: route led at {found or 'no measured count'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

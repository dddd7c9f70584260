"""Ours against the fastest peer, case by case, over several `--op linear` runs (processes).

    python scripts/process_spread.py RUN_DIR [RUN_DIR ...] [--backend triton]

Written in session 21. Within one ``benchmark-swiglu`` process each backend's three rounds
agree closely, but at decode sizes the same kernels moved by 2-7% between processes (Llama-3-8B
at 8 tokens, ``benchmarks/results/README.md``, "Session 21"). A ranking decided by less than
that needs more than one process. For every case that two or more of the given runs measured
(same op, case and pass), this prints:
- ours in each run, in ms;
- the fastest peer in each run (``summary_linear.fastest_peer``: eager, packed eager,
  ``torch.compile`` in both modes, Liger), named, in ms;
- their ratio in each run (above 1: ours faster);
- the range and median of those ratios, and in how many runs ours was ahead.

Each ratio still comes from one run. Peers a run did not measure are not counted in that run,
so runs with fewer backends name a fastest peer among fewer. Each run is printed with its
commit: runs of different commits may have run different kernels or launch-table entries.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from flash_swiglu.bench.summary_linear import fastest_peer


def load(run_dir: Path) -> list[dict]:
    rows = json.loads((run_dir / "rows.json").read_text())
    for row in rows:
        row.setdefault("run", run_dir.name)
    return rows


def spread(runs: list[list[dict]], ours: str = "triton") -> list[dict]:
    """One entry per case measured by ours and a peer in at least two of ``runs``."""
    by_case: dict[tuple, dict[tuple, dict]] = defaultdict(dict)  # case -> run -> {backend: row}
    for rows in runs:
        for row in rows:
            key = (row["op"], row["case"], row["pass"])
            by_case[key].setdefault((row["run"], row.get("commit")), {})[row["backend"]] = row
    out = []
    for key, per_run in by_case.items():
        entries = []
        for (run, commit), by_backend in per_run.items():
            mine, peer = by_backend.get(ours), fastest_peer(by_backend)
            if not (mine and mine.get("passed") and mine.get("median_ms")) or peer is None:
                continue
            entries.append(dict(run=run, commit=commit, ours_ms=mine["median_ms"],
                                peer=peer["backend"], peer_ms=peer["median_ms"],
                                ratio=peer["median_ms"] / mine["median_ms"]))  # fmt: skip
        if len(entries) >= 2:
            ratios = [e["ratio"] for e in entries]
            out.append(dict(op=key[0], case=key[1], pass_=key[2], runs=entries,
                            low=min(ratios), high=max(ratios),
                            median=statistics.median(ratios),
                            ahead=sum(r > 1 for r in ratios)))  # fmt: skip
    return out


def render(cases: list[dict]) -> str:
    lines = []
    for c in cases:
        lines.append(
            f"{c['case']} {c['pass_']}: ours / fastest peer {c['low']:.3f}-{c['high']:.3f}x, "
            f"median {c['median']:.3f}x, ahead in {c['ahead']} of {len(c['runs'])} runs"
        )
        for e in c["runs"]:
            lines.append(
                f"  {e['run']} ({e['commit']}): ours {e['ours_ms'] * 1e3:.1f} us, {e['peer']} "
                f"{e['peer_ms'] * 1e3:.1f} us, {e['ratio']:.3f}x"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--backend", default="triton", help="ours (default: triton)")
    args = ap.parse_args()
    cases = spread([load(r) for r in args.runs], args.backend)
    if not cases:
        sys.exit(f"no case with ours ({args.backend}) and a peer in two or more of the runs")
    print(render(cases))


if __name__ == "__main__":
    main()

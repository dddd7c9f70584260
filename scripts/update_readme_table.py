"""Regenerate the README's results table from the runs stored in ``benchmarks/results/``.

Replaces the text between ``<!-- results:start -->`` and ``<!-- results:end -->`` in
README.md with ``flash_swiglu.bench.summary.render_summary``. Run from anywhere::

    python scripts/update_readme_table.py [--readme README.md] [--results benchmarks/results]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from flash_swiglu.bench.summary import load_rows, render_summary  # noqa: E402

START, END = "<!-- results:start -->", "<!-- results:end -->"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    try:
        text = args.readme.read_text()
    except OSError as e:
        print(f"error: cannot read {args.readme}: {e}", file=sys.stderr)
        return 1
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        print(f"error: {args.readme} has no {START} ... {END} markers", file=sys.stderr)
        return 1
    table = render_summary(load_rows(args.results))
    new = text[: start + len(START)] + "\n" + table + "\n" + text[end:]
    args.readme.write_text(new)
    print(f"{args.readme}: results table {'updated' if new != text else 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

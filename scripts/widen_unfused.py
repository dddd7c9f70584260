"""Write a copy of the committed H200 launch table whose ``unfused`` section also sends
``--tokens LO-HI`` (inclusive) of each model shape to the unfused route (two cuBLAS products
and the fused elementwise kernel), for a benchmark run under ``FLASH_SWIGLU_LINEAR_CONFIGS``
beside one on the committed table (session 42: the counts just past 384 and 512 tokens).

    PYTHONPATH=src python scripts/widen_unfused.py --tokens 385-768 --out /tmp/widened.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flash_swiglu.bench.cases.linear import MODELS

TABLE = Path(__file__).resolve().parents[1] / "src/flash_swiglu/configs/h200_linear.json"
SHAPES = tuple(f"n{n}_k{k}" for k, n in MODELS.values())  # the benchmark's models


def widened(table: dict, lo: int, hi: int) -> dict:
    """``table`` with ``[lo, hi]`` added to every ``unfused`` entry of the four model shapes
    (dtype-keyed ones included), and the shape's generic entry made where it has none, so a
    dtype without a key of its own is widened too."""
    out = json.loads(json.dumps(table))
    unfused = out.setdefault("unfused", {})
    for shape in SHAPES:
        keys = {shape, *(k for k in unfused if k.split(":")[0] == shape)}
        for key in sorted(keys):
            entry = unfused.setdefault(key, {"TOKENS": []})
            entry["TOKENS"] = [*entry["TOKENS"], [lo, hi]]
            entry["source"] = f"widened by scripts/widen_unfused.py ({lo}-{hi})"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", required=True, help="LO-HI, inclusive")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    lo, hi = (int(v) for v in args.tokens.split("-"))
    if not 0 < lo <= hi:
        raise SystemExit(f"--tokens {args.tokens}: need 0 < LO <= HI")
    Path(args.out).write_text(json.dumps(widened(json.loads(TABLE.read_text()), lo, hi), indent=2))


if __name__ == "__main__":
    main()

"""Write a copy of the committed H200 launch table whose ``unfused`` section also sends
``--tokens LO-HI`` (inclusive) of each model shape to the unfused route (two cuBLAS products
and the fused elementwise kernel), for a benchmark run under ``FLASH_SWIGLU_LINEAR_CONFIGS``
beside one on the committed table (session 42: the counts just past 384 and 512 tokens).

    PYTHONPATH=src python scripts/widen_unfused.py --tokens 385-768 --out /tmp/widened.json

``--ws-bucket n28672_k8192:1024`` (session 44) instead gives a token bucket of a shape the
shape's ``ws`` entry (which applies from its ``MIN_M`` rows) without the ``MIN_M``: the merged
Gluon forward beside the Triton kernel that the bucket runs on the committed table.
``--drop LO-HI`` (session 45) takes ``LO-HI`` out of every ``unfused`` entry of the four model
shapes: where the committed table routes those counts, ``--drop`` with ``--ws-bucket`` times the
fused projection there instead.
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


def dropped(table: dict, lo: int, hi: int) -> dict:
    """``table`` with ``[lo, hi]`` taken out of every ``unfused`` range of the four model shapes
    (a range across it is split; one inside it goes)."""
    out = json.loads(json.dumps(table))
    for key, entry in out.get("unfused", {}).items():
        if key.split(":")[0] not in SHAPES:
            continue
        kept = []
        for a, b in entry["TOKENS"]:
            if a < lo:
                kept.append([a, min(b, lo - 1)])
            if b > hi:
                kept.append([max(a, hi + 1), b])
        entry["TOKENS"] = kept
        entry["source"] = f"{lo}-{hi} dropped by scripts/widen_unfused.py"
    return out


def tokens_range(text: str, flag: str) -> tuple[int, int]:
    lo, hi = (int(v) for v in text.split("-"))
    if not 0 < lo <= hi:
        raise SystemExit(f"{flag} {text}: need 0 < LO <= HI")
    return lo, hi


def ws_bucket(table: dict, shape: str, bucket: int) -> dict:
    """``table`` with ``ws``'s ``m{bucket}_{shape}`` set to the shape's ``ws`` entry less its
    ``MIN_M`` (the bucket's counts then run that entry; ``ops.linear.table_keys``)."""
    out = json.loads(json.dumps(table))
    ws = out["ws"]
    if shape not in ws:
        raise SystemExit(f"--ws-bucket: the table has no ws entry {shape!r}")
    entry = {key: value for key, value in ws[shape].items() if key != "MIN_M"}
    entry["source"] = f"ws[{shape!r}] without MIN_M, by scripts/widen_unfused.py"
    ws[f"m{bucket}_{shape}"] = entry
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", help="LO-HI, inclusive")
    ap.add_argument("--ws-bucket", help="SHAPE:BUCKET, e.g. n28672_k8192:1024")
    ap.add_argument("--drop", help="LO-HI, inclusive: counts the unfused route no longer takes")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if not (args.tokens or args.ws_bucket or args.drop):
        raise SystemExit("give --tokens, --ws-bucket, --drop or some of them")
    table = json.loads(TABLE.read_text())
    if args.drop:
        table = dropped(table, *tokens_range(args.drop, "--drop"))
    if args.tokens:
        table = widened(table, *tokens_range(args.tokens, "--tokens"))
    if args.ws_bucket:
        shape, bucket = args.ws_bucket.rsplit(":", 1)
        b = int(bucket)
        if b <= 0 or b & (b - 1):
            raise SystemExit(f"--ws-bucket {args.ws_bucket}: the bucket is a power of two")
        table = ws_bucket(table, shape, b)
    Path(args.out).write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()

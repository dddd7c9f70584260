"""Session-46 exploration on the H200: where Llama-3-8B's route ends past 1024 tokens.

    PYTHONPATH=src python scripts/explore_session46.py edge8b --out DIR

Why: the launch table sends Llama-3-8B at 1025-1087 tokens (bf16) and 1025-1088 (fp16) to the
unfused route (two cuBLAS products and the fused elementwise kernel), a range taken from
counts at its ends (session 44). Session 46's benchmark runs inside it (stage ``cover46``:
``h200-s46-linear-{bf16,fp16}-cover46-committed`` and ``-fused``, the second with the range
dropped from the table) had the fused projection ahead at 1072 and 1087 in both dtypes
(1.031 / 1.031x eager against the route's 1.014 / 1.004x in bf16, 1.009 / 1.027x against
0.997 / 1.006x in fp16) and behind at 1025-1056; one run each, one timing per count, and
earlier runs disagree by as much (session 44's bf16 run had the fused projection at 0.986x
eager at 1064, session 45's the route at 1.047x there).

- ``edge8b``: Llama-3-8B at 1040-1088 tokens in bf16 and fp16, in one process: eager (two
  ``F.linear`` and ``F.silu(g) * u``), ``swiglu_linear`` on the committed table (the route
  at these counts) and on the table with 1025-1088 dropped from its ``unfused`` section (the
  fused projection; ``scripts/widen_unfused.py``'s ``dropped``), each timed as the benchmark
  times (``measure_graph`` after 100 ms of its own replays, cold L2) in ``ROUNDS`` rotated
  rounds. ``EDGE_MODEL`` / ``EDGE_TOKENS`` (after call 2): another benchmark model, other
  counts (call 3: Llama-3-70B, whose route counts ran 0.990-0.999x eager in bf16 in the
  ``cover46`` runs). Outputs checked against a float64 reference with the tolerance rule first, and
  which path each table takes recorded. -> ``edge8b.json``
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

import explore_session12 as S12
import explore_session16 as S16
import widen_unfused as W

import flash_swiglu
from flash_swiglu.bench.cases.linear import MODELS
from flash_swiglu.bench.timing import interleaved_rounds, measure_graph
from flash_swiglu.ops import linear as L

ROUNDS = 5
SETTLE_MS = 100.0
TOKENS = tuple(
    int(t) for t in os.environ.get("EDGE_TOKENS", "1040,1056,1064,1072,1080,1087,1088").split(",")
)
MODEL = os.environ.get("EDGE_MODEL", "llama-3-8b")
DTYPES = (torch.bfloat16, torch.float16)
_current: list = [None]


def _use_table(path: str) -> None:
    """Point the launcher at the table ``path`` ("" for the committed one), forgetting the
    tables, plans and route decisions read from the one before."""
    if _current[0] == path:
        return
    os.environ[L.CONFIG_ENV] = path
    L.load_table.cache_clear()
    L.unfused_route.cache_clear()
    _current[0] = path


def edge8b(out: Path) -> list[dict]:
    device = torch.device("cuda")
    k, n = MODELS[MODEL]
    _use_table("")
    table = L.load_table(torch.cuda.get_device_name())
    fused_path = out / "fused46.json"
    fused_path.write_text(json.dumps(W.dropped(table, 1025, 1088), indent=1))
    tables = {"route": "", "fused": str(fused_path)}
    gen = torch.Generator(device=device).manual_seed(46)
    rows = []
    for dt in DTYPES:
        wg = torch.randn(n, k, device=device, dtype=dt, generator=gen) / k**0.5
        wu = torch.randn(n, k, device=device, dtype=dt, generator=gen) / k**0.5
        for m in TOKENS:
            x = torch.randn(m, k, device=device, dtype=dt, generator=gen)
            ref = flash_swiglu.reference.swiglu_linear_reference(
                x.double(), wg.double(), wu.double()
            )
            calls = {"eager": lambda x=x: F.silu(F.linear(x, wg)) * F.linear(x, wu)}
            paths, errs = {}, {}
            for label, path in tables.items():
                _use_table(path)
                paths[label] = L.unfused_route(m, n, k, dt, torch.cuda.get_device_name())
                got = flash_swiglu.swiglu_linear(x, wg, wu)
                errs[label] = (got.double() - ref).abs().max().item()
                torch.testing.assert_close(got.double(), ref, rtol=2e-2, atol=2e-2)

                def call(x=x, path=path):
                    _use_table(path)
                    return flash_swiglu.swiglu_linear(x, wg, wu)

                calls[label] = call
            rounds = interleaved_rounds(
                list(calls), lambda lb: measure_graph(calls[lb], SETTLE_MS).median_ms, ROUNDS
            )
            med = {lb: sorted(t)[len(t) // 2] for lb, t in rounds.items()}
            row = dict(model=MODEL, m=m, n=n, k=k, dtype=str(dt).split(".")[-1],
                       unfused_route=paths, max_abs_err=errs, ms=rounds, median_ms=med)  # fmt: skip
            rows.append(row)
            (out / "edge8b.json").write_text(json.dumps(rows, indent=1))
            e = med["eager"]
            S16.say(
                f"edge8b {MODEL} {row['dtype']:8s} M={m}: vs eager route {e / med['route']:.3f}x "
                f"fused {e / med['fused']:.3f}x; fused/route {med['route'] / med['fused']:.3f}; "
                f"rounds ms route {min(rounds['route']):.4f}-{max(rounds['route']):.4f} fused "
                f"{min(rounds['fused']):.4f}-{max(rounds['fused']):.4f} eager "
                f"{min(rounds['eager']):.4f}-{max(rounds['eager']):.4f}; route taken {paths}"
            )
    _use_table("")
    return rows


def main() -> None:
    S12.run_stages({"edge8b": edge8b}, ["edge8b"])


if __name__ == "__main__":
    main()

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

- ``swap70b`` (after call 3): the same for Llama-3-70B at 769, 800 and 831 tokens (the route
  in both dtypes; 0.996x eager in bf16 and 0.998x in fp16 at 769 in session 45's benchmark
  runs) and 960 and 992 (the merged Gluon forward; fp16 0.978x eager at 960 in session 45's
  ``check45``), on the committed table and on one with the two swapped: the route dropped at
  769-831 (the merged forward there, the 1024 bucket's ``ws`` entry) and added at 832-1023.
  -> ``swap70b.json``

- ``routeliger`` (written after call 7, not yet run): call 7's benchmark run had our route
  behind Liger's two linears + ``LigerSiLUMulFunction`` (``liger-mul``) on Llama-3-70B by 3% at
  800 and 1025 tokens (bf16), though the two differ only in the elementwise kernel. In one
  process, rotated rounds as above, 70B at 800 and 1025 tokens in both dtypes: eager, our
  ``swiglu_linear`` (the route there), ``liger-mul``, and the two elementwise kernels alone on
  the same ``[M, 28672]`` gate and up (ours through ``flash_swiglu.swiglu``, Liger's
  ``LigerSiLUMulFunction``), with the copy bandwidth of the same bytes for scale. Needs
  Liger-Kernel importable (the ``.whl`` carry). -> ``routeliger.json``
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
SWAP_TOKENS = (769, 800, 831, 960, 992)
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


def _timed(calls: dict) -> tuple[dict, dict]:
    """``({label: [ms of each round]}, {label: median round's ms})``: ``measure_graph`` after
    ``SETTLE_MS`` of the call's own replays, ``ROUNDS`` rounds in rotated order."""
    rounds = interleaved_rounds(
        list(calls), lambda lb: measure_graph(calls[lb], SETTLE_MS).median_ms, ROUNDS
    )
    return rounds, {lb: sorted(t)[len(t) // 2] for lb, t in rounds.items()}


def edge8b(out: Path) -> list[dict]:
    _use_table("")
    table = L.load_table(torch.cuda.get_device_name())
    fused_path = out / "fused46.json"
    fused_path.write_text(json.dumps(W.dropped(table, 1025, 1088), indent=1))
    return _ab(out, "edge8b", MODEL, TOKENS, {"route": "", "fused": str(fused_path)})


def swap70b(out: Path) -> list[dict]:
    _use_table("")
    table = L.load_table(torch.cuda.get_device_name())
    swapped = W.widened(W.dropped(table, 769, 831), 832, 1023)
    swapped_path = out / "swapped46.json"
    swapped_path.write_text(json.dumps(swapped, indent=1))
    return _ab(out, "swap70b", "llama-3-70b", SWAP_TOKENS,
               {"committed": "", "swapped": str(swapped_path)})  # fmt: skip


def _ab(out: Path, stage: str, model: str, tokens, tables: dict) -> list[dict]:
    """Eager and ``swiglu_linear`` on each of ``tables`` ({label: table path, "" for the
    committed one}) at each of ``tokens``, both dtypes, in rotated rounds."""
    device = torch.device("cuda")
    k, n = MODELS[model]
    gen = torch.Generator(device=device).manual_seed(46)
    rows = []
    for dt in DTYPES:
        wg = torch.randn(n, k, device=device, dtype=dt, generator=gen) / k**0.5
        wu = torch.randn(n, k, device=device, dtype=dt, generator=gen) / k**0.5
        for m in tokens:
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
            rounds, med = _timed(calls)
            row = dict(model=model, m=m, n=n, k=k, dtype=str(dt).split(".")[-1],
                       unfused_route=paths, max_abs_err=errs, ms=rounds, median_ms=med)  # fmt: skip
            rows.append(row)
            (out / f"{stage}.json").write_text(json.dumps(rows, indent=1))
            e = med["eager"]
            a, b = list(tables)
            S16.say(
                f"{stage} {model} {row['dtype']:8s} M={m}: vs eager {a} {e / med[a]:.3f}x "
                f"{b} {e / med[b]:.3f}x; {b}/{a} {med[a] / med[b]:.3f}; rounds ms "
                + " ".join(f"{lb} {min(t):.4f}-{max(t):.4f}" for lb, t in rounds.items())
                + f"; route taken {paths}"
            )
    _use_table("")
    return rows


def routeliger(out: Path) -> list[dict]:
    from liger_kernel.ops.swiglu import LigerSiLUMulFunction

    device = torch.device("cuda")
    _use_table("")
    k, n = MODELS["llama-3-70b"]
    gen = torch.Generator(device=device).manual_seed(46)
    rows = []
    for dt in DTYPES:
        wg = torch.randn(n, k, device=device, dtype=dt, generator=gen) / k**0.5
        wu = torch.randn(n, k, device=device, dtype=dt, generator=gen) / k**0.5
        for m in (800, 1025):
            x = torch.randn(m, k, device=device, dtype=dt, generator=gen)
            g, u = F.linear(x, wg), F.linear(x, wu)
            # A copy of the bytes the elementwise pass moves (reads 2 m n, writes m n elements).
            src = torch.randn(3 * m * n // 2, device=device, generator=gen).to(dt)
            dst = torch.empty_like(src)
            calls = {
                "eager": lambda x=x: F.silu(F.linear(x, wg)) * F.linear(x, wu),
                "ours": lambda x=x: flash_swiglu.swiglu_linear(x, wg, wu),
                "liger-mul": lambda x=x: LigerSiLUMulFunction.apply(
                    F.linear(x, wg), F.linear(x, wu)
                ),
                "ours-elementwise": lambda g=g, u=u: flash_swiglu.swiglu(g, u),
                "liger-elementwise": lambda g=g, u=u: LigerSiLUMulFunction.apply(g, u),
                "copy": lambda src=src, dst=dst: dst.copy_(src),
            }
            ref = F.silu(g.double()) * u.double()
            checked = ("ours", "liger-mul", "ours-elementwise", "liger-elementwise")
            errs = {}
            for lb in checked:
                got = calls[lb]().double()
                errs[lb] = (got - ref).abs().max().item()
                torch.testing.assert_close(got, ref, rtol=2e-2, atol=2e-2)
            rounds, med = _timed(calls)
            row = dict(model="llama-3-70b", m=m, n=n, k=k, dtype=str(dt).split(".")[-1],
                       max_abs_err=errs, ms=rounds, median_ms=med)  # fmt: skip
            rows.append(row)
            (out / "routeliger.json").write_text(json.dumps(rows, indent=1))
            S16.say(
                f"routeliger {row['dtype']:8s} M={m}: median ms "
                + ", ".join(f"{lb} {t:.4f}" for lb, t in med.items())
                + f"; ours / liger-mul {med['liger-mul'] / med['ours']:.3f}x, elementwise "
                f"{med['liger-elementwise'] / med['ours-elementwise']:.3f}x; errors {errs}"
            )
    return rows


def main() -> None:
    S12.run_stages({"edge8b": edge8b, "swap70b": swap70b, "routeliger": routeliger}, ["edge8b"])


if __name__ == "__main__":
    main()

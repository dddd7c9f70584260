"""Explorations of session 26.

    PYTHONPATH=src python scripts/explore_session26.py rows --out DIR

- ``rows``: the decode kernel with ``ROWS`` (a program owns fewer weight rows than its MMA
  tile's ``BLOCK_N``; the grid gets ``cdiv(N, ROWS)`` columns). The entries' grids leave SMs
  idle or run a partial second wave: Llama-3.2-1B's 64-row tiles are 128 programs on 132
  SMs; Llama-3-8B's 128-row tiles 112; Llama-3-70B's 224 with one resident an SM (1.7
  waves). For each model at 8 and 32 tokens (``ROWS_TOKENS``, environment), in each dtype of
  ``ROWS_DTYPES`` (environment, default ``bfloat16,float16``), on ``COPIES`` copies of the
  benchmark's inputs in one set of rotated rounds: ours (the benchmark's call), the table's
  entry launched directly, and the entry with each ``ROWS`` that spreads N over whole waves
  of 132 SMs (``_rows_for``), plus the extra tiles of ``EXTRA``. -> ``rows.json``;
  ``rows_table.json``: per case, the fastest candidate whose slowest round beat ours's
  fastest on every copy.

- ``rows2``: after ``rows`` (call 1) had Qwen2.5-7B at 8 tokens ahead with 48 rows on every
  copy and Llama-3-70B at 8 tokens ahead with 109 rows on five of six: those two cases on
  ``COPIES2`` copies, the entry beside the variations of ``ROWS2`` (the row count with the
  rotation of the K loop, pointer loads instead of TMA, a neighbouring row count).
  -> ``rows2.json``, ``rows2_table.json`` as ``rows``.

- ``rows3``: after ``rows2`` (call 2) had pointer loads with 48 rows 3.8% ahead of Qwen's TMA
  entry at 8 tokens and 110 rows 1.5% ahead on 70B: the same at 32 tokens, where ``rows``
  tried only the entries' TMA form (whose tiles then read the rows a neighbour owns).
  ``ROWS3``, ``COPIES2`` copies. -> ``rows3.json``, ``rows3_table.json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import explore_session12 as S12
import explore_session15 as S15
import explore_session16 as S16
import explore_session21 as S21
import explore_session23 as S23
import explore_session25 as S25

from flash_swiglu import reference
from flash_swiglu.bench.cases.linear import LinearCase
from flash_swiglu.bench.harness import SEED
from flash_swiglu.ops import linear as L

say = S16.say
COPIES = S25.COPIES
SMS = 132
MODELS = os.environ.get("ROWS_MODELS", "llama-3.2-1b,llama-3-8b,qwen2.5-7b,llama-3-70b")
TOKENS = tuple(int(t) for t in os.environ.get("ROWS_TOKENS", "8,32").split(","))
EXTRA = {  # (model, tokens) -> tiles beside the entry's: 8B's 64-row tile spread over 2 waves
    ("llama-3-8b", 8): [dict(BLOCK_N=64, BLOCK_K=128, num_warps=4, num_stages=3, K_ROTATE=5)],
    ("llama-3-8b", 32): [dict(BLOCK_N=64, BLOCK_K=128, num_warps=4, num_stages=3, K_ROTATE=5)],
}


COPIES2 = 5
ROWS2 = {  # (model, tokens) -> overrides of the table's entry
    ("qwen2.5-7b", 8): [
        dict(ROWS=48),
        dict(ROWS=48, TMA=False),
        dict(ROWS=50),
        dict(ROWS=48, K_ROTATE=5),
    ],
    ("llama-3-70b", 8): [
        dict(ROWS=109),
        dict(ROWS=109, K_ROTATE=5),
        dict(ROWS=109, K_ROTATE=11),
        dict(ROWS=110),
        dict(K_ROTATE=5),
    ],
}

_P64 = dict(BLOCK_N=64, BLOCK_K=128, num_warps=4, TMA=False, K_ROTATE=0)
_P128 = dict(BLOCK_N=128, BLOCK_K=128, num_warps=8, TMA=False, K_ROTATE=0)
ROWS3 = {  # (model, tokens) -> overrides of the table's entry
    ("qwen2.5-7b", 32): [
        dict(_P64, num_stages=2, ROWS=48),
        dict(_P64, num_stages=3, ROWS=48),
        dict(_P64, num_stages=2),
        dict(_P64, num_stages=2, ROWS=48, K_ROTATE=5),
    ],
    ("llama-3-70b", 32): [
        dict(_P128, num_stages=3, ROWS=110),
        dict(_P128, num_stages=3, ROWS=110, K_ROTATE=11),
        dict(_P128, num_stages=3),
        dict(TMA=False),
    ],
}


def _rows_for(n: int, block_n: int) -> list[int]:
    """Row counts that cut N into whole waves of ``SMS`` programs (1-4 programs an SM), each
    at least half and less than the tile's ``block_n`` rows."""
    found = []
    for waves in range(1, 5):
        rows = -(-n // (SMS * waves))
        if block_n // 2 <= rows < block_n and rows not in found:
            found.append(rows)
    return found


def _label(cfg: dict) -> str:
    return (
        f"bn{cfg['BLOCK_N']} bk{cfg['BLOCK_K']} w{cfg['num_warps']} s{cfg['num_stages']}"
        + (" tma" if cfg.get("TMA") else "")
        + (f" kr{cfg['K_ROTATE']}" if cfg.get("K_ROTATE") else "")
        + (f" rows{cfg['ROWS']}" if cfg.get("ROWS") else "")
    )


def _candidates(model: str, m: int, n: int, k: int, dtype: torch.dtype) -> dict[str, dict]:
    entry = L.launch_config("decode", m, n, k, dtype, torch.cuda.get_device_name())
    cands = {f"entry {_label(entry)}": entry}
    for base in [entry, *EXTRA.get((model, m), [])]:
        if base is not entry:
            cands[_label(base)] = base
        for rows in _rows_for(n, base["BLOCK_N"]):
            cfg = dict(base, ROWS=rows)
            cands[_label(cfg)] = cfg
    return cands


def _time_case(model, m, dtype, cands, copies):
    """Ours (the benchmark's call) and each candidate on ``copies`` copies of the benchmark's
    inputs, one set of rotated rounds; every candidate's result checked first."""
    device = torch.device("cuda")
    k, n = S15.MODELS[model]
    case = LinearCase(model, k, n, m, dtype)
    inputs, dout = case.make_inputs(device, torch.Generator(device=device).manual_seed(SEED))
    ref = reference.swiglu_linear_reference(*(t.double() for t in inputs))
    return S25.time_on_copies(case, inputs, dout, ref, cands, "decode", copies)


def _stage(out, name, cases, copies):
    S21.need_read_eviction(name)
    S23._board()
    dtypes = [
        getattr(torch, d) for d in os.environ.get("ROWS_DTYPES", "bfloat16,float16").split(",")
    ]
    found, table = [], {}
    for dtype in dtypes:
        dt = str(dtype).removeprefix("torch.")
        for model, m, cands in cases(dtype):
            k, n = S15.MODELS[model]
            ms, mean, ahead = _time_case(model, m, dtype, cands, copies)
            best = min(ahead, key=mean.get) if ahead else None
            found.append(dict(model=model, m=m, n=n, k=k, dtype=dt, copies=copies,
                              configs=cands, ms=ms, ahead_every_copy=ahead,
                              best=best))  # fmt: skip
            if best is not None:
                table[f"m{m}_n{n}_k{k}:{dt}"] = dict(
                    cands[best], ours_us=round(mean["triton"] * 1e3, 2),
                    best_us=round(mean[best] * 1e3, 2), label=best)  # fmt: skip
            (out / f"{name}.json").write_text(json.dumps(found, indent=1))
            (out / f"{name}_table.json").write_text(json.dumps(table, indent=1))
            say(f"{name} {dt} {model:12s} M={m:2d} ours {mean['triton'] * 1e3:.2f} us; "
                + ", ".join(f"{lb} {mean[lb] * 1e3:.2f}" for lb in cands)
                + f"; ahead on every copy: {', '.join(ahead) or 'none'}")  # fmt: skip
    return found


def rows(out: Path) -> list[dict]:
    def cases(dtype):
        for model in MODELS.split(","):
            k, n = S15.MODELS[model]
            for m in TOKENS:
                cands = _candidates(model, m, n, k, dtype)
                if len(cands) > 1:  # nothing beside the entry: Qwen's 16-row tile at 32
                    yield model, m, cands

    return _stage(out, "rows", cases, COPIES)


def override_cases(spec: dict, label=_label):
    """``_stage``'s cases from ``spec`` (``(model, tokens) -> [overrides]``): the table's
    decode entry for each case and the entry with each override, named by ``label``."""

    def cases(dtype):
        for (model, m), overrides in spec.items():
            k, n = S15.MODELS[model]
            entry = L.launch_config("decode", m, n, k, dtype, torch.cuda.get_device_name())
            cands = {f"entry {label(entry)}": entry}
            for o in overrides:
                cfg = dict(entry, **o)
                cands[label(cfg)] = cfg
            yield model, m, cands

    return cases


def _overridden(name: str, spec: dict):
    return lambda out: _stage(out, name, override_cases(spec), COPIES2)


rows2 = _overridden("rows2", ROWS2)
rows3 = _overridden("rows3", ROWS3)


def main() -> None:
    S12.run_stages({"rows": rows, "rows2": rows2, "rows3": rows3}, ["rows"])


if __name__ == "__main__":
    main()

"""Explorations written in session 20, after its device time was spent, for the next session's
H200 time.

    PYTHONPATH=src python scripts/explore_session21.py decode-read --out DIR

- ``decode-read``: session 20 changed how the harness evicts the L2 before each timed call (a
  read of 256 MB instead of a ``zero_`` whose dirty lines were written back inside the timed
  call; ``bench.timing.L2_FLUSH``). Every decode entry of the launch table was chosen under
  the write eviction. Under the read eviction (run ``h200-s20-linear-bf16-decode``) the 90%
  target holds at 8 and 32 tokens on Llama-3-8B, Qwen2.5-7B and Llama-3-70B, and two gaps
  remain: Llama-3.2-1B at 86 / 84% of the copy bandwidth (the cuBLAS product 86%), and Liger's
  fused ``gemm_swiglu`` 1.6-1.9% faster on 70B and 1.1% on 8B at 32 tokens. Liger's kernel is
  an autotuned TMA GEMM with 128 weight rows a program (tokens on the MMA's M side, padded to
  64 by the descriptor), so the decode kernel's 128-row TMA tiles (224 programs on 70B, 112 on
  8B) and its split-K tiles for 1B (8192 rows: 128 programs of 64 rows for 132 SMs) are the
  candidates here, with the committed entries' tiles for reference, at 8 and 32 tokens on
  the four models: ours (the launcher), Liger's kernel, the cuBLAS product and each
  candidate, each checked against float64 first, each timing settled 100 ms, three rotated
  rounds (``explore_session15.decode``, now read-evicted). -> ``decode_read.json``, and
  ``decode_read_table.json``: per case the fastest candidate, in the launch table's entry
  format, where its slowest round beat the launcher's fastest.
- ``read-floor`` (written in session 21, after ``decode-read`` ran): how fast can anything read
  these weights, timed the way the benchmark times decode (graph replays, the L2 evicted by a
  read)? On each model at 8 tokens: ours, Liger's kernel and the cuBLAS product (the
  benchmark's own calls), a plain Triton read of the two weights (session 8's kernel: one
  chunk a program, three chunk sizes) and a device copy moving the same bytes in all, three
  rotated rounds, settled 100 ms. Each as a fraction of the 4 GiB copy bandwidth, over the
  bytes the benchmark counts for the case. -> ``read_floor.json``. This bounds what a decode
  kernel can reach on Llama-3.2-1B, where ours and the cuBLAS product read at 84-86%.
- ``decode-more`` (session 21, after the decode benchmark ``h200-s21-linear-bf16-decode`` on
  the table with ``decode-read``'s three entries): the cases still short there, the same way
  as ``decode-read``. Llama-3.2-1B at 1, 8 and 32 tokens (86-87%; a plain read of its weights
  ran at 96% in ``read-floor``): narrower pointer-load tiles, deeper pipelines, more warps.
  Llama-3-70B at one token (ours 206.3 us, max-autotune 202.0): the matrix-vector kernel
  around its entry and the decode kernel's tiles. Llama-3-8B at 8 and 32 tokens (Liger 2.3 /
  2.9% faster in that run, 1.5% slower at 8 in ``decode-read``): the entries' neighbours
  again, for a second sample. -> ``decode_more.json``, ``decode_more_table.json`` (the same
  rule as ``decode-read``'s table; matrix-vector winners in the ``gemv`` section's format).
- ``placement`` (session 21, after the second decode benchmark): Llama-3-8B at 8 tokens ran
  55.3-55.5 us in three benchmark processes with cuBLAS, Liger and ours alone and 57.8-59.1
  us in the two full decode runs, where the other backends stayed within about 2%. Ours is
  the one backend that reads the two weights from two separate allocations. Does the offset
  between them move its time? Both weights as views of one buffer, ``w_up`` starting
  ``delta`` bytes after the end of ``w_gate`` (the caching allocator places large tensors on
  2 MiB boundaries: the offsets two separate allocations can have), the launcher at 8 and
  32 tokens on 8B and 8 on 1B, the cuBLAS product on the concatenated weight beside it,
  three rotated rounds. -> ``placement.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import triton

sys.path.insert(0, str(Path(__file__).resolve().parent))

import explore_session11 as S11
import explore_session12 as S12
import explore_session15 as S15
import explore_session16 as S16
from explore_session8 import _read_kernel

from flash_swiglu.bench import timing
from flash_swiglu.bench.cases.linear import MODELS as CASE_MODELS
from flash_swiglu.bench.roofline import copy_bandwidth
from flash_swiglu.ops import linear as L

say = S16.say
MODELS = ("llama-3.2-1b", "llama-3-8b", "qwen2.5-7b", "llama-3-70b")
READ_CASES = [(model, m) for model in MODELS for m in (8, 32)]
READ_TILES = [  # (TMA, BLOCK_N, BLOCK_K, warps, stages[, SPLIT_K])
    # 128 weight rows a program, as Liger's kernel (and the 70B entry at 121-128 tokens)
    (True, 128, 64, 8, 4), (True, 128, 64, 8, 3), (True, 128, 128, 8, 3), (True, 128, 128, 8, 2),
    (True, 128, 64, 4, 3), (False, 128, 128, 8, 3), (False, 128, 64, 8, 4),
    # 64 rows (the 70B, 8B-at-16 and Qwen-at-8 entries' tiles and neighbours)
    (True, 64, 128, 4, 4), (True, 64, 128, 4, 3), (True, 64, 128, 4, 2), (True, 64, 256, 4, 2),
    (False, 64, 128, 4, 4),
    # narrow (Qwen's 32-token entry) and split-K, for 1B's 128 tiles of 64 rows
    (True, 16, 256, 2, 3), (True, 32, 256, 4, 3), (True, 32, 128, 4, 3),
    (True, 64, 128, 4, 3, 2), (False, 64, 128, 4, 4, 2), (True, 128, 128, 8, 3, 2),
]  # fmt: skip


def need_read_eviction(stage: str) -> None:
    """Stop a stage written for the harness's read eviction (``timing.L2_FLUSH``)."""
    if timing.L2_FLUSH != "read":
        raise SystemExit(f"{stage} expects the read eviction, not {timing.L2_FLUSH!r}")


def winner(row: dict, is_candidate) -> tuple[str, list, list] | None:
    """``(label, its rounds, the launcher's rounds)`` of the fastest candidate of a
    ``explore_session15.decode`` row (the labels ``is_candidate`` accepts, by median round)
    where its slowest round beat the launcher's fastest; None elsewhere."""
    ms, ours = row["ms"], row["ms"].get("triton")
    cands = {lb: t for lb, t in ms.items() if is_candidate(lb) and t}
    if not ours or not cands:
        return None
    best = min(cands, key=lambda lb: sorted(cands[lb])[len(cands[lb]) // 2])
    if max(cands[best]) >= min(ours):
        return None
    return best, sorted(cands[best]), sorted(ours)


def winners_table(rows: list[dict], is_candidate, entry_of, source_of) -> dict:
    """``{case key: entry}`` (keys ``m{token bucket}_n{N}_k{K}``) of the
    ``explore_session15.decode`` rows where ``winner`` names a candidate among the labels
    ``is_candidate(row, label)`` accepts: ``entry_of(row, label)``, its ``source`` set to
    ``source_of(row, label, its rounds, the launcher's rounds)``. The table builders of
    sessions 21-23 differ only in those three."""
    table = {}
    for row in rows:
        won = winner(row, lambda lb, row=row: is_candidate(row, lb))
        if won is None:
            continue
        best, best_ms, ours_ms = won
        entry = dict(entry_of(row, best))
        entry["source"] = source_of(row, best, best_ms, ours_ms)
        table[f"m{L.token_bucket(row['m'])}_n{row['n']}_k{row['k']}"] = entry
    return table


def _tile_entry(row: dict, label: str) -> dict:
    """A decode tile's label (``explore_session16.decode_tile_candidates``) parsed back into
    the decode entry's keys."""
    kind, bn, bk, w, s, *split = label.split()
    entry = dict(BLOCK_N=int(bn[2:]), BLOCK_K=int(bk[2:]), num_warps=int(w[1:]),
                 num_stages=int(s[1:]))  # fmt: skip
    if kind == "tma":
        entry["TMA"] = True
    if split:
        entry["SPLIT_K"] = int(split[0].removeprefix("split"))
    return entry


def _table(rows: list[dict]) -> dict:
    """``{case key: entry}`` where the fastest candidate's slowest round beat the launcher's
    fastest (the label parsed back into the decode entry's keys)."""

    def tile(row, lb):  # gemv-more cases: their own table
        gemv_case = any(label.startswith("gemv") for label in row["ms"])
        return not gemv_case and lb not in ("triton", "liger", "cublas")

    return winners_table(rows, tile, _tile_entry, lambda row, best, best_ms, ours_ms: (
        f"scripts/explore_session21.py decode-read ({row['model']}, {row['m']} tokens, "
        f"read-evicted): {best_ms} ms against the launcher's {ours_ms}"
    ))  # fmt: skip


def decode_read(out: Path) -> dict:
    need_read_eviction("decode-read")
    candidates = lambda: S16.decode_tile_candidates(READ_TILES)
    rows = S15.decode(out, READ_CASES, candidates, "decode_read")
    table = _table(rows)
    (out / "decode_read_table.json").write_text(json.dumps(table, indent=1))
    say(f"decode-read: {len(table)} case(s) with a candidate ahead of the launcher in every "
        f"round: {', '.join(table) or 'none'}")  # fmt: skip
    return {"rows": rows, "table": table}


READ_CHUNKS = (4096, 16384, 65536)  # bf16 elements a program (8, 32, 128 KB)


def read_floor(out: Path) -> list[dict]:
    need_read_eviction("read-floor")
    device = torch.device("cuda")
    copy = copy_bandwidth(device)  # GB/s, 4 GiB
    rows = []
    for model in MODELS:
        k, n = CASE_MODELS[model]
        m = 8
        nbytes = (2 * n * k + m * k + m * n) * 2  # what the benchmark counts for the case
        inputs, dout, calls = S15._case_calls(model, m, ("triton", "liger", "cublas"), device)
        w = torch.cat([inputs[1].reshape(-1), inputs[2].reshape(-1)])  # both weights, 1 buffer
        for chunk in READ_CHUNKS:
            grid = (triton.cdiv(w.numel(), chunk),)
            sums = torch.empty(grid[0], device=device, dtype=torch.float32)
            calls[f"read {chunk * 2 // 1024}KB"] = lambda g=grid, o=sums, c=chunk, w=w: (
                _read_kernel[g](w, o, w.numel(), CHUNK=c, BLOCK=2048, num_warps=8)
            )
        src = torch.randn(nbytes // 8, device=device)  # float32: half the bytes read, half written
        dst = torch.empty_like(src)
        calls["copy same bytes"] = lambda s=src, d=dst: torch.mul(s, 1, out=d)
        ms, med = S15._rotated_rounds(calls, 100.0)
        frac = {lb: nbytes / (t * 1e-3) / 1e9 / copy for lb, t in med.items()}
        rows.append(dict(model=model, m=m, n=n, k=k, nbytes=nbytes, copy_gbps=copy, ms=ms,
                         fraction_of_copy=frac))  # fmt: skip
        (out / "read_floor.json").write_text(json.dumps(rows, indent=1))
        say(
            f"read-floor {model:11s} M=8 {nbytes / 1e6:6.1f} MB: "
            + ", ".join(f"{lb} {med[lb] * 1e3:.1f} us ({frac[lb]:.0%})" for lb in med)
        )
        del inputs, dout, calls, w, src, dst
    return rows


MORE_1B_TILES = [  # (TMA, BLOCK_N, BLOCK_K, warps, stages): 128 programs of 64 rows or more
    (False, 64, 128, 4, 4), (True, 64, 128, 4, 4), (False, 64, 128, 4, 5), (False, 64, 128, 4, 6),
    (True, 64, 128, 4, 5), (True, 64, 128, 4, 6), (False, 64, 128, 8, 4), (True, 64, 128, 8, 4),
    (False, 64, 64, 4, 6), (False, 64, 64, 4, 8), (True, 64, 64, 4, 8), (False, 64, 256, 4, 3),
    (False, 64, 256, 8, 3), (False, 32, 128, 4, 4), (False, 32, 128, 4, 6), (False, 32, 256, 4, 3),
    (False, 32, 256, 4, 4), (False, 32, 128, 2, 4), (True, 32, 128, 4, 6), (False, 16, 256, 2, 4),
    (False, 16, 128, 2, 6),
]  # fmt: skip
MORE_8B_TILES = [
    (False, 128, 128, 8, 3), (True, 128, 128, 8, 3), (False, 128, 128, 8, 4),
    (False, 64, 128, 4, 4), (True, 64, 128, 4, 4), (False, 128, 64, 8, 4),
]  # fmt: skip
GEMV_70B = [  # (BLOCK_N, BLOCK_K, warps, UNROLL, W_CACHE, STATIC_K): the entry and around it
    (1, 128, 1, 8, ".cg", False), (1, 128, 1, 8, "", False), (1, 128, 1, 16, ".cg", False),
    (1, 256, 1, 8, ".cg", False), (1, 256, 1, 4, ".cg", False), (1, 256, 1, 8, "", False),
    (1, 512, 1, 4, ".cg", False), (1, 512, 2, 4, ".cg", False), (1, 1024, 2, 2, ".cg", False),
    (1, 1024, 4, 4, ".cg", False), (1, 2048, 4, 2, ".cg", False), (1, 2048, 8, 1, "", True),
    (1, 4096, 8, 1, "", True), (1, 8192, 16, 1, "", True), (1, 8192, 8, 1, ".cg", True),
    (2, 256, 1, 8, ".cg", False), (2, 128, 1, 8, ".cg", False), (2, 512, 2, 4, ".cg", False),
]  # fmt: skip


def _gemv_entry(bn, bk, w, u, cache, static) -> dict:
    cfg = dict(BLOCK_N=bn, BLOCK_K=bk, num_warps=w, num_stages=1, UNROLL=u)
    if cache:
        cfg["W_CACHE"] = cache
    if static:
        cfg["STATIC_K"] = True
    return cfg


def _gemv_label(bn, bk, w, u, cache, static) -> str:
    return f"gemv bn{bn} bk{bk} w{w} u{u}{' cg' if cache else ''}{' static' if static else ''}"


GEMV_70B_ENTRIES = {_gemv_label(*c): _gemv_entry(*c) for c in GEMV_70B}


def _gemv_candidates() -> list:
    cands = [(lb, S11._triton_maker("gemv", cfg)) for lb, cfg in GEMV_70B_ENTRIES.items()]
    # and the decode kernel at one token: the shape's decode entry and two neighbours
    tiles = [(False, 64, 128, 4, 3), (False, 128, 128, 8, 3), (True, 64, 128, 4, 4)]
    return cands + S16.decode_tile_candidates(tiles)


def _gemv_table(rows: list[dict]) -> dict:
    """The ``gemv`` section's entries where a matrix-vector candidate's slowest round beat
    the launcher's fastest."""
    return winners_table(
        rows,
        lambda row, lb: lb.startswith("gemv"),
        lambda row, lb: GEMV_70B_ENTRIES[lb],
        lambda row, best, best_ms, ours_ms: (
            f"scripts/explore_session21.py decode-more ({row['model']}, {row['m']} token, "
            f"read-evicted): {best_ms} ms against the launcher's {ours_ms}"
        ),
    )


def decode_more(out: Path) -> dict:
    need_read_eviction("decode-more")
    rows = []
    plan = [
        ([("llama-3.2-1b", m) for m in (1, 8, 32)], MORE_1B_TILES),
        ([("llama-3-70b", 1)], None),
        ([("llama-3-8b", m) for m in (8, 32)], MORE_8B_TILES),
    ]
    for cases, tiles in plan:
        make = (lambda t=tiles: S16.decode_tile_candidates(t)) if tiles else _gemv_candidates
        rows += S15.decode(out, cases, make, "decode_more_part")
        (out / "decode_more.json").write_text(json.dumps(rows, indent=1))
    table = {"decode": _table(rows), "gemv": _gemv_table(rows)}
    (out / "decode_more_table.json").write_text(json.dumps(table, indent=1))
    (out / "decode_more_part.json").unlink(missing_ok=True)
    say("decode-more: ahead of the launcher in every round: "
        + "; ".join(f"{sec} {', '.join(t) or 'none'}" for sec, t in table.items()))  # fmt: skip
    return table


PLACEMENT_DELTAS = (0, 4096, 65536, 1 << 20, 2 << 20, 4 << 20, 6 << 20, 8 << 20, 16 << 20)


def placement(out: Path) -> list[dict]:
    from flash_swiglu import reference, swiglu_linear

    device = torch.device("cuda")
    rows = []
    for model, m in (("llama-3-8b", 8), ("llama-3-8b", 32), ("llama-3.2-1b", 8)):
        k, n = CASE_MODELS[model]
        nk = n * k
        buf = torch.empty(2 * nk + max(PLACEMENT_DELTAS) // 2, device=device, dtype=torch.bfloat16)
        buf.normal_(0, k**-0.5)
        x = torch.randn(m, k, device=device, dtype=torch.bfloat16)
        calls = {}
        for delta in PLACEMENT_DELTAS:
            wg = buf[:nk].view(n, k)
            wu = buf[nk + delta // 2 : 2 * nk + delta // 2].view(n, k)
            if delta == 0:
                ref = reference.swiglu_linear_reference(x.double(), wg.double(), wu.double())
                assert S11._ok(swiglu_linear(x, wg, wu), ref)
            calls[f"ours +{delta >> 10} KiB"] = lambda wg=wg, wu=wu: swiglu_linear(x, wg, wu)
        wcat = buf[: 2 * nk].view(2 * n, k)
        calls["cublas"] = lambda: x @ wcat.T
        ms, med = S15._rotated_rounds(calls, 100.0)
        rows.append(dict(model=model, m=m, n=n, k=k, ms=ms))
        (out / "placement.json").write_text(json.dumps(rows, indent=1))
        say(f"placement {model:11s} M={m:2d}: "
            + ", ".join(f"{lb} {t * 1e3:.1f}" for lb, t in med.items()))  # fmt: skip
        del calls
    return rows


def main() -> None:
    stages = {
        "decode-read": decode_read,
        "read-floor": read_floor,
        "decode-more": decode_more,
        "placement": placement,
    }
    S12.run_stages(stages, ["decode-read"])


if __name__ == "__main__":
    main()

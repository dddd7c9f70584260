"""Explorations written in session 21, after its device time was spent, for the next session's
H200 time.

    PYTHONPATH=src python scripts/explore_session22.py rotate copies --out DIR

Session 21 (``benchmarks/results/README.md``, "Session 21") left two decode questions:

- Llama-3.2-1B streams its 67 MB of weights at 85-86% of the copy bandwidth at 1-32 tokens,
  where a plain Triton read of the same bytes runs at 96% (``explore_session21.py
  read-floor``). Ours is 7% behind the plain read on 8B and Qwen too, and 4% on 70B. No tile
  closed that gap.
- On Llama-3-8B at 8 tokens our kernel took 55.3-59.1 us in seven processes, while each
  process's rounds agreed within 0.5%. Moving ``w_up`` 4 KiB to 16 MiB against ``w_gate``
  inside one buffer moved it by up to 2.5% (``placement``).

In every decode program, step ``k`` reads columns ``k * BLOCK_K`` of its 64 or 128 weight
rows. All programs run at once (one wave), so at any moment they all read the same column
offset of rows 4-16 KB apart. The plain read streams contiguous chunks instead, and the
one-token kernel reads whole rows. ``K_ROTATE`` (session 21, opt-in, in no entry yet)
starts program ``pid_n`` at step ``pid_n * K_ROTATE`` and wraps, so concurrent programs
read different offsets.

- ``rotate``: the decode cases that run the decode kernel (1B at 1 / 8 / 32 tokens; 8B,
  Qwen and 70B at 8 / 32) with their committed entry as it is and with ``K_ROTATE`` 1, 2, 5
  and 11, beside the launcher, Liger's ``gemm_swiglu`` and the cuBLAS product. Each is
  checked against float64, settled 100 ms, three rotated rounds (``explore_session15.decode``,
  read-evicted). -> ``rotate.json``, and ``rotate_table.json``: per case, the fastest variant
  in the launch table's entry format, where its slowest round beat the launcher's fastest.
- ``copies``: 8B at 8 and 32 tokens, the benchmark's inputs allocated six times, all kept
  alive. For each copy: ours (the launcher), ours with ``K_ROTATE`` 1, Liger's kernel and
  the cuBLAS product, each on that copy's own operands, in one set of three rotated rounds.
  If the spread between processes comes from where the weights land in memory, the copies
  spread the same way inside one process. The stage shows whether they do, and whether the
  rotation narrows it. -> ``copies.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import explore_session11 as S11
import explore_session12 as S12
import explore_session15 as S15
import explore_session16 as S16
import explore_session21 as S21

from flash_swiglu import reference
from flash_swiglu.bench.cases.linear import MODELS as CASE_MODELS
from flash_swiglu.ops import linear as L

say = S16.say
ROTATIONS = (1, 2, 5, 11)
ROTATE_CASES = [("llama-3.2-1b", m) for m in (1, 8, 32)] + [
    (model, m) for model in ("llama-3-8b", "qwen2.5-7b", "llama-3-70b") for m in (8, 32)
]
COPIES = 6


def _entry(model: str, m: int) -> dict:
    """The launch table's decode entry for the case (bf16), as the launcher reads it."""
    k, n = CASE_MODELS[model]
    name = torch.cuda.get_device_name(0)
    return L.launch_config("decode", L.token_bucket(m), n, k, torch.bfloat16, name)


def _rotate_candidates(entry: dict) -> tuple[list, dict]:
    """``([(label, maker)], {label: config})``: the entry as it is and with each rotation."""
    configs = {"entry": dict(entry)}
    for r in ROTATIONS:
        configs[f"entry rot{r}"] = dict(entry, K_ROTATE=r)
    return [(lb, S11._triton_maker("decode", cfg)) for lb, cfg in configs.items()], configs


def _rotate_table(rows: list[dict], configs: dict) -> dict:
    """``{case key: entry}`` where the fastest rotated variant's slowest round beat the
    launcher's fastest."""
    return S21.winners_table(
        rows,
        lambda row, lb: lb.startswith("entry rot"),
        lambda row, lb: configs[(row["model"], row["m"])][lb],
        lambda row, best, best_ms, ours_ms: (
            f"scripts/explore_session22.py rotate ({row['model']}, {row['m']} tokens, "
            f"read-evicted): {best_ms} ms against the launcher's {ours_ms}"
        ),
    )


def rotate(out: Path) -> dict:
    S21.need_read_eviction("rotate")
    rows, configs = [], {}
    for model, m in ROTATE_CASES:
        cands, configs[(model, m)] = _rotate_candidates(_entry(model, m))
        rows += S15.decode(out, [(model, m)], lambda c=cands: c, "rotate_part")
        (out / "rotate.json").write_text(json.dumps(rows, indent=1))
    (out / "rotate_part.json").unlink(missing_ok=True)
    table = _rotate_table(rows, configs)
    (out / "rotate_table.json").write_text(json.dumps(table, indent=1))
    say(f"rotate: ahead of the launcher in every round: {', '.join(table) or 'none'}")
    return table


def copies(out: Path) -> list[dict]:
    S21.need_read_eviction("copies")
    device = torch.device("cuda")
    rows = []
    for m in (8, 32):
        model = "llama-3-8b"
        k, n = CASE_MODELS[model]
        rot = dict(_entry(model, m), K_ROTATE=1)
        calls, keep = {}, []
        for i in range(COPIES):
            inputs, dout, case_calls = S15._case_calls(model, m, ("triton", "liger", "cublas"),
                                                       device)  # fmt: skip
            x, wg, wu = (t.reshape(-1, t.shape[-1]) for t in inputs[:3])
            keep.append((inputs, dout))
            for label, call in case_calls.items():
                calls[f"{label} #{i}"] = call
            calls[f"rot1 #{i}"] = S11._triton_maker("decode", rot)(x, wg, wu, None)
            if i == 0:
                ref = reference.swiglu_linear_reference(x.double(), wg.double(), wu.double())
                assert S11._ok(calls["rot1 #0"]().reshape(ref.shape), ref)
        ms, med = S15._rotated_rounds(calls, 100.0)
        rows.append(dict(model=model, m=m, n=n, k=k, copies=COPIES, ms=ms))
        (out / "copies.json").write_text(json.dumps(rows, indent=1))
        for label in ("triton", "rot1", "liger", "cublas"):
            times = [med[f"{label} #{i}"] * 1e3 for i in range(COPIES) if f"{label} #{i}" in med]
            if times:
                say(f"copies 8B M={m:2d} {label:6s} " + " ".join(f"{t:.1f}" for t in times)
                    + f" us (spread {max(times) / min(times) - 1:.1%})")  # fmt: skip
        del calls, keep
    return rows


def main() -> None:
    S12.run_stages({"rotate": rotate, "copies": copies}, ["rotate", "copies"])


if __name__ == "__main__":
    main()

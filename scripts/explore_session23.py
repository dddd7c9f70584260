"""Explorations written in session 22, after its device time was spent, for the next session's
H200 time.

    PYTHONPATH=src python scripts/explore_session23.py harness70b allocs70b --out DIR

Session 22 timed Llama-3-70B at 8 and 32 tokens, ours against Liger's fused ``gemm_swiglu``,
in about a dozen processes over eight device calls (``benchmarks/results/README.md``, section
"Session 22"). Liger stayed at 210.6-214.2 us everywhere. Ours did not:

- 209.1 / 212.6 us (level with Liger) in ``explore_session22.py rotate`` in call 1, and
  212.1 / 211.4 us in the same stage in call 8, on a fresh machine;
- 214.3-216.6 / 217.6-222.5 us (0.980-0.999x / 0.953-0.977x of Liger) in every bf16
  benchmark process of calls 2-7 (nine with Liger), whatever the 70B entry (with or without
  ``K_ROTATE``), whether ours ran alone, after Liger, with the benchmark's 300 ms settle or
  the explorations' 100 ms;
- 216.7 / 220.7 us in ``scripts/probe_s22_70b.py`` (call 7): the same harness as the rotate
  stage (``explore_session15.decode``), with only ours, Liger and the cuBLAS product in the
  rotation instead of those and five more decode-kernel variants.

So either the board differed (calls 1 and 8 each started a fresh machine; calls 2-7 ran on one
machine, whose identity no run recorded; benchmark runs record it since this session's
``bench.env.gpu_identity``), or the number of calls in the rotation moves ours. Both stages
print the board's UUID first.

- ``harness70b``: in one process, on the benchmark's inputs for each case, ours (the
  benchmark's call), Liger and the cuBLAS product in three arrangements, three rotated rounds
  each: ``three`` (those alone, settled 100 ms: call 7's probe), ``eight`` (with five more
  launches of ours's entry through ``ops.linear._forward_triton``, each its own call: the
  rotate stage's count), ``three-300`` (the benchmark's 300 ms settle). ``nvidia-smi``
  samples the SM clock and board power every 50 ms during each arrangement. If ``eight``
  runs ours faster than ``three`` on one board, the rotation's make-up moves it, and the
  clock and power columns say whether through the clock. -> ``harness70b.json``, and
  ``smi_<model>_<m>_<arrangement>.csv``.
- ``allocs70b``: three allocations of the 70B inputs at 8 tokens in one process (as session
  22's ``copies`` on 8B, which moved ours by 2.2% and Liger by 4.2% between allocations), ours
  and Liger on each, one set of three rotated rounds. -> ``allocs70b.json``.

About 120 s by estimate (session 22's probe took 16 s for two cases in one arrangement).
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import explore_session11 as S11
import explore_session12 as S12
import explore_session14 as S14
import explore_session15 as S15
import explore_session16 as S16
import explore_session21 as S21
import explore_session22 as S22

from flash_swiglu import reference
from flash_swiglu.bench.env import gpu_identity

say = S16.say
MODEL = "llama-3-70b"
CASES = [(MODEL, 8), (MODEL, 32)]
EXTRA = 5  # more launches of ours's entry in the ``eight`` arrangement
ARRANGEMENTS = (("three", 0, 100.0), ("eight", EXTRA, 100.0), ("three-300", 0, 300.0))
ALLOCS = 3


def _board() -> None:
    ident = gpu_identity(torch.device("cuda"))
    say(f"board {ident['gpu_uuid']} pci {ident['gpu_pci']}")


def smi_medians(path: Path) -> dict:
    """``{"sm_mhz": median, "power_w": median, "samples": n}`` of an ``nvidia-smi`` CSV written
    by ``explore_session14.clock_samples`` (``timestamp, clocks.sm, power.draw, temp``);
    unreadable lines are skipped, None where no line parsed."""
    clocks, power = [], []
    with open(path) as f:
        for line in csv.reader(f):
            try:
                clock, watts = float(line[1]), float(line[2])
            except (IndexError, ValueError):
                continue
            clocks.append(clock)
            power.append(watts)
    if not clocks:
        return {"sm_mhz": None, "power_w": None, "samples": 0}
    return {
        "sm_mhz": statistics.median(clocks),
        "power_w": statistics.median(power),
        "samples": len(clocks),
    }


def harness70b(out: Path) -> list[dict]:
    S21.need_read_eviction("harness70b")
    _board()
    device = torch.device("cuda")
    rows = []
    for model, m in CASES:
        inputs, dout, calls = S15._case_calls(model, m, ("triton", "liger", "cublas"), device)
        x, wg, wu = (t.reshape(-1, t.shape[-1]) for t in inputs[:3])
        ref = reference.swiglu_linear_reference(x.double(), wg.double(), wu.double())
        entry = S22._entry(model, m)
        extra = {}
        for i in range(EXTRA):
            f = S11._triton_maker("decode", entry)(x, wg, wu, None)
            assert S11._ok(f().reshape(ref.shape), ref), "ours's entry: wrong result"
            extra[f"entry #{i}"] = f
        for name, n_extra, settle in ARRANGEMENTS:
            chosen = dict(calls, **dict(list(extra.items())[:n_extra]))
            smi = out / f"smi_{model}_{m}_{name}.csv"
            with S14.clock_samples(smi):
                ms, med = S15._rotated_rounds(chosen, settle)
            clock = smi_medians(smi)
            rows.append(dict(model=model, m=m, arrangement=name, settle_ms=settle, ms=ms, **clock))
            (out / "harness70b.json").write_text(json.dumps(rows, indent=1))
            ours, liger = med.get("triton"), med.get("liger")
            ratio = f"{liger / ours:.3f}x" if ours and liger else "-"
            extras = [med[k] * 1e3 for k in extra if k in med]
            say(
                f"harness70b M={m:2d} {name:9s} ours {ours * 1e3:6.1f} us, liger "
                f"{liger * 1e3:6.1f} ({ratio}), cublas {med['cublas'] * 1e3:6.1f}"
                + (f", entry copies {min(extras):.1f}-{max(extras):.1f}" if extras else "")
                + f"; SM {clock['sm_mhz']} MHz, {clock['power_w']} W"
            )
        del inputs, dout, calls, extra, x, wg, wu, ref
    return rows


def allocs70b(out: Path) -> list[dict]:
    S21.need_read_eviction("allocs70b")
    _board()
    device = torch.device("cuda")
    m, calls, keep = 8, {}, []
    for i in range(ALLOCS):
        inputs, dout, case_calls = S15._case_calls(MODEL, m, ("triton", "liger"), device)
        keep.append((inputs, dout))
        for label, call in case_calls.items():
            calls[f"{label} #{i}"] = call
    ms, med = S15._rotated_rounds(calls, 100.0)
    rows = [dict(model=MODEL, m=m, allocations=ALLOCS, ms=ms)]
    (out / "allocs70b.json").write_text(json.dumps(rows, indent=1))
    for label in ("triton", "liger"):
        times = [med[f"{label} #{i}"] * 1e3 for i in range(ALLOCS) if f"{label} #{i}" in med]
        if times:
            say(f"allocs70b M={m} {label:6s} " + " ".join(f"{t:.1f}" for t in times)
                + f" us (spread {max(times) / min(times) - 1:.1%})")  # fmt: skip
    return rows


def main() -> None:
    S12.run_stages({"harness70b": harness70b, "allocs70b": allocs70b}, ["harness70b"])


if __name__ == "__main__":
    main()

"""Explorations written in session 22, after its device time was spent, for the next session's
H200 time.

    PYTHONPATH=src python scripts/explore_session23.py harness70b allocs70b rot1b --out DIR

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

- ``rot1b``: Llama-3.2-1B at 1, 8 and 32 tokens, the case still short of the 90% target (87%
  in run ``h200-s22-linear-bf16-decode``; a plain read of its weights ran at 96% in session
  21). Its entries run 128 programs of 64 weight rows on 132 SMs, one program an SM. The
  candidates combine session 22's rotated K loop with the two ways to more programs that
  lost without it in session 21 (narrow tiles; split-K by 2, whose 256 programs fit one
  wave only two to an SM), and with shorter K steps over more stages; each checked against
  float64 first, three rotated rounds beside the launcher, Liger and cuBLAS
  (``explore_session15.decode``). -> ``rot1b.json``, and ``rot1b_table.json``: per case the
  fastest candidate, in the launch table's entry format, where its slowest round beat the
  launcher's fastest.

Added in session 23, after ``harness70b`` had ours ahead of Liger at 8 tokens (215.3 against
218.4 us) and level at 32 on board ``bb938c39``, while the benchmark process of the same device
call had ours behind (218.1 against 214.6 us; 219.9 against 216.6):

- ``swap70b``: the benchmark's way of handing inputs over, in one process: each backend
  timed on its own copy of the inputs (``harness.fresh_inputs``, as ``_time`` does), three
  copies, ours, Liger and ours with ``K_ROTATE`` 5 on each, one set of rotated rounds over
  the nine calls. If a kernel's time moves with the copy it reads, and the two kernels move
  differently, then the benchmark's ranking at 70B is set by where its copies landed.
  -> ``swap70b.json``.
- ``rotcopies``: the same on 70B and 8B at 8 and 32 tokens, with each entry under
  ``K_ROTATE`` 0, 1, 3, 5, 7 and 11 (the 70B entries have none, the 8B entries 5; the
  benchmark's call is the entry as it is): which rotation is ahead of the entry on every
  copy, not only on the one allocation an exploration happens to time. -> ``rotcopies.json``.

- ``align70b``: after ``rotcopies`` (ours with ``K_ROTATE`` 11 at 32 tokens: 214.9-216.1 us on
  three copies) and the benchmark run ``h200-s23-linear-bf16-decode-copies-a`` (the same
  entry: 219.5-224.1 us on its three copies, Liger 215.7-218.9). The harness's weights start
  on 2 MiB boundaries (``rotcopies.json``'s addresses); in the benchmark, blocks freed by
  the float64 check can be split for later allocations, such as a 32-token output (1.75
  MiB, the large pool), so its weights need not. Here both weights are views of one pair
  of buffers at byte offsets 0 to 2 MiB - 16 KiB (the same memory each time, only the
  alignment moves), ours and Liger on each, 70B at 8 and 32 tokens. -> ``align70b.json``.

- ``inproc70b``: ``align70b`` moved ours by at most 1.3% with the weights' alignment and
  left it at 215-217 us at 32 tokens, where the benchmark has it at 219.5-224.1. So in one
  process, 70B at 8 and 32 tokens, ours and Liger on three copies each: the harness's way
  (``_on_copies`` without candidates), then the benchmark's own loop
  (``harness.run_case`` with ``COPIES`` 3: check against float64, then the timing), then
  the harness's way again. If only the middle one is slow, something in the benchmark's
  loop slows ours; if all three are, something the process has done before.
  -> ``inproc70b.json``.

- ``copies70b`` (session 24): 70B at 8 and 32 tokens, ours and Liger on ``MANY_COPIES`` (10)
  copies, each copy read by both kernels in one set of rotated rounds: whether ours is
  slowed by where a copy lands more than Liger is. -> ``copies70b.json``.
- ``fp16one1b`` (session 24; run in session 25, call 1: the decode kernel ahead on every
  copy, both then overtaken by session 25's ``gemv1``): 1B at one token in fp16, the
  matrix-vector kernel (the launcher) against the decode kernel's entry, on three copies.
  -> ``fp16one1b.json``.

About 180 s by estimate for the first three (session 22's probe took 16 s for two cases in one
arrangement; session 22's ``rotate`` 114 s for nine cases of five candidates).
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
from flash_swiglu.bench.cases.linear import LinearCase
from flash_swiglu.bench.env import gpu_identity
from flash_swiglu.bench.harness import SEED, fresh_inputs, preparer, timed_call

say = S16.say
MODEL = "llama-3-70b"
CASES = [(MODEL, 8), (MODEL, 32)]
EXTRA = 5  # more launches of ours's entry in the ``eight`` arrangement
ARRANGEMENTS = (("three", 0, 100.0), ("eight", EXTRA, 100.0), ("three-300", 0, 300.0))
ALLOCS = 3
COPIES = 3  # swap70b, rotcopies: copies of the inputs, each read by every call
ROTCOPIES_CASES = [(MODEL, 8), (MODEL, 32), ("llama-3-8b", 8), ("llama-3-8b", 32)]
ROTCOPIES_ROTATIONS = (0, 1, 3, 5, 7, 11)
ROT1B_CASES = [("llama-3.2-1b", m) for m in (1, 8, 32)]
ROT1B_TILES = [  # (TMA, BLOCK_N, BLOCK_K, warps, stages, SPLIT_K, K_ROTATE)
    # narrow tiles: 256 programs of 32 rows, 512 of 16
    (False, 32, 128, 4, 4, 1, 5), (False, 32, 128, 4, 4, 1, 11), (False, 32, 256, 4, 3, 1, 5),
    (True, 32, 128, 4, 4, 1, 5), (False, 16, 256, 2, 3, 1, 5),
    # split-K by 2: 256 programs; at 3 stages 110.6 KB of shared memory with the 16-token
    # tile (1 and 8 tokens), two an SM; 122.9 KB with the 32-token tile, one an SM
    (False, 64, 128, 4, 3, 2, 5), (True, 64, 128, 4, 3, 2, 5),
    # the entries' 64-row tiles: shorter steps over more stages, other rotations
    (False, 64, 64, 4, 6, 1, 11), (False, 64, 64, 4, 8, 1, 11), (False, 64, 256, 4, 2, 1, 3),
    (False, 64, 128, 4, 4, 1, 3), (False, 64, 128, 4, 4, 1, 7),
]  # fmt: skip


def rot1b_configs(tiles=ROT1B_TILES) -> dict:
    """``{label: decode entry}`` of ``tiles``, labelled as ``explore_session16``'s tiles with
    the split (where above 1) and the rotation appended."""
    configs = {}
    for tma, bn, bk, warps, stages, split, rot in tiles:
        cfg = dict(BLOCK_N=bn, BLOCK_K=bk, num_warps=warps, num_stages=stages, K_ROTATE=rot)
        label = f"{'tma' if tma else 'ptr'} bn{bn} bk{bk} w{warps} s{stages}"
        if split > 1:
            cfg["SPLIT_K"] = split
            label += f" split{split}"
        if tma:
            cfg["TMA"] = True
        configs[f"{label} rot{rot}"] = cfg
    return configs


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


def rot1b_table(rows: list[dict], configs: dict) -> dict:
    """``{case key: entry}`` where the fastest of ``configs``'s candidates had its slowest
    round ahead of the launcher's fastest (``explore_session21.winners_table``)."""
    return S21.winners_table(
        rows,
        lambda row, lb: lb in configs,
        lambda row, lb: configs[lb],
        lambda row, best, best_ms, ours_ms: (
            f"scripts/explore_session23.py rot1b ({row['model']}, {row['m']} tokens, "
            f"read-evicted): {best} {best_ms} ms against the launcher's {ours_ms}"
        ),
    )


def rot1b(out: Path) -> dict:
    S21.need_read_eviction("rot1b")
    _board()
    configs = rot1b_configs()
    cands = [(lb, S11._triton_maker("decode", cfg)) for lb, cfg in configs.items()]
    rows = S15.decode(out, ROT1B_CASES, lambda: cands, "rot1b")
    table = rot1b_table(rows, configs)
    (out / "rot1b_table.json").write_text(json.dumps(table, indent=1))
    say(f"rot1b: ahead of the launcher in every round: {', '.join(table) or 'none'}")
    return table


def _on_copies(
    out: Path, name: str, cases, rotations, dtype=torch.bfloat16, copies: int = COPIES
) -> list[dict]:
    """Each case on ``copies`` copies of the benchmark's inputs (``harness.fresh_inputs``, as
    the benchmark's ``_time`` makes them): ours (the benchmark's call), Liger, and ours's
    entry with each ``K_ROTATE`` of ``rotations`` on every copy, one set of rotated rounds
    over all the calls. -> ``<name>.json``."""
    S21.need_read_eviction(name)
    _board()
    device = torch.device("cuda")
    rows = []
    for model, m in cases:
        k, n = S15.MODELS[model]
        case = LinearCase(model, k, n, m, dtype)
        inputs, dout = case.make_inputs(device, torch.Generator(device=device).manual_seed(SEED))
        ref = reference.swiglu_linear_reference(*(t.double() for t in inputs))
        entry = S22._entry(model, m)
        calls, addresses = {}, []
        for i in range(copies):
            args = fresh_inputs(inputs, "fwd")
            for backend in ("triton", "liger"):
                fn, prepare = case.function(backend), preparer(case, backend)
                calls[f"{backend} #{i}"] = timed_call(fn, args, dout, "fwd", prepare)
            for r in rotations:
                f = S11._triton_maker("decode", dict(entry, K_ROTATE=r))(*args, None)
                assert S11._ok(f().reshape(ref.shape), ref), f"K_ROTATE {r}: wrong result"
                calls[f"rot{r} #{i}"] = f
            addresses.append([f"{t.data_ptr():#x}" for t in args])
        ms, med = S15._rotated_rounds(calls, 100.0)
        rows.append(dict(model=model, m=m, dtype=str(dtype), entry=entry, copies=copies,
                         addresses=addresses, ms=ms))  # fmt: skip
        (out / f"{name}.json").write_text(json.dumps(rows, indent=1))
        labels = ["triton", "liger", *(f"rot{r}" for r in rotations)]
        for i in range(copies):
            us = {lb: med[f"{lb} #{i}"] * 1e3 for lb in labels if f"{lb} #{i}" in med}
            say(f"{name} {model} M={m:2d} copy {i}: "
                + ", ".join(f"{lb} {t:.1f}" for lb, t in us.items())
                + (f" us; liger / ours {us['liger'] / us['triton']:.3f}x"
                   if {"liger", "triton"} <= us.keys() else ""))  # fmt: skip
        del inputs, dout, calls, ref
    return rows


ALIGN_OFFSETS = (0, 4 << 10, 64 << 10, 512 << 10, 1 << 20, 1835008, (2 << 20) - (16 << 10))


def align70b(out: Path) -> list[dict]:
    S21.need_read_eviction("align70b")
    _board()
    device = torch.device("cuda")
    rows = []
    k, n = S15.MODELS[MODEL]
    pad = max(ALIGN_OFFSETS) // 2  # elements
    bufs = [torch.empty(n * k + pad, device=device, dtype=torch.bfloat16) for _ in range(2)]
    for b in bufs:
        b.normal_(0, k**-0.5)
    for m in (8, 32):
        case = LinearCase(MODEL, k, n, m, torch.bfloat16)
        x = torch.randn(m, k, device=device, dtype=torch.bfloat16)
        calls = {}
        for off in ALIGN_OFFSETS:
            wg, wu = (b[off // 2 : off // 2 + n * k].view(n, k) for b in bufs)
            if off == ALIGN_OFFSETS[-1]:
                ref = reference.swiglu_linear_reference(x.double(), wg.double(), wu.double())
                for backend in ("triton", "liger"):
                    got = case.function(backend)(x, wg, wu)
                    assert S11._ok(got.reshape(ref.shape), ref), f"{backend}: wrong result"
                del ref
            for backend in ("triton", "liger"):
                fn = case.function(backend)
                calls[f"{backend} +{off >> 10}K"] = lambda fn=fn, x=x, wg=wg, wu=wu: fn(x, wg, wu)
        ms, med = S15._rotated_rounds(calls, 100.0)
        addresses = [f"{b.data_ptr():#x}" for b in bufs]
        rows.append(dict(model=MODEL, m=m, offsets=ALIGN_OFFSETS, buffers=addresses, ms=ms))
        (out / "align70b.json").write_text(json.dumps(rows, indent=1))
        for backend in ("triton", "liger"):
            say(f"align70b M={m:2d} {backend:6s} "
                + ", ".join(f"+{o >> 10}K {med[f'{backend} +{o >> 10}K'] * 1e3:.1f}"
                            for o in ALIGN_OFFSETS if f"{backend} +{o >> 10}K" in med))  # fmt: skip
        del calls, x
    return rows


def inproc70b(out: Path) -> list[dict]:
    from flash_swiglu.bench import harness
    from flash_swiglu.bench.roofline import Ceilings, copy_bandwidth

    device = torch.device("cuda")
    ceilings = Ceilings(copy_bandwidth(device))
    rows = []
    for m in (8, 32):
        before = _on_copies(out, "inproc70b-before", [(MODEL, m)], ())
        k, n = S15.MODELS[MODEL]
        harness.COPIES = COPIES
        bench = harness.run_case(
            LinearCase(MODEL, k, n, m, torch.bfloat16), ["triton", "liger"], ["fwd"], device,
            ceilings,
        )  # fmt: skip
        harness.COPIES = 1
        for row in bench:
            say(f"inproc70b M={m:2d} run_case {row['backend']:6s} "
                + " ".join(f"{t * 1e3:.1f}" for t in row.get("median_ms_copies") or [])
                + f" us (copies; passed {row['passed']})")  # fmt: skip
        after = _on_copies(out, "inproc70b-after", [(MODEL, m)], ())
        keep = ("backend", "median_ms", "median_ms_copies", "median_ms_rounds", "passed")
        bench = [{f: r.get(f) for f in keep} for r in bench]
        rows.append(dict(model=MODEL, m=m, before=before, run_case=bench, after=after))
        (out / "inproc70b.json").write_text(json.dumps(rows, indent=1))
    return rows


def swap70b(out: Path) -> list[dict]:
    return _on_copies(out, "swap70b", CASES, (5,))


def rotcopies(out: Path) -> list[dict]:
    return _on_copies(out, "rotcopies", ROTCOPIES_CASES, ROTCOPIES_ROTATIONS)


MANY_COPIES = 10  # copies70b


def copies70b(out: Path) -> list[dict]:
    """Session 24: 70B at 8 and 32 tokens, ours and Liger on ``MANY_COPIES`` copies, both
    kernels reading the same copy: whether ours is slowed by where its copy lands more often
    than Liger is (the full benchmark process had ours 2% behind at 32 tokens, three
    processes of ``proc70b`` on the same board level). -> ``copies70b.json``."""
    return _on_copies(out, "copies70b", CASES, (), copies=MANY_COPIES)


def fp16one1b(out: Path) -> list[dict]:
    """Session 24, for a later one: 1B at one token in fp16, the launcher (the matrix-vector
    kernel, ``gemv.m1:float16``), Liger, and the decode kernel with its entry
    (``decode.m1_n8192_k2048``, whose ``K_ROTATE`` is 11; bf16 calls run it since session
    23, 17.62 us against the matrix-vector kernel's 18.03 in fp16 in session 24's runs) on
    ``COPIES`` copies: whether fp16 one-token calls on 1B should take it too (rule: its
    slowest round beats the launcher's fastest on every copy). -> ``fp16one1b.json``."""
    return _on_copies(out, "fp16one1b", [("llama-3.2-1b", 1)], (11,), torch.float16)


def main() -> None:
    stages = {
        "harness70b": harness70b, "allocs70b": allocs70b, "rot1b": rot1b, "swap70b": swap70b,
        "rotcopies": rotcopies, "align70b": align70b, "inproc70b": inproc70b,
        "copies70b": copies70b, "fp16one1b": fp16one1b,
    }  # fmt: skip
    S12.run_stages(stages, ["harness70b"])


if __name__ == "__main__":
    main()

"""Explorations written in session 14 for the next session's H200 time: does the backend a
measurement follows move it, and does letting each backend settle first remove that?

    PYTHONPATH=src python scripts/explore_session15.py order --out DIR

- ``order``: session 14 rotated ``benchmark-swiglu``'s rounds (``bench.timing``), which moves
  the slot after a pause between backends but keeps each backend's predecessor within a round
  (ours follows Liger's ``gemm_swiglu`` in every round). On Qwen2.5-7B at 2048 tokens, the one
  large-token case below 0.97 of the cuBLAS product in run ``h200-s14-linear-bf16-large-tokens``
  (0.904; 1.011 over five rounds of four backends in ``h200-session14-explore/call4``), and on
  1B at 8192 and 8B at 2048: eager, the cuBLAS product, Liger's fused ``gemm_swiglu`` (where
  importable) and ours, each through the benchmark's own case functions, timed with
  ``measure_graph`` in four arrangements, three rounds each: the list order, reversed, and the
  same two with a settle phase (``measure_graph(..., settle_ms)``: the backend's own graph
  replayed for ``SETTLE_MS`` of GPU time right before its samples, so the clock it is timed at
  follows its own work rather than its predecessor's). ``nvidia-smi`` samples the clock and
  power every 50 ms. -> ``order.json``, ``smi.csv``; the printed table gives ours / cuBLAS per
  arrangement.
- ``settled`` (written in session 15, after ``order`` made the benchmark settle every timing):
  the launch-table candidates of four large-token cases, each timed after ``SETTLE_MS`` of
  its own replays, three rotated rounds. -> ``settled.json``, ``smi_settled.csv``.
- ``decode``: 8B and 70B at 8 and 32 tokens, ours against Liger's fused kernel and the
  projection kernel in Liger's layout (``_decode_candidates``). -> ``decode.json``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import explore_session11 as S11
import explore_session12 as S12
import explore_session14 as S14

from flash_swiglu.bench.backends import unavailable
from flash_swiglu.bench.cases.linear import MODELS, LinearCase
from flash_swiglu.bench.harness import preparer, timed_call
from flash_swiglu.bench.timing import interleaved_rounds, measure_graph

say = S11.say
SETTLE_MS = 300.0
CASES = [("qwen2.5-7b", 2048), ("llama-3.2-1b", 8192), ("llama-3-8b", 2048)]
BACKENDS = ["torch", "cublas", "liger", "triton"]


def _case_calls(model: str, m: int, backends, device):
    """``(inputs, dout, {backend: call})``: the benchmark's forward call of each available
    backend on ``model`` at ``m`` tokens, bf16, built by its own case functions."""
    k, n = MODELS[model]
    case = LinearCase(model, k, n, m, torch.bfloat16)
    inputs, dout = case.make_inputs(device, torch.Generator(device=device).manual_seed(0))
    calls = {}
    for backend in backends:
        if unavailable(backend, device) is None:
            fn = case.function(backend)
            calls[backend] = timed_call(fn, inputs, dout, "fwd", preparer(case, backend))
    return inputs, dout, calls


def _rotated_rounds(calls: dict, settle_ms: float) -> tuple[dict, dict]:
    """``({label: [ms of each round]}, {label: median round's ms})`` of ``measure_graph``
    with ``settle_ms``, in rotated rounds (``timing.interleaved_rounds``); failures left out."""
    rounds = interleaved_rounds(list(calls), lambda lb: measure_graph(calls[lb], settle_ms))
    ms = {lb: [t.median_ms for t in ts if not isinstance(t, Exception)]
          for lb, ts in rounds.items()}  # fmt: skip
    return ms, {lb: sorted(t)[len(t) // 2] for lb, t in ms.items() if t}


def order(out: Path) -> list[dict]:
    with S14.clock_samples(out / "smi.csv"):
        return _order(out)


def _order(out: Path) -> list[dict]:
    device = torch.device("cuda")
    rows = []
    for model, m in CASES:
        k, n = MODELS[model]
        inputs, dout, calls = _case_calls(model, m, BACKENDS, device)
        arrangements = {
            "list order": (list(calls), 0.0),
            "reversed": (list(reversed(calls)), 0.0),
            "list order, settled": (list(calls), SETTLE_MS),
            "reversed, settled": (list(reversed(calls)), SETTLE_MS),
        }
        row = dict(model=model, m=m, n=n, k=k, arrangements={})
        for name, (labels, settle) in arrangements.items():
            times = {label: [] for label in labels}
            spans = {label: [] for label in labels}
            for _ in range(3):
                for label in labels:
                    t0 = time.time()
                    times[label].append(measure_graph(calls[label], settle).median_ms)
                    spans[label].append((t0, time.time()))
            row["arrangements"][name] = dict(order=labels, ms=times, spans=spans)
            med = {label: sorted(t)[1] for label, t in times.items()}
            say(f"order {model:13s} M={m:5d} {name:20s} ours/cuBLAS "
                f"{med['cublas'] / med['triton']:.3f}; ms "
                + ", ".join(f"{label} {t:.3f}" for label, t in med.items()))  # fmt: skip
        rows.append(row)
        (out / "order.json").write_text(json.dumps(rows, indent=1))
        del inputs, dout, calls
    return rows


# Cases of run h200-s15-linear-bf16-large-tokens (every timing settled for 300 ms) below or
# near 0.97 of the cuBLAS product, and one at 0.98 as a control.
SETTLED_CASES = [("llama-3.2-1b", 2048), ("qwen2.5-7b", 2048), ("llama-3.2-1b", 16384),
                 ("llama-3-8b", 8192)]  # fmt: skip


def _settled_candidates():
    """``(label, fn_maker)``: the launcher (the committed table), the cuBLAS product, every
    Gluon forward candidate (``ops.linear.WS_CANDIDATES``) and Triton TMA tiles."""
    cands = [c for c in S11._mid_candidates(4096) if c[0] in ("launcher", "cublas product")]
    cands += [c for c in S11._mid_candidates(4096) if c[0].startswith("ws ")]
    for bm, bn, w, st, g, pps in [(128, 128, 8, 3, 8, 1), (128, 128, 8, 3, 16, 1),
                                  (128, 256, 8, 3, 8, 1), (128, 64, 8, 3, 8, 2),
                                  (128, 128, 8, 4, 8, 1)]:  # fmt: skip
        cfg = dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=64, GROUP_M=g, num_warps=w, num_stages=st,
                   PROGRAMS_PER_SM=pps)  # fmt: skip
        cands.append((f"tma bm{bm} bn{bn} w{w} s{st} g{g} pps{pps}", S11._triton_maker("tma", cfg)))
    return cands


def settled(out: Path) -> list[dict]:
    """Launch-table candidates timed the way the benchmark now times (each measurement after
    ``SETTLE_MS`` of the call's own replays), three rounds with the order rotated: were the
    entries, chosen from unsettled timings, still the fastest at the settled clock?"""
    with S14.clock_samples(out / "smi_settled.csv"):
        return _settled(out)


def _settled(out: Path) -> list[dict]:
    from flash_swiglu import reference

    rows = []
    for model, m in SETTLED_CASES:
        k, n = MODELS[model]
        wg = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) / k**0.5
        wu = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) / k**0.5
        wcat = torch.cat([wg, wu])
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        ref = reference.swiglu_linear_reference(x.double(), wg.double(), wu.double())
        calls = {}
        for label, make in _settled_candidates():
            try:
                f = make(x, wg, wu, wcat)
                res = f()
                if label != "cublas product" and not S11._ok(res, ref):
                    say(f"settled {model} M={m} {label}: WRONG")
                    continue
                calls[label] = f
            except Exception as e:  # out of resources: not a candidate
                say(f"settled {model} M={m} {label}: {type(e).__name__}: {e}"[:160])
        del ref
        ms, med = _rotated_rounds(calls, SETTLE_MS)
        rows.append(dict(model=model, m=m, n=n, k=k, ms=ms))
        (out / "settled.json").write_text(json.dumps(rows, indent=1))
        cub = med["cublas product"]
        best = min((lb for lb in med if lb != "cublas product"), key=med.get)
        say(
            f"settled {model:13s} M={m:5d} launcher {cub / med['launcher']:.3f} of cuBLAS "
            f"({med['launcher']:.4f} ms), best '{best}' {cub / med[best]:.3f}; "
            + ", ".join(
                f"{lb} {cub / t:.3f}"
                for lb, t in med.items()
                if lb not in ("launcher", "cublas product", best)
            )
        )
        del x, wg, wu, wcat, calls
    return rows


DECODE_CASES = [("llama-3-8b", 8), ("llama-3-8b", 32), ("llama-3-70b", 8), ("llama-3-70b", 32)]


def _unpadded(f):
    """``f`` launched with ``ops.linear.PAD_TMA_ROWS`` off: x's TMA boxes run past its last
    row and read zeros, as Liger's kernel reads them, instead of a padded copy of x."""
    from flash_swiglu.ops import linear as L

    def call():
        saved, L.PAD_TMA_ROWS = L.PAD_TMA_ROWS, False
        try:
            return f()
        finally:
            L.PAD_TMA_ROWS = saved

    return call


def _decode_candidates():
    """``(label, fn_maker)``: the projection kernel's usual orientation (tokens as the MMA's M
    side, 64-row tiles of mostly padding, Liger's fused kernel's layout: 128 weight rows a
    tile, one tile a program), with and without the padded copy of x, and two of the decode
    kernel's swapped TMA tiles for reference."""
    cands = []
    for bn, bk, w, st in [(128, 128, 4, 3), (128, 128, 8, 3), (128, 64, 4, 4), (128, 64, 8, 4),
                          (64, 128, 4, 4), (256, 64, 8, 3)]:  # fmt: skip
        cfg = dict(BLOCK_M=64, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=1, num_warps=w, num_stages=st)
        make = S11._triton_maker("tma", cfg)
        label = f"tma bm64 bn{bn} bk{bk} w{w} s{st}"
        cands.append((label + " padded", make))
        cands.append((label, lambda *a, make=make: _unpadded(make(*a))))
    for bn, bk, w, st in [(128, 128, 8, 3), (64, 128, 4, 4)]:
        cfg = dict(BLOCK_N=bn, BLOCK_K=bk, num_warps=w, num_stages=st, TMA=True, SPLIT_K=1)
        cands.append((f"decode tma bn{bn} bk{bk} w{w} s{st}", S11._triton_maker("decode", cfg)))
    return cands


def decode(out: Path, cases=None, candidates=None, name: str = "decode") -> list[dict]:
    """Decode at 8 and 32 tokens on 8B and 70B, where Liger's fused ``gemm_swiglu`` was
    0.2-2.8% faster than ours in run ``h200-s15-linear-bf16-decode``: ours (the launcher),
    Liger's kernel and the cuBLAS product through the benchmark's case functions, and the
    candidates of ``_decode_candidates``, each after 100 ms of its own replays, three rotated
    rounds. -> ``decode.json``. ``cases`` (``[(model, tokens)]``), ``candidates`` (a
    function like ``_decode_candidates``) and ``name`` (of the JSON file and the printed
    lines) let later sessions' scripts run other cases and candidates the same way."""
    from flash_swiglu import reference

    device = torch.device("cuda")
    rows = []
    for model, m in cases or DECODE_CASES:
        k, n = MODELS[model]
        inputs, dout, calls = _case_calls(model, m, ("triton", "liger", "cublas"), device)
        x, wg, wu = (t.reshape(-1, t.shape[-1]) for t in inputs[:3])
        ref = reference.swiglu_linear_reference(x.double(), wg.double(), wu.double())
        for label, make in (candidates or _decode_candidates)():
            try:
                f = make(x, wg, wu, None)
                if not S11._ok(f().reshape(ref.shape), ref):
                    say(f"{name} {model} M={m} {label}: WRONG")
                    continue
                calls[label] = f
            except Exception as e:  # out of resources: not a candidate
                say(f"{name} {model} M={m} {label}: {type(e).__name__}: {e}"[:160])
        ms, med = _rotated_rounds(calls, 100.0)
        rows.append(dict(model=model, m=m, n=n, k=k, ms=ms))
        (out / f"{name}.json").write_text(json.dumps(rows, indent=1))
        best = min((lb for lb in med if lb not in ("cublas", "liger")), key=med.get)
        say(f"{name} {model:11s} M={m:2d} ours {med['triton'] * 1e3:6.1f} us, liger "
            f"{med.get('liger', float('nan')) * 1e3:6.1f}, best '{best}' {med[best] * 1e3:6.1f}; "
            + ", ".join(f"{lb} {t * 1e3:.1f}" for lb, t in med.items()
                        if lb not in ("triton", "liger", best)))  # fmt: skip
        del inputs, dout, calls, x, wg, wu, ref
    return rows


def main() -> None:
    stages = {"order": order, "settled": settled, "decode": decode}
    S12.run_stages(stages, ["order"])


if __name__ == "__main__":
    main()

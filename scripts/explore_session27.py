"""Explorations of session 27.

    PYTHONPATH=src python scripts/explore_session27.py split1b rows16 --out DIR

- ``split1b``: Llama-3.2-1B's decode at 8 and 32 tokens stays at 86-87% of the copy
  bandwidth, while session 21's plain Triton read of the same 64 MiB reached 96% in 8 and
  32 KB programs and 77% in 128 KB ones. The entries run one 512 KB program an SM (128
  tiles of 64 rows), all in one wave, so an SM that streams slower than the others holds
  the whole launch up. Split-K cuts each tile into ``SPLIT_K`` programs of ``512 / SPLIT_K``
  KB, and with fewer stages several stay resident an SM: more programs than places, which
  the hardware hands out as places free up. Session 21 timed only a split of 2 (21.8-24.2
  us against 17.8), whose 256 programs of 4 stages (128 KB of shared memory each, one
  resident an SM) ran as two waves, the second 124 programs short. Here splits of 2 to 16
  with 2-4 stages and 64- or 128-column steps, ``COPIES`` copies, one set of rotated rounds
  (explore_session26's ``_stage``). -> ``split1b.json``, ``split1b_table.json``.

- ``rows16``: session 27's ``rows`` (call 1, ``ROWS_TOKENS=16``) had Llama-3-70B at 16
  tokens ahead with 109 rows on every copy in fp16 and on two of three in bf16 (the third
  by 0.03 us in the rule's terms, ahead in its median). Five copies, 109 and 110 rows (the
  row count the 8- and 32-token entries took in session 26). -> ``rows16.json``,
  ``rows16_table.json``.

- ``probe1b``: where Llama-3.2-1B's decode time goes. The benchmark's time of a call is a
  CUDA-graph replay of (L2 eviction, call) pairs less one of evictions alone, so it holds
  the call's kernel and one kernel boundary. Two instrumented kernels record each program's
  SM, its start and end on the global timer and its own SM clock cycles: ``_probe_decode``
  (the decode kernel's swapped product with pointer loads, without rotation or split, at 8
  and 32 tokens) and ``_probe_gemv`` (the matrix-vector kernel's one row of 2048 columns a
  program over 4 warps, one token). Each runs ``PROBE_LAUNCHES`` times after an eviction;
  beside them the library's own calls and the probes themselves are timed as the benchmark
  times them. From the stamps: the span from the first program's start to the last one's
  end, how late the last program starts, how the programs' ends spread (the tail) and each
  SM's busy time. At 8 tokens also the same tile in 2 or 4 programs along K that store
  their partial sums and hand nothing over (``SPLIT``): what the split's extra programs
  cost without the library's hand-over (``split1b`` found splits 11-136% slower).
  -> ``probe1b.json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import triton
import triton.language as tl

sys.path.insert(0, str(Path(__file__).resolve().parent))

import explore_session12 as S12
import explore_session15 as S15
import explore_session16 as S16
import explore_session21 as S21
import explore_session23 as S23
import explore_session26 as S26

import flash_swiglu
from flash_swiglu.bench import timing

COPIES = 3
COPIES2 = 5
SPLIT_MODEL = "llama-3.2-1b"
SPLIT_TOKENS = tuple(int(t) for t in os.environ.get("SPLIT_TOKENS", "8,32").split(","))
_NO_ROT = dict(K_ROTATE=0, TMA=False)
SPLITS = [  # overrides of the entry's tile (64 rows, 4 warps)
    dict(_NO_ROT, SPLIT_K=2, num_stages=3),
    dict(_NO_ROT, SPLIT_K=2, num_stages=2),
    dict(_NO_ROT, SPLIT_K=4, num_stages=3),
    dict(_NO_ROT, SPLIT_K=4, num_stages=2),
    dict(_NO_ROT, SPLIT_K=8, num_stages=2),
    dict(_NO_ROT, SPLIT_K=8, num_stages=3),
    dict(_NO_ROT, SPLIT_K=16, num_stages=2),
    dict(_NO_ROT, SPLIT_K=4, num_stages=4, BLOCK_K=64),
    dict(_NO_ROT, SPLIT_K=8, num_stages=3, BLOCK_K=64),
    dict(_NO_ROT, SPLIT_K=16, num_stages=2, BLOCK_K=64),
    dict(K_ROTATE=0, TMA=True, SPLIT_K=4, num_stages=3),
    dict(K_ROTATE=0, TMA=True, SPLIT_K=8, num_stages=2),
]
ROWS16 = {
    ("llama-3-70b", 16): [dict(ROWS=109), dict(ROWS=110)],
}


def label(cfg: dict) -> str:
    return S26._label(cfg) + (f" split{cfg['SPLIT_K']}" if cfg.get("SPLIT_K") else "")


def split1b(out: Path) -> list[dict]:
    spec = {(SPLIT_MODEL, m): SPLITS for m in SPLIT_TOKENS}
    return S26._stage(out, "split1b", S26.override_cases(spec, label), COPIES)


def rows16(out: Path) -> list[dict]:
    return S26._stage(out, "rows16", S26.override_cases(ROWS16, label), COPIES2)


@triton.jit
def _stamp():
    """(global timer in ns, this SM's clock cycles, SM id) of the calling thread."""
    t = tl.inline_asm_elementwise("mov.u64 $0, %globaltimer;", "=l", [], dtype=tl.int64,
                                  is_pure=False, pack=1)  # fmt: skip
    c = tl.inline_asm_elementwise("mov.u64 $0, %clock64;", "=l", [], dtype=tl.int64,
                                  is_pure=False, pack=1)  # fmt: skip
    sm = tl.inline_asm_elementwise("mov.u32 $0, %smid;", "=r", [], dtype=tl.int32,
                                   is_pure=True, pack=1)  # fmt: skip
    return t, c, sm


@triton.jit
def _record(stamps_ptr, t0, c0, sm):
    t1, c1, _ = _stamp()
    pid = tl.program_id(0) + tl.program_id(1) * tl.num_programs(0)
    base = stamps_ptr + pid.to(tl.int64) * 5
    tl.store(base, t0)
    tl.store(base + 1, t1)
    tl.store(base + 2, c0)
    tl.store(base + 3, c1)
    tl.store(base + 4, sm.to(tl.int64))


@triton.jit
def _probe_decode(x_ptr, wg_ptr, wu_ptr, out_ptr, part_ptr, stamps_ptr, M, N,
                  K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr,
                  BLOCK_K: tl.constexpr, STAGES: tl.constexpr, SPLIT: tl.constexpr):  # fmt: skip
    """``silu(x Wg^T) * (x Wu^T)`` for ``M <= BLOCK_T`` tokens, ``BLOCK_N`` weight rows a
    program as the MMA's M side (contiguous rows of K, unit column stride), stamped. With
    ``SPLIT > 1`` each program reads its ``1 / SPLIT`` of K (grid axis 1) and stores its fp32
    partial sums to ``part_ptr`` with no hand-over: ``out`` is not written, the time is that
    of the reads alone in that many programs."""
    t0, c0, sm = _stamp()
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    toks = tl.arange(0, BLOCK_T)
    ks = tl.arange(0, BLOCK_K)
    acc_g = tl.zeros((BLOCK_N, BLOCK_T), dtype=tl.float32)
    acc_u = tl.zeros((BLOCK_N, BLOCK_T), dtype=tl.float32)
    k_len: tl.constexpr = K // SPLIT
    k_lo = tl.program_id(1) * k_len
    for k0 in tl.range(0, k_len, BLOCK_K, num_stages=STAGES):
        kk = k_lo + k0 + ks
        w_off = rows[:, None] * K + kk[None, :]
        wg = tl.load(wg_ptr + w_off, eviction_policy="evict_first")
        wu = tl.load(wu_ptr + w_off, eviction_policy="evict_first")
        xt = tl.load(x_ptr + toks[None, :] * K + kk[:, None], mask=toks[None, :] < M, other=0.0)
        acc_g = tl.dot(wg, xt, acc_g)
        acc_u = tl.dot(wu, xt, acc_u)
    if SPLIT == 1:
        h = acc_g * tl.sigmoid(acc_g) * acc_u
        tl.store(out_ptr + toks[None, :] * N + rows[:, None], h.to(out_ptr.dtype.element_ty),
                 mask=toks[None, :] < M)  # fmt: skip
    else:
        pid = tl.program_id(0) + tl.program_id(1) * tl.num_programs(0)
        tile = toks[None, :] * BLOCK_N + tl.arange(0, BLOCK_N)[:, None]
        offs = pid.to(tl.int64) * (2 * BLOCK_N * BLOCK_T) + tile
        tl.store(part_ptr + offs, acc_g, mask=toks[None, :] < M)
        tl.store(part_ptr + BLOCK_N * BLOCK_T + offs, acc_u, mask=toks[None, :] < M)
    _record(stamps_ptr, t0, c0, sm)


@triton.jit
def _probe_gemv(x_ptr, wg_ptr, wu_ptr, out_ptr, stamps_ptr, K: tl.constexpr):
    """One token, one weight row of gate and of up a program, all K in one step, stamped."""
    t0, c0, sm = _stamp()
    row = tl.program_id(0)
    ks = tl.arange(0, K)
    x = tl.load(x_ptr + ks, eviction_policy="evict_last").to(tl.float32)
    wg = tl.load(wg_ptr + row * K + ks, eviction_policy="evict_first").to(tl.float32)
    wu = tl.load(wu_ptr + row * K + ks, eviction_policy="evict_first").to(tl.float32)
    g = tl.sum(wg * x)
    u = tl.sum(wu * x)
    tl.store(out_ptr + row, (g * tl.sigmoid(g) * u).to(out_ptr.dtype.element_ty))
    _record(stamps_ptr, t0, c0, sm)


PROBE_LAUNCHES = 5
_T4 = dict(BLOCK_N=64, BLOCK_K=128, STAGES=4, num_warps=4)
PROBE_TILES = {  # tokens -> {label: tile}; one token runs _probe_gemv
    1: {"gemv": {}},
    8: {
        "bn64 s4": _T4,
        "bn64 s6": dict(_T4, STAGES=6),
        "bn32 s4": dict(_T4, BLOCK_N=32),
        "bn64 s3 split2, no hand-over": dict(_T4, STAGES=3, SPLIT=2),
        "bn64 s2 split4, no hand-over": dict(_T4, STAGES=2, SPLIT=4),
    },
    32: {"bn64 s4": _T4},
}


def _probe_calls(m: int, tile: dict, x, wg, wu, out, stamps):
    n, k = wg.shape
    if m == 1:
        return lambda: _probe_gemv[(n,)](x, wg, wu, out, stamps, K=k, num_warps=4)
    bt = max(16, triton.next_power_of_2(m))
    tile = dict(tile)
    warps, split = tile.pop("num_warps"), tile.pop("SPLIT", 1)
    grid = (triton.cdiv(n, tile["BLOCK_N"]), split)
    part = torch.empty(grid[0] * split * 2 * tile["BLOCK_N"] * bt, dtype=torch.float32,
                       device=x.device)  # fmt: skip
    return lambda: _probe_decode[grid](x, wg, wu, out, part, stamps, m, n, K=k, BLOCK_T=bt,
                                       SPLIT=split, **tile, num_warps=warps)  # fmt: skip


def _stamp_summary(st: torch.Tensor, sm_hz: float) -> dict:
    """What one launch's stamps say, in microseconds (``st``: ``[programs, 5]`` int64)."""
    t0, t1, c0, c1, sm = (st[:, i].double() for i in range(5))
    origin = t0.min()
    busy = {}
    for s, a, b in zip(sm.tolist(), t0.tolist(), t1.tolist(), strict=True):
        lo, hi = busy.get(s, (a, b))
        busy[s] = (min(lo, a), max(hi, b))
    per_sm = torch.tensor([hi - lo for lo, hi in busy.values()], dtype=torch.float64)
    cycles = (c1 - c0) / sm_hz * 1e6
    q = lambda v: [round(float(v.quantile(p)) / 1e3, 3) for p in (0.0, 0.5, 1.0)]
    return dict(
        programs=int(st.shape[0]),
        sms=len(busy),
        span_us=round(float(t1.max() - origin) / 1e3, 3),
        start_us_min_med_max=q(t0 - origin),
        end_us_min_med_max=q(t1 - origin),
        program_us_min_med_max=q(t1 - t0),
        program_cycles_us_min_med_max=[round(float(cycles.quantile(p)), 3) for p in (0, .5, 1)],
        sm_busy_us_min_med_max=q(per_sm),
    )  # fmt: skip


def probe1b(out: Path) -> list[dict]:
    S21.need_read_eviction("probe1b")
    S23._board()
    device = torch.device("cuda")
    k, n = S15.MODELS[SPLIT_MODEL]
    gen = torch.Generator(device=device).manual_seed(27)
    dt = torch.bfloat16
    wg = torch.randn(n, k, device=device, dtype=dt, generator=gen) / k**0.5
    wu = torch.randn(n, k, device=device, dtype=dt, generator=gen) / k**0.5
    cache = torch.empty(timing._FLUSH_BYTES // 4, dtype=torch.int32, device=device)
    # The SM clock the cycle counts are read at: the board's maximum (kHz), 1980 MHz if unknown.
    sm_hz = getattr(torch.cuda.get_device_properties(device), "clock_rate", 1980000) * 1e3
    found = []
    for m, tiles in PROBE_TILES.items():
        x = torch.randn(m, k, device=device, dtype=dt, generator=gen)
        ref = flash_swiglu.swiglu_linear(x, wg, wu)
        calls, probes = {"library": lambda x=x: flash_swiglu.swiglu_linear(x, wg, wu)}, {}
        for label, tile in tiles.items():
            out_p = torch.empty(m, n, device=device, dtype=dt)
            programs = n if m == 1 else triton.cdiv(n, tile["BLOCK_N"]) * tile.get("SPLIT", 1)
            stamps = torch.zeros(programs, 5, dtype=torch.int64, device=device)
            probe = _probe_calls(m, tile, x, wg, wu, out_p, stamps)
            probe()
            if tile.get("SPLIT", 1) == 1:  # a split writes partial sums only
                torch.testing.assert_close(out_p.float(), ref.float(), rtol=2e-2, atol=2e-2)
            launches = []
            for _ in range(PROBE_LAUNCHES):
                timing.evict_l2(cache)
                probe()
                torch.cuda.synchronize()
                launches.append(_stamp_summary(stamps.cpu(), sm_hz))
            calls[label], probes[label] = probe, launches
        ms, med = S15._rotated_rounds(calls, 100.0)
        gbps = lambda t: 2 * n * k * dt.itemsize / (t * 1e-3) / 1e9
        found.append(dict(model=SPLIT_MODEL, m=m, n=n, k=k, dtype="bfloat16", sm_hz=sm_hz,
                          tiles=tiles, timed_ms=ms, launches=probes))  # fmt: skip
        (out / "probe1b.json").write_text(json.dumps(found, indent=1))
        S16.say(f"probe1b M={m:2d}: timed library {med['library'] * 1e3:.2f} us "
                f"({gbps(med['library']):.0f} GB/s)")  # fmt: skip
        for label, launches in probes.items():
            spans = sorted(la["span_us"] for la in launches)
            tails = sorted(la["end_us_min_med_max"][2] - la["end_us_min_med_max"][0]
                           for la in launches)  # fmt: skip
            late = sorted(la["start_us_min_med_max"][2] for la in launches)
            S16.say(
                f"  {label}: timed {med[label] * 1e3:.2f} us; span {spans[0]:.2f}-{spans[-1]:.2f}"
                f" us ({gbps(spans[len(spans) // 2] / 1e3):.0f} GB/s at the median), last "
                f"start {late[0]:.2f}-{late[-1]:.2f}, ends spread {tails[0]:.2f}-{tails[-1]:.2f}"
                f", {launches[0]['programs']} programs on {launches[0]['sms']} SMs, SM busy "
                f"{launches[0]['sm_busy_us_min_med_max']}, program "
                f"{launches[0]['program_us_min_med_max']}"
            )
    return found


def main() -> None:
    S12.run_stages({"split1b": split1b, "rows16": rows16, "probe1b": probe1b}, ["split1b"])


if __name__ == "__main__":
    main()

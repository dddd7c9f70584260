"""Session 10 explorations on the H200: the one-token matrix-vector kernel.

    PYTHONPATH=src python scripts/explore_session10.py [inductor] [gemv] [decode] [decode-tma]
        [decode-tma2] [one-token] [gap] --out DIR [--dtype float16]

- ``inductor``: ``torch.compile`` max-autotune of eager's projection at one token on the four
  model shapes, with Inductor's cache in ``DIR/inductor_cache``: the block sizes, warps and
  stages its autotuning chose for each generated kernel (its ``*.best_config`` files, which
  session 9 did not log) and its time. -> ``inductor.json``.
- ``gemv``: the matrix-vector kernel's offsets and masks (``INDEX_64``, ``EVEN_N``: session 9's
  kernel always had 64-bit offsets and a mask on the weight rows), a grid around the ``m1``
  entry, and clones of Inductor's choices (``BLOCK_N`` = its ``XBLOCK``, ``BLOCK_K`` = its
  ``R0_BLOCK``, its warps and stages), on the four model shapes and two 8-rank shards; then the
  fastest three, the committed entry and session 9's variant re-timed in turn three times.
  -> ``gemv.json``, ``gemv_table.json`` (the fastest per shape, in the launch table's format).
- ``decode``: the decode kernel (pointer loads) as session 9 launched it, with no mask along
  K, 32-bit offsets and the weights loaded ``evict_first``, each and together, and a grid of
  tiles, at 8 and 32 tokens on 8B, Qwen and 1B. -> ``decode.json``. Runs at commits
  ``77cfb13`` to ``8268ebc`` only: the kernel's ``W_EVICT`` option, which changed nothing
  measurable (``call2``), was removed after.
- ``decode-tma``: the decode kernel's TMA variant (``TMA`` in a configuration) over a grid of
  tiles and stages against the committed pointer-load entry, at 8 and 32 tokens on the four
  model shapes and two shards. -> ``decode_tma.json``, ``decode_tma_table.json``.
- ``decode-tma2``: TMA programs with fewer stages and split-K (several programs an SM) on
  1B, 8B and Qwen. -> ``decode_tma2.json``, ``decode_tma2_table.json``.
- ``one-token`` (``--dtype float16`` or ``bfloat16``): at one token on the four model shapes,
  the launcher's choice against session 9's matrix-vector configuration, the decode kernel
  (pointer loads and TMA) and two-row matrix-vector programs. Written after call 8; not run
  in session 10. -> ``one_token.json``.
- ``gap``: Llama-3-8B at one token, the same kernel and configuration timed four ways in one
  process, with the SM clock, power and temperature read (``nvidia-smi``) before each: the
  kernel launched directly, ``flash_swiglu.swiglu_linear``, ``bench.harness.run_case`` (what
  ``benchmark-swiglu`` runs), and directly again after 3 s of back-to-back GEMMs. Session 9's
  benchmark runs measured this kernel 3-5% slower than its exploration processes did.
  -> ``gap.json``.

Every kernel time is GPU time from CUDA-graph replays with a cold L2 (``bench.timing``).
Each candidate is checked against the float64 reference before it is timed. A short table is
printed last (also ``summary.txt``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def _args():
    ap = argparse.ArgumentParser()
    ap.add_argument("parts", nargs="*", default=["inductor", "gemv", "gap"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    return ap.parse_args()


ARGS = _args() if __name__ == "__main__" else None
if ARGS is not None:  # before torch: Inductor reads its cache directory once
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(ARGS.out) / "inductor_cache")

import torch  # noqa: E402

import flash_swiglu  # noqa: E402
from flash_swiglu import reference  # noqa: E402
from flash_swiglu.bench.roofline import Ceilings, copy_bandwidth  # noqa: E402
from flash_swiglu.bench.timing import measure_graph  # noqa: E402
from flash_swiglu.kernels.linear import _linear_decode_kernel, _linear_gemv_kernel  # noqa: E402
from flash_swiglu.ops import linear as L  # noqa: E402

MODELS = {
    "1b": (2048, 8192),
    "8b": (4096, 14336),
    "qwen7b": (3584, 18944),
    "70b": (8192, 28672),
    "8b/tp8": (4096, 1792),
    "70b/tp8": (8192, 3584),
}
FULL = [name for name in MODELS if "/" not in name]
DT = getattr(torch, ARGS.dtype) if ARGS is not None else torch.bfloat16
ACT = ("silu", 1.702, 7.0)
SUMMARY: list[str] = []


def say(line: str) -> None:
    print(line, flush=True)
    SUMMARY.append(line)


def _w(n, k):
    return torch.randn(n, k, device="cuda", dtype=DT) / k**0.5


def _ok(out, ref) -> bool:
    err = (out.double() - ref).abs().max().item()
    return err <= 0.02 * ref.abs().max().item()


def _eager(x, wg, wu):
    return torch.nn.functional.silu(x @ wg.T) * (x @ wu.T)


# ----------------------------------------------------------------------------------------
# inductor
# ----------------------------------------------------------------------------------------


def _best_configs(root: Path) -> dict[str, dict]:
    found = {}
    for f in root.rglob("*.best_config"):
        try:
            cfg = json.loads(f.read_text())
        except ValueError:
            continue
        lines = [ln for src in f.parent.glob("*.py") for ln in src.read_text().splitlines()]
        names = [ln.split("(")[0][4:] for ln in lines if ln.startswith("def triton_")]
        found[str(f)] = dict(config=cfg, kernels=names)
    return found


def _launched_configs() -> dict[str, list[dict]]:
    """Every Inductor Triton kernel loaded in this process (found through ``gc``) and the
    configuration(s) it launches with: after autotuning, the chosen one."""
    import gc

    from torch._inductor.runtime.triton_heuristics import CachingAutotuner

    found = {}
    for obj in gc.get_objects():
        try:
            if not isinstance(obj, CachingAutotuner):
                continue
            fn = getattr(obj, "fn", None)
            inner = getattr(fn, "fn", None)
            name = getattr(fn, "__name__", None) or getattr(inner, "__name__", "?")
            found[name] = [dict(r.config.kwargs, num_warps=r.config.num_warps,
                                num_stages=r.config.num_stages) for r in obj.launchers]  # fmt: skip
        except Exception as e:  # a half-built object: note it, go on
            found[f"error {type(e).__name__}"] = [{"error": str(e)}]
    return found


def inductor(out: Path) -> dict:
    root = Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])
    copy = copy_bandwidth(torch.device("cuda"))
    results = {}
    for name in FULL:
        k, n = MODELS[name]
        wg, wu = _w(n, k), _w(n, k)
        x = torch.randn(1, k, device="cuda", dtype=DT)
        before = set(_best_configs(root))
        torch._dynamo.reset()
        fc = torch.compile(_eager, mode="max-autotune-no-cudagraphs", dynamic=False)
        ref = reference.swiglu_linear_reference(x.double(), wg.double(), wu.double())
        assert _ok(fc(x, wg, wu), ref)
        ms = measure_graph(lambda: fc(x, wg, wu)).median_ms
        new = {p: v for p, v in _best_configs(root).items() if p not in before}
        launched = _launched_configs()
        results[name] = dict(ms=ms, frac_copy=2 * n * k * 2 / ms / 1e6 / copy, configs=new,
                             launched=launched)  # fmt: skip
        cfgs = [v["config"] for v in new.values()] or [c for v in launched.values() for c in v]
        brief = [{c: v.get(c) for c in ("XBLOCK", "R0_BLOCK", "RBLOCK", "num_warps",
                                         "num_stages") if c in v} for v in cfgs]  # fmt: skip
        say(f"inductor {name:7s} {ms * 1e3:7.1f} us {results[name]['frac_copy']:4.0%} {brief}")
        (out / "inductor.json").write_text(json.dumps(results, indent=1))
    return results


# ----------------------------------------------------------------------------------------
# gemv
# ----------------------------------------------------------------------------------------


def launch_gemv(x, wg, wu, out, cfg, even_n, index_64, k_static=0):
    """``_linear_gemv_kernel`` on a contiguous ``x [1, K]``, no bias, with the offset width and
    row mask given (the launcher decides them itself)."""
    m, k = x.shape
    n = wg.shape[0]
    bk, unroll = cfg["BLOCK_K"], cfg.get("UNROLL", 1)
    grid = (triton_cdiv(n, cfg["BLOCK_N"]), m)
    _linear_gemv_kernel[grid](
        x, wg, wu, out, out, out, m, n, k, m, 0, k, wg.stride(0), wu.stride(0), 0, 0, n,
        HAS_BG=False, HAS_BU=False, ACTIVATION=ACT[0], ALPHA=ACT[1], LIMIT=ACT[2],
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
        enable_fp_fusion=L.ENABLE_FP_FUSION, BLOCK_N=cfg["BLOCK_N"], BLOCK_K=bk, UNROLL=unroll,
        EVEN_K=k % (unroll * bk) == 0, EVEN_N=even_n, INDEX_64=index_64,
        W_CACHE=cfg.get("W_CACHE", ""), K_STATIC=k_static,
    )  # fmt: skip
    return out


def launch_decode(x, wg, wu, out, cfg, even_k, index_64, w_evict):
    """``_linear_decode_kernel`` on a contiguous ``x [M, K]``, no bias, as ``ops.linear``
    launches it (split-K from ``auto_split_k`` unless the configuration says), with the mask
    along K, the offset width and the weights' eviction policy given."""
    m, k = x.shape
    n = wg.shape[0]
    block_t = min(max(16, 1 << max(m - 1, 0).bit_length()), L.DECODE_MAX_TOKENS)
    bn, bk = cfg["BLOCK_N"], cfg["BLOCK_K"]
    tiles, steps = triton_cdiv(n, bn) * triton_cdiv(m, block_t), triton_cdiv(k, bk)
    split = cfg.get("SPLIT_K") or L.auto_split_k(tiles, steps, L._num_sms(0))
    split = max(1, min(split, steps))
    split = triton_cdiv(steps, triton_cdiv(steps, split))
    parts = counts = out
    if split > 1:
        parts = torch.empty(tiles * split * 2 * block_t * bn, dtype=torch.float32, device="cuda")
        counts = L.split_k_counters(x.device, tiles)
    grid = (triton_cdiv(n, bn), triton_cdiv(m, block_t), split)
    _linear_decode_kernel[grid](
        x, wg, wu, out, out, out, parts, counts, m, n, k, m, 0, k, wg.stride(0), wu.stride(0),
        0, 0, n, HAS_BG=False, HAS_BU=False, ACTIVATION=ACT[0], ALPHA=ACT[1], LIMIT=ACT[2],
        INPUT_PRECISION=L.input_precision(x.dtype), num_warps=cfg["num_warps"],
        num_stages=cfg["num_stages"], enable_fp_fusion=L.ENABLE_FP_FUSION, BLOCK_N=bn,
        BLOCK_T=block_t, BLOCK_K=bk, SPLIT_K=split, EVEN_K=even_k and k % bk == 0
        and steps % split == 0, INDEX_64=index_64, W_EVICT=w_evict,
    )  # fmt: skip
    return out


def triton_cdiv(a, b):
    return (a + b - 1) // b


def _pow2_at_least(v: int) -> int:
    return 1 << (v - 1).bit_length()


def _candidates(name, inductor_cfgs=None):
    """``(label, config, EVEN_N, INDEX_64, K_STATIC)``: session 9's launch (64-bit offsets, row
    mask, K at run time) and the committed entry with each change, then programs over a
    whole row of K or half of it (Inductor's choice on 8B and 70B: one row, 4096 columns a
    step, 16 warps) with K compiled in, as Inductor's kernel has it: the loop's trips unroll
    and a one-trip program holds 31 registers a thread, not 53 (sm_90 compile, Triton 3.9)."""
    table = L.load_table("NVIDIA H200").get("gemv", {})
    k, n = MODELS[name]
    entry = table.get(f"m1_n{n}_k{k}", table["m1"])
    entry = {c: v for c, v in entry.items() if c != "source"}
    m1 = {c: v for c, v in table["m1"].items() if c != "source"}
    cands = [
        ("s9 (64-bit, row mask, K runtime)", entry, False, True, 0),
        ("entry (32-bit, no mask, K runtime)", entry, True, False, 0),
        ("entry K static", entry, True, False, k),
    ]
    if entry != m1:
        cands.append(("m1 K static", m1, True, False, k))
    row = _pow2_at_least(k)
    one = dict(BLOCK_N=1, num_stages=1, W_CACHE="")
    shapes = [(row, 16, 1), (row, 8, 1), (row // 2, 8, 2), (row // 2, 16, 2), (row // 2, 8, 1),
              (row // 2, 4, 1), (row // 4, 4, 2), (row // 4, 4, 1), (row // 8, 2, 2)]  # fmt: skip
    for bk, w, u in shapes:
        if bk < 256 or bk * u > row:
            continue
        cfg = dict(one, BLOCK_K=bk, num_warps=w, UNROLL=u)
        cands.append((f"bk{bk} w{w} u{u} K static", cfg, True, False, k))
    cands.append((f"bk{row} w16 .cg K static", dict(one, BLOCK_K=row, num_warps=16, UNROLL=1,
                                                     W_CACHE=".cg"), True, False, k))  # fmt: skip
    cands.append((f"bk{row} w16 K runtime", dict(one, BLOCK_K=row, num_warps=16, UNROLL=1),
                  True, False, 0))  # fmt: skip
    two = dict(one, BLOCK_N=2, BLOCK_K=row // 2, num_warps=16, UNROLL=1)
    cands.append((f"bn2 bk{row // 2} w16 K static", two, True, False, k))
    return entry, cands


def gemv(out: Path, inductor_cfgs=None) -> list[dict]:
    copy = copy_bandwidth(torch.device("cuda"))
    rows = []
    table = {}
    for name, (k, n) in MODELS.items():
        wg, wu = _w(n, k), _w(n, k)
        x = torch.randn(1, k, device="cuda", dtype=DT)
        o = torch.empty(1, n, device="cuda", dtype=DT)
        ref = reference.swiglu_linear_reference(x.double(), wg.double(), wu.double())
        nbytes = (2 * n * k + k + n) * 2
        frac = lambda ms: nbytes / ms / 1e6 / copy
        entry, cands = _candidates(name, inductor_cfgs)
        timed = []
        for label, cfg, even_n, i64, ks in cands:
            f = lambda: launch_gemv(x, wg, wu, o, cfg, even_n, i64, ks)
            try:
                o.zero_()
                if not _ok(f().clone(), ref):
                    say(f"gemv {name} {label}: WRONG")
                    continue
                timed.append(dict(label=label, cfg=cfg, even_n=even_n, index_64=i64,
                                  k_static=ks, ms=measure_graph(f).median_ms))  # fmt: skip
            except Exception as e:  # out of resources: not a candidate
                say(f"gemv {name} {label}: {type(e).__name__}: {e}"[:200])
        by_ms = sorted(timed, key=lambda t: t["ms"])
        final = by_ms[:3] + [t for t in timed[:3] if t not in by_ms[:3]]
        for t in final:
            t["again"] = []
        for _ in range(3):
            for t in final:
                f = lambda: launch_gemv(x, wg, wu, o, t["cfg"], t["even_n"], t["index_64"],
                                        t["k_static"])  # fmt: skip
                t["again"].append(measure_graph(f).median_ms)
        for t in final:
            t["best_of_all"] = min(t["ms"], *t["again"])
        rows.append(dict(model=name, n=n, k=k, nbytes=nbytes, copy_gbps=copy, entry=entry,
                         candidates=timed))  # fmt: skip
        (out / "gemv.json").write_text(json.dumps(rows, indent=1))
        s9, new = timed[0], timed[2]
        win = min(final, key=lambda t: t["best_of_all"])
        say(f"gemv {name:8s} s9 {frac(min(s9['again'])):4.0%} ({min(s9['again']) * 1e3:6.1f} us) "
            f"entry K static {frac(min(new['again'])):4.0%} ({min(new['again']) * 1e3:6.1f}) "
            f"best '{win['label']}' {frac(win['best_of_all']):4.0%} "
            f"({win['best_of_all'] * 1e3:6.1f})")  # fmt: skip
        table[f"m1_n{n}_k{k}"] = dict(win["cfg"], STATIC_K=bool(win["k_static"]), source=(
            f"scripts/explore_session10.py gemv on {torch.cuda.get_device_name()}, "
            f"{time.strftime('%Y-%m-%d')}: {win['best_of_all'] * 1e3:.1f} us "
            f"({frac(win['best_of_all']):.0%} of copy bandwidth); session 9's launch of the "
            f"committed entry {min(s9['again']) * 1e3:.1f} us"))  # fmt: skip
        (out / "gemv_table.json").write_text(json.dumps(table, indent=1))
    return rows


# ----------------------------------------------------------------------------------------
# decode
# ----------------------------------------------------------------------------------------

DECODE_MODELS = ("8b", "qwen7b", "1b")


def _decode_candidates(m, n, k):
    """``(label, config, EVEN_K, INDEX_64, W_EVICT)``: the committed entry as session 9
    launched it (mask along K, 64-bit offsets, no eviction hint), with each change, then a
    grid of tiles with all three."""
    entry = L.launch_config("decode", L.token_bucket(m), n, k, DT, "NVIDIA H200")
    entry = {c: v for c, v in entry.items() if c != "source"}
    cands = [
        ("s9 entry", entry, False, True, ""),
        ("entry even-K 32-bit", entry, True, False, ""),
        ("entry even-K 32-bit evict_first", entry, True, False, "evict_first"),
        ("entry 64-bit evict_first", entry, True, True, "evict_first"),
    ]
    for bn in (64, 128):
        for bk in (128, 256):
            for w in (4, 8):
                for st in (3, 4) if bk == 128 else (2, 3):
                    cfg = dict(BLOCK_N=bn, BLOCK_K=bk, num_warps=w, num_stages=st)
                    if cfg == {c: entry[c] for c in cfg}:
                        continue
                    cands.append((f"bn{bn} bk{bk} w{w} s{st} ef", cfg, True, False, "evict_first"))
    return cands


def decode(out: Path) -> list[dict]:
    copy = copy_bandwidth(torch.device("cuda"))
    rows = []
    for name in DECODE_MODELS:
        k, n = MODELS[name]
        wg, wu = _w(n, k), _w(n, k)
        for m in (8, 32):
            x = torch.randn(m, k, device="cuda", dtype=DT)
            o = torch.empty(m, n, device="cuda", dtype=DT)
            ref = reference.swiglu_linear_reference(x.double(), wg.double(), wu.double())
            nbytes = (2 * n * k + m * k + m * n) * 2
            frac = lambda ms: nbytes / ms / 1e6 / copy
            timed = []
            for label, cfg, ek, i64, ev in _decode_candidates(m, n, k):
                f = lambda: launch_decode(x, wg, wu, o, cfg, ek, i64, ev)
                try:
                    o.zero_()
                    if not _ok(f().clone(), ref):
                        say(f"decode {name} M={m} {label}: WRONG")
                        continue
                    timed.append(dict(label=label, cfg=cfg, even_k=ek, index_64=i64, w_evict=ev,
                                      ms=measure_graph(f).median_ms))  # fmt: skip
                except Exception as e:  # out of resources: not a candidate
                    say(f"decode {name} M={m} {label}: {type(e).__name__}: {e}"[:200])
            by_ms = sorted(timed, key=lambda t: t["ms"])
            final = by_ms[:3] + [t for t in timed[:3] if t not in by_ms[:3]]
            for t in final:
                t["again"] = []
            for _ in range(3):
                for t in final:
                    args = (t["cfg"], t["even_k"], t["index_64"], t["w_evict"])
                    f = lambda: launch_decode(x, wg, wu, o, *args)
                    t["again"].append(measure_graph(f).median_ms)
            for t in final:
                t["best_of_all"] = min(t["ms"], *t["again"])
            rows.append(dict(model=name, m=m, n=n, k=k, nbytes=nbytes, copy_gbps=copy,
                             candidates=timed))  # fmt: skip
            (out / "decode.json").write_text(json.dumps(rows, indent=1))
            s9, new = timed[0], timed[2]
            win = min(final, key=lambda t: t["best_of_all"])
            say(f"decode {name:7s} M={m:2d} s9 {frac(min(s9['again'])):4.0%} "
                f"({min(s9['again']) * 1e3:6.1f} us) even-K/32-bit/evict_first "
                f"{frac(min(new['again'])):4.0%} ({min(new['again']) * 1e3:6.1f}) "
                f"best '{win['label']}' {frac(win['best_of_all']):4.0%} "
                f"({win['best_of_all'] * 1e3:6.1f})")  # fmt: skip
    return rows


# ----------------------------------------------------------------------------------------
# decode-tma
# ----------------------------------------------------------------------------------------

TMA_MODELS = ("1b", "8b", "qwen7b", "70b", "8b/tp8", "70b/tp8")


def _tma_candidates(m, n, k):
    """``(label, config)``: the committed decode entry (pointer loads), then the TMA variant
    over tiles of 64 or 128 weight rows, 64-256 columns a step, as many stages as fit in
    shared memory or fewer, one program per tile or split-K in two."""
    entry = L.launch_config("decode", L.token_bucket(m), n, k, DT, "NVIDIA H200")
    entry = {c: v for c, v in entry.items() if c != "source"}
    cands = [("entry (pointer loads)", entry), ("entry TMA", dict(entry, TMA=True))]
    grid = [(64, 64, 4, 6), (64, 64, 4, 8), (64, 128, 4, 4), (64, 128, 4, 5), (64, 128, 4, 6),
            (64, 256, 4, 2), (64, 256, 4, 3), (128, 64, 8, 4), (128, 64, 8, 6),
            (128, 128, 4, 3), (128, 128, 8, 2), (128, 128, 8, 3)]  # fmt: skip
    for bn, bk, w, st in grid:
        cfg = dict(BLOCK_N=bn, BLOCK_K=bk, num_warps=w, num_stages=st, TMA=True)
        cands.append((f"tma bn{bn} bk{bk} w{w} s{st}", cfg))
    for bn, bk, w, st in [(64, 128, 4, 4), (128, 128, 8, 3)]:
        for split in (1, 2):
            cfg = dict(BLOCK_N=bn, BLOCK_K=bk, num_warps=w, num_stages=st, TMA=True,
                       SPLIT_K=split)  # fmt: skip
            cands.append((f"tma bn{bn} bk{bk} w{w} s{st} split{split}", cfg))
    return cands


def _occupancy_candidates(m, n, k):
    """``(label, config)`` for ``decode-tma2``: the table's entry, then TMA programs with
    fewer stages (less shared memory: two to four programs an SM) and split-K, so that a
    second program's loads cover one program's start and end. Call 3 had one program an SM
    on Llama-3.2-1B (128 tiles of 64 rows) and 23 us against 19 us for one token's kernel."""
    entry = L.launch_config("decode", L.token_bucket(m), n, k, DT, "NVIDIA H200")
    entry = {c: v for c, v in entry.items() if c != "source"}
    cands = [("entry", entry)]
    grid = [(32, 128, 4, st, sp) for st in (3, 4, 6) for sp in (1, 2)]
    grid += [(64, 128, 4, st, sp) for st in (2, 3) for sp in (1, 2, 4)]
    grid += [(64, 64, 4, st, 2) for st in (3, 4)] + [(128, 128, 8, 2, 2)]
    for bn, bk, w, st, sp in grid:
        cfg = dict(BLOCK_N=bn, BLOCK_K=bk, num_warps=w, num_stages=st, TMA=True, SPLIT_K=sp)
        cands.append((f"tma bn{bn} bk{bk} w{w} s{st} split{sp}", cfg))
    return cands


def decode_tma(out: Path, models=TMA_MODELS, candidates=None, tag="decode_tma") -> list[dict]:
    candidates = candidates or _tma_candidates
    copy = copy_bandwidth(torch.device("cuda"))
    rows = []
    table = {}
    for name in models:
        k, n = MODELS[name]
        wg, wu = _w(n, k), _w(n, k)
        for m in (8, 32):
            x = torch.randn(m, k, device="cuda", dtype=DT)
            ref = reference.swiglu_linear_reference(x.double(), wg.double(), wu.double())
            nbytes = (2 * n * k + m * k + m * n) * 2
            frac = lambda ms: nbytes / ms / 1e6 / copy
            timed = []
            for label, cfg in candidates(m, n, k):
                f = lambda: L._forward_triton(x, wg, wu, None, None, *ACT, "decode", cfg)
                try:
                    if not _ok(f(), ref):
                        say(f"decode-tma {name} M={m} {label}: WRONG")
                        continue
                    timed.append(dict(label=label, cfg=cfg, ms=measure_graph(f).median_ms))
                except Exception as e:  # out of resources: not a candidate
                    say(f"decode-tma {name} M={m} {label}: {type(e).__name__}: {e}"[:160])
            by_ms = sorted(timed, key=lambda t: t["ms"])
            final = by_ms[:3] + [t for t in timed[:1] if t not in by_ms[:3]]
            for t in final:
                t["again"] = []
            for _ in range(3):
                for t in final:
                    cfg = t["cfg"]
                    f = lambda: L._forward_triton(x, wg, wu, None, None, *ACT, "decode", cfg)
                    t["again"].append(measure_graph(f).median_ms)
            for t in final:
                t["best_of_all"] = min(t["ms"], *t["again"])
            rows.append(dict(model=name, m=m, n=n, k=k, nbytes=nbytes, copy_gbps=copy,
                             candidates=timed))  # fmt: skip
            (out / f"{tag}.json").write_text(json.dumps(rows, indent=1))
            base = timed[0]
            win = min(final, key=lambda t: t["best_of_all"])
            say(f"decode-tma {name:8s} M={m:2d} pointer {frac(min(base['again'])):4.0%} "
                f"({min(base['again']) * 1e3:6.1f} us) best '{win['label']}' "
                f"{frac(win['best_of_all']):4.0%} ({win['best_of_all'] * 1e3:6.1f})")  # fmt: skip
            if win is not base:
                table[f"m{m}_n{n}_k{k}"] = dict(win["cfg"], source=(
                    f"scripts/explore_session10.py decode-tma on {torch.cuda.get_device_name()}, "
                    f"{time.strftime('%Y-%m-%d')}: {win['best_of_all'] * 1e3:.1f} us "
                    f"({frac(win['best_of_all']):.0%} of copy bandwidth) against "
                    f"{min(base['again']) * 1e3:.1f} us for the pointer-load entry"))  # fmt: skip
            (out / f"{tag}_table.json").write_text(json.dumps(table, indent=1))
    return rows


# ----------------------------------------------------------------------------------------
# one-token (written after call 8, not yet run)
# ----------------------------------------------------------------------------------------


def _one_token_candidates(n, k):
    """``(label, path, config)`` at one token: the launcher's own choice, session 9's m1
    matrix-vector configuration, the decode kernel with its one-token entry (pointer loads
    and TMA), and matrix-vector programs of two weight rows (each x slice upcast once for
    four weight slices instead of two)."""
    table = L.load_table("NVIDIA H200")
    dec = L.launch_config("decode", 1, n, k, DT, "NVIDIA H200")
    dec = {c: v for c, v in dec.items() if c != "source"}
    s9 = dict(BLOCK_N=1, BLOCK_K=256, num_warps=1, num_stages=1, UNROLL=2)
    cands = [("launcher", None, None), ("s9 m1 gemv", "gemv", s9),
             ("decode", "decode", dec), ("decode TMA", "decode", dict(dec, TMA=True))]  # fmt: skip
    m1 = {c: v for c, v in table["gemv"]["m1"].items() if c != "source"}
    for bn, bk, w in ((2, 1024, 8), (2, 2048, 16), (1, 1024, 4), (1, 4096, 8)):
        cands.append((f"gemv bn{bn} bk{bk} w{w} K static",
                      "gemv", dict(m1, BLOCK_N=bn, BLOCK_K=bk, num_warps=w)))  # fmt: skip
    return cands


def one_token(out: Path) -> list[dict]:
    """Every candidate of ``_one_token_candidates`` on the four model shapes at one token
    in the dtype of ``--dtype``, then the best three and the launcher's choice re-timed in
    turn three times. Written after run h200-s10-linear-fp16-decode (call 8) found the
    matrix-vector kernel 19% slower in fp16 than in bf16 on 8B and Qwen. -> ``one_token.json``."""
    copy = copy_bandwidth(torch.device("cuda"))
    rows = []
    for name in FULL:
        k, n = MODELS[name]
        wg, wu = _w(n, k), _w(n, k)
        x = torch.randn(1, k, device="cuda", dtype=DT)
        ref = reference.swiglu_linear_reference(x.double(), wg.double(), wu.double())
        frac = lambda ms: (2 * n * k + k + n) * DT.itemsize / ms / 1e6 / copy
        timed = []
        for label, path, cfg in _one_token_candidates(n, k):
            f = lambda: L._forward_triton(x, wg, wu, None, None, *ACT, path, cfg)
            try:
                if not _ok(f(), ref):
                    say(f"one-token {name} {label}: WRONG")
                    continue
                timed.append(dict(label=label, path=path, cfg=cfg, ms=measure_graph(f).median_ms))
            except Exception as e:  # out of resources: not a candidate
                say(f"one-token {name} {label}: {type(e).__name__}: {e}"[:160])
        final = sorted(timed, key=lambda t: t["ms"])[:3]
        final += [t for t in timed[:1] if t not in final]
        for _ in range(3):
            for t in final:
                path, cfg = t["path"], t["cfg"]
                f = lambda: L._forward_triton(x, wg, wu, None, None, *ACT, path, cfg)
                t.setdefault("again", []).append(measure_graph(f).median_ms)
        rows.append(dict(model=name, n=n, k=k, dtype=str(DT), copy_gbps=copy, candidates=timed))
        (out / "one_token.json").write_text(json.dumps(rows, indent=1))
        best = min(final, key=lambda t: min(t["ms"], *t["again"]))
        mine = timed[0]
        say(f"one-token {name:7s} {str(DT)[6:]} launcher {frac(min(mine['again'])):4.0%} "
            f"({min(mine['again']) * 1e3:6.1f} us) best '{best['label']}' "
            f"{frac(min(best['again'])):4.0%} ({min(best['again']) * 1e3:6.1f})")  # fmt: skip
    return rows


# ----------------------------------------------------------------------------------------
# gap
# ----------------------------------------------------------------------------------------


def smi() -> dict:
    q = "clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_event_reasons.active"
    try:
        r = subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=10)  # fmt: skip
        return dict(zip(q.split(","), (v.strip() for v in r.stdout.split(",")), strict=False))
    except Exception as e:
        return {"error": str(e)}


def gap(out: Path) -> list[dict]:
    from flash_swiglu.bench.cases.linear import LinearCase
    from flash_swiglu.bench.harness import run_case

    k, n = MODELS["8b"]
    device = torch.device("cuda")
    copy = copy_bandwidth(device)
    ceilings = Ceilings(copy)
    wg, wu = _w(n, k), _w(n, k)
    x = torch.randn(1, k, device="cuda", dtype=DT)
    case = LinearCase("llama-3-8b", k, n, 1, DT)
    a, b = (torch.randn(8192, 8192, device="cuda", dtype=DT) for _ in range(2))

    def direct():
        return measure_graph(lambda: L._forward_triton(x, wg, wu, None, None, *ACT)).median_ms

    def public():
        return measure_graph(lambda: flash_swiglu.swiglu_linear(x, wg, wu)).median_ms

    def harness():
        rows = run_case(case, ["triton"], ["fwd"], device, ceilings)
        r = next(r for r in rows if r["backend"] == "triton")
        return r["median_ms"]

    def heat():
        end = time.perf_counter() + 3
        while time.perf_counter() < end:
            for _ in range(20):
                a @ b
            torch.cuda.synchronize()
        return None

    results = []
    with torch.cuda.stream(torch.cuda.Stream()):
        plan = [("direct", direct), ("public", public), ("harness", harness), ("direct", direct),
                ("public", public), ("harness", harness), ("heat", heat), ("direct", direct),
                ("public", public), ("harness", harness), ("direct", direct)]  # fmt: skip
        for label, fn in plan:
            state = smi()
            ms = fn()
            results.append(dict(label=label, ms=ms, smi=state))
            if ms is not None:
                say(f"gap {label:8s} {ms * 1e3:6.1f} us {2 * n * k * 2 / ms / 1e6 / copy:4.0%} "
                    f"sm {state.get('clocks.sm')} power {state.get('power.draw')} "
                    f"temp {state.get('temperature.gpu')}")  # fmt: skip
            (out / "gap.json").write_text(json.dumps(results, indent=1))
    return results


def main() -> None:
    out = Path(ARGS.out)
    out.mkdir(parents=True, exist_ok=True)
    say(f"{torch.cuda.get_device_name()} torch {torch.__version__} python {sys.version.split()[0]}")
    found = None
    torch.cuda.set_stream(torch.cuda.Stream())  # measure_graph captures on a side stream
    for part in ARGS.parts:
        t0 = time.time()
        if part == "inductor":
            found = inductor(out)
        elif part == "gemv":
            gemv(out, found)
        elif part == "decode":
            decode(out)
        elif part == "decode-tma":
            decode_tma(out)
        elif part == "decode-tma2":
            decode_tma(out, ("1b", "8b", "qwen7b"), _occupancy_candidates, "decode_tma2")
        elif part == "one-token":
            one_token(out)
        elif part == "gap":
            gap(out)
        else:
            raise SystemExit(f"unknown part {part}")
        say(f"== {part}: {time.time() - t0:.0f} s")
    (out / "summary.txt").write_text("\n".join(SUMMARY) + "\n")
    print("\n".join(SUMMARY))


if __name__ == "__main__":
    main()

"""Session 11 explorations on the H200: narrow decode tiles, and where the MLP's host time goes.

    PYTHONPATH=src python scripts/explore_session11.py STAGE... --out DIR

(stages: narrow, host, mid, host2, sk, trace)

- ``narrow``: the decode kernel (pointer loads and its TMA variant) with tiles of 16 or 32
  weight rows on one, two or four warps: four to eight times the programs of the 64- and
  128-row tiles that sessions 3-10 tuned, so that the last wave is short and several programs
  share an SM. At 8 and 32 tokens on Llama-3.2-1B, Llama-3-8B and Qwen2.5-7B, against the
  launcher's own choice; the fastest three and the launcher re-timed in turn three times.
  Every candidate is checked against the float64 reference first. -> ``narrow.json``,
  ``narrow_table.json`` (a faster candidate per shape, in the launch table's format).
- ``host``: host time to enqueue, in microseconds per call (``time.perf_counter``, median of
  seven loops of ten calls after a warm-up), bf16, at the example's MLP shape
  ``[8192 tokens, 1024 -> 2816]`` (ten calls of at most some twenty launches stay within
  CUDA's launch queue, so the GPU never holds the host back): a LlamaMLP-like eager MLP and
  ``SwiGLUMLP``, forward and backward, and the pieces of ours: the training forward, the
  Gluon kernels' launchers, a host descriptor, the bare JIT launch with prebuilt
  descriptors, the backward over the saved pre-activation, the checks, ``torch.mm``,
  ``torch.empty`` and a one-argument Triton kernel; then ``cProfile`` of 50 ``SwiGLUMLP``
  steps by own time. -> ``host.json``, ``host_profile.txt``.

- ``mid`` (call 2): 128 and 256 tokens on the four model shapes, where session 8 measured
  Qwen2.5-7B 0.98-0.99x eager: the launcher's choice, eager and the cuBLAS product in the
  same process, the decode kernel with one token tile of all 128 or 256 tokens (each weight
  tile read once; ``DECODE_MAX_TOKENS`` raised for the stage), the persistent TMA kernel with
  narrower tiles and two programs an SM, and the Gluon forward's candidates
  (``ops.linear.WS_CANDIDATES``); the fastest three, the launcher and eager re-timed in turn
  three times. -> ``mid.json``.
- ``sk`` (call 4): the stream-K decode kernel (``STREAM_K``, written after call 2) at 8, 32
  and 128 tokens on the four model shapes against the launcher, eager, the cuBLAS product
  and (at 128 tokens) call 2's fastest decode candidate, as ``mid`` does. -> ``sk.json``.
  Runs at commit ``b210136`` only: the kernel was slower than the committed paths on every
  shape (call 4) and was removed after; later commits ignore ``STREAM_K``.
- ``trace`` (call 5): ``torch.profiler`` traces (CPU and CUDA, Python stacks) of ten
  ``SwiGLUMLP`` and ten eager fwd+bwd at 512 tokens, to find the host time that ``host2``'s
  pieces do not add up to. -> ``trace_*.json``, ``trace_*_table.txt``.
- ``host2`` (call 2): ``host`` again at 512 tokens (the GPU's part a sixteenth of the
  example's, so every loop is bound by the host), with a training table without ``MIN_M``
  so that the same Gluon kernels run as at 8192 tokens; then ``cProfile`` of 50 steps.
  -> ``host2.json``, ``host2_profile.txt``.

Kernel times are GPU time from CUDA-graph replays with a cold L2 (``bench.timing``). A short
table is printed last (also ``summary.txt``).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import pstats
import statistics
import sys
import time
from pathlib import Path

import torch
import triton
import triton.language as tl

from flash_swiglu import reference
from flash_swiglu.bench.roofline import copy_bandwidth
from flash_swiglu.bench.timing import measure_graph
from flash_swiglu.ops import linear as L

MODELS = {"1b": (2048, 8192), "8b": (4096, 14336), "qwen7b": (3584, 18944)}
DT = torch.bfloat16
ACT = ("silu", 1.702, 7.0)
SUMMARY: list[str] = []


def say(line: str) -> None:
    print(line, flush=True)
    SUMMARY.append(line)


def _ok(out, ref) -> bool:
    err = (out.double() - ref).abs().max().item()
    return err <= 0.02 * ref.abs().max().item()


# ----------------------------------------------------------------------------------------
# narrow
# ----------------------------------------------------------------------------------------


def _narrow_candidates():
    """``(label, config)``: the launcher's choice (None), then 16- and 32-row tiles."""
    cands = [("launcher", None)]
    pointer = [(16, 128, 1, 4), (16, 256, 1, 3), (16, 256, 1, 4), (16, 256, 2, 3),
               (16, 256, 2, 4), (16, 512, 2, 3), (16, 512, 4, 3), (16, 256, 4, 4),
               (32, 128, 2, 4), (32, 256, 2, 3), (32, 256, 4, 3), (32, 256, 4, 4),
               (32, 512, 4, 3)]  # fmt: skip
    for bn, bk, w, s in pointer:
        cands.append((f"bn{bn} bk{bk} w{w} s{s}", dict(BLOCK_N=bn, BLOCK_K=bk, num_warps=w,
                                                      num_stages=s)))  # fmt: skip
    tma = [(16, 128, 1, 4), (16, 256, 1, 4), (16, 256, 2, 3), (16, 256, 2, 4), (32, 128, 4, 6),
           (32, 256, 2, 3), (32, 256, 4, 3), (32, 256, 4, 4)]  # fmt: skip
    for bn, bk, w, s in tma:
        cands.append((f"tma bn{bn} bk{bk} w{w} s{s}", dict(BLOCK_N=bn, BLOCK_K=bk, num_warps=w,
                                                          num_stages=s, TMA=True)))  # fmt: skip
    return cands


def narrow(out: Path) -> list[dict]:
    copy = copy_bandwidth(torch.device("cuda"))
    rows, table = [], {}
    for name, (k, n) in MODELS.items():
        wg = torch.randn(n, k, device="cuda", dtype=DT) / k**0.5
        wu = torch.randn(n, k, device="cuda", dtype=DT) / k**0.5
        for m in (8, 32):
            x = torch.randn(m, k, device="cuda", dtype=DT)
            ref = reference.swiglu_linear_reference(x.double(), wg.double(), wu.double())
            nbytes = (2 * n * k + m * k + m * n) * 2
            frac = lambda ms: nbytes / ms / 1e6 / copy
            timed = []
            for label, cfg in _narrow_candidates():
                path = None if cfg is None else "decode"
                f = lambda: L._forward_triton(x, wg, wu, None, None, *ACT, path, cfg)
                try:
                    if not _ok(f(), ref):
                        say(f"narrow {name} M={m} {label}: WRONG")
                        continue
                    timed.append(dict(label=label, cfg=cfg, ms=measure_graph(f).median_ms))
                except Exception as e:  # out of resources: not a candidate
                    say(f"narrow {name} M={m} {label}: {type(e).__name__}: {e}"[:160])
            by_ms = sorted(timed, key=lambda t: t["ms"])
            final = by_ms[:3] + [t for t in timed[:1] if t not in by_ms[:3]]
            for _ in range(3):
                for t in final:
                    path = None if t["cfg"] is None else "decode"
                    cfg = t["cfg"]
                    f = lambda: L._forward_triton(x, wg, wu, None, None, *ACT, path, cfg)
                    t.setdefault("again", []).append(measure_graph(f).median_ms)
            for t in final:
                t["best_of_all"] = min(t["ms"], *t["again"])
            rows.append(dict(model=name, m=m, n=n, k=k, nbytes=nbytes, copy_gbps=copy,
                             candidates=timed))  # fmt: skip
            (out / "narrow.json").write_text(json.dumps(rows, indent=1))
            base = timed[0]
            win = min(final, key=lambda t: t["best_of_all"])
            say(
                f"narrow {name:7s} M={m:2d} launcher {frac(base['best_of_all']):4.0%} "
                f"({base['best_of_all'] * 1e3:6.1f} us) best '{win['label']}' "
                f"{frac(win['best_of_all']):4.0%} ({win['best_of_all'] * 1e3:6.1f}); "
                + ", ".join(f"{t['label']} {min(t['again']) * 1e3:.1f}" for t in final)
            )
            if win is not base:
                table[f"m{m}_n{n}_k{k}"] = dict(win["cfg"], source=(
                    f"scripts/explore_session11.py narrow on {torch.cuda.get_device_name()}, "
                    f"{time.strftime('%Y-%m-%d')}: {win['best_of_all'] * 1e3:.1f} us "
                    f"({frac(win['best_of_all']):.0%} of copy bandwidth) against "
                    f"{base['best_of_all'] * 1e3:.1f} us for the launcher's choice"))  # fmt: skip
            (out / "narrow_table.json").write_text(json.dumps(table, indent=1))
    return rows


# ----------------------------------------------------------------------------------------
# host
# ----------------------------------------------------------------------------------------


@triton.jit
def _one_arg_kernel(p):
    tl.store(p + tl.program_id(0), 1.0)


def _host_us(fn, calls: int = 10, loops: int = 7) -> float:
    """Median over ``loops`` of the host time per call of ``calls`` calls (after a warm-up;
    synchronised before each loop, not inside it: ten calls of at most some twenty launches
    stay within CUDA's launch queue, so the loop never waits for the GPU)."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    per = []
    for _ in range(loops):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        per.append((time.perf_counter() - t0) / calls * 1e6)
    torch.cuda.synchronize()
    return statistics.median(per)


def host(out: Path, m: int = 8192, tag: str = "host") -> dict:
    from flash_swiglu import SwiGLUMLP
    from flash_swiglu.kernels import ws_mlp as W
    from flash_swiglu.ops import mlp as M
    from flash_swiglu.ops import train as T

    k, n = 1024, 2816  # the example's MLP (16 x 512 tokens: m = 8192)
    dev = torch.device("cuda")
    mlp = SwiGLUMLP(k, n, device=dev, dtype=DT)
    gate, up, down = mlp.gate_proj, mlp.up_proj, mlp.down_proj
    x = torch.randn(m, k, device=dev, dtype=DT, requires_grad=True)
    dy = torch.randn(m, k, device=dev, dtype=DT)
    x0 = x.detach()
    wg, wu, wd = gate.weight.detach(), up.weight.detach(), down.weight.detach()

    def eager_fb():
        y = down(torch.nn.functional.silu(gate(x)) * up(x))
        y.backward(dy)

    def ours_fb():
        mlp(x).backward(dy)

    def ours_f():
        return mlp(x)

    def eager_f():
        return down(torch.nn.functional.silu(gate(x)) * up(x))

    h, saved = T.forward_saving(x0, wg, wu, None, None, *ACT)
    g, u = saved
    ws_fwd = T.ws_config(DT, dev, "silu", m, "forward_saving_ws")
    ws_bwd = T.ws_config(DT, dev, "silu", m)
    # Views of one buffer: _backward_over_saved frees a saved g that owns its storage.
    dgu = torch.randn(m, 2 * n, device=dev, dtype=DT)
    dg, du = dgu[:, :n], dgu[:, n:]
    probe = torch.empty(1, device=dev)

    cfg = dict(W.WS_FORWARD_CONFIG, **(ws_fwd or {}))
    bm, bh, bk = cfg.pop("BLOCK_M"), cfg.pop("BLOCK_H"), cfg.pop("BLOCK_K")
    descs = (W._desc(x0, [bm, bk]), W._desc(wg, [bh, bk]), W._desc(wu, [bh, bk]))
    grid = W._grid(dev, triton.cdiv(m, bm) * triton.cdiv(n, bh), None)

    def ws_run():
        W.glu_forward_ws_kernel[grid](
            *descs, h, h, 0, 0, g, u, h, g.stride(0), u.stride(0), h.stride(0), m, n, k,
            HAS_BG=False, HAS_BU=False, STORE_GU=True, ACTIVATION="silu", ALPHA=1.702,
            LIMIT=7.0, num_warps=4, enable_fp_fusion=L.ENABLE_FP_FUSION, **cfg,
        )  # fmt: skip

    def bwd_over_saved():
        T._backward_over_saved(x0, wg, wu, dy, wd, (dg, du), (True,) * 6, None, None, *ACT)

    pieces = {
        "eager MLP fwd+bwd": eager_fb,
        "SwiGLUMLP fwd+bwd": ours_fb,
        "eager MLP fwd (grad on)": eager_f,
        "SwiGLUMLP fwd (grad on)": ours_f,
        "M.forward_train (separate)": lambda: M.forward_train(
            x0, wg, wu, wd, None, None, None, "silu", False, 1.702, 7.0),
        "T.forward_saving": lambda: T.forward_saving(x0, wg, wu, None, None, *ACT),
        "W.glu_forward_ws": lambda: W.glu_forward_ws(x0, wg, wu, None, None, h, g, u,
                                                     activation="silu", alpha=1.702, limit=7.0,
                                                     config=ws_fwd),
        "glu_forward_ws_kernel[grid] (descs built)": ws_run,
        "W._desc": lambda: W._desc(x0, [bm, bk]),
        "W._grid": lambda: W._grid(dev, 100, None),
        "T._backward_over_saved": bwd_over_saved,
        "W.mlp_backward_ws": lambda: W.mlp_backward_ws(dy, wd, dg, du, h, dg, du,
                                                       activation="silu", alpha=1.702,
                                                       limit=7.0, config=ws_bwd),
        "T.ws_config": lambda: T.ws_config(DT, dev, "silu", m),
        "T.fused_ok": lambda: T.fused_ok(x0, wg, wu, dy, wd),
        "T.rows": lambda: T.rows(x0),
        "torch.mm": lambda: torch.mm(dg, wg),
        "torch.empty": lambda: torch.empty(m, n, device=dev, dtype=DT),
        "F.linear": lambda: torch.nn.functional.linear(h, wd),
        "one-argument Triton kernel": lambda: _one_arg_kernel[(1,)](probe),
    }  # fmt: skip
    result = {}
    for label, fn in pieces.items():
        result[label] = _host_us(fn)
        say(f"{tag} {label:42s} {result[label]:7.1f} us")
        x.grad = None
        for p in mlp.parameters():
            p.grad = None
    (out / f"{tag}.json").write_text(json.dumps(result, indent=1))
    (out / f"{tag}_profile.txt").write_text(profile_text(ours_fb, rows=45))
    return result


def profile_text(fn, rows: int, orders: tuple[str, ...] = ("tottime",)) -> str:
    """``cProfile`` of five loops of ten ``fn()`` (each loop then synchronized): the first
    ``rows`` lines of the table sorted by each of ``orders``, one after the other."""
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(5):
        for _ in range(10):
            fn()
        torch.cuda.synchronize()
    prof.disable()
    text = io.StringIO()
    for i, order in enumerate(orders):
        if i:
            text.write("\n\n")
        pstats.Stats(prof, stream=text).sort_stats(order).print_stats(rows)
    return text.getvalue()


@contextlib.contextmanager
def _gluon_from_any_rows(out: Path):
    """The training table without its ``MIN_M`` (written to ``out``, loaded through
    ``FLASH_SWIGLU_TRAIN_CONFIGS``): the Gluon kernels run at any row count."""
    import os

    from flash_swiglu.ops import train as T

    table = T.load_table(L._device_name(0))
    free = {key: {c: v for c, v in e.items() if c != "MIN_M"} if isinstance(e, dict) else e
            for key, e in table.items()}  # fmt: skip
    path = out / "train_without_min_m.json"
    path.write_text(json.dumps(free, indent=1))
    os.environ[T.TABLE_ENV] = str(path)
    T.load_table.cache_clear()
    try:
        yield
    finally:
        del os.environ[T.TABLE_ENV]
        T.load_table.cache_clear()


def host2(out: Path) -> dict:
    """``host`` at 512 tokens, with the training table's Gluon entries from any row count."""
    with _gluon_from_any_rows(out):
        return host(out, 512, "host2")


def _mid_candidates(m):
    """``(label, fn_maker)`` where ``fn_maker(x, wg, wu, wcat)`` returns the call to time."""
    from flash_swiglu.kernels.ws_mlp import glu_forward_ws

    def triton(path, cfg):
        def make(x, wg, wu, wcat):
            def call():
                if path != "decode":
                    return L._forward_triton(x, wg, wu, None, None, *ACT, path, cfg)
                saved = L.DECODE_MAX_TOKENS
                L.DECODE_MAX_TOKENS = 256  # one token tile of all the tokens
                try:
                    return L._forward_triton(x, wg, wu, None, None, *ACT, path, cfg)
                finally:
                    L.DECODE_MAX_TOKENS = saved

            return call

        return make

    def ws(cfg):
        def make(x, wg, wu, wcat):
            out = torch.empty(x.shape[0], wg.shape[0], device=x.device, dtype=x.dtype)

            def call():
                glu_forward_ws(x, wg, wu, None, None, out, activation="silu", alpha=1.702,
                               limit=7.0, config=cfg)  # fmt: skip
                return out

            return call

        return make

    cands = [
        ("launcher", triton(None, None)),
        ("eager", lambda x, wg, wu, wcat: lambda: _eager(x, wg, wu)),
        ("cublas product", lambda x, wg, wu, wcat: lambda: x @ wcat.T),
    ]
    dec = [(64, 64, 8, 4, True), (64, 64, 8, 4, False)]
    if m <= 128:
        dec += [(64, 128, 8, 3, True), (64, 64, 4, 3, True), (64, 64, 4, 4, True),
                (128, 64, 8, 3, True), (64, 128, 8, 3, False)]  # fmt: skip
    for bn, bk, w, st, tma in dec:
        cfg = dict(BLOCK_N=bn, BLOCK_K=bk, num_warps=w, num_stages=st, TMA=tma, SPLIT_K=1)
        label = f"decode T{m} bn{bn} bk{bk} w{w} s{st}" + (" tma" if tma else "")
        cands.append((label, triton("decode", cfg)))
    for bm, bn, w, st, pps in [(64, 64, 4, 4, 2), (64, 128, 4, 4, 1), (128, 64, 8, 3, 2),
                               (128, 128, 8, 3, 1), (64, 128, 4, 3, 2)]:  # fmt: skip
        cfg = dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=64, GROUP_M=8, num_warps=w, num_stages=st,
                   PROGRAMS_PER_SM=pps)  # fmt: skip
        cands.append((f"tma bm{bm} bn{bn} w{w} s{st} pps{pps}", triton("tma", cfg)))
    for cfg in L.WS_CANDIDATES:
        label = f"ws h{cfg['BLOCK_H']} s{cfg['STAGES']} g{cfg['GROUP_M']}"
        cands.append((label + (" coop" if cfg["COOP"] else ""), ws(dict(cfg))))
    return cands


def _eager(x, wg, wu):
    return torch.nn.functional.silu(x @ wg.T) * (x @ wu.T)


def trace(out: Path) -> None:
    """``torch.profiler`` (CPU and CUDA activities, Python stacks) over ten ``SwiGLUMLP``
    and ten eager fwd+bwd at 512 tokens of the example's MLP, Gluon entries from any row count
    (as ``host2``). -> ``trace_ours.json``, ``trace_eager.json`` (Chrome traces) and the
    profiler's CPU-time tables."""
    with _gluon_from_any_rows(out):
        _trace(out)


def _trace(out: Path) -> None:
    from torch.profiler import ProfilerActivity, profile

    from flash_swiglu import SwiGLUMLP

    m, k, n = 512, 1024, 2816
    dev = torch.device("cuda")
    mlp = SwiGLUMLP(k, n, device=dev, dtype=DT)
    x = torch.randn(m, k, device=dev, dtype=DT, requires_grad=True)
    dy = torch.randn(m, k, device=dev, dtype=DT)
    gate, up, down = mlp.gate_proj, mlp.up_proj, mlp.down_proj
    steps = {
        "ours": lambda: mlp(x).backward(dy),
        "eager": lambda: down(torch.nn.functional.silu(gate(x)) * up(x)).backward(dy),
    }
    for tag, step in steps.items():
        for _ in range(5):
            step()
        torch.cuda.synchronize()
        acts = [ProfilerActivity.CPU, ProfilerActivity.CUDA]
        with profile(activities=acts, with_stack=True) as prof:
            for _ in range(10):
                step()
            torch.cuda.synchronize()
        prof.export_chrome_trace(str(out / f"trace_{tag}.json"))
        text = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=40)
        (out / f"trace_{tag}_table.txt").write_text(text)
        t0 = time.perf_counter()
        for _ in range(10):
            step()
        say(f"trace {tag}: {(time.perf_counter() - t0) / 10 * 1e6:.0f} us a step to enqueue")
        torch.cuda.synchronize()


def _sk_candidates(m):
    """``sk``: the launcher, eager, the cuBLAS product, the TMA decode kernel with one token
    tile (call 2's fastest at 128 tokens), and the stream-K decode kernel."""
    cands = [c for c in _mid_candidates(m) if c[0] in ("launcher", "eager", "cublas product")]
    make = dict(_mid_candidates(m))
    if m > 64:
        cands.append(("decode T128 bn64 bk64 w4 s3 tma", make["decode T128 bn64 bk64 w4 s3 tma"]))
        grid = [(64, 64, 8, 4, 1), (64, 128, 8, 3, 1), (64, 64, 4, 3, 1), (64, 64, 4, 3, 2),
                (128, 64, 8, 3, 1)]  # fmt: skip
    else:
        grid = [(64, 128, 4, 4, 1), (64, 128, 4, 3, 2), (64, 64, 4, 4, 2), (128, 128, 8, 3, 1)]
    for bn, bk, w, st, pps in grid:
        cfg = dict(BLOCK_N=bn, BLOCK_K=bk, num_warps=w, num_stages=st, TMA=True, STREAM_K=True,
                   PROGRAMS_PER_SM=pps)  # fmt: skip
        label = f"stream-k bn{bn} bk{bk} w{w} s{st} pps{pps}"
        cands.append((label, _triton_maker("decode", cfg)))
    return cands


def _triton_maker(path, cfg):
    def make(x, wg, wu, wcat):
        return lambda: L._forward_triton(x, wg, wu, None, None, *ACT, path, cfg)

    return make


def mid(out: Path, candidates=None, tokens=(128, 256), tag="mid") -> list[dict]:
    candidates = candidates or _mid_candidates
    models = dict(MODELS, **{"70b": (8192, 28672)})
    rows = []
    for name, (k, n) in models.items():
        wg = torch.randn(n, k, device="cuda", dtype=DT) / k**0.5
        wu = torch.randn(n, k, device="cuda", dtype=DT) / k**0.5
        wcat = torch.cat([wg, wu])
        for m in tokens:
            x = torch.randn(m, k, device="cuda", dtype=DT)
            ref = reference.swiglu_linear_reference(x.double(), wg.double(), wu.double())
            timed = []
            for label, make in candidates(m):
                try:
                    f = make(x, wg, wu, wcat)
                    res = f()
                    if not label.startswith(("eager", "cublas")) and not _ok(res, ref):
                        say(f"{tag} {name} M={m} {label}: WRONG")
                        continue
                    timed.append(dict(label=label, ms=measure_graph(f).median_ms, f=f))
                except Exception as e:  # out of resources: not a candidate
                    say(f"{tag} {name} M={m} {label}: {type(e).__name__}: {e}"[:160])
            ours = [t for t in timed if t["label"] not in ("eager", "cublas product")]
            final = sorted(ours, key=lambda t: t["ms"])[:3]
            final += [t for t in timed if t["label"] in ("launcher", "eager", "cublas product")
                      and t not in final]  # fmt: skip
            for _ in range(3):
                for t in final:
                    t.setdefault("again", []).append(measure_graph(t["f"]).median_ms)
            for t in timed:
                t.pop("f")
                t["best_of_all"] = min([t["ms"], *t.get("again", [])])
            rows.append(dict(model=name, m=m, n=n, k=k, candidates=timed))
            (out / f"{tag}.json").write_text(json.dumps(rows, indent=1))
            by = {t["label"]: t["best_of_all"] for t in timed}
            win = min(final, key=lambda t: t["best_of_all"])
            say(f"{tag} {name:7s} M={m:3d} eager {by['eager'] * 1e3:6.1f} us, cublas "
                f"{by['cublas product'] * 1e3:6.1f}, launcher {by['launcher'] * 1e3:6.1f} "
                f"({by['eager'] / by['launcher']:.3f}x eager), best '{win['label']}' "
                f"{win['best_of_all'] * 1e3:6.1f} "
                f"({by['eager'] / win['best_of_all']:.3f}x)")  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("parts", nargs="*", default=["narrow", "host"])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    say(f"{torch.cuda.get_device_name()} torch {torch.__version__} triton {triton.__version__} "
        f"python {sys.version.split()[0]}")  # fmt: skip
    for part in args.parts:
        t0 = time.time()
        if part == "narrow":
            torch.cuda.set_stream(torch.cuda.Stream())  # measure_graph captures on a side stream
            narrow(out)
        elif part == "host":
            host(out)
        elif part == "mid":
            torch.cuda.set_stream(torch.cuda.Stream())
            mid(out)
        elif part == "sk":
            torch.cuda.set_stream(torch.cuda.Stream())
            mid(out, _sk_candidates, (8, 32, 128), "sk")
        elif part == "trace":
            trace(out)
        elif part == "host2":
            host2(out)
        else:
            raise SystemExit(f"unknown part {part}")
        say(f"== {part}: {time.time() - t0:.0f} s")
    (out / "summary.txt").write_text("\n".join(SUMMARY) + "\n")
    print("\n".join(SUMMARY))


if __name__ == "__main__":
    main()

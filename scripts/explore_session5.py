"""Session-5 exploration on the H200: the warp-specialized (Gluon) MLP backward of
``kernels/ws_mlp.py`` against the Triton kernel of ``kernels/mlp.py`` and cuBLAS.

    PYTHONPATH=src python scripts/explore_session5.py [check] [kernel] [forward] [step] --out DIR

- ``check``: the Gluon kernel against an fp32 reference and against the Triton kernel on
  small shapes with tails (M, N not multiples of the tile), few SMs (many tiles per program,
  odd counts), dg/du written over g/u, every activation, bf16 and fp16.
- ``kernel``: Llama-3-8B shape (M=8192, N=14336, K=4096), bf16: Gluon variants (stages,
  GROUP_M, epilogue parts) against the committed Triton tile and cuBLAS's ``dy @ w_down``.
- ``forward`` (written after session 5's last GPU call; first run in session 6, call 1,
  ``benchmarks/results/h200-session6-explore/call1``): the Gluon forward
  (``glu_forward_ws``) checked against the Triton kernels' results, then timed against the
  Triton forward-saving kernel at the 8B shape and against the projection's launch table
  (``ops.linear``, no saving) on the four model shapes at M = 2048 and 8192, each against
  cuBLAS's ``x @ [Wg; Wu]^T``.
- ``step``: whole MLP steps (forward + backward, the graph's last backward) at 4096, 8192
  and 16384 tokens: eager, and the fused path with the MLP backward on the Triton kernel
  (``FLASH_SWIGLU_GLUON=0``) and on the table's Gluon kernel, with peak memory; with
  ``--step-forward`` (first run in session 6, call 1) also with the Gluon forward.

The candidates below are those of calls 4 and 6; calls 1-3 ran earlier versions of the
kernel and of this script (``benchmarks/results/README.md``, section "Session 5").

Kernel times are GPU time from CUDA-graph replays with a cold L2 (``bench.timing``); whole
steps are ``do_bench`` medians. Full results go to ``DIR/*.json``; a short table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from triton.testing import do_bench

import flash_swiglu
from flash_swiglu import reference
from flash_swiglu.bench.timing import measure_graph
from flash_swiglu.kernels import ws_mlp
from flash_swiglu.ops import train as T

ACTS = ("silu", "gelu", "gelu_tanh", "relu", "swiglu_oai")
KERNEL_CANDS = {  # one ring of STAGES slots shared by the two consumers
    "co_s6_split8": dict(STAGES=6, EPILOGUE_SPLIT=8, COALESCE=True),
    "co_s5_split8_pf2": dict(STAGES=5, EPILOGUE_SPLIT=8, PREFETCH=2, COALESCE=True),
    "co_s5_split16_pf4": dict(STAGES=5, EPILOGUE_SPLIT=16, PREFETCH=4, COALESCE=True),
    "co_s5_split4": dict(STAGES=5, EPILOGUE_SPLIT=4, COALESCE=True),
    "co_s6_split8_g16": dict(STAGES=6, EPILOGUE_SPLIT=8, COALESCE=True, GROUP_M=16),
    "s6_split8_pf0": dict(STAGES=6, EPILOGUE_SPLIT=8, COALESCE=False),
}


def _rel_err(out, ref) -> float:
    scale = max(ref.float().abs().max().item(), 1e-6)
    return (out.float() - ref.float()).abs().max().item() / scale


def _fmt(errs) -> str:
    return " ".join(f"{e:.1e}" for e in errs)


def check(out: Path) -> list[str]:
    lines, rows = [], []
    cases = [  # m, n, k, dtype, activation, sms, aliased
        (300, 200, 192, torch.bfloat16, "silu", 3, False),
        (300, 200, 192, torch.bfloat16, "silu", 3, True),
        (1000, 1000, 512, torch.bfloat16, "silu", 5, True),
        (2048, 1536, 4096, torch.bfloat16, "silu", None, True),
        (129, 136, 64, torch.float16, "silu", 2, False),
    ] + [(777, 520, 320, torch.bfloat16, a, 7, True) for a in ACTS]
    for m, n, k, dt, act, sms, aliased in cases:
        r = lambda *s, sc=1.0: torch.randn(*s, device="cuda", dtype=dt) * sc
        dy, wd = r(m, k), r(k, n, sc=n**-0.5)
        g, u = r(m, n), r(m, n)
        gf, uf = g.float(), u.float()
        dgr, dur = reference.glu_backward(gf, uf, dy.float() @ wd.float(), act, 1.702, 7.0)
        hr = reference.act_glu(gf, uf, act, 1.702, 7.0)
        tri = {key: torch.empty(m, n, device="cuda", dtype=dt) for key in ("h", "dg", "du")}
        T.launch(m, n, k, dy=dy, wd=wd, g=g, u=u, activation=act, alpha=1.702, limit=7.0,
                 _override=T.config("mlp_backward", dt, "tf32", act), **tri)  # fmt: skip
        h = torch.empty_like(g)
        if aliased:
            g2, u2 = g.clone(), u.clone()
            dg, du = g2, u2
        else:
            g2, u2 = g, u
            dg, du = torch.empty_like(g), torch.empty_like(g)
        ws_mlp.mlp_backward_ws(dy, wd, g2, u2, h, dg, du, activation=act, alpha=1.702,
                               limit=7.0, sms=sms, config=CHECK_CONFIG)  # fmt: skip
        torch.cuda.synchronize()
        errs = {
            "ws": [_rel_err(h, hr), _rel_err(dg, dgr), _rel_err(du, dur)],
            "triton": [_rel_err(tri["h"], hr), _rel_err(tri["dg"], dgr), _rel_err(tri["du"], dur)],
        }
        ok = all(w <= 2 * t + 2e-3 for w, t in zip(errs["ws"], errs["triton"], strict=True))
        rows.append(dict(m=m, n=n, k=k, dtype=str(dt), act=act, sms=sms, aliased=aliased,
                         errs=errs, ok=ok))  # fmt: skip
        lines.append(
            f"check m={m} n={n} k={k} {str(dt)[6:]} {act:10s} sms={sms} aliased={aliased}: "
            f"ws {_fmt(errs['ws'])} triton {_fmt(errs['triton'])} "
            f"ok={ok}"
        )
        print(lines[-1], flush=True)
    (out / "check.json").write_text(json.dumps(rows, indent=1))
    return lines


def kernel(out: Path) -> list[str]:
    m, n, k = 8192, 14336, 4096
    dt = torch.bfloat16
    r = lambda *s, sc=1.0: torch.randn(*s, device="cuda", dtype=dt) * sc
    dy, wd = r(m, k), r(k, n, sc=n**-0.5)
    g, u = r(m, n), r(m, n)
    h, dg, du = (torch.empty(m, n, device="cuda", dtype=dt) for _ in range(3))
    common = dict(activation="silu", alpha=1.702, limit=7.0)
    gf, uf = g.float(), u.float()
    dgr, dur = reference.glu_backward(gf, uf, dy.float() @ wd.float(), "silu", 1.702, 7.0)
    del gf, uf
    flops = 2 * m * n * k
    lines, rows = [], []

    def timed(name, fn, check=True):
        dg.zero_()
        fn()
        torch.cuda.synchronize()
        ok = (_rel_err(dg, dgr) < 0.02 and _rel_err(du, dur) < 0.02) if check else None
        ms = measure_graph(fn).median_ms
        rows.append(dict(name=name, ms=ms, tflops=flops / ms / 1e9, ok=ok))
        lines.append(f"kernel {name:32s} {ms:6.3f} ms {flops / ms / 1e9:4.0f} TF ok={ok}")
        print(lines[-1], flush=True)

    tri = T.config("mlp_backward", dt, "tf32", "silu")  # the Triton kernel's entry
    timed("triton table", lambda: T.launch(m, n, k, dy=dy, wd=wd, g=g, u=u, h=h, dg=dg, du=du,
                                             **common, _override=tri))  # fmt: skip
    for name, cand in KERNEL_CANDS.items():
        try:
            timed("gluon " + name, lambda c=cand: ws_mlp.mlp_backward_ws(
                dy, wd, g, u, h, dg, du, **common, config=c))  # fmt: skip
        except Exception as e:
            lines.append(f"kernel gluon {name}: {type(e).__name__}: {e}"[:400])
            print(lines[-1], flush=True)
    timed("cublas dy @ Wd", lambda: dy @ wd, check=False)
    timed("triton table again", lambda: T.launch(m, n, k, dy=dy, wd=wd, g=g, u=u, h=h, dg=dg,
                                                   du=du, **common, _override=tri))  # fmt: skip
    (out / "kernel.json").write_text(json.dumps(rows, indent=1))
    return lines


CHECK_CONFIG: dict = {}  # the kernel's defaults; --check-config JSON overrides
# ``step`` also times the Gluon forward (written after the session's last GPU call) when
# ``--step-forward`` is given.
FORWARD_IN_STEP = False

FORWARD_CANDS = {
    "s4_split4": dict(STAGES=4, EPILOGUE_SPLIT=4),
    "s5_split4": dict(STAGES=5, EPILOGUE_SPLIT=4),
    "s6_split4": dict(STAGES=6, EPILOGUE_SPLIT=4),
    "s4_split8": dict(STAGES=4, EPILOGUE_SPLIT=8),
    "s4_split4_g16": dict(STAGES=4, EPILOGUE_SPLIT=4, GROUP_M=16),
    # each consumer's tile 64 rows x (128 gate + 128 up): one wgmma of N = 256
    "m64_h128_s5": dict(BLOCK_M=64, BLOCK_H=128, STAGES=5, EPILOGUE_SPLIT=4),
    "m64_h128_s5_split8": dict(BLOCK_M=64, BLOCK_H=128, STAGES=5, EPILOGUE_SPLIT=8),
}
MODELS = {"1b": (2048, 8192), "8b": (4096, 14336), "qwen7b": (3584, 18944), "70b": (8192, 28672)}


def forward(out: Path) -> list[str]:
    dt = torch.bfloat16
    lines, rows = [], []
    common = dict(activation="silu", alpha=1.702, limit=7.0)
    for model, (k, n) in MODELS.items():
        for m in (2048, 8192):
            r = lambda *s, sc=1.0: torch.randn(*s, device="cuda", dtype=dt) * sc
            x, wg, wu = r(m, k), r(n, k, sc=k**-0.5), r(n, k, sc=k**-0.5)
            h, g, u = (torch.empty(m, n, device="cuda", dtype=dt) for _ in range(3))
            ref_h = flash_swiglu.swiglu_linear(x, wg, wu)  # the projection's table launch
            flops = 2 * m * 2 * n * k
            saving = model == "8b" and m == 8192

            def timed(name, fn, check=None):
                h.zero_()
                fn()
                torch.cuda.synchronize()
                ok = _rel_err(h, ref_h) < 0.02 if check is None else check()
                ms = measure_graph(fn).median_ms
                rows.append(dict(model=model, m=m, name=name, ms=ms, ok=ok,
                                 tflops=flops / ms / 1e9))  # fmt: skip
                lines.append(f"forward {model:6s} M={m:5d} {name:28s} {ms:6.3f} ms "
                             f"{flops / ms / 1e9:4.0f} TF ok={ok}")  # fmt: skip
                print(lines[-1], flush=True)

            wc = torch.cat([wg, wu])
            timed("cublas x @ [Wg;Wu]^T", lambda: x @ wc.t(), check=lambda: None)
            timed(
                "triton projection",
                lambda: flash_swiglu.swiglu_linear(x, wg, wu),
                check=lambda: None,
            )  # returns h (the reference itself)
            for name, cand in FORWARD_CANDS.items():
                try:
                    timed("gluon " + name, lambda c=cand: ws_mlp.glu_forward_ws(
                        x, wg, wu, None, None, h, config=c, **common))  # fmt: skip
                except Exception as e:
                    lines.append(f"forward gluon {name}: {type(e).__name__}: {e}"[:400])
                    print(lines[-1], flush=True)
            if saving:
                tri = T.config("forward_saving", dt, "tf32", "silu")
                timed("triton forward-saving", lambda: T.launch(
                    m, n, k, x=x, wg=wg, wu=wu, g=g, u=u, h=h, store_gu=True,
                    **common, _override=tri))  # fmt: skip
                g_ref, u_ref = g.clone(), u.clone()
                for name, cand in FORWARD_CANDS.items():
                    timed("gluon saving " + name, lambda c=cand: ws_mlp.glu_forward_ws(
                        x, wg, wu, None, None, h, g, u, config=c, **common),
                        check=lambda: bool(_rel_err(g, g_ref) < 0.01 and _rel_err(u, u_ref) < 0.01
                                           and _rel_err(h, ref_h) < 0.02))  # fmt: skip
            x = wg = wu = wc = h = g = u = ref_h = None
            torch.cuda.empty_cache()
    (out / "forward.json").write_text(json.dumps(rows, indent=1))
    return lines


def mlp_steps(mm: int, n: int, k: int, dt: torch.dtype):
    """The 8B-style MLP step at ``mm`` tokens: ``(params, eager_step, fused_step)``, each step
    a forward and the graph's last backward of fresh random operands (x, w_gate, w_up,
    w_down), gradients set to None first."""
    r = lambda *s, sc=1.0: torch.randn(*s, device="cuda", dtype=dt) * sc
    dy = r(mm, k)
    shapes = ((mm, k, 1.0), (n, k, k**-0.5), (n, k, k**-0.5), (k, n, n**-0.5))
    params = [r(a, b, sc=c).requires_grad_() for a, b, c in shapes]

    def eager_step():
        for t in params:
            t.grad = None
        xx, a_, b_, c_ = params
        hh = torch.nn.functional.silu(xx @ a_.t()) * (xx @ b_.t())
        (hh @ c_.t()).backward(dy)

    def fused_step():
        for t in params:
            t.grad = None
        flash_swiglu.swiglu_mlp(*params).backward(dy)

    return params, eager_step, fused_step


def measure_step(fn) -> tuple[float, float]:
    """``(ms, peak MiB)`` of ``fn``: the do_bench median, and the peak allocated above what
    was allocated before one call (after a warm-up call)."""
    fn()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    return do_bench(fn, warmup=50, rep=300, return_mode="median"), peak


def step(out: Path) -> list[str]:
    n, k = 14336, 4096
    real_table = T.load_table

    def gluon(on: bool, forward: bool = False) -> None:
        """The Gluon kernels on or off (ops.train.ws_config reads both at every launch);
        ``forward``: also the Gluon forward, through a table entry of its built-in config."""
        os.environ[T.GLUON_ENV] = "1" if on else "0"
        entry = dict(ws_mlp.WS_FORWARD_CONFIG)
        T.load_table = (
            (lambda name: {**real_table(name), "forward_saving_ws": entry})
            if forward
            else real_table
        )

    lines, rows = [], []
    for mm in (4096, 8192, 16384):
        params, eager_step, fused_step = mlp_steps(mm, n, k, torch.bfloat16)
        gm = 2 * mm * n * k

        def grads():
            return [t.grad.clone() for t in params]

        def timed(name, fn):
            ms, peak = measure_step(fn)
            rows.append(dict(name=name, m=mm, ms=ms, peak_mib=peak, tflops=9 * gm / ms / 1e9))
            lines.append(f"step M={mm:5d} {name:24s} {ms:7.3f} ms {9 * gm / ms / 1e9:4.0f} TF "
                         f"peak {peak:6.0f} MiB")  # fmt: skip
            print(lines[-1], flush=True)
            return ms

        gluon(False)
        fused_step()
        ref = grads()
        gluon(True)
        fused_step()
        got = grads()
        errs = [_rel_err(a, b) for a, b in zip(got, ref, strict=True)]
        lines.append(f"step M={mm:5d} gluon vs triton grads rel err {_fmt(errs)}")
        if FORWARD_IN_STEP:
            gluon(True, forward=True)
            fused_step()
            errs = [_rel_err(a, b) for a, b in zip(grads(), ref, strict=True)]
            gluon(True)
            lines.append(f"step M={mm:5d} gluon fwd+bwd vs triton grads rel err {_fmt(errs)}")
        print(lines[-1], flush=True)
        for again in ("", " again"):
            timed("eager" + again, eager_step)
            gluon(False)
            timed("fused triton" + again, fused_step)
            gluon(True)
            timed("fused gluon bwd" + again, fused_step)
            if FORWARD_IN_STEP:
                gluon(True, forward=True)
                timed("fused gluon fwd+bwd" + again, fused_step)
                gluon(True)
        params = eager_step = fused_step = ref = got = None
        torch.cuda.empty_cache()
    (out / "step.json").write_text(json.dumps(rows, indent=1))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("parts", nargs="*", default=["check", "kernel", "step"])  # and forward
    ap.add_argument("--out", default="/tmp/explore")
    ap.add_argument("--check-config", default="{}")
    ap.add_argument("--step-forward", action="store_true")
    a = ap.parse_args()
    global FORWARD_IN_STEP
    FORWARD_IN_STEP = a.step_forward
    CHECK_CONFIG.update(json.loads(a.check_config))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.cuda.set_stream(torch.cuda.Stream())
    lines = [f"{torch.cuda.get_device_name()}"]
    for part in a.parts:
        t0 = time.time()
        parts = {"check": check, "kernel": kernel, "forward": forward, "step": step}
        lines += parts[part](out)
        lines.append(f"== {part}: {time.time() - t0:.0f} s")
        print(lines[-1], flush=True)
        (out / "summary.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Session-7 exploration on the H200: where the 8B MLP training step's time goes, and what the
Gluon backward's epilogue costs.

    PYTHONPATH=src python scripts/explore_session7.py [profile] [diag] [--variant V] --out DIR

- ``profile``: the Llama-3-8B MLP step (forward + the graph's last backward, bf16) at 8192
  and 16384 tokens, eager and flash-swiglu, under ``torch.profiler``: every GPU kernel of one
  step with its time (the mean over the profiled steps), in launch order.
- ``diag``: the MLP backward kernel (``kernels/ws_mlp.py``, the committed ``mlp_backward_ws``
  entry) at the 8B shape, M = 8192, against cuBLAS's ``dy @ w_down``, with its epilogue
  changed by ``--variant`` (one variant per process: Triton caches a kernel's compiled
  dependencies, so a patched helper must be in place before the first launch):

      base      the committed kernel
      noload    g and u made from the row and column indices instead of loaded
      nostore   h, dg and du stores predicated off (a runtime condition the compiler cannot
                fold), g and u still loaded
      none      both: the main loop, the layout moves and the epilogue arithmetic only
      split4    the committed kernel with its epilogue in 4 parts (spills in the gate)

  Only ``base`` and ``split4`` compute the gradients; the others are timings only.

Kernel times are CUDA-graph replays from a cold L2 (``bench.timing.measure_graph``). Full
results go to ``DIR/*.json``; a short table is printed last.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from triton.experimental import gluon
from triton.experimental.gluon import language as gl

from flash_swiglu.activations import glu_backward, glu_forward
from flash_swiglu.bench.timing import measure_graph
from flash_swiglu.kernels import ws_mlp
from flash_swiglu.ops import train as T

sys.path.insert(0, str(Path(__file__).resolve().parent))
import explore_session5 as S5


@gluon.jit
def _gu_from_indices(g_ptr, u_ptr, stride_g, stride_u, off_m, off_n, M, N, i,
                     LAYOUT: gl.constexpr, BLOCK_M: gl.constexpr, WIDTH: gl.constexpr):  # fmt: skip
    rows = off_m + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, LAYOUT))
    cols = off_n + i * WIDTH + gl.arange(0, WIDTH, layout=gl.SliceLayout(0, LAYOUT))
    v = (rows[:, None] * 3 + cols[None, :]) % 97
    g = (v.to(gl.float32) * 0.01).to(g_ptr.dtype.element_ty)
    u = (v.to(gl.float32) * -0.02).to(u_ptr.dtype.element_ty)
    return g, u


@gluon.jit
def _epilogue_nostore(acc, gu, off_m, off_n, g_ptr, u_ptr, h_ptr, dg_ptr, du_ptr, stride_g,
                      stride_u, stride_h, stride_dg, stride_du, M, N, ACTIVATION: gl.constexpr,
                      ALPHA: gl.constexpr, LIMIT: gl.constexpr, PARTS: gl.constexpr,
                      PREFETCH: gl.constexpr, COALESCE: gl.constexpr,
                      layout: gl.constexpr):  # fmt: skip
    """``ws_mlp._epilogue`` (PREFETCH 0) with every store predicated off by ``M < 0``."""
    BLOCK_M: gl.constexpr = acc.shape[0]
    WIDTH: gl.constexpr = acc.shape[1] // PARTS
    parts = ws_mlp._split_columns(acc, PARTS)
    for i in gl.static_range(PARTS):
        dh = parts[i]
        if COALESCE:
            dh = gl.convert_layout(dh, layout)
        g, u = ws_mlp._gu_part(g_ptr, u_ptr, stride_g, stride_u, off_m, off_n, M, N, i,
                               layout, BLOCK_M, WIDTH)  # fmt: skip
        g = g.to(gl.float32)
        u = u.to(gl.float32)
        rows = off_m + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, layout))
        cols = off_n + i * WIDTH + gl.arange(0, WIDTH, layout=gl.SliceLayout(0, layout))
        mask = (rows < M)[:, None] & (cols < N)[None, :] & (M < 0)
        r64 = rows.to(gl.int64)[:, None]
        c2 = cols[None, :]
        h = glu_forward(g, u, ACTIVATION, ALPHA, LIMIT)
        gl.store(h_ptr + (r64 * stride_h + c2), h.to(h_ptr.dtype.element_ty), mask=mask)
        dgate, dup = glu_backward(g, u, dh, ACTIVATION, ALPHA, LIMIT)
        gl.store(dg_ptr + (r64 * stride_dg + c2), dgate.to(dg_ptr.dtype.element_ty), mask=mask)
        gl.store(du_ptr + (r64 * stride_du + c2), dup.to(du_ptr.dtype.element_ty), mask=mask)


def _patch(variant: str) -> dict:
    """Patch ``ws_mlp``'s epilogue helpers for ``variant``; the config override it runs."""
    if variant in ("noload", "none"):
        ws_mlp._gu_part = _gu_from_indices
    if variant in ("nostore", "none"):
        ws_mlp._epilogue = _epilogue_nostore
    return {"EPILOGUE_SPLIT": 4} if variant == "split4" else {}


def diag(out: Path, variant: str) -> list[str]:
    override = _patch(variant)
    m, n, k = 8192, 14336, 4096
    dt = torch.bfloat16
    r = lambda *s, sc=1.0: torch.randn(*s, device="cuda", dtype=dt) * sc
    dy, wd = r(m, k), r(k, n, sc=n**-0.5)
    g, u = r(m, n), r(m, n)
    h, dg, du = (torch.empty(m, n, device="cuda", dtype=dt) for _ in range(3))
    entry = T.load_table(torch.cuda.get_device_name())["mlp_backward_ws"]
    cfg = {key: entry[key] for key in T.WS_KEYS["mlp_backward_ws"]}
    cfg.update(override)
    common = dict(activation="silu", alpha=1.702, limit=7.0)
    flops = 2 * m * n * k
    ok = None
    fn = lambda: ws_mlp.mlp_backward_ws(dy, wd, g, u, h, dg, du, config=cfg, **common)
    fn()
    torch.cuda.synchronize()
    if variant in ("base", "split4"):
        from flash_swiglu import reference

        dgr, dur = reference.glu_backward(g.float(), u.float(), dy.float() @ wd.float(),
                                          "silu", 1.702, 7.0)  # fmt: skip
        ok = bool(S5._rel_err(dg, dgr) < 0.02 and S5._rel_err(du, dur) < 0.02)
        dgr = dur = None
    rows, lines = [], []
    for name, f in ((variant, fn), ("cublas dy @ Wd", lambda: dy @ wd), (variant + " again", fn)):
        ms = measure_graph(f).median_ms
        rows.append(dict(name=name, ms=ms, tflops=flops / ms / 1e9, ok=ok, config=cfg))
        lines.append(f"diag {name:20s} {ms:6.3f} ms {flops / ms / 1e9:4.0f} TF ok={ok}")
        print(lines[-1], flush=True)
    (out / f"diag_{variant}.json").write_text(json.dumps(rows, indent=1))
    return lines


def _kernels(prof, steps: int) -> list[dict]:
    """GPU kernels of one profiled step, in launch order: name and mean microseconds."""
    evs = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    evs.sort(key=lambda e: e.time_range.start)
    if len(evs) % steps:
        return [dict(name=e.name, us=e.time_range.elapsed_us()) for e in evs]
    per = len(evs) // steps
    rows = []
    for j in range(per):
        same = [evs[s * per + j] for s in range(steps)]
        rows.append(dict(name=same[0].name[:120],
                         us=sum(e.time_range.elapsed_us() for e in same) / steps))  # fmt: skip
    return rows


def profile(out: Path) -> list[str]:
    n, k = 14336, 4096
    steps = 5
    lines, result = [], {}
    for mm in (8192, 16384):
        _, eager_step, fused_step = S5.mlp_steps(mm, n, k, torch.bfloat16)
        for name, fn in (("eager", eager_step), ("flash-swiglu", fused_step)):
            for _ in range(3):
                fn()
            torch.cuda.synchronize()
            acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
            with torch.profiler.profile(activities=acts) as prof:
                for _ in range(steps):
                    fn()
                torch.cuda.synchronize()
            rows = _kernels(prof, steps)
            result[f"{name} M={mm}"] = rows
            total = sum(r["us"] for r in rows)
            lines.append(f"profile M={mm} {name}: {len(rows)} kernels, {total / 1e3:.3f} ms of "
                         "kernel time per step")  # fmt: skip
            for r in rows:
                lines.append(f"    {r['us']:9.1f} us  {r['name'][:90]}")
            print("\n".join(lines[-len(rows) - 1 :]), flush=True)
        eager_step = fused_step = None
        torch.cuda.empty_cache()
    (out / "profile.json").write_text(json.dumps(result, indent=1))
    return lines


def _example():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / "train_tiny_llama.py"
    spec = importlib.util.spec_from_file_location("train_tiny_llama", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def tiny(out: Path) -> list[str]:
    """The example's model (4 layers, hidden 1024, 16 x 512 tokens, bf16), eager and patched:
    wall time per training step (forward, backward, AdamW), GPU kernel time per step, and the
    heaviest CPU and GPU operators; then its MLP alone (fwd + bwd, do_bench) and the time to
    enqueue it (no synchronisation inside)."""
    from triton.testing import do_bench

    from flash_swiglu.integrations.transformers import patch_hf_model

    ex = _example()
    args = ex.parse_args([])
    data = torch.frombuffer(bytearray(ex.synthetic_corpus(ex.CORPUS_BYTES)), dtype=torch.uint8)
    ids = ex.batches(data.long(), args)[0].cuda()
    lines, result = [], {}
    for patched in (False, True):
        name = "flash-swiglu" if patched else "eager"
        model = ex.build_model(args).cuda().train()
        for p in model.parameters():
            p.data = p.data.to(torch.bfloat16)
        if patched:
            patch_hf_model(model)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            model(input_ids=ids, labels=ids).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        for _ in range(5):
            step()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(20):
            step()
        enq = (time.perf_counter() - t0) / 20
        torch.cuda.synchronize()
        wall = (time.perf_counter() - t0) / 20
        acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
        with torch.profiler.profile(activities=acts) as prof:
            for _ in range(3):
                step()
            torch.cuda.synchronize()
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        gpu_ms = sum(e.time_range.elapsed_us() for e in kernels) / 3e3
        table_cpu = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
        table_gpu = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=25)
        (out / f"tiny_{name}.txt").write_text(table_cpu + "\n\n" + table_gpu)
        result[name] = dict(wall_ms=wall * 1e3, enqueue_ms=enq * 1e3, gpu_kernel_ms=gpu_ms)
        lines.append(f"tiny {name:12s} step {wall * 1e3:7.2f} ms wall, {enq * 1e3:7.2f} ms to "
                     f"enqueue 20 (mean), {gpu_ms:7.2f} ms of GPU kernels")  # fmt: skip
        print(lines[-1], flush=True)
        mlp = model.model.layers[0].mlp
        x = torch.randn(args.batch, args.seq, args.hidden, device="cuda", dtype=torch.bfloat16,
                        requires_grad=True)  # fmt: skip
        dy = torch.randn_like(x)

        def mlp_step():
            x.grad = None
            for p in mlp.parameters():
                p.grad = None
            mlp(x).backward(dy)

        ms = do_bench(mlp_step, warmup=25, rep=200, return_mode="median")
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(50):
            mlp_step()
        enq = (time.perf_counter() - t0) / 50
        torch.cuda.synchronize()
        result[name].update(mlp_ms=ms, mlp_enqueue_ms=enq * 1e3)
        lines.append(f"tiny {name:12s} MLP fwd+bwd {ms:6.3f} ms (do_bench), "
                     f"{enq * 1e3:6.3f} ms to enqueue")  # fmt: skip
        print(lines[-1], flush=True)
        model = opt = mlp = x = dy = None
        torch.cuda.empty_cache()
    (out / "tiny.json").write_text(json.dumps(result, indent=1))
    return lines


def clocks(out: Path) -> list[str]:
    """SM clock and board power (``nvidia-smi``, every 50 ms) while the 8B MLP step runs back
    to back for about 3 s, eager and flash-swiglu, at 8192 and 16384 tokens."""
    import statistics
    import subprocess

    lines, rows = [], []
    for mm in (8192, 16384):
        _, eager_step, fused_step = S5.mlp_steps(mm, 14336, 4096, torch.bfloat16)
        for name, fn in (("eager", eager_step), ("flash-swiglu", fused_step)) * 2:
            for _ in range(3):
                fn()
            torch.cuda.synchronize()
            log = out / "smi.csv"
            query = "--query-gpu=clocks.sm,power.draw,temperature.gpu," + REASONS
            smi = subprocess.Popen(["nvidia-smi", query, "--format=csv,noheader,nounits",
                                    "-lms", "50"], stdout=log.open("w"))  # fmt: skip
            time.sleep(0.3)
            t0 = time.perf_counter()
            count = 0
            while time.perf_counter() - t0 < 3.0:
                fn()
                count += 1
                if count % 10 == 0:
                    torch.cuda.synchronize()
            torch.cuda.synchronize()
            ms = (time.perf_counter() - t0) / count * 1e3
            smi.terminate()
            smi.wait()
            samples = [r.split(", ") for r in log.read_text().splitlines() if r.count(",") >= 3]
            if len(samples) < 8:
                lines.append(f"clocks: nvidia-smi gave {log.read_text()[:300]!r}")
                print(lines[-1], flush=True)
                return lines
            clk = [float(s[0]) for s in samples[6:]]
            pw = [float(s[1]) for s in samples[6:]]
            reasons = sorted({s[3].strip() for s in samples[6:]})
            row = dict(m=mm, name=name, ms=ms, clock_mhz=statistics.median(clk),
                       power_w=statistics.median(pw), samples=len(clk),
                       reasons=reasons)  # fmt: skip
            rows.append(row)
            lines.append(f"clocks M={mm:5d} {name:12s} {ms:7.3f} ms/step, SM clock median "
                         f"{row['clock_mhz']:.0f} MHz, power {row['power_w']:.0f} W, "
                         f"throttle {reasons}")  # fmt: skip
            print(lines[-1], flush=True)
        eager_step = fused_step = None
        torch.cuda.empty_cache()
    (out / "clocks.json").write_text(json.dumps(rows, indent=1))
    return lines


# The field's newer name first (the older one is deprecated in recent drivers).
REASONS = "clocks_event_reasons.active"


def hostprof(out: Path) -> list[str]:
    """Host time of the example's MLP (a patched ``LlamaMLP``, 16 x 512 tokens, hidden 1024,
    intermediate 2816, bf16): time to enqueue one fwd + bwd (no synchronisation inside), with
    the Gluon kernels on and off, and ``cProfile``'s heaviest functions of each."""
    import cProfile
    import io
    import os
    import pstats

    from flash_swiglu import SwiGLUMLP

    mlp = SwiGLUMLP(1024, 2816, device="cuda", dtype=torch.bfloat16)
    x = torch.randn(16, 512, 1024, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    dy = torch.randn_like(x)

    def mlp_step():
        x.grad = None
        for p in mlp.parameters():
            p.grad = None
        mlp(x).backward(dy)

    lines = []
    for gluon_on in ("1", "0"):
        os.environ[T.GLUON_ENV] = gluon_on
        for _ in range(10):
            mlp_step()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(50):
            mlp_step()
        enq = (time.perf_counter() - t0) / 50
        torch.cuda.synchronize()
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(20):
            mlp_step()
        prof.disable()
        torch.cuda.synchronize()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(35)
        (out / f"hostprof_gluon{gluon_on}.txt").write_text(buf.getvalue())
        lines.append(f"hostprof gluon={gluon_on}: {enq * 1e3:6.3f} ms to enqueue one fwd+bwd")
        print(lines[-1], flush=True)
    return lines


def tinyprof(out: Path) -> list[str]:
    """The example's model patched: wall time per step with the Gluon kernels on and off,
    then ``cProfile`` over 10 steps (heaviest functions by own and by cumulative time)."""
    import cProfile
    import io
    import os
    import pstats

    from flash_swiglu.integrations.transformers import patch_hf_model

    ex = _example()
    args = ex.parse_args([])
    data = torch.frombuffer(bytearray(ex.synthetic_corpus(ex.CORPUS_BYTES)), dtype=torch.uint8)
    ids = ex.batches(data.long(), args)[0].cuda()
    model = ex.build_model(args).cuda().train()
    for p in model.parameters():
        p.data = p.data.to(torch.bfloat16)
    patch_hf_model(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    lines = []
    for gluon_on in ("1", "0", "1"):
        os.environ[T.GLUON_ENV] = gluon_on
        for _ in range(5):
            step()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(20):
            step()
        torch.cuda.synchronize()
        lines.append(f"tinyprof gluon={gluon_on}: {(time.perf_counter() - t0) / 20 * 1e3:7.2f} "
                     "ms per step")  # fmt: skip
        print(lines[-1], flush=True)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(10):
        step()
    torch.cuda.synchronize()
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("tottime").print_stats(40)
    stats.sort_stats("cumtime").print_stats(40)
    (out / "tinyprof.txt").write_text(buf.getvalue())
    return lines


HANDOFF_CANDS = {  # kernels.ws_mlp.mlp_backward_handoff (HANDOFF_CONFIG and these keys)
    "ho_s5_p4": dict(HANDOFF=True),
    "ho_s6_p4": dict(HANDOFF=True, STAGES=6),
    "ho_s5_p8": dict(HANDOFF=True, EPILOGUE_SPLIT=8),
    "ho_s5_p4_g16": dict(HANDOFF=True, GROUP_M=16),
    "ho_k128_s3": dict(HANDOFF=True, BLOCK_K=128, STAGES=3),
}


def handoff(out: Path) -> list[str]:
    """The MLP backward with its epilogue in a partition of its own
    (``ws_mlp.mlp_backward_handoff``): ``explore_session5.check`` with it (tails, few SMs,
    dg/du over g/u, every activation, fp16), then the candidates above against the committed
    ping-pong entry, the Triton kernel and cuBLAS (8B shape, M = 8192), then whole 8B MLP
    steps with the fastest candidate as the table's ``mlp_backward_ws`` entry against the
    committed table and eager, gradients compared with the Triton kernels'."""
    import os

    from flash_swiglu.kernels import ws_mlp

    lines = []
    S5.CHECK_CONFIG.clear()
    S5.CHECK_CONFIG.update(HANDOFF=True)
    lines += S5.check(out)
    committed = T.load_table(torch.cuda.get_device_name())
    pp = {key: committed["mlp_backward_ws"][key] for key in T.WS_KEYS["mlp_backward_ws"]}
    S5.KERNEL_CANDS = {"pp_table": pp, **HANDOFF_CANDS}
    lines += S5.kernel(out)
    rows = [r for r in json.loads((out / "kernel.json").read_text())
            if r["name"].startswith("gluon ho_") and r["ok"]]  # fmt: skip
    if not rows:
        return [*lines, "handoff: no candidate passed; no step stage"]
    best = min(rows, key=lambda r: r["ms"])["name"][len("gluon ") :]
    entry = dict(ws_mlp.HANDOFF_CONFIG, **HANDOFF_CANDS[best], MIN_M=2048)
    lines.append(f"handoff: fastest candidate {best}: {entry}")
    real_table = T.load_table
    variants = {"triton": (False, {}), "committed": (True, {}),
                "handoff": (True, {"mlp_backward_ws": entry})}  # fmt: skip

    def use(name: str) -> None:
        on, entries = variants[name]
        os.environ[T.GLUON_ENV] = "1" if on else "0"
        T.load_table = lambda gpu: {**real_table(gpu), **entries}

    step_rows = []
    for mm in (4096, 8192, 16384):
        params, eager_step, fused_step = S5.mlp_steps(mm, 14336, 4096, torch.bfloat16)
        grads = {}
        for name in variants:
            use(name)
            fused_step()
            grads[name] = [t.grad.clone() for t in params]
        errs = {name: [S5._rel_err(a, b) for a, b in zip(g, grads["triton"], strict=True)]
                for name, g in grads.items()}  # fmt: skip
        lines.append(f"step M={mm:5d} grads vs triton: "
                     + "; ".join(f"{k_}: {S5._fmt(v)}" for k_, v in errs.items()))  # fmt: skip
        print(lines[-1], flush=True)
        grads = None
        for again in ("", " again"):
            for name in ("eager", "committed", "handoff"):
                if name != "eager":
                    use(name)
                ms, peak = S5.measure_step(eager_step if name == "eager" else fused_step)
                step_rows.append(dict(name=name + again, m=mm, ms=ms, peak_mib=peak))
                lines.append(f"step M={mm:5d} {name + again:16s} {ms:7.3f} ms "
                             f"peak {peak:6.0f} MiB")  # fmt: skip
                print(lines[-1], flush=True)
        params = eager_step = fused_step = None
        torch.cuda.empty_cache()
    T.load_table = real_table
    (out / "handoff_step.json").write_text(json.dumps(step_rows, indent=1))
    return lines


def handoff2(out: Path) -> list[str]:
    """Why the hand-off backward, faster alone, made the step slower (call 8): the committed
    ping-pong entry and ``ho_s5_p8`` at the 8B shape, M = 8192, with dg / du separate from
    g / u and written over them (as the step does), then the kernels of one step with each
    under ``torch.profiler``."""
    import os

    from flash_swiglu.kernels import ws_mlp

    m, n, k = 8192, 14336, 4096
    dt = torch.bfloat16
    r = lambda *s_, sc=1.0: torch.randn(*s_, device="cuda", dtype=dt) * sc
    dy, wd = r(m, k), r(k, n, sc=n**-0.5)
    g, u = r(m, n), r(m, n)
    h, dg, du = (torch.empty(m, n, device="cuda", dtype=dt) for _ in range(3))
    committed = T.load_table(torch.cuda.get_device_name())
    pp = {key: committed["mlp_backward_ws"][key] for key in T.WS_KEYS["mlp_backward_ws"]}
    ho = dict(HANDOFF_CANDS["ho_s5_p8"])
    common = dict(activation="silu", alpha=1.702, limit=7.0)
    lines = []
    for name, cfg in (("pp", pp), ("ho_s5_p8", ho)) * 2:
        for aliased in (False, True):
            a, b = (g, u) if aliased else (dg, du)
            f = lambda c=cfg, a=a, b=b: ws_mlp.mlp_backward_ws(dy, wd, g, u, h, a, b, config=c,
                                                               **common)  # fmt: skip
            ms = measure_graph(f).median_ms
            lines.append(f"handoff2 kernel {name:10s} aliased={aliased}: {ms:6.3f} ms")
            print(lines[-1], flush=True)
    ms = measure_graph(lambda: dy @ wd).median_ms
    lines.append(f"handoff2 kernel cublas dy @ Wd: {ms:6.3f} ms")
    dy = wd = g = u = h = dg = du = None
    torch.cuda.empty_cache()
    entry = dict(ws_mlp.HANDOFF_CONFIG, **ho, MIN_M=2048)
    real_table = T.load_table
    os.environ[T.GLUON_ENV] = "1"
    result = {}
    _, _, fused_step = S5.mlp_steps(m, n, k, dt)
    for name, entries in (("committed", {}), ("handoff", {"mlp_backward_ws": entry})):
        T.load_table = lambda gpu, e=entries: {**real_table(gpu), **e}
        for _ in range(3):
            fused_step()
        torch.cuda.synchronize()
        acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
        with torch.profiler.profile(activities=acts) as prof:
            for _ in range(5):
                fused_step()
            torch.cuda.synchronize()
        rows = _kernels(prof, 5)
        result[name] = rows
        lines.append(f"handoff2 profile {name}: {sum(r_['us'] for r_ in rows) / 1e3:.3f} ms")
        lines += [f"    {r_['us']:9.1f} us  {r_['name'][:80]}" for r_ in rows]
        print("\n".join(lines[-len(rows) - 1 :]), flush=True)
    T.load_table = real_table
    (out / "handoff2.json").write_text(json.dumps(result, indent=1))
    return lines


def handoff3(out: Path) -> list[str]:
    """The hand-off backward with its pieces' row halves alternating (after call 9):
    ``explore_session5.check`` with ``ho_s5_p8``; the committed entry, ``ho_s5_p8`` and
    ``ho_s5_p4`` at the 8B shape, M = 8192, with dg / du separate and written over g / u;
    whole 8B MLP steps at 8192 and 16384 tokens, eager, committed and ``ho_s5_p8`` as the
    table's entry (gradients against the committed table's)."""
    import os

    from flash_swiglu.kernels import ws_mlp

    lines = []
    S5.CHECK_CONFIG.clear()
    S5.CHECK_CONFIG.update(HANDOFF_CANDS["ho_s5_p8"])
    lines += S5.check(out)
    m, n, k = 8192, 14336, 4096
    dt = torch.bfloat16
    r = lambda *s_, sc=1.0: torch.randn(*s_, device="cuda", dtype=dt) * sc
    dy, wd = r(m, k), r(k, n, sc=n**-0.5)
    g, u = r(m, n), r(m, n)
    h, dg, du = (torch.empty(m, n, device="cuda", dtype=dt) for _ in range(3))
    committed = T.load_table(torch.cuda.get_device_name())
    pp = {key: committed["mlp_backward_ws"][key] for key in T.WS_KEYS["mlp_backward_ws"]}
    common = dict(activation="silu", alpha=1.702, limit=7.0)
    cands = (("pp", pp), ("ho_s5_p8", HANDOFF_CANDS["ho_s5_p8"]),
             ("ho_s5_p4", HANDOFF_CANDS["ho_s5_p4"]))  # fmt: skip
    rows = []
    for again in ("", " again"):
        for name, cfg in cands:
            for aliased in (False, True):
                a, b = (g, u) if aliased else (dg, du)
                f = lambda c=cfg, a=a, b=b: ws_mlp.mlp_backward_ws(
                    dy, wd, g, u, h, a, b, config=c, **common)  # fmt: skip
                ms = measure_graph(f).median_ms
                rows.append(dict(name=name + again, aliased=aliased, ms=ms))
                lines.append(f"handoff3 kernel {name + again:16s} aliased={aliased}: {ms:6.3f} ms")
                print(lines[-1], flush=True)
    ms = measure_graph(lambda: dy @ wd).median_ms
    rows.append(dict(name="cublas dy @ Wd", ms=ms))
    lines.append(f"handoff3 kernel cublas dy @ Wd: {ms:6.3f} ms")
    dy = wd = g = u = h = dg = du = None
    torch.cuda.empty_cache()
    entry = dict(ws_mlp.HANDOFF_CONFIG, **HANDOFF_CANDS["ho_s5_p8"], MIN_M=2048)
    real_table = T.load_table
    os.environ[T.GLUON_ENV] = "1"
    variants = {"committed": {}, "handoff": {"mlp_backward_ws": entry}}
    for mm in (8192, 16384):
        params, eager_step, fused_step = S5.mlp_steps(mm, n, k, dt)
        grads = {}
        for name, entries in variants.items():
            T.load_table = lambda gpu, e=entries: {**real_table(gpu), **e}
            fused_step()
            grads[name] = [t.grad.clone() for t in params]
        errs = [S5._rel_err(a, b) for a, b in zip(grads["handoff"], grads["committed"],
                                                   strict=True)]  # fmt: skip
        lines.append(f"handoff3 step M={mm:5d} grads vs committed: {S5._fmt(errs)}")
        print(lines[-1], flush=True)
        grads = None
        for again in ("", " again"):
            for name in ("eager", *variants):
                if name != "eager":
                    T.load_table = lambda gpu, e=variants[name]: {**real_table(gpu), **e}
                ms, peak = S5.measure_step(eager_step if name == "eager" else fused_step)
                rows.append(dict(name=f"step {name}{again}", m=mm, ms=ms, peak_mib=peak))
                lines.append(f"handoff3 step M={mm:5d} {name + again:16s} {ms:7.3f} ms "
                             f"peak {peak:6.0f} MiB")  # fmt: skip
                print(lines[-1], flush=True)
        params = eager_step = fused_step = None
        torch.cuda.empty_cache()
    T.load_table = real_table
    (out / "handoff3.json").write_text(json.dumps(rows, indent=1))
    return lines


STAGES = {"handoff": handoff, "handoff2": handoff2, "handoff3": handoff3, "profile": profile,
          "tiny": tiny, "clocks": clocks, "hostprof": hostprof,
          "tinyprof": tinyprof}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("parts", nargs="*", default=["profile"])
    ap.add_argument("--variant", default="base",
                    choices=("base", "noload", "nostore", "none", "split4"))  # fmt: skip
    ap.add_argument("--out", default="/tmp/explore")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.cuda.set_stream(torch.cuda.Stream())
    lines = [f"{torch.cuda.get_device_name()}"]
    for part in a.parts:
        t0 = time.time()
        lines += diag(out, a.variant) if part == "diag" else STAGES[part](out)
        lines.append(f"== {part}: {time.time() - t0:.0f} s")
        print(lines[-1], flush=True)
    (out / f"summary_{'_'.join(a.parts)}_{a.variant}.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

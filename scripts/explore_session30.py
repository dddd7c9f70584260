"""Explorations of session 30.

    PYTHONPATH=src python scripts/explore_session30.py host --out DIR

- ``host``: session 30's first run of ``examples/train_tiny_llama.py --compile default``
  (``h200-session30-explore/call1``) had the patched model at 0.54x the compiled unpatched
  one in tokens per second (552,002 against 1,025,956), where with CUDA graphs
  (``--compile reduce-overhead``) it was 0.97x: under ``torch.compile`` without graphs the
  patched step waits on its host. Where its host time goes. At the example's default size
  (4 layers, hidden 1024, MLP 2816, 16 x 512 tokens, bf16), for the model unpatched and
  patched, uncompiled and compiled (mode default):

  - per step, after 8 warm-up steps: the host's time to enqueue one step with the GPU idle
    at its start (synchronised before), and the time of 20 steps back to back;
  - for the patched model, ``cProfile`` over 10 steps (top functions by own and by
    cumulative time) and ``torch.profiler`` (CPU) over 5 steps (ops by own CPU time);
  - one MLP layer alone (the example's, 8192 rows): ``LlamaMLP`` and ``SwiGLUMLP``, each
    uncompiled and compiled, forward + backward: host time with the GPU idle at the start,
    and back to back.

  -> ``host.json``, ``host_profile_<mode>.txt``.
- ``gpu-small``: the GPU side of the same question (``call1``'s CUDA-graph run had the
  patched model at 0.97x the compiled unpatched one). One MLP layer's forward + backward,
  bf16, at the example's MLP (hidden 1024, MLP 2816; 8192 and 32768 rows), Llama-3.2-1B's
  (2048 / 8192; 2048 and 8192 rows) and Llama-3-8B's (4096 / 14336; 1024 and 4096 rows):
  ``LlamaMLP`` eager and compiled, ``SwiGLUMLP`` uncompiled and compiled. Each variant's
  kernels under ``torch.profiler`` (CUDA) over 10 iterations after warm-up: GPU time per
  iteration (the sum of its kernels) and each kernel's share; and the host's time per
  iteration back to back. -> ``gpu_small.json``, ``gpu_small_kernels.txt``.
- ``split``: ``gpu-small`` found the fused backward kernel slower than cuBLAS's ``dy @ W_down``
  plus Inductor's fused elementwise backward where the hidden size is small (171 against
  about 116 us at hidden 1024, 8192 rows). The split route (``ops.train.SPLIT_DH``: cuBLAS
  dh into h's buffer, then ``_glu_bwd_split_kernel``) against the fused kernel, in whole MLP
  training steps (bf16, ``swiglu_mlp``, recompute off), beside ``LlamaMLP`` eager and
  compiled: the example's MLP at 8192 / 32768 rows, Llama-3.2-1B's at 2048 / 8192,
  Qwen2.5-7B's at 4096, Llama-3-8B's at 1024 / 4096 / 8192. ``triton.testing.do_bench``
  (L2 flushed, median of 100 ms), three rotated rounds; the split route's gradients against
  the fused route's (largest difference over the largest entry). -> ``split.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import json
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# EXPLORE_CPU=1: a smoke run of the stage's code on the CPU at tiny sizes (fp32, no timing
# that means anything), to check the script before a device call.
CPU = os.environ.get("EXPLORE_CPU") == "1"
DEV = "cpu" if CPU else "cuda"
DTYPE = torch.float32 if CPU else torch.bfloat16


def say(*a) -> None:
    print(*a, flush=True)


def _example():
    spec = importlib.util.spec_from_file_location(
        "train_tiny_llama", ROOT / "examples" / "train_tiny_llama.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sync() -> None:
    if not CPU:
        torch.cuda.synchronize()


def _host_and_wall(step, reps: int = 20) -> dict:
    """Host time to enqueue one ``step()`` with the GPU idle (median of ``reps``), and the
    time per step of ``reps`` steps back to back."""
    host = []
    for _ in range(reps):
        _sync()
        t0 = time.perf_counter()
        step()
        host.append(time.perf_counter() - t0)
    _sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        step()
    _sync()
    wall = (time.perf_counter() - t0) / reps
    return {"host_ms": 1e3 * statistics.median(host), "host_min_ms": 1e3 * min(host),
            "wall_ms": 1e3 * wall}  # fmt: skip


def _profiles(step, n_cprofile: int = 10, n_torch: int = 5) -> str:
    text = io.StringIO()
    _sync()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n_cprofile):
        step()
    prof.disable()
    _sync()
    for key in ("tottime", "cumulative"):
        text.write(f"==== cProfile, {n_cprofile} steps, by {key}\n")
        pstats.Stats(prof, stream=text).sort_stats(key).print_stats(45)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as p:  # host only: CUPTI adds its own
        for _ in range(n_torch):
            step()
        _sync()
    text.write(f"==== torch.profiler (CPU), {n_torch} steps, by self CPU time\n")
    text.write(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=40))
    text.write(f"\n==== torch.profiler (CPU), {n_torch} steps, by CPU time\n")
    text.write(p.key_averages().table(sort_by="cpu_time_total", row_limit=40))
    return text.getvalue()


def host(out: Path) -> None:
    ex = _example()
    tiny = ["--hidden", "32", "--layers", "1", "--seq", "16", "--batch", "2"] if CPU else []
    args = ex.parse_args(["--steps", "40", "--device", DEV, *tiny])
    data = torch.frombuffer(bytearray(ex.synthetic_corpus(ex.CORPUS_BYTES)), dtype=torch.uint8)
    tokens = ex.batches(data.long(), args).to(DEV)
    from flash_swiglu.integrations.transformers import patch_hf_model

    results = {"config": {k: str(v) for k, v in vars(args).items()}, "model": [], "mlp": []}
    for mode in ("none", "default"):
        for patched in (False, True):
            torch.manual_seed(0)
            model = ex.build_model(args).to(DEV).train()
            for param in model.parameters():
                param.data = param.data.to(DTYPE)
            if patched:
                patch_hf_model(model)
            run = model if mode == "none" else torch.compile(model)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            i = [0]

            def step():
                ids = tokens[i[0] % len(tokens)]
                i[0] += 1
                loss = run(input_ids=ids, labels=ids).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)

            for _ in range(8):
                step()
            row = {"compile": mode, "patched": patched, **_host_and_wall(step)}
            results["model"].append(row)
            say(f"model compile={mode} patched={patched}: {row}")
            if patched:
                (out / f"host_profile_{mode}.txt").write_text(_profiles(step))
            torch.compiler.reset()
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaMLP

    from flash_swiglu import SwiGLUMLP

    cfg = LlamaConfig(hidden_size=args.hidden, intermediate_size=args.intermediate)
    x0 = torch.randn(args.batch * args.seq, args.hidden, device=DEV, dtype=DTYPE)
    for mode in ("none", "default"):
        for name in ("LlamaMLP", "SwiGLUMLP"):
            torch.manual_seed(0)
            mlp = LlamaMLP(cfg).to(DEV, DTYPE)
            if name == "SwiGLUMLP":
                mlp = SwiGLUMLP.from_module(mlp)
            run = mlp if mode == "none" else torch.compile(mlp)
            x = x0.clone().requires_grad_(True)
            dy = torch.randn_like(x0)

            def step():
                run(x).backward(dy)

            for _ in range(8):
                step()
            row = {"compile": mode, "module": name, **_host_and_wall(step, 50)}
            results["mlp"].append(row)
            say(f"mlp compile={mode} {name}: {row}")
            if name == "SwiGLUMLP":
                (out / f"mlp_profile_{mode}.txt").write_text(_profiles(step, 20, 10))
            torch.compiler.reset()
    (out / "host.json").write_text(json.dumps(results, indent=1) + "\n")
    say("\nmodel: compile patched host_ms wall_ms")
    for r in results["model"]:
        say(f"  {r['compile']:8} {r['patched']!s:6} {r['host_ms']:8.3f} {r['wall_ms']:8.3f}")
    say("mlp: compile module host_ms wall_ms")
    for r in results["mlp"]:
        say(f"  {r['compile']:8} {r['module']:10} {r['host_ms']:8.3f} {r['wall_ms']:8.3f}")


def gpu_small(out: Path) -> None:
    from torch.profiler import ProfilerActivity, profile
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaMLP

    from flash_swiglu import SwiGLUMLP

    shapes = [("example", 1024, 2816, (8192, 32768)), ("llama-3.2-1b", 2048, 8192, (2048, 8192)),
              ("llama-3-8b", 4096, 14336, (1024, 4096))]  # fmt: skip
    if CPU:
        shapes = [("tiny", 32, 96, (64,))]
    rows_out, text = [], io.StringIO()
    for name, hidden, inter, counts in shapes:
        cfg = LlamaConfig(hidden_size=hidden, intermediate_size=inter)
        torch.manual_seed(0)
        base = LlamaMLP(cfg).to(DEV, DTYPE)
        ours = SwiGLUMLP.from_module(base)
        for m in counts:
            x = torch.randn(m, hidden, device=DEV, dtype=DTYPE, requires_grad=True)
            dy = torch.randn(m, hidden, device=DEV, dtype=DTYPE)
            for variant, module, compiled in (("LlamaMLP", base, False),
                                              ("LlamaMLP compiled", base, True),
                                              ("SwiGLUMLP", ours, False),
                                              ("SwiGLUMLP compiled", ours, True)):  # fmt: skip
                torch.compiler.reset()
                run = torch.compile(module) if compiled else module

                def step():
                    run(x).backward(dy)
                    x.grad = None
                    for p_ in module.parameters():
                        p_.grad = None

                for _ in range(5):
                    step()
                timing = _host_and_wall(step, 20)
                _sync()
                acts = [ProfilerActivity.CPU] + ([] if CPU else [ProfilerActivity.CUDA])
                with profile(activities=acts) as prof:
                    for _ in range(10):
                        step()
                    _sync()
                events = prof.key_averages()
                kernels = [e for e in events if getattr(e, "self_device_time_total", 0) > 0]
                gpu_us = sum(e.self_device_time_total for e in kernels) / 10
                row = {"shape": name, "hidden": hidden, "intermediate": inter, "rows": m,
                       "variant": variant, "gpu_us": gpu_us, **timing}  # fmt: skip
                rows_out.append(row)
                say(f"{name} {m} {variant}: gpu {gpu_us:.1f} us, host {timing['host_ms']:.3f} ms, "
                    f"wall {timing['wall_ms']:.3f} ms")  # fmt: skip
                text.write(
                    f"==== {name} rows {m} {variant}: {gpu_us:.1f} us of kernels per iteration\n"
                )
                for e in sorted(kernels, key=lambda e: -e.self_device_time_total):
                    text.write(
                        f"  {e.self_device_time_total / 10:9.1f} us  x{e.count // 10:<3} "
                        f"{e.key[:110]}\n"
                    )
    (out / "gpu_small.json").write_text(json.dumps(rows_out, indent=1) + "\n")
    (out / "gpu_small_kernels.txt").write_text(text.getvalue())
    say("\nshape rows variant gpu_us host_ms wall_ms")
    for r in rows_out:
        say(f"  {r['shape']:13} {r['rows']:6} {r['variant']:19} {r['gpu_us']:9.1f} "
            f"{r['host_ms']:8.3f} {r['wall_ms']:8.3f}")  # fmt: skip


def split(out: Path) -> None:
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaMLP

    import flash_swiglu
    from flash_swiglu.ops import train as T

    if CPU:

        def bench(f):
            t0 = time.perf_counter()
            f()
            return 1e3 * (time.perf_counter() - t0)
    else:
        from triton.testing import do_bench

        def bench(f):
            return do_bench(f, warmup=25, rep=100, return_mode="median")

    shapes = [("example", 1024, 2816, (8192, 32768)), ("llama-3.2-1b", 2048, 8192, (2048, 8192)),
              ("qwen2.5-7b", 3584, 18944, (4096,)),
              ("llama-3-8b", 4096, 14336, (1024, 4096, 8192))]  # fmt: skip
    if CPU:
        shapes = [("tiny", 32, 96, (64,))]
    rows = []
    for name, hidden, inter, counts in shapes:
        cfg = LlamaConfig(hidden_size=hidden, intermediate_size=inter)
        torch.manual_seed(0)
        base = LlamaMLP(cfg).to(DEV, DTYPE)
        ws = [base.gate_proj.weight, base.up_proj.weight, base.down_proj.weight]
        compiled = torch.compile(base)
        for m in counts:
            x = torch.randn(m, hidden, device=DEV, dtype=DTYPE, requires_grad=True)
            dy = torch.randn(m, hidden, device=DEV, dtype=DTYPE)

            def ours(route):
                def f():
                    T.SPLIT_DH = route
                    try:
                        y = flash_swiglu.swiglu_mlp(x, *ws)
                        return torch.autograd.grad(y, [x, *ws], dy)
                    finally:
                        T.SPLIT_DH = None

                return f

            def peer(module):
                return lambda: torch.autograd.grad(module(x), [x, *ws], dy)

            variants = {"fused": ours(False), "split": ours(True), "LlamaMLP": peer(base),
                        "LlamaMLP compiled": peer(compiled)}  # fmt: skip
            fused_g, split_g = variants["fused"](), variants["split"]()
            diff = max(((a.float() - b.float()).abs().max() / b.float().abs().max()).item()
                       for a, b in zip(split_g, fused_g, strict=True))  # fmt: skip
            for f in variants.values():
                f()
            times = {k: [] for k in variants}
            names = list(variants)
            for r in range(3):
                for k in names[r % len(names) :] + names[: r % len(names)]:
                    times[k].append(bench(variants[k]))
            row = {"shape": name, "hidden": hidden, "intermediate": inter, "rows": m,
                   "split_vs_fused_max_rel_diff": diff,
                   **{k: statistics.median(v) for k, v in times.items()},
                   "rounds": times}  # fmt: skip
            rows.append(row)
            say(f"{name} {m}: " + ", ".join(f"{k} {row[k]:.3f}" for k in variants)
                + f" ms; split/fused grads max rel diff {diff:.2e}")  # fmt: skip
        torch.compiler.reset()
    (out / "split.json").write_text(json.dumps(rows, indent=1) + "\n")
    say("\nshape rows fused split LlamaMLP compiled | split/fused")
    for r in rows:
        say(
            f"  {r['shape']:13} {r['rows']:6} {r['fused']:8.3f} {r['split']:8.3f} "
            f"{r['LlamaMLP']:8.3f} {r['LlamaMLP compiled']:8.3f} | {r['split'] / r['fused']:.3f}"
        )


STAGES = {"host": host, "gpu-small": gpu_small, "split": split}


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("stages", nargs="+", choices=tuple(STAGES))
    p.add_argument("--out", type=Path, default=Path("/tmp/out/explore"))
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    for stage in a.stages:
        STAGES[stage](a.out)


if __name__ == "__main__":
    sys.exit(main())

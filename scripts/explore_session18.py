"""Explorations of session 18: the questions session 17's exploration left.

    PYTHONPATH=src python scripts/explore_session18.py host fwd70b bwd70b --out DIR

- ``host``: in ``explore_session17.py fwd-shapes`` Llama-3.2-1B's MLP at 1024 tokens took
  0.527 ms forward against eager's 0.196 (through that script's settings wrapper, which adds
  host time of its own); in run ``h200-s17-mlp-8b-1k-4k`` our 8B forward issued in 0.242 ms
  of host time against eager's 0.123. Where the host time goes: the training step of our
  ``SwiGLUMLP`` and of eager's MLP, no wrapper, at Llama-3.2-1B / 1024 tokens and at the
  example's MLP (hidden 1024, intermediate 2816) at 8192 tokens; ``host_ms`` of fwd, of
  fwd+bwd, then ``cProfile`` over 200 of our steps (synchronised every 20, so the launch
  queue never fills). -> ``host.json``, ``host_<case>.txt`` (the profile, by own and by
  cumulative time). Session 18's call timed the no-grad forward without a first untimed
  call, so its ``nograd_fwd_host_ms`` of ours (24 / 17 ms) includes compiling the inference
  kernels; the warm-up call is added since.
- ``fwd70b``: ``fwd-shapes`` had Llama-3-70B's forward at 4096 tokens at 8.892 ms with the
  Gluon forward that saves the pre-activation (``forward_saving_ws`` from 1024 rows) against
  8.516 with the Triton one (eager 8.857), while at 1024 the Gluon one was ahead (2.172
  against 2.233). At 2048, 4096, 8192 and 16384 tokens, fwd: eager, ``LigerSwiGLUMLP``, ours,
  ours with the Triton forward (``MIN_M`` beyond the count). -> ``fwd70b.json``.
- ``bwd70b``: the same run had our 70B step at 4096 tokens 2.4% slower than eager (26.42
  against 25.78 ms), its backward 17.5 against 16.9. The kernels of each backend's backward
  at 4096 tokens, from ``torch.profiler`` over three backward passes (CUDA time by kernel
  name), then fwd+bwd and bwd timed as the benchmark times: eager, ``LigerSwiGLUMLP``, ours,
  ours with the Triton backward (``mlp_backward_ws`` off). -> ``bwd70b.json``.
"""

from __future__ import annotations

import cProfile
import io
import json
import pstats
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import explore_session12 as S12
import explore_session16 as S16
import explore_session17 as S17

from flash_swiglu.bench.cases import linear as BL
from flash_swiglu.bench.cases import mlp as B
from flash_swiglu.bench.timing import host_ms

say = S16.say
_report = S17._report  # one line of median times and speedups over eager
HOST_CASES = {"llama-3.2-1b-1024": ("llama-3.2-1b", 2048, 8192, 1024),
              "example-8192": ("example", 1024, 2816, 8192)}  # fmt: skip
FWD70_TOKENS = (2048, 4096, 8192, 16384)
BACKENDS = {"torch": "torch", "liger": "liger", "ours": "triton"}
PEERS = {label: (backend, None, True, None) for label, backend in BACKENDS.items()}


def _off(kind: str) -> tuple:
    """Ours with the Gluon kernel ``kind`` at no row count (its Triton kernel instead)."""
    return ("triton", {kind: {"MIN_M": 1 << 30}}, True, None)


def _step(case: B.MLPCase, backend: str, inputs, dout) -> B.Step:
    return B.Step(backend, case.module(backend, S16.DEVICE), inputs, dout)


def _profile(fn, calls: int = 200) -> str:
    prof = cProfile.Profile()
    prof.enable()
    for i in range(calls):
        fn()
        if i % 20 == 19:
            torch.cuda.synchronize()
    prof.disable()
    text = io.StringIO()
    for key in ("tottime", "cumulative"):
        pstats.Stats(prof, stream=text).sort_stats(key).print_stats(45)
    return text.getvalue()


def _calls(step: B.Step):
    """``(forward, whole step)`` of ``step``: the benchmark's fwd+bwd call after its setup."""
    setup, call = step.pass_call("fwd+bwd")
    return step.forward, lambda: (setup(), call())


def host(out: Path) -> dict:
    rows = {}
    for name, (model, hidden, inter, m) in HOST_CASES.items():
        case = B.MLPCase(model, hidden, inter, m, S16.DTYPE)
        inputs, dout = case.make_inputs(S16.DEVICE, torch.Generator(S16.DEVICE).manual_seed(0))
        row = rows[name] = {}
        for backend in ("torch", "triton"):
            fwd, full = _calls(_step(case, backend, inputs, dout))
            for f in (fwd, full):  # warm-up (compilation, tables)
                f()
            torch.cuda.synchronize()
            row[backend] = {"fwd_host_ms": host_ms(fwd, 50), "step_host_ms": host_ms(full, 50)}
            with torch.no_grad():  # its own kernels: compiled by a first call, untimed
                fwd()
                row[backend]["nograd_fwd_host_ms"] = host_ms(fwd, 50)
            if backend == "triton":
                (out / f"host_{name}.txt").write_text(_profile(full))
            del fwd, full
        say(f"host {name}: " + ", ".join(
            f"{b} fwd {r['fwd_host_ms']:.3f} / step {r['step_host_ms']:.3f} / no-grad fwd "
            f"{r['nograd_fwd_host_ms']:.3f} ms" for b, r in row.items()))  # fmt: skip
        (out / "host.json").write_text(json.dumps(rows, indent=1))
    return rows


def _case70(m: int) -> B.MLPCase:
    hidden, inter = BL.MODELS["llama-3-70b"]
    return B.MLPCase("llama-3-70b", hidden, inter, m, S16.DTYPE)


def fwd70b(out: Path) -> list[dict]:
    variants = PEERS | {"ours triton-fwd": _off("forward_saving_ws")}
    rows = []
    for m in FWD70_TOKENS:
        for pass_, results in S16._measured(m, variants, ("fwd",), _case70(m)).items():
            rows.append(dict(m=m, pass_=pass_, results=results))
            (out / "fwd70b.json").write_text(json.dumps(rows, indent=1))
            _report("fwd70b", m, pass_, results)
    return rows


ACTIVITIES = [torch.profiler.ProfilerActivity.CUDA]


def _kernels(step: B.Step, passes: int = 3) -> dict[str, float]:
    """CUDA milliseconds per backward pass by kernel name."""
    setup, call = step.pass_call("bwd")
    setup(), call()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=ACTIVITIES) as prof:
        for _ in range(passes):
            setup()
            torch.cuda.synchronize()
            call()
            torch.cuda.synchronize()
    with torch.profiler.profile(activities=ACTIVITIES) as fprof:
        for _ in range(passes):  # the forwards of the setups, subtracted below
            setup()
            torch.cuda.synchronize()
    times: dict[str, float] = {}
    fwd_times = {e.key: e.device_time_total for e in fprof.key_averages()}
    for e in prof.key_averages():
        total = e.device_time_total - fwd_times.get(e.key, 0.0)
        if total > 1.0:  # microseconds over all passes
            times[e.key[:90]] = round(total / passes / 1e3, 4)
    return dict(sorted(times.items(), key=lambda kv: -kv[1]))


def bwd70b(out: Path) -> dict:
    m = 4096
    case = _case70(m)
    inputs, dout = case.make_inputs(S16.DEVICE, torch.Generator(S16.DEVICE).manual_seed(0))
    result: dict = {"kernels": {}}
    for backend in ("torch", "liger", "triton"):
        try:
            step = _step(case, backend, inputs, dout)
        except Exception as e:  # a peer that does not import
            say(f"bwd70b {backend}: skipped ({e})")
            continue
        kernels = result["kernels"][backend] = _kernels(step)
        say(f"bwd70b kernels {backend}: total {sum(kernels.values()):.3f} ms; " + ", ".join(
            f"{k[:48]} {v:.3f}" for k, v in list(kernels.items())[:8]))  # fmt: skip
        del step
    del inputs, dout
    torch.cuda.empty_cache()
    variants = PEERS | {"ours triton-bwd": _off("mlp_backward_ws")}
    timed = S16._measured(m, variants, ("fwd+bwd", "bwd"), case)
    result["timed"] = timed
    for pass_, results in timed.items():
        _report("bwd70b", m, pass_, results)
    (out / "bwd70b.json").write_text(json.dumps(result, indent=1))
    return result


def main() -> None:
    S12.run_stages({"host": host, "fwd70b": fwd70b, "bwd70b": bwd70b}, ["host"])


if __name__ == "__main__":
    main()

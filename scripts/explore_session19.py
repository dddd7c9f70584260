"""Explorations written in session 18, which spent its device time on its runs, for the next
session's H200 time.

    PYTHONPATH=src python scripts/explore_session19.py fwd-tiles host-parts --out DIR

- ``fwd-tiles``: session 18's ``fwd70b`` (``explore_session18.py``) had ``LigerSwiGLUMLP``'s
  forward 0.8-2.3% ahead of ours on Llama-3-70B at 2048-16384 tokens (two cuBLAS products,
  its elementwise kernel and the down projection, against our Gluon forward that saves the
  pre-activation, then the same down projection). That forward's one table entry
  (``forward_saving_ws``: ping-pong, 128 x 64 tiles, 5 slots) was chosen on Llama-3-8B at
  8192 tokens in session 6; the projection without saving (``swiglu_linear``) runs 70B on
  the cooperative schedule with 128 x 128 tiles and 3 slots (``ws`` entry ``n28672_k8192``
  of ``configs/h200_linear.json``), 0.99-1.01 of cuBLAS's rate. Forward alone on 70B at 2048,
  4096 and 8192 tokens, on Qwen2.5-7B at 4096 and 8192 (never timed against Liger's forward:
  session 18's ``fwd-shapes`` ran without Liger) and on 8B at 8192 (the entry's own case, as
  a control), and fwd+bwd on 70B at 4096: eager, ``LigerSwiGLUMLP``, ours, and ours with each
  of ``FWD_CANDIDATES`` as the ``forward_saving_ws`` entry, each a step of the benchmark's
  own checked against the float64 step and timed as the benchmark times
  (``explore_session16._measured``: settled, three rotated rounds). -> ``fwd_tiles.json``.
  A winner on one shape alone goes into the entry's ``shapes`` item for that model's weights
  (``"n28672_k8192"`` for 70B; ``ops.train.ws_entry``, added in session 18).
- ``host-parts``: session 18's ``host`` stage had our MLP step issue in 1.100 ms of host time
  against eager's 0.903 on Llama-3.2-1B at 1024 tokens (0.286 against 0.180 for the forward),
  the two bound by the host at that size, and a cProfile that inflates each Python call. The
  host time of each layer of the step on its own, unprofiled (``explore_session11._host_us``:
  median of seven loops of ten calls, synchronised between loops, so no call waits for the
  GPU), at the example's MLP (hidden 1024, intermediate 2816) and its 16 x 512 tokens:
  ``SwiGLUMLP`` forward (grad on), ``swiglu_mlp``, ``ops.mlp.forward_train`` (no autograd),
  ``ops.train.forward_saving``, ``ops.train.launch`` and ``ws_mlp.glu_forward_ws`` with
  preallocated outputs, its three descriptors alone, the table and alignment checks
  (``ws_config``, ``fused_ok``, ``rows``), the down projection's ``F.linear``; the backward
  through ``ops.mlp.backward`` (the saved tensors kept intact: the column-sliced path, two
  slices here, where a step's own backward overwrites them in one launch) and
  ``ws_mlp.mlp_backward_ws`` alone; eager's forward and step beside them. -> ``host_parts.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

import explore_session11 as S11
import explore_session12 as S12
import explore_session16 as S16
import explore_session18 as S18

import flash_swiglu
from flash_swiglu.bench.cases import linear as BL
from flash_swiglu.bench.cases import mlp as B
from flash_swiglu.ops import mlp as OM
from flash_swiglu.ops import train as T

say = S16.say
# label -> forward_saving_ws keys merged over the committed entry; the first two are the
# projection's ``ws`` entries for 70B and 8B
FWD_CANDIDATES = {
    "coop 128 s3 g8": dict(COOP=True, BLOCK_H=128, STAGES=3, GROUP_M=8),
    "coop 128 s4 g16": dict(COOP=True, BLOCK_H=128, STAGES=4, GROUP_M=16),
    "ping 64 s4": dict(STAGES=4),
    "ping 64 s6": dict(STAGES=6),
    "ping 64 s5 g16": dict(GROUP_M=16),
    "coop 128 s3 g16": dict(COOP=True, BLOCK_H=128, STAGES=3, GROUP_M=16),
}  # fmt: skip
# Not a candidate: the ping-pong entry with its epilogue in 2 parts (2 spill instructions in the
# sm_90 compile under Triton 3.9, session 18).
CASES = [("llama-3-70b", 2048, ("fwd",)), ("llama-3-70b", 4096, ("fwd", "fwd+bwd")),
         ("llama-3-70b", 8192, ("fwd",)), ("qwen2.5-7b", 4096, ("fwd",)),
         ("qwen2.5-7b", 8192, ("fwd",)), ("llama-3-8b", 8192, ("fwd",))]  # fmt: skip


def _variants() -> dict:
    variants = dict(S18.PEERS)
    for label, update in FWD_CANDIDATES.items():
        variants[f"ours {label}"] = ("triton", {"forward_saving_ws": update}, True, None)
    return variants


def fwd_tiles(out: Path) -> list[dict]:
    rows = []
    for model, m, passes in CASES:
        hidden, inter = BL.MODELS[model]
        case = B.MLPCase(model, hidden, inter, m, S16.DTYPE)
        for pass_, results in S16._measured(m, _variants(), passes, case).items():
            rows.append(dict(model=model, m=m, pass_=pass_, results=results))
            (out / "fwd_tiles.json").write_text(json.dumps(rows, indent=1))
            S18._report(f"fwd-tiles {model}", m, pass_, results)
    return rows


# hidden K, intermediate N, rows M: the example's MLP at its default 16 x 512 tokens (the
# Gluon kernels both ways: ``MIN_M`` 1024 and 2048)
HOST_SHAPE = (1024, 2816, 8192)
ACT = dict(activation="silu", alpha=1.702, limit=7.0)


def step_call(module, x: torch.Tensor, dy: torch.Tensor):
    """One training step of ``module`` (gradients cleared, forward, backward of ``dy``) as a
    call with no arguments."""

    def call():
        x.grad = None
        module.zero_grad(set_to_none=True)
        module(x).backward(dy)

    return call


def _host_calls() -> dict:
    """label -> call, each a layer of our MLP step (or eager's) at ``HOST_SHAPE``."""
    from flash_swiglu.kernels import ws_mlp

    k, n, m = HOST_SHAPE
    dev, dt = S16.DEVICE, S16.DTYPE
    mlp = flash_swiglu.SwiGLUMLP(k, n, device=dev, dtype=dt)
    eager = B.eager_module(k, n, "silu")().to(dev, dt)
    wg, wu, wd = (p.detach() for p in (mlp.gate_proj.weight, mlp.up_proj.weight,
                                       mlp.down_proj.weight))  # fmt: skip
    x = torch.randn(m, k, device=dev, dtype=dt, requires_grad=True)
    xd, dy = x.detach(), torch.randn(m, k, device=dev, dtype=dt)
    h, g, u = (torch.empty(m, n, device=dev, dtype=dt) for _ in "hgu")
    _, (sg, su) = T.forward_saving(xd, wg, wu, None, None, "silu", 1.702, 7.0)
    fwd_ws = T.ws_config(dt, xd.device, "silu", m, "forward_saving_ws", (n, k))
    bwd_ws = T.ws_config(dt, xd.device, "silu", m)
    needs = (True, True, True, True, False, False, False)
    args = (xd, wg, wu, wd, None, None, None)

    calls = {
        "eager step (fwd+bwd)": step_call(eager, x, dy),
        "ours step (fwd+bwd)": step_call(mlp, x, dy),
        "eager forward (grad on)": lambda: eager(x),
        "SwiGLUMLP forward (grad on)": lambda: mlp(x),
        "swiglu_mlp (grad on)": lambda: flash_swiglu.swiglu_mlp(x, wg, wu, wd),
        "ops.mlp.forward_train (no autograd)": lambda: OM.forward_train(
            *args, "silu", False, 1.702, 7.0),
        "ops.train.forward_saving": lambda: T.forward_saving(
            xd, wg, wu, None, None, "silu", 1.702, 7.0),
        "ops.train.launch (forward, outputs given)": lambda: T.launch(
            m, n, k, x=xd, wg=wg, wu=wu, g=g, u=u, h=h, store_gu=True, **ACT),
        "ws_mlp.glu_forward_ws (outputs given)": lambda: ws_mlp.glu_forward_ws(
            xd, wg, wu, None, None, h, g, u, config=fwd_ws, **ACT),
        "ws_mlp._desc x3": lambda: [ws_mlp._desc(t, [128, 64]) for t in (xd, wg, wu)],
        "ops.train.ws_config": lambda: T.ws_config(dt, xd.device, "silu", m,
                                                   "forward_saving_ws", (n, k)),
        "ops.train.fused_ok": lambda: T.fused_ok(xd, wg, wu),
        "ops.train.rows": lambda: T.rows(x),
        "F.linear (down projection)": lambda: F.linear(h, wd),
        "ops.mlp.backward (saved kept)": lambda: OM.backward(
            *args, (sg, su), dy, "silu", 1.702, 7.0, needs),
        "ws_mlp.mlp_backward_ws (dg, du apart)": lambda: ws_mlp.mlp_backward_ws(
            dy, wd, sg, su, h, g, u, config=bwd_ws, **ACT),
        "torch.mm [M, K] x [K, N]": lambda: torch.mm(xd, wg.t()),
    }  # fmt: skip
    return calls


def host_parts(out: Path) -> dict:
    result = {}
    for label, call in _host_calls().items():
        try:
            result[label] = S11._host_us(call)
        except Exception as e:  # one layer's failure leaves the others' numbers
            result[label] = f"error: {type(e).__name__}: {e}"
        value = result[label]
        say(f"host-parts {label:45s} " + (f"{value:8.1f} us" if isinstance(value, float)
                                          else value))  # fmt: skip
        (out / "host_parts.json").write_text(json.dumps(result, indent=1))
    return result


# Written in session 19, after ``host-parts`` (call 1) had our step at 1173 us per step against
# eager's 668 at ``HOST_SHAPE``, more than the layers it times add up to: is the loop waiting
# for the GPU (a synchronising call in the step, or the step's GPU time above its host time)?
SYNC_APIS = ("Synchronize", "Memcpy", "Malloc", "Free", "Memset", "EventQuery")


def _step_gpu_ms(call, steps: int = 20) -> float:
    """GPU time per call: CUDA events around ``steps`` calls, after a warm-up."""
    for _ in range(3):
        call()
    torch.cuda.synchronize()
    t0, t1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    t0.record()
    for _ in range(steps):
        call()
    t1.record()
    torch.cuda.synchronize()
    return t0.elapsed_time(t1) / steps


def host_sync(out: Path) -> dict:
    """At ``HOST_SHAPE`` and on Llama-3.2-1B at 1024 tokens, eager's step and ours: GPU time per
    step (events), host time per step (``_host_us``), and a ``torch.profiler`` trace of five
    steps: the CUDA runtime calls that can wait (``SYNC_APIS``) with their counts and host
    time, and the kernels' GPU time, tables to ``host_sync_<shape>_<backend>.txt``."""
    from torch.profiler import ProfilerActivity, profile

    result = {}
    for tag, (k, n, m) in (("example-8192", HOST_SHAPE), ("llama-3.2-1b-1024", (2048, 8192, 1024))):
        dev, dt = S16.DEVICE, S16.DTYPE
        ours = flash_swiglu.SwiGLUMLP(k, n, device=dev, dtype=dt)
        eager = B.eager_module(k, n, "silu")().to(dev, dt)
        x = torch.randn(m, k, device=dev, dtype=dt, requires_grad=True)
        dy = torch.randn(m, k, device=dev, dtype=dt)
        for name, module in (("eager", eager), ("ours", ours)):
            call = step_call(module, x, dy)
            row = dict(gpu_ms=_step_gpu_ms(call), host_us=S11._host_us(call))
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for _ in range(5):
                    call()
                torch.cuda.synchronize()
            events = prof.key_averages()
            row["waits"] = {
                e.key: dict(count=e.count / 5, host_us=e.cpu_time_total / 5)
                for e in events
                if any(api in e.key for api in SYNC_APIS)
            }
            (out / f"host_sync_{tag}_{name}.txt").write_text(
                events.table(sort_by="self_cpu_time_total", row_limit=40)
                + "\n\n"
                + events.table(sort_by="self_device_time_total", row_limit=25)
            )
            result[f"{tag} {name}"] = row
            waits = ", ".join(f"{key} x{v['count']:g} {v['host_us']:.0f} us"
                              for key, v in row["waits"].items())  # fmt: skip
            say(f"host-sync {tag:18s} {name:5s} gpu {row['gpu_ms'] * 1e3:7.1f} us/step, "
                f"host {row['host_us']:7.1f} us/step; {waits or 'no waiting calls'}")  # fmt: skip
            (out / "host_sync.json").write_text(json.dumps(result, indent=1))
    return result


def host_split(out: Path, steps: int = 50) -> dict:
    """Where our step's host time goes, inside the real step (``host-sync``, call 2: GPU work
    692 us per step against eager's 764 at ``HOST_SHAPE``, host time 1327 against 862, more
    than ``host-parts``' layers add up to). Each layer of the step is wrapped in a
    ``perf_counter`` timer (inclusive, about 1 us each) and ``steps`` unprofiled steps run;
    the forward call and the ``backward`` call of each step are timed apart, with Python's
    garbage collector on and off, for eager too. -> ``host_split.json``."""
    import gc
    import time
    from collections import defaultdict

    from flash_swiglu.kernels import ws_mlp

    acc = defaultdict(float)

    def timed(owner, name, label=None, static=False):
        real = getattr(owner, name)

        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return real(*a, **kw)
            finally:
                acc[label or f"{owner.__name__.rsplit('.', 1)[-1]}.{name}"] += (
                    time.perf_counter() - t0
                )

        setattr(owner, name, staticmethod(wrapper) if static else wrapper)
        return real

    wrapped = [(OM, "forward_train"), (OM, "backward"), (OM, "_may_overwrite_saved"),
               (T, "forward_saving"), (T, "backward"), (T, "_backward_over_saved"),
               (T, "launch"), (T, "ws_config"), (T, "fused_ok"), (T, "rows"),
               (ws_mlp, "glu_forward_ws"), (ws_mlp, "mlp_backward_ws"), (ws_mlp, "_desc"),
               (F, "linear")]  # fmt: skip
    k, n, m = HOST_SHAPE
    dev, dt = S16.DEVICE, S16.DTYPE
    ours = flash_swiglu.SwiGLUMLP(k, n, device=dev, dtype=dt)
    eager = B.eager_module(k, n, "silu")().to(dev, dt)
    x = torch.randn(m, k, device=dev, dtype=dt, requires_grad=True)
    dy = torch.randn(m, k, device=dev, dtype=dt)
    result = {}
    for name, module in (("eager", eager), ("ours", ours)):
        for gc_on in (True, False):
            originals = [(o, a, timed(o, a), False) for o, a in wrapped] if name == "ours" else []
            fn = OM._MLPFunction
            if name == "ours":
                for attr in ("forward", "backward"):
                    real = timed(fn, attr, f"_MLPFunction.{attr}", static=True)
                    originals.append((fn, attr, real, True))
            parts = defaultdict(float)
            (gc.enable if gc_on else gc.disable)()
            try:
                for i in range(steps + 5):
                    if i == 5:  # warm-up done
                        torch.cuda.synchronize()
                        acc.clear()
                        parts.clear()
                        t_all = time.perf_counter()
                    t0 = time.perf_counter()
                    x.grad = None
                    module.zero_grad(set_to_none=True)
                    t1 = time.perf_counter()
                    y = module(x)
                    t2 = time.perf_counter()
                    y.backward(dy)
                    t3 = time.perf_counter()
                    del y
                    t4 = time.perf_counter()
                    for key, a, b in (("zero_grad", t0, t1), ("module(x)", t1, t2),
                                      ("backward(dy)", t2, t3), ("del y", t3, t4)):  # fmt: skip
                        parts[key] += b - a
                total = time.perf_counter() - t_all
                torch.cuda.synchronize()
            finally:
                gc.enable()
                for owner, attr, real, static in originals:
                    setattr(owner, attr, staticmethod(real) if static else real)
            row = {"step": total / steps * 1e6}
            row.update({key: v / steps * 1e6 for key, v in parts.items()})
            row.update({key: v / steps * 1e6 for key, v in sorted(acc.items())})
            result[f"{name} gc {'on' if gc_on else 'off'}"] = row
            say(
                f"host-split {name:5s} gc {'on ' if gc_on else 'off'} "
                + ", ".join(f"{key} {v:.0f}" for key, v in row.items())
                + " (us per step)"
            )
            (out / "host_split.json").write_text(json.dumps(result, indent=1))
    return result


def main() -> None:
    stages = {
        "fwd-tiles": fwd_tiles,
        "host-parts": host_parts,
        "host-sync": host_sync,
        "host-split": host_split,
    }
    S12.run_stages(stages, ["fwd-tiles"])


if __name__ == "__main__":
    main()

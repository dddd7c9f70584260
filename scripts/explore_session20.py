"""Explorations written in session 19, after its device time was spent, for the next session's
H200 time.

    PYTHONPATH=src python scripts/explore_session20.py direct example --out DIR

Session 19 (``explore_session19.py host-sync`` and ``host-split``) found the example's MLP step
(hidden 1024, intermediate 2816, 8192 rows) bound by its host: 692 us of kernels against
eager's 764, but 1264-1327 us of host time per step against eager's 778-862. Inside the step
the two Gluon launch functions took 188 (forward) and 168 us (backward), Triton's JIT launch
the larger part of each; session 17 measured a launch of the compiled kernel itself
(``CompiledKernel[grid](*args)``) at 28 against 56 us for the JIT's, alone in a loop. Before
the library takes that path (it depends on how Triton binds arguments, which moved between
3.6 and 3.9), these stages measure what it buys inside the step and check it bit for bit.

- ``direct``: ``DirectLaunch`` wraps each Gluon kernel of ``kernels/ws_mlp.py``. Its first
  launch of a key goes through the JIT (which compiles, or finds the binary in its cache) and
  keeps the ``CompiledKernel`` it returns; later launches of the same key call that kernel
  with every argument in signature order (constexprs and defaults included, as Triton's own
  binder passes them). The key is finer than Triton's specialisation: every constexpr and
  launch option, every integer's value, each tensor's dtype and 16-byte alignment, each TMA
  descriptor's base dtype, alignment, shape, strides, block and layout. Variants: the library
  as is, direct launches, direct launches with the weights' descriptors cached (keyed by
  pointer, shape, strides, dtype, block). For each: the step's outputs and every gradient
  against the library's bit for bit (fresh inputs, the example's MLP and Llama-3-8B's at 4096
  rows), and the host time per step inside the real step (``perf_counter`` around 50
  unprofiled steps, three rounds rotated, eager beside them) at the example's MLP (8192 rows)
  and Llama-3.2-1B's (1024 rows). -> ``direct.json``.
- ``example``: ``examples/train_tiny_llama.py`` at its default size with the direct launches
  patched in (``--out DIR/example-direct``), to set beside session 19's run
  (``h200-train-tiny-llama``: 0.83x eager's tokens per second).

Written in session 20, after ``direct`` (which found no host time to gain):

- ``floor``: issue 4 asks for 1.06x eager's training step at 8192 and 16384 tokens (Llama-3-8B
  MLP); the README's bound for that (about 12.3 ms of GEMMs at 8192 tokens) adds up GEMMs
  timed alone, at the clock of a GPU that had been idle. This stage times, in the benchmark's
  harness (``measure_steps``: settled, three rotated rounds), eager's step, ours and eager's
  nine GEMMs alone (the same ``torch.mm`` layouts and shapes, the activation's three
  elementwise kernels and the add of the two ``dx`` halves left out: ``addmm`` accumulates
  the second half), at 4096 / 8192 / 16384 tokens; then runs each back to back for
  ``SUSTAIN_S`` with ``nvidia-smi`` sampling the SM clock and board power, as the step runs
  in training. If the nine GEMMs alone are not 1.06x faster than eager's step at the clock
  their own sustained work sets, no step built on cuBLAS-rate GEMMs reaches the target.
  -> ``floor.json``, ``smi_floor.csv``.
- ``sustain``: at the power limit a step's speed is set by the energy it spends, so what
  training sees is the rate of steps run back to back for seconds, not a 100 ms window. Each
  backend of the benchmark's step (eager, ``torch.compile``, ``LigerSwiGLUMLP``, ours), two
  variants of ours (the Triton kernels, ``FLASH_SWIGLU_GLUON=0``; the hand-off backward, its
  ``mlp_backward_ws`` entry swapped for session 7's ``ho_s5_p8``) and eager's nine GEMMs
  alone, each run back to back for ``SUSTAIN_S`` in three rounds whose order rotates, at 8192
  and 16384 tokens (``$SUSTAIN_TOKENS``: others), with ``nvidia-smi`` sampling the SM clock
  and power.
  -> ``sustain.json``, ``smi_sustain.csv``.
- ``flush``: Nsight Compute (``scripts/ncu_decode.py``, call 7) timed one launch of the decode
  kernel on Llama-3-8B at 8 tokens at 57.6 us from caches it had flushed and written back,
  against 63-64 us in the benchmark's replays, where each call follows a 256 MB ``zero_``
  whose dirty lines (the L2's 50 MB) are written back while the call runs. This stage times
  ours, the cuBLAS product and eager at 1, 8 and 32 tokens on the four models with
  ``measure_graph`` under both ``bench.timing.L2_FLUSH`` modes ("write": the ``zero_``;
  "read": a reduction over the same buffer, which leaves only clean lines), three rotated
  rounds, against the copy bandwidth measured in the same process. -> ``flush.json``.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import explore_session12 as S12
import explore_session16 as S16
import explore_session19 as S19

import flash_swiglu
from flash_swiglu.bench.cases import mlp as B

say = S16.say
# Launch options of ``JITFunction.run``: keyword arguments that are not kernel parameters.
OPTIONS = ("num_warps", "num_stages", "num_ctas", "maxnreg", "enable_fp_fusion", "debug")


def _key_part(value):
    """What of one argument the key holds (see the module docstring)."""
    if isinstance(value, torch.Tensor):
        return ("tensor", value.dtype, value.data_ptr() % 16 == 0)
    base = getattr(value, "base", None)
    if isinstance(base, torch.Tensor):  # a host TMA descriptor (Gluon's or Triton's)
        layout = repr(getattr(value, "layout", None))
        extra = (getattr(value, "padding", None), getattr(value, "round_f32_to_tf32", None))
        return ("desc", base.dtype, base.data_ptr() % 16 == 0, tuple(value.shape),
                tuple(value.strides), tuple(value.block_shape), layout, extra)  # fmt: skip
    if value is None or isinstance(value, (bool, int, float, str)):
        return (type(value).__name__, value)
    raise TypeError(f"no key for an argument of type {type(value).__name__}")


class DirectLaunch:
    """``jit[grid](*args, **kwargs)`` through the ``CompiledKernel`` of an earlier launch with
    the same key (the first launch of a key goes through the JIT)."""

    def __init__(self, jit):
        self.jit = jit
        self.signature = inspect.signature(jit.fn)
        self.cache: dict = {}
        self.jit_launches = 0

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.launch(grid, args, kwargs)

    def launch(self, grid, args, kwargs):
        options = {k: v for k, v in kwargs.items() if k in OPTIONS}
        params = {k: v for k, v in kwargs.items() if k not in OPTIONS}
        bound = self.signature.bind(*args, **params)
        bound.apply_defaults()
        values = list(bound.arguments.values())
        key = (tuple(sorted(options.items())), tuple(_key_part(v) for v in values))
        compiled = self.cache.get(key)
        if compiled is None:
            self.jit_launches += 1
            self.cache[key] = self.jit[grid](*args, **kwargs)
            return
        compiled[(*grid, 1, 1)[:3]](*values)


class DescriptorCache:
    """``ws_mlp._desc`` with the descriptors of tensors that outlive a step (the weights)
    reused: keyed by pointer, shape, strides, dtype and block; others built each call."""

    def __init__(self, real, keep: set[int]):
        self.real, self.keep, self.cache = real, keep, {}

    def __call__(self, t, block):
        if t.data_ptr() not in self.keep:
            return self.real(t, block)
        key = (t.data_ptr(), tuple(t.shape), tuple(t.stride()), t.dtype, tuple(block))
        desc = self.cache.get(key)
        if desc is None:
            desc = self.cache[key] = self.real(t, block)
        return desc


KERNELS = ("glu_forward_ws_kernel", "mlp_backward_ws_kernel", "mlp_backward_handoff_kernel")


class Patched:
    """Context: the Gluon kernels of ``ws_mlp`` launched through ``DirectLaunch`` (and, with
    ``weights``, the weights' descriptors cached)."""

    def __init__(self, weights: tuple[torch.Tensor, ...] | None = None):
        from flash_swiglu.kernels import ws_mlp

        self.ws_mlp, self.weights, self.saved = ws_mlp, weights, {}

    def __enter__(self):
        for name in KERNELS:
            self.saved[name] = getattr(self.ws_mlp, name)
            setattr(self.ws_mlp, name, DirectLaunch(self.saved[name]))
        if self.weights is not None:
            self.saved["_desc"] = self.ws_mlp._desc
            keep = {w.data_ptr() for w in self.weights}
            self.ws_mlp._desc = DescriptorCache(self.saved["_desc"], keep)
        return self

    def __exit__(self, *exc):
        for name, real in self.saved.items():
            setattr(self.ws_mlp, name, real)


def _module(k: int, n: int, seed: int) -> flash_swiglu.SwiGLUMLP:
    torch.manual_seed(seed)
    return flash_swiglu.SwiGLUMLP(k, n, device=S16.DEVICE, dtype=S16.DTYPE)


def _grads(module, x, dy) -> dict[str, torch.Tensor]:
    x.grad = None
    module.zero_grad(set_to_none=True)
    y = module(x)
    y.backward(dy)
    out = {"y": y.detach(), "x.grad": x.grad}
    out.update({name: p.grad for name, p in module.named_parameters()})
    return out


def _variant(label: str, module):
    if label == "library":
        return contextlib.nullcontext()
    weights = tuple(module.parameters())
    return Patched(weights if label == "direct + weight descriptors" else None)


VARIANTS = ("library", "direct", "direct + weight descriptors")
SHAPES = {"example-8192": (1024, 2816, 8192), "llama-3.2-1b-1024": (2048, 8192, 1024),
          "llama-3-8b-4096": (4096, 14336, 4096)}  # fmt: skip


def _same_bits(k: int, n: int, m: int) -> dict[str, bool]:
    """Each variant's step against the library's, bit for bit, on fresh inputs."""
    g = torch.Generator(device=S16.DEVICE).manual_seed(m)
    x = torch.randn(m, k, device=S16.DEVICE, dtype=S16.DTYPE, generator=g, requires_grad=True)
    dy = torch.randn(m, k, device=S16.DEVICE, dtype=S16.DTYPE, generator=g)
    module = _module(k, n, 0)
    reference = _grads(module, x, dy)
    result = {}
    for label in VARIANTS[1:]:
        with _variant(label, module):
            for _ in range(2):  # the second call is the direct one
                got = _grads(module, x, dy)
        result[label] = all(torch.equal(got[key], reference[key]) for key in reference)
    return result


def _step_host_us(call, steps: int = 50) -> float:
    for _ in range(5):
        call()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        call()
    host = (time.perf_counter() - t0) / steps * 1e6
    torch.cuda.synchronize()
    return host


def direct(out: Path) -> dict:
    result = {"same_bits": {}, "host_us": {}}
    for tag in ("example-8192", "llama-3-8b-4096"):
        result["same_bits"][tag] = same = _same_bits(*SHAPES[tag])
        say(f"direct same bits {tag}: " + ", ".join(f"{k} {v}" for k, v in same.items()))
    for tag in ("example-8192", "llama-3.2-1b-1024"):
        k, n, m = SHAPES[tag]
        x = torch.randn(m, k, device=S16.DEVICE, dtype=S16.DTYPE, requires_grad=True)
        dy = torch.randn(m, k, device=S16.DEVICE, dtype=S16.DTYPE)
        ours = _module(k, n, 0)
        eager = B.eager_module(k, n, "silu")().to(S16.DEVICE, S16.DTYPE)

        times: dict[str, list[float]] = {}
        for _ in range(3):  # rounds, each variant once per round
            times.setdefault("eager", []).append(_step_host_us(S19.step_call(eager, x, dy)))
            for label in VARIANTS:
                with _variant(label, ours):
                    times.setdefault(label, []).append(_step_host_us(S19.step_call(ours, x, dy)))
        result["host_us"][tag] = times
        say(f"direct host us/step {tag}: " + ", ".join(
            f"{label} {statistics.median(v):.0f} ({min(v):.0f}-{max(v):.0f})"
            for label, v in times.items()))  # fmt: skip
        (out / "direct.json").write_text(json.dumps(result, indent=1))
    return result


def example(out: Path) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    import train_tiny_llama

    with Patched():
        result = train_tiny_llama.main(["--out", str(out / "example-direct")])
    runs = result["runs"]
    rates = ", ".join(f"{name} {run['tokens_per_s']:,.0f} tokens/s" for name, run in runs.items())
    say(f"example with direct launches: {rates}")
    return result


FLOOR_TOKENS = (4096, 8192, 16384)
SUSTAIN_S = 2.0


def _nine_gemms(m: int, k: int, n: int):
    """Eager's nine GEMMs of one step of the MLP ``[k -> n -> k]`` at ``m`` tokens, on random
    operands of the right shapes and layouts, and nothing else."""
    g = torch.Generator(device=S16.DEVICE).manual_seed(m)

    def randn(*shape, std=1.0):
        return torch.randn(shape, device=S16.DEVICE, dtype=S16.DTYPE, generator=g).mul_(std)

    x, dy = randn(m, k), randn(m, k)
    wg, wu, wd = randn(n, k, std=k**-0.5), randn(n, k, std=k**-0.5), randn(k, n, std=n**-0.5)
    h, dg, du = randn(m, n), randn(m, n), randn(m, n)

    def call():
        gate, up = x @ wg.T, x @ wu.T  # forward: F.linear's products
        y = h @ wd.T
        dh = dy @ wd  # backward of down_proj: input, then weight gradient
        dwd = dy.T @ h
        dx = torch.addmm(dg @ wg, du, wu)  # the two input gradients, summed by the second
        dwg, dwu = dg.T @ x, du.T @ x
        return gate, up, y, dh, dwd, dx, dwg, dwu

    return call


def _smi_mean(rows: list[tuple[float, float, float]], t0: float, t1: float) -> dict:
    inside = [(c, p) for t, c, p in rows if t0 <= t <= t1]
    if not inside:
        return {"samples": 0}
    return {"samples": len(inside), "sm_mhz": statistics.mean(c for c, _ in inside),
            "power_w": statistics.mean(p for _, p in inside)}  # fmt: skip


def _read_smi(path: Path) -> list[tuple[float, float, float]]:
    import datetime

    rows = []
    for line in path.read_text().splitlines():
        parts = [p.strip() for p in line.split(",")]
        try:
            stamp = datetime.datetime.strptime(parts[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
            rows.append((stamp, float(parts[1]), float(parts[2])))
        except (ValueError, IndexError):
            continue
    return rows


def floor(out: Path) -> dict:
    import explore_session14 as S14

    from flash_swiglu.bench.cases.mlp import Step
    from flash_swiglu.bench.timing import interleaved_rounds, measure_steps

    k, n = 4096, 14336
    result = {"tokens": {}, "sustain_s": SUSTAIN_S}
    with S14.clock_samples(out / "smi_floor.csv"):
        for m in FLOOR_TOKENS:
            gen = torch.Generator(device=S16.DEVICE).manual_seed(1000 + m)
            inputs = [torch.randn(1, m, k, device=S16.DEVICE, dtype=S16.DTYPE, generator=gen)]
            for shape, fan_in in (((n, k), k), ((n, k), k), ((k, n), n)):
                w = torch.randn(shape, device=S16.DEVICE, dtype=S16.DTYPE, generator=gen)
                inputs.append(w.mul_(fan_in**-0.5))
            dout = torch.randn(1, m, k, device=S16.DEVICE, dtype=S16.DTYPE, generator=gen)
            eager = B.eager_module(k, n, "silu")().to(S16.DEVICE, S16.DTYPE)
            ours = flash_swiglu.SwiGLUMLP(k, n, device=S16.DEVICE, dtype=S16.DTYPE)
            steps = {"eager": Step("torch", eager, inputs, dout),
                     "ours": Step("triton", ours, inputs, dout)}  # fmt: skip
            calls = {label: step.pass_call("fwd+bwd") for label, step in steps.items()}
            calls["nine GEMMs"] = (lambda: None, _nine_gemms(m, k, n))
            spans: dict[str, list] = {label: [] for label in calls}

            def measure_one(label, calls=calls, spans=spans):
                setup, call = calls[label]
                t0 = time.time()
                timing, _ = measure_steps(call, S16.DEVICE, setup)
                spans[label].append((t0, time.time()))
                return timing.median_ms

            rounds = interleaved_rounds(list(calls), measure_one)
            sustain = {}
            for label, (setup, call) in calls.items():  # back to back, as in training
                count, ms, span = _sustained(setup, call)
                sustain[label] = {"steps": count, "ms_per_step": ms, "span": span}
            result["tokens"][m] = {"rounds_ms": rounds, "spans": spans, "sustain": sustain}
            del steps, calls, eager, ours, inputs, dout
            torch.cuda.empty_cache()
            (out / "floor.json").write_text(json.dumps(result, indent=1, default=str))
    smi = _read_smi(out / "smi_floor.csv")
    for m, r in result["tokens"].items():
        for s in r["sustain"].values():
            s.update(_smi_mean(smi, *s["span"]))
        for label, sp in r["spans"].items():
            r.setdefault("timed_smi", {})[label] = [_smi_mean(smi, *span) for span in sp]
        med = {label: statistics.median(t for t in v if isinstance(t, float))
               for label, v in r["rounds_ms"].items()}  # fmt: skip
        sus = r["sustain"]
        say(f"floor M={m}: eager {med['eager']:.3f} ms, ours {med['ours']:.3f} "
            f"({med['eager'] / med['ours']:.3f}x), nine GEMMs {med['nine GEMMs']:.3f} "
            f"({med['eager'] / med['nine GEMMs']:.3f}x eager); sustained ms/step "
            + ", ".join(f"{label} {s['ms_per_step']:.3f} @ {s.get('sm_mhz', 0):.0f} MHz "
                        f"{s.get('power_w', 0):.0f} W" for label, s in sus.items()))  # fmt: skip
    (out / "floor.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def _sustained(setup, call) -> tuple[int, float, tuple[float, float]]:
    """``(steps, ms per step, (start, end))`` of ``call`` run back to back for ``SUSTAIN_S``
    (``setup`` before each; the host waits every 8 steps so it stays a few steps ahead)."""
    torch.cuda.synchronize()
    t0 = time.time()
    count = 0
    while time.time() - t0 < SUSTAIN_S:
        setup()
        call()
        count += 1
        if count % 8 == 0:
            torch.cuda.synchronize()
    torch.cuda.synchronize()
    t1 = time.time()
    return count, (t1 - t0) * 1e3 / count, (t0, t1)


@contextlib.contextmanager
def _gluon_off():
    old = os.environ.get("FLASH_SWIGLU_GLUON")
    os.environ["FLASH_SWIGLU_GLUON"] = "0"
    try:
        yield
    finally:
        if old is None:
            del os.environ["FLASH_SWIGLU_GLUON"]
        else:
            os.environ["FLASH_SWIGLU_GLUON"] = old


@contextlib.contextmanager
def _handoff():
    from flash_swiglu.kernels import ws_mlp
    from flash_swiglu.ops import train as T

    table = T.load_table(torch.cuda.get_device_name())
    old = table["mlp_backward_ws"]
    table["mlp_backward_ws"] = dict(ws_mlp.HANDOFF_CONFIG, HANDOFF=True, EPILOGUE_SPLIT=8,
                                    MIN_M=old.get("MIN_M", 0))  # fmt: skip
    try:
        yield
    finally:
        table["mlp_backward_ws"] = old


def _within(ctx, f):
    def call():
        with ctx():
            return f()

    return call


# Token counts of ``sustain``: 8192 and 16384, or those of ``$SUSTAIN_TOKENS`` (comma-separated).
SUSTAIN_TOKENS = tuple(int(t) for t in os.environ.get("SUSTAIN_TOKENS", "8192,16384").split(","))


def sustain(out: Path) -> dict:
    import explore_session14 as S14

    from flash_swiglu.bench.cases.mlp import MLPCase, Step

    k, n = 4096, 14336
    result = {"tokens": {}, "sustain_s": SUSTAIN_S}
    with S14.clock_samples(out / "smi_sustain.csv"):
        for m in SUSTAIN_TOKENS:
            case = MLPCase("llama-3-8b", k, n, m, S16.DTYPE)
            gen = torch.Generator(device=S16.DEVICE).manual_seed(2000 + m)
            inputs, dout = case.make_inputs(S16.DEVICE, gen)
            steps = {label: Step(backend, case.module(backend, S16.DEVICE), inputs, dout)
                     for label, backend in (("eager", "torch"), ("compile", "compile"),
                                            ("liger", "liger"), ("ours", "triton"))}  # fmt: skip
            calls = {label: step.pass_call("fwd+bwd") for label, step in steps.items()}
            for label, ctx in (("ours, Triton kernels", _gluon_off), ("ours, hand-off", _handoff)):
                variant = Step("triton", case.module("triton", S16.DEVICE), inputs, dout)
                steps[label] = variant
                setup, call = variant.pass_call("fwd+bwd")
                calls[label] = (setup, _within(ctx, call))
            calls["nine GEMMs"] = (lambda: None, _nine_gemms(m, k, n))
            for setup, call in calls.values():  # warm up (compiles) outside the rounds
                for _ in range(3):
                    setup()
                    call()
            labels = list(calls)
            rows: dict[str, list] = {label: [] for label in labels}
            for r in range(3):
                for label in labels[r:] + labels[:r]:
                    count, ms, span = _sustained(*calls[label])
                    rows[label].append({"steps": count, "ms_per_step": ms, "span": span})
            result["tokens"][m] = rows
            del steps, calls, inputs, dout
            torch.cuda.empty_cache()
            (out / "sustain.json").write_text(json.dumps(result, indent=1, default=str))
    smi = _read_smi(out / "smi_sustain.csv")
    for m, rows in result["tokens"].items():
        parts = []
        for label, rounds in rows.items():
            for row in rounds:
                row.update(_smi_mean(smi, *row["span"]))
            ms = statistics.median(row["ms_per_step"] for row in rounds)
            mhz = statistics.median(row.get("sm_mhz", 0) for row in rounds)
            spread = max(row["ms_per_step"] for row in rounds) - min(
                row["ms_per_step"] for row in rounds
            )
            parts.append(f"{label} {ms:.3f} (+-{spread / 2:.3f}) @ {mhz:.0f} MHz")
        say(f"sustain M={m} ms/step: " + ", ".join(parts))
    (out / "sustain.json").write_text(json.dumps(result, indent=1, default=str))
    return result


FLUSH_MODELS = {"llama-3.2-1b": (2048, 8192), "llama-3-8b": (4096, 14336),
                 "qwen2.5-7b": (3584, 18944), "llama-3-70b": (8192, 28672)}  # fmt: skip


def flush(out: Path) -> dict:
    from flash_swiglu import reference
    from flash_swiglu.bench import timing
    from flash_swiglu.bench.roofline import copy_bandwidth

    copy = copy_bandwidth(S16.DEVICE)  # GB/s, read + write
    result = {"copy_gbps": copy, "cases": []}
    for name, (k, n) in FLUSH_MODELS.items():
        g = torch.Generator(device=S16.DEVICE).manual_seed(k + n)
        wg = torch.randn(n, k, device=S16.DEVICE, dtype=S16.DTYPE, generator=g).mul_(k**-0.5)
        wu = torch.randn(n, k, device=S16.DEVICE, dtype=S16.DTYPE, generator=g).mul_(k**-0.5)
        wcat = torch.cat([wg, wu])
        for m in (1, 8, 32):
            x = torch.randn(m, k, device=S16.DEVICE, dtype=S16.DTYPE, generator=g)
            ref = reference.swiglu_linear_reference(x.double(), wg.double(), wu.double())
            got = flash_swiglu.swiglu_linear(x, wg, wu)
            ok = (got.double() - ref).abs().max().item() <= 0.02 * ref.abs().max().item()
            silu = torch.nn.functional.silu
            calls = {"ours": lambda x=x: flash_swiglu.swiglu_linear(x, wg, wu),
                     "cublas": lambda x=x: x @ wcat.T,
                     "eager": lambda x=x: silu(x @ wg.T) * (x @ wu.T)}  # fmt: skip
            labels = [f"{b} {mode}" for mode in ("write", "read") for b in calls]

            def one(label, calls=calls):
                backend, mode = label.split()
                timing.L2_FLUSH = mode
                try:
                    return timing.measure_graph(calls[backend], timing.SETTLE_MS).median_ms
                finally:
                    timing.L2_FLUSH = "write"

            rounds = timing.interleaved_rounds(labels, one)
            nbytes = (2 * n * k + m * k + m * n) * S16.DTYPE.itemsize
            med = {label: statistics.median(v) for label, v in rounds.items()}
            frac = {label: nbytes / (ms * 1e-3) / 1e9 / copy for label, ms in med.items()}
            result["cases"].append(dict(model=name, m=m, ok=ok, rounds_ms=rounds, frac=frac))
            parts = [f"{label} {med[label] * 1e3:.1f} us {frac[label]:.0%}" for label in labels]
            say(f"flush {name} M={m} ok={ok}: " + ", ".join(parts))
            (out / "flush.json").write_text(json.dumps(result, indent=1))
    return result


def main() -> None:
    stages = {"direct": direct, "example": example, "floor": floor, "sustain": sustain,
              "flush": flush}  # fmt: skip
    S12.run_stages(stages, ["direct"])


if __name__ == "__main__":
    main()

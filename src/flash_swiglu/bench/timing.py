"""Timing one call: CUDA-graph replays (and ``do_bench``) on CUDA, a ``perf_counter`` loop on
the CPU.

The GPU time of a call (:func:`measure_graph`, what the report's rates are computed from):
the call is captured ``GRAPH_REPS`` times in one CUDA graph, each copy preceded by a read of a
256 MB buffer that evicts the L2 cache (``L2_FLUSH``), and a second graph holds the reads
alone. Each graph is replayed ``GRAPH_SAMPLES`` times between CUDA events; the time of one
call is a replay of the first minus the median replay of the second, over ``GRAPH_REPS``.
This is the kernel time from a cold L2, without the host: a 100 MB elementwise kernel runs
~25 us on an H200, less than Python, the dispatcher and the launch take to issue it
(measured there: 40-120 us per call for the eager, compiled and fused backends alike), so
per-call timing of such a shape measures the CPU. That host time is measured on its own
(:func:`host_ms`) and reported next to it.

On CUDA, do_bench times every repetition with CUDA events after a warm-up, and clears the L2
cache before each one (the clearing is outside the timed interval), so every call reads its
operands from HBM, as it would inside a model. The result is the median with the 20th and
80th percentiles, in milliseconds. The events time the GPU stream, so a call whose CPU side
(Python, dispatch, the autograd engine, launches) takes longer than its kernels is timed
partly waiting for the CPU; :func:`host_ms` measures that CPU side so the report can say so.

Training steps (``--op mlp``, :func:`measure_steps`) are timed per call with CUDA events
instead: see there why.

Every backend of a case is timed in turn, in ``ROUNDS`` rounds (:func:`interleaved_rounds`),
each round starting one backend further along the list. An H200 running large products sits
at its 700 W power limit, where its SM clock drifts between about 1400 and 1980 MHz with the
work of the last seconds: a backend timed right after a pause ran 5-10% faster than when it
followed other heavy work (``benchmarks/results/h200-session14-explore``, timings against
``nvidia-smi``'s clock). Rotating the order gives no backend the cool first slot in every
round, and the reported median is the median round's (:func:`summarize_rounds`).

Rotating does not change which backend each one follows within a round, and the clock a
timing starts at is set by its predecessor: on Llama-3-8B at 2048 tokens, our kernel timed
after Liger's slower ``gemm_swiglu`` (or first in each round, the order reversed) ran at
1.068 (1.055) of the cuBLAS product's rate, and at 0.985-0.996 when first replaying its own
call for 300 ms (session 15,
``benchmarks/results/h200-session15-explore/call1``: three cases, the list order and its
reverse, with and without settling; the settled ratios spread 0.982-0.996 on all three
cases, the unsettled 0.966-1.068). So every timing on CUDA first replays the call itself
for ``SETTLE_MS`` of GPU time (:func:`measure_graph`, :func:`measure_steps`): the samples
run at the clock the call's own sustained work sets, whatever ran before it.

On the CPU (Triton's interpreter), the numbers only say that the code ran.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

QUANTILES = (0.5, 0.2, 0.8)

# CPU loop: at least this many timed calls, then more until the budget is spent.
CPU_MIN_REPS = 3
CPU_MAX_REPS = 50
CPU_BUDGET_S = 0.1


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p20_ms: float
    p80_ms: float


# Rounds of timing per case: each backend once a round, the order rotated between rounds.
ROUNDS = 3
# GPU time each timing on CUDA first spends running the call itself, untimed (module doc).
# Read at each call, so ``benchmark-swiglu --settle-ms`` can change it for a run.
SETTLE_MS = 300.0
T = TypeVar("T")
L = TypeVar("L", bound=Hashable)

GRAPH_REPS = 10
GRAPH_SAMPLES = 15
_FLUSH_BYTES = 256 * 2**20
_flush: torch.Tensor | None = None
# How the L2 is evicted before each timed call on CUDA (``benchmark-swiglu --l2-flush``; read
# at each call): "read", a reduction over the 256 MB buffer, which leaves the L2 holding clean
# lines only; or "write", its ``zero_`` (as ``triton.testing.do_bench`` does, and this harness
# until session 20), which leaves the L2's 50 MB dirty, written back to HBM while the timed
# call runs: a decode-sized call then pays for part of the flush (on an H200, Llama-3-8B's
# gate/up weights at 8 tokens: 64.2 us after a write, 56.1 after a read, 57.6 in Nsight
# Compute's own cold-cache launch; ``benchmarks/results/h200-session20-explore``).
L2_FLUSH = "read"
L2_FLUSHES = ("read", "write")
READ_EVICTED = "read-evicted"  # in the rows' "timing" of runs that evict by a read


def evict_l2(cache: torch.Tensor) -> None:
    """Evict the L2 by streaming ``cache`` (``L2_FLUSH`` says how)."""
    if L2_FLUSH == "read":
        torch.amax(cache)
    elif L2_FLUSH == "write":
        cache.zero_()
    else:
        raise ValueError(f"L2_FLUSH must be one of {L2_FLUSHES}, not {L2_FLUSH!r}")


def cold_l2_note() -> str:
    """How a CUDA timing's L2 was made cold, for the rows' ``timing``."""
    return f"cold L2 ({READ_EVICTED})" if L2_FLUSH == "read" else "cold L2"


SETTLED = "ms of the call's own untimed runs"  # in the rows' "timing" of settled runs


def settle_note() -> str:
    """How a CUDA timing settled, for the rows' ``timing`` and the report's "Times:" line."""
    return f"after {SETTLE_MS:g} {SETTLED}" if SETTLE_MS else "no settling"


def measure(fn: Callable[[], object], device: torch.device, keep: list | None = None) -> Timing:
    """Median, p20 and p80 of the time of ``fn()`` on ``device``, in milliseconds: GPU time
    from CUDA-graph replays on CUDA, wall time on the CPU. ``keep``: a list that receives a
    copy of the last timed call's output (``_kept``), for the harness to check it."""
    if device.type == "cuda":
        return measure_graph(fn, SETTLE_MS, keep)
    return _measure_cpu(fn, keep)


def _kept(out: object) -> object:
    """A copy of a call's output (a tensor, or a tuple or list of them) that outlives the
    memory the call wrote it to (a CUDA graph's pool)."""
    if isinstance(out, torch.Tensor):
        return out.detach().clone()
    if isinstance(out, (tuple, list)):
        return type(out)(_kept(o) for o in out)
    return out


def measure_call(fn: Callable[[], object]) -> Timing:
    """``triton.testing.do_bench`` of one call at a time (L2 flushed before each): GPU time
    plus any time the GPU waits for the CPU to issue the call."""
    from triton.testing import do_bench

    median, p20, p80 = do_bench(fn, quantiles=list(QUANTILES))
    return Timing(median, p20, p80)


def measure_graph(
    fn: Callable[[], object], settle_ms: float = 0.0, keep: list | None = None
) -> Timing:
    """GPU time of one ``fn()`` from a cold L2, from CUDA-graph replays (see module doc).
    ``settle_ms``: replay the call's graph for about that much GPU time before the samples,
    so the clock they run at follows this call's own work (:func:`measure` passes
    ``SETTLE_MS``). ``keep``: set to ``[copy of the output]`` of the graph's last call, as
    the last replay left it."""
    global _flush
    if _flush is None:
        _flush = torch.empty(_FLUSH_BYTES // 4, dtype=torch.int32, device="cuda")
    cache = _flush
    # Called on a side stream (the harness runs every case on one), which is where capture
    # must happen; a backward is captured on the stream its forward ran on, so warm-up,
    # capture and replay all stay on the caller's stream.
    stream = torch.cuda.current_stream()
    if stream == torch.cuda.default_stream():
        raise RuntimeError("measure_graph must be called on a side stream")
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    with_call, flush_only = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
    with torch.cuda.graph(with_call, stream=stream):
        for _ in range(GRAPH_REPS):
            evict_l2(cache)
            out = fn()
    with torch.cuda.graph(flush_only, stream=stream):
        for _ in range(GRAPH_REPS):
            evict_l2(cache)

    def replay_ms(graph: torch.cuda.CUDAGraph) -> float:
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)

    first = replay_ms(with_call)
    replay_ms(flush_only)
    for _ in range(int(settle_ms / max(first, 1e-3))):
        with_call.replay()
    both, flush = [], []
    for _ in range(GRAPH_SAMPLES):
        both.append(replay_ms(with_call))
        flush.append(replay_ms(flush_only))
    flush_ms = torch.tensor(flush, dtype=torch.float64).median().item()
    per_call = torch.tensor([(t - flush_ms) / GRAPH_REPS for t in both], dtype=torch.float64)
    median, p20, p80 = per_call.quantile(torch.tensor(QUANTILES, dtype=torch.float64)).tolist()
    if keep is not None:
        keep[:] = [_kept(out)]  # before the graph and its memory pool go
    del with_call, flush_only, out
    return Timing(median, p20, p80)


def host_ms(fn: Callable[[], object], reps: int = 20) -> float:
    """CPU time to issue one ``fn()`` on CUDA (launches are asynchronous), in milliseconds.

    When it exceeds the measured median, the call is launch-bound: a stream of such calls
    keeps the GPU waiting for the CPU.
    """
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    elapsed = time.perf_counter() - start
    torch.cuda.synchronize()
    return elapsed / reps * 1e3


def _measure_cpu(fn: Callable[[], object], keep: list | None = None) -> Timing:
    fn()  # warm-up
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < CPU_MIN_REPS or (
        len(times) < CPU_MAX_REPS and time.perf_counter() - start < CPU_BUDGET_S
    ):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1e3)
    if keep is not None:
        keep[:] = [_kept(out)]
    q = torch.tensor(times, dtype=torch.float64).quantile(
        torch.tensor(QUANTILES, dtype=torch.float64)
    )
    median, p20, p80 = q.tolist()
    return Timing(median, p20, p80)


# Training steps: GPU time a round of calls aims at (read at each call, so ``benchmark-swiglu
# --step-ms`` can change it for a run), and the bounds on its number of calls: at least
# STEP_MIN_REPS, at most STEP_MAX_REPS for each 100 ms of STEP_ROUND_MS (``step_max_reps``).
STEP_ROUND_MS_DEFAULT = 100.0
STEP_ROUND_MS = STEP_ROUND_MS_DEFAULT
STEP_MIN_REPS = 5
STEP_MAX_REPS = 30
STEP_CPU_REPS = 2
STEP_SETTLE_MAX = 100  # untimed calls before the timed ones, at most (SETTLE_MS)


def step_max_reps() -> int:
    """The most timed calls of a round of training steps (``STEP_MAX_REPS`` per 100 ms)."""
    return max(STEP_MAX_REPS, math.ceil(STEP_MAX_REPS * STEP_ROUND_MS / 100.0))


def step_settle_note() -> str:
    """``settle_note`` for training steps, whose settling stops at ``STEP_SETTLE_MAX`` calls
    (``measure_steps``), which may be less than ``SETTLE_MS`` of GPU time."""
    if not SETTLE_MS:
        return "no settling"
    return f"after up to {SETTLE_MS:g} {SETTLED} (at most {STEP_SETTLE_MAX} steps)"


def step_note() -> str:
    """The round length of a run's training-step timings where it is not the default, for
    the rows' ``timing`` ("" at the default)."""
    if STEP_ROUND_MS == STEP_ROUND_MS_DEFAULT:
        return ""
    return f", rounds of {STEP_ROUND_MS:g} ms of steps"


def measure_steps(
    fn: Callable[[], object],
    device: torch.device,
    setup: Callable[[], object] = lambda: None,
) -> tuple[Timing, float | None]:
    """Median, p20 and p80 of the time of ``fn()``, with ``setup()`` run before each call
    outside the timed region, and the median CPU time to issue one call (None on the CPU).

    On CUDA: CUDA events around each call, the L2 flushed before each (outside the events),
    calls issued back to back without waiting, as ``do_bench`` does, so the GPU never waits
    for the CPU between calls. Not CUDA graphs: a training step of the MLP shapes runs
    milliseconds of kernels (1.7 to 30 ms for the Llama-3-8B MLP on an H200) against well under
    a millisecond to issue them (``host_ms`` says so for each result), so the events measure
    the GPU; capturing an autograd backward with compiled and autotuned third-party kernels
    in a graph would add ways to fail and nothing else. One call timed first (which also
    warms up) sets the number of calls: ``STEP_ROUND_MS`` of GPU time, within
    ``STEP_MIN_REPS`` and ``step_max_reps()``. Before the timed calls, as many untimed calls
    (each with its ``setup`` and flush) as fill ``SETTLE_MS`` of GPU time, at most
    ``STEP_SETTLE_MAX`` (module doc).
    """
    if device.type != "cuda":
        times = []
        for _ in range(STEP_CPU_REPS):
            setup()
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1e3)
        return _quantiles(times), None
    global _flush
    if _flush is None:
        _flush = torch.empty(_FLUSH_BYTES // 4, dtype=torch.int32, device="cuda")
    cache = _flush
    setup()
    torch.cuda.synchronize()
    first = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    first[0].record()
    fn()
    first[1].record()
    first[1].synchronize()
    estimate = max(first[0].elapsed_time(first[1]), 1e-3)
    reps = min(max(round(STEP_ROUND_MS / estimate), STEP_MIN_REPS), step_max_reps())
    for _ in range(min(int(SETTLE_MS / estimate), STEP_SETTLE_MAX)):
        setup()
        evict_l2(cache)
        fn()
    events = [
        (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
        for _ in range(reps)
    ]
    host = []
    for start, end in events:
        setup()
        evict_l2(cache)
        start.record()
        t0 = time.perf_counter()
        fn()
        host.append((time.perf_counter() - t0) * 1e3)
        end.record()
    torch.cuda.synchronize()
    host_median = torch.tensor(host, dtype=torch.float64).median().item()
    return _quantiles([start.elapsed_time(end) for start, end in events]), host_median


def _quantiles(times: list[float]) -> Timing:
    q = torch.tensor(times, dtype=torch.float64).quantile(
        torch.tensor(QUANTILES, dtype=torch.float64)
    )
    median, p20, p80 = q.tolist()
    return Timing(median, p20, p80)


def interleaved_rounds(
    labels: Sequence[L], measure_one: Callable[[L], T], rounds: int = ROUNDS
) -> dict[L, list[T]]:
    """``{label: [measure_one(label) of each round]}``: every label measured once a round,
    round ``r`` in the order of ``labels`` rotated left by ``r``, so each label takes a
    different place in the sequence each round (the first, after a pause, runs coolest).
    A label whose ``measure_one`` raises is dropped from later rounds and the exception is
    returned in its list (the caller reports it)."""
    results: dict[str, list] = {label: [] for label in labels}
    failed: set[str] = set()
    n = len(labels)
    for r in range(rounds):
        for label in (list(labels[r % n :]) + list(labels[: r % n])) if n else []:
            if label in failed:
                continue
            try:
                results[label].append(measure_one(label))
            except Exception as e:  # reported by the caller, the other labels go on
                results[label].append(e)
                failed.add(label)
    return results


def median_round(timings: Sequence[Timing]) -> int:
    """The index of the round whose median is the median of the rounds' (the lower middle one
    for an even count)."""
    order = sorted(range(len(timings)), key=lambda i: timings[i].median_ms)
    return order[(len(order) - 1) // 2]


def summarize_rounds(timings: Sequence[Timing]) -> dict[str, float | list[float]]:
    """The report's fields from one backend's rounds: ``median_ms``, ``p20_ms`` and ``p80_ms``
    of the round whose median is the median of the rounds' (the lower middle one for an even
    count), ``median_ms_repeat`` the round median farthest from it (the spread between
    rounds), and ``median_ms_rounds`` every round's median in the order measured."""
    medians = [t.median_ms for t in timings]
    mid = timings[median_round(timings)]
    repeat = max(medians, key=lambda m: abs(m - mid.median_ms))
    return dict(
        median_ms=mid.median_ms,
        p20_ms=mid.p20_ms,
        p80_ms=mid.p80_ms,
        median_ms_repeat=repeat,
        median_ms_rounds=medians,
    )

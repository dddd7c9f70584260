"""The README's table of the gate/up projection (``--op linear``), from the stored rows.

One line per model, dtype, activation, layout and pass; each cell a range over the token
counts M measured (each case from the most complete run of the newest timing method,
``latest_cases``):

- M >= 2048 (compute-bound): flash-swiglu's rate as a fraction of the cuBLAS product's rate
  on the same shape in the same run; its speedup over PyTorch eager; and over the fastest
  peer (eager, packed eager, ``torch.compile`` default and max-autotune, Liger), named;
- M <= 32 (decode, weight streaming): the fraction of the copy bandwidth reached by
  flash-swiglu and by the fastest peer.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from flash_swiglu.bench.cases.linear import PEERS
from flash_swiglu.bench.report import markdown_table
from flash_swiglu.bench.timing import READ_EVICTED, SETTLED

COMPUTE_BOUND_TOKENS = 2048  # and above
DECODE_TOKENS = 32  # and below
GROUP_FIELDS = ("model", "dtype", "activation", "layout", "pass")
HEADER = (
    "model",
    "dtype",
    "pass",
    f"vs cuBLAS (M >= {COMPUTE_BOUND_TOKENS})",
    "vs eager",
    "vs fastest peer",
    f"% copy BW (M <= {DECODE_TOKENS})",
    "fastest peer % copy BW",
    "runs",
)

Cases = dict[tuple, dict[str, dict[str, Any]]]  # (op, case, pass) -> {backend: row}


def timing_generation(row: dict[str, Any]) -> int:
    """How a row was timed, newer methods higher: 0 for two rounds in a fixed order (runs
    before session 14), 1 for rotated rounds (``median_ms_rounds``), 2 for rotated rounds
    each settled first (``timing.SETTLE_MS``, named in the row's ``timing``), 3 for those with
    the L2 evicted by a read (``timing.L2_FLUSH``, session 20 on)."""
    if not row.get("median_ms_rounds"):
        return 0
    timing = row.get("timing") or ""
    if SETTLED not in timing:
        return 1
    return 3 if READ_EVICTED in timing else 2


def latest_cases(rows: Iterable[dict[str, Any]]) -> Cases:
    """``{(op, case, pass): {backend: row}}`` of the GPU rows, each case from a run timed by
    the newest method (``timing_generation``); among those, from the one that measured it
    with the most backends, the most recent of those: a later run of a few backends (one
    peer added, say) does not hide the peers of a fuller one, while a run timed the newer
    way replaces the older ones. Every ratio in a line still comes from one run."""
    runs_of_case: dict[tuple, dict[tuple, dict[str, Any]]] = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        if row.get("device") == "cuda":
            key = (row["op"], row["case"], row["pass"])
            stamp = (timing_generation(row), row.get("timestamp") or "", row["run"])
            runs_of_case[key][stamp][row["backend"]] = row
    return {
        key: runs[max(runs, key=lambda stamp, r=runs: (stamp[0], len(r[stamp]), stamp))]
        for key, runs in runs_of_case.items()
    }


def _measured(row: dict[str, Any] | None) -> bool:
    return bool(row and row.get("passed") and row.get("median_ms"))


def _range(values: Sequence[float], fmt: Callable[[float], str]) -> str:
    if not values:
        return "-"
    lo, hi = fmt(min(values)), fmt(max(values))
    return lo if lo == hi else f"{lo}-{hi}"


def _ratio(x: float) -> str:
    return f"{x:.2f}"


def _pct(x: float) -> str:
    return f"{x:.0%}"


def fastest_peer(by_backend: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The measured row of the fastest of ``PEERS`` in ``{backend: row}`` (None if none)."""
    peers = [by_backend.get(p) for p in PEERS]
    return min((r for r in peers if _measured(r)), key=lambda r: r["median_ms"], default=None)


def _line(group: tuple, cases: list[dict[str, dict[str, Any]]]) -> list[str]:
    """The cells of one model/dtype/pass from its cases (``{backend: row}``, one per M)."""
    vs_cublas, vs_eager, vs_peer, peer_names, copy, peer_copy = [], [], [], set(), [], []
    not_run: set[str] = set()  # peers the cited runs did not time at all (not skipped ones)
    failed = False
    for by_backend in cases:
        triton = by_backend.get("triton")
        if triton is None or triton.get("skipped"):
            continue
        if not _measured(triton):
            failed = True
            continue
        m = triton["tokens"]
        peer = fastest_peer(by_backend)
        not_run.update(p for p in PEERS if p not in by_backend)
        if m >= COMPUTE_BOUND_TOKENS:
            vs_cublas += [triton["frac_cublas"]] if triton.get("frac_cublas") else []
            vs_eager += [triton["speedup_vs_eager"]] if triton.get("speedup_vs_eager") else []
            if peer is not None:
                vs_peer.append(peer["median_ms"] / triton["median_ms"])
                peer_names.add(peer["backend"])
        if m <= DECODE_TOKENS:
            copy.append(triton["frac_copy_bw"])
            if peer is not None:
                peer_copy.append(peer["frac_copy_bw"])
    peer_cell = _range(vs_peer, _ratio)
    if peer_names:
        peer_cell += f" ({', '.join(sorted(peer_names))})"
    if not_run and vs_peer:
        peer_cell += f"; not timed at every M: {', '.join(p for p in PEERS if p in not_run)}"
    model, dtype, activation, layout, pass_ = group
    if (activation, layout) != ("silu", "separate"):
        model = f"{model} {activation}/{layout}"
    return [
        model,
        dtype,
        pass_,
        _range(vs_cublas, _ratio) + (" (flash-swiglu FAILED at some M)" if failed else ""),
        _range(vs_eager, lambda x: f"{x:.2f}x"),
        peer_cell,
        _range(copy, _pct),
        _range(peer_copy, _pct),
    ]


def render_linear(cases: Cases) -> tuple[str, str, dict[str, dict[str, Any]]]:
    """The introduction and the markdown table of the ``linear`` cases from
    ``latest_cases``, and the runs they cite (``{run: a row of it}``)."""
    groups: dict[tuple, list[dict[str, dict[str, Any]]]] = defaultdict(list)
    runs_of_group: dict[tuple, dict[str, dict[str, Any]]] = defaultdict(dict)
    for by_backend in cases.values():
        first = next(iter(by_backend.values()))
        group = tuple(first.get(f) for f in GROUP_FIELDS)
        groups[group].append(by_backend)
        runs_of_group[group][first["run"]] = first
    lines, runs = [], {}
    for group in sorted(groups, key=lambda g: tuple(map(str, g))):
        runs.update(runs_of_group[group])
        names = ", ".join(f"`{r}`" for r in runs_of_group[group])
        lines.append([*_line(group, groups[group]), names])
    intro = (
        "Gate/up projection `act(x w_gate^T) * (x w_up^T)` (`benchmark-swiglu --op linear`), "
        "flash-swiglu against the cuBLAS product of the same FLOPs and the peers, same shape, "
        f"same run; ranges over the token counts M. M >= {COMPUTE_BOUND_TOKENS}: rate as a "
        "fraction of cuBLAS's, speedup over eager and over the fastest peer (named; peers "
        "the cited runs did not time at some M are listed after it). "
        f"M <= {DECODE_TOKENS}: weight streaming rate, (M K + 2 N K + M N) bytes / time, as a "
        "fraction of the copy bandwidth."
    )
    return intro, markdown_table(HEADER, lines), runs

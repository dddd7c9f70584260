"""``--sweep`` plots: a rate against problem size, one line per backend.

One PNG holds a panel per pass and case variant, the x axis on a log2 scale:
- elementwise: achieved GB/s against elements per operand (per activation, layout, dtype),
  with the copy bandwidth of the run (dashed) and of a same-size copy (dotted);
- linear: TFLOP/s against tokens M (per model, dtype, activation, layout), with the GEMM
  ceiling of the run (dashed).
"""

from __future__ import annotations

import importlib.util
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple


class Axes(NamedTuple):
    panel_fields: tuple[str, ...]  # one panel per distinct value of these
    x: str  # row field on the x axis
    y: str  # row field on the y axis
    xlabel: str
    ylabel: str


AXES = {
    "elementwise": Axes(
        ("op", "pass", "activation", "layout", "dtype"),
        "n_elements",
        "gbps",
        "elements per operand",
        "GB/s (ideal bytes / median time)",
    ),
    "linear": Axes(
        ("op", "pass", "model", "dtype", "activation", "layout"),
        "tokens",
        "tflops",
        "tokens M",
        "TFLOP/s (4 M N K per forward / median time)",
    ),
}
INSTALL_HINT = (
    "plotting needs matplotlib: pip install 'flash-swiglu[bench]' (or pip install matplotlib)"
)


def matplotlib_missing() -> str | None:
    """Why plots cannot be drawn, or None when they can."""
    return None if importlib.util.find_spec("matplotlib") else INSTALL_HINT


def plot_sweep(rows: Sequence[dict[str, Any]], path: Path, copy_bw_gbps: float) -> None:
    """Save the rate-vs-size plot of the measured rows of a sweep to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[tuple, dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    local_copy: dict[tuple, dict[int, float]] = defaultdict(dict)
    axes_of: dict[tuple, Axes] = {}
    for row in rows:
        axes = AXES[row["op"]]
        if row[axes.y] is not None:
            key = tuple(row.get(f) for f in axes.panel_fields)
            axes_of[key] = axes
            panels[key][row["backend"]].append((row[axes.x], row[axes.y]))
            if row["op"] == "elementwise" and row.get("same_size_copy_gbps"):
                local_copy[key][row["n_elements"]] = row["same_size_copy_gbps"]
    if not panels:
        raise ValueError("no measured rows to plot")
    gemm = next((r["gemm_tflops"] for r in rows if r.get("gemm_tflops")), None)
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axs = plt.subplots(nrows, ncols, figsize=(5.5 * ncols, 4 * nrows), squeeze=False)
    for ax, (key, lines) in zip(axs.flat, sorted(panels.items()), strict=False):
        axes = axes_of[key]
        for backend, points in lines.items():
            xs, ys = zip(*sorted(points), strict=True)
            ax.plot(xs, ys, marker="o", markersize=3, label=backend)
        if axes.y == "gbps":
            ax.axhline(copy_bw_gbps, linestyle="--", color="gray", label="copy (2 GiB)")
        elif gemm:
            ax.axhline(gemm, linestyle="--", color="gray", label="GEMM ceiling (torch.mm)")
        if local_copy[key]:
            xs, ys = zip(*sorted(local_copy[key].items()), strict=True)
            ax.plot(xs, ys, linestyle=":", color="black", label="copy (same size)")
        ax.set_xscale("log", base=2)
        ax.set_title(" ".join(str(k) for k in key if k is not None), fontsize=9)
        ax.set_xlabel(axes.xlabel)
        ax.set_ylabel(axes.ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axs.flat[len(panels) :]:
        ax.set_visible(False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)

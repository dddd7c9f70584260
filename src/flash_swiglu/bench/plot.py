"""``--sweep`` plots: achieved GB/s against problem size, one line per backend.

One PNG holds a panel per pass and case variant (activation, layout, dtype); the x axis is
elements per operand on a log2 scale, the dashed line the copy bandwidth of the same run.
"""

from __future__ import annotations

import importlib.util
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PANEL_FIELDS = ("op", "pass", "activation", "layout", "dtype")
INSTALL_HINT = (
    "plotting needs matplotlib: pip install 'flash-swiglu[bench]' (or pip install matplotlib)"
)


def matplotlib_missing() -> str | None:
    """Why plots cannot be drawn, or None when they can."""
    return None if importlib.util.find_spec("matplotlib") else INSTALL_HINT


def plot_sweep(rows: Sequence[dict[str, Any]], path: Path, copy_bw_gbps: float) -> None:
    """Save the GB/s-vs-size plot of the measured rows of a sweep to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[tuple, dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    local_copy: dict[tuple, dict[int, float]] = defaultdict(dict)
    for row in rows:
        if row["gbps"] is not None:
            key = tuple(row.get(f) for f in PANEL_FIELDS)
            panels[key][row["backend"]].append((row["n_elements"], row["gbps"]))
            if row.get("same_size_copy_gbps"):
                local_copy[key][row["n_elements"]] = row["same_size_copy_gbps"]
    if not panels:
        raise ValueError("no measured rows to plot")
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.5 * ncols, 4 * nrows), squeeze=False)
    for ax, (key, lines) in zip(axes.flat, sorted(panels.items()), strict=False):
        for backend, points in lines.items():
            xs, ys = zip(*sorted(points), strict=True)
            ax.plot(xs, ys, marker="o", markersize=3, label=backend)
        ax.axhline(copy_bw_gbps, linestyle="--", color="gray", label="copy (2 GiB)")
        if local_copy[key]:
            xs, ys = zip(*sorted(local_copy[key].items()), strict=True)
            ax.plot(xs, ys, linestyle=":", color="black", label="copy (same size)")
        ax.set_xscale("log", base=2)
        ax.set_title(" ".join(str(k) for k in key if k is not None), fontsize=9)
        ax.set_xlabel("elements per operand")
        ax.set_ylabel("GB/s (ideal bytes / median time)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)

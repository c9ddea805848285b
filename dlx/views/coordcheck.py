"""`dlx coordcheck`'s table and figure: each layer's output scale against width, as in the μP
paper's coordinate checks (Tensor Programs V, fig. 5: one panel per step, log-log)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from dlx.core.fmt import num
from dlx.views.style import DPI


def coordcheck_table(widths: Sequence[int], layers: Sequence[str], last: np.ndarray, slopes: np.ndarray, title: str):
    """A rich Table: layer x width (last: [widths, layers], the scales at the last step), then
    widest/narrowest and the log-log slope (scale ~ width**slope)."""
    from rich.table import Table

    t = Table(title=title, title_justify="left", header_style="bold", show_edge=False, pad_edge=False)
    t.add_column("layer")
    for w in widths:
        t.add_column(f"width {w}", justify="right")
    t.add_column(f"{widths[-1]}/{widths[0]}", justify="right")
    t.add_column("slope", justify="right")
    for j, name in enumerate(layers):
        t.add_row(name, *[num(v) for v in last[:, j]], num(last[-1, j] / last[0, j]), f"{slopes[j]:+.2f}")
    return t


def coordcheck_figure(widths: Sequence[int], layers: Sequence[str], scales: np.ndarray, title: str, path: Path) -> Path:
    """One panel per step (0: the init), mean |output| against width on log-log axes, a line
    per layer; written as a PNG at `path`, which is returned."""
    from matplotlib.figure import Figure

    steps = scales.shape[1]
    fig = Figure(figsize=(2.6 * steps, 3.0), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, steps, sharey=True, squeeze=False)[0]
    for t, ax in enumerate(axes):
        for j, name in enumerate(layers):
            ax.plot(widths, scales[:, t, j], marker="o", ms=3, label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"step {t}" + (" (init)" if t == 0 else ""), fontsize=9)
        ax.set_xlabel("width")
    axes[0].set_ylabel("mean |layer output|")
    axes[-1].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path

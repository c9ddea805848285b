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
    steps = scales.shape[1]
    panels = [(f"step {t}" + (" (init)" if t == 0 else ""), widths, layers, scales[:, t]) for t in range(steps)]
    return _scale_panels(panels, title, path, (2.6 * steps, 3.0))


def coordcheck_sides_figure(
    sides: dict[str, tuple[Sequence[int], Sequence[str], np.ndarray]], title: str, path: Path
) -> Path:
    """One panel per side ({label: (widths, layers, scales at one step [widths, layers])}),
    the parametrisations side by side (flat against growing), one y scale for all."""
    panels = [(label, widths, layers, scales) for label, (widths, layers, scales) in sides.items()]
    return _scale_panels(panels, title, path, (4.2 * len(panels), 3.4))


def _scale_panels(
    panels: list[tuple[str, Sequence[int], Sequence[str], np.ndarray]], title: str, path: Path, size
) -> Path:
    """Panels (title, widths, layers, scales [widths, layers]) side by side, sharing the y axis:
    mean |output| against width on log-log axes, a line per layer; a PNG at `path`."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, (label, widths, layers, scales) in zip(axes, panels):
        for j, name in enumerate(layers):
            ax.plot(widths, scales[:, j], marker="o", ms=3, label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(list(widths), [str(w) for w in widths])
        ax.xaxis.set_minor_locator(NullLocator())  # the widths alone, in plain numbers
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("width")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean |layer output|")
    axes[-1].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path

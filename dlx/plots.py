"""Figures with matplotlib (Agg, no display needed): written as PNG files.

Runs of the same variant with different seeds are drawn as a mean line and a
band (min to max over seeds), so a comparison shows both the effect and the noise.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: works on servers and in CI without a display
    import matplotlib.pyplot as plt

    return plt


def _curve(metrics: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(m["step"], m[key]) for m in metrics if m.get(key) is not None]
    if not pts:
        return np.zeros(0), np.zeros(0)
    steps, vals = zip(*pts)
    return np.asarray(steps, float), np.asarray(vals, float)


def _band(runs: list[list[dict[str, Any]]], key: str):
    """Mean, min and max over runs on the steps every run logged."""
    curves = [_curve(m, key) for m in runs]
    curves = [c for c in curves if len(c[0])]
    if not curves:
        return None
    common = sorted(set.intersection(*[set(s.tolist()) for s, _ in curves]))
    if not common:
        return None
    stack = np.stack([np.interp(common, s, v) for s, v in curves])
    return np.asarray(common), stack.mean(0), stack.min(0), stack.max(0)


def compare_figure(groups: dict[str, list[list[dict[str, Any]]]], path: Path, title: str = "") -> Path:
    """Loss and accuracy curves per variant (mean line, band over seeds) as a PNG."""
    plt = _pyplot()
    panels = [("train_loss", "train loss"), ("test_loss", "test loss"), ("test_acc", "test accuracy")]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), constrained_layout=True)
    legend_on = None
    for ax, (key, label) in zip(axes, panels):
        drawn = False
        for i, (variant, runs) in enumerate(groups.items()):
            band = _band(runs, key)
            if band is None:
                continue
            steps, mean, lo, hi = band
            color = f"C{i % 10}"
            ax.plot(steps, mean, color=color, label=variant, lw=1.6)
            if len(runs) > 1:
                ax.fill_between(steps, lo, hi, color=color, alpha=0.2, lw=0)
            drawn = True
        ax.set_xlabel("step")
        ax.set_title(label)
        if key.endswith("loss") and drawn:
            ax.set_yscale("log")
        if drawn and legend_on is None:
            legend_on = ax
        ax.grid(alpha=0.3)
    if legend_on is not None:
        legend_on.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

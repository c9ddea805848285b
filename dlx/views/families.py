"""A family of runs that differ in one key (a papers example's `# over: KEY=V1,V2,...`): final
numbers per run against the key's values, a panel per number, a line per family (the
example's and its `# vs:` control's). Plain numbers in, a figure out: this never reads a run."""

from __future__ import annotations

from dlx.views.style import DPI, plain


def family_figure(key: str, values: list[str], panels: dict[str, dict[str, list[float | None]]], title: str = ""):
    """A matplotlib Figure: for each panel {metric: {family label: one number per run (None
    where a run has none)}}, the numbers against the values of `key` (evenly spaced, as
    ticks: the values may be 2, 4, 256), a marked line per family."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5 * len(panels), 3.8), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    xs = list(range(len(values)))
    for ax, (metric, lines) in zip(axes, panels.items()):
        for label, ys in lines.items():
            points = [(x, y) for x, y in zip(xs, ys) if y is not None]
            ax.plot([x for x, _ in points], [y for _, y in points], "o-", label=plain(label))
        ax.set_xticks(xs, values)
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.set_title(metric, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(plain(title), fontsize=11)
    return fig

"""A family of runs that differ in one key (a papers example's `# over: KEY=V1,V2,...`): one
final number per run against the key's values, a line per family (the example's and its
`# vs:` control's). Plain numbers in, a figure out: this never reads a run."""

from __future__ import annotations

from dlx.views.style import DPI, plain


def family_figure(key: str, values: list[str], lines: dict[str, list[float | None]], metric: str, title: str = ""):
    """A matplotlib Figure: `metric` (one number per run, None where a run has none) against
    the values of `key`, a marked line per family, the values as the x ticks."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    xs = list(range(len(values)))  # evenly spaced: the values may be any numbers (or names)
    for label, ys in lines.items():
        points = [(x, y) for x, y in zip(xs, ys) if y is not None]
        ax.plot([x for x, _ in points], [y for _, y in points], "o-", label=plain(label))
    ax.set_xticks(xs, values)
    ax.set_xlabel(key)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(plain(title), fontsize=10)
    return fig

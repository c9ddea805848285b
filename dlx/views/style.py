"""What every figure and table of dlx shares: colours, sizes, the escaping of a user's text,
the splitting of one picture's cell into axes, and the styles of a status.

Here, below the modules that draw, so that each of them (plots, pictures, landscape, the
terminal views, the tables) takes them from one place without importing the others.
"""

from __future__ import annotations

from typing import Any

# Per-group rows (heatmap, lines, activations) drawn at most: beyond a handful of
# variants the figure grows taller than anyone reads; the curve panels show all.
MAX_GROUP_ROWS = 4
# Activation panels per group, chosen evenly from input to output (first and last kept).
MAX_ACT_PANELS = 12
ACT_PER_ROW = 6
# Columns of a heatmap / points of a gradient line: bins of steps, geometric mean
# in each. More than the figure has pixels only adds noise.
HEAT_BINS = 200
LINE_BINS = 120
# Panel grid: 6 columns, so 2 or 3 curve panels, heatmap (4) + lines (2), or 6
# activation panels fill a row.
GRID_COLS = 6
FIG_WIDTH = 15.0  # inches, at DPI: 1500 px
DPI = 100
NONFINITE_COLOR = "#e41a1c"  # red: no viridis colour is near it
ZERO_COLOR = "#bdbdbd"


# Class colours of a boundary picture (matplotlib's tab10), and how strongly the surface
# shows its class: from FAINT where the model is unsure (1/classes) to FAINT + SURE at 1.
CLASS_COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
FAINT, SURE = 0.12, 0.58


def plain(text: Any) -> str:
    """A user's text (a title, a run or layer name) to be drawn as written: a `$` is a dollar
    sign, not the start of TeX math, which fails or garbles the text. Only these strings are
    escaped: matplotlib's own tick labels (10^-1 on a log axis) are mathtext and stay so."""
    return str(text).replace("$", r"\$")


def split_axes(where, rows: int, cols: int, **kw) -> list:
    """rows x cols axes for one picture's parts: in `where`, a (sub)figure of its own, or
    in the cell of an axes (removed for them)."""
    if hasattr(where, "subplots"):
        root = getattr(where, "figure", None) or where
        if root.get_layout_engine() is not None:
            # The layout engine spaces them; a fixed hspace on top of it is a gap.
            kw = {k: v for k, v in kw.items() if k not in ("hspace", "wspace")}
        return where.subplots(rows, cols, squeeze=False, gridspec_kw=kw)
    spec, fig = where.get_subplotspec(), where.figure
    where.remove()
    sub = spec.subgridspec(rows, cols, **kw)
    return [[fig.add_subplot(sub[r, c]) for c in range(cols)] for r in range(rows)]


STATUS_STYLE = {
    "completed": "green",
    "diverged": "red",
    "failed": "red",
    "interrupted": "yellow",
    "running": "cyan",
    "pruned": "magenta",
}

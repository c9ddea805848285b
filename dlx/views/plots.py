"""Figures of runs with matplotlib (Agg, no display needed), and the series they draw.

The API (used by `dlx plot`, `dlx compare` and the HTML report):

    runs = load_groups([path, ...])   # run folders -> groups (same config but the seed)
    panel_names(runs)                 # ["loss", "accuracy", "grad_heatmap:0", ...]
    draw_panel(ax, name, runs)        # one panel onto any matplotlib Axes
    fig = build_figure(runs, title)   # every panel in one Figure (not saved)
    plot_runs([path, ...], out, title)  # the same, written as one PNG; returns out
    compare_figure(groups, out, title)  # loss/accuracy only, from metrics (dlx compare)

Panel names: "loss", "accuracy" (only when a run logged accuracy), "time_grad"
(only when a run is recurrent: ||dL/dh_t|| over time steps t), then per group g
(the first MAX_GROUP_ROWS groups): "grad_heatmap:g" (layer x step, log10 colour),
"grad_lines:g" (per-layer gradient norm on a log axis) and "activations:g:LAYER"
(percentile bands of that activation's outputs over steps; at most MAX_ACT_PANELS
layers, spread from input to output). panel_names and draw_panel accept run
paths as well as loaded groups.

Runs whose config.yaml differ only in `seed` and `name` form one group: its
curves are the mean over seeds with a band from min to max, so a comparison
shows both the effect and the noise. Several groups overlay in the curve panels
(loss, accuracy, time_grad); each group gets its own row of per-layer panels,
drawn from the group's mean (gradient norms) or its first run (activations).
Every panel Axes carries its panel name as its label (Axes.get_label()), so
`panel_axes(fig)` finds them among colorbars.

The parts live in their own modules, all importable from here as before: series.py
(the series, numpy only), panels.py (panel_names, draw_panel) with curves.py and
gradients.py (the panels by family), picture_panels.py (the pictures' drawing),
panel_registry.py (every panel's name) and style.py (DPI, colours, plain).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

# The parts of a figure, importable from here as before the split (dlx.results, the CLI,
# the HTML report and tests take them from plots).
from dlx.views.curves import draw_curves, draw_noise, draw_sharpness, draw_sparsity, draw_spectra, draw_time_grad
from dlx.views.gradients import act_layers, draw_activations, draw_grad_heatmap, draw_grad_lines, heat_range
from dlx.views.panel_registry import PICTURES, USER_PANELS, panels_help
from dlx.views.panels import draw_or_say, draw_panel, panel_grid, panel_hits, panel_names
from dlx.views.picture_panels import (
    PICTURE_DRAWERS,
    PICTURE_HEIGHT,
    draw_boundary,
    draw_histograms,
    draw_images,
    draw_picture,
    draw_units,
    draw_warp,
    mosaic,
    picture_width,
)
from dlx.views.series import (
    Group,
    Run,
    act_series,
    as_groups,
    band,
    grad_series,
    group_runs,
    load_groups,
    load_run_series,
    log_bins,
    run_series,
    time_grad_series,
)
from dlx.views.style import (
    ACT_PER_ROW,
    CLASS_COLORS,
    DPI,
    FAINT,
    FIG_WIDTH,
    MAX_GROUP_ROWS,
    NONFINITE_COLOR,
    SURE,
    ZERO_COLOR,
    plain,
    split_axes,
)

# tests/test_compare.py imports the band of a metric by its old name.
_band = band

__all__ = [
    "ACT_PER_ROW",
    "CLASS_COLORS",
    "DPI",
    "FAINT",
    "FIG_WIDTH",
    "MAX_GROUP_ROWS",
    "NONFINITE_COLOR",
    "PICTURES",
    "PICTURE_DRAWERS",
    "PICTURE_HEIGHT",
    "SURE",
    "USER_PANELS",
    "ZERO_COLOR",
    "Group",
    "Run",
    "act_layers",
    "act_series",
    "as_groups",
    "band",
    "build_figure",
    "check_format",
    "compare_curves_figure",
    "compare_figure",
    "draw_activations",
    "draw_boundary",
    "draw_curves",
    "draw_grad_heatmap",
    "draw_grad_lines",
    "draw_histograms",
    "draw_images",
    "draw_noise",
    "draw_panel",
    "draw_picture",
    "draw_sharpness",
    "draw_sparsity",
    "draw_spectra",
    "draw_time_grad",
    "draw_units",
    "draw_warp",
    "filmstrip_figure",
    "grad_series",
    "group_runs",
    "heat_range",
    "load_groups",
    "load_run_series",
    "log_bins",
    "mosaic",
    "panel_axes",
    "panel_names",
    "panels_figure",
    "panels_help",
    "picture_width",
    "pictures_figure",
    "plain",
    "plot_runs",
    "run_series",
    "split_axes",
    "time_grad_series",
]


def build_figure(runs: Sequence[Any], title: str | None = None):
    """A matplotlib Figure with every panel of panel_names(runs); nothing written.

    Rows (one subfigure each): the curve panels; then per group its heatmap and
    gradient lines, and its activation panels (ACT_PER_ROW a row).
    """
    from matplotlib.figure import Figure

    groups = as_groups(runs)
    names = panel_names(groups)
    top = [n for n in names if ":" not in n]
    # (panels, height in inches, row title, title colour)
    rows: list[tuple[list[str], float, str | None, str]] = [(top, 3.4, None, "black")]
    for i in range(min(len(groups), MAX_GROUP_ROWS)):
        color = f"C{i % 10}"
        heat = [n for n in names if n in (f"grad_heatmap:{i}", f"grad_lines:{i}")]
        if heat:
            rows.append((heat, 3.3, f"gradients: {groups[i].label}", color))
        acts = [n for n in names if n.startswith(f"activations:{i}:")]
        for k in range(0, len(acts), ACT_PER_ROW):
            rows.append(
                (
                    acts[k : k + ACT_PER_ROW],
                    2.5,
                    None
                    if k
                    else f"activation percentiles over steps: {groups[i].label}"
                    f"{' (first seed)' if len(groups[i].runs) > 1 else ''}",
                    color,
                )
            )
    height = sum(h for _, h, _, _ in rows) + 0.4  # the suptitle
    fig = Figure(figsize=(FIG_WIDTH, height), dpi=DPI, layout="constrained")
    subs = fig.subfigures(len(rows), 1, height_ratios=[h for _, h, _, _ in rows], squeeze=False)[:, 0]
    colours = heat_range(groups)
    for sub, (panels, _, row_title, color) in zip(subs, rows):
        if row_title:
            sub.suptitle(wrapped(row_title, FIG_WIDTH, 11), fontsize=11, color=color, x=0.01, ha="left")
        if panels[0].startswith("grad_heatmap"):
            widths = [4, 2]
        elif panels[0].startswith("activations"):
            widths = [1] * ACT_PER_ROW  # the same panel size on every activation row
        else:
            widths = [1] * len(panels)
        axes = sub.subplots(1, len(widths), width_ratios=widths, squeeze=False)[0]
        for ax, name in zip(axes, panels):
            draw_or_say(ax, name, groups, colours)
        for ax in axes[len(panels) :]:
            ax.set_visible(False)
            ax.set_label("<unused>")
        if panels[0].startswith("activations"):
            axes[0].set_ylabel("activation", fontsize=8)
            if row_title:
                axes[0].legend(fontsize=6, loc="upper left")
    n = sum(len(g.runs) for g in groups)
    fig.suptitle(
        wrapped(
            title
            or ("dlx plot: " + groups[0].label if len(groups) == 1 else f"dlx plot: {n} runs, {len(groups)} variants"),
            FIG_WIDTH,
            12,
        ),
        fontsize=12,
    )
    return fig


def wrapped(text: str, inches: float, fontsize: float) -> str:
    """A title for `inches` of a figure: whole, wrapped onto lines (labels.wrap_label), never
    cut, drawn as written (style.plain)."""
    from dlx.views.labels import chars_in, wrap_label

    return plain(wrap_label(text, chars_in(inches, fontsize)))


def panel_axes(fig) -> dict[str, Any]:
    """The panel Axes of a figure by panel name (colorbars left out)."""
    return {ax.get_label(): ax for ax in fig.axes if ax.get_label() and not ax.get_label().startswith("<")}


def plot_runs(
    run_paths: list[Path],
    out: Path,
    title: str | None = None,
    panels: Sequence[str] | None = None,
    size: tuple[float, float] | None = None,
    step: int | None = None,
    pair: tuple[int, int] | None = None,
    notes: list[str] | None = None,
) -> Path:
    """One figure of the runs (see the module docstring for its panels), or only the named
    panels and pictures (pictures_figure, with its step, pair and notes); size in inches. Returns out."""
    out = Path(out)
    if not out.suffix:
        out = out.with_suffix(".png")  # the path printed is the file written
    check_format(out)
    if panels:
        fig = pictures_figure(run_paths, panels, size, title, step, pair, notes=notes)
    else:
        fig = build_figure(load_groups(run_paths), title)
        if size:
            fig.set_size_inches(*size)
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # Many picture rows nested in subfigures can leave matplotlib's layout solver short
        # of a margin it wants; the figure is drawn all the same, with the sizes given.
        warnings.filterwarnings("ignore", message="constrained_layout not applied")
        fig.savefig(out, dpi=DPI)
    return out


def check_format(out: Path) -> None:
    """A UsageError before any drawing when matplotlib cannot write this file type."""
    from matplotlib.backend_bases import FigureCanvasBase

    from dlx.core.errors import UsageError

    kinds = FigureCanvasBase.get_supported_filetypes()
    if out.suffix.lower().lstrip(".") not in kinds:
        raise UsageError(
            f"cannot write a figure as {out.name}: matplotlib writes {', '.join('.' + k for k in sorted(kinds))}; "
            f"pass -o with one of those (.png is the default)"
        )


def panels_figure(
    runs: Sequence[Any],
    panels: Sequence[str] | None = None,
    size: tuple[float, float] | None = None,
    title: str | None = None,
):
    """A Figure of the named panels (panel_registry.USER_PANELS), in a grid of at most 3 columns;
    every panel (build_figure) when panels is None. size: (width, height) in inches."""
    from matplotlib.figure import Figure

    groups = as_groups(runs)
    if panels is None:
        fig = build_figure(groups, title)
        if size:
            fig.set_size_inches(*size)
        return fig
    names = panel_hits(groups, panels)
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=size or (5 * cols, 3.6 * rows), dpi=DPI, layout="constrained")
    panel_grid(fig, names, groups)
    if title:
        fig.suptitle(wrapped(title, fig.get_figwidth(), 12), fontsize=12)
    return fig


def pictures_figure(
    run_paths: Sequence[Path],
    panels: Sequence[str],
    size: tuple[float, float] | None = None,
    title: str | None = None,
    step: int | None = None,
    pair: tuple[int, int] | None = None,
    notes: list[str] | None = None,
):
    """`dlx plot RUN... --panels ...`: the named panels; each picture panel (boundary,
    units, ...) is one row with the runs side by side (titled with the keys that tell them
    apart), above the other panels. step: the snapshot nearest it instead of the end;
    pair: the two units a warp panel shows. Given `notes`, a run whose checkpoint.pt or
    snapshots.pt is damaged has its pictures left out, with a line in notes; without, or
    when no run's pictures are left, DamagedFile."""
    from matplotlib.figure import Figure

    from dlx.records.model import each_saved
    from dlx.views.labels import chars_in, varying_keys, wrap_label
    from dlx.views.pictures import picture

    kinds = [p for p in panels if p in PICTURES]
    others = [p for p in panels if p not in PICTURES]
    if not kinds:
        return panels_figure(list(run_paths), others, size=size, title=title)
    per_run, _ = each_saved(
        run_paths,
        lambda path: [picture(path, kind, step, pair) for kind in kinds],
        notes,
        "the pictures of run {run} are left out",
    )
    rows_of = [list(row) for row in zip(*per_run)]  # one row per kind, one picture per run
    configs = [pic.config for pic in rows_of[0]]
    titles = varying_keys(configs) if len(configs) > 1 else [""]
    titles = [t or pic.name for t, pic in zip(titles, rows_of[0])]
    groups = as_groups(list(run_paths)) if others else []
    names = panel_hits(groups, others) if others else []
    n_b = len(per_run)
    # Inches per run of each picture row: pictures of several parts (a map per layer, a
    # histogram per moment) get the width their parts need.
    widths = [max(picture_width(pic) for pic in pics) for pics in rows_of]
    heights = [PICTURE_HEIGHT.get(type(pics[0]).__name__, 4.0) for pics in rows_of]
    other_rows = -(-len(names) // min(3, len(names))) if names else 0
    width = max(max(widths) * n_b, 4.2 * min(3, len(names)) if names else 0)
    height = sum(heights) + 3.4 * other_rows + 0.3 * (len(kinds) + other_rows)  # room for the titles
    fig = Figure(figsize=size or (width, height), dpi=DPI, layout="constrained")
    if names:
        top, bottom = fig.subfigures(2, 1, height_ratios=[sum(heights), 3.4 * other_rows])
    else:
        top, bottom = fig, None
    # A subfigure per picture: pictures of several parts lay them out inside their own.
    cells = top.subfigures(len(kinds), n_b, squeeze=False, height_ratios=heights)
    # What tells the runs apart, whole: wrapped onto lines within its cell (3/4 of it: a
    # units or warp title shares its line with "step N"), never run into the next cell's.
    per_cell = chars_in(0.75 * fig.get_figwidth() / n_b, 10)
    for row, pics in zip(cells, rows_of):
        for cell, pic, t in zip(row, pics, titles):
            draw_picture(cell, pic, wrap_label(t, per_cell))
    if bottom is not None:
        panel_grid(bottom, names, groups)
    if title:
        fig.suptitle(wrapped(title, fig.get_figwidth(), 12), fontsize=12)
    return fig


def filmstrip_figure(run_path: Path, frames: int = 6):
    """A 2-D run's decision boundary at `frames` snapshots from init to end, in one row."""
    from matplotlib.figure import Figure

    from dlx.views.pictures import filmstrip

    strip = filmstrip(run_path, frames)
    fig = Figure(figsize=(2.6 * len(strip), 2.9), dpi=DPI, layout="constrained")
    for ax, b in zip(fig.subplots(1, len(strip), squeeze=False)[0], strip):
        draw_boundary(ax, b, f"step {b.step}")
        ax.set_xlabel("")
    return fig


def compare_figure(groups: dict[str, list[list[dict[str, Any]]]], path: Path, title: str = "") -> Path:
    """`dlx compare`: compare_curves_figure written as a PNG; returns the path."""
    fig = compare_curves_figure(groups, title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def compare_curves_figure(
    groups: dict[str, list[list[dict[str, Any]]]], title: str = "", size: tuple[float, float] | None = None
):
    """Loss and accuracy curves per variant (mean line, band over seeds) as a Figure.

    Metrics only (one list of metrics records per seed), drawn by the same panel
    code as plot_runs' curve panels.
    """
    from matplotlib.figure import Figure

    panels = [
        ([("train_loss", "train", "-")], "train loss", True),
        ([("test_loss", "test", "--")], "test loss", True),
        ([("test_acc", "test", "--")], "test accuracy", False),
    ]
    fig = Figure(figsize=size or (5 * len(panels), 4), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, len(panels))
    entries = [(label, runs, None) for label, runs in groups.items()]
    legend_done = False
    for ax, (keys, label, log) in zip(axes, panels):
        drawn = draw_curves(ax, entries, keys, label, log=log)
        ax.set_title(label)
        if ax.get_legend() is not None and legend_done:
            ax.get_legend().remove()  # one legend for the figure is enough
        legend_done = legend_done or drawn
    if title:
        fig.suptitle(wrapped(title, fig.get_figwidth(), 12))
    return fig

"""Terminal pictures of a run: heat strips of the probe series, the loss as sparklines, and a
2-D run's decision boundary as coloured half blocks. Rich renderables: print them.

They adapt to the console's width, draw coloured blocks on a colour terminal and a character
ramp where there is no colour (a pipe, a log file), so the picture survives both. The series
come from series.py (numpy only): no matplotlib is imported to draw them.
"""

from __future__ import annotations

import math
from typing import Any

from rich.text import Text

from dlx.core.fmt import num

# Cells a strip or sparkline row has at most: wide enough to see a trend, narrow
# enough that label + strip fit 80 columns.
STRIP_COLUMNS = 60
# More layers than this: an even selection (first and last kept), said in the title.
STRIP_MAX_ROWS = 24
# Row labels longer than this lose their middle (block12.conv_b -> block1…conv_b): the
# start and the end of a name are what tell layers apart.
STRIP_LABEL = 16
# viridis at 9 points: perceptually even, dark = small, yellow = large, readable on
# dark and light terminals, and far from the red of a non-finite mark.
RAMP_RGB = (
    (68, 1, 84),
    (71, 44, 122),
    (59, 81, 139),
    (44, 113, 142),
    (33, 144, 141),
    (39, 173, 129),
    (92, 200, 99),
    (170, 220, 50),
    (253, 231, 37),
)
MONO_RAMP = ".:-=+*#%@"  # the same 9 levels as characters, for consoles without colour
NONFINITE_MARK = "×"  # a NaN or Inf in the cell's steps: a divergence stays visible after binning
ZERO_MARK = "0"  # every norm in the cell exactly 0: no gradient at all (symmetric or dead layer)
SPARK = "▁▂▃▄▅▆▇█"


def _ramp_style(frac: float) -> str:
    """The colour at frac in [0, 1] along RAMP_RGB, as a rich style."""
    x = min(max(frac, 0.0), 1.0) * (len(RAMP_RGB) - 1)
    i = min(int(x), len(RAMP_RGB) - 2)
    t = x - i
    rgb = [round(a + (b - a) * t) for a, b in zip(RAMP_RGB[i], RAMP_RGB[i + 1])]
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _mono(console) -> bool:
    return console.no_color or console.color_system is None


def _label(name: str, width: int) -> str:
    if len(name) <= width:
        return name
    head = (width - 1) // 2
    return name[:head] + "…" + name[len(name) - (width - 1 - head) :]


class HeatStrip:
    """log10 of positive values, rows x columns of cells, with a legend and an axis line.

    values [N, R]: N points along the columns (steps, or time steps t), one column of
    values per row; binned to the console width by series.log_bins (geometric mean per
    cell). A rich renderable: print it.
    """

    def __init__(
        self,
        title: str,
        values,
        row_names: list[str],
        x_name: str,
        x_first: int,
        x_last: int,
        quantity: str = "||grad||",
    ):
        import numpy as np

        self.title, self.x_name, self.quantity = title, x_name, quantity
        self.x_first, self.x_last = x_first, x_last
        values = np.asarray(values, dtype=float)
        rows = list(range(values.shape[1]))
        if len(rows) > STRIP_MAX_ROWS:
            rows = sorted(set(np.round(np.linspace(0, len(rows) - 1, STRIP_MAX_ROWS)).astype(int).tolist()))
            self.title += f" ({len(rows)} of {values.shape[1]} rows, evenly chosen)"
        self.values = values[:, rows]
        self.names = [row_names[j] if j < len(row_names) else f"row {j + 1}" for j in rows]

    def __rich_console__(self, console, options):
        import numpy as np

        from dlx.views.series import log_bins

        mono = _mono(console)
        label_w = min(max(len(n) for n in self.names), STRIP_LABEL)
        cols = max(8, min(STRIP_COLUMNS, options.max_width - label_w - 1))
        n = self.values.shape[0]
        _, lg = log_bins(self.values, cols)  # [B, R]; NaN = non-finite, -inf = all zero
        if n < cols:  # few points: widen each cell so short runs are not a sliver
            lg = np.repeat(lg, max(1, cols // n), axis=0)
        finite = lg[np.isfinite(lg)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        yield Text(self.title, style="bold")
        for r, name in enumerate(self.names):
            line = Text(_label(name, label_w).ljust(label_w))
            line.append(" ")
            for v in lg[:, r]:
                if np.isnan(v):
                    line.append(NONFINITE_MARK, style="bold red")
                elif np.isneginf(v):
                    line.append(ZERO_MARK, style="dim")
                else:
                    frac = (v - lo) / (hi - lo) if hi > lo else 0.5
                    if mono:
                        line.append(MONO_RAMP[min(int(frac * len(MONO_RAMP)), len(MONO_RAMP) - 1)])
                    else:
                        line.append("█", style=_ramp_style(frac))
            yield line
        width = lg.shape[0]
        left, right = f"{self.x_name} {self.x_first}", f"{self.x_name} {self.x_last}"
        mid = f"({n / width:.3g} per cell)" if n > width else ""
        gap = width - len(left) - len(right)
        if len(mid) + 2 > gap:
            mid = ""
        axis = left + mid.center(max(gap, 1)) + right
        yield Text(" " * (label_w + 1) + axis, style="dim")
        legend = Text(" " * (label_w + 1) + f"{self.quantity} {num(10**lo) if finite.size else '-'} ")
        for k in range(len(MONO_RAMP)):
            if mono:
                legend.append(MONO_RAMP[k])
            else:
                legend.append("█", style=_ramp_style(k / (len(MONO_RAMP) - 1)))
        legend.append(f" {num(10**hi) if finite.size else '-'} (log scale)")
        if np.isnan(lg).any():
            legend.append("  ")
            legend.append(NONFINITE_MARK, style="bold red")
            legend.append(" NaN/Inf")
        if np.isneginf(lg).any():
            legend.append(f"  {ZERO_MARK} exactly 0")
        yield legend


# A terminal boundary map: cells across at most (two cells a character row, one above the
# other, as a half block), and one character per class where the console has no colour.
MAP_COLUMNS = 48
MONO_CLASSES = "ox+*#%@=&$"


class BoundaryMap:
    """A run's decision surface (pictures.Boundary) in the terminal: each cell in its
    predicted class's colour, paler where the model is less sure (as in the PNG)."""

    def __init__(self, b):
        self.b = b

    def __rich_console__(self, console, options):
        import numpy as np
        from matplotlib.colors import to_rgb

        from dlx.views.style import CLASS_COLORS, FAINT, SURE

        b = self.b
        cols = max(8, min(MAP_COLUMNS, options.max_width - 2))
        g = b.probs.shape[0]
        rows = max(2, cols // 2 * 2)  # cells down; the map's character rows are half that
        yi = np.linspace(g - 1, 0, rows).round().astype(int)  # top row first: y grows upwards
        xi = np.linspace(0, g - 1, cols).round().astype(int)
        probs = b.probs[yi][:, xi]  # [rows, cols, classes]
        pred = probs.argmax(-1)
        k = probs.shape[-1]
        colors = np.array([to_rgb(CLASS_COLORS[i % len(CLASS_COLORS)]) for i in range(k)])
        sure = np.clip((probs.max(-1) - 1.0 / k) / max(1.0 - 1.0 / k, 1e-9), 0, 1)
        alpha = (FAINT + SURE * sure)[..., None]
        rgb = ((1 - alpha) + alpha * colors[pred]) * 255
        yield Text(f"decision boundary, step {b.step} (as a PNG: dlx plot RUN --panels boundary)", style="bold")
        mono = _mono(console)
        for r in range(0, rows - 1, 2):
            line = Text(" ")
            for c in range(cols):
                if mono:
                    line.append(MONO_CLASSES[pred[r, c] % len(MONO_CLASSES)])
                else:
                    top, bottom = rgb[r, c].astype(int), rgb[r + 1, c].astype(int)
                    line.append(
                        "▀", style=f"rgb({top[0]},{top[1]},{top[2]}) on rgb({bottom[0]},{bottom[1]},{bottom[2]})"
                    )
            yield line
        legend = Text(" ")
        for i in range(k):
            if mono:
                legend.append(MONO_CLASSES[i % len(MONO_CLASSES)])
            else:
                r_, g_, b_ = (int(v * 255) for v in colors[i])
                legend.append("█", style=f"rgb({r_},{g_},{b_})")
            legend.append(f" class {i}  ")
        if not mono:
            legend.append("pale: unsure", style="dim")
        yield legend


def grad_strip(probes: list[dict[str, Any]], names: list[str]) -> HeatStrip | None:
    """The per-layer gradient norms of every logged step, layers x steps."""
    from dlx.views.series import grad_series

    steps, grad = grad_series(probes)
    if not grad.size:
        return None
    return HeatStrip(
        "Gradient norm per layer over steps (rows: layers, input first)",
        grad,
        names,
        "step",
        int(steps[0]),
        int(steps[-1]),
    )


def time_strips(summary: dict[str, Any], probes: list[dict[str, Any]] | None) -> list[HeatStrip]:
    """For recurrent models: ||dL/dh_t|| over time steps t. With probes, one strip per
    recurrent layer (rows: log steps, so a learning RNN shows the gradient reaching
    further back); else the summary's last log step, one row per recurrent layer."""
    import numpy as np

    from dlx.views.series import time_grad_series

    names = [l["name"] for l in summary.get("layers", []) if l["name"] != "out"]
    steps, tg = time_grad_series(probes or [])
    out = []
    if tg.size:
        pick = np.unique(np.round(np.linspace(0, len(steps) - 1, min(len(steps), 8))).astype(int))
        for r in range(min(tg.shape[1], 4)):
            name = names[r] if r < len(names) else f"layer {r + 1}"
            out.append(
                HeatStrip(
                    f"Gradient reaching each time step, {name} (rows: log steps)",
                    tg[pick, r, :].T,
                    [f"step {steps[i]}" for i in pick],
                    "t",
                    1,
                    tg.shape[2],
                    quantity="||dL/dh_t||",
                )
            )
        return out
    rows = summary.get("time_grad")
    if rows:
        vals = np.asarray([[np.nan if v is None else v for v in row] for row in rows], dtype=float)
        out.append(
            HeatStrip(
                "Gradient reaching each time step at the last log step (rows: recurrent layers)",
                vals.T,
                names,
                "t",
                1,
                vals.shape[1],
                quantity="||dL/dh_t||",
            )
        )
    return out


def _spark_cells(steps, values, edges):
    """Column values of one series on shared step bins: the mean of the points in a
    cell, else linear interpolation between neighbours (sparse test evaluations), None
    outside the series; NaN where a point in the cell was not finite."""
    import numpy as np

    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        inside = [(s, v) for s, v in zip(steps, values) if a <= s < b]
        if inside:
            vals = [v for _, v in inside]
            out.append(float("nan") if any(v is None or not math.isfinite(v) for v in vals) else float(np.mean(vals)))
            continue
        centre = (a + b) / 2
        known = [(s, v) for s, v in zip(steps, values) if v is not None and math.isfinite(v)]
        if known and known[0][0] <= centre <= known[-1][0]:
            out.append(float(np.interp(centre, [s for s, _ in known], [v for _, v in known])))
        else:
            out.append(None)
    return out


class LossSpark:
    """Train (and test) loss over the run as sparklines on one step axis and one scale,
    so the gap between them reads at a glance. A rich renderable."""

    def __init__(self, metrics: list[dict[str, Any]]):
        self.series = []
        for key, name in (("train_loss", "train"), ("test_loss", "test")):
            pts = [(m["step"], m[key]) for m in metrics if key in m]
            if pts:
                self.series.append((name, [s for s, _ in pts], [v for _, v in pts]))

    def __rich_console__(self, console, options):
        yield from self.lines(options.max_width)

    def lines(self, max_width: int) -> list[Text]:
        import numpy as np

        out: list[Text] = []
        if not self.series:
            return out
        first = min(s[0] for _, s, _ in self.series)
        last = max(s[-1] for _, s, _ in self.series)
        tails = [
            f"{num(self._end(v, 0))} → {num(self._end(v, -1))}" if math.isfinite(self._end(v, 0)) else "no finite value"
            for _, _, v in self.series
        ]
        cols = max(8, min(STRIP_COLUMNS, max_width - 12 - max(len(t) for t in tails)))
        n_pts = max(len(s) for _, s, _ in self.series)
        # A short run still gets a readable line: cells between its points interpolate.
        cols = min(cols, max(n_pts, 24))
        edges = np.linspace(first, last + 1, cols + 1)
        cells = [_spark_cells(s, v, edges) for _, s, v in self.series]
        # The scale of the raw points (cells are means or interpolations within it).
        vals = np.asarray([x for _, _, v in self.series for x in v if x is not None and math.isfinite(x)], float)
        log = bool(vals.size) and vals.min() > 0 and vals.max() / vals.min() > 10
        if vals.size:
            tv = np.log10(vals) if log else vals
            lo, hi = float(tv.min()), float(tv.max())
        for (name, _, _), cs, tail in zip(self.series, cells, tails):
            line = Text()
            line.append("loss " if name == "train" else "     ", style="bold")
            line.append(f"{name:<6}")
            for c in cs:
                if c is None:
                    line.append(" ")
                elif not math.isfinite(c):
                    line.append(NONFINITE_MARK, style="bold red")
                else:
                    t = math.log10(c) if log else c
                    frac = (t - lo) / (hi - lo) if hi > lo else 0.5
                    line.append(
                        SPARK[min(int(frac * len(SPARK)), len(SPARK) - 1)],
                        style="cyan" if name == "train" else "magenta",
                    )
            line.append(f" {tail}")
            out.append(line)
        if vals.size:
            scale = f"{num(vals.min())} .. {num(vals.max())}" + (" log scale" if log else "")
            out.append(Text(f"{'':11}step {first} .. {last}, {scale}", style="dim"))
        return out

    @staticmethod
    def _end(values: list, i: int):
        """The first (i=0) or last (i=-1) finite value; NaN if there is none."""
        seq = values if i == 0 else values[::-1]
        for v in seq:
            if v is not None and math.isfinite(v):
                return v
        return float("nan")

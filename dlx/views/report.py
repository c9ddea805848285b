"""Rich renderables for runs: the per-layer table, verdicts, final metrics.

Everything here reads plain summary/meta dicts (as stored in the run folder), so
`dlx train` at the end of a run and `dlx show` later draw the same thing.
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import Group
from rich.errors import NotRenderableError
from rich.table import Table
from rich.text import Text

from dlx.core import fmt
from dlx.core.errors import DamagedFile
from dlx.diagnosis.engine import LABEL
from dlx.records.folders import SHAPE_ERRORS

# Red: the run is wrecked (NaN, steps blowing up). Yellow: it runs, but a layer, a
# time step or the loss curve is not doing its job. Magenta: it learned, but the wrong thing.
VERDICT_STYLE = {
    "healthy": "bold green",
    "vanishing": "bold yellow",
    "exploding": "bold red",
    "diverged": "bold red",
    "dead_units": "bold yellow",
    "saturation": "bold yellow",
    "symmetry": "bold yellow",
    "lr_too_high": "bold red",
    "not_learning": "bold yellow",
    "overfitting": "bold magenta",
    "vanishing_through_time": "bold yellow",
    "init_scale": "bold red",
    "lr_too_low": "bold yellow",
    "slow": "bold yellow",
}
STATUS_STYLE = {
    "completed": "green",
    "diverged": "red",
    "failed": "red",
    "interrupted": "yellow",
    "running": "cyan",
    "pruned": "magenta",
}


def num(x: Any, digits: int = 3) -> str:
    """A number in a table or a report's line: `digits` significant digits, an exponent below 1e-3 and from 1e5."""
    return fmt.num(x, digits)


def describe(cfg: dict[str, Any]) -> str:
    """A one-line description of a resolved config."""
    from dlx.components.models import MODEL_DEPENDENT_KEYS, MODELS

    m, d, o = cfg["model"], cfg["data"], cfg["optimizer"]
    try:
        spec = MODELS.parse(m)
    except (ValueError, KeyError):  # a model of another dlx version: show the config as written
        spec = None
    # A key the model does not honour is not shown as applied: the config check refuses it
    # now, but a run folder written before that check may still hold one.
    honoured = spec.honoured() if spec is not None else frozenset(MODEL_DEPENDENT_KEYS)

    def applied(key: str) -> bool:
        return key not in MODEL_DEPENDENT_KEYS or key in honoured

    if m["name"] == "mlp" and spec is not None:
        widths = spec.hidden_widths()
        shape = (
            f"{len(widths)}x{widths[0]}" if widths and len(set(widths)) == 1 else "-".join(map(str, widths)) or "linear"
        )
        model = f"mlp {shape}"
    else:
        model = m["name"]
    act, init = cfg["activation"]["name"], cfg["init"]["name"]
    reg = cfg["regularization"]
    extras = [
        f"{k}={reg[k]}" for k in ("l1", "l2", "dropout", "dropconnect") if reg.get(k) and applied(f"regularization.{k}")
    ]
    if reg.get("norm", "none") != "none" and applied("regularization.norm"):
        extras.append(f"{reg['norm']} norm")
    tbptt = cfg.get("train", {}).get("tbptt")
    if tbptt and applied("train.tbptt"):
        extras.append(f"tbptt={tbptt}")
    extra = (", " + ", ".join(extras)) if extras else ""
    return f"{model} {act}, init {init}, {o['name']} lr={o['lr']}{extra} | data {d['name']}"


def shape_text(shape: Any) -> str:
    """[64, 2] -> 64x2; a recurrent layer's [[256, 2], [256, 64]] -> 256x2 + 256x64."""
    if not shape:
        return "-"
    if isinstance(shape[0], list):
        return " + ".join("x".join(map(str, s)) for s in shape)
    return "x".join(map(str, shape))


def layer_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-layer table's rows, built once for every renderer (terminal, HTML, .table()):
    layer, shape, grad_first / grad_median / grad_last (gradient L2 norms), weight_norm,
    update_ratio (|update| / |weight| of the last step) and bar (where log10 of the median
    sits between the layers' smallest and largest, 0..1: the log-median bar)."""
    layers = summary.get("layers") or []
    meds = [l["grad_norm"]["median"] for l in layers if (l["grad_norm"].get("median") or 0) > 0]
    lo = math.log10(min(meds)) - 0.5 if meds else 0.0
    hi = math.log10(max(meds)) if meds else 1.0
    rows = []
    for l in layers:
        g = l["grad_norm"]
        med = g.get("median")
        bar = None
        if med is not None and med > 0 and math.isfinite(med):
            bar = 1.0 if hi <= lo else (math.log10(med) - lo) / (hi - lo)
        rows.append(
            {
                "layer": l["name"],
                "shape": shape_text(l.get("shape")),
                "grad_first": g.get("first"),
                "grad_median": med,
                "grad_last": g.get("last"),
                "weight_norm": l.get("weight_norm"),
                "update_ratio": l.get("update_ratio"),
                "near_zero": _fraction(l.get("near_zero")),
                "bar": bar,
            }
        )
    return rows


def _fraction(v: Any) -> float | None:
    """A share between 0 and 1 from a summary, or None (a damaged file holds anything)."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 else None


def shows_sparsity(rows: list[dict[str, Any]]) -> bool:
    """Whether the |w| < 1e-3 column is worth showing: some layer has 5% of its weights there."""
    return any((_fraction(r.get("near_zero")) or 0) >= 0.05 for r in rows if isinstance(r, dict))


LAYER_HEADERS = ("layer", "shape", "first", "median", "last", "log median", "|W|", "|dW|/|W|")


def layer_table(summary: dict[str, Any]) -> Table:
    t = Table(
        title="Per-layer gradient L2 norm (input layer first)",
        title_justify="left",
        header_style="bold",
        show_edge=False,
        pad_edge=False,
    )
    rows = layer_rows(summary)
    sparse = shows_sparsity(rows)
    for col in LAYER_HEADERS + (("|w|<1e-3",) if sparse else ()):
        # Layer names are never cut (block12.fc_b): the bar column gives way first.
        t.add_column(
            col,
            justify="left" if col in ("layer", "shape", "log median") else "right",
            no_wrap=col in ("layer", "shape"),
        )
    for r in rows:
        bar = Text("█" * max(1, round(r["bar"] * 12)), style="cyan") if r["bar"] is not None else Text("")
        cells = [
            r["layer"],
            r["shape"],
            num(r["grad_first"]),
            num(r["grad_median"]),
            num(r["grad_last"]),
            bar,
            num(r["weight_norm"]),
            num(r["update_ratio"]),
        ]
        if sparse:
            cells.append(f"{r['near_zero']:.0%}" if r.get("near_zero") is not None else "-")
        t.add_row(*cells)
    return t


# Fractions shown only where the run's activation has them (summary.json holds null
# elsewhere): dead for units that can die (relu), negative for leaky ones (see probes.ACT_FIELDS).
OPTIONAL_ACT_COLUMNS = ("dead", "negative")


def activation_rows(acts: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """(header, rows of text) for the activation table: the terminal's and the HTML report's."""
    cols = ["saturated"] + [c for c in OPTIONAL_ACT_COLUMNS if any(a.get(c) is not None for a in acts)]
    rows = [
        [a["name"], num(a.get("mean")), num(a.get("std"))]
        + [f"{a[c]:.0%}" if a.get(c) is not None else "-" for c in cols]
        for a in acts
    ]
    return ["layer", "mean", "std", *cols], rows


def activation_table(summary: dict[str, Any]) -> Table | None:
    acts = summary.get("activations") or []
    if not acts:
        return None
    t = Table(
        title="Activations at the last log step",
        title_justify="left",
        header_style="bold",
        show_edge=False,
        pad_edge=False,
    )
    head, rows = activation_rows(acts)
    for col in head:
        t.add_column(col, justify="left" if col == "layer" else "right")
    for row in rows:
        t.add_row(*row)
    return t


def time_text(summary: dict[str, Any]) -> Text | None:
    """For recurrent models: how much of the gradient at the last step reaches the first."""
    rows = summary.get("time_grad")
    if not rows:
        return None
    names = [l["name"] for l in summary.get("layers", []) if l["name"] != "out"]
    t = Text("Gradient through time at the last log step (||dL/dh_t||)\n", style="bold")
    for i, row in enumerate(rows):
        vals = [v for v in row if v is not None]
        if not vals or not row[-1]:
            continue
        name = names[i] if i < len(names) else f"row {i}"
        first, last = row[0] or 0.0, row[-1]
        t.append(f"  {name}: t=1 {num(first)}, t={len(row)} {num(last)}, ratio {num(first / last)}\n")
    t.rstrip()
    return t


def verdict_text(summary: dict[str, Any]) -> Text:
    """The root causes first, each with its likely cause and what to try; then their
    symptoms, one line each, saying which root cause explains them."""
    out = Text()
    pad = " " * len("verdict: ")
    verdicts = summary.get("verdicts", [])
    roots = [v for v in verdicts if not v.get("symptom_of")]
    symptoms = [v for v in verdicts if v.get("symptom_of")]
    for i, v in enumerate(roots):
        if i:
            out.append("\n")
        out.append("verdict: " if i == 0 else pad, style="bold")
        out.append(v["message"], style=VERDICT_STYLE.get(v["kind"], "bold"))
        # Older run folders have neither key; healthy has both None.
        for label, key in (("cause: ", "cause"), ("try:   ", "remedy")):
            if v.get(key):
                out.append(f"\n{pad}  {label}", style="dim bold")
                out.append(v[key], style="dim" if key == "cause" else "italic")
    for i, v in enumerate(symptoms):
        out.append("\n" + ("symptom: " if i == 0 else pad), style="bold")
        out.append(v["message"], style=VERDICT_STYLE.get(v["kind"], "bold"))
        out.append(f" (from the {LABEL.get(v['symptom_of'], v['symptom_of'])} above)", style="dim")
    said = {v["kind"] for v in verdicts} & {
        "not_learning",
        "slow",
        "healthy",
        "diverged",
    }  # these already say how far it got
    if roots and not said and (summary.get("outcome") or {}).get("text"):
        out.append("\noutcome: ", style="bold")
        out.append(summary["outcome"]["text"], style="dim")
    return out


def final_text(summary: dict[str, Any], status: str | None = None) -> Text:
    """status: the run's status now (runs.run_status); without it, the summary's own."""
    f = summary.get("final", {})
    status = status or summary.get("status", "?")
    parts = [f"{k} {num(f[k], 4)}" for k in ("train_loss", "train_acc", "test_loss", "test_acc") if k in f]
    t = Text()
    t.append(status, style=STATUS_STYLE.get(status, ""))
    if summary.get("reason"):
        t.append(f" ({summary['reason']})")
    t.append(
        f"  {summary.get('steps', 0)} steps, {summary.get('epochs', 0):g} epochs, "
        f"{num(summary.get('train_seconds'))} s, {summary.get('samples_per_s') or 0:,.0f} samples/s\n"
    )
    t.append("final: " + ("  ".join(parts) if parts else "no metrics"), style="bold")
    window = f.get("window")
    if parts and window:
        # Say what the final train numbers are over (not the last few noisy batches).
        t.append(
            "\n       "
            + (
                "train_* over the whole training set in eval mode, after the last step"
                if window.startswith("train_*: one pass")
                else f"train_* over the {window}"
            ),
            style="dim",
        )
    return t


# ---------------------------------------------------------------- heat strips and sparklines
# Terminal pictures of the probe series. They adapt to the console's width (at most
# STRIP_COLUMNS cells a row), draw coloured blocks on a colour terminal and a character
# ramp where there is no colour (a pipe, a log file), so the picture survives both.

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
    values per row; binned to the console width by plots.log_bins (geometric mean per
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

        from dlx.views.plots import log_bins

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

        from dlx.views.plots import CLASS_COLORS, FAINT, SURE

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
    from dlx.views.plots import grad_series

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

    from dlx.views.plots import time_grad_series

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


def classes_worth_showing(summary: dict[str, Any]) -> bool:
    """The per-class table is shown where it tells something: unequal classes in training
    (the commonest over 1.5x the rarest) or a class recalled less than half the time."""
    c = summary.get("classes")
    if not isinstance(c, dict):
        return False
    recall, train, test = c.get("recall"), c.get("train_counts"), c.get("test_counts")
    conf = c.get("confusion")
    k = len(recall) if isinstance(recall, list) else 0
    # The shape dlx wrote, or nothing (a damaged summary is shown without the table).
    if not k or not all(isinstance(x, list) and len(x) == k for x in (train, test)):
        return False
    if not isinstance(conf, list) or len(conf) != k or not all(isinstance(r, list) and len(r) == k for r in conf):
        return False
    if not all(r is None or _fraction(r) is not None for r in recall) or not all(
        isinstance(n, int) and not isinstance(n, bool) for n in train + test
    ):
        return False
    nonzero = [n for n in train if n]
    uneven = bool(nonzero) and max(nonzero) > 1.5 * min(nonzero)
    return uneven or any(r is not None and r < 0.5 for r in recall)


def class_table(summary: dict[str, Any]) -> Table | None:
    """Per class: training and test samples, test recall, and its row of the confusion matrix."""
    if not classes_worth_showing(summary):
        return None
    c = summary["classes"]
    k = len(c["recall"])
    t = Table(
        title="Per class (test set; confusion: rows true, columns predicted)",
        title_justify="left",
        header_style="bold",
        show_edge=False,
        pad_edge=False,
    )
    for col in ("class", "train", "test", "recall", *[f"->{j}" for j in range(k)]):
        t.add_column(col, justify="right")
    for i in range(k):
        r = c["recall"][i]
        t.add_row(
            str(i),
            str(c["train_counts"][i]),
            str(c["test_counts"][i]),
            Text(f"{r:.0%}" if r is not None else "-", style="bold red" if r is not None and r < 0.5 else ""),
            *[str(v) for v in c["confusion"][i]],
        )
    return t


def instruments_text(summary: dict[str, Any]) -> Text | None:
    """The research instruments' sentences (dlx.run.instruments.digest), when the run had them."""
    d = summary.get("instruments")
    if not isinstance(d, dict) or not d.get("notes"):
        return None
    t = Text("instruments", style="bold")
    cost = ", ".join(f"{k} {v:.2g} s" for k, v in (d.get("seconds") or {}).items())
    t.append(f" ({d.get('measurements')} measurements; {cost})\n", style="dim")
    for note in d["notes"]:
        t.append(f"  {note}\n")
    return t


def run_report(
    summary: dict[str, Any],
    meta: dict[str, Any] | None = None,
    metrics: list[dict[str, Any]] | None = None,
    probes: list[dict[str, Any]] | None = None,
    status: str | None = None,
) -> Group:
    """Everything `dlx train` prints after training and `dlx show` prints for a run
    (status: the run's status now, as folders.run_status judged it with the folder; without
    it, judged from meta alone, where meta is given).

    metrics/probes: the run folder's metrics.jsonl and probes.jsonl records; with
    them come the loss sparkline and the gradient heat strips (over steps, and over
    time steps for recurrent models).
    """
    from dlx.records.folders import run_status

    parts: list[Any] = []

    def part(what: str, build, *args) -> None:
        piece = guarded(what, build, *args)
        if piece is not None:
            parts.append(piece)

    if meta:
        part("meta.json", _head, meta)
    part("summary.json (layers)", layer_table, summary)
    if probes:
        part("probes.jsonl", lambda: _spaced(grad_strip(probes, [l["name"] for l in summary.get("layers", [])])))
    part("summary.json (activations)", lambda: _spaced(activation_table(summary)))
    part("summary.json (time_grad)", lambda: _spaced(time_text(summary)))
    part("summary.json, probes.jsonl (time steps)", lambda: _spaced(*time_strips(summary, probes)))
    parts.append(Text(""))
    part("summary.json (verdicts)", verdict_text, summary)
    part("summary.json (instruments)", instruments_text, summary)
    part("summary.json (classes)", lambda: _spaced(class_table(summary)))
    # The run's status now, as `dlx runs` shows it: a summary written by an earlier
    # session of a resumed run that was then killed must not say how that session ended.
    part("summary.json (final)", final_text, summary, status or (run_status(meta) if meta else None))
    if metrics:
        part("metrics.jsonl", LossSpark, metrics)
    return Group(*parts)


def guarded(what: str, build, *args) -> Any:
    """One piece of a view; a piece that its file's odd shape breaks is a line naming the file."""
    try:
        piece = build(*args)
        if piece is not None:  # rich draws lazily: find a broken piece now, not mid-print
            import io

            from rich.console import Console

            Console(file=io.StringIO(), width=120).print(piece)
    except (*SHAPE_ERRORS, NotRenderableError) as e:
        piece = Text(f"({what} has an unexpected shape here: {type(e).__name__}: {e}; left out)", style="yellow")
    except DamagedFile as e:  # a .pt file that is not tensors (folders.read_tensors)
        piece = Text(f"({e}; left out)", style="yellow")
    return piece


def _head(meta: dict[str, Any]) -> Text:
    head = Text(f"run {meta.get('run_id', '?')}", style="bold")
    started = str(meta.get("started") or "").replace("T", " ")[:19]  # to the second: fits 80 columns
    head.append(f"  {meta.get('device', '')}  seed {meta.get('seed')}  started {started}")
    return head


def _spaced(*pieces: Any) -> Group | None:
    """Pieces each after a blank line; None when there are none."""
    pieces = [p for p in pieces if p is not None]
    return Group(*[x for p in pieces for x in (Text(""), p)]) if pieces else None


# ---------------------------------------------------------------- the step-0 init check (initcheck.py's rows)
# Here, with the other views, so that `dlx show` draws it without importing torch.
def init_num(x: float | int | None) -> str:
    """3 significant digits in at most 7 characters: 0.0156, 54.6, 6.46e-4."""
    return fmt.num(x, large=1e3, short_exp=True, exact_int=True)


INIT_VERDICT_STYLE = {
    "ok": "green",
    "kept": "green",
    "grows": "red",
    "shrinks": "yellow",
    "higher than theory": "magenta",
    "lower than theory": "magenta",
    "identical units": "yellow",
    "no input signal": "yellow",
    "too few units": "dim",
    "overflow": "bold red",
    "not applicable": "dim",
}
# Two-line headers, no vertical rules, one space between columns: the table fits 80
# columns for MLP layer names (the verdict wraps where it must).
INIT_COLUMNS = (
    ("layer", "\nlayer"),
    ("fans", "fan\nin/out"),
    ("s2", "init\ns^2"),
    ("in", "input\nE[x^2]"),
    ("pred", "Var(y)\npred"),
    ("meas", "Var(y)\nmeas"),
    ("ratio", "meas/\npred"),
    ("g_pred", "gain\npred"),
    ("g_meas", "gain\nmeas"),
    ("verdict", "\nverdict"),
)


def init_check_table(rows: list[dict[str, Any]]):
    """A rich Table of init_check rows (as returned, or as read back from summary.json); the
    notes (why a verdict, what does not apply) follow it as numbered lines in its caption."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    scheme = rows[0]["scheme"] if rows else "?"
    rules = list(dict.fromkeys(r["rule"] for r in rows if r.get("rule")))
    notes = [f"{r['layer']}: {r['note']}" for r in rows if r.get("note")]
    caption = (
        "Var(y) is the spread of W x across units; predicted = fan_in * s^2 * E[x^2], with E[x^2] "
        "measured at the layer's input; gain = Var(y) / Var(y) of the layer before"
        + "".join(f"\n[{i}] {n}" for i, n in enumerate(notes, start=1))
    )
    t = Table(
        title=escape(f"init check at step 0: {scheme}, s^2 = {'; '.join(rules) or '-'}"),
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
        caption=escape(caption),
        caption_justify="left",
    )
    for key, header in INIT_COLUMNS:
        t.add_column(escape(header), justify="left" if key in ("layer", "verdict") else "right")
    k = 0
    for r in rows:
        fans = "-" if r["fan_in"] is None else f"{r['fan_in']}/{r['fan_out']}"
        verdict = Text(str(r["verdict"]), style=INIT_VERDICT_STYLE.get(r["verdict"], ""))
        if r.get("note"):
            k += 1
            verdict.append(f" [{k}]", style="dim")
        t.add_row(
            Text(str(r["layer"])),
            fans,
            init_num(r["weight_var"]),
            init_num(r["input_sq"]),
            init_num(r["predicted_var"]),
            init_num(r["measured_var"]),
            init_num(r["ratio"]),
            init_num(r["predicted_gain"]),
            init_num(r["measured_gain"]),
            verdict,
        )
    return t

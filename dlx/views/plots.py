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

The series readers (grad_series, log_bins, ...) need numpy only: the terminal
heat strips in report.py use them without importing matplotlib.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

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


def plain(text: Any) -> str:
    """A user's text (a title, a run or layer name) to be drawn as written: a `$` is a dollar
    sign, not the start of TeX math, which fails or garbles the text. Only these strings are
    escaped: matplotlib's own tick labels (10^-1 on a log axis) are mathtext and stay so."""
    return str(text).replace("$", r"\$")


# ---------------------------------------------------------------- series (numpy only)


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


def grad_series(probes: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(steps [S], gradient norms [S, L]) from probes.jsonl records, input layer first.

    A norm stored as null (NaN or Inf: JSON has neither) comes back as NaN.
    """
    steps: list[int] = []
    rows: list[list] = []
    for p in probes:
        g = p.get("grad_norm") or []
        first = p.get("first_step", p["step"] - len(g) + 1)
        steps.extend(range(first, first + len(g)))
        rows.extend(g)
    if not rows:
        return np.zeros(0, int), np.zeros((0, 0))
    return np.asarray(steps), np.asarray(rows, dtype=float)  # None -> nan


def time_grad_series(probes: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(log steps [K], ||dL/dh_t|| [K, R, T]) for recurrent runs; empty otherwise."""
    kept = [p for p in probes if p.get("time_grad")]
    if not kept:
        return np.zeros(0, int), np.zeros((0, 0, 0))
    return (np.asarray([p["step"] for p in kept]), np.asarray([p["time_grad"] for p in kept], dtype=float))


def act_series(probes: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Activation statistics at the log steps that have them: steps [K], pct [K, A, P]
    (the probe PERCENTILES), dead, negative and saturated [K, A] fractions (NaN where
    the activation has none: see probes.ACT_FIELDS)."""
    kept = [p for p in probes if p.get("act_pct")]
    if not kept:
        return {}
    return {
        "steps": np.asarray([p["step"] for p in kept]),
        "pct": np.asarray([p["act_pct"] for p in kept], dtype=float),
        **{
            key: np.asarray([_row(p.get(f"act_{key}"), len(p["act_pct"])) for p in kept], dtype=float)
            for key in ("dead", "negative", "saturated")
        },
    }


def _row(values: Any, n: int) -> list:
    """One fraction per activation; NaN for each when the record has none (or not n)."""
    return values if isinstance(values, list) and len(values) == n else [None] * n


def log_bins(x: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of x [S, L] (positive norms) into at most n_bins bins of consecutive rows.

    Returns (edges [B + 1] row indices, log10 values [B, L]): the mean of log10 over
    a bin's positive finite values (a geometric mean). NaN marks a bin holding any
    non-finite value (a divergence must stay visible after binning); -inf a bin whose
    values are all exactly zero (no gradient at all, e.g. a symmetric layer).
    """
    s = x.shape[0]
    b = max(1, min(n_bins, s))
    # floor of points >= 1 apart: strictly increasing edges, every bin non-empty.
    edges = np.floor(np.linspace(0, s, b + 1)).astype(int)
    bad = ~np.isfinite(x)
    good = np.isfinite(x) & (x > 0)
    logs = np.log10(np.where(good, x, 1.0))
    starts = edges[:-1]
    sums = np.add.reduceat(np.where(good, logs, 0.0), starts, axis=0)
    counts = np.add.reduceat(good.astype(int), starts, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = sums / counts  # 0/0 -> nan for bins without a positive value
    out[np.isnan(out)] = -np.inf  # no positive value and nothing bad: all zeros
    out[np.add.reduceat(bad.astype(int), starts, axis=0) > 0] = np.nan
    return edges, out


# ---------------------------------------------------------------- runs and groups


@dataclass
class Run:
    """One run folder's series, read once."""

    path: Path
    meta: dict[str, Any]
    config: dict[str, Any]
    summary: dict[str, Any]
    metrics: list[dict[str, Any]]
    steps: np.ndarray  # [S] training steps of the gradient norms
    grad: np.ndarray  # [S, L]
    layers: list[str]
    act_names: list[str]
    acts: dict[str, np.ndarray]
    tg_steps: np.ndarray  # [K]
    time_grad: np.ndarray  # [K, R, T]
    instruments: list[dict[str, Any]] = field(default_factory=list)  # dlx.run.instruments records

    @property
    def diverged_step(self) -> int | None:
        d = self.summary.get("diverged") or {}
        return d.get("step")


@dataclass
class Group:
    """Runs of one variant (same config except seed/name); `label` names the variant."""

    label: str
    runs: list[Run] = field(default_factory=list)

    @property
    def first(self) -> Run:
        return self.runs[0]


def load_run_series(path: Path) -> Run:
    import yaml

    from dlx.records.folders import load_run

    d = load_run(Path(path))
    try:
        config = yaml.safe_load(d["config"]) or {}
    except yaml.YAMLError:
        config = {}
    return run_series(
        Path(path),
        d["meta"],
        config if isinstance(config, dict) else {},
        d["summary"] or {},
        d["metrics"],
        d["probes"],
        d["instruments"],
    )


def run_series(
    path: Path | None,
    meta: dict[str, Any],
    config: dict[str, Any],
    summary: dict[str, Any],
    metrics: list[dict[str, Any]],
    probes: list[dict[str, Any]],
    instruments: Sequence[dict[str, Any]] = (),
) -> Run:
    """The series of one run from its records, read from a folder or kept in memory
    (an unsaved run: no meta, so names come from its summary)."""
    steps, grad = grad_series(probes)
    layers = _names(meta.get("layers") or summary.get("layers"))
    if grad.size and len(layers) != grad.shape[1]:
        layers = [f"layer {j + 1}" for j in range(grad.shape[1])]
    tg_steps, tg = time_grad_series(probes)
    meta = meta or {"name": config.get("name") or "run", "seed": config.get("seed")}
    return Run(
        path=Path(path) if path else Path(meta["name"]),
        meta=meta,
        config=config,
        summary=summary,
        metrics=metrics,
        steps=steps,
        grad=grad,
        layers=layers,
        act_names=_names(meta.get("activations") or summary.get("activations")),
        acts=act_series(probes),
        tg_steps=tg_steps,
        time_grad=tg,
        instruments=list(instruments),
    )


def _names(items: Any) -> list[str]:
    """Layer or activation names from meta.json / summary.json (names, or records with a
    name); [] when the file holds something else (the panels then number them)."""
    if not isinstance(items, list):
        return []
    names = [x if isinstance(x, str) else x.get("name") if isinstance(x, dict) else None for x in items]
    return [str(n) for n in names] if all(isinstance(n, str) for n in names) else []


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}."))
    return {k.rstrip("."): v for k, v in out.items()}


def _variant(cfg: dict[str, Any]) -> str:
    """What makes runs the same variant: the config without its seed and name."""
    rest = {k: v for k, v in cfg.items() if k not in ("seed", "name")}
    return json.dumps(rest, sort_keys=True, default=str)


def group_runs(runs: list[Run]) -> list[Group]:
    """Runs grouped by variant (first appearance order), each labelled by what sets it apart."""
    by: dict[str, list[Run]] = {}
    for r in runs:
        by.setdefault(_variant(r.config), []).append(r)
    flats = [_flat({k: v for k, v in rs[0].config.items() if k not in ("seed", "name")}) for rs in by.values()]
    keys = sorted({k for f in flats for k in f})
    differ = [k for k in keys if len({json.dumps(f.get(k), default=str) for f in flats}) > 1]
    # A section whose name differs (activation.name) says it all: its other keys
    # (init.a, init.gain: parameters of different inits) would only add noise.
    named = {k[: -len(".name")] for k in differ if k.endswith(".name")}
    differ = [k for k in differ if k.endswith(".name") or k.rsplit(".", 1)[0] not in named]
    groups = []
    for rs, f in zip(by.values(), flats):
        if differ:
            label = ", ".join(f"{k.removesuffix('.name')}={f.get(k)}" for k in differ[:3])
            label += ", …" if len(differ) > 3 else ""
        else:
            label = rs[0].meta.get("name") or rs[0].path.name
        if len(label) > 48:
            label = label[:47] + "…"
        seeds = [r.meta.get("seed", r.config.get("seed")) for r in rs]
        label += f" (seeds {', '.join(map(str, seeds))})" if len(rs) > 1 else f" (seed {seeds[0]})"
        groups.append(Group(label, rs))
    return groups


def load_groups(paths: Sequence[Path | str]) -> list[Group]:
    """Run folders -> groups of seeds (see group_runs)."""
    return group_runs([load_run_series(Path(p)) for p in paths])


def _as_groups(runs: Sequence[Any]) -> list[Group]:
    if runs and not isinstance(runs[0], Group):
        return load_groups(runs)  # paths
    return list(runs)


# ---------------------------------------------------------------- panels


def panel_names(runs: Sequence[Any]) -> list[str]:
    """The panels build_figure draws for these groups (or run paths), in order."""
    groups = _as_groups(runs)
    names = ["loss"]
    if any(
        m.get("train_acc") is not None or m.get("test_acc") is not None
        for g in groups
        for r in g.runs
        for m in r.metrics
    ):
        names.append("accuracy")
    if any(r.time_grad.size for g in groups for r in g.runs):
        names.append("time_grad")
    # Weights near zero, where some layer of some run has many (L1): like the tables' column.
    if any(_sparse_layers(r) for g in groups for r in g.runs):
        names.append("sparsity")
    for kind in ("sharpness", "noise"):
        if any(rec.get(kind) for g in groups for r in g.runs for rec in r.instruments):
            names.append(kind)
    for i, g in enumerate(groups[:MAX_GROUP_ROWS]):
        if any(rec.get("spectra") for rec in g.first.instruments):
            names.append(f"spectra:{i}")
    for i, g in enumerate(groups[:MAX_GROUP_ROWS]):
        if g.first.grad.size:
            names += [f"grad_heatmap:{i}", f"grad_lines:{i}"]
        names += [f"activations:{i}:{a}" for a in _act_layers(g.first)]
    return names


def _act_layers(run: Run) -> list[str]:
    if not run.acts or not run.act_names:
        return []
    n = min(len(run.act_names), run.acts["pct"].shape[1])
    pick = np.unique(np.round(np.linspace(0, n - 1, min(n, MAX_ACT_PANELS))).astype(int))
    return [run.act_names[j] for j in pick]


def draw_panel(ax, name: str, runs: Sequence[Any], *, heat_range: tuple[float, float] | None = None) -> None:
    """Draw the panel `name` (one of panel_names(runs)) onto ax."""
    groups = _as_groups(runs)
    kind, _, rest = name.partition(":")
    ax.set_label(name)
    if kind == "loss":
        draw_curves(
            ax,
            [(g.label, [r.metrics for r in g.runs], _div(g)) for g in groups],
            [("train_loss", "train", "-"), ("test_loss", "test", "--")],
            "loss",
            log=True,
        )
    elif kind == "accuracy":
        draw_curves(
            ax,
            [(g.label, [r.metrics for r in g.runs], _div(g)) for g in groups],
            [("train_acc", "train", "-"), ("test_acc", "test", "--")],
            "accuracy",
            log=False,
        )
    elif kind == "time_grad":
        draw_time_grad(ax, groups)
    elif kind == "grad_heatmap":
        i = int(rest)
        draw_grad_heatmap(ax, groups[i], heat_range or _heat_range(groups))
    elif kind == "grad_lines":
        draw_grad_lines(ax, groups[int(rest)])
    elif kind == "activations":
        i, _, layer = rest.partition(":")
        draw_activations(ax, groups[int(i)], layer, color=f"C{int(i) % 10}")
    elif kind == "sparsity":
        draw_sparsity(ax, groups)
    elif kind == "sharpness":
        draw_sharpness(ax, groups)
    elif kind == "noise":
        draw_noise(ax, groups)
    elif kind == "spectra":
        draw_spectra(ax, groups[int(rest)])
    else:
        raise ValueError(
            f"unknown panel {name!r}; panels: loss, accuracy, time_grad, grad_heatmap:G, "
            f"grad_lines:G, activations:G:LAYER"
        )


def _draw_or_say(ax, name: str, groups: list[Group], heat_range) -> None:
    """draw_panel, or (a run's files of a shape it cannot draw) the panel saying so."""
    from dlx.records.folders import SHAPE_ERRORS

    try:
        draw_panel(ax, name, groups, heat_range=heat_range)
    except SHAPE_ERRORS as e:
        ax.cla()
        ax.set_label(name)
        _empty(ax, f"cannot draw {name.split(':')[0]}:\na run's files have an unexpected shape\n({type(e).__name__})")


def _series(records: list[dict[str, Any]], kind: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of records[...][kind][key], the finite numbers only."""
    pts = [
        (r["step"], r[kind][key])
        for r in records
        if isinstance(r.get(kind), dict) and isinstance(r[kind].get(key), (int, float)) and math.isfinite(r[kind][key])
    ]
    return (
        (np.array([p[0] for p in pts]), np.array([p[1] for p in pts], dtype=float))
        if pts
        else (np.zeros(0), np.zeros(0))
    )


def _near_zero(run: Run) -> dict[str, float]:
    """Layer name -> its share of near-zero weights (summary.json), what of it is well formed."""
    from dlx.views.report import _fraction

    layers = run.summary.get("layers") if isinstance(run.summary, dict) else None
    out = {}
    for l in layers if isinstance(layers, list) else []:
        if isinstance(l, dict) and isinstance(l.get("name"), str) and _fraction(l.get("near_zero")) is not None:
            out[l["name"]] = _fraction(l["near_zero"])
    return out


def _sparse_layers(run: Run) -> bool:
    return any(v >= 0.05 for v in _near_zero(run).values())


def draw_sparsity(ax, groups: list[Group]) -> None:
    """Per layer, the share of weights with |w| < 1e-3 at the end (recording.NEAR_ZERO), one
    bar per run group (the mean over its seeds): L1 zeroes weights, L2 only shrinks them."""
    width = 0.8 / max(len(groups), 1)
    names: list[str] = []
    for i, g in enumerate(groups):
        per: dict[str, list[float]] = {}
        for r in g.runs:
            for name, v in _near_zero(r).items():
                per.setdefault(name, []).append(v)
        names = names or list(per)
        xs = np.arange(len(names)) + i * width - 0.4 + width / 2
        ax.bar(xs, [float(np.mean(per.get(n, [0.0]))) for n in names], width, color=f"C{i % 10}", label=g.label)
    ax.set_xticks(np.arange(len(names)), names, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("weights with |w| < 1e-3")
    ax.set_title("sparsity per layer at the end", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)


def draw_sharpness(ax, groups: list[Group]) -> None:
    """The top Hessian eigenvalue over steps per run (Adam: the preconditioned one), its
    stability threshold dashed in the same colour (2/lr, ...), the trace dotted on the right."""
    twin = None
    for i, g in enumerate(groups):
        color = f"C{i % 10}"
        for j, r in enumerate(g.runs):
            recs = r.instruments
            pre = any((x.get("sharpness") or {}).get("preconditioned") for x in recs)
            steps, top = _series(recs, "sharpness", "preconditioned_top" if pre else "top")
            ax.plot(
                steps,
                top,
                "-",
                color=color,
                lw=1.4,
                label=(g.label + (" (preconditioned)" if pre else "")) if j == 0 else None,
            )
            ts, thr = _series(recs, "sharpness", "threshold")
            if len(ts) and j == 0:
                rule = (recs[-1].get("sharpness") or {}).get("rule", "")
                ax.plot(ts, thr, "--", color=color, lw=1.0, alpha=0.8, label=f"threshold {rule.split(':')[0]}")
            tsteps, trace = _series(recs, "trace", "value")
            if len(tsteps) and j == 0:
                twin = twin or ax.twinx()
                twin.plot(tsteps, trace, ":", color=color, lw=1.0)
    ax.set_title("sharpness (top Hessian eigenvalue) vs threshold", fontsize=10)
    ax.set_xlabel("step")
    ax.set_ylabel("top eigenvalue")
    ax.grid(alpha=0.3)
    if twin is not None:
        twin.set_ylabel("trace (dotted)", fontsize=8)
        twin.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="best", frameon=False)


def draw_noise(ax, groups: list[Group]) -> None:
    """The gradient noise scale B_simple over steps per run, its batch size dashed."""
    for i, g in enumerate(groups):
        color = f"C{i % 10}"
        r = g.first
        steps, b = _series(r.instruments, "noise", "b_simple")
        # Markers: a measurement whose mean gradient is lost in the noise has no B_simple.
        ax.plot(steps, b, "-o", color=color, lw=1.4, ms=3, label=f"{g.label} B_simple")
        bs, batch = _series(r.instruments, "noise", "batch")
        if len(bs):
            ax.plot(bs, batch, "--", color=color, lw=1.0, label=f"batch size {int(batch[-1])}")
    if ax.get_lines():
        ax.set_yscale("log")
    ax.set_title("gradient noise scale B_simple = tr(Sigma)/|G|^2", fontsize=10)
    ax.set_xlabel("step")
    ax.set_ylabel("samples")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best", frameon=False)


def draw_spectra(ax, g: Group) -> None:
    """Each layer's singular values at the first and last measurement (dashed: first),
    divided by the largest one a random matrix of the init's variance would have (the
    Marchenko-Pastur edge; 1 dotted): above it, training has grown structure."""
    import matplotlib

    recs = [x for x in g.first.instruments if x.get("spectra")]
    first, last = recs[0], recs[-1]
    names = list(last["spectra"])
    colors = matplotlib.colormaps["viridis"](np.linspace(0, 0.85, max(len(names), 1)))
    scaled = False
    for name, color in zip(names, colors):
        for rec, style in ((first, "--"), (last, "-")):
            sp = rec["spectra"].get(name) or {}
            sv = np.asarray(sp.get("singular") or [], dtype=float)
            if not sv.size:
                continue
            edge = sp.get("mp_edge")
            y = sv / edge if edge else sv
            scaled = scaled or bool(edge)
            x = (np.arange(len(sv)) + 0.5) / max(sp.get("count", len(sv)), 1)
            ax.plot(
                x,
                y,
                style,
                color=color,
                lw=1.2,
                label=f"{name} (rank {sp.get('stable_rank', 0):.2g})" if style == "-" else None,
            )
    if scaled:
        ax.axhline(1.0, color="0.4", ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_title(f"singular values: step {first['step']} dashed, {last['step']} solid", fontsize=10)
    ax.set_xlabel("index / count (largest first)")
    ax.set_ylabel("singular value / init's random edge" if scaled else "singular value")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best", frameon=False, title="stable rank at the end", title_fontsize=7)


def _div(g: Group) -> int | None:
    steps = [r.diverged_step for r in g.runs if r.diverged_step is not None]
    return min(steps) if steps else None


def draw_curves(
    ax, groups: list[tuple[str, list[list[dict]], int | None]], keys: list[tuple[str, str, str]], ylabel: str, log: bool
) -> bool:
    """Metric curves: one colour per group (mean over its runs, band min-max when
    several), one line style per key (train solid, test dashed). True if anything was drawn."""
    from matplotlib.lines import Line2D

    drawn_keys, handles = set(), []
    for i, (label, runs, diverged) in enumerate(groups):
        color = f"C{i % 10}"
        shown = False
        for key, _, style in keys:
            band = _band(runs, key)
            if band is None:
                continue
            steps, mean, lo, hi = band
            ax.plot(steps, mean, color=color, ls=style, lw=1.6, marker="o" if len(steps) <= 3 else None, ms=4)
            if len(runs) > 1:
                ax.fill_between(steps, lo, hi, color=color, alpha=0.2, lw=0)
            drawn_keys.add(key)
            shown = True
        if diverged is not None:
            ax.axvline(diverged, color=NONFINITE_COLOR, ls=":", lw=1.2)
        if (shown or diverged is not None) and len(groups) > 1:  # one group: the title names it
            handles.append(Line2D([], [], color=color, lw=2, label=plain(label)))
    if any(d is not None for _, _, d in groups):
        handles.append(Line2D([], [], color=NONFINITE_COLOR, ls=":", label="diverged"))
    if len(drawn_keys) > 1:  # a style legend only when both styles are on the axes
        handles += [Line2D([], [], color="0.3", ls=style, label=name) for key, name, style in keys if key in drawn_keys]
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(
        ylabel + (" (mean, band min-max over seeds)" if any(len(r) > 1 for _, r, _ in groups) else ""), fontsize=10
    )
    if drawn_keys:
        if log and _log_worthy([r for _, runs, _ in groups for r in runs], [k for k, _, _ in keys]):
            ax.set_yscale("log")
        if handles:
            ax.legend(handles=handles, fontsize=8)
    else:
        _empty(ax, f"no finite {ylabel} logged")
    ax.grid(alpha=0.3)
    return bool(drawn_keys)


def _log_worthy(runs: list[list[dict]], keys: list[str]) -> bool:
    """A log axis for positive values spanning more than a decade; within one, a linear
    axis reads better (a log axis would label its minor ticks 2x10^-1, 3x10^-1, ...)."""
    vals = np.asarray([m[k] for ms in runs for m in ms for k in keys if m.get(k) is not None], float)
    vals = vals[np.isfinite(vals)]
    return bool(vals.size) and vals.min() > 0 and vals.max() / vals.min() > 10


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")


def _group_grad(g: Group) -> tuple[np.ndarray, np.ndarray]:
    """Steps and per-step norms of a group: the geometric mean over its seeds, on the
    steps all of them logged (a diverged seed shortens the group's series)."""
    runs = [r for r in g.runs if r.grad.size]
    if len(runs) <= 1:
        return (runs[0].steps, runs[0].grad) if runs else (np.zeros(0, int), np.zeros((0, 0)))
    n = min(len(r.steps) for r in runs)
    stack = np.stack([r.grad[:n] for r in runs])
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.exp(np.log(stack).mean(0))  # any NaN seed -> NaN: shown as non-finite
    return runs[0].steps[:n], mean


def _heat_range(groups: list[Group]) -> tuple[float, float]:
    """One log10 colour range for every heatmap, so groups compare at a glance."""
    vals = []
    for g in groups[:MAX_GROUP_ROWS]:
        _, grad = _group_grad(g)
        if grad.size:
            _, lg = log_bins(grad, HEAT_BINS)
            vals.append(lg[np.isfinite(lg)])
    allv = np.concatenate(vals) if vals else np.zeros(0)
    if not allv.size:
        return -1.0, 1.0
    lo, hi = float(allv.min()), float(allv.max())
    return (lo - 0.5, hi + 0.5) if hi - lo < 1e-9 else (lo, hi)


def draw_grad_heatmap(ax, g: Group, heat_range: tuple[float, float] | None = None) -> None:
    """log10 gradient norm, layers (rows, input first) x steps (columns, binned)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    steps, grad = _group_grad(g)
    r = g.first
    ax.set_title("log10 gradient norm, layer x step", fontsize=10)
    if not grad.size:
        _empty(ax, "no gradient norms logged")
        return
    edges, lg = log_bins(grad, HEAT_BINS)
    lo, hi = heat_range or _heat_range([g])
    s0, s1 = steps[0] - 0.5, steps[-1] + 0.5
    extent = (s0, s1, grad.shape[1] - 0.5, -0.5)
    import matplotlib

    cmap = matplotlib.colormaps["viridis"].with_extremes(bad=ZERO_COLOR)
    im = ax.imshow(
        np.ma.masked_invalid(lg.T), aspect="auto", cmap=cmap, vmin=lo, vmax=hi, extent=extent, interpolation="nearest"
    )
    bad = np.isnan(lg.T)
    if bad.any():
        ax.imshow(
            np.ma.masked_where(~bad, np.ones_like(lg.T)),
            aspect="auto",
            cmap=ListedColormap([NONFINITE_COLOR]),
            extent=extent,
            interpolation="nearest",
        )
    cb = ax.figure.colorbar(im, ax=ax, pad=0.01, fraction=0.04)
    cb.set_label("log10 ||grad||", fontsize=8)
    cb.ax.tick_params(labelsize=8)
    names = r.layers
    ticks = range(len(names)) if len(names) <= 24 else np.linspace(0, len(names) - 1, 12).astype(int)
    ax.set_yticks(list(ticks), [plain(names[j]) for j in ticks], fontsize=8)
    ax.set_ylabel("layer (input at top)")
    ax.set_xlabel("step")
    extras = []
    if bad.any():
        extras.append(Patch(color=NONFINITE_COLOR, label="NaN/Inf"))
    if np.isneginf(lg).any():
        extras.append(Patch(color=ZERO_COLOR, label="exactly 0"))
    if extras:
        ax.legend(handles=extras, fontsize=8, loc="upper right", framealpha=0.9)


def draw_grad_lines(ax, g: Group) -> None:
    """Per-layer gradient norm over steps on a log axis, coloured input (dark) to output (light)."""
    import matplotlib

    steps, grad = _group_grad(g)
    r = g.first
    ax.set_title("gradient norm per layer" + (" (geometric mean over seeds)" if len(g.runs) > 1 else ""), fontsize=10)
    if not grad.size:
        _empty(ax, "no gradient norms logged")
        return
    edges, lg = log_bins(grad, LINE_BINS)
    centre = (steps[edges[:-1]] + steps[edges[1:] - 1]) / 2
    cmap = matplotlib.colormaps["viridis"]
    n = grad.shape[1]
    drawn = False
    for j in range(n):
        y = np.where(np.isfinite(lg[:, j]), 10.0 ** lg[:, j], np.nan)
        if np.isfinite(y).any():
            few = np.isfinite(y).sum() <= 3  # a lone point draws no line: mark it
            ax.plot(
                centre,
                y,
                color=cmap(j / max(n - 1, 1) * 0.9),
                lw=1.3,
                marker="o" if few else None,
                ms=4,
                label=plain(r.layers[j]) if j < len(r.layers) else f"layer {j + 1}",
            )
            drawn = True
    if drawn:
        ax.set_yscale("log")
    if r.diverged_step is not None:
        ax.axvline(r.diverged_step, color=NONFINITE_COLOR, ls=":", lw=1.2, label="diverged")
    ax.set_xlabel("step")
    ax.set_ylabel("||grad|| (L2)")
    ax.grid(alpha=0.3, which="major")
    handles, labels = ax.get_legend_handles_labels()
    if len(handles) > 12:  # keep the first and last layers' entries: they carry the story
        from matplotlib.lines import Line2D

        gap = Line2D([], [], ls="none", label=f"… {len(handles) - 12} more")
        handles = handles[:6] + [gap] + handles[-6:]
        labels = labels[:6] + [gap.get_label()] + labels[-6:]
    if len(handles) > 6:  # beside the axes: inside it would hide the lines it names
        ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    elif handles:
        ax.legend(handles, labels, fontsize=7, loc="best")


def draw_activations(ax, g: Group, layer: str, color: str = "C0") -> None:
    """One activation's output distribution over steps: bands 1-99, 10-90, 25-75 %, median."""
    from dlx.run.probes import PERCENTILES

    r = g.first
    ax.set_title(plain(layer), fontsize=9)
    if not r.acts or layer not in r.act_names:
        _empty(ax, "no activation statistics")
        return
    j = r.act_names.index(layer)
    steps, pct = r.acts["steps"], r.acts["pct"][:, j, :]
    q = {p: k for k, p in enumerate(PERCENTILES)}
    for (a, b), alpha in (((0.01, 0.99), 0.18), ((0.1, 0.9), 0.3), ((0.25, 0.75), 0.45)):
        if a in q and b in q:
            ax.fill_between(steps, pct[:, q[a]], pct[:, q[b]], color=color, alpha=alpha, lw=0, label=f"{a:.0%}-{b:.0%}")
    if 0.5 in q:
        ax.plot(steps, pct[:, q[0.5]], color=color, lw=1.2, label="median")
    finite = pct[np.isfinite(pct)]
    if finite.size and np.abs(finite).max() > 1e4:
        ax.set_yscale("symlog")  # an exploding net's outputs span many decades
    notes = []
    for key, word in (("dead", "dead"), ("negative", "negative"), ("saturated", "saturated")):
        frac = r.acts.get(key)
        if (
            frac is not None
            and frac.ndim == 2
            and frac.shape[1] > j
            and np.isfinite(frac[-1, j])
            and frac[-1, j] >= 0.05
        ):
            notes.append(f"{frac[-1, j]:.0%} {word}")
    if notes:
        ax.set_title(plain(f"{layer} ({', '.join(notes)} at the end)"), fontsize=9)
    ax.set_xlabel("step", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def draw_time_grad(ax, groups: list[Group]) -> None:
    """||dL/dh_t|| over time steps t (recurrent runs): how far back the gradient reaches.

    One group: a line per log step (light = early, dark = late). Several: the last
    log step of each group (mean of log10 over seeds, band min-max).
    """
    import matplotlib

    rec = [g for g in groups if any(r.time_grad.size for r in g.runs)]
    ax.set_title("gradient reaching each time step, ||dL/dh_t||", fontsize=10)
    ax.set_xlabel("time step t (the loss reads the last)")
    ax.set_ylabel("||dL/dh_t||")
    styles = ["-", "--", ":", "-."]
    if len(rec) == 1 and len(rec[0].runs) == 1:
        r = rec[0].first
        k = len(r.tg_steps)
        pick = np.unique(np.round(np.linspace(0, k - 1, min(k, 6))).astype(int))
        cmap = matplotlib.colormaps["magma_r"]
        for n, i in enumerate(pick):
            for row in range(r.time_grad.shape[1]):
                y = r.time_grad[i, row]
                t = np.arange(1, len(y) + 1)
                ax.plot(
                    t,
                    _pos(y),
                    color=cmap(0.25 + 0.7 * n / max(len(pick) - 1, 1)),
                    ls=styles[row % 4],
                    lw=1.4,
                    label=f"step {r.tg_steps[i]}"
                    + (f" {r.layers[row]}" if r.time_grad.shape[1] > 1 and row < len(r.layers) else ""),
                )
    else:
        ax.set_title("gradient reaching each time step at the last log step, ||dL/dh_t||", fontsize=10)
        for gi, g in enumerate(groups):
            runs = [r for r in g.runs if r.time_grad.size]
            if not runs:
                continue
            color = f"C{gi % 10}"
            with np.errstate(divide="ignore", invalid="ignore"):
                stack = np.log10(np.stack([r.time_grad[-1] for r in runs]))  # [seeds, R, T]
            for row in range(stack.shape[1]):
                t = np.arange(1, stack.shape[2] + 1)
                ax.plot(
                    t,
                    _pos(10 ** stack[:, row].mean(0)),
                    color=color,
                    ls=styles[row % 4],
                    lw=1.6,
                    label=plain(g.label) if row == 0 else None,
                )
                if len(runs) > 1:
                    ax.fill_between(
                        t, 10 ** stack[:, row].min(0), 10 ** stack[:, row].max(0), color=color, alpha=0.2, lw=0
                    )
    if ax.lines:
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    else:
        _empty(ax, "no recurrent layer")
    ax.grid(alpha=0.3)


def _pos(y: np.ndarray) -> np.ndarray:
    """Values a log axis can show: non-positive and non-finite to NaN (a gap)."""
    return np.where(np.isfinite(y) & (y > 0), y, np.nan)


# ---------------------------------------------------------------- whole figures


def build_figure(runs: Sequence[Any], title: str | None = None):
    """A matplotlib Figure with every panel of panel_names(runs); nothing written.

    Rows (one subfigure each): the curve panels; then per group its heatmap and
    gradient lines, and its activation panels (ACT_PER_ROW a row).
    """
    from matplotlib.figure import Figure

    groups = _as_groups(runs)
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
    heat_range = _heat_range(groups)
    for sub, (panels, _, row_title, color) in zip(subs, rows):
        if row_title:
            sub.suptitle(plain(row_title), fontsize=11, color=color, x=0.01, ha="left")
        if panels[0].startswith("grad_heatmap"):
            widths = [4, 2]
        elif panels[0].startswith("activations"):
            widths = [1] * ACT_PER_ROW  # the same panel size on every activation row
        else:
            widths = [1] * len(panels)
        axes = sub.subplots(1, len(widths), width_ratios=widths, squeeze=False)[0]
        for ax, name in zip(axes, panels):
            _draw_or_say(ax, name, groups, heat_range)
        for ax in axes[len(panels) :]:
            ax.set_visible(False)
            ax.set_label("<unused>")
        if panels[0].startswith("activations"):
            axes[0].set_ylabel("activation", fontsize=8)
            if row_title:
                axes[0].legend(fontsize=6, loc="upper left")
    n = sum(len(g.runs) for g in groups)
    fig.suptitle(
        plain(
            title
            or ("dlx plot: " + groups[0].label if len(groups) == 1 else f"dlx plot: {n} runs, {len(groups)} variants")
        ),
        fontsize=12,
    )
    return fig


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


# What Run.plot(panels=[...]) takes: a name for each kind of panel (a group's panels
# are drawn for its first group; "activations" means every activation panel).
USER_PANELS = (
    "loss",
    "accuracy",
    "time_grad",
    "grad_heatmap",
    "grad_lines",
    "activations",
    "sparsity",
    "sharpness",
    "noise",
    "spectra",
)


def panels_figure(
    runs: Sequence[Any],
    panels: Sequence[str] | None = None,
    size: tuple[float, float] | None = None,
    title: str | None = None,
):
    """A Figure of the named panels (USER_PANELS), in a grid of at most 3 columns;
    every panel (build_figure) when panels is None. size: (width, height) in inches."""
    from matplotlib.figure import Figure

    groups = _as_groups(runs)
    if panels is None:
        fig = build_figure(groups, title)
        if size:
            fig.set_size_inches(*size)
        return fig
    names = _panel_hits(groups, panels)
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=size or (5 * cols, 3.6 * rows), dpi=DPI, layout="constrained")
    _panel_grid(fig, names, groups)
    if title:
        fig.suptitle(plain(title), fontsize=12)
    return fig


def _panel_grid(container, names: list[str], groups: list[Group]) -> None:
    """The named panels in a grid of at most 3 columns on a Figure or SubFigure."""
    cols = min(3, len(names))
    axes = container.subplots(-(-len(names) // cols), cols, squeeze=False).ravel()
    heat_range = _heat_range(groups)
    for ax, name in zip(axes, names):
        _draw_or_say(ax, name, groups, heat_range)
    for ax in axes[len(names) :]:
        ax.set_visible(False)


def _panel_hits(groups: list[Group], panels: Sequence[str]) -> list[str]:
    """The panel names build_figure draws for each requested USER_PANELS name (a UsageError
    naming the choices for an unknown one, and the run's panels for one it lacks)."""
    from dlx.core.errors import UsageError

    available = panel_names(groups)
    names: list[str] = []
    for p in panels:
        if p not in USER_PANELS:
            from dlx.core.registry import closest
            from dlx.views.pictures import PICTURES

            choices = [*USER_PANELS, *PICTURES]
            hint = closest(p, choices)
            raise UsageError(
                f"unknown panel {p!r}"
                + (f"; did you mean {hint!r}?" if hint else "")
                + f" (panels: {', '.join(choices)})"
            )
        hits = [n for n in available if n == p or n.startswith(f"{p}:0") or n.startswith(f"{p}:0:")]
        if p == "sparsity" and not hits and any(_near_zero(r) for g in groups for r in g.runs):
            hits = ["sparsity"]  # asked for: drawn even where no layer reaches the default figure's 5%
        if not hits:
            raise UsageError(
                f"this run has no {p!r} panel (it has: {', '.join(dict.fromkeys(n.split(':')[0] for n in available))})"
            )
        names += hits
    return names


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


def draw_boundary(ax, b, title: str | None = None) -> None:
    """A decision surface (pictures.Boundary): each grid point in its predicted class's
    colour, paler where the model is less sure; training points filled, test points hollow."""
    from matplotlib.colors import to_rgb

    k = b.probs.shape[-1]
    colors = np.array([to_rgb(CLASS_COLORS[i % len(CLASS_COLORS)]) for i in range(k)])
    sure = (b.probs.max(-1) - 1.0 / k) / max(1.0 - 1.0 / k, 1e-9)
    alpha = (FAINT + SURE * np.clip(sure, 0, 1))[..., None]
    img = (1 - alpha) + alpha * colors[b.pred]
    ax.imshow(img, origin="lower", extent=b.extent, aspect="auto", interpolation="nearest")
    c_train = colors[b.y_train % len(colors)]
    c_test = colors[b.y_test % len(colors)]
    ax.scatter(b.x_train[:, 0], b.x_train[:, 1], s=7, c=c_train, edgecolors="white", linewidths=0.3, label="train")
    ax.scatter(b.x_test[:, 0], b.x_test[:, 1], s=14, facecolors="none", edgecolors=c_test, linewidths=0.8, label="test")
    ax.set_xlim(b.extent[0], b.extent[1])
    ax.set_ylim(b.extent[2], b.extent[3])
    ax.set_aspect("equal", adjustable="box")  # the data's own shape (a circle stays round)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(plain(title if title is not None else b.name), fontsize=10)
    ax.set_xlabel(f"step {b.step}: train filled, test hollow", fontsize=8)


def mosaic(images: np.ndarray, gap: int = 1, symmetric: bool = True) -> np.ndarray:
    """Images [n, h, w] tiled into one array (NaN gaps, drawn as background), each scaled
    to [-1, 1] by its own largest |value| (symmetric: 0 stays the middle colour) or to [0, 1]."""
    n, h, w = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), np.nan)
    for i, im in enumerate(images):
        if symmetric:
            im = im / max(float(np.abs(im).max()), 1e-12)
        else:
            lo, hi = float(im.min()), float(im.max())
            im = (im - lo) / max(hi - lo, 1e-12)
        r, c = divmod(i, cols)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = im
    return out


def draw_images(ax, pic, title: str | None = None) -> None:
    """A pictures.Images as one mosaic: weights and filters blue-white-red (each scaled to
    its own largest |value|: the pattern, not the size), feature maps dark to bright."""
    import matplotlib

    symmetric = pic.kind != "feature_maps"
    tiles = mosaic(pic.images, symmetric=symmetric)
    cmap = matplotlib.colormaps["RdBu_r" if symmetric else "viridis"].with_extremes(bad="white")
    ax.imshow(tiles, cmap=cmap, vmin=-1 if symmetric else 0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(plain(title if title is not None else pic.name), fontsize=10)
    shown = f"{len(pic.images)} of {pic.total}" if len(pic.images) < pic.total else f"{pic.total}"
    ax.set_xlabel(plain(f"{pic.note} ({shown}; step {pic.step})"), fontsize=7, wrap=True)


def _split(where, rows: int, cols: int, **kw) -> list:
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


def draw_units(ax, u, title: str | None = None) -> None:
    """pictures.Units: one small map per hidden unit over the input plane, one mosaic per
    layer from input to output (Playground's neurons), each unit scaled to its own largest
    |output|: red where it is positive, blue negative, white 0."""
    import matplotlib

    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="white")
    axes = _split(ax, 1, len(u.layers), wspace=0.08)[0]
    for a, name, maps, total in zip(axes, u.layers, u.maps, u.totals):
        a.imshow(mosaic(maps[:, ::-1, :]), cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
        a.set_xticks([])
        a.set_yticks([])
        shown = f"{len(maps)} of {total}" if len(maps) < total else f"{total}"
        scale = max(float(np.abs(maps).max()), 1e-12)
        # What the maps cannot show by themselves (each is scaled to its own range).
        same = len(maps) > 1 and float(np.abs(maps - maps[:1]).max()) <= 1e-6 * scale
        flat = float((maps.max((1, 2)) - maps.min((1, 2))).max()) <= 1e-6 * scale
        said = ["all the same map"] if same else []
        said += ["flat: no input changes them"] if flat else []
        a.set_xlabel(f"{name}: {shown} units" + "".join(f"\n{x}" for x in said), fontsize=8)
    axes[0].set_title(plain(title if title is not None else u.name), fontsize=10, loc="left")
    axes[-1].set_title(f"step {u.step}", fontsize=8, loc="right")


def draw_warp(ax, w, title: str | None = None) -> None:
    """pictures.Warp: the input plane's grid and the training points as each layer sees
    them, in two of its units (ConvNetJS's 2-D demo): a layer that separates the classes
    has pulled their points apart along its grid."""
    from matplotlib.colors import to_rgb

    axes = _split(ax, 1, len(w.layers), wspace=0.15)[0]
    colors = np.array([to_rgb(c) for c in CLASS_COLORS])
    for a, name, (i, j), lines, pts in zip(axes, w.layers, w.chosen, w.lines, w.points):
        half = len(lines) // 2
        for k, line in enumerate(lines):
            a.plot(line[:, 0], line[:, 1], color="#9aa5b1" if k < half else "#c8ced6", lw=0.6, zorder=1)
        a.scatter(pts[:, 0], pts[:, 1], s=5, c=colors[w.classes % len(colors)], linewidths=0, zorder=2)
        a.set_xticks([])
        a.set_yticks([])
        a.set_xlabel("x1, x2" if name == "input" else f"{name}: units {i}, {j}", fontsize=8)
    axes[0].set_title(plain(title if title is not None else w.name), fontsize=10, loc="left")
    axes[-1].set_title(f"step {w.step}", fontsize=8, loc="right")


def draw_histograms(ax, h, title: str | None = None, limits: tuple[float, float, float, float] | None = None) -> None:
    """pictures.Histograms in the cell of ax: one column per moment (init, snapshots
    between, the end), activation distributions per layer above and log10 |dL/d
    pre-activation| below, one colour per layer from input (dark) to output (bright).
    Rows share their axes, so a spread that shrinks over time or towards the input shows;
    limits (activation lo, hi, log10 gradient lo, hi) fix them."""
    import matplotlib

    grid = _split(ax, 2, len(h.steps), hspace=0.45, wspace=0.08)
    colors = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, max(len(h.layers), 1)))
    pooled = np.concatenate([a[np.isfinite(a)] for m in h.acts for a in m] or [np.zeros(1)])
    # Units that are off (relu: exactly 0) would be one spike hiding every other value.
    zeros = float((pooled == 0).mean()) if pooled.size else 0.0
    drop_zeros = zeros > 0.2
    if drop_zeros:
        pooled = pooled[pooled != 0]
    lo, hi = np.percentile(pooled, [0.5, 99.5]) if pooled.size else (0.0, 1.0)
    logs = [np.log10(np.abs(g[np.isfinite(g) & (g != 0)])) for m in h.grads for g in m]
    glo, ghi = np.percentile(np.concatenate(logs), [0.5, 99.5]) if any(x.size for x in logs) else (-8.0, 0.0)
    if limits is not None:  # an animation's: the same axes in every frame
        lo, hi, glo, ghi = limits
    a_bins, g_bins = np.linspace(lo, hi + 1e-12, 61), np.linspace(glo, ghi + 1e-12, 61)
    last = len(h.steps) - 1
    for c, step in enumerate(h.steps):
        top, bottom = grid[0][c], grid[1][c]
        for j, color in enumerate(colors[: len(h.layers)]):
            a = h.acts[c][j]
            a = a[np.isfinite(a) & ((a != 0) if drop_zeros else True)]
            if a.size:
                dens, _ = np.histogram(a, bins=a_bins, density=True)
                top.plot((a_bins[1:] + a_bins[:-1]) / 2, dens, color=color, lw=1.1)
            g = np.abs(h.grads[c][j])
            g = g[np.isfinite(g) & (g > 0)]
            if g.size:
                dens, _ = np.histogram(np.log10(g), bins=g_bins, density=True)
                bottom.plot((g_bins[1:] + g_bins[:-1]) / 2, dens, color=color, lw=1.1)
        when = " (init)" if step == 0 else " (end)" if c == last and c else ""
        top.set_title(f"step {step}{when}", fontsize=8)
        for a in (top, bottom):
            a.tick_params(labelsize=6)
            a.grid(alpha=0.3)
            if c:
                a.sharey(grid[0 if a is top else 1][0])
                a.tick_params(labelleft=False)
        top.set_xlim(lo, hi)
        bottom.set_xlim(glo, ghi)
    grid[0][0].set_ylabel("density", fontsize=7)
    grid[1][0].set_ylabel("density", fontsize=7)
    mid = len(h.steps) // 2
    grid[0][mid].set_xlabel(
        "activation value" + (f" ({zeros:.0%} exactly 0, left out)" if drop_zeros else ""), fontsize=7
    )
    grid[1][mid].set_xlabel("log10 |dL/d pre-activation|", fontsize=7)
    grid[0][0].text(0, 1.22, plain(title if title is not None else h.name), transform=grid[0][0].transAxes, fontsize=10)
    handles = [matplotlib.lines.Line2D([], [], color=c, lw=1.5, label=n) for n, c in zip(h.layers, colors)]
    # Beside the last column, never over a curve.
    grid[0][last].legend(handles=handles, fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)


def _draw_landscape(where, pic, title=None, **kw):
    from dlx.views.landscape import draw_landscape

    draw_landscape(where, pic, title)


# The drawing of each pictures.* kind (Images: draw_images).
PICTURE_DRAWERS = {
    "Boundary": draw_boundary,
    "Units": draw_units,
    "Warp": draw_warp,
    "Histograms": draw_histograms,
    "Landscape": _draw_landscape,
}


_PICTURE_HEIGHT = {"Boundary": 4.0, "Units": 3.1, "Warp": 3.1, "Histograms": 4.8, "Landscape": 8.0}


def _picture_width(pic) -> float:
    name = type(pic).__name__
    if name == "Units":
        return max(4.2, 2.3 * len(pic.layers))
    if name == "Warp":
        return max(4.2, 2.6 * len(pic.layers))
    if name == "Histograms":
        return max(4.2, 2.3 * len(pic.steps) + 0.8)
    return 4.2


def draw_picture(where, pic, title: str | None = None, **kw) -> None:
    """A pictures.* picture in `where`: a (sub)figure, or an axes (a one-axes picture
    fills it; one of several parts is laid out in its cell)."""
    draw = PICTURE_DRAWERS.get(type(pic).__name__, draw_images)
    if hasattr(where, "subplots") and draw in (draw_boundary, draw_images):
        where = where.subplots()
    draw(where, pic, title, **kw)


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

    from dlx.core.errors import DamagedFile
    from dlx.views.pictures import PICTURES, picture, varying_keys

    kinds = [p for p in panels if p in PICTURES]
    others = [p for p in panels if p not in PICTURES]
    if not kinds:
        return panels_figure(list(run_paths), others, size=size, title=title)
    per_run, damaged = [], []
    for path in run_paths:
        try:
            per_run.append([picture(path, kind, step, pair) for kind in kinds])
        except DamagedFile as e:
            if notes is None:
                raise
            damaged.append(e)
            notes.append(f"{e}; the pictures of run {Path(path).name} are left out")
    if not per_run:
        raise damaged[0]
    rows_of = [list(row) for row in zip(*per_run)]  # one row per kind, one picture per run
    configs = [pic.config for pic in rows_of[0]]
    titles = varying_keys(configs) if len(configs) > 1 else [""]
    titles = [t or pic.name for t, pic in zip(titles, rows_of[0])]
    groups = _as_groups(list(run_paths)) if others else []
    names = _panel_hits(groups, others) if others else []
    n_b = len(per_run)
    # Inches per run of each picture row: pictures of several parts (a map per layer, a
    # histogram per moment) get the width their parts need.
    widths = [max(_picture_width(pic) for pic in pics) for pics in rows_of]
    heights = [_PICTURE_HEIGHT.get(type(pics[0]).__name__, 4.0) for pics in rows_of]
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
    for row, pics in zip(cells, rows_of):
        for cell, pic, t in zip(row, pics, titles):
            draw_picture(cell, pic, t)
    if bottom is not None:
        _panel_grid(bottom, names, groups)
    if title:
        fig.suptitle(plain(title), fontsize=12)
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
        fig.suptitle(plain(title))
    return fig

"""The curve panels of a figure: metrics over steps (loss, accuracy), the gradient through
time of recurrent runs, and the instruments' panels (sparsity, sharpness, noise, spectra).
Each draws onto any matplotlib Axes (panels.draw_panel names them).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dlx.views.series import Group, band, curve, near_zero
from dlx.views.style import NONFINITE_COLOR, plain


def draw_curves(
    ax, groups: list[tuple[str, list[list[dict]], int | None]], keys: list[tuple[str, str, str]], ylabel: str, log: bool
) -> bool:
    """Metric curves: one colour per group (the mean over its runs, and each run faintly
    behind it when several: the seeds' spread as it is, not a band that hides its shape),
    one line style per key (train solid, test dashed). True if anything was drawn."""
    from matplotlib.lines import Line2D

    drawn_keys, handles = set(), []
    for i, (label, runs, diverged) in enumerate(groups):
        color = f"C{i % 10}"
        shown = False
        for key, _, style in keys:
            found = band(runs, key)
            if found is None:
                continue
            steps, mean, lo, hi = found
            if len(runs) > 1:
                faint = min(0.35, max(0.05, 3 / len(runs)))  # 100 seeds still read as a cloud
                for run in runs:
                    xs, ys = curve(run, key)
                    ax.plot(xs, ys, color=color, ls=style, lw=0.6, alpha=faint, zorder=1)
            ax.plot(steps, mean, color=color, ls=style, lw=1.8, marker="o" if len(steps) <= 3 else None, ms=4, zorder=2)
            drawn_keys.add(key)
            shown = True
        if diverged is not None:
            ax.axvline(diverged, color=NONFINITE_COLOR, ls=":", lw=1.2)
        if (shown or diverged is not None) and len(groups) > 1:  # one group: the title names it
            handles.append(Line2D([], [], color=color, lw=2, label=legend_label(ax, label, 8)))
    if any(d is not None for _, _, d in groups):
        handles.append(Line2D([], [], color=NONFINITE_COLOR, ls=":", label="diverged"))
    if len(drawn_keys) > 1:  # a style legend only when both styles are on the axes
        handles += [Line2D([], [], color="0.3", ls=style, label=name) for key, name, style in keys if key in drawn_keys]
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(ylabel + (" (mean; each seed faint)" if any(len(r) > 1 for _, r, _ in groups) else ""), fontsize=10)
    if drawn_keys:
        if log and _log_worthy([r for _, runs, _ in groups for r in runs], [k for k, _, _ in keys]):
            ax.set_yscale("log")
        if handles:
            ax.legend(handles=handles, fontsize=8)
    else:
        empty(ax, f"no finite {ylabel} logged")
    ax.grid(alpha=0.3)
    return bool(drawn_keys)


def legend_label(ax, text: str, fontsize: float, share: float = 0.6) -> str:
    """A group's label for a legend on `ax`: whole, on lines of at most `share` of the axes'
    width (labels.wrap_label), drawn as written (style.plain)."""
    from dlx.views.labels import chars_in, wrap_label

    return plain(wrap_label(text, chars_in(share * ax.bbox.width / ax.figure.dpi, fontsize)))


def _log_worthy(runs: list[list[dict]], keys: list[str]) -> bool:
    """A log axis for positive values spanning more than a decade; within one, a linear
    axis reads better (a log axis would label its minor ticks 2x10^-1, 3x10^-1, ...)."""
    vals = np.asarray([m[k] for ms in runs for m in ms for k in keys if m.get(k) is not None], float)
    vals = vals[np.isfinite(vals)]
    return bool(vals.size) and vals.min() > 0 and vals.max() / vals.min() > 10


def empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")


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
                    label=legend_label(ax, g.label, 7) if row == 0 else None,
                )
                if len(runs) > 1:
                    ax.fill_between(
                        t, 10 ** stack[:, row].min(0), 10 ** stack[:, row].max(0), color=color, alpha=0.2, lw=0
                    )
    if ax.lines:
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    else:
        empty(ax, "no recurrent layer")
    ax.grid(alpha=0.3)


def _pos(y: np.ndarray) -> np.ndarray:
    """Values a log axis can show: non-positive and non-finite to NaN (a gap)."""
    return np.where(np.isfinite(y) & (y > 0), y, np.nan)


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


def draw_sparsity(ax, groups: list[Group]) -> None:
    """Per layer, the share of weights with |w| < 1e-3 at the end (recording.NEAR_ZERO), one
    bar per run group (the mean over its seeds): L1 zeroes weights, L2 only shrinks them."""
    width = 0.8 / max(len(groups), 1)
    names: list[str] = []
    for i, g in enumerate(groups):
        per: dict[str, list[float]] = {}
        for r in g.runs:
            for name, v in near_zero(r).items():
                per.setdefault(name, []).append(v)
        names = names or list(per)
        xs = np.arange(len(names)) + i * width - 0.4 + width / 2
        ax.bar(
            xs,
            [float(np.mean(per.get(n, [0.0]))) for n in names],
            width,
            color=f"C{i % 10}",
            label=legend_label(ax, g.label, 7, 0.5),
        )
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
                label=legend_label(ax, g.label + (" (preconditioned)" if pre else ""), 7) if j == 0 else None,
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


def draw_modes(ax, groups: list[Group]) -> None:
    """Each mode's strength u_i^T W v_i over steps (instruments.modes, the first group's first
    run that has them), its teacher's s dashed in the same colour and a dot where it first
    reaches s/2: Saxe's sigmoids, the strongest first."""
    run = next(
        (r for g in groups for r in g.runs if any(isinstance(x.get("modes"), dict) for x in r.instruments)), None
    )
    recs = [x for x in run.instruments if isinstance(x.get("modes"), dict)] if run else []
    if not recs:
        empty(ax, "no mode strengths: instruments: {modes: true}\n(data: linear_teacher, a linear net)")
        return
    steps = np.array([x["step"] for x in recs])
    strength = np.array([x["modes"]["strength"] for x in recs], dtype=float)
    teacher = recs[-1]["modes"]["teacher"]
    for i, s in enumerate(teacher):
        color = f"C{i % 10}"
        ax.plot(steps, strength[:, i], "-", color=color, lw=1.4, label=f"mode {i + 1}: s = {s:g}")
        ax.axhline(s, color=color, ls="--", lw=0.8, alpha=0.7)
        half = np.flatnonzero(strength[:, i] >= s / 2)
        if half.size:
            ax.plot(steps[half[0]], strength[half[0], i], "o", color=color, ms=5)
    ax.set_title("each mode's strength (dot: half of s), strongest first", fontsize=10)
    ax.set_xlabel("step")
    ax.set_ylabel("strength u_i^T W v_i")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best", frameon=False)


def draw_noise(ax, groups: list[Group]) -> None:
    """The gradient noise scale B_simple over steps per run, its batch size dashed."""
    for i, g in enumerate(groups):
        color = f"C{i % 10}"
        r = g.first
        steps, b = _series(r.instruments, "noise", "b_simple")
        # Markers: a measurement whose mean gradient is lost in the noise has no B_simple.
        ax.plot(steps, b, "-o", color=color, lw=1.4, ms=3, label=legend_label(ax, f"{g.label} B_simple", 7))
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

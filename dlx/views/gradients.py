"""The per-group panels of a figure: the gradient norm of each layer over steps (a heatmap and
lines) and the percentiles of each activation's outputs. Each draws onto any matplotlib Axes.
"""

from __future__ import annotations

import numpy as np

from dlx.views.curves import empty
from dlx.views.series import Group, Run, group_grad, log_bins
from dlx.views.style import HEAT_BINS, LINE_BINS, MAX_ACT_PANELS, MAX_GROUP_ROWS, NONFINITE_COLOR, ZERO_COLOR, plain


def heat_range(groups: list[Group]) -> tuple[float, float]:
    """One log10 colour range for every heatmap, so groups compare at a glance."""
    vals = []
    for g in groups[:MAX_GROUP_ROWS]:
        _, grad = group_grad(g)
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

    steps, grad = group_grad(g)
    r = g.first
    ax.set_title("log10 gradient norm, layer x step", fontsize=10)
    if not grad.size:
        empty(ax, "no gradient norms logged")
        return
    edges, lg = log_bins(grad, HEAT_BINS)
    lo, hi = heat_range or heat_range([g])
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

    steps, grad = group_grad(g)
    r = g.first
    ax.set_title("gradient norm per layer" + (" (geometric mean over seeds)" if len(g.runs) > 1 else ""), fontsize=10)
    if not grad.size:
        empty(ax, "no gradient norms logged")
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
    from dlx.records.model import activation_percentiles

    PERCENTILES = activation_percentiles()

    r = g.first
    ax.set_title(plain(layer), fontsize=9)
    if not r.acts or layer not in r.act_names:
        empty(ax, "no activation statistics")
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


def act_layers(run: Run) -> list[str]:
    if not run.acts or not run.act_names:
        return []
    n = min(len(run.act_names), run.acts["pct"].shape[1])
    pick = np.unique(np.round(np.linspace(0, n - 1, min(n, MAX_ACT_PANELS))).astype(int))
    return [run.act_names[j] for j in pick]

"""The series panels of a run's figure by name: which a set of runs has (panel_names), drawing
one onto any matplotlib Axes (draw_panel), and the named panels of a request in a grid.
"""

from __future__ import annotations

from typing import Any, Sequence

from dlx.views.curves import (
    draw_curves,
    draw_modes,
    draw_noise,
    draw_sharpness,
    draw_sparsity,
    draw_spectra,
    draw_time_grad,
    empty,
)
from dlx.views.gradients import act_layers, draw_activations, draw_grad_heatmap, draw_grad_lines, heat_range
from dlx.views.panel_registry import PICTURES, USER_PANELS, panel_forms
from dlx.views.series import Group, as_groups, near_zero, sparse_layers
from dlx.views.style import MAX_GROUP_ROWS


def panel_names(runs: Sequence[Any]) -> list[str]:
    """The panels build_figure draws for these groups (or run paths), in order."""
    groups = as_groups(runs)
    names = ["loss"]
    # Beside the loss by default where an init scale alpha was set (Omnigrok: the norm is
    # what alpha moves); asked for by name on any run with probes.
    if any(r.weight_norms and _scaled_init(r.config) for g in groups for r in g.runs):
        names.append("weight_norm")
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
    if any(sparse_layers(r) for g in groups for r in g.runs):
        names.append("sparsity")
    for kind in ("sharpness", "noise", "modes"):
        if any(rec.get(kind) for g in groups for r in g.runs for rec in r.instruments):
            names.append(kind)
    for i, g in enumerate(groups[:MAX_GROUP_ROWS]):
        if any(rec.get("spectra") for rec in g.first.instruments):
            names.append(f"spectra:{i}")
    for i, g in enumerate(groups[:MAX_GROUP_ROWS]):
        if g.first.grad.size:
            names += [f"grad_heatmap:{i}", f"grad_lines:{i}"]
        names += [f"activations:{i}:{a}" for a in act_layers(g.first)]
    return names


def _scaled_init(config: dict[str, Any]) -> bool:
    init = config.get("init")
    return isinstance(init, dict) and init.get("scale", 1) not in (1, 1.0, None)


def _weight_norm(ax, groups: list[Group], rest: str, heat_range) -> None:
    draw_curves(
        ax,
        [(g.label, [r.weight_norms for r in g.runs], _div(g)) for g in groups],
        [("weight_norm", "|W|", "-")],
        "weight norm |W| (all layers)",
        log=True,
    )


def _div(g: Group) -> int | None:
    steps = [r.diverged_step for r in g.runs if r.diverged_step is not None]
    return min(steps) if steps else None


def _curves(keys: list[tuple[str, str, str]], ylabel: str, log: bool):
    def draw(ax, groups: list[Group], rest: str, heat_range) -> None:
        draw_curves(ax, [(g.label, [r.metrics for r in g.runs], _div(g)) for g in groups], keys, ylabel, log=log)

    return draw


def _activations(ax, groups: list[Group], rest: str, heat_range) -> None:
    i, _, layer = rest.partition(":")
    draw_activations(ax, groups[int(i)], layer, color=f"C{int(i) % 10}")


# How each kind of series panel (panel_registry.SERIES_PANELS) is drawn: (ax, groups, what
# follows the kind in the panel's name, the heatmaps' colour range).
DRAWERS = {
    "loss": _curves([("train_loss", "train", "-"), ("test_loss", "test", "--")], "loss", True),
    "weight_norm": _weight_norm,
    "accuracy": _curves([("train_acc", "train", "-"), ("test_acc", "test", "--")], "accuracy", False),
    "time_grad": lambda ax, groups, rest, hr: draw_time_grad(ax, groups),
    "grad_heatmap": lambda ax, groups, rest, hr: draw_grad_heatmap(ax, groups[int(rest)], hr or heat_range(groups)),
    "grad_lines": lambda ax, groups, rest, hr: draw_grad_lines(ax, groups[int(rest)]),
    "activations": _activations,
    "sparsity": lambda ax, groups, rest, hr: draw_sparsity(ax, groups),
    "sharpness": lambda ax, groups, rest, hr: draw_sharpness(ax, groups),
    "noise": lambda ax, groups, rest, hr: draw_noise(ax, groups),
    "modes": lambda ax, groups, rest, hr: draw_modes(ax, groups),
    "spectra": lambda ax, groups, rest, hr: draw_spectra(ax, groups[int(rest)]),
}


def draw_panel(ax, name: str, runs: Sequence[Any], *, heat_range: tuple[float, float] | None = None) -> None:
    """Draw the panel `name` (one of panel_names(runs)) onto ax."""
    groups = as_groups(runs)
    kind, _, rest = name.partition(":")
    ax.set_label(name)
    if kind not in DRAWERS:
        raise ValueError(f"unknown panel {name!r}; panels: {panel_forms()}")
    DRAWERS[kind](ax, groups, rest, heat_range)


def draw_or_say(ax, name: str, groups: list[Group], heat_range) -> None:
    """draw_panel, or (a run's files of a shape it cannot draw) the panel saying so."""
    from dlx.records.folders import SHAPE_ERRORS

    try:
        draw_panel(ax, name, groups, heat_range=heat_range)
    except SHAPE_ERRORS as e:
        ax.cla()
        ax.set_label(name)
        empty(ax, f"cannot draw {name.split(':')[0]}:\na run's files have an unexpected shape\n({type(e).__name__})")


def panel_grid(container, names: list[str], groups: list[Group]) -> None:
    """The named panels in a grid of at most 3 columns on a Figure or SubFigure."""
    cols = min(3, len(names))
    axes = container.subplots(-(-len(names) // cols), cols, squeeze=False).ravel()
    colours = heat_range(groups)
    for ax, name in zip(axes, names):
        draw_or_say(ax, name, groups, colours)
    for ax in axes[len(names) :]:
        ax.set_visible(False)


def panel_hits(groups: list[Group], panels: Sequence[str]) -> list[str]:
    """The panel names build_figure draws for each requested USER_PANELS name (a UsageError
    naming the choices for an unknown one, and the run's panels for one it lacks)."""
    from dlx.core.errors import UsageError

    available = panel_names(groups)
    names: list[str] = []
    for p in panels:
        if p not in USER_PANELS:
            from dlx.core.registry import closest

            choices = [*USER_PANELS, *PICTURES]
            hint = closest(p, choices)
            raise UsageError(
                f"unknown panel {p!r}"
                + (f"; did you mean {hint!r}?" if hint else "")
                + f" (panels: {', '.join(choices)})"
            )
        hits = [n for n in available if n == p or n.startswith(f"{p}:0") or n.startswith(f"{p}:0:")]
        if p == "sparsity" and not hits and any(near_zero(r) for g in groups for r in g.runs):
            hits = ["sparsity"]  # asked for: drawn even where no layer reaches the default figure's 5%
        if p == "weight_norm" and not hits and any(r.weight_norms for g in groups for r in g.runs):
            hits = ["weight_norm"]  # asked for: drawn on any run with probes, not only a scaled init's
        if not hits:
            raise UsageError(
                f"this run has no {p!r} panel (it has: {', '.join(dict.fromkeys(n.split(':')[0] for n in available))})"
            )
        names += hits
    return names

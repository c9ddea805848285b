"""Every panel dlx draws, by name: the one list that `dlx plot --panels`, `Run.plot(panels=...)`,
the figures (plots.draw_panel, plots.pictures_figure) and their help text are made from.

Two families. Series panels are drawn from a run's records (metrics.jsonl, probes.jsonl,
instruments.jsonl, summary.json) and overlay several runs; a panel of a group's own rows is
named with the group's index (grad_heatmap:0, activations:0:LAYER). Pictures are drawn from
a run's saved model (checkpoint and snapshots), one per run, side by side.
"""

from __future__ import annotations

# name -> what it shows, in the order figures and help list them.
SERIES_PANELS = {
    "loss": "train and test loss",
    "weight_norm": "the whole net's weight norm sqrt(sum of each layer's |W|^2) over steps, beside the loss",
    "accuracy": "train and test accuracy, when logged",
    "time_grad": "the gradient reaching each time step, recurrent runs",
    "grad_heatmap": "log10 gradient norm, layer x step",
    "grad_lines": "the gradient norm of each layer over steps",
    "activations": "percentiles of each activation's outputs over steps",
    "sparsity": "the share of near-zero weights per layer",
    "sharpness": "the top Hessian eigenvalue against its stability threshold, with instruments",
    "noise": "the gradient noise scale against the batch size, with instruments",
    "modes": "each mode's strength against its teacher's, a linear net on linear_teacher data with instruments",
    "spectra": "each layer's singular values against the init's random edge, with instruments",
}
PICTURE_PANELS = {
    "boundary": "each run's decision surface, 2-D inputs",
    "units": "every hidden unit's output over the input plane",
    "warp": "the input grid as each layer moves it, in its two main directions",
    "weights": "what training wrote into an mlp's first layer, as images",
    "filters": "a CNN's first convolution's kernels",
    "feature_maps": "a CNN's first convolution's outputs for one image",
    "histograms": "activations and gradients per layer, init to end",
    "attention": "an attention model's weights per head, query step x key step, for one test sequence",
    "landscape": "the training loss from init to end and around the end, from the snapshots",
}
# How a series panel is named in a figure, past its kind: the group, and the layer.
PANEL_ARGS = {"grad_heatmap": ":G", "grad_lines": ":G", "activations": ":G:LAYER", "spectra": ":G"}

# What Run.plot(panels=[...]) and `dlx plot --panels` take: a name for each kind of panel (a
# group's panels are drawn for its first group; "activations" means every activation panel).
USER_PANELS = tuple(SERIES_PANELS)
# The panels drawn from a run's saved model (one per run, side by side).
PICTURES = tuple(PICTURE_PANELS)
PANELS = {**PICTURE_PANELS, **SERIES_PANELS}
# What a frame of `dlx animate` can show, in the order it shows them (animate.py draws them).
FRAME_PANELS = ("boundary", "units", "histograms")


def panels_help() -> str:
    """The help of `dlx plot --panels`: every panel, with what it shows."""
    return "Only these panels: " + ", ".join(f"{name} ({what})" for name, what in PANELS.items()) + "."


def panel_forms() -> str:
    """Every series panel as a figure names it (grad_heatmap:G, ...), for an error's text."""
    return ", ".join(name + PANEL_ARGS.get(name, "") for name in SERIES_PANELS)


def frame_panels_help() -> str:
    """The help of `dlx animate --panels`: what a frame can show."""
    return f"What each frame shows: {FRAME_PANELS[0]}, and optionally {' and '.join(FRAME_PANELS[1:])}."

"""`dlx coordcheck`: μP's coordinate check, each layer's output scale against width."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from dlx.cli.common import SetOpt, app, console, errors


@app.command()
@errors
def coordcheck(
    config: Path = typer.Argument(..., help="The experiment's YAML file (an mlp with a width).", show_default=False),
    widths: str = typer.Option(
        "64,128,256,512", "--widths", metavar="W1,W2,...", help="model.width values, at least two."
    ),
    steps: int = typer.Option(5, "--steps", min=1, help="Optimizer steps measured after the init."),
    seeds: int = typer.Option(2, "--seeds", min=1, help="Nets per width (seed, seed+1, ...); scales are averaged."),
    set_: Optional[List[str]] = SetOpt,
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        "-o",
        help="The PNG to write (default: coordcheck-<parametrization>-<narrowest>-<widest>.png here).",
    ),
):
    """Train the config at each width for a few steps and print each layer's output scale
    (mean |W x + b| over a fixed batch) against width: flat under model.parametrization: mup,
    growing under sp with Adam (Yang & Hu; Tensor Programs V)."""
    from dlx.config.loader import load_config
    from dlx.many.coordcheck import coordcheck as check
    from dlx.many.coordcheck import default_figure_name, parse_widths
    from dlx.views.coordcheck import coordcheck_figure, coordcheck_table

    ws = parse_widths(widths)  # before loading: a bad --widths is the first thing said
    result = check(load_config(config, set_ or []), ws, steps, seeds)
    title = (
        f"{config.name}: parametrization {result.parametrization}, mean |layer output| at step "
        f"{result.steps}, {seeds} seed{'s' if seeds > 1 else ''}"
    )
    con = console()
    con.print(coordcheck_table(result.widths, result.layers, result.scales[:, -1], result.slopes(), title))
    path = coordcheck_figure(
        result.widths,
        result.layers,
        result.scales,
        f"{config.name} ({result.parametrization}): mean |layer output| against width, step by step",
        out or Path(default_figure_name(ws, result.parametrization)),
    )
    con.print(f"slope: scale ~ width**slope (0 is flat); figure: {path}")

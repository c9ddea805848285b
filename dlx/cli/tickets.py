"""`dlx ticket`: lottery tickets by iterative magnitude pruning with rewinding (dlx.many.tickets)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from dlx.cli.common import RunsDirOpt, SetOpt, app, console, errors


@app.command()
@errors
def ticket(
    config: Path = typer.Argument(
        ..., help="The experiment's YAML file: the dense net of round 0.", show_default=False
    ),
    rounds: int = typer.Option(3, "--rounds", min=1, help="Prunings after the dense round 0."),
    rate: float = typer.Option(
        0.2, "--rate", help="Fraction of each layer's remaining weights pruned per round (the output layer: half)."
    ),
    control_seed: Optional[int] = typer.Option(
        None, "--control-seed", min=0, help="init.seed of the random re-init control (default: the run's seed + 1)."
    ),
    set_: Optional[List[str]] = SetOpt,
    runs_dir: Path = RunsDirOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the record as JSON."),
):
    """Lottery tickets (Frankle & Carbin 2019): train dense, prune the smallest weights, rewind
    to the init, train again; then the last mask from a random re-init, for comparison."""
    from dlx.many.tickets import ticket as run_ticket
    from dlx.views.tickets import ticket_table

    con = console(stderr=as_json)

    def landed(row) -> None:
        if not as_json:
            acc = "-" if row.test_acc is None else f"{row.test_acc:.4f}"
            con.print(escape(f"round {row.round} ({row.kind}): {100 * row.kept:.1f}% kept, test_acc {acc}"))

    record = run_ticket(
        config, rounds, rate, overrides=set_ or [], runs_dir=runs_dir, control_seed=control_seed, on_round=landed
    )
    if as_json:
        typer.echo(json.dumps(record, indent=2))
    else:
        con.print(ticket_table(record["rows"], record["name"]))
        con.print(f"record: [bold]{escape(record['record'])}[/]")
        con.print(f"figure: [bold]{escape(record['figure'])}[/]")
    bad = [r for r in record["rows"] if r["status"] != "completed"]
    raise typer.Exit(1 if bad else 0)

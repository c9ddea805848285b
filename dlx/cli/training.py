"""`dlx train` and `dlx validate`: one config, trained or checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from dlx.cli.common import EXIT, RunsDirOpt, SetOpt, app, console, errors
from dlx.records.layout import CHECKPOINT_FILE, PROBES_FILE, SUMMARY_FILE


def _prepare_data(cfg, console, show: bool) -> None:
    """Fetch the data if it needs a download, with a progress bar per file."""
    if not show:
        cfg.data.prepare()
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with Progress(
        TextColumn("[bold]download[/] {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
        transient=True,
    ) as progress:
        tasks: dict[str, int] = {}

        def report(name: str, done: int, total: int | None) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total)
            progress.update(tasks[name], completed=done, total=total)

        cfg.data.prepare(report=report)


class InitCheckPrinter:
    """`dlx train --init-check`: the init-theory table at step 0, before the first update."""

    def __init__(self, console):
        self.console = console

    def on_start(self, trainer):
        from dlx.run.initcheck import init_check_for
        from dlx.views.report import init_check_table

        self.console.print(init_check_table(init_check_for(trainer)))


@app.command()
@errors
def train(
    config: Optional[Path] = typer.Argument(None, help="The experiment's YAML file.", show_default=False),
    set_: Optional[List[str]] = SetOpt,
    runs_dir: Path = RunsDirOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or tables; print the run folder only."),
    as_json: bool = typer.Option(False, "--json", help=f"Print the run's {SUMMARY_FILE} to stdout at the end."),
    init_check: bool = typer.Option(
        False,
        "--init-check",
        help="Before training, print each layer's step-0 "
        "pre-activation variance next to what the init scheme predicts.",
    ),
    resume: Optional[str] = typer.Option(
        None,
        "--resume",
        metavar="RUN",
        help="Continue an interrupted or killed run (its folder, id, or 'last') "
        "from its checkpoint, with its own config, in its own folder.",
    ),
):
    """Train one config and show per-layer gradient evidence and a verdict.

    Writes runs/<run_id>/ (config, meta, metrics, probes, summary, checkpoint).
    Ctrl-C (or SIGTERM, SIGHUP, SIGQUIT) finishes the current step, writes a
    checkpoint and exits 128 + the signal's number (130 for Ctrl-C, 143 for
    SIGTERM); --resume RUN continues it. Exit code 0 completed, 2 bad config,
    3 diverged, 4 pruned (train.prune stopped it on its verdict).
    """
    from dlx.api import resume_target
    from dlx.api import train as run_train
    from dlx.config.loader import load_config
    from dlx.core.errors import UsageError
    from dlx.views.progress import TerminalProgress
    from dlx.views.report import describe

    con = console(stderr=as_json)
    if resume is not None:
        if config is not None:
            raise UsageError(
                f"give CONFIG or --resume RUN, not both: a resumed run keeps the config it "
                f"started with (RUN/config.yaml). To train {config} anew, drop --resume."
            )
        if set_:
            raise UsageError(
                "--set cannot change a run being resumed: it continues with its own config, "
                "so its numbers match a run that was never stopped. Start a new run to "
                "change the config."
            )
        if init_check:
            raise UsageError("--init-check shows step 0, which a resumed run is past; see it with dlx show RUN")
        path, cfg = resume_target(resume, runs_dir)
    elif config is None:
        raise UsageError(
            "missing CONFIG: give an experiment's YAML file (e.g. configs/quickstart.yaml), "
            "or --resume RUN to continue a run"
        )
    else:
        cfg = load_config(config, set_ or [])
        from dlx.records.folders import prepare_runs_dir

        # An unwritable runs folder is reported before a possibly long download, not after it.
        prepare_runs_dir(runs_dir)
    _prepare_data(cfg, con, show=not (quiet or as_json))
    callbacks = [] if (quiet or as_json) else [TerminalProgress(con)]
    callbacks[:0] = [InitCheckPrinter(con)] if init_check else []  # printed before the progress bar starts
    if not (quiet or as_json):
        from rich.text import Text

        from dlx.views.tables import Hanging

        head = Text("dlx train ", style="bold")
        head.append(f"{f'--resume {path.name}' if resume is not None else config}: {describe(cfg.resolved())}")
        con.print(Hanging(head, labels=("dlx train ",)))  # wrapped between words, under the config
    if resume is not None:
        result = run_train(resume=path, runs_dir=runs_dir, callbacks=callbacks, quiet=True)
    else:
        result = run_train(cfg, runs_dir=runs_dir, callbacks=callbacks, quiet=True)
    from dlx.views.report import run_report

    if as_json:
        typer.echo(json.dumps(result.summary, indent=2))
    elif not quiet:
        from dlx.records.folders import read_jsonl

        # The heat strips draw every step's gradient norms: the run folder has them all.
        probes = read_jsonl(result.path / PROBES_FILE) if result.path else None
        con.print(run_report(result.summary, metrics=result.metrics, probes=probes))
        _boundary_map(con, result)
    con.print(f"run folder: [bold]{escape(str(result.path))}[/]")
    fixes = any(v.get("fixes") for v in result.verdicts if isinstance(v, dict))
    if fixes and result.path and not as_json and result.status != "interrupted":
        where = f" --runs-dir {runs_dir}" if runs_dir != Path("runs") else ""
        say, command = "run the remedies over seeds and keep the one that works:", f"dlx fix {result.path.name}{where}"
        # Too wide for one line: the command on its own line, whole (to copy).
        sep = " " if len(say) + 1 + len(command) <= con.width else "\n  "
        con.print(escape(say + sep + command))
    if result.status == "interrupted" and result.path and (result.path / CHECKPOINT_FILE).is_file():
        con.print(
            escape(
                f"continue it with: dlx train --resume {result.path.name}"
                + (f" --runs-dir {runs_dir}" if runs_dir != Path("runs") else "")
            )
        )
    raise typer.Exit(_exit_code(result.status, result.summary.get("signal")))


def _boundary_map(con, result) -> None:
    """After a run on 2-D inputs, its decision surface in the terminal (from the saved model)."""
    data = (result.meta or {}).get("data") or {}
    if data.get("feature_shape") != [2] or data.get("task") != "classification" or result.path is None:
        return
    if not (result.path / CHECKPOINT_FILE).is_file() or result.status == "diverged":
        return
    from dlx.views.pictures import boundary
    from dlx.views.report import BoundaryMap, guarded

    con.print(guarded(CHECKPOINT_FILE, lambda: BoundaryMap(boundary(result.path, grid=96))))
    # A run that kept no snapshots (train.snapshots: 0) has nothing to animate.
    animate = " · dlx animate last" if (result.config or {}).get("train", {}).get("snapshots", 1) else ""
    con.print(f"[dim]pictures: dlx plot last --panels boundary,units,histograms{animate}[/]")


def _exit_code(status: str, signal_name: str | None = None) -> int:
    """EXIT[status]; an interrupted run exits 128 + the number of the signal that stopped it
    (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP, 131 SIGQUIT), as the shell reports a killed process."""
    if status == "interrupted" and signal_name:
        import signal

        return 128 + int(signal.Signals[signal_name])
    return EXIT.get(status, 1)


@app.command()
@errors
def validate(
    config: Path = typer.Argument(..., help="The experiment's YAML file.", show_default=False),
    set_: Optional[List[str]] = SetOpt,
):
    """Check a config without training: every problem at once, with its line.

    Runs the same checks as `dlx train` up to its first step: the schema, then
    reading the data and building the model (so a weights file that does not
    fit, or an .npz without y_test, is caught here too). Writes nothing and
    downloads nothing: data still to be fetched is fetched by `dlx train`.
    """
    from dlx.api import check
    from dlx.views.report import describe

    cfg = check(config, set_ or [])
    console().print(f"[green]ok[/] {escape(str(config))}: {escape(describe(cfg.resolved()))}")

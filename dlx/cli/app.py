"""The `dlx` command line: the only module that prints or exits.

Exit codes: 0 completed, 1 failed, 2 bad config or usage, 3 diverged, 4 pruned (train.prune), 128 + the
signal's number interrupted (130 Ctrl-C, 143 SIGTERM). Heavy imports (torch) happen
inside commands so `dlx --help` answers at once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

app = typer.Typer(
    name="dlx",
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode="rich",
    help="Run deep-learning experiments from YAML and [bold]see[/] their training dynamics: "
    "per-layer gradient norms, activation statistics and a plain-language verdict.",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,  # an internal error prints a plain traceback, not a page of boxes
)


def _type_label(param, ctx) -> str | None:
    """The type column of --help: nothing for a flag (it takes no value), else the option's
    metavar or click's plain name (PATH, TEXT, INTEGER). typer 0.29 writes `<bool>` beside
    every flag, as if `--json` wanted a value, and `<str>` elsewhere."""
    if getattr(param, "is_flag", False):
        return None
    if getattr(param, "metavar", None) and not isinstance(param, typer.core.TyperArgument):
        return param.metavar
    label = typer.core._TyperParameter.display_type(param, ctx).strip("<>").removesuffix(" range")
    label = label.removeprefix("list[").removesuffix("]")  # a repeatable one: its "..." says so
    label = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT"}.get(label, label.upper())  # a range follows
    return label + ("..." if getattr(param, "nargs", 1) != 1 else "")


if hasattr(getattr(typer.core, "_TyperParameter", None), "display_type"):  # typer >= 0.2x's rich help
    typer.core.TyperOption.display_type_rich = _type_label
    typer.core.TyperArgument.display_type_rich = _type_label

EXIT = {"completed": 0, "failed": 1, "diverged": 3, "pruned": 4, "interrupted": 130}

SetOpt = typer.Option(
    None,
    "--set",
    "-s",
    metavar="KEY.PATH=VALUE",
    help="Override a config key (repeatable); the value is parsed as YAML, "
    "e.g. --set optimizer.lr=0.01 --set activation=tanh",
)
RunsDirOpt = typer.Option(Path("runs"), "--runs-dir", help="Folder that holds one sub-folder per run.")


def _console(stderr: bool = False):
    from rich.console import Console

    # soft_wrap: long error lines stay whole lines (copyable, greppable) instead of
    # being cut at the terminal width.
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _fail(err: Exception) -> None:
    """Print a DlxError for a person and exit with its code."""
    from dlx.core.errors import ConfigError

    con = _console(stderr=True)
    if isinstance(err, ConfigError):
        lines = str(err).splitlines()
        con.print(f"[bold red]error:[/] {escape(lines[0])}", markup=True)
        for line in lines[1:]:
            con.print(line, markup=False)
        if any("valid" in p.message for p in err.problems):
            con.print("Run [bold]dlx list[/] to see every valid name and its parameters.")
    else:
        con.print("[bold red]error:[/] ", end="")
        con.print(str(err), markup=False)
    raise typer.Exit(getattr(err, "exit_code", 1))


def _errors(command):
    """The one error boundary of every command: a DlxError (the user's mistake) is a
    sentence and its exit code; Ctrl-C before a run started is exit 130; anything else
    is a bug or a resource failure: one line, the run folder that kept what was logged,
    and the traceback only with DLX_DEBUG=1."""
    import functools

    @functools.wraps(command)
    def run(*args, **kwargs):
        from dlx.core.errors import DlxError

        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except DlxError as e:
            _fail(e)
        except KeyboardInterrupt as e:
            err = _console(stderr=True)
            path = getattr(e, "dlx_run_path", None)
            if path is None:
                err.print("[yellow]interrupted[/]")
            else:  # a second Ctrl-C mid-step: the run is kept up to its last checkpoint
                err.print(
                    f"[yellow]interrupted[/] mid-step; the run folder keeps everything up to its last checkpoint: "
                    f"[bold]{escape(str(path))}[/]\ncontinue it with: dlx train --resume {escape(Path(path).name)}"
                    + escape(f" --runs-dir {Path(path).parent}" if Path(path).parent != Path("runs") else "")
                )
            raise typer.Exit(130) from None
        except Exception as e:
            err = _console(stderr=True)
            err.print(
                f"[bold red]error:[/] dlx {command.__name__.rstrip('_')} failed: {type(e).__name__}: {escape(str(e))}",
                markup=True,
                highlight=False,
            )
            path = getattr(e, "dlx_run_path", None)
            if path is not None:
                err.print(
                    f"The run folder keeps everything logged before the failure (status failed; "
                    f"the traceback is in meta.json): {escape(str(path))}"
                )
            if os.environ.get("DLX_DEBUG"):
                raise
            err.print("Set DLX_DEBUG=1 to see the traceback here.")
            raise typer.Exit(1) from None

    return run


def _version(value: bool):
    if value:
        from dlx.core.version import __version__

        typer.echo(f"dlx {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
):
    pass


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
@_errors
def train(
    config: Optional[Path] = typer.Argument(None, help="The experiment's YAML file.", show_default=False),
    set_: Optional[List[str]] = SetOpt,
    runs_dir: Path = RunsDirOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or tables; print the run folder only."),
    as_json: bool = typer.Option(False, "--json", help="Print the run's summary.json to stdout at the end."),
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

    con = _console(stderr=as_json)
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
        con.print(
            f"[bold]dlx train[/] {escape(f'--resume {path.name}' if resume is not None else str(config))}: "
            f"{escape(describe(cfg.resolved()))}"
        )
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
        probes = read_jsonl(result.path / "probes.jsonl") if result.path else None
        con.print(run_report(result.summary, metrics=result.metrics, probes=probes))
        _boundary_map(con, result)
    con.print(f"run folder: [bold]{escape(str(result.path))}[/]")
    fixes = any(v.get("fixes") for v in result.verdicts if isinstance(v, dict))
    if fixes and result.path and not as_json and result.status != "interrupted":
        where = f" --runs-dir {runs_dir}" if runs_dir != Path("runs") else ""
        con.print(escape(f"run the remedies over seeds and keep the one that works: dlx fix {result.path.name}{where}"))
    if result.status == "interrupted" and result.path and (result.path / "checkpoint.pt").is_file():
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
    if not (result.path / "checkpoint.pt").is_file() or result.status == "diverged":
        return
    from dlx.views.pictures import boundary
    from dlx.views.report import BoundaryMap, guarded

    con.print(guarded("checkpoint.pt", lambda: BoundaryMap(boundary(result.path, grid=96))))
    con.print("[dim]pictures: dlx plot last --panels boundary,units,histograms · dlx animate last[/]")


def _exit_code(status: str, signal_name: str | None = None) -> int:
    """EXIT[status]; an interrupted run exits 128 + the number of the signal that stopped it
    (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP, 131 SIGQUIT), as the shell reports a killed process."""
    if status == "interrupted" and signal_name:
        import signal

        return 128 + int(signal.Signals[signal_name])
    return EXIT.get(status, 1)


@app.command()
@_errors
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
    _console().print(f"[green]ok[/] {escape(str(config))}: {escape(describe(cfg.resolved()))}")


@app.command()
@_errors
def show(
    run: str = typer.Argument(
        "last", help="A run folder, a run id (or part of one), or 'last' (the run started or resumed last)."
    ),
    runs_dir: Path = RunsDirOpt,
    as_json: bool = typer.Option(False, "--json", help="Print meta and summary as JSON."),
):
    """Show a finished (or running) run from its folder alone."""
    from dlx.api import load_run

    r = load_run(run, runs_dir)
    if as_json:
        typer.echo(
            json.dumps(
                {"path": str(r.path), "status": r.status, "meta": r.meta, "summary": r.summary or None}, indent=2
            )
        )
        return
    con = _console()
    for problem in r.problems:  # what reading the folder left out, each by its file
        con.print(f"[yellow]left out:[/] {escape(problem)}", highlight=False)
    if not r.summary:
        m = r.metrics[-1] if r.metrics else {}
        con.print(
            f"run {escape(str(r.meta.get('run_id')))}: status [bold]{escape(str(r.status))}[/], no summary yet; "
            f"last logged step {m.get('step', '-')}, train_loss {m.get('train_loss', '-')}"
        )
        return
    from dlx.views.report import run_report

    con.print(run_report(r.summary, r.meta, metrics=r.metrics, probes=r.probes, status=r.status))
    if r.summary.get("init_check"):  # the step-0 init-theory table
        from dlx.views.report import guarded, init_check_table

        con.print(guarded("summary.json (init_check)", init_check_table, r.summary["init_check"]))
    con.print(f"run folder: [bold]{escape(str(r.path))}[/]")


@app.command()
@_errors
def summary(
    config: Path = typer.Argument(..., help="The experiment's YAML file.", show_default=False),
    set_: Optional[List[str]] = SetOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Print the model layer by layer: output shape, parameters (and receptive field for CNNs)."""
    from dlx.config.loader import load_config
    from dlx.run.summary import model_summary

    s = model_summary(load_config(config, set_ or []))
    if as_json:
        typer.echo(json.dumps(s, indent=2))
        return
    from rich.table import Table

    t = Table(
        title=f"{config}: input {s['input']} (2 samples)",
        title_justify="left",
        header_style="bold",
        show_edge=False,
        pad_edge=False,
    )
    for col in ("layer", "type", "output shape", "params", *s["extra_columns"]):
        t.add_column(col, justify="right" if col not in ("layer", "type") else "left")
    for r in s["layers"]:
        t.add_row(
            r["name"],
            r["type"],
            "x".join(map(str, r["output"] or [])) or "-",
            f"{r['params']:,}",
            *[str(r.get(c, "")) for c in s["extra_columns"]],
        )
    con = _console()
    con.print(t)
    con.print(
        f"total parameters: [bold]{s['total_params']:,}[/] ({s['trainable_params']:,} trainable); output {s['output']}"
    )


NoStackOpt = typer.Option(
    False,
    "--no-stack",
    help="Train every trial alone. By default trials of one architecture and data (seeds, learning "
    "rates, inits, sgd/momentum/adam...) train together as one stacked model, each in its own run folder.",
)
FreshOpt = typer.Option(
    False,
    "--fresh-processes",
    help="A new process for every trial. By default each worker process imports torch once and runs trial after trial.",
)


PruneOpt = typer.Option(
    None,
    "--prune-on",
    metavar="KINDS",
    help="Stop a trial once one of these verdicts has held for 3 log intervals after a warm-up of a "
    "tenth of its steps (status pruned): symmetry, dead_units, vanishing, vanishing_through_time, "
    "not_learning. Tune with --set train.prune.patience=N / train.prune.warmup=F.",
)


@app.command()
@_errors
def compare(
    config: Path = typer.Argument(
        ..., help="The experiment's YAML file (the base of every variant).", show_default=False
    ),
    optimizers: Optional[str] = typer.Option(
        None, "--optimizers", help="Comma-separated optimizer names, each with its usual hyperparameters."
    ),
    over: Optional[List[str]] = typer.Option(
        None, "--over", metavar="KEY=V1,V2", help="Vary any key (repeatable; variants are the product)."
    ),
    seeds: int = typer.Option(3, "--seeds", min=1, help="Runs per variant, seeds base.seed, base.seed+1, ..."),
    target: Optional[str] = typer.Option(
        None, "--target", metavar="METRIC=VALUE", help="Also report steps to reach it, e.g. test_acc=0.95."
    ),
    set_: Optional[List[str]] = SetOpt,
    runs_dir: Path = RunsDirOpt,
    max_parallel: Optional[int] = typer.Option(
        None, "--max-parallel", min=1, help="Runs at once (default: CPU cores)."
    ),
    retries: int = typer.Option(2, "--retries", min=0, help="Re-runs of a trial whose process dies."),
    no_stack: bool = NoStackOpt,
    fresh_processes: bool = FreshOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the table's numbers as JSON."),
    ensemble: bool = typer.Option(
        False,
        "--ensemble",
        help="Also average each variant's seed runs' predictions: the ensemble's test metrics beside its members'.",
    ),
    prune_on: Optional[str] = PruneOpt,
):
    """Run one setup across optimizers (or any keys) with several seeds; mean +- sd per variant."""
    from dlx.api import compare as run_compare
    from dlx.run.pruning import prune_sets

    con = _console(stderr=as_json)
    cmp = run_compare(
        config,
        optimizers=optimizers.split(",") if optimizers else None,
        over=over or [],
        seeds=seeds,
        target=target,
        overrides=[*(set_ or []), *prune_sets(prune_on)],
        runs_dir=runs_dir,
        max_parallel=max_parallel,
        retries=retries,
        stack=not no_stack,
        warm=not fresh_processes,
        quiet=as_json,
        ensemble=ensemble,
    )
    if as_json:
        typer.echo(json.dumps(cmp.as_dict(), indent=2))
    else:
        _compare_table(con, cmp.rows, seeds, cmp.target)
        if cmp.ensembles:
            _ensemble_table(con, cmp.ensembles)
        if cmp.figure_path:
            con.print(f"figure: [bold]{escape(str(cmp.figure_path))}[/]")
        if cmp.record_path:
            where = f" --runs-dir {runs_dir}" if runs_dir != Path("runs") else ""
            con.print(escape(f"all on one page: dlx report last-compare{where}"))
    raise typer.Exit(1 if cmp.failed else 0)


@app.command()
@_errors
def fix(
    run: str = typer.Argument(
        "last", help="The run: a folder, a run id, 'last' or SWEEP/trial-NNNN.", show_default=True
    ),
    seeds: int = typer.Option(
        3, "--seeds", min=1, help="Runs per remedy (and of the original), seeds seed, seed+1, ..."
    ),
    budget: Optional[int] = typer.Option(
        None, "--budget", min=1, metavar="STEPS", help="Train every variant this many steps (default: the run's own)."
    ),
    max_fixes: int = typer.Option(
        4, "--max-fixes", min=1, help="Remedies to try, the most direct of each root verdict first."
    ),
    rounds: int = typer.Option(
        2,
        "--rounds",
        min=1,
        help="2: also try, on top of the best remedy that removed its verdict, the remedies of the "
        "next verdict its runs show; 1: the run's own verdicts only.",
    ),
    pair: bool = typer.Option(False, "--pair", help="Also try the two best remedies together."),
    runs_dir: Path = RunsDirOpt,
    max_parallel: Optional[int] = typer.Option(
        None, "--max-parallel", min=1, help="Runs at once (default: CPU cores)."
    ),
    no_stack: bool = NoStackOpt,
    as_json: bool = typer.Option(False, "--json", help="Print fix.json at the end."),
):
    """Run a run's remedies and prove which one works: the original config and each remedy of
    its verdicts over several seeds; per remedy, whether the verdict is gone, the metric's
    change (mean +- sd) and the time it cost. The winner's config lands in the run folder
    (fixed.yaml) with the command to run it; `dlx report RUN` shows it as "what fixed it".
    Exit code 0 a remedy worked (or nothing to fix), 1 none did."""
    from dlx.many.remedies import fix as run_fix

    con = _console(stderr=as_json)
    report = run_fix(
        run,
        seeds=seeds,
        budget=budget,
        max_fixes=max_fixes,
        rounds=rounds,
        pair=pair,
        runs_dir=runs_dir,
        max_parallel=max_parallel,
        stack=not no_stack,
        quiet=as_json,
    )
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        raise typer.Exit(0 if report.winner or not report.rows else 1)
    if not report.rows:
        con.print(escape(report.note or "nothing to fix"))
        raise typer.Exit(0)
    _fix_table(con, report)
    if report.winner:
        w = report.winner
        con.print(
            f"[bold green]fixed:[/] {escape(w['label'])}: {escape(', '.join(w['targets']))} gone on "
            f"{w['gone']}/{w['runs']} seeds"
        )
        con.print(f"config: [bold]{escape(str(report.fixed_path))}[/]")
        con.print(f"run it: [bold]{escape(str(report.command))}[/]")
    else:
        con.print(f"[yellow]{escape(report.note or 'no remedy worked')}[/]")
    if report.note and report.winner:
        con.print(escape(report.note), style="dim")
    con.print(escape(f"the trainings on one page: dlx report {report.compare_record}"), style="dim")
    raise typer.Exit(0 if report.winner else 1)


def _fix_table(con, report) -> None:
    """One row per remedy (the original first): verdict gone, the metric's mean +- sd and change, seconds."""
    from rich.table import Table

    from dlx.core.fmt import num
    from dlx.many.remedies import change_text, gone_text, mean_sd_text

    t = Table(
        title=f"dlx fix {report.run.name}: {', '.join(report.verdicts)}; {report.metric} over {report.seeds} seed(s)",
        title_justify="left",
    )
    t.add_column("remedy", overflow="fold", ratio=1)
    t.add_column("verdict", justify="right", no_wrap=True)
    t.add_column(report.metric, justify="right", no_wrap=True)
    t.add_column("change", justify="right", no_wrap=True)
    t.add_column("s/run", justify="right", no_wrap=True)
    for r in report.rows:
        win = report.winner is r
        change = change_text(r)
        style = "green" if r.get("clear") else ("red" if change.startswith("-") and report.goal == "max" else "")
        t.add_row(
            ("* " if win else "") + r["label"],
            gone_text(r),
            mean_sd_text(r),
            f"[{style}]{change}[/]" if style and change else change,
            num(r.get("seconds")),
            style="bold" if win else None,
        )
    con.print(t)
    con.print(
        "verdict: the seeds whose runs show the verdict (original) or no longer do (remedy)",
        style="dim",
    )


def _ensemble_table(con, ensembles: dict) -> None:
    """Each variant's ensemble (its seeds' averaged predictions) against its members."""
    from rich.table import Table

    from dlx.core.fmt import num

    t = Table(title="ensembles: the seeds' averaged predictions, on the first seed's test set", title_justify="left")
    for col in ("variant", "members", "test_acc", "member mean", "test_loss", "member mean"):
        t.add_column(col, justify="left" if col == "variant" else "right", overflow="fold")
    for label, e in ensembles.items():
        if "error" in e:
            t.add_row(label, "-", e["error"], "", "", "")
            continue
        t.add_row(
            label,
            str(e["members"]),
            num(e.get("test_acc")),
            num(e.get("member_test_acc_mean")),
            num(e.get("test_loss")),
            num(e.get("member_test_loss_mean")),
        )
    con.print(t)


def _compare_table(con, rows, seeds, goal) -> None:
    from dlx.views.tables import compare_table

    _print_fitted(con, compare_table(rows, seeds, con.width, goal), "--json shows all")


def _print_fitted(con, fitted, see: str) -> None:
    """A table from dlx.views.tables and, under it, what it left out to fit and `see`: where to find it."""
    width = con.width
    try:
        # Too narrow for even the columns always kept: drawn wider (the terminal wraps the lines), so
        # that no number is cut.
        con.width = max(width, fitted.width)
        con.print(fitted.table, crop=False)
    finally:
        con.width = width
    for line in fitted.notes(see):
        con.print(line, style="dim", markup=False, soft_wrap=False)


def _executor(kind: str, max_parallel, retries, gpus_per_trial, cpus_per_trial, address, stack=True, warm=True):
    """The executor the options name (raises DlxError for bad combinations)."""
    from dlx.core.errors import UsageError

    if kind == "ray":
        from dlx.many.ray_executor import RayExecutor

        return RayExecutor(
            address=address,
            num_cpus=cpus_per_trial or 1,
            num_gpus=gpus_per_trial or 0,
            max_retries=retries,
            max_parallel=max_parallel,
        )
    if address:
        raise UsageError("--address is for --executor ray; the local executor runs on this machine")
    from dlx.many.executors import LocalExecutor

    return LocalExecutor(
        max_parallel=max_parallel,
        retries=retries,
        gpus_per_trial=gpus_per_trial,
        threads_per_trial=int(cpus_per_trial) if cpus_per_trial else None,
        stack=stack,
        warm=warm,
    )


ExecutorOpt = typer.Option(
    "local",
    "--executor",
    help="Where trials run: local (processes on this machine) or ray (a cluster; pip install 'dlx\\[ray]').",
)
AddressOpt = typer.Option(
    None, "--address", metavar="HOST:PORT", help="The Ray cluster to use (--executor ray), e.g. 127.0.0.1:6379."
)
GpusOpt = typer.Option(
    None,
    "--gpus-per-trial",
    min=0.01,
    help="GPUs each trial holds, e.g. 0.5: two trials share a GPU (CUDA_VISIBLE_DEVICES per trial).",
)
CpusOpt = typer.Option(
    None,
    "--cpus-per-trial",
    min=1,
    help="CPU cores (torch threads) per trial; default: cores / --max-parallel (local), 1 (ray).",
)


@app.command()
@_errors
def sweep(
    spec: Optional[Path] = typer.Argument(
        None, help="The sweep spec (YAML: base, metric, strategy, trials, space).", show_default=False
    ),
    resume: Optional[str] = typer.Option(
        None,
        "--resume",
        metavar="SWEEP",
        help="Finish a stopped sweep: its folder, id, or 'last'. Finished trials are not run again.",
    ),
    set_: Optional[List[str]] = SetOpt,
    runs_dir: Path = RunsDirOpt,
    executor: str = ExecutorOpt,
    address: Optional[str] = AddressOpt,
    max_parallel: Optional[int] = typer.Option(
        None, "--max-parallel", min=1, help="Trials at once (default: CPU cores, GPU slots, or the Ray cluster's CPUs)."
    ),
    retries: int = typer.Option(2, "--retries", min=0, help="Re-runs of a trial whose process (or Ray node) dies."),
    gpus_per_trial: Optional[float] = GpusOpt,
    cpus_per_trial: Optional[int] = CpusOpt,
    no_stack: bool = NoStackOpt,
    fresh_processes: bool = FreshOpt,
    as_json: bool = typer.Option(False, "--json", help="Print results.json (trials best first) at the end."),
    prune_on: Optional[str] = PruneOpt,
):
    """Search over config keys (grid, random or TPE); every trial is a dlx train run.

    The sweep folder (runs/sweep-...) holds the spec, Optuna's journal, results.json,
    best.yaml and one run folder per trial. Ctrl-C stops it; --resume finishes it.
    Exit code 0 all trials ran, 1 some failed or crashed, 2 bad spec, 130 interrupted.
    """
    from dlx.core.errors import DlxError, UsageError

    _check_choice(executor, ("local", "ray"), f"--executor {executor!r} is not an executor")
    from dlx.many.sweeper import Sweep, find_sweep, plan, run_sweep

    con = _console(stderr=as_json)
    if resume and (spec or set_ or prune_on):
        raise UsageError(
            "--resume takes the spec and --set (and --prune-on) values stored in the sweep folder; "
            "give either SPEC or --resume SWEEP"
        )
    from dlx.run.pruning import prune_sets

    set_ = [*(set_ or []), *prune_sets(prune_on)]
    if not resume and spec is None:
        raise UsageError("give a sweep spec (dlx sweep SPEC) or a sweep to finish (dlx sweep --resume SWEEP)")
    ex = _executor(
        executor, max_parallel, retries, gpus_per_trial, cpus_per_trial, address, not no_stack, not fresh_processes
    )
    if hasattr(ex, "on_note"):
        ex.on_note = lambda note: con.print(escape(note), style="dim")
    if hasattr(ex, "start_workers"):
        ex.start_workers()  # they import torch while the sweep is planned; run_sweep takes them over
    try:
        sw = Sweep.open(find_sweep(resume, runs_dir)) if resume else Sweep.create(plan(spec, set_ or []), runs_dir)
    except BaseException:
        ex.stop_workers() if hasattr(ex, "stop_workers") else None
        raise
    total, metric = sw.plan.total, sw.plan.spec.metric.name
    left = total - sw.done
    for note in sw.notes:  # what --resume found damaged and repaired
        con.print(f"[yellow]note:[/] {escape(note)}")
    con.print(
        f"[bold]dlx sweep[/] {escape(str(sw.folder))}: {sw.plan.spec.strategy}, {total} trial(s)"
        + (f", {sw.done} done before" if resume else "")
        + f", {metric} ({sw.plan.spec.goal})"
    )
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from dlx.views.report import num

    with Progress(
        TextColumn("[bold]sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=con,
        transient=True,
        disable=as_json,
    ) as progress:
        task = progress.add_task("", total=total, completed=sw.done)

        def on_row(row):
            best = sw.best()
            progress.update(
                task,
                completed=sw.done,
                description=f"best {metric} {num(best['value'])} (trial {best['trial']})" if best else "",
            )

        try:
            run_sweep(sw, ex, on_row=on_row)
            if hasattr(ex, "close"):
                ex.close()  # a Ray connection this command opened
        except KeyboardInterrupt:
            progress.stop()
            con.print(
                f"[yellow]interrupted[/] after {sw.done} of {total} trials; "
                f"finish it with: [bold]dlx sweep --resume {escape(str(sw.folder))}[/]"
            )
            raise typer.Exit(130) from None
        except DlxError as e:
            sw.finish("interrupted")
            _fail(e)
    if as_json:
        typer.echo((sw.folder / "results.json").read_text())
    else:
        _sweep_table(con, sw)
        if left == 0:
            con.print("nothing left to run")
    failed = sum(r["status"] in ("config_error", "crashed", "failed") for r in sw.rows.values())
    raise typer.Exit(1 if failed else 0)


def _sweep_table(con, sw, limit: int = 20) -> None:
    from dlx.views.report import num
    from dlx.views.tables import sweep_table

    rows = sw.sorted_rows()
    metric = sw.plan.spec.metric.name
    _print_fitted(
        con,
        sweep_table(rows[:limit], [d.key for d in sw.plan.dims], metric, sw.plan.spec.goal, con.width),
        "results.json in the sweep folder has all",
    )
    if len(rows) > limit:
        con.print(f"... {len(rows) - limit} more in {escape(str(sw.folder / 'results.json'))}")
    errors = [r for r in rows if r.get("error") and r["status"] in ("config_error", "crashed", "failed")]
    for r in errors[:3]:
        # A config error is one line per problem (all shown); a crash or failure its first line.
        lines = str(r["error"]).strip().splitlines() or [""]
        shown = "; ".join(x.strip() for x in lines) if r["status"] == "config_error" else lines[0]
        con.print(f"[red]trial {r['trial']:04d} {r['status']}:[/] {escape(shown)}")
    best = sw.best()
    if best:
        con.print(
            f"best: trial {best['trial']:04d} {metric} = [bold]{num(best['value'])}[/] -> "
            f"[bold]{escape(str(sw.folder / 'best.yaml'))}[/]  (dlx train {escape(str(sw.folder / 'best.yaml'))}; "
            f"dlx show {escape(sw.folder.name)}/trial-{best['trial']:04d})"
        )
    con.print(f"sweep folder: [bold]{escape(str(sw.folder))}[/]  (dlx runs --sweep {escape(sw.folder.name)})")


@app.command()
@_errors
def runs(
    runs_dir: Path = RunsDirOpt,
    sweep_: Optional[str] = typer.Option(
        None, "--sweep", metavar="SWEEP", help="List one sweep's trials: its folder, id (or part of it), or 'last'."
    ),
    status: Optional[str] = typer.Option(
        None, "--status", help="Only runs with this status (completed, diverged, failed, interrupted, running)."
    ),
    sort: Optional[str] = typer.Option(
        None, "--sort", help="Sort by a column: test_acc, test_loss, train_loss, train_acc, steps, started."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON."),
):
    """List the runs in the runs folder, one row each."""
    from dlx.api import runs as list_runs

    rows = list_runs(runs_dir, status=status, sort=sort, sweep=sweep_)
    where = rows.where
    if as_json:
        typer.echo(json.dumps(list(rows), indent=2))
        return
    con = _console()
    for why in rows.skipped:
        _console(stderr=True).print(f"[yellow]skipped[/] {escape(why)}", highlight=False)
    if not rows:
        con.print(escape(f"no runs in {where}" + (f" with status {status}" if status else "")))
        _sweeps_hint(con, runs_dir, sweep_)
        return
    from dlx.records.folders import run_folders
    from dlx.views.tables import runs_table

    _print_fitted(con, runs_table(rows, con.width, sort, ids=[d.name for d in run_folders(where)]), "--json shows all")
    con.print(escape(f"{len(rows)} run(s) in {where}"))
    _sweeps_hint(con, runs_dir, sweep_)


def _sweeps_hint(con, runs_dir: Path, sweep_: str | None) -> None:
    """Sweeps keep their trials in their own folders: say they are there."""
    from dlx.records.folders import sweep_folders

    if sweep_ is not None:
        return
    found = sweep_folders(runs_dir)
    if found:
        con.print(f"{len(found)} sweep(s) too, e.g. [bold]dlx runs --sweep {escape(found[-1].name)}[/]")


@app.command()
@_errors
def report(
    target: str = typer.Argument(
        "last",
        metavar="RUN_SWEEP_OR_COMPARE",
        help="A run or sweep folder, its id (or part of one), 'last' (the run or sweep started or resumed last), "
        "'last-run' or 'last-sweep'; or a compare's record (the compare-*.json dlx compare names) or 'last-compare'.",
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="The HTML file to write (default: report.html in the folder)."
    ),
    runs_dir: Path = RunsDirOpt,
):
    """Write one self-contained HTML page (config, verdicts, tables, figures, pictures) for a run, a sweep or a compare.

    A compare's page puts its variants' numbers, curves, verdicts and (2-D data)
    decision boundaries side by side.
    """
    from dlx.views.html_report import write_report

    path = write_report(target, out, runs_dir)
    _console().print(f"report: [bold]{escape(str(path))}[/]")


@app.command()
def examples(
    words: Optional[List[str]] = typer.Argument(
        None,
        metavar="NAME | copy NAME [DIR]",
        help="An example's name: print its whole story and commands. "
        "[bold]copy NAME [DIR][/]: write it (and what it needs) into "
        "DIR (default: the working folder), to edit and run.",
        show_default=False,
    ),
    force: bool = typer.Option(False, "--force", help="copy: overwrite files that already exist."),
    dir_: Optional[Path] = typer.Option(
        None, "--dir", help="A folder of example configs to read instead of the ones that ship with dlx."
    ),
):
    """The example configs as a course, section by section: each one's concept and the verdict it shows.

    Every command that takes a config takes an example's name too: [bold]dlx train quickstart[/].
    """
    from dlx.config.catalogue import copy_example, course, default_dir, find_example, load_examples, run_command
    from dlx.core.errors import DlxError, UsageError

    con = _console()
    name, *more = words or [None]
    try:
        if name == "copy":
            if not more or len(more) > 2:
                raise UsageError("usage: dlx examples copy NAME [DIR] (DIR defaults to the working folder)")
            ex, written = copy_example(more[0], more[1] if len(more) > 1 else ".", force, dir_)
            for path in written:
                con.print(f"wrote [bold]{escape(str(path))}[/]")
            con.print(f"run it: [bold]{escape(run_command(ex, written[0]))}[/]")
            return
        if more or force:
            raise UsageError("dlx examples takes one NAME; --force goes with dlx examples copy NAME [DIR]")
        if name:
            ex = find_example(name, dir_)
            con.print(f"[bold]{escape(str(ex.path))}[/]")
            con.print(ex.header, markup=False)
            if ex.path.parent == default_dir():  # a shipped one: the commands above need a clone
                con.print(
                    f"\nfrom any folder: [bold]{run_command(ex, Path(ex.name))}[/]; "
                    f"a copy to edit: [bold]dlx examples copy {ex.name}[/]"
                )
            return
        found = load_examples(dir_)
    except DlxError as e:
        _fail(e)
    from rich.table import Table

    # One line per example, nothing cut: names (what the commands take) and concepts
    # always; the expected verdicts only when the terminal has room for all of them.
    widths = [
        max((len(x) for x in col), default=0)
        for col in zip(*[("  " + e.name, e.concept, ", ".join(e.expect)) for e in found])
    ] or [0, 0, 0]
    need = sum(widths) + 4  # three columns and two gaps
    verdicts = con.width >= need
    t = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0), header_style="dim")
    t.add_column("example", no_wrap=True)
    t.add_column("concept", overflow="fold")
    if verdicts:
        t.add_column("expected verdict", no_wrap=True)
    for i, (title, group) in enumerate(course(found)):
        if i:
            t.add_row()
        t.add_row(f"[bold]{title}[/]")
        for ex in group:
            t.add_row(f"  [cyan]{ex.name}[/]", ex.concept, *([", ".join(ex.expect)] if verdicts else []))
    con.print(t)
    con.print(escape(f"\n{len(found)} examples in {found[0].path.parent if found else dir_}"), soft_wrap=False)
    if not verdicts:
        con.print(f"(a terminal {need} columns wide shows the verdict each one expects too)", soft_wrap=False)
    hints = Table.grid(padding=(0, 2))
    hints.add_row("[bold]dlx examples NAME[/]", "its whole story: the commands, what to look for")
    hints.add_row("[bold]dlx train NAME[/]", "run it (every command takes an example's name)")
    hints.add_row("[bold]dlx examples copy NAME[/]", "a copy to edit, in the working folder")
    con.print(hints)


@app.command()
@_errors
def plot(
    runs: List[str] = typer.Argument(
        ...,
        metavar="RUN",
        help="Run folders, run ids (or parts of them), or 'last' (the run started or resumed last).",
        show_default=False,
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="The PNG to write (default: plot.png in the first run's folder)."
    ),
    title: Optional[str] = typer.Option(None, "--title", help="The figure's title (default: the runs' names)."),
    panels: Optional[str] = typer.Option(
        None,
        "--panels",
        metavar="NAME,...",
        help="Only these panels: boundary (each run's decision surface, 2-D inputs), units (every hidden "
        "unit's output over the input plane), warp (the input grid as each layer moves it), weights (an mlp's "
        "first layer as images), filters and feature_maps (a CNN's first convolution), histograms "
        "(activations and gradients per layer, init to end), loss, accuracy, "
        "time_grad, grad_heatmap, grad_lines, activations.",
    ),
    size: Optional[str] = typer.Option(None, "--size", metavar="W,H", help="The figure's size in inches, e.g. 12,4."),
    step: Optional[int] = typer.Option(
        None,
        "--step",
        min=0,
        help="Draw the pictures (boundary, units, warp, weights, ...) at the snapshot nearest this step "
        "instead of the end (0: the init).",
    ),
    units: Optional[str] = typer.Option(
        None,
        "--units",
        metavar="I,J",
        help="The two units of each layer a warp panel shows (default: the two that spread the training points most).",
    ),
    runs_dir: Path = RunsDirOpt,
):
    """Draw runs as one PNG (or .svg, .pdf): loss and accuracy, gradient heatmap and lines, activations.

    Several runs overlay; runs that differ only in their seed are drawn as a mean
    line with a band. Recurrent runs add the gradient reaching each time step.
    --panels boundary draws each run's decision surface side by side, titled with
    the keys that tell the runs apart (dlx plot A B C --panels boundary); units and
    warp show what each hidden layer computes; weights, filters and feature_maps
    draw a first layer from the saved model; histograms the activations and
    back-propagated gradients of every layer from init to the end.
    """
    from dlx.records.folders import find_run
    from dlx.views.plots import plot_runs

    paths = [find_run(r, runs_dir) for r in runs]
    inches = _size(size)
    pair = _pair(units)

    target = out if out is not None else paths[0] / "plot.png"
    notes: list[str] = []  # a run's damaged checkpoint.pt or snapshots.pt: named, its pictures left out
    try:
        names = [p.strip() for p in panels.split(",") if p.strip()] if panels else None
        path = plot_runs(paths, target, title=title, panels=names, size=inches, step=step, pair=pair, notes=notes)
    except OSError as e:  # an unwritable path (a file type matplotlib cannot write is refused before drawing)
        from dlx.core.errors import UsageError

        why = e.strerror or str(e)
        _fail(UsageError(f"cannot write the figure {target}: {why}; pass -o with a writable path"))
    for note in notes:
        _console().print(f"[yellow]left out:[/] {escape(note)}", highlight=False)
    _console().print(f"figure: [bold]{escape(str(path))}[/]")


def _pair(text: Optional[str]) -> Optional[tuple[int, int]]:
    """--units I,J."""
    if not text:
        return None
    from dlx.core.errors import UsageError

    try:
        i, j = (int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--units {text!r}: expected two unit numbers, e.g. --units 0,1") from None
    if min(i, j) < 0:
        raise UsageError(f"--units {text!r}: unit numbers start at 0")
    return i, j


@app.command()
@_errors
def backprop(
    config: str = typer.Argument(
        ...,
        metavar="CONFIG",
        help="An mlp config (a YAML file or an example's name): its init and first batch; or 'mazur' for "
        "Mazur's worked example (2-2-2 sigmoid, squared error, lr 0.5).",
        show_default=False,
    ),
    samples: int = typer.Option(1, "--samples", min=1, max=64, help="Training samples in the batch traced."),
    set_: Optional[List[str]] = SetOpt,
):
    """Work one step of backpropagation by hand: every value, derivative, delta and gradient, with its formula.

    Forward values layer by layer, the loss, then backward: dE/da, each delta with the
    activation's derivative, each weight gradient as delta times the layer's input, the
    gradient descent update; then the same step by autograd, and the largest difference.
    """
    from dlx.config.loader import load_config
    from dlx.run.backprop import from_config, mazur, trace

    net = mazur() if config == "mazur" else from_config(load_config(config, list(set_ or [])), samples)
    lines, _ = trace(net)
    con = _console()
    for line in lines:
        con.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command()
@_errors
def lab(
    config: Optional[str] = typer.Argument(
        None, help="An example's name to start from (the page's example menu).", show_default=False
    ),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="The port (0: any free one)."),
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        help="The address to bind (loopback unless you say otherwise). The lab answers only requests "
        "addressed to it, carrying the token in the printed URL.",
    ),
    no_browser: bool = typer.Option(False, "--no-browser", help="Do not open a browser; print the URL only."),
    max_active: int = typer.Option(4, "--max-active", min=1, max=64, help="Trainings at once, all pages together."),
    runs_dir: Path = RunsDirOpt,
):
    """A live page in the browser: change a knob, press play, watch the network react.

    Every lab run is a normal run folder (dlx runs lists them). Needs the extra:
    pip install 'dlx\\[lab]'. The printed URL carries the server's access token:
    only a page opened from it can drive the lab. Ctrl-C stops the server and its
    runs as Ctrl-C stops dlx train (interrupted, checkpointed, resumable).
    """
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        from dlx.core.errors import UsageError

        raise UsageError("dlx lab needs its web server: pip install 'dlx[lab]'") from None
    from dlx.lab.server import is_loopback, serve

    con = _console()

    def echo(url: str, token: str) -> None:
        con.print(f"dlx lab: [bold]{escape(url)}[/]  (Ctrl-C stops it)", soft_wrap=True)
        if not is_loopback(host):
            con.print(escape(f"bound to {host}, beyond this machine: only a page opened from this URL can use it"))

    serve(config, host, port, runs_dir, not no_browser, max_active, echo)


@app.command()
@_errors
def landscape(
    runs: List[str] = typer.Argument(
        ..., metavar="RUN", help="Run folders, run ids (or parts of them), or 'last'.", show_default=False
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="The figure to write (default: landscape.png in the first run's folder)."
    ),
    directions: str = typer.Option(
        "pca",
        "--directions",
        help="The plane's directions: pca (the trajectory's own two principal directions) or random "
        "(filter-normalised, Li et al. 2018).",
    ),
    grid: int = typer.Option(25, "--grid", min=5, max=101, help="Grid points per axis of the plane."),
    between: bool = typer.Option(
        False,
        "--between",
        help="Also the loss on the straight line from the first run's final weights to the second's.",
    ),
    runs_dir: Path = RunsDirOpt,
):
    """Draw the loss landscape around runs' weights: the line from init to end, and a 2-D slice with the training path.

    One column per run (a residual and a plain net side by side: dlx landscape A B).
    The loss is the training loss on the first 1024 samples, from the saved model and
    its snapshots.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from dlx.records.folders import find_run
    from dlx.views.landscape import landscape_figure
    from dlx.views.plots import check_format

    paths = [find_run(r, runs_dir) for r in runs]
    if between and len(paths) < 2:
        from dlx.core.errors import UsageError

        raise UsageError("--between needs two runs: dlx landscape RUN_A RUN_B --between")
    target = out if out is not None else paths[0] / "landscape.png"
    check_format(target)
    with Progress(
        TextColumn("loss evaluations"), BarColumn(), MofNCompleteColumn(), console=_console(stderr=True), transient=True
    ) as bar:
        task = bar.add_task("", total=None)
        notes: list[str] = []  # a run's damaged file: named, that run left out
        fig = landscape_figure(
            paths, directions, grid, between, progress=lambda d, t: bar.update(task, completed=d, total=t), notes=notes
        )
    for note in notes:
        _console().print(f"[yellow]left out:[/] {escape(note)}", highlight=False)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(target)
    except OSError as e:
        from dlx.core.errors import UsageError

        _fail(UsageError(f"cannot write the figure {target}: {e.strerror or e}; pass -o with a writable path"))
    _console().print(f"figure: [bold]{escape(str(target))}[/]")


@app.command()
@_errors
def animate(
    run: str = typer.Argument(
        ..., metavar="RUN", help="A run folder, run id (or part of one), or 'last'.", show_default=False
    ),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        "-o",
        help="The file to write: .gif (default: animation.gif in the run's folder) or .mp4 (needs ffmpeg).",
    ),
    panels: str = typer.Option(
        "boundary",
        "--panels",
        metavar="NAME,...",
        help="What each frame shows: boundary, and optionally units and histograms.",
    ),
    fps: float = typer.Option(4.0, "--fps", min=0.5, max=60, help="Frames per second."),
    runs_dir: Path = RunsDirOpt,
):
    """Animate a 2-D run's decision boundary over training, one frame per snapshot.

    Each frame is the model at one of the run's snapshots (up to 30, step 0 first; a file
    of more is subsampled to animate.MAX_FRAMES),
    with its step and train loss; --panels boundary,units adds every hidden unit's
    map, histograms the layers' activations and gradients at that step.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from dlx.records.folders import find_run
    from dlx.views.animate import animate as make

    path = find_run(run, runs_dir)
    target = out if out is not None else path / "animation.gif"
    names = [p.strip() for p in panels.split(",") if p.strip()]
    notes: list[str] = []  # what was left out (a damaged checkpoint.pt, frames past the cap)
    try:
        with Progress(
            TextColumn("frames"), BarColumn(), MofNCompleteColumn(), console=_console(stderr=True), transient=True
        ) as bar:
            task = bar.add_task("", total=None)
            written, frames = make(
                path,
                target,
                names,
                fps=fps,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
                notes=notes,
            )
    except OSError as e:
        from dlx.core.errors import UsageError

        _fail(UsageError(f"cannot write {target}: {e.strerror or e}; pass -o with a writable path"))
    for note in notes:
        _console().print(f"[yellow]left out:[/] {escape(note)}", highlight=False)
    _console().print(f"animation: [bold]{escape(str(written))}[/] ({frames} frames)")


def _size(text: Optional[str]) -> Optional[tuple[float, float]]:
    """--size W,H in inches."""
    if not text:
        return None
    from dlx.core.errors import UsageError

    try:
        w, h = (float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--size {text!r}: expected WIDTH,HEIGHT in inches, e.g. --size 12,4") from None
    if not (0 < w <= 100 and 0 < h <= 100):
        raise UsageError(f"--size {text!r}: width and height must be between 0 and 100 inches")
    return w, h


@app.command("list")
def list_(
    kind: Optional[str] = typer.Argument(
        None, help="One of: model, data, activation, init, optimizer, schedule, regularization, train."
    ),
):
    """List every name a config can use, with its parameters and defaults, and every key of
    the regularization and train sections with its type, default and meaning."""
    from rich.markup import escape
    from rich.table import Table

    from dlx.components.activations import ACTIVATIONS
    from dlx.components.data import DATASETS
    from dlx.components.init import INITS
    from dlx.components.models import MODELS
    from dlx.components.optim import OPTIMIZERS, SCHEDULES
    from dlx.config.loader import Regularization, Train
    from dlx.core.registry import describe_section

    regs = {r.kind: r for r in (MODELS, DATASETS, ACTIVATIONS, INITS, OPTIMIZERS, SCHEDULES)}
    sections = {"regularization": Regularization, "train": Train}
    _check_choice(kind, [*regs, *sections], f"unknown kind '{kind}'")
    con = _console()
    for k, reg in regs.items():
        if kind and k != kind:
            continue
        t = Table(title=f"{k}", title_justify="left", title_style="bold", show_edge=False, pad_edge=False)
        t.add_column("name", style="cyan", no_wrap=True)
        # fold: a long formula or URL breaks across lines instead of ending in an ellipsis.
        t.add_column("parameters (defaults)", overflow="fold")
        t.add_column("what it is", overflow="fold")
        for row in reg.describe():
            t.add_row(*map(escape, row))  # a default like [https://...] is text, not markup
        con.print(t)
        if reg.notes:
            import textwrap

            # Wrapped here with a hanging indent (rich would wrap flush left); no markup,
            # so a bracket in a formula prints as written.
            width = max(40, min(con.width, 100))
            con.print()
            for note in reg.notes:
                con.print(
                    textwrap.fill(note, width, initial_indent="- ", subsequent_indent="  ", break_on_hyphens=False),
                    markup=False,
                    highlight=False,
                    soft_wrap=True,
                )
        con.print()
    for k, section in sections.items():
        if kind and k != kind:
            continue
        t = Table(
            title=f"{k}  (--set {k}.KEY=VALUE)",
            title_justify="left",
            title_style="bold",
            show_edge=False,
            pad_edge=False,
            expand=True,
        )
        t.add_column("key", style="cyan", no_wrap=True)
        t.add_column("type, default", ratio=2)
        t.add_column("what it does", ratio=3)
        for key, type_, default, doc in describe_section(section):
            t.add_row(key, f"{escape(type_)}\n[dim]default: {escape(default)}[/]", escape(doc))
        con.print(t)
        con.print()


def _check_choice(value, valid, what: str) -> None:
    """Exit 2 with 'did you mean' when an option's value is not one of `valid` (None passes)."""
    if value is None or value in valid:
        return
    from dlx.core.errors import UsageError
    from dlx.core.registry import closest

    hint = closest(value, list(valid))
    _fail(UsageError(what + (f"; did you mean '{hint}'?" if hint else "") + f" (valid: {', '.join(valid)})"))


def main() -> None:
    from dlx.core import version

    version.OWNS_PROCESS = True  # training here never compiles: no torch._dynamo import (see optim.py)
    # prog_name: `python -m dlx` too says "dlx" in its usage lines and writes a completion
    # script for the `dlx` command (not for a program called "python -m dlx").
    app(prog_name="dlx")


if __name__ == "__main__":
    main()

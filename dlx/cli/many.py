"""`dlx compare`, `dlx fix` and `dlx sweep`: many trainings at once, and their tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from dlx.cli.common import RunsDirOpt, SetOpt, app, check_choice, console, errors, fail, print_fitted

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


ExecutorOpt = typer.Option(
    "local",
    "--executor",
    help="Where trials run: local (processes on this machine) or ray (a cluster; pip install 'dlx\\[ray]').",
)


AddressOpt = typer.Option(
    None, "--address", metavar="HOST:PORT", help="The Ray cluster to use (--executor ray), e.g. 127.0.0.1:6379."
)


@app.command()
@errors
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
    executor: str = ExecutorOpt,
    address: Optional[str] = AddressOpt,
):
    """Run one setup across optimizers (or any keys) with several seeds; mean +- sd per variant.

    With nothing varied, --seeds N runs the one setup N times: its spread over seeds.
    """
    from dlx.many.compare import compare as run_compare
    from dlx.run.pruning import prune_sets

    check_choice(executor, ("local", "ray"), f"--executor {executor!r} is not an executor")
    con = console(stderr=as_json)
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
        executor=executor,
        address=address,
    )
    if as_json:
        typer.echo(json.dumps(cmp.as_dict(), indent=2))
    else:
        _compare_table(con, cmp.rows, seeds, cmp.target)
        _spread(con, cmp.rows)
        if cmp.ensembles:
            _ensemble_table(con, cmp.ensembles)
        if cmp.figure_path:
            con.print(f"figure: [bold]{escape(str(cmp.figure_path))}[/]")
        if cmp.record_path:
            where = f" --runs-dir {runs_dir}" if runs_dir != Path("runs") else ""
            con.print(escape(f"all on one page: dlx report last-compare{where}"))
    raise typer.Exit(1 if cmp.failed else 0)


@app.command()
@errors
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
    no_parts: bool = typer.Option(
        False,
        "--no-parts",
        help="Skip running each override of a combined remedy that worked alone (by default they run, "
        "over the same seeds, to say which part fixed it).",
    ),
    runs_dir: Path = RunsDirOpt,
    max_parallel: Optional[int] = typer.Option(
        None, "--max-parallel", min=1, help="Runs at once (default: CPU cores)."
    ),
    no_stack: bool = NoStackOpt,
    as_json: bool = typer.Option(False, "--json", help="Print fix.json at the end."),
):
    """Run a run's remedies and prove which one works: the original config and each remedy of
    its verdicts over several seeds; per remedy, on how many seeds each verdict is gone, the
    metric's change (mean +- sd) and the time it cost; a combined remedy that worked is run
    part by part, to say which part fixed it. The winner's config lands in the run folder
    (fixed.yaml) with the command to run it; `dlx report RUN` shows it as "what fixed it".
    Exit code 0 a remedy worked (or nothing to fix), 1 none did."""
    from dlx.many.remedies import fix as run_fix

    con = console(stderr=as_json)
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
        parts=not no_parts,
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
        con.print(f"[bold green]fixed by[/] {escape(w['label'])}: its verdicts gone on {w['gone']}/{w['runs']} seeds")
        con.print(f"config: [bold]{escape(str(report.fixed_path))}[/]")
        con.print(f"run it: [bold]{escape(str(report.command))}[/]")
    else:
        con.print(f"[yellow]{escape(report.note or 'no remedy worked')}[/]")
    if report.note and report.winner:
        con.print(escape(report.note), style="dim")
    con.print(escape(f"the trainings on one page: dlx report {report.compare_record}"), style="dim")
    raise typer.Exit(0 if report.winner else 1)


def _fix_table(con, report) -> None:
    """One row per remedy (the original first): each verdict seen (original) or gone (remedy) on
    how many seeds, the metric's mean +- sd and change, seconds; under it, each combined remedy
    that removed its verdicts part by part, and which part fixed it."""
    from dlx.views.labels import needed_text

    print_fitted(con, _fix_fitted(report, report.rows, "remedy", con.width), "--json shows all")
    con.print("verdicts: the seeds on which the original shows each, a remedy no longer does", style="dim")
    for r in report.rows:
        if not r.get("parts"):
            continue
        con.print()
        title = f"{r['label']}, one part at a time (the same {r['runs']} seeds)"
        print_fitted(con, _fix_fitted(report, r["parts"], "part alone", con.width, title), "--json shows all")
        # One clause a line: the finding first, then what qualifies it.
        for i, clause in enumerate(needed_text(r, report.metric).split("; ")):
            con.print(("[bold]→[/] " if i == 0 else "  ") + escape(clause))


def _fix_fitted(report, rows, first: str, width: int, title: str | None = None):
    """The fix table of `rows` (remedies or one remedy's parts), fitted to `width`: a verdict per
    line, so that which verdict a remedy removes and which it leaves is read, not inferred."""
    from rich.text import Text

    from dlx.core.fmt import num
    from dlx.views.labels import ORIGINAL, change_text, kind_counts, mean_sd_text
    from dlx.views.tables import Column, Step, fit

    def verdicts(r) -> Text:
        text = Text()
        for i, (line, k, n) in enumerate(kind_counts(r)):
            # Gone on every seed green, on none red; the original's own counts plain.
            style = "" if r["label"] == ORIGINAL or not n else ("green" if k == n else "red" if k == 0 else "yellow")
            text.append(("\n" if i else "") + line, style=style)
        return text

    def change(r) -> Text:
        c = change_text(r)
        style = "green" if r.get("clear") else ("red" if c.startswith("-") and report.goal == "max" else "")
        return Text(c, style=style)

    def label(r) -> Text:
        win = report.winner is r
        return Text(("* " if win else "") + r["label"], style="bold" if win else "")

    cols = [
        Column(first, first, [label(r) for r in rows], justify="left", wrap=True),
        Column("verdicts", "verdicts", [verdicts(r) for r in rows], justify="left"),
        Column(report.metric, report.metric, [Text(mean_sd_text(r)) for r in rows]),
        Column("change", "change", [change(r) for r in rows]),
        Column("seconds", "s/run", [Text(num(r.get("seconds"))) for r in rows]),
    ]
    if title is None:
        title = f"dlx fix {report.run.name}: {', '.join(report.verdicts)}; {report.metric} over {report.seeds} seed(s)"
    return fit(cols, width, [Step(drop="seconds")], title=title)


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

    print_fitted(con, compare_table(rows, seeds, con.width, goal), "--json shows all")


def _spread(con, rows) -> None:
    """What the seeds say under the table, each sentence wrapped between words."""
    from rich.text import Text

    from dlx.views.spread import spread_lines
    from dlx.views.tables import Hanging

    for line in spread_lines(rows):
        con.print(Hanging(Text(line), labels=(line[: line.find(": ") + 2],) if ": " in line else ()))


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
@errors
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

    check_choice(executor, ("local", "ray"), f"--executor {executor!r} is not an executor")
    from dlx.many.sweeper import Sweep, find_sweep, plan, run_sweep

    con = console(stderr=as_json)
    if resume and (spec or set_ or prune_on):
        raise UsageError(
            "--resume takes the spec and --set (and --prune-on) values stored in the sweep folder; "
            "give either SPEC or --resume SWEEP"
        )
    from dlx.run.pruning import prune_sets

    set_ = [*(set_ or []), *prune_sets(prune_on)]
    if not resume and spec is None:
        raise UsageError("give a sweep spec (dlx sweep SPEC) or a sweep to finish (dlx sweep --resume SWEEP)")
    from dlx.many.backends import build_executor

    ex = build_executor(
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
            fail(e)
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
    print_fitted(
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

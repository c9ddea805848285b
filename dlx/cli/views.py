"""Commands that read run folders and show them: `dlx show`, `runs`, `report`, `plot`,
`landscape`, `animate`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from dlx.cli.common import RunsDirOpt, app, console, errors, fail, print_fitted
from dlx.records.layout import SUMMARY_FILE
from dlx.views.panel_registry import frame_panels_help, panels_help

# The --panels help of dlx plot and dlx animate, made from the panel registry (the one list of
# panels; tests/test_owners_panels.py holds the help to it). The registry imports nothing heavy.
PLOT_PANELS_HELP = panels_help()
ANIMATE_PANELS_HELP = frame_panels_help()


@app.command()
@errors
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
    con = console()
    for problem in r.problems:  # what reading the folder left out, each by its file
        con.print(f"[yellow]left out:[/] {escape(problem)}", highlight=False)
    if not r.summary:
        m = r.metrics[-1] if r.metrics else {}
        con.print(
            f"run {escape(str(r.meta.get('run_id')))}: status [bold]{escape(str(r.status))}[/], no summary yet; "
            f"last logged step {m.get('step', '-')}, train_loss {m.get('train_loss', '-')}"
        )
        return
    from dlx.records.folders import read_jsonl
    from dlx.records.layout import EVENTS_FILE
    from dlx.views.report import run_report

    events = read_jsonl(r.path / EVENTS_FILE)  # the changes made while it trained
    con.print(run_report(r.summary, r.meta, metrics=r.metrics, probes=r.probes, status=r.status, events=events))
    if r.summary.get("init_check"):  # the step-0 init-theory table
        from dlx.views.report import guarded, init_check_table

        # Not soft-wrapped: its caption (the notes under it) wraps between words at the terminal's width.
        con.print(guarded(f"{SUMMARY_FILE} (init_check)", init_check_table, r.summary["init_check"]), soft_wrap=False)
    con.print(f"run folder: [bold]{escape(str(r.path))}[/]")


@app.command()
@errors
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
    con = console()
    for why in rows.skipped:
        console(stderr=True).print(f"[yellow]skipped[/] {escape(why)}", highlight=False)
    if not rows:
        con.print(escape(f"no runs in {where}" + (f" with status {status}" if status else "")))
        _sweeps_hint(con, runs_dir, sweep_)
        return
    from dlx.records.folders import run_folders
    from dlx.views.tables import runs_table

    print_fitted(con, runs_table(rows, con.width, sort, ids=[d.name for d in run_folders(where)]), "--json shows all")
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
@errors
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
    console().print(f"report: [bold]{escape(str(path))}[/]")


@app.command()
@errors
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
        help=PLOT_PANELS_HELP,
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
        help="Two units of each layer for the warp panel to show (default: each layer's two main directions, PCA).",
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
        fail(UsageError(f"cannot write the figure {target}: {why}; pass -o with a writable path"))
    for note in notes:
        console().print(f"[yellow]left out:[/] {escape(note)}", highlight=False)
    console().print(f"figure: [bold]{escape(str(path))}[/]")


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


@app.command()
@errors
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
        TextColumn("loss evaluations"), BarColumn(), MofNCompleteColumn(), console=console(stderr=True), transient=True
    ) as bar:
        task = bar.add_task("", total=None)
        notes: list[str] = []  # a run's damaged file: named, that run left out
        fig = landscape_figure(
            paths, directions, grid, between, progress=lambda d, t: bar.update(task, completed=d, total=t), notes=notes
        )
    for note in notes:
        console().print(f"[yellow]left out:[/] {escape(note)}", highlight=False)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(target)
    except OSError as e:
        from dlx.core.errors import UsageError

        fail(UsageError(f"cannot write the figure {target}: {e.strerror or e}; pass -o with a writable path"))
    console().print(f"figure: [bold]{escape(str(target))}[/]")


@app.command()
@errors
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
        help=ANIMATE_PANELS_HELP,
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
            TextColumn("frames"), BarColumn(), MofNCompleteColumn(), console=console(stderr=True), transient=True
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

        fail(UsageError(f"cannot write {target}: {e.strerror or e}; pass -o with a writable path"))
    for note in notes:
        console().print(f"[yellow]left out:[/] {escape(note)}", highlight=False)
    console().print(f"animation: [bold]{escape(str(written))}[/] ({frames} frames)")

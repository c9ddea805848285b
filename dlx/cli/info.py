"""What a config can say and what it builds, without training: `dlx summary`, `list`,
`examples`, `backprop`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from dlx.cli.common import SetOpt, app, check_choice, console, errors, fail


@app.command()
@errors
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
    con = console()
    con.print(t)
    con.print(
        f"total parameters: [bold]{s['total_params']:,}[/] ({s['trainable_params']:,} trainable); output {s['output']}"
    )


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
    check_choice(kind, [*regs, *sections], f"unknown kind '{kind}'")
    con = console()
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


@app.command()
def examples(
    words: Optional[List[str]] = typer.Argument(
        None,
        metavar="NAME | copy NAME [DIR] | check NAME | check --all",
        help="An example's name: print its whole story and commands. "
        "[bold]copy NAME [DIR][/]: write it (and what it needs) into "
        "DIR (default: the working folder), to edit and run. "
        "[bold]check NAME[/]: train a papers example and hold it to the paper's number "
        "(PASS, or FAIL with exit 1); [bold]check --all[/]: every papers example, then a table.",
        show_default=False,
    ),
    force: bool = typer.Option(False, "--force", help="copy: overwrite files that already exist."),
    quick: bool = typer.Option(
        False, "--quick", help="check: train at the example's '# test:' scale (seconds) instead of its own."
    ),
    all_: bool = typer.Option(False, "--all", help="check: every papers example in turn, then one line each."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="check: where the runs it trains go."),
    dir_: Optional[Path] = typer.Option(
        None, "--dir", help="A folder of example configs to read instead of the ones that ship with dlx."
    ),
):
    """The example configs as a course, section by section: each one's concept and the verdict it shows.

    Every command that takes a config takes an example's name too: [bold]dlx train quickstart[/].
    """
    from dlx.config.catalogue import copy_example, course, default_dir, find_example, load_examples, run_command
    from dlx.core.errors import DlxError, UsageError

    con = console()
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
        if name == "check":
            if len(more) != (0 if all_ else 1) or force:
                raise UsageError(
                    "usage: dlx examples check NAME [--quick], or dlx examples check --all [--quick] "
                    "(`dlx examples` lists the papers section)"
                )
            if all_:
                checks = _check_all(con, quick, runs_dir, dir_)
                if not all(c.passed for c in checks):
                    raise typer.Exit(1)
                return
            from dlx.many.papers import check_example

            check = check_example(more[0], quick=quick, runs_dir=runs_dir, folder=dir_)
            _print_check(con, check)
            if not check.passed:
                raise typer.Exit(1)
            return
        if quick or all_:
            raise UsageError("--quick and --all go with dlx examples check")
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
        fail(e)
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
    hints.add_row("[bold]dlx examples check NAME[/]", "a papers entry: trained, measured, PASS or FAIL")
    con.print(hints)


def _check_all(con, quick: bool, runs_dir: Path, folder: Path | None):
    """Every papers example checked in turn (each one's lines as dlx examples check NAME prints
    them), then the gallery in one table: entry, lines held, seconds, PASS or FAIL."""
    from rich.table import Table

    from dlx.many.papers import check_examples

    def start(ex, i: int, n: int) -> None:
        con.rule(f"[bold]{i + 1}/{n}[/] {escape(ex.name)}", align="left")

    checks = check_examples(quick, runs_dir, folder, on_start=start, on_check=lambda c: _print_check(con, c))
    t = Table(title="the papers gallery" + (" (--quick)" if quick else ""), title_justify="left", header_style="bold")
    t.add_column("entry", no_wrap=True)
    t.add_column("lines held", justify="right")
    t.add_column("seconds", justify="right")
    t.add_column("", no_wrap=True)
    for c in checks:
        held = sum(line.passed for line in c.lines)
        verdict = "[bold green]PASS[/]" if c.passed else "[bold red]FAIL[/]"
        t.add_row(escape(c.example.name), f"{held}/{len(c.lines)}", f"{c.seconds:.1f}", verdict)
    con.print()
    con.print(t)
    passed = sum(c.passed for c in checks)
    con.print(f"{passed} of {len(checks)} entries PASS; the pictures are in {escape(str(runs_dir))}")
    return checks


# The labels of a check's lines: a wrapped line continues under the text after them.
CHECK_LABELS = ("claim:    ", "expected: ", "measured: ", "ran:      ", "kept:     ", "trained:  ", "picture:  ")


def _print_check(con, check) -> None:
    """claim / expected / measured / PASS or FAIL, one line each, then the picture's path."""
    from rich.text import Text

    from dlx.core.fmt import num
    from dlx.views.tables import Hanging

    def say(markup: str) -> None:
        # Wrapped between words at the terminal's width, under the text after its label.
        con.print(Hanging(Text.from_markup(markup), labels=CHECK_LABELS))

    ex = check.example
    scale = "its test scale (--quick)" if check.quick else "its own scale"
    say(f"[bold]{escape(ex.name)}[/]: {escape(ex.paper)}")
    say(f"claim:    {escape(ex.paper_claim)}")
    for line in check.lines:
        verdict = "[bold green]PASS[/]" if line.passed else "[bold red]FAIL[/]"
        measured = escape(line.note) if line.note else num(line.measured, 4)
        say(f"expected: {escape(line.expected.text)}")
        say(f"measured: {measured}  {verdict}")
    runs = check.runs
    if ex.procedure is not None:
        args = " ".join(
            f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in ex.procedure[1].items()
        )
        say(f"ran:      {escape(ex.procedure[0])} {escape(args)} at {scale}, {check.seconds:.1f} s")
        for path in check.kept:
            say(f"kept:     {escape(str(path))}")
    if runs:
        # A family (`# over:`) is a dozen runs: their folder and the first and last by name.
        named = (
            ", ".join(escape(str(r.path)) for r in runs)
            if len(runs) <= 2
            else f"{len(runs)} runs in {escape(str(runs[0].path.parent))}: {escape(runs[0].path.name)} .. "
            f"{escape(runs[-1].path.name)}"
        )
        say(f"trained:  {named}" + ("" if ex.procedure else f" at {scale}, {check.seconds:.1f} s"))
    if check.picture is not None:
        say(f"picture:  {escape(str(check.picture))} ({escape(check.shows)})")
    con.print("[bold green]PASS[/]" if check.passed else "[bold red]FAIL[/]")


@app.command()
@errors
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
    con = console()
    for line in lines:
        con.print(line, markup=False, highlight=False, soft_wrap=True)

"""What every `dlx` command shares: the typer `app` they register on, the console, the one
error boundary (`errors`), the options several commands take, and the --help type labels.

Command modules import `app` from here, never from dlx.cli.app (which imports them).
"""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.markup import escape

from dlx.records.layout import META_FILE

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


def console(stderr: bool = False):
    from rich.console import Console

    # soft_wrap: long error lines stay whole lines (copyable, greppable) instead of
    # being cut at the terminal width.
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def fail(err: Exception) -> None:
    """Print a DlxError for a person and exit with its code."""
    from dlx.core.errors import ConfigError

    con = console(stderr=True)
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


def errors(command):
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
            fail(e)
        except KeyboardInterrupt as e:
            err = console(stderr=True)
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
            err = console(stderr=True)
            err.print(
                f"[bold red]error:[/] dlx {command.__name__.rstrip('_')} failed: {type(e).__name__}: {escape(str(e))}",
                markup=True,
                highlight=False,
            )
            path = getattr(e, "dlx_run_path", None)
            if path is not None:
                err.print(
                    f"The run folder keeps everything logged before the failure (status failed; "
                    f"the traceback is in {META_FILE}): {escape(str(path))}"
                )
            if os.environ.get("DLX_DEBUG"):
                raise
            err.print("Set DLX_DEBUG=1 to see the traceback here.")
            raise typer.Exit(1) from None

    return run


def check_choice(value, valid, what: str) -> None:
    """Exit 2 with 'did you mean' when an option's value is not one of `valid` (None passes)."""
    if value is None or value in valid:
        return
    from dlx.core.errors import UsageError
    from dlx.core.registry import closest

    hint = closest(value, list(valid))
    fail(UsageError(what + (f"; did you mean '{hint}'?" if hint else "") + f" (valid: {', '.join(valid)})"))


def print_fitted(con, fitted, see: str) -> None:
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

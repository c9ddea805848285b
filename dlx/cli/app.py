"""The `dlx` command line: the only package that prints or exits. This module is its entry
(`dlx`, `python -m dlx`, `python -m dlx.cli.app`); the commands live in the modules beside it,
one per group, and register on the shared `app` of dlx.cli.common when imported here.

Exit codes: 0 completed, 1 failed, 2 bad config or usage, 3 diverged, 4 pruned (train.prune), 128 + the
signal's number interrupted (130 Ctrl-C, 143 SIGTERM). Heavy imports (torch) happen
inside commands so `dlx --help` answers at once.
"""

from __future__ import annotations

# Imported for their commands: each registers itself on `app`.
from dlx.cli import coordcheck, info, lab, many, tickets, training, views  # noqa: F401
from dlx.cli.common import app

# The order `dlx --help` lists the commands in (typer lists them in the order they were
# registered, which is the modules' import order).
COMMANDS = (
    "train",
    "validate",
    "show",
    "summary",
    "compare",
    "fix",
    "sweep",
    "runs",
    "report",
    "examples",
    "plot",
    "backprop",
    "coordcheck",
    "ticket",
    "lab",
    "landscape",
    "animate",
    "list",
)


def _place(command) -> int:
    """A command's place in COMMANDS; one not listed there comes last."""
    name = command.name or command.callback.__name__
    return COMMANDS.index(name) if name in COMMANDS else len(COMMANDS)


app.registered_commands.sort(key=_place)


def main() -> None:
    from dlx.core import version

    version.OWNS_PROCESS = True  # training here never compiles: no torch._dynamo import (see optim.py)
    # prog_name: `python -m dlx` too says "dlx" in its usage lines and writes a completion
    # script for the `dlx` command (not for a program called "python -m dlx").
    app(prog_name="dlx")


if __name__ == "__main__":
    main()

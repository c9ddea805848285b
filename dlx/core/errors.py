"""Errors meant for a person: the library raises these, only cli.py prints them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class DlxError(Exception):
    """A failure explained in a sentence for the user (no traceback shown)."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a config: where (key path, YAML line or --set) and what."""

    path: str  # dotted key path, "" for the whole document
    message: str
    line: int | None = None  # 1-based line in the YAML file
    source: str | None = None  # file name, or "--set key=value" for an override

    def where(self) -> str:
        if self.source and self.source.startswith("--set"):
            return self.source
        if self.source and self.line:
            return f"{self.source}:{self.line}"
        if self.line:
            return f"line {self.line}"
        return self.source or ""

    def __str__(self) -> str:
        where = self.where()
        key = self.path or "<config>"
        return f"{where}: {key}: {self.message}" if where else f"{key}: {self.message}"


class ConfigError(DlxError):
    """Every problem found in a config, reported together."""

    exit_code = 2

    def __init__(self, problems: list[Problem], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        n = len(self.problems)
        head = f"{source}: " if source else ""
        lines = [f"{head}{n} problem{'s' if n != 1 else ''} in the config:"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class UsageError(DlxError):
    """The command was called wrongly (a missing file, an unknown option value)."""

    exit_code = 2


class DamagedFile(DlxError):
    """A file of tensors (checkpoint.pt, snapshots.pt, a weights file) that cannot be read as
    one: damaged, or crafted to hold more than tensors. Views leave out what needs it, naming it."""

    def __init__(self, path: Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path} cannot be read: {reason}")


class SpecError(DlxError):
    """A config value that validated but does not work once built (a weights file that
    does not fit the model, an .npz without y_test). Carries its key path so the
    caller can report it as a config problem with its YAML line."""

    exit_code = 2

    def __init__(self, path: tuple, message: str):
        self.path = tuple(path)
        self.message = message
        super().__init__(f"{'.'.join(map(str, self.path))}: {message}")

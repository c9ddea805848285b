"""File paths in configs: resolved against the working directory, then the config's folder."""

from __future__ import annotations

import contextlib
import contextvars
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, ValidationInfo


def resolve(path: Path, info: ValidationInfo | None) -> Path:
    """An absolute path: as given if it exists from here, else beside the config file."""
    path = Path(path).expanduser()
    if path.is_absolute():
        return path
    if path.exists():
        return path.resolve()
    base = (info.context or {}).get("base_dir") if info is not None else None
    if base is not None and (Path(base) / path).exists():
        return (Path(base) / path).resolve()
    return path.resolve()


def _existing_file(path: Path, info: ValidationInfo) -> Path:
    p = resolve(path, info)
    if not p.is_file():
        where = (info.context or {}).get("base_dir")
        beside = (Path(where) / path).resolve() if where else None
        also = f" or {beside}" if beside is not None and beside != p else ""
        raise ValueError(f"file not found: {p}{also}")
    return p


def _directory(path: Path, info: ValidationInfo) -> Path:
    return resolve(path, info)


ExistingFile = Annotated[Path, AfterValidator(_existing_file)]
Directory = Annotated[Path, AfterValidator(_directory)]


# While a run is resumed, files needed only to start it (init: from_file weights) may be
# gone: the checkpoint holds the weights. Data files are still needed, and still checked.
_RESUMING = contextvars.ContextVar("dlx_resuming", default=False)


@contextlib.contextmanager
def resuming():
    """Validate a config as the config of a run being resumed (see StartFile)."""
    token = _RESUMING.set(True)
    try:
        yield
    finally:
        _RESUMING.reset(token)


def _start_file(path: Path, info: ValidationInfo) -> Path:
    return resolve(path, info) if _RESUMING.get() else _existing_file(path, info)


# A file read only when a run starts, never on --resume (init weights).
StartFile = Annotated[Path, AfterValidator(_start_file)]

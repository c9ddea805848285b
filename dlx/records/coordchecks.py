"""The files of a coordinate check that `dlx examples check` runs (dlx.many.coordcheck): its
record (the scales it measured, every width, step and layer) and picture beside the run
folders; it trains no run of its own to keep them in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlx.records.jsonio import write_json
from dlx.records.layout import COORDCHECK_PREFIX


def coordcheck_paths(runs_dir: Path, name: str) -> tuple[Path, Path]:
    """runs_dir/coordcheck-NAME.json and .png."""
    base = Path(runs_dir) / f"{COORDCHECK_PREFIX}{name}"
    return base.parent / f"{base.name}.json", base.parent / f"{base.name}.png"


def write_coordcheck_record(path: Path, record: dict[str, Any]) -> Path:
    Path(path).parent.mkdir(parents=True, exist_ok=True)  # a check may be the first thing in its runs folder
    write_json(Path(path), record)
    return Path(path)

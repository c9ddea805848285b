"""The records beside run folders: a dlx compare's (runs/compare-*.json) and a dlx fix's
(fix.json and fixed.yaml in the run's folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlx.records.jsonio import read_object, write_atomic, write_json
from dlx.records.layout import FIX_RECORD, FIXED_CONFIG


def write_compare_record(runs_dir: Path, name: str, record: dict[str, Any]) -> Path:
    """runs_dir/compare-NAME.json: a dlx compare's variants (mean and sd over seeds, verdict,
    their run folders), figure and notes; `dlx report` makes the compare's page from it."""
    path = Path(runs_dir) / f"compare-{name}.json"
    write_json(path, record)
    return path


def write_fix_record(run_path: Path, record: dict[str, Any], fixed_yaml: str | None) -> tuple[Path, Path | None]:
    """A run's fix.json (and, when a remedy won, fixed.yaml: its config). A new fix replaces
    the last one's files: fixed.yaml never outlives the record that names it."""
    run_path = Path(run_path)
    fixed = run_path / FIXED_CONFIG
    if fixed_yaml is not None:
        write_atomic(fixed, fixed_yaml)
    else:
        fixed.unlink(missing_ok=True)
    write_json(run_path / FIX_RECORD, record)
    return run_path / FIX_RECORD, (fixed if fixed_yaml is not None else None)


def read_fix_record(run_path: Path) -> dict[str, Any] | None:
    """The run's fix.json when it has a readable one (None otherwise: no fix was run, or it is damaged)."""
    path = Path(run_path) / FIX_RECORD
    if not path.is_file():
        return None
    obj, _ = read_object(path)
    return obj if isinstance(obj, dict) and isinstance(obj.get("rows"), list) else None


def compare_records(runs_dir: Path) -> list[Path]:
    """Every compare record in runs_dir, oldest first (by the time that ends its name)."""
    found = Path(runs_dir).glob("compare-*.json") if Path(runs_dir).is_dir() else []
    return sorted(found, key=lambda p: (p.stem[-15:], p.name))


def is_compare_record(path: Path) -> bool:
    obj, _ = read_object(path) if Path(path).is_file() and Path(path).suffix == ".json" else (None, None)
    return isinstance(obj, dict) and isinstance(obj.get("variants"), list)

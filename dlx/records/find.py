"""Finding a run or sweep folder from what a user types: a path, an id or a part of one,
`last`, `last-run`, `last-sweep`, SWEEP/trial-NNNN."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from dlx.core.errors import DlxError
from dlx.records.layout import META_FILE


def run_folders(runs_dir: Path) -> list[Path]:
    """Every run folder (one with a meta.json) in runs_dir, oldest id first."""
    return _folders_with(Path(runs_dir), META_FILE)


def _folders_with(runs_dir: Path, marker: str) -> list[Path]:
    """The folders in runs_dir holding a file `marker`, by name. Names sorted and stat'd as
    strings: for 10,000 runs pathlib's objects and comparisons cost more than the stats."""
    try:
        names = sorted(os.listdir(runs_dir))
    except OSError:  # missing, or not a folder
        return []
    base = os.fspath(runs_dir)
    return [runs_dir / n for n in names if os.path.isfile(os.path.join(base, n, marker))]


# `last` is the run or sweep started (or resumed) most recently; `last-run` and `last-sweep`
# pick one kind. A command that takes one kind reads `last` as that kind's last.
LAST = ("last", "last-run", "last-sweep")


def started_at(folder: Path) -> tuple[float, float]:
    """When a run or sweep folder was last started: its start time or its latest --resume
    (epoch seconds), then its meta file's mtime to order two started in the same second."""
    marker = folder / ("sweep.json" if (folder / "sweep.json").is_file() else META_FILE)
    mtime = marker.stat().st_mtime
    try:
        meta = json.loads(marker.read_text())
        times = [
            meta.get("started"),
            meta.get("created"),
            meta.get("resumed"),
            *[r.get("at") for r in meta.get("resumes") or [] if isinstance(r, dict)],
        ]
        latest = max(dt.datetime.fromisoformat(t).timestamp() for t in times if isinstance(t, str))
    except (OSError, ValueError, TypeError, AttributeError):  # unreadable, or no times: the mtime alone
        latest = mtime
    return latest, mtime


def newest(folders: list[Path]) -> Path | None:
    """The folder started (or resumed) most recently; None for none."""
    return max(folders, key=started_at, default=None)


def find_run(ref: str | Path, runs_dir: Path = Path("runs")) -> Path:
    """A run folder from a path, a run id (or unique prefix/suffix of one), or 'last' / 'last-run'.

    A sweep's trial is found as SWEEP/trial-NNNN (SWEEP: its id or a unique part of it). A
    sweep given here (or 'last-sweep') is a DlxError saying how to see a sweep.
    """
    sweep, slash, trial = str(ref).partition("/")
    if slash and not Path(ref).exists() and trial.startswith("trial-"):
        return find_folder(trial, run_folders(find_sweep(sweep, runs_dir) / "trials"), runs_dir, META_FILE, "run", "")
    try:
        return find_folder(
            "last" if str(ref) == "last-run" else ref,
            run_folders(runs_dir),
            runs_dir,
            META_FILE,
            "run",
            "train one with: dlx train CONFIG",
        )
    except DlxError as e:
        folder = _a_sweep(ref, runs_dir)
        if folder is None:
            sweeps = sweep_folders(runs_dir) if str(ref) in LAST else []
            if sweeps:  # only sweeps here: their trials are the runs
                raise DlxError(
                    f"{e}; the trials of the last sweep are runs: dlx runs --sweep last, "
                    f"dlx show {newest(sweeps).name}/trial-0000"
                ) from None
            raise
    name = folder.name
    raise DlxError(
        f"{'the last sweep, ' + name + ',' if str(ref) in LAST else repr(str(ref))} is a sweep, "
        f"not a run: see it with `dlx report {name}` (one page, every trial) or `dlx runs "
        f"--sweep {name}` (its trials as runs), or one trial with `dlx show {name}/trial-0000`"
    )


def _a_sweep(ref: str | Path, runs_dir: Path) -> Path | None:
    """The sweep folder ref names (never by 'last', which means a run where a run is wanted)."""
    if str(ref) in ("last", "last-run"):
        return None
    try:
        return find_sweep(ref, runs_dir)
    except DlxError:
        return None


def sweep_folders(runs_dir: Path) -> list[Path]:
    """Every sweep folder (one with a sweep.json) in runs_dir, oldest id first."""
    return _folders_with(Path(runs_dir), "sweep.json")


def find_sweep(ref: str | Path, runs_dir: Path = Path("runs")) -> Path:
    """A sweep folder from a path, a sweep id (or a unique part of one), or 'last' / 'last-sweep'.

    Here, not in dlx.many.sweeper, so that finding a folder never loads the config schema (torch)."""
    if str(ref) == "last-run":
        raise DlxError("last-run names a run, not a sweep: give a sweep's folder or id, or last-sweep")
    return find_folder(
        "last" if str(ref) == "last-sweep" else ref,
        sweep_folders(runs_dir),
        runs_dir,
        "sweep.json",
        "sweep",
        "start one with: dlx sweep SPEC",
    )


def find_folder(ref: str | Path, folders: list[Path], runs_dir: Path, marker: str, what: str, start: str) -> Path:
    """A folder holding `marker` from a path, an id (or a unique part of one), or 'last'
    (the one started or resumed most recently)."""
    p = Path(ref)
    if (p / marker).is_file():
        return p
    if str(ref) == "last":
        if not folders:
            raise DlxError(f"no {what}s in {runs_dir} yet; {start}")
        return newest(folders)
    hits = [d for d in folders if d.name == str(ref)] or [d for d in folders if str(ref) in d.name]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise DlxError(
            f"'{ref}' matches {len(hits)} {what}s in {runs_dir}: "
            + ", ".join(d.name for d in hits[:5])
            + ("..." if len(hits) > 5 else "")
            + "; give more of the id"
        )
    raise DlxError(f"no {what} '{ref}': not a {what} folder, and no {what} id in {runs_dir} contains it")

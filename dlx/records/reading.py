"""Reading run folders for the views: one run whole (load_run), every run as a row
(list_runs), a run's snapshots, and whether a run ended for good."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlx.core.errors import DamagedFile, DlxError
from dlx.core.tensorfile import read_tensors
from dlx.records.find import newest, run_folders
from dlx.records.index import folder_key, read_index, settled, trusted, write_index
from dlx.records.jsonio import SHAPE_ERRORS, check_series, is_int, is_number, read_jsonl, read_object
from dlx.records.layout import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    INSTRUMENTS_FILE,
    META_FILE,
    METRICS_FILE,
    PROBES_FILE,
    SNAPSHOTS_FILE,
    SUMMARY_FILE,
)
from dlx.records.locks import run_status

# A run's statuses once it has ended for good (its summary.json written): never resumed.
FINISHED = ("completed", "diverged", "pruned")


def finished_summary(run: Path) -> dict[str, Any] | None:
    """A run folder's summary.json if the run ended for good (FINISHED); None for a folder
    without one (a run stopped, failed or cut off by a full disk before its end was written).
    The folder, not the worker's word, says how a run ended: a run whose last write after
    its summary failed is still whole."""
    summary = read_object(Path(run) / SUMMARY_FILE)[0]
    if summary is None:
        return None
    if "status" not in summary:  # a summary that leaves it out: the status meta.json ended with
        summary = {**summary, "status": (read_object(Path(run) / META_FILE)[0] or {}).get("status")}
    return summary if summary["status"] in FINISHED else None


def resumable_run(attempts: Path) -> Path | None:
    """The run folder under `attempts` (a sweep trial's staging folder: one run folder per
    attempt) that `dlx train --resume` can continue: interrupted or failed, not finished, no
    live writer, with a checkpoint; the newest such. None when there is none."""
    found = []
    for run in Path(attempts).glob("*"):
        meta = read_object(run / META_FILE)[0] if run.is_dir() and not run.name.startswith(".") else None
        if meta is None or not (run / CHECKPOINT_FILE).is_file() or finished_summary(run) is not None:
            continue
        if run_status(meta, run) in ("interrupted", "failed"):
            found.append(run)
    return newest(found)


def final_metrics(summary: dict[str, Any]) -> dict[str, Any]:
    """summary.json's final metrics, {} when the file holds something else there."""
    final = summary.get("final")
    return final if isinstance(final, dict) else {}


def verdict_kind(summary: dict[str, Any]) -> str | None:
    """The kind of summary.json's first verdict (the root cause, or healthy); None if it has none."""
    verdicts = summary.get("verdicts")
    first = verdicts[0] if isinstance(verdicts, list) and verdicts else None
    kind = first.get("kind") if isinstance(first, dict) else None
    return kind if isinstance(kind, str) else None


def pruned_kind(summary: dict[str, Any]) -> str | None:
    """The verdict kind train.prune stopped the run on (summary.json "pruned"); None if it was not pruned."""
    pruned = summary.get("pruned")
    kind = pruned.get("verdict") if isinstance(pruned, dict) else None
    return kind if isinstance(kind, str) else None


def read_snapshots(path: Path, mmap: bool = False) -> dict[str, Any] | None:
    """A run folder's snapshots.pt (see dlx.records.layout), None when it has none. DamagedFile
    when it is there but unreadable. mmap: see read_tensors."""
    f = Path(path) / SNAPSHOTS_FILE
    if not f.is_file():
        return None
    snaps = read_tensors(f, mmap=mmap)
    try:
        ok = isinstance(snaps, dict) and len(snaps["steps"]) == len(snaps["states"]) == len(snaps["losses"])
    except SHAPE_ERRORS:
        ok = False
    if not ok:
        raise DamagedFile(f, "not the snapshots dlx writes (steps, losses and states of one length)")
    return snaps


def load_run(path: Path) -> dict[str, Any]:
    """meta, status, config (text), summary, metrics and probes of a run folder, and the
    problems found reading it (each naming its file: a summary that is not an object is
    dropped, odd jsonl lines skipped). DlxError when meta.json is not a readable object.

    status is run_status(meta), the status as it stands now (a `running` run whose process
    is gone is `interrupted`); every view of a run reads it, never meta["status"] raw.
    """
    path = Path(path)
    meta, why = read_object(path / META_FILE)
    if meta is None:
        raise DlxError(f"{path} is not a readable run folder ({why})")
    problems: list[str] = []
    summary = None
    if (path / SUMMARY_FILE).is_file():
        summary, why = read_object(path / SUMMARY_FILE)
        if why:
            problems.append(f"{why}; shown without it")
    try:
        config = (path / CONFIG_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        config = ""
    return {
        "path": path,
        "meta": meta,
        "status": run_status(meta, path),
        "config": config,
        "summary": summary,
        "metrics": check_series(read_jsonl(path / METRICS_FILE, problems), problems, METRICS_FILE),
        "probes": check_series(read_jsonl(path / PROBES_FILE, problems), problems, PROBES_FILE),
        "instruments": read_jsonl(path / INSTRUMENTS_FILE, problems),
        "problems": problems,
    }


def list_runs(
    runs_dir: Path = Path("runs"), skipped: list[str] | None = None, index: bool = True
) -> list[dict[str, Any]]:
    """One row per run folder (oldest first): id, name, status, steps, final metrics, verdict.

    A run still marked `running` whose process is gone (killed, machine rebooted,
    heartbeat stale: see run_status) is shown as `interrupted`: nothing will ever finish it.
    A folder whose meta.json is not a readable object is left out and named in `skipped`;
    a field of the wrong type shows as missing. One bad folder never hides the others.

    The rows are kept in an index beside the folders (dlx.records.index): a folder whose
    meta.json and summary.json are unchanged since is not read again, and the index is
    rewritten only when a folder changed, came or went. The rows are the same with it or
    without; index=False reads every folder and leaves the index alone.
    """
    runs_dir = Path(runs_dir)
    folders = run_folders(runs_dir)
    old, written_ns = read_index(runs_dir) if index else ({}, 0)
    entries: dict[str, Any] = {}
    changed = old.keys() != {d.name for d in folders}
    rows = []
    for d in folders:
        key = folder_key(d) if index else None
        entry = old.get(d.name)
        if not trusted(entry, key, written_ns) or not _whole(entry):
            fresh = _entry(d, key)
            # Rewrite for a change, or to vouch for an entry a newer index will trust (see RACY_NS).
            changed = changed or fresh != entry or settled(key)
            entry = fresh
        entries[d.name] = entry
        if "skip" in entry:
            if skipped is not None:
                skipped.append(f"{d.name} ({entry['skip']})")
            continue
        row = {"run_id": d.name, **entry["row"], "path": str(d)}
        if "meta" in entry:  # stored `running`: its process may have died since, whatever the files say
            row["status"] = run_status(entry["meta"], d)
        rows.append(row)
    if index and changed:
        write_index(runs_dir, entries)
    return rows


# A row's keys as the index keeps it (list_runs adds run_id first and path last).
ROW_KEYS = {"name", "status", "started", "steps", "train_loss", "train_acc", "test_loss", "test_acc", "verdict"}


def _whole(entry: dict[str, Any]) -> bool:
    """An index entry of the shape _entry makes (an index edited by hand is read again, not trusted)."""
    if isinstance(entry.get("skip"), str):
        return True
    row = entry.get("row")
    return isinstance(row, dict) and row.keys() == ROW_KEYS and isinstance(entry.get("meta", {}), dict)


def _entry(d: Path, key: list | None) -> dict[str, Any]:
    """A run folder read for the index: its row (less run_id and path), or why it is skipped;
    a run whose meta.json says `running` keeps that meta, for run_status at each listing."""
    meta, why = read_object(d / META_FILE)
    if meta is None:
        return {"key": key, "skip": why}
    summary = read_object(d / SUMMARY_FILE)[0] or {}
    final = final_metrics(summary)
    row = {
        "name": meta.get("name") if isinstance(meta.get("name"), str) else None,
        "status": run_status(meta, d),
        "started": meta.get("started") if isinstance(meta.get("started"), str) else None,
        "steps": summary.get("steps") if is_int(summary.get("steps")) else None,
        **{
            k: final.get(k) if is_number(final.get(k)) else None
            for k in ("train_loss", "train_acc", "test_loss", "test_acc")
        },
        "verdict": verdict_kind(summary),
    }
    return {"key": key, "row": row, **({"meta": meta} if meta.get("status") == "running" else {})}

"""The runs index (layout.RUNS_INDEX): list_runs' rows kept in one file beside the run
folders, so that listing 10,000 runs stats two files per folder instead of reading them.

It is a cache, never the record: each entry holds what its folder's meta.json and
summary.json gave (a row, or why the folder was skipped) and those files' stat keys then
(inode, size, mtime and ctime in ns). An entry is used only while both keys still match and
its files are older than the index by RACY_NS; otherwise the folder is read again. An index
that is missing, damaged, of another INDEX_VERSION or unreadable is read as empty (every
folder read, the index written anew); one that cannot be written (a read-only folder, a full
disk) is left as it is, without a word: the rows are the same either way.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from dlx.records.jsonio import write_atomic
from dlx.records.layout import META_FILE, RUNS_INDEX, SUMMARY_FILE

# Bump when what an entry holds (a row's keys, their meaning) changes: an index of another
# version is rebuilt from the folders, never read.
INDEX_VERSION = 1

# A file changed this close before the index was written may have changed again within the
# same timestamp tick, same size (the "racy" case git's index knows): its entry is not
# trusted, the folder is read again until an index written later vouches for it.
RACY_NS = 2_000_000_000


def file_key(path: str | Path) -> list[int] | None:
    """What tells a file changed without reading it: inode, size, mtime, ctime (ns); None if it is not there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def folder_key(folder: Path) -> list[list[int] | None]:
    """The stat keys of the two files a run's row is read from: meta.json and summary.json."""
    base = os.fspath(folder)  # joined as strings: pathlib's objects cost more than the stat
    return [file_key(os.path.join(base, META_FILE)), file_key(os.path.join(base, SUMMARY_FILE))]


def read_index(runs_dir: Path) -> tuple[dict[str, Any], int]:
    """The index's entries by folder name and when it was written (ns); ({}, 0) when there is
    no usable index (missing, damaged, another version, unreadable)."""
    try:
        data = json.loads((Path(runs_dir) / RUNS_INDEX).read_bytes())
    except (OSError, ValueError):  # ValueError: JSON's and UnicodeDecodeError
        return {}, 0
    if not isinstance(data, dict) or data.get("version") != INDEX_VERSION:
        return {}, 0
    entries, written = data.get("runs"), data.get("written_ns")
    if not isinstance(entries, dict) or not isinstance(written, int):
        return {}, 0
    return entries, written


def _settled_by(key: list, ns: int) -> bool:
    """Whether the key's files (its newest mtime) are older than RACY_NS before ns."""
    return max((k[2] for k in key if k is not None), default=0) + RACY_NS < ns


def trusted(entry: Any, key: list, written_ns: int) -> bool:
    """Whether an index entry still stands for its folder (key: folder_key now)."""
    return isinstance(entry, dict) and entry.get("key") == key and _settled_by(key, written_ns)


def settled(key: list) -> bool:
    """Whether an index written now would trust an entry with this key (its files are old enough)."""
    return _settled_by(key, time.time_ns())


def write_index(runs_dir: Path, entries: dict[str, Any]) -> None:
    """Write the index atomically (a temp file, then os.replace); where it cannot be written,
    nothing (the next listing reads the folders again)."""
    text = json.dumps({"version": INDEX_VERSION, "written_ns": time.time_ns(), "runs": entries}, separators=(",", ":"))
    try:
        write_atomic(Path(runs_dir) / RUNS_INDEX, text)
    except OSError:
        pass

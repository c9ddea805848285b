"""The JSON files of run and sweep folders: written atomically, read back leniently (a
damaged file or line is named and left out, never a crash)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from dlx.core.jsonable import jsonable

# The errors of a disk with no room left: space freed, what failed on them can run again.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write to a temp file beside `path`, fsync, rename: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    mode = "wb" if isinstance(text, bytes) else "w"
    try:
        with open(tmp, mode) as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)  # a full disk, a kill: never leave the half-written temp file
        if isinstance(e, FileNotFoundError) and not path.parent.is_dir():
            # Not the temp file's name: the folder it was to go in is gone (deleted meanwhile).
            raise FileNotFoundError(
                errno.ENOENT, "its folder was deleted while dlx was writing it", str(path)
            ) from None
        raise


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(jsonable(obj), indent=2) + "\n")


def read_object(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """A JSON file that must hold an object: (the object, None), or (None, why not)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"{path.name}: missing"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"{path.name}: unreadable ({e})"
    if not isinstance(data, dict):
        return None, f"{path.name}: holds a {type(data).__name__}, not an object"
    return data, None


def read_jsonl(path: Path, problems: list[str] | None = None) -> list[dict[str, Any]]:
    """Records of a .jsonl file: JSON objects with an integer step. A torn last line (a crash
    mid-write) is skipped silently; other lines that are not such records are skipped and,
    given a problems list, counted there by the file's name."""
    if not path.is_file():
        return []
    out, odd = [], 0
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            odd += i < len(lines) - 1
            continue
        if isinstance(record, dict) and is_int(record.get("step")):
            out.append(record)
        else:
            odd += 1
    if odd and problems is not None:
        problems.append(f"{path.name}: {odd} line(s) that are not step records skipped")
    return out


# probes.jsonl keys whose first axis is the steps of the log interval (its length varies
# from record to record); every other array has one shape in all records of a run.
PER_STEP = ("grad_norm", "loss")


def _shape(v: Any) -> tuple[int, ...] | None:
    """The shape of a number, null or rectangular nested list of them; None for anything else."""
    if v is None or is_number(v):
        return ()
    if not isinstance(v, list):
        return None
    try:
        a = np.asarray(v)
    except (ValueError, TypeError, OverflowError):  # ragged, or ints past any dtype
        return None
    if a.dtype.kind in "biuf":
        return a.shape
    if a.dtype.kind == "O" and all(x is None or is_number(x) for x in a.ravel().tolist()):
        return a.shape  # numbers with nulls (NaN or Inf as JSON writes them)
    return None


def check_series(records: list[dict[str, Any]], problems: list[str] | None, name: str) -> list[dict[str, Any]]:
    """Records whose values the views can stack: each value a number, null or rectangular
    array, and each key's array of one shape across records (PER_STEP keys: one shape past
    their first axis). A value that breaks this is dropped from its record, counted by name."""
    # Each value's shape, computed once (past the first axis for PER_STEP keys); None: it has none.
    shaped = [{k: _shape(v) for k, v in r.items()} for r in records]
    counts: dict[str, dict[tuple, int]] = {}
    for sh in shaped:
        for k, v in sh.items():
            if v is not None:
                if k in PER_STEP:
                    sh[k] = v = v[1:]
                counts.setdefault(k, {}).setdefault(v, 0)
                counts[k][v] += 1
    usual = {k: max(c, key=c.get) for k, c in counts.items()}
    dropped = 0
    out = []
    for r, sh in zip(records, shaped):
        keep = {
            k: v
            for k, v in r.items()
            if sh[k] is not None and sh[k] == usual[k] and (k not in ("step", "first_step") or is_int(v))
        }
        dropped += len(r) - len(keep)
        out.append(keep)
    if dropped and problems is not None:
        problems.append(f"{name}: {dropped} value(s) of an unexpected shape left out")
    return out


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """A JSON number that is a float: an int past float's range (10**400) is not one."""
    return isinstance(v, float) or (is_int(v) and -(2**1023) < v < 2**1023)


# What a view meets in a file of the wrong shape (a null where a list was, a string for a
# number, a key missing): it leaves that part out, naming the file, instead of crashing.
SHAPE_ERRORS = (TypeError, KeyError, AttributeError, ValueError, IndexError, ZeroDivisionError, OverflowError)

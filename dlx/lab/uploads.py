"""Your own data in the lab: a CSV, a .npz or points drawn on the page, checked, split into
train and test, and saved where the `arrays` data spec reads it (data: {name: arrays, path:
FILE.npz}). The file is named by its content (the first 16 hex digits of its sha256), under
RUNS_DIR/lab-data/, and never rewritten: the same upload gives the same path, and a run's
config.yaml that names it trains on the same numbers with `dlx train` later.

Every refusal is a LabError(400) with one sentence that says what and where (a row, a
column, an array), never a traceback and never a path of the user's disk."""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import io
import math
import os
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlx.lab.runs import LabError

# Limits of POST /api/data (the lab's other routes keep runs.MAX_BODY).
MAX_UPLOAD = 2 * 1024 * 1024  # bytes of the request body
MAX_ROWS = 50_000
MAX_FEATURES = 64
MIN_FEATURES = 2
MIN_ROWS = 10
# A CSV's target of integers with at most this many distinct values is classes, else regression.
GUESS_CLASSES = 20
# Classes at most (a .npz's integer y, drawn points, task: classification).
MAX_CLASSES = 100
# Numbers beyond this are refused: dlx trains in 32-bit floats (whose largest is 3.4e38), and
# a square of such a number in a loss or a standardization would already be infinite.
MAX_ABS = 1e30
# The split: this fraction of each class (of all rows, for regression) is the test set, drawn
# with a fixed seed, so the same upload always makes the same file.
TEST_FRACTION = 0.2
SPLIT_SEED = 0
DATA_DIR = "lab-data"
KEYS = ("csv", "npz_base64", "points")
TASKS = ("classification", "regression")
ARRAYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass
class Table:
    """What an upload holds, checked: features (float64, rows x features) and targets (float64),
    either one table to split (x, y) or split already (the .npz's own x_train ... y_test)."""

    x: list[np.ndarray]  # [x] to split, or [x_train, x_test]
    y: list[np.ndarray]
    kind: str | None  # "classification", "regression", or None: decided from the targets
    columns: list[str] | None = None  # a CSV's header names, when it has one


def refuse(message: str) -> LabError:
    return LabError(400, message)


def save_own_data(body: dict[str, Any], runs_dir: Path) -> dict[str, Any]:
    """POST /api/data's answer: the upload read, checked, split and saved under
    runs_dir/lab-data (see the module doc); {"data": the data spec, "summary": ...}."""
    given = [k for k in KEYS if k in body]
    unknown = [k for k in body if k not in (*KEYS, "task", "session")]
    if unknown:
        raise refuse(f"unknown key {str(unknown[0])[:40]!r}: give one of csv, npz_base64 or points (and task)")
    if len(given) != 1:
        raise refuse("give exactly one of csv, npz_base64 or points")
    task = body.get("task")
    if task is not None and task not in TASKS:
        raise refuse("task must be classification or regression")
    key = given[0]
    if key == "csv":
        table = read_csv(body["csv"])
    elif key == "npz_base64":
        table = read_npz(body["npz_base64"])
    else:
        if task is None:
            raise refuse("points need a task: classification (each point [x, y, label]) or regression ([x, y, value])")
        table = read_points(body["points"])
    if task is not None:
        table.kind = task
    return save_table(table, Path(runs_dir) / DATA_DIR)


# ---------------------------------------------------------------- reading


def _number(cell: str, where: str) -> float:
    text = cell.strip()
    if not text:
        raise refuse(f"{where} is empty")
    try:
        v = float(text)
    except ValueError:
        raise refuse(f"{where} is {text[:24]!r}, not a number") from None
    return _finite(v, where, text)


def _finite(v: float, where: str, text: str | None = None) -> float:
    shown = repr(text[:24]) if text is not None else f"{v:g}"
    if not math.isfinite(v):
        raise refuse(f"{where} is {shown}, not a finite number")
    if abs(v) > MAX_ABS:
        raise refuse(f"{where} is {shown}, beyond the ±{MAX_ABS:g} the lab takes (dlx trains in 32-bit floats)")
    return v


def read_csv(text: Any) -> Table:
    """A CSV: an optional header row (a row with a cell that is not a number), then rows of
    numbers, the last column the target; comma, semicolon or tab separated."""
    if not isinstance(text, str):
        raise refuse("csv must be the CSV file's text (a string)")
    text = text.removeprefix("\ufeff")
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = next((d for d in (",", ";", "\t") if d in first), ",")
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header: list[str] | None = None
    rows: list[list[float]] = []
    width = None
    try:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue  # a blank line
            line = reader.line_num
            if width is None:
                width = len(cells)
                if width < MIN_FEATURES + 1:
                    raise refuse(
                        f"row {line} has {width} column{'s' * (width != 1)}; the lab needs at least "
                        f"{MIN_FEATURES} feature columns and the target (the last column)"
                    )
                if width > MAX_FEATURES + 1:
                    raise refuse(
                        f"row {line} has {width} columns: {width - 1} features, more than the {MAX_FEATURES} "
                        f"the lab takes"
                    )
                if not all(_is_number(c) for c in cells):
                    header = [c.strip()[:64] for c in cells]
                    continue
            if len(cells) != width:
                raise refuse(f"row {line} has {len(cells)} columns, the first row has {width}")
            if len(rows) >= MAX_ROWS:
                raise refuse(f"the CSV has more than {MAX_ROWS:,} rows, the most the lab takes")
            rows.append([_number(c, f"row {line} column {j + 1}") for j, c in enumerate(cells)])
    except csv.Error as e:
        raise refuse(f"the CSV does not parse at row {reader.line_num} ({e})") from None
    if len(rows) < MIN_ROWS:
        raise refuse(
            f"the CSV has {len(rows)} row{'s' * (len(rows) != 1)} of numbers; the lab needs at least {MIN_ROWS}"
        )
    a = np.asarray(rows, dtype=np.float64)
    return Table([a[:, :-1]], [a[:, -1]], None, header)


def _is_number(cell: str) -> bool:
    try:
        float(cell.strip())
    except ValueError:
        return False
    return True


def read_points(points: Any) -> Table:
    """Points drawn on the page: [[x, y, label or value], ...]."""
    if not isinstance(points, list):
        raise refuse("points must be a list of [x, y, label] (or [x, y, value]) points")
    if len(points) > MAX_ROWS:
        raise refuse(f"{len(points):,} points, more than the {MAX_ROWS:,} the lab takes")
    if len(points) < MIN_ROWS:
        raise refuse(f"{len(points)} point{'s' * (len(points) != 1)}; the lab needs at least {MIN_ROWS}")
    rows = []
    for i, p in enumerate(points):
        if not isinstance(p, list) or len(p) != 3:
            raise refuse(f"point {i + 1} is not [x, y, label] (three numbers)")
        row = []
        for j, v in enumerate(p):
            where = f"point {i + 1} number {j + 1}"
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise refuse(f"{where} is not a number")
            try:
                row.append(_finite(float(v), where))
            except OverflowError:  # an integer too large for a float
                raise refuse(f"{where} is beyond the ±{MAX_ABS:g} the lab takes") from None
        rows.append(row)
    a = np.asarray(rows, dtype=np.float64)
    return Table([a[:, :2]], [a[:, 2]], None)


def read_npz(text: Any) -> Table:
    """A .npz in base64 (a data: URL's too): x_train, y_train, x_test, y_test (the split kept),
    or x and y (split here). Each array's shape and type are read from its header first, so a
    small file that would decompress to a huge array (a zip bomb) is refused unread."""
    from dlx.components.data.synthetic import npy_header

    if not isinstance(text, str):
        raise refuse("npz_base64 must be the .npz file's bytes in base64 (a string)")
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise refuse("npz_base64 is not base64") from None
    if not zipfile.is_zipfile(io.BytesIO(raw)):
        raise refuse("npz_base64 is not a .npz (numpy.savez writes one: a zip of .npy files)")
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            names = [n.removesuffix(".npy") for n in zf.namelist() if n.endswith(".npy")]
            if all(k in names for k in ARRAYS):
                keys = list(ARRAYS)
            elif "x" in names and "y" in names:
                keys = ["x", "y"]
            elif any(k in names for k in ARRAYS):
                missing = ", ".join(k for k in ARRAYS if k not in names)
                raise refuse(f"the .npz lacks {missing} (it needs x_train, y_train, x_test, y_test, or x and y)")
            else:
                has = ", ".join(n[:30] for n in names[:8]) or "no arrays"
                raise refuse(f"the .npz has neither x_train, y_train, x_test, y_test nor x and y (it has {has})")
            heads = {}
            for k in keys:
                with zf.open(k + ".npy") as f:
                    heads[k] = npy_header(f)
            for k, (shape, dtype) in heads.items():
                _check_head(k, shape, dtype)
            rows = sum(shape[0] for k, (shape, _) in heads.items() if k.startswith("x"))
            if rows > MAX_ROWS:
                raise refuse(f"the .npz has {rows:,} rows, more than the {MAX_ROWS:,} the lab takes")
            arrays = {}
            for k in keys:
                with zf.open(k + ".npy") as f:
                    arrays[k] = np.lib.format.read_array(f, allow_pickle=False)
    except LabError:
        raise
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError, RuntimeError, NotImplementedError):
        raise refuse("the .npz cannot be read (numpy.savez writes one: a zip of .npy files)") from None
    xs, ys = [], []
    for split in ("_train", "_test") if keys == list(ARRAYS) else ("",):
        x, y = arrays["x" + split], arrays["y" + split]
        if len(x) != len(y):
            raise refuse(f"x{split} has {len(x)} rows but y{split} has {len(y)}")
        xs.append(_values(x.astype(np.float64), "x" + split))
        ys.append(_values(y.reshape(len(y)).astype(np.float64), "y" + split))
    if xs[0].shape[1] != xs[-1].shape[1]:
        raise refuse(f"x_train has {xs[0].shape[1]} features but x_test has {xs[-1].shape[1]}")
    if any(len(x) == 0 for x in xs):
        raise refuse("x_train and x_test each need at least one row")
    integer = all(arrays[k].dtype.kind in "biu" for k in keys if k.startswith("y"))
    return Table(xs, ys, "classification" if integer else "regression")


def _check_head(k: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
    if dtype.kind not in "biuf":
        raise refuse(f"{k} in the .npz holds {dtype.name} values; the lab takes numbers (floats, integers)")
    if k.startswith("x"):
        if len(shape) != 2:
            raise refuse(
                f"{k} in the .npz has shape {shape}; the lab takes a table: rows x features, "
                f"{MIN_FEATURES} to {MAX_FEATURES} features"
            )
        if not MIN_FEATURES <= shape[1] <= MAX_FEATURES:
            raise refuse(f"{k} in the .npz has {shape[1]} features; the lab takes {MIN_FEATURES} to {MAX_FEATURES}")
    elif not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise refuse(f"{k} in the .npz has shape {shape}; it must be one target per row (a label or a value)")
    if shape[0] > MAX_ROWS:
        raise refuse(f"{k} in the .npz has {shape[0]:,} rows, more than the {MAX_ROWS:,} the lab takes")


def _values(a: np.ndarray, name: str) -> np.ndarray:
    """a, refused where a value is not finite or too large: which row and column."""
    bad = ~np.isfinite(a) | (np.abs(a) > MAX_ABS)
    if bad.any():
        i = tuple(int(n) for n in np.argwhere(bad)[0])
        where = f"{name} row {i[0] + 1}" + (f" column {i[1] + 1}" if len(i) > 1 else "")
        _finite(float(a[i]), where)
    return a


# ---------------------------------------------------------------- deciding, splitting, saving


def save_table(table: Table, folder: Path) -> dict[str, Any]:
    """The table's task decided (and its classes numbered 0..C-1 in sorted order), split,
    saved content-addressed under folder; the answer of POST /api/data."""
    y_all = np.concatenate(table.y)
    integral = bool(np.all(np.floor(y_all) == y_all))
    labels = np.unique(y_all)
    kind = table.kind
    if kind is None:
        kind = "classification" if integral and len(labels) <= GUESS_CLASSES else "regression"
    if kind == "classification":
        if not integral:
            v = y_all[np.floor(y_all) != y_all][0]
            raise refuse(f"a class label must be an integer; the target holds {v:g}")
        if len(labels) < 2:
            raise refuse(f"the target holds one class ({labels[0]:g}); a classification needs at least 2")
        if len(labels) > MAX_CLASSES:
            raise refuse(f"the target holds {len(labels):,} classes, more than the {MAX_CLASSES} the lab takes")
        ys = [np.searchsorted(labels, y).astype(np.int64) for y in table.y]
        classes = [int(v) for v in labels]
    else:
        ys = [y.astype(np.float64) for y in table.y]
        classes = None
    n = sum(len(y) for y in ys)
    if n < MIN_ROWS:
        raise refuse(f"the data has {n} rows; the lab needs at least {MIN_ROWS}")
    if len(table.x) == 1:
        tr, te = split(ys[0], kind == "classification")
        x_train, y_train, x_test, y_test = table.x[0][tr], ys[0][tr], table.x[0][te], ys[0][te]
    else:
        (x_train, x_test), (y_train, y_test) = table.x, ys
    path = save_arrays(folder, {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test})
    summary = {
        "task": kind,
        "n_train": len(x_train),
        "n_test": len(x_test),
        "features": int(x_train.shape[1]),
        "classes": classes,
        "columns": table.columns,
    }
    return {"data": {"name": "arrays", "path": str(path)}, "summary": summary}


def split(y: np.ndarray, stratified: bool) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of train and test: TEST_FRACTION of each class (of all rows, unstratified)
    in the test set, at least one test row and, of each class, one training row; seeded."""
    rng = np.random.default_rng(SPLIT_SEED)
    groups = [np.flatnonzero(y == c) for c in np.unique(y)] if stratified else [np.arange(len(y))]
    train, test = [], []
    for g in groups:
        g = rng.permutation(g)
        k = min(int(math.floor(len(g) * TEST_FRACTION + 0.5)), len(g) - 1)
        test.append(g[:k])
        train.append(g[k:])
    if not sum(len(t) for t in test):  # small classes: the largest gives one row
        i = max(range(len(train)), key=lambda j: len(train[j]))
        test[i], train[i] = train[i][:1], train[i][1:]
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A .npz as numpy.savez writes it, byte for byte the same for the same arrays (its zip
    entries carry a fixed date): the file's hash is its content's."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for k, a in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(a), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(k + ".npy", date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue())
    return out.getvalue()


def save_arrays(folder: Path, arrays: dict[str, np.ndarray]) -> Path:
    """folder/<sha256 of the file, 16 hex>.npz, written once (a file of that name already
    holds these bytes); its absolute path."""
    content = npz_bytes(arrays)
    folder = folder.resolve()
    path = folder / f"{hashlib.sha256(content).hexdigest()[:16]}.npz"
    if not path.is_file():
        tmp = folder / f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(content)
            os.replace(tmp, path)
        except OSError as e:  # a full disk, a read-only runs folder: said without the path
            raise LabError(
                507, f"the lab cannot save the data in its runs folder ({e.strerror or type(e).__name__})"
            ) from None
        finally:
            tmp.unlink(missing_ok=True)
    return path

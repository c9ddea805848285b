"""Plain JSON of what dlx records: numpy arrays and scalars, NaN and Inf, paths.

Here, below every layer that writes JSON (the run history, the run folder, the lab), so
that each turns its values into JSON the same way."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def jsonable(obj: Any) -> Any:
    """Plain JSON: arrays to lists, NaN/Inf to null (standard JSON has neither)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "f" and not np.isfinite(obj).all():
            return jsonable(obj.tolist())  # slow path: NaN/Inf to null one by one
        return obj.tolist()  # all finite: one C call
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def float32_text(a: Any) -> np.ndarray:
    """Float32 measurements (a device buffer's copy) as float64s whose JSON text is float32's
    shortest round-trip decimal: 0.3479059, not 0.3479059040546417 (a quickstart's
    probes.jsonl: 114 KB, not 174). Lossless: each, cast to float32, is the value measured,
    and written and read back it is the same float64, so a run's history in memory equals the
    one read from its folder. NaN and Inf stay as they are.

    Vectorised over the whole buffer (a stack's K trials at once): for 6 to 9 significant
    digits (9 always round-trips a float32), each value rounded to that many in float64 (the
    float64 nearest that decimal, whose repr is the decimal); the first that casts back to the
    float32 value is kept. Values from 1e-14 to 1e6 (the scale is then an exact power of ten);
    others, and a value no rounding returns, take numpy's shortest text (5x slower)."""
    x = np.asarray(a, dtype=np.float32)
    out = x.astype(np.float64)
    flat, x32 = out.reshape(-1), x.reshape(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.floor(np.log10(np.abs(flat)))
    fast = (mag >= -14) & (mag <= 5)  # NaN, Inf and 0 are not
    idx = np.flatnonzero(fast)
    v, v32 = flat[idx], x32[idx]
    best = v.copy()
    left = np.ones(v.shape, dtype=bool)
    for digits in range(6, 10):
        r = significant(v, digits, mag[idx])
        ok = left & (r.astype(np.float32) == v32)
        best[ok] = r[ok]
        left &= ~ok
        if not left.any():
            break
    flat[idx] = best
    slow = np.concatenate([idx[left], np.flatnonzero(~fast & np.isfinite(flat) & (flat != 0))])
    if slow.size:
        flat[slow] = x32[slow].astype(str).astype(np.float64)
    return out


def significant(a: Any, digits: int, mag: np.ndarray | None = None) -> np.ndarray:
    """Values rounded to `digits` significant digits, as float64s whose repr is that decimal
    (0.3004, not 0.30040000000000006), in numpy passes: each is rounded at its own decimal
    (the float64 nearest it) where the scale is an exact power of ten (10**0 to 10**22);
    the rest (huge or tiny values) one by one. mag: floor(log10|a|), if already known.
    NaN, Inf and 0 stay as they are."""
    a = np.asarray(a, dtype=np.float64)
    if mag is None:
        with np.errstate(divide="ignore", invalid="ignore"):
            mag = np.floor(np.log10(np.abs(a)))
    k = digits - 1 - mag  # the last kept digit is at 10**-k
    fast = np.isfinite(k) & (k >= 0) & (k <= 22)
    out = a.copy()
    scale = _POW10[np.where(fast, k, 0).astype(np.int64)]
    out[fast] = np.round(a[fast] * scale[fast]) / scale[fast]
    rest = ~fast & np.isfinite(a) & (a != 0)
    out[rest] = [float(f"{v:.{digits}g}") for v in a[rest]]
    return out


_POW10 = 10.0 ** np.arange(23)  # exact in float64

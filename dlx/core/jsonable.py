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

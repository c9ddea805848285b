"""The keys a run may change while it trains (train.changes, and dlx lab's knobs while a run
plays), each with the check of its value: the config's schema and the lab share them.
Applying them is dlx.run.changes'."""

from __future__ import annotations

import math
from typing import Any

# key -> (what it changes, the check's words)
CHANGEABLE: dict[str, str] = {
    "optimizer.lr": "every parameter group's learning rate (a schedule's base lr too)",
    "regularization.l2": "the L2 penalty's weight",
    "regularization.l1": "the L1 penalty's weight",
    "regularization.dropout": "the p of the model's dropout modules (the run must start with dropout > 0)",
    "train.batch_size": "the batch size, from the first epoch start at or after the change's step",
}


def changeable_keys() -> str:
    return ", ".join(CHANGEABLE)


def change_value(key: str, value: Any) -> float | int:
    """The value `key` may be changed to, as the run uses it; ValueError saying the fix otherwise."""
    if key not in CHANGEABLE:
        from dlx.core.registry import closest

        hint = closest(key, list(CHANGEABLE))
        raise ValueError(
            f"{key!r} is not a key a change can set"
            + (f" (did you mean {hint!r}?)" if hint else "")
            + f"; the keys: {changeable_keys()}"
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{key} must be a number, got {value!r}")
    if key == "train.batch_size":
        if value != int(value) or value < 1:
            raise ValueError(f"{key} must be a positive integer (samples per step), got {value!r}")
        return int(value)
    if key == "optimizer.lr" and value <= 0:
        raise ValueError(f"{key} must be > 0, got {value!r}")
    if key == "regularization.dropout" and not 0 <= value < 1:
        raise ValueError(f"{key} must be at least 0 and below 1, got {value!r}")
    if value < 0:
        raise ValueError(f"{key} must be >= 0, got {value!r}")
    return float(value)


def change_set(values: Any) -> dict[str, float | int]:
    """A change's `set` mapping checked: at least one key, each a CHANGEABLE key with its value."""
    if not isinstance(values, dict) or not values:
        raise ValueError(f"set must be a mapping of one or more keys to values ({changeable_keys()})")
    return {str(k): change_value(str(k), v) for k, v in values.items()}

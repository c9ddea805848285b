"""Reading the series: the train-loss curve (smoothed, against its yardstick) and the
divergence record."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlx.diagnosis.context import Context
from dlx.diagnosis.verdicts import fmt

# ---------------------------------------------------------------- the loss curve
# Loss-curve verdicts need a curve: at least this many log intervals.
MIN_INTERVALS = 5
# The train loss is smoothed with a running median over this fraction of the
# intervals (at least 3): a single noisy batch is not a trend.
SMOOTH_FRACTION = 0.1
# The final part of the run the "end" of a curve is read from (median of it).
END_FRACTION = 0.1


def finite_series(metrics: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [
        (m.get("step", i), m[key])
        for i, m in enumerate(metrics)
        if isinstance(m.get(key), (int, float)) and math.isfinite(m[key])
    ]
    if not pts:
        return np.zeros(0), np.zeros(0)
    steps, vals = zip(*pts)
    return np.asarray(steps, dtype=float), np.asarray(vals, dtype=float)


def smoothed(x: np.ndarray) -> np.ndarray:
    """Running median over SMOOTH_FRACTION of the series (at least 3 points)."""
    return running_median(x, max(1, int(round(len(x) * SMOOTH_FRACTION / 2))))


def running_median(x: np.ndarray, h: int) -> np.ndarray:
    """The median of x[i-h : i+h+1] at each i (windows cut at the ends), in one numpy call:
    a run stopped on its verdict (dlx.run.pruning) reads its curve at every log interval."""
    x = np.asarray(x, dtype=float)
    if not len(x):
        return x.copy()
    if np.isnan(x).any():  # never from finite_series; kept exact (a NaN window is NaN) for any caller
        return np.array([np.median(x[max(0, i - h) : i + h + 1]) for i in range(len(x))])
    # NaN padding cuts the windows at the ends: nanmedian skips it.
    padded = np.concatenate([np.full(h, np.nan), x, np.full(h, np.nan)])
    return np.nanmedian(np.lib.stride_tricks.sliding_window_view(padded, 2 * h + 1), axis=1)


@dataclass
class Curve:
    steps: np.ndarray
    raw: np.ndarray
    smooth: np.ndarray
    scale: float  # the yardstick: chance-level loss, else the first loss

    @property
    def end(self) -> float:
        k = max(1, int(round(len(self.smooth) * END_FRACTION)))
        return float(np.median(self.smooth[-k:]))


def train_curve(ctx: Context) -> Curve | None:
    steps, raw = finite_series(ctx.metrics, "train_loss")
    if len(raw) < MIN_INTERVALS:
        return None
    smooth = smoothed(raw)
    scale = ctx.chance_loss if ctx.chance_loss and ctx.chance_loss > 0 else float(smooth[0])
    if not scale > 0:
        return None
    return Curve(steps, raw, smooth, scale)


def chance_text(ctx: Context) -> str:
    """The chance-level loss in words, with its value: "chance level (ln 3 = 1.1)"."""
    c = ctx.chance_loss
    if c is None:
        return "chance level (unknown)"
    if ctx.task == "regression":
        return f"predicting the mean ({fmt(c)})"
    loss = ctx.section("train").get("loss", "cross_entropy")
    k = math.exp(c)
    if loss == "cross_entropy" and abs(k - round(k)) < 0.01 * k:
        return f"chance level (ln {round(k)} = {fmt(c)})"
    return f"chance level ({fmt(c)})"


def yard(ctx: Context) -> str:
    return chance_text(ctx) if ctx.chance_loss else "the first interval's loss"


def divergence(ctx: Context) -> dict[str, Any] | None:
    """The trainer's divergence record, or one read from the series themselves
    (the first step with a non-finite gradient or loss) when none was passed."""
    if ctx.diverged:
        return ctx.diverged
    bad = ~np.isfinite(ctx.grad).all(axis=1) if ctx.grad.size else np.zeros(0, bool)
    if bad.any():
        i = int(np.argmax(bad))
        layers = [n for n, g in zip(ctx.names, ctx.grad[i]) if not np.isfinite(g)]
        return {
            "step": i + 1,
            "layer": layers[0] if layers else None,
            "layers": layers,
            "loss": None,
            "message": f"non-finite gradient at step {i + 1} in {', '.join(layers)} (first: {layers[0]})",
        }
    for m in ctx.metrics:
        loss = m.get("train_loss")
        if isinstance(loss, (int, float)) and not math.isfinite(loss):
            return {
                "step": m.get("step"),
                "layer": None,
                "layers": [],
                "loss": loss,
                "message": f"non-finite loss ({loss}) in the interval ending at step {m.get('step')}",
            }
    return None

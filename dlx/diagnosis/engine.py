"""Verdicts read from a run's series: what went wrong (or right), why, and what to try.

diagnose() runs the checks (dlx.diagnosis.checks: one module per family) on one small
Context (dlx.diagnosis.context) and orders what they found, root causes first, each
symptom naming its root (the kinds and their relations: dlx.diagnosis.kinds); a verdict
is a plain dict (dlx.diagnosis.verdicts). outcome() says how far the run got. The
engine reads the Context only, never the run folder or the trainer, so tests feed it
synthetic series. Thresholds are named constants beside the checks that read them;
each says why it sits where it does. Every public name of the package stays importable
from here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# The checks, their thresholds and the parts of a verdict, re-exported: dlx.diagnosis.engine
# is the package's one entry point for its users.
from dlx.diagnosis.checks.gradients import (  # noqa: F401
    EXPLODING_NORM,
    EXPLODING_RATIO,
    SUSTAINED_FROM,
    TIME_REACH,
    TIME_VANISHING_RATIO,
    VANISHING_RATIO,
    across_layers,
    diverged,
    vanishing_through_time,
)
from dlx.diagnosis.checks.loss import (  # noqa: F401
    IGNORED_HIDDEN_BY,
    IGNORED_RECALL,
    NOT_LEARNING_ACC_MARGIN,
    NOT_LEARNING_FRACTION,
    OVERFIT_ABS_RISE,
    OVERFIT_AFTER_MIN,
    OVERFIT_GAP_ABS,
    OVERFIT_GAP_RATIO,
    OVERFIT_LASTING,
    OVERFIT_MIN_EVALS,
    OVERFIT_REL_RISE,
    OVERFIT_TRAIN_FALL,
    PLATEAU_FRACTION,
    PLATEAU_MIN_INTERVALS,
    SLOW_PROGRESS,
    STILL_FALLING,
    ignored_class,
    not_learning,
    overfitting,
    slow,
)
from dlx.diagnosis.checks.lr import (  # noqa: F401
    LR_GRAD_GROWTH,
    LR_LOW_UPDATE,
    LR_RELAPSE_FROM,
    LR_RISE,
    LR_SPIKE,
    LR_SWING,
    lr_too_high,
    lr_too_low,
)
from dlx.diagnosis.checks.start import (  # noqa: F401
    INIT_SATURATED_LAYERS,
    INIT_SIGNAL_FACTOR,
    SANE_STEP1_RATIO,
    SYMMETRY_SPREAD,
    init_scale,
    sane_start,
    symmetry,
)
from dlx.diagnosis.checks.units import (  # noqa: F401
    DEAD_FRACTION,
    MIN_DEAD_BATCH,
    SATURATED_FRACTION,
    SATURATION_STUCK,
    dead_units,
    saturation,
)
from dlx.diagnosis.context import Context, accuracy_floor, chance_accuracy, chance_loss, schema_accepts  # noqa: F401
from dlx.diagnosis.kinds import (  # noqa: F401
    KIND,
    KINDS,
    LABEL,
    NOT_PRUNABLE,
    PRUNABLE,
    PRUNE_WARMUP,
    SEVERITIES,
    SYMPTOMS,
)
from dlx.diagnosis.readers import RECURRENT, RELU_FAMILY, SATURATING, ZERO_AT_ZERO  # noqa: F401
from dlx.diagnosis.series import (  # noqa: F401
    END_FRACTION,
    MIN_INTERVALS,
    SMOOTH_FRACTION,
    Curve,
    divergence,
    finite_series,
    train_curve,
)
from dlx.diagnosis.verdicts import Fix, fmt, verdict  # noqa: F401


def outcome(ctx: Context, curve: Curve | None = None) -> dict[str, Any]:
    """How far the run got, apart from how its gradients flowed: kind (converged | still_improving |
    slow | not_learning | diverged | too_short), progress (1 - final train loss / chance: 0 at
    chance, 1 at a perfect fit), accuracy_progress (the same from chance accuracy to 1), the
    fall over the last half, a plateau at chance it escaped, and a one-line text."""
    if divergence(ctx):
        return {"kind": "diverged", "text": "diverged: no final numbers", "where": "diverged"}
    curve = curve if curve is not None else train_curve(ctx)
    if curve is None:
        return {
            "kind": "too_short",
            "text": f"too short to judge how far it got (fewer than {MIN_INTERVALS} log intervals)",
            "where": "too short to judge",
        }
    c = ctx.chance_loss
    steps = int(curve.steps[-1])
    end = curve.end
    half = curve.smooth[len(curve.smooth) // 2]
    falling = float(half - end) / curve.scale
    res: dict[str, Any] = {
        "steps": steps,
        "final_train_loss": end,
        "fall_last_half": falling,
        "progress": None,
        "accuracy_progress": None,
        "plateau": None,
    }
    parts = [f"train loss {fmt(float(curve.raw[0]))} -> {fmt(end)} in {steps} steps"]
    if c:
        res["progress"] = p = max(0.0, 1 - end / c)
        parts.append(f"{p:.0%} of the way from {'the mean' if ctx.task == 'regression' else 'chance'} ({fmt(c)}) to 0")
    acc_key = "test_acc" if any("test_acc" in m for m in ctx.metrics) else "train_acc"
    _, accs = finite_series(ctx.metrics, acc_key)
    floor = accuracy_floor(ctx)
    if floor is not None and floor < 1 and len(accs):
        res["accuracy_progress"] = (float(accs[-1]) - floor) / (1 - floor)
        parts.append(f"{acc_key.split('_')[0]} accuracy {float(accs[-1]):.3g} (chance {floor:.2g})")
    # A plateau at chance that the loss later left.
    if c:
        stuck = curve.smooth >= NOT_LEARNING_FRACTION * c
        left = np.flatnonzero(~stuck)
        if stuck[0] and len(left):
            k = int(left[0])
            if k >= PLATEAU_MIN_INTERVALS and k >= PLATEAU_FRACTION * len(stuck):
                res["plateau"] = {"until_step": int(curve.steps[k]), "intervals": k}
    p, pa = res["progress"], res["accuracy_progress"]
    far = p is not None and p < SLOW_PROGRESS and (pa is None or pa < SLOW_PROGRESS)
    if c and end >= NOT_LEARNING_FRACTION * c and (pa is None or pa < NOT_LEARNING_ACC_MARGIN):
        kind = "not_learning"
    elif far:
        kind = "slow"
    elif falling > STILL_FALLING:
        kind = "still_improving"
    else:
        kind = "converged"
    trend = (
        f"still falling ({fmt(falling * curve.scale)} over the last half)"
        if falling > STILL_FALLING
        else "flat over the last half"
    )
    parts.insert(2 if c else 1, trend)
    res["kind"] = kind
    word = {
        "not_learning": "not learning",
        "slow": "far from a fit",
        "still_improving": "still improving",
        "converged": "converged",
    }[kind]
    text = f"{word}: {', '.join(parts)}"
    if res["plateau"]:
        text += f"; it sat at chance level until step {res['plateau']['until_step']} before it began to learn"
    res["text"] = text
    res["where"] = (
        f"{p:.0%} of the way from chance level to a fit after {steps} steps"
        if p is not None
        else f"at train loss {fmt(end)} after {steps} steps"
    )
    return res


def _order(found: list[dict], sane: bool) -> list[dict]:
    """Root causes first, each symptom after them, naming its root (see SYMPTOMS)."""
    rank = {k: float(i) for i, k in enumerate(KINDS)}
    if not sane:
        # A start out of range is the first suspect: the lr's verdict follows the structural ones.
        rank["lr_too_high"] = rank["diverged"] - 0.5
    found = sorted(found, key=lambda v: rank[v["kind"]])
    roots: list[dict] = []
    for v in found:
        root = next((r for r in roots if v["kind"] in SYMPTOMS.get(r["kind"], ())), None)
        if root is None:
            roots.append(v)
            continue
        v["symptom_of"] = root["kind"]
        v["cause"] = f"a symptom of the {LABEL[root['kind']]} above"
        v["remedy"] = f"the remedy for the {LABEL[root['kind']]} above."
        v["fixes"] = []  # the root's fixes fix it
    return roots + [v for v in found if v.get("symptom_of")]


def _healthy(ctx: Context, curve: Curve | None, out: dict[str, Any] | None = None) -> dict:
    finite = ctx.grad[np.isfinite(ctx.grad).all(axis=1)] if len(ctx.grad) else ctx.grad
    ev: dict[str, Any] = {}
    parts = []
    if finite.size and len(ctx.names) >= 2:
        med = np.median(finite[int(len(finite) * SUSTAINED_FROM) :], axis=0)
        if med[-1] > 0:
            ev["ratio_first_to_last"] = float(med[0] / med[-1])
            parts.append(f"{ctx.names[0]}/{ctx.names[-1]} gradient ratio {fmt(ev['ratio_first_to_last'])}")
    if curve is not None:
        ev["first_loss"], ev["final_loss"] = float(curve.raw[0]), curve.end
    detail = f" ({', '.join(parts)})" if parts else ""
    # What it learned leads; how its gradients flowed follows.
    if out:
        ev["outcome"] = out.get("kind")
    if out and out.get("kind") == "too_short":
        # Nothing says how far it got: do not call the run healthy, only its gradients.
        return verdict(
            "healthy",
            [],
            ev,
            f"healthy gradients, outcome unknown: {out['text']}; gradients reach "
            f"every layer at comparable sizes{detail}",
        )
    learned = f"{out['text']}; " if out and out.get("text") else ""
    return verdict("healthy", [], ev, f"healthy: {learned}gradients reach every layer at comparable sizes{detail}")


def diagnose(ctx: Context) -> list[dict]:
    """Every verdict for one run, root causes first, then their symptoms (each naming its
    root in "symptom_of"); [healthy] only when none fired and the run got near a fit."""
    out: list[dict] = []
    out += symmetry(ctx)
    out += init_scale(ctx)
    sane = sane_start(ctx, out)
    out += diverged(ctx)
    out += across_layers(ctx)
    out += vanishing_through_time(ctx)
    # The loss curve is cut short by a divergence: its verdicts would only echo it.
    blew_up = any(v["kind"] == "diverged" for v in out)
    curve = None if blew_up else train_curve(ctx)
    out += lr_too_high(ctx, curve, sane)
    out += dead_units(ctx)
    out += saturation(ctx, curve)
    result = outcome(ctx, curve)
    out += lr_too_low(ctx, result, out)
    out += not_learning(ctx, curve, out)
    out += slow(ctx, result, out)
    out += overfitting(ctx, curve)
    out += ignored_class(ctx)
    if not out:
        out.append(_healthy(ctx, curve, result))
    return _order(out, sane)


def headline(verdicts: list[dict]) -> str:
    """The one-line verdict: the first (most severe) finding."""
    return verdicts[0]["message"] if verdicts else "no verdict"

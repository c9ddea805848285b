"""The learning rate: too high (a blow-up, a rise, a swing, a relapse; the sharpness past the
edge of stability) or too low (steps that barely move the weights).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dlx.diagnosis.checks.loss import NOT_LEARNING_FRACTION
from dlx.diagnosis.context import Context
from dlx.diagnosis.readers import (
    adam,
    clip_fix,
    clipped,
    lr_lower,
    lr_text,
    lr_times,
    more_steps,
)
from dlx.diagnosis.series import Curve, chance_text, divergence, running_median, yard
from dlx.diagnosis.verdicts import fix, fmt, try_fixes, verdict

# Loss yardstick: the chance-level loss (best constant prediction) when known, else
# the first interval's loss. lr too high, rising: the smoothed train loss ends more
# than this fraction of the yardstick above its minimum. A healthy run's late drift
# (noise around a small loss) is a few percent of it; a loss that climbs back a
# third of the way to chance has been knocked out of its minimum.
LR_RISE = 0.3
# lr too high, oscillating: over the last half, the median jump between successive
# interval losses is above this fraction of the yardstick. Interval losses are means
# of log_every batches, so batch noise alone moves them a few percent at most.
LR_SWING = 0.25
# Both are read against the larger of the yardstick and the loss's own level: a loss
# sitting at 4x chance (a saturated or badly initialised net) moves by 7% of itself
# from batch noise alone, which is 28% of chance; that says nothing about the lr.
# lr too high, blowing up early: some interval's mean loss above this multiple of the
# yardstick... (a sane init starts within ~1.5x of chance; quickstart with adam lr=0.3
# peaks at 27x, momentum lr=1 at 200x, adam lr=0.1, which recovers to 98%, at 4.4x)
LR_SPIKE = 5.0
# ...while the gradient norm grew this much over its step-1 value: the steps, not the
# init, blew the loss up (a bad init makes step 1's gradient the largest; a healthy
# run's gradients grow up to ~20x, but then its loss never leaves chance level).
LR_GRAD_GROWTH = 10.0
# lr too low: the median layer's |update|/|weight| per step below this at the end
# (a common rule of thumb puts healthy steps near 1e-3; measured 4e-4-7e-3 on the
# healthy examples, 5e-6-7e-5 for sgd at lr 1e-4) while the run is far from a fit.
LR_LOW_UPDATE = 1e-4
# The learning rate lost what it had learned: the smoothed loss got below this
# fraction of chance, then ended back at >= NOT_LEARNING_FRACTION of it (momentum at
# lr 0.5 on spirals: 0.81 -> 1.03 of chance, its ReLUs dead).
LR_RELAPSE_FROM = 0.85


def sharpness_over(ctx: Context) -> tuple[str, dict[str, Any]] | None:
    """With the sharpness instrument on: the measurement where the sharpness stood furthest
    above the lr's stability threshold, as text for an lr verdict and its evidence (edge
    of stability, Cohen et al. 2021: past the threshold a step leaves the local quadratic's
    stable range). None when it never went past it, or was not measured."""
    best = None
    # The sharpness at init says where training starts, not where the steps took it: it
    # counts only when nothing later was measured.
    later = [r for r in ctx.instruments if r.get("step") and (r.get("sharpness") or {}).get("threshold")]
    for r in later or ctx.instruments:
        sh = r.get("sharpness") or {}
        top = sh.get("preconditioned_top") if sh.get("preconditioned") else sh.get("top")
        thr, lr = sh.get("threshold"), r.get("lr")
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (top, thr, lr)) or thr <= 0:
            continue
        if top > thr and (best is None or top / thr > best[0]):
            best = (top / thr, r["step"], top, thr, lr, sh)
    if best is None:
        return None
    ratio, step, top, thr, lr, sh = best
    which = "the preconditioned sharpness" if sh.get("preconditioned") else "the sharpness (top Hessian eigenvalue)"
    if sh.get("full_batch") is False:
        # 2/lr (and its momentum form) is the rule for full-batch steps; a minibatch step's
        # noise changes it, so past it is a sign, not a proof.
        so = "a full-batch rule, so with minibatch steps only an indication that the steps outgrew the curvature"
    else:
        so = "so each step leaves the local quadratic's stable range (edge of stability)"
    text = (
        f"; {which} at step {step} was {fmt(top)}: sharpness x lr = {fmt(top * lr)} > {fmt(thr * lr)} "
        f"({sh.get('rule')}), {so}"
    )
    return text, {"sharpness": top, "sharpness_threshold": thr, "sharpness_step": step, "sharpness_ratio": ratio}


def lr_too_high(ctx: Context, curve: Curve | None, sane: bool) -> list[dict]:
    d = divergence(ctx)
    if d is not None:
        # A sane start that went non-finite: the steps blew it up, not the init.
        finite = ctx.grad[np.isfinite(ctx.grad).all(axis=1)] if ctx.grad.size else ctx.grad
        if not sane or not len(finite):
            return []
        step1, peak = float(finite[0].max()), float(finite.max())
        ev = {
            "diverged_step": d.get("step"),
            "first_step_grad_norm": step1,
            "max_finite_grad_norm": peak,
            "grad_growth": peak / step1 if step1 > 0 else None,
        }
        cause = lr_text(ctx) + ("" if clipped(ctx) else ", no gradient clipping")
        sharp = sharpness_over(ctx)
        if sharp:
            ev.update(sharp[1])
        return [
            verdict(
                "lr_too_high",
                [],
                ev,
                f"learning rate too high: the loss went non-finite at step {d.get('step')}, with a sane "
                f"start (init check in range, step-1 gradient norm {fmt(step1)}) and gradients growing "
                f"to {fmt(peak)} before it" + (sharp[0] if sharp else ""),
                cause + ": each step overshoots, and the overshoot grows",
                try_fixes(
                    ctx,
                    [lr_lower(ctx, 10, "a tenth"), fix("optimizer.schedule=warmup"), clip_fix(ctx)],
                ),
            )
        ]
    if curve is None:
        return []
    s, raw = curve.smooth, curve.raw
    i_min = int(np.argmin(s))
    rise = curve.end - float(s[i_min])
    half = raw[len(raw) // 2 :]
    swing = float(np.median(np.abs(np.diff(half)))) if len(half) >= 2 else 0.0
    ev = {
        "min_loss": float(s[i_min]),
        "min_step": int(curve.steps[i_min]),
        "final_loss": curve.end,
        "rise": rise,
        "swing": swing,
        "yardstick": curve.scale,
    }
    peak_i = int(np.argmax(raw))
    low = running_median(raw, 1)
    finite = ctx.grad[np.isfinite(ctx.grad).all(axis=1)] if ctx.grad.size else ctx.grad
    growth = float(finite.max() / finite[0].max()) if len(finite) and finite[0].max() > 0 else 1.0
    ev.update(peak_loss=float(raw[peak_i]), peak_step=int(curve.steps[peak_i]), grad_growth=growth)
    if raw[peak_i] > LR_SPIKE * curve.scale and growth > LR_GRAD_GROWTH:
        msg = (
            f"learning rate too high: the train loss blew up to {fmt(float(raw[peak_i]))} "
            f"({raw[peak_i] / curve.scale:.0f}x {yard(ctx)}) in the interval ending at step "
            f"{int(curve.steps[peak_i])}, while the gradient norm grew {growth:.0f}x from step 1"
        )
    elif rise > LR_RISE * max(curve.scale, float(s[i_min])):
        msg = (
            f"learning rate too high: the train loss rose from its minimum {fmt(float(s[i_min]))} "
            f"(step {int(curve.steps[i_min])}) to {fmt(curve.end)} at the end "
            f"(+{rise / curve.scale:.0%} of {yard(ctx)})"
        )
    elif len(half) and swing > LR_SWING * max(curve.scale, float(np.median(half))):
        msg = (
            f"learning rate too high: the train loss oscillates, jumping {fmt(swing)} between log "
            f"intervals over the last half ({swing / curve.scale:.0%} of {yard(ctx)})"
        )
    elif (
        sane
        and ctx.chance_loss
        and float(low.min()) < LR_RELAPSE_FROM * ctx.chance_loss
        and curve.end >= NOT_LEARNING_FRACTION * ctx.chance_loss
    ):
        # Learned, then lost it all: big steps knocked it out (and often killed its units).
        # The low point is read from a 3-interval running median: a learning phase of a
        # few intervals is real, and the run-wide smoothing would erase it.
        j = int(np.argmin(low))
        msg = (
            f"learning rate too high: the train loss fell to {fmt(float(low[j]))} "
            f"(step {int(curve.steps[j])}), then climbed back to {fmt(curve.end)}, "
            f"{curve.end / ctx.chance_loss:.0%} of {chance_text(ctx)}, and stayed there"
        )
    else:
        return []
    ev["sane_start"] = sane
    sharp = sharpness_over(ctx)
    if sharp:
        msg += sharp[0]
        ev.update(sharp[1])
    cause = lr_text(ctx)
    if not clipped(ctx):
        cause += ", no gradient clipping"
    big = raw[peak_i] > LR_SPIKE * curve.scale or curve.end >= NOT_LEARNING_FRACTION * curve.scale
    return [
        verdict(
            "lr_too_high",
            [],
            ev,
            msg,
            cause + ": each step overshoots the minimum",
            try_fixes(
                ctx,
                [
                    lr_lower(ctx, 10, "a tenth") if big else lr_lower(ctx, 3, "a third"),
                    fix("optimizer.schedule=warmup"),
                    fix("optimizer.schedule=cosine"),
                    clip_fix(ctx),
                ],
            ),
        )
    ]


def lr_factor(ratio: float) -> float:
    """How much larger the lr should be to bring an update/weight ratio to ~1e-3: 3x to 100x."""
    return float(min(100.0, max(3.0, 10 ** round(math.log10(1e-3 / ratio))))) if ratio > 0 else 10.0


def lr_too_low(ctx: Context, out: dict[str, Any], found: list[dict]) -> list[dict]:
    """Steps so small that the weights barely move, in a run far from a fit with nothing else wrong."""
    if found or out.get("kind") not in ("not_learning", "slow"):
        return []
    ratio = ctx.last.get("update_ratio")
    vals = [float(x) for x in (ratio if ratio is not None else []) if x is not None and math.isfinite(float(x))]
    if not vals:
        return []
    med = float(np.median(vals))
    if not 0 < med < LR_LOW_UPDATE:
        return []
    lr = ctx.section("optimizer").get("lr")
    f = lr_factor(med)
    new_lr = lr_times(ctx, f, f"{f:.0f}x")
    ev = {
        "update_ratio_median": med,
        "update_ratio": dict(zip(ctx.names, vals)),
        "lr": lr,
        "progress": out.get("progress"),
        "suggested_factor": f,
    }
    return [
        verdict(
            "lr_too_low",
            [],
            ev,
            f"learning rate too low: each step changes a layer's weights by {fmt(med)} of their size "
            f"(median over layers; ~1e-3 is typical), and the run ends {out['where']}",
            f"{lr_text(ctx)}: steps too small to get anywhere in {out.get('steps', '?')} steps",
            try_fixes(
                ctx,
                [
                    new_lr,
                    adam() if ctx.section("optimizer").get("name") in ("sgd",) else None,
                    more_steps(ctx),
                ],
            ),
        )
    ]

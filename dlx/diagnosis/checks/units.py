"""Units: ReLUs dead for every input, saturating units stuck at a bound while the loss is high."""

from __future__ import annotations

from dlx.diagnosis.context import Context
from dlx.diagnosis.readers import (
    SATURATING,
    batch_norm_remedy,
    good_init,
    he_like,
    init_text,
    lr_lower,
    lr_text,
    norm_none,
)
from dlx.diagnosis.series import Curve, chance_text, finite_series
from dlx.diagnosis.verdicts import fix, fmt, try_fixes, verdict

# ---------------------------------------------------------------- units
# ReLU units off for the whole probe batch, per layer: from 70% on, most of the layer
# is dead weight. Healthy runs of the example configs end at <= 33% in every layer
# (ReLU nets always idle some units); a too-high lr (adam/rmsprop at 0.1 on
# quickstart) kills 86%; rmsprop at 0.01 sits at 56% and still reaches 98%.
DEAD_FRACTION = 0.7
# Dead is judged on the log step's batch: with a handful of samples a selective unit
# is off for all of them by chance (batch 1 showed 89% "dead"), so smaller batches
# get no dead-unit verdict.
MIN_DEAD_BATCH = 16
# Saturating units within the margin of a bound (probes.SATURATION_MARGIN), per layer:
# above 60% the layer passes almost no gradient for most of its outputs...
SATURATED_FRACTION = 0.6
# ...but saturation alone is no fault: a tanh net that has learned often ends with
# most outputs near +-1 (binary-like features; quickstart with tanh: 82% of act3
# saturated at 98.6% test accuracy). So it is a verdict only while it hurts: the
# train loss still above this fraction of the chance-level loss at the end.
SATURATION_STUCK = 0.5


def dead_units(ctx: Context) -> list[dict]:
    if not ctx.dead_check or ctx.last.get("act_dead") is None:
        return []
    batch = ctx.section("train").get("batch_size")
    if isinstance(batch, int) and not isinstance(batch, bool) and batch < MIN_DEAD_BATCH:
        return []
    dead = [(n, float(f)) for n, f in zip(ctx.act_names, ctx.last["act_dead"]) if f is not None and f >= DEAD_FRACTION]
    if not dead:
        return []
    worst = max(dead, key=lambda t: t[1])
    bias = ctx.section("init").get("bias")
    if isinstance(bias, (int, float)) and bias < 0:
        # Every pre-activation starts pushed down by the bias: the units are off from step 0.
        cause = f"a negative init bias ({bias}) pushes relu units below zero for every input"
        remedy = [fix("init.bias=0"), fix("activation=leaky_relu"), batch_norm_remedy(ctx)]
    else:
        cause = f"relu units pushed below zero for every input, with {lr_text(ctx)}"
        remedy = [
            fix("activation=leaky_relu") if ctx.activation != "leaky_relu" else None,
            lr_lower(ctx, 3),
            fix("init=kaiming_normal") if not he_like(ctx.init) else None,
            batch_norm_remedy(ctx),
        ]
    return [
        verdict(
            "dead_units",
            [n for n, _ in dead],
            {n: f for n, f in dead},
            f"dead units: {len(dead)} layer(s) with >= {int(DEAD_FRACTION * 100)}% of their ReLUs off "
            f"for the whole batch (worst {worst[0]}: {worst[1]:.0%})",
            cause,
            try_fixes(ctx, remedy),
        )
    ]


def saturation(ctx: Context, curve: Curve | None) -> list[dict]:
    if ctx.last.get("act_saturated") is None:
        return []
    sat = [
        (n, float(f))
        for n, f in zip(ctx.act_names, ctx.last["act_saturated"])
        if f is not None and f >= SATURATED_FRACTION
    ]
    if not sat:
        return []
    # Only while it hurts (see SATURATION_STUCK): the loss at the end still near chance
    # (the smoothed curve's end, or the last interval's loss for a run too short for one).
    _, losses = finite_series(ctx.metrics, "train_loss")
    end = curve.end if curve is not None else (float(losses[-1]) if len(losses) else None)
    if end is None or not ctx.chance_loss or end < SATURATION_STUCK * ctx.chance_loss:
        return []
    worst = max(sat, key=lambda t: t[1])
    act = ctx.activation
    cause = f"{SATURATING.get(act, act)} with {init_text(ctx)}: pre-activations too large"
    if norm_none(ctx):
        cause += ", no normalization"
    return [
        verdict(
            "saturation",
            [n for n, _ in sat],
            {**{n: f for n, f in sat}, "final_train_loss": end, "chance_loss": ctx.chance_loss},
            f"saturation: {len(sat)} {act} layer(s) with >= {int(SATURATED_FRACTION * 100)}% of "
            f"outputs at a bound (worst {worst[0]}: {worst[1]:.0%}) while the train loss is "
            f"still {fmt(end)} ({end / ctx.chance_loss:.0%} of {chance_text(ctx)})",
            cause,
            try_fixes(
                ctx,
                [
                    fix(f"init={good_init(act)}") if ctx.init != good_init(act) else None,
                    batch_norm_remedy(ctx),
                    fix("activation=relu", "init=kaiming_normal"),
                ],
            ),
        )
    ]

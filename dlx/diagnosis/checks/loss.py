"""How far the loss got: not learning, slow, overfitting, and a class the average accuracy hides."""

from __future__ import annotations

from typing import Any

import numpy as np

from dlx.diagnosis.context import Context, accuracy_floor
from dlx.diagnosis.kinds import LABEL
from dlx.diagnosis.readers import (
    RECURRENT,
    adam,
    lr_text,
    lr_times,
    more_data,
    more_steps,
    reg_section,
    small_lr,
    yaml_number,
)
from dlx.diagnosis.series import Curve, chance_text, finite_series
from dlx.diagnosis.verdicts import Fix, fix, fmt, listing, try_fixes, verdict

# Not learning: the final smoothed train loss is still at least this fraction of the
# chance-level loss. The adding problem's plain RNN sits at ~100% of it; a net that
# has learned anything at all is well below 90%.
NOT_LEARNING_FRACTION = 0.9
# ...unless the final accuracy is at least this far from chance (1/C) toward 1: a loss
# kept high by a few wildly wrong predictions (leaky_relu at adam lr 0.3: 213% of chance)
# with 70% test accuracy on 3 classes has learned; a stuck net sits at 1/C.
NOT_LEARNING_ACC_MARGIN = 0.5
# Overfitting: the test loss needs at least this many evaluations to have a trend...
OVERFIT_MIN_EVALS = 4
# ...its minimum at least this many evaluations before the end (a rise, not one bad eval)...
OVERFIT_AFTER_MIN = 2
# ...the rise must last: the last OVERFIT_LASTING evaluations all sit above the minimum by
# the margins below (one bad final evaluation, 0.067 -> 0.18 with adam, is noise)...
OVERFIT_LASTING = 2
# ...and it must end this fraction above its minimum (relative: a 25% worse test loss)...
OVERFIT_REL_RISE = 0.25
# ...and by this fraction of the yardstick in absolute terms (a loss creeping from
# 0.01 to 0.02 doubles but does not matter: quickstart's test loss does that)...
OVERFIT_ABS_RISE = 0.05
# ...while the train loss fell by at least this fraction since the test minimum.
OVERFIT_TRAIN_FALL = 0.2
# Or the gap itself: the test loss ends this many times the train loss, by more than
# OVERFIT_GAP_ABS of the yardstick, and the gap at least doubled since the first
# evaluation (memorising 100 points: train MSE 1e-14, test 0.14, flat but wide; a
# healthy run's test loss is within ~2-3x of its train loss, a few % of chance apart).
OVERFIT_GAP_RATIO = 5.0
OVERFIT_GAP_ABS = 0.1

# ---------------------------------------------------------------- how far it got (the outcome)
# Progress: how far the final train loss got from chance level toward 0 (1 - end/chance).
# A run below this progress (and, for classification, below this fraction of the way
# from chance accuracy to 1) ends far from a fit: never "healthy" alone. Measured:
# spirals with sgd lr 0.02 for 300 steps ends at 30% (loss) / 34% (accuracy); noisy
# 3-blob data that has converged at its Bayes limit ends at 53% / 67%; healthy
# runs of the examples at 75-99%.
SLOW_PROGRESS = 0.5
# Still improving: the smoothed train loss fell by more than this fraction of the
# yardstick over the last half of the run (a converged run drifts by < 1%).
STILL_FALLING = 0.02
# A plateau: the loss sat at >= NOT_LEARNING_FRACTION of chance for at least this
# fraction of the run (and PLATEAU_MIN_INTERVALS log intervals) before leaving it.
PLATEAU_FRACTION = 0.2
PLATEAU_MIN_INTERVALS = 5

# A class is "ignored" when its test recall is at most IGNORED_RECALL while the accuracy
# over all classes is at least IGNORED_HIDDEN_BY: the average hides it.
IGNORED_RECALL = 0.3
IGNORED_HIDDEN_BY = 0.7
# ... and only when it is rare: the commonest class has at least RARE_RATIO times its
# training samples. On near-balanced data (sequential MNIST: 441 fives against 557 ones) a
# class recalled little is one the net has not learned yet, not one the loss lets it skip,
# and reweighting the classes is not its remedy (the per-class table still shows it).
RARE_RATIO = 2.0


def not_learning(ctx: Context, curve: Curve | None, found: list[dict]) -> list[dict]:
    if curve is None or not ctx.chance_loss:
        return []
    frac = curve.end / ctx.chance_loss
    if frac < NOT_LEARNING_FRACTION:
        return []
    floor = accuracy_floor(ctx)
    _, accs = finite_series(ctx.metrics, "test_acc")
    if not len(accs):
        _, accs = finite_series(ctx.metrics, "train_acc")
    if floor is not None and floor < 1 and len(accs):
        if float(accs[-1]) >= floor + NOT_LEARNING_ACC_MARGIN * (1 - floor):
            return []
    steps = int(curve.steps[-1])
    ev = {"final_train_loss": curve.end, "chance_loss": ctx.chance_loss, "fraction_of_chance": frac, "steps": steps}
    causes = [v["kind"] for v in found if v["kind"] not in ("not_learning", "overfitting", "healthy")]
    if causes:
        cause = f"the {listing([LABEL[c] for c in causes], 'and')} above"
        remedy = f"the remedy for the {LABEL[causes[0]]} above first."
    else:
        opt = ctx.section("optimizer")
        cause = f"{lr_text(ctx)} for {steps} steps"
        if ctx.model in RECURRENT:
            cause += f" ({ctx.model}: a long-range task may need many more steps to leave the plateau)"
        elif opt.get("name") == "sgd" and small_lr(ctx):
            cause += ": sgd steps this small barely move the weights"
        remedy = try_fixes(
            ctx,
            [
                more_steps(ctx),
                (lr_times(ctx, 10) if small_lr(ctx) else lr_times(ctx, 3))
                if opt.get("name") == "sgd"
                else "a different optimizer.lr",
                adam() if opt.get("name") != "adam" else None,
                fix("model.name=lstm", why="or gru") if ctx.model == "rnn" else None,
            ],
        )
    return [
        verdict(
            "not_learning",
            [],
            ev,
            f"not learning: the train loss ends at {fmt(curve.end)} after {steps} steps, "
            f"{frac:.0%} of {chance_text(ctx)}",
            cause,
            remedy,
        )
    ]


def overfitting(ctx: Context, curve: Curve | None) -> list[dict]:
    steps, test = finite_series(ctx.metrics, "test_loss")
    if len(test) < OVERFIT_MIN_EVALS or curve is None:
        return []
    i_min = int(np.argmin(test))
    lo, end = float(test[i_min]), float(np.min(test[-OVERFIT_LASTING:]))
    rise = end - lo
    train_at_min = float(np.interp(steps[i_min], curve.steps, curve.smooth))
    train_end = float(curve.smooth[-1])
    rising = (
        i_min <= len(test) - 1 - OVERFIT_AFTER_MIN
        and rise >= OVERFIT_REL_RISE * lo
        and rise >= OVERFIT_ABS_RISE * curve.scale
        and train_end <= (1 - OVERFIT_TRAIN_FALL) * train_at_min
    )
    gap0 = float(test[0]) - float(np.interp(steps[0], curve.steps, curve.smooth))
    gap = end - train_end  # end: the lasting level of the last evaluations, as above
    wide = (
        end >= OVERFIT_GAP_RATIO * max(train_end, 1e-12)
        and gap >= OVERFIT_GAP_ABS * curve.scale
        and gap >= 2 * max(gap0, 0.0)
    )
    if not (rising or wide):
        return []
    last = float(test[-1])
    ev = {
        "test_loss_min": lo,
        "test_min_step": int(steps[i_min]),
        "test_loss_final": last,
        "train_loss_at_test_min": train_at_min,
        "train_loss_final": train_end,
        "gap_at_test_min": lo - train_at_min,
        "gap_final": last - train_end,
    }
    reg, data = reg_section(ctx), ctx.section("data")
    used = [f"{k}={reg[k]}" for k in ("l1", "l2", "dropout", "dropconnect") if reg.get(k)]
    decay = ctx.section("optimizer").get("weight_decay")
    if isinstance(decay, (int, float)) and decay > 0:  # AdamW's decay regularizes as well
        used.append(f"weight_decay={decay}")
    n = data.get("n_train")
    cause = f"{ctx.model} fitting {f'{n} training samples' if n else 'the training set'}"
    cause += f" with {', '.join(used)}" if used else " with no regularization (l1, l2, dropout, weight decay 0)"
    if not reg.get("early_stopping"):
        cause += ", no early stopping"
    ev.update(gap_first_eval=gap0)
    msg = (
        f"overfitting: the test loss rose from {fmt(lo)} (step {int(steps[i_min])}) to "
        f"{fmt(last)} while the train loss fell from {fmt(train_at_min)} to {fmt(train_end)}"
        if rising
        else f"overfitting: the test loss ends at {fmt(float(test[-1]))}, {float(test[-1]) / max(train_end, 1e-12):.3g}x "
        f"the train loss {fmt(train_end)}; the gap grew from {fmt(gap0)} at the first evaluation to {fmt(gap)}"
    )
    return [
        verdict(
            "overfitting",
            [],
            ev,
            msg,
            cause,
            try_fixes(
                ctx,
                [
                    fix("regularization.l2=1.0e-4")
                    if not reg.get("l2")
                    else fix(f"regularization.l2={yaml_number(float(reg['l2']) * 10)}"),
                    fix("regularization.dropout=0.2") if not reg.get("dropout") else None,
                    fix("regularization.early_stopping={patience: 5}") if not reg.get("early_stopping") else None,
                    more_data(ctx),
                    "a smaller model",
                ],
            ),
        )
    ]


def slow(ctx: Context, out: dict[str, Any], found: list[dict]) -> list[dict]:
    """A run that ends far from a fit with no alarm: never just "healthy"."""
    if out.get("kind") != "slow" or any(v["kind"] in ("not_learning", "lr_too_low") for v in found):
        return []
    opt = ctx.section("optimizer")
    falling = out["fall_last_half"] > STILL_FALLING
    ev = {k: out.get(k) for k in ("progress", "accuracy_progress", "fall_last_half", "final_train_loss", "steps")}
    more = more_steps(ctx)
    up = lr_times(ctx, 3, "3x")
    if falling:
        cause = f"{lr_text(ctx)}: still falling after {out['steps']} steps, at this pace it needs many more"
        remedy = [more, up, adam() if opt.get("name") != "adam" else None]
    else:
        cause = f"{lr_text(ctx)}: the loss has flattened far from a fit (too small a step, or too small a model)"
        remedy = [
            up,
            adam() if opt.get("name") != "adam" else None,
            "a wider or deeper model (model.width / model.depth)",
        ]
    return [
        verdict(
            "slow",
            [],
            ev,
            f"slow: the run ends {out['where']}, {'still falling' if falling else 'flat'} over its last half",
            cause,
            try_fixes(ctx, remedy),
        )
    ]


def ignored_class(ctx: Context) -> list[dict]:
    c = ctx.classes
    if not c:
        return []
    recall, counts = c.get("recall") or [], c.get("test_counts") or []
    total = sum(counts)
    if not total:
        return []
    acc = sum(r * n for r, n in zip(recall, counts) if r is not None) / total
    low = [i for i, r in enumerate(recall) if r is not None and r <= IGNORED_RECALL]
    if not low or acc < IGNORED_HIDDEN_BY:
        return []
    train = c.get("train_counts") or []
    if train and len(train) == len(recall):
        low = [i for i in low if train[i] * RARE_RATIO <= max(train)]
        if not low:
            return []
    k = low[0]
    share = train[k] / max(sum(train), 1) if train else None
    most = max(train) if train else 0
    ev = {"class": k, "recall": recall[k], "accuracy": acc, "train_share": share, "train_counts": train}
    cause = (
        f"class {k} is {share:.1%} of the training set ({train[k]} samples against {most} of the commonest): "
        f"never predicting it costs the loss little"
        if share is not None
        else None
    )
    balance = (ctx.section("train") or {}).get("balance", "none")
    items: list[str | Fix] = [
        fix("train.balance=weighted", why="the loss weighs each class by 1/its frequency"),
        fix("train.balance=oversample"),
    ]
    if balance != "none":
        items = [f"a stronger remedy than train.balance: {balance} (more data of class {k}, or train longer)"]
    return [
        verdict(
            "ignored_class",
            [],
            ev,
            f"an ignored class: the test accuracy is {acc:.2f}, but class {k} is recalled {recall[k]:.0%} of the time "
            f"({int(round(recall[k] * counts[k]))} of its {counts[k]} test samples): the average hides it",
            cause,
            try_fixes(ctx, items),
        )
    ]

"""Gradients across layers and through time: divergence, vanishing and exploding gradients."""

from __future__ import annotations

import math

import numpy as np

from dlx.diagnosis.context import Context
from dlx.diagnosis.readers import (
    RECURRENT,
    RELU_FAMILY,
    SATURATING,
    adam,
    batch_norm_remedy,
    clip_fix,
    clipped,
    depth_of,
    good_init,
    he_like,
    init_text,
    init_unscaled,
    lr_lower,
    lr_text,
    more_steps,
    norm_none,
    reg_section,
    skip_remedy,
)
from dlx.diagnosis.series import divergence
from dlx.diagnosis.verdicts import fix, fmt, try_fixes, verdict

# ---------------------------------------------------------------- gradients across layers
# Judge the "sustained" part of a run: skip the first 20% of steps, where an
# init transient is expected and not a verdict on its own.
SUSTAINED_FROM = 0.2
# Input-layer gradient norm below this fraction of the output layer's, sustained:
# each layer then learns 1000x slower than the top one. Healthy ReLU+He nets sit
# within a factor of ~10 either way; a 10-layer sigmoid net is near 1e-6.
VANISHING_RATIO = 1e-3
# The mirror image: the input layer's gradient 1000x the output layer's.
EXPLODING_RATIO = 1e3
# Or any layer's gradient norm above this, sustained: steps of that size wreck the weights.
EXPLODING_NORM = 1e4

# ---------------------------------------------------------------- through time
# Recurrent models: ||dL/dh_1|| / ||dL/dh_T|| at the last log step below this. Measured
# on the adding problem: the tanh RNN ends at 3e-11 (T = 50, 200 steps) and 3e-8
# (T = 100, 2000 steps, never learns); an LSTM or GRU that has learned to carry its
# state ends at 7e-5 / 3e-4 (T = 50) and 5e-2 (T = 100). 1e-6 sits ~40x from
# either side. (An LSTM still on its plateau reads 1e-13 and is rightly flagged.)
TIME_VANISHING_RATIO = 1e-6
# For the message: how many steps back the gradient keeps at least this fraction
# of the last step's (the reach of the gradient in time).
TIME_REACH = 1e-3


def diverged(ctx: Context) -> list[dict]:
    d = divergence(ctx)
    if not d:
        return []
    finite_rows = np.isfinite(ctx.grad).all(axis=1) if ctx.grad.size else np.zeros(0, bool)
    peak = float(ctx.grad[finite_rows].max()) if finite_rows.any() else None
    step1 = float(ctx.grad[0].max()) if finite_rows.size and finite_rows[0] else None
    ev = {
        "step": d.get("step"),
        "layer": d.get("layer"),
        "loss": d.get("loss"),
        "max_finite_grad_norm": peak,
        "first_step_grad_norm": step1,
    }
    act = ctx.activation
    if step1 is not None and step1 > EXPLODING_NORM:
        cause = (
            f"gradients were already {fmt(step1)} at step 1: {init_text(ctx)} through "
            f"{depth_of(ctx)} {act} layers scales the signal up at every layer"
        )
        remedy = try_fixes(ctx, [fix(f"init={good_init(act)}"), clip_fix(ctx), batch_norm_remedy(ctx)])
    else:
        cause = f"{lr_text(ctx)}: steps too large for this loss surface"
        if not clipped(ctx):
            cause += ", no gradient clipping"
        remedy = try_fixes(
            ctx,
            [lr_lower(ctx), clip_fix(ctx), fix("optimizer.schedule=warmup")],
        )
    layers = list(d.get("layers") or ([d["layer"]] if d.get("layer") else []))
    peak_text = f"; largest finite gradient norm before it {fmt(peak)}" if peak is not None else ""
    return [
        verdict("diverged", layers, ev, f"diverged: {d.get('message', 'non-finite loss')}{peak_text}", cause, remedy)
    ]


def across_layers(ctx: Context) -> list[dict]:
    grad, names = ctx.grad, ctx.names
    finite = grad[np.isfinite(grad).all(axis=1)] if len(grad) else grad
    if len(finite) < 1 or len(names) < 2:
        return []
    window = finite[int(len(finite) * SUSTAINED_FROM) :] if len(finite) >= 5 else finite
    med = np.median(window, axis=0)
    first, top = float(med[0]), float(med[-1])
    ratio = first / top if top > 0 else (math.inf if first > 0 else 1.0)
    ev = {
        "ratio_first_to_last": ratio,
        "median_grad_norm": {n: float(v) for n, v in zip(names, med)},
        "sustained_from_step": int(len(finite) * SUSTAINED_FROM) + 1 if len(finite) >= 5 else 1,
    }
    span = (
        f"sustained over the last {100 - int(SUSTAINED_FROM * 100)}% of steps"
        if len(finite) >= 5
        else f"over {len(finite)} step{'s' if len(finite) > 1 else ''}"
    )
    act, depth = ctx.activation, depth_of(ctx)
    if ratio < VANISHING_RATIO:
        parts = [SATURATING.get(act, act), f"through {depth} layers", f"with {init_text(ctx)}"]
        if ctx.model == "resnet" and ctx.section("model").get("residual") is False:
            parts.append("and no skip connections")
        elif norm_none(ctx):
            parts.append("and no normalization")
        remedy = []
        if act in SATURATING:
            remedy.append(fix("activation=relu", "init=kaiming_normal"))
        elif act in RELU_FAMILY and not he_like(ctx.init):
            remedy.append(fix("init=kaiming_normal"))
        remedy.append(batch_norm_remedy(ctx))
        remedy.append(skip_remedy(ctx))
        if ctx.section("optimizer").get("name") == "sgd":
            remedy.append(adam("per-weight step sizes"))
        return [
            verdict(
                "vanishing",
                [names[0], names[-1]],
                ev,
                f"vanishing gradients: {names[0]}'s gradient norm is {fmt(ratio)} of "
                f"{names[-1]}'s (median {fmt(first)} vs {fmt(top)}, {span})",
                " ".join(parts),
                try_fixes(ctx, remedy),
            )
        ]
    big = EXPLODING_NORM < float(med.max())
    if ratio > EXPLODING_RATIO or big:
        if ratio > EXPLODING_RATIO:
            layers = [names[0], names[-1]]
            msg = (
                f"exploding gradients: {names[0]}'s gradient norm is {fmt(ratio)}x {names[-1]}'s "
                f"(median {fmt(first)} vs {fmt(top)}, {span})"
            )
        else:
            layers = [names[int(np.argmax(med))]]
            msg = (
                f"exploding gradients: median gradient norm {fmt(float(med.max()))} at {layers[0]} "
                f"(above {fmt(EXPLODING_NORM)}, {span})"
            )
        step1 = float(finite[0].max())
        if ctx.model in RECURRENT and (step1 > EXPLODING_NORM / 10 or init_unscaled(ctx) or ctx.init == "orthogonal"):
            # Through time, not depth: W_hh multiplies the state (and dL/dh) at every step.
            steps = ctx.section("data").get("length")
            cause = (
                f"{init_text(ctx)} with {act} in a {ctx.model}: the recurrent matrix W_hh scales the "
                f"state and its gradient by up to its largest singular value at each of "
                f"{steps or 'the'} time steps"
            )
            remedy = [
                fix("init=orthogonal", why="gain 1: singular values 1")
                if ctx.init != "orthogonal" or ctx.section("init").get("gain", 1) != 1
                else None,
                fix("init=default") if ctx.init != "default" else None,
                clip_fix(ctx),
                fix("model.name=lstm", why="or gru: a gated, additive state") if ctx.model == "rnn" else None,
            ]
        elif step1 > EXPLODING_NORM / 10 or init_unscaled(ctx):
            # Large from the start: the init (and depth) scale the signal up layer after layer.
            cause = f"{init_text(ctx)} through {depth} {act} layers"
            remedy = [
                fix(f"init={good_init(act)}") if ctx.init != good_init(act) else None,
                clip_fix(ctx),
                batch_norm_remedy(ctx),
                lr_lower(ctx),
            ]
        else:
            # Ordinary at step 1, huge later: the steps grew the weights.
            cause = f"gradients grew from {fmt(step1)} at step 1 under {lr_text(ctx)}"
            remedy = [lr_lower(ctx), clip_fix(ctx), batch_norm_remedy(ctx)]
        if not clipped(ctx):
            cause += ", no gradient clipping"
        return [verdict("exploding", layers, ev, msg, cause, try_fixes(ctx, remedy))]
    return []


def time_rows(ctx: Context) -> list[tuple[str, np.ndarray]]:
    tg = ctx.time_grad
    if tg is None or len(tg) == 0:
        return []
    rows = [np.asarray([np.nan if v is None else v for v in row], dtype=float) for row in tg]
    # Rows follow the probed recurrent layers (every probed layer but the head `out`).
    names = [n for n in ctx.names if n != "out"]
    return [(names[i] if i < len(names) else f"recurrent layer {i}", r) for i, r in enumerate(rows)]


def vanishing_through_time(ctx: Context) -> list[dict]:
    rows = time_rows(ctx)
    if not rows:
        return []
    tbptt = ctx.section("train").get("tbptt")
    hits, ev = [], {}
    for name, row in rows:
        if len(row) < 2 or not np.isfinite(row).all():
            continue
        # A reverse-direction layer ends its pass at t = 1: its gradient flows toward t = T.
        back = row[::-1] if name.endswith("_reverse") else row
        near = float(back[-1])
        if not near > 0:
            continue
        T = len(back)
        # Truncated BPTT cuts the path on purpose: judge only the steps it keeps.
        span = min(int(tbptt), T) if tbptt else T
        far = float(back[T - span])
        ratio = far / near
        within = np.flatnonzero(back >= TIME_REACH * near)
        reach = T - int(within[0]) if len(within) else 1
        # The per-step rate from the farthest step that still got any gradient: float32
        # rounds anything below ~1e-45 to 0, which a plain RNN reaches within 100 steps.
        alive = np.flatnonzero(back[T - span :] > 0)
        k = T - span + int(alive[0]) if len(alive) else T - 1
        decay = float((back[k] / near) ** (1 / (T - 1 - k))) if T - 1 - k > 0 else 1.0
        ev[name] = {
            "ratio_first_to_last": ratio,
            "first": far,
            "last": near,
            "steps": span,
            "reach_steps": reach,
            "decay_per_step": decay,
        }
        if ratio < TIME_VANISHING_RATIO:
            hits.append(name)
    if not hits:
        return []
    worst = min(hits, key=lambda n: ev[n]["ratio_first_to_last"])
    e = ev[worst]
    model, act = ctx.model, ctx.activation
    span = e["steps"]
    if model == "rnn":
        cause = (
            f"rnn with {act} over {span} steps: each step multiplies the gradient by W_hh^T and "
            f"{act}' (<= 1), so it shrinks geometrically ({fmt(e['decay_per_step'])} per step here)"
        )
    else:
        cause = (
            f"{model} over {span} steps: its gates have not (yet) learned to keep the cell state; "
            f"the gradient still shrinks {fmt(e['decay_per_step'])} per step"
        )
    if model == "rnn":
        remedy = [fix("model.name=lstm", why="or gru: a gated, additive state carries the gradient")]
    else:
        remedy = [
            more_steps(ctx, "gates open as they learn"),
            fix("init={name: default, bias: 1.0}", why="forget gates open"),
        ]
    remedy.append("an attention model that sees every step directly")
    text, fixes = try_fixes(ctx, remedy)
    clip = (
        f"clip_norm: {reg_section(ctx)['clip_norm']} (set here)"
        if reg_section(ctx).get("clip_norm")
        else "gradient clipping"
    )
    tail = (
        f" Not a fix: {clip} only tames exploding gradients, and a shorter train.tbptt cuts the long path on purpose."
    )
    return [
        verdict(
            "vanishing_through_time",
            hits,
            ev,
            f"vanishing gradient through time: in {worst}, ||dL/dh|| at t={'T' if worst.endswith('_reverse') else 1} "
            f"is {fmt(e['ratio_first_to_last']) if e['first'] > 0 else '0 (underflow)'} of the last step's ({fmt(e['first'])} vs "
            f"{fmt(e['last'])}); it keeps >= {TIME_REACH:g} of it only {e['reach_steps']} of "
            f"{span} steps back",
            cause,
            (text + tail, fixes),
        )
    ]

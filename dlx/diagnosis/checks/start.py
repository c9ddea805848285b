"""The start, root causes of what follows: units that start identical (symmetry) and an init
that scales the signal per layer or saturates it from step 0 (init_scale, read from the
step-0 init check); and whether the start was sane, so later trouble is the steps'.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dlx.components.activations import SATURATING_STD
from dlx.diagnosis.checks.gradients import EXPLODING_NORM
from dlx.diagnosis.context import Context
from dlx.diagnosis.readers import (
    RELU_FAMILY,
    SATURATING,
    ZERO_AT_ZERO,
    batch_norm_remedy,
    good_init,
    init_text,
    norm_none,
    skip_remedy,
)
from dlx.diagnosis.verdicts import fix, fmt, try_fixes, unhonoured_keys, verdict

# Units whose (weights, bias) differ by less than this relative amount are identical copies.
SYMMETRY_SPREAD = 1e-6

# ---------------------------------------------------------------- the start (root causes)
# The step-0 init check (initcheck.py) gives each linked layer's variance gain. A
# gain g per layer compounds: over n layers the top layer sees g^n of the signal.
# Beyond this factor either way the init is the root cause of what follows
# (Xavier + ReLU halves it per layer: 30 layers reach 2e-9, and the run sits at
# chance; N(0, 1) + ReLU on 32-wide layers multiplies it by 16 per layer and
# diverges at step 4; PyTorch's default init + ReLU, 1/6 per layer, is flagged
# from 5 layers on). He + ReLU, Xavier + tanh near 0 and batch norm stay ~1.
INIT_SIGNAL_FACTOR = 1e3
# Saturating activations: the init is too large when at least this fraction of the
# checked layers feeding the activation start with a pre-activation std beyond its
# saturation point (its spec's saturating_std: tanh 2, sigmoid 4). N(0, 1) + tanh on
# 32-64 wide layers starts at std 5-8 in every layer; Xavier + tanh at ~0.6-1.
INIT_SATURATED_LAYERS = 0.5
# Step-1 gradients "in range": the input layer's gradient within this factor of the
# output layer's either way, and no layer's above EXPLODING_NORM / 10. Healthy
# starts measured 0.2-10 (the synthetic sets), a 10-layer sigmoid net 1e-6.
SANE_STEP1_RATIO = 100.0


def symmetry(ctx: Context) -> list[dict]:
    spread = ctx.last.get("unit_spread")
    if spread is None or len(ctx.names) < 2:
        return []
    # The output layer is left out: its units are different classes, symmetric or not.
    same = [n for n, s in zip(ctx.names[:-1], spread[:-1]) if s is not None and s < SYMMETRY_SPREAD]
    if not same:
        return []
    init = ctx.section("init")
    act = ctx.activation
    frozen = init.get("name") == "zeros" and act in ZERO_AT_ZERO and not init.get("bias")
    if frozen:
        cause = (
            f"init: zeros with {act} (0 at 0) and zero biases: every hidden activation is 0, so no "
            f"hidden weight ever gets a gradient (only the output bias learns)"
        )
    elif init.get("name") in ("zeros", "constant"):
        cause = (
            f"init: {init.get('name')}: every unit of a layer starts identical, so each gets the "
            f"same gradient and they stay copies (a layer of many units acts as one)"
        )
    else:
        cause = "units of a layer started identical (or collapsed together): nothing tells them apart"
    # Measured (tests/test_symmetry_dropout.py): dropout's masks give each unit its own
    # gradient, so they break a constant init (and zeros with sigmoid), but slowly and
    # unreliably (tanh + constant 0.1 + dropout 0.2: test accuracy 0.33 / 0.98 / 0.95 over
    # three seeds); with zeros and an activation that is 0 at 0 they only mask zeros.
    dropout = (
        "dropout cannot break it here: every activation it masks is 0"
        if frozen
        else "dropout breaks it only slowly and unreliably (each unit's own mask gives it its own "
        "gradient): use a random init"
    )
    return [
        verdict(
            "symmetry",
            same,
            {n: float(s) for n, s in zip(ctx.names, spread) if s is not None and math.isfinite(s)},
            f"symmetric units: every unit in {', '.join(same)} is identical (unit spread < {SYMMETRY_SPREAD:g})",
            cause,
            try_fixes(
                ctx,
                [
                    fix(f"init={good_init(act)}", why=f"random weights break the symmetry; {dropout}"),
                    # A saturating unit also starts slow at depth: ReLU with He init learns at once.
                    fix("activation=relu", "init=kaiming_normal") if act in SATURATING else None,
                ],
            ),
        )
    ]


def gain_rows(ctx: Context) -> list[dict[str, Any]]:
    """The longest chain (in compounding: the largest |log| of its product) of consecutive
    init-check rows, each fed by the one before, whose gain the theory gives and the
    measurement agrees with. A row without a gain (a skip connection, a norm or a pool in
    between) ends a chain: a residual net's gains never compound past one block."""
    chains: list[list[dict[str, Any]]] = [[]]
    for r in ctx.init_check or []:
        if (
            r.get("predicted_gain") is not None
            and r.get("verdict") in ("kept", "grows", "shrinks")
            and r["predicted_gain"] > 0
        ):
            chains[-1].append(r)
        elif chains[-1]:
            chains.append([])
    return max(chains, key=lambda c: abs(sum(math.log(r["predicted_gain"]) for r in c)))


def init_scale(ctx: Context) -> list[dict]:
    """The init, read from the step-0 init check: a signal that shrinks or grows by a
    constant factor per layer, or saturating units from the first step."""
    act, scheme = ctx.activation, ctx.init
    fit = good_init(act)
    rows = gain_rows(ctx)
    gains = np.array([r["predicted_gain"] for r in rows], dtype=float)
    total = float(np.prod(gains)) if len(gains) else 1.0
    if len(gains) >= 2 and not 1 / INIT_SIGNAL_FACTOR <= total <= INIT_SIGNAL_FACTOR:
        g = float(np.exp(np.log(gains).mean()))  # the per-layer factor (geometric mean)
        mid = rows[len(rows) // 2]
        scale = mid["fan_in"] * mid["weight_var"]
        c = g / scale if scale > 0 else float("nan")
        way = "shrinks" if total < 1 else "grows"
        ev = {
            "gain_per_layer": g,
            "layers": len(rows),
            "signal_factor": total,
            "scheme": scheme,
            "weight_var_times_fan_in": scale,
            "activation_passes": c,
            "gains": {r["layer"]: r["predicted_gain"] for r in rows},
        }
        msg = (
            f"badly scaled init: {scheme} {way} the signal's variance {fmt(g)}x at each of {len(rows)} "
            f"layers at step 0, so the top layer starts with {fmt(total)} of the first layer's "
            f"(the init check's gains)"
        )
        cause = (
            f"init: {scheme} draws Var(W) = {mid.get('rule') or '?'} = {fmt(scale)}/fan_in, and {act} "
            f"passes on {fmt(c)}x of its input's variance: each layer multiplies it by {fmt(g)}"
        )
        if act in RELU_FAMILY and way == "shrinks":
            cause += " (a ReLU zeroes half its inputs: Var(W) = 2/fan_in keeps the gain at 1, He et al. 2015)"
        remedy = [
            fix(f"init={fit}", why=f"its variance keeps the gain near 1 for {act}") if scheme != fit else None,
            batch_norm_remedy(ctx),
            skip_remedy(ctx),
        ]
        return [verdict("init_scale", [r["layer"] for r in rows], ev, msg, cause, try_fixes(ctx, remedy))]
    sat = SATURATING_STD.get(act)
    checked = [r for r in (ctx.init_check or [])[:-1] if r.get("measured_var") is not None]
    # The check measures W x; a norm layer between it and the activation (regularization.norm,
    # where the model has one) hands the activation unit-variance inputs whatever the init:
    # nothing saturates at step 0 (measured: N(0, 1) init, 10 tanh layers, batch norm: 0.965).
    normed = not norm_none(ctx) and "regularization.norm" not in unhonoured_keys(ctx)
    if sat and checked and not normed:
        over = [r for r in checked if r["measured_var"] > sat * sat]
        if len(over) >= max(1, INIT_SATURATED_LAYERS * len(checked)):
            stds = sorted(math.sqrt(r["measured_var"]) for r in over)
            med = stds[len(stds) // 2]
            ev = {
                "saturated_layers": [r["layer"] for r in over],
                "preactivation_std_median": med,
                "saturates_beyond_std": sat,
                "scheme": scheme,
                "preactivation_std": {r["layer"]: math.sqrt(r["measured_var"]) for r in checked},
            }
            msg = (
                f"badly scaled init: {scheme} starts {len(over)} of {len(checked)} {act} layers with "
                f"pre-activations of std {fmt(med)} (median) at step 0, beyond {act}'s saturation "
                f"point (~{sat:g}): the units start saturated, their derivatives near 0"
            )
            cause = f"{init_text(ctx)} is too large for {SATURATING.get(act, act)}"
            remedy = [
                fix(f"init={fit}", why="pre-activations of std ~1") if scheme != fit else None,
                batch_norm_remedy(ctx),
            ]
            return [verdict("init_scale", ev["saturated_layers"], ev, msg, cause, try_fixes(ctx, remedy))]
    return []


def sane_start(ctx: Context, found: list[dict]) -> bool:
    """The init and the first step are in range, so what went wrong later was the steps."""
    if any(v["kind"] in ("init_scale", "symmetry") for v in found):
        return False
    if not ctx.grad.size or not np.isfinite(ctx.grad[0]).all():
        return bool(ctx.grad.size == 0)
    g = ctx.grad[0]
    if float(g.max()) > EXPLODING_NORM / 10:
        return False
    if len(g) >= 2 and g[-1] > 0:
        return 1 / SANE_STEP1_RATIO <= float(g[0] / g[-1]) <= SANE_STEP1_RATIO
    return True

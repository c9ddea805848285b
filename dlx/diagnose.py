"""Verdicts read from the probe series: what went wrong (or right), and the evidence.

Thresholds are named constants; each says why it sits where it does. A verdict
is a plain dict (kind, layers, evidence, message) so it goes into summary.json
as it is.
"""
from __future__ import annotations

from typing import Any

import numpy as np

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
# ReLU units off for the whole probe batch, per layer: above half the layer is dead weight.
DEAD_FRACTION = 0.5
# Saturating units within the margin of a bound: above half, the layer passes almost no gradient.
SATURATED_FRACTION = 0.5
# Units whose (weights, bias) differ by less than this relative amount are identical copies.
SYMMETRY_SPREAD = 1e-6


def _fmt(x: float) -> str:
    return f"{x:.2g}" if abs(x) < 1e-2 or abs(x) >= 1e4 else f"{x:.3g}"


def diagnose(names: list[str], grad: np.ndarray, last: dict[str, Any], act_names: list[str],
             activation: str, relu_dead: bool, diverged: dict | None) -> list[dict]:
    """Verdicts for one run.

    names/grad: probed layers (input first) and their per-step gradient norms [steps, L];
    last: the last interval record (activation stats, unit spread); diverged: the trainer's
    divergence record, if any.
    """
    out: list[dict] = []
    if diverged:
        out.append({"kind": "diverged", "layers": diverged.get("layers", []),
                    "evidence": {"step": diverged["step"], "loss": diverged.get("loss")},
                    "message": f"diverged: {diverged['message']}"})
    if "unit_spread" in last and len(names) >= 2:
        same = [n for n, s in zip(names[:-1], last["unit_spread"][:-1]) if s < SYMMETRY_SPREAD]
        if same:
            out.append({"kind": "symmetry", "layers": same,
                        "evidence": {n: float(s) for n, s in zip(names, last["unit_spread"])},
                        "message": f"symmetric units: every unit in {', '.join(same)} is identical "
                                   f"(zero/constant init: the gradient cannot tell them apart)"})
    finite = grad[np.isfinite(grad).all(axis=1)] if len(grad) else grad
    if len(finite) >= 1 and len(names) >= 2:
        window = finite[int(len(finite) * SUSTAINED_FROM):] if len(finite) >= 5 else finite
        med = np.median(window, axis=0)
        first, top = med[0], med[-1]
        ratio = first / top if top > 0 else (np.inf if first > 0 else 1.0)
        ev = {"ratio_first_to_last": float(ratio), "median_grad_norm": {n: float(v) for n, v in zip(names, med)}}
        if ratio < VANISHING_RATIO:
            out.append({"kind": "vanishing", "layers": [names[0], names[-1]], "evidence": ev,
                        "message": f"vanishing gradients: {names[0]}'s gradient norm is {_fmt(ratio)} of "
                                   f"{names[-1]}'s (median {_fmt(first)} vs {_fmt(top)}, over the last "
                                   f"{100 - int(SUSTAINED_FROM * 100)}% of steps)"})
        elif ratio > EXPLODING_RATIO:
            out.append({"kind": "exploding", "layers": [names[0], names[-1]], "evidence": ev,
                        "message": f"exploding gradients: {names[0]}'s gradient norm is {_fmt(ratio)}x "
                                   f"{names[-1]}'s (median {_fmt(first)} vs {_fmt(top)})"})
        elif med.max() > EXPLODING_NORM:
            big = names[int(np.argmax(med))]
            out.append({"kind": "exploding", "layers": [big], "evidence": ev,
                        "message": f"exploding gradients: median gradient norm {_fmt(med.max())} at {big} "
                                   f"(above {_fmt(EXPLODING_NORM)})"})
    if relu_dead and "act_dead" in last:
        dead = [(n, f) for n, f in zip(act_names, last["act_dead"]) if f >= DEAD_FRACTION]
        if dead:
            worst = max(dead, key=lambda t: t[1])
            out.append({"kind": "dead_units", "layers": [n for n, _ in dead],
                        "evidence": {n: float(f) for n, f in dead},
                        "message": f"dead units: {len(dead)} layer(s) with >= {int(DEAD_FRACTION * 100)}% "
                                   f"dead ReLUs (worst {worst[0]}: {worst[1]:.0%})"})
    if "act_saturated" in last:
        sat = [(n, f) for n, f in zip(act_names, last["act_saturated"]) if f >= SATURATED_FRACTION]
        if sat:
            worst = max(sat, key=lambda t: t[1])
            out.append({"kind": "saturation", "layers": [n for n, _ in sat],
                        "evidence": {n: float(f) for n, f in sat},
                        "message": f"saturation: {len(sat)} {activation} layer(s) with >= "
                                   f"{int(SATURATED_FRACTION * 100)}% of outputs at a bound "
                                   f"(worst {worst[0]}: {worst[1]:.0%})"})
    if not out:
        out.append({"kind": "healthy", "layers": [], "evidence": {},
                    "message": "healthy: gradients reach every layer at comparable sizes"})
    return out


def headline(verdicts: list[dict]) -> str:
    """The one-line verdict: the first (most severe) finding."""
    return verdicts[0]["message"] if verdicts else "no verdict"

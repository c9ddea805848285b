"""What the research instruments of a run say (summary.json "instruments"), from their
records alone (dlx.run.instruments writes them): the sharpness's course against its
stability threshold, the gradient noise scale against the batch size, the layers' ranks,
the exact Hessian's negative eigenvalues, and what the instruments cost.

Torch-free. Each sentence names the step it speaks of: "at the end" only for a measurement
at the run's last step, "at step 0 only" when that is all there is.
"""

from __future__ import annotations

from typing import Any

from dlx.core.fmt import num


def when(rec: dict[str, Any], count: int) -> str:
    """Which measurement `rec` (the last of `count`) is, in words."""
    step, total = rec.get("step"), rec.get("total_steps")
    if isinstance(total, int) and step is not None and step >= total:
        return f"at the end (step {step})"
    if step == 0 and count == 1:
        return "at step 0 only (no later measurement)"
    if isinstance(total, int):
        return f"at step {step} (the last measurement; the run went to step {total})"
    return f"at step {step} (the last measurement)"


def _sharpness(records: list[dict[str, Any]]) -> list[str]:
    sharp = [(r["step"], r["sharpness"]) for r in records if r.get("sharpness")]
    if not sharp:
        return []
    key = "preconditioned_top" if any(s.get("preconditioned") for _, s in sharp) else "top"
    vals = [(st, s.get(key)) for st, s in sharp if isinstance(s.get(key), (int, float))]
    if not vals:
        return []
    thr = next((s.get("threshold") for _, s in reversed(sharp) if s.get("threshold")), None)
    rule = sharp[-1][1].get("rule", "")
    # Older records have no full_batch: they read as full-batch, as before.
    minibatch = any(s.get("full_batch") is False for _, s in sharp)
    (s0, v0), (s1, v1) = vals[0], vals[-1]
    peak_step, peak = max(vals, key=lambda t: t[1])
    what = "preconditioned sharpness" if key != "top" else "sharpness"
    if len(vals) == 1:
        text = f"{what}: {num(v0)} at step {s0} only"
    else:
        text = f"{what}: {num(v0)} at step {s0}, peak {num(peak)} at step {peak_step}, {num(v1)} at step {s1}"
    if not thr:
        return [text + f" ({rule})"]
    text += f"; threshold {num(thr)} ({rule})"
    late = [v for _, v in vals[len(vals) // 2 :]]
    if peak > thr:
        if minibatch:
            text += (
                ": the sharpness went past it; with minibatch steps that is only an indication (the rule is "
                "gradient descent's on the full-batch loss, and a minibatch step's own curvature differs)"
            )
        else:
            text += ": the sharpness went past it (each step left the local quadratic's stable range)"
    if len(vals) > 1 and late and min(late) > 0.8 * thr and max(late) < 1.25 * thr and peak > 0.9 * thr:
        text += "; it hovered at the threshold over the second half: the edge of stability (Cohen et al. 2021)"
        if minibatch:
            text += ", a full-batch phenomenon: here an indication only"
    return [text]


def _noise(records: list[dict[str, Any]]) -> list[str]:
    noise = [r for r in records if r.get("noise")]
    if not noise:
        return []
    last_rec = noise[-1]
    last = last_rec["noise"]
    at = when(last_rec, len(noise))
    b, batch, pop = last.get("b_simple"), last.get("batch"), last.get("population")
    if b is None:
        return [
            f"gradient noise: {at} the mean gradient is lost in the per-sample noise (|G|^2 estimated at or below 0, "
            f"B_simple beyond measure) at batch size {batch}"
        ]
    head = f"gradient noise scale B_simple = {num(b)} {at} (McCandlish et al. 2018)"
    if not batch:
        return [head]
    if last.get("full_batch") or (pop and batch >= pop):
        # No minibatch to advise on: the steps are the whole set's gradient, without noise.
        return [
            f"{head}; the batch is the whole training set ({batch}): its steps carry no sampling noise, and a "
            f"minibatch of B would make about 1/(1 + {num(b)}/B) of a full step's progress"
        ]
    if b > 4 * batch:
        rel = f"{b / batch:.0f}x the batch size {batch}: a bigger batch would still make nearly proportionally more progress per step"
    elif b < batch / 4:
        rel = f"{batch / b:.0f}x below the batch size {batch}: a smaller batch would make about as much progress per sample, at less cost"
    else:
        rel = f"near the batch size {batch}: the batch is about the noise scale"
    text = f"{head}, {rel}"
    if last_rec.get("step") == 0 and len(noise) == 1:
        text += " (measured at the init only: the noise scale grows as training goes on)"
    return [text]


def _spectra(records: list[dict[str, Any]]) -> list[str]:
    spectra = [r for r in records if r.get("spectra")]
    if not spectra:
        return []
    last = spectra[-1]["spectra"]
    at = when(spectra[-1], len(spectra))
    notes = [f"stable rank {at}: " + ", ".join(f"{n} {num(s.get('stable_rank'), 2)}" for n, s in last.items())]
    low = [n for n, s in last.items() if s.get("count", 0) > 1 and s.get("stable_rank", 2) < 1.05]
    if low:
        notes.append(
            f"{', '.join(low)} rank ~1: every unit of the layer does the same (the symmetry of a constant init)"
        )
    moved = {n: s.get("from_init") for n, s in last.items() if isinstance(s.get("from_init"), (int, float))}
    if moved:
        notes.append("distance from init |W-W0|/|W0|: " + ", ".join(f"{n} {num(v, 2)}" for n, v in moved.items()))
    return notes


def _hessian(records: list[dict[str, Any]]) -> list[str]:
    hess = [(r["step"], r["hessian"]) for r in records if r.get("hessian")]
    if not hess:
        return []

    def said(step, h):
        top = max(abs(h["max"]), 1e-30)
        return (
            f"step {step}: {h['negative']} negative, the lowest {num(h['min'])} ({h['min'] / top:+.1%} of the largest)"
        )

    worst = min(hess, key=lambda t: t[1]["min"] / max(abs(t[1]["max"]), 1e-30))
    last = next(r for r in reversed(records) if r.get("hessian"))
    total = last.get("total_steps")
    ended = isinstance(total, int) and last["step"] >= total
    return [
        "Hessian eigenvalues (exact): "
        + said(*hess[0])
        + "; most negative at "
        + said(*worst)
        + ("; at the end, " if ended else "; at the last measurement, ")
        + said(*hess[-1])
        + " (negative ones: a saddle, which descent leaves along them; none: a minimum)"
    ]


def _modes(records: list[dict[str, Any]]) -> list[str]:
    kept = [r for r in records if r.get("modes")]
    if not kept:
        return []
    last = kept[-1]["modes"]
    pairs = zip(last.get("strength") or [], last.get("teacher") or [])
    return [
        f"mode strengths {when(kept[-1], len(kept))} (learned / teacher's): "
        + ", ".join(f"{num(a, 3)}/{num(t, 3)}" for a, t in pairs)
    ]


def digest(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The instruments of a run in a few sentences (summary.json "instruments"): the
    sharpness's course against its threshold, the noise scale against the batch size, the
    layers' ranks, and what the instruments cost."""
    if not records:
        return None
    notes = _sharpness(records) + _noise(records) + _spectra(records) + _hessian(records) + _modes(records)
    seconds: dict[str, float] = {}
    for r in records:
        for k, v in (r.get("seconds") or {}).items():
            seconds[k] = seconds.get(k, 0.0) + float(v)
    return {"measurements": len(records), "notes": notes, "seconds": {k: round(v, 4) for k, v in seconds.items()}}

"""A verdict is a lesson: a finished lab run's root verdict and the remedy `dlx fix` would try
first for it, as the --set lines the page starts run B with (the run's own config plus
those), so a person sees the divergence (or another verdict) and then its fix side by side.

The remedies are the verdicts' own (summary.json's "fixes", read by many.remedies.candidates,
as `dlx fix` reads them): the lab runs none of them, it names the most direct one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlx.lab.runs import LabError


def lesson_of(run) -> dict[str, Any]:
    """POST /api/runs/{run}/fix's answer for a LabRun: its summary.json's lesson (lesson());
    409 while it trains, and for a run that ended without a summary (it failed)."""
    from dlx.records.folders import SUMMARY_FILE, read_object

    if not run.done:
        raise LabError(
            409, f"run {run.id} is still {run.status}: its lesson is read from its final verdict, when it ends"
        )
    path: Path | None = run.path
    summary = read_object(path / SUMMARY_FILE)[0] if path is not None else None
    if not summary or not summary.get("verdicts"):
        raise LabError(409, f"run {run.id} ended ({run.status}) without a verdict, so there is no remedy to try")
    return lesson(summary)


def lesson(summary: dict[str, Any]) -> dict[str, Any]:
    """The first root verdict with a remedy dlx can run, and that remedy (the most direct of
    the verdict's fixes, as `dlx fix` orders them): {"kind", "message", "cause", "remedy" (the
    change in words), "advice" (the verdict's whole remedy in words), "sets" (KEY=VALUE
    lines), "answers" (the verdict kinds it should remove)}. 409 for a healthy run and for
    verdicts whose remedies no --set expresses."""
    from dlx.many.remedies import candidates

    roots, cands = candidates(summary)
    if not roots:
        said = summary.get("verdict") or "healthy"
        raise LabError(409, f"there is nothing to fix, the run's verdict is {said}")
    if not cands:
        advice = next((v.get("remedy") for v in summary["verdicts"] if v.get("kind") == roots[0]), None)
        raise LabError(
            409,
            f"no remedy of {', '.join(roots)} is a config change dlx can run"
            + (f"; the verdict advises: {advice}" if advice else ""),
        )
    best = cands[0]
    verdict = next(v for v in summary["verdicts"] if isinstance(v, dict) and v.get("kind") == best.targets[0])
    return {
        "kind": verdict["kind"],
        "message": verdict.get("message"),
        "cause": verdict.get("cause"),
        "remedy": best.text or best.label,
        "advice": verdict.get("remedy"),
        "sets": list(best.sets),
        "answers": list(best.targets),
    }

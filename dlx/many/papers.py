"""`dlx examples check NAME`: train a papers example and hold its measures to what it expects.

A papers example (dlx.config.catalogue, the "papers" section) names a paper, its
claim and `# expected:` lines over dlx.config.measures' measures. check_example trains
it (at its `# test:` scale when quick), and the `# vs:` run beside it when a line
divides by it, computes every measure, draws the `# look:` panels into the run folder,
and returns a PaperCheck: PASS when every line holds.

It lives in dlx.many, above the one-run facade: a check is one or two api.train runs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from dlx.api import train
from dlx.config.catalogue import PAPERS, Example, course, find_example, load_examples
from dlx.config.measures import MEASURES, Expected, MeasureError
from dlx.core.errors import UsageError
from dlx.records.layout import PAPER_PICTURE_FILE
from dlx.results import Run


@dataclass
class Line:
    """One `# expected:` line and what the run measured for it."""

    expected: Expected
    measured: float
    passed: bool
    note: str = ""  # why there is no number (a MeasureError), else ""


@dataclass
class PaperCheck:
    example: Example
    quick: bool
    run: Run
    vs_run: Run | None
    lines: list[Line] = field(default_factory=list)
    picture: Path | None = None
    seconds: float = 0.0
    # Every run trained: one per `# over:` value (run is the first), then the vs runs.
    runs: list[Run] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.lines) and all(line.passed for line in self.lines)


def paper_examples(folder: str | Path | None = None) -> list[Example]:
    """The papers section's examples, in course order."""
    return next((group for title, group in course(load_examples(folder)) if title == PAPERS), [])


def _paper(name: str, folder: str | Path | None) -> Example:
    ex = find_example(name, folder)
    if not ex.is_paper:
        papers = ", ".join(e.name for e in paper_examples(folder)) or "none"
        raise UsageError(
            f"{ex.name} is not a papers example (its header has no '# paper:' line), so there "
            f"is nothing to check; the papers examples: {papers}"
        )
    if ex.problems:
        raise UsageError(f"{ex.path}: its header cannot be checked: " + "; ".join(ex.problems))
    return ex


def _measure(exp: Expected, runs: list[Run], vs_runs: list[Run] | None, values: list[str]) -> Line:
    m = MEASURES[exp.measure]

    # A measure of one run reads the first (the only one, but for an `# over:` family).
    def of(family: list[Run] | None) -> float:
        assert family, "the catalogue holds a vs line to its '# vs:' run"
        return m.fn(values, family) if m.over else m.fn(family[0])

    try:
        if exp.of_vs:
            value = of(vs_runs)
        else:
            value = of(runs)
            if exp.vs:
                value = value / of(vs_runs)
    except MeasureError as e:
        return Line(exp, math.nan, False, str(e))
    except ZeroDivisionError:
        return Line(exp, math.inf, False, "the vs run measured 0")
    return Line(exp, value, exp.holds(value))


def _picture(ex: Example, runs: list[Run], values: list[str]) -> Path | None:
    """The `# look:` panels of the runs (the first's alone for a picture of one model) as a PNG
    in the first run's folder; for an `# over:` family, each run's final train accuracy and
    test loss (what its measures read) against the values, a line for the example and its control."""
    run = runs[0]
    if not ex.look or run.path is None:
        return None
    from dlx.views.pictures import PICTURES

    if values and ex.over is not None:
        from dlx.views.families import family_figure

        def finals(family: list[Run], key: str) -> list[float | None]:
            return [(r.summary.get("final") or {}).get(key) for r in family]

        n = len(values)
        families = {"this example": runs[:n]}
        if len(runs) > n:
            families[f"vs: {' '.join(ex.vs_overrides or [])}"] = runs[n:]
        panels = {
            f"final {name.replace('_', ' ')}": {label: finals(family, name) for label, family in families.items()}
            for name in ("train_acc", "test_loss")
        }
        fig = family_figure(ex.over[0], values, panels, title=f"dlx: {ex.name}")
    elif len(runs) > 1 and not any(p in PICTURES for p in ex.look):
        from dlx.views.plots import group_runs, panels_figure

        fig = panels_figure(group_runs([r.series() for r in runs]), ex.look, title=f"dlx: {ex.name}")
    else:
        fig = run.plot(panels=ex.look)
    target = run.path / PAPER_PICTURE_FILE
    fig.savefig(target)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return target


def check_example(
    name: str, quick: bool = False, runs_dir: str | Path = "runs", folder: str | Path | None = None
) -> PaperCheck:
    """Train the papers example `name` (its `# test:` scale when quick) and check its `# expected:` lines."""
    ex = _paper(name, folder)
    scale = list(ex.test_overrides or []) if quick else []
    over = ex.over if any(MEASURES[e.measure].over for e in ex.expected) else None
    values = over[1] if over else []

    def family(extra: list[str]) -> list[Run]:
        if over is None:
            return [train(ex.path, [*scale, *extra], runs_dir=runs_dir, quiet=True)]
        return [train(ex.path, [*scale, *extra, f"{over[0]}={v}"], runs_dir=runs_dir, quiet=True) for v in values]

    start = time.perf_counter()
    runs = family([])
    vs_runs = family(ex.vs_overrides or []) if any(e.needs_vs for e in ex.expected) else None
    seconds = time.perf_counter() - start
    lines = [_measure(e, runs, vs_runs, values) for e in ex.expected]
    every = [*runs, *(vs_runs or [])]
    vs_run = vs_runs[0] if vs_runs else None
    return PaperCheck(ex, quick, runs[0], vs_run, lines, _picture(ex, every, values), seconds, every)

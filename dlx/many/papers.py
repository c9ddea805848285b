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


def _measure(exp: Expected, run: Run, vs_run: Run | None) -> Line:
    fn = MEASURES[exp.measure].fn
    try:
        if exp.of_vs:
            value = fn(vs_run)
        else:
            value = fn(run)
            if exp.vs:
                value = value / fn(vs_run)
    except MeasureError as e:
        return Line(exp, math.nan, False, str(e))
    except ZeroDivisionError:
        return Line(exp, math.inf, False, "the vs run measured 0")
    return Line(exp, value, exp.holds(value))


def _picture(ex: Example, run: Run, vs_run: Run | None) -> Path | None:
    """The `# look:` panels of the run (beside the vs run's, for the panels both draw) as a PNG."""
    if not ex.look or run.path is None:
        return None
    from dlx.views.pictures import PICTURES

    if vs_run is not None and not any(p in PICTURES for p in ex.look):
        from dlx.views.plots import group_runs, panels_figure

        fig = panels_figure(group_runs([run.series(), vs_run.series()]), ex.look, title=f"dlx: {ex.name}")
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
    start = time.perf_counter()
    run = train(ex.path, scale, runs_dir=runs_dir, quiet=True)
    vs_run = None
    if any(e.needs_vs for e in ex.expected):
        vs_run = train(ex.path, [*scale, *(ex.vs_overrides or [])], runs_dir=runs_dir, quiet=True)
    seconds = time.perf_counter() - start
    lines = [_measure(e, run, vs_run) for e in ex.expected]
    return PaperCheck(ex, quick, run, vs_run, lines, _picture(ex, run, vs_run), seconds)

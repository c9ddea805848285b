"""`dlx examples check NAME`: train a papers example and hold its measures to what it expects.

A papers example (dlx.config.catalogue, the "papers" section) names a paper, its
claim and `# expected:` lines over dlx.config.measures' measures. check_example trains
it (at its `# test:` scale when quick), and the `# vs:` run beside it when a line
divides by it, computes every measure, draws the `# look:` panels into the run folder,
and returns a PaperCheck: PASS when every line holds. An example with a `# procedure:`
line runs that instead of one training (RUNNERS: a lottery ticket, a coordinate check)
and its measures read the procedure's record.

It lives in dlx.many, above the one-run facade: a check is api.train runs, or a procedure
of them from this layer (dlx.many.tickets, dlx.many.coordcheck).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from dlx.api import train
from dlx.config.catalogue import PAPERS, Example, course, find_example, load_examples
from dlx.config.measures import MEASURES, Expected, MeasureError
from dlx.config.overrides import config_value
from dlx.core.errors import UsageError
from dlx.records.layout import PAPER_PICTURE_FILE
from dlx.results import Run, load_run


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
    run: Run | None  # None for a procedure that keeps no run (a coordinate check)
    vs_run: Run | None
    lines: list[Line] = field(default_factory=list)
    picture: Path | None = None
    seconds: float = 0.0
    # Every run trained: one per `# over:` value (run is the first), then the vs runs.
    runs: list[Run] = field(default_factory=list)
    # A `# procedure:`'s records (the example's, then the vs one's) and where they are kept.
    records: list[Any] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.lines) and all(line.passed for line in self.lines)

    @property
    def shows(self) -> str:
        """What the picture draws, in a few words."""
        ex = self.example
        if ex.procedure is not None:
            return RUNNERS[ex.procedure[0]].shows
        if ex.over is not None and len(self.runs) > 2:
            return f"final train accuracy and test loss against {ex.over[0]}"
        return ", ".join(ex.look)


def paper_examples(folder: str | Path | None = None) -> list[Example]:
    """The papers section's examples, in course order."""
    return next((group for title, group in course(load_examples(folder)) if title == PAPERS), [])


def _paper(ex: Example, folder: str | Path | None) -> Example:
    """ex, where it can be checked: a papers example whose header is whole."""
    if not ex.is_paper:
        papers = ", ".join(e.name for e in paper_examples(folder)) or "none"
        raise UsageError(
            f"{ex.name} is not a papers example (its header has no '# paper:' line), so there "
            f"is nothing to check; the papers examples: {papers}"
        )
    if ex.problems:
        raise UsageError(f"{ex.path}: its header cannot be checked: " + "; ".join(ex.problems))
    return ex


def _measure(exp: Expected, runs: list[Any], vs_runs: list[Any] | None, values: list[str]) -> Line:
    m = MEASURES[exp.measure]

    # A measure of one run (or a procedure's record) reads the first: the only one, but for
    # an `# over:` family.
    def of(family: list[Any] | None) -> float:
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


def _ticket(ex: Example, overrides: list[str], args: dict, runs_dir: Path) -> tuple[Any, list[Path]]:
    from dlx.many.tickets import ticket

    record = ticket(ex.path, args["rounds"], args["rate"], overrides=overrides, runs_dir=runs_dir)
    return record, [Path(record["record"]), Path(record["figure"])]


def _coordcheck(ex: Example, overrides: list[str], args: dict, runs_dir: Path) -> tuple[Any, list[Path]]:
    from dlx.config.loader import load_config
    from dlx.many.coordcheck import coordcheck
    from dlx.records.coordchecks import coordcheck_paths, write_coordcheck_record

    result = coordcheck(load_config(ex.path, overrides), args["widths"], args["steps"], args["seeds"])
    record, _ = coordcheck_paths(runs_dir, f"{ex.name}-{result.parametrization}")
    write_coordcheck_record(record, result.record())
    return result, [record]


def _coordcheck_picture(ex: Example, records: list[Any], kept: list[Path], runs_dir: Path) -> Path:
    """Each layer's scale against width at the last step, the example's parametrisation beside
    its `# vs:` control's."""
    from dlx.records.coordchecks import coordcheck_paths
    from dlx.views.coordcheck import coordcheck_sides_figure

    vs = " ".join(ex.vs_overrides or [])
    labels = [f"parametrization {r.parametrization}" + (f" (vs: {vs})" if i else "") for i, r in enumerate(records)]
    _, path = coordcheck_paths(runs_dir, f"{ex.name}-{'-'.join(r.parametrization for r in records)}")
    return coordcheck_sides_figure(
        {label: (r.widths, r.layers, r.scales[:, -1]) for label, r in zip(labels, records)},
        f"dlx: {ex.name}: mean |layer output| after step {records[0].steps} against width",
        path,
    )


@dataclass(frozen=True)
class Runner:
    """How one of measures.PROCEDURES runs and what its picture is."""

    # (example, its --set overrides, the procedure's arguments, the runs folder) ->
    # (its record, which the measures read; the files it kept)
    run: Callable[[Example, list[str], dict, Path], tuple[Any, list[Path]]]
    # (example, its records (the example's, then the vs one's), the files kept, the runs folder) -> the PNG
    picture: Callable[[Example, list[Any], list[Path], Path], Path]
    shows: str  # what the picture draws, in a few words


RUNNERS: dict[str, Runner] = {
    "ticket": Runner(
        _ticket,
        lambda ex, records, kept, runs_dir: kept[1],  # dlx ticket's own figure
        "test accuracy against the weights kept, round by round; the random re-init a cross",
    ),
    "coordcheck": Runner(
        _coordcheck,
        _coordcheck_picture,
        "each layer's output scale against width at the last step, this example beside its vs",
    ),
}


def _own_label(ex: Example, run: Run) -> str:
    """The example's label in a family picture: its own values of the keys its `# vs:` line
    sets ("this example (model.depth=1)" beside the control's model.depth=3)."""
    own = []
    for item in ex.vs_overrides or []:
        key, eq, _ = item.partition("=")
        if not eq or key.startswith("-"):
            continue
        value = config_value(run.config, key)
        if value is not None and not isinstance(value, (dict, list)):
            own.append(f"{key}={value}")
    return "this example" + (f" ({', '.join(own)})" if own else "")


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
        families = {_own_label(ex, run): runs[:n]}
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
        fig.suptitle(f"dlx: {ex.name}", fontsize=12)  # the example's name, as in the other pictures, not the run id
    target = run.path / PAPER_PICTURE_FILE
    fig.savefig(target)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return target


def check_example(
    name: str, quick: bool = False, runs_dir: str | Path = "runs", folder: str | Path | None = None
) -> PaperCheck:
    """Train the papers example `name` (its `# test:` scale when quick) and check its `# expected:` lines."""
    return _check(_paper(find_example(name, folder), folder), quick, runs_dir)


def _check(ex: Example, quick: bool, runs_dir: str | Path) -> PaperCheck:
    scale = list(ex.test_overrides or []) if quick else []
    if ex.procedure is not None:
        return _check_procedure(ex, quick, scale, Path(runs_dir))
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


def _check_procedure(ex: Example, quick: bool, scale: list[str], runs_dir: Path) -> PaperCheck:
    """A `# procedure:` example: the procedure, then again with the `# vs:` overrides where a
    line reads it; the measures read their records."""
    assert ex.procedure is not None
    name, args = ex.procedure
    start = time.perf_counter()
    records, kept = [], []
    for extra in ([], *([ex.vs_overrides or []] if any(e.needs_vs for e in ex.expected) else [])):
        record, files = RUNNERS[name].run(ex, [*scale, *extra], args, runs_dir)
        records.append(record)
        kept += files
    seconds = time.perf_counter() - start
    lines = [_measure(e, records[:1], records[1:] or None, []) for e in ex.expected]
    runs = [load_run(row["run"]) for r in records if isinstance(r, dict) for row in r["rows"] if row.get("run")]
    picture = RUNNERS[name].picture(ex, records, kept, runs_dir)
    first = runs[0] if runs else None
    return PaperCheck(ex, quick, first, None, lines, picture, seconds, runs, records, kept)


def check_examples(
    quick: bool = False,
    runs_dir: str | Path = "runs",
    folder: str | Path | None = None,
    on_start: Callable[[Example, int, int], None] | None = None,
    on_check: Callable[[PaperCheck], None] | None = None,
) -> list[PaperCheck]:
    """check_example for every papers example, in course order (the whole gallery: a tool's
    credentials before it is trusted with unknown results). on_start(example, i, n) and
    on_check(check) are told of each as it starts and ends."""
    examples = paper_examples(folder)
    checks = []
    for i, ex in enumerate(examples):
        if on_start is not None:
            on_start(ex, i, len(examples))
        check = _check(_paper(ex, folder), quick, runs_dir)  # the examples read once, not once an entry
        checks.append(check)
        if on_check is not None:
            on_check(check)
    return checks

"""The measures a papers example is checked on, and the grammar of its `# expected:` lines.

A measure is a number read from a finished run's records (summary.json, probes,
instruments.jsonl): a function of a Run (dlx.results.Run, or anything
with its .summary, .probes, .instruments, .config and .path), registered here by name
with a one-line description. MEASURES is the one list: the catalogue holds a header's
measure names to it, `dlx examples check` computes them.

The grammar of one `# expected:` line (an example may have several; all must hold):

    expected: MEASURE OP NUMBER                 e.g. act_var_gain <= 0.5
    expected: MEASURE = NUMBER +- TOLERANCE     e.g. act_var_gain = 0.33 +- 0.05 (or ±)
    expected: MEASURE / vs OP NUMBER            the measure of this run divided by that
                                                of the run the `# vs:` line trains beside it
    expected: vs.MEASURE OP NUMBER              the measure of the `# vs:` run alone (a claim
                                                about the control: "without weight decay it
                                                never generalises")

A measure registered with over=True reads a family of runs: the example's `# over: KEY=V1,V2`
line trains one run per value (and the `# vs:` run per value, where a line needs it).

OP is one of <, <=, >, >=; NUMBER and TOLERANCE are plain decimals or 1e-3 style.
Reading records is plain Python here (no torch), so listing the examples never imports
torch; a measure that needs the saved weights would need the records layer, above this one.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from dlx.core.errors import DlxError


class MeasureError(DlxError):
    """A measure the run's records cannot give (the run lacks the record it reads)."""


@dataclass(frozen=True)
class Measure:
    name: str
    description: str
    fn: Callable[..., float]
    # A measure of a family of runs (an example's `# over: KEY=V1,V2,...`): fn(values, runs),
    # the runs in the values' order; the others are fn(run).
    over: bool = False


MEASURES: dict[str, Measure] = {}


def measure(name: str, description: str, over: bool = False):
    """Register fn(run) -> float (over: fn(values, runs) -> float) as the measure `name`."""

    def register(fn: Callable[..., float]) -> Callable[..., float]:
        MEASURES[name] = Measure(name, description, fn, over)
        return fn

    return register


def _hidden_gains(run: Any) -> list[float]:
    """init_check's measured variance gain of each hidden layer (fc2..fcN: a square layer
    fed by another layer; the first layer's input and the output's few units are not the law)."""
    rows = run.summary.get("init_check") or []
    gains = [r["measured_gain"] for r in rows if r.get("measured_gain") and r.get("layer") != "out"]
    if not gains:
        raise MeasureError("the run has no init check (summary.json 'init_check'): an mlp of depth >= 2 gives one")
    return gains


@measure(
    "act_var_gain",
    "at step 0, the geometric mean over hidden layers of Var(layer output) / Var(its input) (init check)",
)
def act_var_gain(run: Any) -> float:
    gains = _hidden_gains(run)
    return math.exp(sum(math.log(g) for g in gains) / len(gains))


@measure("final_train_loss", "the train loss on the whole training set after the last step")
def final_train_loss(run: Any) -> float:
    value = (run.summary.get("final") or {}).get("train_loss")
    if value is None:
        raise MeasureError("the run has no final train loss (summary.json 'final')")
    return float(value)


def _final(run: Any, key: str) -> float:
    value = (run.summary.get("final") or {}).get(key)
    if value is None:
        raise MeasureError(f"the run has no final {key} (summary.json 'final')")
    return float(value)


@measure("final_train_acc", "the train accuracy on the whole training set after the last step")
def final_train_acc(run: Any) -> float:
    return _final(run, "train_acc")


@measure("final_test_acc", "the test accuracy after the last step")
def final_test_acc(run: Any) -> float:
    return _final(run, "test_acc")


# Fitted and generalised: the accuracy a learner reads as "all of it" (a few points of 1000
# may stay wrong for long after).
FIT_ACC = 0.99


def _first_step(run: Any, key: str, at_least: float) -> int | None:
    return next(
        (int(r["step"]) for r in run.metrics if isinstance(r.get(key), (int, float)) and r[key] >= at_least),
        None,
    )


@measure("steps_to_fit", f"the first logged step whose train accuracy is at least {FIT_ACC}")
def steps_to_fit(run: Any) -> float:
    step = _first_step(run, "train_acc", FIT_ACC)
    if step is None:
        raise MeasureError(f"the run never reached train accuracy {FIT_ACC}: train longer")
    return float(step)


@measure(
    "generalisation_delay",
    f"steps from train accuracy {FIT_ACC} to test accuracy {FIT_ACC} (grokking's delay); "
    "infinite where the test accuracy never gets there",
)
def generalisation_delay(run: Any) -> float:
    fit = steps_to_fit(run)
    gen = _first_step(run, "test_acc", FIT_ACC)
    return math.inf if gen is None else float(gen) - fit


def _time_grad(run: Any) -> list[float]:
    """|dL/dh_t| for t = 1..T of the first recurrent layer (summary.json 'time_grad': one list per layer)."""
    layers = run.summary.get("time_grad") or []
    norms = layers[0] if layers and isinstance(layers[0], list) else layers
    if len(norms) < 2:
        raise MeasureError(
            "the run has no gradient through time (summary.json 'time_grad'): a recurrent model gives it"
        )
    return [float(x) for x in norms]


@measure(
    "time_grad_rate",
    "the gradient through time's factor per step back: (|dL/dh_1| / |dL/dh_T|)^(1/(T-1)), at the last log step",
)
def time_grad_rate(run: Any) -> float:
    norms = _time_grad(run)
    return (norms[0] / norms[-1]) ** (1 / (len(norms) - 1))


@measure(
    "sharpness_over_2_lr",
    "the median sharpness (top Hessian eigenvalue) over the second half of the run, divided by 2/lr",
)
def sharpness_over_2_lr(run: Any) -> float:
    # Each reading's own threshold (2/lr at that step): a schedule moves it.
    points = [
        (r["step"], r["sharpness"]["top"] / r["sharpness"]["threshold"])
        for r in run.instruments
        if isinstance(r.get("sharpness"), dict) and r["sharpness"].get("top") and r["sharpness"].get("threshold")
    ]
    if not points:
        raise MeasureError("the run has no sharpness readings (instruments: {sharpness: true})")
    half = max(s for s, _ in points) / 2
    late = sorted(v for s, v in points if s >= half)
    mid = len(late) // 2
    return late[mid] if len(late) % 2 else (late[mid - 1] + late[mid]) / 2


@measure(
    "mode_time_exponent",
    "the slope of log(steps for a mode to reach half its strength) against log(its strength s): "
    "-1 where a mode's time scales as 1/s (instruments: {modes: true})",
)
def mode_time_exponent(run: Any) -> float:
    readings = [r["modes"] for r in run.instruments if isinstance(r.get("modes"), dict)]
    steps = [r["step"] for r in run.instruments if isinstance(r.get("modes"), dict)]
    if not readings:
        raise MeasureError("the run has no mode strengths (instruments: {modes: true}, data: linear_teacher)")
    teacher = readings[-1]["teacher"]
    halves = []
    for i, s in enumerate(teacher):
        reached = [t for t, r in zip(steps, readings) if r["strength"][i] >= s / 2]
        if not reached:
            raise MeasureError(f"mode {i + 1} (s = {s:g}) never reached half its strength: train longer")
        halves.append(max(reached[0], 1))
    if len(halves) < 2:
        raise MeasureError("a slope needs at least two modes (data.singular_values)")
    xs, ys = [math.log(s) for s in teacher], [math.log(t) for t in halves]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


@measure(
    "smallest_that_fits",
    "the smallest value of the '# over:' key whose run ends with train accuracy 1 (every training "
    "pattern right); infinite where none does",
    over=True,
)
def smallest_that_fits(values: list[str], runs: list[Any]) -> float:
    least = _smallest_fitting(values, runs, 1.0)
    return math.inf if least is None else least


def _smallest_fitting(values: list[str], runs: list[Any], train_acc: float) -> float | None:
    """The smallest value of the family whose run ends with at least this train accuracy."""
    return min((float(v) for v, run in zip(values, runs) if _final(run, "train_acc") >= train_acc), default=None)


def _threshold_and_losses(values: list[str], runs: list[Any]) -> tuple[float, list[float]]:
    """The smallest value whose run fits its training set (train accuracy FIT_ACC) and each
    run's final test loss."""
    threshold = _smallest_fitting(values, runs, FIT_ACC)
    if threshold is None:
        raise MeasureError(f"no run of the family reached train accuracy {FIT_ACC}: no interpolation threshold")
    return threshold, [_final(run, "test_loss") for run in runs]


@measure(
    "test_loss_peak_over_threshold",
    f"the '# over:' value with the highest final test loss, over the smallest value whose run fits "
    f"its training set (train accuracy {FIT_ACC}): 1 where the peak is at the interpolation threshold",
    over=True,
)
def test_loss_peak_over_threshold(values: list[str], runs: list[Any]) -> float:
    threshold, losses = _threshold_and_losses(values, runs)
    peak = max(range(len(losses)), key=losses.__getitem__)
    return float(values[peak]) / threshold


@measure(
    "test_loss_peak_height",
    "the family's highest final test loss over the final test loss of its last (largest) value: "
    "above 1 where the loss comes down again past the peak",
    over=True,
)
def test_loss_peak_height(values: list[str], runs: list[Any]) -> float:
    _, losses = _threshold_and_losses(values, runs)
    return max(losses) / losses[-1]


# ---------------------------------------------------------------- the `# expected:` grammar

OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
}
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_EXPECTED = re.compile(
    rf"^(?P<of_vs>vs\.)?(?P<measure>[A-Za-z_]\w*)(?P<vs>\s*/\s*vs)?\s*"
    rf"(?:(?P<op><=|>=|<|>)\s*(?P<bound>{_NUM})|=\s*(?P<value>{_NUM})\s*(?:\+-|±)\s*(?P<tol>{_NUM}))$"
)


@dataclass(frozen=True)
class Expected:
    """One `# expected:` line: measure [/ vs] then either OP bound or = value +- tol."""

    measure: str
    vs: bool  # the measure divided by that of the `# vs:` run
    op: str  # <, <=, >, >= or "=" (within tol of value)
    value: float
    tol: float = 0.0
    text: str = ""  # the line as written
    of_vs: bool = False  # vs.MEASURE: the measure of the `# vs:` run alone

    @property
    def needs_vs(self) -> bool:
        """Whether the line reads the `# vs:` run (a ratio to it, or its own measure)."""
        return self.vs or self.of_vs

    def holds(self, measured: float) -> bool:
        if not math.isfinite(measured):
            return False
        if self.op == "=":
            return abs(measured - self.value) <= self.tol
        return OPS[self.op](measured, self.value)


def parse_expected(text: str) -> Expected:
    """One line's Expected; ValueError saying what is wrong (the grammar, an unknown measure)."""
    s = text.strip()
    m = _EXPECTED.match(s)
    if not m:
        raise ValueError(
            f"'# expected: {s}' is not 'MEASURE OP NUMBER' (OP: <, <=, >, >=) nor "
            f"'MEASURE = NUMBER +- TOLERANCE' (MEASURE / vs to divide by the '# vs:' run's)"
        )
    name = m.group("measure")
    if name not in MEASURES:
        import difflib

        near = difflib.get_close_matches(name, list(MEASURES), n=1, cutoff=0.5)
        raise ValueError(
            f"'# expected:' measure {name!r} is unknown"
            + (f"; did you mean {near[0]!r}?" if near else "")
            + f" (measures: {', '.join(MEASURES)})"
        )
    vs, of_vs = m.group("vs") is not None, m.group("of_vs") is not None
    if vs and of_vs:
        raise ValueError(f"'# expected: {s}': vs.MEASURE is the vs run's own measure; it takes no '/ vs'")
    if m.group("op"):
        return Expected(name, vs, m.group("op"), float(m.group("bound")), text=s, of_vs=of_vs)
    tol = float(m.group("tol"))
    if tol < 0:
        raise ValueError(f"'# expected: {s}': the tolerance must be >= 0")
    return Expected(name, vs, "=", float(m.group("value")), tol, text=s, of_vs=of_vs)

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

What a measure reads (Measure.reads, READS): one run; a family of runs (the example's
`# over: KEY=V1,V2` line trains one run per value, and the `# vs:` run per value where a line
needs it); or the record of a procedure of many trainings that the example's
`# procedure: NAME KEY=VALUE ...` line names (PROCEDURES: a lottery ticket's rounds, a
coordinate check's widths), run again with the `# vs:` overrides where a line needs it.

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
from dlx.core.stats import geometric_mean, loglog_slope, root_sum_square


class MeasureError(DlxError):
    """A measure the run's records cannot give (the run lacks the record it reads)."""


@dataclass(frozen=True)
class Procedure:
    """What a `# procedure: NAME KEY=VALUE ...` line runs instead of one training: its
    arguments {key: (parse, default, what it is)}; dlx.many.papers runs it."""

    name: str
    description: str
    args: dict[str, tuple[Callable[[str], Any], Any, str]]


def parse_widths(text: str) -> list[int]:
    """`64,128,256,512`: at least two distinct positive integers, sorted (a coordinate check's
    widths, in a `# procedure:` line and after `dlx coordcheck --widths`); ValueError saying
    what they must be."""
    try:
        widths = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ValueError("takes comma-separated integers, e.g. 64,128,256,512") from None
    if len(widths) < 2 or widths[0] < 1:
        raise ValueError("needs at least two different positive widths, e.g. 64,128,256,512")
    return widths


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise ValueError("a fraction in (0, 1)")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("a positive integer")
    return value


PROCEDURES: dict[str, Procedure] = {
    p.name: p
    for p in (
        Procedure(
            "ticket",
            "dlx ticket: the dense net, `rounds` of magnitude pruning rewound to the init, then the "
            "last mask from a random re-init",
            {
                "rounds": (_positive, 3, "prunings after the dense round 0"),
                "rate": (_fraction, 0.2, "fraction of each layer's remaining weights pruned per round"),
            },
        ),
        Procedure(
            "coordcheck",
            "dlx coordcheck: each layer's output scale over the first steps, at each width",
            {
                "widths": (parse_widths, [64, 128, 256, 512], "model.width values, comma-separated"),
                "steps": (_positive, 5, "optimizer steps measured after the init"),
                "seeds": (_positive, 2, "nets per width, their scales averaged"),
            },
        ),
    )
}
# What a measure reads: fn(run), fn(values, runs) for a family, fn(record) for a procedure.
READS = ("run", "family", *PROCEDURES)


def parse_procedure(text: str) -> tuple[str, dict[str, Any]]:
    """`NAME KEY=VALUE ...` as (NAME, {key: value}, every argument given or its default);
    ValueError saying what is wrong."""
    name, *pairs = text.split() or [""]
    if name not in PROCEDURES:
        raise ValueError(f"'# procedure: {text}': {name!r} is not a procedure (procedures: {', '.join(PROCEDURES)})")
    spec = PROCEDURES[name]
    args = {key: default for key, (_, default, _) in spec.args.items()}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or key not in spec.args:
            raise ValueError(f"'# procedure: {text}': {pair!r} is not KEY=VALUE with KEY one of {', '.join(spec.args)}")
        parse, _, what = spec.args[key]
        try:
            args[key] = parse(value)
        except ValueError:
            raise ValueError(f"'# procedure: {text}': {key} takes {what}; got {value!r}") from None
    return name, args


@dataclass(frozen=True)
class Measure:
    name: str
    description: str
    fn: Callable[..., float]
    # What it reads (READS): "run" fn(run); "family" (an example's `# over: KEY=V1,V2,...`)
    # fn(values, runs), the runs in the values' order; a procedure's name fn(its record).
    reads: str = "run"

    @property
    def over(self) -> bool:
        return self.reads == "family"


MEASURES: dict[str, Measure] = {}


def measure(name: str, description: str, reads: str = "run"):
    """Register fn as the measure `name` of what `reads` names (READS)."""
    assert reads in READS, reads

    def register(fn: Callable[..., float]) -> Callable[..., float]:
        MEASURES[name] = Measure(name, description, fn, reads)
        return fn

    return register


def _hidden_gain(run: Any, key: str, missing: str) -> float:
    """The geometric mean of init_check's `key` over the hidden layers (fc2..fcN: a square layer
    fed by another layer; the first layer's input and the output's few units are not the law)."""
    rows = run.summary.get("init_check") or []
    gains = [r[key] for r in rows if r.get(key) and r.get("layer") != "out"]
    if not gains:
        raise MeasureError(missing)
    return geometric_mean(gains)


@measure(
    "act_var_gain",
    "at step 0, the geometric mean over hidden layers of Var(layer output) / Var(its input) (init check)",
)
def act_var_gain(run: Any) -> float:
    return _hidden_gain(
        run, "measured_gain", "the run has no init check (summary.json 'init_check'): an mlp of depth >= 2 gives one"
    )


def _final(run: Any, key: str) -> float:
    value = (run.summary.get("final") or {}).get(key)
    if value is None:
        raise MeasureError(f"the run has no final {key} (summary.json 'final')")
    return float(value)


@measure(
    "grad_var_gain",
    "at step 0, the geometric mean over hidden layers of Var(dL/dy) of the layer below / Var(dL/dy) "
    "at the layer's output: what the backward pass keeps of the gradient's variance per layer (init check)",
)
def grad_var_gain(run: Any) -> float:
    return _hidden_gain(
        run, "grad_gain", "the run's init check has no gradient gains (summary.json 'init_check', since 2026-12-07)"
    )


@measure("final_train_loss", "the train loss on the whole training set after the last step")
def final_train_loss(run: Any) -> float:
    return _final(run, "train_loss")


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


# Generalised: a test set of a few hundred points (grokking's 159) moves 0.6% a point, so
# "0.99" would be one or two points' luck; 0.95 is the delay's shape, not its last points.
GEN_ACC = 0.95


@measure(
    "generalisation_delay",
    f"steps from train accuracy {FIT_ACC} to test accuracy {GEN_ACC} (grokking's delay); "
    "infinite where the test accuracy never gets there",
)
def generalisation_delay(run: Any) -> float:
    fit = steps_to_fit(run)
    gen = _first_step(run, "test_acc", GEN_ACC)
    return math.inf if gen is None else float(gen) - fit


def _at_fit(run: Any) -> tuple[int, list[dict]]:
    """The first logged step with train accuracy FIT_ACC, and the logged rows with a test accuracy."""
    fit = steps_to_fit(run)
    tested = [r for r in run.metrics if isinstance(r.get("test_acc"), (int, float))]
    if not tested:
        raise MeasureError("the run logged no test accuracy (train.eval_every)")
    return int(fit), tested


@measure(
    "test_acc_at_fit",
    f"the test accuracy at the first evaluation once the train accuracy reached {FIT_ACC}: "
    "how much of what it fitted it had learned to generalise by then",
)
def test_acc_at_fit(run: Any) -> float:
    fit, tested = _at_fit(run)
    return float(next((r["test_acc"] for r in tested if r["step"] >= fit), tested[-1]["test_acc"]))


# How close to its final test accuracy a run must come to have caught up (a few test points
# of a thousand: the evaluations' own noise).
CATCH_UP = 0.01


@measure(
    "catch_up_steps",
    f"steps from train accuracy {FIT_ACC} to the first evaluation within {CATCH_UP} of the final test "
    "accuracy (0 where it was there when it fitted): a delay to generalise that needs no absolute target",
)
def catch_up_steps(run: Any) -> float:
    fit, tested = _at_fit(run)
    final = float(tested[-1]["test_acc"])
    there = next(r["step"] for r in tested if r["test_acc"] >= final - CATCH_UP)
    return float(max(0, there - fit))


def _weight_norms(run: Any) -> list[float]:
    """The whole net's weight norm sqrt(sum of each layer's |W|^2) at each logged step (probes)."""
    norms = [n for p in run.probes if (n := root_sum_square(p.get("weight_norm") or [])) is not None]
    if not norms:
        raise MeasureError("the run has no weight norms (probes.jsonl 'weight_norm')")
    return norms


@measure("final_weight_norm", "the whole net's weight norm sqrt(sum of each layer's |W|^2) at the last log step")
def final_weight_norm(run: Any) -> float:
    return _weight_norms(run)[-1]


@measure("diverged", "1 where the run stopped diverged (a non-finite loss or gradient), else 0")
def diverged(run: Any) -> float:
    return 1.0 if run.summary.get("status") == "diverged" else 0.0


def _clip_norm(run: Any) -> float:
    clip = (run.config.get("regularization") or {}).get("clip_norm")
    if not clip:
        raise MeasureError("the run clips no gradient norm (regularization.clip_norm)")
    return float(clip)


@measure(
    "max_update_over_lr_clip",
    "the largest step the weights took at a log step, sqrt(sum of each layer's |W_t - W_t-1|^2), over "
    "lr x regularization.clip_norm: at most 1 for plain SGD with the gradient norm clipped",
)
def max_update_over_lr_clip(run: Any) -> float:
    clip = _clip_norm(run)
    lrs = {r["step"]: r["lr"] for r in run.metrics if isinstance(r.get("lr"), (int, float))}
    base_lr = float((run.config.get("optimizer") or {}).get("lr") or 0)
    ratios = []
    for p in run.probes:
        norms, updates = p.get("weight_norm"), p.get("update_ratio")
        if not (isinstance(norms, list) and isinstance(updates, list)):
            continue
        pairs = [(n, u) for n, u in zip(norms, updates) if isinstance(n, (int, float)) and isinstance(u, (int, float))]
        # update_ratio is |W_t - W_t-1| / |W_t| with W_t the weight_norm of the same step.
        step = root_sum_square([n * u for n, u in pairs])
        if step is not None:
            ratios.append(step / (lrs.get(p["step"], base_lr) * clip))
    if not ratios:
        raise MeasureError("the run has no update sizes (probes.jsonl 'update_ratio')")
    return max(ratios)


@measure(
    "max_grad_norm_over_clip",
    "the largest gradient norm of any step, before clipping, over regularization.clip_norm: how much "
    "the clipping had to catch",
)
def max_grad_norm_over_clip(run: Any) -> float:
    clip = _clip_norm(run)
    norms = [
        n
        for p in run.probes
        for layers in (p.get("grad_norm") or [])
        if isinstance(layers, list) and (n := root_sum_square(layers)) is not None
    ]
    if not norms:
        raise MeasureError("the run has no gradient norms (probes.jsonl 'grad_norm')")
    return max(norms) / clip


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
    return loglog_slope(teacher, halves)


@measure(
    "smallest_that_fits",
    "the smallest value of the '# over:' key whose run ends with train accuracy 1 (every training "
    "pattern right); infinite where none does",
    reads="family",
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
    reads="family",
)
def test_loss_peak_over_threshold(values: list[str], runs: list[Any]) -> float:
    threshold, losses = _threshold_and_losses(values, runs)
    peak = max(range(len(losses)), key=losses.__getitem__)
    return float(values[peak]) / threshold


@measure(
    "test_loss_peak_height",
    "the family's highest final test loss over the final test loss of its last (largest) value: "
    "above 1 where the loss comes down again past the peak",
    reads="family",
)
def test_loss_peak_height(values: list[str], runs: list[Any]) -> float:
    _, losses = _threshold_and_losses(values, runs)
    return max(losses) / losses[-1]


def _ticket_rows(record: Any) -> tuple[dict, dict, dict]:
    """A ticket record's dense round, last ticket round and control (dlx.many.tickets)."""
    rows = record.get("rows") or []
    by_kind = {kind: [r for r in rows if r.get("kind") == kind] for kind in ("dense", "ticket", "control")}
    if not all(by_kind.values()):
        raise MeasureError("the ticket record lacks its dense round, a pruned round or its control")
    dense, last, control = by_kind["dense"][0], by_kind["ticket"][-1], by_kind["control"][-1]
    for row in (dense, last, control):
        if row.get("test_acc") is None:
            raise MeasureError(
                f"round {row['round']} ({row['kind']}) has no final test accuracy: it ended {row['status']}"
            )
    return dense, last, control


@measure("ticket_kept", "the fraction of the pruned layers' weights that the last ticket round trains", reads="ticket")
def ticket_kept(record: Any) -> float:
    return float(_ticket_rows(record)[1]["kept"])


@measure(
    "ticket_test_acc_vs_dense",
    "the last ticket round's final test accuracy minus the dense net's (round 0): >= 0 where the ticket matches it",
    reads="ticket",
)
def ticket_test_acc_vs_dense(record: Any) -> float:
    dense, last, _ = _ticket_rows(record)
    return float(last["test_acc"]) - float(dense["test_acc"])


@measure(
    "ticket_test_acc_vs_control",
    "the last ticket round's final test accuracy minus that of the same mask from a random re-init",
    reads="ticket",
)
def ticket_test_acc_vs_control(record: Any) -> float:
    _, last, control = _ticket_rows(record)
    return float(last["test_acc"]) - float(control["test_acc"])


@measure(
    "coord_slope_max",
    "the coordinate check's largest |slope| over layers of log(mean |layer output|) against log(width) "
    "after its last step: 0 where every layer's scale is flat in width",
    reads="coordcheck",
)
def coord_slope_max(check: Any) -> float:
    return float(max(abs(float(s)) for s in check.slopes()))


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

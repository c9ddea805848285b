"""A sweep spec read and checked: the search space, the strategy, the metric; plan() -> Plan.

A sweep spec (YAML):

    base: configs/mnist_mlp.yaml       # relative to the spec file (or the working folder), or an example's name
    set: [train.epochs=1]              # optional overrides for every trial
    metric: {name: test_acc, goal: max}
    strategy: tpe                      # grid | random | tpe
    trials: 40                         # random/tpe; grid runs every point
    seed: 0                            # the strategy's seed
    space:
      optimizer.name: [sgd, adam]                  # a list: the values to try
      optimizer.lr: {loguniform: [1.0e-4, 1.0e-1]}
      regularization.dropout: {uniform: [0.0, 0.5]}
      model.depth: {int: [2, 8]}                   # inclusive; {int: [8, 256], log: true}

Every problem of a spec is found at once, before any trial starts: its keys, each range, and
every key and value of the space tried on the base config (for a grid, its points).
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BeforeValidator, Field, PositiveInt, ValidationError

from dlx.config.catalogue import resolve_config, shipped
from dlx.config.loader import load_config_text
from dlx.config.messages import dedupe, error_message
from dlx.config.yamlio import Located, parse_yaml
from dlx.core.errors import ConfigError, Problem
from dlx.core.registry import Section, closest

METRICS = ("test_acc", "test_loss", "train_acc", "train_loss")
GOALS = {"test_acc": "max", "train_acc": "max", "test_loss": "min", "train_loss": "min"}
STRATEGIES = ("grid", "random", "tpe")
MAX_GRID = 10_000  # more points than anyone means to run: almost surely a mistake in the spec


class Metric(Section):
    name: Literal["test_acc", "test_loss", "train_acc", "train_loss"] = "test_acc"
    goal: Literal["max", "min"] | None = Field(None, description="default: max for accuracies, min for losses")


class SweepSpec(Section):
    base: str = Field(description="the config every trial starts from")
    set: list[str] = Field(default_factory=list, description="key=value overrides for every trial")
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,48}$")
    # `metric: test_loss` is short for {name: test_loss} with its usual goal.
    metric: Annotated[Metric, BeforeValidator(lambda v: {"name": v} if isinstance(v, str) else v)] = Field(
        default_factory=Metric
    )
    strategy: Literal["grid", "random", "tpe"] = "grid"
    trials: PositiveInt | None = None
    seed: int = 0
    space: dict[str, Any] = Field(description="key path -> list of values or a range")

    @property
    def goal(self) -> str:
        return self.metric.goal or GOALS[self.metric.name]


@dataclass(frozen=True)
class Dimension:
    """One key of the space: a list of choices, or a float/int range."""

    key: str
    kind: str  # choice | uniform | loguniform | int
    choices: tuple = ()
    low: float = 0.0
    high: float = 0.0
    log: bool = False

    def grid_values(self) -> list:
        if self.kind == "choice":
            return list(self.choices)
        return list(range(int(self.low), int(self.high) + 1))  # int ranges only (checked)

    def probes(self) -> list:
        """Values to validate against the base config: every choice, or both ends."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return [int(self.low), int(self.high)]
        return [self.low, self.high]

    def suggest(self, trial: Any, grid: bool) -> Any:
        if grid or self.kind == "choice":
            values = self.grid_values()
            # Optuna's categorical choices must be plain scalars: mappings/lists go as YAML text.
            labels = [c if is_scalar(c) else yaml_value(c) for c in values]
            label = trial.suggest_categorical(self.key, labels)
            return values[labels.index(label)]
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, log=self.kind == "loguniform")


def is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def yaml_value(v: Any) -> str:
    """A value as YAML flow text for a --set override (1e-05 as 1.0e-05: YAML reads the former as a string)."""
    text = yaml.safe_dump(v, default_flow_style=True, width=10**9).strip()
    return text[:-3].strip() if text.endswith("...") else text


def parse_dimension(key: str, raw: Any, strategy: str) -> tuple[Dimension | None, list[str]]:
    """A Dimension, or the messages saying why `raw` is not one."""
    if isinstance(raw, list):
        if not raw:
            return None, ["an empty list: give at least one value"]
        return Dimension(key, "choice", tuple(raw)), []
    ranges = {"uniform", "loguniform", "int"}
    if not isinstance(raw, dict) or not (set(raw) & ranges):
        return None, [
            f"expected a list of values or a range ({{uniform: [lo, hi]}}, {{loguniform: [lo, hi]}}, "
            f"{{int: [lo, hi]}}), got {raw!r}"
        ]
    kinds = sorted(set(raw) & ranges)
    extra = sorted(set(raw) - ranges - {"log"})
    problems = []
    if len(kinds) > 1:
        problems.append(f"one range per key, got {' and '.join(kinds)}")
    if extra:
        hint = closest(extra[0], sorted(ranges | {"log"}))
        problems.append(
            f"unknown key '{extra[0]}'"
            + (f"; did you mean '{hint}'?" if hint else "")
            + " (valid: uniform, loguniform, int, log)"
        )
    kind = kinds[0]
    bounds = raw[kind]
    log = raw.get("log", False)
    if "log" in raw and (kind != "int" or not isinstance(log, bool)):
        problems.append("log: true/false belongs to {int: [lo, hi]} (use loguniform for floats)")
    numeric = (int,) if kind == "int" else (int, float)
    if (
        not isinstance(bounds, list)
        or len(bounds) != 2
        or not all(isinstance(b, numeric) and not isinstance(b, bool) for b in bounds)
    ):
        what = "two integers" if kind == "int" else "two numbers"
        problems.append(f"{kind} needs [lo, hi] with {what}, got {bounds!r}")
        return None, problems
    lo, hi = bounds
    if not all(math.isfinite(b) for b in bounds):
        problems.append(f"{kind} bounds must be finite, got {bounds}")
    elif lo >= hi if kind != "int" else lo > hi:
        problems.append(f"an empty range: {kind}: [{lo}, {hi}] needs lo {'<=' if kind == 'int' else '<'} hi")
    if kind == "loguniform" and min(lo, hi) <= 0:
        problems.append(f"loguniform needs positive bounds (it samples log(x)), got [{lo}, {hi}]")
    if kind == "int" and log and lo < 1:
        problems.append(f"int with log: true needs lo >= 1, got {lo}")
    if strategy == "grid" and kind != "int":
        problems.append(f"strategy grid needs a list of values here; {kind} ranges are for random and tpe")
    if kind == "int" and strategy == "grid" and hi - lo + 1 > MAX_GRID:
        problems.append(f"an int range of {hi - lo + 1} values is too many for a grid")
    if problems:
        return None, problems
    return Dimension(key, kind, low=lo, high=hi, log=bool(log)), []


def trial_sets(params: dict[str, Any]) -> list[str]:
    """The --set overrides that make a trial's config from the base."""
    return [f"{k}={yaml_value(v)}" for k, v in params.items()]


@dataclass
class Plan:
    """A validated spec: what every trial is built from."""

    spec: SweepSpec
    spec_text: str
    spec_path: Path
    base_path: Path  # absolute
    base_text: str
    dims: list[Dimension]
    sets: list[str]  # spec.set + command-line --set, applied before the trial's own values

    @property
    def total(self) -> int:
        if self.spec.strategy == "grid":
            return math.prod(len(d.grid_values()) for d in self.dims)
        return int(self.spec.trials or 0)

    @property
    def slug(self) -> str:
        """The sweep's name as it goes into folder and run names: the spec's name, or its file
        name made valid (`my sweep ü.yaml` -> my-sweep, `_x.yaml` -> x)."""
        raw = self.spec.name or self.spec_path.stem
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", raw).strip("-._")[:48] or "sweep"

    def grid_point(self, index: int) -> dict[str, Any]:
        """plan.grid()[index] without listing the grid (the last key varies fastest)."""
        out = {}
        for d in reversed(self.dims):
            values = d.grid_values()
            index, r = divmod(index, len(values))
            out[d.key] = values[r]
        return {d.key: out[d.key] for d in self.dims}

    def grid(self) -> list[dict[str, Any]]:
        keys = [d.key for d in self.dims]
        return [dict(zip(keys, combo)) for combo in itertools.product(*[d.grid_values() for d in self.dims])]

    def config(self, params: dict[str, Any]) -> dict:
        """The resolved config of one trial (ConfigError if this combination is invalid)."""
        cfg = load_config_text(
            self.base_text, str(self.base_path), self.base_path.parent, [*self.sets, *trial_sets(params)]
        )
        return cfg.resolved()


def spec_problems(err: ValidationError, loc: Located) -> list[Problem]:
    out = []
    for e in err.errors(include_url=False):
        path = tuple(e["loc"])
        if e["type"] == "extra_forbidden":
            valid = list(SweepSpec.model_fields) if len(path) == 1 else list(Metric.model_fields)
            hint = closest(str(path[-1]), valid)
            msg = (
                f"unknown key '{path[-1]}'"
                + (f"; did you mean '{hint}'?" if hint else "")
                + f" (valid here: {', '.join(valid)})"
            )
        else:
            msg = error_message(e, loc.data, path)
        out.append(loc.problem(path, msg))
    return out


def plan(spec_path: str | Path, sets: list[str] | tuple[str, ...] = ()) -> Plan:
    """Read and check a sweep spec: every problem at once, before any trial starts."""
    spec_path = resolve_config(spec_path, "sweep spec")  # a path, or a shipped example's name
    raw = spec_path.read_bytes()
    source = str(spec_path)
    loc = parse_yaml(raw, source)
    data = loc.data
    problems: list[Problem] = []
    spec = None
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as e:
        problems += spec_problems(e, loc)
    # The rest is checked from the raw data too, so a bad key elsewhere hides nothing.
    strategy = spec.strategy if spec else (data.get("strategy") if data.get("strategy") in STRATEGIES else "random")
    space = data.get("space") if isinstance(data.get("space"), dict) else {}
    dims = []
    for key, value in space.items():
        dim, msgs = parse_dimension(str(key), value, strategy)
        problems += [loc.problem(("space", key), m) for m in msgs]
        if dim is not None:
            dims.append(dim)
    if "space" in data and not space:
        problems.append(
            loc.problem(
                ("space",),
                "the space is empty: name at least one key to vary, e.g. optimizer.lr: {loguniform: [1.0e-4, 1.0e-1]}",
            )
        )
    if spec is not None and spec.strategy != "grid" and spec.trials is None:
        problems.append(
            loc.problem(("strategy",), f"strategy {spec.strategy} needs trials: N (how many points to try)")
        )
    base = data.get("base")
    base_path = _find_base(base, spec_path) if isinstance(base, str) else None
    if isinstance(base, str) and base_path is None:
        problems.append(
            loc.problem(
                ("base",),
                f"base config '{base}' not found (looked beside {spec_path.name} "
                f"and in {Path.cwd()}, and no example has that name); "
                f"give the path of a dlx config",
            )
        )
    sets = [*(spec.set if spec else []), *sets]
    if base_path is not None:
        p = Plan(spec, raw.decode("utf-8"), spec_path.resolve(), base_path.resolve(), base_path.read_text(), dims, sets)
        problems += _check_against_base(p, loc, grid=spec is not None and not problems and strategy == "grid")
    if problems:
        raise ConfigError(dedupe(problems), source)
    if spec.strategy == "grid" and p.total > MAX_GRID:
        raise ConfigError(
            [
                loc.problem(
                    ("space",),
                    f"the grid has {p.total:,} points (more than {MAX_GRID:,}); "
                    f"use strategy: random or tpe with trials: N",
                )
            ],
            source,
        )
    return p


def _find_base(base: str, spec_path: Path) -> Path | None:
    """Beside the spec, then in the working folder, then a shipped example's name."""
    for candidate in (spec_path.parent / base, Path(base)):
        if candidate.is_file():
            return candidate
    return shipped(base)


def _check_against_base(p: Plan, loc: Located, grid: bool) -> list[Problem]:
    """Every key path and value of the space, tried on the base config: unknown keys,
    bad values and (for a grid) bad combinations are found here, before any trial."""
    try:
        load_config_text(p.base_text, str(p.base_path), p.base_path.parent, p.sets)
    except ConfigError as e:
        return [loc.problem(("base",), f"the base config (with set:) is invalid: {q}") for q in e.problems]
    problems = []
    for d in p.dims:
        for value in d.probes():
            try:
                p.config({d.key: value})
            except ConfigError as e:
                problems += [loc.problem(("space", d.key), _value_problem(d.key, value, q)) for q in e.problems]
                break  # one bad value per key is enough to see the problem
    if grid and not problems and p.total <= MAX_GRID:
        for params in p.grid()[:1000]:
            try:
                p.config(params)
            except ConfigError as e:
                point = ", ".join(f"{k}={yaml_value(v)}" for k, v in params.items())
                problems += [
                    loc.problem(("space",), f"the grid point {point} is invalid: {strip_set(q)}") for q in e.problems
                ]
                break
    return problems


def _value_problem(key: str, value: Any, q: Problem) -> str:
    """A trial-config problem told at its space key: the value only where it adds something."""
    text = yaml_value(value)
    msg = q.message if q.path == key else f"{q.path}: {q.message}"
    return msg if (text in q.message or q.message.startswith("unknown key")) else f"{text}: {msg}"


def strip_set(q: Problem) -> str:
    """A problem in a trial config, without the internal --set that caused it."""
    return f"{q.path}: {q.message}" if q.path else q.message

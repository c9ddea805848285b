"""`dlx sweep` and `dlx.sweep()`: a search over config keys, each trial an ordinary dlx train run.

(Named sweeper, not sweep, so that `import dlx.many.sweeper` never shadows the dlx.sweep() function.)

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

The strategies are Optuna's, driven by ask-and-tell in this (the parent) process: an
executor pulls the next trial only when it has a free slot, so TPE sees every result
told before it proposes the next point. Grid points are enumerated here and enqueued
(not left to GridSampler), so their order is the spec's and every point runs once.

The sweep folder (the parent is its only writer):

    runs/sweep-<stamp>-<name>-<hex>/
      sweep.json     what was asked (spec, base path, overrides), status, counts
      spec.yaml      the spec as written;  base.yaml  the base config's text at the start
      journal.log    Optuna's journal storage: every trial asked and told
      results.json   one row per finished trial (params, metric, status, run), best first
      best.yaml      the best trial's resolved config, ready for `dlx train`
      trials/trial-0000/ ...   one run folder per trial, landed by an atomic rename
      .staging/      attempts in flight (removed as each trial lands), and those of trials
                     to run again: stopped, failed or crashed

Trials keep one index (0..N-1, the folder name) across interruptions: a trial that
was in flight when the sweep stopped is re-asked with the same parameters on --resume,
and continues its stopped run from that run's checkpoint; so is a trial that failed or
crashed (a full disk, say).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import itertools
import json
import math
import os
import re
import secrets
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, Literal

import yaml
from pydantic import BeforeValidator, Field, PositiveInt, ValidationError

from dlx.config.catalogue import resolve_config, shipped
from dlx.config.loader import _dedupe, _Located, _message, load_config_text, parse_yaml
from dlx.core.errors import ConfigError, DlxError, Problem, UsageError
from dlx.core.registry import Section, closest
from dlx.many.executors import STATUSES
from dlx.records.folders import (
    CONFIG_FILE,
    SUMMARY_FILE,
    final_metrics,
    find_sweep,
    finished_summary,
    pruned_kind,
    read_object,
    resumable_run,
    verdict_kind,
)

METRICS = ("test_acc", "test_loss", "train_acc", "train_loss")
GOALS = {"test_acc": "max", "train_acc": "max", "test_loss": "min", "train_loss": "min"}
STRATEGIES = ("grid", "random", "tpe")
MAX_GRID = 10_000  # more points than anyone means to run: almost surely a mistake in the spec
# TPE proposes from a model of the results only after this many random trials; Optuna's
# default of 10 would leave a 12-trial sweep all random, so small sweeps start earlier.
TPE_STARTUP = 10
# Trials that ended without a whole run folder (a full disk, a bug, a worker dying on every
# attempt): recorded and shown, and run again by --resume, from their checkpoint where they
# wrote one (their attempts stay in .staging for it). A config error is not: it would fail alike.
RERUN = ("failed", "crashed")


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
            labels = [c if _scalar(c) else _yaml_value(c) for c in values]
            label = trial.suggest_categorical(self.key, labels)
            return values[labels.index(label)]
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, log=self.kind == "loguniform")


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def _yaml_value(v: Any) -> str:
    """A value as YAML flow text for a --set override (1e-05 as 1.0e-05: YAML reads the former as a string)."""
    text = yaml.safe_dump(v, default_flow_style=True, width=10**9).strip()
    return text[:-3].strip() if text.endswith("...") else text


def _parse_dimension(key: str, raw: Any, strategy: str) -> tuple[Dimension | None, list[str]]:
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
    return [f"{k}={_yaml_value(v)}" for k, v in params.items()]


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


def _spec_problems(err: ValidationError, loc: _Located) -> list[Problem]:
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
            msg = _message(e, loc.data, path)
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
        problems += _spec_problems(e, loc)
    # The rest is checked from the raw data too, so a bad key elsewhere hides nothing.
    strategy = spec.strategy if spec else (data.get("strategy") if data.get("strategy") in STRATEGIES else "random")
    space = data.get("space") if isinstance(data.get("space"), dict) else {}
    dims = []
    for key, value in space.items():
        dim, msgs = _parse_dimension(str(key), value, strategy)
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
        raise ConfigError(_dedupe(problems), source)
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


def _check_against_base(p: Plan, loc: _Located, grid: bool) -> list[Problem]:
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
                point = ", ".join(f"{k}={_yaml_value(v)}" for k, v in params.items())
                problems += [
                    loc.problem(("space",), f"the grid point {point} is invalid: {_strip_set(q)}") for q in e.problems
                ]
                break
    return problems


def _value_problem(key: str, value: Any, q: Problem) -> str:
    """A trial-config problem told at its space key: the value only where it adds something."""
    text = _yaml_value(value)
    msg = q.message if q.path == key else f"{q.path}: {q.message}"
    return msg if (text in q.message or q.message.startswith("unknown key")) else f"{text}: {msg}"


def _strip_set(q: Problem) -> str:
    """A problem in a trial config, without the internal --set that caused it."""
    return f"{q.path}: {q.message}" if q.path else q.message


# ---------------------------------------------------------------- the sweep itself


@dataclass
class SweepTrial:
    index: int  # 0..N-1, the folder name; kept across --resume
    number: int  # Optuna's trial number
    params: dict[str, Any]
    config: dict | None  # None when the combination is invalid (error says why)
    error: str | None = None
    resume: Path | None = None  # a stopped run of this trial to continue from its checkpoint


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


class Sweep:
    """A sweep folder plus its Optuna study; the parent process is its only writer."""

    def __init__(self, folder: Path, plan_: Plan, meta: dict):
        self.folder = Path(folder)
        self.plan = plan_
        self.meta = meta
        self.rows: dict[int, dict] = {}
        self._live: dict[int, Any] = {}  # Optuna trial number -> Trial being run
        self.on_row: Callable[[dict], Any] | None = None
        self._study = None
        self._next_index = 0
        self._asked: set[int] = set()  # trial indices yielded by pending() in this process
        self.notes: list[str] = []  # what opening the folder found and repaired, for the user to read

    # ------------------------------------------------------------ creating / opening

    @classmethod
    def create(cls, plan_: Plan, runs_dir: Path) -> "Sweep":
        from dlx.records.folders import prepare_runs_dir, write_atomic, write_json

        runs_dir = prepare_runs_dir(Path(runs_dir))
        name = plan_.slug
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        folder = runs_dir / f"sweep-{stamp}-{name}-{secrets.token_hex(3)}"
        tmp = runs_dir / f".tmp-{folder.name}"
        tmp.mkdir()
        write_atomic(tmp / "spec.yaml", plan_.spec_text)
        write_atomic(tmp / "base.yaml", plan_.base_text)
        meta = {
            "sweep_id": folder.name,
            "status": "running",
            "created": _now(),
            "spec_path": str(plan_.spec_path),
            "base_path": str(plan_.base_path),
            "base_sha256": _sha256(plan_.base_text),
            # The spec as it was at the start: --resume refuses an edited spec.yaml, saying what changed.
            "spec_sha256": _sha256(plan_.spec_text),
            "spec_text": plan_.spec_text,
            "sets": plan_.sets,
            "strategy": plan_.spec.strategy,
            "seed": plan_.spec.seed,
            "metric": plan_.spec.metric.name,
            "goal": plan_.spec.goal,
            "trials": plan_.total,
            "done": 0,
            "pid": os.getpid(),
            "host": socket.gethostname(),
        }
        write_json(tmp / "sweep.json", meta)
        os.rename(tmp, folder)  # the folder appears only once its spec and meta are complete
        sweep = cls(folder, plan_, meta)
        sweep._lock()
        study = sweep.study
        if plan_.spec.strategy == "grid":
            for i, params in enumerate(plan_.grid()):
                study.enqueue_trial(sweep._labels(params), user_attrs={"dlx_index": i})
        sweep._next_index = plan_.total if plan_.spec.strategy == "grid" else 0
        sweep._write_results()
        return sweep

    @classmethod
    def open(cls, folder: Path) -> "Sweep":
        """An existing sweep, to --resume. Refused with a reason (never a traceback, never a
        silent reset) when its files are missing or its spec was edited in a way that would
        mix incomparable trials; a journal torn by a crash is cut back to its last whole
        record, and finished trials missing from a damaged results.json are rebuilt from
        their folders (each told in .notes). In-flight trials of the stopped run are re-asked
        with exactly their parameters."""
        folder = Path(folder)
        meta, why = read_object(folder / "sweep.json")
        texts = {}
        for name in ("spec.yaml", "base.yaml"):
            try:
                texts[name] = (folder / name).read_text()
            except (OSError, UnicodeDecodeError) as e:
                why = why or f"{name}: {e}"
        if why is None and not isinstance(meta.get("base_path"), str):
            why = "sweep.json has no base_path"
        if why is not None:
            raise DlxError(f"{folder} is not a readable sweep folder ({why}); give a folder made by dlx sweep")
        notes: list[str] = []
        spec_text = _check_spec_unchanged(folder, meta, texts["spec.yaml"], notes)
        loc = parse_yaml(spec_text, str(folder / "spec.yaml"))
        try:
            spec = SweepSpec.model_validate(loc.data)
        except ValidationError as e:
            raise ConfigError(_spec_problems(e, loc), str(folder / "spec.yaml")) from None
        dims = [d for d in (_parse_dimension(str(k), v, spec.strategy)[0] for k, v in spec.space.items()) if d]
        base_path = Path(meta["base_path"])
        sets = [str(x) for x in meta.get("sets") or []]
        # The base's text as it was at the start: editing the file later changes nothing here.
        plan_ = Plan(
            spec,
            spec_text,
            Path(meta.get("spec_path", folder / "spec.yaml")),
            base_path,
            texts["base.yaml"],
            dims,
            sets,
        )
        sweep = cls(folder, plan_, meta)
        sweep._lock()  # before anything in the folder is rewritten
        journal = folder / "journal.log"
        if not journal.is_file():
            sweep.unlock()
            raise DlxError(
                f"{journal} is missing: it is the record of which points this sweep asked and what they "
                f"scored, and without it a resume would start the search over ({meta.get('done', '?')} trial(s) "
                f"were done). Restore the file, or start a new sweep: dlx sweep {folder / 'spec.yaml'}"
            )
        try:
            note = repair_journal(journal)
            if note:
                notes.append(note)
            sweep.notes = notes
            sweep._recover()
        except BaseException:
            sweep.unlock()
            raise
        return sweep

    def _lock(self) -> None:
        """One driver per sweep folder for the life of this process (folders.take_lock), taken
        before anything in the folder is rewritten: a second `--resume` of a sweep being run is
        refused, naming the holder."""
        from dlx.records.folders import lock_holder, take_lock

        try:
            self._lock_fd = take_lock(self.folder)
        except BlockingIOError:
            # The live holder, not the pid sweep.json names: that is the last driver's, which is
            # dead when the holder is a resume still opening the folder.
            meta = read_object(self.folder / "sweep.json")[0] or self.meta
            raise DlxError(
                f"sweep {self.folder.name} is being run by another process ({lock_holder(self.folder, meta)}); one "
                f"process runs a sweep at a time: wait for it to end, or stop it, then dlx sweep --resume"
            ) from None

    def unlock(self) -> None:
        fd = getattr(self, "_lock_fd", None)
        if fd is not None:
            os.close(fd)
            self._lock_fd = None

    @property
    def study(self):
        if self._study is None:
            import optuna
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            storage = JournalStorage(JournalFileBackend(str(self.folder / "journal.log")))
            spec = self.plan.spec
            # Seeding by the trials already asked: a resumed random/tpe sweep does not
            # replay its first points, and the same sweep resumed the same way is repeatable.
            storage_trials = 0
            try:
                storage_trials = len(storage.get_all_trials(storage.get_study_id_from_name("dlx")))
            except KeyError:
                pass
            seed = spec.seed + storage_trials
            if spec.strategy == "tpe":
                n = self.plan.total
                startup = TPE_STARTUP if n >= 2 * TPE_STARTUP else max(2, n // 2)
                sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)
            else:
                sampler = optuna.samplers.RandomSampler(seed=seed)
            self._study = optuna.create_study(
                storage=storage,
                study_name="dlx",
                sampler=sampler,
                direction="maximize" if spec.goal == "max" else "minimize",
                load_if_exists=True,
            )
        return self._study

    def _labels(self, params: dict[str, Any]) -> dict[str, Any]:
        return {k: (v if _scalar(v) else _yaml_value(v)) for k, v in params.items()}

    def _recover(self) -> None:
        """After a stop: rebuild the rows, re-ask what never finished.

        A finished trial's row comes from results.json, or (that file damaged or behind) from
        its landed folder, or for a config error from the journal's own record. A trial left
        in flight is re-asked with exactly its parameters: for a grid, its grid point by
        index (it may have been asked and never given its parameters). A grid point the
        journal never recorded (its record lost) is asked too, so every point runs once. A
        trial that failed or crashed (RERUN) is asked again the same way; a re-asked trial whose
        stopped attempt is in .staging continues it from its checkpoint (see pending)."""
        from optuna.trial import TrialState

        # .staging keeps the stopped run's attempts: a trial in flight resumes from its checkpoint.
        results, damaged = self._read_results()
        grid = self.plan.grid() if self.plan.spec.strategy == "grid" else None
        indices = set()
        rebuilt = 0
        trials = self.study.get_trials(deepcopy=False)
        # A failed trial run again by a resume has two told records; the later one counts.
        last_told = {
            t.user_attrs["dlx_index"]: t.number
            for t in trials
            if isinstance(t.user_attrs.get("dlx_index"), int) and "dlx_status" in t.user_attrs
        }
        for t in trials:
            i = t.user_attrs.get("dlx_index")
            if not isinstance(i, int):
                continue
            if t.state == TrialState.FAIL and "dlx_status" not in t.user_attrs:
                continue  # an attempt an earlier resume found stale; a later trial re-asks its index
            if "dlx_status" in t.user_attrs and t.number < last_told[i]:
                if t.state == TrialState.RUNNING:
                    self.study.tell(t.number, state=TrialState.FAIL)
                continue  # an earlier attempt of an index run again since
            if i in indices or (grid is not None and i >= len(grid)):
                if t.state == TrialState.RUNNING:
                    self.study.tell(t.number, state=TrialState.FAIL)  # a duplicate ask: drop it
                continue  # (a duplicate still waiting is dropped when asked: see pending)
            indices.add(i)
            if t.state == TrialState.WAITING:
                continue  # not asked yet: pending() will
            if t.state != TrialState.RUNNING and "dlx_status" in t.user_attrs:
                row = results.get(i) or self._row_from_folder(i, t.params) or self._row_from_journal(i, t)
                if row.get("status") not in RERUN:
                    rebuilt += i not in results
                    self.rows[i] = row
                    continue
                # Failed or crashed (a full disk, say): asked again below, from its checkpoint if any.
            row = results.get(i) or self._row_from_folder(i, t.params)
            if t.state == TrialState.RUNNING and row is not None and row.get("status") not in ("interrupted", *RERUN):
                # It landed, then the sweep stopped before telling Optuna: tell it now.
                self.rows[i] = row
                self._tell(t.number, row)
                continue
            if t.state == TrialState.RUNNING:
                self.study.tell(t.number, state=TrialState.FAIL)  # stale: never finished
            params = grid[i] if grid is not None else t.params
            self.study.enqueue_trial(self._labels(params), user_attrs={"dlx_index": i})
        # Trials that landed but whose journal records were lost: rows from their folders.
        for d in sorted((self.folder / "trials").glob("trial-*")):
            i = _trial_index(d.name)
            if i is not None and i not in indices and (row := self._row_from_folder(i, None)) is not None:
                self.rows[i] = row
                indices.add(i)
                rebuilt += 1
        # Indices the journal lost every record of: a grid point is asked again by its index; a
        # random/tpe index below the highest one seen draws a fresh point (none was recorded).
        for i in range(len(grid) if grid is not None else max(indices, default=-1) + 1):
            if i not in indices:
                params = grid[i] if grid is not None else {}
                self.study.enqueue_trial(self._labels(params), user_attrs={"dlx_index": i})
                indices.add(i)
        if damaged:
            self.notes.append(f"{damaged}; rebuilt {rebuilt} finished trial(s) from their folders and the journal")
        elif rebuilt:
            self.notes.append(f"results.json lacked {rebuilt} finished trial(s); rebuilt them from their folders")
        self._next_index = max([self.plan.total if grid is not None else 0, *[i + 1 for i in indices]])
        self._clean_staging()
        self.meta.update(status="running", pid=os.getpid(), host=socket.gethostname(), resumed=_now())
        self._write_results()

    def _clean_staging(self) -> None:
        """Remove the attempts of trials that are done for good (a duplicate of a landed trial,
        a config error); a trial still to run keeps its attempts, to resume from their checkpoint."""
        staging = self.folder / ".staging"
        for d in staging.glob("trial-*"):
            i = _trial_index(d.name)
            if i is not None and i in self.rows and self.rows[i].get("status") not in RERUN:
                shutil.rmtree(d, ignore_errors=True)
        with contextlib.suppress(OSError):
            staging.rmdir()  # only once empty

    # ------------------------------------------------------------ running

    def _trial_dir(self, index: int) -> Path:
        return self.folder / "trials" / f"trial-{index:04d}"

    def staging(self, index: int) -> Path:
        return self.folder / ".staging" / f"trial-{index:04d}"

    @property
    def done(self) -> int:
        return len(self.rows)

    def pending(self) -> Iterator[SweepTrial]:
        """Trials to run, asked from the strategy one at a time as the executor pulls them.

        A combination that makes an invalid config (random/tpe can draw one) is recorded
        as config_error at once and not yielded.
        """
        from optuna.trial import TrialState

        while True:
            waiting = self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
            if not waiting and self._next_index >= self.plan.total:
                return
            trial = self.study.ask()
            index = trial.user_attrs.get("dlx_index")
            if index is None:
                index = self._next_index
                trial.set_user_attr("dlx_index", index)
                self._next_index += 1
            if index in self.rows or index in self._asked:
                self.study.tell(trial.number, state=TrialState.FAIL)  # a duplicate of a trial run once already
                continue
            self._asked.add(index)
            grid = self.plan.spec.strategy == "grid"
            params = {d.key: d.suggest(trial, grid) for d in self.plan.dims}
            if grid:
                # A grid trial is its index's point whatever the journal fixed for it (enqueued
                # with that point, Optuna suggests exactly it; this makes it so regardless).
                params = self.plan.grid_point(index)
            self._live[trial.number] = trial
            try:
                config = self.plan.config(params)
            except ConfigError as e:
                self.record(
                    SweepTrial(index, trial.number, params, None),
                    status="config_error",
                    error="; ".join(_strip_set(q) for q in e.problems),
                )
                continue
            config["name"] = f"{self.plan.slug}-t{index:04d}"
            yield SweepTrial(index, trial.number, params, config, resume=self._resumable(index, config))

    def _resumable(self, index: int, config: dict) -> Path | None:
        """A stopped attempt of this trial to continue from its checkpoint (--resume after a
        stop or a full disk): only one of exactly this config, else the trial starts over."""
        run = resumable_run(self.staging(index))
        if run is None:
            return None
        try:
            written = yaml.safe_load((run / CONFIG_FILE).read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            return None
        return run if written == config else None

    def record(
        self, st: SweepTrial, result: Any = None, status: str | None = None, error: str | None = None
    ) -> dict | None:
        """Land a finished trial's run folder, write the results, tell the strategy.

        An interrupted trial (Ctrl-C) is not recorded: --resume runs it again. The run folder
        says how a trial ended: one with a finished run's summary.json lands with its status
        whatever the worker reported; one without never lands, and its trial (failed) keeps
        its attempts in .staging for --resume to continue.
        """
        from dlx.records.folders import FINISHED, land_run

        status = status or result.status
        if status == "interrupted":
            return None
        error = error or (getattr(result, "error", None) if result is not None else None)
        dest = self._trial_dir(st.index)
        run = Path(result.run_path) if result is not None and result.run_path is not None else None
        run = run if run is not None and run.is_dir() else None
        summary = (result.summary if result is not None else None) or {}
        whole = finished_summary(run) if run is not None else None
        if whole is None and result is not None and status in RERUN:
            # A worker whose failure report hit the full disk too names no folder: a whole
            # run of this trial may still be there (it ended, then a later write failed).
            ended = [r for r in self.staging(st.index).glob("*") if r.is_dir() and finished_summary(r)]
            if ended:
                run, whole = ended[0], finished_summary(ended[0])
        if whole is not None:
            # The folder says how the run ended: its summary is written, so it ended so,
            # whatever failed after (its checkpoint on a full disk, say).
            status, summary = whole["status"], whole
            error = None
            land_run(run, dest)  # False: a duplicate attempt, dropped
        elif run is not None and status in FINISHED:
            status = "failed"  # a folder without its summary never lands: it is run again
            error = error or f"its run folder {run} has no {SUMMARY_FILE}"
        if status not in RERUN:
            shutil.rmtree(self.staging(st.index), ignore_errors=True)
        value = final_metrics(summary).get(self.plan.spec.metric.name)
        row = {
            "trial": st.index,
            "status": status,
            "value": value if _finite(value) else None,
            "params": st.params,
            "run": str(dest.relative_to(self.folder)) if dest.is_dir() else None,
            "seconds": summary.get("train_seconds"),
            "steps": summary.get("steps"),
            "verdict": verdict_kind(summary),
            "pruned": pruned_kind(summary),
            "node": getattr(result, "node", None),
            "attempts": getattr(result, "attempts", 1),
            "error": error,
        }
        self.rows[st.index] = row
        self._write_results()  # before telling: a stop in between is recovered from the folder
        self._tell(st.number, row)
        if self.on_row is not None:
            self.on_row(row)
        return row

    def _tell(self, number: int, row: dict) -> None:
        from optuna.trial import TrialState

        trial = self._live.pop(number, None)
        # The journal keeps how each trial ended (and a config error's reason): a damaged
        # results.json is rebuilt from it and the trial folders.
        attrs = {"dlx_status": row["status"]}
        if row.get("error") and row["status"] == "config_error":
            attrs["dlx_error"] = str(row["error"])[:2000]
        for key, value in attrs.items():
            if trial is not None:
                trial.set_user_attr(key, value)
            else:  # a trial recovered after a stop: set the attribute through the study's storage
                study = self.study
                study._storage.set_trial_user_attr(
                    study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number), key, value
                )
        if row["value"] is not None and row["status"] == "completed":
            self.study.tell(number, row["value"])
        elif row["status"] == "pruned":
            # Stopped on its verdict (train.prune): the strategy learns it as pruned, at the
            # value it had reached (TPE ranks pruned trials by their last reported value).
            if trial is not None and row["value"] is not None:
                trial.report(row["value"], step=int(row.get("steps") or 0))
            self.study.tell(number, state=TrialState.PRUNED)
        else:
            self.study.tell(number, state=TrialState.FAIL)

    def _row_from_folder(self, index: int, params: dict | None) -> dict | None:
        """A finished trial's row read from its landed folder; None if it has none. Without
        params (its journal record lost) they are read back from the trial's config."""
        folder = self._trial_dir(index)
        if not folder.is_dir():
            return None
        meta = read_object(folder / "meta.json")[0]
        if meta is None:
            return {"trial": index, "status": "interrupted"}
        summary = read_object(folder / "summary.json")[0] or {}
        if params is None:
            params = self._params_from_config(folder)
            if params is None:
                return None
        value = final_metrics(summary).get(self.plan.spec.metric.name)
        return {
            "trial": index,
            "status": meta.get("status") if meta.get("status") in STATUSES else "failed",
            "value": value if _finite(value) else None,
            "params": params,
            "run": str(folder.relative_to(self.folder)),
            "seconds": summary.get("train_seconds"),
            "steps": summary.get("steps"),
            "verdict": verdict_kind(summary),
            "pruned": pruned_kind(summary),
            "node": None,
            "attempts": None,
            "error": None,
        }

    def _params_from_config(self, folder: Path) -> dict | None:
        try:
            config = yaml.safe_load((folder / "config.yaml").read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            return None
        params = {}
        for d in self.plan.dims:
            node: Any = config
            for part in d.key.split("."):
                if not isinstance(node, dict) or part not in node:
                    return None
                node = node[part]
            params[d.key] = node
        return params

    def _row_from_journal(self, index: int, t: Any) -> dict:
        """A finished trial without a folder (a config error, a crash): what the journal kept."""
        return {
            "trial": index,
            "status": t.user_attrs.get("dlx_status"),
            "value": None,
            "params": t.params,
            "run": None,
            "seconds": None,
            "verdict": None,
            "node": None,
            "attempts": None,
            "error": t.user_attrs.get("dlx_error"),
        }

    # ------------------------------------------------------------ results

    def sorted_rows(self) -> list[dict]:
        """Finished trials, best first; trials without a value (diverged, failed) last."""
        sign = -1 if self.plan.spec.goal == "max" else 1
        rows = list(self.rows.values())
        # A pruned trial's value is where it stood when it was stopped: after every finished one.
        return sorted(
            (r for r in rows if r["value"] is not None),
            key=lambda r: (r.get("status") == "pruned", sign * r["value"], r["trial"]),
        ) + sorted((r for r in rows if r["value"] is None), key=lambda r: r["trial"])

    def best(self) -> dict | None:
        rows = self.sorted_rows()
        return rows[0] if rows and rows[0]["value"] is not None else None

    def table(self):
        """One row per finished trial, best first: trial, each parameter, the metric, status,
        verdict, seconds (a pandas DataFrame with pandas)."""
        from dlx.results import as_table

        keys = [d.key for d in self.plan.dims]
        metric = self.plan.spec.metric.name
        rows = [
            {
                "trial": r["trial"],
                **{k: r["params"].get(k) for k in keys},
                metric: r["value"],
                "status": r["status"],
                "verdict": r.get("verdict"),
                "seconds": r.get("seconds"),
            }
            for r in self.sorted_rows()
        ]
        return as_table(rows, ["trial", *keys, metric, "status", "verdict", "seconds"])

    def load(self, trial: int):
        """A trial's run folder as a dlx Run (dlx.load_run)."""
        from dlx.api import load_run

        return load_run(self._trial_dir(trial))

    def __repr__(self) -> str:
        best = self.best()
        top = f"; best trial {best['trial']:04d}: {self.plan.spec.metric.name} {best['value']:.4g}" if best else ""
        return f"<dlx sweep {self.folder.name}: {self.done}/{self.plan.total} trials{top}>"

    def _repr_html_(self) -> str:
        import html

        from dlx.results import Table

        t = self.table()
        body = t.to_html(index=False) if hasattr(t, "to_html") else Table(t, t.columns)._repr_html_()
        return f"<p><b>{html.escape(repr(self))}</b></p>{body}"

    def _read_results(self) -> tuple[dict[int, dict], str | None]:
        """The rows results.json holds (those shaped like rows), and what was wrong with it."""
        path = self.folder / "results.json"
        if not path.is_file():
            return {}, None
        data, why = read_object(path)
        rows = data.get("rows") if data is not None else None
        if not isinstance(rows, list):
            return {}, why or "results.json: no rows"
        good = {
            r["trial"]: r for r in rows if isinstance(r, dict) and isinstance(r.get("trial"), int) and "status" in r
        }
        return good, (f"results.json had {len(rows) - len(good)} damaged row(s)" if len(good) < len(rows) else None)

    def _write_results(self) -> None:
        from dlx.records.folders import write_atomic, write_json

        best = self.best()
        self.meta["done"] = self.done
        write_json(self.folder / "sweep.json", self.meta)
        spec = self.plan.spec
        write_json(
            self.folder / "results.json",
            {
                "sweep_id": self.folder.name,
                "metric": spec.metric.name,
                "goal": spec.goal,
                "strategy": spec.strategy,
                "trials": self.plan.total,
                "done": self.done,
                "best": best,
                "rows": self.sorted_rows(),
            },
        )
        if best is not None and best.get("run"):
            config = (self.folder / best["run"] / "config.yaml").read_text()
            head = (
                f"# Best trial of {self.folder.name}: trial {best['trial']}, "
                f"{spec.metric.name} = {best['value']:.6g} ({spec.goal}).\n"
                f"# Params: {json.dumps(best['params'])}\n# Run it again: dlx train {self.folder / 'best.yaml'}\n"
            )
            write_atomic(self.folder / "best.yaml", head + config)

    def finish(self, status: str) -> None:
        from dlx.records.folders import DISK_FULL

        try:
            if status == "completed":
                self._clean_staging()
            self.meta.update(status=status, ended=_now())
            self._write_results()
        except OSError as e:
            # A full disk: sweep.json keeps `running`, read as interrupted once the lock is let go.
            if e.errno not in DISK_FULL:
                raise
        finally:
            self.unlock()


def _trial_index(name: str) -> int | None:
    digits = name.removeprefix("trial-")
    return int(digits) if digits.isdigit() else None


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# ---------------------------------------------------------------- a sweep folder's own files


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def repair_journal(path: Path) -> str | None:
    """Cut Optuna's journal back to its last whole record (one JSON object a line). A crash
    or power loss mid-append leaves a torn last line; Optuna would append the next record onto
    it and fail to read the file ever after. The cut bytes are kept beside it (journal.log.torn);
    a trial whose record was cut is asked again on resume. A note for the user, or None."""
    data = path.read_bytes()
    good = 0
    for line in data.splitlines(keepends=True):
        if not (line.endswith(b"\n") and _is_json(line)):
            break
        good += len(line)
    if good == len(data):
        return None
    from dlx.records.folders import write_atomic

    torn = data[good:]
    if b"\n" not in torn and _is_json(torn):  # a whole last record whose newline never made it
        write_atomic(path, data + b"\n")
        return None
    write_atomic(path.with_name(path.name + ".torn"), torn)
    write_atomic(path, data[:good])
    records = len(torn.splitlines())
    return (
        f"{path.name}: cut {len(torn)} byte(s) ({records} record(s)) torn by a crash mid-write back to the "
        f"last whole record (the cut bytes are in {path.name}.torn); a trial they recorded runs again"
    )


def _is_json(b: bytes) -> bool:
    try:
        json.loads(b)
        return True
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


# Spec keys whose change cannot mix incomparable trials in one sweep: a random or TPE search
# told to try more (or fewer) points is the same search.
SAFE_EDITS = {"trials"}


def _check_spec_unchanged(folder: Path, meta: dict, text: str, notes: list[str]) -> str:
    """The spec text to resume with: spec.yaml as stored at the start. An edit that changes
    which trials the sweep holds (the space, the metric, the base's overrides, the strategy)
    is refused with what changed; a change of `trials` alone (random/tpe) is accepted, noted."""
    original = meta.get("spec_text")
    if not isinstance(original, str) or _sha256(text) == meta.get("spec_sha256"):
        return text
    try:
        old, new = yaml.safe_load(original), yaml.safe_load(text)
    except yaml.YAMLError as e:
        old, new = None, str(e).splitlines()[0]
    changes = _changes(old, new) if isinstance(old, dict) and isinstance(new, dict) else None
    if changes is not None and not changes:
        return text  # comments or layout only
    if (
        changes is not None
        and {c[0] for c in changes} <= SAFE_EDITS
        and old.get("strategy", "grid") != "grid"
        and isinstance(new.get("trials"), int)
        and new["trials"] > 0
    ):
        notes.append(f"spec.yaml: trials {old.get('trials')} -> {new['trials']}: the same search, run to the new count")
        meta.update(spec_text=text, spec_sha256=_sha256(text), trials=new["trials"])
        return text
    listed = (
        "; ".join(f"{key}: {_show(a)} -> {_show(b)}" for key, a, b in changes)
        if changes
        else f"it no longer reads as a spec ({new})"
    )
    raise DlxError(
        f"{folder / 'spec.yaml'} was edited after the sweep started ({listed}). Trials of the old and the new "
        f"spec would be mixed in one table, so the sweep is not resumed. To finish the sweep as started, put "
        f"spec.yaml back (sweep.json keeps its text under spec_text); to search the edited space, start a new "
        f"sweep: dlx sweep {folder / 'spec.yaml'}"
    )


def _changes(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(key path, old, new) for every leaf that differs; a missing side is None."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in [*old, *(k for k in new if k not in old)]:
            out += _changes(
                old.get(k, _MISSING), new.get(k, _MISSING), f"{prefix}{k}" if not prefix else f"{prefix}.{k}"
            )
        return out
    return [] if old == new else [(prefix, old, new)]


_MISSING = object()


def _show(v: Any) -> str:
    return "(absent)" if v is _MISSING else _yaml_value(v)


# ---------------------------------------------------------------- running a sweep


def run_sweep(sweep: Sweep, executor: Any, on_row: Callable[[dict], Any] | None = None) -> Sweep:
    """Run every trial the sweep still needs through the executor.

    KeyboardInterrupt propagates (after the executor stopped its trials); the sweep
    folder then says `interrupted` and `dlx sweep --resume` finishes it.
    """
    from dlx.many.executors import Trial

    sweep.on_row = on_row
    by_id: dict[str, SweepTrial] = {}
    if sweep.plan.spec.strategy == "tpe" and getattr(executor, "stack", False):
        # A stack is asked for at once, before any of its results: TPE learns from each
        # result before its next point, so its trials run alone.
        executor.stack = False
        note = getattr(executor, "_note", None)
        if note is not None:
            note("not stacked: a tpe search picks each point from the results before it")

    def trials() -> Iterator[Trial]:
        for st in sweep.pending():
            tid = f"trial-{st.index:04d}"
            by_id[tid] = st
            yield Trial(id=tid, config=st.config, runs_dir=sweep.staging(st.index), resume=st.resume)

    from dlx.records.folders import DISK_FULL

    try:
        executor.run(trials(), on_result=lambda r: sweep.record(by_id[r.id], r))
    except OSError as e:
        sweep.finish("interrupted")
        if e.errno not in DISK_FULL:
            raise
        # The sweep's own files could not be written: its trials were stopped (resumable).
        raise DlxError(
            f"{e.strerror or e} writing {e.filename or sweep.folder}: the sweep stopped after {sweep.done} of "
            f"{sweep.plan.total} trials. Free some space, then finish it with: dlx sweep --resume {sweep.folder}"
        ) from None
    except BaseException:
        sweep.finish("interrupted")
        raise
    sweep.finish("completed" if sweep.done >= sweep.plan.total else "interrupted")
    return sweep


def sweep(
    spec: str | Path | None = None,
    sets: list[str] | tuple[str, ...] = (),
    runs_dir: str | Path = "runs",
    executor: Any = None,
    resume: str | Path | None = None,
    on_row: Callable[[dict], Any] | None = None,
) -> Sweep:
    """The Python API of `dlx sweep`: run a spec (or --resume a sweep) and return the Sweep.

        sw = dlx.sweep("configs/sweep_optimizers.yaml", ["train.epochs=5"], executor=LocalExecutor(max_parallel=2))
        sw.best(), sw.sorted_rows(), sw.folder

    executor: a LocalExecutor (the default, one trial per CPU core), a RayExecutor, or
    anything with the same run(trials, on_result) method.
    """
    if (spec is None) == (resume is None):
        raise UsageError("give a sweep spec or resume=SWEEP (a sweep folder, its id, or 'last'), not both")
    if executor is None:
        from dlx.many.executors import LocalExecutor

        executor = LocalExecutor()
    sw = (
        Sweep.open(find_sweep(resume, Path(runs_dir)))
        if resume is not None
        else Sweep.create(plan(spec, sets), Path(runs_dir))
    )
    return run_sweep(sw, executor, on_row=on_row)

"""The variants of `dlx compare` / `dlx.compare()`: one config per (variant, seed), and the
aggregation of the finished runs' summaries over seeds. Compare never trains by itself:
many.compare hands these configs to an executor.
"""

from __future__ import annotations

import copy
import itertools
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dlx.config.loader import load_config
from dlx.core.errors import UsageError
from dlx.core.stats import finite

# A variant's legend label is the views' (the HTML report draws it too); importable from here as before.
from dlx.views.labels import figure_label as figure_label

METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")


def split_values(text: str) -> list[str]:
    """'a,b,[1,2],{x: 1}' -> ['a', 'b', '[1,2]', '{x: 1}']: commas inside brackets stay."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def parse_over(items: list[str]) -> list[tuple[str, list[str]]]:
    """--over key=v1,v2 options -> [(key, [v1, v2])], in the order given."""
    axes = []
    for item in items:
        key, eq, values = item.partition("=")
        vals = split_values(values)
        if not eq or not key.strip() or not vals:
            raise UsageError(f"--over {item!r}: expected KEY=V1,V2,..., e.g. --over activation=tanh,relu")
        axes.append((key.strip(), vals))
    return axes


@dataclass
class Variant:
    label: str  # e.g. "optimizer=adam activation=tanh"
    sets: list[str]  # --set style overrides that make it


# The one variant of `dlx compare CONFIG --seeds N` with nothing varied: the setup's spread.
AS_CONFIGURED = "as configured"


def make_variants(optimizers: list[str] | None, over: list[str], seeds: int = 1) -> list[Variant]:
    """The cartesian product of --optimizers and every --over axis; with neither, the config
    itself as one variant when there are seeds to compare (its spread over seeds)."""
    axes = parse_over(over)
    if optimizers:
        # Each optimizer with its own usual hyperparameters (lr included): a fair
        # comparison does not give Adam SGD's learning rate. --over optimizer.lr=...
        # sets one for all.
        axes.insert(0, ("optimizer", [f"{{name: {o}}}" for o in optimizers]))
    if not axes and seeds > 1:
        return [Variant(AS_CONFIGURED, [])]
    if not axes:
        raise UsageError(
            "nothing to compare: give --optimizers A,B, --over KEY=V1,V2, or --seeds N (N >= 2) "
            "for one setup's spread over seeds"
        )
    out = []
    for combo in itertools.product(*[[(k, v) for v in vals] for k, vals in axes]):
        label = " ".join(f"{k}={_short(v)}" for k, v in combo)
        out.append(Variant(label, [f"{k}={v}" for k, v in combo]))
    return out


def _short(value: str) -> str:
    """A variant's label: {name: adam} -> adam. Malformed YAML keeps its text here; the
    config check that follows reports it as a problem with the --set that made it."""
    from dlx.config.loader import safe_load

    try:
        parsed = safe_load(value)
    except yaml.YAMLError:
        return value
    if isinstance(parsed, dict) and set(parsed) == {"name"}:
        return str(parsed["name"])
    return value


# A compare over more seeds than this keeps full snapshots (train.snapshots) for each
# variant's first seeds only: the report draws the first seed, and pictures of a few more
# show the spread; the rest keep none (train.snapshots: 0, no snapshots.pt: their init is
# drawn again from the seed, their end is checkpoint.pt's), as a separate run with
# --set train.snapshots=0 writes them.
FULL_SNAPSHOT_SEEDS = 3


def trial_configs(
    config: str | Path, sets: list[str], variants: list[Variant], seeds: int, first_seed: int | None = None
) -> list[tuple[Variant, int, dict]]:
    """Validated, resolved configs for every (variant, seed); all problems before any run.
    Each variant is validated once: its seeds differ in the seed alone (a free integer)."""
    base = load_config(config, sets)
    seed0 = base.seed if first_seed is None else first_seed
    out, problems = [], []
    from dlx.core.errors import ConfigError

    for v in variants:
        try:
            cfg = load_config(config, [*sets, *v.sets, f"seed={seed0}"])
        except ConfigError as e:
            problems += [p for p in e.problems if p not in problems]
            continue
        first = cfg.resolved()
        for s in range(seeds):
            resolved = copy.deepcopy(first)
            resolved["seed"] = seed0 + s
            resolved["name"] = f"{base.name or 'compare'}-{_slug(v.label)}-s{seed0 + s}"[:64]
            if seeds > FULL_SNAPSHOT_SEEDS and s >= FULL_SNAPSHOT_SEEDS:
                resolved["train"]["snapshots"] = 0
            out.append((v, seed0 + s, resolved))
    if problems:
        raise ConfigError(problems, str(config))
    return out


def _slug(label: str) -> str:
    keep = "".join(c if c.isalnum() or c in "._-" else "-" for c in label)
    return "-".join(p for p in keep.split("-") if p)


def steps_to(metrics: list[dict], target: tuple[str, float] | None) -> int | None:
    """The first logged step at which the target metric is reached (losses: at or below)."""
    if target is None:
        return None
    key, value = target
    for m in metrics:
        v = m.get(key)
        if v is None:
            continue
        if (v <= value) if key.endswith("loss") else (v >= value):
            return m["step"]
    return None


def parse_target(text: str | None) -> tuple[str, float] | None:
    if not text:
        return None
    key, eq, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not eq or key not in METRICS or math.isnan(number):
        raise UsageError(
            f"--target {text!r}: expected METRIC=VALUE with METRIC one of {', '.join(METRICS)}, "
            f"e.g. --target test_acc=0.95"
        )
    return key, number


def _mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    vals = finite(values)
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


@dataclass
class Row:
    label: str
    runs: int
    statuses: dict[str, int] = field(default_factory=dict)
    stats: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    verdict: str = ""
    run_paths: list[str] = field(default_factory=list)
    # Each final metric's finite values, one per seed that has it, in seed order.
    values: dict[str, list[float]] = field(default_factory=dict)

    def interval(self, key: str) -> tuple[float, float] | None:
        """The 95% interval of the mean of `key` over the seeds (Student's t; None under 2)."""
        from dlx.core.stats import mean_interval

        return mean_interval(self.values.get(key, []))

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "variant": self.label,
            "runs": self.runs,
            "statuses": self.statuses,
            "verdict": self.verdict,
            "run_paths": self.run_paths,
        }
        for k, (m, s) in self.stats.items():
            d[k] = {"mean": m, "sd": s}
            if k in self.values:
                ci = self.interval(k)
                d[k].update(n=len(self.values[k]), interval=list(ci) if ci else None, values=self.values[k])
        return d


def verdict_word(summary: dict[str, Any]) -> str:
    """A run's verdict in one cell: its first verdict's kind; "healthy" of a run too short to
    judge says that instead (healthy gradients after 20 steps are not a healthy outcome)."""
    kind = summary["verdicts"][0]["kind"]
    if kind == "healthy" and (summary.get("outcome") or {}).get("kind") == "too_short":
        return "too short to judge"
    return kind


def aggregate(label: str, results: list[Any], target: tuple[str, float] | None) -> Row:
    """Mean and sample sd over seeds of each final metric, steps to target, wall time."""
    row = Row(label, len(results))
    for r in results:
        row.statuses[r.status] = row.statuses.get(r.status, 0) + 1
        if r.run_path:
            row.run_paths.append(str(r.run_path))
    summaries = [r.summary for r in results if r.summary]
    for k in METRICS:
        row.values[k] = finite([s.get("final", {}).get(k) for s in summaries])
        row.stats[k] = _mean_sd(row.values[k])
    row.stats["train_seconds"] = _mean_sd([s.get("train_seconds") for s in summaries])
    if target is not None:
        reached = [steps_to(r.metrics or [], target) for r in results]
        row.stats[f"steps_to_{target[0]}"] = _mean_sd([float(x) for x in reached if x is not None])
        row.statuses["reached_target"] = sum(x is not None for x in reached)
    kinds = [verdict_word(s) for s in summaries if s.get("verdicts")]
    if kinds:
        common = max(set(kinds), key=kinds.count)
        row.verdict = common if kinds.count(common) == len(kinds) else f"{common} ({kinds.count(common)}/{len(kinds)})"
    return row

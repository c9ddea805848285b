"""The series of runs, read from their records with numpy only: gradient norms, activation
statistics, gradients through time, metric curves, and runs grouped by variant.

The figures (plots.py and its panels) draw them; the terminal heat strips (strips.py) use
them without importing matplotlib.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dlx.core.stats import root_sum_square
from dlx.views.rows import fraction


def curve(metrics: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(m["step"], m[key]) for m in metrics if m.get(key) is not None]
    if not pts:
        return np.zeros(0), np.zeros(0)
    steps, vals = zip(*pts)
    return np.asarray(steps, float), np.asarray(vals, float)


def band(runs: list[list[dict[str, Any]]], key: str):
    """Mean, min and max over runs on the steps every run logged."""
    curves = [curve(m, key) for m in runs]
    curves = [c for c in curves if len(c[0])]
    if not curves:
        return None
    common = sorted(set.intersection(*[set(s.tolist()) for s, _ in curves]))
    if not common:
        return None
    stack = np.stack([np.interp(common, s, v) for s, v in curves])
    return np.asarray(common), stack.mean(0), stack.min(0), stack.max(0)


def grad_series(probes: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(steps [S], gradient norms [S, L]) from probes.jsonl records, input layer first.

    A norm stored as null (NaN or Inf: JSON has neither) comes back as NaN.
    """
    steps: list[int] = []
    rows: list[list] = []
    for p in probes:
        g = p.get("grad_norm") or []
        first = p.get("first_step", p["step"] - len(g) + 1)
        steps.extend(range(first, first + len(g)))
        rows.extend(g)
    if not rows:
        return np.zeros(0, int), np.zeros((0, 0))
    return np.asarray(steps), np.asarray(rows, dtype=float)  # None -> nan


def weight_norm_series(probes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The whole net's weight norm, sqrt of the sum of each layer's squared norm, as metric
    records [{"step", "weight_norm"}] from probes.jsonl (a log step with a non-finite layer
    norm, stored as null, is left out: a curve's gap, not a zero)."""
    out = []
    for p in probes:
        norm = root_sum_square(p.get("weight_norm") or [])
        if norm is not None:
            out.append({"step": p["step"], "weight_norm": norm})
    return out


def time_grad_series(probes: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(log steps [K], ||dL/dh_t|| [K, R, T]) for recurrent runs; empty otherwise."""
    kept = [p for p in probes if p.get("time_grad")]
    if not kept:
        return np.zeros(0, int), np.zeros((0, 0, 0))
    return (np.asarray([p["step"] for p in kept]), np.asarray([p["time_grad"] for p in kept], dtype=float))


def act_series(probes: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Activation statistics at the log steps that have them: steps [K], pct [K, A, P]
    (the probe PERCENTILES), dead, negative and saturated [K, A] fractions (NaN where
    the activation has none: see probes.ACT_FIELDS)."""
    kept = [p for p in probes if p.get("act_pct")]
    if not kept:
        return {}
    return {
        "steps": np.asarray([p["step"] for p in kept]),
        "pct": np.asarray([p["act_pct"] for p in kept], dtype=float),
        **{
            key: np.asarray([_row(p.get(f"act_{key}"), len(p["act_pct"])) for p in kept], dtype=float)
            for key in ("dead", "negative", "saturated")
        },
    }


def _row(values: Any, n: int) -> list:
    """One fraction per activation; NaN for each when the record has none (or not n)."""
    return values if isinstance(values, list) and len(values) == n else [None] * n


def log_bins(x: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of x [S, L] (positive norms) into at most n_bins bins of consecutive rows.

    Returns (edges [B + 1] row indices, log10 values [B, L]): the mean of log10 over
    a bin's positive finite values (a geometric mean). NaN marks a bin holding any
    non-finite value (a divergence must stay visible after binning); -inf a bin whose
    values are all exactly zero (no gradient at all, e.g. a symmetric layer).
    """
    s = x.shape[0]
    b = max(1, min(n_bins, s))
    # floor of points >= 1 apart: strictly increasing edges, every bin non-empty.
    edges = np.floor(np.linspace(0, s, b + 1)).astype(int)
    bad = ~np.isfinite(x)
    good = np.isfinite(x) & (x > 0)
    logs = np.log10(np.where(good, x, 1.0))
    starts = edges[:-1]
    sums = np.add.reduceat(np.where(good, logs, 0.0), starts, axis=0)
    counts = np.add.reduceat(good.astype(int), starts, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = sums / counts  # 0/0 -> nan for bins without a positive value
    out[np.isnan(out)] = -np.inf  # no positive value and nothing bad: all zeros
    out[np.add.reduceat(bad.astype(int), starts, axis=0) > 0] = np.nan
    return edges, out


@dataclass
class Run:
    """One run folder's series, read once."""

    path: Path
    meta: dict[str, Any]
    config: dict[str, Any]
    summary: dict[str, Any]
    metrics: list[dict[str, Any]]
    steps: np.ndarray  # [S] training steps of the gradient norms
    grad: np.ndarray  # [S, L]
    layers: list[str]
    act_names: list[str]
    acts: dict[str, np.ndarray]
    tg_steps: np.ndarray  # [K]
    time_grad: np.ndarray  # [K, R, T]
    instruments: list[dict[str, Any]] = field(default_factory=list)  # dlx.run.instruments records
    weight_norms: list[dict[str, Any]] = field(default_factory=list)  # weight_norm_series

    @property
    def diverged_step(self) -> int | None:
        d = self.summary.get("diverged") or {}
        return d.get("step")


@dataclass
class Group:
    """Runs of one variant (same config except seed/name); `label` names the variant."""

    label: str
    runs: list[Run] = field(default_factory=list)

    @property
    def first(self) -> Run:
        return self.runs[0]


def load_run_series(path: Path) -> Run:
    import yaml

    from dlx.records.folders import load_run

    d = load_run(Path(path))
    try:
        config = yaml.safe_load(d["config"]) or {}
    except yaml.YAMLError:
        config = {}
    return run_series(
        Path(path),
        d["meta"],
        config if isinstance(config, dict) else {},
        d["summary"] or {},
        d["metrics"],
        d["probes"],
        d["instruments"],
    )


def run_series(
    path: Path | None,
    meta: dict[str, Any],
    config: dict[str, Any],
    summary: dict[str, Any],
    metrics: list[dict[str, Any]],
    probes: list[dict[str, Any]],
    instruments: Sequence[dict[str, Any]] = (),
) -> Run:
    """The series of one run from its records, read from a folder or kept in memory
    (an unsaved run: no meta, so names come from its summary)."""
    steps, grad = grad_series(probes)
    layers = _names(meta.get("layers") or summary.get("layers"))
    if grad.size and len(layers) != grad.shape[1]:
        layers = [f"layer {j + 1}" for j in range(grad.shape[1])]
    tg_steps, tg = time_grad_series(probes)
    meta = meta or {"name": config.get("name") or "run", "seed": config.get("seed")}
    return Run(
        path=Path(path) if path else Path(meta["name"]),
        meta=meta,
        config=config,
        summary=summary,
        metrics=metrics,
        steps=steps,
        grad=grad,
        layers=layers,
        act_names=_names(meta.get("activations") or summary.get("activations")),
        acts=act_series(probes),
        tg_steps=tg_steps,
        time_grad=tg,
        instruments=list(instruments),
        weight_norms=weight_norm_series(probes),
    )


def _names(items: Any) -> list[str]:
    """Layer or activation names from meta.json / summary.json (names, or records with a
    name); [] when the file holds something else (the panels then number them)."""
    if not isinstance(items, list):
        return []
    names = [x if isinstance(x, str) else x.get("name") if isinstance(x, dict) else None for x in items]
    return [str(n) for n in names] if all(isinstance(n, str) for n in names) else []


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}."))
    return {k.rstrip("."): v for k, v in out.items()}


def _variant(cfg: dict[str, Any]) -> str:
    """What makes runs the same variant: the config without its seed and name."""
    rest = {k: v for k, v in cfg.items() if k not in ("seed", "name")}
    return json.dumps(rest, sort_keys=True, default=str)


def group_runs(runs: list[Run]) -> list[Group]:
    """Runs grouped by variant (first appearance order), each labelled by what sets it apart."""
    by: dict[str, list[Run]] = {}
    for r in runs:
        by.setdefault(_variant(r.config), []).append(r)
    flats = [_flat({k: v for k, v in rs[0].config.items() if k not in ("seed", "name")}) for rs in by.values()]
    keys = sorted({k for f in flats for k in f})
    differ = [k for k in keys if len({json.dumps(f.get(k), default=str) for f in flats}) > 1]
    # A section whose name differs (activation.name) says it all: its other keys
    # (init.a, init.gain: parameters of different inits) would only add noise.
    named = {k[: -len(".name")] for k in differ if k.endswith(".name")}
    differ = [k for k in differ if k.endswith(".name") or k.rsplit(".", 1)[0] not in named]
    groups = []
    for rs, f in zip(by.values(), flats):
        # Every key that differs, whole: a cut label hides what tells the groups apart (the
        # figures wrap a long one onto lines: labels.wrap_label).
        if differ:
            label = ", ".join(f"{k.removesuffix('.name')}={f.get(k)}" for k in differ)
        else:
            label = rs[0].meta.get("name") or rs[0].path.name
        seeds = [r.meta.get("seed", r.config.get("seed")) for r in rs]
        label += f" (seeds {', '.join(map(str, seeds))})" if len(rs) > 1 else f" (seed {seeds[0]})"
        groups.append(Group(label, rs))
    return groups


def load_groups(paths: Sequence[Path | str]) -> list[Group]:
    """Run folders -> groups of seeds (see group_runs)."""
    return group_runs([load_run_series(Path(p)) for p in paths])


def as_groups(runs: Sequence[Any]) -> list[Group]:
    if runs and not isinstance(runs[0], Group):
        return load_groups(runs)  # paths
    return list(runs)


def group_grad(g: Group) -> tuple[np.ndarray, np.ndarray]:
    """Steps and per-step norms of a group: the geometric mean over its seeds, on the
    steps all of them logged (a diverged seed shortens the group's series)."""
    runs = [r for r in g.runs if r.grad.size]
    if len(runs) <= 1:
        return (runs[0].steps, runs[0].grad) if runs else (np.zeros(0, int), np.zeros((0, 0)))
    n = min(len(r.steps) for r in runs)
    stack = np.stack([r.grad[:n] for r in runs])
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.exp(np.log(stack).mean(0))  # any NaN seed -> NaN: shown as non-finite
    return runs[0].steps[:n], mean


def near_zero(run: Run) -> dict[str, float]:
    """Layer name -> its share of near-zero weights (summary.json), what of it is well formed."""

    layers = run.summary.get("layers") if isinstance(run.summary, dict) else None
    out = {}
    for l in layers if isinstance(layers, list) else []:
        if isinstance(l, dict) and isinstance(l.get("name"), str) and fraction(l.get("near_zero")) is not None:
            out[l["name"]] = fraction(l["near_zero"])
    return out


def sparse_layers(run: Run) -> bool:
    return any(v >= 0.05 for v in near_zero(run).values())

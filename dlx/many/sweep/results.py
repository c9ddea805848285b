"""A sweep's rows, one per finished trial: read back from results.json, a landed trial folder
or the journal's own record; ordered best first, shown as a table, written to results.json
(and the best trial's config to best.yaml). Sweep (dlx.many.sweep.folder) builds on this."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from dlx.config.overrides import config_value
from dlx.many.executors import STATUSES
from dlx.many.sweep.spec import Plan
from dlx.records.folders import final_metrics, pruned_kind, read_object, verdict_kind
from dlx.records.layout import CONFIG_FILE, META_FILE, SUMMARY_FILE

_MISSING = object()  # a key the trial's config.yaml lacks (its value may be null)


class SweepResults:
    """The rows of a sweep folder and what is read and written from them (results.json,
    best.yaml, sweep.json's counts); the parent process is their only writer."""

    def __init__(self, folder: Path, plan_: Plan, meta: dict):
        self.folder = Path(folder)
        self.plan = plan_
        self.meta = meta
        self.rows: dict[int, dict] = {}

    def _trial_dir(self, index: int) -> Path:
        return self.folder / "trials" / f"trial-{index:04d}"

    @property
    def done(self) -> int:
        return len(self.rows)

    def _row_from_folder(self, index: int, params: dict | None) -> dict | None:
        """A finished trial's row read from its landed folder; None if it has none. Without
        params (its journal record lost) they are read back from the trial's config."""
        folder = self._trial_dir(index)
        if not folder.is_dir():
            return None
        meta = read_object(folder / META_FILE)[0]
        if meta is None:
            return {"trial": index, "status": "interrupted"}
        summary = read_object(folder / SUMMARY_FILE)[0] or {}
        if params is None:
            params = self._params_from_config(folder)
            if params is None:
                return None
        value = final_metrics(summary).get(self.plan.spec.metric.name)
        return {
            "trial": index,
            "status": meta.get("status") if meta.get("status") in STATUSES else "failed",
            "value": value if finite(value) else None,
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
            config = yaml.safe_load((folder / CONFIG_FILE).read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            return None
        params = {}
        for d in self.plan.dims:
            params[d.key] = config_value(config, d.key, _MISSING)
            if params[d.key] is _MISSING:
                return None
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
        # Looked up at each call, not at import: the full-disk tests replace folders.write_atomic.
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
            config = (self.folder / best["run"] / CONFIG_FILE).read_text()
            head = (
                f"# Best trial of {self.folder.name}: trial {best['trial']}, "
                f"{spec.metric.name} = {best['value']:.6g} ({spec.goal}).\n"
                f"# Params: {json.dumps(best['params'])}\n# Run it again: dlx train {self.folder / 'best.yaml'}\n"
            )
            write_atomic(self.folder / "best.yaml", head + config)


def finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

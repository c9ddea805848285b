"""What the Python API returns: a run, a list of runs, a comparison, each with its data,
a table and a figure, and a compact display in a terminal and in Jupyter.

    r = dlx.train("quickstart")            # or dlx.load_run("last")
    r.status, r.verdict, r.summary["final"], r.metrics[-1], r.probes[-1]
    r.table()                              # per-layer table (a pandas DataFrame if pandas is installed)
    r.plot(panels=["loss", "grad_heatmap"])  # a matplotlib Figure

The data are plain records (the run folder's JSON lines); the tables and figures are
built by the same code as the CLI's and the HTML report's (report.py, plots.py).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

METRIC_KEYS = ("train_loss", "train_acc", "test_loss", "test_acc")


class Table(list):
    """Rows (dicts) with a plain and an HTML display: what .table() returns without pandas."""

    def __init__(self, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None):
        super().__init__(rows)
        self.columns = list(columns) if columns is not None else list(dict.fromkeys(k for r in rows for k in r))

    def _cells(self) -> list[list[str]]:
        from dlx.core.fmt import num

        return [
            [
                num(r.get(c)) if isinstance(r.get(c), float) else ("-" if r.get(c) is None else str(r.get(c)))
                for c in self.columns
            ]
            for r in self
        ]

    def __repr__(self) -> str:
        cells = self._cells()
        widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(self.columns)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(self.columns, widths))]
        lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in self._cells())
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def as_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None):
    """A pandas DataFrame when pandas is installed, else a Table (list of dicts)."""
    try:
        import pandas as pd
    except ImportError:
        return Table(rows, columns)
    return pd.DataFrame(list(rows), columns=list(columns) if columns is not None else None)


@dataclass
class Run:
    """One run: its folder (None when not saved), status, summary and series.

    metrics: the metrics.jsonl records (one per log interval); probes: the probes.jsonl
    records (per-step gradient norms of each interval, activation statistics, ...);
    meta: meta.json ({} for an unsaved run); config: the resolved config.
    """

    path: Path | None
    status: str
    summary: dict[str, Any]
    metrics: list[dict[str, Any]] = field(default_factory=list)
    probes: list[dict[str, Any]] = field(default_factory=list, repr=False)
    meta: dict[str, Any] = field(default_factory=dict, repr=False)
    config: dict[str, Any] = field(default_factory=dict, repr=False)
    # What reading the folder found wrong, each naming its file (the part was left out).
    problems: list[str] = field(default_factory=list, repr=False)
    # dlx.run.instruments records (sharpness, trace, noise, spectra), one per measurement.
    instruments: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def verdict(self) -> str:
        """The headline: the root cause (or healthy), in one line."""
        return self.summary.get("verdict", "")

    @property
    def verdicts(self) -> list[dict[str, Any]]:
        return self.summary.get("verdicts") or []

    @property
    def final(self) -> dict[str, Any]:
        return self.summary.get("final") or {}

    @property
    def name(self) -> str:
        return (self.path.name if self.path else None) or self.config.get("name") or "unsaved run"

    def table(self, kind: str = "layers"):
        """A table of this run: "layers" (per-layer gradient norms, |W|, update ratio),
        "metrics" (one row per log interval), "verdicts" or "activations"."""
        if kind == "metrics":
            return as_table(self.metrics)
        if kind == "verdicts":
            return as_table(
                [{k: v.get(k) for k in ("kind", "message", "cause", "remedy", "symptom_of")} for v in self.verdicts]
            )
        if kind == "activations":
            return as_table(self.summary.get("activations") or [])
        if kind == "layers":
            from dlx.views.report import layer_rows

            rows = layer_rows(self.summary)
            return as_table(rows, list(rows[0]) if rows else None)
        raise ValueError(f"unknown table {kind!r}: layers, metrics, verdicts or activations")

    def series(self):
        """The run's series as plots.py reads them (for plots.draw_panel and friends)."""
        from dlx.views.plots import run_series

        return run_series(self.path, self.meta, self.config, self.summary, self.metrics, self.probes, self.instruments)

    def plot(
        self, panels: Sequence[str] | None = None, size: tuple[float, float] | None = None, step: int | None = None
    ):
        """A matplotlib Figure: every panel, or those named: plots.USER_PANELS (loss,
        accuracy, grad_heatmap, grad_lines, activations, time_grad) and, for a saved run,
        pictures.PICTURES (boundary, units, warp, weights, filters, feature_maps,
        histograms, landscape, attention), those at the snapshot nearest `step` if given (default: the end)."""
        from dlx.views.pictures import PICTURES
        from dlx.views.plots import group_runs, panels_figure, pictures_figure
        from dlx.views.progress import inline_figures

        inline_figures()
        title = f"dlx: {self.name}"
        if panels and any(p in PICTURES for p in panels):
            if self.path is None:
                from dlx.core.errors import UsageError

                raise UsageError(
                    f"{', '.join(p for p in panels if p in PICTURES)}: pictures are drawn from the saved model, "
                    f"and this run was not saved (train with save=True)"
                )
            return pictures_figure([self.path], list(panels), size, title, step)
        return panels_figure(group_runs([self.series()]), panels, size, title=title)

    def __repr__(self) -> str:
        final = "  ".join(f"{k} {_num(self.final[k])}" for k in METRIC_KEYS if self.final.get(k) is not None)
        where = str(self.path) if self.path else "not saved"
        return f"<dlx run {self.name}: {self.status}; {self.verdict}; {final or 'no final metrics'}; {where}>"

    def _repr_html_(self) -> str:
        from dlx.views.html_report import verdicts_html

        final = "".join(
            f"<td><b>{html.escape(k)}</b> {_num(self.final[k])}</td>"
            for k in METRIC_KEYS
            if self.final.get(k) is not None
        )
        where = html.escape(str(self.path)) if self.path else "not saved"
        return (
            f'<div class="dlx-run"><p><b>dlx run {html.escape(self.name)}</b>: {html.escape(self.status)}, '
            f"{self.summary.get('steps', 0)} steps &middot; <code>{where}</code></p>"
            f"<table><tr>{final}</tr></table>{verdicts_html(self.verdicts)}</div>"
        )


RunResult = Run  # the name the API used before it returned tables and figures


class RunList(list):
    """dlx.runs(): one row (dict) per run folder, with a table and a compact display."""

    COLUMNS = ("run_id", "status", "steps", *METRIC_KEYS, "verdict")
    skipped: list[str] = []  # folders left out as unreadable, each with why (set by dlx.runs)

    def table(self):
        return as_table(self, self.COLUMNS)

    def load(self, i: int) -> Run:
        """Row i as a full Run (its series and summary read from the folder)."""
        return load_run(self[i]["path"])

    def __repr__(self) -> str:
        return repr(Table(self, self.COLUMNS)) if self else "<no runs>"

    def _repr_html_(self) -> str:
        return Table(self, self.COLUMNS)._repr_html_()


@dataclass
class Comparison:
    """dlx.compare(): one row per variant (mean and sd over seeds of the final metrics,
    steps to the target, seconds, the verdict) and every run behind it."""

    config: str
    seeds: int
    target: tuple[str, float] | None
    rows: list[Any]  # compare.Row, one per variant
    runs: dict[str, list[Run]]  # variant label -> its runs, one per seed
    figure_path: Path | None = None
    record_path: Path | None = None  # compare-NAME-TIME.json in runs_dir (folders.write_compare_record)
    # With ensemble=True: per variant, its seed runs' averaged predictions (dlx.many.ensemble).
    ensembles: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: int = 0
    # What the executor said: which trials trained stacked, which alone and why.
    notes: list[str] = field(default_factory=list)

    def table(self):
        """Mean and sd of each final metric per variant (columns METRIC and METRIC_sd)."""
        out = []
        for r in self.rows:
            row: dict[str, Any] = {"variant": r.label}
            for k, (m, s) in r.stats.items():
                row[k], row[f"{k}_sd"] = m, s
            row.update(verdict=r.verdict, runs=r.runs)
            out.append(row)
        return as_table(out, list(out[0]) if out else None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "seeds": self.seeds,
            "target": f"{self.target[0]}={self.target[1]:g}" if self.target else None,
            "figure": str(self.figure_path) if self.figure_path else None,
            "notes": self.notes,
            "variants": [r.as_dict() for r in self.rows],
            **({"ensembles": self.ensembles} if self.ensembles else {}),
        }

    def plot(self, size: tuple[float, float] | None = None):
        """Loss and accuracy curves per variant: mean line, band over seeds (a Figure)."""
        from dlx.views.plots import compare_curves_figure
        from dlx.views.progress import inline_figures

        inline_figures()
        groups = {label: [r.metrics for r in runs if r.metrics] for label, runs in self.runs.items()}
        return compare_curves_figure(groups, title=f"dlx compare {Path(self.config).name}", size=size)

    def __repr__(self) -> str:
        return f"<dlx compare {self.config}: {len(self.rows)} variants x {self.seeds} seeds>\n" + repr(
            Table(self._plain_rows())
        )

    def _plain_rows(self) -> list[dict[str, Any]]:
        rows = []
        for r in self.rows:
            row: dict[str, Any] = {"variant": r.label}
            extra = (f"steps_to_{self.target[0]}",) if self.target else ()
            for k in (*METRIC_KEYS, *extra):
                m, s = r.stats.get(k, (None, None))
                row[k] = "-" if m is None else f"{_num(m)}±{_num(s, 2)}"
            row["verdict"] = r.verdict
            rows.append(row)
        return rows

    def _repr_html_(self) -> str:
        return (
            f"<p><b>dlx compare {html.escape(self.config)}</b>: {len(self.rows)} variants x "
            f"{self.seeds} seeds (mean ± sd)</p>" + Table(self._plain_rows())._repr_html_()
        )


def _num(x: Any, digits: int = 3) -> str:
    from dlx.core.fmt import num

    return num(x, digits)


def load_run(run: str | Path, runs_dir: str | Path = "runs") -> Run:
    """A run from its folder (a path, a run id or a unique part of it, 'last', or
    SWEEP/trial-NNNN): the same Run that dlx.train returns, read from disk. Its status is
    the status now (a `running` run whose process is gone is `interrupted`)."""
    import yaml

    from dlx.records.folders import find_run
    from dlx.records.folders import load_run as read_run

    d = read_run(find_run(run, Path(runs_dir)))
    try:
        # libyaml where it is installed: a compare reads every run's config.yaml back.
        config = yaml.load(d["config"], Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    except yaml.YAMLError:
        config = {}
    return Run(
        path=d["path"],
        status=d["status"],
        summary=d["summary"] or {},
        metrics=d["metrics"],
        probes=d["probes"],
        meta=d["meta"],
        config=config if isinstance(config, dict) else {},
        problems=d["problems"],
        instruments=d["instruments"],
    )

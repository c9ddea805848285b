"""`dlx report`: one self-contained HTML page for a run or a sweep.

Self-contained means the file can be mailed, archived or opened offline and looks
the same: the CSS is inline, figures are base64 PNG data URIs, and there are no
scripts, fonts or links to fetch. A Content-Security-Policy in the page makes the
browser refuse anything else, so a stray external reference fails loudly in a test.
Everything taken from the run's files (config comments, names, messages) goes
through html.escape: a run name or a YAML comment may hold '<'.

The page of a run is built in html_run.py (a sweep's page shows its best trial with it), the
blocks of every page in html_page.py; their names are importable from here as before.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from dlx.core.errors import DlxError
from dlx.diagnosis.engine import LABEL
from dlx.records.layout import CHECKPOINT_FILE, META_FILE, SUMMARY_FILE
from dlx.views.html_page import CSP, CSS, esc, figure_png, guarded, html_table, kv, num, page, pill, png_uri
from dlx.views.html_run import (
    FINAL_KEYS,
    HEALTHY,
    PICTURE_CAPTIONS,
    SEVERE,
    classes_html,
    fix_html,
    instruments_html,
    layers_html,
    meta_html,
    metrics_html,
    picture_kinds,
    pictures_html,
    run_page,
    run_sections,
    verdicts_html,
)
from dlx.views.labels import figure_label

__all__ = [
    "CSP",
    "CSS",
    "FINAL_KEYS",
    "HEALTHY",
    "PICTURE_CAPTIONS",
    "SEVERE",
    "classes_html",
    "compare_page",
    "esc",
    "fix_html",
    "guarded",
    "instruments_html",
    "is_sweep",
    "layers_html",
    "meta_html",
    "metrics_html",
    "num",
    "params_figure",
    "picture_kinds",
    "pictures_html",
    "png_uri",
    "resolve",
    "run_page",
    "run_sections",
    "sweep_page",
    "verdicts_html",
    "write_report",
]


def resolve(ref: str | Path, runs_dir: Path = Path("runs")) -> Path:
    """A run or sweep folder from a path, an id (or a unique part of one), 'last' (the run or
    sweep started or resumed most recently), 'last-run' or 'last-sweep'; or a compare's
    record (its compare-*.json, or 'last-compare')."""
    from dlx.records.folders import (
        compare_records,
        find_run,
        find_sweep,
        is_compare_record,
        newest,
        run_folders,
        sweep_folders,
    )

    p = Path(ref)
    if (p / "sweep.json").is_file() or (p / META_FILE).is_file() or is_compare_record(p):
        return p
    if str(ref) == "last-compare":
        found = compare_records(runs_dir)
        if not found:
            raise DlxError(f"no compare in {runs_dir} yet; run one with: dlx compare CONFIG")
        return found[-1]
    if str(ref) == "last":
        found = newest(run_folders(runs_dir) + sweep_folders(runs_dir))
        if found is None:
            raise DlxError(f"no runs or sweeps in {runs_dir} yet; train one with: dlx train CONFIG")
        return found
    if str(ref) in ("last-run", "last-sweep"):
        return (find_run if ref == "last-run" else find_sweep)(ref, runs_dir)
    errors = []
    for find in (find_run, find_sweep):
        try:
            return find(ref, runs_dir)
        except DlxError as e:
            errors.append(str(e))
    if any("matches" in e for e in errors):  # ambiguous: say which ids it matched
        raise DlxError(next(e for e in errors if "matches" in e))
    raise DlxError(
        f"no run or sweep '{ref}': not a run or sweep folder, and no id in {runs_dir} contains it; "
        f"list them with: dlx runs --runs-dir {runs_dir}"
    )


def is_sweep(folder: Path) -> bool:
    return (Path(folder) / "sweep.json").is_file()


def write_report(ref: str | Path, out: str | Path | None = None, runs_dir: str | Path = "runs") -> Path:
    """Render the page for a run or sweep (a folder, an id or 'last'; default out:
    <folder>/report.html) or a compare (its compare-*.json or 'last-compare'; default out:
    the same name, .html)."""
    from dlx.records.folders import is_compare_record, write_atomic

    folder = resolve(ref, Path(runs_dir))
    if is_compare_record(folder):
        page = compare_page(folder)
        out = Path(out) if out is not None else folder.with_suffix(".html")
    else:
        page = sweep_page(folder) if is_sweep(folder) else run_page(folder)
        out = Path(out) if out is not None else folder / "report.html"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, page)
    except OSError as e:
        raise DlxError(f"cannot write the report to {out}: {e.strerror or e}; pass -o with a writable path") from None
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def params_figure(rows: list[dict[str, Any]], metric: str) -> bytes | None:
    """The metric against each swept parameter, one small panel each (numbers on a log axis when they span decades)."""
    done = [r for r in rows if _is_number(r.get("value"))]
    keys = sorted({k for r in done for k in (r.get("params") or {})})
    if not done or not keys:
        return None
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dlx.views.style import plain

    cols = min(len(keys), 4)
    nrows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.6 * cols, 2.8 * nrows), squeeze=False, constrained_layout=True)
    for ax, key in zip(axes.flat, keys):
        pts = [(r["params"][key], r["value"]) for r in done if key in r["params"]]
        xs = [p[0] for p in pts]
        if all(_is_number(x) for x in xs):
            ax.scatter(xs, [p[1] for p in pts], s=22, color="C0")
            if min(xs) > 0 and max(xs) / min(xs) >= 20:
                ax.set_xscale("log")
        else:  # categories: one column each
            cats = sorted({str(x) for x in xs})
            ax.scatter([cats.index(str(x)) for x in xs], [p[1] for p in pts], s=22, color="C0")
            ax.set_xticks(range(len(cats)), [plain(c) for c in cats], rotation=30 if len(cats) > 3 else 0, fontsize=8)
            ax.set_xlim(-0.5, len(cats) - 0.5)
        ax.set_xlabel(plain(key), fontsize=9)
        ax.set_ylabel(metric, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.set_visible(False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _is_row(r: Any) -> bool:
    """A results.json row the page can show: a trial number, a status, params as an object."""
    from dlx.records.folders import is_int, is_number

    return (
        isinstance(r, dict)
        and is_int(r.get("trial"))
        and 0 <= r["trial"] < 10**9
        and isinstance(r.get("params", {}), dict)
        and (r.get("value") is None or is_number(r.get("value")))
    )


def _cell(v: Any) -> str:
    return num(v, 4) if _is_number(v) else esc(v)


def sweep_page(folder: Path) -> str:
    from dlx.records.folders import load_run, read_object, sweep_status

    folder = Path(folder)
    meta, why = read_object(folder / "sweep.json")
    if meta is None:
        raise DlxError(f"{folder} is not a readable sweep folder ({why}); give a folder made by dlx sweep")
    results, why = read_object(folder / "results.json")
    left_out = [why] if why and (folder / "results.json").exists() else []
    results = results or {}
    metric, goal = str(meta.get("metric", "?")), str(meta.get("goal", "?"))
    # Best first by the metric; trials without a value (diverged, failed) last, by index.
    rows = results.get("rows") if isinstance(results.get("rows"), list) else []
    good = [r for r in rows if _is_row(r)]
    if len(good) < len(rows):
        left_out.append(f"results.json: {len(rows) - len(good)} row(s) of an unexpected shape")
    rows = good
    sign = -1 if goal == "max" else 1
    rows = sorted(
        (r for r in rows if _is_number(r.get("value"))), key=lambda r: (sign * r["value"], r["trial"])
    ) + sorted((r for r in rows if not _is_number(r.get("value"))), key=lambda r: r["trial"])
    best = results.get("best") if _is_row(results.get("best")) else None
    keys = list(dict.fromkeys(k for r in rows for k in (r.get("params") or {})))
    sections = []

    head = ["trial", *keys, metric, "status", "verdict", "seconds", "note"]
    trows, classes = [], []
    for r in rows:
        note = str(r.get("error")).splitlines()[0] if r.get("error") else ""
        params = r.get("params") or {}
        trows.append(
            [
                f"{r['trial']:04d}",
                *[_cell(params.get(k)) for k in keys],
                _cell(r.get("value")),
                pill(r.get("status")),
                esc(r.get("verdict") or "-"),
                num(r.get("seconds")),
                esc(note),
            ]
        )
        classes.append("best" if best and r["trial"] == best.get("trial") else "")
    table = (
        html_table(head, trows, left=("trial", "status", "verdict", "note", *keys), classes=classes)
        if rows
        else '<p class="note">no finished trials yet</p>'
    )
    sections.append(("trials", f"Trials ({len(rows)} of {meta.get('trials', '?')}, best first by {metric})", table))

    png = guarded("results.json", params_figure, rows, metric)
    if isinstance(png, str):
        sections.append(("params", f"{metric} against each parameter", png))
    elif png is not None:
        sections.append(
            (
                "params",
                f"{metric} against each parameter",
                f'<figure><img alt="{esc(metric)} against each parameter" src="{png_uri(png)}">'
                f"<figcaption>one point per finished trial</figcaption></figure>",
            )
        )

    best_run = folder / best["run"] if best and isinstance(best.get("run"), str) else None
    run = None
    if best_run is not None and (best_run / META_FILE).is_file():
        try:
            run = load_run(best_run)
        except DlxError as e:
            left_out.append(str(e))
    if run is not None:
        intro = kv(
            [
                ("trial", f"{best['trial']:04d}"),
                (metric, num(best.get("value"), 4)),
                ("params", json.dumps(best.get("params"))),
                ("run folder", best["run"]),
            ]
        )
        for sid, h, inner in run_sections(run, figure_title=f"best trial {best['trial']:04d}"):
            if sid == "verdicts":
                inner = intro + "<h3>Verdicts</h3>" + inner
                h = f"Best trial {best['trial']:04d}"
            sections.append((f"best-{sid}", h if sid == "verdicts" else f"Best trial: {h.lower()}", inner))
    else:
        sections.append(("best-verdicts", "Best trial", '<p class="note">no trial has a value yet</p>'))

    spec = (folder / "spec.yaml").read_text(errors="replace") if (folder / "spec.yaml").is_file() else ""
    sections.append(("spec", "Sweep spec", f"<pre>{esc(spec)}</pre>"))
    sections.append(
        (
            "meta",
            "Sweep",
            kv(
                [
                    ("sweep id", meta.get("sweep_id")),
                    ("status", sweep_status(meta, folder)),
                    ("strategy", meta.get("strategy")),
                    ("seed", meta.get("seed")),
                    ("metric", f"{metric} ({goal})"),
                    ("trials", f"{meta.get('done', len(rows))} done of {meta.get('trials', '?')}"),
                    ("spec path", meta.get("spec_path")),
                    ("base path", meta.get("base_path")),
                    ("overrides", " ".join(map(str, meta.get("sets") or [])) or None),
                    ("created", meta.get("created")),
                    ("resumed", meta.get("resumed")),
                    ("ended", meta.get("ended")),
                ]
            ),
        )
    )

    sid = meta.get("sweep_id") or folder.name
    sub = (
        f"{pill(sweep_status(meta, folder))} {esc(meta.get('strategy'))} search, {esc(metric)} ({esc(goal)}), "
        f"{esc(meta.get('done', len(rows)))} of {esc(meta.get('trials', '?'))} trials"
    )
    if best:
        sub += f" &middot; best {esc(metric)} {num(best.get('value'), 4)} (trial {best['trial']:04d})"
    if left_out:  # what reading the folder left out, each by its file
        sections.append(("problems", "Left out", "<ul>" + "".join(f"<li>{esc(p)}</li>" for p in left_out) + "</ul>"))
    # The best trial's own sections stay out of the links: one link to the start of them is enough.
    nav = {"trials": "Trials", "params": "Parameters", "best-verdicts": "Best trial", "spec": "Spec", "meta": "Sweep"}
    return page(f"dlx sweep {sid}", sub, sections, {k: v for k, v in nav.items() if k in {s[0] for s in sections}})


# A table cell's text that may wrap (the page's cells do not): long words stay whole.
_WRAP = "white-space: normal; display: inline-block; min-width: 12em; max-width: 28em"


def verdict_words(verdict: Any) -> str:
    """A compare record's verdict (the kind most seeds share, "dead_units (2/3)" when not all
    do) in words, whole: "dead units (2/3)"; "healthy" for the healthy kind (its label,
    "health", is the noun the sentences use: "signs of health")."""
    text = str(verdict or "").strip()
    if not text:
        return "-"
    kind, _, rest = text.partition(" ")
    words = "healthy" if kind == "healthy" else LABEL.get(kind, kind)
    return f"{words} {rest}".strip()


def compare_page(record_path: Path) -> str:
    """One page for a dlx compare (its record, folders.write_compare_record): the variants'
    numbers and verdicts, their curves, and (2-D data) their decision boundaries side by
    side, one seed each; then every variant's verdicts in full."""
    from dlx.records.folders import load_run, read_object
    from dlx.views.plots import compare_curves_figure, pictures_figure

    rec, why = read_object(record_path)
    if rec is None:
        raise DlxError(f"{record_path} is not a readable compare record ({why})")
    variants = [v for v in rec.get("variants") or [] if isinstance(v, dict)]
    runs = {}
    left_out = []
    for v in variants:
        loaded = []
        for p in v.get("run_paths") or []:
            try:
                loaded.append(load_run(Path(p)))
            except DlxError as e:
                left_out.append(str(e))
        runs[str(v.get("variant"))] = loaded
    metrics = [
        k
        for k in ("test_acc", "test_loss", "train_loss", "train_seconds")
        if any(isinstance(v.get(k), dict) for v in variants)
    ]
    # The verdict next to the variant it judges: the numbers after it may run past a narrow
    # window (the table scrolls), the verdict never does. A long variant label wraps in its cell,
    # and "mean ± sd" is said once under the table, not in every column's head.
    head = ["variant", "runs", "verdict", *metrics]
    rows = []
    for v in variants:
        cells = [f'<span style="{_WRAP}">{esc(v.get("variant"))}</span>', esc(v.get("runs"))]
        cells.append(f'<span style="{_WRAP}">{esc(verdict_words(v.get("verdict")))}</span>')
        for k in metrics:
            m = v.get(k) or {}
            cells.append(f"{num(m.get('mean'))} ± {num(m.get('sd'), 2)}" if m.get("mean") is not None else "-")
        rows.append(cells)
    said = "<p class=\"note\">numbers: mean ± sd over each variant's seeds; verdict: the most seeds' (on how many, when not all)</p>"
    sections = [("variants", "Variants", html_table(head, rows, left=("variant", "verdict")) + said)]

    def curves() -> str:
        first = {label: (rs[0] if rs else None) for label, rs in runs.items()}
        groups = {}
        for label, rs in runs.items():
            cfg = yaml.safe_load(first[label]["config"]) if first[label] else {}
            groups[figure_label(label, cfg or {})] = [r["metrics"] for r in rs if r["metrics"]]
        fig = compare_curves_figure(groups, title=f"dlx compare {Path(str(rec.get('config', ''))).name}")
        return f'<figure><img alt="curves" src="{png_uri(figure_png(fig))}"><figcaption>mean over seeds, each seed faint behind it</figcaption></figure>'

    sections.append(("curves", "Curves", guarded("the runs' metrics", curves)))

    def seeds() -> str:
        from dlx.views.spread import distribution_figure, headline_metric, record_rows, spread_lines

        rows = record_rows(variants, runs)
        key = headline_metric(rows)
        lines = spread_lines(rows)
        if key is None or not lines:
            return ""
        fig = distribution_figure(rows, key)
        return (
            "<ul>"
            + "".join(f"<li>{esc(line)}</li>" for line in lines)
            + "</ul>"
            + (
                f'<figure><img alt="final {esc(key)} per seed" src="{png_uri(figure_png(fig))}">'
                f"<figcaption>every seed's final {esc(key)} per variant, best first</figcaption></figure>"
            )
        )

    spread = guarded("the seeds' final metrics", seeds)
    if spread:
        sections.append(("seeds", "What the seeds say", spread))
    one_each = [rs[0]["path"] for rs in runs.values() if rs and (Path(rs[0]["path"]) / CHECKPOINT_FILE).is_file()]
    data = (runs and next(iter(runs.values())) and next(iter(runs.values()))[0]["meta"].get("data")) or {}
    if one_each and data.get("task") == "classification" and list(data.get("feature_shape") or []) == [2]:
        try:
            fig = pictures_figure(one_each, ["boundary"])
            inner = (
                f'<figure><img alt="decision boundaries" src="{png_uri(figure_png(fig))}">'
                f"<figcaption>each variant's first seed at the end: train points filled, test hollow</figcaption></figure>"
            )
        except DlxError as e:
            inner = f'<p class="note">no boundaries: {esc(e)}</p>'
        sections.append(("boundaries", "Decision boundaries", inner))
    verdicts = []
    for label, rs in runs.items():
        if rs and rs[0]["summary"]:
            verdicts.append(f"<h3>{esc(label)} <small>(seed {esc(rs[0]['meta'].get('seed'))})</small></h3>")
            verdicts.append(guarded(SUMMARY_FILE, verdicts_html, rs[0]["summary"].get("verdicts") or []))
    sections.append(
        ("verdicts", "Verdicts, one seed per variant", "\n".join(verdicts) or '<p class="note">no summaries</p>')
    )
    links = "".join(
        f"<li>{esc(label)}: " + ", ".join(esc(Path(r["path"]).name) for r in rs) + "</li>" for label, rs in runs.items()
    )
    sections.append(("runs", "Run folders", f"<ul>{links}</ul>"))
    notes = rec.get("notes") or []
    if notes:
        sections.append(("notes", "How they ran", "<ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>"))
    if left_out:
        sections.append(("problems", "Left out", "<ul>" + "".join(f"<li>{esc(p)}</li>" for p in left_out) + "</ul>"))
    sub = f"{len(variants)} variants x {esc(rec.get('seeds'))} seeds of {esc(rec.get('config'))}"
    return page(f"dlx compare {Path(str(rec.get('config', ''))).name}", sub, sections)

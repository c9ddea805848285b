"""The HTML page of one run (`dlx report RUN`) and its sections, which a sweep's page shows
for its best trial: verdicts, final metrics, what fixed it, figures, pictures, instruments,
the per-layer tables, the config and the run's facts. Built from html_page's blocks.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml

from dlx.core.errors import DlxError
from dlx.diagnosis.engine import KIND, LABEL
from dlx.records.layout import (
    CHECKPOINT_FILE,
    EVENTS_FILE,
    FIX_RECORD,
    INSTRUMENTS_FILE,
    META_FILE,
    METRICS_FILE,
    PROBES_FILE,
    SNAPSHOTS_FILE,
    SUMMARY_FILE,
)
from dlx.views.html_page import esc, figure_png, guarded, html_table, kv, num, page, pill, png_uri
from dlx.views.labels import change_text, kind_counts, mean_sd_text, needed_text
from dlx.views.rows import LAYER_HEADERS, activation_rows, classes_worth_showing, describe, layer_rows, shows_sparsity

# Verdict kinds by how urgently they need a fix: a red card stops the reader, amber asks
# for a look, green says nothing to do. Unknown kinds (added later) default to amber.
# Read from each kind's severity (dlx.diagnosis.kinds); "wrong" (learned the wrong thing) is amber here.
SEVERE = {kind for kind, k in KIND.items() if k.severity == "severe"}
HEALTHY = {kind for kind, k in KIND.items() if k.severity == "healthy"}


def _runs_figure(run_paths: list[Path], title: str | None) -> bytes:
    """All panels of plots.plot_runs for these runs, as PNG bytes."""
    from dlx.views.plots import plot_runs

    with tempfile.TemporaryDirectory(prefix="dlx-report-") as tmp:
        return Path(plot_runs(run_paths, Path(tmp) / "runs.png", title=title)).read_bytes()


def _figure_html(run_paths: list[Path], title: str | None, caption: str) -> str:
    try:
        png = _runs_figure(run_paths, title)
    except DlxError as e:  # e.g. a run that stopped before its first log interval
        return f'<p class="note">no figure: {esc(e)}</p>'
    return f'<figure><img alt="{esc(caption)}" src="{png_uri(png)}"><figcaption>{esc(caption)}</figcaption></figure>'


def picture_kinds(meta: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """The pictures that show what this run's network computes (pictures.PICTURES), from
    its data and model: a 2-D classifier's units, an mlp on images' first-layer weights,
    a CNN's filters and feature maps, an attention model's weights per head; every net
    with hidden activations its histograms."""
    data = meta.get("data") or {}
    shape, model = list(data.get("feature_shape") or []), (config.get("model") or {}).get("name")
    kinds = []
    if data.get("task") == "classification" and shape == [2]:
        kinds.append("units")
    elif model == "cnn":
        kinds += ["filters", "feature_maps"]
    elif model == "mlp" and (len(shape) >= 2 or shape == [784]):
        kinds.append("weights")
    elif model == "attention":
        kinds.append("attention")
    return kinds + ["histograms"]


def pictures_html(path: Path, meta: dict[str, Any], config: dict[str, Any]) -> str:
    """What the network computes, from the saved model and its snapshots: a 2-D run's
    boundary filmstrip (init to end), then its units or first layer, and the histograms."""
    from dlx.views.plots import filmstrip_figure, pictures_figure

    if not (path / CHECKPOINT_FILE).is_file() and not (path / SNAPSHOTS_FILE).is_file():
        return '<p class="note">no pictures: the run saved no model (train.checkpoint: false)</p>'
    parts = []
    data = meta.get("data") or {}
    if data.get("task") == "classification" and list(data.get("feature_shape") or []) == [2]:
        parts.append(
            (
                "the decision boundary from init to the end: train points filled, test hollow",
                lambda: filmstrip_figure(path),
            )
        )
    for kind in picture_kinds(meta, config):
        parts.append((PICTURE_CAPTIONS[kind], lambda kind=kind: pictures_figure([path], [kind], title=None)))
    html = []
    for caption, build in parts:
        try:
            png = figure_png(build())
        except DlxError as e:  # a model without hidden layers, a run without snapshots, ...
            html.append(f'<p class="note">{esc(caption.split(":")[0])}: {esc(e)}</p>')
            continue
        html.append(
            f'<figure><img alt="{esc(caption)}" src="{png_uri(png)}"><figcaption>{esc(caption)}</figcaption></figure>'
        )
    return "\n".join(html)


def instruments_html(run: dict[str, Any]) -> str:
    """The research instruments: what they said (summary.json) and their panels."""
    from dlx.views.plots import group_runs, load_run_series, panel_names, panels_figure, pictures_figure

    notes = ((run["summary"] or {}).get("instruments") or {}).get("notes") or []
    html = "<ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>" if notes else ""
    groups = group_runs([load_run_series(Path(run["path"]))])
    names = [n for n in panel_names(groups) if n.split(":")[0] in ("sharpness", "noise", "spectra")]
    if names:
        fig = panels_figure(groups, list(dict.fromkeys(n.split(":")[0] for n in names)))
        html += (
            f'<figure><img alt="instruments" src="{png_uri(figure_png(fig))}"><figcaption>sharpness against the '
            f"step size's stability threshold (trace dotted), gradient noise scale against the batch size, "
            f"singular values against the init's random edge</figcaption></figure>"
        )
    if (Path(run["path"]) / SNAPSHOTS_FILE).is_file():
        try:
            fig = pictures_figure([Path(run["path"])], ["landscape"], title=None)
        except DlxError as e:  # fewer than 3 snapshots, ...
            return html + f'<p class="note">no landscape: {esc(e)}</p>'
        html += (
            f'<figure><img alt="loss landscape" src="{png_uri(figure_png(fig))}"><figcaption>the training loss from '
            f"the init to the end along a straight line, and around the end with the path it took "
            f"(dlx landscape)</figcaption></figure>"
        )
    return html


PICTURE_CAPTIONS = {
    "units": "every hidden unit's output over the input plane, layer by layer (red positive, blue negative)",
    "weights": "what training wrote into the first layer: each unit's weight change, as an image of the input",
    "filters": "the first convolution's filters",
    "feature_maps": "the first convolution's outputs for one test image",
    "attention": "where each query step looks: the attention weights per head for one test sequence",
    "histograms": "activations and back-propagated gradients per layer, from init to the end",
}


def verdicts_html(verdicts: list[dict[str, Any]]) -> str:
    """One card per verdict (most severe first, as stored): message, then cause and remedy when known."""
    if not verdicts:
        return '<p class="note">no verdicts (the run stopped before the diagnosis)</p>'
    cards = []
    for v in verdicts:
        kind = v.get("kind", "?")
        cls = "severe" if kind in SEVERE else "healthy" if kind in HEALTHY else "warn"
        if v.get("symptom_of"):
            # A symptom: one line under its root cause's card, no cause or remedy of its own.
            root = esc(LABEL.get(v["symptom_of"], v["symptom_of"]))
            cards.append(
                f'<div class="verdict symptom" data-kind="{esc(kind)}"><div class="kind">symptom: '
                f"{esc(kind.replace('_', ' '))}</div><p>{esc(v.get('message', ''))} "
                f'<span class="label">(from the {root} above)</span></p></div>'
            )
            continue
        parts = [f'<div class="kind">{esc(kind.replace("_", " "))}</div>', f"<p>{esc(v.get('message', ''))}</p>"]
        if v.get("cause"):
            parts.append(f'<p><span class="label">Likely cause:</span> {esc(v["cause"])}</p>')
        if v.get("remedy"):
            parts.append(f'<p><span class="label">Try:</span> {esc(v["remedy"])}</p>')
        cards.append(f'<div class="verdict {cls}" data-kind="{esc(kind)}">{"".join(parts)}</div>')
    return "\n".join(cards)


def fix_html(record: dict[str, Any]) -> str:
    """`dlx fix`'s record (fix.json): per remedy, each verdict it answers gone on how many
    seeds, the metric's mean +- sd and change against the original, seconds per run; each
    combined remedy that worked part by part, and which part fixed it; the winner and how to
    run it."""
    metric = str(record.get("metric", "metric"))
    head = ["remedy", "verdicts", metric, "change", "s/run"]
    rows = [
        {"runs": 0, "gone": 0, **r} for r in record["rows"] if isinstance(r, dict) and isinstance(r.get("label"), str)
    ]
    intro = (
        f"<p>The original config and each remedy of its verdicts "
        f"({esc(', '.join(map(str, record.get('verdicts') or [])))}), {esc(record.get('seeds'))} seed(s) each"
        + (f", {esc(record.get('budget'))} steps" if record.get("budget") else "")
        + f", {esc(record.get('when', ''))}. Verdicts: the seeds on which the original shows each one, "
        "and a remedy no longer does.</p>"
    )
    cells, classes = _fix_cells(rows, record.get("winner"))
    table = html_table(head, cells, left=["remedy", "verdicts"], classes=classes)
    for r in rows:
        parts = [{"runs": 0, "gone": 0, **p} for p in r.get("parts") or [] if isinstance(p, dict) and "label" in p]
        if not parts:
            continue
        cells, _ = _fix_cells(parts, None)
        table += (
            f"<p>{esc(r['label'])}, one part at a time (the same {esc(r['runs'])} seeds):</p>"
            + html_table(["part alone", *head[1:]], cells, left=["part alone", "verdicts"])
            + f'<p><span class="label">Which part:</span> {esc(needed_text(r, metric))}</p>'
        )
    if record.get("winner"):
        end = (
            f'<p><span class="label">Fixed by:</span> {esc(record["winner"])}; its config: '
            f"<code>{esc(record.get('fixed'))}</code>, run it with <code>{esc(record.get('command'))}</code></p>"
        )
    else:
        end = f'<p class="note">{esc(record.get("note") or "no remedy removed the verdict")}</p>'
    return intro + table + end


def _fix_cells(rows: list[dict[str, Any]], winner: Any) -> tuple[list[list[str]], list[str]]:
    """The cells of fix_html's tables, a verdict a line, and each row's class (the winner's "best")."""
    cells, classes = [], []
    for r in rows:
        won = winner is not None and r["label"] == winner
        cells.append(
            [
                esc(("winner: " if won else "") + str(r["label"])),
                "<br>".join(esc(line) for line, _, _ in kind_counts(r)),
                esc(mean_sd_text(r)),
                esc(change_text(r)),
                num(r.get("seconds")),
            ]
        )
        classes.append("best" if won else "")
    return cells, classes


def classes_html(summary: dict[str, Any]) -> str:
    """Per class: training and test samples, test recall, the confusion matrix's row."""
    c = summary["classes"]
    k = len(c["recall"])
    rows = [
        [
            str(i),
            str(c["train_counts"][i]),
            str(c["test_counts"][i]),
            f"{c['recall'][i]:.0%}" if c["recall"][i] is not None else "-",
            *[str(v) for v in c["confusion"][i]],
        ]
        for i in range(k)
    ]
    head = ["class", "train", "test", "recall", *[f"predicted {j}" for j in range(k)]]
    return (
        html_table(head, rows)
        + '<p class="note">test set; the confusion matrix: rows the true class, columns the predicted</p>'
    )


def layers_html(summary: dict[str, Any]) -> str:
    """The per-layer gradient table of `dlx show` (report.layer_table), with a log-scale bar."""
    if not summary.get("layers"):
        return '<p class="note">no per-layer statistics</p>'
    rows = []
    sparse = shows_sparsity(layer_rows(summary))
    for r in layer_rows(summary):
        bar = f'<span style="width:{max(3, round(100 * r["bar"]))}%"></span>' if r["bar"] is not None else ""
        rows.append(
            [
                esc(r["layer"]),
                esc(r["shape"]),
                num(r["grad_first"]),
                num(r["grad_median"]),
                num(r["grad_last"]),
                bar,
                num(r["weight_norm"]),
                num(r["update_ratio"]),
                *([f"{r['near_zero']:.0%}" if r.get("near_zero") is not None else "-"] if sparse else []),
            ]
        )
    head = list(LAYER_HEADERS) + (["|w|<1e-3"] if sparse else [])
    table = html_table(head, rows, left=("layer", "shape", "log median"))
    table = table.replace('<td class="l"><span', '<td class="l bar"><span')
    out = [f"<h3>Gradient L2 norm per layer (input layer first)</h3>{table}"]
    acts = summary.get("activations") or []
    if acts:
        head, arows = activation_rows(acts)
        arows = [[esc(r[0]), *r[1:]] for r in arows]
        out.append("<h3>Activations at the last log step</h3>" + html_table(head, arows, left=("layer",)))
    through = summary.get("time_grad")
    if through:
        names = [l["name"] for l in summary.get("layers") or [] if l["name"] != "out"]
        trows = []
        for i, row in enumerate(through):
            if not row or not row[-1]:
                continue
            first, last = row[0] or 0.0, row[-1]
            trows.append(
                [
                    esc(names[i] if i < len(names) else f"row {i}"),
                    num(first),
                    num(last),
                    str(len(row)),
                    num(first / last),
                ]
            )
        if trows:
            out.append(
                "<h3>Gradient through time at the last log step (||dL/dh_t||)</h3>"
                + html_table(["layer", "t=1", "t=T", "T", "ratio"], trows, left=("layer",))
            )
    return "\n".join(out)


FINAL_KEYS = ("train_loss", "train_acc", "test_loss", "test_acc")


def metrics_html(summary: dict[str, Any], status: str | None = None) -> str:
    """status: the run's status now (runs.run_status); without it, the summary's own."""
    final, best = summary.get("final") or {}, summary.get("best") or {}
    cards = []
    for k in FINAL_KEYS:
        if final.get(k) is None:
            continue
        extra = f'<div class="extra">best {num(best[k], 4)}</div>' if best.get(k) is not None else ""
        cards.append(
            f'<div class="metric"><div class="name">{esc(k)}</div>'
            f'<div class="value">{num(final[k], 4)}</div>{extra}</div>'
        )
    status = status or summary.get("status", "?")
    epochs, speed = summary.get("epochs") or 0, summary.get("samples_per_s") or 0
    line = (
        f"{pill(status)} {esc(summary.get('steps', 0))} steps, {epochs:g} epochs, "
        f"{num(summary.get('train_seconds'))} s, {speed:,.0f} samples/s"
    )
    if summary.get("reason"):
        line += f" ({esc(summary['reason'])})"
    d = summary.get("diverged")
    if isinstance(d, dict) and d.get("step") is not None:
        where = f", first non-finite in {esc(d['layer'])}" if d.get("layer") else ""
        line += f"<br>diverged at step {esc(d['step'])}{where}"
    if final.get("window"):
        line += f'<br><span class="note">final numbers over: {esc(final["window"])}</span>'
    out = summary.get("outcome") or {}
    if out.get("text"):
        line += f'<br><span class="label">Outcome:</span> {esc(out["text"])}'
    return (
        f'<div class="metrics">{"".join(cards)}</div>' if cards else '<p class="note">no final metrics</p>'
    ) + f"<p>{line}</p>"


def meta_html(meta: dict[str, Any], summary: dict[str, Any] | None, status: str | None = None) -> str:
    s = summary or {}
    ver = meta.get("versions") or {}
    data = meta.get("data") or {}
    pairs = [
        ("run id", meta.get("run_id")),
        ("name", meta.get("name")),
        ("status", status or meta.get("status")),
        ("device", meta.get("device")),
        ("seed", meta.get("seed")),
        ("steps", f"{s.get('steps', '-')} of {meta.get('total_steps', '-')}"),
        ("epochs", s.get("epochs")),
        ("batch size", meta.get("batch_size")),
        ("parameters", f"{meta['parameters']:,}" if isinstance(meta.get("parameters"), int) else None),
        ("data", ", ".join(f"{k} {v}" for k, v in data.items()) if data else None),
        ("started", meta.get("started")),
        ("ended", meta.get("ended")),
        ("train seconds", num(s.get("train_seconds")) if s else None),
        ("versions", ", ".join(f"{k} {v}" for k, v in ver.items()) if ver else None),
        ("git commit", meta.get("git_commit")),
        ("command", " ".join(meta.get("command") or []) or None),
        ("working folder", meta.get("cwd")),
        ("reason", meta.get("reason")),
    ]
    out = kv(pairs)
    if meta.get("error"):
        out += f"<h3>Error</h3><pre>{esc(meta['error'])}</pre>"
    return out


def changes_html(events: list[dict[str, Any]]) -> str:
    """The changes made while it trained (events.jsonl), one line per key."""
    from dlx.views.report import change_lines

    return "<ul>" + "".join(f"<li>{esc(line)}</li>" for line in change_lines(events)) + "</ul>"


def run_sections(run: dict[str, Any], figure_title: str | None = None) -> list[tuple[str, str, str]]:
    """Verdicts, metrics, figures, layers, config and meta of one loaded run (dlx.records.folders.load_run)."""
    s = run["summary"]
    meta = run["meta"]
    status = run["status"]  # runs.run_status: a killed `running` run is interrupted
    sections = []
    if s is None:
        sections.append(
            (
                "verdicts",
                "Verdicts",
                f'<p class="note">no summary yet: status {pill(status)}; '
                f"the run is still going or stopped before it finished.</p>",
            )
        )
    else:
        sections.append(
            ("verdicts", "Verdicts", guarded(f"{SUMMARY_FILE} (verdicts)", verdicts_html, s.get("verdicts") or []))
        )
        sections.append(("metrics", "Final metrics", guarded(f"{SUMMARY_FILE} (final)", metrics_html, s, status)))
    from dlx.records.folders import read_fix_record, read_jsonl

    events = read_jsonl(Path(run["path"]) / EVENTS_FILE)
    if events:
        sections.append(("changes", "Changes while it trained", guarded(EVENTS_FILE, changes_html, events)))
    record = read_fix_record(Path(run["path"]))
    if record is not None:
        sections.append(("fixed", "What fixed it", guarded(FIX_RECORD, fix_html, record)))
    if run["metrics"]:
        fig = guarded(
            f"{METRICS_FILE} or {PROBES_FILE}",
            _figure_html,
            [run["path"]],
            figure_title,
            "training curves and per-layer dynamics",
        )
    else:
        fig = '<p class="note">no figure: nothing was logged yet</p>'
    sections.append(("figures", "Figures", fig))
    try:
        config = yaml.safe_load(run["config"]) or {}
    except yaml.YAMLError:
        config = {}
    if isinstance(config, dict):
        pics = guarded(f"{CHECKPOINT_FILE} or {SNAPSHOTS_FILE}", pictures_html, Path(run["path"]), meta, config)
        sections.append(("pictures", "What the network computes", pics))
    if run.get("instruments"):
        sections.append(("instruments", "Instruments", guarded(INSTRUMENTS_FILE, instruments_html, run)))
    if s is not None:
        if guarded(f"{SUMMARY_FILE} (classes)", classes_worth_showing, s) is True:
            sections.append(("classes", "Per class", guarded(f"{SUMMARY_FILE} (classes)", classes_html, s)))
        sections.append(("layers", "Per-layer table", guarded(f"{SUMMARY_FILE} (layers)", layers_html, s)))
    sections.append(("config", "Config", f"<pre>{esc(run['config'])}</pre>"))
    sections.append(("meta", "Run", guarded(META_FILE, meta_html, meta, s, status)))
    problems = run.get("problems") or []
    if problems:  # what reading the folder left out, each by its file
        sections.append(("problems", "Left out", "<ul>" + "".join(f"<li>{esc(p)}</li>" for p in problems) + "</ul>"))
    return sections


def run_page(folder: Path) -> str:
    from dlx.records.folders import load_run

    run = load_run(folder)
    meta = run["meta"]
    rid = meta.get("run_id") or Path(folder).name
    sub = (
        f"{pill(run['status'])} {esc(meta.get('device', ''))} &middot; seed {esc(meta.get('seed'))}"
        f" &middot; started {esc(meta.get('started', ''))}"
    )
    try:
        sub += f"<br>{esc(describe(yaml.safe_load(run['config'])))}"
    except Exception:  # noqa: BLE001  (a config this version cannot describe still gets a page)
        pass
    return page(f"dlx run {rid}", sub, run_sections(run))

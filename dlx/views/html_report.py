"""`dlx report`: one self-contained HTML page for a run or a sweep.

Self-contained means the file can be mailed, archived or opened offline and looks
the same: the CSS is inline, figures are base64 PNG data URIs, and there are no
scripts, fonts or links to fetch. A Content-Security-Policy in the page makes the
browser refuse anything else, so a stray external reference fails loudly in a test.
Everything taken from the run's files (config comments, names, messages) goes
through html.escape: a run name or a YAML comment may hold '<'.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import math
import tempfile
from pathlib import Path
from typing import Any, Iterable

import yaml

from dlx.core import fmt
from dlx.core.errors import DamagedFile, DlxError
from dlx.diagnosis.engine import LABEL

# Verdict kinds by how urgently they need a fix: a red card stops the reader, amber asks
# for a look, green says nothing to do. Unknown kinds (added later) default to amber.
SEVERE = {"exploding", "diverged", "lr_too_high", "init_scale"}
HEALTHY = {"healthy"}

CSS = """
:root { --fg:#1d2330; --muted:#5b6475; --line:#dde1e8; --bg:#ffffff; --panel:#f6f7f9;
        --green:#1f7a3d; --green-bg:#e8f5ec; --amber:#8a5a00; --amber-bg:#fff4dc;
        --red:#a61b1b; --red-bg:#fdeaea; --accent:#2857a4; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; }
header h1 { font-size: 22px; margin: 0 0 4px; word-break: break-all; }
header .sub { color: var(--muted); margin: 0; }
nav { margin: 14px 0 6px; font-size: 13px; }
nav a { color: var(--accent); text-decoration: none; margin-right: 14px; }
section { margin-top: 28px; }
h2 { font-size: 17px; margin: 0 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 16px 0 8px; }
.pill { display: inline-block; padding: 1px 9px; border-radius: 10px; font-size: 13px; font-weight: 600; }
.st-completed { background: var(--green-bg); color: var(--green); }
.st-diverged, .st-failed, .st-crashed, .st-config_error { background: var(--red-bg); color: var(--red); }
.st-interrupted, .st-running { background: var(--amber-bg); color: var(--amber); }
.verdict { border-left: 5px solid var(--amber); background: var(--amber-bg); padding: 10px 14px;
           margin: 0 0 10px; border-radius: 4px; }
.verdict.severe { border-color: var(--red); background: var(--red-bg); }
.verdict.healthy { border-color: var(--green); background: var(--green-bg); }
.verdict.symptom { border-color: #ccc; background: transparent; margin-left: 24px; padding: 4px 14px; }
.verdict .kind { font-weight: 700; text-transform: uppercase; font-size: 12px; letter-spacing: .05em; }
.verdict.severe .kind { color: var(--red); } .verdict.healthy .kind { color: var(--green); }
.verdict .kind { color: var(--amber); }
.verdict p { margin: 4px 0 0; }
.verdict .label { font-weight: 600; }
table { border-collapse: collapse; font-size: 13.5px; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th { background: var(--panel); font-weight: 600; }
th.l, td.l { text-align: left; }
tbody tr:nth-child(even) { background: #fafbfc; }
tr.best td { background: var(--green-bg); font-weight: 600; }
td.bar { width: 140px; }
.bar span { display: block; height: 9px; background: #4f86d9; border-radius: 2px; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 3px 18px; margin: 0; font-size: 14px; }
dl.kv dt { color: var(--muted); } dl.kv dd { margin: 0; word-break: break-all; }
.metrics { display: flex; flex-wrap: wrap; gap: 12px; }
.metric { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 130px; }
.metric .name { color: var(--muted); font-size: 12px; } .metric .value { font-size: 20px; font-weight: 600; }
.metric .extra { color: var(--muted); font-size: 12px; }
pre { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px;
      font: 12.5px/1.45 ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; overflow-x: auto; }
figure { margin: 0 0 16px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 13px; }
.note { color: var(--muted); font-style: italic; }
.scroll { overflow-x: auto; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
"""

# default-src 'none': no fetch of any kind; only inline styles and data: images may load.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def esc(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def num(x: Any, digits: int = 3) -> str:
    """The page's numbers read as the terminal's (report.num)."""
    return fmt.num(x, digits)


# ---------------------------------------------------------------- finding what to report


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
    if (p / "sweep.json").is_file() or (p / "meta.json").is_file() or is_compare_record(p):
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


# ---------------------------------------------------------------- figures


def png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _runs_figure(run_paths: list[Path], title: str | None) -> bytes:
    """All panels of plots.plot_runs for these runs, as PNG bytes."""
    from dlx.views.plots import plot_runs

    with tempfile.TemporaryDirectory(prefix="dlx-report-") as tmp:
        return Path(plot_runs(run_paths, Path(tmp) / "runs.png", title=title)).read_bytes()


def guarded(what: str, build, *args) -> str:
    """One part of a page; a part that a file's odd shape breaks is a note naming the file."""
    from dlx.records.folders import SHAPE_ERRORS

    try:
        return build(*args)
    except SHAPE_ERRORS as e:
        return f'<p class="note">{esc(what)} has an unexpected shape here ({esc(type(e).__name__)}: {esc(e)}); left out</p>'
    except DamagedFile as e:  # a .pt file that is not tensors (folders.read_tensors)
        return f'<p class="note">{esc(e)}; left out</p>'


def _figure_html(run_paths: list[Path], title: str | None, caption: str) -> str:
    try:
        png = _runs_figure(run_paths, title)
    except DlxError as e:  # e.g. a run that stopped before its first log interval
        return f'<p class="note">no figure: {esc(e)}</p>'
    return f'<figure><img alt="{esc(caption)}" src="{png_uri(png)}"><figcaption>{esc(caption)}</figcaption></figure>'


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    return buf.getvalue()


def picture_kinds(meta: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """The pictures that show what this run's network computes (pictures.PICTURES), from
    its data and model: a 2-D classifier's units, an mlp on images' first-layer weights,
    a CNN's filters and feature maps; every net with hidden activations its histograms."""
    data = meta.get("data") or {}
    shape, model = list(data.get("feature_shape") or []), (config.get("model") or {}).get("name")
    kinds = []
    if data.get("task") == "classification" and shape == [2]:
        kinds.append("units")
    elif model == "cnn":
        kinds += ["filters", "feature_maps"]
    elif model == "mlp" and (len(shape) >= 2 or shape == [784]):
        kinds.append("weights")
    return kinds + ["histograms"]


def pictures_html(path: Path, meta: dict[str, Any], config: dict[str, Any]) -> str:
    """What the network computes, from the saved model and its snapshots: a 2-D run's
    boundary filmstrip (init to end), then its units or first layer, and the histograms."""
    from dlx.views.plots import filmstrip_figure, pictures_figure

    if not (path / "checkpoint.pt").is_file() and not (path / "snapshots.pt").is_file():
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
            png = _png(build())
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
            f'<figure><img alt="instruments" src="{png_uri(_png(fig))}"><figcaption>sharpness against the '
            f"step size's stability threshold (trace dotted), gradient noise scale against the batch size, "
            f"singular values against the init's random edge</figcaption></figure>"
        )
    if (Path(run["path"]) / "snapshots.pt").is_file():
        try:
            fig = pictures_figure([Path(run["path"])], ["landscape"], title=None)
        except DlxError as e:  # fewer than 3 snapshots, ...
            return html + f'<p class="note">no landscape: {esc(e)}</p>'
        html += (
            f'<figure><img alt="loss landscape" src="{png_uri(_png(fig))}"><figcaption>the training loss from '
            f"the init to the end along a straight line, and around the end with the path it took "
            f"(dlx landscape)</figcaption></figure>"
        )
    return html


PICTURE_CAPTIONS = {
    "units": "every hidden unit's output over the input plane, layer by layer (red positive, blue negative)",
    "weights": "the first layer's weights of each unit, as images of the input",
    "filters": "the first convolution's filters",
    "feature_maps": "the first convolution's outputs for one test image",
    "histograms": "activations and back-propagated gradients per layer, from init to the end",
}


# ---------------------------------------------------------------- building blocks


def _page(title: str, subtitle: str, sections: list[tuple[str, str, str]], nav: dict[str, str] | None = None) -> str:
    """The whole document: sections are (id, heading, inner html); nav: the links on top (id -> label), default all."""
    from dlx.core.version import __version__

    nav = nav if nav is not None else {sid: head for sid, head, _ in sections}
    links = "".join(f'<a href="#{sid}">{esc(label)}</a>' for sid, label in nav.items())
    body = "\n".join(f'<section id="{sid}"><h2>{esc(head)}</h2>\n{inner}\n</section>' for sid, head, inner in sections)
    made = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style></head>\n"
        f'<body><main>\n<header><h1>{esc(title)}</h1><p class="sub">{subtitle}</p></header>\n'
        f"<nav>{links}</nav>\n{body}\n"
        f"<footer>made by dlx {esc(__version__)} on {esc(made)}</footer>\n</main></body></html>\n"
    )


def _pill(status: Any) -> str:
    return f'<span class="pill st-{esc(status)}">{esc(status)}</span>'


def _kv(pairs: Iterable[tuple[str, Any]]) -> str:
    rows = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in pairs if v not in (None, "", [], {}))
    return f'<dl class="kv">{rows}</dl>'


def _table(head: list[str], rows: list[list[str]], left: Iterable[str] = (), classes: list[str] | None = None) -> str:
    """An HTML table; cells are already-escaped html. Columns named in `left` align left."""
    left = set(left)
    th = "".join(f'<th class="l">{esc(h)}</th>' if h in left else f"<th>{esc(h)}</th>" for h in head)
    body = []
    for i, r in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        tds = "".join(f'<td class="l">{c}</td>' if h in left else f"<td>{c}</td>" for h, c in zip(head, r))
        body.append(f"<tr{cls}>{tds}</tr>")
    return f'<div class="scroll"><table><thead><tr>{th}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


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
    """`dlx fix`'s record (fix.json): per remedy, the verdict gone on how many seeds, the
    metric's mean +- sd and change against the original, seconds per run; the winner and how
    to run it."""
    from dlx.many.remedies import change_text, gone_text, mean_sd_text

    metric = str(record.get("metric", "metric"))
    rows, classes = [], []
    for r in record["rows"]:
        if not isinstance(r, dict) or not isinstance(r.get("label"), str):
            continue
        r = {"runs": 0, "gone": 0, **r}
        won = r["label"] == record.get("winner")
        rows.append(
            [
                esc(("winner: " if won else "") + r["label"]),
                esc(gone_text(r)),
                esc(mean_sd_text(r)),
                esc(change_text(r)),
                num(r.get("seconds")),
            ]
        )
        classes.append("best" if won else "")
    intro = (
        f"<p>The original config and each remedy of its verdicts "
        f"({esc(', '.join(map(str, record.get('verdicts') or [])))}), {esc(record.get('seeds'))} seed(s) each"
        + (f", {esc(record.get('budget'))} steps" if record.get("budget") else "")
        + f", {esc(record.get('when', ''))}.</p>"
    )
    table = _table(["remedy", "verdict", metric, "change", "s/run"], rows, left=["remedy"], classes=classes)
    if record.get("winner"):
        end = (
            f'<p><span class="label">Fixed by:</span> {esc(record["winner"])}; its config: '
            f"<code>{esc(record.get('fixed'))}</code>, run it with <code>{esc(record.get('command'))}</code></p>"
        )
    else:
        end = f'<p class="note">{esc(record.get("note") or "no remedy removed the verdict")}</p>'
    return intro + table + end


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
        _table(head, rows)
        + '<p class="note">test set; the confusion matrix: rows the true class, columns the predicted</p>'
    )


def layers_html(summary: dict[str, Any]) -> str:
    """The per-layer gradient table of `dlx show` (report.layer_table), with a log-scale bar."""
    from dlx.views.report import LAYER_HEADERS, layer_rows, shows_sparsity

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
    table = _table(head, rows, left=("layer", "shape", "log median"))
    table = table.replace('<td class="l"><span', '<td class="l bar"><span')
    out = [f"<h3>Gradient L2 norm per layer (input layer first)</h3>{table}"]
    acts = summary.get("activations") or []
    if acts:
        from dlx.views.report import activation_rows

        head, arows = activation_rows(acts)
        arows = [[esc(r[0]), *r[1:]] for r in arows]
        out.append("<h3>Activations at the last log step</h3>" + _table(head, arows, left=("layer",)))
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
                + _table(["layer", "t=1", "t=T", "T", "ratio"], trows, left=("layer",))
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
        f"{_pill(status)} {esc(summary.get('steps', 0))} steps, {epochs:g} epochs, "
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
    out = _kv(pairs)
    if meta.get("error"):
        out += f"<h3>Error</h3><pre>{esc(meta['error'])}</pre>"
    return out


# ---------------------------------------------------------------- pages


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
                f'<p class="note">no summary yet: status {_pill(status)}; '
                f"the run is still going or stopped before it finished.</p>",
            )
        )
    else:
        sections.append(
            ("verdicts", "Verdicts", guarded("summary.json (verdicts)", verdicts_html, s.get("verdicts") or []))
        )
        sections.append(("metrics", "Final metrics", guarded("summary.json (final)", metrics_html, s, status)))
    from dlx.records.folders import read_fix_record

    record = read_fix_record(Path(run["path"]))
    if record is not None:
        sections.append(("fixed", "What fixed it", guarded("fix.json", fix_html, record)))
    if run["metrics"]:
        fig = guarded(
            "metrics.jsonl or probes.jsonl",
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
        pics = guarded("checkpoint.pt or snapshots.pt", pictures_html, Path(run["path"]), meta, config)
        sections.append(("pictures", "What the network computes", pics))
    if run.get("instruments"):
        sections.append(("instruments", "Instruments", guarded("instruments.jsonl", instruments_html, run)))
    if s is not None:
        from dlx.views.report import classes_worth_showing

        if guarded("summary.json (classes)", classes_worth_showing, s) is True:
            sections.append(("classes", "Per class", guarded("summary.json (classes)", classes_html, s)))
        sections.append(("layers", "Per-layer table", guarded("summary.json (layers)", layers_html, s)))
    sections.append(("config", "Config", f"<pre>{esc(run['config'])}</pre>"))
    sections.append(("meta", "Run", guarded("meta.json", meta_html, meta, s, status)))
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
        f"{_pill(run['status'])} {esc(meta.get('device', ''))} &middot; seed {esc(meta.get('seed'))}"
        f" &middot; started {esc(meta.get('started', ''))}"
    )
    try:
        from dlx.views.report import describe

        sub += f"<br>{esc(describe(yaml.safe_load(run['config'])))}"
    except Exception:  # noqa: BLE001  (a config this version cannot describe still gets a page)
        pass
    return _page(f"dlx run {rid}", sub, run_sections(run))


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

    from dlx.views.plots import plain

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
                _pill(r.get("status")),
                esc(r.get("verdict") or "-"),
                num(r.get("seconds")),
                esc(note),
            ]
        )
        classes.append("best" if best and r["trial"] == best.get("trial") else "")
    table = (
        _table(head, trows, left=("trial", "status", "verdict", "note", *keys), classes=classes)
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
    if best_run is not None and (best_run / "meta.json").is_file():
        try:
            run = load_run(best_run)
        except DlxError as e:
            left_out.append(str(e))
    if run is not None:
        intro = _kv(
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
            _kv(
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
        f"{_pill(sweep_status(meta, folder))} {esc(meta.get('strategy'))} search, {esc(metric)} ({esc(goal)}), "
        f"{esc(meta.get('done', len(rows)))} of {esc(meta.get('trials', '?'))} trials"
    )
    if best:
        sub += f" &middot; best {esc(metric)} {num(best.get('value'), 4)} (trial {best['trial']:04d})"
    if left_out:  # what reading the folder left out, each by its file
        sections.append(("problems", "Left out", "<ul>" + "".join(f"<li>{esc(p)}</li>" for p in left_out) + "</ul>"))
    # The best trial's own sections stay out of the links: one link to the start of them is enough.
    nav = {"trials": "Trials", "params": "Parameters", "best-verdicts": "Best trial", "spec": "Spec", "meta": "Sweep"}
    return _page(f"dlx sweep {sid}", sub, sections, {k: v for k, v in nav.items() if k in {s[0] for s in sections}})


def compare_page(record_path: Path) -> str:
    """One page for a dlx compare (its record, folders.write_compare_record): the variants'
    numbers and verdicts, their curves, and (2-D data) their decision boundaries side by
    side, one seed each; then every variant's verdicts in full."""
    from dlx.many.variants import figure_label
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
    head = ["variant", "runs", *[f"{k} (mean ± sd)" for k in metrics], "verdict"]
    rows = []
    for v in variants:
        cells = [esc(v.get("variant")), esc(v.get("runs"))]
        for k in metrics:
            m = v.get(k) or {}
            cells.append(f"{num(m.get('mean'))} ± {num(m.get('sd'), 2)}" if m.get("mean") is not None else "-")
        cells.append(esc(LABEL.get(str(v.get("verdict", "")).split(" ")[0], v.get("verdict") or "-")))
        rows.append(cells)
    sections = [("variants", "Variants", _table(head, rows, left=("variant", "verdict")))]

    def curves() -> str:
        first = {label: (rs[0] if rs else None) for label, rs in runs.items()}
        groups = {}
        for label, rs in runs.items():
            cfg = yaml.safe_load(first[label]["config"]) if first[label] else {}
            groups[figure_label(label, cfg or {})] = [r["metrics"] for r in rs if r["metrics"]]
        fig = compare_curves_figure(groups, title=f"dlx compare {Path(str(rec.get('config', ''))).name}")
        return f'<figure><img alt="curves" src="{png_uri(_png(fig))}"><figcaption>mean over seeds, band: min to max</figcaption></figure>'

    sections.append(("curves", "Curves", guarded("the runs' metrics", curves)))
    one_each = [rs[0]["path"] for rs in runs.values() if rs and (Path(rs[0]["path"]) / "checkpoint.pt").is_file()]
    data = (runs and next(iter(runs.values())) and next(iter(runs.values()))[0]["meta"].get("data")) or {}
    if one_each and data.get("task") == "classification" and list(data.get("feature_shape") or []) == [2]:
        try:
            fig = pictures_figure(one_each, ["boundary"])
            inner = (
                f'<figure><img alt="decision boundaries" src="{png_uri(_png(fig))}">'
                f"<figcaption>each variant's first seed at the end: train points filled, test hollow</figcaption></figure>"
            )
        except DlxError as e:
            inner = f'<p class="note">no boundaries: {esc(e)}</p>'
        sections.append(("boundaries", "Decision boundaries", inner))
    verdicts = []
    for label, rs in runs.items():
        if rs and rs[0]["summary"]:
            verdicts.append(f"<h3>{esc(label)} <small>(seed {esc(rs[0]['meta'].get('seed'))})</small></h3>")
            verdicts.append(guarded("summary.json", verdicts_html, rs[0]["summary"].get("verdicts") or []))
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
    return _page(f"dlx compare {Path(str(rec.get('config', ''))).name}", sub, sections)

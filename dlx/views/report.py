"""Rich renderables for runs: the per-layer table, verdicts, final metrics.

Everything here reads plain summary/meta dicts (as stored in the run folder), so
`dlx train` at the end of a run and `dlx show` later draw the same thing. The rows of the
tables come from rows.py, the heat strips and sparklines from strips.py, the init check's
table from init_table.py; all their names are importable from here as before.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.errors import NotRenderableError
from rich.text import Text

from dlx.core import fmt
from dlx.core.errors import DamagedFile
from dlx.diagnosis.engine import KIND, LABEL
from dlx.records.folders import SHAPE_ERRORS
from dlx.records.layout import EVENTS_FILE, META_FILE, METRICS_FILE, PROBES_FILE, SUMMARY_FILE
from dlx.views.init_table import INIT_COLUMNS, INIT_VERDICT_STYLE, init_check_table, init_num
from dlx.views.rows import (
    LAYER_HEADERS,
    OPTIONAL_ACT_COLUMNS,
    activation_rows,
    classes_worth_showing,
    describe,
    layer_rows,
    shape_text,
    shows_sparsity,
)
from dlx.views.strips import (
    MAP_COLUMNS,
    MONO_CLASSES,
    MONO_RAMP,
    NONFINITE_MARK,
    RAMP_RGB,
    SPARK,
    STRIP_COLUMNS,
    STRIP_LABEL,
    STRIP_MAX_ROWS,
    ZERO_MARK,
    BoundaryMap,
    HeatStrip,
    LossSpark,
    grad_strip,
    time_strips,
)
from dlx.views.style import STATUS_STYLE
from dlx.views.tables import Hanging as Hanging

__all__ = [
    "INIT_COLUMNS",
    "INIT_VERDICT_STYLE",
    "LAYER_HEADERS",
    "MAP_COLUMNS",
    "MONO_CLASSES",
    "MONO_RAMP",
    "NONFINITE_MARK",
    "OPTIONAL_ACT_COLUMNS",
    "RAMP_RGB",
    "SPARK",
    "STATUS_STYLE",
    "STRIP_COLUMNS",
    "STRIP_LABEL",
    "STRIP_MAX_ROWS",
    "VERDICT_STYLE",
    "ZERO_MARK",
    "BoundaryMap",
    "FitToWidth",
    "Hanging",
    "HeatStrip",
    "LossSpark",
    "activation_rows",
    "activation_table",
    "class_table",
    "classes_worth_showing",
    "describe",
    "final_text",
    "grad_strip",
    "guarded",
    "init_check_table",
    "init_num",
    "instruments_text",
    "layer_rows",
    "layer_table",
    "num",
    "run_report",
    "shape_text",
    "shows_sparsity",
    "time_strips",
    "time_text",
    "verdict_text",
]


# Red: the run is wrecked (NaN, steps blowing up). Yellow: it runs, but a layer, a
# time step or the loss curve is not doing its job. Magenta: it learned, but the wrong thing.
# By severity, which each kind's record gives (dlx.diagnosis.kinds): no kind is left out.
SEVERITY_STYLE = {"severe": "bold red", "warn": "bold yellow", "wrong": "bold magenta", "healthy": "bold green"}
VERDICT_STYLE = {kind: SEVERITY_STYLE[k.severity] for kind, k in KIND.items()}


def num(x: Any, digits: int = 3) -> str:
    """A number in a table or a report's line: `digits` significant digits, an exponent below 1e-3 and from 1e5."""
    return fmt.num(x, digits)


BAR_CELLS = 12  # the log-median bar's length for the largest median, where there is room
# Where to see what a narrow terminal leaves out of the run's tables.
SEE_ALL = "dlx show RUN --json shows all"


class FitToWidth:
    """A table from dlx.views.tables.fit, fitted to the width it is drawn at (a terminal's, a
    notebook's), with the lines saying what it left out under it. build(width) -> Fitted.

    Where even the columns always kept do not fit, it is drawn wider than the width (a terminal
    wraps the lines): a number is never cut."""

    def __init__(self, build):
        self.build = build

    def __rich_console__(self, console, options):
        fitted = self.build(options.max_width)
        yield from console.render(fitted.table, options.update_width(max(options.max_width, fitted.width)))
        for note in fitted.notes(SEE_ALL):
            yield Hanging(Text(note, style="dim"), labels=(note[: note.find(": ") + 2],))


def layer_table(summary: dict[str, Any]) -> FitToWidth:
    """The per-layer gradient table. Kept always: layer (never cut: block12.fc_b), median and
    |dW|/|W| (and |w|<1e-3 where shown). When narrow, in this order: the log-median bar gets
    shorter, then is left out; then first, |W|, shape and last are left out."""
    from dlx.views.tables import Column, Step, fit

    rows = layer_rows(summary)
    sparse = shows_sparsity(rows)

    def bar_column(cells: int) -> Column:
        bars = [
            Text("█" * max(1, round(r["bar"] * cells)), style="cyan") if r["bar"] is not None else Text("")
            for r in rows
        ]
        return Column("log median", "log median", bars, justify="left")

    def column(key: str, values: list[Any], justify: str = "right") -> Column:
        return Column(key, key, [Text(v) for v in values], justify=justify)

    cols = [
        column("layer", [r["layer"] for r in rows], "left"),
        column("shape", [r["shape"] for r in rows], "left"),
        column("first", [num(r["grad_first"]) for r in rows]),
        column("median", [num(r["grad_median"]) for r in rows]),
        column("last", [num(r["grad_last"]) for r in rows]),
        bar_column(BAR_CELLS),
        column("|W|", [num(r["weight_norm"]) for r in rows]),
        column("|dW|/|W|", [num(r["update_ratio"]) for r in rows]),
    ]
    if sparse:
        cols.append(
            column("|w|<1e-3", [f"{r['near_zero']:.0%}" if r.get("near_zero") is not None else "-" for r in rows])
        )
    # The bar is relative (each layer against the others): a shorter one says the same.
    steps = [Step(swap=lambda room: [bar_column(max(1, min(BAR_CELLS, room("log median"))))])]
    steps += [Step(drop=k) for k in ("log median", "first", "|W|", "shape", "last")]
    title = "Per-layer gradient L2 norm (input layer first)"
    return FitToWidth(lambda width: fit(cols, width, steps, title=title))


# The labels a line of a run's text starts with: its continuation lines are indented under
# the text after the label (verdict_text, final_text).
def activation_table(summary: dict[str, Any]) -> FitToWidth | None:
    """The activations at the last log step: every column always (a number is never cut)."""
    from dlx.views.tables import Column, fit

    acts = summary.get("activations") or []
    if not acts:
        return None
    head, rows = activation_rows(acts)
    cols = [
        Column(col, col, [Text(row[j]) for row in rows], justify="left" if col == "layer" else "right")
        for j, col in enumerate(head)
    ]
    return FitToWidth(lambda width: fit(cols, width, [], title="Activations at the last log step"))


def time_text(summary: dict[str, Any]) -> Text | None:
    """For recurrent models: how much of the gradient at the last step reaches the first."""
    rows = summary.get("time_grad")
    if not rows:
        return None
    names = [l["name"] for l in summary.get("layers", []) if l["name"] != "out"]
    t = Text("Gradient through time at the last log step (||dL/dh_t||)\n", style="bold")
    for i, row in enumerate(rows):
        vals = [v for v in row if v is not None]
        if not vals or not row[-1]:
            continue
        name = names[i] if i < len(names) else f"row {i}"
        first, last = row[0] or 0.0, row[-1]
        t.append(f"  {name}: t=1 {num(first)}, t={len(row)} {num(last)}, ratio {num(first / last)}\n")
    t.rstrip()
    return t


def verdict_text(summary: dict[str, Any]) -> Text:
    """The root causes first, each with its likely cause and what to try; then their
    symptoms, one line each, saying which root cause explains them."""
    out = Text()
    pad = " " * len("verdict: ")
    verdicts = summary.get("verdicts", [])
    roots = [v for v in verdicts if not v.get("symptom_of")]
    symptoms = [v for v in verdicts if v.get("symptom_of")]
    for i, v in enumerate(roots):
        if i:
            out.append("\n")
        out.append("verdict: " if i == 0 else pad, style="bold")
        out.append(v["message"], style=VERDICT_STYLE.get(v["kind"], "bold"))
        # Older run folders have neither key; healthy has both None.
        for label, key in (("cause: ", "cause"), ("try:   ", "remedy")):
            if v.get(key):
                out.append(f"\n{pad}  {label}", style="dim bold")
                out.append(v[key], style="dim" if key == "cause" else "italic")
    for i, v in enumerate(symptoms):
        out.append("\n" + ("symptom: " if i == 0 else pad), style="bold")
        out.append(v["message"], style=VERDICT_STYLE.get(v["kind"], "bold"))
        out.append(f" (from the {LABEL.get(v['symptom_of'], v['symptom_of'])} above)", style="dim")
    said = {v["kind"] for v in verdicts} & {k for k, r in KIND.items() if r.says_outcome}  # say how far it got
    if roots and not said and (summary.get("outcome") or {}).get("text"):
        out.append("\noutcome: ", style="bold")
        out.append(summary["outcome"]["text"], style="dim")
    return out


def final_text(summary: dict[str, Any], status: str | None = None) -> Text:
    """status: the run's status now (runs.run_status); without it, the summary's own."""
    f = summary.get("final", {})
    status = status or summary.get("status", "?")
    parts = [f"{k} {num(f[k], 4)}" for k in ("train_loss", "train_acc", "test_loss", "test_acc") if k in f]
    t = Text()
    t.append(status, style=STATUS_STYLE.get(status, ""))
    if summary.get("reason"):
        t.append(f" ({summary['reason']})")
    t.append(
        f"  {summary.get('steps', 0)} steps, {summary.get('epochs', 0):g} epochs, "
        f"{num(summary.get('train_seconds'))} s, {summary.get('samples_per_s') or 0:,.0f} samples/s\n"
    )
    t.append("final: " + ("  ".join(parts) if parts else "no metrics"), style="bold")
    window = f.get("window")
    if parts and window:
        # Say what the final train numbers are over (not the last few noisy batches).
        t.append(
            "\n       "
            + (
                "train_* over the whole training set in eval mode, after the last step"
                if window.startswith("train_*: one pass")
                else f"train_* over the {window}"
            ),
            style="dim",
        )
    return t


def class_table(summary: dict[str, Any]) -> FitToWidth | None:
    """Per class: training and test samples, test recall, and its row of the confusion matrix.
    When narrow (ten classes at 80 columns), in this order: the confusion's counts go into one
    column (one space between them), then train and test are left out."""
    from dlx.views.tables import Column, Step, fit

    if not classes_worth_showing(summary):
        return None
    c = summary["classes"]
    k = len(c["recall"])
    conf = c["confusion"]

    def column(key: str, values: list[Any]) -> Column:
        return Column(key, key, [v if isinstance(v, Text) else Text(str(v)) for v in values])

    recall = [
        Text(f"{r:.0%}" if r is not None else "-", style="bold red" if r is not None and r < 0.5 else "")
        for r in c["recall"]
    ]
    cols = [
        column("class", list(range(k))),
        column("train", c["train_counts"]),
        column("test", c["test_counts"]),
        column("recall", recall),
        *[column(f"->{j}", [conf[i][j] for i in range(k)]) for j in range(k)],
    ]

    def packed(room) -> list[Column]:
        # Each count right-aligned to the widest (and to its header ->j), one space apart.
        w = max(len(f"->{k - 1}"), *(len(str(v)) for row in conf for v in row))
        head = " ".join(f"->{j}".rjust(w) for j in range(k))
        return [Column("->0", head, [Text(" ".join(str(v).rjust(w) for v in conf[i])) for i in range(k)])]

    steps = [
        Step(swap=packed, merged=tuple(f"->{j}" for j in range(1, k)), note="the confusion's counts in one column"),
        Step(drop="train"),
        Step(drop="test"),
    ]
    title = "Per class (test set; confusion: rows true, columns predicted)"
    return FitToWidth(lambda width: fit(cols, width, steps, title=title))


def instruments_text(summary: dict[str, Any]) -> Text | None:
    """The research instruments' sentences (dlx.run.instruments.digest), when the run had them."""
    d = summary.get("instruments")
    if not isinstance(d, dict) or not d.get("notes"):
        return None
    t = Text("instruments", style="bold")
    cost = ", ".join(f"{k} {v:.2g} s" for k, v in (d.get("seconds") or {}).items())
    t.append(f" ({d.get('measurements')} measurements; {cost})\n", style="dim")
    for note in d["notes"]:
        t.append(f"  {note}\n")
    return t


def change_lines(events: list[dict[str, Any]]) -> list[str]:
    """events.jsonl's changes, one line per key: "step 500 optimizer.lr 0.01 -> 0.001"."""
    out = []
    for e in events:
        was = e.get("was") if isinstance(e.get("was"), dict) else {}
        for key, value in (e.get("set") or {}).items():
            before = f"{fmt.num(was[key])} -> " if was.get(key) is not None else ""
            out.append(f"step {e.get('step')} {key} {before}{fmt.num(value)}")
    return out


def changes_text(events: list[dict[str, Any]] | None) -> Text | None:
    """The changes made while it trained (events.jsonl), under "changes:"."""
    lines = change_lines(events or [])
    if not lines:
        return None
    t = Text("changes:", style="bold")
    for i, line in enumerate(lines):
        t.append(("\n         " if i else " ") + line)
    return t


def run_report(
    summary: dict[str, Any],
    meta: dict[str, Any] | None = None,
    metrics: list[dict[str, Any]] | None = None,
    probes: list[dict[str, Any]] | None = None,
    status: str | None = None,
    events: list[dict[str, Any]] | None = None,
) -> Group:
    """Everything `dlx train` prints after training and `dlx show` prints for a run
    (status: the run's status now, as folders.run_status judged it with the folder; without
    it, judged from meta alone, where meta is given).

    metrics/probes: the run folder's metrics.jsonl and probes.jsonl records; with
    them come the loss sparkline and the gradient heat strips (over steps, and over
    time steps for recurrent models). events: its events.jsonl (the changes made while it
    trained), listed after the final numbers.
    """
    from dlx.records.folders import run_status

    parts: list[Any] = []

    def part(what: str, build, *args) -> None:
        piece = guarded(what, build, *args)
        if piece is not None:
            # Lines of words (a verdict, its cause and remedy, the final numbers) wrap between words.
            parts.append(Hanging(piece) if isinstance(piece, Text) else piece)

    if meta:
        part(META_FILE, _head, meta)
    part(f"{SUMMARY_FILE} (layers)", layer_table, summary)
    if probes:
        part(PROBES_FILE, lambda: _spaced(grad_strip(probes, [l["name"] for l in summary.get("layers", [])])))
    part(f"{SUMMARY_FILE} (activations)", lambda: _spaced(activation_table(summary)))
    part(f"{SUMMARY_FILE} (time_grad)", lambda: _spaced(_hanging(time_text(summary))))
    part(f"{SUMMARY_FILE}, {PROBES_FILE} (time steps)", lambda: _spaced(*time_strips(summary, probes)))
    parts.append(Text(""))
    part(f"{SUMMARY_FILE} (verdicts)", verdict_text, summary)
    part(f"{SUMMARY_FILE} (instruments)", instruments_text, summary)
    part(f"{SUMMARY_FILE} (classes)", lambda: _spaced(class_table(summary)))
    # The run's status now, as `dlx runs` shows it: a summary written by an earlier
    # session of a resumed run that was then killed must not say how that session ended.
    part(f"{SUMMARY_FILE} (final)", final_text, summary, status or (run_status(meta) if meta else None))
    if events:
        part(EVENTS_FILE, changes_text, events)
    if metrics:
        part(METRICS_FILE, LossSpark, metrics)
    return Group(*parts)


def guarded(what: str, build, *args) -> Any:
    """One piece of a view; a piece that its file's odd shape breaks is a line naming the file."""
    try:
        piece = build(*args)
        if piece is not None:  # rich draws lazily: find a broken piece now, not mid-print
            import io

            from rich.console import Console

            Console(file=io.StringIO(), width=120).print(piece)
    except (*SHAPE_ERRORS, NotRenderableError) as e:
        piece = Text(f"({what} has an unexpected shape here: {type(e).__name__}: {e}; left out)", style="yellow")
    except DamagedFile as e:  # a .pt file that is not tensors (folders.read_tensors)
        piece = Text(f"({e}; left out)", style="yellow")
    return piece


def _hanging(text: Text | None) -> Hanging | None:
    return None if text is None else Hanging(text)


class Fields:
    """`first`, then fields two spaces apart, a field never broken (started 2026-12-06 15:28:03):
    one that does not fit the width goes on the next line, indented by `indent`."""

    def __init__(self, first: Text, fields: list[str], indent: int = 4):
        self.first, self.fields, self.indent = first, fields, indent

    def __rich_console__(self, console, options):
        line = self.first.copy()
        for f in self.fields:
            if line.cell_len + 2 + len(f) > options.max_width and line.cell_len > self.indent:
                yield line
                line = Text(" " * self.indent + f)
            else:
                line.append("  " + f)
        yield line


def _head(meta: dict[str, Any]) -> Fields:
    started = str(meta.get("started") or "").replace("T", " ")[:19]  # to the second
    fields = [str(meta.get("device", "")), f"seed {meta.get('seed')}", f"started {started}"]
    return Fields(Text(f"run {meta.get('run_id', '?')}", style="bold"), fields)


def _spaced(*pieces: Any) -> Group | None:
    """Pieces each after a blank line; None when there are none."""
    pieces = [p for p in pieces if p is not None]
    return Group(*[x for p in pieces for x in (Text(""), p)]) if pieces else None

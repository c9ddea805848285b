"""The list tables of `dlx runs`, `dlx compare` and `dlx sweep`, fitted to a terminal width.

A number is never cut: its column is as wide as its widest cell. When the table is too
wide, steps are taken in a stated order until it fits (a shorter form of a column, or a
column left out), and a note under the table says what was left out and how to see it.
Words (a verdict, a variant's label) may wrap instead.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Sequence

from rich.cells import cell_len
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from dlx.core.fmt import num
from dlx.views.style import STATUS_STYLE

GAP = 3  # characters between two columns: " │ " (no outer edge, no edge padding)
WORDS_MIN = 10  # a wrapping column (words) is never narrower than this (or its longest cell)
WORD_MAX = 24  # ... nor than its longest word up to this long ("vanishing_through_time" is 22)


@dataclass
class Column:
    key: str  # the name the note gives when it is left out (the --json key)
    header: str
    cells: list[Text]
    justify: str = "right"
    wrap: bool = False  # words: may wrap (down to WORDS_MIN); else never narrower than a cell

    # Cached: fitting asks again at every step, and a column of 10,000 runs is slow to measure.
    @cached_property
    def widest(self) -> int:
        return max([cell_len(line) for c in self.cells for line in c.plain.split("\n")] + [0])

    @cached_property
    def longest_word(self) -> int:
        return max([len(w) for c in self.cells for w in c.plain.split()] + [0])

    def need(self) -> int:
        """The fewest characters the column can take."""
        if not self.wrap:
            return self.flat()
        # Down to WORDS_MIN, but not below its longest word (up to WORD_MAX): words stay whole.
        return max(self.head_word(), min(self.widest, max(WORDS_MIN, min(self.longest_word, WORD_MAX))))

    def head_word(self) -> int:
        return max([len(w) for w in self.header.split()] + [0])

    def flat(self) -> int:
        """The characters it takes with every cell on one line (the header may wrap)."""
        return max(self.head_word(), self.widest)

    def want(self) -> int:
        """The characters it takes with nothing wrapped."""
        return max(len(self.header), self.widest)


@dataclass
class Step:
    """One way to make a table narrower: leave out column `drop`, or put narrower forms of
    columns (`swap`, matched by key) in their places. swap(room) is told the room a column
    would have, room(key): the width less every other column's fewest characters."""

    drop: str | None = None
    swap: Callable[[Callable[[str], int]], list[Column]] | None = None
    note: str = ""  # what the swap did, said under the table
    merged: tuple[str, ...] = ()  # columns the swap's columns take in (removed with it)


@dataclass
class Fitted:
    table: Table | ManyRows  # a rich renderable
    width: int  # the table's width in characters
    limit: int  # the width it was fitted to
    left_out: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)

    def notes(self, see: str = "--json shows all") -> list[str]:
        """The lines under the table: what was left out and where to see it, what was shortened."""
        out = [f"not shown at {self.limit} columns: {', '.join(self.left_out)} ({see})"]
        return out[: bool(self.left_out)] + [c for c in self.changes if c]


def _narrow(columns: Sequence[Column], width: int, steps: Sequence[Step], size: Callable[[Column], int]):
    """The columns after taking `steps` in order until they fit in `width` (each column `size`
    characters), then putting back, the last first, columns left out that fit after all (a later
    step, a shorter id, may leave room for them): (columns, keys left out, notes by key, width)."""
    cols = list(columns)
    left_out: list[str] = []
    changes: dict[str, str] = {}  # column key -> what its narrower form is (the last one taken)

    def total(cs: Sequence[Column]) -> int:
        return sum(size(c) for c in cs) + GAP * (len(cs) - 1)

    for step in steps:
        if total(cols) <= width:
            break
        if step.drop is not None:
            i = next((i for i, c in enumerate(cols) if c.key == step.drop), None)
            if i is not None:
                left_out.append(cols.pop(i).key)
        elif step.swap is not None:

            def room(key: str, cs: list[Column] = cols) -> int:
                return width - total(cs) + sum(size(c) for c in cs if c.key == key)

            new = {c.key: c for c in step.swap(room)}
            swapped = [new.get(c.key, c) for c in cols if c.key not in step.merged]
            if total(swapped) < total(cols):
                cols = swapped
                changes.update(dict.fromkeys(new, step.note))
    order = [c.key for c in columns]
    while left_out:
        back = next(c for c in columns if c.key == left_out[-1])
        trial = sorted([*cols, back], key=lambda c: order.index(c.key))
        if total(trial) > width:
            break
        cols = trial
        left_out.pop()
    return cols, left_out, changes, total(cols)


def fit(
    columns: Sequence[Column],
    width: int,
    steps: Sequence[Step],
    title: str | None = None,
    one_line: Sequence[Step] = (),
) -> Fitted:
    """The table of `columns` in at most `width` characters, taking `steps` in order until it fits
    (words wrapped down to Column.need()). Where taking `one_line` steps lets every cell stay on
    one line, those are taken instead.

    If it does not fit after every step, it is drawn as narrow as it can be (wider than
    `width`: a terminal wraps the lines, but no number is cut)."""
    cols, left_out, changes, size = _narrow(columns, width, one_line, Column.flat)
    if size > width or any("\n" in cell.plain for c in cols for cell in c.cells):
        cols, left_out, changes, size = _narrow(columns, width, steps, Column.need)
    widths = [c.need() for c in cols]
    # Room left over goes first to words (unwrapped), then to headers (on one line).
    spare = width - sum(widths) - GAP * (len(cols) - 1)
    for pick in (lambda c: c.wrap, lambda c: True):
        for i, c in enumerate(cols):
            if pick(c) and spare > 0 and widths[i] < c.want():
                grow = min(spare, c.want() - widths[i])
                widths[i] += grow
                spare -= grow
    # Rows of several lines (an sd under its mean, wrapped words) get a blank line between them.
    tall = any("\n" in cell.plain or (c.wrap and cell.cell_len > w) for c, w in zip(cols, widths) for cell in c.cells)

    def table(rows: Sequence[Sequence[Text]]) -> Table:
        t = Table(
            title=title, title_justify="left", header_style="bold", show_edge=False, pad_edge=False, leading=int(tall)
        )
        for c, w in zip(cols, widths):
            # A header may wrap at its spaces; a number cell never wraps: its column is as wide as it.
            t.add_column(c.header, justify=c.justify, width=w, overflow="fold")
        for row in rows:
            t.add_row(*row)
        return t

    rows = list(zip(*(c.cells for c in cols)))
    drawn = ManyRows(table, rows, widths, [c.justify for c in cols]) if len(rows) > MANY_ROWS else table(rows)
    return Fitted(drawn, sum(widths) + GAP * (len(cols) - 1), width, left_out, list(dict.fromkeys(changes.values())))


MANY_ROWS = 100  # a table of more rows is drawn by ManyRows


class ManyRows:
    """A fitted table of many rows, drawn as rich draws its Table, faster: rich lays out each
    cell of a Table (near 1 ms a row: 10,000 runs took 15 s to print); here rich draws the
    header and the first row, and each further row is its cells padded to their columns'
    widths and joined by the separator. Only where every row is one line of plain cells (no
    wrapping, no styled parts, printable ASCII) and the first row comes out as rich drew it;
    otherwise rich draws the whole Table."""

    def __init__(self, table: Callable[[Sequence[Sequence[Text]]], Table], rows, widths, justify):
        self.table, self.rows, self.widths, self.justify = table, rows, widths, justify
        self.fast = False  # whether the last drawing took the fast way (for the tests)

    def _plain(self) -> bool:
        return all(
            not cell.spans and cell.plain.isascii() and cell.plain.isprintable() and len(cell.plain) <= w
            for row in self.rows
            for cell, w in zip(row, self.widths)
        )

    def _line(self, console, row: Sequence[Text], styles: dict) -> list[Segment]:
        out, last = [], len(row) - 1
        for i, (cell, w, how) in enumerate(zip(row, self.widths, self.justify)):
            text = cell.plain.ljust(w) if how == "left" else cell.plain.rstrip().rjust(w)
            if cell.style:
                if cell.style not in styles:
                    styles[cell.style] = console.get_style(cell.style)
                out.append(Segment(text, styles[cell.style]))
            else:
                out.append(Segment(text))
            if i < last:
                out.append(Segment(" │ "))
        return out

    def __rich_console__(self, console, options):
        self.fast = False
        if not self._plain() or any(j not in ("left", "right") for j in self.justify):
            yield self.table(self.rows)
            return
        head = list(Segment.split_lines(console.render(self.table(self.rows[:1]), options)))
        styles: dict = {}
        if not head or _merged(head[-1]) != _merged(self._line(console, self.rows[0], styles)):
            yield self.table(self.rows)
            return
        self.fast = True
        newline = Segment.line()
        for line in head:
            yield from line
            yield newline
        for row in self.rows[1:]:
            yield from self._line(console, row, styles)
            yield newline


def _merged(line: Sequence[Segment]) -> list[tuple[str, Any]]:
    """A line's segments as the console writes them: unstyled neighbours as one text, each styled one apart."""
    out: list[tuple[str, Any]] = []
    for seg in line:
        if seg.control:
            out.append((seg.text, seg.control))
        elif not seg.style and out and out[-1][1] is None:
            out[-1] = (out[-1][0] + seg.text, None)
        else:
            out.append((seg.text, seg.style or None))
    return out


def _cells(values: Sequence[Any]) -> list[Text]:
    return [v if isinstance(v, Text) else Text(str(v)) for v in values]


def _status(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


# ---------------------------------------------------------------- dlx runs
STAMP = re.compile(r"^\d{8}-\d{6}-")  # a run id's date part (folders.new_run_id)
SUFFIX = re.compile(r"-([0-9a-f]{6})$")  # its random part


class IdParts:
    """Which run ids hold a given part of one (dlx show takes any part held by one id alone),
    asked for many parts at once: a part of one id checked against 10,000 ids one by one is
    10^8 substring tests for a table. A part ending in the last 6 characters of some id (every
    part short_id makes) is checked only against the ids holding those 6 characters."""

    TAIL = 6

    def __init__(self, ids: Sequence[str]):
        self.ids = list(ids)
        self.holders: dict[str, list[str]] | None = None  # made at the first question: a table may ask none

    def unique(self, part: str) -> bool:
        """Whether exactly one id holds `part`."""
        if self.holders is None:
            tails = {i[-self.TAIL :] for i in self.ids if len(i) >= self.TAIL}
            self.holders = {}
            for i in self.ids:
                for gram in {i[j : j + self.TAIL] for j in range(len(i) - self.TAIL + 1)} & tails:
                    self.holders.setdefault(gram, []).append(i)
        # An id holding part holds its last TAIL characters: only those ids can.
        among = self.holders.get(part[-self.TAIL :], self.ids) if len(part) >= self.TAIL else self.ids
        return sum(part in i for i in among) == 1


def short_id(run_id: str, ids: Sequence[str] | IdParts, level: int, common: str = "") -> str:
    """run_id without its date part (level 1), also without a `common` start (level 2:
    quickstart-optimizer-adam-s0-73f28a -> optimizer-adam-s0-73f28a), or as its random part
    alone (level 3), where that is still a unique part of one id in `ids` (what `dlx show`
    takes); else run_id."""
    short = run_id
    if level >= 1 and STAMP.match(run_id):
        short = STAMP.sub("", run_id)
        if level >= 2 and common and short.startswith(common) and SUFFIX.search(short[len(common) - 1 :]):
            short = short[len(common) :]
    if level >= 3 and SUFFIX.search(run_id):
        short = SUFFIX.search(run_id).group(1)
    if short == run_id:
        return run_id
    return short if (ids if isinstance(ids, IdParts) else IdParts(ids)).unique(short) else run_id


def _started(iso: str | None) -> str:
    """The start time in this machine's time zone, to the minute."""
    if not iso:
        return "-"
    try:
        return dt.datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


def runs_table(
    rows: Sequence[dict[str, Any]], width: int, sort: str | None = None, ids: Sequence[str] | None = None
) -> Fitted:
    """The table of `dlx runs`. Kept always: run, status, the sort column, test_acc, verdict
    (it wraps). When narrow, in this order: run ids lose their date part; steps, train_loss and
    test_loss are left out; run ids lose the start they all share, then the ids still too long keep
    only their random part (each still a unique part of one id in `ids`, all the folder's run ids:
    dlx show takes it)."""
    ids = IdParts(ids if ids is not None else [r["run_id"] for r in rows])
    keys = ["run", "status", "steps", "train_loss", "test_loss", "test_acc", "verdict"]
    if sort == "train_acc":
        keys.insert(keys.index("test_loss"), "train_acc")
    elif sort == "started":
        keys.insert(1, "started")

    # The start every dateless id shares, up to a dash (quickstart-), when there are several.
    dateless = [STAMP.sub("", r["run_id"]) for r in rows]
    common = os.path.commonprefix(dateless) if len(rows) > 1 else ""
    common = common[: common.rfind("-") + 1]

    def run_column(level: int, room: int = 0) -> Column:
        """Level 3: only the ids longer than `room` (at level 2) as their random part."""

        def shown(run_id: str) -> str:
            short = short_id(run_id, ids, min(level, 2), common)
            return short_id(run_id, ids, level, common) if len(short) > room else short

        return Column("run", "run", _cells(shown(r["run_id"]) for r in rows), justify="left")

    def column(k: str) -> Column:
        if k == "run":
            return run_column(0)
        if k == "status":
            return Column(k, k, [_status(r["status"]) for r in rows], justify="left")
        if k == "verdict":
            return Column(k, k, _cells(r["verdict"] or "-" for r in rows), justify="left", wrap=True)
        if k == "started":
            return Column(k, k, _cells(_started(r.get("started")) for r in rows), justify="left")
        if k == "steps":
            return Column(k, k, _cells("-" if r["steps"] is None else str(r["steps"]) for r in rows))
        return Column(k, k, _cells(num(r.get(k)) for r in rows))

    show = "(dlx show takes any unique part)"
    steps = [Step(swap=lambda room: [run_column(1)], note=f"run ids without their date {show}")]
    steps += [Step(drop=k) for k in ("steps", "train_loss", "test_loss") if k != sort]
    steps += [
        Step(swap=lambda room: [run_column(2)], note=f"run ids without date and {common!r} {show}"),
        Step(swap=lambda room: [run_column(3, room("run"))], note=f"long run ids as their random part alone {show}"),
    ]
    return fit([column(k) for k in keys], width, steps)


# ---------------------------------------------------------------- dlx compare
COMPARE_METRICS = ("train_loss", "test_loss", "train_acc", "test_acc")


def compare_table(rows: Sequence[Any], seeds: int, width: int, goal: tuple[str, float] | None = None) -> Fitted:
    """The table of `dlx compare`: mean±sd per variant (the mean alone for one seed). Kept
    always: variant and verdict (both wrap), test_acc and steps to the target. When narrow:
    seconds and runs (unless a run failed) are left out if then every row fits on one line;
    else, in this order, each sd goes on a line under its mean, then seconds, runs (unless a
    run failed), train_acc, train_loss, test_loss and runs are left out."""
    stat_keys = [*COMPARE_METRICS, *([f"steps_to_{goal[0]}"] if goal else []), "train_seconds"]
    digits = {"train_seconds": 2}

    def stat(r: Any, k: str, split: bool) -> Text:
        m, s = r.stats.get(k, (None, None))
        steps = k.startswith("steps_to_") and m is not None  # a mean step count, to the step: 1234, not 1.23e+03
        text = Text(num(round(m), exact_int=True) if steps else num(m, digits.get(k, 3)))
        have = len(r.values[k]) if k in r.values else r.runs  # seconds, steps to target: not kept per seed
        if m is not None and seeds > 1 and have > 1:
            text.append(("\n" if split else "") + "±" + num(s, 2), style="dim" if split else "")
        if m is not None and have < r.runs:  # a seed without a finite value (diverged): never a silent ±0
            text.append(f" ({have} of {r.runs})", style="yellow")
        if goal and k == f"steps_to_{goal[0]}":
            text.append(f" ({r.statuses.get('reached_target', 0)}/{r.runs})")
        return text

    def runs_cell(r: Any) -> Text:
        bad = {k: n for k, n in r.statuses.items() if k not in ("completed", "reached_target")}
        return Text(f"{r.runs}" + (" (" + ", ".join(f"{n} {k}" for k, n in bad.items()) + ")" if bad else ""))

    def header(k: str) -> str:
        if goal and k == f"steps_to_{goal[0]}":
            return f"steps to {goal[0]}={goal[1]:g}"
        return "seconds" if k == "train_seconds" else k

    def stat_column(k: str, split: bool) -> Column:
        return Column(k, header(k), [stat(r, k, split) for r in rows])

    cols = [Column("variant", "variant", _cells(r.label for r in rows), justify="left", wrap=True)]
    cols += [stat_column(k, False) for k in stat_keys]
    cols += [
        Column("verdict", "verdict", _cells(r.verdict or "-" for r in rows), justify="left", wrap=True),
        Column("runs", "runs", [runs_cell(r) for r in rows]),
    ]
    failed = any(k not in ("completed", "reached_target") for r in rows for k in r.statuses)
    steps = [Step(swap=lambda room: [stat_column(k, True) for k in stat_keys])]  # the dim ± line says it
    steps += [
        Step(drop="train_seconds"),
        *([] if failed else [Step(drop="runs")]),
        Step(drop="train_acc"),
        Step(drop="train_loss"),
        Step(drop="test_loss"),
        Step(drop="runs"),
    ]
    title = f"mean ± sd over {seeds} seeds" if seeds > 1 else "final metrics, 1 seed per variant"
    # Leaving out seconds (and runs, when none failed) rather than a row of several lines.
    return fit(cols, width, steps, title=title, one_line=steps[1 : 2 + (not failed)])


# ---------------------------------------------------------------- dlx sweep
def sweep_table(rows: Sequence[dict[str, Any]], keys: Sequence[str], metric: str, goal: str, width: int) -> Fitted:
    """The trials of a sweep, best first. Kept always: trial, the metric, verdict (it wraps).
    When narrow, in this order: seconds, then the searched keys from the last to the first,
    are left out."""
    # Column heads: the last part of each key path (optimizer.lr -> lr) where that is unambiguous.
    tails = [k.rsplit(".", 1)[-1] for k in keys]
    heads = [t if tails.count(t) == 1 else k for t, k in zip(tails, keys)]

    def outcome(r: dict[str, Any]) -> Text:
        if r["status"] == "completed":
            return Text(r.get("verdict") or "-")
        if r["status"] == "pruned" and isinstance(r.get("pruned"), str):
            return Text(f"pruned: {r['pruned']}", style=STATUS_STYLE["pruned"])
        return Text(r["status"], style=STATUS_STYLE.get(r["status"], "red"))

    def value(v: Any) -> str:
        return num(v) if isinstance(v, float) else str(v)

    cols = [Column("trial", "trial", _cells(f"{r['trial']:04d}" for r in rows))]

    def numeric(k: str) -> bool:
        return all(
            isinstance(r["params"].get(k), (int, float)) and not isinstance(r["params"].get(k), bool) for r in rows
        )

    cols += [
        Column(k, h, _cells(value(r["params"].get(k)) for r in rows), justify="right" if numeric(k) else "left")
        for k, h in zip(keys, heads)
    ]
    cols += [
        Column(metric, metric, _cells(num(r["value"]) for r in rows)),
        Column("verdict", "verdict", [outcome(r) for r in rows], justify="left", wrap=True),
        Column("seconds", "s", _cells(num(r.get("seconds"), 2) for r in rows)),
    ]
    steps = [Step(drop="seconds"), *(Step(drop=k) for k in reversed(keys))]
    return fit(cols, width, steps, title=f"trials by {metric} ({goal}), best first")


LABELS = ("verdict: ", "symptom: ", "outcome: ", "cause: ", "try:   ", "final: ")
WRAP_MIN = 24  # fewest characters of text a continuation line has: a narrower indent where less


class Hanging:
    """Text wrapped to the width it is drawn at only between words (a number like 1.19e-05 or
    a key=value stays whole), each line's continuation indented under its text: after its
    leading spaces and its label (LABELS). Lines that fit are left as they are."""

    def __init__(self, text: Text, labels: tuple[str, ...] = LABELS):
        self.text, self.labels = text, labels

    def __rich_console__(self, console, options):
        width = options.max_width
        for line in self.text.split("\n", allow_blank=True):
            plain = line.plain
            if line.cell_len <= width:
                yield line
                continue
            lead = len(plain) - len(plain.lstrip(" "))
            indent = lead + next((len(label) for label in self.labels if plain[lead:].startswith(label)), 0)
            if width - indent < WRAP_MIN:
                indent = min(lead, max(0, width - WRAP_MIN))
            head, body = (line[:indent], line[indent:]) if indent else (Text(), line)
            for i, piece in enumerate(body.wrap(console, width - indent, overflow="fold", no_wrap=False)):
                piece.rstrip()
                out = head if i == 0 else Text(" " * indent)
                out.append_text(piece)
                yield out

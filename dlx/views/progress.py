"""Live progress for a run or a set of runs: a rich bar in a terminal, an updating HTML
bar in Jupyter (IPython's display with a display_id: no ipywidgets needed, and the
notebook file keeps the last state). Trainer callbacks; the loop never prints.
"""

from __future__ import annotations

import html
import sys
import time
from typing import Any

# A notebook display is redrawn at most this often (seconds): each update is a message
# to the front end, and a 10-step interval of a small net takes milliseconds.
NOTEBOOK_EVERY_S = 0.25


def in_notebook() -> bool:
    """Running inside a Jupyter (IPython kernel) session."""
    ip = sys.modules.get("IPython")
    if ip is None:
        return False
    try:
        shell = ip.get_ipython()
    except Exception:
        return False
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def inline_figures() -> None:
    """In Jupyter, show a returned matplotlib Figure as an inline PNG. dlx draws on bare
    Figures (no pyplot, so no GUI backend and no global state): IPython's inline backend
    only registers its PNG formatter once pyplot is used, so register it here."""
    if not in_notebook():
        return
    from IPython import get_ipython
    from IPython.core.pylabtools import print_figure
    from matplotlib.figure import Figure

    formatter = get_ipython().display_formatter.formatters["image/png"]
    formatter.for_type(Figure, lambda fig: print_figure(fig, "png", bbox_inches="tight"))


def default_progress(quiet: bool | None) -> list[Any]:
    """The callbacks dlx.train shows by default: in Jupyter a live display and the verdict,
    elsewhere nothing unless quiet=False (then a rich bar on stderr)."""
    if quiet is None:
        quiet = not in_notebook()
    if quiet:
        return []
    return [NotebookProgress()] if in_notebook() else [TerminalProgress(_stderr_console())]


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _stat_parts(record: dict[str, Any]) -> list[str]:
    from dlx.core.fmt import num

    parts = [f"loss {num(record['train_loss'], 4)}"]
    if record.get("train_acc") is not None:
        parts.append(f"acc {record['train_acc']:.3f}")
    if record.get("test_acc") is not None:
        parts.append(f"test_acc {record['test_acc']:.3f}")
    return parts


def _stats(record: dict[str, Any]) -> str:
    return " ".join(_stat_parts(record))


BAR_MAX = 40  # the bar's cells at most (rich's default)
BAR_MIN = 10  # fewer cells than this tell nothing: the bar is left out instead


def train_line(task, width: int) -> Any:
    """One line of the training progress in `width` characters: train, the bar, steps done/total,
    the last logged numbers, the time elapsed and the ETA. Where it does not fit, in this order:
    the bar gets shorter (down to BAR_MIN cells), then is left out; then the numbers go from the
    last (test_acc, acc, loss). The totals and the times are always shown whole."""
    from rich.progress import TimeElapsedColumn, TimeRemainingColumn
    from rich.text import Text

    total = int(task.total or 0)
    steps = f"{int(task.completed):>{len(str(total))}}/{total} steps"
    elapsed = TimeElapsedColumn().render(task)
    remaining = TimeRemainingColumn().render(task)
    stats = list(task.fields.get("stats") or [])
    times = len(elapsed) + 1 + len("ETA ") + len(remaining)

    def length(parts: list[str]) -> int:
        return sum(len(p) + 1 for p in ["train", steps, *parts]) + times

    while stats and length(stats) > width:
        stats.pop()
    bar = min(BAR_MAX, width - length(stats) - 1)
    line = Text("train", style="bold")
    if bar >= BAR_MIN:
        done = round(bar * min(task.completed / total, 1.0)) if total else 0
        line.append(" ")
        line.append("━" * done, style="bar.finished" if task.finished else "bar.complete")
        line.append("━" * (bar - done), style="bar.back")
    line.append(f" {steps}", style="progress.download")
    for part in stats:
        line.append(f" {part}")
    line.append(" ")
    line.append_text(elapsed)
    line.append(" ETA ")
    line.append_text(remaining)
    return line


def _fitted_progress(console):
    """A rich Progress drawing train_line at its console's width (its columns: none)."""
    from rich.progress import Progress

    class FittedProgress(Progress):
        def get_renderables(self):
            for task in self.tasks:
                yield train_line(task, self.console.width)

    return FittedProgress(console=console, transient=False)


class TerminalProgress:
    """A rich progress bar fed by the trainer's interval events, fitted to the terminal's width
    (train_line: the totals and times are never cut)."""

    def __init__(self, console):
        self.progress = _fitted_progress(console)
        self.task = None

    def on_start(self, trainer):
        self.progress.start()
        # A resumed run starts at its checkpoint's step.
        self.task = self.progress.add_task("train", total=trainer.total_steps, completed=trainer.step, stats=[])

    def on_interval(self, trainer, record):
        self.progress.update(self.task, completed=record["step"], stats=_stat_parts(record))

    def on_end(self, trainer, outcome):
        self.progress.stop()


def _bar_html(title: str, done: int, total: int, stats: str, seconds: float) -> str:
    pct = 100 * done / max(total, 1)
    return (
        f'<div class="dlx-progress" style="font-family: monospace">'
        f"<b>{html.escape(title)}</b> "
        f'<progress value="{done}" max="{max(total, 1)}" style="width: 40%; vertical-align: middle"></progress> '
        f"{done}/{total} ({pct:.0f}%) {html.escape(stats)} &middot; {seconds:.1f} s</div>"
    )


class NotebookProgress:
    """In Jupyter: one display updated in place at each log interval (at most every
    NOTEBOOK_EVERY_S), then the verdicts when the run ends."""

    def __init__(self, title: str = "dlx train"):
        self.title = title
        self.handle = None
        self._shown = 0.0
        self._t0 = 0.0

    def on_start(self, trainer):
        from IPython.display import HTML, display

        self._t0 = time.perf_counter()
        self.total = trainer.total_steps
        self.handle = display(HTML(_bar_html(self.title, trainer.step, self.total, "", 0.0)), display_id=True)

    def on_interval(self, trainer, record):
        now = time.perf_counter()
        if now - self._shown < NOTEBOOK_EVERY_S and record["step"] < self.total:
            return
        self._shown = now
        self._update(record["step"], _stats(record))

    def _update(self, step: int, stats: str) -> None:
        from IPython.display import HTML

        if self.handle is not None:
            self.handle.update(HTML(_bar_html(self.title, step, self.total, stats, time.perf_counter() - self._t0)))

    def on_end(self, trainer, outcome):
        self._update(outcome.step, f"{outcome.status}")

    def show_result(self, run) -> None:
        """The verdicts and final numbers, once the summary exists (called by dlx.train)."""
        from IPython.display import HTML, display

        display(HTML(run._repr_html_()))


class TrialsProgress:
    """Progress over many runs (dlx.compare): a rich bar, or a notebook display."""

    def __init__(self, total: int, title: str, quiet: bool | None, console=None):
        self.total, self.title, self.done = total, title, 0
        self.notebook = in_notebook() if quiet is None else (not quiet and in_notebook())
        self.quiet = (not self.notebook) if quiet is None else quiet
        self._t0 = time.perf_counter()
        self.handle = None
        self.progress = None
        if self.quiet:
            return
        if self.notebook:
            from IPython.display import HTML, display

            self.handle = display(HTML(_bar_html(title, 0, total, "runs", 0.0)), display_id=True)
        else:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                TextColumn(f"[bold]{title}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("runs"),
                TimeElapsedColumn(),
                console=console or _stderr_console(),
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("runs", total=total)

    def note(self, text: str) -> None:
        """A line for the person above the bar (what was stacked and why not); quiet: none."""
        if self.progress is not None:
            self.progress.console.print(text, style="dim", markup=False, highlight=False)
        elif self.handle is not None:
            from IPython.display import HTML, display

            display(HTML(f"<div style='opacity:.7'>{html.escape(text)}</div>"))

    def advance(self, *_: Any) -> None:
        self.done += 1
        if self.handle is not None:
            from IPython.display import HTML

            self.handle.update(
                HTML(_bar_html(self.title, self.done, self.total, "runs", time.perf_counter() - self._t0))
            )
        elif self.progress is not None:
            self.progress.advance(self.task)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()

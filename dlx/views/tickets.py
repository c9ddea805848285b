"""What `dlx ticket` shows: its rounds as a table (weights kept, final test accuracy and
loss) and a figure of test accuracy against the weights kept, the random re-init control
as a marker of its own. Reads the record's rows (plain dicts), never a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlx.core.fmt import num
from dlx.views.style import DPI, plain


def ticket_table(rows: list[dict[str, Any]], title: str = ""):
    """A rich Table: one line per round (kept: the pruned layers' weights that train), the control last."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title) or None)
    for col in ("round", "kind", "kept", "test_acc", "test_loss", "seconds", "run"):
        table.add_column(col, justify="left" if col in ("kind", "run") else "right", overflow="fold")
    for r in rows:
        table.add_row(
            str(r["round"]),
            r["kind"],
            f"{100 * r['kept']:.1f}%",
            "-" if r.get("test_acc") is None else f"{r['test_acc']:.4f}",
            "-" if r.get("test_loss") is None else num(r["test_loss"]),
            "-" if r.get("seconds") is None else f"{r['seconds']:.2f}",
            escape(Path(r["run"]).name if r.get("run") else "-"),
        )
    return table


def ticket_figure(rows: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    """Test accuracy against the weights kept (a log axis: each round keeps a fraction of the
    last), the rounds as a line from the dense net, the control a marker; written as a PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    rounds = [r for r in rows if r["kind"] != "control" and r.get("test_acc") is not None]
    control = [r for r in rows if r["kind"] == "control" and r.get("test_acc") is not None]
    ax.plot(
        [100 * r["kept"] for r in rounds], [r["test_acc"] for r in rounds], "o-", label="ticket (rewound to its init)"
    )
    if rounds:
        ax.axhline(rounds[0]["test_acc"], color="#999999", lw=0.8, ls=":", label="dense")
    if control:
        ax.plot(
            [100 * r["kept"] for r in control], [r["test_acc"] for r in control], "x", ms=10, mew=2,
            color="#e41a1c", label="same mask, random re-init",
        )  # fmt: skip
    ax.set_xscale("log")
    # A tick at each round's share, in plain numbers (a log axis would say 6x10^1).
    kept = sorted({round(100 * r["kept"], 1) for r in rows})
    ax.set_xticks(kept, [f"{k:g}" for k in kept], fontsize=7, rotation=90 if len(kept) > 10 else 0)
    ax.minorticks_off()
    ax.invert_xaxis()  # pruning goes right: fewer weights kept
    ax.set_xlabel("weights kept (%)")
    ax.set_ylabel("final test accuracy")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(plain(title), fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path

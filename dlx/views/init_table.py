"""The step-0 init check's table (dlx.run.initcheck's rows), for `dlx check` and `dlx show`.

Here, with the other views, so that `dlx show` draws it without importing torch.
"""

from __future__ import annotations

from typing import Any

from dlx.core import fmt


def init_num(x: float | int | None) -> str:
    """3 significant digits in at most 7 characters: 0.0156, 54.6, 6.46e-4."""
    return fmt.num(x, large=1e3, short_exp=True, exact_int=True)


INIT_VERDICT_STYLE = {
    "ok": "green",
    "kept": "green",
    "grows": "red",
    "shrinks": "yellow",
    "higher than theory": "magenta",
    "lower than theory": "magenta",
    "identical units": "yellow",
    "no input signal": "yellow",
    "too few units": "dim",
    "overflow": "bold red",
    "not applicable": "dim",
}
# Two-line headers, no vertical rules, one space between columns: the table fits 80
# columns for MLP layer names (the verdict wraps where it must).
INIT_COLUMNS = (
    ("layer", "\nlayer"),
    ("fans", "fan\nin/out"),
    ("s2", "init\ns^2"),
    ("in", "input\nE[x^2]"),
    ("pred", "Var(y)\npred"),
    ("meas", "Var(y)\nmeas"),
    ("ratio", "meas/\npred"),
    ("g_pred", "gain\npred"),
    ("g_meas", "gain\nmeas"),
    ("verdict", "\nverdict"),
)


def init_check_table(rows: list[dict[str, Any]]):
    """A rich Table of init_check rows (as returned, or as read back from summary.json); the
    notes (why a verdict, what does not apply) follow it as numbered lines, each wrapped
    between words under its own text (a table caption would be one unbroken line)."""
    from rich import box
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    from dlx.views.tables import Hanging

    scheme = rows[0]["scheme"] if rows else "?"
    rules = list(dict.fromkeys(r["rule"] for r in rows if r.get("rule")))
    notes = [f"{r['layer']}: {r['note']}" for r in rows if r.get("note")]
    caption = (
        "Var(y) is the spread of W x across units; predicted = fan_in * s^2 * E[x^2], with E[x^2] "
        "measured at the layer's input; gain = Var(y) / Var(y) of the layer before"
        + "".join(f"\n[{i}] {n}" for i, n in enumerate(notes, start=1))
    )
    labels = tuple(f"[{i}] {r['layer']}: " for i, r in enumerate([r for r in rows if r.get("note")], start=1))
    t = Table(
        title=escape(f"init check at step 0: {scheme}, s^2 = {'; '.join(rules) or '-'}"),
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    for key, header in INIT_COLUMNS:
        t.add_column(escape(header), justify="left" if key in ("layer", "verdict") else "right")
    k = 0
    for r in rows:
        fans = "-" if r["fan_in"] is None else f"{r['fan_in']}/{r['fan_out']}"
        verdict = Text(str(r["verdict"]), style=INIT_VERDICT_STYLE.get(r["verdict"], ""))
        if r.get("note"):
            k += 1
            verdict.append(f" [{k}]", style="dim")
        t.add_row(
            Text(str(r["layer"])),
            fans,
            init_num(r["weight_var"]),
            init_num(r["input_sq"]),
            init_num(r["predicted_var"]),
            init_num(r["measured_var"]),
            init_num(r["ratio"]),
            init_num(r["predicted_gain"]),
            init_num(r["measured_gain"]),
            verdict,
        )
    return Group(t, Hanging(Text(caption, style="dim"), labels=labels))

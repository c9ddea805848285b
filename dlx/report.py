"""Rich renderables for runs: the per-layer table, verdicts, final metrics.

Everything here reads plain summary/meta dicts (as stored in the run folder), so
`dlx train` at the end of a run and `dlx show` later draw the same thing.
"""
from __future__ import annotations

import math
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

VERDICT_STYLE = {"healthy": "bold green", "vanishing": "bold yellow", "exploding": "bold red",
                 "diverged": "bold red", "dead_units": "bold yellow", "saturation": "bold yellow",
                 "symmetry": "bold yellow"}
STATUS_STYLE = {"completed": "green", "diverged": "red", "failed": "red", "interrupted": "yellow",
                "running": "cyan"}


def num(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    x = float(x)
    if x == 0:
        return "0"
    if abs(x) < 1e-3 or abs(x) >= 1e5:
        return f"{x:.{max(digits - 1, 1)}e}"
    return f"{x:.{digits}g}"


def describe(cfg: dict[str, Any]) -> str:
    """A one-line description of a resolved config."""
    m, d, o = cfg["model"], cfg["data"], cfg["optimizer"]
    if m["name"] == "mlp":
        from .models import MODELS

        widths = MODELS.parse(m).hidden_widths()
        shape = (f"{len(widths)}x{widths[0]}" if widths and len(set(widths)) == 1 else
                 "-".join(map(str, widths)) or "linear")
        model = f"mlp {shape}"
    else:
        model = m["name"]
    act, init = cfg["activation"]["name"], cfg["init"]["name"]
    reg = cfg["regularization"]
    extras = [f"{k}={reg[k]}" for k in ("l1", "l2", "dropout", "dropconnect") if reg.get(k)]
    if reg.get("norm", "none") != "none":
        extras.append(f"{reg['norm']} norm")
    extra = (", " + ", ".join(extras)) if extras else ""
    return f"{model} {act}, init {init}, {o['name']} lr={o['lr']}{extra} | data {d['name']}"


def _bar(value: float | None, lo: float, hi: float, width: int = 12) -> Text:
    """A bar whose length is log10(value) placed between lo and hi (log10 bounds)."""
    if value is None or not (value > 0) or not math.isfinite(value):
        return Text("")
    frac = 1.0 if hi <= lo else (math.log10(value) - lo) / (hi - lo)
    n = max(1, round(frac * width))
    return Text("█" * n, style="cyan")


def layer_table(summary: dict[str, Any]) -> Table:
    layers = summary.get("layers", [])
    t = Table(title="Per-layer gradient L2 norm (input layer first)", title_justify="left",
              header_style="bold", show_edge=False, pad_edge=False)
    for col, just in (("layer", "left"), ("shape", "left"), ("first", "right"), ("median", "right"),
                      ("last", "right"), ("log median", "left"), ("|W|", "right"), ("|dW|/|W|", "right")):
        # Layer names are never cut (block12.fc_b): the bar column gives way first.
        t.add_column(col, justify=just, no_wrap=col in ("layer", "shape"))
    meds = [l["grad_norm"]["median"] for l in layers if (l["grad_norm"]["median"] or 0) > 0]
    lo = math.log10(min(meds)) - 0.5 if meds else 0
    hi = math.log10(max(meds)) if meds else 1
    for l in layers:
        g = l["grad_norm"]
        shape = l["shape"]
        shape = ("x".join(map(str, shape)) if shape and not isinstance(shape[0], list)
                 else " + ".join("x".join(map(str, s)) for s in shape))
        t.add_row(l["name"], shape, num(g["first"]), num(g["median"]),
                  num(g["last"]), _bar(g["median"], lo, hi), num(l.get("weight_norm")),
                  num(l.get("update_ratio")))
    return t


def activation_table(summary: dict[str, Any]) -> Table | None:
    acts = summary.get("activations") or []
    if not acts:
        return None
    t = Table(title="Activations at the last log step", title_justify="left", header_style="bold",
              show_edge=False, pad_edge=False)
    for col in ("layer", "mean", "std", "saturated", "dead"):
        t.add_column(col, justify="left" if col == "layer" else "right")
    for a in acts:
        t.add_row(a["name"], num(a["mean"]), num(a["std"]), f"{(a['saturated'] or 0):.0%}",
                  f"{(a['dead'] or 0):.0%}")
    return t


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
    out = Text()
    for i, v in enumerate(summary.get("verdicts", [])):
        if i:
            out.append("\n")
        out.append("verdict: " if i == 0 else "         ", style="bold")
        out.append(v["message"], style=VERDICT_STYLE.get(v["kind"], "bold"))
    return out


def final_text(summary: dict[str, Any]) -> Text:
    f = summary.get("final", {})
    status = summary.get("status", "?")
    parts = [f"{k} {num(f[k], 4)}" for k in ("train_loss", "train_acc", "test_loss", "test_acc") if k in f]
    t = Text()
    t.append(status, style=STATUS_STYLE.get(status, ""))
    if summary.get("reason"):
        t.append(f" ({summary['reason']})")
    t.append(f"  {summary.get('steps', 0)} steps, {summary.get('epochs', 0):g} epochs, "
             f"{num(summary.get('train_seconds'))} s, {summary.get('samples_per_s') or 0:,.0f} samples/s\n")
    t.append("final: " + ("  ".join(parts) if parts else "no metrics"), style="bold")
    return t


def run_report(summary: dict[str, Any], meta: dict[str, Any] | None = None) -> Group:
    """Everything `dlx train` prints after training and `dlx show` prints for a run."""
    parts: list[Any] = []
    if meta:
        head = Text(f"run {meta.get('run_id', '?')}", style="bold")
        head.append(f"  {meta.get('device', '')}  seed {meta.get('seed')}  started {meta.get('started', '')}")
        parts.append(head)
    parts.append(layer_table(summary))
    acts = activation_table(summary)
    if acts is not None:
        parts += [Text(""), acts]
    through = time_text(summary)
    if through is not None:
        parts += [Text(""), through]
    parts += [Text(""), verdict_text(summary), final_text(summary)]
    return Group(*parts)

"""The rows of the run tables, built once from a run's summary.json for every renderer: the
terminal (report.py), the HTML report and Run.table(); and the one-line description of a config.

Plain dicts in, plain values out: no rich, no numpy, so any view can take them.
"""

from __future__ import annotations

import math
from typing import Any

from dlx.core.fmt import num


def describe(cfg: dict[str, Any]) -> str:
    """A one-line description of a resolved config."""
    from dlx.components.models import MODEL_DEPENDENT_KEYS, MODELS

    m, d, o = cfg["model"], cfg["data"], cfg["optimizer"]
    try:
        spec = MODELS.parse(m)
    except (ValueError, KeyError):  # a model of another dlx version: show the config as written
        spec = None
    # A key the model does not honour is not shown as applied: the config check refuses it
    # now, but a run folder written before that check may still hold one.
    honoured = spec.honoured() if spec is not None else frozenset(MODEL_DEPENDENT_KEYS)

    def applied(key: str) -> bool:
        return key not in MODEL_DEPENDENT_KEYS or key in honoured

    if m["name"] == "mlp" and spec is not None:
        widths = spec.hidden_widths()
        shape = (
            f"{len(widths)}x{widths[0]}" if widths and len(set(widths)) == 1 else "-".join(map(str, widths)) or "linear"
        )
        model = f"mlp {shape}"
    else:
        model = m["name"]
    act, init = cfg["activation"]["name"], cfg["init"]["name"]
    reg = cfg["regularization"]
    extras = [
        f"{k}={reg[k]}" for k in ("l1", "l2", "dropout", "dropconnect") if reg.get(k) and applied(f"regularization.{k}")
    ]
    if reg.get("norm", "none") != "none" and applied("regularization.norm"):
        extras.append(f"{reg['norm']} norm")
    tbptt = cfg.get("train", {}).get("tbptt")
    if tbptt and applied("train.tbptt"):
        extras.append(f"tbptt={tbptt}")
    extra = (", " + ", ".join(extras)) if extras else ""
    return f"{model} {act}, init {init}, {o['name']} lr={o['lr']}{extra} | data {d['name']}"


def shape_text(shape: Any) -> str:
    """[64, 2] -> 64x2; a recurrent layer's [[256, 2], [256, 64]] -> 256x2 + 256x64."""
    if not shape:
        return "-"
    if isinstance(shape[0], list):
        return " + ".join("x".join(map(str, s)) for s in shape)
    return "x".join(map(str, shape))


def layer_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-layer table's rows, built once for every renderer (terminal, HTML, .table()):
    layer, shape, grad_first / grad_median / grad_last (gradient L2 norms), weight_norm,
    update_ratio (|update| / |weight| of the last step) and bar (where log10 of the median
    sits between the layers' smallest and largest, 0..1: the log-median bar)."""
    layers = summary.get("layers") or []
    meds = [l["grad_norm"]["median"] for l in layers if (l["grad_norm"].get("median") or 0) > 0]
    lo = math.log10(min(meds)) - 0.5 if meds else 0.0
    hi = math.log10(max(meds)) if meds else 1.0
    rows = []
    for l in layers:
        g = l["grad_norm"]
        med = g.get("median")
        bar = None
        if med is not None and med > 0 and math.isfinite(med):
            bar = 1.0 if hi <= lo else (math.log10(med) - lo) / (hi - lo)
        rows.append(
            {
                "layer": l["name"],
                "shape": shape_text(l.get("shape")),
                "grad_first": g.get("first"),
                "grad_median": med,
                "grad_last": g.get("last"),
                "weight_norm": l.get("weight_norm"),
                "update_ratio": l.get("update_ratio"),
                "near_zero": fraction(l.get("near_zero")),
                "bar": bar,
            }
        )
    return rows


def fraction(v: Any) -> float | None:
    """A share between 0 and 1 from a summary, or None (a damaged file holds anything)."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 else None


def shows_sparsity(rows: list[dict[str, Any]]) -> bool:
    """Whether the |w| < 1e-3 column is worth showing: some layer has 5% of its weights there."""
    return any((fraction(r.get("near_zero")) or 0) >= 0.05 for r in rows if isinstance(r, dict))


LAYER_HEADERS = ("layer", "shape", "first", "median", "last", "log median", "|W|", "|dW|/|W|")


# Fractions shown only where the run's activation has them (summary.json holds null
# elsewhere): dead for units that can die (relu), negative for leaky ones (see probes.ACT_FIELDS).
OPTIONAL_ACT_COLUMNS = ("dead", "negative")


def activation_rows(acts: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """(header, rows of text) for the activation table: the terminal's and the HTML report's."""
    cols = ["saturated"] + [c for c in OPTIONAL_ACT_COLUMNS if any(a.get(c) is not None for a in acts)]
    rows = [
        [a["name"], num(a.get("mean")), num(a.get("std"))]
        + [f"{a[c]:.0%}" if a.get(c) is not None else "-" for c in cols]
        for a in acts
    ]
    return ["layer", "mean", "std", *cols], rows


def classes_worth_showing(summary: dict[str, Any]) -> bool:
    """The per-class table is shown where it tells something: unequal classes in training or
    in the test set (the commonest over 1.5x the rarest) or a class recalled less than half
    the time."""
    c = summary.get("classes")
    if not isinstance(c, dict):
        return False
    recall, train, test = c.get("recall"), c.get("train_counts"), c.get("test_counts")
    conf = c.get("confusion")
    k = len(recall) if isinstance(recall, list) else 0
    # The shape dlx wrote, or nothing (a damaged summary is shown without the table).
    if not k or not all(isinstance(x, list) and len(x) == k for x in (train, test)):
        return False
    if not isinstance(conf, list) or len(conf) != k or not all(isinstance(r, list) and len(r) == k for r in conf):
        return False
    if not all(r is None or fraction(r) is not None for r in recall) or not all(
        isinstance(n, int) and not isinstance(n, bool) for n in train + test
    ):
        return False

    def uneven(counts: list[int]) -> bool:
        nonzero = [n for n in counts if n]
        return bool(nonzero) and max(nonzero) > 1.5 * min(nonzero)

    # The test counts too: train.balance: oversample evens out the training counts, and the
    # table is then what shows whether the rare class is now recalled.
    return uneven(train) or uneven(test) or any(r is not None and r < 0.5 for r in recall)

"""What the seeds of a compare say, in words: each variant's mean with its 95% interval, and
whether the best variant's lead over each other one is larger than the seeds' spread
(Welch's t-test, dlx.core.stats). A row is anything with .label and .values[metric]
(dlx.many.variants.Row, or a compare record's variants read back)."""

from __future__ import annotations

import statistics
from typing import Any, Sequence

from dlx.core.fmt import num
from dlx.core.stats import Difference, finite, mean_interval, welch

# At most this many "best vs other" sentences under a compare's table (the closest first).
MAX_DIFFERENCES = 4


def headline_metric(rows: Sequence[Any]) -> str | None:
    """The metric a compare is judged on: test accuracy where the runs have it, else test loss."""
    for key in ("test_acc", "test_loss"):
        if any(r.values.get(key) for r in rows):
            return key
    return None


def ranked(rows: Sequence[Any], key: str) -> list[Any]:
    """Rows with values of key, best mean first (accuracy: highest; a loss: lowest)."""
    have = [r for r in rows if r.values.get(key)]
    sign = -1.0 if key.endswith("acc") else 1.0
    return sorted(have, key=lambda r: sign * statistics.fmean(r.values[key]))


def interval_words(row: Any, key: str) -> str:
    vals = row.values[key]
    mean = statistics.fmean(vals)
    ci = mean_interval(vals)
    if ci is None:
        return f"{key} {num(mean)} (1 seed: no spread to measure)"
    sd = statistics.stdev(vals)
    return (
        f"{key} {num(mean)} ± {num(sd, 2)} sd over {len(vals)} seeds; the mean's 95% interval "
        f"{num(ci[0])} to {num(ci[1])}; seeds ranged {num(min(vals))} to {num(max(vals))}"
    )


def difference_words(best: str, other: str, key: str, d: Difference) -> str:
    lead = f"{best} vs {other}: {key} {'+' if d.diff >= 0 else ''}{num(d.diff, 2)}"
    where = f"95% interval {num(d.low, 2)} to {num(d.high, 2)}, Welch's t, p {_p(d.p)}"
    if d.larger:
        return f"{lead} ({where}): larger than the seeds' spread"
    return f"{lead} ({where}): within the seeds' spread, these seeds cannot tell them apart"


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"= {p:.2g}"


def spread_lines(rows: Sequence[Any]) -> list[str]:
    """The sentences under a compare's table: one setup's interval, or the best variant's
    interval and its difference from the others (closest first), when there are seeds."""
    key = headline_metric(rows)
    if key is None:
        return []
    order = ranked(rows, key)
    if not order or max(len(r.values[key]) for r in order) < 2:
        return []
    best = order[0]
    lines = [f"{best.label}: {interval_words(best, key)}" if len(order) > 1 else interval_words(best, key)]
    for other in order[1 : 1 + MAX_DIFFERENCES]:
        d = welch(best.values[key], other.values[key])
        if d is not None:
            lines.append(difference_words(best.label, other.label, key, d))
    if len(order) > 1 + MAX_DIFFERENCES:
        lines.append(f"({len(order) - 1 - MAX_DIFFERENCES} more variants further behind: --json has every value)")
    return lines


def distribution_figure(rows: Sequence[Any], key: str):
    """Each variant's final `key` over its seeds: one dot per seed (spread sideways so equal
    values stay visible), the mean as a bar and its 95% interval as a line (a Figure)."""
    import numpy as np
    from matplotlib.figure import Figure

    from dlx.views.labels import wrap_label

    order = ranked(rows, key)
    fig = Figure(figsize=(max(5.0, 1.3 * len(order) + 2.5), 3.8), layout="constrained")
    ax = fig.subplots()
    rng = np.random.default_rng(0)  # the same picture every time
    for i, r in enumerate(order):
        vals = np.asarray(r.values[key], float)
        ax.scatter(i + rng.uniform(-0.18, 0.18, len(vals)), vals, s=12, alpha=0.6, color=f"C{i % 10}", lw=0)
        ax.hlines(vals.mean(), i - 0.3, i + 0.3, color="black", lw=2)
        ci = mean_interval(list(vals))
        if ci is not None:
            ax.vlines(i + 0.34, ci[0], ci[1], color="black", lw=1.2)
    ax.set_xticks(range(len(order)), [wrap_label(r.label, 18) for r in order], fontsize=8)
    ax.set_ylabel(f"final {key}")
    n = sorted({len(r.values[key]) for r in order})
    seeds = f"{n[0]}" if len(n) == 1 else f"{n[0]}-{n[-1]}"
    ax.set_title(f"final {key}, {seeds} seeds per variant", fontsize=10)
    ax.set_xlabel("dot: a seed; bar: the mean; line beside: its 95% interval", fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return fig


def record_rows(variants: Sequence[dict], runs: dict[str, list[dict]] | None = None) -> list[Any]:
    """Rows (label, values) from a compare record's variants: the values it stored, or for a
    record written before it stored them, the finals of its runs' summaries."""
    from types import SimpleNamespace

    out = []
    for v in variants:
        label = str(v.get("variant"))
        values: dict[str, list[float]] = {}
        for key in ("test_acc", "test_loss"):
            stored = (v.get(key) or {}).get("values") if isinstance(v.get(key), dict) else None
            if isinstance(stored, list):
                values[key] = finite(stored)
            elif runs is not None:
                values[key] = finite(
                    [((r.get("summary") or {}).get("final") or {}).get(key) for r in runs.get(label, [])]
                )
        out.append(SimpleNamespace(label=label, values=values))
    return out

"""The short texts that name runs and remedies in figures, tables and pages: what tells
runs drawn side by side apart, a variant's legend label, a remedy's row in `dlx fix`.

Pure functions of plain dicts, here in the views so that the views and the layers above
them (dlx.many, the CLI) share one wording.
"""

from __future__ import annotations

from typing import Any

from dlx.core.fmt import num

# The row of `dlx fix`'s table that is the run's own config (its remedies are the others).
ORIGINAL = "original"


def varying_keys(configs: list[dict]) -> list[str]:
    """For each config, the keys (dotted) whose values differ between the configs, as
    'key=value' text: what tells runs drawn side by side apart (init=zeros, ...)."""

    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict) and "name" in v and len(configs) > 1:
                out[key] = v.get("name")  # a component: its name first
                out.update(flat({kk: vv for kk, vv in v.items() if kk != "name"}, key + "."))
            elif isinstance(v, dict):
                out.update(flat(v, key + "."))
            else:
                out[key] = v
        return out

    flats = [flat({k: v for k, v in c.items() if k != "name"}) for c in configs]
    keys = [k for k in dict.fromkeys(k for f in flats for k in f) if len({repr(f.get(k)) for f in flats}) > 1]
    # A component whose name differs: its own settings are worth a title only where they are
    # not that component's defaults (init=normal, init.std=1; never init.mode=fan_in), and
    # a learning rate always (a comparison of optimizers is one of their lrs too).
    named = {k for k in keys if any(k.startswith(other + ".") for other in keys) and not k.endswith(".lr")}
    usual = [_defaults(c) for c in configs]
    return [
        ", ".join(f"{k}={f.get(k)}" for k in keys if k not in named or (k in f and repr(f[k]) != repr(u.get(k, f[k]))))
        for f, u in zip(flats, usual)
    ]


def _defaults(config: dict) -> dict:
    """For each component of config (a top-level section with a name), its settings' default
    values as dotted keys (init.std -> 0.01); {} where the config does not load."""
    from dlx.config.loader import load_config

    try:
        cfg = load_config(config)
    except Exception:  # noqa: BLE001  (a title is never worth an error)
        return {}
    out = {}
    for section, v in config.items():
        obj = getattr(cfg, section, None)
        if isinstance(v, dict) and "name" in v and hasattr(obj, "model_dump"):
            try:
                usual = type(obj).model_validate({"name": obj.name}).model_dump()
            except Exception:  # noqa: BLE001
                continue
            out.update({f"{section}.{k}": d for k, d in usual.items() if k != "name" and not isinstance(d, dict)})
    return out


def chars_in(inches: float, fontsize: float) -> int:
    """About how many characters of a `fontsize`-point text fit in `inches`: 0.6 em a character
    (DejaVu Sans' digits are 0.64 em, its lower case about 0.55), so a wrapped line fits."""
    return max(8, int(inches * 72 / (0.6 * fontsize)))


def _split_top(text: str, sep: str = ", ") -> list[str]:
    """text split at `sep` outside brackets: "a=[1, 2], b=3" -> ["a=[1, 2]", "b=3"]."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        c = text[i]
        depth += c in "([{"
        depth -= c in ")]}" and depth > 0
        if depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i])
            start = i = i + len(sep)
            continue
        i += 1
    return [*parts, text[start:]]


def wrap_label(text: str, width: int) -> str:
    """A label on lines of about `width` characters, broken between its 'key=value' parts
    and, where one part is longer than a line, inside it after a comma; never cut: every
    character of text stays (a figure's title or legend that ends in "…" hides exactly what
    tells runs apart, optimizer.betas=[0.9, 0.99] from [0.9, 0.999]). A line break only
    ever replaces the space after a comma: wrapped.replace("\\n", " ") is text."""
    width = max(8, int(width))
    parts = _split_top(str(text))
    atoms = []  # the pieces a line may end after, each with the separator that follows it
    for k, part in enumerate(parts):
        sep = ", " if k < len(parts) - 1 else ""
        inner = part.split(", ") if len(part) > width else [part]
        atoms += [s + ", " for s in inner[:-1]] + [inner[-1] + sep]
    lines = [""]
    for a in atoms:
        if lines[-1] and len(lines[-1] + a.rstrip()) > width:
            lines.append("")
        lines[-1] += a
    return "\n".join(line.rstrip(" ") if i < len(lines) - 1 else line for i, line in enumerate(lines))


def figure_label(label: str, config: dict) -> str:
    """A variant's label for a figure's legend: an optimizer variant says its lr (each
    optimizer runs with its own usual lr, which the label alone does not show)."""
    lr = (config.get("optimizer") or {}).get("lr")
    if "optimizer=" in label and "optimizer.lr=" not in label and isinstance(lr, (int, float)):
        return f"{label} (lr {lr:g})"
    return label


# dlx fix's table: the CLI's, the HTML report's and FixReport's repr share it.
def mean_sd_text(r: dict[str, Any]) -> str:
    if r.get("mean") is None:
        return "-"
    return f"{num(r['mean'])} ± {num(r['sd'])}" if r.get("runs", 0) > 1 else num(r["mean"])


def change_text(r: dict[str, Any]) -> str:
    c = r.get("change")
    text = "" if c is None else ("+" if c >= 0 else "") + num(c)
    if r.get("runs") and len(r.get("values", [])) < r["runs"]:
        text += f" ({r['runs'] - len(r['values'])} diverged)"
    return text.strip()


def gone_text(r: dict[str, Any]) -> str:
    if r["label"] == ORIGINAL:
        return f"has it {r['runs'] - r['gone']}/{r['runs']}"
    return f"gone {r['gone']}/{r['runs']}"


def kind_counts(r: dict[str, Any]) -> list[tuple[str, int, int]]:
    """Per verdict a row answers: (its line, seeds counted, seeds run). The original's line says
    on how many seeds the verdict is seen, a remedy's (or a part's) on how many it is gone:
    "symmetry seen 3/3", "symmetry gone 3/3", "not_learning gone 0/3". A record written before
    rows kept their verdicts apart has one line, for all its verdicts at once (gone_text)."""
    n = r.get("runs", 0)
    by_kind = r.get("gone_by_kind")
    if not isinstance(by_kind, dict) or not by_kind:
        k = n - r.get("gone", 0) if r.get("label") == ORIGINAL else r.get("gone", 0)
        return [(gone_text({"runs": n, "gone": 0, **r}), k, n)]
    if r.get("label") == ORIGINAL:
        return [(f"{kind} seen {n - g}/{n}", n - g, n) for kind, g in by_kind.items()]
    return [(f"{kind} gone {g}/{n}", g, n) for kind, g in by_kind.items()]


def kinds_text(r: dict[str, Any]) -> str:
    """A row's verdicts on one line: "symmetry gone 3/3, not_learning gone 0/3"."""
    return ", ".join(line for line, _, _ in kind_counts(r))


def needed_text(r: dict[str, Any], metric: str = "the metric") -> str:
    """What a combined remedy's parts, each run alone, say about which part fixed it (a row
    with "parts" and "needed": remedies._split). Fixed means its verdicts gone on every seed;
    a part that does that alone but leaves the metric clearly short of all parts together
    (by more than both spreads) is said to."""
    parts = [str(p.get("label")) for p in r.get("parts") or []]
    need = r.get("needed") or {}
    enough = [str(x) for x in need.get("enough") or []]
    by_kind = need.get("by_kind") or {}
    if enough:
        if len(enough) == 1:
            others = [p for p in parts if p != enough[0]]
            rest = f"; {' or '.join(others)} alone does not" if others else ""
            text = f"{enough[0]} is what removed the verdicts{rest}"
        else:
            which = "either part" if len(enough) == 2 == len(parts) else ", ".join(enough) + " each"
            text = f"{which} alone removes the verdicts"
        short = [p for p in r.get("parts") or [] if str(p.get("label")) in enough and _short_of(p, r)]
        for p in short:
            who = "it" if len(enough) == 1 else str(p["label"])
            text += f"; yet {metric} is {num(p['mean'])} with {who} alone, {num(r['mean'])} with all parts"
        return text
    removes = [(p, [k for k, ps in by_kind.items() if p in ps]) for p in parts]
    said = [f"{p} alone removes {', '.join(ks)}" for p, ks in removes if ks]
    if not said:
        return "only together: no part alone removes any of its verdicts on every seed"
    missing = [k for k, ps in by_kind.items() if not ps]
    head = "both are needed" if len(parts) == 2 else "no part alone is enough"
    tail = f"; no part alone removes {', '.join(missing)}" if missing else ""
    return f"{head}: {'; '.join(said)}{tail}"


def _short_of(part: dict[str, Any], whole: dict[str, Any]) -> bool:
    """Whether a part alone ends clearly worse than the remedy it is part of: beyond both
    spreads together (the yardstick of `dlx fix`'s "clear"), or with fewer runs finished."""
    if len(part.get("values") or []) < len(whole.get("values") or []):
        return True
    a, b = part.get("mean"), whole.get("mean")
    if a is None or b is None:
        return False
    worse = b - a if whole.get("goal", "max") == "max" else a - b
    return worse > (part.get("sd") or 0.0) + (whole.get("sd") or 0.0)

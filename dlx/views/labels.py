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

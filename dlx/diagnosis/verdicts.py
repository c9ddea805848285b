"""A verdict's parts: numbers in its sentence, its remedy as data (Fix: --set overrides that
the config's schema accepts and the model honours), and the verdict dict itself.

Each verdict is a plain dict, so it goes into summary.json as it is:
  kind      one of KINDS (the most severe first in the list diagnose() returns)
  layers    the layers (or recurrent layers, for the time-step verdict) involved
  evidence  the numbers the verdict rests on
  message   one line: what was seen, with the evidence
  cause     the likely cause, read from the resolved config (None for healthy)
  remedy    what to try, in words (None for healthy)
  fixes     the remedy as data: [{"set": [--set overrides], "text": ...}], the most direct
            first; what `dlx fix` runs ([] for healthy and for a symptom: its root's fix it)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from dlx.diagnosis.context import Context


def fmt(x: float | None) -> str:
    """A number inside a verdict's sentence (fmt.num: 2 significant digits far from 1, 3 near it)."""
    from dlx.core.fmt import num

    return num(x, small=1e-2, large=1e4, far="g", none="?")


def listing(items: Sequence[str], word: str = "or") -> str:
    items = [i for i in items if i]
    if len(items) <= 2:
        return f" {word} ".join(items)
    return ", ".join(items[:-1]) + f", {word} " + items[-1]


@dataclass(frozen=True)
class Fix:
    """One remedy as data: the `--set` overrides that make it (all of them together), and
    why it helps. The verdict's prose remedy is made from these (Fix.text); `dlx fix` runs them."""

    sets: tuple[str, ...]
    why: str = ""

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(s.partition("=")[0] for s in self.sets)

    @property
    def text(self) -> str:
        body = " + ".join(f"{k}: {v}" for k, _, v in (s.partition("=") for s in self.sets))
        return f"{body} ({self.why})" if self.why else body

    def as_dict(self) -> dict[str, Any]:
        return {"set": list(self.sets), "text": self.text}


def fix(*sets: str, why: str = "") -> Fix:
    return Fix(tuple(sets), why)


def try_fixes(ctx: Context, items: Sequence[str | Fix | None]) -> tuple[str, list[Fix]]:
    """The remedy: config changes to try, the most direct first, as prose and as the Fixes
    among them (the rest is advice no --set expresses: more data, a smaller model). Never a
    key the config would refuse for this model (ModelSpec.honoured(): lstm has no batch norm)."""
    refused = unhonoured_keys(ctx)

    def allowed(item: str | Fix) -> bool:
        keys = item.keys if isinstance(item, Fix) else (item,)
        return not any(key.startswith(k) for key in keys for k in refused)

    # The config's schema (Context.accepts) refuses what this config cannot take.
    accepts = ctx.accepts or (lambda sets: True)
    kept = [i for i in items if i and allowed(i) and (not isinstance(i, Fix) or accepts(i.sets))]
    fixes = list(dict.fromkeys(i for i in kept if isinstance(i, Fix)))
    return f"{listing([i.text if isinstance(i, Fix) else i for i in kept])}.", fixes


def unhonoured_keys(ctx: Context) -> set[str]:
    """The model-dependent keys (models.base.MODEL_DEPENDENT_KEYS) this run's model ignores."""
    from dlx.components.models import MODELS
    from dlx.components.models.base import MODEL_DEPENDENT_KEYS

    try:
        spec = MODELS.parse(ctx.config.get("model"))
    except Exception:  # a hand-built context (tests) may hold a partial model section
        return set()
    return set(MODEL_DEPENDENT_KEYS) - set(spec.honoured())


def verdict(
    kind: str,
    layers: list[str],
    evidence: dict[str, Any],
    message: str,
    cause: str | None = None,
    remedy: tuple[str, list[Fix]] | str | None = None,
) -> dict[str, Any]:
    """A verdict dict; `remedy` is try_fixes()'s (prose, fixes), or prose alone (no --set expresses it)."""
    text, fixes = remedy if isinstance(remedy, tuple) else (remedy, [])
    return {
        "kind": kind,
        "layers": layers,
        "evidence": evidence,
        "message": message,
        "cause": cause,
        "remedy": text,
        "fixes": [f.as_dict() for f in fixes],
    }

"""--set overrides: `key.path=value` applied to the raw data before validation, each
remembered as the source of the keys it set (so a problem names the --set, not a line); and
a dotted key read back from a resolved config (config_value)."""

from __future__ import annotations

import re
from typing import Any

import yaml
from pydantic import BaseModel

from dlx.config.schema import Config
from dlx.config.yamlio import KeyPath, Located, safe_load
from dlx.core.errors import Problem

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REPLACES = {("train", "steps"): "epochs", ("train", "epochs"): "steps"}


def config_value(config: Any, key: str, default: Any = None) -> Any:
    """The value at dotted `key` (model.width) of a config as plain data (a run's config.yaml),
    or `default` where the path is not there."""
    node = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _default_section(path: KeyPath) -> dict:
    if len(path) == 1 and path[0] in Config.model_fields:
        default = Config.model_fields[path[0]].get_default(call_default_factory=True)
        if isinstance(default, str):
            return {"name": default}
        if isinstance(default, BaseModel) and "name" in type(default).model_fields:
            return {"name": default.name}
    return {}


def apply_overrides(loc: Located, sets: list[str]) -> list[Problem]:
    """Apply `key.path=value` overrides in place; values parse as YAML scalars."""
    problems = []
    for item in sets:
        origin = f"--set {item}"
        key, eq, text = item.partition("=")
        parts = key.strip().split(".")
        if not eq or not all(_KEY.match(p) or p.isdigit() for p in parts):
            problems.append(
                Problem(key.strip(), "expected --set key.path=value, e.g. --set optimizer.lr=0.01", source=origin)
            )
            continue
        try:
            value = safe_load(text) if text.strip() else None
        except yaml.YAMLError as e:
            problems.append(Problem(key, f"the value is not valid YAML: {str(e).splitlines()[0]}", source=origin))
            continue
        node = loc.data
        path: list[str | int] = []
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                idx: str | int = int(part)
            elif isinstance(node, dict):
                idx = part
            else:
                problems.append(
                    Problem(
                        ".".join(map(str, path)) or key,
                        f"cannot set {part!r} inside a {type(node).__name__}",
                        source=origin,
                    )
                )
                break
            path.append(idx)
            if last:
                node[idx] = value
                loc.overrides[tuple(path)] = origin
                # train.steps replaces train.epochs (and back) instead of clashing with it.
                other = _REPLACES.get(tuple(path))
                if other and isinstance(node, dict) and other in node and (*path[:-1], other) not in loc.overrides:
                    del node[other]
                break
            child = node[idx] if (isinstance(node, list) or idx in node) else None
            if child is None:
                # A section left to its default keeps the default's name: --set optimizer.lr=0.5
                # tunes the default optimizer rather than asking for a name.
                child = node[idx] = _default_section(tuple(path))
            elif isinstance(child, str):
                # `activation: relu` given, `--set activation.x=...` wants the mapping form.
                child = node[idx] = {"name": child}
            node = child
    return problems

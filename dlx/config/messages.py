"""Pydantic's validation errors as dlx Problems: the key path in the user's data, and a
message with the valid choices and the closest one."""

from __future__ import annotations

import re
import typing
from typing import Annotated, Any, Union

from pydantic import BaseModel

from dlx.config.schema import Config
from dlx.config.yamlio import KeyPath, short
from dlx.core.errors import Problem
from dlx.core.registry import closest


def _unwrap(tp: Any, raw: Any) -> Any:
    """The BaseModel class a type annotation means for this raw value, if any."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin is Union or (origin is not None and str(origin) == "types.UnionType"):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
            name = raw.get("name") if isinstance(raw, dict) else raw
            for m in models:
                tag = m.model_fields.get("name")
                if tag is not None and name in (typing.get_args(tag.annotation) or ()):
                    return m
            if len(models) == 1:
                return models[0]
            return None
        else:
            return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _keys_at(raw: Any, path: KeyPath) -> list[str]:
    """The keys the schema allows in the mapping at `path` of the raw data."""
    model: Any = Config
    node = raw
    for part in path:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return []
        node = node.get(part) if isinstance(node, dict) else None
        model = _unwrap(model.model_fields[part].annotation, node)
    return list(model.model_fields) if model is not None else []


def _models_taking(path: KeyPath) -> list[str]:
    """The models whose spec has this model key (model.parametrization: mlp's), for a
    model that lacks it: the refusal says where the key belongs."""
    if tuple(path[:-1]) != ("model",):
        return []
    from dlx.components.models import MODELS

    return [n for n in MODELS.names() if str(path[-1]) in MODELS.get(n).model_fields]


def data_path(loc: tuple, raw: Any) -> KeyPath:
    """A pydantic error location as a key path in the user's data (union tags removed)."""
    path: list[str | int] = []
    node = raw
    for part in loc:
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            path.append(part)
            node = node[part]
        elif isinstance(part, str) and (node == part or (isinstance(node, dict) and node.get("name") == part)):
            continue  # the discriminator tag pydantic inserts: not a key of the user's
        else:
            path.append(part)
            node = None
    return tuple(path)


# Sections that name a registered component (a string or {name: ..., params}).
COMPONENTS = {("data",), ("model",), ("activation",), ("init",), ("optimizer",), ("optimizer", "schedule")}


def _choices_from_pattern(pattern: str) -> list[str] | None:
    m = re.fullmatch(r"\^\(([\w|]+)\)\$", pattern)
    return m.group(1).split("|") if m else None


def _clip(message: str, limit: int = 500) -> str:
    """A message cut in the middle: validators quote values whole (`got 'xxxx...'`)."""
    if len(message) <= limit:
        return message
    return f"{message[: limit // 2]} ... ({len(message) - limit} characters left out) ... {message[-limit // 4 :]}"


def error_message(err: dict, raw: Any, path: KeyPath) -> str:
    return _clip(_describe(err, raw, path))


def _describe(err: dict, raw: Any, path: KeyPath) -> str:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    field = next((p for p in reversed(path) if isinstance(p, str)), "value")
    if kind == "extra_forbidden":
        allowed = _keys_at(raw, path[:-1])
        hint = closest(str(path[-1]), allowed)
        msg = f"unknown key '{path[-1]}'" + (f"; did you mean '{hint}'?" if hint else "")
        owners = _models_taking(path)
        if owners and not hint:
            msg += f"; only {', '.join(owners)} take{'s' if len(owners) == 1 else ''} it"
        return msg + (f" (valid here: {', '.join(allowed)})" if allowed else "")
    if kind == "union_tag_invalid":
        choices = re.findall(r"'([^']+)'", ctx.get("expected_tags", ""))
        hint = closest(str(ctx.get("tag")), choices)
        return (
            f"unknown {field} '{ctx.get('tag')}'"
            + (f"; did you mean '{hint}'?" if hint else "")
            + f" (valid: {', '.join(choices)})"
        )
    if kind == "union_tag_not_found":
        return f"needs a name, e.g. {field}: {{name: ...}} or just {field}: NAME"
    if kind == "literal_error" or (kind == "string_pattern_mismatch" and _choices_from_pattern(ctx.get("pattern", ""))):
        choices = (
            re.findall(r"'([^']+)'", ctx.get("expected", ""))
            if kind == "literal_error"
            else _choices_from_pattern(ctx["pattern"])
        )
        hint = closest(str(value), choices) if isinstance(value, str) else None
        return (
            f"{short(value)} is not a valid {field}"
            + (f"; did you mean '{hint}'?" if hint else "")
            + f" (valid: {', '.join(choices)})"
        )
    if kind == "missing":
        return "required key is missing"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        got = "nothing" if value is None else f"{type(value).__name__} {short(value)}"
        if path in COMPONENTS:
            return f"must be a name or a mapping with a name, e.g. {field}: NAME or {field}: {{name: NAME, ...}}; got {got}"
        return f"must be a mapping of keys, got {got}"
    msg = err["msg"]
    bound = next((ctx[k] for k in ("le", "lt", "ge", "gt") if isinstance(ctx.get(k), float)), None)
    if bound is not None and abs(bound) >= 1e9:  # 1e+30, not thirty-one digits
        msg = re.sub(r"-?\d{10,}(\.\d*)?", f"{bound:g}", msg)
    if msg.startswith("Value error, "):
        return msg[len("Value error, ") :]
    if kind == "string_pattern_mismatch" and field == "name":
        return f"{short(value)} is not a valid name: use letters, digits, '_', '-' and '.' (at most 64)"
    return f"{msg[0].lower()}{msg[1:]} (got {short(value)})" if "input" in err else msg


def dedupe(problems: list[Problem]) -> list[Problem]:
    seen, out = set(), []
    for p in problems:
        if (p.path, p.message) not in seen:
            seen.add((p.path, p.message))
            out.append(p)
    return sorted(out, key=lambda p: (p.line or 10**9, p.path))

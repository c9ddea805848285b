"""Config YAML: reading it with each key's line, within limits, booleans the YAML 1.2 way.

`parse_yaml` gives the raw data as a `Located` (data plus where each key came from), so every
later problem can name its line; `safe_load` reads other YAML (a --set value, a sweep's
space) under the same limits and resolver; `dump_yaml` writes what a run folder holds.
"""

from __future__ import annotations

import re
import reprlib
from typing import Any, Union

import yaml

from dlx.core.errors import ConfigError, Problem

# A key path into the raw data: ("optimizer", "lr"), ("model", "layers", 0).
KeyPath = tuple[Union[str, int], ...]


def short(value: Any, limit: int = 80) -> str:
    """repr(value), cut to `limit` characters: a problem quotes a value, it does not echo a
    100 kB string back (repr of an aliased structure could even hang)."""
    r = reprlib.Repr()
    r.maxstring = r.maxother = r.maxlong = limit
    text = r.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Located:
    """Raw config data plus where each key came from."""

    def __init__(self, data: Any, lines: dict[KeyPath, int], source: str | None):
        self.data = data
        self.lines = lines
        self.source = source
        self.overrides: dict[KeyPath, str] = {}

    def problem(self, path: KeyPath, message: str) -> Problem:
        dotted = ".".join(str(p) for p in path)
        for i in range(len(path), 0, -1):  # an override wins over the file for its subtree
            if path[:i] in self.overrides:
                return Problem(dotted, message, source=self.overrides[path[:i]])
        below = [src for p, src in self.overrides.items() if p[: len(path)] == path]
        if below:  # e.g. a problem at `data` caused by --set data.name=...
            return Problem(dotted, message, source=", ".join(below))
        for i in range(len(path), -1, -1):  # a missing key points at its parent's line
            if path[:i] in self.lines:
                return Problem(dotted, message, line=self.lines[path[:i]], source=self.source)
        return Problem(dotted, message, source=self.source)


# Far beyond what any config needs (a CNN of 1000 layers is ~10k nodes, 4 levels deep),
# far below what crashes or hangs: PyYAML composes and constructs recursively (a few
# hundred levels of [[[...]]] raise RecursionError), and aliases share nodes, so ten
# lines of `b: [*a, *a, ...]` expand to 10^9 values when walked ("billion laughs").
MAX_DEPTH = 64
MAX_NODES = 100_000


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses nesting, alias expansion and self-referencing aliases past
    what a config needs, as YAML errors with a line, before anything walks the tree."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._open: set[str] = set()  # anchors of the collections being composed
        self._extent: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes, depth), aliases expanded

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) and event.anchor in self._open:
            raise yaml.composer.ComposerError(
                None, None, f"alias *{event.anchor} refers to the collection it is inside (a loop)", event.start_mark
            )
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
        anchor = None if isinstance(event, yaml.AliasEvent) else getattr(event, "anchor", None)
        if anchor is not None:
            self._open.add(anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open.discard(anchor)
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = node.value if isinstance(node, yaml.SequenceNode) else []
        nodes = 1 + sum(self._extent[id(c)][0] for c in children)
        depth = 1 + max((self._extent[id(c)][1] for c in children), default=0)
        self._extent[id(node)] = (nodes, depth)
        if nodes > MAX_NODES or depth > MAX_DEPTH:
            what = f"more than {MAX_NODES} values" if nodes > MAX_NODES else f"more than {MAX_DEPTH} levels"
            raise yaml.composer.ComposerError(
                None, None, f"with its aliases expanded this holds {what}; write the values out", event.start_mark
            )
        return node

    def construct_object(self, node, deep=False):
        # An explicit tag on a value it does not fit (`!!int relu`, `!!bool x`, `!!timestamp 1`)
        # makes PyYAML's constructors raise ValueError, KeyError or AttributeError, not YAMLError.
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception:
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            value = short(node.value) if isinstance(node, yaml.ScalarNode) else "this value"
            raise yaml.constructor.ConstructorError(
                None, None, f"the tag {tag} does not fit {value}; remove the tag", node.start_mark
            ) from None


# YAML 1.1 (PyYAML's default) reads yes/no/on/off as booleans, so the documented
# `train.prune: {on: [symmetry]}` arrived as {True: [...]} and was rejected. Configs read
# booleans the YAML 1.2 way: only true/false (any case PyYAML knows); `on`, `yes`, ... stay
# strings, and a bool field still takes them (pydantic reads "yes"/"on" as True).
_BOOL_TAG = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def safe_load(text: str):
    """yaml.safe_load with the limits of _Loader (YAMLError past them)."""
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _walk_lines(
    node: yaml.Node,
    path: KeyPath,
    lines: dict[KeyPath, int],
    problems: list[Problem],
    source: str | None,
    loader: yaml.SafeLoader,
) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            # The key as the data holds it (`1:` is the int 1), so pydantic's locations match.
            key = loader.construct_object(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            line = key_node.start_mark.line + 1
            if key is None:
                problems.append(Problem(".".join(map(str, path)), "a key must be a plain name", line, source))
                continue
            if key in seen:
                problems.append(
                    Problem(
                        ".".join(map(str, path + (key,))),
                        f"duplicate key (first on line {seen[key]}); keep one",
                        line,
                        source,
                    )
                )
            seen[key] = line
            lines[path + (key,)] = line
            _walk_lines(value_node, path + (key,), lines, problems, source, loader)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            _walk_lines(item, path + (i,), lines, problems, source, loader)


def parse_yaml(text: str | bytes, source: str | None = None) -> Located:
    """Raw data and key lines from YAML text; ConfigError for anything malformed."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            line = text[: e.start].count(b"\n") + 1
            raise ConfigError(
                [Problem("", f"not UTF-8 text (byte {e.start}); save the file as UTF-8", line, source)], source
            ) from None
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as e:
        # The reader checks every character up front, before the try below: a NUL byte or
        # another control character used to escape as a traceback.
        line = text[: e.position].count("\n") + 1
        raise ConfigError(
            [
                Problem(
                    "",
                    f"character U+{e.character:04X} (a control or non-printable "
                    f"character) is not allowed in YAML; remove it",
                    line,
                    source,
                )
            ],
            source,
        ) from None
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
        if node is not None:
            lines: dict[KeyPath, int] = {(): 1}
            problems: list[Problem] = []
            _walk_lines(node, (), lines, problems, source, loader)
    except yaml.YAMLError as e:
        raise ConfigError([_yaml_problem(e, source)], source) from None
    finally:
        loader.dispose()
    if data is None:
        raise ConfigError([Problem("", "the config is empty; it needs at least data: and model:", 1, source)], source)
    if not isinstance(data, dict):
        raise ConfigError(
            [
                Problem(
                    "",
                    f"the config must be a mapping of keys (data:, model:, ...), not a {type(data).__name__}",
                    1,
                    source,
                )
            ],
            source,
        )
    if problems:
        raise ConfigError(problems, source)
    return Located(data, lines, source)


def _yaml_problem(e: yaml.YAMLError, source: str | None) -> Problem:
    """A parser error as a Problem; an unclosed bracket or quote points at the line that opened it."""
    problem_mark = getattr(e, "problem_mark", None)
    context_mark = getattr(e, "context_mark", None)
    what = getattr(e, "problem", None) or str(e).splitlines()[0]
    context = getattr(e, "context", None)
    at = f" (line {problem_mark.line + 1}, column {problem_mark.column + 1})" if problem_mark is not None else ""
    if context and context.startswith("while") and context_mark is not None:
        # "while parsing a flow mapping": the construct opened on context_mark never closed.
        return Problem(
            "",
            f"malformed YAML: {what}{at}, {context} opened on line {context_mark.line + 1}",
            context_mark.line + 1,
            source,
        )
    msg = "malformed YAML: " + (f"{context}, " if context else "") + f"{what}{at}"
    return Problem("", msg, problem_mark.line + 1 if problem_mark is not None else None, source)


def dump_yaml(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)

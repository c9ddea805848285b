"""The config: YAML with line numbers, --set overrides, and one pydantic schema.

Validation reports every problem at once, each with its key path and the YAML
line (or the --set that introduced it); names get the valid choices and the
closest one. `dlx validate` and `dlx train` both go through `load_config` (and
then `dlx.api.check`'s build step, for problems only building can find).

This module is the entry; the work is done beside it: yamlio (YAML with lines, limits),
overrides (--set), schema (the Config model), messages (pydantic errors as Problems),
checks (problems across sections).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from dlx.config.catalogue import resolve_config
from dlx.config.checks import cross_checks
from dlx.config.messages import COMPONENTS, data_path, dedupe, error_message
from dlx.config.overrides import apply_overrides
from dlx.config.schema import (
    Config,
    EarlyStopping,
    InstrumentsSection,
    Pretrain,
    Prune,
    Regularization,
    Train,
)
from dlx.config.yamlio import MAX_DEPTH, MAX_NODES, KeyPath, Located, dump_yaml, parse_yaml, safe_load
from dlx.core.errors import ConfigError, Problem

# The pieces live in the modules beside this one; their names stay importable from here,
# where the rest of dlx has always found them (new code: import from the module itself).

__all__ = [
    "COMPONENTS",
    "MAX_DEPTH",
    "MAX_NODES",
    "Config",
    "EarlyStopping",
    "InstrumentsSection",
    "KeyPath",
    "Located",
    "Pretrain",
    "Prune",
    "Regularization",
    "Train",
    "apply_overrides",
    "dump_yaml",
    "load_config",
    "load_config_text",
    "parse_yaml",
    "safe_load",
    "validate",
]


def validate(loc: Located, base_dir: Path | None = None) -> Config:
    """The Config for located raw data, or ConfigError listing every problem."""
    try:
        cfg = Config.model_validate(loc.data, context={"base_dir": base_dir})
    except ValidationError as e:
        problems = []
        for err in e.errors(include_url=False):
            path = data_path(err["loc"], loc.data)
            problems.append(loc.problem(path, error_message(err, loc.data, path)))
        raise ConfigError(dedupe(problems), loc.source) from None
    problems = []
    for path, other, message in cross_checks(cfg):
        given = path in loc.lines or any(p[: len(path)] == path for p in loc.overrides)
        problem = loc.problem(path if given else other, message)
        problems.append(Problem(".".join(map(str, path)), message, problem.line, problem.source))
    if problems:
        raise ConfigError(problems, loc.source)
    cfg._located = loc
    return cfg


def load_config(source: str | Path | dict | Config, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """A validated Config from a YAML path (or an example's name), a dict or a Config, with --set overrides."""
    if isinstance(source, Config) and not overrides:
        return source
    if isinstance(source, Config):
        source = source.resolved()
    if isinstance(source, dict):
        import copy

        return _finish(Located(copy.deepcopy(source), {}, None), None, overrides)
    path = resolve_config(source)  # a path, or a shipped example's name (quickstart)
    return load_config_text(path.read_bytes(), str(path), path.resolve().parent, overrides)


def load_config_text(
    text: str | bytes, source: str | None, base_dir: Path | None, overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """load_config for YAML text kept elsewhere (a sweep's copy of its base config):
    relative paths in it resolve against base_dir, problems name `source`."""
    return _finish(parse_yaml(text, source), base_dir, overrides)


def _finish(loc: Located, base_dir: Path | None, overrides: list[str] | tuple[str, ...]) -> Config:
    problems = apply_overrides(loc, list(overrides))
    if problems:
        # Still validate, so bad overrides and bad keys are reported together.
        try:
            validate(loc, base_dir)
        except ConfigError as e:
            problems += e.problems
        raise ConfigError(problems, loc.source)
    return validate(loc, base_dir)

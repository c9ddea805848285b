"""The config: YAML with line numbers, --set overrides, and one pydantic schema.

Validation reports every problem at once, each with its key path and the YAML
line (or the --set that introduced it); names get the valid choices and the
closest one. `dlx validate` and `dlx train` both go through `load_config` (and
then `dlx.api.check`'s build step, for problems only building can find).
"""

from __future__ import annotations

import re
import reprlib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveInt,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from dlx.components.activations import ACTIVATIONS
from dlx.components.data import DATASETS
from dlx.components.init import INITS
from dlx.components.models import MODEL_DEPENDENT_KEYS, MODELS
from dlx.components.optim import OPTIMIZERS, SGD
from dlx.config.catalogue import resolve_config
from dlx.core.errors import ConfigError, Problem
from dlx.core.registry import Section, closest
from dlx.diagnosis.engine import PRUNE_WARMUP

Path_ = tuple[Union[str, int], ...]


def _positive_int_or(word: str):
    """A validator for keys that take a positive integer or one special word."""

    def check(v: Any) -> Any:
        if v == word:
            return v
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"must be a positive integer or '{word}', got {v!r}")
        return v

    return BeforeValidator(check)


class EarlyStopping(Section):
    metric: Literal["test_loss", "test_acc", "train_loss", "train_acc"] = Field(
        "test_loss", description="the metric watched at each evaluation (losses must fall, accuracies rise)"
    )
    patience: PositiveInt = Field(5, description="evaluations without improvement before stopping")
    min_delta: NonNegativeFloat = Field(0.0, description="an evaluation improves only by more than this")


class Regularization(Section):
    l1: NonNegativeFloat = Field(0.0, description="adds l1 * sum|w| over weights (not biases)")
    l2: NonNegativeFloat = Field(0.0, description="adds l2/2 * sum w^2 over weights: gradient l2*w")
    dropout: float = Field(
        0.0, ge=0, lt=1, description="the probability of zeroing each hidden unit in training (inverted dropout)"
    )
    dropconnect: float = Field(
        0.0, ge=0, lt=1, description="the probability of zeroing each weight in training (mlp only)"
    )
    norm: Literal["none", "batch", "layer"] = Field(
        "none", description="a normalization layer before each hidden activation"
    )
    clip_norm: float | None = Field(None, gt=0, description="clip the global gradient L2 norm")
    clip_value: float | None = Field(None, gt=0, description="clip each gradient entry to +-value")
    early_stopping: EarlyStopping | None = Field(
        None, description="stop when a metric stops improving (null: train to the end)"
    )


class Prune(Section):
    on: list[str] = Field(
        min_length=1,
        description="verdict kinds that stop the run while it trains (status pruned): "
        "symmetry, dead_units, vanishing, vanishing_through_time, not_learning",
    )
    warmup: float = Field(
        PRUNE_WARMUP, ge=0, lt=1, description="the fraction of the steps trained before any verdict may stop the run"
    )
    patience: PositiveInt = Field(3, le=1000, description="log intervals in a row the verdict must hold")

    @field_validator("on")
    @classmethod
    def _kinds(cls, v: list[str]) -> list[str]:
        from dlx.diagnosis.engine import NOT_PRUNABLE, PRUNABLE

        for kind in v:
            if kind in NOT_PRUNABLE:
                raise ValueError(
                    f"{kind!r} is not safe to stop a run on: {NOT_PRUNABLE[kind]}; "
                    f"the kinds that are: {', '.join(PRUNABLE)}"
                )
            if kind not in PRUNABLE:
                hint = closest(kind, list(PRUNABLE))
                raise ValueError(
                    f"unknown verdict kind {kind!r}"
                    + (f" (did you mean {hint!r}?)" if hint else "")
                    + f"; one of {', '.join(PRUNABLE)}"
                )
        return list(dict.fromkeys(v))


class Train(Section):
    epochs: PositiveInt | None = Field(None, description="passes over the training set (5 unless steps is given)")
    steps: PositiveInt | None = Field(None, description="optimizer steps in all, instead of epochs")
    batch_size: Annotated[Union[PositiveInt, Literal["full"]], _positive_int_or("full")] = Field(
        64,
        description="samples per step; full: the whole training set (batch gradient descent); "
        "the last partial batch of an epoch is dropped",
    )
    balance: Literal["none", "oversample", "undersample", "weighted"] = Field(
        "none",
        description="for imbalanced classes: repeat the rarer classes' samples, cut the commoner ones, "
        "or weight the cross-entropy by 1/class frequency",
    )
    loss: Literal["cross_entropy", "mse"] = Field(
        "cross_entropy", description="the training loss (sigmoid outputs with cross_entropy: binary, per class)"
    )
    device: str = Field("auto", description="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    # Bounded: the probes preallocate a [log_every, layers] buffer, so log_every: 1e12 failed
    # in torch's allocator instead of here.
    log_every: PositiveInt = Field(10, le=10_000, description="steps between host reads of the probes")
    eval_every: Annotated[Union[PositiveInt, Literal["epoch"]], _positive_int_or("epoch")] = Field(
        "epoch",
        description="steps between test-set evaluations, at the end of the log interval "
        "reaching each multiple (epoch: once per epoch)",
    )
    # Bounded: torch.set_num_threads overflows past 2^31 and crashed the process at 10^6.
    threads: PositiveInt | None = Field(
        None,
        le=1024,
        description="torch CPU threads (default: one per 150 MFLOP of work per step, at most the cores: "
        "1 for small nets, which extra threads only slow down)",
    )
    tbptt: PositiveInt | None = Field(
        None, description="recurrent models: backpropagate through at most this many steps"
    )
    prune: Prune | None = Field(
        None,
        description="stop the run once a verdict in prune.on has held for prune.patience log intervals "
        "after the warm-up (compare and sweep: --prune-on)",
    )
    checkpoint: bool = Field(
        True,
        description="write checkpoint.pt (at the end, on Ctrl-C or another stop "
        "signal, and every checkpoint_every steps) so the run can be "
        "resumed",
    )
    # None: checkpoints only at the end and on Ctrl-C (a killed run then cannot resume).
    # N: also at the end of the log interval that reaches each multiple of N, so the
    # checkpoint and metrics.jsonl always agree on the last logged step.
    checkpoint_every: PositiveInt | None = Field(
        None,
        description="steps between checkpoints during the "
        "run (written at the next log step); null: only at the end "
        "and on a stop signal",
    )

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        # At most 3 digits: torch.device raises RuntimeError on an index past int64 and
        # wraps one past 2^16 around to another device.
        if re.fullmatch(r"auto|cpu|mps|cuda(:\d{1,3})?", v):
            return v
        choices = ["auto", "cpu", "cuda", "cuda:0", "mps"]
        hint = "cuda" if v.lower() in ("gpu", "nvidia") else closest(v, choices)
        raise ValueError(
            f"'{v}' is not a valid device"
            + (f"; did you mean '{hint}'?" if hint else "")
            + " (valid: auto, cpu, cuda, cuda:N, mps)"
        )

    @model_validator(mode="after")
    def _epochs_or_steps(self):
        if self.epochs is not None and self.steps is not None:
            raise ValueError("give train.epochs or train.steps, not both")
        if self.epochs is None and self.steps is None:
            object.__setattr__(self, "epochs", 5)
        return self

    @model_validator(mode="after")
    def _checkpoints_on(self):
        if self.checkpoint_every is not None and not self.checkpoint:
            raise ValueError("checkpoint_every needs checkpoint: true (checkpoint: false writes no checkpoints)")
        return self


class InstrumentsSection(Section):
    """Research instruments (dlx/instruments.py), each off unless turned on, measured at log
    steps `every` apart on the first `batch` training samples, outside the training step."""

    sharpness: bool = Field(False, description="top Hessian eigenvalue (Lanczos) against the lr's stability threshold")
    trace: bool = Field(False, description="Hessian trace (Hutchinson)")
    noise: bool = Field(False, description="per-sample gradient SNR per layer and the gradient noise scale B_simple")
    spectra: bool = Field(False, description="singular values, stable and effective rank, distance from init per layer")
    hessian: bool = Field(
        False, description="the whole Hessian's eigenvalues, exactly (tiny nets: at most 1,000 parameters)"
    )
    every: Annotated[Union[PositiveInt, Literal["auto"]], _positive_int_or("auto")] = Field(
        "auto",
        description="steps between measurements (auto: at most about 20 over the run, never costing more than "
        "the training so far)",
    )
    batch: PositiveInt = Field(256, le=65536, description="the probe batch: the first N training samples")
    lanczos: PositiveInt = Field(12, le=200, description="Lanczos iterations for the top eigenvalue")
    hutchinson: PositiveInt = Field(16, le=10_000, description="Rademacher vectors for the trace")

    @property
    def active(self) -> bool:
        return self.sharpness or self.trace or self.noise or self.spectra or self.hessian


class Pretrain(Section):
    """Greedy layer-wise pretraining (Hinton & Salakhutdinov 2006, Bengio et al. 2007): before
    the first step, each hidden layer in turn is trained as an autoencoder on the output of
    the layers below it (already pretrained), then the whole net trains as usual."""

    kind: Literal["autoencoder"] = Field("autoencoder", description="what each layer learns: to reconstruct its input")
    steps: PositiveInt = Field(300, le=100_000, description="autoencoder steps per layer")
    lr: float = Field(0.01, gt=0, le=10, description="the autoencoders' Adam learning rate")
    batch_size: PositiveInt = Field(64, le=65536)


class Config(Section):
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    data: DATASETS.field_type()  # type: ignore[valid-type]
    model: MODELS.field_type()  # type: ignore[valid-type]
    activation: ACTIVATIONS.field_type() = "relu"  # type: ignore[valid-type]
    init: INITS.field_type() = "default"  # type: ignore[valid-type]
    optimizer: OPTIMIZERS.field_type() = Field(default_factory=lambda: SGD(name="sgd"))  # type: ignore[valid-type]
    regularization: Regularization = Field(default_factory=Regularization)
    train: Train = Field(default_factory=Train)
    instruments: InstrumentsSection = Field(default_factory=InstrumentsSection)
    pretrain: Pretrain | None = Field(None, description="greedy layer-wise autoencoder pretraining (mlp)")

    model_config = ConfigDict(validate_default=True)
    _located: Any = PrivateAttr(None)  # where each key came from, for problems found later

    def __eq__(self, other: object) -> bool:
        # Equal configs are equal wherever they came from (ignore _located).
        return isinstance(other, Config) and self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]

    def problem(self, path: tuple, message: str) -> Problem:
        """A Problem at `path` with its YAML line or --set, when known."""
        if self._located is not None:
            return self._located.problem(tuple(path), message)
        return Problem(".".join(map(str, path)), message)

    def resolved(self) -> dict:
        """Plain data with every default filled in (what config.yaml in a run holds)."""
        return _plain(self.model_dump(mode="json"))


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


# ---------------------------------------------------------------- YAML with lines


class _Located:
    """Raw config data plus where each key came from."""

    def __init__(self, data: Any, lines: dict[Path_, int], source: str | None):
        self.data = data
        self.lines = lines
        self.source = source
        self.overrides: dict[Path_, str] = {}

    def problem(self, path: Path_, message: str) -> Problem:
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
            value = _short(node.value) if isinstance(node, yaml.ScalarNode) else "this value"
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
    path: Path_,
    lines: dict[Path_, int],
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


def parse_yaml(text: str | bytes, source: str | None = None) -> _Located:
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
            lines: dict[Path_, int] = {(): 1}
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
    return _Located(data, lines, source)


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


# ---------------------------------------------------------------- --set overrides

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REPLACES = {("train", "steps"): "epochs", ("train", "epochs"): "steps"}


def _default_section(path: Path_) -> dict:
    if len(path) == 1 and path[0] in Config.model_fields:
        default = Config.model_fields[path[0]].get_default(call_default_factory=True)
        if isinstance(default, str):
            return {"name": default}
        if isinstance(default, BaseModel) and "name" in type(default).model_fields:
            return {"name": default.name}
    return {}


def apply_overrides(loc: _Located, sets: list[str]) -> list[Problem]:
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


# ---------------------------------------------------------------- validation


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


def _keys_at(raw: Any, path: Path_) -> list[str]:
    """The keys the schema allows in the mapping at `path` of the raw data."""
    model: Any = Config
    node = raw
    for part in path:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return []
        node = node.get(part) if isinstance(node, dict) else None
        model = _unwrap(model.model_fields[part].annotation, node)
    return list(model.model_fields) if model is not None else []


def _data_path(loc: tuple, raw: Any) -> Path_:
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


def _short(value: Any, limit: int = 80) -> str:
    """repr(value), cut to `limit` characters: a problem quotes a value, it does not echo a
    100 kB string back (repr of an aliased structure could even hang)."""
    short = reprlib.Repr()
    short.maxstring = short.maxother = short.maxlong = limit
    text = short.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _clip(message: str, limit: int = 500) -> str:
    """A message cut in the middle: validators quote values whole (`got 'xxxx...'`)."""
    if len(message) <= limit:
        return message
    return f"{message[: limit // 2]} ... ({len(message) - limit} characters left out) ... {message[-limit // 4 :]}"


def _message(err: dict, raw: Any, path: Path_) -> str:
    return _clip(_describe(err, raw, path))


def _describe(err: dict, raw: Any, path: Path_) -> str:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    field = next((p for p in reversed(path) if isinstance(p, str)), "value")
    if kind == "extra_forbidden":
        allowed = _keys_at(raw, path[:-1])
        hint = closest(str(path[-1]), allowed)
        msg = f"unknown key '{path[-1]}'" + (f"; did you mean '{hint}'?" if hint else "")
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
            f"{_short(value)} is not a valid {field}"
            + (f"; did you mean '{hint}'?" if hint else "")
            + f" (valid: {', '.join(choices)})"
        )
    if kind == "missing":
        return "required key is missing"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        got = "nothing" if value is None else f"{type(value).__name__} {_short(value)}"
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
        return f"{_short(value)} is not a valid name: use letters, digits, '_', '-' and '.' (at most 64)"
    return f"{msg[0].lower()}{msg[1:]} (got {_short(value)})" if "input" in err else msg


def _cross_checks(cfg: Config) -> list[tuple[Path_, Path_, str]]:
    """Problems that involve two keys at once: (key, the other key involved, message).

    Only run on a valid structure. The problem is placed at the first key; if that
    key was left to its default (no line of its own), at the other one.
    """
    out = []
    task = type(cfg.data).task
    if task == "regression" and cfg.train.loss == "cross_entropy":
        out.append((("train", "loss"), ("data",), f"data '{cfg.data.name}' is a regression task; use train.loss: mse"))
    bs = cfg.train.batch_size
    n_train = getattr(cfg.data, "n_train", None)
    if isinstance(bs, int) and n_train and bs > n_train:
        out.append(
            (
                ("train", "batch_size"),
                ("data", "n_train"),
                f"{bs} is larger than data.n_train ({n_train}); use batch_size: full for full-batch gradient descent",
            )
        )
    if cfg.regularization.norm == "batch" and bs == 1:
        out.append(
            (
                ("regularization", "norm"),
                ("train", "batch_size"),
                "batch norm needs batch_size >= 2 (one sample has no batch statistics)",
            )
        )
    out += _unhonoured(cfg)
    shape = cfg.data.feature_shape()
    if shape is not None:
        out += [(path, ("data",), msg) for path, msg in cfg.model.check(tuple(shape), cfg)]
    return out


def _unhonoured(cfg: Config) -> list[tuple[Path_, Path_, str]]:
    """Model-dependent keys set away from their default that the model does not apply.

    The one owner of "which model honours which key": it reads each model's declaration
    (ModelSpec.honours and .unhonoured()), so a model never has to refuse keys itself.
    """
    spec = cfg.model
    name = spec.registry_name
    here = spec.unhonoured()
    out = []
    for key in MODEL_DEPENDENT_KEYS:
        section, field = key.split(".")
        part = getattr(cfg, section)
        if getattr(part, field) == type(part).model_fields[field].default:
            continue
        if key in here:
            out.append(((section, field), ("model",), f"{name} ignores it here: {here[key]}"))
        elif key not in spec.honours:
            by = [n for n in MODELS.names() if key in MODELS.get(n).honours]
            out.append(
                (
                    (section, field),
                    ("model",),
                    f"{name} ignores it; it is honoured by {', '.join(by) or 'no model'}; "
                    f"{spec.instead.get(key, 'remove it')}",
                )
            )
    return out


def validate(loc: _Located, base_dir: Path | None = None) -> Config:
    """The Config for located raw data, or ConfigError listing every problem."""
    try:
        cfg = Config.model_validate(loc.data, context={"base_dir": base_dir})
    except ValidationError as e:
        problems = []
        for err in e.errors(include_url=False):
            path = _data_path(err["loc"], loc.data)
            problems.append(loc.problem(path, _message(err, loc.data, path)))
        raise ConfigError(_dedupe(problems), loc.source) from None
    problems = []
    for path, other, message in _cross_checks(cfg):
        given = path in loc.lines or any(p[: len(path)] == path for p in loc.overrides)
        problem = loc.problem(path if given else other, message)
        problems.append(Problem(".".join(map(str, path)), message, problem.line, problem.source))
    if problems:
        raise ConfigError(problems, loc.source)
    cfg._located = loc
    return cfg


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen, out = set(), []
    for p in problems:
        if (p.path, p.message) not in seen:
            seen.add((p.path, p.message))
            out.append(p)
    return sorted(out, key=lambda p: (p.line or 10**9, p.path))


def load_config(source: str | Path | dict | Config, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """A validated Config from a YAML path (or an example's name), a dict or a Config, with --set overrides."""
    if isinstance(source, Config) and not overrides:
        return source
    if isinstance(source, Config):
        source = source.resolved()
    if isinstance(source, dict):
        import copy

        return _finish(_Located(copy.deepcopy(source), {}, None), None, overrides)
    path = resolve_config(source)  # a path, or a shipped example's name (quickstart)
    return load_config_text(path.read_bytes(), str(path), path.resolve().parent, overrides)


def load_config_text(
    text: str | bytes, source: str | None, base_dir: Path | None, overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """load_config for YAML text kept elsewhere (a sweep's copy of its base config):
    relative paths in it resolve against base_dir, problems name `source`."""
    return _finish(parse_yaml(text, source), base_dir, overrides)


def _finish(loc: _Located, base_dir: Path | None, overrides: list[str] | tuple[str, ...]) -> Config:
    problems = apply_overrides(loc, list(overrides))
    if problems:
        # Still validate, so bad overrides and bad keys are reported together.
        try:
            validate(loc, base_dir)
        except ConfigError as e:
            problems += e.problems
        raise ConfigError(problems, loc.source)
    return validate(loc, base_dir)


def dump_yaml(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)

"""Registries: YAML name -> spec class (its parameters, validated by pydantic).

Each kind of component (activation, init, optimizer, schedule, data, model)
has one Registry. A spec class declares the component's parameters as pydantic
fields and knows how to build the thing; `Registry.register` stamps it with a
`name: Literal[...]` field so a config section validates as a discriminated
union: the name picks the class, the class rejects parameters it does not know.
"""

from __future__ import annotations

import difflib
import typing
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, create_model, field_validator


def _allows(annotation: Any, kind: type) -> bool:
    """Whether a type annotation accepts values of `kind` (looking inside Optional/Union/Literal)."""
    if annotation is kind:
        return True
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return any(isinstance(a, kind) for a in typing.get_args(annotation))
    return any(_allows(a, kind) for a in typing.get_args(annotation))


def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, bool) and info.field_name in cls.model_fields:
        if not _allows(cls.model_fields[info.field_name].annotation, bool):
            raise ValueError(
                f"expected a number or a name, not the boolean {str(value).lower()} "
                f"(YAML reads yes/no/on/off as booleans)"
            )
    return value


class StrictModel(BaseModel):
    """Base of every config model: unknown keys and NaN/Inf are errors, and so are
    booleans given for numbers. YAML reads yes/no/on/off as booleans and pydantic's
    lax mode would turn those into 1/0 (`epochs: yes` training one epoch)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Section(StrictModel):
    """A fixed config section (regularization, train, ...)."""

    _no_bool = field_validator("*", mode="before")(classmethod(_no_bool_for_numbers))


class Spec(StrictModel):
    """Base of every component spec: strict about unknown keys, immutable."""

    name: str

    def params(self) -> dict[str, Any]:
        """The parameters without the name, as given or defaulted."""
        return self.model_dump(exclude={"name"})


def closest(word: str, choices: list[str]) -> str | None:
    """The valid choice nearest to a misspelling, if any is near enough."""
    hits = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.5)
    return hits[0] if hits else None


def _show_default(value: Any) -> str:
    """A default as the YAML would write it: a nested spec by its name (`schedule=constant`,
    or `{name: ..., k: v}` when it has parameters), a section as a mapping, a tuple as a
    list, None as null, booleans as true/false; a string quoted only where YAML would read
    it as something else. Never a Python or pydantic repr."""
    if isinstance(value, Spec):
        params = value.params()
        if not params:
            return value.name
        return "{" + ", ".join([f"name: {value.name}"] + [f"{k}: {_show_default(v)}" for k, v in params.items()]) + "}"
    if isinstance(value, BaseModel):
        return "{" + ", ".join(f"{k}: {_show_default(getattr(value, k))}" for k in type(value).model_fields) + "}"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_show_default(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        import yaml

        try:
            plain = yaml.safe_load(value) == value and ": " not in value
        except yaml.YAMLError:
            plain = False
        return value if plain and value else repr(value)
    return repr(value)


def _bounds(metadata: Any) -> dict[str, Any]:
    """The numeric bounds (gt, ge, lt, le) among a field's pydantic / annotated-types metadata."""
    out = {}
    for m in metadata:
        for k in ("gt", "ge", "lt", "le"):
            v = getattr(m, k, None)
            if v is not None:
                out[k] = v
    return out


def _number_label(kind: type, bounds: dict[str, Any]) -> str:
    """`int >= 1`, `int 1..1024`, `number in [0, 1)`, `number > 0`, or just the kind."""
    if kind is int:
        lo = bounds["ge"] if "ge" in bounds else bounds["gt"] + 1 if "gt" in bounds else None
        hi = bounds["le"] if "le" in bounds else bounds["lt"] - 1 if "lt" in bounds else None
        if lo is not None and hi is not None:
            return f"int {lo}..{hi}"
        return f"int >= {lo}" if lo is not None else f"int <= {hi}" if hi is not None else "int"
    lo = ("[", bounds["ge"]) if "ge" in bounds else ("(", bounds["gt"]) if "gt" in bounds else None
    hi = (bounds["le"], "]") if "le" in bounds else (bounds["lt"], ")") if "lt" in bounds else None
    if lo and hi:
        return f"number in {lo[0]}{lo[1]:g}, {hi[0]:g}{hi[1]}"
    if lo:
        return f"number {'>=' if lo[0] == '[' else '>'} {lo[1]:g}"
    if hi:
        return f"number {'<=' if hi[1] == ']' else '<'} {hi[0]:g}"
    return "number"


def type_label(annotation: Any, metadata: Any = ()) -> str:
    """A field's type as a person reads it in YAML: `int >= 1 or null`, `none | batch | layer`,
    `int >= 1 or epoch`, `mapping (metric, patience, min_delta)`."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        base, *meta = typing.get_args(annotation)
        return type_label(base, [*meta, *metadata])
    if origin is Literal:
        return " | ".join(_show_default(v) for v in typing.get_args(annotation))
    if origin is Union or (origin is not None and getattr(origin, "__name__", "") == "UnionType"):
        args = typing.get_args(annotation)
        parts = [type_label(a, metadata) for a in args if a is not type(None)]
        return " or ".join(parts + (["null"] if type(None) in args else []))
    if annotation is bool:
        return "true | false"
    if annotation in (int, float):
        return _number_label(annotation, _bounds(metadata))
    if annotation is str:
        return "text"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"mapping ({', '.join(annotation.model_fields)})"
    return getattr(annotation, "__name__", str(annotation))


def describe_section(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) of every key of a config section, for `dlx list`;
    a nested section (regularization.early_stopping) adds a row per key of its own."""
    rows = []
    for key, info in model.model_fields.items():
        default = "required" if info.is_required() else _show_default(info.get_default(call_default_factory=True))
        rows.append((prefix + key, type_label(info.annotation, info.metadata), default, info.description or ""))
        nested = [
            a
            for a in (info.annotation, *typing.get_args(info.annotation))
            if isinstance(a, type) and issubclass(a, Section)
        ]
        for sub in nested:
            rows.extend(describe_section(sub, f"{prefix}{key}."))
    return rows


def _name_shorthand(value: Any) -> Any:
    # `activation: relu` means `activation: {name: relu}`.
    if isinstance(value, str):
        return {"name": value}
    return value


class Registry:
    """Spec classes of one kind of component, keyed by the names the YAML uses."""

    def __init__(self, kind: str):
        self.kind = kind
        self._specs: dict[str, type[Spec]] = {}
        self._aliases: dict[str, str] = {}
        # Paragraphs `dlx list KIND` prints under the table: conventions a learner
        # would otherwise trip on (set by the module that fills the registry).
        self.notes: list[str] = []

    def register(self, name: str, *aliases: str):
        """Class decorator: make `cls` the spec for `name` (and its aliases)."""

        def deco(cls: type[Spec]) -> type[Spec]:
            if name in self._specs or name in self._aliases:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            tag = Literal[(name, *aliases)]  # type: ignore[valid-type]
            params = [f for f in cls.model_fields if f != "name"]
            # The bool check cannot use "*" here: pydantic forbids before-validators
            # on the discriminator field `name`.
            validators = (
                {"_no_bool": field_validator(*params, mode="before")(classmethod(_no_bool_for_numbers))}
                if params
                else {}
            )
            spec = create_model(
                cls.__name__,
                __base__=cls,
                __module__=cls.__module__,
                __validators__=validators,
                name=(tag, name),
            )
            spec.__doc__ = cls.__doc__
            spec.registry_name = name  # type: ignore[attr-defined]
            self._specs[name] = spec
            for a in aliases:
                self._aliases[a] = name
            return spec

        return deco

    def names(self, aliases: bool = False) -> list[str]:
        out = list(self._specs)
        return out + list(self._aliases) if aliases else out

    def aliases_of(self, name: str) -> list[str]:
        return [a for a, n in self._aliases.items() if n == name]

    def get(self, name: str) -> type[Spec]:
        name = self._aliases.get(name, name)
        return self._specs[name]

    def __contains__(self, name: str) -> bool:
        return name in self._specs or name in self._aliases

    def field_type(self) -> Any:
        """The pydantic type for a config section of this kind (str or mapping)."""
        members = tuple(self._specs.values())
        union = members[0] if len(members) == 1 else Union[members]  # type: ignore[valid-type]
        if len(members) > 1:
            union = Annotated[union, Field(discriminator="name")]
        return Annotated[union, BeforeValidator(_name_shorthand)]

    def parse(self, value: Any) -> Spec:
        """A spec from a name or a mapping (for the Python API and tests)."""
        from pydantic import TypeAdapter

        return TypeAdapter(self.field_type()).validate_python(value)

    def describe(self) -> list[tuple[str, str, str]]:
        """(name, parameters with defaults, one-line help) for `dlx list`."""
        rows = []
        for name, spec in self._specs.items():
            params = []
            for field, info in spec.model_fields.items():
                if field == "name":
                    continue
                default = (
                    "required" if info.is_required() else _show_default(info.get_default(call_default_factory=True))
                )
                params.append(f"{field}={default}")
            label = name + "".join(f" | {a}" for a in self.aliases_of(name))
            doc = (spec.__doc__ or "").strip().splitlines()
            rows.append((label, ", ".join(params), doc[0] if doc else ""))
        return rows

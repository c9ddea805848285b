"""The convolutional net: a stack of conv and pool layers, then a fully connected head.

    model:
      name: cnn
      layers: [{conv: 32, kernel: 3, padding: 1}, {pool: max, size: 2}, {conv: 64}, {pool: global_avg}]
      head: [128]

Each conv is followed by the optional norm (regularization.norm) and the
activation; pools have no parameters. The map is flattened before the head;
dropout follows each hidden head layer (or the flatten, when head is empty).
Every shape is computed from the spec alone (`layer_shapes`), so a kernel
that does not fit its input is a config problem naming the layer, found before
anything is built; the same arithmetic gives each layer's receptive field.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Annotated, Any, ClassVar, Literal, Union

import torch
from pydantic import (
    BeforeValidator,
    Field,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    model_serializer,
    model_validator,
)
from torch import nn

from dlx.components.models.base import MODELS, Model, ModelSpec
from dlx.core.errors import SpecError
from dlx.core.registry import Section, closest

POOLS = ("max", "avg", "global_avg", "global_max", "avgmax")
GLOBAL_POOLS = ("global_avg", "global_max", "avgmax")


class ConvLayer(Section):
    """{conv: OUT_CHANNELS, kernel, stride, padding, dilation, groups, bias}."""

    conv: PositiveInt = Field(..., le=65536, description="output channels")
    kernel: PositiveInt = Field(3, le=1024)
    stride: PositiveInt = Field(1, le=1024)
    padding: NonNegativeInt = Field(0, le=1024)
    dilation: PositiveInt = Field(1, le=1024)
    groups: PositiveInt = 1
    bias: bool = True


class PoolLayer(Section):
    """{pool: max|avg|global_avg|global_max|avgmax, size, stride, padding}."""

    pool: Literal["max", "avg", "global_avg", "global_max", "avgmax"]
    size: PositiveInt | None = Field(None, le=1024, description="window side (default 2; not for global pools)")
    stride: PositiveInt | None = Field(None, le=1024, description="default: size")
    padding: NonNegativeInt | None = Field(None, le=1024, description="default 0")

    @model_validator(mode="after")
    def _global_takes_no_window(self):
        if self.pool in GLOBAL_POOLS:
            given = [k for k in ("size", "stride", "padding") if getattr(self, k) is not None]
            if given:
                raise ValueError(f"a {self.pool} pool covers the whole map; remove {', '.join(given)}")
        return self

    @model_serializer(mode="wrap")
    def _without_unset_window(self, handler):
        # A run's config.yaml reads {pool: global_avg}, not size: null, stride: null, ...
        return {k: v for k, v in handler(self).items() if v is not None}

    @property
    def is_global(self) -> bool:
        return self.pool in GLOBAL_POOLS

    @property
    def window(self) -> tuple[int, int, int]:
        """(size, stride, padding) of a windowed pool, defaults filled in."""
        size = self.size or 2
        return size, self.stride or size, self.padding or 0


def _validate_layer(cls: type, value: dict) -> Any:
    """A layer spec of class `cls`; every mistake in it reported at its own key.

    Unknown keys get the nearest valid one (config.py's hint cannot look inside a list)."""
    own = [k for k in cls.model_fields]
    other = PoolLayer if cls is ConvLayer else ConvLayer
    kind, other_kind = ("conv", "pool") if cls is ConvLayer else ("pool", "conv")
    details = []
    for key in [k for k in value if k not in own]:
        if key in other.model_fields:
            msg = f"'{key}' is a {other_kind} layer key; a {kind} layer takes {', '.join(own)}"
        else:
            hint = closest(str(key), own)
            msg = (
                f"unknown key '{key}'"
                + (f"; did you mean '{hint}'?" if hint else "")
                + f" (valid in a {kind} layer: {', '.join(own)})"
            )
        details.append({"type": "value_error", "loc": (key,), "input": value[key], "ctx": {"error": ValueError(msg)}})
    spec = None
    try:
        spec = cls.model_validate({k: v for k, v in value.items() if k in own})
    except ValidationError as e:
        details += [
            {
                "type": err["type"],
                "loc": err["loc"],
                "input": err["input"],
                **({"ctx": err["ctx"]} if "ctx" in err else {}),
            }
            for err in e.errors(include_url=False)
        ]
    if details:
        # Raised from a validator, a ValidationError's errors keep their locations
        # (prefixed with the layer's), unlike a ValueError's single message.
        raise ValidationError.from_exception_data(cls.__name__, details)
    return spec


def _layer_kind(value: Any) -> Any:
    # The key a layer starts with picks its spec, so a mistake is reported at that
    # layer's own keys (layers.2.kernal), not once per possible kind.
    if isinstance(value, dict):
        has_conv, has_pool = "conv" in value, "pool" in value
        if has_conv and has_pool:
            raise ValueError("a layer is either a conv or a pool, not both; split it into two layers")
        if has_conv:
            return _validate_layer(ConvLayer, value)
        if has_pool:
            return _validate_layer(PoolLayer, value)
    if isinstance(value, (ConvLayer, PoolLayer)):
        return value
    raise ValueError(
        "a layer needs a conv: CHANNELS or a pool: KIND key, e.g. {conv: 32, kernel: 3} "
        f"or {{pool: max, size: 2}} (pool kinds: {', '.join(POOLS)}); got {value!r}"
    )


Layer = Annotated[Union[ConvLayer, PoolLayer], BeforeValidator(_layer_kind)]


def layer_names(layers: list) -> list[str]:
    """conv1, pool1, conv2, ...: each layer numbered within its kind."""
    counts = {"conv": 0, "pool": 0}
    names = []
    for spec in layers:
        kind = "conv" if isinstance(spec, ConvLayer) else "pool"
        counts[kind] += 1
        names.append(f"{kind}{counts[kind]}")
    return names


def _out_side(side: int, k_eff: int, stride: int, padding: int) -> int:
    # PyTorch's floor rule for conv and (ceil_mode=False) pooling.
    return (side + 2 * padding - k_eff) // stride + 1


def layer_shapes(
    layers: list, in_shape: tuple[int, int, int]
) -> tuple[list[tuple[int, int, int]], list[tuple[int, str]]]:
    """Each layer's output (C, H, W) from the spec alone, and problems (layer index, message).

    Stops at the first layer whose output would be empty (its successors have no shape)."""
    shapes: list[tuple[int, int, int]] = []
    problems: list[tuple[int, str]] = []
    c, h, w = in_shape
    for i, (name, spec) in enumerate(zip(layer_names(layers), layers)):
        here = f"input ({c}, {h}, {w})"
        if isinstance(spec, ConvLayer):
            for what, n in (("input", c), ("output", spec.conv)):
                if n % spec.groups:
                    problems.append(
                        (
                            i,
                            f"{name}: groups {spec.groups} does not divide its {n} {what} channels "
                            f"({here}); use a divisor of {n}",
                        )
                    )
            k_eff = spec.dilation * (spec.kernel - 1) + 1
            ph, pw = h + 2 * spec.padding, w + 2 * spec.padding
            if k_eff > ph or k_eff > pw:
                kern = f"kernel {spec.kernel}" + (
                    f" with dilation {spec.dilation} (spans {k_eff})" if spec.dilation > 1 else ""
                )
                problems.append(
                    (
                        i,
                        f"{name}: {kern} is larger than its padded input {ph}x{pw} "
                        f"({here}, padding {spec.padding}); the output would be empty. "
                        f"Use a smaller kernel, more padding, or less pooling before it",
                    )
                )
                return shapes, problems
            c, h, w = (
                spec.conv,
                _out_side(h, k_eff, spec.stride, spec.padding),
                _out_side(w, k_eff, spec.stride, spec.padding),
            )
        elif spec.is_global:
            c, h, w = (2 * c if spec.pool == "avgmax" else c), 1, 1
        else:
            size, stride, pad = spec.window
            if 2 * pad > size:
                problems.append(
                    (
                        i,
                        f"{name}: padding {pad} is more than half the pool size {size} "
                        f"(PyTorch's limit); use padding <= {size // 2}",
                    )
                )
                return shapes, problems
            oh, ow = _out_side(h, size, stride, pad), _out_side(w, size, stride, pad)
            if oh < 1 or ow < 1:
                problems.append(
                    (
                        i,
                        f"{name}: {spec.pool} pool of size {size} (stride {stride}, padding {pad}) "
                        f"on a {h}x{w} map ({here}) gives an empty {max(oh, 0)}x{max(ow, 0)} map; "
                        f"remove it or use a smaller size",
                    )
                )
                return shapes, problems
            h, w = oh, ow
        shapes.append((c, h, w))
    return shapes, problems


def receptive_fields(layers: list, input_size: tuple[int, int] | None = None) -> list[tuple[int | None, int]]:
    """(receptive field, jump) after each layer, along one side of the input.

    rf_out = rf_in + (k_eff - 1) * jump_in with k_eff = dilation * (k - 1) + 1, and
    jump_out = jump_in * stride. A global pool's output depends on every input pixel:
    its rf is the input's (larger) side, which needs input_size (without it, None),
    and so is every later layer's (one 1x1 map: nothing more to see); its jump spans
    the whole map it pools. (The formula's rf of a conv can exceed the input, counting
    padding; a global pool's is never more than the pixels there are: taking the
    larger of the two, as before, reported 31 for a 28x28 input.)
    """
    rf: int | None = 1
    jump = 1
    full = max(input_size) if input_size else None
    side = full
    out: list[tuple[int | None, int]] = []
    pooled = False  # after a global pool every unit sees the whole input
    for spec in layers:
        if isinstance(spec, ConvLayer):
            k_eff, stride, pad = spec.dilation * (spec.kernel - 1) + 1, spec.stride, spec.padding
        elif spec.is_global:
            jump *= side or 1
            rf, pooled = full, True
            side = 1 if side is not None else None
            out.append((rf, jump))
            continue
        else:
            k_eff, stride, pad = spec.window
        if rf is not None and not pooled:
            rf += (k_eff - 1) * jump
        jump *= stride
        if side is not None:
            side = max(_out_side(side, k_eff, stride, pad), 1)
        out.append((rf, jump))
    return out


class AvgMaxPool(nn.Module):
    """Global average and global max pooling side by side: 2C channels of 1x1."""

    def forward(self, x):
        return torch.cat([x.mean((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)], dim=1)


def _pool_module(spec: PoolLayer) -> nn.Module:
    if spec.pool == "global_avg":
        return nn.AdaptiveAvgPool2d(1)
    if spec.pool == "global_max":
        return nn.AdaptiveMaxPool2d(1)
    if spec.pool == "avgmax":
        return AvgMaxPool()
    size, stride, pad = spec.window
    if spec.pool == "max":
        return nn.MaxPool2d(size, stride, pad)
    return nn.AvgPool2d(size, stride, pad)


class CNN(Model):
    def __init__(
        self,
        in_shape: tuple[int, int, int],
        out_dim: int,
        layers: list,
        head: list[int],
        activation,
        norm: str,
        dropout: float,
    ):
        super().__init__()
        shapes, _ = layer_shapes(layers, in_shape)
        mods: OrderedDict[str, nn.Module] = OrderedDict()
        n_act = 0
        c = in_shape[0]
        for name, spec, (c_out, _, _) in zip(layer_names(layers), layers, shapes):
            if isinstance(spec, PoolLayer):
                mods[name] = _pool_module(spec)
                continue
            i = name[len("conv") :]
            mods[name] = nn.Conv2d(
                c, c_out, spec.kernel, spec.stride, spec.padding, spec.dilation, spec.groups, spec.bias
            )
            if norm == "batch":
                mods[f"bn{i}"] = nn.BatchNorm2d(c_out)
            elif norm == "layer":
                # Normalises each sample over all channels and positions, like LayerNorm.
                mods[f"ln{i}"] = nn.GroupNorm(1, c_out)
            n_act += 1
            mods[f"act{n_act}"] = activation.build(c_out)
            c = c_out
        mods["flatten"] = nn.Flatten()
        d = _flat_size(shapes[-1] if shapes else in_shape)
        n_drop = 0
        if dropout and not head:
            n_drop += 1
            mods[f"drop{n_drop}"] = nn.Dropout(dropout)
        for j, width in enumerate(head, start=1):
            mods[f"fc{j}"] = nn.Linear(d, width)
            n_act += 1
            mods[f"act{n_act}"] = activation.build(width)
            if dropout:
                n_drop += 1
                mods[f"drop{n_drop}"] = nn.Dropout(dropout)
            d = width
        mods["out"] = nn.Linear(d, out_dim)
        # Registered directly on the model so parameter names read conv1.weight, out.bias.
        for name, module in mods.items():
            self.add_module(name, module)
        self._extra = {}
        side = (in_shape[1], in_shape[2])
        for name, (rf, jump) in zip(layer_names(layers), receptive_fields(layers, side)):
            self._extra[name] = {"rf": rf, "stride": jump}

    def forward(self, x):
        for module in self.children():
            x = module(x)
        return x

    def init_targets(self):
        return [(n, m) for n, m in self.named_children() if isinstance(m, (nn.Conv2d, nn.Linear))]

    def activation_modules(self):
        return [(n, m) for n, m in self.named_children() if n.startswith("act")]

    def summary_extra(self):
        return {k: dict(v) for k, v in self._extra.items()}


def _flat_size(shape) -> int:
    c, h, w = shape
    return c * h * w


def image_shape_problem(feature_shape: tuple[int, ...], cfg, model: str) -> str | None:
    """Why a model that needs images (C, H, W) cannot take this input, or None."""
    if len(feature_shape) == 3:
        return None
    if len(feature_shape) == 1:
        hint = (
            "set data.flatten: false"
            if "flatten" in type(cfg.data).model_fields
            else "give the data as images (N, C, H, W)"
        )
        return (
            f"{model} needs image input (C, H, W), but data '{cfg.data.name}' gives flat vectors "
            f"of shape {tuple(feature_shape)}; {hint}"
        )
    return (
        f"{model} needs image input (C, H, W), but data '{cfg.data.name}' gives samples of shape "
        f"{tuple(feature_shape)}"
        + ("; add a channel axis: x[:, None] for (N, 1, H, W)" if len(feature_shape) == 2 else "")
    )


@MODELS.register("cnn")
class CNNSpec(ModelSpec):
    """Conv and pool layers ({conv: C, kernel: 3, ...} or {pool: max, size: 2}), then a fully connected head."""

    accepts: ClassVar[str] = "image"
    # Norm after each conv; dropout after the flatten or each hidden head layer.
    honours: ClassVar[frozenset[str]] = frozenset({"regularization.dropout", "regularization.norm"})
    instead: ClassVar[dict[str, str]] = {"regularization.dropconnect": "for cnn use regularization.dropout"}
    layers: list[Layer] = Field(..., min_length=1, max_length=1000)
    # Widths bounded like an mlp's (unbounded, head: [1e12] reached torch's allocator).
    head: list[Annotated[int, Field(ge=1, le=1_000_000)]] = Field(
        default_factory=list, description="hidden fc widths before out"
    )

    def unhonoured(self):
        if any(isinstance(spec, ConvLayer) for spec in self.layers):
            return {}
        return {
            "regularization.norm": "norm follows each conv layer and these layers are all pools; "
            "add a conv layer or remove it"
        }

    def check(self, feature_shape, cfg):
        bad_input = image_shape_problem(feature_shape, cfg, "cnn")
        if bad_input:
            return [(("model",), bad_input)]
        _, found = layer_shapes(self.layers, tuple(feature_shape))
        return [(("model", "layers", i), msg) for i, msg in found]

    def build(self, data, cfg):
        problems = self.check(data.feature_shape, cfg)
        if problems:
            raise SpecError(*problems[0])
        reg = cfg.regularization
        return CNN(
            tuple(data.feature_shape),
            data.out_dim,
            list(self.layers),
            list(self.head),
            cfg.activation,
            reg.norm,
            reg.dropout,
        )

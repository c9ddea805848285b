"""The multilayer perceptron: Linear -> [norm] -> activation -> [dropout], repeated."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Annotated, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt, model_validator
from torch import nn

from dlx.components.models.base import MAX_PARAMETERS, MODELS, Model, ModelSpec

DEFAULT_DEPTH, DEFAULT_WIDTH = 2, 64


class DropConnectLinear(nn.Linear):
    """Linear whose weights (not outputs) are dropped with probability p while training."""

    def __init__(self, in_features: int, out_features: int, p: float):
        super().__init__(in_features, out_features)
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0:
            return super().forward(x)
        # Inverted scaling, as for dropout: the expected weight is unchanged.
        mask = torch.empty_like(self.weight).bernoulli_(1.0 - self.p)
        return F.linear(x, self.weight * mask / (1.0 - self.p), self.bias)


class MLP(Model):
    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        widths: list[int],
        activation,
        norm: str,
        dropout: float,
        dropconnect: float,
        output_activation: str,
    ):
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        d = in_dim
        for i, w in enumerate(widths, start=1):
            layers[f"fc{i}"] = DropConnectLinear(d, w, dropconnect) if dropconnect else nn.Linear(d, w)
            if norm == "batch":
                layers[f"bn{i}"] = nn.BatchNorm1d(w)
            elif norm == "layer":
                layers[f"ln{i}"] = nn.LayerNorm(w)
            layers[f"act{i}"] = activation.build(w)
            if dropout:
                layers[f"drop{i}"] = nn.Dropout(dropout)
            d = w
        layers["out"] = nn.Linear(d, out_dim)
        if output_activation == "sigmoid":
            layers["out_act"] = nn.Sigmoid()
        # Registered directly on the model so parameter names read fc1.weight, out.bias.
        for name, module in layers.items():
            self.add_module(name, module)
        self.n_hidden = len(widths)

    def forward(self, x):
        x = x.flatten(1)
        for module in self.children():
            x = module(x)
        return x

    def init_targets(self):
        return [(n, m) for n, m in self.named_children() if isinstance(m, nn.Linear)]

    def activation_modules(self):
        return [(f"act{i}", self.get_submodule(f"act{i}")) for i in range(1, self.n_hidden + 1)]


@MODELS.register("mlp")
class MLPSpec(ModelSpec):
    """Fully connected net: `depth` hidden layers of `width` units, or explicit `widths`."""

    honours: ClassVar[frozenset[str]] = frozenset(
        {"regularization.dropout", "regularization.dropconnect", "regularization.norm"}
    )
    depth: int | None = Field(None, ge=0, le=1000)
    width: PositiveInt | None = Field(None, le=1_000_000)
    # Each width bounded like `width` (unbounded, widths: [1e12] reached torch's allocator).
    widths: list[Annotated[int, Field(ge=1, le=1_000_000)]] | None = None
    output_activation: str = Field("none", pattern="^(none|sigmoid)$")

    @model_validator(mode="after")
    def _one_shape(self):
        if self.widths is not None and (self.depth is not None or self.width is not None):
            raise ValueError("give either widths: [...] or depth and width, not both")
        return self

    def hidden_widths(self) -> list[int]:
        if self.widths is not None:
            return list(self.widths)
        depth = DEFAULT_DEPTH if self.depth is None else self.depth
        return [self.width or DEFAULT_WIDTH] * depth

    def unhonoured(self):
        if self.hidden_widths():
            return {}
        # Dropout, dropconnect and norm act on hidden layers only; `out` stays plain.
        why = "it acts on hidden layers only and this mlp has none; give it a hidden layer or remove it"
        return dict.fromkeys(self.honours, why)

    def check(self, feature_shape, cfg):
        # Widths within their bounds can still multiply past memory (width: 1000000 is 10^12
        # weights per layer): say so before torch's allocator fails with a traceback.
        fan_in, n = math.prod(feature_shape), 0
        for w in self.hidden_widths():
            n, fan_in = n + (fan_in + 1) * w, w
        if n > MAX_PARAMETERS:
            return [
                (
                    ("model",),
                    f"{n:,} weights in the hidden layers, more than the {MAX_PARAMETERS:,} "
                    f"dlx builds; use smaller widths or fewer layers",
                )
            ]
        return []

    def build(self, data, cfg):
        reg = cfg.regularization
        return MLP(
            data.in_dim,
            data.out_dim,
            self.hidden_widths(),
            cfg.activation,
            reg.norm,
            reg.dropout,
            reg.dropconnect,
            self.output_activation,
        )

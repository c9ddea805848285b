"""The multilayer perceptron: Linear -> [norm] -> activation -> [dropout], repeated."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Annotated, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt, model_validator
from torch import nn

from dlx.components.models.base import MAX_PARAMETERS, MODELS, Model, ModelSpec

DEFAULT_DEPTH, DEFAULT_WIDTH = 2, 64

# μP (Yang & Hu; Tensor Programs V, Yang et al. 2022, table 3, "μP for Adam", up to constants):
#                  input weights & all biases | hidden weights | output weights
#   init variance        1/fan_in             |    1/fan_in    |   1/fan_in^2
#   Adam lr                 1                 |    1/fan_in    |   1/fan_in
# With a base width b the constants are fixed so that at fan_in = b μP is the run's own
# standard parametrisation: the init scheme (variance c/fan_in) draws every layer, then the
# output weights are multiplied by sqrt(b/fan_in) (variance c*b/fan_in^2), and the hidden and
# output weights' lr is optimizer.lr * b/fan_in. The table for SGD differs (input lr ∝ fan_out,
# hidden 1): only the Adam family is supported, and the init must be one of variance ∝ 1/fan_in.
MUP_OPTIMIZERS = ("adam", "adamw")
MUP_INITS = ("default", "lecun_normal", "kaiming_normal", "he_normal", "kaiming_uniform", "he_uniform")

# Printed under the table by `dlx list model`.
MODELS.notes.append(
    "mlp's parametrization: sp (default) trains the init and lr as given; mup is μP for Adam "
    "(Tensor Programs V, table 3): the init scheme draws every layer, the output weights are then "
    "multiplied by sqrt(base_width/width), and the hidden and output weights step at "
    "lr*base_width/fan_in (input weights and biases at lr); base_width (default 64) is where mup "
    "equals sp. It needs adam or adamw and an init of variance ∝ 1/fan_in. "
    "`dlx coordcheck CONFIG --widths 64,128,256,512` shows each layer's output scale against width."
)


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
        mup_base: int | None = None,
    ):
        super().__init__()
        self.mup_base = mup_base  # μP's base width; None: standard parametrisation
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

    def lr_scales(self):
        if self.mup_base is None:
            return {}
        # Table 3's Adam lr: b/fan_in for every weight matrix after the first (input weights
        # and biases keep optimizer.lr); an mlp with no hidden layer has only input weights.
        linears = self.init_targets()[1:]
        return {f"{n}.weight": self.mup_base / m.in_features for n, m in linears}

    @torch.no_grad()
    def after_init(self):
        if self.mup_base is None or self.n_hidden == 0:
            return
        # Output variance c/fan_in -> c*b/fan_in^2 (table 3); the bias keeps the scheme's.
        self.out.weight.mul_(math.sqrt(self.mup_base / self.out.in_features))


@MODELS.register("mlp")
class MLPSpec(ModelSpec):
    """Fully connected net: `depth` hidden layers of `width` units, or explicit `widths`; mup: μP."""

    honours: ClassVar[frozenset[str]] = frozenset(
        {"regularization.dropout", "regularization.dropconnect", "regularization.norm"}
    )
    depth: int | None = Field(None, ge=0, le=1000)
    width: PositiveInt | None = Field(None, le=1_000_000)
    # Each width bounded like `width` (unbounded, widths: [1e12] reached torch's allocator).
    widths: list[Annotated[int, Field(ge=1, le=1_000_000)]] | None = None
    output_activation: str = Field("none", pattern="^(none|sigmoid)$")
    parametrization: Literal["sp", "mup"] = Field(
        "sp",
        description="sp: the init and lr as given; mup: maximal update (Yang & Hu; TP5 table 3, "
        "Adam): output weights' variance and hidden/output lr scaled by base_width/width",
    )
    base_width: PositiveInt | None = Field(
        None, le=1_000_000, description=f"mup: the width where mup equals sp (default {DEFAULT_WIDTH})"
    )

    @model_validator(mode="after")
    def _one_shape(self):
        if self.widths is not None and (self.depth is not None or self.width is not None):
            raise ValueError("give either widths: [...] or depth and width, not both")
        if self.base_width is not None and self.parametrization != "mup":
            raise ValueError(
                "base_width applies under parametrization: mup only; remove it or set parametrization: mup"
            )
        return self

    def mup_base(self) -> int | None:
        """μP's base width, or None under the standard parametrisation."""
        return (self.base_width or DEFAULT_WIDTH) if self.parametrization == "mup" else None

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

    def conflicts(self, cfg):
        # What μP, as implemented (table 3, for Adam), cannot honour in this config.
        out = []
        if self.parametrization != "mup":
            return out
        if cfg.optimizer.name not in MUP_OPTIMIZERS:
            out.append(
                (
                    ("optimizer", "name"),
                    f"parametrization: mup is implemented for {' and '.join(MUP_OPTIMIZERS)} "
                    f"(μP's per-layer lr differs for {cfg.optimizer.name}); use adam or parametrization: sp",
                )
            )
        init = cfg.init
        if init.name not in MUP_INITS or getattr(init, "mode", "fan_in") != "fan_in":
            out.append(
                (
                    ("init",),
                    f"parametrization: mup needs an init of variance ∝ 1/fan_in ({', '.join(MUP_INITS)}, "
                    f"mode fan_in); {init.name} is not one",
                )
            )
        return out

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
            self.mup_base(),
        )

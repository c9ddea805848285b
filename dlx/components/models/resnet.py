"""The residual net: blocks of two layers with a skip connection that can be switched off.

    model: {name: resnet, kind: mlp, blocks: 8, width: 64, residual: true}

kind mlp: stem Linear(in, width), act; each block h -> act(h + fc_b(act(fc_a(h))));
then out. kind conv (images): stem 3x3 conv to `width` channels, act; blocks of
two 3x3 convs (padding 1, so the map keeps its size); global average pool; out.
With residual: false the `+ h` is dropped and the same layers form a plain deep
net, so the two train side by side with only the skip differing. Norm
(regularization.norm) goes after fc_a/conv_a and fc_b/conv_b, before the add.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, PositiveInt
from torch import nn

from dlx.components.models.base import MODELS, Model, ModelSpec
from dlx.components.models.cnn import image_shape_problem
from dlx.core.errors import SpecError


class Block(nn.Module):
    """Two weight layers and, when residual, the identity added before the last activation."""

    def __init__(self, kind: str, width: int, activation, norm: str, residual: bool):
        super().__init__()
        self.residual = residual
        for part in ("a", "b"):
            if kind == "mlp":
                self.add_module(f"fc_{part}", nn.Linear(width, width))
            else:
                self.add_module(f"conv_{part}", nn.Conv2d(width, width, 3, padding=1))
            if norm == "batch":
                self.add_module(f"bn_{part}", nn.BatchNorm1d(width) if kind == "mlp" else nn.BatchNorm2d(width))
            elif norm == "layer":
                # GroupNorm(1, C): one mean/std per sample over channels and positions.
                self.add_module(f"ln_{part}", nn.LayerNorm(width) if kind == "mlp" else nn.GroupNorm(1, width))
            self.add_module(f"act_{part}", activation.build(width))
        self._a = [m for n, m in self.named_children() if n.endswith("_a")]
        self._b = [m for n, m in self.named_children() if n.endswith("_b") and not n.startswith("act")]

    def forward(self, x):
        h = x
        for m in self._a:
            h = m(h)
        for m in self._b:
            h = m(h)
        return self.act_b(x + h if self.residual else h)


class ResNet(Model):
    def __init__(
        self,
        kind: str,
        in_shape: tuple[int, ...],
        out_dim: int,
        blocks: int,
        width: int,
        activation,
        norm: str,
        dropout: float,
        residual: bool,
    ):
        super().__init__()
        self.kind = kind
        if kind == "mlp":
            self.stem = nn.Linear(int(_prod(in_shape)), width)
        else:
            self.stem = nn.Conv2d(in_shape[0], width, 3, padding=1)
        self.stem_act = activation.build(width)
        for i in range(1, blocks + 1):
            self.add_module(f"block{i}", Block(kind, width, activation, norm, residual))
        self.n_blocks = blocks
        if kind == "conv":
            self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        if dropout:
            self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(width, out_dim)

    def forward(self, x):
        if self.kind == "mlp":
            x = x.flatten(1)
        for module in self.children():
            x = module(x)
        return x

    def _weight_layers(self):
        w = "fc" if self.kind == "mlp" else "conv"
        yield "stem", self.stem
        for i in range(1, self.n_blocks + 1):
            block = self.get_submodule(f"block{i}")
            yield f"block{i}.{w}_a", block.get_submodule(f"{w}_a")
            yield f"block{i}.{w}_b", block.get_submodule(f"{w}_b")
        yield "out", self.out

    def init_targets(self):
        return list(self._weight_layers())

    def activation_modules(self):
        acts = [("stem_act", self.stem_act)]
        for i in range(1, self.n_blocks + 1):
            block = self.get_submodule(f"block{i}")
            acts += [(f"block{i}.act_a", block.act_a), (f"block{i}.act_b", block.act_b)]
        return acts


def _prod(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


@MODELS.register("resnet")
class ResNetSpec(ModelSpec):
    """`blocks` residual blocks of two layers (kind mlp: Linear; kind conv: 3x3 conv); residual: false drops the skips."""

    accepts: ClassVar[str] = "any"  # kind conv needs images; checked in check()
    # Norm inside each block; dropout before `out`.
    honours: ClassVar[frozenset[str]] = frozenset({"regularization.dropout", "regularization.norm"})
    instead: ClassVar[dict[str, str]] = {"regularization.dropconnect": "for resnet use regularization.dropout"}
    kind: Literal["mlp", "conv"] = "mlp"
    blocks: int = Field(8, ge=0, le=1000)
    width: PositiveInt = Field(64, le=65536)
    residual: bool = True

    def unhonoured(self):
        if self.blocks:
            return {}
        return {"regularization.norm": "norm sits inside the blocks and blocks is 0; use blocks >= 1 or remove it"}

    def check(self, feature_shape, cfg):
        problems = []
        if self.kind == "conv":
            bad = image_shape_problem(feature_shape, cfg, "resnet kind conv")
            if bad:
                problems.append((("model", "kind"), bad + " (or use kind: mlp)"))
        return problems

    def build(self, data, cfg):
        problems = self.check(data.feature_shape, cfg)
        if problems:
            raise SpecError(*problems[0])
        reg = cfg.regularization
        return ResNet(
            self.kind,
            tuple(data.feature_shape),
            data.out_dim,
            self.blocks,
            self.width,
            cfg.activation,
            reg.norm,
            reg.dropout,
            self.residual,
        )

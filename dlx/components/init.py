"""Weight initialisation schemes, keyed by the names `init:` takes in the YAML.

A scheme sets every weight matrix the model lists in `init_targets()` (its
Linear/Conv layers); biases are set to `bias` (zeros unless given), except for
`default`, which keeps PyTorch's own initialisation unless a bias is given. Every scheme
takes `scale` (alpha): the weights it draws, multiplied by alpha (Chizat et al.'s lazy
regime at large alpha; Liu et al.'s Omnigrok grokks at large alpha); the biases are left to
`bias`, which already says their value.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import nn

from dlx.core.errors import DamagedFile, SpecError
from dlx.core.paths import StartFile
from dlx.core.registry import Registry, Spec
from dlx.core.tensorfile import read_tensors

INITS = Registry("init")
# Init values past this size are mistakes (float32 weights overflow to inf at 3.4e38; the
# init check squares them): refused in the config instead of failing mid-check.
BIG = 1e30
PATH = ("init", "path")  # where from_file problems are reported


class InitSpec(Spec):
    bias: float | None = Field(0.0, ge=-BIG, le=BIG)
    scale: float = Field(
        1.0,
        gt=0,
        le=BIG,
        description="alpha: the scheme's weights multiplied by it (biases not: bias sets them); "
        "1 is the scheme as published",
    )
    seed: int | None = Field(
        None,
        ge=0,
        le=2**32 - 1,
        description="the weights drawn from this seed of their own, the data and its order still from "
        "the run's seed (a lottery ticket's random re-init); null: from the run's seed",
    )

    def init_weight(self, w: torch.Tensor) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def scale_weights(self, model: nn.Module) -> None:
        """Every target layer's weights times alpha (init.scale); the biases are bias's."""
        if self.scale == 1.0:  # alpha 1 skips the multiply: bit-identical to the scheme
            return
        from dlx.components.models.base import layer_weights

        for _, layer in model.init_targets():
            for w in layer_weights(layer):
                w.mul_(self.scale)

    @torch.no_grad()
    def init_model(self, model: nn.Module) -> None:
        """Initialise every target layer of `model` in place."""
        from dlx.components.models.base import layer_biases, layer_weights

        for _, layer in model.init_targets():
            for w in layer_weights(layer):
                self.init_weight(w)
            if self.bias is not None:
                for b in layer_biases(layer):
                    b.fill_(self.bias)
        self.scale_weights(model)
        after = getattr(model, "after_init", None)  # a plain nn.Module (a pretrain stage) has none
        if after is not None:
            after()


@INITS.register("default")
class Default(InitSpec):
    """PyTorch's own: kaiming_uniform(a=sqrt(5)) weights, uniform(+-1/sqrt(fan_in)) biases."""

    bias: float | None = Field(None, ge=-BIG, le=BIG)

    def init_weight(self, w):
        pass  # the layer's reset_parameters() already ran at construction


@INITS.register("zeros")
class Zeros(InitSpec):
    """All weights 0: every unit of a layer computes the same thing, forever."""

    def init_weight(self, w):
        nn.init.zeros_(w)


@INITS.register("constant")
class Constant(InitSpec):
    """All weights one value: the same symmetry as zeros, with signal flowing."""

    value: float = Field(0.1, ge=-BIG, le=BIG)

    def init_weight(self, w):
        nn.init.constant_(w, self.value)


@INITS.register("normal")
class Normal(InitSpec):
    """N(mean, std^2) regardless of layer size: std 1 explodes or saturates deep nets."""

    mean: float = Field(0.0, ge=-BIG, le=BIG)
    std: float = Field(0.01, gt=0, le=BIG)

    def init_weight(self, w):
        nn.init.normal_(w, self.mean, self.std)


@INITS.register("uniform")
class Uniform(InitSpec):
    """U(low, high) regardless of layer size."""

    low: float = Field(-0.05, ge=-BIG, le=BIG)
    high: float = Field(0.05, ge=-BIG, le=BIG)

    def init_weight(self, w):
        nn.init.uniform_(w, self.low, self.high)

    @field_validator("high")
    @classmethod
    def _high_above_low(cls, high, info):
        low = info.data.get("low")
        if low is not None and high <= low:
            raise ValueError(f"must be greater than low ({low})")
        return high


@INITS.register("xavier_uniform", "glorot_uniform")
class XavierUniform(InitSpec):
    """U(+-gain*sqrt(6/(fan_in+fan_out))): keeps variance for tanh-like units (Glorot 2010)."""

    gain: float = Field(1.0, gt=0, le=BIG)

    def init_weight(self, w):
        nn.init.xavier_uniform_(w, self.gain)


@INITS.register("xavier_normal", "glorot_normal")
class XavierNormal(InitSpec):
    """N(0, gain^2 * 2/(fan_in+fan_out))."""

    gain: float = Field(1.0, gt=0, le=BIG)

    def init_weight(self, w):
        nn.init.xavier_normal_(w, self.gain)


class _Kaiming(InitSpec):
    mode: str = Field("fan_in", pattern="^(fan_in|fan_out)$")
    nonlinearity: str = Field("relu", pattern="^(relu|leaky_relu|linear|tanh|sigmoid|selu)$")
    a: float = Field(0.0, ge=0, le=BIG, description="negative slope, for leaky_relu")


@INITS.register("kaiming_uniform", "he_uniform")
class KaimingUniform(_Kaiming):
    """U(+-sqrt(6/fan_in)) for ReLU: keeps activation variance through depth (He 2015)."""

    def init_weight(self, w):
        nn.init.kaiming_uniform_(w, a=self.a, mode=self.mode, nonlinearity=self.nonlinearity)


@INITS.register("kaiming_normal", "he_normal")
class KaimingNormal(_Kaiming):
    """N(0, 2/fan_in) for ReLU (He 2015)."""

    def init_weight(self, w):
        nn.init.kaiming_normal_(w, a=self.a, mode=self.mode, nonlinearity=self.nonlinearity)


@INITS.register("lecun_normal")
class LecunNormal(InitSpec):
    """N(0, 1/fan_in): the variance-preserving init for SELU."""

    def init_weight(self, w):
        fan_in = w[0].numel()
        nn.init.normal_(w, 0.0, 1.0 / math.sqrt(fan_in))


@INITS.register("orthogonal")
class Orthogonal(InitSpec):
    """A (scaled) orthogonal matrix: all singular values equal to gain."""

    gain: float = Field(1.0, gt=0, le=BIG)

    def init_weight(self, w):
        nn.init.orthogonal_(w, self.gain)


@INITS.register("from_file")
class FromFile(InitSpec):
    """Parameters from a .pt or .npz state dict keyed by the names `dlx train` prints."""

    path: StartFile  # not needed to --resume the run: its checkpoint holds the weights
    strict: bool = True  # every parameter must be in the file, and nothing else
    bias: float | None = Field(None, ge=-BIG, le=BIG)  # None: biases come from the file

    @field_validator("path")
    @classmethod
    def _suffix(cls, path: Path):
        if path.suffix not in (".pt", ".pth", ".npz"):
            raise ValueError(f"{path} is neither .pt nor .npz; save a state dict with torch.save or numpy.savez")
        return path

    @torch.no_grad()
    def init_model(self, model: nn.Module) -> None:
        state = load_state_file(self.path)
        own = model.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        wrong = [
            f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
            for k in own
            if k in state and tuple(state[k].shape) != tuple(own[k].shape)
        ]
        if wrong or (self.strict and (missing or unexpected)):
            lines = [f"{self.path} does not fit the model"]
            if missing:
                lines.append("  missing: " + ", ".join(missing))
            if unexpected:
                lines.append("  not in the model: " + ", ".join(unexpected))
            lines += [f"  shape {w}" for w in wrong]
            lines.append(f"  the model's parameters: {', '.join(f'{k} {tuple(v.shape)}' for k, v in own.items())}")
            if not wrong:
                lines.append("  set init.strict: false to load the parameters that match")
            raise SpecError(PATH, "\n".join(lines))
        for k, v in state.items():
            if k in own:
                own[k].copy_(v.to(own[k].dtype))
        self.scale_weights(model)  # the file's weights times alpha, as a drawn scheme's would be


@contextlib.contextmanager
def drawn_from(seed: int | None):
    """Around the model's construction and init: with init.seed, their draws come from a CPU
    stream of that seed, and the run's stream is left as it was (the models are built on the
    CPU; the CUDA streams are not touched). None: nothing changes, bit for bit."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


def load_state_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from .npz, a torch state dict, or a dlx checkpoint (its 'model')."""
    try:
        if path.suffix == ".npz":
            with np.load(path) as z:
                return {k: torch.from_numpy(np.array(z[k])) for k in z.files}
        obj = read_tensors(path)
    except DamagedFile as e:  # torch's own text would advise weights_only=False: never
        raise SpecError(PATH, str(e)) from None
    except Exception as e:  # a corrupt or foreign .npz: say which and why
        raise SpecError(PATH, f"cannot read {path}: {e}") from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise SpecError(PATH, f"{path} holds no state dict (a mapping of names to tensors)")
    return obj

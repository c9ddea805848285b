"""Activation functions, keyed by the names `activation:` takes in the YAML.

Class attributes are the function's facts, read by the probes, the diagnosis and
the init check (not kept in lists of names there): `bounds` for functions that
saturate (the fraction of outputs within SATURATION_MARGIN of a bound is
logged); `off_below` for the ReLU family, the output at or below which a unit is
on its flat or negative side; `units_can_die` where that side passes no gradient
at all (relu: a unit off for every input never learns again, "dead"). A leaky
unit off for a whole batch still learns at its slope: it is logged as
"negative", never as dead.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from torch import nn

from dlx.core.registry import Registry, Spec

ACTIVATIONS = Registry("activation")


class ActivationSpec(Spec):
    bounds: ClassVar[tuple[float, float] | None] = None
    off_below: ClassVar[float | None] = None  # ReLU family: output <= this is "off"
    # The off side's derivative is exactly 0: a unit off for every input gets no gradient (dead).
    units_can_die: ClassVar[bool] = False

    def build(self, width: int) -> nn.Module:
        """The module for a layer of `width` units."""
        raise NotImplementedError


@ACTIVATIONS.register("identity", "linear")
class Identity(ActivationSpec):
    """No nonlinearity: a deep net collapses to one linear map."""

    def build(self, width):
        return nn.Identity()


@ACTIVATIONS.register("sigmoid")
class Sigmoid(ActivationSpec):
    """1/(1+e^-x); derivative at most 0.25, the classic cause of vanishing gradients."""

    bounds = (0.0, 1.0)

    def build(self, width):
        return nn.Sigmoid()


@ACTIVATIONS.register("tanh")
class Tanh(ActivationSpec):
    """Zero-centred, derivative at most 1; saturates at +-1."""

    bounds = (-1.0, 1.0)

    def build(self, width):
        return nn.Tanh()


@ACTIVATIONS.register("relu")
class ReLU(ActivationSpec):
    """max(0, x): no saturation for x > 0, but units can die."""

    off_below = 0.0
    units_can_die = True

    def build(self, width):
        return nn.ReLU()


@ACTIVATIONS.register("leaky_relu")
class LeakyReLU(ActivationSpec):
    """max(ax, x): a small slope keeps negative units alive."""

    negative_slope: float = Field(0.01, ge=0, lt=1)
    off_below = 0.0

    @property
    def units_can_die(self) -> bool:  # type: ignore[override]
        """The slope keeps a gradient on the negative side, unless it is 0 (then this is relu)."""
        return self.negative_slope == 0

    def build(self, width):
        return nn.LeakyReLU(self.negative_slope)


@ACTIVATIONS.register("prelu")
class PReLU(ActivationSpec):
    """Leaky ReLU whose negative slope is learned (one per layer, or per unit)."""

    init: float = Field(0.25, ge=0, lt=1)
    per_unit: bool = False
    off_below = 0.0  # the slope is learned and keeps a gradient: units never die

    def build(self, width):
        return nn.PReLU(num_parameters=width if self.per_unit else 1, init=self.init)


@ACTIVATIONS.register("elu")
class ELU(ActivationSpec):
    """x for x > 0, alpha(e^x - 1) below: smooth, negative outputs push means to 0."""

    alpha: float = Field(1.0, gt=0)

    def build(self, width):
        return nn.ELU(self.alpha)


@ACTIVATIONS.register("selu")
class SELU(ActivationSpec):
    """Scaled ELU: self-normalising with lecun_normal init."""

    def build(self, width):
        return nn.SELU()


@ACTIVATIONS.register("gelu")
class GELU(ActivationSpec):
    """x * Phi(x), the transformer default."""

    approximate: str = Field("none", pattern="^(none|tanh)$")

    def build(self, width):
        return nn.GELU(approximate=self.approximate)


@ACTIVATIONS.register("silu", "swish")
class SiLU(ActivationSpec):
    """x * sigmoid(x) (swish)."""

    def build(self, width):
        return nn.SiLU()


@ACTIVATIONS.register("softplus")
class Softplus(ActivationSpec):
    """log(1 + e^(beta x)) / beta: a smooth ReLU."""

    beta: float = Field(1.0, gt=0)

    def build(self, width):
        return nn.Softplus(beta=self.beta)


@ACTIVATIONS.register("softsign")
class Softsign(ActivationSpec):
    """x / (1 + |x|): like tanh, but approaches +-1 polynomially."""

    bounds = (-1.0, 1.0)

    def build(self, width):
        return nn.Softsign()

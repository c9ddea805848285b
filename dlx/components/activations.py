"""Activation functions, keyed by the names `activation:` takes in the YAML.

Class attributes are the function's facts, read by the probes, the diagnosis, the
init check, dlx backprop and the stacked trainer (not kept in lists of names there);
every activation declares every one of FACTS (tests/test_owners_diagnosis.py):
  bounds          for functions that saturate (the fraction of outputs within
                  SATURATION_MARGIN of a bound is logged); None where unbounded
  off_below       for the ReLU family, the output at or below which a unit is on its
                  flat or negative side; None where there is no such side
  units_can_die   that side passes no gradient at all (relu: a unit off for every input
                  never learns again, "dead"). A leaky unit off for a whole batch still
                  learns at its slope: it is logged as "negative", never as dead
  saturating_std  the pre-activation std beyond which the derivative is under ~10% of
                  its peak (the init check's and the diagnosis's "starts saturated")
  saturates       how it saturates, in words for a verdict ("derivative <= 0.25")
  relu_like       the ReLU family: ~identity above 0, (near) flat below
  fitting_init    the init whose variance law fits it (He, LeCun or Xavier)
  zero_at_zero    f(0) = 0: under an all-zero init every hidden output is exactly 0
  learns          what it learns, in words (prelu: "its slopes"); None for a fixed function
  derivative      (formula, f'(z, a)) as dlx backprop writes it out; None where it does not
Torch is imported only to build a module: the diagnosis reads these facts without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, ClassVar

from pydantic import Field

from dlx.core.registry import Registry, Spec

if TYPE_CHECKING:
    from torch import nn

ACTIVATIONS = Registry("activation")

FACTS = (
    "bounds",
    "off_below",
    "units_can_die",
    "saturating_std",
    "saturates",
    "relu_like",
    "fitting_init",
    "zero_at_zero",
    "learns",
    "derivative",
)

# The init schemes whose variance law fits an activation: He for the ReLU family
# (Var(W) = 2/fan_in: relu passes half the variance), LeCun for SELU (1/fan_in: its
# self-normalising fixed point), Xavier for tanh, sigmoid and the linear ones.
HE, LECUN, XAVIER = "kaiming_normal", "lecun_normal", "xavier_uniform"


def _nn():
    from torch import nn

    return nn


class ActivationSpec(Spec):
    # Declared, not defaulted: an activation that forgets a fact fails where it is read.
    bounds: ClassVar[tuple[float, float] | None]
    off_below: ClassVar[float | None]  # ReLU family: output <= this is "off"
    # The off side's derivative is exactly 0: a unit off for every input gets no gradient (dead).
    units_can_die: ClassVar[bool]
    saturating_std: ClassVar[float | None]
    saturates: ClassVar[str | None]
    relu_like: ClassVar[bool]
    fitting_init: ClassVar[str]
    zero_at_zero: ClassVar[bool]
    learns: ClassVar[str | None]
    derivative: ClassVar[tuple[str, Callable] | None]

    def build(self, width: int) -> nn.Module:
        """The module for a layer of `width` units."""
        raise NotImplementedError


@ACTIVATIONS.register("identity", "linear")
class Identity(ActivationSpec):
    """No nonlinearity: a deep net collapses to one linear map."""

    bounds = None
    off_below = None
    units_can_die = False
    saturating_std = None
    saturates = None
    relu_like = False
    fitting_init = XAVIER
    zero_at_zero = True
    learns = None
    derivative = ("1", lambda z, a: z.new_ones(z.shape))

    def build(self, width):
        return _nn().Identity()


@ACTIVATIONS.register("sigmoid")
class Sigmoid(ActivationSpec):
    """1/(1+e^-x); derivative at most 0.25, the classic cause of vanishing gradients."""

    bounds = (0.0, 1.0)
    off_below = None
    units_can_die = False
    # Beyond this pre-activation std the derivative is under ~10% of its peak: sigmoid'(4) = 0.018 (peak 0.25).
    saturating_std = 4.0
    saturates = "derivative <= 0.25"
    relu_like = False
    fitting_init = XAVIER
    zero_at_zero = False  # 1/2
    learns = None
    derivative = ("a (1 - a)", lambda z, a: a * (1 - a))

    def build(self, width):
        return _nn().Sigmoid()


@ACTIVATIONS.register("tanh")
class Tanh(ActivationSpec):
    """Zero-centred, derivative at most 1; saturates at +-1."""

    bounds = (-1.0, 1.0)
    off_below = None
    units_can_die = False
    saturating_std = 2.0  # tanh'(2) = 0.07
    saturates = "derivative <= 1, near 0 once |x| > 2"
    relu_like = False
    fitting_init = XAVIER
    zero_at_zero = True
    learns = None
    derivative = ("1 - a^2", lambda z, a: 1 - a * a)

    def build(self, width):
        return _nn().Tanh()


@ACTIVATIONS.register("relu")
class ReLU(ActivationSpec):
    """max(0, x): no saturation for x > 0, but units can die."""

    bounds = None
    off_below = 0.0
    units_can_die = True
    saturating_std = None
    saturates = None
    relu_like = True
    fitting_init = HE
    zero_at_zero = True
    learns = None
    derivative = ("1 if z > 0 else 0", lambda z, a: (z > 0).to(z.dtype))

    def build(self, width):
        return _nn().ReLU()


@ACTIVATIONS.register("leaky_relu")
class LeakyReLU(ActivationSpec):
    """max(ax, x): a small slope keeps negative units alive."""

    negative_slope: float = Field(0.01, ge=0, lt=1)
    bounds = None
    off_below = 0.0
    saturating_std = None
    saturates = None
    relu_like = True
    fitting_init = HE
    zero_at_zero = True
    learns = None
    derivative = None

    @property
    def units_can_die(self) -> bool:  # type: ignore[override]
        """The slope keeps a gradient on the negative side, unless it is 0 (then this is relu)."""
        return self.negative_slope == 0

    def build(self, width):
        return _nn().LeakyReLU(self.negative_slope)


@ACTIVATIONS.register("prelu")
class PReLU(ActivationSpec):
    """Leaky ReLU whose negative slope is learned (one per layer, or per unit)."""

    init: float = Field(0.25, ge=0, lt=1)
    per_unit: bool = False
    bounds = None
    off_below = 0.0
    units_can_die = False  # the slope is learned and keeps a gradient: units never die
    saturating_std = None
    saturates = None
    relu_like = True
    fitting_init = HE
    zero_at_zero = True
    learns = "its slopes"
    derivative = None

    def build(self, width):
        return _nn().PReLU(num_parameters=width if self.per_unit else 1, init=self.init)


@ACTIVATIONS.register("elu")
class ELU(ActivationSpec):
    """x for x > 0, alpha(e^x - 1) below: smooth, negative outputs push means to 0."""

    alpha: float = Field(1.0, gt=0)
    bounds = None
    off_below = None  # smooth below 0: no unit is ever off
    units_can_die = False
    saturating_std = None
    saturates = None
    relu_like = True
    fitting_init = HE
    zero_at_zero = True
    learns = None
    derivative = None

    def build(self, width):
        return _nn().ELU(self.alpha)


@ACTIVATIONS.register("selu")
class SELU(ActivationSpec):
    """Scaled ELU: self-normalising with lecun_normal init."""

    bounds = None
    off_below = None
    units_can_die = False
    saturating_std = None
    saturates = None
    relu_like = True
    fitting_init = LECUN
    zero_at_zero = True
    learns = None
    derivative = None

    def build(self, width):
        return _nn().SELU()


@ACTIVATIONS.register("gelu")
class GELU(ActivationSpec):
    """x * Phi(x), the transformer default."""

    approximate: str = Field("none", pattern="^(none|tanh)$")
    bounds = None
    off_below = None
    units_can_die = False
    saturating_std = None
    saturates = None
    relu_like = True
    fitting_init = HE
    zero_at_zero = True
    learns = None
    derivative = None

    def build(self, width):
        return _nn().GELU(approximate=self.approximate)


@ACTIVATIONS.register("silu", "swish")
class SiLU(ActivationSpec):
    """x * sigmoid(x) (swish)."""

    bounds = None
    off_below = None
    units_can_die = False
    saturating_std = None
    saturates = None
    relu_like = True
    fitting_init = HE
    zero_at_zero = True
    learns = None
    derivative = None

    def build(self, width):
        return _nn().SiLU()


@ACTIVATIONS.register("softplus")
class Softplus(ActivationSpec):
    """log(1 + e^(beta x)) / beta: a smooth ReLU."""

    beta: float = Field(1.0, gt=0)
    bounds = None
    off_below = None
    units_can_die = False
    saturating_std = None
    saturates = None
    relu_like = True
    fitting_init = HE
    zero_at_zero = False  # ln 2
    learns = None
    derivative = None

    def build(self, width):
        return _nn().Softplus(beta=self.beta)


@ACTIVATIONS.register("softsign")
class Softsign(ActivationSpec):
    """x / (1 + |x|): like tanh, but approaches +-1 polynomially."""

    bounds = (-1.0, 1.0)
    off_below = None
    units_can_die = False
    saturating_std = 2.0  # softsign'(2) = 0.11
    saturates = "derivative <= 1, decaying as 1/(1+|x|)^2"
    relu_like = False
    fitting_init = XAVIER
    zero_at_zero = True
    learns = None
    derivative = None

    def build(self, width):
        return _nn().Softsign()


def facts(name: str) -> type[ActivationSpec] | None:
    """The spec class of an activation named in a config (an alias too), None for an unknown name."""
    return ACTIVATIONS.get(name) if name in ACTIVATIONS else None  # type: ignore[return-value]


# By name, for the init check's "saturates beyond ~std" note.
SATURATING_STD = {n: s for n in ACTIVATIONS.names() if (s := ACTIVATIONS.get(n).saturating_std) is not None}

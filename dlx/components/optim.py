"""Optimizers and learning-rate schedules, keyed by their YAML names.

`optimizer: {name: adam, lr: 0.001, schedule: {name: cosine}}`. Schedules are
multiplicative factors on `lr`, evaluated per optimizer step.

Every optimizer is PyTorch's own, with PyTorch's conventions (momentum form,
weight decay, eps placement); OPTIMIZERS.notes spells them out for `dlx list
optimizer` and tests/test_optim_conventions.py checks each against torch.
"""

from __future__ import annotations

import functools
import math
from typing import Iterable

import torch
from pydantic import Field, PositiveFloat, PositiveInt, field_validator, model_validator

from dlx.core.registry import Registry, Spec

SCHEDULES = Registry("schedule")
OPTIMIZERS = Registry("optimizer")


class ScheduleSpec(Spec):
    def factor(self, step: int, total: int) -> float:
        """Multiplier on the base lr at optimizer step `step` (0-based) of `total`."""
        raise NotImplementedError


@SCHEDULES.register("constant")
class Constant(ScheduleSpec):
    """The same lr throughout."""

    def factor(self, step, total):
        return 1.0


@SCHEDULES.register("step")
class StepDecay(ScheduleSpec):
    """Multiply lr by gamma every step_size steps."""

    step_size: PositiveInt = 1000
    gamma: float = Field(0.1, gt=0)

    def factor(self, step, total):
        return self.gamma ** (step // self.step_size)


@SCHEDULES.register("exponential")
class Exponential(ScheduleSpec):
    """Multiply lr by gamma every step."""

    gamma: float = Field(0.999, gt=0)

    def factor(self, step, total):
        return self.gamma**step


def _cosine(step: int, total: int, min_factor: float) -> float:
    t = min(step / max(total, 1), 1.0)
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * t))


@SCHEDULES.register("cosine")
class Cosine(ScheduleSpec):
    """Half a cosine from lr down to min_factor*lr over the whole run."""

    min_factor: float = Field(0.0, ge=0, le=1)

    def factor(self, step, total):
        return _cosine(step, total, self.min_factor)


@SCHEDULES.register("warmup")
class Warmup(ScheduleSpec):
    """Linear ramp from lr/steps to lr over `steps`, then constant or cosine."""

    steps: PositiveInt = 100
    then: str = Field("constant", pattern="^(constant|cosine)$")
    min_factor: float = Field(0.0, ge=0, le=1)

    def factor(self, step, total):
        if step < self.steps:
            return (step + 1) / self.steps
        if self.then == "cosine":
            return _cosine(step - self.steps, total - self.steps, self.min_factor)
        return 1.0


Schedule = SCHEDULES.field_type()


class OptimizerSpec(Spec):
    lr: PositiveFloat = 0.01
    weight_decay: float = Field(0.0, ge=0)
    schedule: Schedule = Field(default_factory=lambda: Constant(name="constant"))

    def build(self, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        raise NotImplementedError


@OPTIMIZERS.register("sgd")
class SGD(OptimizerSpec):
    """Plain (mini-batch) gradient descent: w -= lr*grad; with momentum > 0, as momentum."""

    momentum: float = Field(0.0, ge=0, lt=1)
    dampening: float = Field(0.0, ge=0, le=1)
    nesterov: bool = False

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self):
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov: true needs momentum > 0 and dampening 0 (or use name: nesterov)")
        return self

    def build(self, params):
        return torch.optim.SGD(
            params,
            lr=self.lr,
            momentum=self.momentum,
            dampening=self.dampening,
            nesterov=self.nesterov,
            weight_decay=self.weight_decay,
        )


@OPTIMIZERS.register("momentum")
class Momentum(OptimizerSpec):
    """Heavy ball, PyTorch's form: v = momentum*v + grad; w -= lr*v."""

    momentum: float = Field(0.9, gt=0, lt=1)
    dampening: float = Field(0.0, ge=0, le=1)

    def build(self, params):
        return torch.optim.SGD(
            params, lr=self.lr, momentum=self.momentum, dampening=self.dampening, weight_decay=self.weight_decay
        )


@OPTIMIZERS.register("nesterov")
class Nesterov(OptimizerSpec):
    """Look-ahead momentum, PyTorch's form: v = momentum*v + grad; w -= lr*(grad + momentum*v)."""

    momentum: float = Field(0.9, gt=0, lt=1)

    def build(self, params):
        return torch.optim.SGD(
            params, lr=self.lr, momentum=self.momentum, nesterov=True, weight_decay=self.weight_decay
        )


@OPTIMIZERS.register("adagrad")
class Adagrad(OptimizerSpec):
    """G += grad^2; w -= lr*grad/(sqrt(G) + eps): per-weight steps that only shrink."""

    lr_decay: float = Field(0.0, ge=0)
    initial_accumulator_value: float = Field(0.0, ge=0)
    eps: PositiveFloat = 1e-10

    def build(self, params):
        return torch.optim.Adagrad(
            params,
            lr=self.lr,
            lr_decay=self.lr_decay,
            eps=self.eps,
            initial_accumulator_value=self.initial_accumulator_value,
            weight_decay=self.weight_decay,
        )


@OPTIMIZERS.register("adadelta")
class Adadelta(OptimizerSpec):
    """AdaGrad with a decaying window and unit-correct steps; lr 1.0 is the paper's."""

    lr: PositiveFloat = 1.0
    rho: float = Field(0.9, gt=0, lt=1)
    eps: PositiveFloat = 1e-6

    def build(self, params):
        return torch.optim.Adadelta(params, lr=self.lr, rho=self.rho, eps=self.eps, weight_decay=self.weight_decay)


@OPTIMIZERS.register("rmsprop")
class RMSprop(OptimizerSpec):
    """s = alpha*s + (1-alpha)*grad^2; w -= lr*grad/(sqrt(s) + eps); alpha is the decay."""

    lr: PositiveFloat = 0.001
    alpha: float = Field(0.99, gt=0, lt=1)
    eps: PositiveFloat = 1e-8
    momentum: float = Field(0.0, ge=0, lt=1)
    centered: bool = False

    def build(self, params):
        return torch.optim.RMSprop(
            params,
            lr=self.lr,
            alpha=self.alpha,
            eps=self.eps,
            momentum=self.momentum,
            centered=self.centered,
            weight_decay=self.weight_decay,
        )


class _AdamBase(OptimizerSpec):
    lr: PositiveFloat = 0.001
    betas: tuple[float, float] = (0.9, 0.999)
    eps: PositiveFloat = 1e-8
    amsgrad: bool = False

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, betas):
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"both betas must lie in [0, 1), got {list(betas)}")
        return betas


@OPTIMIZERS.register("adam")
class Adam(_AdamBase):
    """Momentum plus RMSprop scaling, bias-corrected (Kingma & Ba 2015); weight_decay is L2 in the gradient."""

    def build(self, params):
        return torch.optim.Adam(
            params, lr=self.lr, betas=self.betas, eps=self.eps, amsgrad=self.amsgrad, weight_decay=self.weight_decay
        )


@OPTIMIZERS.register("adamw")
class AdamW(_AdamBase):
    """Adam with decoupled decay: w -= lr*weight_decay*w, then the Adam step (Loshchilov & Hutter 2019)."""

    weight_decay: float = Field(0.01, ge=0)

    def build(self, params):
        return torch.optim.AdamW(
            params, lr=self.lr, betas=self.betas, eps=self.eps, amsgrad=self.amsgrad, weight_decay=self.weight_decay
        )


# Printed under the table by `dlx list optimizer` (wrapped to the terminal); each
# statement is checked against torch in tests/test_optim_conventions.py.
OPTIMIZERS.notes = [
    "Momentum (momentum, nesterov, sgd with momentum > 0; rmsprop's on its scaled "
    "gradient) is PyTorch's "
    "form: v = momentum*v + grad; w -= lr*v. The textbook v = momentum*v + lr*grad; "
    "w -= v takes the same steps for a constant lr, not under a schedule: here a "
    "changed lr applies at once to the whole velocity, there only to new gradients. "
    "nesterov: w -= lr*(grad + momentum*v), v already updated. The first step sets "
    "v = grad (dampening is not applied to it), later ones v = momentum*v + "
    "(1-dampening)*grad.",
    "optimizer.weight_decay (all but adamw) adds weight_decay*w to the gradient of "
    "every parameter inside the step: biases, norm gains and shifts and PReLU slopes "
    "too, and after clip_norm/clip_value. regularization.l2 adds l2/2*sum(w^2) of the "
    "layers' weight matrices to the loss: biases and norm parameters untouched, its "
    "gradient l2*w clipped with the rest. On weights the two are otherwise the same.",
    "adam's weight_decay is that L2 gradient (coupled): it goes through m and v and "
    "is divided by sqrt(v), so weights with large gradients are decayed less. adamw "
    "decouples it: w -= lr*weight_decay*w, then the Adam step. As in PyTorch the decay "
    "is multiplied by lr (and by the schedule): the paper's w -= eta_t*lambda*w has no "
    "lr in it, so its lambda is weight_decay*lr here. adamw's default weight_decay is "
    "0.01, every other's 0.",
    "eps is added outside the root: adam and adamw step lr*m/(sqrt(v) + eps) after "
    "bias correction, so their first step is about lr per weight whatever the "
    "gradient's size. rmsprop's alpha is the decay of its squared-gradient average "
    "(rho in Keras), with no bias correction: its first step is lr/sqrt(1-alpha), "
    "10*lr at alpha 0.99. adagrad's sum starts at initial_accumulator_value (0), so "
    "its first step is lr per weight and later ones shrink; lr_decay divides lr by "
    "1 + (t-1)*lr_decay on top of any schedule. adadelta's lr scales its "
    "unit-correct step (1.0 is the paper's).",
    "optimizer.schedule multiplies lr at every step (lr*factor(step)); everything "
    "above uses the scheduled lr, adamw's decay included.",
]


# Set by skip_dynamo_wrappers(): step() then calls an optimizer's step without the wrapper
# that imports torch._dynamo.
_RAW_STEP = False
FUNCTIONAL = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta")


def skip_dynamo_wrappers() -> None:
    """In a process dlx owns (the CLI, a worker): torch.optim wraps its optimizers' methods
    and functional steps so that their first call imports torch._dynamo (1.2-1.6 s on a CPU,
    more than a small run trains) only to mark them as not to be compiled, and step() in a
    wrapper that imports it on every call to place graph breaks. dlx never compiles them:
    mark the methods done (each then runs as the plain function it wraps) and let step()
    below call the step itself. Not done where torch._dynamo is loaded already, nor for a
    torch whose wrappers look different (then the import is paid as before)."""
    global _RAW_STEP
    import importlib
    import sys

    if "torch._dynamo" in sys.modules:
        return
    wrapped = [
        getattr(torch.optim.Optimizer, n) for n in ("add_param_group", "state_dict", "load_state_dict", "zero_grad")
    ]
    for name in FUNCTIONAL:
        try:
            wrapped.append(getattr(importlib.import_module(f"torch.optim.{name}"), name))
        except (ImportError, AttributeError):
            pass
    for fn in wrapped:
        raw = getattr(fn, "__wrapped__", None)
        if raw is not None and callable(raw) and not hasattr(raw, "__dynamo_disable"):
            setattr(raw, "__dynamo_disable", raw)
    _RAW_STEP = True


@functools.lru_cache(maxsize=None)
def _raw_step(cls: type):
    """The step an optimizer class's step wraps (twice: the profiler's step hooks, then the
    graph breaks), found once per class; None where it is not wrapped."""
    import inspect

    raw = inspect.unwrap(cls.step)
    return None if raw is cls.step else raw


def step(opt: torch.optim.Optimizer) -> None:
    """opt.step(), or where skip_dynamo_wrappers() ran, the step it wraps called directly
    under no_grad (what its wrapper does, less the torch._dynamo import and the profiler's
    step hooks, which dlx never registers). The numbers are the same."""
    import sys

    raw = _raw_step(type(opt)) if _RAW_STEP else None
    if raw is None or "torch._dynamo" in sys.modules:
        opt.step()
        return
    opt._opt_called = True  # what the wrapper tells an lr scheduler: the step came first
    with torch.no_grad():
        raw(opt)

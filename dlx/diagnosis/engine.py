"""Verdicts read from a run's series: what went wrong (or right), why, and what to try.

Each verdict is a plain dict, so it goes into summary.json as it is:
  kind      one of KINDS (the most severe first in the list diagnose() returns)
  layers    the layers (or recurrent layers, for the time-step verdict) involved
  evidence  the numbers the verdict rests on
  message   one line: what was seen, with the evidence
  cause     the likely cause, read from the resolved config (None for healthy)
  remedy    what to try, in words (None for healthy)
  fixes     the remedy as data: [{"set": [--set overrides], "text": ...}], the most direct
            first; what `dlx fix` runs ([] for healthy and for a symptom: its root's fix it)

The engine reads one small `Context` (probe series, metrics history, resolved
config, the task's chance-level loss), never the run folder or the trainer, so
tests feed it synthetic series. Thresholds are named constants; each says why
it sits where it does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

# Root causes first: the order of diagnose()'s list, and so the headline. A cause
# comes before the symptoms it produces (an init that halves the signal per layer
# before the vanishing gradients and the plateau it causes; a too-high lr before the
# dead units it kills), and each symptom names its root (SYMPTOMS, "symptom_of").
# lr_too_high leads only when the run started sane (init check and step-1
# gradients in range): otherwise the start is the first suspect and it moves to
# its place after the structural kinds (see _order). healthy only when nothing
# else fired, and never for a run that ends far from a fit ("slow" says so).
KINDS = (
    "symmetry",
    "init_scale",
    "lr_too_high",
    "exploding",
    "vanishing",
    "vanishing_through_time",
    "dead_units",
    "saturation",
    "diverged",
    "lr_too_low",
    "not_learning",
    "slow",
    "overfitting",
    "ignored_class",
    "healthy",
)
# The kinds a run may be stopped on while it trains (train.prune, `--prune-on`): each is
# judged on the run so far (no rule reads the steps still to come) and, once it has held
# for a few log intervals, does not undo itself. Why, per kind:
PRUNABLE = {
    "symmetry": "identical units get identical gradients and stay copies for good (without dropout)",
    "dead_units": "a ReLU off for every input gets no gradient, so nothing turns it back on",
    "vanishing": "the input layers' gradient, sustained at a thousandth of the top's, does not recover by itself",
    "vanishing_through_time": "the gradient from early time steps stays lost while the recurrence is unchanged",
    "not_learning": "the loss flat at chance level and a root verdict found that explains it (a plateau with no "
    "cause found may yet end, and does not stop a run)",
}
# train.prune's default warm-up (a fraction of the run's steps): measured, none of 42 healthy
# runs (tests/test_verdict_quality.py's and every example expecting healthy, scaled down)
# is pruned with every PRUNABLE kind on at a warm-up of 0.05; 0.1 keeps twice that margin.
PRUNE_WARMUP = 0.1
# The others read the end of a run or can undo themselves: never a reason to stop one early.
NOT_PRUNABLE = {
    "init_scale": "a badly scaled init is judged at step 0, and the run may still learn (adam, batch norm)",
    # Measured: an 8-layer tanh net at lr 0.1 had 69% of its units saturated at step 250 of
    # 600 with the loss at 66% of chance, then learned to 0.946 test accuracy. Saturation that
    # stalls a run for good leaves the loss at chance: not_learning stops that one.
    "saturation": "tanh and sigmoid units saturate while a net is still learning and come back; "
    "a saturated net stuck at chance is not_learning",
    "lr_too_high": "a loss that rose or swings may settle (a schedule lowers the lr); a blow-up stops the run anyway",
    "exploding": "large gradients may be tamed (clipping, adam) while the run still learns",
    "diverged": "a run that diverges stops by itself",
    "lr_too_low": "judged on how far the whole run got",
    "slow": "judged on how far the whole run got",
    "overfitting": "a rise of the test loss is what regularization.early_stopping stops on",
    "ignored_class": "judged on the final per-class recall",
    "healthy": "nothing to stop",
}
# What each root cause produces: a verdict of these kinds found beside it is its symptom.
_LOSS = ("not_learning", "slow")
# An init out of range (or symmetric units) explains everything that follows from the start.
_FROM_THE_START = (
    "exploding",
    "vanishing",
    "dead_units",
    "saturation",
    "diverged",
    "lr_too_low",
    "lr_too_high",
    *_LOSS,
)
SYMPTOMS = {
    "symmetry": ("init_scale", *_FROM_THE_START),
    "init_scale": _FROM_THE_START,
    "lr_too_high": ("exploding", "vanishing", "dead_units", "saturation", "diverged", *_LOSS),
    "exploding": ("diverged", *_LOSS),
    "vanishing": ("saturation", "lr_too_low", *_LOSS),
    "vanishing_through_time": ("lr_too_low", *_LOSS),
    "dead_units": ("lr_too_low", *_LOSS),
    "saturation": ("lr_too_low", *_LOSS),
    "lr_too_low": _LOSS,
}

# ---------------------------------------------------------------- gradients across layers
# Judge the "sustained" part of a run: skip the first 20% of steps, where an
# init transient is expected and not a verdict on its own.
SUSTAINED_FROM = 0.2
# Input-layer gradient norm below this fraction of the output layer's, sustained:
# each layer then learns 1000x slower than the top one. Healthy ReLU+He nets sit
# within a factor of ~10 either way; a 10-layer sigmoid net is near 1e-6.
VANISHING_RATIO = 1e-3
# The mirror image: the input layer's gradient 1000x the output layer's.
EXPLODING_RATIO = 1e3
# Or any layer's gradient norm above this, sustained: steps of that size wreck the weights.
EXPLODING_NORM = 1e4

# ---------------------------------------------------------------- units
# ReLU units off for the whole probe batch, per layer: from 70% on, most of the layer
# is dead weight. Healthy runs of the example configs end at <= 33% in every layer
# (ReLU nets always idle some units); a too-high lr (adam/rmsprop at 0.1 on
# quickstart) kills 86%; rmsprop at 0.01 sits at 56% and still reaches 98%.
DEAD_FRACTION = 0.7
# Dead is judged on the log step's batch: with a handful of samples a selective unit
# is off for all of them by chance (batch 1 showed 89% "dead"), so smaller batches
# get no dead-unit verdict.
MIN_DEAD_BATCH = 16
# Saturating units within the margin of a bound (probes.SATURATION_MARGIN), per layer:
# above 60% the layer passes almost no gradient for most of its outputs...
SATURATED_FRACTION = 0.6
# ...but saturation alone is no fault: a tanh net that has learned often ends with
# most outputs near +-1 (binary-like features; quickstart with tanh: 82% of act3
# saturated at 98.6% test accuracy). So it is a verdict only while it hurts: the
# train loss still above this fraction of the chance-level loss at the end.
SATURATION_STUCK = 0.5
# Units whose (weights, bias) differ by less than this relative amount are identical copies.
SYMMETRY_SPREAD = 1e-6

# ---------------------------------------------------------------- the loss curve
# Loss-curve verdicts need a curve: at least this many log intervals.
MIN_INTERVALS = 5
# The train loss is smoothed with a running median over this fraction of the
# intervals (at least 3): a single noisy batch is not a trend.
SMOOTH_FRACTION = 0.1
# The final part of the run the "end" of a curve is read from (median of it).
END_FRACTION = 0.1
# Loss yardstick: the chance-level loss (best constant prediction) when known, else
# the first interval's loss. lr too high, rising: the smoothed train loss ends more
# than this fraction of the yardstick above its minimum. A healthy run's late drift
# (noise around a small loss) is a few percent of it; a loss that climbs back a
# third of the way to chance has been knocked out of its minimum.
LR_RISE = 0.3
# lr too high, oscillating: over the last half, the median jump between successive
# interval losses is above this fraction of the yardstick. Interval losses are means
# of log_every batches, so batch noise alone moves them a few percent at most.
LR_SWING = 0.25
# Both are read against the larger of the yardstick and the loss's own level: a loss
# sitting at 4x chance (a saturated or badly initialised net) moves by 7% of itself
# from batch noise alone, which is 28% of chance; that says nothing about the lr.
# lr too high, blowing up early: some interval's mean loss above this multiple of the
# yardstick... (a sane init starts within ~1.5x of chance; quickstart with adam lr=0.3
# peaks at 27x, momentum lr=1 at 200x, adam lr=0.1, which recovers to 98%, at 4.4x)
LR_SPIKE = 5.0
# ...while the gradient norm grew this much over its step-1 value: the steps, not the
# init, blew the loss up (a bad init makes step 1's gradient the largest; a healthy
# run's gradients grow up to ~20x, but then its loss never leaves chance level).
LR_GRAD_GROWTH = 10.0
# Not learning: the final smoothed train loss is still at least this fraction of the
# chance-level loss. The adding problem's plain RNN sits at ~100% of it; a net that
# has learned anything at all is well below 90%.
NOT_LEARNING_FRACTION = 0.9
# ...unless the final accuracy is at least this far from chance (1/C) toward 1: a loss
# kept high by a few wildly wrong predictions (leaky_relu at adam lr 0.3: 213% of chance)
# with 70% test accuracy on 3 classes has learned; a stuck net sits at 1/C.
NOT_LEARNING_ACC_MARGIN = 0.5
# Overfitting: the test loss needs at least this many evaluations to have a trend...
OVERFIT_MIN_EVALS = 4
# ...its minimum at least this many evaluations before the end (a rise, not one bad eval)...
OVERFIT_AFTER_MIN = 2
# ...the rise must last: the last OVERFIT_LASTING evaluations all sit above the minimum by
# the margins below (one bad final evaluation, 0.067 -> 0.18 with adam, is noise)...
OVERFIT_LASTING = 2
# ...and it must end this fraction above its minimum (relative: a 25% worse test loss)...
OVERFIT_REL_RISE = 0.25
# ...and by this fraction of the yardstick in absolute terms (a loss creeping from
# 0.01 to 0.02 doubles but does not matter: quickstart's test loss does that)...
OVERFIT_ABS_RISE = 0.05
# ...while the train loss fell by at least this fraction since the test minimum.
OVERFIT_TRAIN_FALL = 0.2
# Or the gap itself: the test loss ends this many times the train loss, by more than
# OVERFIT_GAP_ABS of the yardstick, and the gap at least doubled since the first
# evaluation (memorising 100 points: train MSE 1e-14, test 0.14, flat but wide; a
# healthy run's test loss is within ~2-3x of its train loss, a few % of chance apart).
OVERFIT_GAP_RATIO = 5.0
OVERFIT_GAP_ABS = 0.1

# ---------------------------------------------------------------- the start (root causes)
# The step-0 init check (initcheck.py) gives each linked layer's variance gain. A
# gain g per layer compounds: over n layers the top layer sees g^n of the signal.
# Beyond this factor either way the init is the root cause of what follows
# (Xavier + ReLU halves it per layer: 30 layers reach 2e-9, and the run sits at
# chance; N(0, 1) + ReLU on 32-wide layers multiplies it by 16 per layer and
# diverges at step 4; PyTorch's default init + ReLU, 1/6 per layer, is flagged
# from 5 layers on). He + ReLU, Xavier + tanh near 0 and batch norm stay ~1.
INIT_SIGNAL_FACTOR = 1e3
# Saturating activations: the init is too large when at least this fraction of the
# checked layers feeding the activation start with a pre-activation std beyond its
# saturation point (initcheck.SATURATING_STD: tanh 2, sigmoid 4). N(0, 1) + tanh on
# 32-64 wide layers starts at std 5-8 in every layer; Xavier + tanh at ~0.6-1.
INIT_SATURATED_LAYERS = 0.5
# Step-1 gradients "in range": the input layer's gradient within this factor of the
# output layer's either way, and no layer's above EXPLODING_NORM / 10. Healthy
# starts measured 0.2-10 (the synthetic sets), a 10-layer sigmoid net 1e-6.
SANE_STEP1_RATIO = 100.0

# ---------------------------------------------------------------- how far it got (the outcome)
# Progress: how far the final train loss got from chance level toward 0 (1 - end/chance).
# A run below this progress (and, for classification, below this fraction of the way
# from chance accuracy to 1) ends far from a fit: never "healthy" alone. Measured:
# spirals with sgd lr 0.02 for 300 steps ends at 30% (loss) / 34% (accuracy); noisy
# 3-blob data that has converged at its Bayes limit ends at 53% / 67%; healthy
# runs of the examples at 75-99%.
SLOW_PROGRESS = 0.5
# Still improving: the smoothed train loss fell by more than this fraction of the
# yardstick over the last half of the run (a converged run drifts by < 1%).
STILL_FALLING = 0.02
# A plateau: the loss sat at >= NOT_LEARNING_FRACTION of chance for at least this
# fraction of the run (and PLATEAU_MIN_INTERVALS log intervals) before leaving it.
PLATEAU_FRACTION = 0.2
PLATEAU_MIN_INTERVALS = 5
# lr too low: the median layer's |update|/|weight| per step below this at the end
# (a common rule of thumb puts healthy steps near 1e-3; measured 4e-4-7e-3 on the
# healthy examples, 5e-6-7e-5 for sgd at lr 1e-4) while the run is far from a fit.
LR_LOW_UPDATE = 1e-4
# The learning rate lost what it had learned: the smoothed loss got below this
# fraction of chance, then ended back at >= NOT_LEARNING_FRACTION of it (momentum at
# lr 0.5 on spirals: 0.81 -> 1.03 of chance, its ReLUs dead).
LR_RELAPSE_FROM = 0.85

# ---------------------------------------------------------------- through time
# Recurrent models: ||dL/dh_1|| / ||dL/dh_T|| at the last log step below this. Measured
# on the adding problem: the tanh RNN ends at 3e-11 (T = 50, 200 steps) and 3e-8
# (T = 100, 2000 steps, never learns); an LSTM or GRU that has learned to carry its
# state ends at 7e-5 / 3e-4 (T = 50) and 5e-2 (T = 100). 1e-6 sits ~40x from
# either side. (An LSTM still on its plateau reads 1e-13 and is rightly flagged.)
TIME_VANISHING_RATIO = 1e-6
# For the message: how many steps back the gradient keeps at least this fraction
# of the last step's (the reach of the gradient in time).
TIME_REACH = 1e-3

# How a kind reads inside a sentence ("the vanishing gradients above").
LABEL = {
    "diverged": "divergence",
    "symmetry": "symmetric units",
    "exploding": "exploding gradients",
    "vanishing": "vanishing gradients",
    "vanishing_through_time": "vanishing gradient through time",
    "dead_units": "dead units",
    "saturation": "saturation",
    "lr_too_high": "too-high learning rate",
    "init_scale": "badly scaled init",
    "lr_too_low": "too-low learning rate",
    "slow": "slow progress",
    "not_learning": "lack of learning",
    "overfitting": "overfitting",
    "ignored_class": "an ignored class",
    "healthy": "health",
}
SATURATING = {
    "sigmoid": "sigmoid (derivative <= 0.25)",
    "tanh": "tanh (derivative <= 1, near 0 once |x| > 2)",
    "softsign": "softsign (derivative <= 1, decaying as 1/(1+|x|)^2)",
}
RELU_FAMILY = ("relu", "leaky_relu", "prelu", "elu", "selu", "gelu", "silu", "swish", "softplus")
RECURRENT = ("rnn", "lstm", "gru")
# Activations with f(0) = 0: under an all-zero init every hidden output is exactly 0.
ZERO_AT_ZERO = (
    "relu",
    "leaky_relu",
    "prelu",
    "tanh",
    "elu",
    "selu",
    "gelu",
    "silu",
    "swish",
    "softsign",
    "identity",
    "linear",
)


@dataclass
class Context:
    """Everything a diagnosis reads; plain data, so tests build it by hand.

    names/grad: probed layers (input first) and their per-step gradient norms [steps, L];
    last: the latest value of each probe (act_saturated, act_dead, unit_spread, ...);
    act_names: the activation layers those act_* lists are for; dead_check: the
    activation is ReLU (units can die); diverged: the trainer's divergence record;
    metrics: the metrics.jsonl records (step, train_loss, test_loss, ...); config: the
    resolved config dict; task: "classification" | "regression"; chance_loss: the loss
    of the best constant prediction (None when unknown); time_grad: ||dL/dh_t||
    [recurrent layer, t] at the last log step (recurrent models only); init_check: the
    step-0 init check rows (initcheck.init_check); first: the probes at the first log step.
    """

    names: list[str]
    grad: np.ndarray
    last: dict[str, Any] = field(default_factory=dict)
    act_names: list[str] = field(default_factory=list)
    dead_check: bool = False
    diverged: dict[str, Any] | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    task: str | None = None
    chance_loss: float | None = None
    time_grad: Any = None
    init_check: list[dict[str, Any]] | None = None
    first: dict[str, Any] = field(default_factory=dict)
    instruments: list[dict[str, Any]] = field(default_factory=list)  # dlx.run.instruments records
    classes: dict[str, Any] | None = None  # summary.json "classes": counts, test recall, confusion

    def __post_init__(self):
        grad = np.asarray(self.grad, dtype=float)
        self.grad = grad if grad.ndim == 2 else grad.reshape(0, len(self.names))

    def section(self, key: str) -> dict[str, Any]:
        v = self.config.get(key)
        return v if isinstance(v, dict) else ({"name": v} if isinstance(v, str) else {})

    @property
    def activation(self) -> str:
        return self.section("activation").get("name", "?")

    @property
    def init(self) -> str:
        return self.section("init").get("name", "?")

    @property
    def model(self) -> str:
        return self.section("model").get("name", "?")


def chance_loss(y: np.ndarray, task: str, loss: str, n_classes: int | None, sigmoid_out: bool = False) -> float | None:
    """The training loss of the best constant prediction: the 'learned nothing' level.

    Regression (mse): the targets' variance (predicting their mean). Classification:
    from the class frequencies p: cross-entropy -> entropy of p (ln C when balanced),
    mse on one-hot -> mean of p(1-p), sigmoid outputs -> mean binary entropy.
    """
    y = np.asarray(y)
    if y.size == 0:
        return None
    if task == "regression":
        y = y.astype(np.float64)
        return float(((y - y.mean(axis=0)) ** 2).mean())
    if not n_classes:
        return None
    p = np.bincount(y.reshape(-1).astype(np.int64), minlength=n_classes)[:n_classes] / y.size
    if loss == "mse":
        return float((p * (1 - p)).mean())
    nz = p[(p > 0) & (p < 1)]
    if sigmoid_out:
        return float((-(nz * np.log(nz) + (1 - nz) * np.log(1 - nz))).sum() / n_classes)
    return float(-(nz * np.log(nz)).sum())


# ---------------------------------------------------------------- formatting
def _fmt(x: float | None) -> str:
    """A number inside a verdict's sentence (fmt.num: 2 significant digits far from 1, 3 near it)."""
    from dlx.core.fmt import num

    return num(x, small=1e-2, large=1e4, far="g", none="?")


def _list(items: Sequence[str], word: str = "or") -> str:
    items = [i for i in items if i]
    if len(items) <= 2:
        return f" {word} ".join(items)
    return ", ".join(items[:-1]) + f", {word} " + items[-1]


@dataclass(frozen=True)
class Fix:
    """One remedy as data: the `--set` overrides that make it (all of them together), and
    why it helps. The verdict's prose remedy is made from these (Fix.text); `dlx fix` runs them."""

    sets: tuple[str, ...]
    why: str = ""

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(s.partition("=")[0] for s in self.sets)

    @property
    def text(self) -> str:
        body = " + ".join(f"{k}: {v}" for k, _, v in (s.partition("=") for s in self.sets))
        return f"{body} ({self.why})" if self.why else body

    def as_dict(self) -> dict[str, Any]:
        return {"set": list(self.sets), "text": self.text}


def _fix(*sets: str, why: str = "") -> Fix:
    return Fix(tuple(sets), why)


def _try(ctx: "Context", items: Sequence["str | Fix | None"]) -> tuple[str, list[Fix]]:
    """The remedy: config changes to try, the most direct first, as prose and as the Fixes
    among them (the rest is advice no --set expresses: more data, a smaller model). Never a
    key the config would refuse for this model (ModelSpec.honoured(): lstm has no batch norm)."""
    refused = _unhonoured_keys(ctx)

    def allowed(item: "str | Fix") -> bool:
        keys = item.keys if isinstance(item, Fix) else (item,)
        return not any(key.startswith(k) for key in keys for k in refused)

    accepts = _accepts(ctx)
    kept = [i for i in items if i and allowed(i) and (not isinstance(i, Fix) or accepts(i))]
    fixes = list(dict.fromkeys(i for i in kept if isinstance(i, Fix)))
    return f"{_list([i.text if isinstance(i, Fix) else i for i in kept])}.", fixes


def _accepts(ctx: "Context"):
    """A test of whether the run's config takes a fix's overrides (the config's schema decides:
    an rnn takes no leaky_relu, MNIST has no 120000 training samples); a config that does not
    load by itself (a hand-built partial context) takes every fix."""
    from dlx.config.loader import load_config
    from dlx.core.errors import DlxError

    try:
        load_config(ctx.config)
    except Exception:
        return lambda fix: True

    def accepts(fix: Fix) -> bool:
        try:
            load_config(ctx.config, list(fix.sets))
        except DlxError:
            return False
        return True

    return accepts


def _unhonoured_keys(ctx: "Context") -> set[str]:
    """The model-dependent keys (models.base.MODEL_DEPENDENT_KEYS) this run's model ignores."""
    from dlx.components.models import MODELS
    from dlx.components.models.base import MODEL_DEPENDENT_KEYS

    try:
        spec = MODELS.parse(ctx.config.get("model"))
    except Exception:  # a hand-built context (tests) may hold a partial model section
        return set()
    return set(MODEL_DEPENDENT_KEYS) - set(spec.honoured())


def _verdict(
    kind: str,
    layers: list[str],
    evidence: dict[str, Any],
    message: str,
    cause: str | None = None,
    remedy: "tuple[str, list[Fix]] | str | None" = None,
) -> dict[str, Any]:
    """A verdict dict; `remedy` is _try()'s (prose, fixes), or prose alone (no --set expresses it)."""
    text, fixes = remedy if isinstance(remedy, tuple) else (remedy, [])
    return {
        "kind": kind,
        "layers": layers,
        "evidence": evidence,
        "message": message,
        "cause": cause,
        "remedy": text,
        "fixes": [f.as_dict() for f in fixes],
    }


# ---------------------------------------------------------------- reading the config
def _init_text(ctx: Context) -> str:
    init = ctx.section("init")
    name = init.get("name", "?")
    if name == "normal":
        return f"normal init (std {init.get('std', '?')}, whatever the fan-in)"
    if name == "uniform":
        return f"uniform init (U({init.get('low', '?')}, {init.get('high', '?')}), whatever the fan-in)"
    if name == "constant":
        return f"constant init ({init.get('value', '?')})"
    if name == "default" and ctx.model in RECURRENT:
        return "default init (PyTorch's U(+-1/sqrt(hidden)))"
    if name == "default":
        return "default init (PyTorch's, weights ~1/sqrt(3 fan_in): a gain of ~0.58 per layer)"
    return f"{name} init"


def _depth(ctx: Context) -> int:
    """Nonlinearities the gradient passes on its way down (probed layers - 1 without activations)."""
    return len(ctx.act_names) or max(len(ctx.names) - 1, 0)


def _he_like(init: str) -> bool:
    return init.startswith(("kaiming", "he_")) or init in ("lecun_normal", "orthogonal")


def _lr_text(ctx: Context) -> str:
    opt = ctx.section("optimizer")
    sched = opt.get("schedule")
    sched = sched.get("name") if isinstance(sched, dict) else sched
    text = f"{opt.get('name', '?')} with lr={opt.get('lr', '?')}"
    return text + ("" if sched in (None, "constant") else f" ({sched} schedule)")


def _number(x: float) -> str:
    """x with 2 significant digits, as YAML reads a float (1.0e-05: PyYAML takes 1e-05 for a string)."""
    text = f"{x:.2g}"
    return text.replace("e", ".0e") if "e" in text and "." not in text else text


def _lr_times(ctx: Context, factor: float, why: str = "") -> Fix | str:
    """The optimizer's lr times factor, as a Fix (prose when the lr is unknown)."""
    lr = ctx.section("optimizer").get("lr")
    if isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0:
        return _fix(f"optimizer.lr={_number(lr * factor)}", why=why)
    return f"a {'smaller' if factor < 1 else 'larger'} optimizer.lr"


def _lr_lower(ctx: Context, by: float = 10.0, why: str = "") -> Fix | str:
    return _lr_times(ctx, 1 / by, why)


def _small_lr(ctx: Context) -> bool:
    lr = ctx.section("optimizer").get("lr")
    return isinstance(lr, (int, float)) and lr < 0.01


def _adam(why: str = "") -> Fix:
    """Adam with its own usual hyperparameters (the mapping replaces the whole optimizer
    section: sgd's lr of 0.1 would be far too large for adam)."""
    return _fix("optimizer={name: adam}", why=why)


def _clip(ctx: Context) -> Fix | None:
    return None if _clipped(ctx) else _fix("regularization.clip_norm=1.0")


def _steps_done(ctx: Context) -> int | None:
    steps = [m.get("step") for m in ctx.metrics if isinstance(m.get("step"), int)]
    return max(steps) if steps else None


def _more_steps(ctx: Context, why: str = "twice the steps") -> Fix | str:
    """Twice the steps the run took, as a Fix (prose when the run logged none)."""
    done = _steps_done(ctx)
    return _fix(f"train.steps={2 * done}", why=why) if done else "more steps (train.steps)"


def _reg(ctx: Context) -> dict[str, Any]:
    return ctx.section("regularization")


def _clipped(ctx: Context) -> bool:
    return bool(_reg(ctx).get("clip_norm") or _reg(ctx).get("clip_value"))


def _init_unscaled(ctx: Context) -> bool:
    """An init whose scale ignores the fan-in (or a constant): the usual source of blow-ups."""
    return ctx.init in ("normal", "uniform", "constant")


def _norm_none(ctx: Context) -> bool:
    return _reg(ctx).get("norm", "none") in (None, "none")


def _batch_norm_remedy(ctx: Context) -> Fix | None:
    """Batch norm as a remedy, where the model has it (mlp, cnn, resnet) and it is off."""
    return _fix("regularization.norm=batch") if ctx.model in ("mlp", "cnn", "resnet") and _norm_none(ctx) else None


def _good_init(activation: str) -> str:
    """The init scheme whose variance law fits the activation: He for the ReLU family
    (Var(W) = 2/fan_in: relu passes half the variance), LeCun for SELU (1/fan_in: its
    self-normalising fixed point), Xavier for tanh, sigmoid and the linear ones."""
    if activation == "selu":
        return "lecun_normal"
    return "kaiming_normal" if activation in RELU_FAMILY else "xavier_uniform"


def _more_data(ctx: Context) -> Fix | str:
    n = ctx.section("data").get("n_train")
    if isinstance(n, int) and not isinstance(n, bool) and n > 0:
        return _fix(f"data.n_train={2 * n}", why="more data")
    return "more data"


def _skip_remedy(ctx: Context) -> Fix | None:
    model = ctx.section("model")
    if ctx.model == "mlp":
        # The same width, two layers per block: as deep as the mlp, with skips.
        widths = model.get("widths") or [model.get("width") or 64]
        depth = model.get("depth") if model.get("widths") is None else len(widths)
        blocks = max(1, int(depth or 2) // 2)
        return _fix(
            f"model={{name: resnet, blocks: {blocks}, width: {max(widths)}}}",
            why="a residual model: skip connections carry the gradient past every block",
        )
    if ctx.model == "resnet" and model.get("residual") is False:
        return _fix("model.residual=true", why="skip connections carry the gradient past every block")
    return None


# ---------------------------------------------------------------- the loss curve
def _finite_series(metrics: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [
        (m.get("step", i), m[key])
        for i, m in enumerate(metrics)
        if isinstance(m.get(key), (int, float)) and math.isfinite(m[key])
    ]
    if not pts:
        return np.zeros(0), np.zeros(0)
    steps, vals = zip(*pts)
    return np.asarray(steps, dtype=float), np.asarray(vals, dtype=float)


def _smooth(x: np.ndarray) -> np.ndarray:
    """Running median over SMOOTH_FRACTION of the series (at least 3 points)."""
    return _running_median(x, max(1, int(round(len(x) * SMOOTH_FRACTION / 2))))


def _running_median(x: np.ndarray, h: int) -> np.ndarray:
    """The median of x[i-h : i+h+1] at each i (windows cut at the ends), in one numpy call:
    a run stopped on its verdict (dlx.run.pruning) reads its curve at every log interval."""
    x = np.asarray(x, dtype=float)
    if not len(x):
        return x.copy()
    if np.isnan(x).any():  # never from _finite_series; kept exact (a NaN window is NaN) for any caller
        return np.array([np.median(x[max(0, i - h) : i + h + 1]) for i in range(len(x))])
    # NaN padding cuts the windows at the ends: nanmedian skips it.
    padded = np.concatenate([np.full(h, np.nan), x, np.full(h, np.nan)])
    return np.nanmedian(np.lib.stride_tricks.sliding_window_view(padded, 2 * h + 1), axis=1)


@dataclass
class _Curve:
    steps: np.ndarray
    raw: np.ndarray
    smooth: np.ndarray
    scale: float  # the yardstick: chance-level loss, else the first loss

    @property
    def end(self) -> float:
        k = max(1, int(round(len(self.smooth) * END_FRACTION)))
        return float(np.median(self.smooth[-k:]))


def _train_curve(ctx: Context) -> _Curve | None:
    steps, raw = _finite_series(ctx.metrics, "train_loss")
    if len(raw) < MIN_INTERVALS:
        return None
    smooth = _smooth(raw)
    scale = ctx.chance_loss if ctx.chance_loss and ctx.chance_loss > 0 else float(smooth[0])
    if not scale > 0:
        return None
    return _Curve(steps, raw, smooth, scale)


def _chance_text(ctx: Context) -> str:
    """The chance-level loss in words, with its value: "chance level (ln 3 = 1.1)"."""
    c = ctx.chance_loss
    if c is None:
        return "chance level (unknown)"
    if ctx.task == "regression":
        return f"predicting the mean ({_fmt(c)})"
    loss = ctx.section("train").get("loss", "cross_entropy")
    k = math.exp(c)
    if loss == "cross_entropy" and abs(k - round(k)) < 0.01 * k:
        return f"chance level (ln {round(k)} = {_fmt(c)})"
    return f"chance level ({_fmt(c)})"


# ---------------------------------------------------------------- the checks
def _divergence(ctx: Context) -> dict[str, Any] | None:
    """The trainer's divergence record, or one read from the series themselves
    (the first step with a non-finite gradient or loss) when none was passed."""
    if ctx.diverged:
        return ctx.diverged
    bad = ~np.isfinite(ctx.grad).all(axis=1) if ctx.grad.size else np.zeros(0, bool)
    if bad.any():
        i = int(np.argmax(bad))
        layers = [n for n, g in zip(ctx.names, ctx.grad[i]) if not np.isfinite(g)]
        return {
            "step": i + 1,
            "layer": layers[0] if layers else None,
            "layers": layers,
            "loss": None,
            "message": f"non-finite gradient at step {i + 1} in {', '.join(layers)} (first: {layers[0]})",
        }
    for m in ctx.metrics:
        loss = m.get("train_loss")
        if isinstance(loss, (int, float)) and not math.isfinite(loss):
            return {
                "step": m.get("step"),
                "layer": None,
                "layers": [],
                "loss": loss,
                "message": f"non-finite loss ({loss}) in the interval ending at step {m.get('step')}",
            }
    return None


def _diverged(ctx: Context) -> list[dict]:
    d = _divergence(ctx)
    if not d:
        return []
    finite_rows = np.isfinite(ctx.grad).all(axis=1) if ctx.grad.size else np.zeros(0, bool)
    peak = float(ctx.grad[finite_rows].max()) if finite_rows.any() else None
    step1 = float(ctx.grad[0].max()) if finite_rows.size and finite_rows[0] else None
    ev = {
        "step": d.get("step"),
        "layer": d.get("layer"),
        "loss": d.get("loss"),
        "max_finite_grad_norm": peak,
        "first_step_grad_norm": step1,
    }
    act = ctx.activation
    if step1 is not None and step1 > EXPLODING_NORM:
        cause = (
            f"gradients were already {_fmt(step1)} at step 1: {_init_text(ctx)} through "
            f"{_depth(ctx)} {act} layers scales the signal up at every layer"
        )
        remedy = _try(ctx, [_fix(f"init={_good_init(act)}"), _clip(ctx), _batch_norm_remedy(ctx)])
    else:
        cause = f"{_lr_text(ctx)}: steps too large for this loss surface"
        if not _clipped(ctx):
            cause += ", no gradient clipping"
        remedy = _try(
            ctx,
            [_lr_lower(ctx), _clip(ctx), _fix("optimizer.schedule=warmup")],
        )
    layers = list(d.get("layers") or ([d["layer"]] if d.get("layer") else []))
    peak_text = f"; largest finite gradient norm before it {_fmt(peak)}" if peak is not None else ""
    return [
        _verdict("diverged", layers, ev, f"diverged: {d.get('message', 'non-finite loss')}{peak_text}", cause, remedy)
    ]


def _symmetry(ctx: Context) -> list[dict]:
    spread = ctx.last.get("unit_spread")
    if spread is None or len(ctx.names) < 2:
        return []
    # The output layer is left out: its units are different classes, symmetric or not.
    same = [n for n, s in zip(ctx.names[:-1], spread[:-1]) if s is not None and s < SYMMETRY_SPREAD]
    if not same:
        return []
    init = ctx.section("init")
    act = ctx.activation
    frozen = init.get("name") == "zeros" and act in ZERO_AT_ZERO and not init.get("bias")
    if frozen:
        cause = (
            f"init: zeros with {act} (0 at 0) and zero biases: every hidden activation is 0, so no "
            f"hidden weight ever gets a gradient (only the output bias learns)"
        )
    elif init.get("name") in ("zeros", "constant"):
        cause = (
            f"init: {init.get('name')}: every unit of a layer starts identical, so each gets the "
            f"same gradient and they stay copies (a layer of many units acts as one)"
        )
    else:
        cause = "units of a layer started identical (or collapsed together): nothing tells them apart"
    # Measured (tests/test_symmetry_dropout.py): dropout's masks give each unit its own
    # gradient, so they break a constant init (and zeros with sigmoid), but slowly and
    # unreliably (tanh + constant 0.1 + dropout 0.2: test accuracy 0.33 / 0.98 / 0.95 over
    # three seeds); with zeros and an activation that is 0 at 0 they only mask zeros.
    dropout = (
        "dropout cannot break it here: every activation it masks is 0"
        if frozen
        else "dropout breaks it only slowly and unreliably (each unit's own mask gives it its own "
        "gradient): use a random init"
    )
    return [
        _verdict(
            "symmetry",
            same,
            {n: float(s) for n, s in zip(ctx.names, spread) if s is not None and math.isfinite(s)},
            f"symmetric units: every unit in {', '.join(same)} is identical (unit spread < {SYMMETRY_SPREAD:g})",
            cause,
            _try(
                ctx,
                [
                    _fix(f"init={_good_init(act)}", why=f"random weights break the symmetry; {dropout}"),
                    # A saturating unit also starts slow at depth: ReLU with He init learns at once.
                    _fix("activation=relu", "init=kaiming_normal") if act in SATURATING else None,
                ],
            ),
        )
    ]


def _across_layers(ctx: Context) -> list[dict]:
    grad, names = ctx.grad, ctx.names
    finite = grad[np.isfinite(grad).all(axis=1)] if len(grad) else grad
    if len(finite) < 1 or len(names) < 2:
        return []
    window = finite[int(len(finite) * SUSTAINED_FROM) :] if len(finite) >= 5 else finite
    med = np.median(window, axis=0)
    first, top = float(med[0]), float(med[-1])
    ratio = first / top if top > 0 else (math.inf if first > 0 else 1.0)
    ev = {
        "ratio_first_to_last": ratio,
        "median_grad_norm": {n: float(v) for n, v in zip(names, med)},
        "sustained_from_step": int(len(finite) * SUSTAINED_FROM) + 1 if len(finite) >= 5 else 1,
    }
    span = (
        f"sustained over the last {100 - int(SUSTAINED_FROM * 100)}% of steps"
        if len(finite) >= 5
        else f"over {len(finite)} step{'s' if len(finite) > 1 else ''}"
    )
    act, depth = ctx.activation, _depth(ctx)
    if ratio < VANISHING_RATIO:
        parts = [SATURATING.get(act, act), f"through {depth} layers", f"with {_init_text(ctx)}"]
        if ctx.model == "resnet" and ctx.section("model").get("residual") is False:
            parts.append("and no skip connections")
        elif _norm_none(ctx):
            parts.append("and no normalization")
        remedy = []
        if act in SATURATING:
            remedy.append(_fix("activation=relu", "init=kaiming_normal"))
        elif act in RELU_FAMILY and not _he_like(ctx.init):
            remedy.append(_fix("init=kaiming_normal"))
        remedy.append(_batch_norm_remedy(ctx))
        remedy.append(_skip_remedy(ctx))
        if ctx.section("optimizer").get("name") == "sgd":
            remedy.append(_adam("per-weight step sizes"))
        return [
            _verdict(
                "vanishing",
                [names[0], names[-1]],
                ev,
                f"vanishing gradients: {names[0]}'s gradient norm is {_fmt(ratio)} of "
                f"{names[-1]}'s (median {_fmt(first)} vs {_fmt(top)}, {span})",
                " ".join(parts),
                _try(ctx, remedy),
            )
        ]
    big = EXPLODING_NORM < float(med.max())
    if ratio > EXPLODING_RATIO or big:
        if ratio > EXPLODING_RATIO:
            layers = [names[0], names[-1]]
            msg = (
                f"exploding gradients: {names[0]}'s gradient norm is {_fmt(ratio)}x {names[-1]}'s "
                f"(median {_fmt(first)} vs {_fmt(top)}, {span})"
            )
        else:
            layers = [names[int(np.argmax(med))]]
            msg = (
                f"exploding gradients: median gradient norm {_fmt(float(med.max()))} at {layers[0]} "
                f"(above {_fmt(EXPLODING_NORM)}, {span})"
            )
        step1 = float(finite[0].max())
        if ctx.model in RECURRENT and (step1 > EXPLODING_NORM / 10 or _init_unscaled(ctx) or ctx.init == "orthogonal"):
            # Through time, not depth: W_hh multiplies the state (and dL/dh) at every step.
            steps = ctx.section("data").get("length")
            cause = (
                f"{_init_text(ctx)} with {act} in a {ctx.model}: the recurrent matrix W_hh scales the "
                f"state and its gradient by up to its largest singular value at each of "
                f"{steps or 'the'} time steps"
            )
            remedy = [
                _fix("init=orthogonal", why="gain 1: singular values 1")
                if ctx.init != "orthogonal" or ctx.section("init").get("gain", 1) != 1
                else None,
                _fix("init=default") if ctx.init != "default" else None,
                _clip(ctx),
                _fix("model.name=lstm", why="or gru: a gated, additive state") if ctx.model == "rnn" else None,
            ]
        elif step1 > EXPLODING_NORM / 10 or _init_unscaled(ctx):
            # Large from the start: the init (and depth) scale the signal up layer after layer.
            cause = f"{_init_text(ctx)} through {depth} {act} layers"
            remedy = [
                _fix(f"init={_good_init(act)}") if ctx.init != _good_init(act) else None,
                _clip(ctx),
                _batch_norm_remedy(ctx),
                _lr_lower(ctx),
            ]
        else:
            # Ordinary at step 1, huge later: the steps grew the weights.
            cause = f"gradients grew from {_fmt(step1)} at step 1 under {_lr_text(ctx)}"
            remedy = [_lr_lower(ctx), _clip(ctx), _batch_norm_remedy(ctx)]
        if not _clipped(ctx):
            cause += ", no gradient clipping"
        return [_verdict("exploding", layers, ev, msg, cause, _try(ctx, remedy))]
    return []


def _dead_units(ctx: Context) -> list[dict]:
    if not ctx.dead_check or ctx.last.get("act_dead") is None:
        return []
    batch = ctx.section("train").get("batch_size")
    if isinstance(batch, int) and not isinstance(batch, bool) and batch < MIN_DEAD_BATCH:
        return []
    dead = [(n, float(f)) for n, f in zip(ctx.act_names, ctx.last["act_dead"]) if f is not None and f >= DEAD_FRACTION]
    if not dead:
        return []
    worst = max(dead, key=lambda t: t[1])
    bias = ctx.section("init").get("bias")
    if isinstance(bias, (int, float)) and bias < 0:
        # Every pre-activation starts pushed down by the bias: the units are off from step 0.
        cause = f"a negative init bias ({bias}) pushes relu units below zero for every input"
        remedy = [_fix("init.bias=0"), _fix("activation=leaky_relu"), _batch_norm_remedy(ctx)]
    else:
        cause = f"relu units pushed below zero for every input, with {_lr_text(ctx)}"
        remedy = [
            _fix("activation=leaky_relu") if ctx.activation != "leaky_relu" else None,
            _lr_lower(ctx, 3),
            _fix("init=kaiming_normal") if not _he_like(ctx.init) else None,
            _batch_norm_remedy(ctx),
        ]
    return [
        _verdict(
            "dead_units",
            [n for n, _ in dead],
            {n: f for n, f in dead},
            f"dead units: {len(dead)} layer(s) with >= {int(DEAD_FRACTION * 100)}% of their ReLUs off "
            f"for the whole batch (worst {worst[0]}: {worst[1]:.0%})",
            cause,
            _try(ctx, remedy),
        )
    ]


def _saturation(ctx: Context, curve: _Curve | None) -> list[dict]:
    if ctx.last.get("act_saturated") is None:
        return []
    sat = [
        (n, float(f))
        for n, f in zip(ctx.act_names, ctx.last["act_saturated"])
        if f is not None and f >= SATURATED_FRACTION
    ]
    if not sat:
        return []
    # Only while it hurts (see SATURATION_STUCK): the loss at the end still near chance
    # (the smoothed curve's end, or the last interval's loss for a run too short for one).
    _, losses = _finite_series(ctx.metrics, "train_loss")
    end = curve.end if curve is not None else (float(losses[-1]) if len(losses) else None)
    if end is None or not ctx.chance_loss or end < SATURATION_STUCK * ctx.chance_loss:
        return []
    worst = max(sat, key=lambda t: t[1])
    act = ctx.activation
    cause = f"{SATURATING.get(act, act)} with {_init_text(ctx)}: pre-activations too large"
    if _norm_none(ctx):
        cause += ", no normalization"
    return [
        _verdict(
            "saturation",
            [n for n, _ in sat],
            {**{n: f for n, f in sat}, "final_train_loss": end, "chance_loss": ctx.chance_loss},
            f"saturation: {len(sat)} {act} layer(s) with >= {int(SATURATED_FRACTION * 100)}% of "
            f"outputs at a bound (worst {worst[0]}: {worst[1]:.0%}) while the train loss is "
            f"still {_fmt(end)} ({end / ctx.chance_loss:.0%} of {_chance_text(ctx)})",
            cause,
            _try(
                ctx,
                [
                    _fix(f"init={_good_init(act)}") if ctx.init != _good_init(act) else None,
                    _batch_norm_remedy(ctx),
                    _fix("activation=relu", "init=kaiming_normal"),
                ],
            ),
        )
    ]


def _sharpness_over(ctx: Context) -> tuple[str, dict[str, Any]] | None:
    """With the sharpness instrument on: the measurement where the sharpness stood furthest
    above the lr's stability threshold, as text for an lr verdict and its evidence (edge
    of stability, Cohen et al. 2021: past the threshold a step leaves the local quadratic's
    stable range). None when it never went past it, or was not measured."""
    best = None
    for r in ctx.instruments:
        sh = r.get("sharpness") or {}
        top = sh.get("preconditioned_top") if sh.get("preconditioned") else sh.get("top")
        thr, lr = sh.get("threshold"), r.get("lr")
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (top, thr, lr)) or thr <= 0:
            continue
        if top > thr and (best is None or top / thr > best[0]):
            best = (top / thr, r["step"], top, thr, lr, sh)
    if best is None:
        return None
    ratio, step, top, thr, lr, sh = best
    which = "the preconditioned sharpness" if sh.get("preconditioned") else "the sharpness (top Hessian eigenvalue)"
    text = (
        f"; {which} at step {step} was {_fmt(top)}: sharpness x lr = {_fmt(top * lr)} > {_fmt(thr * lr)} "
        f"({sh.get('rule')}), so each step leaves the local quadratic's stable range (edge of stability)"
    )
    return text, {"sharpness": top, "sharpness_threshold": thr, "sharpness_step": step, "sharpness_ratio": ratio}


def _lr_too_high(ctx: Context, curve: _Curve | None, sane: bool) -> list[dict]:
    d = _divergence(ctx)
    if d is not None:
        # A sane start that went non-finite: the steps blew it up, not the init.
        finite = ctx.grad[np.isfinite(ctx.grad).all(axis=1)] if ctx.grad.size else ctx.grad
        if not sane or not len(finite):
            return []
        step1, peak = float(finite[0].max()), float(finite.max())
        ev = {
            "diverged_step": d.get("step"),
            "first_step_grad_norm": step1,
            "max_finite_grad_norm": peak,
            "grad_growth": peak / step1 if step1 > 0 else None,
        }
        cause = _lr_text(ctx) + ("" if _clipped(ctx) else ", no gradient clipping")
        sharp = _sharpness_over(ctx)
        if sharp:
            ev.update(sharp[1])
        return [
            _verdict(
                "lr_too_high",
                [],
                ev,
                f"learning rate too high: the loss went non-finite at step {d.get('step')}, with a sane "
                f"start (init check in range, step-1 gradient norm {_fmt(step1)}) and gradients growing "
                f"to {_fmt(peak)} before it" + (sharp[0] if sharp else ""),
                cause + ": each step overshoots, and the overshoot grows",
                _try(
                    ctx,
                    [_lr_lower(ctx, 10, "a tenth"), _fix("optimizer.schedule=warmup"), _clip(ctx)],
                ),
            )
        ]
    if curve is None:
        return []
    s, raw = curve.smooth, curve.raw
    i_min = int(np.argmin(s))
    rise = curve.end - float(s[i_min])
    half = raw[len(raw) // 2 :]
    swing = float(np.median(np.abs(np.diff(half)))) if len(half) >= 2 else 0.0
    ev = {
        "min_loss": float(s[i_min]),
        "min_step": int(curve.steps[i_min]),
        "final_loss": curve.end,
        "rise": rise,
        "swing": swing,
        "yardstick": curve.scale,
    }
    peak_i = int(np.argmax(raw))
    low = _running_median(raw, 1)
    finite = ctx.grad[np.isfinite(ctx.grad).all(axis=1)] if ctx.grad.size else ctx.grad
    growth = float(finite.max() / finite[0].max()) if len(finite) and finite[0].max() > 0 else 1.0
    ev.update(peak_loss=float(raw[peak_i]), peak_step=int(curve.steps[peak_i]), grad_growth=growth)
    if raw[peak_i] > LR_SPIKE * curve.scale and growth > LR_GRAD_GROWTH:
        msg = (
            f"learning rate too high: the train loss blew up to {_fmt(float(raw[peak_i]))} "
            f"({raw[peak_i] / curve.scale:.0f}x {_yard(ctx)}) in the interval ending at step "
            f"{int(curve.steps[peak_i])}, while the gradient norm grew {growth:.0f}x from step 1"
        )
    elif rise > LR_RISE * max(curve.scale, float(s[i_min])):
        msg = (
            f"learning rate too high: the train loss rose from its minimum {_fmt(float(s[i_min]))} "
            f"(step {int(curve.steps[i_min])}) to {_fmt(curve.end)} at the end "
            f"(+{rise / curve.scale:.0%} of {_yard(ctx)})"
        )
    elif len(half) and swing > LR_SWING * max(curve.scale, float(np.median(half))):
        msg = (
            f"learning rate too high: the train loss oscillates, jumping {_fmt(swing)} between log "
            f"intervals over the last half ({swing / curve.scale:.0%} of {_yard(ctx)})"
        )
    elif (
        sane
        and ctx.chance_loss
        and float(low.min()) < LR_RELAPSE_FROM * ctx.chance_loss
        and curve.end >= NOT_LEARNING_FRACTION * ctx.chance_loss
    ):
        # Learned, then lost it all: big steps knocked it out (and often killed its units).
        # The low point is read from a 3-interval running median: a learning phase of a
        # few intervals is real, and the run-wide smoothing would erase it.
        j = int(np.argmin(low))
        msg = (
            f"learning rate too high: the train loss fell to {_fmt(float(low[j]))} "
            f"(step {int(curve.steps[j])}), then climbed back to {_fmt(curve.end)}, "
            f"{curve.end / ctx.chance_loss:.0%} of {_chance_text(ctx)}, and stayed there"
        )
    else:
        return []
    ev["sane_start"] = sane
    sharp = _sharpness_over(ctx)
    if sharp:
        msg += sharp[0]
        ev.update(sharp[1])
    cause = _lr_text(ctx)
    if not _clipped(ctx):
        cause += ", no gradient clipping"
    big = raw[peak_i] > LR_SPIKE * curve.scale or curve.end >= NOT_LEARNING_FRACTION * curve.scale
    return [
        _verdict(
            "lr_too_high",
            [],
            ev,
            msg,
            cause + ": each step overshoots the minimum",
            _try(
                ctx,
                [
                    _lr_lower(ctx, 10, "a tenth") if big else _lr_lower(ctx, 3, "a third"),
                    _fix("optimizer.schedule=warmup"),
                    _fix("optimizer.schedule=cosine"),
                    _clip(ctx),
                ],
            ),
        )
    ]


def _yard(ctx: Context) -> str:
    return _chance_text(ctx) if ctx.chance_loss else "the first interval's loss"


def _not_learning(ctx: Context, curve: _Curve | None, found: list[dict]) -> list[dict]:
    if curve is None or not ctx.chance_loss:
        return []
    frac = curve.end / ctx.chance_loss
    if frac < NOT_LEARNING_FRACTION:
        return []
    classes = ctx.section("data").get("classes")
    if not isinstance(classes, int) and ctx.task == "classification":
        classes = int(round(np.exp(ctx.chance_loss)))  # balanced classes: chance loss = ln C
    _, accs = _finite_series(ctx.metrics, "test_acc")
    if not len(accs):
        _, accs = _finite_series(ctx.metrics, "train_acc")
    if ctx.task == "classification" and len(accs) and isinstance(classes, int) and classes > 1:
        floor = 1 / classes
        if float(accs[-1]) >= floor + NOT_LEARNING_ACC_MARGIN * (1 - floor):
            return []
    steps = int(curve.steps[-1])
    ev = {"final_train_loss": curve.end, "chance_loss": ctx.chance_loss, "fraction_of_chance": frac, "steps": steps}
    causes = [v["kind"] for v in found if v["kind"] not in ("not_learning", "overfitting", "healthy")]
    if causes:
        cause = f"the {_list([LABEL[c] for c in causes], 'and')} above"
        remedy = f"the remedy for the {LABEL[causes[0]]} above first."
    else:
        opt = ctx.section("optimizer")
        cause = f"{_lr_text(ctx)} for {steps} steps"
        if ctx.model in RECURRENT:
            cause += f" ({ctx.model}: a long-range task may need many more steps to leave the plateau)"
        elif opt.get("name") == "sgd" and _small_lr(ctx):
            cause += ": sgd steps this small barely move the weights"
        remedy = _try(
            ctx,
            [
                _more_steps(ctx),
                (_lr_times(ctx, 10) if _small_lr(ctx) else _lr_times(ctx, 3))
                if opt.get("name") == "sgd"
                else "a different optimizer.lr",
                _adam() if opt.get("name") != "adam" else None,
                _fix("model.name=lstm", why="or gru") if ctx.model == "rnn" else None,
            ],
        )
    return [
        _verdict(
            "not_learning",
            [],
            ev,
            f"not learning: the train loss ends at {_fmt(curve.end)} after {steps} steps, "
            f"{frac:.0%} of {_chance_text(ctx)}",
            cause,
            remedy,
        )
    ]


def _overfitting(ctx: Context, curve: _Curve | None) -> list[dict]:
    steps, test = _finite_series(ctx.metrics, "test_loss")
    if len(test) < OVERFIT_MIN_EVALS or curve is None:
        return []
    i_min = int(np.argmin(test))
    lo, end = float(test[i_min]), float(np.min(test[-OVERFIT_LASTING:]))
    rise = end - lo
    train_at_min = float(np.interp(steps[i_min], curve.steps, curve.smooth))
    train_end = float(curve.smooth[-1])
    rising = (
        i_min <= len(test) - 1 - OVERFIT_AFTER_MIN
        and rise >= OVERFIT_REL_RISE * lo
        and rise >= OVERFIT_ABS_RISE * curve.scale
        and train_end <= (1 - OVERFIT_TRAIN_FALL) * train_at_min
    )
    gap0 = float(test[0]) - float(np.interp(steps[0], curve.steps, curve.smooth))
    gap = end - train_end  # end: the lasting level of the last evaluations, as above
    wide = (
        end >= OVERFIT_GAP_RATIO * max(train_end, 1e-12)
        and gap >= OVERFIT_GAP_ABS * curve.scale
        and gap >= 2 * max(gap0, 0.0)
    )
    if not (rising or wide):
        return []
    last = float(test[-1])
    ev = {
        "test_loss_min": lo,
        "test_min_step": int(steps[i_min]),
        "test_loss_final": last,
        "train_loss_at_test_min": train_at_min,
        "train_loss_final": train_end,
        "gap_at_test_min": lo - train_at_min,
        "gap_final": last - train_end,
    }
    reg, data = _reg(ctx), ctx.section("data")
    used = [f"{k}={reg[k]}" for k in ("l2", "dropout", "dropconnect") if reg.get(k)]
    n = data.get("n_train")
    cause = f"{ctx.model} fitting {f'{n} training samples' if n else 'the training set'}"
    cause += f" with {', '.join(used)}" if used else " with no regularization (l2, dropout 0)"
    if not reg.get("early_stopping"):
        cause += ", no early stopping"
    ev.update(gap_first_eval=gap0)
    msg = (
        f"overfitting: the test loss rose from {_fmt(lo)} (step {int(steps[i_min])}) to "
        f"{_fmt(last)} while the train loss fell from {_fmt(train_at_min)} to {_fmt(train_end)}"
        if rising
        else f"overfitting: the test loss ends at {_fmt(float(test[-1]))}, {float(test[-1]) / max(train_end, 1e-12):.3g}x "
        f"the train loss {_fmt(train_end)}; the gap grew from {_fmt(gap0)} at the first evaluation to {_fmt(gap)}"
    )
    return [
        _verdict(
            "overfitting",
            [],
            ev,
            msg,
            cause,
            _try(
                ctx,
                [
                    _fix("regularization.l2=1.0e-4")
                    if not reg.get("l2")
                    else _fix(f"regularization.l2={_number(float(reg['l2']) * 10)}"),
                    _fix("regularization.dropout=0.2") if not reg.get("dropout") else None,
                    _fix("regularization.early_stopping={patience: 5}") if not reg.get("early_stopping") else None,
                    _more_data(ctx),
                    "a smaller model",
                ],
            ),
        )
    ]


def _gain_rows(ctx: Context) -> list[dict[str, Any]]:
    """The longest chain (in compounding: the largest |log| of its product) of consecutive
    init-check rows, each fed by the one before, whose gain the theory gives and the
    measurement agrees with. A row without a gain (a skip connection, a norm or a pool in
    between) ends a chain: a residual net's gains never compound past one block."""
    chains: list[list[dict[str, Any]]] = [[]]
    for r in ctx.init_check or []:
        if (
            r.get("predicted_gain") is not None
            and r.get("verdict") in ("kept", "grows", "shrinks")
            and r["predicted_gain"] > 0
        ):
            chains[-1].append(r)
        elif chains[-1]:
            chains.append([])
    return max(chains, key=lambda c: abs(sum(math.log(r["predicted_gain"]) for r in c)))


def _init_scale(ctx: Context) -> list[dict]:
    """The init, read from the step-0 init check: a signal that shrinks or grows by a
    constant factor per layer, or saturating units from the first step."""
    from dlx.run.initcheck import SATURATING_STD

    act, scheme = ctx.activation, ctx.init
    fit = _good_init(act)
    rows = _gain_rows(ctx)
    gains = np.array([r["predicted_gain"] for r in rows], dtype=float)
    total = float(np.prod(gains)) if len(gains) else 1.0
    if len(gains) >= 2 and not 1 / INIT_SIGNAL_FACTOR <= total <= INIT_SIGNAL_FACTOR:
        g = float(np.exp(np.log(gains).mean()))  # the per-layer factor (geometric mean)
        mid = rows[len(rows) // 2]
        scale = mid["fan_in"] * mid["weight_var"]
        c = g / scale if scale > 0 else float("nan")
        way = "shrinks" if total < 1 else "grows"
        ev = {
            "gain_per_layer": g,
            "layers": len(rows),
            "signal_factor": total,
            "scheme": scheme,
            "weight_var_times_fan_in": scale,
            "activation_passes": c,
            "gains": {r["layer"]: r["predicted_gain"] for r in rows},
        }
        msg = (
            f"badly scaled init: {scheme} {way} the signal's variance {_fmt(g)}x at each of {len(rows)} "
            f"layers at step 0, so the top layer starts with {_fmt(total)} of the first layer's "
            f"(the init check's gains)"
        )
        cause = (
            f"init: {scheme} draws Var(W) = {mid.get('rule') or '?'} = {_fmt(scale)}/fan_in, and {act} "
            f"passes on {_fmt(c)}x of its input's variance: each layer multiplies it by {_fmt(g)}"
        )
        if act in RELU_FAMILY and way == "shrinks":
            cause += " (a ReLU zeroes half its inputs: Var(W) = 2/fan_in keeps the gain at 1, He et al. 2015)"
        remedy = [
            _fix(f"init={fit}", why=f"its variance keeps the gain near 1 for {act}") if scheme != fit else None,
            _batch_norm_remedy(ctx),
            _skip_remedy(ctx),
        ]
        return [_verdict("init_scale", [r["layer"] for r in rows], ev, msg, cause, _try(ctx, remedy))]
    sat = SATURATING_STD.get(act)
    checked = [r for r in (ctx.init_check or [])[:-1] if r.get("measured_var") is not None]
    # The check measures W x; a norm layer between it and the activation (regularization.norm,
    # where the model has one) hands the activation unit-variance inputs whatever the init:
    # nothing saturates at step 0 (measured: N(0, 1) init, 10 tanh layers, batch norm: 0.965).
    normed = not _norm_none(ctx) and "regularization.norm" not in _unhonoured_keys(ctx)
    if sat and checked and not normed:
        over = [r for r in checked if r["measured_var"] > sat * sat]
        if len(over) >= max(1, INIT_SATURATED_LAYERS * len(checked)):
            stds = sorted(math.sqrt(r["measured_var"]) for r in over)
            med = stds[len(stds) // 2]
            ev = {
                "saturated_layers": [r["layer"] for r in over],
                "preactivation_std_median": med,
                "saturates_beyond_std": sat,
                "scheme": scheme,
                "preactivation_std": {r["layer"]: math.sqrt(r["measured_var"]) for r in checked},
            }
            msg = (
                f"badly scaled init: {scheme} starts {len(over)} of {len(checked)} {act} layers with "
                f"pre-activations of std {_fmt(med)} (median) at step 0, beyond {act}'s saturation "
                f"point (~{sat:g}): the units start saturated, their derivatives near 0"
            )
            cause = f"{_init_text(ctx)} is too large for {SATURATING.get(act, act)}"
            remedy = [
                _fix(f"init={fit}", why="pre-activations of std ~1") if scheme != fit else None,
                _batch_norm_remedy(ctx),
            ]
            return [_verdict("init_scale", ev["saturated_layers"], ev, msg, cause, _try(ctx, remedy))]
    return []


def _sane_start(ctx: Context, found: list[dict]) -> bool:
    """The init and the first step are in range, so what went wrong later was the steps."""
    if any(v["kind"] in ("init_scale", "symmetry") for v in found):
        return False
    if not ctx.grad.size or not np.isfinite(ctx.grad[0]).all():
        return bool(ctx.grad.size == 0)
    g = ctx.grad[0]
    if float(g.max()) > EXPLODING_NORM / 10:
        return False
    if len(g) >= 2 and g[-1] > 0:
        return 1 / SANE_STEP1_RATIO <= float(g[0] / g[-1]) <= SANE_STEP1_RATIO
    return True


def _lr_factor(ratio: float) -> float:
    """How much larger the lr should be to bring an update/weight ratio to ~1e-3: 3x to 100x."""
    return float(min(100.0, max(3.0, 10 ** round(math.log10(1e-3 / ratio))))) if ratio > 0 else 10.0


def _lr_too_low(ctx: Context, out: dict[str, Any], found: list[dict]) -> list[dict]:
    """Steps so small that the weights barely move, in a run far from a fit with nothing else wrong."""
    if found or out.get("kind") not in ("not_learning", "slow"):
        return []
    ratio = ctx.last.get("update_ratio")
    vals = [float(x) for x in (ratio if ratio is not None else []) if x is not None and math.isfinite(float(x))]
    if not vals:
        return []
    med = float(np.median(vals))
    if not 0 < med < LR_LOW_UPDATE:
        return []
    lr = ctx.section("optimizer").get("lr")
    f = _lr_factor(med)
    new_lr = _lr_times(ctx, f, f"{f:.0f}x")
    ev = {
        "update_ratio_median": med,
        "update_ratio": dict(zip(ctx.names, vals)),
        "lr": lr,
        "progress": out.get("progress"),
        "suggested_factor": f,
    }
    return [
        _verdict(
            "lr_too_low",
            [],
            ev,
            f"learning rate too low: each step changes a layer's weights by {_fmt(med)} of their size "
            f"(median over layers; ~1e-3 is typical), and the run ends {out['where']}",
            f"{_lr_text(ctx)}: steps too small to get anywhere in {out.get('steps', '?')} steps",
            _try(
                ctx,
                [
                    new_lr,
                    _adam() if ctx.section("optimizer").get("name") in ("sgd",) else None,
                    _more_steps(ctx),
                ],
            ),
        )
    ]


def outcome(ctx: Context, curve: _Curve | None = None) -> dict[str, Any]:
    """How far the run got, apart from how its gradients flowed: kind (converged | still_improving |
    slow | not_learning | diverged | too_short), progress (1 - final train loss / chance: 0 at
    chance, 1 at a perfect fit), accuracy_progress (the same from chance accuracy to 1), the
    fall over the last half, a plateau at chance it escaped, and a one-line text."""
    if _divergence(ctx):
        return {"kind": "diverged", "text": "diverged: no final numbers", "where": "diverged"}
    curve = curve if curve is not None else _train_curve(ctx)
    if curve is None:
        return {
            "kind": "too_short",
            "text": f"too short to judge how far it got (fewer than {MIN_INTERVALS} log intervals)",
            "where": "too short to judge",
        }
    c = ctx.chance_loss
    steps = int(curve.steps[-1])
    end = curve.end
    half = curve.smooth[len(curve.smooth) // 2]
    falling = float(half - end) / curve.scale
    res: dict[str, Any] = {
        "steps": steps,
        "final_train_loss": end,
        "fall_last_half": falling,
        "progress": None,
        "accuracy_progress": None,
        "plateau": None,
    }
    parts = [f"train loss {_fmt(float(curve.raw[0]))} -> {_fmt(end)} in {steps} steps"]
    if c:
        res["progress"] = p = max(0.0, 1 - end / c)
        parts.append(f"{p:.0%} of the way from {'the mean' if ctx.task == 'regression' else 'chance'} ({_fmt(c)}) to 0")
    acc_key = "test_acc" if any("test_acc" in m for m in ctx.metrics) else "train_acc"
    _, accs = _finite_series(ctx.metrics, acc_key)
    classes = _classes(ctx)
    if ctx.task == "classification" and len(accs) and classes:
        floor = 1 / classes
        res["accuracy_progress"] = (float(accs[-1]) - floor) / (1 - floor)
        parts.append(f"{acc_key.split('_')[0]} accuracy {float(accs[-1]):.3g} (chance {floor:.2g})")
    # A plateau at chance that the loss later left.
    if c:
        stuck = curve.smooth >= NOT_LEARNING_FRACTION * c
        left = np.flatnonzero(~stuck)
        if stuck[0] and len(left):
            k = int(left[0])
            if k >= PLATEAU_MIN_INTERVALS and k >= PLATEAU_FRACTION * len(stuck):
                res["plateau"] = {"until_step": int(curve.steps[k]), "intervals": k}
    p, pa = res["progress"], res["accuracy_progress"]
    far = p is not None and p < SLOW_PROGRESS and (pa is None or pa < SLOW_PROGRESS)
    if c and end >= NOT_LEARNING_FRACTION * c and (pa is None or pa < NOT_LEARNING_ACC_MARGIN):
        kind = "not_learning"
    elif far:
        kind = "slow"
    elif falling > STILL_FALLING:
        kind = "still_improving"
    else:
        kind = "converged"
    trend = (
        f"still falling ({_fmt(falling * curve.scale)} over the last half)"
        if falling > STILL_FALLING
        else "flat over the last half"
    )
    parts.insert(2 if c else 1, trend)
    res["kind"] = kind
    word = {
        "not_learning": "not learning",
        "slow": "far from a fit",
        "still_improving": "still improving",
        "converged": "converged",
    }[kind]
    text = f"{word}: {', '.join(parts)}"
    if res["plateau"]:
        text += f"; it sat at chance level until step {res['plateau']['until_step']} before it began to learn"
    res["text"] = text
    res["where"] = (
        f"{p:.0%} of the way from chance level to a fit after {steps} steps"
        if p is not None
        else f"at train loss {_fmt(end)} after {steps} steps"
    )
    return res


def _classes(ctx: Context) -> int | None:
    classes = ctx.section("data").get("classes")
    if not isinstance(classes, int) and ctx.task == "classification" and ctx.chance_loss:
        classes = int(round(np.exp(ctx.chance_loss)))  # balanced classes: chance loss = ln C
    return classes if isinstance(classes, int) and classes > 1 else None


def _slow(ctx: Context, out: dict[str, Any], found: list[dict]) -> list[dict]:
    """A run that ends far from a fit with no alarm: never just "healthy"."""
    if out.get("kind") != "slow" or any(v["kind"] in ("not_learning", "lr_too_low") for v in found):
        return []
    opt = ctx.section("optimizer")
    falling = out["fall_last_half"] > STILL_FALLING
    ev = {k: out.get(k) for k in ("progress", "accuracy_progress", "fall_last_half", "final_train_loss", "steps")}
    more = _more_steps(ctx)
    up = _lr_times(ctx, 3, "3x")
    if falling:
        cause = f"{_lr_text(ctx)}: still falling after {out['steps']} steps, at this pace it needs many more"
        remedy = [more, up, _adam() if opt.get("name") != "adam" else None]
    else:
        cause = f"{_lr_text(ctx)}: the loss has flattened far from a fit (too small a step, or too small a model)"
        remedy = [
            up,
            _adam() if opt.get("name") != "adam" else None,
            "a wider or deeper model (model.width / model.depth)",
        ]
    return [
        _verdict(
            "slow",
            [],
            ev,
            f"slow: the run ends {out['where']}, {'still falling' if falling else 'flat'} over its last half",
            cause,
            _try(ctx, remedy),
        )
    ]


def _order(found: list[dict], sane: bool) -> list[dict]:
    """Root causes first, each symptom after them, naming its root (see SYMPTOMS)."""
    rank = {k: float(i) for i, k in enumerate(KINDS)}
    if not sane:
        # A start out of range is the first suspect: the lr's verdict follows the structural ones.
        rank["lr_too_high"] = rank["diverged"] - 0.5
    found = sorted(found, key=lambda v: rank[v["kind"]])
    roots: list[dict] = []
    for v in found:
        root = next((r for r in roots if v["kind"] in SYMPTOMS.get(r["kind"], ())), None)
        if root is None:
            roots.append(v)
            continue
        v["symptom_of"] = root["kind"]
        v["cause"] = f"a symptom of the {LABEL[root['kind']]} above"
        v["remedy"] = f"the remedy for the {LABEL[root['kind']]} above."
        v["fixes"] = []  # the root's fixes fix it
    return roots + [v for v in found if v.get("symptom_of")]


def _time_rows(ctx: Context) -> list[tuple[str, np.ndarray]]:
    tg = ctx.time_grad
    if tg is None or len(tg) == 0:
        return []
    rows = [np.asarray([np.nan if v is None else v for v in row], dtype=float) for row in tg]
    # Rows follow the probed recurrent layers (every probed layer but the head `out`).
    names = [n for n in ctx.names if n != "out"]
    return [(names[i] if i < len(names) else f"recurrent layer {i}", r) for i, r in enumerate(rows)]


def _vanishing_through_time(ctx: Context) -> list[dict]:
    rows = _time_rows(ctx)
    if not rows:
        return []
    tbptt = ctx.section("train").get("tbptt")
    hits, ev = [], {}
    for name, row in rows:
        if len(row) < 2 or not np.isfinite(row).all():
            continue
        # A reverse-direction layer ends its pass at t = 1: its gradient flows toward t = T.
        back = row[::-1] if name.endswith("_reverse") else row
        near = float(back[-1])
        if not near > 0:
            continue
        T = len(back)
        # Truncated BPTT cuts the path on purpose: judge only the steps it keeps.
        span = min(int(tbptt), T) if tbptt else T
        far = float(back[T - span])
        ratio = far / near
        within = np.flatnonzero(back >= TIME_REACH * near)
        reach = T - int(within[0]) if len(within) else 1
        # The per-step rate from the farthest step that still got any gradient: float32
        # rounds anything below ~1e-45 to 0, which a plain RNN reaches within 100 steps.
        alive = np.flatnonzero(back[T - span :] > 0)
        k = T - span + int(alive[0]) if len(alive) else T - 1
        decay = float((back[k] / near) ** (1 / (T - 1 - k))) if T - 1 - k > 0 else 1.0
        ev[name] = {
            "ratio_first_to_last": ratio,
            "first": far,
            "last": near,
            "steps": span,
            "reach_steps": reach,
            "decay_per_step": decay,
        }
        if ratio < TIME_VANISHING_RATIO:
            hits.append(name)
    if not hits:
        return []
    worst = min(hits, key=lambda n: ev[n]["ratio_first_to_last"])
    e = ev[worst]
    model, act = ctx.model, ctx.activation
    span = e["steps"]
    if model == "rnn":
        cause = (
            f"rnn with {act} over {span} steps: each step multiplies the gradient by W_hh^T and "
            f"{act}' (<= 1), so it shrinks geometrically ({_fmt(e['decay_per_step'])} per step here)"
        )
    else:
        cause = (
            f"{model} over {span} steps: its gates have not (yet) learned to keep the cell state; "
            f"the gradient still shrinks {_fmt(e['decay_per_step'])} per step"
        )
    if model == "rnn":
        remedy = [_fix("model.name=lstm", why="or gru: a gated, additive state carries the gradient")]
    else:
        remedy = [
            _more_steps(ctx, "gates open as they learn"),
            _fix("init={name: default, bias: 1.0}", why="forget gates open"),
        ]
    remedy.append("an attention model that sees every step directly")
    text, fixes = _try(ctx, remedy)
    clip = f"clip_norm: {_reg(ctx)['clip_norm']} (set here)" if _reg(ctx).get("clip_norm") else "gradient clipping"
    tail = (
        f" Not a fix: {clip} only tames exploding gradients, and a shorter train.tbptt cuts the long path on purpose."
    )
    return [
        _verdict(
            "vanishing_through_time",
            hits,
            ev,
            f"vanishing gradient through time: in {worst}, ||dL/dh|| at t={'T' if worst.endswith('_reverse') else 1} "
            f"is {_fmt(e['ratio_first_to_last']) if e['first'] > 0 else '0 (underflow)'} of the last step's ({_fmt(e['first'])} vs "
            f"{_fmt(e['last'])}); it keeps >= {TIME_REACH:g} of it only {e['reach_steps']} of "
            f"{span} steps back",
            cause,
            (text + tail, fixes),
        )
    ]


def _healthy(ctx: Context, curve: _Curve | None, out: dict[str, Any] | None = None) -> dict:
    finite = ctx.grad[np.isfinite(ctx.grad).all(axis=1)] if len(ctx.grad) else ctx.grad
    ev: dict[str, Any] = {}
    parts = []
    if finite.size and len(ctx.names) >= 2:
        med = np.median(finite[int(len(finite) * SUSTAINED_FROM) :], axis=0)
        if med[-1] > 0:
            ev["ratio_first_to_last"] = float(med[0] / med[-1])
            parts.append(f"{ctx.names[0]}/{ctx.names[-1]} gradient ratio {_fmt(ev['ratio_first_to_last'])}")
    if curve is not None:
        ev["first_loss"], ev["final_loss"] = float(curve.raw[0]), curve.end
    detail = f" ({', '.join(parts)})" if parts else ""
    # What it learned leads; how its gradients flowed follows.
    if out:
        ev["outcome"] = out.get("kind")
    if out and out.get("kind") == "too_short":
        # Nothing says how far it got: do not call the run healthy, only its gradients.
        return _verdict(
            "healthy",
            [],
            ev,
            f"healthy gradients, outcome unknown: {out['text']}; gradients reach "
            f"every layer at comparable sizes{detail}",
        )
    learned = f"{out['text']}; " if out and out.get("text") else ""
    return _verdict("healthy", [], ev, f"healthy: {learned}gradients reach every layer at comparable sizes{detail}")


def diagnose(ctx: Context) -> list[dict]:
    """Every verdict for one run, root causes first, then their symptoms (each naming its
    root in "symptom_of"); [healthy] only when none fired and the run got near a fit."""
    out: list[dict] = []
    out += _symmetry(ctx)
    out += _init_scale(ctx)
    sane = _sane_start(ctx, out)
    out += _diverged(ctx)
    out += _across_layers(ctx)
    out += _vanishing_through_time(ctx)
    # The loss curve is cut short by a divergence: its verdicts would only echo it.
    diverged = any(v["kind"] == "diverged" for v in out)
    curve = None if diverged else _train_curve(ctx)
    out += _lr_too_high(ctx, curve, sane)
    out += _dead_units(ctx)
    out += _saturation(ctx, curve)
    result = outcome(ctx, curve)
    out += _lr_too_low(ctx, result, out)
    out += _not_learning(ctx, curve, out)
    out += _slow(ctx, result, out)
    out += _overfitting(ctx, curve)
    out += _ignored_class(ctx)
    if not out:
        out.append(_healthy(ctx, curve, result))
    return _order(out, sane)


# A class is "ignored" when its test recall is at most IGNORED_RECALL while the accuracy
# over all classes is at least IGNORED_HIDDEN_BY: the average hides it.
IGNORED_RECALL = 0.3
IGNORED_HIDDEN_BY = 0.7


def _ignored_class(ctx: Context) -> list[dict]:
    c = ctx.classes
    if not c:
        return []
    recall, counts = c.get("recall") or [], c.get("test_counts") or []
    total = sum(counts)
    if not total:
        return []
    acc = sum(r * n for r, n in zip(recall, counts) if r is not None) / total
    low = [i for i, r in enumerate(recall) if r is not None and r <= IGNORED_RECALL]
    if not low or acc < IGNORED_HIDDEN_BY:
        return []
    train = c.get("train_counts") or []
    k = low[0]
    share = train[k] / max(sum(train), 1) if train else None
    most = max(train) if train else 0
    ev = {"class": k, "recall": recall[k], "accuracy": acc, "train_share": share, "train_counts": train}
    cause = (
        f"class {k} is {share:.1%} of the training set ({train[k]} samples against {most} of the commonest): "
        f"never predicting it costs the loss little"
        if share is not None
        else None
    )
    balance = (ctx.section("train") or {}).get("balance", "none")
    items: list[str | Fix] = [
        _fix("train.balance=weighted", why="the loss weighs each class by 1/its frequency"),
        _fix("train.balance=oversample"),
    ]
    if balance != "none":
        items = [f"a stronger remedy than train.balance: {balance} (more data of class {k}, or train longer)"]
    return [
        _verdict(
            "ignored_class",
            [],
            ev,
            f"an ignored class: the test accuracy is {acc:.2f}, but class {k} is recalled {recall[k]:.0%} of the time "
            f"({int(round(recall[k] * counts[k]))} of its {counts[k]} test samples): the average hides it",
            cause,
            _try(ctx, items),
        )
    ]


def headline(verdicts: list[dict]) -> str:
    """The one-line verdict: the first (most severe) finding."""
    return verdicts[0]["message"] if verdicts else "no verdict"

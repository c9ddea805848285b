"""Reading a run's resolved config for a verdict's cause (its init, lr, depth in words) and
building the remedies that fit it (Fixes). Activation facts come from the activation specs
(dlx.components.activations), never from lists of names kept here."""

from __future__ import annotations

from typing import Any

from dlx.components.activations import ACTIVATIONS, XAVIER, facts
from dlx.diagnosis.context import Context
from dlx.diagnosis.verdicts import Fix, fix

# Names (aliases too) by what the activation specs declare.
_SPECS = {n: ACTIVATIONS.get(n) for n in ACTIVATIONS.names(aliases=True)}
# Saturating activations, as a cause reads them: "sigmoid (derivative <= 0.25)".
SATURATING = {n: f"{n} ({s.saturates})" for n, s in _SPECS.items() if s.saturates}
RELU_FAMILY = tuple(n for n, s in _SPECS.items() if s.relu_like)
# Activations with f(0) = 0: under an all-zero init every hidden output is exactly 0.
ZERO_AT_ZERO = tuple(n for n, s in _SPECS.items() if s.zero_at_zero)
RECURRENT = ("rnn", "lstm", "gru")


def init_text(ctx: Context) -> str:
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


def depth_of(ctx: Context) -> int:
    """Nonlinearities the gradient passes on its way down (probed layers - 1 without activations)."""
    return len(ctx.act_names) or max(len(ctx.names) - 1, 0)


def he_like(init: str) -> bool:
    return init.startswith(("kaiming", "he_")) or init in ("lecun_normal", "orthogonal")


def lr_text(ctx: Context) -> str:
    opt = ctx.section("optimizer")
    sched = opt.get("schedule")
    sched = sched.get("name") if isinstance(sched, dict) else sched
    text = f"{opt.get('name', '?')} with lr={opt.get('lr', '?')}"
    return text + ("" if sched in (None, "constant") else f" ({sched} schedule)")


def yaml_number(x: float) -> str:
    """x with 2 significant digits, as YAML reads a float (1.0e-05: PyYAML takes 1e-05 for a string)."""
    text = f"{x:.2g}"
    return text.replace("e", ".0e") if "e" in text and "." not in text else text


def lr_times(ctx: Context, factor: float, why: str = "") -> Fix | str:
    """The optimizer's lr times factor, as a Fix (prose when the lr is unknown)."""
    lr = ctx.section("optimizer").get("lr")
    if isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0:
        return fix(f"optimizer.lr={yaml_number(lr * factor)}", why=why)
    return f"a {'smaller' if factor < 1 else 'larger'} optimizer.lr"


def lr_lower(ctx: Context, by: float = 10.0, why: str = "") -> Fix | str:
    return lr_times(ctx, 1 / by, why)


def small_lr(ctx: Context) -> bool:
    lr = ctx.section("optimizer").get("lr")
    return isinstance(lr, (int, float)) and lr < 0.01


def adam(why: str = "") -> Fix:
    """Adam with its own usual hyperparameters (the mapping replaces the whole optimizer
    section: sgd's lr of 0.1 would be far too large for adam)."""
    return fix("optimizer={name: adam}", why=why)


def clip_fix(ctx: Context) -> Fix | None:
    return None if clipped(ctx) else fix("regularization.clip_norm=1.0")


def steps_done(ctx: Context) -> int | None:
    steps = [m.get("step") for m in ctx.metrics if isinstance(m.get("step"), int)]
    return max(steps) if steps else None


def more_steps(ctx: Context, why: str = "twice the steps") -> Fix | str:
    """Twice the steps the run took, as a Fix (prose when the run logged none)."""
    done = steps_done(ctx)
    return fix(f"train.steps={2 * done}", why=why) if done else "more steps (train.steps)"


def reg_section(ctx: Context) -> dict[str, Any]:
    return ctx.section("regularization")


def clipped(ctx: Context) -> bool:
    return bool(reg_section(ctx).get("clip_norm") or reg_section(ctx).get("clip_value"))


def init_unscaled(ctx: Context) -> bool:
    """An init whose scale ignores the fan-in (or a constant): the usual source of blow-ups."""
    return ctx.init in ("normal", "uniform", "constant")


def norm_none(ctx: Context) -> bool:
    return reg_section(ctx).get("norm", "none") in (None, "none")


def batch_norm_remedy(ctx: Context) -> Fix | None:
    """Batch norm as a remedy, where the model has it (mlp, cnn, resnet) and it is off."""
    return fix("regularization.norm=batch") if ctx.model in ("mlp", "cnn", "resnet") and norm_none(ctx) else None


def good_init(activation: str) -> str:
    """The init scheme whose variance law fits the activation (its spec's fitting_init: He for
    the ReLU family, LeCun for SELU, Xavier for tanh, sigmoid and the linear ones)."""
    spec = facts(activation)
    return spec.fitting_init if spec is not None else XAVIER


def more_data(ctx: Context) -> Fix | str:
    n = ctx.section("data").get("n_train")
    if isinstance(n, int) and not isinstance(n, bool) and n > 0:
        return fix(f"data.n_train={2 * n}", why="more data")
    return "more data"


def skip_remedy(ctx: Context) -> Fix | None:
    model = ctx.section("model")
    if ctx.model == "mlp":
        # The same width, two layers per block: as deep as the mlp, with skips.
        widths = model.get("widths") or [model.get("width") or 64]
        depth = model.get("depth") if model.get("widths") is None else len(widths)
        blocks = max(1, int(depth or 2) // 2)
        return fix(
            f"model={{name: resnet, blocks: {blocks}, width: {max(widths)}}}",
            why="a residual model: skip connections carry the gradient past every block",
        )
    if ctx.model == "resnet" and model.get("residual") is False:
        return fix("model.residual=true", why="skip connections carry the gradient past every block")
    return None

"""The optimizer conventions `dlx list optimizer` and the README state, checked against torch.

Each test builds the optimizer from its dlx spec (so a dlx change that swapped in another
convention would fail here) and compares it with the formula as written in the notes.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from conftest import TINY
from torch import nn
from typer.testing import CliRunner

import dlx
from dlx.cli.app import app
from dlx.components.optim import OPTIMIZERS


def _param(*values: float) -> nn.Parameter:
    return nn.Parameter(torch.tensor(values, dtype=torch.float64))


def _step(opt, w: nn.Parameter, grad) -> None:
    """One optimizer step with a given gradient."""
    opt.zero_grad()
    w.grad = torch.as_tensor(grad, dtype=torch.float64).clone()
    opt.step()


# ------------------------------------------------------------------ momentum, nesterov
@pytest.mark.parametrize("name", ["momentum", "sgd"])
def test_momentum_is_pytorchs_form_and_an_lr_change_rescales_the_whole_velocity(name):
    # Two steps, lr 0.1 then 0.01 (what a schedule does between steps), gradients 1 and 1.
    raw = {"name": name, "lr": 0.1, "momentum": 0.9}
    w = _param(0.0)
    opt = OPTIMIZERS.parse(raw).build([w])
    _step(opt, w, [1.0])
    opt.param_groups[0]["lr"] = 0.01
    _step(opt, w, [1.0])
    # PyTorch's form: v = mu*v + g; w -= lr*v  ->  v 1, 1.9; w = -0.1 - 0.01*1.9
    pytorch_form = -(0.1 * 1.0) - 0.01 * (0.9 * 1.0 + 1.0)
    # Textbook form: v = mu*v + lr*g; w -= v  ->  v 0.1, 0.9*0.1 + 0.01 = 0.1
    textbook = -(0.1) - (0.9 * 0.1 + 0.01 * 1.0)
    assert w.item() == pytest.approx(pytorch_form, rel=1e-12) == -0.119
    assert textbook == pytest.approx(-0.2)  # the old velocity kept its old lr there
    # With a constant lr the two forms take the same steps.
    w2 = _param(0.0)
    opt2 = OPTIMIZERS.parse(raw).build([w2])
    v_text, w_text = 0.0, 0.0
    for g in (1.0, -2.0, 0.5):
        _step(opt2, w2, [g])
        v_text = 0.9 * v_text + 0.1 * g
        w_text -= v_text
        assert w2.item() == pytest.approx(w_text, rel=1e-12)


def test_nesterov_is_w_minus_lr_times_grad_plus_momentum_v_with_v_updated_first():
    w = _param(0.0)
    opt = OPTIMIZERS.parse({"name": "nesterov", "lr": 0.1, "momentum": 0.9}).build([w])
    hand_w, v = 0.0, 0.0
    for lr, g in ((0.1, 1.0), (0.01, 1.0), (0.01, -3.0)):
        opt.param_groups[0]["lr"] = lr
        _step(opt, w, [g])
        v = 0.9 * v + g
        hand_w -= lr * (g + 0.9 * v)
        assert w.item() == pytest.approx(hand_w, rel=1e-12)


def test_dampening_skips_the_first_step():
    w = _param(0.0)
    opt = OPTIMIZERS.parse({"name": "momentum", "lr": 1.0, "momentum": 0.9, "dampening": 0.5}).build([w])
    _step(opt, w, [1.0])
    assert w.item() == pytest.approx(-1.0)  # v = grad, not (1 - dampening)*grad
    _step(opt, w, [1.0])
    assert w.item() == pytest.approx(-1.0 - (0.9 * 1.0 + 0.5 * 1.0))


# ------------------------------------------------------------------ weight_decay vs l2
class _Grab:
    def on_end(self, trainer, *args):
        self.params = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        self.grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters()}


def _one_step(**reg_and_decay) -> _Grab:
    cfg = copy.deepcopy(TINY)
    cfg["init"] = {"name": "kaiming_normal", "bias": 0.1}  # nonzero biases, so a decay shows
    cfg["optimizer"] = {"name": "sgd", "lr": 0.1, "weight_decay": reg_and_decay.pop("weight_decay", 0.0)}
    cfg["regularization"] = reg_and_decay
    cfg["train"] = {"steps": 1, "batch_size": 32, "log_every": 1, "threads": 1, "checkpoint": False}
    grab = _Grab()
    dlx.train(cfg, save=False, callbacks=[grab])
    return grab


def test_weight_decay_decays_biases_and_l2_does_not():
    plain, decay, l2 = _one_step(), _one_step(weight_decay=0.5), _one_step(l2=0.5)
    biases = [n for n in plain.params if n.endswith("bias")]
    weights = [n for n in plain.params if n.endswith("weight")]
    assert biases and weights
    for n in biases:
        # l2: the bias's gradient and the bias itself are exactly those of the plain run.
        assert torch.equal(l2.grads[n], plain.grads[n])
        assert torch.equal(l2.params[n], plain.params[n])
        # weight_decay: the bias moved by a further lr*weight_decay*b0 = 0.1*0.5*0.1.
        assert torch.allclose(decay.params[n], plain.params[n] - 0.005, atol=1e-7)
    for n in weights:
        # On weights the two are the same: gradient + 0.5*w, one way or the other.
        assert not torch.equal(l2.params[n], plain.params[n])
        assert torch.allclose(l2.params[n], decay.params[n], atol=1e-6)
        assert torch.allclose(l2.grads[n], plain.grads[n] + 0.5 * (l2.params[n] + 0.1 * l2.grads[n]), atol=1e-5)


def test_weight_decay_is_added_after_clipping_l2_before():
    plain = _one_step(clip_value=1e-4)
    decay, l2 = _one_step(weight_decay=0.5, clip_value=1e-4), _one_step(l2=0.5, clip_value=1e-4)
    fc1 = next(n for n in plain.params if n.endswith("weight"))
    w0 = plain.params[fc1] + 0.1 * plain.grads[fc1]  # the weights before the step
    # l2's gradient was clipped with the loss's: no entry moved more than lr*clip.
    assert (l2.params[fc1] - w0).abs().max() <= 0.1 * 1e-4 + 1e-7
    # weight_decay came after the clip: w also shrank by lr*weight_decay*w.
    assert torch.allclose(decay.params[fc1], plain.params[fc1] - 0.1 * 0.5 * w0, atol=1e-6)


# ------------------------------------------------------------------ adam, adamw
def _adam_hand(w: float, grads, lr, betas=(0.9, 0.999), eps=1e-8, decoupled=0.0, coupled=0.0):
    m = v = 0.0
    for t, g in enumerate(grads, start=1):
        g = g + coupled * w
        w *= 1 - lr * decoupled
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        m_hat, v_hat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
        w -= lr * m_hat / (math.sqrt(v_hat) + eps)
    return w


def test_adamw_decay_is_lr_times_weight_decay_times_w_then_the_adam_step():
    grads = [0.3, -1.2, 0.05]
    w = _param(2.0)
    opt = OPTIMIZERS.parse({"name": "adamw", "lr": 0.01, "weight_decay": 0.1}).build([w])
    for g in grads:
        _step(opt, w, [g])
    assert w.item() == pytest.approx(_adam_hand(2.0, grads, 0.01, decoupled=0.1), rel=1e-12)
    # With no gradient the Adam step is 0: only w *= 1 - lr*weight_decay, the lr included.
    z = _param(2.0)
    opt = OPTIMIZERS.parse({"name": "adamw", "lr": 0.01, "weight_decay": 0.1}).build([z])
    _step(opt, z, [0.0])
    assert z.item() == pytest.approx(2.0 * (1 - 0.01 * 0.1), rel=1e-12)  # not 2*(1 - 0.1)
    opt.param_groups[0]["lr"] = 0.005  # a schedule's lr scales the decay too
    _step(opt, z, [0.0])
    assert z.item() == pytest.approx(2.0 * (1 - 0.001) * (1 - 0.0005), rel=1e-12)


def test_adam_weight_decay_is_l2_in_the_gradient_and_rescaled_by_the_denominator():
    grads = [0.3, -1.2, 0.05]
    w = _param(2.0)
    opt = OPTIMIZERS.parse({"name": "adam", "lr": 0.01, "weight_decay": 0.1}).build([w])
    for g in grads:
        _step(opt, w, [g])
    assert w.item() == pytest.approx(_adam_hand(2.0, grads, 0.01, coupled=0.1), rel=1e-12)
    # No loss gradient: the decay alone, 0.1*w, is normalised to a step of about lr,
    # 50x the decoupled decay lr*0.1*w = 0.002 of the test above.
    z = _param(2.0)
    opt = OPTIMIZERS.parse({"name": "adam", "lr": 0.01, "weight_decay": 0.1}).build([z])
    _step(opt, z, [0.0])
    assert 2.0 - z.item() == pytest.approx(0.01, rel=1e-6)


# ------------------------------------------------------------------ first steps, eps
@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_adam_first_step_is_about_lr_whatever_the_gradient_size(scale):
    w = _param(0.0, 0.0)
    opt = OPTIMIZERS.parse({"name": "adam", "lr": 0.01}).build([w])
    _step(opt, w, [scale, -scale])
    assert w.tolist() == pytest.approx([-0.01, 0.01], rel=1e-4)


def test_rmsprop_alpha_is_the_decay_and_its_first_step_is_lr_over_sqrt_one_minus_alpha():
    w = _param(0.0)
    opt = OPTIMIZERS.parse({"name": "rmsprop", "lr": 0.001, "alpha": 0.99}).build([w])
    hand_w, s = 0.0, 0.0
    for i, g in enumerate((2.0, 0.5, -1.0)):
        _step(opt, w, [g])
        s = 0.99 * s + 0.01 * g * g
        hand_w -= 0.001 * g / (math.sqrt(s) + 1e-8)  # eps outside the root
        assert w.item() == pytest.approx(hand_w, rel=1e-12)
        if i == 0:
            assert w.item() == pytest.approx(-0.01, rel=1e-6)  # 10*lr, whatever the gradient


def test_adagrad_first_step_is_lr_then_shrinks_and_lr_decay_divides_lr():
    w = _param(0.0)
    opt = OPTIMIZERS.parse({"name": "adagrad", "lr": 0.1, "lr_decay": 0.5}).build([w])
    hand_w, acc = 0.0, 0.0
    for t, g in enumerate((4.0, 4.0, 4.0), start=1):
        before = w.item()
        _step(opt, w, [g])
        acc += g * g
        hand_w -= 0.1 / (1 + (t - 1) * 0.5) * g / (math.sqrt(acc) + 1e-10)
        assert w.item() == pytest.approx(hand_w, rel=1e-12)
        if t == 1:
            assert before - w.item() == pytest.approx(0.1)  # lr per weight
    # Without lr_decay the same gradient still gives ever smaller steps: 0.1, 0.1/sqrt(2), ...
    z = _param(0.0)
    opt = OPTIMIZERS.parse({"name": "adagrad", "lr": 0.1}).build([z])
    steps = []
    for _ in range(3):
        before = z.item()
        _step(opt, z, [4.0])
        steps.append(before - z.item())
    assert steps == pytest.approx([0.1, 0.1 / math.sqrt(2), 0.1 / math.sqrt(3)])


# ------------------------------------------------------------------ what `dlx list` shows
def test_dlx_list_optimizer_fits_80_columns_and_states_the_conventions():
    r = CliRunner().invoke(app, ["list", "optimizer"], env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    text = r.output
    assert "schedule=constant" in text and "Constant(" not in text and "name=" not in text
    assert "betas=[0.9," in text  # as the YAML writes it, not a Python tuple
    flat = " ".join(line.strip() for line in lines)
    for phrase in [
        "v = momentum*v + grad; w -= lr*v",
        "biases",
        "w -= lr*weight_decay*w",
        "regularization.l2",
        "eps is added outside the root",
        "10*lr at alpha 0.99",
    ]:
        assert phrase in flat, phrase


def test_dlx_own_processes_step_without_importing_torch_dynamo_to_the_same_numbers(tmp_path):
    """The dlx command and its workers skip the torch._dynamo import torch.optim's wrappers
    make (1.2-1.6 s a process); every optimizer, under a schedule and with a resume, steps to
    exactly the numbers of the wrapped path (run here, in-process)."""
    import json
    import subprocess
    import sys

    import dlx
    from dlx.components.optim import OPTIMIZERS

    names = sorted(OPTIMIZERS.names())
    script = f"""
import json, sys, dlx, dlx.core.version
dlx.core.version.OWNS_PROCESS = True
out = {{}}
for name in {names!r}:
    run = dlx.train({json.dumps(_tiny())}, [f"optimizer.name={{name}}", "optimizer.schedule.name=cosine"],
                    runs_dir={str(tmp_path / "own")!r}, quiet=True)
    out[name] = [m["train_loss"] for m in run.metrics]
out["dynamo"] = "torch._dynamo" in sys.modules
print(json.dumps(out))
"""
    proc = subprocess.run([sys.executable, "-W", "error", "-c", script], capture_output=True, text=True, check=True)
    own = json.loads(proc.stdout.strip().splitlines()[-1])
    assert own.pop("dynamo") is False
    for name in names:
        run = dlx.train(_tiny(), [f"optimizer.name={name}", "optimizer.schedule.name=cosine"], save=False, quiet=True)
        assert own[name] == [m["train_loss"] for m in run.metrics], name


def _tiny() -> dict:
    c = copy.deepcopy(TINY)
    c["train"] = {"steps": 12, "batch_size": 32, "log_every": 4}
    return c

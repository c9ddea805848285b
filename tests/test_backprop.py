"""dlx backprop: one step worked by hand equals autograd, and reproduces Mazur's example."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from dlx.cli.app import app
from dlx.config.loader import load_config
from dlx.run.backprop import from_config, mazur, trace


def test_mazurs_worked_example_gives_his_numbers():
    lines, nums = trace(mazur())
    assert nums["E"] == pytest.approx(0.298371109, abs=1e-9)
    w1, w2 = (w.reshape(-1).tolist() for w in nums["new_w"])
    # His w1..w4 and w5..w8 after the update (A Step by Step Backpropagation Example, 2015).
    assert w2 == pytest.approx([0.35891648, 0.408666186, 0.511301270, 0.561370121], abs=1e-8)
    assert w1 == pytest.approx([0.149780716, 0.19956143, 0.24975114, 0.29950229], abs=1e-8)
    assert nums["grad_w"][1][0, 0].item() == pytest.approx(0.082167041, abs=1e-9)  # dE/dw5
    assert nums["autograd_diff"] < 1e-12
    text = "\n".join(lines)
    assert "E = mean((a2 - y)^2) over 2 outputs = 0.298371109" in text and "-> [0.35891648," in text


@pytest.mark.parametrize(
    "config,sets,samples",
    [
        ("backprop_by_hand", [], 4),
        ("quickstart", ["model.depth=2", "model.width=5"], 3),  # cross-entropy, 3 classes
        ("vanishing_sigmoid", ["model.depth=4", "model.width=4"], 2),
        ("backprop_by_hand", ["activation=tanh", "model.depth=3"], 5),
    ],
)
def test_the_trace_of_a_config_equals_autograd(config, sets, samples):
    net = from_config(load_config(config, sets), samples)
    _, nums = trace(net)
    assert nums["autograd_diff"] < 1e-6
    # The gradients are the model's own: the same step on the dlx model by autograd.
    from dlx.run.trainer import Trainer

    tr = Trainer(load_config(config, sets))
    model = tr.model.double()
    x = tr.data.as_float(tr.data.x_train[:samples]).double()
    y = tr.data.y_train[:samples]
    loss = tr.loss_fn(model(x), y.double() if tr.data.task == "regression" else y)
    loss.backward()
    first = next(m for _, m in model.init_targets())
    torch.testing.assert_close(first.weight.grad, nums["grad_w"][0], rtol=1e-6, atol=1e-9)
    assert nums["E"] == pytest.approx(float(loss), rel=1e-9)


def test_dlx_backprop_prints_the_worked_step_and_refuses_what_it_cannot_write_out():
    r = CliRunner().invoke(app, ["backprop", "mazur"])
    assert r.exit_code == 0 and "delta2 = dE/dz2 = dE/da2 * sigmoid'(z2) = dE/da2 * a (1 - a)" in r.output
    assert "checked against autograd" in r.output
    r = CliRunner().invoke(app, ["backprop", "cnn_mnist"])
    assert r.exit_code == 2 and "plain mlp" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["backprop", "backprop_by_hand", "--set", "activation=gelu"])
    assert r.exit_code == 2 and "sigmoid, tanh, relu" in r.output

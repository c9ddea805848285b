"""Does dropout break the symmetry of a zeros/constant init? Real short training runs.

What holds (measured with the probes' unit_spread of each hidden layer):
- without dropout, zeros and constant inits stay exactly symmetric (spread < 1e-6);
- with dropout, a constant init's units drift apart: each unit sees its own mask, so
  the units get different gradients;
- with zeros, it depends on the activation at 0: sigmoid(0) = 0.5 (or a nonzero
  init.bias) gives the masks something to act on, and the units drift apart too
  (slowly: fc1 of a zeros + bias 0.1 tanh net reaches a spread of 5e-4 in 300 steps); with
  tanh or relu and zero biases every hidden activation is 0, so no hidden weight ever
  gets a gradient, dropout or not.
"""

from __future__ import annotations

import pytest
import torch

import dlx

SYMMETRIC = 1e-6  # dlx.diagnosis.engine.SYMMETRY_SPREAD
BROKEN = 1e-4  # 100x the threshold; float noise in a symmetric layer is ~1e-7


class _Grab:
    def on_end(self, trainer, *args):
        self.weights = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if n.endswith("weight")}
        self.grads = {
            n: p.grad.detach().clone()
            for n, p in trainer.model.named_parameters()
            if n.endswith("weight") and p.grad is not None
        }


def _run(activation: str, init, dropout: float, steps: int = 300):
    cfg = {
        "seed": 0,
        "data": {"name": "spirals", "n_train": 512, "n_test": 128},
        "model": {"name": "mlp", "depth": 2, "width": 16},
        "activation": activation,
        "init": init,
        "optimizer": {"name": "sgd", "lr": 0.5 if activation == "sigmoid" else 0.1},
        "regularization": {"dropout": dropout},
        "train": {"steps": steps, "batch_size": 32, "log_every": 10, "threads": 1, "checkpoint": False},
    }
    grab = _Grab()
    r = dlx.train(cfg, save=False, callbacks=[grab])
    hidden = r.summary["layers"][:-1]  # the output layer's units are classes, never symmetric
    assert len(hidden) == 2
    return [layer["unit_spread"] for layer in hidden], grab


CONSTANT = {"name": "constant", "value": 0.1}


@pytest.mark.parametrize("activation, init", [("sigmoid", "zeros"), ("tanh", CONSTANT), ("relu", CONSTANT)])
def test_without_dropout_zeros_and_constant_stay_symmetric(activation, init):
    spread, grab = _run(activation, init, 0.0)
    assert max(spread) < SYMMETRIC, spread
    # ... though the hidden weights did train (as copies of each other).
    assert grab.weights["fc1.weight"].abs().max() > 1e-4


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_dropout_breaks_a_constant_init(activation):
    spread, _ = _run(activation, CONSTANT, 0.2)
    assert min(spread) > BROKEN, spread


@pytest.mark.parametrize("activation, init", [("sigmoid", "zeros"), ("tanh", {"name": "zeros", "bias": 0.1})])
def test_dropout_breaks_zeros_when_the_hidden_activations_are_not_zero(activation, init):
    # sigmoid(0) = 0.5, tanh(0.1) != 0: the masks make the units' outputs differ, the
    # next layer's columns then differ, and so do the gradients flowing back.
    spread, _ = _run(activation, init, 0.2)
    assert min(spread) > BROKEN, spread


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_dropout_cannot_break_zeros_when_the_activation_is_zero_at_zero(activation):
    # Every hidden activation is 0, so the masks multiply zeros: the output layer's
    # weights get no gradient, nothing flows back, and every hidden weight stays 0.
    spread, grab = _run(activation, "zeros", 0.2)
    assert spread == [0.0, 0.0]
    for name, w in grab.weights.items():
        assert torch.count_nonzero(w) == 0, name
        assert torch.count_nonzero(grab.grads[name]) == 0, name

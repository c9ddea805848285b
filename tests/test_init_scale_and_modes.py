"""The init scale alpha (every init scheme's `scale`), the whole net's weight norm as a panel
(Omnigrok), and the modes instrument: the strength of each mode of a linear teacher in a deep
linear net's map (Saxe, McClelland & Ganguli 2013)."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from conftest import TINY
from matplotlib.figure import Figure
from torch import nn

import dlx
from dlx.components.data.base import Dataset
from dlx.config.loader import load_config
from dlx.core.errors import ConfigError
from dlx.core.tensorfile import read_tensors
from dlx.records.layout import CHECKPOINT_FILE
from dlx.run.trainer import Trainer
from dlx.views import panels, plots

# ------------------------------------------------------------------ the init scale


class OneLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(200, 100)

    def init_targets(self):
        return [("fc", self.fc)]


def drawn(init) -> OneLayer:
    torch.manual_seed(7)
    m = OneLayer()
    init.init_model(m)
    return m


@pytest.mark.parametrize("name", ["kaiming_normal", "xavier_uniform", "normal", "orthogonal", "default"])
def test_scale_multiplies_the_same_seeds_weights_by_alpha_and_leaves_biases_alone(name):
    base = load_config({**TINY, "init": {"name": name}}).init
    scaled = load_config({**TINY, "init": {"name": name, "scale": 3}}).init
    a, b = drawn(base), drawn(scaled)
    assert torch.equal(b.fc.weight, 3 * a.fc.weight)
    assert float(b.fc.weight.detach().std()) == pytest.approx(3 * float(a.fc.weight.detach().std()), rel=1e-6)
    assert torch.equal(a.fc.bias, b.fc.bias)


def test_scale_one_is_the_scheme_as_before_and_a_bare_name_parses_to_it():
    bare = load_config({**TINY, "init": "kaiming_normal"}).init
    assert bare.scale == 1.0
    torch.manual_seed(7)
    plain = OneLayer()
    nn.init.kaiming_normal_(plain.fc.weight, nonlinearity="relu")
    assert torch.equal(drawn(bare).fc.weight, plain.fc.weight)
    assert load_config({**TINY, "init": {"name": "kaiming_normal", "scale": 3}}).init.scale == 3.0


@pytest.mark.parametrize("bad", [0, -1.5])
def test_a_scale_not_above_zero_is_a_config_error_naming_init_scale(bad):
    with pytest.raises(ConfigError, match=r"init\.scale"):
        load_config({**TINY, "init": {"name": "kaiming_normal", "scale": bad}})


def test_the_init_check_expects_alpha_squared_times_the_schemes_variance():
    from dlx.run.initcheck import weight_moments

    w = torch.empty(100, 200)
    base = load_config({**TINY, "init": "kaiming_normal"}).init
    scaled = load_config({**TINY, "init": {"name": "kaiming_normal", "scale": 3}}).init
    assert weight_moments(scaled, w)[1] == pytest.approx(9 * weight_moments(base, w)[1])


# ------------------------------------------------------------------ the weight norm panel


def test_the_weight_norm_panel_draws_the_whole_nets_norm_and_ends_at_the_checkpoints(tmp_path):
    cfg = copy.deepcopy(TINY)
    cfg["init"] = {"name": "kaiming_normal", "scale": 2}
    run = dlx.train(cfg, runs_dir=tmp_path)
    groups = plots.group_runs([run.series()])
    assert "weight_norm" in panels.panel_names(groups)  # beside the loss where alpha is set
    ax = Figure().subplots()
    panels.draw_panel(ax, "weight_norm", groups)
    line = ax.get_lines()[0]
    probes = [json.loads(s) for s in (run.path / "probes.jsonl").read_text().splitlines() if s.strip()]
    expected = [math.sqrt(sum(n * n for n in p["weight_norm"])) for p in probes]
    assert list(line.get_xdata()) == [p["step"] for p in probes]
    assert np.allclose(line.get_ydata(), expected, rtol=1e-12)
    state = read_tensors(run.path / CHECKPOINT_FILE)["model"]
    final = torch.cat([state[k].reshape(-1) for k in ("fc1.weight", "fc2.weight", "out.weight")]).norm()
    assert line.get_ydata()[-1] == pytest.approx(float(final), rel=1e-5)


def test_weight_norm_is_drawn_when_asked_for_on_any_run(tmp_path):
    run = dlx.train(copy.deepcopy(TINY), runs_dir=tmp_path)
    assert "weight_norm" not in panels.panel_names(plots.group_runs([run.series()]))  # alpha 1: not by default
    fig = run.plot(panels=["loss", "weight_norm"])
    assert [a.get_label() for a in fig.axes if a.get_visible()] == ["loss", "weight_norm"]


# ------------------------------------------------------------------ the modes instrument

TEACHER_S = (3.0, 1.5, 0.75)


def teacher_data(n: int = 256, d: int = 6, seed: int = 0) -> Dataset:
    """y = U diag(s) V^T x on exactly whitened zero-mean inputs (X^T X / n = I), the teacher attached."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.normal(size=(d, len(TEACHER_S))))
    v, _ = np.linalg.qr(rng.normal(size=(d, len(TEACHER_S))))
    s = np.asarray(TEACHER_S)
    g = rng.normal(size=(n, d))
    q, _ = np.linalg.qr(g - g.mean(0))  # columns in the span of centred ones: zero-mean inputs
    x = q * math.sqrt(n)
    y = x @ (u * s @ v.T).T
    t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    data = Dataset("teacher", t(x), t(y), t(x[:32]), t(y[:32]), "regression")
    data.teacher = (u, s, v.T)  # the field linear_teacher sets; set here before and after it exists
    return data


def linear_cfg(**changes):
    cfg = {
        "seed": 0,
        "data": {"name": "spirals", "n_train": 64, "n_test": 32},
        "model": {"name": "mlp", "depth": 1, "width": 6},
        "activation": "linear",
        "init": {"name": "normal", "std": 0.02},
        "optimizer": {"name": "sgd", "lr": 0.15},
        "train": {"steps": 300, "batch_size": "full", "log_every": 5, "loss": "mse"},
        "instruments": {"modes": True, "every": 5},
    }
    cfg.update(changes)
    return load_config(cfg)


class Kept:
    def __init__(self):
        self.records = []

    def on_instruments(self, trainer, rec):
        self.records.append(rec)


def test_modes_match_numpy_on_the_weights_and_the_strongest_mode_is_learned_first():
    kept = Kept()
    trainer = Trainer(linear_cfg(), data=teacher_data(), callbacks=[kept])
    trainer.run()
    recs = [r for r in kept.records if r.get("modes")]
    assert recs[0]["step"] == 0 and recs[-1]["step"] == trainer.total_steps
    u, s, vt = trainer.data.teacher
    w = {k: v.double().numpy() for k, v in trainer.model.state_dict().items()}
    prod = w["out.weight"] @ w["fc1.weight"]
    by_numpy = [float(u[:, i] @ prod @ vt[i]) for i in range(len(s))]
    assert np.allclose(recs[-1]["modes"]["strength"], by_numpy, rtol=1e-9, atol=1e-12)
    assert recs[-1]["modes"]["teacher"] == list(TEACHER_S)
    # Saxe's ordering: each mode reaches half its strength later the weaker it is, and all do.
    steps = np.array([r["step"] for r in recs])
    strength = np.array([r["modes"]["strength"] for r in recs])
    half = [int(steps[np.argmax(strength[:, i] >= TEACHER_S[i] / 2)]) for i in range(len(TEACHER_S))]
    assert all(strength[-1] > 0.9 * np.asarray(TEACHER_S)), strength[-1]
    assert half[0] < half[1] < half[2], half
    assert recs[-1]["modes"]["bias_norm"] < 0.05  # zero-mean inputs: the biases stay near 0


def test_modes_refuses_data_without_a_teacher():
    data = teacher_data()
    data.teacher = None
    with pytest.raises(ConfigError, match="instruments.modes: needs data: linear_teacher"):
        Trainer(linear_cfg(), data=data).run()


def test_modes_refuses_a_net_that_is_not_linear():
    with pytest.raises(ConfigError, match="activation relu is not linear"):
        Trainer(linear_cfg(activation="relu"), data=teacher_data()).run()

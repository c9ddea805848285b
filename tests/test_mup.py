"""μP (model.parametrization: mup) and `dlx coordcheck`: the table-3 init and Adam lr per layer
(Tensor Programs V), sp left as it was, and the coordinate check flat under mup, growing under sp."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dlx.cli.app import app
from dlx.config.loader import load_config
from dlx.core.errors import ConfigError
from dlx.many.coordcheck import coordcheck
from dlx.run.trainer import Trainer

BASE = {
    "seed": 0,
    "data": {"name": "spirals", "n_train": 256, "n_test": 64, "classes": 3},
    "model": {"name": "mlp", "depth": 2, "width": 64},
    "activation": "relu",
    "init": "kaiming_normal",
    "optimizer": {"name": "adam", "lr": 0.01},
    "train": {"steps": 6, "batch_size": 64, "log_every": 3},
}


def config(model=None, **top):
    cfg = copy.deepcopy(BASE)
    cfg["model"].update(model or {})
    if "widths" in cfg["model"]:  # explicit widths replace depth and width
        del cfg["model"]["depth"], cfg["model"]["width"]
    cfg.update(top)
    return load_config(cfg)


def trained_state(cfg) -> dict[str, torch.Tensor]:
    tr = Trainer(cfg)
    tr.run()
    return {k: v.clone() for k, v in tr.model.state_dict().items()}


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_sp_builds_the_optimizer_as_before_and_trains_bit_identically_to_no_key():
    absent, sp = config(), config({"parametrization": "sp"})
    tr = Trainer(sp)
    # Before parametrizations the optimizer was built on the parameter list itself: one
    # group, every parameter in order, optimizer.lr, no multiplier.
    (group,) = tr.optimizer.param_groups
    assert group["params"] == tr.params and group["lr"] == 0.01 and "lr_scale" not in group
    assert_same_state(trained_state(absent), trained_state(sp))


def test_mup_at_its_base_width_trains_exactly_as_sp():
    # Table 3's multipliers are b/fan_in: all 1 at fan_in = b, so μP there is the sp run.
    assert_same_state(trained_state(config()), trained_state(config({"parametrization": "mup", "base_width": 64})))


def test_mup_init_keeps_the_scheme_and_scales_the_output_weights_to_variance_over_fan_in_squared():
    width, base = 512, 64
    sp = Trainer(config({"width": width})).model
    mup = Trainer(config({"width": width, "parametrization": "mup"})).model  # base_width defaults to 64
    # Same seed, same draws: input and hidden layers are the scheme's (variance 2/fan_in for
    # kaiming_normal), the output weights those times sqrt(b/fan_in).
    for name in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "out.bias"):
        assert torch.equal(sp.get_parameter(name), mup.get_parameter(name)), name
    torch.testing.assert_close(mup.out.weight, sp.out.weight * math.sqrt(base / width), rtol=1e-6, atol=0)
    # The formulas: std sqrt(2/fan_in) for fc1 (fan_in 2) and fc2, sqrt(2 b)/fan_in for out.
    expected = {"fc1": math.sqrt(2 / 2), "fc2": math.sqrt(2 / width), "out": math.sqrt(2 * base) / width}
    for name, std in expected.items():
        w = mup.get_submodule(name).weight
        assert float(w.detach().std()) == pytest.approx(std, rel=0.08), name  # 1536+ draws: a few % of noise


def test_mup_adam_lr_per_layer_follows_table_3():
    tr = Trainer(
        config(
            {"widths": [100, 200], "parametrization": "mup", "base_width": 50}, optimizer={"name": "adam", "lr": 0.01}
        )
    )
    names = {id(p): n for n, p in tr.model.named_parameters()}
    lr = {names[id(p)]: g["lr"] for g in tr.optimizer.param_groups for p in g["params"]}
    # Input weights and all biases: lr; hidden and output weights: lr * b/fan_in.
    assert lr == pytest.approx(
        {
            "fc1.weight": 0.01,
            "fc1.bias": 0.01,
            "fc2.weight": 0.01 * 50 / 100,
            "fc2.bias": 0.01,
            "out.weight": 0.01 * 50 / 200,
            "out.bias": 0.01,
        },
        rel=1e-12,
    )
    assert tr.optimizer.param_groups[0]["lr"] == 0.01  # the lr metrics.jsonl logs is optimizer.lr


@pytest.mark.parametrize(
    "model, top, key, words",
    [
        ({"name": "resnet", "parametrization": "mup"}, {}, "model.parametrization", "only mlp takes it"),
        ({"parametrization": "mup"}, {"optimizer": {"name": "sgd", "lr": 0.1}}, "optimizer.name", "adam"),
        ({"parametrization": "mup"}, {"init": "xavier_normal"}, "init", "1/fan_in"),
        ({"base_width": 32}, {}, "model", "parametrization: mup only"),
    ],
)
def test_what_mup_cannot_honour_is_refused_naming_the_key(model, top, key, words):
    cfg = copy.deepcopy(BASE)
    cfg["model"] = {"name": "mlp", **model} if "name" not in model else model
    cfg.update(top)
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert f"{key}: " in str(e.value) and words in str(e.value)


def test_coordinate_check_is_flat_under_mup_and_the_output_grows_with_width_under_sp():
    widths = [32, 64, 128, 256]
    mup = coordcheck(config({"parametrization": "mup"}), widths, steps=5, seeds=2)
    sp = coordcheck(config(), widths, steps=5, seeds=2)
    assert mup.layers == sp.layers == ["fc1", "fc2", "out"]
    # Measured (seeds 0, 1; torch 2.x CPU): mup's largest/smallest scale across widths at step 5
    # is 1.15 (fc1), 1.14 (fc2), 1.09 (out), log-log slopes -0.06, -0.06, -0.03; sp's output
    # slope is +0.54 (3.2x from 32 to 256; +1.0 after the first step), fc2's +0.27.
    last = mup.scales[:, -1, :]
    assert (last.max(axis=0) / last.min(axis=0) < 1.3).all(), last
    assert (np.abs(mup.slopes()) < 0.12).all(), mup.slopes()
    assert sp.slopes()[-1] > 0.35 and sp.growth()[-1] > 2.0, sp.scales[:, -1]
    assert sp.slopes(step=1)[-1] > 0.8  # one Adam step moves the logits ~ width
    np.testing.assert_array_equal(mup.scales[1], sp.scales[1])  # width 64 = base width: the same nets


def test_dlx_coordcheck_prints_the_layer_by_width_table_and_writes_the_figure(tmp_path):
    path = tmp_path / "cc.yaml"
    path.write_text(
        "data: {name: spirals, n_train: 128, n_test: 32, classes: 3}\n"
        "model: {name: mlp, depth: 2, width: 64, parametrization: mup}\n"
        "optimizer: {name: adam, lr: 0.01}\n"
        "train: {steps: 3, batch_size: 32}\n"
    )
    out = tmp_path / "cc.png"
    r = CliRunner().invoke(
        app, ["coordcheck", str(path), "--widths", "32,64", "--steps", "2", "--seeds", "1", "-o", str(out)]
    )
    assert r.exit_code == 0, r.output
    assert "parametrization mup" in r.output and "width 32" in r.output and "width 64" in r.output
    assert all(layer in r.output for layer in ("fc1", "fc2", "out")) and "64/32" in r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "widths, words", [("32,x", "comma-separated integers"), ("64", "at least two"), ("0,8", "positive")]
)
def test_dlx_coordcheck_refuses_bad_widths_with_exit_2(tmp_path, widths, words):
    r = CliRunner().invoke(app, ["coordcheck", str(tmp_path / "never_read.yaml"), "--widths", widths])
    assert r.exit_code == 2 and words in r.output and "Traceback" not in r.output


def test_a_change_of_lr_while_training_keeps_the_mup_multipliers():
    cfg = config(
        {"width": 128, "parametrization": "mup"},
        train={**BASE["train"], "changes": [{"step": 3, "set": {"optimizer.lr": 0.001}}]},
    )
    tr = Trainer(cfg)
    tr.run()
    # After the change every group steps at the new lr times its table-3 multiplier (64/128).
    assert sorted(g["lr"] for g in tr.optimizer.param_groups) == pytest.approx([0.0005, 0.001])

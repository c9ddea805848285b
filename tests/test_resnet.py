"""The resnet model: the skip connection is what keeps a deep net's first-layer gradient alive."""

from __future__ import annotations

import pytest
import torch
from test_cnn import bars_npz

import dlx
from dlx.config.loader import load_config
from dlx.core.errors import ConfigError
from dlx.run.summary import model_summary


@pytest.fixture(autouse=True)
def _one_thread():
    # Two threads on two shared cores spin against each other; restore for later tests.
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def config(data, **model):
    return {
        "seed": 0,
        "data": data,
        "model": {"name": "resnet", **model},
        "activation": "relu",
        "optimizer": {"name": "adam", "lr": 0.01},
        "train": {"steps": 4, "batch_size": 32, "log_every": 2, "threads": 1},
    }


SPIRALS = {"name": "spirals", "n_train": 512, "n_test": 128}


@pytest.fixture
def bars(tmp_path):
    return bars_npz(tmp_path / "bars.npz")


def test_plain_deep_tanh_net_vanishes_where_the_residual_one_trains():
    results = {}
    for residual in (True, False):
        cfg = config(SPIRALS, kind="mlp", blocks=20, width=32, residual=residual)
        cfg.update(
            activation="tanh",
            init={"name": "normal", "std": 0.1},
            optimizer={"name": "adam", "lr": 0.003},
            train={"steps": 120, "batch_size": 64, "log_every": 10, "threads": 1},
        )
        results[residual] = dlx.train(cfg, save=False)
    first = {res: r.summary["layers"][0] for res, r in results.items()}
    assert first[True]["name"] == first[False]["name"] == "stem"
    # Through 40 layers without skips the first layer's gradient all but disappears.
    assert first[False]["grad_norm"]["median"] < 1e-6 * first[True]["grad_norm"]["median"]
    # N(0, 0.01) on 32-wide tanh layers passes ~0.32 of the variance per layer: without the
    # skips that compounds over 40 layers, so the init leads, with the skips as a remedy.
    verdicts = results[False].summary["verdicts"]
    assert verdicts[0]["kind"] == "init_scale" and "model.residual: true" in verdicts[0]["remedy"]
    assert any(v["kind"] == "vanishing" and v["message"].startswith("vanishing gradients: stem") for v in verdicts)
    assert [v["kind"] for v in results[True].summary["verdicts"]] != [v["kind"] for v in verdicts]
    loss = {res: r.summary["final"]["train_loss"] for res, r in results.items()}
    assert loss[True] < 0.8 * loss[False]
    assert loss[False] > 1.0  # still at chance: ln 3 = 1.10


def test_mlp_resnet_layers_are_named_by_block_input_to_output(runs_dir):
    r = dlx.train(config(SPIRALS, kind="mlp", blocks=2, width=8), runs_dir=runs_dir)
    assert [l["name"] for l in r.summary["layers"]] == [
        "stem",
        "block1.fc_a",
        "block1.fc_b",
        "block2.fc_a",
        "block2.fc_b",
        "out",
    ]
    assert [a["name"] for a in r.summary["activations"]] == [
        "stem_act",
        "block1.act_a",
        "block1.act_b",
        "block2.act_a",
        "block2.act_b",
    ]
    state = torch.load(r.path / "checkpoint.pt", weights_only=False)["model"]
    assert "block2.fc_b.weight" in state and state["stem.weight"].shape == (8, 2)


def test_skip_adds_the_block_input_before_the_last_activation():
    cfg = load_config(config(SPIRALS, kind="mlp", blocks=1, width=4, residual=True))
    model = cfg.model.build(cfg.data.load(0), cfg)
    with torch.no_grad():
        for p in model.block1.parameters():
            p.zero_()  # the block's branch computes 0: only the skip is left
    x = torch.randn(5, 2)
    h = torch.relu(model.stem(x))
    assert torch.allclose(model.block1(h), h)  # relu(h + 0) = h, as h >= 0
    plain = load_config(config(SPIRALS, kind="mlp", blocks=1, width=4, residual=False))
    model = plain.model.build(plain.data.load(0), plain)
    with torch.no_grad():
        for p in model.block1.parameters():
            p.zero_()
    assert torch.equal(model.block1(h), torch.zeros_like(h))


def test_parameter_count_is_stem_plus_two_square_layers_per_block_plus_out():
    cfg = load_config(config(SPIRALS, kind="mlp", blocks=3, width=16))
    s = model_summary(cfg)
    w = 16
    assert s["total_params"] == (2 * w + w) + 3 * 2 * (w * w + w) + (w * 3 + 3)


def test_conv_resnet_trains_on_images_and_reaches_every_conv(bars, runs_dir):
    cfg = config({"name": "arrays", "path": str(bars)}, kind="conv", blocks=2, width=6)
    cfg["regularization"] = {"norm": "batch"}
    r = dlx.train(cfg, runs_dir=runs_dir)
    assert r.status == "completed"
    names = [l["name"] for l in r.summary["layers"]]
    assert names == ["stem", "block1.conv_a", "block1.conv_b", "block2.conv_a", "block2.conv_b", "out"]
    assert all(l["grad_norm"]["median"] > 0 for l in r.summary["layers"])
    s = model_summary(load_config(cfg))
    out = {row["name"]: row["output"] for row in s["layers"]}
    assert out["stem"] == out["block2.conv_b"] == out["block2.bn_b"] == [2, 6, 8, 8]  # 3x3 with padding 1
    assert out["pool"] == [2, 6, 1, 1] and s["output"] == [2, 2]
    convs = [row for row in s["layers"] if row["name"].endswith(("conv_a", "conv_b"))]
    assert all(row["params"] == (3 * 3 * 6 + 1) * 6 for row in convs)


def test_layer_norm_in_conv_blocks_is_groupnorm_over_all_channels(bars):
    cfg = load_config(
        config({"name": "arrays", "path": str(bars)}, kind="conv", blocks=1, width=4)
        | {"regularization": {"norm": "layer"}}
    )
    model = cfg.model.build(cfg.data.load(0), cfg)
    assert [n for n, _ in model.block1.named_children()] == ["conv_a", "ln_a", "act_a", "conv_b", "ln_b", "act_b"]
    assert model.block1.ln_a.num_groups == 1


def test_mlp_resnet_flattens_images(bars):
    r = dlx.train(config({"name": "arrays", "path": str(bars)}, kind="mlp", blocks=1, width=8), save=False)
    assert r.status == "completed" and r.summary["layers"][0]["shape"] == [8, 64]


def test_conv_resnet_on_flat_data_is_a_config_problem():
    with pytest.raises(ConfigError) as e:
        load_config(config({"name": "mnist", "download": True}, kind="conv"))
    (p,) = e.value.problems
    assert p.path == "model.kind" and "(784,)" in p.message and "data.flatten: false" in p.message


def test_dropconnect_is_refused_rather_than_ignored():
    with pytest.raises(ConfigError) as e:
        load_config(config(SPIRALS) | {"regularization": {"dropconnect": 0.2}})
    assert [p.path for p in e.value.problems] == ["regularization.dropconnect"]

"""The cnn model: shapes, parameter counts and receptive fields from the spec, bad shapes as config problems."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT

import dlx
from dlx.components.models import MODELS
from dlx.components.models.cnn import receptive_fields
from dlx.config.loader import load_config
from dlx.core.errors import ConfigError
from dlx.run.summary import model_summary


@pytest.fixture(autouse=True)
def _one_thread():
    # Two threads on two shared cores spin against each other; restore for later tests.
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def bars_npz(path, n_train=256, n_test=64, side=8, seed=0):
    """(N, 1, side, side) images: class 0 a horizontal bar, class 1 a vertical one, anywhere, in noise."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 0.3, (n, 1, side, side)).astype(np.float32)
    pos = rng.integers(0, side, n)
    for i in range(n):
        if y[i] == 0:
            x[i, 0, pos[i], :] += 1.0
        else:
            x[i, 0, :, pos[i]] += 1.0
    np.savez(path, x_train=x[:n_train], y_train=y[:n_train], x_test=x[n_train:], y_test=y[n_train:])
    return path


@pytest.fixture
def bars(tmp_path):
    return bars_npz(tmp_path / "bars.npz")


def config(data, layers, head=(), **top):
    cfg = {
        "seed": 0,
        "data": data,
        "model": {"name": "cnn", "layers": layers, "head": list(head)},
        "activation": "relu",
        "init": "kaiming_normal",
        "optimizer": {"name": "adam", "lr": 0.01},
        "train": {"steps": 6, "batch_size": 32, "log_every": 3, "threads": 1},
    }
    cfg.update(top)
    return cfg


# MNIST configs that validate without the files (download: true is only acted on by prepare/load),
# so the shape checks, which happen at config time, run anywhere.
MNIST_LAZY = {"name": "mnist", "flatten": False, "download": True}


def test_cnn_trains_on_mnist_images_and_probes_every_conv_and_linear_in_order(mnist_dir, monkeypatch, runs_dir):
    monkeypatch.setenv("DLX_DATA_DIR", str(mnist_dir))
    cfg = config(
        {"name": "mnist", "flatten": False, "n_train": 256, "n_test": 64},
        [
            {"conv": 8, "kernel": 3, "padding": 1},
            {"pool": "max", "size": 2},
            {"conv": 16, "kernel": 3, "stride": 2, "dilation": 2, "groups": 2},
            {"pool": "global_avg"},
        ],
        head=[24],
    )
    r = dlx.train(cfg, runs_dir=runs_dir)
    assert r.status == "completed"
    names = ["conv1", "conv2", "fc1", "out"]
    assert [l["name"] for l in r.summary["layers"]] == names
    assert [l["shape"] for l in r.summary["layers"]] == [[8, 1, 3, 3], [16, 4, 3, 3], [24, 16], [10, 24]]
    assert [a["name"] for a in r.summary["activations"]] == ["act1", "act2", "act3"]
    rows = [json.loads(line)["grad_norm"] for line in (r.path / "probes.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(len(row) == len(names) for step in rows for row in step)
    # Backward reaches every conv: no column is zero at any step.
    assert all(g > 0 for step in rows for row in step for g in row)
    state = torch.load(r.path / "checkpoint.pt", weights_only=False)["model"]
    assert {"conv1.weight", "conv1.bias", "conv2.weight", "fc1.weight", "out.bias"} <= set(state)


def test_cnn_learns_oriented_bars(bars):
    cfg = config(
        {"name": "arrays", "path": str(bars)},
        [{"conv": 8, "kernel": 3, "padding": 1}, {"pool": "max", "size": 2}, {"conv": 8}, {"pool": "avgmax"}],
        train={"steps": 60, "batch_size": 32, "log_every": 10, "threads": 1},
    )
    r = dlx.train(cfg, save=False)
    assert r.summary["final"]["test_acc"] >= 0.9  # chance is 0.5


def test_output_shapes_follow_stride_padding_dilation_and_pooling(bars):
    layers = [
        {"conv": 4, "kernel": 3},  # 8 -> 6
        {"conv": 6, "kernel": 3, "padding": 2, "dilation": 2},  # 6 + 4 - 5 + 1 = 6
        {"conv": 6, "kernel": 2, "stride": 2},  # (6 - 2) // 2 + 1 = 3
        {"pool": "avg", "size": 2, "stride": 1},  # 2
        {"pool": "max", "size": 3, "padding": 1},  # (2 + 2 - 3) // 3 + 1 = 1
        {"pool": "avgmax"},
    ]  # 12 channels of 1x1
    s = model_summary(load_config(config({"name": "arrays", "path": str(bars)}, layers, head=[5])))
    out = {r["name"]: r["output"] for r in s["layers"]}
    assert out["conv1"] == [2, 4, 6, 6]
    assert out["conv2"] == [2, 6, 6, 6]
    assert out["conv3"] == [2, 6, 3, 3]
    assert out["pool1"] == [2, 6, 2, 2]
    assert out["pool2"] == [2, 6, 1, 1]
    assert out["pool3"] == [2, 12, 1, 1]
    assert out["flatten"] == [2, 12] and out["fc1"] == [2, 5]
    assert s["output"] == [2, 2]


def test_conv_parameter_counts_are_k_k_cin_over_groups_plus_bias_times_cout(bars):
    layers = [
        {"conv": 6, "kernel": 3},
        {"conv": 12, "kernel": 3, "groups": 3},
        {"conv": 4, "kernel": 1, "bias": False},
        {"pool": "global_max"},
    ]
    cfg = load_config(config({"name": "arrays", "path": str(bars)}, layers, head=[7]))
    s = model_summary(cfg)
    params = {r["name"]: r["params"] for r in s["layers"]}
    assert params["conv1"] == (3 * 3 * 1 + 1) * 6
    assert params["conv2"] == (3 * 3 * 6 // 3 + 1) * 12
    assert params["conv3"] == (1 * 1 * 12) * 4
    assert params["fc1"] == (4 + 1) * 7 and params["out"] == (7 + 1) * 2
    model = cfg.model.build(cfg.data.load(0), cfg)
    assert s["total_params"] == sum(p.numel() for p in model.parameters()) == sum(params.values())


def test_norm_goes_after_each_conv_and_dropout_only_in_the_head(bars):
    layers = [{"conv": 4, "padding": 1}, {"pool": "max"}, {"conv": 4}, {"pool": "global_avg"}]
    data = {"name": "arrays", "path": str(bars)}
    cfg = load_config(config(data, layers, head=[8], regularization={"norm": "layer", "dropout": 0.5}))
    model = cfg.model.build(cfg.data.load(0), cfg)
    kinds = [(n, type(m).__name__) for n, m in model.named_children()]
    assert kinds == [
        ("conv1", "Conv2d"),
        ("ln1", "GroupNorm"),
        ("act1", "ReLU"),
        ("pool1", "MaxPool2d"),
        ("conv2", "Conv2d"),
        ("ln2", "GroupNorm"),
        ("act2", "ReLU"),
        ("pool2", "AdaptiveAvgPool2d"),
        ("flatten", "Flatten"),
        ("fc1", "Linear"),
        ("act3", "ReLU"),
        ("drop1", "Dropout"),
        ("out", "Linear"),
    ]
    assert model.ln1.num_groups == 1  # layer norm over channels and positions
    cfg = load_config(config(data, layers, regularization={"norm": "batch"}))
    model = cfg.model.build(cfg.data.load(0), cfg)
    assert type(model.bn2).__name__ == "BatchNorm2d" and model.bn2.num_features == 4
    assert not any(n.startswith("drop") for n, _ in model.named_children())


def test_init_schemes_set_conv_weights_with_torch_fan_in(bars):
    layers = [{"conv": 16, "padding": 1}, {"conv": 64, "kernel": 3}]
    cfg = load_config(config({"name": "arrays", "path": str(bars)}, layers, init="kaiming_normal"))
    model = cfg.model.build(cfg.data.load(0), cfg)
    cfg.init.init_model(model)
    w = model.conv2.weight
    assert w.std().item() == pytest.approx((2 / (16 * 3 * 3)) ** 0.5, rel=0.05)  # fan_in = c_in * k * k
    assert torch.all(model.conv2.bias == 0)
    assert [n for n, _ in model.init_targets()] == ["conv1", "conv2", "out"]


def layer_specs(*layers):
    return MODELS.parse({"name": "cnn", "layers": list(layers)}).layers


@pytest.mark.parametrize(
    "layers, rf, jump",
    [
        ([{"conv": 1, "kernel": 3}, {"conv": 1, "kernel": 3}], 5, 1),
        ([{"conv": 1, "kernel": 5}], 5, 1),
        ([{"conv": 1, "kernel": 3, "dilation": 2}], 5, 1),
        ([{"conv": 1, "kernel": 3, "stride": 2}, {"conv": 1, "kernel": 3}], 7, 2),
        ([{"conv": 1, "kernel": 3}, {"pool": "max", "size": 2}, {"conv": 1, "kernel": 3}], 8, 2),
        (
            [
                {"conv": 1, "kernel": 3, "dilation": 1},
                {"conv": 1, "kernel": 3, "dilation": 2},
                {"conv": 1, "kernel": 3, "dilation": 4},
            ],
            15,
            1,
        ),
    ],
    ids=["two_3x3", "one_5x5", "3x3_dilation_2", "stride_2_then_3x3", "pool_2_then_3x3", "dilations_1_2_4"],
)
def test_receptive_field_and_jump_of_known_stacks(layers, rf, jump):
    assert receptive_fields(layer_specs(*layers))[-1] == (rf, jump)


@pytest.mark.parametrize("pool", ["global_avg", "global_max", "avgmax"])
@pytest.mark.parametrize("convs", [1, 15])  # rf 3 < 28, and rf 31 > 28 (the formula counts padding)
def test_a_global_pool_sees_the_whole_input_however_far_the_convs_reach(convs, pool):
    layers = layer_specs(*[{"conv": 1, "kernel": 3, "padding": 1}] * convs, {"pool": pool})
    fields = receptive_fields(layers, (28, 28))
    assert fields[-2][0] == 1 + 2 * convs
    assert fields[-1] == (28, 28)  # every pixel; one output steps over the whole map
    assert receptive_fields(layers, (20, 28))[-1][0] == 28  # the larger side
    assert receptive_fields(layers)[-1][0] is None  # no input size: unknown


def input_support(model, upto: str, x: torch.Tensor) -> tuple[int, int, int]:
    """(first, last) input row with a nonzero d(unit)/d(input) for the centre unit of layer
    `upto` (its map index i along the rows), and i."""
    x = x.clone().requires_grad_(True)
    h = x
    for name, module in model.named_children():
        h = module(h)
        if name == upto:
            break
    i = h.shape[2] // 2
    h[0, 0, i, i].backward()
    rows, cols = np.nonzero(x.grad[0, 0].numpy())
    assert (rows.min(), rows.max()) == (cols.min(), cols.max())  # a square
    return int(rows.min()), int(rows.max()), i


@pytest.mark.parametrize("convs", [2, 9])  # rf 13 < 16 (fits), rf 48 > 16 (the whole input and beyond)
def test_receptive_fields_are_the_inputs_a_unit_gets_a_gradient_from(convs):
    # Oracle: with all-positive weights and biases, positive inputs and relu, every
    # input in a unit's receptive field has a nonzero gradient (avg pools: a max pool
    # passes the gradient to one input of its window).
    from dlx.components.activations import ACTIVATIONS
    from dlx.components.models.cnn import CNN, layer_names

    specs = layer_specs(
        {"conv": 1, "kernel": 3, "padding": 1},
        {"pool": "avg", "size": 2},
        *[{"conv": 1, "kernel": 3, "padding": 1}] * convs,
        {"pool": "global_avg"},
    )
    model = CNN((1, 16, 16), 2, specs, [], ACTIVATIONS.parse("relu"), "none", 0.0).double()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.1)
    x = torch.rand(1, 1, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 0.5
    fields = receptive_fields(specs, (16, 16))
    for name, (rf, jump) in zip(layer_names(specs), fields):
        first, last, i = input_support(model, name, x)
        if name == "pool2":  # the global pool
            assert (first, last) == (0, 15) and rf == 16
            continue
        # 'same' convs and 2x2 pools: unit i's window is centred on input i * jump + (jump - 1) / 2,
        # rf wide, and cut off by the image's edges (a conv's rf can exceed the input).
        centre = i * jump + (jump - 1) / 2
        assert (first, last) == (max(0, centre - (rf - 1) / 2), min(15, centre + (rf - 1) / 2)), name


def test_summary_shows_receptive_field_and_stride_per_layer(bars):
    layers = [
        {"conv": 2, "kernel": 3, "padding": 1},
        {"pool": "max", "size": 2},
        {"conv": 2, "kernel": 3, "padding": 1},
        {"pool": "global_avg"},
    ]
    s = model_summary(load_config(config({"name": "arrays", "path": str(bars)}, layers)))
    extra = {r["name"]: (r.get("rf"), r.get("stride")) for r in s["layers"] if "rf" in r}
    # The global pool sees the whole 8x8 input; its one output steps over the whole 4x4 map.
    assert extra == {"conv1": (3, 1), "pool1": (4, 2), "conv2": (8, 2), "pool2": (8, 8)}
    assert s["extra_columns"] == ["rf", "stride"]


def problems_of(cfg: dict) -> list:
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    return e.value.problems


@pytest.mark.parametrize(
    "layers, where, words",
    [
        # 28 -> pool 7 -> 4x4, and a 7x7 kernel does not fit.
        (
            [{"pool": "max", "size": 7}, {"conv": 8, "kernel": 7}],
            "model.layers.1",
            ["conv1", "kernel 7", "4x4", "(1, 4, 4)"],
        ),
        ([{"conv": 4, "kernel": 3, "dilation": 14}], "model.layers.0", ["conv1", "dilation 14", "spans 29", "28x28"]),
        # 28 -> 4 -> 1 -> a 2x2 pool leaves nothing.
        (
            [{"pool": "avg", "size": 7}, {"pool": "max", "size": 4}, {"pool": "max", "size": 2}],
            "model.layers.2",
            ["pool3", "1x1", "0x0", "(1, 1, 1)"],
        ),
        (
            [{"conv": 6}, {"conv": 8, "groups": 4}],
            "model.layers.1",
            ["conv2", "groups 4", "6 input channels", "(6, 26, 26)"],
        ),
        (
            [{"conv": 6, "groups": 1}, {"conv": 8, "groups": 3}],
            "model.layers.1",
            ["conv2", "groups 3", "8 output channels"],
        ),
        ([{"pool": "max", "size": 2, "padding": 2}], "model.layers.0", ["pool1", "padding 2", "half"]),
    ],
    ids=["kernel_7_on_4x4", "dilated_kernel_too_wide", "pool_on_1x1", "groups_in", "groups_out", "pool_padding"],
)
def test_bad_shapes_are_config_problems_naming_the_layer_and_its_shape(layers, where, words):
    problems = problems_of(config(MNIST_LAZY, layers))
    assert [p.path for p in problems] == [where]
    for w in words:
        assert w in problems[0].message


def test_cnn_on_flat_data_says_to_set_flatten_false():
    (p,) = problems_of(config({"name": "mnist", "download": True}, [{"conv": 4}]))
    assert p.path == "model" and "data.flatten: false" in p.message and "(784,)" in p.message
    (p,) = problems_of(config({"name": "blobs", "dim": 5}, [{"conv": 4}]))
    assert p.path == "model" and "(5,)" in p.message and "images (N, C, H, W)" in p.message


def test_bad_shape_in_an_npz_is_found_when_the_data_is_loaded(tmp_path):
    path = bars_npz(tmp_path / "small.npz", n_train=8, n_test=4, side=4)
    with pytest.raises(ConfigError) as e:
        dlx.train(config({"name": "arrays", "path": str(path)}, [{"conv": 4, "kernel": 5}]), save=False)
    (p,) = e.value.problems
    assert p.path == "model.layers.0" and "conv1" in p.message and "4x4" in p.message


@pytest.mark.parametrize(
    "layer, where, words",
    [
        ({"conv": 4, "kernal": 3}, "model.layers.0.kernal", ["unknown key 'kernal'", "did you mean 'kernel'"]),
        ({"pool": "max", "kernel": 3}, "model.layers.0.kernel", ["'kernel' is a conv layer key", "size, stride"]),
        ({"pool": "maxx"}, "model.layers.0.pool", ["'maxx'", "did you mean 'max'", "avgmax"]),
        ({"pool": "global_avg", "size": 2}, "model.layers.0", ["covers the whole map", "remove size"]),
        ({"conv": 4, "pool": "max"}, "model.layers.0", ["not both"]),
        ({"channels": 4}, "model.layers.0", ["conv: CHANNELS", "pool: KIND"]),
        (32, "model.layers.0", ["conv: CHANNELS", "got 32"]),
        ({"conv": 0}, "model.layers.0.conv", ["greater than 0"]),
    ],
)
def test_layer_specs_reject_bad_keys_at_the_layer(layer, where, words):
    problems = problems_of(config(MNIST_LAZY, [layer]))
    assert [p.path for p in problems] == [where]
    for w in words:
        assert w in problems[0].message


def test_dlx_validate_exits_2_on_a_kernel_larger_than_its_map(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "data: {name: mnist, flatten: false, download: true}\n"
        "model:\n"
        "  name: cnn\n"
        "  layers:\n"
        "    - {pool: max, size: 7}\n"
        "    - {conv: 8, kernel: 7}\n"
    )
    env = {**os.environ, "DLX_CACHE_DIR": str(tmp_path / "cache")}
    p = subprocess.run(
        [sys.executable, "-m", "dlx", "validate", str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2, p.stderr
    assert f"{path}:6: model.layers.1: conv1: kernel 7 is larger than its padded input 4x4" in p.stderr
    assert "Traceback" not in p.stderr


def test_resolved_config_reloads_to_the_same_model():
    cfg = load_config(config(MNIST_LAZY, [{"conv": 4, "padding": 1}, {"pool": "max"}, {"pool": "global_avg"}]))
    layers = cfg.resolved()["model"]["layers"]
    assert layers[1] == {"pool": "max"} and layers[2] == {"pool": "global_avg"}  # no size: null clutter
    assert layers[0]["kernel"] == 3 and layers[0]["bias"] is True
    assert load_config(cfg.resolved()) == cfg

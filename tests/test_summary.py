"""`dlx summary`: shapes from a real forward pass, counts from the modules."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import CONFIGS

from dlx.config.loader import load_config
from dlx.run.summary import model_summary


def test_mlp_summary_counts_match_the_formula_and_the_model(tiny):
    tiny["model"] = {"name": "mlp", "widths": [16, 8]}
    tiny["regularization"] = {"norm": "batch"}
    s = model_summary(load_config(tiny))
    rows = {r["name"]: r for r in s["layers"]}
    assert rows["fc1"]["params"] == (2 + 1) * 16
    assert rows["fc2"]["params"] == (16 + 1) * 8
    assert rows["out"]["params"] == (8 + 1) * 3
    assert rows["bn1"]["params"] == 2 * 16
    assert rows["fc2"]["output"] == [2, 8] and s["output"] == [2, 3]
    assert s["total_params"] == sum(r["params"] for r in s["layers"])
    assert [r["name"] for r in s["layers"]][:3] == ["fc1", "bn1", "act1"]


def test_summary_command_prints_layers_and_total():
    p = subprocess.run(
        [sys.executable, "-m", "dlx", "summary", str(CONFIGS / "quickstart.yaml")], capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr
    assert "fc1" in p.stdout and "total parameters: 8,707" in p.stdout


def test_summary_of_an_mnist_cnn_needs_no_data_and_no_network(tmp_path):
    """Shapes come from the spec (two blank 1x28x28 images), so an empty data folder, an
    empty cache and no network still print the table; nothing is downloaded."""
    empty, cache = tmp_path / "empty", tmp_path / "cache"
    empty.mkdir()
    env = {
        **os.environ,
        "DLX_DATA_DIR": str(empty),
        "DLX_CACHE_DIR": str(cache),
        # Any download attempt would fail at once: no network.
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
        "http_proxy": "http://127.0.0.1:9",
    }
    p = subprocess.run(
        [sys.executable, "-m", "dlx", "summary", str(CONFIGS / "cnn_mnist.yaml")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert "input [2, 1, 28, 28]" in p.stdout and "2x32x7x7" in p.stdout and "total parameters" in p.stdout
    assert not any(empty.iterdir()) and not (cache.exists() and any(cache.rglob("*idx*")))


@pytest.mark.parametrize(
    "data", [{"name": "mnist"}, {"name": "mnist", "flatten": False, "normalize": False}, {"name": "seq_mnist"}]
)
def test_the_mnist_stand_in_is_shaped_typed_and_scaled_like_the_real_data(data, mnist_dir):
    spec = load_config(
        {
            "data": {**data, "root": str(mnist_dir), "n_train": 64, "n_test": 32},
            "model": {"name": "lstm"} if data["name"] == "seq_mnist" else {"name": "mlp"},
        }
    ).data
    real, stand_in = spec.load(0), spec.stand_in(0)
    for key in ("name", "feature_shape", "task", "n_classes", "out_dim", "sequence_target", "scale", "shift"):
        assert getattr(stand_in, key) == getattr(real, key), key
    assert stand_in.x_train.dtype == real.x_train.dtype and stand_in.y_train.dtype == real.y_train.dtype


def test_l1_leaves_more_weights_near_zero_than_l2_at_equal_accuracy(tmp_path):
    import dlx

    short = ["train.steps=400"]
    l2 = dlx.train("l1_vs_l2", short, runs_dir=tmp_path / "runs", quiet=True)
    l1 = dlx.train(
        "l1_vs_l2", [*short, "regularization.l2=0", "regularization.l1=0.001"], runs_dir=tmp_path / "runs", quiet=True
    )
    near = lambda run: {l["name"]: l["near_zero"] for l in run.summary["layers"]}  # noqa: E731
    assert all(near(l1)[k] > near(l2)[k] + 0.3 for k in ("fc1", "fc2"))
    assert abs(l1.summary["final"]["test_acc"] - l2.summary["final"]["test_acc"]) < 0.05
    # The oracle: the share of the saved weights below 1e-3.
    import torch

    w = torch.load(l1.path / "checkpoint.pt", weights_only=True)["model"]["fc2.weight"]
    assert near(l1)["fc2"] == (w.abs() < 1e-3).float().mean().item()
    from dlx.views.plots import pictures_figure

    fig = pictures_figure([l2.path, l1.path], ["sparsity"])
    assert any("sparsity" in ax.get_title() for ax in fig.axes)

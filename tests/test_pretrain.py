"""Greedy layer-wise pretraining: each layer learns to reconstruct its input, and a deep
sigmoid net's input layers get a gradient again."""

from __future__ import annotations

import pytest
import torch

import dlx
from dlx.config.loader import load_config
from dlx.core.errors import ConfigError
from dlx.run.trainer import Trainer


def test_each_layer_learns_to_reconstruct_its_input_and_the_output_layer_is_left_alone():
    cfg = load_config("layerwise_pretraining", ["model.depth=3", "pretrain.steps=200"])
    plain = Trainer(load_config("layerwise_pretraining", ["model.depth=3", "pretrain=null"]))
    tr = Trainer(cfg)
    assert [p["layer"] for p in tr.pretrained] == ["fc1", "fc2", "fc3"]
    assert all(p["after"] < p["before"] for p in tr.pretrained)
    torch.testing.assert_close(tr.model.out.weight, plain.model.out.weight)  # same init, untouched
    assert not torch.equal(tr.model.fc1.weight, plain.model.fc1.weight)
    again = Trainer(cfg)  # its own seeded stream: the same pretrained weights
    torch.testing.assert_close(again.model.fc2.weight, tr.model.fc2.weight)


def test_pretraining_gets_the_gradient_back_to_a_deep_sigmoid_nets_input_layer(tmp_path):
    sets = ["train.epochs=2", "pretrain.steps=200"]
    pre = dlx.train("layerwise_pretraining", sets, runs_dir=tmp_path, quiet=True)
    plain = dlx.train("layerwise_pretraining", [*sets, "pretrain=null"], runs_dir=tmp_path, quiet=True)

    def ratio(run):
        median = {layer["name"]: layer["grad_norm"]["median"] for layer in run.summary["layers"]}
        return median["fc1"] / median["out"]

    assert ratio(pre) > 100 * ratio(plain)
    assert "vanishing" in [v["kind"] for v in plain.summary["verdicts"]]
    assert "vanishing" not in [v["kind"] for v in pre.summary["verdicts"]]


def test_pretraining_refuses_what_it_cannot_pretrain():
    with pytest.raises(ConfigError, match="plain mlp"):
        Trainer(load_config("layerwise_pretraining", ["regularization.dropout=0.2"]))

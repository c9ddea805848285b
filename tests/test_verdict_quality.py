"""Verdict quality: small real runs of the classic cases, each with a known root cause.

Every pathological run must lead with its root cause (the headline) and a remedy
that names the fix; every healthy run, across activations, inits, optimizers and
data sets, must get no alarm at all. A few remedies are then applied and must make
the root cause go away. One thread, small nets: ~25 s in all.
"""

from __future__ import annotations

import copy

import pytest
from conftest import train_in_parallel

from dlx.diagnosis.engine import KINDS

BASE = {
    "seed": 0,
    "data": {"name": "spirals", "n_train": 600, "n_test": 300},
    "model": {"name": "mlp", "depth": 3, "width": 32},
    "activation": "relu",
    "init": "kaiming_normal",
    "optimizer": {"name": "adam", "lr": 0.01},
    "train": {"steps": 600, "batch_size": 32, "log_every": 10, "threads": 1},
}


def case(**changes) -> dict:
    """BASE with whole sections replaced, except `data` and `train`, which are merged key by key."""
    cfg = copy.deepcopy(BASE)
    for key, value in changes.items():
        if key in ("data", "train") and "name" not in value or key == "train":
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = copy.deepcopy(value)
    return cfg


def data(name, **kw):
    return {"name": name, "n_train": 600, "n_test": 300, **kw}


HEALTHY = {
    "relu_he_adam_spirals": case(),
    "tanh_xavier_adam_moons": case(
        data=data("moons"), activation="tanh", init="xavier_uniform", optimizer={"name": "adam", "lr": 0.003}
    ),
    "sigmoid_shallow_adam_circles": case(
        data=data("circles"),
        model={"name": "mlp", "depth": 2, "width": 32},
        activation="sigmoid",
        init="xavier_uniform",
    ),
    "relu_he_10_layers_momentum_moons": case(
        data=data("moons"), model={"name": "mlp", "depth": 10, "width": 32}, optimizer={"name": "momentum", "lr": 0.02}
    ),
    "gelu_he_adam_xor": case(data=data("xor"), activation="gelu"),
    "selu_lecun_sgd_blobs": case(
        data=data("blobs"),
        activation="selu",
        init="lecun_normal",
        optimizer={"name": "sgd", "lr": 0.05},
        train={"steps": 300},
    ),
    "elu_he_rmsprop_spirals": case(activation="elu", optimizer={"name": "rmsprop", "lr": 0.003}),
    "deep_sigmoid_with_batch_norm_moons": case(
        data=data("moons"),
        model={"name": "mlp", "depth": 8, "width": 32},
        activation="sigmoid",
        init="xavier_uniform",
        regularization={"norm": "batch"},
    ),
    "resnet_6_blocks_spirals": case(model={"name": "resnet", "blocks": 6, "width": 32}),
    "teacher_regression_mse": case(
        data=data("teacher"), activation="tanh", init="xavier_uniform", train={"loss": "mse"}
    ),
    "lstm_adding_15_steps": case(
        data={"name": "adding", "length": 15, "n_train": 1000, "n_test": 300},
        model={"name": "lstm", "hidden": 16},
        activation="tanh",
        init="default",
        train={"loss": "mse"},
    ),
}

# name: (config, the root cause's kind, a phrase its remedy must name)
PATHOLOGICAL = {
    "lr_too_high_sgd_diverges": (case(optimizer={"name": "sgd", "lr": 3.0}), "lr_too_high", "optimizer.lr: 0.3"),
    "lr_too_high_momentum_kills_units": (
        case(optimizer={"name": "momentum", "lr": 0.5}),
        "lr_too_high",
        "optimizer.lr: 0.05",
    ),
    # The issue's case: once "vanishing gradients ... tanh ... xavier"; the steps wrecked the net.
    "lr_too_high_adam_tanh_moons": (
        case(data=data("moons"), activation="tanh", init="xavier_uniform", optimizer={"name": "adam", "lr": 0.5}),
        "lr_too_high",
        "optimizer.lr: 0.05",
    ),
    "lr_too_high_adam_spirals": (case(optimizer={"name": "adam", "lr": 0.3}), "lr_too_high", "optimizer.lr: 0.03"),
    "lr_too_low_sgd": (case(optimizer={"name": "sgd", "lr": 1e-4}), "lr_too_low", "optimizer.lr: 0.01"),
    # He et al. 2015's case: Xavier halves the variance at every ReLU layer.
    "xavier_relu_30_layers": (
        case(
            model={"name": "mlp", "depth": 30, "width": 32},
            init="xavier_normal",
            optimizer={"name": "momentum", "lr": 0.01},
        ),
        "init_scale",
        "init: kaiming_normal",
    ),
    "normal_init_tanh": (
        case(
            model={"name": "mlp", "depth": 10, "width": 32},
            activation="tanh",
            init={"name": "normal", "std": 1.0},
            optimizer={"name": "adam", "lr": 0.001},
        ),
        "init_scale",
        "init: xavier_uniform",
    ),
    "normal_init_relu": (
        case(
            model={"name": "mlp", "depth": 6, "width": 32},
            init={"name": "normal", "std": 1.0},
            optimizer={"name": "sgd", "lr": 0.01},
        ),
        "init_scale",
        "init: kaiming_normal",
    ),
    "deep_sigmoid": (
        case(
            model={"name": "mlp", "depth": 10, "width": 32},
            activation="sigmoid",
            init="xavier_uniform",
            optimizer={"name": "sgd", "lr": 0.1},
        ),
        "vanishing",
        "activation: relu + init: kaiming_normal",
    ),
    "zero_init": (case(init="zeros", optimizer={"name": "sgd", "lr": 0.1}), "symmetry", "init: kaiming_normal"),
    "constant_init": (
        case(init={"name": "constant", "value": 0.1}, optimizer={"name": "sgd", "lr": 0.05}),
        "symmetry",
        "init: kaiming_normal",
    ),
    "dead_relus_from_a_negative_bias": (
        case(init={"name": "kaiming_normal", "bias": -3.0}, optimizer={"name": "sgd", "lr": 0.05}),
        "dead_units",
        "bias: 0",
    ),
    "exploding_rnn": (
        case(
            data={"name": "adding", "length": 50, "n_train": 500, "n_test": 200},
            model={"name": "rnn", "hidden": 32},
            activation="relu",
            init={"name": "orthogonal", "gain": 1.5},
            optimizer={"name": "sgd", "lr": 0.01},
            train={"loss": "mse", "steps": 200},
        ),
        "exploding",
        "init: orthogonal (gain 1",
    ),
    "vanishing_through_time_rnn": (
        case(
            data={"name": "adding", "length": 100, "n_train": 500, "n_test": 200},
            model={"name": "rnn", "hidden": 32},
            activation="tanh",
            init="default",
            regularization={"clip_norm": 1.0},
            train={"loss": "mse", "steps": 150},
        ),
        "vanishing_through_time",
        "model.name: lstm (or gru",
    ),
    "overfitting_100_samples": (
        case(
            data={"name": "spirals", "n_train": 100, "n_test": 500, "noise": 0.1},
            model={"name": "mlp", "widths": [256, 256]},
            optimizer={"name": "adam", "lr": 0.003},
            train={"steps": 800, "batch_size": "full", "eval_every": 50},
        ),
        "overfitting",
        "regularization.l2",
    ),
    "slow_sgd": (case(optimizer={"name": "sgd", "lr": 0.02}, train={"steps": 300}), "slow", "optimizer.lr: 0.06"),
}

ALARMS = set(KINDS) - {"healthy"}


@pytest.fixture(scope="module")
def summaries():
    """Every run of this file, trained once, a run per core at once (one thread each)."""
    jobs = {name: (cfg, (), {}) for name, cfg in HEALTHY.items()}
    jobs.update({name: (cfg, (), {}) for name, (cfg, _, _) in PATHOLOGICAL.items()})
    jobs.update({f"{name}+remedy": ({**PATHOLOGICAL[name][0], **fix}, (), {}) for name, fix in REMEDIED.items()})
    return train_in_parallel(jobs)


def summary_of(summaries, name) -> dict:
    status, value = summaries[name]
    assert status == "ok", f"{name} failed to train:\n{value}"
    return value


def explain(summary) -> str:
    return "\n".join(
        f"  {v['kind']}: {v['message']}\n    cause: {v['cause']}\n    try: {v['remedy']}" for v in summary["verdicts"]
    )


def test_the_suite_covers_at_least_10_healthy_and_14_pathological_runs():
    assert len(HEALTHY) >= 10 and len(PATHOLOGICAL) >= 14
    assert {kind for _, kind, _ in PATHOLOGICAL.values()} >= {
        "lr_too_high",
        "lr_too_low",
        "init_scale",
        "vanishing",
        "symmetry",
        "dead_units",
        "exploding",
        "vanishing_through_time",
        "overfitting",
        "slow",
    }


@pytest.mark.parametrize("name", HEALTHY)
def test_a_healthy_run_gets_no_alarm_and_says_how_far_it_got(summaries, name):
    s = summary_of(summaries, name)
    kinds = [v["kind"] for v in s["verdicts"]]
    assert kinds == ["healthy"], f"{name}:\n{explain(s)}"
    assert s["outcome"]["kind"] in ("converged", "still_improving")
    # What it learned leads the headline; gradient flow follows.
    assert s["verdict"].startswith(f"healthy: {s['outcome']['kind'].replace('_', ' ')}: train loss")


@pytest.mark.parametrize("name", PATHOLOGICAL)
def test_a_pathological_run_leads_with_its_root_cause_and_a_remedy_that_names_the_fix(summaries, name):
    _, root, fix = PATHOLOGICAL[name]
    s = summary_of(summaries, name)
    head = s["verdicts"][0]
    assert head["kind"] == root, f"{name}:\n{explain(s)}"
    assert "symptom_of" not in head and fix in head["remedy"], f"{name}:\n{explain(s)}"
    assert s["verdict"] == head["message"]
    # Everything after the root cause that it explains says so (and no symptom is "healthy").
    for v in s["verdicts"][1:]:
        assert v["kind"] in ALARMS
        if v.get("symptom_of"):
            assert v["symptom_of"] in {u["kind"] for u in s["verdicts"]} and "above" in v["cause"]


# Applying the headline's remedy removes the root cause: the remedy fixes the cause it names.
REMEDIED = {
    "lr_too_high_adam_tanh_moons": {"optimizer": {"name": "adam", "lr": 0.05}},
    "xavier_relu_30_layers": {"init": "kaiming_normal"},
    "normal_init_tanh": {"init": "xavier_uniform"},
    "lr_too_low_sgd": {"optimizer": {"name": "sgd", "lr": 0.01}},
    "dead_relus_from_a_negative_bias": {"init": {"name": "kaiming_normal", "bias": 0.0}},
}


@pytest.mark.parametrize("name", REMEDIED)
def test_applying_the_named_remedy_removes_the_root_cause(summaries, name):
    _, root, _ = PATHOLOGICAL[name]
    s = summary_of(summaries, f"{name}+remedy")
    kinds = [v["kind"] for v in s["verdicts"]]
    assert root not in kinds, f"{name} remedied:\n{explain(s)}"
    assert not {"diverged", "not_learning"} & set(kinds), f"{name} remedied:\n{explain(s)}"

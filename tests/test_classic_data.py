"""The classic results' data: label noise on every classification set, modular arithmetic,
Boolean functions and the linear teacher, each checked against a direct formula, trained a
few steps through dlx's own loader, and refused with the key and the fix when wrong."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from dlx.components.data import DATASETS
from dlx.config.loader import load_config
from dlx.core.errors import ConfigError
from dlx.run.trainer import Trainer


def load(name, seed=0, **kw):
    return DATASETS.parse({"name": name, **kw}).load(seed)


def trains(data: dict, loss: str = "cross_entropy"):
    """A few steps of a small mlp on this data, through the config loader and the trainer."""
    cfg = load_config(
        {
            "data": data,
            "model": {"name": "mlp", "depth": 1, "width": 16},
            "train": {"steps": 5, "batch_size": 8, "loss": loss, "device": "cpu"},
        }
    )
    outcome = Trainer(cfg).run()
    assert outcome.status == "completed"
    assert outcome.step == 5
    return outcome


def refused(config_data: dict, *needles: str, loss: str = "cross_entropy") -> str:
    """The loader's message for a bad data section; it must name every needle."""
    with pytest.raises(ConfigError) as e:
        load_config({"data": config_data, "model": "mlp", "train": {"loss": loss}})
    text = str(e.value)
    for needle in needles:
        assert needle in text, text
    return text


# ============================================================== label noise

CLASSIFIERS = {"spirals": 3, "moons": 2, "circles": 2, "xor": 2, "blobs": 3, "parity": 2}


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_label_noise_redraws_that_fraction_of_training_labels_and_leaves_test_alone(name):
    n, noise, k = 4000, 0.4, CLASSIFIERS[name]
    clean = load(name, seed=3, n_train=n, n_test=200)
    noisy = load(name, seed=3, n_train=n, n_test=200, label_noise=noise)
    changed = int((noisy.y_train != clean.y_train).sum())
    # Each label is re-drawn with probability noise, and a re-draw lands on another class with
    # probability 1 - 1/k: binomial, checked to 5 standard deviations.
    q = noise * (1 - 1 / k)
    assert abs(changed - n * q) < 5 * math.sqrt(n * q * (1 - q))
    assert int(noisy.y_train.min()) >= 0 and int(noisy.y_train.max()) < k
    assert torch.equal(noisy.x_train, clean.x_train)
    assert torch.equal(noisy.x_test, clean.x_test)
    assert torch.equal(noisy.y_test, clean.y_test)


def test_label_noise_of_one_gives_labels_independent_of_the_inputs():
    clean = load("blobs", seed=0, n_train=6000, classes=3)
    noisy = load("blobs", seed=0, n_train=6000, classes=3, label_noise=1.0)
    # Random labels: agreement with the true class is chance (1/3), each class about a third.
    assert float((noisy.y_train == clean.y_train).float().mean()) == pytest.approx(1 / 3, abs=0.03)
    assert np.allclose(np.bincount(noisy.y_train.numpy(), minlength=3) / 6000, 1 / 3, atol=0.03)


@pytest.mark.parametrize("name", ["spirals", "modular", "boolean"])
def test_label_noise_zero_is_bit_identical_to_none(name):
    kw = {"p": 7} if name == "modular" else {"n": 5} if name == "boolean" else {}
    plain = load(name, seed=5, **kw)
    zero = load(name, seed=5, label_noise=0.0, **kw)
    for a, b in zip(
        (plain.x_train, plain.y_train, plain.x_test, plain.y_test),
        (zero.x_train, zero.y_train, zero.x_test, zero.y_test),
    ):
        assert torch.equal(a, b)


def test_label_noise_is_the_same_for_the_same_seed_and_differs_across_seeds():
    a, b = load("moons", seed=9, label_noise=0.5), load("moons", seed=9, label_noise=0.5)
    c = load("moons", seed=10, label_noise=0.5)
    assert torch.equal(a.y_train, b.y_train)
    clean_c = load("moons", seed=10)
    # Seed 10's noisy labels differ from its clean ones and from seed 9's draw.
    assert not torch.equal(c.y_train, clean_c.y_train)
    assert not torch.equal(c.y_train, a.y_train)


def test_label_noise_also_reaches_the_data_a_config_check_peeks_at():
    spec = DATASETS.parse({"name": "xor", "label_noise": 0.5})
    assert torch.equal(spec.peek(1).y_train, spec.load(1).y_train)
    assert spec.load(1).label_noise == 0.5


def test_label_noise_trains_end_to_end():
    trains({"name": "spirals", "n_train": 64, "n_test": 32, "label_noise": 1.0})


def test_label_noise_above_one_is_refused_naming_the_key_and_its_range():
    refused({"name": "spirals", "label_noise": 1.5}, "data.label_noise", "less than or equal to 1")


@pytest.mark.parametrize("name", ["teacher", "adding", "linear_teacher"])
def test_label_noise_on_a_regression_set_is_refused_saying_to_remove_it(name):
    refused({"name": name, "label_noise": 0.2}, "data.label_noise", "regression", "remove label_noise", loss="mse")


def test_label_noise_on_arrays_that_turn_out_regression_is_refused_at_load(tmp_path):
    from dlx.core.errors import SpecError

    path = tmp_path / "r.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.normal(size=(10, 2)), y_train=rng.normal(size=(10, 1)), x_test=rng.normal(size=(4, 2)),
             y_test=rng.normal(size=(4, 1)))  # fmt: skip
    with pytest.raises(SpecError, match="remove label_noise") as e:
        load("arrays", path=str(path), label_noise=0.5)
    assert e.value.path == ("data", "label_noise")


# ============================================================== modular


def modular_label(a: int, b: int, op: str, p: int) -> int:
    """The label by the textbook formula (div by searching for the inverse)."""
    if op == "add":
        return (a + b) % p
    if op == "sub":
        return (a - b) % p
    if op == "mul":
        return (a * b) % p
    inverse = next(c for c in range(1, p) if (b * c) % p == 1)
    return (a * inverse) % p


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_modular_labels_every_pair_by_its_operation_mod_p(op):
    p = 11
    d = load("modular", seed=2, p=p, operation=op, train_fraction=0.3)
    x = torch.cat([d.x_train, d.x_test]).numpy()
    y = torch.cat([d.y_train, d.y_test]).numpy()
    assert x.shape[1] == 2 * p and d.n_classes == p and d.task == "classification"
    assert np.all(x.sum(axis=1) == 2)  # one one-hot per operand
    a, b = x[:, :p].argmax(axis=1), x[:, p:].argmax(axis=1)
    pairs = set(zip(a.tolist(), b.tolist()))
    everything = {(i, j) for i in range(p) for j in range(p) if op != "div" or j != 0}
    assert pairs == everything and len(a) == len(everything)  # every pair once
    assert all(int(t) == modular_label(int(i), int(j), op, p) for i, j, t in zip(a, b, y))


def test_modular_splits_by_train_fraction_at_random_from_the_seed():
    d = load("modular", seed=0, p=13, train_fraction=0.25)
    assert len(d.x_train) == round(0.25 * 169) and len(d.x_test) == 169 - round(0.25 * 169)
    again, other = (
        load("modular", seed=0, p=13, train_fraction=0.25),
        load("modular", seed=1, p=13, train_fraction=0.25),
    )
    assert torch.equal(d.x_train, again.x_train)
    assert not torch.equal(d.x_train, other.x_train)
    # At random, not the first pairs in order: the training a's spread over 0..p-1.
    assert len(set(d.x_train[:, :13].argmax(1).tolist())) > 8


def test_modular_accepts_sizes_equal_to_the_derived_ones():
    spec = DATASETS.parse({"name": "modular", "p": 7, "n_train": 24, "n_test": 25})
    assert spec.sizes() == (24, 25)


def test_modular_trains_end_to_end():
    trains({"name": "modular", "p": 7, "operation": "mul"})


def test_modular_p_below_two_is_refused_naming_p():
    refused({"name": "modular", "p": 1}, "data.p", "greater than or equal to 2")


def test_modular_div_with_a_composite_p_is_refused_with_a_prime_to_use():
    refused({"name": "modular", "p": 12, "operation": "div"}, "data.operation", "not prime", "use a prime p (e.g. 13)")


def test_modular_n_train_that_differs_from_the_split_is_refused_saying_what_sets_it():
    refused({"name": "modular", "p": 7, "n_train": 10}, "n_train: 10", "24", "Leave n_train out", "train_fraction")


# ============================================================== boolean


@pytest.mark.parametrize("function", ["parity", "majority"])
def test_boolean_labels_all_patterns_by_the_formula_and_tests_on_them_too(function):
    n = 5
    d = load("boolean", seed=0, n=n, function=function)
    x, y = d.x_train.numpy(), d.y_train.numpy()
    assert x.shape == (2**n, n) and set(np.unique(x)) == {-1.0, 1.0}
    assert len({tuple(r) for r in x.tolist()}) == 2**n  # every pattern once
    true_bits = (x > 0).sum(axis=1)
    expected = true_bits % 2 if function == "parity" else (true_bits > n - true_bits).astype(int)
    assert np.array_equal(y, expected)
    assert torch.equal(d.x_test, d.x_train) and torch.equal(d.y_test, d.y_train)
    assert d.n_classes == 2


def test_boolean_majority_tie_is_class_zero():
    d = load("boolean", n=2, function="majority")
    ties = (d.x_train.sum(1) == 0).numpy()
    assert ties.sum() == 2 and np.all(d.y_train.numpy()[ties] == 0)


def test_boolean_random_is_a_truth_table_drawn_from_the_seed():
    a, b, c = (load("boolean", seed=s, n=6, function="random") for s in (4, 4, 5))
    assert torch.equal(a.y_train, b.y_train) and not torch.equal(a.y_train, c.y_train)
    assert 0.3 < float(a.y_train.float().mean()) < 0.7


def test_boolean_trains_end_to_end():
    trains({"name": "boolean", "n": 4, "function": "parity"})


def test_boolean_n_above_sixteen_is_refused_naming_n():
    refused({"name": "boolean", "n": 40}, "data.n", "less than or equal to 16")


def test_boolean_n_test_other_than_all_patterns_is_refused_saying_to_set_n():
    refused({"name": "boolean", "n": 3, "n_test": 3}, "n_test: 3", "2^3 = 8 patterns", "Leave n_test out", "set n")


# ============================================================== linear teacher


def teacher_data(**kw):
    return load("linear_teacher", seed=1, inputs=6, outputs=4, singular_values=[3.0, 1.5, 0.5], n_train=200, **kw)


def test_linear_teacher_targets_are_u_diag_s_vt_x():
    d = teacher_data()
    u, s, vt = d.teacher
    assert u.shape == (4, 3) and s.tolist() == [3.0, 1.5, 0.5] and vt.shape == (3, 6)
    np.testing.assert_allclose(u.T @ u, np.eye(3), atol=1e-10)
    np.testing.assert_allclose(vt @ vt.T, np.eye(3), atol=1e-10)
    for x, y in ((d.x_train, d.y_train), (d.x_test, d.y_test)):
        x64 = x.numpy().astype(np.float64)
        np.testing.assert_allclose(y.numpy(), x64 @ (u * s @ vt).T, atol=1e-5)
    assert d.task == "regression" and d.y_train.shape == (200, 4)


def test_linear_teacher_training_inputs_are_exactly_white():
    x = teacher_data().x_train.numpy().astype(np.float64)
    np.testing.assert_allclose(x.T @ x / len(x), np.eye(6), atol=1e-5)


def test_linear_teacher_least_squares_fit_recovers_the_singular_values():
    d = teacher_data()
    x, y = d.x_train.numpy().astype(np.float64), d.y_train.numpy().astype(np.float64)
    w, *_ = np.linalg.lstsq(x, y, rcond=None)  # y ≈ x w, w = (U diag(s) Vt)^T
    sv = np.linalg.svd(w, compute_uv=False)
    np.testing.assert_allclose(sv[:3], [3.0, 1.5, 0.5], atol=1e-5)
    assert np.all(sv[3:] < 1e-5)


def test_linear_teacher_is_one_teacher_per_seed_whatever_the_sample_size():
    a = load("linear_teacher", seed=3, n_train=50)
    b = load("linear_teacher", seed=3, n_train=400, n_test=10)
    c = load("linear_teacher", seed=4, n_train=50)
    for ta, tb in zip(a.teacher, b.teacher):
        np.testing.assert_array_equal(ta, tb)
    assert not np.allclose(a.teacher[0], c.teacher[0])


def test_linear_teacher_noise_is_added_to_the_targets():
    clean, noisy = teacher_data(), teacher_data(noise=0.1)
    resid = (noisy.y_train - clean.y_train).numpy()
    assert np.std(resid) == pytest.approx(0.1, rel=0.15)


def test_linear_teacher_trains_end_to_end():
    trains({"name": "linear_teacher", "inputs": 4, "outputs": 3, "singular_values": [2.0, 1.0], "n_train": 64}, "mse")


def test_linear_teacher_more_singular_values_than_modes_is_refused_with_the_limit():
    refused(
        {"name": "linear_teacher", "inputs": 2, "outputs": 5, "singular_values": [1.0, 2.0, 3.0]},
        "data.singular_values",
        "at most 2 modes",
        "give at most 2 values",
        loss="mse",
    )


def test_linear_teacher_non_positive_singular_value_is_refused():
    refused(
        {"name": "linear_teacher", "singular_values": [1.0, 0.0]}, "data.singular_values", "greater than 0", loss="mse"
    )


def test_linear_teacher_refuses_normalize_because_it_would_change_the_map():
    refused(
        {"name": "linear_teacher", "normalize": True}, "normalize", "already white", "leave normalize out", loss="mse"
    )


def test_linear_teacher_too_few_samples_to_whiten_is_refused():
    refused({"name": "linear_teacher", "inputs": 8, "n_train": 5}, "n_train", "use n_train >= 8", loss="mse")


def test_classic_specs_are_listed_with_their_docs():
    rows = {name: (params, doc) for name, params, doc in DATASETS.describe()}
    for name, key in (
        ("modular", "train_fraction=0.5"),
        ("boolean", "function=parity"),
        ("linear_teacher", "noise=0.0"),
    ):
        assert key in rows[name][0] and rows[name][1]
    assert any("label_noise" in note for note in DATASETS.notes)


def test_parse_errors_are_pydantic_errors_for_the_python_api():
    with pytest.raises(ValidationError):
        DATASETS.parse({"name": "boolean", "n": 0})

"""Sequence tasks: shapes known before loading, determinism, and the targets each task defines."""

from __future__ import annotations

import pytest
import torch

from dlx.components.data import DATASETS
from dlx.config.loader import load_config
from dlx.core.errors import ConfigError

SMALL = {"n_train": 200, "n_test": 50}


def spec(name, **params):
    return DATASETS.parse({"name": name, **SMALL, **params})


@pytest.mark.parametrize(
    "name,params,shape,y_shape",
    [
        ("adding", {"length": 30}, (30, 2), (1,)),
        ("copy", {"length": 4, "delay": 3, "symbols": 5}, (12, 7), (12,)),
        ("parity", {"length": 9}, (9, 1), ()),
    ],
)
def test_shapes_are_known_before_loading(name, params, shape, y_shape):
    s = spec(name, **params)
    assert s.feature_shape() == shape
    d = s.load(0)
    assert d.feature_shape == shape
    assert tuple(d.x_train.shape) == (200, *shape) and tuple(d.x_test.shape) == (50, *shape)
    assert tuple(d.y_train.shape) == (200, *y_shape) and tuple(d.y_test.shape) == (50, *y_shape)
    assert d.x_train.dtype == torch.float32


@pytest.mark.parametrize("name", ["adding", "copy", "parity"])
def test_same_seed_same_data(name):
    s = spec(name)
    a, b, c = s.load(3), s.load(3), s.load(4)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)


def test_adding_marks_one_value_in_each_half_and_sums_them():
    d = spec("adding", length=20, n_train=4000, n_test=100).load(0)
    values, marks = d.x_train[..., 0], d.x_train[..., 1]
    assert ((values >= 0) & (values <= 1)).all()
    assert (marks[:, :10].sum(1) == 1).all() and (marks[:, 10:].sum(1) == 1).all()
    torch.testing.assert_close(d.y_train[:, 0], (values * marks).sum(1))
    assert d.task == "regression" and d.out_dim == 1
    # Always predicting 1 (the mean of the sum) scores Var(u1 + u2) = 2/12.
    baseline = ((d.y_train - 1.0) ** 2).mean().item()
    assert baseline == pytest.approx(1 / 6, abs=0.02)


def test_copy_targets_are_blank_except_the_recall_window():
    s = spec("copy", length=5, delay=4, symbols=6)
    d = s.load(1)
    blank = 6
    x = d.x_train.argmax(-1)  # one-hot -> input ids (6 = blank, 7 = recall marker)
    assert (d.x_train.sum(-1) == 1).all()
    window = s.recall_window()
    assert (window.start, window.stop) == (10, 15)
    assert (d.y_train[:, : window.start] == blank).all()
    assert torch.equal(d.y_train[:, window], x[:, :5])  # the symbols, in order
    assert (d.y_train[:, window] < blank).all()
    assert (x[:, 5:9] == blank).all() and (x[:, 9] == 7).all() and (x[:, 10:] == blank).all()
    assert d.sequence_target and d.n_classes == 7


def test_parity_label_is_the_xor_of_the_bits():
    d = spec("parity", length=7).load(0)
    bits = d.x_train[..., 0].long()
    assert set(bits.unique().tolist()) == {0, 1}
    assert torch.equal(d.y_train, bits.sum(1) % 2)
    assert 0.35 < d.y_train.float().mean().item() < 0.65


def test_normalize_standardises_each_feature_over_samples_and_steps():
    d = spec("adding", length=16, normalize=True).load(0)
    flat = d.x_train.reshape(-1, 2)
    torch.testing.assert_close(flat.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(flat.std(0), torch.ones(2), atol=1e-3, rtol=0)


def test_seq_mnist_reads_each_image_row_by_row(mnist_dir, monkeypatch):
    monkeypatch.setenv("DLX_DATA_DIR", str(mnist_dir))
    seq = DATASETS.parse({"name": "seq_mnist", "n_train": 100, "n_test": 20})
    flat = DATASETS.parse({"name": "mnist", "n_train": 100, "n_test": 20})
    assert seq.feature_shape() == (28, 28)
    a, b = seq.load(5), flat.load(5)
    assert a.feature_shape == (28, 28) and a.name == "seq_mnist"
    assert torch.equal(a.x_train.reshape(100, -1), b.x_train) and torch.equal(a.y_test, b.y_test)
    assert torch.equal(a.as_float(a.x_test).reshape(20, -1), b.as_float(b.x_test))  # same normalisation


def test_seq_mnist_without_files_is_a_config_error():
    with pytest.raises(ConfigError) as e:
        load_config({"data": {"name": "seq_mnist"}, "model": {"name": "lstm"}})
    assert "MNIST not found" in str(e.value) and e.value.problems[0].path == "data"


@pytest.mark.parametrize(
    "data,bad",
    [
        ({"name": "adding", "length": 1}, "data.length"),
        ({"name": "parity", "length": 0}, "data.length"),
        ({"name": "copy", "symbols": 1}, "data.symbols"),
        ({"name": "copy", "delay": -1}, "data.delay"),
    ],
)
def test_bad_sizes_are_field_errors(data, bad):
    with pytest.raises(ConfigError) as e:
        load_config({"data": data, "model": {"name": "lstm"}, "train": {"loss": "mse"}})
    assert [p.path for p in e.value.problems] == [bad]

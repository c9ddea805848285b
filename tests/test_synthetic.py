"""The synthetic datasets, a user's .npz arrays, and Dataset.as_float."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from dlx.components.data import DATASETS, Dataset
from dlx.config.loader import load_config
from dlx.core.errors import DlxError

CLASSIFIERS = {"spirals": 3, "moons": 2, "circles": 2, "xor": 2, "blobs": 3}
ALL = [*CLASSIFIERS, "teacher"]


def load(name, seed=0, **kw):
    return DATASETS.parse({"name": name, **kw}).load(seed)


def _tensors(d: Dataset):
    return d.x_train, d.y_train, d.x_test, d.y_test


# ============================================================== shapes, sizes, dtypes


@pytest.mark.parametrize("name", list(CLASSIFIERS))
def test_classification_dataset_shapes_dtypes_and_classes(name):
    d = load(name, n_train=300, n_test=120)
    k = CLASSIFIERS[name]
    assert d.task == "classification" and d.n_classes == k and d.out_dim == k
    assert d.name == name
    assert d.x_train.shape == (300, 2) and d.x_test.shape == (120, 2)
    assert d.y_train.shape == (300,) and d.y_test.shape == (120,)
    assert d.x_train.dtype == d.x_test.dtype == torch.float32
    assert d.y_train.dtype == d.y_test.dtype == torch.int64
    assert d.feature_shape == (2,) and d.in_dim == 2
    labels = torch.cat([d.y_train, d.y_test]).unique().tolist()
    assert labels == list(range(k))
    for t in _tensors(d):
        assert torch.isfinite(t.float()).all()


@pytest.mark.parametrize("classes", [2, 5, 7])
def test_spirals_and_blobs_take_a_class_count(classes):
    for name in ("spirals", "blobs"):
        d = load(name, classes=classes, n_train=350, n_test=70)
        assert d.n_classes == classes == d.out_dim
        assert torch.cat([d.y_train, d.y_test]).unique().tolist() == list(range(classes))


def test_blobs_dim_sets_feature_count():
    d = load("blobs", dim=7, classes=4, n_train=100, n_test=20)
    assert d.x_train.shape == (100, 7) and d.in_dim == 7 and d.out_dim == 4


@pytest.mark.parametrize("n_train,n_test", [(1, 1), (17, 3), (1000, 500)])
@pytest.mark.parametrize("name", ALL)
def test_n_train_and_n_test_set_split_sizes(name, n_train, n_test):
    d = load(name, n_train=n_train, n_test=n_test, normalize=n_train > 1)
    assert len(d.x_train) == len(d.y_train) == n_train
    assert len(d.x_test) == len(d.y_test) == n_test


def test_default_sizes_are_1000_train_500_test():
    d = load("moons")
    assert len(d.x_train) == 1000 and len(d.x_test) == 500


def test_teacher_is_regression_with_float_targets_of_out_dim():
    d = load("teacher", in_dim=6, out_dim=3, hidden=[8, 8], n_train=200, n_test=50)
    assert d.task == "regression" and d.n_classes is None
    assert d.x_train.shape == (200, 6) and d.in_dim == 6
    assert d.y_train.shape == (200, 3) and d.y_test.shape == (50, 3)
    assert d.y_train.dtype == d.y_test.dtype == torch.float32
    assert d.out_dim == 3
    assert d.y_train.std() > 0.05  # targets actually depend on x, not a constant
    default = load("teacher", n_train=20, n_test=5)
    assert default.x_train.shape == (20, 10) and default.y_train.shape == (20, 1)


def test_teacher_targets_are_a_function_of_inputs_when_noise_free():
    # noise 0: the same x gives the same y, so a model fitting y from x is possible.
    # Check it through a consequence: y is a smooth function of x, so nearby inputs
    # have nearby targets much more often than random pairs do.
    d = load("teacher", in_dim=2, hidden=[16], noise=0.0, n_train=2000, n_test=10, normalize=False)
    x, y = d.x_train.double(), d.y_train[:, 0].double()
    dist = torch.cdist(x, x)
    dist.fill_diagonal_(float("inf"))
    nn_idx = dist.argmin(1)
    near = (y - y[nn_idx]).abs().mean()
    rand = (y - y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]).abs().mean()
    assert near < 0.2 * rand


def test_one_seed_is_one_teacher_whatever_the_sample_sizes():
    # More data of the same problem: the teacher (its weights) does not depend on n_train or
    # n_test, so noise-free targets of the inputs the two draws share are equal.
    small = load("teacher", hidden=[16], noise=0.0, n_train=100, n_test=20, normalize=False)
    large = load("teacher", hidden=[16], noise=0.0, n_train=2000, n_test=500, normalize=False)
    x_s = torch.cat([small.x_train, small.x_test])
    x_l = torch.cat([large.x_train, large.x_test])
    torch.testing.assert_close(x_s, x_l[: len(x_s)])  # the same inputs, drawn after the teacher
    y_s = torch.cat([small.y_train, small.y_test])
    y_l = torch.cat([large.y_train, large.y_test])
    torch.testing.assert_close(y_s, y_l[: len(y_s)])
    # And so the targets' spread is the teacher's, not the sample size's.
    assert abs(float(small.y_train.var()) - float(large.y_train.var())) < 0.5 * float(large.y_train.var())


def test_teacher_rejects_cross_entropy_in_config():
    with pytest.raises(DlxError, match="mse"):
        load_config({"data": {"name": "teacher"}, "model": "mlp"})
    cfg = load_config({"data": {"name": "teacher"}, "model": "mlp", "train": {"loss": "mse"}})
    assert cfg.train.loss == "mse"


# ============================================================== seeds


@pytest.mark.parametrize("name", ALL)
def test_same_seed_gives_identical_tensors(name):
    a, b = load(name, seed=7, n_train=200, n_test=50), load(name, seed=7, n_train=200, n_test=50)
    for ta, tb in zip(_tensors(a), _tensors(b)):
        assert torch.equal(ta, tb)


@pytest.mark.parametrize("name", ALL)
def test_different_seed_gives_different_data(name):
    a, b = load(name, seed=1, n_train=200, n_test=50), load(name, seed=2, n_train=200, n_test=50)
    assert not torch.equal(a.x_train, b.x_train)
    assert not torch.equal(a.x_test, b.x_test)


def test_seed_comes_from_the_config():
    base = {"data": {"name": "spirals", "n_train": 100, "n_test": 10}, "model": "mlp"}
    c0, c0b, c1 = load_config({**base, "seed": 0}), load_config({**base, "seed": 0}), load_config({**base, "seed": 1})
    assert torch.equal(c0.data.load(c0.seed).x_train, c0b.data.load(c0b.seed).x_train)
    assert not torch.equal(c0.data.load(c0.seed).x_train, c1.data.load(c1.seed).x_train)


# ============================================================== normalisation


@pytest.mark.parametrize("name", ALL)
def test_normalize_gives_zero_mean_unit_std_train_features(name):
    d = load(name, n_train=400, n_test=100)
    x = d.x_train.double()
    assert torch.allclose(x.mean(0), torch.zeros(x.shape[1], dtype=torch.float64), atol=1e-5)
    assert torch.allclose(x.std(0, unbiased=False), torch.ones(x.shape[1], dtype=torch.float64), atol=1e-4)


@pytest.mark.parametrize("name", ["spirals", "blobs", "teacher"])
def test_normalize_uses_train_statistics_for_the_test_set(name):
    raw = load(name, seed=3, normalize=False, n_train=300, n_test=100)
    norm = load(name, seed=3, normalize=True, n_train=300, n_test=100)
    m = raw.x_train.double().mean(0)
    s = raw.x_train.double().std(0, unbiased=False)
    assert torch.allclose(norm.x_test.double(), (raw.x_test.double() - m) / s, atol=1e-5)
    assert torch.equal(norm.y_train, raw.y_train) and torch.equal(norm.y_test, raw.y_test)


def test_normalize_false_keeps_raw_scale():
    d = load("blobs", normalize=False, n_train=400, n_test=10)
    # centres are drawn with std 3: raw features are far from unit std
    assert d.x_train.std(0).max() > 1.5


def test_normalize_constant_feature_does_not_divide_by_zero(tmp_path):
    x = np.stack([np.arange(20.0), np.full(20, 4.0)], axis=1)
    path = tmp_path / "c.npz"
    np.savez(path, x_train=x[:15], y_train=np.arange(15) % 2, x_test=x[15:], y_test=np.arange(5) % 2)
    d = DATASETS.parse({"name": "arrays", "path": str(path), "normalize": True}).load(0)
    assert torch.isfinite(d.x_train).all() and torch.isfinite(d.x_test).all()
    assert torch.all(d.x_train[:, 1] == 0)


# ============================================================== class balance and geometry


@pytest.mark.parametrize("name", list(CLASSIFIERS))
def test_classes_are_roughly_balanced(name):
    d = load(name, n_train=1200, n_test=300)
    k = CLASSIFIERS[name]
    for y in (d.y_train, d.y_test):
        counts = torch.bincount(y, minlength=k).double()
        expected = len(y) / k
        assert (counts - expected).abs().max() < 0.15 * expected, counts.tolist()


@pytest.mark.parametrize("name", ["spirals", "moons", "circles", "blobs"])
def test_class_sizes_over_both_splits_are_equal_up_to_one(name):
    d = load(name, n_train=301, n_test=100)
    counts = torch.bincount(torch.cat([d.y_train, d.y_test]))
    assert counts.max() - counts.min() <= 1


def test_xor_label_is_sign_of_product_without_noise():
    d = load("xor", noise=0.0, normalize=False, n_train=500, n_test=100)
    for x, y in ((d.x_train, d.y_train), (d.x_test, d.y_test)):
        assert x.abs().max() <= 1.0
        assert torch.equal(y, (x[:, 0] * x[:, 1] > 0).long())


def test_circles_radii_without_noise():
    d = load("circles", noise=0.0, normalize=False, factor=0.3, n_train=200, n_test=50)
    r = d.x_train.double().norm(dim=1)
    assert torch.allclose(r[d.y_train == 0], torch.ones(1, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(r[d.y_train == 1], torch.full((1,), 0.3, dtype=torch.float64), atol=1e-6)


def test_moons_halves_without_noise():
    d = load("moons", noise=0.0, normalize=False, n_train=400, n_test=50)
    x, y = d.x_train.double(), d.y_train
    upper, lower = x[y == 0], x[y == 1]
    assert torch.allclose(upper.norm(dim=1), torch.ones(1, dtype=torch.float64), atol=1e-6)
    assert (upper[:, 1] >= -1e-6).all()
    centre = torch.tensor([1.0, 0.5], dtype=torch.float64)
    assert torch.allclose((lower - centre).norm(dim=1), torch.ones(1, dtype=torch.float64), atol=1e-6)
    assert (lower[:, 1] <= 0.5 + 1e-6).all()


def test_spirals_arms_without_noise():
    classes, turns = 4, 1.5
    d = load("spirals", noise=0.0, normalize=False, classes=classes, turns=turns, n_train=400, n_test=40)
    x, y = d.x_train.double(), d.y_train
    r = x.norm(dim=1)
    assert r.max() <= 1.0 + 1e-6
    # on arm k the angle is r * turns * 2pi + 2pi k / classes (mod 2pi)
    theta = torch.atan2(x[:, 1], x[:, 0])
    phase = theta - r * turns * 2 * math.pi - 2 * math.pi * y.double() / classes
    off = torch.remainder(phase + math.pi, 2 * math.pi) - math.pi
    assert off.abs().max() < 1e-4


def test_blobs_are_separable_with_small_spread():
    d = load("blobs", classes=3, dim=4, spread=0.05, normalize=False, n_train=300, n_test=100)
    centres = torch.stack([d.x_train[d.y_train == k].mean(0) for k in range(3)])
    pred = torch.cdist(d.x_test, centres).argmin(1)
    assert (pred == d.y_test).float().mean() > 0.95


def test_noise_parameter_adds_noise():
    clean = load("circles", noise=0.0, normalize=False, n_train=300, n_test=10)
    noisy = load("circles", noise=0.3, normalize=False, n_train=300, n_test=10)
    r_clean = clean.x_train[clean.y_train == 0].norm(dim=1)
    r_noisy = noisy.x_train[noisy.y_train == 0].norm(dim=1)
    assert r_clean.std() < 1e-5 and r_noisy.std() > 0.1


def test_invalid_dataset_parameters_are_rejected():
    for bad in (
        {"name": "spirals", "classes": 1},
        {"name": "moons", "n_train": 0},
        {"name": "circles", "factor": 1.0},
        {"name": "xor", "noise": -0.1},
        {"name": "teacher", "classes": 3},
    ):
        with pytest.raises(ValidationError):
            DATASETS.parse(bad)


# ============================================================== arrays (.npz)


def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def arrays(path, **kw):
    return DATASETS.parse({"name": "arrays", "path": str(path), **kw}).load(0)


def test_arrays_integer_labels_are_classification_with_max_plus_one_classes(tmp_path):
    rng = np.random.default_rng(0)
    p = write_npz(
        tmp_path / "d.npz",
        x_train=rng.normal(size=(30, 4)),
        y_train=rng.integers(0, 3, 30),
        x_test=rng.normal(size=(10, 4)),
        y_test=np.array([0, 1, 2, 3, 4, 5, 6, 6, 1, 0]),
    )
    d = arrays(p)
    assert d.task == "classification"
    assert d.n_classes == 7 == d.out_dim  # the largest label anywhere, plus one
    assert d.y_train.dtype == torch.int64 and d.y_train.shape == (30,)
    assert d.x_train.dtype == torch.float32 and d.x_train.shape == (30, 4)
    assert d.name == "arrays"


def test_arrays_keeps_the_users_values_and_order(tmp_path):
    rng = np.random.default_rng(1)
    xtr, ytr = rng.normal(size=(12, 3)), rng.integers(0, 2, 12)
    xte, yte = rng.normal(size=(5, 3)), rng.integers(0, 2, 5)
    p = write_npz(tmp_path / "d.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    d = arrays(p)  # normalize is off by default for a user's arrays
    assert np.allclose(d.x_train.numpy(), xtr, atol=1e-6) and np.allclose(d.x_test.numpy(), xte, atol=1e-6)
    assert np.array_equal(d.y_train.numpy(), ytr) and np.array_equal(d.y_test.numpy(), yte)


def test_arrays_float_targets_are_regression(tmp_path):
    rng = np.random.default_rng(0)
    p = write_npz(
        tmp_path / "r.npz",
        x_train=rng.normal(size=(20, 2)),
        y_train=rng.normal(size=20),
        x_test=rng.normal(size=(6, 2)),
        y_test=rng.normal(size=6),
    )
    d = arrays(p)
    assert d.task == "regression" and d.n_classes is None
    assert d.y_train.shape == (20, 1) and d.y_test.shape == (6, 1)
    assert d.y_train.dtype == torch.float32 and d.out_dim == 1
    p2 = write_npz(
        tmp_path / "r2.npz",
        x_train=rng.normal(size=(20, 2)),
        y_train=rng.normal(size=(20, 3)),
        x_test=rng.normal(size=(6, 2)),
        y_test=rng.normal(size=(6, 3)),
    )
    assert arrays(p2).y_train.shape == (20, 3) and arrays(p2).out_dim == 3


def test_arrays_n_train_n_test_take_the_first_rows(tmp_path):
    x = np.arange(40.0).reshape(20, 2)
    p = write_npz(tmp_path / "d.npz", x_train=x, y_train=np.arange(20) % 2, x_test=x[:8], y_test=np.zeros(8, int))
    d = arrays(p, n_train=5, n_test=3)
    assert d.x_train.shape == (5, 2) and d.x_test.shape == (3, 2)
    assert torch.equal(d.x_train, torch.tensor(x[:5], dtype=torch.float32))
    big = arrays(p, n_train=999)
    assert len(big.x_train) == 20


def test_arrays_image_shaped_features_keep_their_shape(tmp_path):
    rng = np.random.default_rng(0)
    p = write_npz(
        tmp_path / "img.npz",
        x_train=rng.integers(0, 255, (10, 4, 5), dtype=np.uint8),
        y_train=rng.integers(0, 2, 10),
        x_test=rng.integers(0, 255, (3, 4, 5), dtype=np.uint8),
        y_test=rng.integers(0, 2, 3),
    )
    d = arrays(p)
    assert d.feature_shape == (4, 5) and d.in_dim == 20 and d.x_train.dtype == torch.float32


def test_arrays_normalize_true_standardises_train_features(tmp_path):
    rng = np.random.default_rng(0)
    p = write_npz(
        tmp_path / "d.npz",
        x_train=rng.normal(5, 3, (200, 3)),
        y_train=rng.integers(0, 2, 200),
        x_test=rng.normal(5, 3, (20, 3)),
        y_test=rng.integers(0, 2, 20),
    )
    d = arrays(p, normalize=True)
    assert torch.allclose(d.x_train.mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(d.x_train.std(0, unbiased=False), torch.ones(3), atol=1e-4)


def test_arrays_missing_keys_raise_naming_them(tmp_path):
    p = write_npz(tmp_path / "m.npz", x_train=np.zeros((3, 2)), y_train=np.zeros(3, int), x_test=np.zeros((2, 2)))
    with pytest.raises(DlxError, match="y_test") as e:
        arrays(p)
    assert "x_train" in str(e.value)  # and says what the file does have
    p2 = write_npz(tmp_path / "m2.npz", X=np.zeros((3, 2)), Y=np.zeros(3))
    with pytest.raises(DlxError) as e:
        arrays(p2)
    for key in ("x_train", "y_train", "x_test", "y_test"):
        assert key in str(e.value)


@pytest.mark.parametrize("split", ["train", "test"])
def test_arrays_mismatched_lengths_raise(tmp_path, split):
    a = {
        "x_train": np.zeros((5, 2)),
        "y_train": np.zeros(5, int),
        "x_test": np.zeros((3, 2)),
        "y_test": np.zeros(3, int),
    }
    a[f"y_{split}"] = np.zeros(4 if split == "train" else 2, int)
    p = write_npz(tmp_path / "bad.npz", **a)
    with pytest.raises(DlxError, match=f"x_{split}.*rows.*y_{split}"):
        arrays(p)


def test_arrays_mismatched_feature_shapes_raise(tmp_path):
    p = write_npz(
        tmp_path / "bad.npz",
        x_train=np.zeros((5, 2)),
        y_train=np.zeros(5, int),
        x_test=np.zeros((3, 4)),
        y_test=np.zeros(3, int),
    )
    with pytest.raises(DlxError, match="x_test"):
        arrays(p)


def test_arrays_negative_labels_raise(tmp_path):
    p = write_npz(
        tmp_path / "neg.npz",
        x_train=np.zeros((3, 2)),
        y_train=np.array([-1, 0, 1]),
        x_test=np.zeros((1, 2)),
        y_test=np.array([0]),
    )
    with pytest.raises(DlxError, match="-1"):
        arrays(p)


def test_arrays_unreadable_file_raises_dlx_error(tmp_path):
    p = tmp_path / "corrupt.npz"
    p.write_bytes(b"not a zip file at all")
    with pytest.raises(DlxError, match="corrupt.npz"):
        arrays(p)


def test_arrays_path_must_exist_and_be_npz(tmp_path):
    with pytest.raises(ValidationError, match="not found"):
        DATASETS.parse({"name": "arrays", "path": str(tmp_path / "nope.npz")})
    other = tmp_path / "d.csv"
    other.write_text("1,2\n")
    with pytest.raises(ValidationError, match=r"\.npz"):
        DATASETS.parse({"name": "arrays", "path": str(other)})


def test_arrays_one_dimensional_x_is_one_feature_or_rejected(tmp_path):
    p = write_npz(
        tmp_path / "v.npz",
        x_train=np.arange(6.0),
        y_train=np.arange(6) % 2,
        x_test=np.arange(2.0),
        y_test=np.array([0, 1]),
    )
    try:
        d = arrays(p)
    except DlxError:
        return
    assert d.x_train.shape == (6, 1) and d.in_dim == 1


# ============================================================== Dataset.as_float


def _ds(x, scale=1.0, shift=0.0):
    y = torch.zeros(len(x), dtype=torch.int64)
    return Dataset("t", x, y, x, y, "classification", 2, scale=scale, shift=shift)


def test_as_float_applies_scale_then_shift_to_uint8():
    x = torch.tensor([[0, 51, 255]], dtype=torch.uint8)
    d = _ds(x, scale=1 / 255, shift=-0.5)
    out = d.as_float(x)
    assert out.dtype == torch.float32
    assert torch.allclose(out, torch.tensor([[-0.5, -0.3, 0.5]]), atol=1e-6)
    assert x.dtype == torch.uint8 and x.tolist() == [[0, 51, 255]]


def test_as_float_identity_for_float32_without_scale_or_shift():
    x = torch.randn(4, 3)
    out = _ds(x).as_float(x)
    assert out.dtype == torch.float32 and torch.equal(out, x)


def test_as_float_converts_other_dtypes_to_float32():
    x = torch.tensor([[1.5, -2.0]], dtype=torch.float64)
    out = _ds(x, scale=2.0, shift=1.0).as_float(x)
    assert out.dtype == torch.float32
    assert torch.allclose(out, torch.tensor([[4.0, -3.0]]))
    assert x.tolist() == [[1.5, -2.0]]


def test_as_float_scales_float32_input():
    x = torch.tensor([[1.0, 2.0]])
    out = _ds(x.clone(), scale=3.0, shift=-1.0).as_float(x.clone())
    assert torch.allclose(out, torch.tensor([[2.0, 5.0]]))


def test_as_float_does_not_modify_float32_input():
    x = torch.tensor([[1.0, 2.0]])
    d = _ds(x, scale=3.0, shift=-1.0)
    d.as_float(x)
    assert x.tolist() == [[1.0, 2.0]]


def test_dataset_to_keeps_everything_but_device():
    d = load("moons", n_train=10, n_test=5)
    moved = d.to(torch.device("cpu"))
    assert moved.task == d.task and moved.n_classes == d.n_classes and moved.name == d.name
    assert torch.equal(moved.x_train, d.x_train) and torch.equal(moved.y_test, d.y_test)

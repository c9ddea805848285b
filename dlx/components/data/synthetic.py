"""Synthetic tasks made from the seed in a few milliseconds, and a user's own arrays.

Every generator draws n_train + n_test samples from one numpy Generator seeded
by the config's seed, then splits them: same seed, same data.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pydantic import Field, PositiveInt, field_validator

from dlx.components.data.base import DATASETS, MAX_NUMBERS, Dataset, DataSpec
from dlx.core.errors import SpecError
from dlx.core.paths import ExistingFile


def finish(
    spec: DataSpec,
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    task: str,
    n_classes: int | None = None,
    sequence_target: bool = False,
    norm_axes: tuple[int, ...] = (0,),
) -> Dataset:
    """Split (already shuffled) samples into train/test, standardise with train statistics
    over `norm_axes` (sequences: samples and steps), wrap as tensors."""
    n = spec.n_train
    x_train, x_test = x[:n], x[n:]
    standardised = None
    if spec.normalize:
        mean = x_train.mean(axis=norm_axes)
        std = x_train.std(axis=norm_axes)
        std[std < 1e-8] = 1.0  # a constant feature stays constant instead of dividing by 0
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
        standardised = (mean.astype(np.float32), std.astype(np.float32))
    y_dtype = torch.int64 if task == "classification" else torch.float32
    return Dataset(
        name=name,
        x_train=torch.as_tensor(np.ascontiguousarray(x_train), dtype=torch.float32),
        y_train=torch.as_tensor(np.ascontiguousarray(y[:n]), dtype=y_dtype),
        x_test=torch.as_tensor(np.ascontiguousarray(x_test), dtype=torch.float32),
        y_test=torch.as_tensor(np.ascontiguousarray(y[n:]), dtype=y_dtype),
        task=task,
        n_classes=n_classes,
        sequence_target=sequence_target,
        standardised=standardised,
    )


def _shuffled(rng: np.random.Generator, x: np.ndarray, y: np.ndarray):
    order = rng.permutation(len(x))
    return x[order], y[order]


class _Classes(DataSpec):
    noise: float = Field(0.1, ge=0)

    def feature_shape(self):
        return (2,)

    def _total(self) -> int:
        return self.n_train + self.n_test

    def _per_class(self, k: int) -> list[int]:
        """Sizes of k classes summing to the total (the first ones one larger)."""
        n = self._total()
        return [n // k + (1 if i < n % k else 0) for i in range(k)]


@DATASETS.register("spirals")
class Spirals(_Classes):
    """Interleaved spiral arms in 2-D, one class per arm: needs a nonlinear, deep-ish net."""

    classes: int = Field(3, ge=2, le=10)
    turns: float = Field(1.0, gt=0, le=5)
    noise: float = Field(0.05, ge=0)

    def load(self, seed):
        rng = np.random.default_rng(seed)
        xs, ys = [], []
        for k, m in enumerate(self._per_class(self.classes)):
            t = np.sqrt(rng.uniform(0.0, 1.0, m)) * self.turns * 2 * np.pi
            phase = 2 * np.pi * k / self.classes
            r = t / (self.turns * 2 * np.pi)
            pts = np.stack([r * np.cos(t + phase), r * np.sin(t + phase)], axis=1)
            xs.append(pts + rng.normal(0.0, self.noise, pts.shape))
            ys.append(np.full(m, k))
        x, y = _shuffled(rng, np.concatenate(xs), np.concatenate(ys))
        return finish(self, "spirals", x, y, "classification", self.classes)


@DATASETS.register("moons")
class Moons(_Classes):
    """Two interleaving half circles in 2-D."""

    def load(self, seed):
        rng = np.random.default_rng(seed)
        a, b = self._per_class(2)
        ta, tb = rng.uniform(0, np.pi, a), rng.uniform(0, np.pi, b)
        upper = np.stack([np.cos(ta), np.sin(ta)], axis=1)
        lower = np.stack([1 - np.cos(tb), 0.5 - np.sin(tb)], axis=1)
        x = np.concatenate([upper, lower]) + rng.normal(0, self.noise, (a + b, 2))
        y = np.concatenate([np.zeros(a), np.ones(b)])
        x, y = _shuffled(rng, x, y)
        return finish(self, "moons", x, y, "classification", 2)


@DATASETS.register("circles")
class Circles(_Classes):
    """A small circle inside a large one: not linearly separable."""

    factor: float = Field(0.5, gt=0, lt=1)

    def load(self, seed):
        rng = np.random.default_rng(seed)
        a, b = self._per_class(2)
        ta, tb = rng.uniform(0, 2 * np.pi, a), rng.uniform(0, 2 * np.pi, b)
        outer = np.stack([np.cos(ta), np.sin(ta)], axis=1)
        inner = self.factor * np.stack([np.cos(tb), np.sin(tb)], axis=1)
        x = np.concatenate([outer, inner]) + rng.normal(0, self.noise, (a + b, 2))
        y = np.concatenate([np.zeros(a), np.ones(b)])
        x, y = _shuffled(rng, x, y)
        return finish(self, "circles", x, y, "classification", 2)


@DATASETS.register("xor")
class XOR(_Classes):
    """Points in [-1, 1]^2 labelled by the sign of x1*x2: the problem a perceptron cannot solve."""

    def load(self, seed):
        rng = np.random.default_rng(seed)
        x = rng.uniform(-1, 1, (self._total(), 2))
        y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
        x = x + rng.normal(0, self.noise, x.shape)
        return finish(self, "xor", x, y, "classification", 2)


@DATASETS.register("blobs")
class Blobs(_Classes):
    """Gaussian clusters, one per class, in `dim` dimensions."""

    classes: int = Field(3, ge=2, le=100)
    dim: PositiveInt = 2
    spread: float = Field(1.0, gt=0, description="cluster std relative to the centres' spread")

    def feature_shape(self):
        return (self.dim,)

    def load(self, seed):
        rng = np.random.default_rng(seed)
        centres = rng.normal(0, 3.0, (self.classes, self.dim))
        xs, ys = [], []
        for k, m in enumerate(self._per_class(self.classes)):
            xs.append(centres[k] + rng.normal(0, self.spread, (m, self.dim)))
            ys.append(np.full(m, k))
        x, y = _shuffled(rng, np.concatenate(xs), np.concatenate(ys))
        return finish(self, "blobs", x, y, "classification", self.classes)


@DATASETS.register("teacher")
class Teacher(DataSpec):
    """Regression: targets from a random tanh 'teacher' MLP plus noise (use loss: mse)."""

    task = "regression"
    in_dim: PositiveInt = 10
    out_dim: PositiveInt = 1
    hidden: list[PositiveInt] = Field(default_factory=lambda: [32])
    noise: float = Field(0.05, ge=0)

    def feature_shape(self):
        return (self.in_dim,)

    def numbers_per_sample(self):
        # The teacher's hidden activations and targets are made whole too.
        return self.in_dim + max(self.hidden, default=0) + self.out_dim

    def load(self, seed):
        rng = np.random.default_rng(seed)
        # The teacher first: one seed, one teacher, whatever n_train and n_test are (drawn
        # after the inputs, 100 samples and 2000 would be two different problems).
        dims = [self.in_dim, *self.hidden, self.out_dim]
        weights = [rng.normal(0, 1 / np.sqrt(a), (a, b)) for a, b in zip(dims[:-1], dims[1:])]
        x = rng.normal(0, 1, (self.n_train + self.n_test, self.in_dim))
        h = x
        for w in weights[:-1]:
            h = np.tanh(h @ w)
        y = h @ weights[-1]
        y = y + rng.normal(0, self.noise, y.shape)
        return finish(self, "teacher", x, y, "regression")


ARRAYS = ("x_train", "y_train", "x_test", "y_test")
# One output unit per class: a label like 10**12 (a stray id, not a class number) would ask
# for an output layer no machine holds.
MAX_CLASSES = 100_000


def npy_header(stream) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of a .npy stream from its header alone (a few hundred bytes)."""
    fmt = np.lib.format
    version = fmt.read_magic(stream)
    if version == (1, 0):
        shape, _, dtype = fmt.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, _, dtype = fmt.read_array_header_2_0(stream)
    else:
        shape, _, dtype = fmt._read_array_header(stream, version)  # 3.0: no public reader
    return tuple(int(n) for n in shape), np.dtype(dtype)


@DATASETS.register("arrays")
class Arrays(DataSpec):
    """A user's .npz with x_train, y_train, x_test, y_test (integer y: classes; float y: regression)."""

    sequence_target = None  # read from the file's y shape at load time

    path: ExistingFile
    n_train: PositiveInt | None = None  # all of them unless given
    n_test: PositiveInt | None = None
    normalize: bool = False

    @field_validator("path")
    @classmethod
    def _npz(cls, path):
        if path.suffix != ".npz":
            raise ValueError(
                f"{path} is not a .npz file; save one with numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)"
            )
        return path

    def check_headers(self) -> None:
        """Each array's shape and type read from the .npz's headers, then checked: a few
        hundred bytes read, nothing decompressed. A small file can hold a huge array (zeros
        compress 1000:1), so the size limit is checked here, before loading; strings,
        objects, 0-d arrays and samples of 0 features are refused here too."""
        import zipfile

        where = ("data", "path")
        try:
            with zipfile.ZipFile(self.path) as zf:
                names = [n.removesuffix(".npy") for n in zf.namelist()]
                missing = [k for k in ARRAYS if k not in names]
                if missing:
                    raise SpecError(
                        where, f"{self.path} lacks {', '.join(missing)} (it has {', '.join(names) or 'nothing'})"
                    )
                heads = {}
                for k in ARRAYS:
                    with zf.open(k + ".npy") as f:
                        heads[k] = npy_header(f)
        except SpecError:
            raise
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
            raise SpecError(where, f"cannot read {self.path} as a .npz made by numpy.savez: {e}") from None
        for k, (shape, dtype) in heads.items():
            if dtype.kind not in "biuf":
                what = {"U": "strings", "S": "bytes", "O": "Python objects", "c": "complex numbers", "V": "records"}
                raise SpecError(
                    where,
                    f"{k} in {self.path} holds {what.get(dtype.kind, dtype.name)} ({dtype.str}); dlx trains on "
                    f"numbers: save x as floats and y as integer class ids or float targets",
                )
            if not shape:
                raise SpecError(
                    where, f"{k} in {self.path} is a single number (a 0-d array); it needs one row per sample"
                )
            if k.startswith("x") and len(shape) > 1 and math.prod(shape[1:]) == 0:
                raise SpecError(
                    where, f"{k} in {self.path} has samples of shape {shape[1:]}: no features to learn from"
                )
        total = sum(math.prod(shape) for shape, _ in heads.values())
        if total > MAX_NUMBERS:
            shapes = ", ".join(f"{k} {shape}" for k, (shape, _) in heads.items())
            raise SpecError(
                where,
                f"{self.path} holds {total:,} numbers ({shapes}), more than the {MAX_NUMBERS:,} dlx loads "
                f"in memory; save fewer or smaller samples",
            )

    def load(self, seed):
        self.check_headers()  # shapes and types, before a byte of any array is decompressed
        try:
            with np.load(self.path) as z:
                arrs = {k: np.asarray(z[k]) for k in ARRAYS}
        except Exception as e:
            raise SpecError(("data", "path"), f"cannot read {self.path}: {e}") from None
        for split in ("train", "test"):
            x, y = arrs[f"x_{split}"], arrs[f"y_{split}"]
            if len(x) != len(y):
                raise SpecError(("data", "path"), f"x_{split} has {len(x)} rows but y_{split} has {len(y)}")
        if arrs["x_train"].shape[1:] != arrs["x_test"].shape[1:]:
            raise SpecError(
                ("data", "path"),
                f"x_train rows are {arrs['x_train'].shape[1:]} but x_test rows are {arrs['x_test'].shape[1:]}",
            )
        if len(arrs["x_train"]) == 0 or len(arrs["x_test"]) == 0:
            raise SpecError(
                ("data", "path"),
                f"{self.path} has {len(arrs['x_train'])} training and "
                f"{len(arrs['x_test'])} test rows; both need at least one",
            )
        for split in ("train", "test"):
            if arrs[f"x_{split}"].ndim == 1:  # a single feature given as a flat vector
                arrs[f"x_{split}"] = arrs[f"x_{split}"][:, None]
            y = arrs[f"y_{split}"]
            if y.ndim == 2 and y.shape[1] == 1 and (np.issubdtype(y.dtype, np.integer) or y.dtype == bool):
                arrs[f"y_{split}"] = y[:, 0]  # a column of labels is still labels
            if arrs[f"y_{split}"].dtype == bool:
                arrs[f"y_{split}"] = arrs[f"y_{split}"].astype(np.int64)
        n_tr = min(self.n_train or len(arrs["x_train"]), len(arrs["x_train"]))
        n_te = min(self.n_test or len(arrs["x_test"]), len(arrs["x_test"]))
        x = np.concatenate([arrs["x_train"][:n_tr], arrs["x_test"][:n_te]]).astype(np.float64)
        y = np.concatenate([arrs["y_train"][:n_tr], arrs["y_test"][:n_te]])
        # Integer y: class ids, (N,) or one per time step (N, T). Float y: targets,
        # (N, d), or per time step (N, T, d).
        if np.issubdtype(y.dtype, np.integer) and y.ndim in (1, 2):
            if y.min() < 0:
                raise SpecError(("data", "path"), f"class labels must be 0..K-1, found {y.min()}")
            if int(y.max()) >= MAX_CLASSES:  # the output layer has one unit per class
                raise SpecError(
                    ("data", "path"),
                    f"a class label of {int(y.max()):,} means {int(y.max()) + 1:,} classes, more than the "
                    f"{MAX_CLASSES:,} dlx builds an output layer for; labels must be 0..K-1 (renumber them, "
                    f"e.g. numpy.unique(y, return_inverse=True)[1])",
                )
            task, k, seq = "classification", int(y.max()) + 1, y.ndim == 2
        else:
            task, k, seq = "regression", None, y.ndim == 3
            y = (y if seq else y.reshape(len(y), -1)).astype(np.float32)
        spec = self.model_copy(update={"n_train": n_tr, "n_test": n_te})
        return finish(spec, "arrays", x, y, task, k, sequence_target=seq)

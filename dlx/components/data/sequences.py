"""Sequence tasks for recurrent models: x is (N, T, F), one feature vector per time step.

The synthetic tasks are made from the seed like the others (one numpy Generator
draws n_train + n_test samples, then they are split): same seed, same data.
Each is built to need memory over a known distance: `adding` and `copy` are the
classic long-range tests (Hochreiter & Schmidhuber 1997), `parity` needs every
bit, and `seq_mnist` reads a digit one row of pixels per step.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from dlx.components.data.base import DATASETS, Dataset, DataSpec
from dlx.components.data.mnist import MNIST, SIDE, MNISTFiles
from dlx.components.data.synthetic import finish

MAX_LENGTH = 10_000  # steps; longer sequences are a Python loop of that many cell calls per batch


class _Sequence(DataSpec):
    """Common to the synthetic sequence tasks: inputs are exact, so no standardisation by default."""

    # Whether y has a time axis (many-to-many), known without loading: the models'
    # check() uses it to ask for the matching head.
    sequence_target: ClassVar[bool] = False
    normalize: bool = Field(False, description="standardise each input feature with train-set statistics")

    def _total(self) -> int:
        return self.n_train + self.n_test

    def _finish(self, name: str, x: np.ndarray, y: np.ndarray, n_classes: int | None = None) -> Dataset:
        """Split into train/test and wrap as tensors; x is (N, T, F)."""
        # Standardised per feature over samples and steps: a step is not a separate feature.
        return finish(
            self,
            name,
            x.astype(np.float32),
            y,
            self.task,
            n_classes,
            sequence_target=self.sequence_target,
            norm_axes=(0, 1),
        )


@DATASETS.register("adding")
class Adding(_Sequence):
    """The adding problem: sum the two marked values of a length-T sequence (regression, loss: mse)."""

    task = "regression"
    length: int = Field(50, ge=2, le=MAX_LENGTH, description="time steps T")

    def feature_shape(self):
        return (self.length, 2)

    def load(self, seed):
        rng = np.random.default_rng(seed)
        n, t = self._total(), self.length
        values = rng.uniform(0.0, 1.0, (n, t))
        # One marker in each half: the first marked value must be held for about T/2
        # steps on average, and for up to T - 1.
        half = t // 2
        first = rng.integers(0, half, n)
        second = rng.integers(half, t, n)
        markers = np.zeros((n, t))
        rows = np.arange(n)
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        x = np.stack([values, markers], axis=2)
        y = (values[rows, first] + values[rows, second])[:, None]
        return self._finish("adding", x, y.astype(np.float32))


@DATASETS.register("copy")
class Copy(_Sequence):
    """Copy memory: see `length` symbols, wait `delay` blank steps, then at the recall marker
    output the symbols again (many-to-many: needs model.head: many_to_many)."""

    sequence_target = True
    length: int = Field(10, ge=1, le=MAX_LENGTH, description="symbols to memorise")
    symbols: int = Field(8, ge=2, le=1000, description="alphabet size")
    delay: int = Field(10, ge=0, le=MAX_LENGTH, description="blank steps between the symbols and the recall marker")

    def total_length(self) -> int:
        """Symbols, blanks, the recall marker, then the recall window (blank inputs)."""
        return 2 * self.length + self.delay + 1

    def recall_window(self) -> slice:
        """The steps whose targets are the symbols; every other step's target is blank."""
        return slice(self.length + self.delay + 1, self.total_length())

    def feature_shape(self):
        # One-hot over the symbols, blank (index symbols) and the recall marker (symbols + 1).
        return (self.total_length(), self.symbols + 2)

    def load(self, seed):
        rng = np.random.default_rng(seed)
        n, k, t = self._total(), self.symbols, self.total_length()
        blank, marker = k, k + 1
        seq = rng.integers(0, k, (n, self.length))
        inputs = np.full((n, t), blank)
        inputs[:, : self.length] = seq
        inputs[:, self.length + self.delay] = marker
        y = np.full((n, t), blank, dtype=np.int64)
        y[:, self.recall_window()] = seq
        x = np.eye(k + 2, dtype=np.float32)[inputs]
        # Classes 0..k-1 are the symbols, class k is blank (the marker is never a target).
        return self._finish("copy", x, y, n_classes=k + 1)


@DATASETS.register("parity")
class Parity(_Sequence):
    """Random bits, one per step; the class is their parity (XOR of all T bits), read at the end."""

    length: int = Field(10, ge=2, le=MAX_LENGTH, description="time steps T (bits)")

    def feature_shape(self):
        return (self.length, 1)

    def load(self, seed):
        rng = np.random.default_rng(seed)
        bits = rng.integers(0, 2, (self._total(), self.length))
        y = (bits.sum(axis=1) % 2).astype(np.int64)
        return self._finish("parity", bits[:, :, None], y, n_classes=2)


@DATASETS.register("seq_mnist")
class SeqMNIST(MNISTFiles):
    """MNIST read row by row: 28 steps of 28 pixels, the class read after the last row."""

    sequence_target: ClassVar[bool] = False

    def _images(self) -> MNIST:
        # The image spec does the finding, fetching, checking and subsetting.
        return MNIST(
            name="mnist",
            root=self.root,
            download=self.download,
            mirrors=self.mirrors,
            n_train=self.n_train,
            n_test=self.n_test,
            normalize=self.normalize,
            flatten=False,
        )

    def feature_shape(self):
        return (SIDE, SIDE)

    def read(self, seed: int, fetch: bool) -> Dataset:
        d = self._images().read(seed, fetch)
        # (N, 1, 28, 28) uint8 -> (N, 28, 28): rows are the time steps, pixels the features.
        return Dataset(
            name="seq_mnist",
            x_train=d.x_train.reshape(-1, SIDE, SIDE),
            y_train=d.y_train,
            x_test=d.x_test.reshape(-1, SIDE, SIDE),
            y_test=d.y_test,
            task=d.task,
            n_classes=d.n_classes,
            scale=d.scale,
            shift=d.shift,
        )

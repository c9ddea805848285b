"""The in-memory dataset every model trains on, and the base of data specs."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import torch
from pydantic import Field, PositiveInt, field_validator, model_validator

from dlx.core.errors import SpecError
from dlx.core.registry import Registry, Spec

DATASETS = Registry("data")
# Printed under the table by `dlx list data`: what the keys every data spec shares do.
DATASETS.notes.append(
    "label_noise (every classification set): that fraction of the training labels is re-drawn "
    "uniformly over the classes from the config's seed (the same seed re-draws the same labels; "
    "a re-drawn label may come out unchanged, so about label_noise*(1-1/C) of them change); 1.0 "
    "gives random labels (Zhang et al. 2017). The test labels are kept. A regression set refuses it."
)

# Generated data is made whole in memory (float64 while numpy builds it): past this many
# numbers, a slip like n_train: 1e12 failed deep inside numpy (MemoryError) or ate the machine.
# 2^28 is 1 GiB as float32; MNIST in full is 55M numbers.
MAX_NUMBERS = 2**28


@dataclass
class Dataset:
    """Train/test tensors, kept whole on the training device.

    x may be stored compactly (MNIST as uint8); a batch is turned into float as
    x.float() * scale + shift, so normalisation costs nothing up front.
    """

    name: str
    x_train: torch.Tensor  # (N, *feature_shape)
    y_train: torch.Tensor  # (N,) int64 class ids, or (N, out_dim) float32 targets
    x_test: torch.Tensor
    y_test: torch.Tensor
    task: str  # "classification" | "regression"
    n_classes: int | None = None
    sequence_target: bool = False  # y has a time axis: (N, T) classes or (N, T, d) values
    scale: float = 1.0
    shift: float = 0.0
    # (largest shift in pixels, largest rotation in degrees) of training batches, or None.
    augment: tuple[float, float] | None = None
    # The standardisation a synthetic draw was given (its own training set's mean and std,
    # as arrays over the feature axes), or None: inputs in this draw's units map back to
    # the raw plane as x * std + mean (an ensemble feeds one test set to every seed's model).
    standardised: tuple[np.ndarray, np.ndarray] | None = None
    # The fraction of training labels re-drawn at random (data.label_noise), once it has been
    # done: a spec whose peek() goes through its own load() must not re-draw them twice.
    label_noise: float = 0.0
    # A linear teacher's map as (U, s, Vt), y = U diag(s) Vt x in the units the model sees
    # (x as fed to the model, y as its targets), so an instrument can measure each mode; None
    # for data without one.
    teacher: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def restandardise(self, x: torch.Tensor, other: "Dataset") -> torch.Tensor:
        """Inputs standardised as `other` was, in this draw's units (unchanged where neither
        was standardised; one alone: refused, the units cannot be matched)."""
        if self.standardised is None and other.standardised is None:
            return x
        if self.standardised is None or other.standardised is None:
            raise ValueError("one draw is standardised and the other is not")
        (m_o, s_o), (m, s) = other.standardised, self.standardised
        t = lambda a: torch.as_tensor(a, dtype=x.dtype, device=x.device)  # noqa: E731
        return (x * t(s_o) + t(m_o) - t(m)) / t(s)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def in_dim(self) -> int:
        return math.prod(self.feature_shape)

    @property
    def out_dim(self) -> int:
        if self.task == "classification":
            return int(self.n_classes)
        return int(self.y_train.shape[-1])

    def to(self, device: torch.device) -> "Dataset":
        return replace(
            self,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_test=self.x_test.to(device),
            y_test=self.y_test.to(device),
        )

    def as_float(self, x: torch.Tensor) -> torch.Tensor:
        """A batch as float32 model input (the per-batch normalisation)."""
        if self.scale == 1.0 and self.shift == 0.0:
            return x.float()
        if x.dtype == torch.float32:  # never in place on the caller's (dataset's) tensor
            return x.mul(self.scale).add_(self.shift)
        return x.float().mul_(self.scale).add_(self.shift)  # .float() made a fresh tensor


class DataSpec(Spec):
    """Common keys: how many samples, and whether to standardise the inputs."""

    task: ClassVar[str] = "classification"
    # Whether y has a time axis (many-to-many); None: known only once loaded (arrays).
    sequence_target: ClassVar[bool | None] = False
    n_train: PositiveInt = 1000
    n_test: PositiveInt = 500
    normalize: bool = Field(True, description="standardise inputs with train-set statistics")
    imbalance: float | None = Field(
        None,
        ge=1,
        le=10_000,
        description="classification: the last class keeps 1/imbalance of its samples, in training and test",
    )
    label_noise: float = Field(
        0.0,
        ge=0,
        le=1,
        description="classification: this fraction of the training labels re-drawn uniformly over the "
        "classes, from the seed (1: random labels, Zhang et al. 2017); test labels are kept",
    )

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs):
        # Label noise is applied here, once for every spec: each load() and peek() a subclass
        # defines is wrapped, so a new data spec gets data.label_noise without a line of its own.
        super().__pydantic_init_subclass__(**kwargs)
        for method in ("load", "peek"):
            own = cls.__dict__.get(method)
            # Already wrapped (pydantic may run this hook again for a rebuilt class): noise twice
            # would be harmless (the Dataset records it) but the wrapper would stack.
            if own is not None and not hasattr(own, "__wrapped__"):
                setattr(cls, method, _with_label_noise(own))

    @field_validator("label_noise")
    @classmethod
    def _labels_to_redraw(cls, value: float) -> float:
        if value and cls.task == "regression":
            raise ValueError(
                f"re-draws class labels, and '{cls.model_fields['name'].default}' is a regression task "
                f"(its targets are numbers, not classes): remove label_noise, or pick classification data"
            )
        return value

    def feature_shape(self) -> tuple[int, ...] | None:
        """The shape of one input sample, known without loading (None: only after load)."""
        return None

    def numbers_per_sample(self) -> int | None:
        """How many numbers making one sample takes (None: known only once loaded)."""
        shape = self.feature_shape()
        return math.prod(shape) if shape is not None else None

    @model_validator(mode="after")
    def _fits_in_memory(self):
        per_sample = self.numbers_per_sample()
        samples = (self.n_train or 0) + (self.n_test or 0)
        if per_sample is not None and samples * per_sample > MAX_NUMBERS:
            raise ValueError(
                f"n_train + n_test = {samples:,} samples of {per_sample:,} numbers each is "
                f"{samples * per_sample:,} numbers, more than the {MAX_NUMBERS:,} dlx builds in "
                f"memory; use fewer or smaller samples"
            )
        return self

    def prepare(self, report=None) -> None:
        """Fetch whatever load() needs from outside (a download), reporting progress as
        report(name, done_bytes, total_bytes_or_None). Most data needs nothing."""

    def load(self, seed: int) -> Dataset:
        """Build or read the data on the CPU; the trainer moves it to the device."""
        raise NotImplementedError

    def peek(self, seed: int) -> Dataset:
        """The data as load() makes it, for checking a config (`dlx validate`, dlx.check, the
        lab): reads what is already here, never fetches, creates or deletes a file. Generated
        data is simply made; data still to be downloaded (MNIST) is its stand_in()."""
        return self.load(seed)

    def stand_in(self, seed: int) -> Dataset:
        """Samples shaped, typed and labelled as load() makes them, for `dlx summary`'s forward
        pass. Generated data is cheap to load, so by default it is; data read from files
        (MNIST) overrides this to read and download nothing."""
        return self.load(seed)


# The label noise's own random stream beside the seed: the same seed re-draws the same labels,
# and the data's own draw (which uses the seed alone) is not shifted by it.
LABEL_NOISE_STREAM = 0x1ABE1


def redraw_labels(data: Dataset, fraction: float, seed: int) -> Dataset:
    """Each training label (each step's, for a label per step) re-drawn with probability
    `fraction`, uniformly over all n_classes (so it may come out the same: the expected share
    changed is fraction * (1 - 1/C)); the test labels are kept, so test accuracy measures what
    the true labels allow. The draws cover every training label whatever the fraction, so one
    seed's noisy labels at 0.2 are a subset of its noisy labels at 0.4."""
    if data.task != "classification":
        raise SpecError(
            ("data", "label_noise"),
            f"re-draws class labels, and data '{data.name}' turned out a regression task (float targets): "
            f"remove label_noise",
        )
    rng = np.random.default_rng([seed, LABEL_NOISE_STREAM])
    shape = tuple(data.y_train.shape)
    hit = torch.as_tensor(rng.random(shape) < fraction)
    drawn = torch.as_tensor(rng.integers(0, int(data.n_classes), shape), dtype=data.y_train.dtype)
    return replace(data, y_train=torch.where(hit, drawn, data.y_train), label_noise=fraction)


def _with_label_noise(make):
    @functools.wraps(make)
    def made(self, seed: int) -> Dataset:
        data = make(self, seed)
        if self.label_noise and not data.label_noise:
            data = redraw_labels(data, self.label_noise, seed)
        return data

    return made


def make_imbalanced(data: Dataset, ratio: float) -> Dataset:
    """The last class keeps ceil(n / ratio) of its n samples (its first ones, in the data's
    own random order), in the training and the test set alike: the test set is drawn as
    the world the model will meet, where the rare class is rare too."""
    minority = int(data.n_classes) - 1

    def cut(x, y):
        idx = torch.nonzero(y == minority).flatten()
        keep = torch.cat([torch.nonzero(y != minority).flatten(), idx[: max(1, math.ceil(len(idx) / ratio))]])
        keep = keep.sort().values
        return x[keep], y[keep]

    x_train, y_train = cut(data.x_train, data.y_train)
    x_test, y_test = cut(data.x_test, data.y_test)
    return replace(data, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def rebalance(data: Dataset, how: str) -> Dataset:
    """oversample: every class's training samples repeated (cycling) up to the largest
    class's count; undersample: cut to the smallest's. In the data's own order, deterministic."""
    y = data.y_train
    groups = [torch.nonzero(y == k).flatten() for k in range(int(data.n_classes))]
    groups = [g for g in groups if len(g)]
    n = max(len(g) for g in groups) if how == "oversample" else min(len(g) for g in groups)
    picked = torch.cat([g.repeat(math.ceil(n / len(g)))[:n] for g in groups]).sort().values
    return replace(data, x_train=data.x_train[picked], y_train=data.y_train[picked])

"""Data for classic results: modular arithmetic (grokking), Boolean functions (capacity of a
layer, depth against width) and a linear teacher of chosen singular values (deep linear nets).

Each is made from the config's seed like the synthetic sets: same seed, same data. Modular
and Boolean data are complete tables (every pair, every pattern), so their sample counts are
derived from the other keys rather than chosen.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Literal

import numpy as np
from pydantic import Field, PositiveFloat, PositiveInt, ValidationInfo, field_validator, model_validator

from dlx.components.data.base import DATASETS, DataSpec
from dlx.components.data.synthetic import finish

MAX_MODULUS = 257  # 257^2 pairs of 514 one-hot features: 34M numbers, well inside MAX_NUMBERS
MAX_BITS = 16  # 2^16 patterns; the capacity questions are asked far below this
MAX_LINEAR_DIM = 4096


DATASETS.notes.append(
    "modular and boolean are complete tables: modular's n_train and n_test follow from p, "
    "operation and train_fraction, boolean's are 2^n each (the same patterns train and test); "
    "leave them out (a value that differs is refused). linear_teacher's inputs are whitened "
    "exactly, so it never standardises them (normalize: true is refused) and Dataset.teacher "
    "holds (U, s, Vt), the map from the model's inputs to its targets."
)


def is_prime(n: int) -> bool:
    return n >= 2 and all(n % k for k in range(2, math.isqrt(n) + 1))


def _refuse_other_sizes(spec: DataSpec, n_train: int, n_test: int, how: str, fix: str) -> None:
    """A complete table's sizes are derived; a given n_train or n_test must say the same (a
    run folder's config.yaml, a sweep over seeds) or it is refused, naming what sets them."""
    for key, derived in (("n_train", n_train), ("n_test", n_test)):
        given = getattr(spec, key)
        if given is not None and given != derived:
            raise ValueError(f"{key}: {given} is not what {spec.name} makes: {how}. Leave {key} out; {fix}")


@DATASETS.register("modular")
class Modular(DataSpec):
    """Grokking's modular arithmetic (Power et al. 2022): every pair a, b labelled (a op b) mod p.

    Each pair of 0..p-1 is the one-hot of a beside the one-hot of b (2p inputs), its class
    (a op b) mod p (p classes); a random train_fraction of the pairs, drawn by the seed,
    trains and the rest tests, so n_train and n_test follow from p, operation and
    train_fraction."""

    n_train: PositiveInt | None = Field(
        None, description="derived: round(train_fraction * pairs); leave it out (a different value is refused)"
    )
    n_test: PositiveInt | None = Field(None, description="derived: the pairs not trained on; leave it out")
    normalize: bool = Field(False, description="standardise inputs with train-set statistics (one-hots are exact)")
    p: int = Field(97, ge=2, le=MAX_MODULUS, description="the modulus: a and b run over 0..p-1, p classes")
    operation: Literal["add", "sub", "mul", "div"] = Field(
        "add", description="a+b, a-b, a*b, or a*b^-1 mod p (div: b != 0, p prime)"
    )
    train_fraction: float = Field(0.5, gt=0, lt=1, description="the share of the pairs trained on, drawn by the seed")

    @field_validator("operation")
    @classmethod
    def _inverse_exists(cls, operation: str, info: ValidationInfo) -> str:
        p = info.data.get("p")  # absent when p itself was refused
        if operation == "div" and p is not None and not is_prime(p):
            raise ValueError(
                f"div needs b^-1 mod p for every b != 0, which exists only for a prime p; p = {p} is not "
                f"prime: use a prime p (e.g. {_prime_near(p)}) or another operation"
            )
        return operation

    def feature_shape(self):
        return (2 * self.p,)

    def pairs(self) -> int:
        """How many (a, b) pairs there are: p^2, or p(p-1) for div (b = 0 has no inverse)."""
        return self.p * (self.p - 1 if self.operation == "div" else self.p)

    def sizes(self) -> tuple[int, int]:
        """(training pairs, test pairs): both at least one, whatever the fraction."""
        total = self.pairs()
        n = min(max(round(self.train_fraction * total), 1), total - 1)
        return n, total - n

    @model_validator(mode="after")
    def _derived_sizes(self):
        n_train, n_test = self.sizes()
        _refuse_other_sizes(
            self,
            n_train,
            n_test,
            f"p = {self.p} with {self.operation} has {self.pairs()} pairs, and train_fraction "
            f"{self.train_fraction:g} trains on {n_train} of them and tests on {n_test}",
            "set train_fraction to change the split",
        )
        return self

    def table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(a, b, label) of every pair, in order of a then b."""
        p = self.p
        a, b = (v.ravel() for v in np.meshgrid(np.arange(p), np.arange(p), indexing="ij"))
        if self.operation == "div":
            a, b = a[b != 0], b[b != 0]
        if self.operation == "add":
            y = (a + b) % p
        elif self.operation == "sub":
            y = (a - b) % p
        elif self.operation == "mul":
            y = (a * b) % p
        else:  # Fermat: b^(p-2) is b's inverse mod a prime p
            y = (a * np.array([pow(int(v), p - 2, p) for v in b])) % p
        return a, b, y.astype(np.int64)

    def load(self, seed):
        rng = np.random.default_rng(seed)
        a, b, y = self.table()
        x = np.zeros((len(a), 2 * self.p), dtype=np.float32)
        rows = np.arange(len(a))
        x[rows, a] = 1.0
        x[rows, self.p + b] = 1.0
        order = rng.permutation(len(a))
        n_train, n_test = self.sizes()
        spec = self.model_copy(update={"n_train": n_train, "n_test": n_test})
        return finish(spec, "modular", x[order], y[order], "classification", self.p)


def _prime_near(n: int) -> int:
    return next(k for k in range(n, 2 * n + 2) if is_prime(k))


@DATASETS.register("boolean")
class Boolean(DataSpec):
    """A Boolean function (parity, majority, random) of n ±1 inputs: all 2^n patterns, to fit.

    A true bit is +1, a false one -1. All 2^n patterns are the training set and the test set
    alike, since the question is whether a net fits every pattern (one hidden layer needs up
    to 2^(n-1) units; parity is the hard case); 2 classes."""

    n_train: PositiveInt | None = Field(None, description="derived: all 2^n patterns; leave it out")
    n_test: PositiveInt | None = Field(None, description="derived: the same 2^n patterns; leave it out")
    normalize: bool = Field(False, description="standardise inputs (±1 over all patterns is already mean 0, std 1)")
    n: int = Field(4, ge=1, le=MAX_BITS, description="inputs (bits); 2^n patterns")
    function: Literal["parity", "majority", "random"] = Field(
        "parity",
        description="parity: an odd number of true bits; majority: more true bits than false (a tie is "
        "class 0); random: a truth table drawn from the seed",
    )

    def feature_shape(self):
        return (self.n,)

    @model_validator(mode="after")
    def _derived_sizes(self):
        k = 2**self.n
        _refuse_other_sizes(
            self, k, k, f"n = {self.n} gives 2^{self.n} = {k} patterns, each in training and test", "set n to change it"
        )
        return self

    def bits(self) -> np.ndarray:
        """Every pattern as 0/1 bits, pattern i being i in binary (its first bit the highest)."""
        i = np.arange(2**self.n)
        return (i[:, None] >> np.arange(self.n - 1, -1, -1)) & 1

    def load(self, seed):
        bits = self.bits()
        if self.function == "parity":
            y = bits.sum(axis=1) % 2
        elif self.function == "majority":
            y = (2 * bits.sum(axis=1) > self.n).astype(np.int64)
        else:
            y = np.random.default_rng(seed).integers(0, 2, len(bits))
        x = (2.0 * bits - 1.0).astype(np.float32)
        k = len(bits)
        spec = self.model_copy(update={"n_train": k, "n_test": k})
        both = np.concatenate([y, y]).astype(np.int64)
        return finish(spec, "boolean", np.concatenate([x, x]), both, "classification", 2)


def _orthonormal_columns(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """A random rows x cols matrix with orthonormal columns, uniform (Haar): QR of a Gaussian
    with the signs of R's diagonal moved onto Q, without which Q would be biased."""
    q, r = np.linalg.qr(rng.normal(size=(rows, cols)))
    return q * np.sign(np.diag(r))


@DATASETS.register("linear_teacher")
class LinearTeacher(DataSpec):
    """Regression on y = U diag(s) V^T x with chosen s and white x (Saxe et al. 2013; loss: mse).

    U and V are random orthonormal from the seed; the training inputs are white (their second
    moment is exactly I), so a deep linear net learns mode k on a time scale 1/s_k. The
    teacher is kept on the data (Dataset.teacher, as U, s, Vt) for instruments."""

    task = "regression"
    normalize: bool = Field(
        False,
        description="always false: the inputs are whitened exactly, and standardising them again "
        "would change the teacher map the model must learn",
    )
    inputs: int = Field(8, ge=1, le=MAX_LINEAR_DIM, description="input dimension d_in")
    outputs: int = Field(8, ge=1, le=MAX_LINEAR_DIM, description="output dimension d_out")
    singular_values: list[PositiveFloat] = Field(
        default_factory=lambda: [4.0, 2.0, 1.0, 0.5],
        min_length=1,
        description="the teacher's mode strengths s (at most min(inputs, outputs)); the other modes are 0",
    )
    noise: float = Field(0.0, ge=0, description="std of Gaussian noise added to every target")

    def feature_shape(self):
        return (self.inputs,)

    def numbers_per_sample(self):
        return self.inputs + self.outputs

    @field_validator("singular_values")
    @classmethod
    def _at_most_rank(cls, values: list[float], info: ValidationInfo) -> list[float]:
        if "inputs" not in info.data or "outputs" not in info.data:
            return values  # one of them was refused already; its own message says why
        d_in, d_out = info.data["inputs"], info.data["outputs"]
        rank = min(d_in, d_out)
        if len(values) > rank:
            raise ValueError(
                f"{len(values)} values, but a map from {d_in} inputs to {d_out} outputs has at most {rank} "
                f"modes: give at most {rank} values, or raise inputs and outputs to at least {len(values)}"
            )
        return values

    @model_validator(mode="after")
    def _a_teacher_that_exists(self):
        if self.normalize:
            raise ValueError(
                "normalize: the inputs are already white, and standardising them would change the map "
                "the teacher stores: leave normalize out (false)"
            )
        if self.n_train < self.inputs:
            raise ValueError(
                f"n_train: {self.n_train} samples cannot be white in {self.inputs} dimensions (their second "
                f"moment has rank at most {self.n_train}): use n_train >= {self.inputs}"
            )
        return self

    def load(self, seed):
        rng = np.random.default_rng(seed)
        # The teacher first, so one seed is one teacher whatever n_train and n_test are.
        k = len(self.singular_values)
        u = _orthonormal_columns(rng, self.outputs, k)
        vt = _orthonormal_columns(rng, self.inputs, k).T
        s = np.asarray(self.singular_values, dtype=np.float64)
        x = rng.normal(size=(self.n_train + self.n_test, self.inputs))
        # Whitened exactly: the training draw X = Q R (QR) becomes sqrt(n) Q, whose second
        # moment Q^T Q is I; the test draw gets the same map sqrt(n) R^-1, white in expectation.
        _, r = np.linalg.qr(x[: self.n_train])
        x = np.linalg.solve(r.T, x.T).T * math.sqrt(self.n_train)
        y = (x @ vt.T) * s @ u.T
        y = y + rng.normal(0.0, self.noise, y.shape) if self.noise else y
        data = finish(self, "linear_teacher", x, y.astype(np.float32), "regression")
        return replace(data, teacher=(u, s, vt))

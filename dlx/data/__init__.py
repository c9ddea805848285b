"""Datasets: synthetic tasks, a user's arrays, MNIST, sequence tasks. Importing registers them all."""

from . import mnist, sequences, synthetic  # noqa: F401,E402  (registration side effect)
from .base import DATASETS, Dataset, DataSpec  # noqa: F401

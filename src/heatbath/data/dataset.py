"""A train/test pair of tensors, and building one by name.

``make_dataset("spirals", n_train=500, n_test=1000, seed=s, turns=2)`` draws the training set
with ``seed`` and the test set fresh from the same generator with an independent seed
(``derive_seed(seed, STREAM_TEST_DATA)``), as the paper does ("test data drawn fresh").
``make_dataset("mnist", root=None)`` loads the MNIST train/test split (see
``heatbath.data.digits``); ``n_train``/``n_test`` then take a seeded random subset of each split.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from heatbath._validate import check_choice, check_int

from ._seeding import STREAM_TEST_DATA, derive_seed
from .digits import mnist
from .spirals import spirals
from .trig import trig

__all__ = ["Dataset", "make_dataset", "DATASETS"]

#: dataset names understood by :func:`make_dataset`
DATASETS = ("spirals", "trig", "mnist")


@dataclass
class Dataset:
    """Training and test tensors of one classification problem.

    ``X_*`` are float32 ``[n, d]`` (any trailing shape is allowed), ``y_*`` int64 ``[n]`` class
    indices in ``0 .. n_classes - 1``.
    """

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    name: str = "custom"
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            X, y = getattr(self, f"X_{split}"), getattr(self, f"y_{split}")
            if not isinstance(X, torch.Tensor) or not X.is_floating_point() or X.ndim < 2:
                raise ValueError(f"X_{split} must be a floating tensor [n, d], got "
                                 f"{getattr(X, 'shape', type(X))}")
            if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.ndim != 1:
                raise ValueError(f"y_{split} must be an int64 tensor [n]")
            if y.shape[0] != X.shape[0] or X.shape[0] == 0:
                raise ValueError(f"X_{split} and y_{split} must hold the same number (> 0) of "
                                 f"samples, got {X.shape[0]} and {y.shape[0]}")
        if self.X_train.shape[1:] != self.X_test.shape[1:]:
            raise ValueError(f"X_train and X_test must have the same feature shape, got "
                             f"{tuple(self.X_train.shape[1:])} and {tuple(self.X_test.shape[1:])}")
        self.n_classes = check_int("n_classes", self.n_classes, low=2)
        for split in ("train", "test"):
            y = getattr(self, f"y_{split}")
            if int(y.min()) < 0 or int(y.max()) >= self.n_classes:
                raise ValueError(f"y_{split} must lie in [0, {self.n_classes - 1}]")

    @property
    def input_dim(self) -> int:
        """Number of input features (product of the trailing dimensions)."""
        return math.prod(self.X_train.shape[1:])

    def fingerprint(self) -> str:
        """Short hash of the tensors: a checkpoint refuses to resume on different data."""
        h = hashlib.sha256()
        for t in (self.X_train, self.y_train, self.X_test, self.y_test):
            c = t.detach().contiguous().cpu()
            h.update(str((tuple(c.shape), str(c.dtype))).encode())
            h.update(c.numpy().tobytes())
        return h.hexdigest()[:16]


def _subset(X: torch.Tensor, y: torch.Tensor, n: int | None, seed: int, name: str
            ) -> tuple[torch.Tensor, torch.Tensor]:
    if n is None:
        return X, y
    n = check_int(name, n, low=1, high=X.shape[0])
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(X.shape[0], generator=g)[:n]
    return X[idx], y[idx]


def make_dataset(
    name: str,
    *,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    **params: Any,
) -> Dataset:
    """Build a :class:`Dataset` by name.

    Args:
        name: ``"spirals"`` (params: ``turns`` (default 2), ``a``, ``c``, ``p``), ``"trig"``
            (params: ``a`` (default 3), ``b``, ``c``) or ``"mnist"`` (params: ``root``).
        n_train, n_test: sizes; for spirals/trig default 500 and 1000, for MNIST ``None`` keeps
            the whole split, an integer takes a seeded random subset.
        seed: the data seed (>= 0): training set from ``seed``, test set from
            ``derive_seed(seed, STREAM_TEST_DATA)``.
        params: generator parameters (see above); unknown names raise ``ValueError``.
    """
    name = check_choice("dataset", name, DATASETS)
    seed = check_int("seed", seed, low=0)
    test_seed = derive_seed(seed, STREAM_TEST_DATA)
    allowed: Mapping[str, tuple[str, ...]] = {
        "spirals": ("turns", "a", "c", "p"), "trig": ("a", "b", "c"), "mnist": ("root",)}
    unknown = sorted(set(params) - set(allowed[name]))
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)} for dataset {name!r}; "
                         f"allowed: {', '.join(allowed[name])}")
    if name == "mnist":
        root = params.get("root")
        Xtr, ytr = mnist(root, split="train")
        Xte, yte = mnist(root, split="test")
        Xtr, ytr = _subset(Xtr, ytr, n_train, seed, "n_train")
        Xte, yte = _subset(Xte, yte, n_test, test_seed, "n_test")
        return Dataset(Xtr, ytr, Xte, yte, 10, name, {"root": None if root is None else str(root)})
    n_train = check_int("n_train", 500 if n_train is None else n_train, low=2)
    n_test = check_int("n_test", 1000 if n_test is None else n_test, low=2)
    if name == "spirals":
        kw = {"turns": 2.0, **params}
        Xtr, ytr = spirals(n_train, seed=seed, **kw)
        Xte, yte = spirals(n_test, seed=test_seed, **kw)
    else:
        kw = {"a": 3.0, **params}
        Xtr, ytr = trig(n_train, seed=seed, **kw)
        Xte, yte = trig(n_test, seed=test_seed, **kw)
    return Dataset(Xtr, ytr, Xte, yte, 2, name, dict(kw))

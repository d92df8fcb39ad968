"""CIFAR-10 from a folder the user names; nothing is ever downloaded.

Two standard distributions are read (Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html):

- **python** (``cifar-10-python.tar.gz`` unpacked): ``data_batch_1`` .. ``data_batch_5`` and
  ``test_batch``, each a pickled dict with ``b"data"`` (an ``[n, 3072]`` uint8 array, one row per
  image: the 1,024 red, then green, then blue pixels, row-major) and ``b"labels"`` (n ints in
  0..9). The pickles are read with a restricted unpickler that only rebuilds NumPy arrays, lists,
  dicts and strings, so a hostile file cannot run code.
- **binary** (``cifar-10-binary.tar.gz`` unpacked): ``data_batch_1.bin`` .. ``data_batch_5.bin``
  and ``test_batch.bin``, each a sequence of 3,073-byte records: one label byte, then the 3,072
  pixel bytes in the same order.

``root`` may be the folder holding the batch files or its parent (the archives unpack into
``cifar-10-batches-py/`` and ``cifar-10-batches-bin/``). The python version is used when both are
present. A missing folder or batch file, or a corrupt one, raises ``FileNotFoundError`` /
``ValueError`` with one line saying what is wrong.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from heatbath._validate import check_choice

__all__ = ["cifar10", "CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
#: per-channel mean and standard deviation of the 50,000 training images (pixels in [0, 1])
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_TEST = ("test_batch",)
_PIXELS = 3 * 32 * 32
_SUBDIRS = ("cifar-10-batches-py", "cifar-10-batches-bin")

# (module, name) pairs a CIFAR-10 python batch needs to rebuild its arrays; numpy >= 2 moved
# numpy.core to numpy._core and keeps the old name as an alias; _codecs.encode is how protocol-2
# pickles written by Python 3 store bytes
_SAFE_GLOBALS = {
    ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 batch")


def _layout(root: Path) -> tuple[Path, str]:
    """The folder with the batch files and its format (``"python"`` or ``"binary"``)."""
    for folder in (root, *(root / s for s in _SUBDIRS)):
        if (folder / "test_batch").is_file() or (folder / "data_batch_1").is_file():
            return folder, "python"
        if (folder / "test_batch.bin").is_file() or (folder / "data_batch_1.bin").is_file():
            return folder, "binary"
    raise FileNotFoundError(
        f"CIFAR-10: no batch files in {root} (nor in its cifar-10-batches-py/ or "
        "cifar-10-batches-bin/ subfolder); unpack cifar-10-python.tar.gz or "
        "cifar-10-binary.tar.gz there (data_batch_1..5 and test_batch, or the .bin files)")


def _read_python(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            obj = _ArrayUnpickler(io.BytesIO(fh.read()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, KeyError) as exc:
        raise ValueError(f"CIFAR-10: {path} is not a readable python batch "
                         f"({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"CIFAR-10: {path} holds a {type(obj).__name__}, expected the batch "
                         f"dict with b'data' and b'labels'")
    data = obj.get(b"data", obj.get("data"))
    labels = obj.get(b"labels", obj.get("labels"))
    if data is None or labels is None:
        raise ValueError(f"CIFAR-10: {path} has no 'data'/'labels' entries "
                         f"(keys: {sorted(map(str, obj))})")
    data = np.asarray(data)
    labels = np.asarray(labels)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        raise ValueError(f"CIFAR-10: {path}: data must be uint8 of shape [n, {_PIXELS}], got "
                         f"{data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],):
        raise ValueError(f"CIFAR-10: {path}: {data.shape[0]} images but labels of shape "
                         f"{labels.shape}")
    return data, labels


def _read_binary(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, dtype=np.uint8)
    rec = _PIXELS + 1
    if raw.size == 0 or raw.size % rec:
        raise ValueError(f"CIFAR-10: {path} has {raw.size} bytes, not a whole number of "
                         f"{rec}-byte records (1 label byte + {_PIXELS} pixel bytes)")
    table = raw.reshape(-1, rec)
    return table[:, 1:], table[:, 0]


def cifar10(root: str | os.PathLike[str], *, split: str = "train",
            flatten: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Load CIFAR-10 from ``root`` (see the module docstring for the accepted layouts).

    Args:
        root: folder holding the batch files, or its parent.
        split: ``"train"`` (data_batch_1..5, 50,000 images), ``"test"`` (test_batch, 10,000)
            or ``"all"`` (both, train first).
        flatten: return ``[n, 3072]`` instead of ``[n, 3, 32, 32]``.

    Returns:
        ``(X, y)``: float32 images in [0, 1] (pixel / 255), channels first, and int64 labels in
        0..9.

    Raises:
        FileNotFoundError: the folder or one of the split's batch files is missing.
        ValueError: a batch file is corrupt (wrong size, shape, type or labels out of 0..9).
    """
    split = check_choice("split", split, ("train", "test", "all"))
    if root is None:
        raise ValueError("root must name a folder with the CIFAR-10 batches; heatbath never "
                         "downloads data")
    folder = Path(root)
    if not folder.is_dir():
        raise FileNotFoundError(f"CIFAR-10: folder {folder} does not exist; give the folder "
                                f"where cifar-10-python.tar.gz or cifar-10-binary.tar.gz was "
                                f"unpacked")
    folder, fmt = _layout(folder)
    names = {"train": _TRAIN, "test": _TEST, "all": _TRAIN + _TEST}[split]
    suffix = "" if fmt == "python" else ".bin"
    parts = []
    for name in names:
        path = folder / (name + suffix)
        if not path.is_file():
            raise FileNotFoundError(f"CIFAR-10 ({fmt}): {path.name} missing in {folder}; the "
                                    f"{split!r} split needs {', '.join(n + suffix for n in names)}")
        parts.append(_read_python(path) if fmt == "python" else _read_binary(path))
    pixels = np.concatenate([p for p, _ in parts])
    labels = np.concatenate([lab for _, lab in parts]).astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"CIFAR-10 in {folder}: labels must be in 0..9, found "
                         f"{int(labels.min())}..{int(labels.max())}")
    X = torch.from_numpy(pixels.astype(np.float32) / np.float32(255.0))
    if not flatten:
        X = X.reshape(-1, 3, 32, 32)
    return X, torch.from_numpy(labels)

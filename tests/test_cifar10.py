"""heatbath.data.cifar10 on small files in the two real CIFAR-10 formats, written here."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from heatbath.data import cifar10

BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def make_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n labelled 32x32 RGB images (uint8 rows of 3072) that a small net can learn.

    Class k has a bright square at one of ten positions and colour channel k % 3, on noise, so
    the data are separable but not trivially by mean pixel value.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    img = rng.integers(0, 90, (n, 3, 32, 32)).astype(np.uint8)
    for i, k in enumerate(labels):
        r, c = divmod(int(k), 5)
        img[i, int(k) % 3, 4 + 12 * r:12 + 12 * r, 1 + 6 * c:7 + 6 * c] = 230
    return img.reshape(n, -1), labels


def write_cifar(folder: Path, n_per_batch: int = 20, fmt: str = "python", seed: int = 0,
                subdir: bool = False) -> Path:
    """Write the six CIFAR-10 batch files in the real python-pickle or binary format."""
    base = folder / ("cifar-10-batches-py" if fmt == "python" else "cifar-10-batches-bin") \
        if subdir else folder
    base.mkdir(parents=True, exist_ok=True)
    for j, name in enumerate(BATCHES):
        data, labels = make_images(n_per_batch, seed + j)
        if fmt == "python":
            batch = {b"batch_label": f"{name} (test-made)".encode(),
                     b"labels": [int(v) for v in labels], b"data": data,
                     b"filenames": [f"img_{j}_{i}.png".encode() for i in range(n_per_batch)]}
            with open(base / name, "wb") as fh:
                pickle.dump(batch, fh, protocol=2)
        else:
            rec = np.concatenate([labels.astype(np.uint8)[:, None], data], axis=1)
            rec.tofile(base / f"{name}.bin")
    return folder


@pytest.mark.parametrize("fmt", ["python", "binary"])
def test_reads_both_formats_exactly(tmp_path, fmt):
    write_cifar(tmp_path, n_per_batch=7, fmt=fmt, seed=3)
    X, y = cifar10(tmp_path, split="train")
    assert X.shape == (35, 3, 32, 32) and X.dtype == torch.float32 and y.dtype == torch.int64
    # the first training image and label are the first row written to data_batch_1
    data, labels = make_images(7, 3)
    assert torch.equal(X[0], torch.from_numpy(data[0].reshape(3, 32, 32) / np.float32(255)))
    assert y[:7].tolist() == labels.tolist()
    Xt, yt = cifar10(tmp_path, split="test", flatten=True)
    data_t, labels_t = make_images(7, 3 + 5)
    assert Xt.shape == (7, 3072)
    assert torch.equal((Xt * 255).round().to(torch.uint8), torch.from_numpy(data_t))
    assert yt.tolist() == labels_t.tolist()
    Xa, _ = cifar10(tmp_path, split="all")
    assert len(Xa) == 42 and float(Xa.min()) >= 0.0 and float(Xa.max()) <= 1.0


def test_python_and_binary_agree_and_parent_folder_works(tmp_path):
    write_cifar(tmp_path / "a", fmt="python", subdir=True)
    write_cifar(tmp_path / "b", fmt="binary", subdir=True)
    Xa, ya = cifar10(tmp_path / "a", split="all")
    Xb, yb = cifar10(tmp_path / "b", split="all")
    assert torch.equal(Xa, Xb) and torch.equal(ya, yb)


def test_missing_folder_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cifar10(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no batch files"):
        cifar10(tmp_path)
    write_cifar(tmp_path, n_per_batch=2)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3 missing"):
        cifar10(tmp_path, split="train")
    cifar10(tmp_path, split="test")  # the test split does not need it
    with pytest.raises(ValueError, match="split"):
        cifar10(tmp_path, split="valid")


def test_corrupt_files_give_one_line_errors(tmp_path):
    write_cifar(tmp_path, n_per_batch=2)
    (tmp_path / "test_batch").write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match="not a readable python batch") as err:
        cifar10(tmp_path, split="test")
    assert "\n" not in str(err.value)
    with open(tmp_path / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, fh)
    with pytest.raises(ValueError, match="shape"):
        cifar10(tmp_path, split="test")
    with open(tmp_path / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 11]}, fh)
    with pytest.raises(ValueError, match="0..9"):
        cifar10(tmp_path, split="test")
    b = tmp_path / "bin"
    write_cifar(b, n_per_batch=2, fmt="binary")
    with open(b / "test_batch.bin", "ab") as fh:
        fh.write(b"\x00" * 10)
    with pytest.raises(ValueError, match="records"):
        cifar10(b, split="test")


def test_pickle_cannot_run_code(tmp_path):
    write_cifar(tmp_path, n_per_batch=2)

    class Evil:
        def __reduce__(self):
            return (print, ("side effect",))

    with open(tmp_path / "test_batch", "wb") as fh:
        pickle.dump({b"data": Evil(), b"labels": [0]}, fh)
    with pytest.raises(ValueError, match="not allowed"):
        cifar10(tmp_path, split="test")

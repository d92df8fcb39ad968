"""Spec §8.1: the τ = 0 / σ = 0 limits, checked against torch and a direct transcription."""

from __future__ import annotations

import copy
import math

import numpy as np
import torch

from heatbath.optim import SGLD, AdaptiveLangevin, Langevin, langevin_to_sgd, sgd_to_langevin

from ._helpers import shlp, toy_spiral, train


def test_sgld_sigma0_is_sgd_bitwise():
    X, y = toy_spiral(200)
    a, b = shlp(seed=1), shlp(seed=1)
    ta = train(a, SGLD(a.parameters(), h=0.1, sigma=0.0, seed=0), X, y, 30, record=True)
    tb = train(b, torch.optim.SGD(b.parameters(), lr=0.1), X, y, 30, record=True)
    for u, v in zip(ta, tb):
        assert torch.equal(u, v)


def test_langevin_tau0_is_sgd_momentum_after_first_step():
    # Spec §3: theta_{n+1} - theta_n = c (theta_n - theta_{n-1}) - eta g_n, eta = h^2 (1+c)/2.
    # After one Langevin step, SGD(lr=eta, momentum=c, dampening=0) with momentum buffer
    # -(theta_1 - theta_0)/eta continues the same trajectory (float64, so to ~1e-12).
    X, y = toy_spiral(200)
    X = X.double()
    y = y.double()
    h, gamma = 0.3, 2.0
    eta, c = langevin_to_sgd(h, gamma)
    a = shlp(seed=2, dtype=torch.float64)
    theta0 = [p.detach().clone() for p in a.parameters()]
    opt_a = Langevin(a.parameters(), h, gamma, tau=0.0, seed=0)
    train(a, opt_a, X, y, 1, seed=5)
    b = copy.deepcopy(a)
    opt_b = torch.optim.SGD(b.parameters(), lr=eta, momentum=c, dampening=0.0)
    for p, p0 in zip(b.parameters(), theta0):
        opt_b.state[p]["momentum_buffer"] = -(p.detach() - p0) / eta
    ta = train(a, opt_a, X, y, 40, seed=6, record=True)
    tb = train(b, opt_b, X, y, 40, seed=6, record=True)
    err = max(float((u - v).abs().max()) for u, v in zip(ta, tb))
    assert err < 1e-12


def test_from_sgd_inverts_mapping():
    h, gamma = sgd_to_langevin(0.05, 0.9)
    eta, c = langevin_to_sgd(h, gamma)
    assert math.isclose(eta, 0.05, rel_tol=1e-12) and math.isclose(c, 0.9, rel_tol=1e-12)
    opt = Langevin.from_sgd([torch.zeros(3, requires_grad=True)], lr=0.05, momentum=0.9)
    assert math.isclose(opt.param_groups[0]["gamma"], gamma)


def _adl_transcription(theta0, grad_fn, h, tau, eps, xi0, steps):
    """Spec §1–2 written out in numpy float64: merged kick, then A C D E D C A (σ_A = 0).

    One ξ per tensor; theta0 is a list of arrays.
    """
    th = [t.copy() for t in theta0]
    p = [np.zeros_like(t) for t in th]
    xi = [xi0 for _ in th]
    for n in range(steps):
        g = grad_fn(th)
        kick = h / 2 if n == 0 else h
        for i in range(len(th)):
            p[i] = p[i] - kick * g[i]
            th[i] = th[i] + h / 2 * p[i]
            p[i] = math.exp(-xi[i] * h / 2) * p[i]
            xi[i] = xi[i] + h * eps * (float((p[i] * p[i]).sum()) - p[i].size * tau)
            p[i] = math.exp(-xi[i] * h / 2) * p[i]
            th[i] = th[i] + h / 2 * p[i]
    return th, xi


def test_adaptive_langevin_deterministic_matches_transcription():
    rng = np.random.default_rng(0)
    k = [rng.uniform(0.5, 2.0, size=(3, 4)), rng.uniform(0.5, 2.0, size=5)]
    theta0 = [rng.normal(size=(3, 4)), rng.normal(size=5)]

    def grad_fn(th):  # U = sum 0.5 k theta^2 + 0.1 theta^4: a non-linear force
        return [ki * t + 0.4 * t**3 for ki, t in zip(k, th)]

    h, tau, eps, xi0, steps = 0.1, 0.3, 0.5, 0.2, 60
    ref_th, ref_xi = _adl_transcription(theta0, grad_fn, h, tau, eps, xi0, steps)
    params = [torch.tensor(t, requires_grad=True) for t in theta0]
    kt = [torch.tensor(x) for x in k]
    opt = AdaptiveLangevin(params, h, tau=tau, sigma_A=0.0, epsilon=eps, xi0=xi0, seed=0)
    for _ in range(steps):
        opt.zero_grad()
        loss = sum((0.5 * ki * t**2 + 0.1 * t**4).sum() for ki, t in zip(kt, params))
        loss.backward()
        opt.step()
    for t, r in zip(params, ref_th):
        assert np.abs(t.detach().numpy() - r).max() < 1e-12
    assert np.allclose(opt.diagnostics()[0]["xi"], ref_xi, rtol=0, atol=1e-12)
    # the test has teeth: xi moved far from xi0 and differs between the two tensors
    assert abs(ref_xi[0] - xi0) > 0.05 and abs(ref_xi[0] - ref_xi[1]) > 0.01

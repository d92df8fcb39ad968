"""Spec §8.2–8.3: the integrators sample the right temperature; AdL absorbs gradient noise.

Targets are Gaussian, U(θ) = ½ Σ k_i θ_i², where BAOAB's stationary law is known in closed form:
Var θ_i = τ/k_i exactly (for any stable h), the full-step momentum has variance
τ(1 − h²k_i/4) and the momentum stored after the O step has variance τ.

Tolerances: the n coordinates are independent, so a single snapshot's mean of p_i²/τ (chi-square,
variance 2 per coordinate) has standard deviation τ√(2/n); a time average of such snapshots has at
most that spread. Each assertion allows 4 of these standard deviations (≈ 6e-5 two-sided), the
same for θ_i²k_i/τ.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from heatbath.optim import SGLD, AdaptiveLangevin, Langevin

KS = (0.5, 1.0, 2.0)


def _quadratic(n: int, seed: int):
    torch.manual_seed(seed)
    k = torch.tensor(KS).repeat(n // len(KS))
    theta = torch.nn.Parameter(torch.randn(n) * 0.1)
    return k, theta


def test_baoab_temperatures_and_variances():
    n, tau, h, gamma = 30_000, 0.5, 0.5, 1.0
    k, theta = _quadratic(n, 0)
    opt = Langevin([theta], h, gamma, tau, seed=3)
    kin, kin_stored, conf, var = [], [], [], []
    for i in range(1800):
        opt.zero_grad()
        (0.5 * (k * theta**2).sum()).backward()
        if i >= 600 and i % 10 == 0:
            d = opt.diagnostics()[0]
            assert d["kinetic_corrected"]
            kin.append(d["kinetic_temperature"])
            kin_stored.append(d["kinetic_temperature_stored"])
            conf.append(d["configurational_temperature"])
            var.append([float((theta.detach()[j :: len(KS)] ** 2).mean()) for j in range(len(KS))])
        opt.step()
    tol = 4 * tau * math.sqrt(2 / n)
    full_step = tau * np.mean([1 - h * h * kk / 4 for kk in KS])
    assert abs(np.mean(kin) - full_step) < tol
    assert abs(np.mean(kin_stored) - tau) < tol
    assert abs(np.mean(conf) - tau) < tol
    for j, kk in enumerate(KS):  # coordinate class j has n/3 entries: 4 sd of θ²k/τ
        assert abs(np.mean(var, 0)[j] * kk / tau - 1) < 4 * math.sqrt(2 / (n / len(KS)))


def test_sgld_configurational_temperature():
    # SGLD with sigma = sqrt(2 tau): Euler–Maruyama for overdamped Langevin. On U = ½kθ² the
    # chain is AR(1), θ' = (1 - hk)θ + σ√h R, with exact variance σ²h/(1 - (1 - hk)²).
    n, tau, h = 30_000, 0.2, 0.05
    k, theta = _quadratic(n, 1)
    opt = SGLD([theta], h, sigma=math.sqrt(2 * tau), seed=4)
    var = []
    for i in range(1500):
        opt.zero_grad()
        (0.5 * (k * theta**2).sum()).backward()
        opt.step()
        if i >= 500 and i % 10 == 0:
            var.append([float((theta.detach()[j :: len(KS)] ** 2).mean()) for j in range(len(KS))])
    for j, kk in enumerate(KS):
        exact = 2 * tau * h / (1 - (1 - h * kk) ** 2)
        assert abs(np.mean(var, 0)[j] / exact - 1) < 4 * math.sqrt(2 / (n / len(KS)))


def _noisy_run(opt_factory, n=20_000, tau=0.1, sigma_g=1.0, steps=3000):
    torch.manual_seed(0)
    theta = torch.nn.Parameter(torch.randn(n) * math.sqrt(tau))
    opt = opt_factory([theta])
    gen = torch.Generator().manual_seed(9)
    temps, xi = [], None
    for i in range(steps):
        opt.zero_grad()
        (0.5 * (theta**2).sum()).backward()
        theta.grad.add_(torch.randn(n, generator=gen), alpha=sigma_g)  # unknown gradient noise
        if i >= steps // 2 and i % 5 == 0:
            d = opt.diagnostics()[0]
            temps.append(d["kinetic_temperature_stored"])
            xi = d.get("xi")
        opt.step()
    return float(np.mean(temps)), xi


def test_adaptive_langevin_absorbs_gradient_noise():
    n, tau, h, sigma_A = 20_000, 0.1, 0.1, 0.1
    t_lang, _ = _noisy_run(lambda p: Langevin(p, h, 1.0, tau, seed=3), n=n, tau=tau)
    t_adl, xi = _noisy_run(
        lambda p: AdaptiveLangevin(p, h, tau, sigma_A=sigma_A, epsilon=1.0,
                                   epsilon_scale="per_entry", seed=3), n=n, tau=tau)
    stat = 4 * tau * math.sqrt(2 / n)
    # The thermostat pins the time average of p'p/n at the E sub-step to tau (telescoping sum of
    # the xi updates). The stored momentum is that one after D_{h/2} C_{h/2}:
    # E|p|^2/n = e^{-xi h}(tau + sigma_A^2 h/2) to first order, which we compare with.
    expected_adl = math.exp(-xi[0] * h) * (tau + sigma_A**2 * h / 2)
    assert abs(t_adl - expected_adl) < stat + tau * (xi[0] * h) ** 2
    assert abs(t_adl - tau) < 0.1 * tau
    # Plain Langevin has no way to shed the extra heat: kick noise of variance h²σ_g² per step
    # against friction c² = e^{-2γh} heats p by about h²σ_g²/(1 - c²).
    heating = h**2 / (1 - math.exp(-2 * h))
    assert t_lang - tau > 0.5 * heating
    assert t_lang - tau > 5 * stat

"""The worked case: Langevin, SGLD and AdLaLa against the exact posterior predictive.

Bayesian linear regression at tau = 1/N (see heatbath.sampling.reference). Every comparison is
"sampled - exact" in units of its Monte Carlo standard error (from the ESS of the chains), plus
the integrator's known discretisation error:

- BAOAB is exact in theta for a quadratic loss: no bias term;
- SGLD's stationary covariance is exactly tau A^-1 (I - hA/2)^-1 (O(h)): compared with that,
  and its distance from the posterior must be seen;
- Adaptive Langevin's O(h^2) error has no closed form here; we bound its relative size in the
  variance by (h omega_max)^2 / 2, twice BAOAB's kinetic-temperature error h^2 omega^2 / 4 at
  the same step (measured on this problem at h = 0.2: at most 0.10 of the variance against the
  bound 0.11).

With 5 test points and two statistics per method, |z| < 4.5 keeps the chance of a false alarm
below 1e-4 per run (Bonferroni) while a bias of a few standard errors is caught.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from heatbath.sampling import predictive, rhat
from heatbath.sampling.reference import (
    deep_ensemble,
    make_linear_problem,
    point_predictions,
    predictive_check,
    regression_calibration,
    sample_posterior,
)

Z = 4.5


def _check(method: str, h: float, *, steps: int, chains: int, seed: int = 0,
           thin: int = 2) -> dict:
    pb = make_linear_problem(n_train=50, n_test=5, seed=0)
    model, col = sample_posterior(pb, method, chains=chains, steps=steps, burn_in=300, thin=thin,
                                  h=h, seed=seed)
    stacked = col.stacked()
    res = predictive_check(pb, stacked)
    # predictive() over the same samples gives the same mean and (unbiased) variance
    pr = predictive(model, stacked, pb.X_test, task="regression")
    S = stacked["weight"].shape[0] * chains
    np.testing.assert_allclose(pr.mean.squeeze(-1).numpy(), res["mean"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(pr.var.squeeze(-1).numpy(), res["var"] * S / (S - 1), rtol=1e-9)
    f = point_predictions(pb, stacked)
    res["rhat"] = max(rhat(f[j]) for j in range(f.shape[0]))
    res["pb"], res["stacked"], res["h"] = pb, stacked, h
    return res


def _assert_matches(res: dict, bias_rel: float = 0.0) -> None:
    assert np.all(np.abs(res["z_mean"]) < Z), res["z_mean"]
    allowed = Z * res["se_var"] + bias_rel * res["var_ref"]
    assert np.all(np.abs(res["var"] - res["var_ref"]) < allowed), (res["var"], res["var_ref"])
    assert res["rhat"] < 1.02  # 8+ chains from prior draws, well past burn-in


@pytest.mark.parametrize("method, h", [("langevin", 0.3), ("sgld", 0.05), ("adlala", 0.1)])
def test_samplers_match_exact_predictive_tiny(method: str, h: float) -> None:
    res = _check(method, h, steps=2500, chains=8)
    pb = res["pb"]
    if method == "langevin":
        _assert_matches(res)
    elif method == "sgld":
        # compared with SGLD's own stationary covariance: no bias left
        exact_h = predictive_check(pb, res["stacked"], cov=pb.sgld_covariance(h))
        exact_h["rhat"] = res["rhat"]
        _assert_matches(exact_h)
        # the O(h) inflation x'(C_h - Sigma)x is positive and of order h * lambda / 2
        infl = exact_h["var_ref"] / res["var_ref"] - 1
        lam = torch.linalg.eigvalsh(pb.hessian())
        assert np.all(infl > 0.5 * h * float(lam.min()) * 0.99)
        assert np.all(infl < 1 / (1 - 0.5 * h * float(lam.max())) - 1 + 1e-12)
    else:
        _assert_matches(res, bias_rel=(h * pb.omega_max()) ** 2 / 2)


@pytest.mark.slow
def test_samplers_match_exact_predictive_long() -> None:
    """Long chains: tighter Monte Carlo errors; SGLD's O(h) bias must be visible."""
    lang = _check("langevin", 0.3, steps=10000, chains=16, seed=1, thin=4)
    _assert_matches(lang)
    sgld = _check("sgld", 0.05, steps=10000, chains=16, seed=1, thin=4)
    pb = sgld["pb"]
    # against the posterior SGLD is off by its O(h) inflation, far beyond its MC error ...
    assert np.max(np.abs(sgld["z_var"])) > Z
    # ... and exactly matches its own stationary covariance
    own = predictive_check(pb, sgld["stacked"], cov=pb.sgld_covariance(0.05))
    own["rhat"] = sgld["rhat"]
    _assert_matches(own)
    ad = _check("adlala", 0.1, steps=10000, chains=16, seed=1, thin=4)
    _assert_matches(ad, bias_rel=(0.1 * pb.omega_max()) ** 2 / 2)


@pytest.mark.slow
def test_calibration_samples_vs_final_iterate_vs_deep_ensemble() -> None:
    # N = 10 points, tests at 3x the data's spread: the epistemic variance x'Sigma x (about
    # 9 d s^2 / N = 0.7) dominates the noise s^2 = 0.25, so a predictor that ignores it (the
    # final iterate, one posterior draw; a deep ensemble, whose SGD runs all reach the same
    # MAP of this convex loss) is overconfident: its 90% intervals cover far less than 90%.
    pb = make_linear_problem(n_train=10, n_test=500, test_scale=3.0, seed=0)
    model, col = sample_posterior(pb, "langevin", chains=8, steps=4000, burn_in=500, thin=5,
                                  h=0.2)
    pr = predictive(model, col, pb.X_test, task="regression")
    avg = regression_calibration(pb, pr.mean.squeeze(-1), pr.var.squeeze(-1))
    exact = regression_calibration(pb, *pb.predictive(pb.X_test))
    st = col.stacked()
    fin = point_predictions(pb, {k: v[-1:, :1] for k, v in st.items()})[:, 0, 0]
    final = regression_calibration(pb, fin, torch.zeros_like(fin))
    f_ens = point_predictions(pb, deep_ensemble(pb, 5))[:, :, 0]
    ens = regression_calibration(pb, f_ens.mean(1), f_ens.var(1, unbiased=False))
    # the sample average reproduces the exact predictive: coverage of the same 500 targets
    # differs only where the MC error of the interval ends moves a target across (a few)
    assert abs(avg["coverage"] - exact["coverage"]) < 0.02
    assert abs(avg["nll"] - exact["nll"]) < 0.05
    # 90% intervals: the exact predictive covers 0.9 +- 4 sd of a binomial(500) fraction
    assert abs(exact["coverage"] - 0.9) < 4 * math.sqrt(0.09 / 500)
    for point in (final, ens):
        assert point["coverage"] < 0.75 and point["nll"] > avg["nll"] + 0.5

"""R̂, ESS and autocorrelation time against AR(1) theory and, when installed, ArviZ."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from heatbath.sampling import (
    autocorr_time,
    ess,
    ess_tail,
    mcse_mean,
    rank_normalize,
    rhat,
    summarize,
    trace_plot,
)


def ar1(n_chains: int, n_draws: int, rho: float, seed: int) -> np.ndarray:
    """Stationary AR(1) chains x_t = rho x_{t-1} + sqrt(1 - rho^2) e_t, unit variance."""
    rng = np.random.default_rng(seed)
    x = np.empty((n_chains, n_draws))
    x[:, 0] = rng.normal(size=n_chains)
    e = rng.normal(size=(n_chains, n_draws)) * math.sqrt(1 - rho * rho)
    for t in range(1, n_draws):
        x[:, t] = rho * x[:, t - 1] + e[:, t]
    return x


@pytest.mark.parametrize("rho, n_draws", [(0.5, 2000), (-0.3, 2000), (0.9, 5000)])
def test_ess_matches_ar1_theory(rho: float, n_draws: int) -> None:
    # AR(1): integrated autocorrelation time (1 + rho)/(1 - rho), so the ESS of all draws is
    # M n (1 - rho)/(1 + rho). The estimator's relative standard deviation with a window of W
    # lags is about sqrt(2 (2W + 1) / (M n)) (Sokal); Geyer's truncation stops where rho^W
    # reaches the noise level 1/sqrt(M n), W <= log(sqrt(M n))/log(1/|rho|) + 2. We allow 4 of
    # those standard deviations. Rank normalisation is a monotone map of Gaussian draws to
    # nearly the same normal scores, so bulk ESS has the same target.
    M = 16
    x = ar1(M, n_draws, rho, seed=1)
    N = M * n_draws
    theory = N * (1 - rho) / (1 + rho)
    W = math.log(math.sqrt(N)) / math.log(1 / abs(rho)) + 2
    tol = 4 * math.sqrt(2 * (2 * W + 1) / N)
    assert abs(ess(x) / theory - 1) < tol
    assert abs(ess(x, "mean") / theory - 1) < tol
    assert abs(autocorr_time(x) / ((1 + rho) / (1 - rho)) - 1) < tol
    # Monte Carlo error of the mean: sd sqrt(tau / N)
    assert abs(mcse_mean(x) / math.sqrt((1 + rho) / (1 - rho) / N) - 1) < tol


def test_ess_of_independent_draws_is_their_number() -> None:
    # iid draws: ESS = N up to the estimator's spread (W ~ 2 lags: rel. sd sqrt(10/N))
    x = np.random.default_rng(2).normal(size=(8, 1000))
    tol = 4 * math.sqrt(10 / x.size)
    assert abs(ess(x) / x.size - 1) < tol
    assert abs(ess_tail(x) / x.size - 1) < 2 * tol  # indicators: less efficient, same target


def test_rhat_near_one_for_mixed_chains_and_large_when_not() -> None:
    x = ar1(4, 2000, 0.5, seed=3)
    # stationary chains: R-hat - 1 = O(tau / n) = O(3/1000) for the split halves
    assert rhat(x) < 1.01
    shifted = x.copy()
    shifted[0] += 1.0  # one chain one standard deviation off: B/n ~ 1/4 of W
    assert rhat(shifted) > 1.05
    drift = ar1(1, 2000, 0.5, seed=4) + np.linspace(0, 3, 2000)  # one chain, drifting
    assert rhat(drift) > 1.1  # split halves disagree
    scale = x.copy()
    scale[0] *= 3.0  # same mean, different spread: only the tail (folded) R-hat sees it
    assert rhat(scale) > 1.05


def test_accepts_tensors_and_lists_and_checks_shape() -> None:
    x = ar1(2, 100, 0.2, seed=5)
    assert rhat(torch.from_numpy(x)) == rhat(x) == rhat(x.tolist())
    assert ess(torch.from_numpy(x).float()) == pytest.approx(ess(x.astype(np.float32)))
    with pytest.raises(ValueError, match="chains"):
        rhat(np.zeros(10))
    with pytest.raises(ValueError, match="chains"):
        ess(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        rhat(np.full((2, 10), np.nan))
    with pytest.raises(ValueError, match="method"):
        ess(x, method="fast")


def test_rank_normalize_ties_and_scores() -> None:
    x = np.array([[1.0, 2.0, 2.0, 3.0]])
    z = rank_normalize(x)
    assert z[0, 1] == z[0, 2]  # ties share their rank
    assert z[0, 0] < z[0, 1] < z[0, 3]
    assert z[0, 0] == pytest.approx(-z[0, 3])  # symmetric scores


def test_constant_chains() -> None:
    x = np.ones((2, 50))
    assert rhat(x) == 1.0
    assert ess(x, "mean") == 100.0


def test_against_arviz() -> None:
    az = pytest.importorskip("arviz")
    # the same estimators (Vehtari et al. 2021): agreement to rounding (1e-9 relative)
    for rho, (M, n), shift in [(0.5, (4, 1000), 0.0), (0.9, (8, 57), 2.0), (-0.3, (3, 301), 0.0),
                               (0.0, (2, 40), 0.5)]:
        x = ar1(M, n, rho, seed=6)
        x[0] += shift
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = {"rhat": float(az.rhat(x)), "bulk": float(az.ess(x)),
                   "tail": float(az.ess(x, method="tail")),
                   "mean": float(az.ess(x, method="mean"))}
        assert rhat(x) == pytest.approx(ref["rhat"], rel=1e-9)
        assert ess(x) == pytest.approx(ref["bulk"], rel=1e-9)
        assert ess(x, "tail") == pytest.approx(ref["tail"], rel=1e-9)
        assert ess(x, "mean") == pytest.approx(ref["mean"], rel=1e-9)


def test_summarize_and_trace_plot(tmp_path) -> None:
    x = ar1(3, 200, 0.5, seed=7)
    s = summarize(x)
    assert set(s) == {"mean", "sd", "rhat", "ess_bulk", "ess_tail", "autocorr_time",
                      "mcse_mean"}
    assert s["rhat"] == rhat(x)
    out = tmp_path / "trace.png"
    assert trace_plot({"a": x, "b": x * 2}, steps=list(range(10, 210)), path=out) is None
    assert out.stat().st_size > 1000
    with pytest.raises(ValueError, match="steps"):
        trace_plot(x, steps=[1, 2, 3], path=tmp_path / "bad.png")

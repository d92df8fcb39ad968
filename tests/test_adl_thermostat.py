"""Adaptive Langevin's runaway thermostat: the warning when sigma_A**2 h / 2 >= tau, and the
dynamics behind the bound (docs/theory/adaptive-langevin.md, section 'Thermostat scale')."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from heatbath.optim import AdaptiveLangevin, AdLaLa, Partitioned
from heatbath.optim._thermostat import thermostat_runs_away

MATCH = r"sigma_A\*\*2 \* h / 2 = .* >= tau"


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))


def _ours(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if "Thermostat scale" in str(w.message)]


def _train(model: nn.Module, opt: torch.optim.Optimizer, steps: int) -> None:
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()


@pytest.mark.parametrize("build", ["adl", "adlala", "partitioned", "add_param_group"])
def test_warns_at_construction_naming_group_values_and_bound(build):
    model = _model()
    ps = list(model.parameters())
    # h = 0.25, sigma_A = 0.05: sigma_A**2 h / 2 = 3.125e-4 >= tau = 1e-4
    with pytest.warns(RuntimeWarning, match=MATCH) as rec:
        if build == "adl":
            AdaptiveLangevin(ps, h=0.25, tau=1e-4, sigma_A=0.05, epsilon=0.05)
            index = "0"
        elif build == "adlala":
            AdLaLa(model, sigma_A=0.05)  # the first layer is the AdL group
            index = "0 (0.weight, 0.bias)"
        elif build == "partitioned":
            Partitioned([{"params": ps[:2], "method": "baoab"},
                         {"params": ps[2:], "method": "adl", "sigma_A": 0.05, "epsilon": 0.05}],
                        h=0.25, gamma=1.0, tau=1e-4)
            index = "1"
        else:
            opt = Partitioned(ps[:2], h=0.25, gamma=1.0, tau=1e-4)
            opt.add_param_group({"params": ps[2:], "method": "adl", "sigma_A": 0.05,
                                 "epsilon": 0.05})
            index = "1"
    (msg,) = _ours(rec.list)
    assert f"group {index}:" in msg
    assert "= 0.0003125 >= tau = 0.0001" in msg and "sigma_A = 0.05, h = 0.25" in msg
    # the bound, both ways: sigma_A < sqrt(2 tau / h), h < 2 tau / sigma_A**2
    assert f"sigma_A < {math.sqrt(2e-4 / 0.25):.4g}" in msg and "h < 0.08" in msg
    assert rec.list[0].filename == __file__  # points at the caller


@pytest.mark.parametrize("kw", [
    {},  # AdLaLa's defaults: 0.01**2 * 0.25 / 2 = 1.25e-5 < 1e-4
    {"sigma_A": 0.0282},  # just below the bound sqrt(2e-4 / 0.25) = 0.028284...: 9.94e-5
    {"sigma_A": 0.05, "epsilon": 0.0},  # xi frozen: no thermostat to run away
    {"sigma_A": 0.0, "tau1": 0.0},  # no noise, tau = 0
    {"sigma_A": 0.05, "h": 0.0},  # h = 0: no noise enters
])
def test_safe_settings_do_not_warn(kw):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        model = _model()
        opt = AdLaLa(model, **kw)
        _train(model, opt, 2)
    assert not _ours(rec)
    assert thermostat_runs_away(0.25, 0.02828428, 1e-4, 0.05)  # the bound's other side
    assert not thermostat_runs_away(0.25, 0.0282842, 1e-4, 0.05)


def test_a_schedule_that_crosses_the_bound_warns_once_per_crossing():
    model = _model()
    opt = AdaptiveLangevin(model.parameters(), h=0.1, tau=1e-4, sigma_A=0.02, epsilon=0.05)
    # bound at h = 2 tau / sigma_A**2 = 0.5; the scheduler multiplies lr by 1, 3, 6, 8, 2, 7
    factors = [1.0, 3.0, 6.0, 8.0, 2.0, 7.0]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: factors[min(i, 5)])
    warned = []
    for _ in range(6):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            _train(model, opt, 1)
        warned.append(len(_ours(rec)))
        sched.step()
    # h = 0.1, 0.3 safe; 0.6 crosses (warns); 0.8 still beyond (silent); 0.2 back; 0.7 again
    assert warned == [0, 0, 1, 0, 0, 1]


def _xi_run(ratio: float, steps: int = 2000) -> list[float]:
    """AdL on a flat direction (zero gradient), 2,000 entries, one xi; sigma_A**2 h / 2 =
    ratio * tau. Returns xi every 10 steps."""
    h, tau, eps = 0.1, 0.01, 0.05  # h*eps*n*tau = 0.1: xi's response is well resolved
    sigma_a = math.sqrt(2.0 * ratio * tau / h)
    p = nn.Parameter(torch.zeros(2000, dtype=torch.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = AdaptiveLangevin([p], h=h, tau=tau, sigma_A=sigma_a, epsilon=eps, seed=0)
    p.grad = torch.zeros_like(p)
    xs = []
    for i in range(steps):
        opt.step()
        if i % 10 == 9:
            xs.append(float(opt.diagnostics()[0]["xi"][0]))
    return xs


def test_below_the_bound_xi_settles_at_the_discrete_equilibrium():
    # s = sigma_A**2 h / 2 = tau / 2. Without forces the step's C D E D C gives E the variance
    # m = q v + s (q = exp(-xi h)) and v = q (m + s); m = tau at equilibrium, so
    # xi = ln((tau + s)/(tau - s)) / (2h) = 5.493 (the continuous sigma_A**2/(2 tau) is 5.0).
    # Measured: xi's sd 0.03, its mean over the last 1,000 steps within 0.2 % of the formula
    # (which holds xi fixed within a step); 1 % tolerance still separates it from 5.0 (9 %).
    h, tau = 0.1, 0.01
    s = 0.5 * tau
    xs = _xi_run(0.5)
    late = xs[100:]
    mean = sum(late) / len(late)
    assert mean == pytest.approx(math.log((tau + s) / (tau - s)) / (2 * h), rel=0.01)
    assert abs(late[-1] - late[0]) < 0.5  # settled (a runaway gains 0.05 per step: 50 here)


def test_above_the_bound_xi_grows_at_the_predicted_rate():
    # s = 1.5 tau: E sees at least s per entry whatever xi is; once exp(-xi h) is negligible
    # (xi h > 5 after ~1,000 steps) the drive is n (s - tau) per step, so xi grows by
    # h eps n (s - tau) = 0.05 per step. Measured 0.7 % from it over steps 1,000-2,000
    # (the remaining exp(-xi h) term and the chi-square noise of p^T p); tolerance 2 %.
    xs = _xi_run(1.5)
    slope = (xs[-1] - xs[99]) / 1000
    assert slope == pytest.approx(0.1 * 0.05 * 2000 * 0.5 * 0.01, rel=0.02)

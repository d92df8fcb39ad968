"""noise="philox": counter-based noise inside the optimizers (fused compiled step, eager fill)."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from heatbath.optim import SGLD, AdaptiveLangevin, AdLaLa, Langevin

from ._helpers import shlp, toy_spiral, train


@pytest.fixture
def eager_philox(monkeypatch):
    # The eager fallback computes the very same numbers as the compiled kernel (tested in
    # test_philox.py); forcing it keeps these tests free of compile time.
    from heatbath.optim import _philox

    monkeypatch.setenv("HEATBATH_COMPILE", "0")
    monkeypatch.setattr(_philox, "_COMPILED", {})


def _flat(m):
    return torch.cat([p.detach().reshape(-1) for p in m.parameters()])


MAKERS = {
    "langevin": lambda m, **kw: Langevin(m.parameters(), 0.2, 1.0, 1e-3, noise="philox", **kw),
    "sgld": lambda m, **kw: SGLD(m.parameters(), 0.1, 0.05, noise="philox", **kw),
    "adl": lambda m, **kw: AdaptiveLangevin(m.parameters(), 0.2, 1e-3, 0.05, 0.1,
                                            noise="philox", **kw),
    "adlala": lambda m, **kw: AdLaLa(m, h=0.25, gamma=0.5, sigma_A=0.05, noise="philox", **kw),
}


@pytest.mark.parametrize("name", MAKERS)
def test_philox_fused_equals_reference_and_resumes(name, eager_philox):
    X, y = toy_spiral(200)
    a, b = shlp(seed=1), shlp(seed=1)
    oa, ob = MAKERS[name](a, seed=3), MAKERS[name](b, seed=3, foreach=False)
    ta = train(a, oa, X, y, 10, record=True)
    tb = train(b, ob, X, y, 10, record=True)
    for u, v in zip(ta, tb):  # fused c*p + d*R vs (d*R) + c*p: equal up to rounding
        torch.testing.assert_close(u, v, rtol=1e-6, atol=1e-7)
    buf = io.BytesIO()
    torch.save({"m": a.state_dict(), "o": oa.state_dict()}, buf)
    ref = train(a, oa, X, y, 5, seed=4, record=True)
    buf.seek(0)
    ck = torch.load(buf, weights_only=False)
    c = shlp(seed=9)
    oc = MAKERS[name](c, seed=99)
    c.load_state_dict(ck["m"])
    oc.load_state_dict(ck["o"])
    got = train(c, oc, X, y, 5, seed=4, record=True)
    for u, v in zip(ref, got):
        assert torch.equal(u, v)


def test_philox_noise_has_the_right_temperature(eager_philox):
    # BAOAB on U = ½|θ|² samples Var θ = τ exactly; n independent coordinates give a snapshot
    # mean of θ²/τ with sd √(2/n): 4 sd tolerance, as in test_optim_sampling.py.
    n, tau = 20_000, 0.3
    torch.manual_seed(0)
    theta = torch.nn.Parameter(torch.zeros(n))
    opt = Langevin([theta], 0.5, 1.0, tau, noise="philox", seed=5)
    v = []
    for i in range(300):
        opt.zero_grad()
        (0.5 * (theta**2).sum()).backward()
        opt.step()
        if i >= 100 and i % 5 == 0:
            v.append(float((theta.detach() ** 2).mean()))
    assert abs(np.mean(v) / tau - 1) < 4 * math.sqrt(2 / n)


@pytest.mark.slow
def test_philox_compiled_is_thread_count_independent():
    X, y = toy_spiral(200)
    out = []
    old = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            m = shlp(seed=1)
            train(m, MAKERS["langevin"](m, seed=3), X, y, 10)
            out.append(_flat(m))
    finally:
        torch.set_num_threads(old)
    assert torch.equal(out[0], out[1])

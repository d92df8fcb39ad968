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


# ------------------------------------------------------------------ tensor-list fused steps
def _list_case(monkeypatch, n_small=3):
    """Tensors of mixed sizes, the 'big' ones split into several pieces (patched sizes)."""
    from heatbath.optim import _philox as P

    monkeypatch.setattr(P, "SMALL_TENSOR", 40)
    monkeypatch.setattr(P, "_STEP_CHUNK", 32)
    shapes = [torch.Size(s) for s in [(7, 11), (5,), (3, 3), (101,), (2, 2, 2)]]
    keys = [11, 2**40 + 3, 5, 2**62 + 17, 9]
    offsets = [0, 3, 130, 6, 1]
    return P, shapes, keys, offsets


def _rand_like_list(shapes, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return [scale * torch.randn(s, generator=g) for s in shapes]


@pytest.mark.parametrize("method", ["sgld", "baoab"])
def test_list_step_equals_per_tensor_reference_bitwise(monkeypatch, method):
    P, shapes, keys, offsets = _list_case(monkeypatch)
    plan = P.ListNoise(shapes, keys, offsets, torch.float32, torch.device("cpu"), compiled=False)
    assert plan.big and plan.small  # both paths exercised
    th = _rand_like_list(shapes, 0)
    mo = _rand_like_list(shapes, 1)
    ref_th = [t.clone() for t in th]
    ref_mo = [m.clone() for m in mo]
    for step in range(0, 2 * plan.cache_steps + 3, max(1, plan.cache_steps // 2)):
        gr = _rand_like_list(shapes, 100 + step, 1e-2)
        assert math.isfinite(float(plan.prepare(gr, step)))
        if method == "sgld":
            plan.sgld(th, gr, 0.1, 0.03)
            for t, g, k, o in zip(ref_th, gr, keys, offsets):
                P.sgld_philox_step(t.view(-1), g.reshape(-1), 0.1, 0.03, k, step, o)
        else:
            plan.baoab(th, mo, gr, -0.1, 0.05, 0.9, 0.2)
            for t, m, g, k, o in zip(ref_th, ref_mo, gr, keys, offsets):
                P.baoab_philox_step(t.view(-1), m.view(-1), g.reshape(-1), -0.1, 0.05, 0.9, 0.2,
                                    k, step, o)
        for a, b in zip(th + mo, ref_th + ref_mo):
            assert torch.equal(a, b)


def test_list_prepare_flags_non_finite_gradients(monkeypatch):
    P, shapes, keys, offsets = _list_case(monkeypatch)
    plan = P.ListNoise(shapes, keys, offsets, torch.float32, torch.device("cpu"), compiled=False)
    for i in (0, 1):  # a big tensor, a small one
        for bad in (math.nan, math.inf, -math.inf):
            gr = _rand_like_list(shapes, 3)
            gr[i].view(-1)[2] = bad
            assert not math.isfinite(float(plan.prepare(gr, 4)))
            assert not math.isfinite(float(plan.prepare(gr, 4, noise=False)))


def _adl_reference(th, mo, gr, xi, keys, offsets, step, kick, h, sigma_a, eps, tau):
    """Adaptive Langevin with one N-normal draw, transcribed tensor by tensor (one ξ each)."""
    from heatbath.optim import _philox as P

    half = 0.5 * h
    cz = 0.5 * sigma_a * math.sqrt(h)
    for k, (t, m, g) in enumerate(zip(th, mo, gr)):
        r = P.philox_normal(t.numel(), keys[k], step, offsets[k]).view(t.shape)
        m += kick * g
        t += half * m
        m *= math.exp(-float(xi[k]) * half)
        a = m + cz * r
        a2 = float((a.double() ** 2).sum())
        m += sigma_a * math.sqrt(h) * r
        s = P.adl_kinetic_draw(keys[k], step, 0, t.numel(), a2, cz)
        xi[k] += h * eps * (s - t.numel() * tau)
        m *= math.exp(-float(xi[k]) * half)
        t += half * m


def test_list_adl_equals_transcription(monkeypatch):
    # The list path rounds each product as written in float32; the transcription uses Python
    # floats for the factors and float64 for |a|^2, so they agree to float32 rounding (1e-5 over
    # five steps of O(1) values), not bitwise.
    P, shapes, keys, offsets = _list_case(monkeypatch)
    plan = P.ListNoise(shapes, keys, offsets, torch.float32, torch.device("cpu"), compiled=False)
    th, mo = _rand_like_list(shapes, 0), _rand_like_list(shapes, 1, 0.1)
    ref_th, ref_mo = [t.clone() for t in th], [m.clone() for m in mo]
    xi = torch.full((1, len(shapes)), 0.1)
    ref_xi = [0.1] * len(shapes)
    h, sigma_a, eps, tau = 0.1, 0.3, 0.05, 1e-2
    cz = 0.5 * sigma_a * math.sqrt(h)
    for step in range(5):
        gr = _rand_like_list(shapes, 50 + step, 1e-2)
        plan.prepare(gr, step)
        f1 = [f.unsqueeze(1) for f in torch.exp(xi * -0.5 * h).unbind(1)]
        kin = plan.adl_first(th, mo, gr, -h, 0.5 * h, f1, sigma_a, h)
        for k, n in enumerate(plan.numels):
            s = P.adl_kinetic_draw(keys[k], step, 0, n, float(kin[k][0]), cz)
            xi[0, k] += h * eps * (s - n * tau)
        f2 = [f.unsqueeze(1) for f in torch.exp(xi * -0.5 * h).unbind(1)]
        plan.adl_second(th, mo, 0.5 * h, f2)
        _adl_reference(ref_th, ref_mo, gr, ref_xi, keys, offsets, step, -h, h, sigma_a, eps,
                       tau)
    for a, b in zip(th + mo, ref_th + ref_mo):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(xi[0].double(), torch.tensor(ref_xi, dtype=torch.float64),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n", [1, 2, 3, 50, 10_000])
def test_adl_kinetic_draw_has_the_two_draw_law(n):
    # |a + cZ|^2 with Z ~ N(0, I_n): mean |a|^2 + n c^2, variance 4 c^2 |a|^2 + 2 n c^4
    # (noncentral chi-square). 4000 draws (steps): the sample mean is within 4 standard errors,
    # the sample variance within 4 of its standard errors (relative sd of a variance estimate
    # <= sqrt((kurtosis - 1)/m) with kurtosis <= 15 for these laws: 0.06 at m = 4000 -> 25 %).
    from heatbath.optim import _philox as P

    m, c = 4000, 0.3
    a2 = 0.7 * n
    x = np.array([P.adl_kinetic_draw(12345, t, 0, n, a2, c) for t in range(m)])
    mean = a2 + n * c * c
    var = 4 * c * c * a2 + 2 * n * c**4
    assert abs(x.mean() - mean) < 4 * math.sqrt(var / m)
    assert abs(x.var() / var - 1) < 0.25
    # pure function of (key, step, replica): reproducible, and replicas/keys are independent
    assert P.adl_kinetic_draw(12345, 7, 0, n, a2, c) == x[7]
    assert P.adl_kinetic_draw(12345, 7, 1, n, a2, c) != x[7]
    assert P.adl_kinetic_draw(54321, 7, 0, n, a2, c) != x[7]
    assert P.adl_kinetic_draw(1, 2, 0, n, a2, 0.0) == a2


# ------------------------------------------------------------- backend choice and fused check
def test_auto_noise_is_philox_at_every_size_with_the_native_kernels(monkeypatch):
    from heatbath.optim import _core, _native

    if not _native.available():
        pytest.skip("no C compiler: the native kernels are not built here")
    small = {"noise": "auto", "params": [torch.zeros(3)]}
    assert _core._noise_kind(small, False) == "philox"
    # float64 and the rule below: the native kernels are float32 only
    assert _core._noise_kind({"noise": "auto", "params": [torch.zeros(3, dtype=torch.float64)]},
                             False) == "eager"
    monkeypatch.setenv("HEATBATH_NATIVE", "0")
    assert _core._noise_kind(small, False) == "eager"


def test_auto_noise_picks_philox_for_large_groups_and_shards(monkeypatch):
    from heatbath.optim import _core

    monkeypatch.delenv("HEATBATH_COMPILE", raising=False)
    monkeypatch.setenv("HEATBATH_NATIVE", "0")  # the rule without the native kernels
    monkeypatch.setattr(_core, "AUTO_PHILOX_MIN", 100)
    big = {"noise": "auto", "params": [torch.zeros(60), torch.zeros(40)]}
    small = {"noise": "auto", "params": [torch.zeros(99)]}
    assert _core._noise_kind(big, False) == "philox"
    assert _core._noise_kind(small, False) == "eager"
    assert _core._noise_kind(small, True) == "philox"  # shards always count by global index
    monkeypatch.setenv("HEATBATH_COMPILE", "0")  # no compiler: eager noise is faster
    assert _core._noise_kind(big, False) == "eager"
    with pytest.raises(ValueError, match="noise='eager'"):
        _core._noise_kind({"noise": "eager", "params": []}, True)
    assert Langevin([torch.nn.Parameter(torch.zeros(3))], 0.1, 1.0, 0.0).param_groups[0][
        "noise"] == "auto"


@pytest.mark.parametrize("name", ["langevin", "sgld", "adl"])
def test_fused_check_refuses_non_finite_and_changes_nothing(monkeypatch, eager_philox, name):
    # tensors above the patched SMALL_TENSOR take the fused noise + check kernel
    from heatbath.optim import NonFiniteGradientError
    from heatbath.optim import _philox as P

    monkeypatch.setattr(P, "SMALL_TENSOR", 30)
    m = shlp(seed=1)
    opt = MAKERS[name](m, seed=3)
    X, y = toy_spiral(50)
    train(m, opt, X, y, 2)
    before = [p.detach().clone() for p in m.parameters()]
    state = {k: v.clone() for p in m.parameters() for k, v in opt.state[p].items()
             if isinstance(v, torch.Tensor)}
    for p in m.parameters():
        p.grad = torch.ones_like(p)
    next(m.parameters()).grad.view(-1)[5] = math.nan
    with pytest.raises(NonFiniteGradientError):
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters()))
    after = {k: v for p in m.parameters() for k, v in opt.state[p].items()
             if isinstance(v, torch.Tensor)}
    assert all(torch.equal(state[k], after[k]) for k in state)
    # and the next finite step runs
    for p in m.parameters():
        p.grad = torch.full_like(p, 1e-3)
    opt.step()

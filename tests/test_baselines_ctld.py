"""CTLD's baselines (docs/ctld.md): AnnealSGD and Santa-E."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from heatbath.optim.anneal_sgd import AnnealSGD
from heatbath.optim.santa import Santa


def test_anneal_sgd_noise_schedule_is_exact():
    """With zero gradient, lr = 1 and no momentum the step is minus the injected noise, which
    must equal sqrt(eta_n/(1+t)^0.55) times the generator's draw at t = 0, 10, 1000."""
    eta_n = 0.3
    p = torch.nn.Parameter(torch.zeros(50, dtype=torch.float64))
    opt = AnnealSGD([p], lr=1.0, momentum=0.0, noise_eta=eta_n,
                    generator=torch.Generator().manual_seed(5))
    twin = torch.Generator().manual_seed(5)
    for t in range(1001):
        before = p.detach().clone()
        p.grad = torch.zeros_like(p)
        opt.step()
        eps = torch.randn(50, generator=twin, dtype=torch.float64)
        if t in (0, 10, 1000):
            noise = opt.state[p]["momentum_buffer"]  # mu = 0: the buffer is the noisy gradient
            assert torch.allclose(before - p.detach(), noise, rtol=1e-9, atol=1e-12)
            std = math.sqrt(eta_n / (1 + t) ** 0.55)
            assert torch.allclose(noise, std * eps, rtol=1e-14, atol=0)
            assert opt.noise_variance(t) == pytest.approx(eta_n / (1 + t) ** 0.55, rel=1e-15)


def test_anneal_sgd_without_noise_is_sgd_momentum():
    torch.manual_seed(0)
    a = torch.nn.Linear(4, 3)
    b = copy.deepcopy(a)
    opt = AnnealSGD(a.parameters(), lr=0.1, momentum=0.9, noise_eta=0.0, weight_decay=1e-3)
    sgd = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    x = torch.randn(8, 4)
    for _ in range(10):
        for m, o in ((a, opt), (b, sgd)):
            o.zero_grad()
            m(x).pow(2).mean().backward()
            o.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=1e-6, atol=1e-7)


def _santa_reference(theta0, grad_fn, steps, *, eta, n, burnin, sig, lam, c, anne, seed,
                     rho=0.0):
    """Float64 transcription of Santa's Euler version (santa.py docstring), element-wise;
    rho > 0 floors sqrt(v) at rho times its mean (heatbath's preconditioner guard)."""
    gen = torch.Generator().manual_seed(seed)
    theta = theta0.clone()
    u = math.sqrt(eta) * torch.randn(theta.shape, generator=gen, dtype=torch.float64)
    a = torch.full_like(theta, math.sqrt(eta) * c)
    v = torch.zeros_like(theta)
    g_prev = None
    out = []
    for t in range(1, steps + 1):
        f = n * grad_fn(theta)
        v = sig * v + (1 - sig) / n ** 2 * f * f
        scale = torch.sqrt(v)
        scale = torch.maximum(scale, rho * scale.mean())
        g = 1.0 / torch.sqrt(lam + scale)
        if g_prev is None:
            g_prev = g.clone()
        beta = t ** anne
        if t <= burnin:
            a = a + u * u - eta / beta
            zeta = torch.randn(theta.shape, generator=gen, dtype=torch.float64)
            u_new = (eta / beta) * (1 - g_prev / g) / u + torch.sqrt(2 * eta * g_prev / beta) * zeta
        else:
            u_new = torch.zeros_like(theta)
        u_new = u_new + (1 - a) * u - eta * g * f
        theta = theta + g * u_new
        g_prev, u = g, u_new
        out.append((theta.clone(), a.clone()))
    return out


@pytest.mark.parametrize("rho", [0.0, 0.1, 0.5])
def test_santa_matches_transcription_and_stops_exploring(rho):
    """rho = 0: the paper's formula; rho > 0: with the guard. The target's entries differ in
    scale so that the floor is active for some entries when rho = 0.5."""
    n, eta = 100, 1e-3
    target = torch.tensor([-1.0, -0.3, -0.05, 0.0, 0.02, 0.5, 1.0], dtype=torch.float64)

    def grad_fn(th):  # f = mean over "data" of 0.5 |theta - target|^2 + a quartic term
        return (th - target) + 0.1 * th ** 3

    hp = dict(eta=eta, n=n, burnin=10, sig=0.95, lam=1e-8, c=5.0, anne=0.5, seed=3, rho=rho)
    theta0 = torch.tensor([0.3, 0.3, 0.02, 0.01, 0.03, 0.3, 0.3], dtype=torch.float64)
    ref = _santa_reference(theta0.clone(), grad_fn, 20, **hp)
    p = torch.nn.Parameter(theta0.clone())
    opt = Santa([p], lr=eta, num_data=n, burnin=10, lambda_rel=rho,
                generator=torch.Generator().manual_seed(3))
    for t in range(20):
        p.grad = grad_fn(p.detach())
        gen_before = opt.generators[0].get_state().clone()
        a_before = opt.state[p]["a"].clone()
        opt.step()
        th_r, a_r = ref[t]
        # 1e-12 relative to the vector's scale: the (1 - g_{t-1}/g_t)/u_{t-1} term amplifies
        # round-off in single entries by ~1e3, so entry-wise relative errors reach ~1e-13
        assert (p.detach() - th_r).abs().max() <= 1e-12 * th_r.abs().max()
        assert (opt.state[p]["a"] - a_r).abs().max() <= 1e-12 * a_r.abs().max()
        if t >= 10:  # refinement: no noise drawn, alpha constant
            assert torch.equal(opt.generators[0].get_state(), gen_before)
            assert torch.equal(opt.state[p]["a"], a_before)
        else:
            assert not torch.equal(opt.generators[0].get_state(), gen_before)


def test_santa_guard_keeps_zero_gradient_entries_finite():
    """An input feature that is 0 in every example gives its weights an exactly zero gradient.
    The paper's preconditioner then is g = lambda^-1/2 = 1e4 and the exploration noise moves
    those weights by ~g^1.5 sqrt(2 eta) per step: with lambda_rel=0 (the code before the guard)
    this run is NaN by step 10. With the guard every entry stays finite and the dead entries'
    g equals the cap (lambda + rho * mean sqrt(v))^-1/2 exactly, the largest g in the tensor."""
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3).double()
    x = torch.randn(64, 6, dtype=torch.float64)
    x[:, 0] = 0.0
    y = torch.randn(64, 3, dtype=torch.float64)
    rho = 0.1
    opt = Santa(model.parameters(), lr=1e-3 / 64, num_data=64, burnin=200, seed=1,
                lambda_rel=rho)
    for _ in range(400):
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
        w = model.weight
        assert torch.isfinite(w).all() and torch.isfinite(opt.state[w]["u"]).all()
    st = opt.state[model.weight]
    sv = st["v"].sqrt()
    cap = 1.0 / torch.sqrt(1e-8 + rho * sv.mean())
    assert torch.all(sv[:, 0] == 0)
    assert torch.allclose(st["g"][:, 0], cap.expand(3), rtol=1e-12, atol=0)
    assert torch.all(st["g"] <= cap * (1 + 1e-12))


@pytest.mark.parametrize("cls", ["anneal", "santa"])
def test_baseline_resume_is_bit_identical(cls):
    def make():
        torch.manual_seed(1)
        model = torch.nn.Linear(3, 2)
        if cls == "anneal":
            opt = AnnealSGD(model.parameters(), lr=0.05, momentum=0.8, noise_eta=0.3, seed=2)
        else:
            opt = Santa(model.parameters(), lr=1e-4, num_data=100, burnin=15, seed=2)
        return model, opt

    x = torch.randn(16, 3)

    def run(model, opt, k):
        for _ in range(k):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()

    model, opt = make()
    run(model, opt, 30)
    final = [p.detach().clone() for p in model.parameters()]
    model, opt = make()
    run(model, opt, 12)
    ckpt = copy.deepcopy({"m": model.state_dict(), "o": opt.state_dict()})
    model, opt = make()
    run(model, opt, 2)
    model.load_state_dict(ckpt["m"])
    opt.load_state_dict(ckpt["o"])
    run(model, opt, 18)
    for p, q in zip(model.parameters(), final, strict=True):
        assert torch.equal(p, q)


def test_baseline_validation():
    p = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="noise_eta"):
        AnnealSGD(p, lr=0.1, noise_eta=-1.0)
    with pytest.raises(ValueError, match="momentum"):
        AnnealSGD(p, lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="burnin"):
        Santa(p, lr=0.1, num_data=10, burnin=-1)
    with pytest.raises(ValueError, match="sigma"):
        Santa(p, lr=0.1, num_data=10, burnin=1, sigma=1.0)
    with pytest.raises(ValueError, match="lambda_rel"):
        Santa(p, lr=0.1, num_data=10, burnin=1, lambda_rel=-0.1)

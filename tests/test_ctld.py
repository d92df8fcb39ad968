"""CTLD: deterministic properties of both temperings (docs/ctld.md, "Tests").

The statistical properties are in ``test_ctld_stats.py``.
"""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch

from heatbath.optim.ctld import CTLD, ctld_defaults, g_scale, g_scale_prime

#: the optimizer exactly as Algorithm 1 prints it; every test here runs against it
PaperCTLD = functools.partial(CTLD, tempering="paper")

D, DP, S = 0.4, 1.5, 0.85


# --------------------------------------------------------------------------- helpers
def _problem(dtype: torch.dtype = torch.float64, seed: int = 0):
    """A small regression MLP and a deterministic minibatch stream (batch = step index)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 3, generator=gen, dtype=dtype)
    y = torch.sin(x.sum(1, keepdim=True))
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1))
    model = model.to(dtype)

    def batch(t: int):
        idx = torch.arange(16) + (16 * t) % 64
        return x[idx], y[idx]

    return model, batch


def _loss(model, xb, yb):
    return ((model(xb) - yb) ** 2).mean()


def _run(model, opt, batch, steps: int, start: int = 0, trace=None):
    for t in range(start, start + steps):
        xb, yb = batch(t)
        opt.zero_grad()
        loss = _loss(model, xb, yb)
        loss.backward()
        if isinstance(opt, CTLD):
            opt.step(loss=loss)
        else:
            opt.step()
        if trace is not None:
            trace.append((torch.cat([p.detach().flatten().clone() for p in model.parameters()]),
                          opt.alpha, opt.r_alpha))


# --------------------------------------------------------------------------- property 1
def test_g_shape_and_derivative():
    a = torch.linspace(-2.5, 2.5, 20001, dtype=torch.float64)
    g = g_scale(a, D, DP, S)
    assert torch.all(g[a.abs() <= D] == 1.0)
    assert torch.allclose(g[a.abs() >= DP], torch.full_like(g[a.abs() >= DP], 1 - S), atol=1e-15)
    assert torch.equal(g, g_scale(-a, D, DP, S))  # even
    pos = a >= 0
    assert torch.all(torch.diff(g[pos]) <= 0)  # non-increasing in |alpha|
    gp = g_scale_prime(a, D, DP, S)
    assert abs(gp.abs().max().item() - 1.5 * S / (DP - D)) < 1e-6
    for edge in (D, -D, DP, -DP):
        assert g_scale_prime(torch.tensor(edge, dtype=torch.float64), D, DP, S).item() == 0.0
    # closed form vs autograd at points off the kinks
    pts = torch.tensor([-1.4, -0.9, -0.41, -0.2, 0.1, 0.45, 0.8, 1.2, 1.49, 2.0],
                       dtype=torch.float64, requires_grad=True)
    (auto,) = torch.autograd.grad(g_scale(pts, D, DP, S).sum(), pts)
    assert torch.allclose(auto, g_scale_prime(pts.detach(), D, DP, S), rtol=0, atol=1e-12)
    # C^1: derivative continuous at the joins (one-sided difference quotients agree)
    for edge in (D, DP):
        e = torch.tensor([edge - 1e-7, edge + 1e-7], dtype=torch.float64)
        assert g_scale_prime(e, D, DP, S).abs().max() < 1e-5


def test_paper_defaults_are_the_documented_table():
    d = ctld_defaults("paper")
    assert (d["delta"], d["delta_prime"], d["span"]) == (0.4, 1.5, 0.85)
    assert (d["hill_height"], d["hill_width"], d["num_bins"]) == (20.0, 0.04, 300)
    assert d["confine_force"] == "auto" and d["confinement"] == "linear"


# --------------------------------------------------------------------------- property 2
def _reference(model, batch, steps, *, lr, mom, n, tc, wd, seed, delta, dp, span, w, sig, k,
               conf, big_c):
    """Float64 transcription of Algorithm 1 in the paper's units, mapped to heatbath's by
    docs/ctld.md, "Algorithm 1 as heatbath runs it"."""
    eta = math.sqrt(lr / n)
    gamma = (1 - mom) / eta
    eta_a, gamma_a = eta, gamma  # the paper shares eta and gamma with alpha
    gen = torch.Generator().manual_seed(seed)
    params = [p.detach().clone() for p in model.parameters()]
    # r0 ~ N(0, T_c I) written through b0 = sqrt(T_c/(lr N)) xi and r = -sqrt(lr N) b
    r = [-math.sqrt(lr * n) * math.sqrt(tc / (lr * n)) *
         torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
    r_a = math.sqrt(tc) * torch.randn((), generator=gen, dtype=torch.float64).item()
    alpha = 0.0
    nodes = [-dp + j * 2 * dp / k for j in range(k + 1)]
    vb = [0.0] * (k + 1)

    def g(a):
        z = min(1.0, max(0.0, (abs(a) - delta) / (dp - delta)))
        return 1 - span * (3 * z * z - 2 * z ** 3)

    def gprime(a):
        z = min(1.0, max(0.0, (abs(a) - delta) / (dp - delta)))
        return -math.copysign(1, a) * 6 * span * z * (1 - z) / (dp - delta)

    trace = []
    ref_model = copy.deepcopy(model)
    for t in range(steps):
        with torch.no_grad():
            for q, p in zip(ref_model.parameters(), params, strict=True):
                q.copy_(p)
        ref_model.zero_grad()
        xb, yb = batch(t)
        ell = _loss(ref_model, xb, yb)
        ell.backward()
        u_tilde = n * (ell.item() + 0.5 * wd * sum((p ** 2).sum().item() for p in params))
        grads = [n * (q.grad + wd * p) for q, p in zip(ref_model.parameters(), params,
                                                        strict=True)]
        eps = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
        r = [(1 - eta * gamma) * ri - eta * gi + math.sqrt(2 * eta * gamma * tc / g(alpha)) * e
             for ri, gi, e in zip(r, grads, eps, strict=True)]
        alpha = alpha + eta_a * r_a
        if conf == "reflect" and abs(alpha) > dp:
            alpha = math.copysign(1, alpha) * (2 * dp - abs(alpha))
            r_a = -r_a
        vb = [v + w * math.exp(-(a - alpha) ** 2 / (2 * sig ** 2)) for v, a in zip(vb, nodes,
                                                                                    strict=True)]
        h_tot = u_tilde + 0.5 * sum((ri ** 2).sum().item() for ri in r)
        kstar = min(k - 1, max(0, math.floor((alpha + dp) / (2 * dp / k))))
        db = (vb[kstar + 1] - vb[kstar]) / (2 * dp / k) if abs(alpha) <= dp else 0.0
        cc = 4 * 1.5 * span / (dp - delta) * abs(h_tot) if big_c == "auto" else big_c
        phip = 0.0
        if abs(alpha) > dp:
            phip = {"linear": math.copysign(cc, alpha),
                    "quadratic": math.copysign(cc * (abs(alpha) - dp), alpha),
                    "reflect": 0.0}[conf]
        h = -gprime(alpha) * h_tot - phip - db
        e_a = torch.randn((), generator=gen, dtype=torch.float64).item()
        r_a = (1 - eta_a * gamma_a) * r_a + eta_a * h + math.sqrt(2 * eta_a * gamma_a * tc) * e_a
        params = [p + eta * ri for p, ri in zip(params, r, strict=True)]
        trace.append((torch.cat([p.flatten() for p in params]), alpha, r_a, list(vb)))
    return trace


@pytest.mark.parametrize("conf,big_c", [("linear", "auto"), ("quadratic", 3.0e2),
                                        ("reflect", "auto")])
def test_transcription_of_algorithm_1(conf, big_c):
    model, batch = _problem()
    hp = dict(lr=0.02, mom=0.8, n=50, tc=2.0, wd=1e-3, seed=3, delta=0.2, dp=0.6, span=0.7,
              w=0.5, sig=0.05, k=60, conf=conf, big_c=big_c)
    ref = _reference(model, batch, 50, **hp)
    opt = PaperCTLD(model.parameters(), lr=hp["lr"], momentum=hp["mom"], num_data=hp["n"],
               sampling_steps=1000, temperature=hp["tc"], weight_decay=hp["wd"], seed=hp["seed"],
               delta=hp["delta"], delta_prime=hp["dp"], span=hp["span"], hill_height=hp["w"],
               hill_width=hp["sig"], num_bins=hp["k"], confinement=conf, confine_force=big_c)
    got = []
    visited = set()
    for t in range(50):
        _run(model, opt, batch, 1, start=t, trace=got)
        a = abs(opt.alpha)
        visited.add("cold" if a <= 0.2 else "ramp" if a < 0.6 else "out")
    assert {"cold", "ramp"} <= visited  # the run exercises g' != 0 and the flat region
    # 1e-12 relative to the scale of each trajectory (alpha and r_alpha cross zero, so a
    # pointwise relative error is meaningless there)
    a_scale = max(abs(x[1]) for x in ref)
    r_scale = max(abs(x[2]) for x in ref)
    for (th, al, ra), (th_r, al_r, ra_r, _) in zip(got, ref, strict=True):
        assert (th - th_r).abs().max() <= 1e-12 * th_r.abs().max()
        assert abs(al - al_r) <= 1e-12 * a_scale
        assert abs(ra - ra_r) <= 1e-12 * r_scale
    assert torch.allclose(opt.bias, torch.tensor(ref[-1][3], dtype=torch.float64), rtol=1e-12)


# --------------------------------------------------------------------------- property 3
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_temperature_is_sgd_momentum_bit_for_bit(dtype):
    model, batch = _problem(dtype)
    twin = copy.deepcopy(model)
    opt = PaperCTLD(model.parameters(), lr=0.05, momentum=0.9, num_data=100, sampling_steps=10**6,
               temperature=0.0, weight_decay=1e-2, alpha_init=0.9, span=0.6, hill_height=3.0)
    sgd = torch.optim.SGD(twin.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-2)
    for t in range(40):
        _run(model, opt, batch, 1, start=t)
        _run(twin, sgd, batch, 1, start=t)
        for p, q in zip(model.parameters(), twin.parameters(), strict=True):
            assert torch.equal(p, q)
    assert opt.phase == "sampling" and opt.bias.abs().sum() > 0  # alpha and V_b did move


def test_phase_two_is_sgd_momentum_from_any_state():
    model, batch = _problem(torch.float32)
    opt = PaperCTLD(model.parameters(), lr=0.05, momentum=0.7, num_data=100, sampling_steps=15,
               temperature=1e-3, weight_decay=1e-3, seed=1)
    _run(model, opt, batch, 15)
    assert opt.phase == "optimization"
    twin = copy.deepcopy(model)
    sgd = torch.optim.SGD(twin.parameters(), lr=0.05, momentum=0.7, weight_decay=1e-3)
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        sgd.state[q]["momentum_buffer"] = opt.state[p]["momentum_buffer"].clone()
    alpha, bias = opt.alpha, opt.bias.clone()
    for t in range(15, 45):
        opt.zero_grad()
        loss = _loss(model, *batch(t))
        loss.backward()
        opt.step()  # phase (ii) needs no loss value
        _run(twin, sgd, batch, 1, start=t)
        for p, q in zip(model.parameters(), twin.parameters(), strict=True):
            assert torch.equal(p, q)
    assert opt.alpha == alpha and torch.equal(opt.bias, bias)  # frozen


def test_sampling_steps_counts_exactly_and_end_sampling():
    model, batch = _problem()
    opt = PaperCTLD(model.parameters(), lr=0.01, momentum=0.9, num_data=10, sampling_steps=7,
                    seed=0)
    _run(model, opt, batch, 6)
    assert opt.phase == "sampling" and opt.diagnostics()["step"] == 6
    _run(model, opt, batch, 1, start=6)
    assert opt.phase == "optimization"
    opt2 = PaperCTLD(model.parameters(), lr=0.01, momentum=0.9, num_data=10, sampling_steps=7,
                     seed=0, reset_momentum=True)
    _run(model, opt2, batch, 2)
    opt2.end_sampling()
    assert opt2.phase == "optimization"
    assert all(opt2.state[p]["momentum_buffer"].abs().sum() == 0 for p in model.parameters())


def test_handoff_last_cold_restores_a_cold_iterate():
    model, batch = _problem()
    opt = PaperCTLD(model.parameters(), lr=0.02, momentum=0.8, num_data=50, sampling_steps=40,
               seed=5, handoff="last_cold", delta=0.2, delta_prime=0.6)
    snap = None
    for t in range(40):
        _run(model, opt, batch, 1, start=t)
        if abs(opt.alpha) <= 0.2:  # this step's iterate is cold: the one to be restored
            snap = [p.detach().clone() for p in model.parameters()]
            bufs = [opt.state[p].get("last_cold_buf") for p in model.parameters()]
    assert snap is not None and abs(opt.alpha) > 0.2  # the last iterate is hot: a real restore
    assert opt.phase == "optimization"
    for p, q in zip(model.parameters(), snap, strict=True):
        assert torch.equal(p, q)
    assert all(b is not None for b in bufs)


# --------------------------------------------------------------------------- property 4
@pytest.mark.parametrize("alpha0", [0.0, 2.0])
def test_noise_variance_of_one_step(alpha0):
    n_el, lr, mom, n, tc = 10**6, 0.1, 0.9, 1000, 3.0
    p = torch.nn.Parameter(torch.zeros(n_el, dtype=torch.float64))
    opt = PaperCTLD([p], lr=lr, momentum=mom, num_data=n, sampling_steps=10, temperature=tc,
               alpha_init=alpha0, seed=11)
    opt.state[p]["momentum_buffer"].zero_()
    p.grad = torch.zeros_like(p)
    opt.step(loss=0.0)
    g = 1.0 if alpha0 == 0.0 else 1 - S
    expected = 2 * (lr / n) * (1 - mom) * tc / g
    step = lr * opt.state[p]["momentum_buffer"]
    var = step.var().item()
    # the sample variance of n Gaussians has standard error sigma^2 sqrt(2/(n-1))
    se = expected * math.sqrt(2 / (n_el - 1))
    assert abs(var - expected) < 4 * se
    assert torch.allclose(p.detach(), -step)  # theta moved by -lambda b


# --------------------------------------------------------------------------- property 8a
def test_bias_deposit_is_the_analytic_sum_and_force_is_eq14():
    p = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    w, sig, k = 0.7, 0.1, 30
    opt = PaperCTLD([p], lr=0.04, momentum=0.5, num_data=1, sampling_steps=100, hill_height=w,
               hill_width=sig, num_bins=k, seed=2, confine_force=50.0)
    alphas = []
    for _ in range(25):
        p.grad = p.detach().clone()
        opt.step(loss=0.5 * float((p.detach() ** 2).sum()))
        alphas.append(opt.alpha)
    nodes = [-1.5 + j * 3.0 / k for j in range(k + 1)]
    vb = torch.tensor([sum(w * math.exp(-(a - al) ** 2 / (2 * sig ** 2)) for al in alphas)
                       for a in nodes], dtype=torch.float64)
    assert torch.allclose(opt.bias, vb, rtol=1e-12, atol=1e-300)
    for a in (-1.5, -0.73, 0.0, 0.51, 1.4999, 1.5):
        kk = min(k - 1, math.floor((a + 1.5) / (3.0 / k)))
        expect = (vb[kk + 1] - vb[kk]).item() / (3.0 / k)
        assert opt.bias_force(a) == pytest.approx(expect, rel=1e-10, abs=1e-12)
    assert opt.bias_force(1.6) == 0.0 and opt.bias_force(-2.0) == 0.0


# --------------------------------------------------------------------------- property 9
def _one_step_diag(alpha0, loss, **kw):
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = PaperCTLD([p], lr=1e-4, momentum=0.9, num_data=100, sampling_steps=10, temperature=0.0,
               alpha_init=alpha0, **kw)
    p.grad = torch.zeros_like(p)
    return opt, p


def test_signs_of_the_alpha_forces():
    for a0, sign in ((0.9, 1.0), (-0.9, -1.0)):
        opt, p = _one_step_diag(a0, 1e3, hill_height=0.0)
        opt.step(loss=1e3)
        d = opt.diagnostics()
        assert d["force_coupling"] * sign > 0 and opt.r_alpha * sign > 0  # outwards on the ramp
    for a0, sign in ((1.8, -1.0), (-1.8, 1.0)):
        for conf in ("linear", "quadratic"):
            opt, p = _one_step_diag(a0, 5.0, hill_height=0.0, confinement=conf)
            opt.step(loss=5.0)
            assert opt.diagnostics()["force_confinement"] * sign > 0
    opt, p = _one_step_diag(0.0, 0.0, hill_height=0.0)
    opt.bias.copy_(opt.bias_nodes * 10.0)  # V_b rising to the right
    opt.step(loss=0.0)
    assert opt.diagnostics()["force_bias"] == pytest.approx(-10.0) and opt.r_alpha < 0


# --------------------------------------------------------------------------- property 11
@pytest.mark.parametrize("big_c", ["auto", 40.0])
def test_scaling_invariance(big_c):
    c = 7.0
    traces = []
    for scale in (1.0, c):
        model, batch = _problem()
        cc = big_c if big_c == "auto" else big_c * scale
        opt = PaperCTLD(model.parameters(), lr=0.005, momentum=0.8, num_data=int(50 * scale),
                   sampling_steps=1000, temperature=2.0 * scale, hill_height=0.5 * scale,
                   hill_width=0.05, num_bins=60, delta=0.2, delta_prime=0.6, confine_force=cc,
                   seed=4, alpha_init=0.35)
        tr = []
        _run(model, opt, batch, 60, trace=tr)
        traces.append(tr)
    # 1e-12 relative to each trajectory's scale (alpha and r_alpha cross zero)
    a_scale = max(abs(x[1]) for x in traces[0])
    r_scale = max(abs(x[2]) for x in traces[0])
    errs = [0.0, 0.0, 0.0]
    for (th1, a1, r1), (th7, a7, r7) in zip(*traces, strict=True):
        errs[0] = max(errs[0], ((th1 - th7).abs().max() / th1.abs().max()).item())
        errs[1] = max(errs[1], abs(a1 - a7) / a_scale)
        errs[2] = max(errs[2], abs(math.sqrt(c) * r1 - r7) / (math.sqrt(c) * r_scale))
    assert max(errs) <= 1e-12, errs
    assert any(0.2 < abs(x[1]) < 0.6 for x in traces[0])  # alpha sat on the ramp (g' != 0)


# --------------------------------------------------------------------------- property 12
@pytest.mark.parametrize("cut", [137, 170])
def test_resume_is_bit_identical(cut):
    def make():
        model, batch = _problem(torch.float32, seed=1)
        opt = PaperCTLD(model.parameters(), lr=0.02, momentum=0.8, num_data=50, sampling_steps=150,
                   seed=9, num_bins=60, delta=0.2, delta_prime=0.6, hill_height=0.3)
        return model, batch, opt

    model, batch, opt = make()
    _run(model, opt, batch, 200)
    final = [p.detach().clone() for p in model.parameters()]

    model, batch, opt = make()
    _run(model, opt, batch, cut)
    ckpt = copy.deepcopy({"model": model.state_dict(), "opt": opt.state_dict()})
    model, batch, opt = make()
    _run(model, opt, batch, 3)  # perturb the fresh run before restoring
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["opt"])
    assert opt.phase == ("sampling" if cut < 150 else "optimization")
    _run(model, opt, batch, 200 - cut, start=cut)
    for p, q in zip(model.parameters(), final, strict=True):
        assert torch.equal(p, q)


# --------------------------------------------------------------------------- property 14
def test_errors():
    model, batch = _problem()
    opt = PaperCTLD(model.parameters(), lr=0.01, momentum=0.9, num_data=10, sampling_steps=5)
    loss = _loss(model, *batch(0))
    loss.backward()
    with pytest.raises(ValueError, match="loss"):
        opt.step()
    before = [p.detach().clone() for p in model.parameters()]
    bufs = [opt.state[p]["momentum_buffer"].clone() for p in model.parameters()]
    alpha, ra = opt.alpha, opt.r_alpha
    with pytest.raises(FloatingPointError):
        opt.step(loss=float("nan"))
    next(model.parameters()).grad[0] = float("inf")
    with pytest.raises(FloatingPointError):
        opt.step(loss=loss)
    for p, q, b in zip(model.parameters(), before, bufs, strict=True):
        assert torch.equal(p, q) and torch.equal(opt.state[p]["momentum_buffer"], b)
    assert (opt.alpha, opt.r_alpha, opt.steps) == (alpha, ra, 0)
    lin = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="span"):
        PaperCTLD([{"params": [lin.weight]}, {"params": [lin.bias], "span": 0.5}], lr=0.1,
             momentum=0.5, num_data=1, sampling_steps=1)
    # per-group lr/momentum are allowed
    PaperCTLD([{"params": [lin.weight]}, {"params": [lin.bias], "lr": 0.5}], lr=0.1, momentum=0.5,
         num_data=1, sampling_steps=1)


@pytest.mark.parametrize("kw,name", [
    ({"lr": 0.0}, "lr"), ({"momentum": 1.0}, "momentum"), ({"num_data": 0}, "num_data"),
    ({"sampling_steps": -1}, "sampling_steps"), ({"temperature": -1.0}, "temperature"),
    ({"delta_prime": 0.3}, "delta_prime"), ({"span": 1.0}, "span"),
    ({"hill_height": -1.0}, "hill_height"), ({"hill_width": 0.0}, "hill_width"),
    ({"num_bins": 1}, "num_bins"), ({"confine_force": -2.0}, "confine_force"),
    ({"confinement": "box"}, "confinement"), ({"alpha_momentum": 1.5}, "alpha_momentum"),
    ({"alpha_step_scale": 0.0}, "alpha_step_scale"), ({"handoff": "best"}, "handoff"),
    ({"weight_decay": -1.0}, "weight_decay"),
])
def test_validation_names_the_parameter(kw, name):
    args = {"lr": 0.1, "momentum": 0.5, "num_data": 10, "sampling_steps": 5}
    args.update(kw)
    with pytest.raises(ValueError, match=name):
        PaperCTLD([torch.nn.Parameter(torch.zeros(2))], **args)


def test_per_example_loss_and_noise_correction_run():
    model, batch = _problem()
    opt = PaperCTLD(model.parameters(), lr=0.01, momentum=0.9, num_data=64, sampling_steps=5,
               noise_correction=True, seed=0)
    xb, yb = batch(0)
    per = ((model(xb) - yb) ** 2).squeeze(1)
    per.mean().backward()
    opt.step(loss=per.detach())
    d = opt.diagnostics()
    h_expected = 64 * per.mean().item()
    assert d["H"] > h_expected  # potential part plus a positive kinetic part
    with pytest.raises(ValueError, match="loss"):
        opt.step(loss=torch.zeros(2, 2))


def test_jump_warning():
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = PaperCTLD([p], lr=4.0, momentum=0.0, num_data=1, sampling_steps=10, alpha_init=0.0,
               temperature=0.0, hill_height=0.0)
    opt._r_alpha = 0.6  # eta_alpha = 2: alpha jumps by 1.2 > delta' - delta
    p.grad = torch.zeros_like(p)
    with pytest.warns(RuntimeWarning, match="alpha_step_scale"):
        opt.step(loss=0.0)


# =========================================================================== default tempering
# docs/ctld.md, "Tempering at scale": the intensive alpha-force, the kinetic pre-bias, the
# alpha step independent of lr and N, hills in units of T_c with wall mirrors.
def test_default_is_intensive_tempering():
    d = ctld_defaults()
    assert d["tempering"] == "intensive" and d["confinement"] == "reflect"
    assert (d["hill_height"], d["alpha_step"], d["coupling_scale"]) == (0.5, 0.02, "auto")
    assert d["kinetic_prebias"] and d["symmetric_bias"]
    p = torch.nn.Parameter(torch.zeros(3))
    g0 = CTLD([p], lr=0.1, momentum=0.9, num_data=10, sampling_steps=5).param_groups[0]
    assert g0["tempering"] == "intensive" and g0["confinement"] == "reflect"
    assert g0["hill_height"] == 0.5 and g0["alpha_step"] == 0.02
    g1 = PaperCTLD([p], lr=0.1, momentum=0.9, num_data=10, sampling_steps=5).param_groups[0]
    assert g1["confinement"] == "linear" and g1["hill_height"] == 20.0
    assert g1["alpha_step_scale"] == 1.0


@pytest.mark.parametrize("kw,tempering,name", [
    ({"coupling_scale": 2.0}, "paper", "coupling_scale"),
    ({"kinetic_prebias": False}, "paper", "kinetic_prebias"),
    ({"alpha_step": 0.1}, "paper", "alpha_step"),
    ({"alpha_step_scale": 0.5}, "intensive", "alpha_step_scale"),
    ({"coupling_scale": 0.5}, "intensive", "coupling_scale"),
    ({"alpha_step": 0.0}, "intensive", "alpha_step"),
    ({}, "hot", "tempering"),
])
def test_options_of_the_other_mode_are_refused(kw, tempering, name):
    with pytest.raises(ValueError, match=name):
        CTLD([torch.nn.Parameter(torch.zeros(2))], lr=0.1, momentum=0.5, num_data=10,
             sampling_steps=5, tempering=tempering, **kw)


def _reference_intensive(model, batch, steps, *, lr, mom, n, tc, wd, seed, delta, dp, span, w,
                         sig, k, a_step, coupling, prebias):
    """Float64 transcription of the default tempering step (docs/ctld.md, 'Tempering at
    scale'), in the paper's units: Algorithm 1's theta update, the intensive alpha-force
    -g'(H - d T_c/(2g))/c, eta_alpha = a/sqrt(T_c), hills of w T_c at +-alpha (only inside
    the walls) with images of hills within 4 sigma of a wall, reflecting walls."""
    eta = math.sqrt(lr / n)
    gamma = (1 - mom) / eta
    eta_a = a_step / math.sqrt(tc)
    gen = torch.Generator().manual_seed(seed)
    params = [p.detach().clone() for p in model.parameters()]
    d = sum(p.numel() for p in params)
    r = [-math.sqrt(tc) * torch.randn(p.shape, generator=gen, dtype=torch.float64)
         for p in params]
    r_a = math.sqrt(tc) * torch.randn((), generator=gen, dtype=torch.float64).item()
    alpha = 0.0
    nodes = [-dp + j * 2 * dp / k for j in range(k + 1)]
    vb = [0.0] * (k + 1)

    def g(a):
        z = min(1.0, max(0.0, (abs(a) - delta) / (dp - delta)))
        return 1 - span * (3 * z * z - 2 * z ** 3)

    def gprime(a):
        z = min(1.0, max(0.0, (abs(a) - delta) / (dp - delta)))
        return -math.copysign(1, a) * 6 * span * z * (1 - z) / (dp - delta)

    trace = []
    ref_model = copy.deepcopy(model)
    c = coupling
    for t in range(steps):
        with torch.no_grad():
            for q, p in zip(ref_model.parameters(), params, strict=True):
                q.copy_(p)
        ref_model.zero_grad()
        xb, yb = batch(t)
        ell = _loss(ref_model, xb, yb)
        ell.backward()
        u_tilde = n * (ell.item() + 0.5 * wd * sum((p ** 2).sum().item() for p in params))
        if c == "auto":
            c = max(1.0, (u_tilde + 0.5 * d * tc) / tc)
        grads = [n * (q.grad + wd * p) for q, p in zip(ref_model.parameters(), params,
                                                        strict=True)]
        eps = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
        r = [(1 - eta * gamma) * ri - eta * gi + math.sqrt(2 * eta * gamma * tc / g(alpha)) * e
             for ri, gi, e in zip(r, grads, eps, strict=True)]
        alpha = alpha + eta_a * r_a
        if abs(alpha) > dp:
            alpha = math.copysign(1, alpha) * (2 * dp - abs(alpha))
            r_a = -r_a
        centres = [alpha, -alpha]
        centres += [2 * dp - x for x in centres if dp - x < 4 * sig] + \
                   [-2 * dp - x for x in centres if x + dp < 4 * sig]
        vb = [v + sum(w * tc * math.exp(-(a - x) ** 2 / (2 * sig ** 2)) for x in centres)
              for v, a in zip(vb, nodes, strict=True)]
        h_tot = u_tilde + 0.5 * sum((ri ** 2).sum().item() for ri in r)
        kstar = min(k - 1, max(0, math.floor((alpha + dp) / (2 * dp / k))))
        db = (vb[kstar + 1] - vb[kstar]) / (2 * dp / k)
        pre = 0.5 * d * tc / g(alpha) if prebias else 0.0
        h = -gprime(alpha) * (h_tot - pre) / c - db
        e_a = torch.randn((), generator=gen, dtype=torch.float64).item()
        r_a = mom * r_a + eta_a * h + math.sqrt(2 * (1 - mom) * tc) * e_a  # mu_alpha = mu
        params = [p + eta * ri for p, ri in zip(params, r, strict=True)]
        trace.append((torch.cat([p.flatten() for p in params]), alpha, r_a, list(vb), c))
    return trace


@pytest.mark.parametrize("coupling,prebias", [("auto", True), (3.0, False)])
def test_transcription_of_the_default_tempering(coupling, prebias):
    model, batch = _problem()
    hp = dict(lr=0.02, mom=0.8, n=50, tc=2.0, wd=1e-3, seed=3, delta=0.2, dp=0.6, span=0.7,
              w=0.5, sig=0.05, k=60, a_step=0.05, coupling=coupling, prebias=prebias)
    ref = _reference_intensive(model, batch, 50, **hp)
    opt = CTLD(model.parameters(), lr=hp["lr"], momentum=hp["mom"], num_data=hp["n"],
               sampling_steps=1000, temperature=hp["tc"], weight_decay=hp["wd"], seed=hp["seed"],
               delta=hp["delta"], delta_prime=hp["dp"], span=hp["span"], hill_height=hp["w"],
               hill_width=hp["sig"], num_bins=hp["k"], alpha_step=hp["a_step"],
               coupling_scale=coupling, kinetic_prebias=prebias)
    got = []
    visited = set()
    for t in range(50):
        _run(model, opt, batch, 1, start=t, trace=got)
        a = abs(opt.alpha)
        visited.add("cold" if a <= 0.2 else "ramp" if a < 0.6 - 4 * 0.05 else "wall")
    assert visited == {"cold", "ramp", "wall"}  # g' != 0, the flat region and the mirrors
    a_scale = max(abs(x[1]) for x in ref)
    r_scale = max(abs(x[2]) for x in ref)
    for (th, al, ra), (th_r, al_r, ra_r, _, _) in zip(got, ref, strict=True):
        assert (th - th_r).abs().max() <= 1e-12 * th_r.abs().max()
        assert abs(al - al_r) <= 1e-12 * a_scale
        assert abs(ra - ra_r) <= 1e-12 * r_scale
    assert torch.allclose(opt.bias, torch.tensor(ref[-1][3], dtype=torch.float64), rtol=1e-12)
    assert opt.coupling_scale == pytest.approx(ref[-1][4], rel=1e-12)
    d = opt.diagnostics()
    assert {"force_coupling", "force_prebias", "coupling_scale", "crossings"} <= set(d)


def test_alpha_step_is_independent_of_lr_and_num_data():
    """In the cold region (g' = 0) and without hills, alpha is an Ornstein-Uhlenbeck chain
    with step alpha_step/sqrt(T_c): the same draws give the same alpha path for any lr, N."""
    paths = []
    for lr, n in ((0.1, 10), (1e-4, 10**6)):
        p = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))
        opt = CTLD([p], lr=lr, momentum=0.9, num_data=n, sampling_steps=100, seed=4,
                   hill_height=0.0, temperature=0.5)
        path = []
        for _ in range(20):
            p.grad = p.detach().clone()
            opt.step(loss=0.5 * float(p.detach() @ p.detach()))
            path.append(opt.alpha)
        assert max(abs(a) for a in path) < 0.4  # stayed cold
        paths.append(path)
    assert paths[0] == paths[1]


def test_hills_are_mirrored_at_the_walls_and_only_deposited_inside():
    w, sig, k, tc = 0.7, 0.04, 300, 2.0
    p = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = CTLD([p], lr=0.01, momentum=0.5, num_data=1, sampling_steps=100, hill_height=w,
               hill_width=sig, num_bins=k, temperature=tc, alpha_init=1.46, seed=0)
    opt._r_alpha = 0.0  # deposit exactly at alpha_init
    p.grad = torch.zeros_like(p)
    opt.step(loss=0.0)
    a = 1.46
    nodes = opt.bias_nodes
    expect = sum(w * tc * torch.exp(-(nodes - x) ** 2 / (2 * sig ** 2))
                 for x in (a, -a, 3.0 - a, -3.0 + a))
    assert torch.allclose(opt.bias, expect, rtol=1e-12, atol=1e-300)
    # the images make V_b symmetric about each wall: the bias force in the wall bin is the
    # difference across one grid step of a symmetric curve, ~ 10x smaller than without them
    no_image = w * tc * torch.exp(-(nodes - a) ** 2 / (2 * sig ** 2))
    width = 3.0 / k
    assert abs(opt.bias_force(1.4999)) < 0.1 * abs((no_image[-1] - no_image[-2]).item() / width)
    # linear walls: alpha outside [-delta', delta'] deposits nothing
    q = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = CTLD([q], lr=0.01, momentum=0.5, num_data=1, sampling_steps=100, hill_height=w,
               confinement="linear", temperature=tc, alpha_init=1.8, seed=0)
    opt._r_alpha = 0.0
    q.grad = torch.zeros_like(q)
    opt.step(loss=0.0)
    assert opt.bias.abs().max() == 0.0


def test_crossings_count_cold_hot_trips():
    p = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = CTLD([p], lr=0.01, momentum=0.5, num_data=1, sampling_steps=100, hill_height=0.0,
               temperature=0.0)  # no noise: alpha moves by alpha_step * r_alpha exactly
    p.grad = torch.zeros_like(p)
    for r, expect in ((30.0, 0), (40.0, 1), (-40.0, 1), (-30.0, 2), (-70.0, 3), (10.0, 3)):
        opt._r_alpha = r
        opt.step(loss=0.0)
        assert opt.crossings == expect, (r, opt.alpha, opt.crossings)


@pytest.mark.parametrize("tempering", ["intensive", "paper"])
@pytest.mark.parametrize("bad", ["loss_1e308", "loss_nan", "grad_inf"])
def test_a_refused_step_changes_no_state(tempering, bad):
    """A loss whose energy N*loss overflows, a NaN loss or an inf gradient: FloatingPointError
    and every piece of state (parameters, momenta, alpha, r_alpha, V_b, counters, generator)
    is as before."""
    model, batch = _problem()
    opt = CTLD(model.parameters(), lr=0.01, momentum=0.9, num_data=10, sampling_steps=50,
               seed=2, tempering=tempering)
    _run(model, opt, batch, 5)
    loss = _loss(model, *batch(5))
    loss.backward()
    before = copy.deepcopy(opt.state_dict())
    params = [p.detach().clone() for p in model.parameters()]
    value: object = loss
    if bad == "loss_1e308":
        value = 1e308
    elif bad == "loss_nan":
        value = float("nan")
    else:
        next(model.parameters()).grad[0] = float("inf")
    with pytest.raises(FloatingPointError, match="not applied"):
        opt.step(loss=value)
    after = opt.state_dict()
    for p, q in zip(model.parameters(), params, strict=True):
        assert torch.equal(p, q)
    for key, st in before["state"].items():
        for name, val in st.items():
            assert torch.equal(after["state"][key][name], val), name
    for name, val in before["ctld"].items():
        got = after["ctld"][name]
        assert torch.equal(got, val) if isinstance(val, torch.Tensor) else got == val, name


@pytest.mark.parametrize("make,err,needle", [
    (lambda: torch.zeros(3, dtype=torch.complex64, requires_grad=True), TypeError, "complex"),
    (lambda: torch.zeros(3, dtype=torch.int64), TypeError, "int64"),
    (lambda: torch.nn.Parameter(torch.zeros(3, device="meta")), ValueError, "meta"),
])
def test_unsupported_parameters_are_named(make, err, needle):
    with pytest.raises(err, match=needle):
        CTLD([make()], lr=0.1, momentum=0.5, num_data=10, sampling_steps=5)
    opt = CTLD([torch.nn.Parameter(torch.zeros(2))], lr=0.1, momentum=0.5, num_data=10,
               sampling_steps=5)
    with pytest.raises(err, match=needle):
        opt.add_param_group({"params": [make()]})
    assert len(opt.param_groups) == 1  # no ghost group left behind
    with pytest.raises(ValueError, match="span"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))], "span": 0.3})
    assert len(opt.param_groups) == 1


@pytest.mark.parametrize("big_c", ["auto", 40.0])
def test_scaling_invariance_of_the_default_tempering(big_c):
    """(N, T_c, C) -> c (N, T_c, C), with w in units of T_c unchanged: theta and alpha are
    unchanged and r_alpha scales by sqrt(c) (linear walls, so C acts)."""
    c = 7.0
    traces = []
    for scale in (1.0, c):
        model, batch = _problem()
        cc = big_c if big_c == "auto" else big_c * scale
        opt = CTLD(model.parameters(), lr=0.005, momentum=0.8, num_data=int(50 * scale),
                   sampling_steps=1000, temperature=2.0 * scale, hill_height=0.5,
                   hill_width=0.05, num_bins=60, delta=0.2, delta_prime=0.6, confine_force=cc,
                   confinement="linear", seed=4, alpha_init=0.35, alpha_step=0.05)
        tr = []
        _run(model, opt, batch, 60, trace=tr)
        traces.append(tr)
    a_scale = max(abs(x[1]) for x in traces[0])
    r_scale = max(abs(x[2]) for x in traces[0])
    errs = [0.0, 0.0, 0.0]
    for (th1, a1, r1), (th7, a7, r7) in zip(*traces, strict=True):
        errs[0] = max(errs[0], ((th1 - th7).abs().max() / th1.abs().max()).item())
        errs[1] = max(errs[1], abs(a1 - a7) / a_scale)
        errs[2] = max(errs[2], abs(math.sqrt(c) * r1 - r7) / (math.sqrt(c) * r_scale))
    assert max(errs) <= 1e-12, errs
    assert any(0.2 < abs(x[1]) < 0.6 for x in traces[0])  # alpha sat on the ramp (g' != 0)
    assert any(abs(x[1]) > 0.6 for x in traces[0])  # and beyond the wall (C acts)


def test_resume_of_the_default_tempering_is_bit_identical():
    def make():
        model, batch = _problem(torch.float32, seed=1)
        opt = CTLD(model.parameters(), lr=0.02, momentum=0.8, num_data=50, sampling_steps=150,
                   seed=9, num_bins=60, delta=0.2, delta_prime=0.6, alpha_step=0.2)
        return model, batch, opt

    model, batch, opt = make()
    _run(model, opt, batch, 200)
    final = [p.detach().clone() for p in model.parameters()]
    model, batch, opt = make()
    _run(model, opt, batch, 137)
    ckpt = copy.deepcopy({"model": model.state_dict(), "opt": opt.state_dict()})
    model, batch, opt = make()
    _run(model, opt, batch, 3)
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["opt"])
    _run(model, opt, batch, 63, start=137)
    for p, q in zip(model.parameters(), final, strict=True):
        assert torch.equal(p, q)

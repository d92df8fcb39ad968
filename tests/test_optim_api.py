"""The optimizer contract: reproducibility, state_dict round trip, partitions in any order,
foreach == per-tensor, validation, non-finite gradients, schedulers, closures, replicas."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from heatbath.optim import (
    LOL,
    SGLD,
    AdaptiveLangevin,
    AdLaLa,
    Langevin,
    NonFiniteGradientError,
    Partitioned,
    build_optimizer,
)

from ._helpers import accuracy, shlp, toy_spiral, train

FACTORIES = {
    "sgld": lambda m, **kw: SGLD(m.parameters(), h=0.1, sigma=0.05, **kw),
    "langevin": lambda m, **kw: Langevin(m.parameters(), h=0.2, gamma=1.0, tau=1e-3, **kw),
    "adl": lambda m, **kw: AdaptiveLangevin(m.parameters(), h=0.2, tau=1e-3, sigma_A=0.05,
                                            epsilon=0.1, **kw),
    "adlala": lambda m, **kw: AdLaLa(m, h=0.25, gamma=0.5, epsilon=0.1, sigma_A=0.05, **kw),
    "lol": lambda m, **kw: LOL(m, h=0.25, gamma1=0.01, tau1=1e-3, **kw),
}


@pytest.mark.parametrize("name", FACTORIES)
def test_fixed_seed_reproducible_and_seed_matters(name):
    X, y = toy_spiral(200)
    runs = []
    for seed in (7, 7, 8):
        m = shlp(seed=0)
        train(m, FACTORIES[name](m, seed=seed), X, y, 20)
        runs.append(torch.cat([p.detach().reshape(-1) for p in m.parameters()]))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


@pytest.mark.parametrize("name", FACTORIES)
def test_state_dict_round_trip_is_bit_identical(name):
    X, y = toy_spiral(200)
    m = shlp(seed=0)
    opt = FACTORIES[name](m, seed=1)
    train(m, opt, X, y, 25, seed=1)
    buf = io.BytesIO()
    torch.save({"model": m.state_dict(), "opt": opt.state_dict()}, buf)
    ref = train(m, opt, X, y, 25, seed=2, record=True)

    buf.seek(0)
    ckpt = torch.load(buf, weights_only=False)
    m2 = shlp(seed=99)  # different init and seed: everything must come from the checkpoint
    opt2 = FACTORIES[name](m2, seed=12345)
    m2.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["opt"])
    got = train(m2, opt2, X, y, 25, seed=2, record=True)
    for a, b in zip(ref, got):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["sgld", "langevin", "adl", "adlala", "lol"])
def test_foreach_equals_per_tensor(name):
    X, y = toy_spiral(200)
    a, b = shlp(seed=3), shlp(seed=3)
    ta = train(a, FACTORIES[name](a, seed=5), X, y, 30, record=True)
    tb = train(b, FACTORIES[name](b, seed=5, foreach=False), X, y, 30, record=True)
    # identical arithmetic except the order of the thermostat sums (index_add vs per-tensor sum)
    for u, v in zip(ta, tb):
        torch.testing.assert_close(u, v, rtol=1e-6, atol=1e-7)


def test_groups_in_another_order_give_the_same_result():
    X, y = toy_spiral(200)
    results = []
    for order in (0, 1):
        m = shlp(seed=4)
        named = list(m.named_parameters())
        g_first = {"params": named[:2], "method": "adl", "tau": 1e-3, "sigma_A": 0.05,
                   "epsilon": 0.1}
        g_rest = {"params": named[2:], "method": "baoab", "gamma": 0.5, "tau": 1e-3}
        groups = [g_first, g_rest] if order == 0 else [g_rest, g_first]
        train(m, Partitioned(groups, h=0.2, seed=11), X, y, 30)
        results.append(torch.cat([p.detach().reshape(-1) for p in m.parameters()]))
    assert torch.equal(results[0], results[1])


def test_adlala_and_lol_partition_first_layer():
    m = shlp()
    opt = AdLaLa(m)
    assert opt.param_groups[0]["method"] == "adl" and opt.param_groups[1]["method"] == "baoab"
    assert opt.param_groups[0]["params"] == [m[0].weight, m[0].bias]
    opt = LOL((list(m[0].parameters()), list(m[2].parameters())), tau1=1e-4)
    assert opt.param_groups[1]["method"] == "overdamped" and opt.param_groups[1]["tau"] == 1e-4


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda p: SGLD(p, h=-1.0), "h"),
        (lambda p: SGLD(p, h=0.1, sigma=-1.0), "sigma"),
        (lambda p: Langevin(p, h=0.1, gamma=-1.0, tau=0.0), "gamma"),
        (lambda p: Langevin(p, h=0.1, gamma=1.0, tau=float("nan")), "tau"),
        (lambda p: AdaptiveLangevin(p, h=0.1, tau=0.1, sigma_A=-0.1, epsilon=0.1), "sigma_A"),
        (lambda p: AdaptiveLangevin(p, h=0.1, tau=0.1, sigma_A=0.1, epsilon=-1.0), "epsilon"),
        (lambda p: AdaptiveLangevin(p, h=0.1, tau=0.1, sigma_A=0.1, epsilon=0.1,
                                    xi_per="layer"), "xi_per"),
        (lambda p: Partitioned(p, h=0.1, method="hmc"), "method"),
        (lambda p: Langevin(p, h=0.1, gamma=1.0, tau=0.0, replicas=0), "replicas"),
        (lambda p: Langevin(p, h=0.1, gamma=1.0, tau=0.0, replicas=4), "replica"),
        (lambda p: LOL((p, []), tau1=-1.0), "tau1"),
        (lambda p: AdLaLa((p, []), tau2=-1.0), "tau2"),
        (lambda p: SGLD(p, h=0.1, seed=-3), "seed"),
    ],
)
def test_bad_hyperparameters_fail_early_naming_the_field(make, field):
    with pytest.raises(ValueError, match=field):
        make([nn.Parameter(torch.zeros(3, 2))])


def test_non_finite_gradient_raises_and_changes_nothing():
    X, y = toy_spiral(100)
    m = shlp()
    opt = AdLaLa(m, seed=0)
    train(m, opt, X, y, 3)
    before = copy.deepcopy(opt.state_dict())
    params = [p.detach().clone() for p in m.parameters()]
    opt.zero_grad()
    (m(X).sum() * float("nan")).backward()
    with pytest.raises(NonFiniteGradientError, match="non-finite gradient"):
        opt.step()
    for p, q in zip(m.parameters(), params):
        assert torch.equal(p, q)
    after = opt.state_dict()
    for k in before["state"]:
        assert torch.equal(before["state"][k]["momentum_buffer"],
                           after["state"][k]["momentum_buffer"])


def test_lr_scheduler_scales_h_and_merged_kick_uses_both_steps():
    p = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = Langevin([p], h=0.2, gamma=0.0, tau=0.0, seed=0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    # Unmerged BAOAB at tau=0, gamma=0 on U = p²/2 with h_n = 0.2 * 0.5^n, written out:
    x, v = 1.0, 0.0
    for n in range(4):
        h = 0.2 * 0.5**n
        opt.zero_grad()
        (0.5 * p**2).sum().backward()
        opt.step()
        sched.step()
        v -= h / 2 * x
        x += h * v
        v -= h / 2 * x  # trailing half kick: merged into the next step by heatbath
        assert opt.param_groups[0]["h"] == opt.param_groups[0]["lr"] == pytest.approx(h / 2)
        assert float(p.detach()) == pytest.approx(x, abs=1e-14)


def test_closure_is_called_and_its_loss_returned():
    X, y = toy_spiral(100)
    m = shlp()
    opt = Langevin(m.parameters(), h=0.1, gamma=1.0, tau=0.0)

    def closure():
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(m(X).squeeze(-1), y)
        loss.backward()
        return loss

    l0 = opt.step(closure)
    for _ in range(20):
        loss = opt.step(closure)
    assert float(loss.detach()) < float(l0.detach())


def test_diagnostics_know_whether_gradients_are_fresh():
    X, y = toy_spiral(100)
    m = shlp()
    opt = AdLaLa(m, seed=0)
    train(m, opt, X, y, 3)  # ends with step(): gradients are stale
    d = opt.diagnostics()
    assert not d[0]["kinetic_corrected"] and d[0]["configurational_temperature"] is None
    assert len(d[0]["xi"]) == 2  # one xi per tensor: W1 and b1
    opt.zero_grad()
    nn.functional.binary_cross_entropy_with_logits(m(X).squeeze(-1), y).backward()
    d = opt.diagnostics()
    assert d[0]["kinetic_corrected"] and d[1]["configurational_temperature"] is not None


@pytest.mark.parametrize("method", ["adl", "baoab", "sgld"])
def test_replicas_behave_like_single_runs(method):
    # R independent quadratic problems stacked on a leading dimension, deterministic (tau = 0,
    # sigma = 0): each replica must follow its own single run, xi included.
    R = 3
    torch.manual_seed(0)
    k = torch.rand(R, 4, 5, dtype=torch.float64) + 0.5
    init = torch.randn(R, 4, 5, dtype=torch.float64)
    init_b = torch.randn(R, 5, dtype=torch.float64)
    kw = dict(method=method, tau=0.0, gamma=0.7, sigma_A=0.0, epsilon=0.3)

    def loss(w, b, kk):
        return 0.5 * (kk * w**2).sum() + 0.05 * (w.sum(-2) * b).pow(2).sum() + 0.1 * (b**4).sum()

    W, B = nn.Parameter(init.clone()), nn.Parameter(init_b.clone())
    opt = Partitioned([W, B], h=0.1, replicas=R, **kw)
    singles = []
    for r in range(R):
        w, b = nn.Parameter(init[r].clone()), nn.Parameter(init_b[r].clone())
        singles.append((w, b, Partitioned([w, b], h=0.1, **kw)))
    for _ in range(30):
        opt.zero_grad()
        loss(W, B, k).backward()
        opt.step()
        for r, (w, b, o) in enumerate(singles):
            o.zero_grad()
            loss(w, b, k[r]).backward()
            o.step()
    for r, (w, b, o) in enumerate(singles):
        torch.testing.assert_close(W[r], w, rtol=0, atol=1e-12)
        torch.testing.assert_close(B[r], b, rtol=0, atol=1e-12)
        if method == "adl":
            assert opt.diagnostics()[0]["xi"][r] == pytest.approx(o.diagnostics()[0]["xi"])


def test_params_reseated_by_module_to_are_followed():
    X, y = toy_spiral(100)
    m = shlp()
    opt = Langevin(m.parameters(), h=0.1, gamma=1.0, tau=0.0)
    train(m, opt, X, y, 2)
    m.to(torch.float32)  # no-op dtype but re-assigns nothing; now force a re-seat:
    for p in m.parameters():
        p.data = p.data.clone()
    before = [p.detach().clone() for p in m.parameters()]
    train(m, opt, X, y, 1)
    assert any(not torch.equal(p, q) for p, q in zip(m.parameters(), before))


def test_build_optimizer_names_and_errors():
    m = shlp()
    assert isinstance(build_optimizer("adam", m, h=0.01), torch.optim.Adam)
    assert isinstance(build_optimizer("lol", m, h=0.1, tau1=1e-4), LOL)
    with pytest.raises(ValueError, match="method"):
        build_optimizer("rmsprop", m)
    with pytest.raises(ValueError, match="gama"):
        build_optimizer("langevin", m, h=0.1, gama=1.0, tau=0.0)


@pytest.mark.parametrize("name", ["adlala", "langevin"])
def test_trains_a_small_network_to_useful_accuracy(name):
    # 1-turn spiral, 20-node SHLP: full train accuracy well above chance after 3000 steps.
    X, y = toy_spiral(400, turns=1.0, seed=1)
    Xt, yt = toy_spiral(400, turns=1.0, seed=2)
    m = shlp(hidden=20, seed=0)
    opt = (AdLaLa(m, h=0.25, gamma=0.5, epsilon=0.1, seed=0) if name == "adlala"
           else Langevin(m.parameters(), h=0.25, gamma=0.5, tau=1e-4, seed=0))
    train(m, opt, X, y, 3000, batch=20)
    assert accuracy(m, Xt, yt) > 0.9


@pytest.mark.slow
def test_works_inside_torch_compile():
    # A compiled training step (forward, backward, step) follows the eager one; compiled
    # forward/backward kernels round differently (~1 ulp), hence the float32 tolerance.
    X, y = toy_spiral(100)
    a, b = shlp(seed=0), shlp(seed=0)
    oa, ob = AdLaLa(a, seed=0), AdLaLa(b, seed=0)

    def step(model, opt):
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(model(X).squeeze(-1), y)
        loss.backward()
        opt.step()
        return loss.detach()

    compiled = torch.compile(step)
    for _ in range(5):
        la, lb = step(a, oa), compiled(b, ob)
        torch.testing.assert_close(la, lb, rtol=1e-5, atol=1e-6)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)


def test_step_hooks_run_and_huge_finite_gradients_are_not_flagged():
    p = nn.Parameter(torch.zeros(4))
    opt = SGLD([p], h=1e-40, sigma=0.0)
    calls = []
    opt.register_step_pre_hook(lambda o, a, k: calls.append("pre"))
    opt.register_step_post_hook(lambda o, a, k: calls.append("post"))
    p.grad = torch.full((4,), 3e38)  # finite, but their sum overflows float32
    opt.step()
    assert calls == ["pre", "post"]
    assert torch.isfinite(p).all() and float(p[0]) < 0

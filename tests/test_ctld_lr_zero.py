"""CTLD at lr = 0: a step of zero length (docs/ctld.md, "Zero learning rate").

A group with lr = 0 keeps its parameters and momentum buffers bit for bit and draws no noise;
when every group has lr = 0, alpha, r_alpha, V_b and the phase-(i) count stay too, so inserting
such steps anywhere leaves the rest of the run bit-identical.
"""

from __future__ import annotations

import pytest
import torch

from heatbath.optim import CTLD


def _problem(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 3, generator=gen, dtype=torch.float64)
    y = torch.sin(x.sum(1, keepdim=True))
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(),
                                torch.nn.Linear(5, 1)).double()
    return model, x, y


def _step(model, opt, x, y, t: int) -> None:
    idx = torch.arange(16) + (16 * t) % 64
    opt.zero_grad()
    loss = ((model(x[idx]) - y[idx]) ** 2).mean()
    loss.backward()
    opt.step(loss=loss.detach())


def _snapshot(model, opt) -> dict:
    return {"params": [p.detach().clone() for p in model.parameters()],
            "bufs": [opt.state[p]["momentum_buffer"].clone() for p in model.parameters()],
            "alpha": opt.alpha, "r_alpha": opt.r_alpha, "bias": opt.bias.clone(),
            "gen": opt.generators[0].get_state(), "phase": opt.phase,
            "done": opt.diagnostics()["sampling_steps_done"]}


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a["params"], b["params"], strict=True)) and \
        all(torch.equal(x, y) for x, y in zip(a["bufs"], b["bufs"], strict=True)) and \
        (a["alpha"], a["r_alpha"], a["phase"], a["done"]) == \
        (b["alpha"], b["r_alpha"], b["phase"], b["done"]) and \
        torch.equal(a["bias"], b["bias"]) and torch.equal(a["gen"], b["gen"])


def _make(model, tempering: str, **kw) -> CTLD:
    return CTLD(model.parameters(), lr=0.02, momentum=0.8, num_data=50, sampling_steps=12,
                seed=5, tempering=tempering, weight_decay=1e-3, **kw)


@pytest.mark.parametrize("tempering", ["intensive", "paper"])
def test_zero_length_steps_change_nothing_and_do_not_count(tempering):
    # reference: 20 steps (12 sampling, 8 SGD); the other run inserts lr = 0 steps in phase (i)
    # (after step 4) and phase (ii) (after step 15). They change nothing at all, so the two
    # runs end bit-identical, with the hand-off after the same 12 counted steps.
    model, x, y = _problem()
    opt = _make(model, tempering)
    for t in range(20):
        _step(model, opt, x, y, t)
    ref = _snapshot(model, opt)

    model, x, y = _problem()
    opt = _make(model, tempering)
    calls = 0
    for t in range(20):
        if t in (4, 15):
            lrs = [g["lr"] for g in opt.param_groups]
            for g in opt.param_groups:
                g["lr"] = 0.0
            before = _snapshot(model, opt)
            for k in range(3):
                _step(model, opt, x, y, 100 + k)  # other batches: their gradients are unused
                calls += 1
                assert _same(_snapshot(model, opt), before)
            for g, lr in zip(opt.param_groups, lrs, strict=True):
                g["lr"] = lr
        _step(model, opt, x, y, t)
        calls += 1
        if t == 11:
            assert opt.phase == "optimization"  # 12 counted steps, 15 calls
    assert opt.steps == calls == 26
    assert _same(_snapshot(model, opt), ref)


def test_a_group_at_lr_zero_is_left_exactly_as_a_frozen_group():
    # group 1 at lr = 0 versus group 1 frozen (requires_grad False): no noise is drawn for it
    # and it adds no kinetic energy and no tempered degrees of freedom, so group 0 and alpha
    # follow the same trajectory bit for bit (weight_decay = 0: its potential term is the same
    # zero in both runs)
    runs = []
    for mode in ("lr0", "frozen"):
        model, x, y = _problem()
        groups = [{"params": list(model[0].parameters())},
                  {"params": list(model[2].parameters())}]
        opt = CTLD(groups, lr=0.02, momentum=0.8, num_data=50, sampling_steps=100, seed=1)
        if mode == "lr0":
            opt.param_groups[1]["lr"] = 0.0
        else:
            model[2].requires_grad_(False)
        bufs1 = [opt.state[p]["momentum_buffer"].clone() for p in model[2].parameters()]
        second = [p.detach().clone() for p in model[2].parameters()]
        for t in range(15):
            _step(model, opt, x, y, t)
        for p, b, q in zip(model[2].parameters(), bufs1, second, strict=True):
            assert torch.equal(p.detach(), q) and torch.equal(opt.state[p]["momentum_buffer"], b)
        runs.append((_snapshot(model, opt), opt.diagnostics()["H"]))
    (a, ha), (b, hb) = runs
    assert not torch.equal(a["params"][0], _problem()[0][0].weight.detach())  # group 0 moved
    assert _same(a, b) and ha == hb
    assert a["done"] == 15


def test_paper_alpha_clock_is_group_zero_lr():
    # "paper": alpha's step is kappa sqrt(lr_0/N); lr_0 = 0 stops alpha's clock (alpha,
    # r_alpha, V_b stay) while group 1 (lr > 0) moves and the step counts toward L_s
    model, x, y = _problem()
    groups = [{"params": list(model[0].parameters())}, {"params": list(model[2].parameters())}]
    opt = CTLD(groups, lr=0.02, momentum=0.8, num_data=50, sampling_steps=100, seed=2,
               tempering="paper")
    for t in range(3):
        _step(model, opt, x, y, t)
    opt.param_groups[0]["lr"] = 0.0
    before = _snapshot(model, opt)
    _step(model, opt, x, y, 3)
    after = _snapshot(model, opt)
    assert (after["alpha"], after["r_alpha"]) == (before["alpha"], before["r_alpha"])
    assert torch.equal(after["bias"], before["bias"])
    assert all(torch.equal(p, q) for p, q in zip(after["params"][:2], before["params"][:2]))
    assert not torch.equal(after["params"][2], before["params"][2])
    assert after["done"] == before["done"] + 1


def test_warm_up_from_zero_delays_the_hand_off_by_the_zero_steps():
    # LambdaLR with factor 0 at step 0: the first call has zero length, so phase (i) ends
    # after sampling_steps + 1 calls
    model, x, y = _problem()
    opt = CTLD(model.parameters(), lr=0.02, momentum=0.8, num_data=50, sampling_steps=5, seed=0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, i / 2))
    first = [p.detach().clone() for p in model.parameters()]
    for t in range(6):
        assert opt.phase == "sampling"
        _step(model, opt, x, y, t)
        if t == 0:
            assert all(torch.equal(p.detach(), q) for p, q in zip(model.parameters(), first))
        sched.step()
    assert opt.phase == "optimization" and opt.steps == 6


def test_lr_zero_is_refused_at_creation_and_negative_lr_at_the_step():
    p = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="scheduler may set lr to 0"):
        CTLD([p], lr=0.0, momentum=0.5, num_data=10, sampling_steps=5)
    opt = CTLD([p], lr=0.1, momentum=0.5, num_data=10, sampling_steps=5, seed=0)
    with pytest.raises(ValueError, match="lr"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 0.0})
    opt.param_groups[0]["lr"] = -0.1
    p.grad = torch.ones_like(p)
    before = opt.state[p]["momentum_buffer"].clone()
    with pytest.raises(ValueError, match="lr"):
        opt.step(loss=0.0)
    assert torch.equal(opt.state[p]["momentum_buffer"], before) and opt.steps == 0

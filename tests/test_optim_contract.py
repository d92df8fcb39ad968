"""The optimizer contract (docs/optimizers.md), run against every optimizer of the registry.

Each case here was a silent failure of the flat-buffer design or a gap between heatbath's
optimizers and ``torch.optim``'s behaviour: frozen and gradient-less parameters, schedules that
reach lr = 0 or cycle the momentum, dtype and layout changes after construction, checkpoint
size, ``add_param_group``, state dicts of other parameters, non-finite gradients and bad
parameters.
"""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from heatbath.optim import AdLaLa, Langevin, NonFiniteGradientError

from .optim_registry import IDS, REGISTRY, OptimizerInfo, data, loss_of, mlp, step, train

ALL = pytest.mark.parametrize("info", REGISTRY, ids=IDS)


def _base_only(info: OptimizerInfo) -> None:
    if not info.base:
        pytest.skip(f"{info.name} is not yet on heatbath's optimizer base")


def _equal(a, b) -> bool:
    """Recursive bit-for-bit equality of (nested) state-dict values."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and \
            bool(torch.equal(a, b) or (a.isnan() & b.isnan()).sum() + (a == b).sum() == a.numel())
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


def _param_state(opt, p):
    return copy.deepcopy(opt.state.get(p, {}))


# --------------------------------------------------------------------------------------------
# 1. frozen and gradient-less parameters
# --------------------------------------------------------------------------------------------
@ALL
@pytest.mark.parametrize("set_to_none", [True, False])
def test_frozen_and_gradless_parameters_are_untouched(info, set_to_none):
    _base_only(info)
    model = mlp(unused=True)
    opt = info.make(model)
    train(info, model, opt, 3, set_to_none=set_to_none)
    frozen = model[2]
    frozen.requires_grad_(False)  # frozen after the optimizer was built
    watched = [*frozen.parameters(), *model.unused.parameters()]  # unused: grad stays None
    before = [p.detach().clone() for p in watched]
    states = [_param_state(opt, p) for p in watched]
    moving = model[0].weight.detach().clone()
    train(info, model, opt, 4, seed=1, set_to_none=set_to_none)
    for p, b, s in zip(watched, before, states):
        assert torch.equal(p.detach(), b)
        assert _equal(_param_state(opt, p), s)  # momentum neither decayed nor noised
    assert not torch.equal(model[0].weight.detach(), moving)


@ALL
def test_parameters_frozen_before_build_get_no_state(info):
    _base_only(info)
    model = mlp()
    model[0].requires_grad_(False)
    opt = info.make(model)
    before = [p.detach().clone() for p in model[0].parameters()]
    states = [_param_state(opt, p) for p in model[0].parameters()]
    train(info, model, opt, 4)
    for p, b, s in zip(model[0].parameters(), before, states):
        assert torch.equal(p.detach(), b)
        assert _equal(_param_state(opt, p), s)


@pytest.mark.parametrize("cls", [AdLaLa, __import__("heatbath.optim", fromlist=["LOL"]).LOL])
def test_layer_partition_takes_the_first_trainable_layer(cls):
    model = mlp()
    model[0].requires_grad_(False)
    opt = cls(model)
    assert opt.param_groups[0]["params"] == [model[2].weight, model[2].bias]
    assert opt.param_groups[1]["params"] == [model[4].weight, model[4].bias]


def test_adaptive_langevin_xi_of_a_skipped_tensor_stays():
    # one xi per tensor: the skipped tensor's xi is neither frictioned nor driven
    model = mlp()
    from heatbath.optim import AdaptiveLangevin
    opt = AdaptiveLangevin(model.parameters(), h=0.1, tau=1e-4, sigma_A=0.01, epsilon=0.5)
    info = REGISTRY[IDS.index("adl")]
    train(info, model, opt, 3)
    xi0 = opt.diagnostics()[0]["xi"]
    model[2].weight.requires_grad_(False)
    train(info, model, opt, 3, seed=1)
    xi1 = opt.diagnostics()[0]["xi"]
    assert xi1[2] == xi0[2]
    assert xi1[0] != xi0[0]


# --------------------------------------------------------------------------------------------
# 2. schedules: lr = 0, OneCycleLR, CyclicLR, momentum and group.update
# --------------------------------------------------------------------------------------------
@ALL
def test_lr_zero_is_a_valid_step_that_moves_nothing(info):
    _base_only(info)
    model = mlp()
    opt = info.make(model)
    if info.lr_zero_coasts:  # its velocity is drawn at construction with the lr given then
        opt = info.make(model, lr=0.0)
    for g in opt.param_groups:
        g["lr"] = 0.0
    before = [p.detach().clone() for p in model.parameters()]
    train(info, model, opt, 3)  # from a fresh state: nothing moves
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p.detach(), b)


@ALL
@pytest.mark.parametrize("sched", ["linear", "cosine"])
def test_schedules_down_to_zero(info, sched):
    _base_only(info)
    model = mlp()
    opt = info.make(model)
    if sched == "linear":
        s = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0, end_factor=0.0,
                                              total_iters=4)
    else:
        s = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4, eta_min=0.0)
    X, y = data()
    for i in range(6):
        before = [p.detach().clone() for p in model.parameters()]
        lr0 = opt.param_groups[0]["lr"]
        step(info, model, opt, X, y)
        s.step()
        if lr0 == 0.0 and not info.lr_zero_coasts and i >= 4:
            for p, b in zip(model.parameters(), before):
                assert torch.equal(p.detach(), b)
    assert opt.param_groups[0]["lr"] == 0.0 or sched == "cosine"


def _check_momentum(opt) -> None:
    for g in opt.param_groups:
        if "gamma" in g and g.get("method") in ("baoab", "overdamped"):
            assert g["momentum"] == pytest.approx(math.exp(-g["gamma"] * g["h"]), rel=1e-12,
                                                  abs=1e-15)
            assert g["h"] == g["lr"]


@ALL
@pytest.mark.parametrize("sched", ["onecycle", "cyclic"])
def test_one_cycle_and_cyclic_with_defaults(info, sched):
    _base_only(info)
    model = mlp()
    opt = info.make(model)

    def build():
        if sched == "onecycle":
            return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=12)
        return torch.optim.lr_scheduler.CyclicLR(opt, base_lr=0.005, max_lr=0.05, step_size_up=3)

    if not info.momentum:
        with pytest.raises(ValueError, match="momentum"):
            build()
        return
    s = build()
    X, y = data()
    momenta = set()
    for _ in range(10):
        step(info, model, opt, X, y)
        s.step()
        _check_momentum(opt)
        momenta.add(opt.param_groups[-1]["momentum"])
    assert len(momenta) > 3  # the momentum really cycles
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_momentum_writes_set_gamma_and_update_is_picked_up():
    p = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = Langevin([p], h=0.2, gamma=1.0, tau=0.0, seed=0)
    g = opt.param_groups[0]
    assert g["momentum"] == pytest.approx(math.exp(-0.2))
    g["momentum"] = 0.5
    assert g["gamma"] == pytest.approx(-math.log(0.5) / 0.2)
    g["lr"] = 0.1  # gamma stays, momentum follows h
    assert g["h"] == 0.1 and g["momentum"] == pytest.approx(0.5 ** 0.5)
    g.update({"lr": 0.3, "momentum": 0.25})  # bypasses __setitem__: taken in at the step
    q = nn.Parameter(p.detach().clone())
    ref = Langevin([q], h=0.3, gamma=-math.log(0.25) / 0.3, tau=0.0, seed=0)
    for x in (p, q):
        x.grad = 2 * x.detach()
    opt.step()
    ref.step()
    assert g["h"] == 0.3 and g["gamma"] == pytest.approx(-math.log(0.25) / 0.3)
    assert torch.equal(p.detach(), q.detach())
    g.update({"lr": -1.0})
    p.grad = torch.ones_like(p)
    with pytest.raises(ValueError, match="lr"):
        opt.step()


def test_group_given_by_lr_and_momentum():
    p = nn.Parameter(torch.zeros(3))
    opt = Langevin([{"params": [p], "lr": 0.2, "momentum": 0.9}], h=0.1, gamma=1.0, tau=0.0)
    g = opt.param_groups[0]
    assert g["h"] == 0.2 and g["gamma"] == pytest.approx(-math.log(0.9) / 0.2)
    with pytest.raises(ValueError, match="momentum"):
        Langevin([{"params": [p], "momentum": 0.9, "gamma": 3.0}], h=0.1, gamma=1.0, tau=0.0)


# --------------------------------------------------------------------------------------------
# 3. dtype and layout: as torch.optim.SGD
# --------------------------------------------------------------------------------------------
@ALL
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_dtype_change_after_build_is_kept_as_sgd_does(info, dtype):
    _base_only(info)
    ours, theirs = mlp(), mlp()
    opt = info.make(ours)
    sgd = torch.optim.SGD(theirs.parameters(), lr=0.01, momentum=0.9)
    for m, o, inf in ((ours, opt, info), (theirs, sgd, REGISTRY[0])):
        train(inf if o is opt else info, m, o, 2) if o is opt else _sgd_train(m, o, 2)
        m.to(dtype)
    train(info, ours, opt, 2)
    _sgd_train(theirs, sgd, 2)
    for p, q in zip(ours.parameters(), theirs.parameters()):
        assert p.dtype == q.dtype == dtype
        assert torch.isfinite(p).all()


def _sgd_train(model, opt, steps):
    X, y = data(dtype=next(model.parameters()).dtype)
    for _ in range(steps):
        opt.zero_grad()
        loss_of(model, X, y).backward()
        opt.step()


@ALL
def test_swap_module_params_on_conversion(info):
    _base_only(info)
    old = torch.__future__.get_swap_module_params_on_conversion()
    torch.__future__.set_swap_module_params_on_conversion(True)
    try:
        model = mlp()
        opt = info.make(model)
        train(info, model, opt, 2)
        w = model[0].weight
        model.to(torch.float64)  # swaps the tensors' contents in place
        assert model[0].weight is w and w.dtype == torch.float64
        before = w.detach().clone()
        train(info, model, opt, 2)
        assert w.dtype == torch.float64 and not torch.equal(w.detach(), before)
    finally:
        torch.__future__.set_swap_module_params_on_conversion(old)


@ALL
def test_channels_last_stays_channels_last(info):
    _base_only(info)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(12, 1))
    model = model.to(memory_format=torch.channels_last)
    sgd_model = copy.deepcopy(model)
    opt = info.make(model)
    sgd = torch.optim.SGD(sgd_model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(4, 2, 4, 4).to(memory_format=torch.channels_last)
    y = torch.randn(4, 1)
    for m, o in ((model, opt), (sgd_model, sgd)):
        for _ in range(3):
            o.zero_grad()
            loss = ((m(x) - y) ** 2).mean()
            loss.backward()
            o.step(loss=loss.detach()) if (o is opt and info.needs_loss) else o.step()
    w, v = model[0].weight, sgd_model[0].weight
    cl = torch.channels_last
    assert w.is_contiguous(memory_format=cl) == v.is_contiguous(memory_format=cl) is True


# --------------------------------------------------------------------------------------------
# 4. checkpoint size
# --------------------------------------------------------------------------------------------
@ALL
def test_a_layer_state_dict_holds_only_the_layer(info):
    _base_only(info)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 300), nn.Tanh(),
                          nn.Linear(300, 1))
    opt = info.make(model)
    train(info, model, opt, 2)
    buf = io.BytesIO()
    torch.save(model[0].state_dict(), buf)
    # 12 floats of data; torch.save's zip container costs ~1.5 kB per file. The whole model
    # holds ~1500 floats (6 kB): a layer saved with its group's storage would exceed 6 kB.
    assert buf.getbuffer().nbytes < 4000


# --------------------------------------------------------------------------------------------
# 5. add_param_group
# --------------------------------------------------------------------------------------------
@ALL
def test_add_param_group_accepts_unnamed_params_and_is_atomic(info):
    _base_only(info)
    model = mlp()
    extra = nn.Linear(2, 2)
    part = list(model[:4].parameters()) if not info.by_layer else None
    opt = info.make(model[:4] if info.by_layer else model, params=part)
    n = len(opt.param_groups)
    with pytest.raises((TypeError, ValueError)):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(2)),
                                        torch.zeros(2, dtype=torch.int64)]})
    with pytest.raises(ValueError, match="lr"):
        opt.add_param_group({"params": list(extra.parameters()), "lr": -1.0})
    assert len(opt.param_groups) == n
    assert all(p not in opt.state or not opt.state[p] for p in extra.parameters())
    opt.add_param_group({"params": list(extra.parameters())})
    assert len(opt.param_groups) == n + 1


@pytest.mark.parametrize("name", ["adlala", "lol"])
def test_new_group_inherits_the_rest_partition(name):
    info = REGISTRY[IDS.index(name)]
    model = mlp()
    opt = info.make(model)
    rest = opt.param_groups[1]
    extra = nn.Linear(2, 2)
    opt.add_param_group({"params": list(extra.parameters())})
    new = opt.param_groups[2]
    for key in ("method", "gamma", "tau"):
        assert new[key] == rest[key]
    opt.add_param_group({"params": [nn.Parameter(torch.zeros(2))], "tau": 0.5})
    assert opt.param_groups[3]["tau"] == 0.5 and opt.param_groups[3]["method"] == rest["method"]


# --------------------------------------------------------------------------------------------
# 6. state dicts of other parameters
# --------------------------------------------------------------------------------------------
@ALL
def test_load_state_dict_names_the_first_mismatched_parameter(info):
    _base_only(info)
    model = mlp()
    named = list(model.named_parameters())
    if info.by_layer:
        a = info.make(model, params=(named[:2], named[2:]))
        b = info.make(model, params=(named[:2], [named[3], named[2], *named[4:]]))
    else:
        a = info.make(model, params=named)
        b = info.make(model, params=[named[1], named[0], *named[2:]])
    train(info, model, a, 2)
    with pytest.raises(ValueError, match=r"'(0|2)\.(weight|bias)'"):
        b.load_state_dict(a.state_dict())


# --------------------------------------------------------------------------------------------
# finiteness and bad parameters
# --------------------------------------------------------------------------------------------
@ALL
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_gradient_changes_nothing(info, bad):
    _base_only(info)
    model = mlp()
    opt = info.make(model)
    train(info, model, opt, 3)
    sd = copy.deepcopy(opt.state_dict())
    params = [p.detach().clone() for p in model.parameters()]
    X, y = data()
    opt.zero_grad()
    loss = loss_of(model, X, y)
    loss.backward()
    model[2].weight.grad[1, 1] = bad
    with pytest.raises(NonFiniteGradientError, match="non-finite"):
        opt.step(loss=loss.detach()) if info.needs_loss else opt.step()
    for p, q in zip(model.parameters(), params):
        assert torch.equal(p.detach(), q)
    assert _equal(opt.state_dict(), sd)


@ALL
@pytest.mark.parametrize("kind", ["int", "complex", "meta"])
def test_bad_parameters_are_refused_with_a_clear_message(info, kind):
    _base_only(info)
    if kind == "int":
        p = torch.zeros(3, dtype=torch.int64)
    elif kind == "complex":
        p = nn.Parameter(torch.zeros(3, dtype=torch.complex64))
    else:
        p = nn.Parameter(torch.zeros(3, device="meta"))
    match = {"int": "floating", "complex": "complex", "meta": "meta"}[kind]
    model = mlp()
    with pytest.raises((TypeError, ValueError), match=match):
        info.make(model, params=([p], []) if info.by_layer else [p])
    opt = info.make(model)
    n = len(opt.param_groups)
    with pytest.raises((TypeError, ValueError), match=match):
        opt.add_param_group({"params": [p]})
    assert len(opt.param_groups) == n


# --------------------------------------------------------------------------------------------
# the torch.optim API
# --------------------------------------------------------------------------------------------
@ALL
def test_closure_and_step_hooks(info):
    _base_only(info)
    model = mlp()
    opt = info.make(model)
    X, y = data()
    calls = []
    h1 = opt.register_step_pre_hook(lambda o, a, k: calls.append("pre"))
    h2 = opt.register_step_post_hook(lambda o, a, k: calls.append("post"))
    h3 = register_optimizer_step_post_hook(lambda o, a, k: calls.append("global"))
    try:
        def closure():
            opt.zero_grad()
            loss = loss_of(model, X, y)
            loss.backward()
            return loss

        out = opt.step(closure)
        assert isinstance(out, torch.Tensor) and out.ndim == 0
    finally:
        for h in (h1, h2, h3):
            h.remove()
    assert calls == ["pre", "post", "global"]


@ALL
def test_state_dict_round_trip_is_bit_identical(info):
    _base_only(info)
    model = mlp()
    opt = info.make(model, seed=3)
    train(info, model, opt, 4)
    buf = io.BytesIO()
    torch.save({"m": model.state_dict(), "o": opt.state_dict()}, buf)
    train(info, model, opt, 4, seed=1)
    ref = [p.detach().clone() for p in model.parameters()]
    buf.seek(0)
    ck = torch.load(buf, weights_only=False)
    model2 = mlp(seed=5)
    opt2 = info.make(model2, seed=99)
    model2.load_state_dict(ck["m"])
    opt2.load_state_dict(ck["o"])
    train(info, model2, opt2, 4, seed=1)
    for p, q in zip(model2.parameters(), ref):
        assert torch.equal(p.detach(), q)


@ALL
def test_fixed_seed_reproduces_and_none_follows_torch_manual_seed(info):
    _base_only(info)
    runs = []
    for seed in (7, 7, 8):
        model = mlp()
        train(info, model, info.make(model, seed=seed), 5)
        runs.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


@pytest.mark.slow
@ALL
def test_works_inside_torch_compile(info):
    # a compiled training step (forward, backward, step) follows the eager one; compiled
    # kernels round differently (~1 ulp), hence the float32 tolerance
    _base_only(info)
    a, b = mlp(), mlp()
    oa, ob = info.make(a, seed=0), info.make(b, seed=0)
    X, y = data()
    compiled = torch.compile(lambda m, o: step(info, m, o, X, y))
    for _ in range(3):
        la, lb = step(info, a, oa, X, y), compiled(b, ob)
        torch.testing.assert_close(la, lb, rtol=1e-5, atol=1e-6)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)


def test_a_refused_load_changes_nothing():
    model = mlp()
    info = REGISTRY[IDS.index("partitioned")]
    a = info.make(model)
    train(info, model, a, 2)
    from heatbath.optim import Partitioned
    ps = list(model.parameters())
    # same groups and sizes, other methods: refused by the method check, after torch's checks
    b = Partitioned([{"params": ps[:2]}, {"params": ps[2:4]}, {"params": ps[4:]}], h=0.1,
                    method="sgld", sigma=0.01)
    train(info, model, b, 2)
    before = copy.deepcopy(b.state_dict())
    with pytest.raises(ValueError, match="method"):
        b.load_state_dict(a.state_dict())
    assert _equal(b.state_dict(), before)


def test_the_given_gamma_is_kept_exactly():
    # gamma is not round-tripped through momentum = exp(-gamma h) at construction or on load
    p = nn.Parameter(torch.zeros(2))
    opt = Langevin([p], h=0.3, gamma=0.7, tau=0.0)
    assert opt.param_groups[0]["gamma"] == 0.7
    opt2 = Langevin([p], h=0.3, gamma=1.3, tau=0.0)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.param_groups[0]["gamma"] == 0.7

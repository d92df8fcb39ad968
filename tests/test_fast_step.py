"""The fast step of small float32 models (heatbath/optim/_fast.py) against the general path.

Contract: once a :class:`~heatbath.optim.Partitioned` optimizer takes its steps through
``FastStep``, parameters, momenta, ξ and the step count are BIT FOR BIT those of the general
path; whatever the fast step cannot handle (a frozen parameter, a missing gradient, a written
hyperparameter, a replaced buffer, a loaded state dict, another dtype, a new group, a NaN/inf
gradient) goes through the general path with nothing changed before it.

Every comparison runs the same training twice from the same initial model and seed: once as
shipped, once with the fast step switched off on the optimizer instance (``_fast_step``
returning False), which is the general path. ``FastStep.run`` is wrapped to record which steps
really took the fast path, so that a test cannot pass because the fast path was never used.
The native kernels the fast step's one call (``hb_plan_step``) runs per group
(``hb_sgld_multi``, ``hb_baoab_multi``, ``hb_adl_group``, the kinetic draw) are checked against
the single-tensor kernels and the pure-Python reference; the single-tensor kernels themselves
are in tests/test_native.py.
"""

from __future__ import annotations

import copy
import ctypes
import math
import random
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from heatbath.optim import (
    LOL,
    SGLD,
    AdaptiveLangevin,
    AdLaLa,
    Langevin,
    NonFiniteGradientError,
    Partitioned,
    _native,
)
from heatbath.optim import _philox as P
from heatbath.optim._fast import FastStep, fast_max

from ._helpers import bce_step, shlp, toy_spiral

if _native.lib() is None:
    pytest.skip("the native kernels are not built here (no C compiler or HEATBATH_NATIVE=0)",
                allow_module_level=True)

F32 = torch.float32
X, Y = toy_spiral(200)
HIDDEN = 8
Maker = Callable[[nn.Module], Partitioned]
Event = Callable[[int, nn.Module, Partitioned], None]


# ------------------------------------------------------------------------------ the optimizers
def _mixed(model: nn.Module) -> Partitioned:
    """One group of each method (AdL with a thermostat per tensor)."""
    return Partitioned([
        {"params": [model[0].weight], "method": "adl", "tau": 1e-3, "sigma_A": 0.02,
         "epsilon": 0.05},
        {"params": [model[0].bias], "method": "sgld", "sigma": 0.01},
        {"params": [model[2].weight], "method": "overdamped", "tau": 1e-3},
        {"params": [model[2].bias], "method": "baoab", "gamma": 0.5, "tau": 1e-3},
    ], h=0.05, seed=11)


MAKERS: dict[str, Maker] = {
    "langevin": lambda m: Langevin(m.parameters(), h=0.05, gamma=1.0, tau=1e-3, seed=1),
    "langevin_named": lambda m: Langevin(m.named_parameters(), h=0.05, gamma=1.0, tau=1e-3,
                                         seed=2),
    "sgld": lambda m: SGLD(m.parameters(), h=0.05, sigma=0.01, seed=3),
    "lol": lambda m: LOL(m, h=0.1, gamma1=0.5, tau1=1e-3, seed=4),
    "adlala": lambda m: AdLaLa(m, h=0.1, gamma=0.5, tau1=1e-3, tau2=1e-3, sigma_A=0.02,
                               epsilon=0.05, seed=5),
    "adl_tensor": lambda m: AdaptiveLangevin(m.parameters(), h=0.05, tau=1e-3, sigma_A=0.02,
                                             epsilon=0.05, xi_per="tensor", seed=6),
    "adl_group": lambda m: AdaptiveLangevin(m.parameters(), h=0.05, tau=1e-3, sigma_A=0.02,
                                            epsilon=0.05, xi_per="group", seed=7),
    "adl_per_entry": lambda m: AdaptiveLangevin(m.parameters(), h=0.05, tau=1e-3, sigma_A=0.02,
                                                epsilon=0.5, epsilon_scale="per_entry",
                                                seed=8),
    "partitioned_mixed": _mixed,
}


MAKERS_H = {"langevin": 0.05, "adlala": 0.1, "sgld": 0.05}  # their h, for the scheduler test


# ------------------------------------------------------------------------------------ helpers
@pytest.fixture
def fast_log(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, bool]]:
    """Every ``FastStep.run`` call as (id of the optimizer, its step count, True if the fast
    path took the step)."""
    log: list[tuple[int, int, bool]] = []
    run = FastStep.run

    def logged(self: FastStep, opt: Any) -> bool:
        ok = run(self, opt)
        log.append((id(opt), opt.step_count, ok))
        return ok

    monkeypatch.setattr(FastStep, "run", logged)
    return log


def _fast_steps(log: list[tuple[int, int, bool]], opt: Partitioned) -> list[int]:
    """The step counts at which ``opt``'s step went through the fast path."""
    return [s for o, s, ok in log if o == id(opt) and ok]


def _pair(make: Maker, monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype = F32
          ) -> tuple[tuple[nn.Module, Partitioned], tuple[nn.Module, Partitioned]]:
    """(model, optimizer) as shipped and the same with the fast step switched off."""
    out = []
    for fast in (True, False):
        model = shlp(HIDDEN, seed=0, dtype=dtype)
        opt = make(model)
        if not fast:
            monkeypatch.setattr(opt, "_fast_step", lambda: False)
        out.append((model, opt))
    return out[0], out[1]


def _backward(model: nn.Module, i: int) -> None:
    g = torch.Generator().manual_seed(1000 + i)
    idx = torch.randint(0, len(X), (25,), generator=g)
    dtype = next(model.parameters()).dtype
    bce_step(model, X.to(dtype), Y.to(dtype), idx).backward()


def _train(model: nn.Module, opt: Partitioned, start: int, stop: int,
           event: Event | None = None, set_to_none: bool = True) -> None:
    """Steps ``start`` .. ``stop - 1``; ``event(i, model, opt)`` runs after the backward."""
    for i in range(start, stop):
        opt.zero_grad(set_to_none=set_to_none)
        _backward(model, i)
        if event is not None:
            event(i, model, opt)
        opt.step()


def _bits(t: torch.Tensor) -> torch.Tensor:
    t = t.detach().contiguous()
    ints = {2: torch.int16, 4: torch.int32, 8: torch.int64}
    return t.view(ints[t.element_size()])


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit for bit (NaN payloads and the sign of zero included)."""
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(_bits(a), _bits(b))


def _snapshot(model: nn.Module, opt: Partitioned) -> dict[str, Any]:
    """Parameters, per-parameter state, group state (ξ) and step count, cloned."""
    def clone(v: Any) -> Any:
        return v.detach().clone() if isinstance(v, torch.Tensor) else v

    params = [p for g in opt.param_groups for p in g["params"]]
    return {
        "params": [clone(p) for p in model.parameters()],
        "state": [{k: clone(v) for k, v in opt.state.get(p, {}).items()} for p in params],
        "group_state": [{k: clone(v) for k, v in gs.items()} for gs in opt.group_state],
        "step": opt.step_count,
    }


def _assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["step"] == b["step"]
    assert len(a["params"]) == len(b["params"])
    for j, (x, y) in enumerate(zip(a["params"], b["params"])):
        assert _same(x, y), f"parameter {j} differs"
    for j, (x, y) in enumerate(zip(a["state"], b["state"])):
        assert x.keys() == y.keys(), f"state keys of parameter {j} differ"
        for k in x:
            if isinstance(x[k], torch.Tensor):
                assert _same(x[k], y[k]), f"state[{k!r}] of parameter {j} differs"
            else:
                assert x[k] == y[k], f"state[{k!r}] of parameter {j} differs"
    for i, (x, y) in enumerate(zip(a["group_state"], b["group_state"])):
        assert x.keys() == y.keys()
        for k in x:
            assert _same(x[k], y[k]), f"group_state[{i}][{k!r}] differs"


def _compare(make: Maker, monkeypatch: pytest.MonkeyPatch, steps: int = 30,
             event: Event | None = None, **kw: Any) -> tuple[Partitioned, Partitioned]:
    """Train both ways with the same ``event`` and assert bit-for-bit equal results."""
    (mf, of), (mg, og) = _pair(make, monkeypatch)
    _train(mf, of, 0, steps, event, **kw)
    _train(mg, og, 0, steps, event, **kw)
    _assert_same(_snapshot(mf, of), _snapshot(mg, og))
    return of, og


# ----------------------------------------------------------------- 1. fast == general, bitwise
@pytest.mark.parametrize("name", list(MAKERS))
def test_fast_step_equals_the_general_path_bit_for_bit(name, monkeypatch, fast_log):
    of, og = _compare(MAKERS[name], monkeypatch)
    assert of._fast is not None
    # every step took the fast path, but the first where it creates momenta and ξ
    first = 0 if all(g["method"] == "sgld" for g in of.param_groups) else 1
    assert _fast_steps(fast_log, of) == list(range(first, 30))
    assert _fast_steps(fast_log, og) == []
    assert og._fast is None


def test_fast_step_with_zeroed_gradients_kept(monkeypatch, fast_log):
    """zero_grad(set_to_none=False) keeps the gradient tensors: the fast step reads them."""
    of, _ = _compare(MAKERS["adlala"], monkeypatch, set_to_none=False)
    assert _fast_steps(fast_log, of) == list(range(1, 30))


def test_fast_step_with_a_closure(monkeypatch, fast_log):
    (mf, of), (mg, og) = _pair(MAKERS["langevin"], monkeypatch)
    losses = []
    for model, opt in ((mf, of), (mg, og)):
        out = []
        for i in range(12):
            def closure(model: nn.Module = model, opt: Partitioned = opt, i: int = i) -> float:
                opt.zero_grad()
                g = torch.Generator().manual_seed(1000 + i)
                loss = bce_step(model, X, Y, torch.randint(0, len(X), (25,), generator=g))
                loss.backward()
                return float(loss.detach())
            out.append(opt.step(closure))
        losses.append(out)
    assert losses[0] == losses[1]
    _assert_same(_snapshot(mf, of), _snapshot(mg, og))
    assert _fast_steps(fast_log, of) == list(range(1, 12))


def _quadratic_run(opt_make: Callable[[list[nn.Parameter]], Partitioned], n: int, fast: bool,
                   monkeypatch: pytest.MonkeyPatch, steps: int = 4
                   ) -> tuple[list[nn.Parameter], Partitioned]:
    """``steps`` steps on 0.5 sum(k θ²) over one parameter of ``n`` entries."""
    g = torch.Generator().manual_seed(n)
    params = [nn.Parameter(torch.randn(n, generator=g))]
    k = torch.rand(n, generator=g) + 0.5
    opt = opt_make(params)
    if not fast:
        monkeypatch.setattr(opt, "_fast_step", lambda: False)
    for _ in range(steps):
        params[0].grad = k * params[0].detach()
        opt.step()
    return params, opt


@pytest.mark.parametrize("extra", [-1, 0])
def test_fast_step_only_below_the_threading_size(extra, monkeypatch, fast_log):
    """Up to fast_max() - 1 entries the fast step takes the steps and equals the general path
    (which, with several threads, splits tensors from 2 * PARALLEL_MIN entries on); from
    fast_max() on the general path takes them."""
    n = fast_max() + extra
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        def make(ps: list[nn.Parameter]) -> Partitioned:
            return AdaptiveLangevin(ps, h=0.05, tau=1e-3, sigma_A=0.02, epsilon=0.5,
                                    epsilon_scale="per_entry", seed=9)

        (pf, of), (pg, og) = (_quadratic_run(make, n, fast, monkeypatch) for fast in (1, 0))
    finally:
        torch.set_num_threads(threads)
    assert _same(pf[0], pg[0]) and _same(of.group_state[0]["xi"], og.group_state[0]["xi"])
    assert _fast_steps(fast_log, of) == ([1, 2, 3] if extra < 0 else [])


@pytest.mark.parametrize("kw", [{"noise": "eager"}, {"foreach": False}, {"tau": 0.0}])
def test_groups_that_do_not_qualify_take_the_general_path(kw, monkeypatch, fast_log):
    """Eager noise, foreach=False and noiseless BAOAB (d = 0) are not the fast step's."""
    def make(ps: list[nn.Parameter]) -> Partitioned:
        return Langevin(ps, **{"h": 0.05, "gamma": 1.0, "tau": 1e-3, "seed": 4, **kw})

    pf, of = _quadratic_run(make, 50, True, monkeypatch, steps=6)
    pg, _ = _quadratic_run(make, 50, False, monkeypatch, steps=6)
    assert _same(pf[0], pg[0])
    assert fast_log == [] and of._fast is None


# ------------------------------------------------------- 2. the native kernels of the fast path
def test_kinetic_draw_native_equals_the_python_reference():
    lib = _native.lib()
    rng = random.Random(20261201)
    sizes = [1, 2, 3, 7, 1000, 10**6]
    cases = 0
    for i in range(3000):
        key = rng.choice([0, 1, 2**32 - 1, 2**32, 2**63 - 1, rng.randrange(2**63)])
        step = rng.choice([0, 1, 2**32 - 1, 2**32 + 1, 2**62, rng.randrange(2**62 + 1)])
        replica = rng.randrange(4)
        n = sizes[i % len(sizes)]
        a2 = rng.choice([0.0, rng.uniform(0.0, 1e-6), rng.uniform(0.0, 10.0) * n,
                         math.exp(rng.uniform(-40.0, 20.0))])
        c = rng.choice([0.0, rng.uniform(1e-6, 1e-1), math.exp(rng.uniform(-20.0, 2.0))])
        ref = P.adl_kinetic_draw(key, step, replica, n, a2, c)
        got = lib.hb_adl_kinetic_draw(key, step, replica, n, a2, c)
        assert got == ref, (key, step, replica, n, a2, c, got, ref)
        if c == 0.0:
            assert got == a2
        cases += 1
    assert cases == 3000


def _arr(values: list[int], dtype: torch.dtype = torch.int64) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


def _ptrs(ts: list[torch.Tensor], keep: list[Any]) -> int:
    """The address of an int64 array of the tensors' addresses (kept alive in ``keep``)."""
    arr = _arr([t.data_ptr() for t in ts])
    keep.append(arr)
    return arr.data_ptr()


def _u64(values: list[int]) -> Any:
    return (ctypes.c_uint64 * len(values))(*values)


SIZES = [1, 33, 100, 7]
KEYS = [2**63 - 1, 5, 2**40 + 3, 12345]


def _tensors(seed: int, scale: float = 1.0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [scale * torch.randn(n, generator=g) for n in SIZES]


@pytest.mark.parametrize("bad_at", [None, 0, 3])
def test_multi_kernels_equal_one_call_per_tensor_and_check_changes_nothing(bad_at):
    lib = _native.lib()
    th, mo, gr = _tensors(1), _tensors(2, 0.3), _tensors(3, 0.1)
    if bad_at is not None:
        gr[bad_at][-1] = math.nan
    offs = [0, 3, 2**33, 0]
    k, step = len(SIZES), 2**32 + 9
    n, key, off = _arr(SIZES), _u64(KEYS), _u64(offs)
    kick, hh, c, d = -0.1, 0.05, 0.9, 0.02
    keep: list[Any] = []
    # BAOAB
    t1, m1 = [t.clone() for t in th], [m.clone() for m in mo]
    t2, m2 = [t.clone() for t in th], [m.clone() for m in mo]
    bad = lib.hb_baoab_multi(k, _ptrs(t1, keep), _ptrs(m1, keep),
                             _ptrs(gr, keep), n.data_ptr(), ctypes.addressof(key),
                             ctypes.addressof(off), step, kick, hh, c, d, 1)
    if bad_at is None:
        assert bad == 0
        for j in range(k):
            lib.hb_baoab(t2[j].data_ptr(), m2[j].data_ptr(), gr[j].data_ptr(), SIZES[j],
                         KEYS[j], step, offs[j], kick, hh, c, d)
    else:
        assert bad == 1
    for j in range(k):  # with a bad gradient: t2, m2 are the untouched copies
        assert _same(t1[j], t2[j]) and _same(m1[j], m2[j])
    # SGLD
    t1, t2 = [t.clone() for t in th], [t.clone() for t in th]
    bad = lib.hb_sgld_multi(k, _ptrs(t1, keep), _ptrs(gr, keep), n.data_ptr(),
                            ctypes.addressof(key), ctypes.addressof(off), step, 0.1, 0.03, 1)
    if bad_at is None:
        assert bad == 0
        for j in range(k):
            lib.hb_sgld(t2[j].data_ptr(), gr[j].data_ptr(), SIZES[j], KEYS[j], step, offs[j],
                        0.1, 0.03)
    else:
        assert bad == 1
    for j in range(k):
        assert _same(t1[j], t2[j])
    assert lib.hb_nonfinite_multi(k, _ptrs(gr, keep), n.data_ptr()) == (bad_at is not None)


@pytest.mark.parametrize("bad", [None, math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("per_tensor", [True, False])
def test_adl_group_equals_its_pieces_and_check_changes_nothing(bad, per_tensor):
    """``hb_adl_group`` = hb_adl1 per tensor, the kinetic draw per segment, the ξ update,
    hb_adl2 per tensor (what the general native path calls one by one)."""
    lib = _native.lib()
    th, mo, gr = _tensors(4), _tensors(5, 0.3), _tensors(6, 0.1)
    if bad is not None:
        gr[2][50] = bad
    k, step = len(SIZES), 77
    seg = list(range(k)) if per_tensor else [0] * k
    nseg = max(seg) + 1
    seg_key = KEYS[:nseg]
    seg_n = SIZES if per_tensor else [sum(SIZES)]
    xi = torch.tensor([0.1, -0.3, 0.7, 2.0][:nseg], dtype=F32)
    e_a = torch.tensor([0.01, 0.02, 0.03, 0.04][:nseg], dtype=F32)
    e_b = torch.tensor([1e-4, 2e-4, 3e-4, 4e-4][:nseg], dtype=F32)
    h, sigma_a = 0.1, 0.3
    hh = 0.5 * h
    cz, s2 = 0.5 * sigma_a * math.sqrt(h), sigma_a * math.sqrt(h)
    t1, m1, x1 = [t.clone() for t in th], [m.clone() for m in mo], xi.clone()
    keep: list[Any] = []
    n, key, off = _arr(SIZES), _u64(KEYS), _u64([0] * k)
    sarr, skey, sn = _arr(seg), _u64(seg_key), _arr(seg_n)
    ret = lib.hb_adl_group(k, _ptrs(t1, keep), _ptrs(m1, keep), _ptrs(gr, keep),
                           n.data_ptr(), ctypes.addressof(key), ctypes.addressof(off),
                           sarr.data_ptr(), nseg, ctypes.addressof(skey), sn.data_ptr(),
                           x1.data_ptr(), e_a.data_ptr(), e_b.data_ptr(), step, -h, hh, -hh,
                           cz, s2, cz, 1)
    t2, m2, x2 = [t.clone() for t in th], [m.clone() for m in mo], xi.clone()
    if bad is not None:
        assert ret == 1
    else:
        assert ret == 0
        f = torch.empty(nseg, dtype=F32)
        lib.hb_adl_factors(x2.data_ptr(), nseg, -hh, f.data_ptr())
        a2 = [0.0] * nseg
        for j in range(k):
            a2[seg[j]] += lib.hb_adl1(t2[j].data_ptr(), m2[j].data_ptr(), gr[j].data_ptr(),
                                      SIZES[j], KEYS[j], step, 0, -h, hh, float(f[seg[j]]),
                                      cz, s2)
        draw = torch.tensor([P.adl_kinetic_draw(seg_key[s], step, 0, seg_n[s], a2[s], cz)
                             for s in range(nseg)], dtype=torch.float64)
        # E in float32, rounded as the kernel's comment writes it: (xi + e_a * draw) - e_b
        x2 = (x2 + e_a * draw.to(F32)) - e_b
        lib.hb_adl_factors(x2.data_ptr(), nseg, -hh, f.data_ptr())
        for j in range(k):
            lib.hb_adl2(t2[j].data_ptr(), m2[j].data_ptr(), SIZES[j], float(f[seg[j]]), hh)
        assert not _same(x1, xi)  # the step did move ξ
    assert _same(x1, x2)
    for j in range(k):
        assert _same(t1[j], t2[j]) and _same(m1[j], m2[j])


def test_adl_factors_are_exp_of_minus_xi_half_h():
    """e^{-ξh/2} as the kernel computes it: the float32 product ξ·(-h/2), then expf, which
    is faithful (error below one float32 ulp of the result, glibc's documented bound)."""
    lib = _native.lib()
    xi = torch.linspace(-30.0, 30.0, 1001, dtype=F32)
    mhh = torch.tensor(-0.05, dtype=F32)
    out = torch.empty_like(xi)
    lib.hb_adl_factors(xi.data_ptr(), xi.numel(), float(mhh), out.data_ptr())
    exact = torch.exp((xi * mhh).double())
    ulp = (torch.nextafter(out, torch.tensor(math.inf)) - out).double()
    assert torch.all((out.double() - exact).abs() < ulp)


def test_adl_xi_update_is_the_float32_expression():
    """E: ξ[r, s] <- (ξ[r, s] + e_a[s] · float32(draw[r, s])) - e_b[s], rounded as written."""
    lib = _native.lib()
    g = torch.Generator().manual_seed(3)
    R, S = 3, 5
    xi = torch.randn(R, S, generator=g)
    e_a = torch.rand(S, generator=g) * 1e-2
    e_b = torch.rand(S, generator=g) * 1e-3
    draw = torch.rand(R, S, generator=g, dtype=torch.float64) * 50.0
    ref = (xi + e_a * draw.to(F32)) - e_b
    lib.hb_adl_xi(xi.data_ptr(), R, S, e_a.data_ptr(), e_b.data_ptr(), draw.data_ptr())
    assert _same(xi, ref)


# ----------------------------------------------------------------- 3. fallbacks, then resumes
def test_frozen_parameter_is_untouched_and_equals_the_general_path(monkeypatch, fast_log):
    frozen: dict[int, dict[str, Any]] = {}

    def event(i: int, model: nn.Module, opt: Partitioned) -> None:
        w = model[2].weight
        if i == 10:  # frozen with its gradient still there
            w.requires_grad_(False)
            frozen[id(opt)] = {"p": w.detach().clone(),
                               "m": opt.state[w]["momentum_buffer"].clone()}
        elif 10 < i <= 20:
            snap = frozen[id(opt)]
            assert _same(w, snap["p"]) and _same(opt.state[w]["momentum_buffer"], snap["m"])
            if i == 20:
                w.requires_grad_(True)  # its gradient of this step is None: unfrozen next step

    for name in ("adlala", "langevin"):
        fast_log.clear()
        of, _ = _compare(MAKERS[name], monkeypatch, 30, event)
        steps = _fast_steps(fast_log, of)
        assert set(range(1, 10)) <= set(steps)  # fast before the freeze
        assert not set(range(10, 21)) & set(steps)  # general while frozen
        # fast again once a rebuild is retried (after 1, 2, 4, 8 steps: at step 25)
        assert set(range(25, 30)) <= set(steps)


def test_parameter_without_gradient_is_not_moved(monkeypatch, fast_log):
    def event(i: int, model: nn.Module, opt: Partitioned) -> None:
        if i in (8, 9, 15):
            b = model[0].bias
            b.grad = None
            before = (b.detach().clone(), opt.state[b]["momentum_buffer"].clone())
            opt.step()  # the caller's step follows; check this one right here
            assert _same(b, before[0]) and _same(opt.state[b]["momentum_buffer"], before[1])
            opt.zero_grad()
            _backward(model, i)

    of, _ = _compare(MAKERS["adl_group"], monkeypatch, 30, event)
    steps = _fast_steps(fast_log, of)
    assert set(range(1, 8)) <= set(steps) and set(range(20, 33)) <= set(steps)


WRITES = {"lr": None, "h": None, "gamma": ("baoab",), "tau": ("baoab", "overdamped", "adl"),
          "sigma": ("sgld",), "sigma_A": ("adl",), "epsilon": ("adl",)}
"""Hyperparameters written, and the methods they act on (None: all)."""


@pytest.mark.parametrize("name,key", [
    (name, key) for name in ("langevin", "adlala", "sgld", "partitioned_mixed")
    for key, methods in WRITES.items()
    if methods is None or any(g["method"] in methods
                              for g in MAKERS[name](shlp(HIDDEN)).param_groups)
])
def test_hyperparameter_written_changes_the_step(name, key, monkeypatch, fast_log):
    methods = WRITES[key]

    def event(i: int, model: nn.Module, opt: Partitioned) -> None:
        if i == 10:
            for group in opt.param_groups:
                if methods is None or group["method"] in methods:
                    group[key] = 2.0 if key == "gamma" else group[key] * 0.5

    of, _ = _compare(MAKERS[name], monkeypatch, 20, event)
    steps = _fast_steps(fast_log, of)
    assert set(range(1, 10)) <= set(steps) and set(range(12, 20)) <= set(steps)
    # the write changed the run (else the comparison could not show that the fast path saw it)
    model = shlp(HIDDEN, seed=0)
    unchanged = MAKERS[name](model)
    _train(model, unchanged, 0, 20)
    assert any(not _same(p, q) for p, q in zip(model.parameters(),
                                                 (p for g in of.param_groups
                                                  for p in g["params"])))


@pytest.mark.parametrize("name,written", [
    ("langevin", {"lr": 0.02}),
    ("langevin", {"momentum": 0.5}),
    ("sgld", {"lr": 0.02}),
    ("adl_tensor", {"lr": 0.02}),
    ("adlala", {"lr": 0.05}),
])
def test_group_update_changes_the_step(name, written, monkeypatch, fast_log):
    def event(i: int, model: nn.Module, opt: Partitioned) -> None:
        if i == 10:
            opt.param_groups[0].update(written)

    of, _ = _compare(MAKERS[name], monkeypatch, 15, event)
    assert set(range(1, 10)) <= set(_fast_steps(fast_log, of))


@pytest.mark.parametrize("name", ["langevin", "adlala", "adl_tensor"])
def test_group_update_of_h_changes_the_step(name, monkeypatch, fast_log):
    """group.update(h=...) (no reconciliation until the step): the merged kick must see it."""
    def event(i: int, model: nn.Module, opt: Partitioned) -> None:
        if i == 10:
            opt.param_groups[0].update(h=0.02)

    of, og = _compare(MAKERS[name], monkeypatch, 15, event)
    assert set(range(1, 10)) <= set(_fast_steps(fast_log, of))
    assert of.param_groups[0]["lr"] == og.param_groups[0]["lr"] == 0.02


@pytest.mark.parametrize("name", ["langevin", "adlala", "sgld"])
def test_lr_scheduler_changes_the_step(name, monkeypatch, fast_log):
    (mf, of), (mg, og) = _pair(MAKERS[name], monkeypatch)
    for model, opt in ((mf, of), (mg, og)):
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
        for i in range(25):
            _train(model, opt, i, i + 1)
            sched.step()
    _assert_same(_snapshot(mf, of), _snapshot(mg, og))
    assert of.param_groups[0]["h"] == pytest.approx(MAKERS_H[name] * 0.5**5)
    steps = _fast_steps(fast_log, of)
    assert len(steps) >= 15  # the steps between two LR changes went fast


@pytest.mark.parametrize("name", ["langevin", "adlala", "adl_group", "partitioned_mixed"])
def test_resume_from_a_state_dict_equals_an_uninterrupted_run(name, monkeypatch, fast_log):
    make = MAKERS[name]
    model = shlp(HIDDEN, seed=0)
    opt = make(model)
    _train(model, opt, 0, 30)
    whole = _snapshot(model, opt)

    model2 = shlp(HIDDEN, seed=0)
    opt2 = make(model2)
    _train(model2, opt2, 0, 15)
    saved = copy.deepcopy((model2.state_dict(), opt2.state_dict()))
    _train(model2, opt2, 15, 22)  # moved on: the load must rewind everything

    # (a copy each time: torch's load_state_dict keeps the saved tensors as the state)
    model2.load_state_dict(saved[0])
    opt2.load_state_dict(copy.deepcopy(saved[1]))
    _train(model2, opt2, 15, 30)
    _assert_same(_snapshot(model2, opt2), whole)

    model3 = shlp(HIDDEN, seed=0)  # and a fresh process's optimizer
    opt3 = make(model3)
    model3.load_state_dict(saved[0])
    opt3.load_state_dict(copy.deepcopy(saved[1]))
    _train(model3, opt3, 15, 30)
    _assert_same(_snapshot(model3, opt3), whole)
    assert set(range(17, 30)) <= set(_fast_steps(fast_log, opt2))
    assert set(range(17, 30)) <= set(_fast_steps(fast_log, opt3))


@pytest.mark.parametrize("name", [
    "langevin",
    "adlala",
    "sgld",
])
def test_model_double_after_fast_steps(name, monkeypatch, fast_log):
    """As with torch's own optimizers, the parameters stay float64 after the conversion
    (the state created in float32 is used as it is); the step is the general path's."""
    def event(i: int, model: nn.Module, opt: Partitioned) -> None:
        if i == 10:
            model.double()
            opt.zero_grad()
            _backward(model, i)

    of, og = _compare(MAKERS[name], monkeypatch, 20, event)
    for opt in (of, og):
        for g in opt.param_groups:
            assert all(p.dtype == torch.float64 for p in g["params"])
    steps = _fast_steps(fast_log, of)
    assert set(range(1, 10)) <= set(steps) and not [s for s in steps if s >= 10]


def test_parameter_data_replaced_is_the_one_updated(monkeypatch, fast_log):
    def event(i: int, model: nn.Module, opt: Partitioned) -> None:
        if i == 10:
            for p in model.parameters():
                p.data = p.data.clone()  # new storage, same values

    of, _ = _compare(MAKERS["adlala"], monkeypatch, 20, event)
    assert set(range(1, 20)) <= set(_fast_steps(fast_log, of))


@pytest.mark.parametrize("name", ["langevin", "adlala"])
def test_add_param_group_after_fast_steps(name, monkeypatch, fast_log):
    extra: dict[int, nn.Parameter] = {}

    def make(model: nn.Module) -> Partitioned:
        opt = MAKERS[name](model)
        extra[id(opt)] = nn.Parameter(torch.linspace(-1.0, 1.0, 6))
        return opt

    def event(i: int, model: nn.Module, opt: Partitioned) -> None:
        p = extra[id(opt)]
        if i == 10:
            opt.add_param_group({"params": [p]})
        p.grad = torch.sin(p.detach() * (i + 1))

    (mf, of), (mg, og) = _pair(make, monkeypatch)
    _train(mf, of, 0, 25, event)
    _train(mg, og, 0, 25, event)
    _assert_same(_snapshot(mf, of), _snapshot(mg, og))
    assert _same(extra[id(of)], extra[id(og)])
    assert not _same(extra[id(of)], torch.linspace(-1.0, 1.0, 6))
    steps = _fast_steps(fast_log, of)
    assert set(range(1, 10)) <= set(steps) and set(range(13, 25)) <= set(steps)


@pytest.mark.parametrize("name", ["langevin", "adlala", "adl_tensor", "sgld"])
def test_check_finite_off(name, monkeypatch, fast_log):
    def make(model: nn.Module) -> Partitioned:
        opt = MAKERS[name](model)
        opt.check_finite = False
        return opt

    of, _ = _compare(make, monkeypatch, 20)
    assert set(range(1, 20)) <= set(_fast_steps(fast_log, of))

    def bad(i: int, model: nn.Module, opt: Partitioned) -> None:
        if i == 12:
            model[2].bias.grad[0] = math.nan  # no check: the NaN goes into the update

    (mf, of), (mg, og) = _pair(make, monkeypatch)
    _train(mf, of, 0, 13, bad)
    _train(mg, og, 0, 13, bad)
    assert torch.isnan(mf[2].bias).all()
    _assert_same(_snapshot(mf, of), _snapshot(mg, og))


# ---------------------------------------------------------------- 4. NaN/inf changes nothing
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("name,where", [
    ("adlala", "0.weight"),  # first group (AdL)
    ("adlala", "2.bias"),  # second group (BAOAB)
    ("langevin", "0.bias"),
    ("sgld", "2.weight"),
    ("adl_group", "2.weight"),
    ("partitioned_mixed", "0.bias"),
])
def test_non_finite_gradient_raises_and_changes_nothing(name, where, value, monkeypatch,
                                                        fast_log):
    def event(i: int, model: nn.Module, opt: Partitioned) -> None:
        if i != 12:
            return
        if "_fast_step" not in vars(opt):  # not the reference run: the fast path is active
            assert opt._fast is not None
        grad = model.get_parameter(where).grad
        good = grad.clone()
        grad.view(-1)[-1] = value
        before = _snapshot(model, opt)
        with pytest.raises(NonFiniteGradientError):
            opt.step()
        _assert_same(_snapshot(model, opt), before)
        grad.copy_(good)  # the next, finite step (the caller's) must be the general one

    of, _ = _compare(MAKERS[name], monkeypatch, 20, event)
    steps = _fast_steps(fast_log, of)
    assert set(range(1, 12)) <= set(steps) and set(range(14, 20)) <= set(steps)


# ------------------------------------------------------------- 5. buffers replaced by the user
@pytest.mark.parametrize("name", ["langevin", "adlala", "adl_tensor", "lol"])
def test_momentum_buffer_replaced_is_the_one_updated(name, monkeypatch, fast_log):
    new: dict[int, torch.Tensor] = {}

    def event(i: int, model: nn.Module, opt: Partitioned) -> None:
        if i == 10:
            w = model[2].weight
            new[id(opt)] = opt.state[w]["momentum_buffer"] = torch.full_like(w, 0.25)

    of, og = _compare(MAKERS[name], monkeypatch, 20, event)
    for opt in (of, og):
        buf = new[id(opt)]
        assert any(opt.state[p].get("momentum_buffer") is buf
                   for g in opt.param_groups for p in g["params"])
        assert not torch.equal(buf, torch.full_like(buf, 0.25))  # it was stepped
    steps = _fast_steps(fast_log, of)
    assert set(range(1, 10)) <= set(steps) and set(range(12, 20)) <= set(steps)


def test_xi_replaced_is_the_one_updated(monkeypatch, fast_log):
    new: dict[int, torch.Tensor] = {}

    def event(i: int, model: nn.Module, opt: Partitioned) -> None:
        if i == 10:
            xi = opt.group_state[0]["xi"]
            new[id(opt)] = opt.group_state[0]["xi"] = torch.full_like(xi, 0.5)

    of, og = _compare(MAKERS["adlala"], monkeypatch, 20, event)
    for opt in (of, og):
        assert opt.group_state[0]["xi"] is new[id(opt)]
        assert not torch.equal(new[id(opt)], torch.full_like(new[id(opt)], 0.5))
    assert set(range(12, 20)) <= set(_fast_steps(fast_log, of))


@pytest.mark.parametrize("how", ["replace_state_of_p", "delete_state_of_p", "clear_state",
                                 "replace_group_state"])
def test_state_dicts_replaced_by_the_user(how, monkeypatch, fast_log):
    def event(i: int, model: nn.Module, opt: Partitioned) -> None:
        if i != 10:
            return
        w = model[2].weight
        if how == "replace_state_of_p":
            opt.state[w] = {"momentum_buffer": torch.full_like(w, 0.25), "h_prev": 0.1}
        elif how == "delete_state_of_p":
            del opt.state[w]
        elif how == "clear_state":
            opt.state.clear()
        else:
            xi = opt.group_state[0]["xi"]
            opt.group_state[0] = {"xi": torch.full_like(xi, 0.5)}

    of, _ = _compare(MAKERS["adlala"], monkeypatch, 15, event)
    assert set(range(1, 10)) <= set(_fast_steps(fast_log, of))


# ---------------------------------------------------------------------------- 6. diagnostics
def _assert_diag_equal(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    assert a == b  # floats from the same bits: exactly equal, None where None


@pytest.mark.parametrize("name", ["langevin", "adlala", "sgld", "adl_group", "lol",
                                  "partitioned_mixed"])
def test_diagnostics_after_fast_steps_equal_the_general_path(name, monkeypatch, fast_log):
    (mf, of), (mg, og) = _pair(MAKERS[name], monkeypatch)
    _train(mf, of, 0, 15)
    _train(mg, og, 0, 15)
    assert set(range(1, 15)) <= set(_fast_steps(fast_log, of))
    stale_f, stale_g = of.diagnostics(), og.diagnostics()
    _assert_diag_equal(stale_f, stale_g)
    # the gradients were used by the last (fast) step: not fresh
    assert all(d["configurational_temperature"] is None for d in stale_f)
    assert not any(d["kinetic_corrected"] for d in stale_f)
    for model, opt in ((mf, of), (mg, og)):
        opt.zero_grad()
        _backward(model, 15)
    fresh_f, fresh_g = of.diagnostics(), og.diagnostics()
    _assert_diag_equal(fresh_f, fresh_g)
    assert all(isinstance(d["configurational_temperature"], float) for d in fresh_f)
    # zero_grad(set_to_none=False) + backward reuses the gradient tensors: fresh again
    for model, opt in ((mf, of), (mg, og)):
        opt.step()
        opt.zero_grad(set_to_none=False)
        _backward(model, 16)
    _assert_diag_equal(of.diagnostics(), og.diagnostics())
    assert all(isinstance(d["configurational_temperature"], float) for d in of.diagnostics())
    assert 15 in _fast_steps(fast_log, of)


# ----------------------------------------------------------------------------- 7. step hooks
def test_step_hooks_fire_with_the_fast_path(monkeypatch, fast_log):
    (mf, of), (mg, og) = _pair(MAKERS["adlala"], monkeypatch)
    calls: dict[int, list[tuple[str, int]]] = {id(of): [], id(og): []}

    def pre(opt: Any, args: Any, kwargs: Any) -> None:
        calls[id(opt)].append(("pre", opt.step_count))
        if opt.step_count == 8:  # a hook that writes a hyperparameter: the step must see it
            opt.param_groups[1]["lr"] = 0.05

    def post(opt: Any, args: Any, kwargs: Any) -> None:
        calls[id(opt)].append(("post", opt.step_count))

    handles = [h for o in (of, og) for h in (o.register_step_pre_hook(pre),
                                             o.register_step_post_hook(post))]
    global_calls: list[int] = []
    handles.append(register_optimizer_step_post_hook(
        lambda opt, a, k: global_calls.append(opt.step_count) if opt is of else None))
    try:
        _train(mf, of, 0, 15)
        _train(mg, og, 0, 15)
    finally:
        for h in handles:
            h.remove()
    expected = [e for s in range(15) for e in (("pre", s), ("post", s + 1))]
    assert calls[id(of)] == expected and calls[id(og)] == expected
    assert global_calls == list(range(1, 16))
    _assert_same(_snapshot(mf, of), _snapshot(mg, og))
    steps = _fast_steps(fast_log, of)
    assert set(range(1, 8)) <= set(steps) and set(range(10, 15)) <= set(steps)

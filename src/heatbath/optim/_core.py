r"""The general form: any parameter group runs any thermodynamic integrator.

:class:`Partitioned` is the one mechanism underneath :class:`~heatbath.optim.SGLD`,
:class:`~heatbath.optim.Langevin`, :class:`~heatbath.optim.AdaptiveLangevin`,
:class:`~heatbath.optim.AdLaLa` and :class:`~heatbath.optim.LOL`. Each parameter group carries
``method`` and its own hyperparameters; all groups share one gradient evaluation per step.

Methods (one gradient per ``step()``; the two half-kicks of consecutive steps are merged):

``"sgld"``        :math:`\theta \leftarrow \theta - h g + \sigma\sqrt h R`
``"baoab"``       B A_{h/2} O_h A_{h/2}  (Langevin; per-group γ, τ = multi-layer Langevin)
``"overdamped"``  the same with the momentum redrawn, O: :math:`p \leftarrow \sqrt\tau R`
``"adl"``         B A_{h/2} C_{h/2} D_{h/2} E_h D_{h/2} C_{h/2} A_{h/2}  (Adaptive Langevin)

The merged kick of a parameter's step is :math:`B_{(h_{prev}+h)/2}`, with :math:`h_{prev}` the
step size of that parameter's previous step (0 before its first): exactly the trailing half-kick
of the previous step plus the leading half-kick of this one, also when an LR scheduler changes
``h`` between steps and when the parameter sat out some steps (it did not move meanwhile, so
the gradient computed now is the one the trailing half-kick needs).

Implementation: parameters stay the user's tensors; momenta live in
``optimizer.state[p]["momentum_buffer"]``; a step runs over lists of tensors with
``torch._foreach_*`` kernels. The arithmetic of each method is in one dispatch function
(:func:`_sgld_lists`, :func:`_langevin_lists`, :func:`_adl_lists`) that receives the lists and a
:class:`NoiseSource`, so that a fused multi-tensor kernel can replace it without touching the
bookkeeping. The contract (what is skipped, lr = 0, ``momentum``, dtypes, state dict) is in
``docs/optimizers.md``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .._validate import check_choice, check_int, check_real
from . import _native
from . import _substeps as S
from ._base import GroupWork, HeatbathOptimizer, NonFiniteGradientError
from ._distributed import all_reduce_sum_, local_view
from ._fast import FastStep
from ._thermostat import check_thermostat

__all__ = ["Partitioned", "NonFiniteGradientError", "METHODS", "posterior_tau", "NoiseSource"]

METHODS = ("sgld", "baoab", "overdamped", "adl")
_FRICTION = ("baoab", "overdamped")  # methods whose friction γ is the group's "momentum"
_MOMENTUM_METHODS = ("baoab", "overdamped", "adl")
NOISE_BACKENDS = ("auto", "eager", "philox")
AUTO_PHILOX_MIN = 1 << 20
"""Without the native kernels (:mod:`heatbath.optim._native`; float32 on the CPU they make
``noise="auto"`` counter-based at every size, being faster than eager noise everywhere),
``noise="auto"`` gives a group counter-based noise from this many elements on (and always for
sharded parameters), eager ``normal_`` below. From about a million parameters the compiled
Philox step is at least as fast as eager noise (``benchmarks/step.py``); below it, a compiled
call's fixed cost and the first step's compile time are not worth it. Without a compiler
(``HEATBATH_COMPILE=0``) "auto" is eager except for sharded parameters."""
#: hyperparameters a group added later inherits from the optimizer's template group
_INHERITED = ("method", "gamma", "tau", "sigma", "sigma_A", "epsilon", "xi0", "xi_per",
              "epsilon_scale", "noise", "replicas")
_MISSING: Any = object()


def posterior_tau(temperature: float, num_data: int) -> float:
    r"""The τ that targets a Bayesian posterior at temperature ``T`` with a *mean* loss.

    heatbath's dynamics target :math:`\rho(\theta) \propto \exp(-\bar L(\theta)/\tau)` with
    :math:`\bar L` the per-sample mean loss (see ``docs/optimizers.md``). The tempered
    posterior :math:`\exp(-N\bar L/T)` therefore needs :math:`\tau = T/N`.
    """
    check_real("temperature", temperature, low=0.0)
    check_int("num_data", num_data, low=1)
    return temperature / num_data


def _check_gamma(gamma: Any) -> float:
    if isinstance(gamma, float) and math.isinf(gamma) and gamma > 0:
        return gamma
    return check_real("gamma", gamma, low=0.0)


def _momentum_of(gamma: float, h: float) -> float:
    r""":math:`c = e^{-\gamma h}` (0 for γ = ∞)."""
    return 0.0 if math.isinf(gamma) else math.exp(-gamma * h)


def _gamma_of(momentum: float, h: float) -> float:
    r"""γ with :math:`e^{-\gamma h} = c` (h > 0): ∞ for c = 0, 0 for c = 1."""
    if momentum == 0.0:
        return math.inf
    return -math.log(momentum) / h if momentum < 1.0 else 0.0


_warned: set[tuple[int, str]] = set()


def _reconcile(group: dict[str, Any], seen: tuple[Any, ...]) -> tuple[Any, ...]:
    """Make ``h``/``lr`` and ``gamma``/``momentum`` agree after writes into ``group``.

    ``seen`` is ``(h, lr, momentum, gamma)`` as last reconciled. ``lr`` and ``h`` are one value:
    whichever changed wins. For friction groups ``momentum`` = e^{−γh}: a written ``momentum``
    sets γ (at the current h); otherwise ``momentum`` follows γ and h. Returns the new ``seen``.
    """
    h, lr = group["h"], group["lr"]
    m, gamma = group.get("momentum", _MISSING), group.get("gamma", _MISSING)
    if h is seen[0] and lr is seen[1] and m is seen[2] and gamma is seen[3]:
        return seen
    if lr != seen[1]:
        if h != seen[0] and h != lr:
            raise ValueError(f"h and lr are one value (the time step); they were set to "
                             f"different values ({h!r} and {lr!r})")
        h = lr
    elif h != seen[0]:
        lr = h
    if h != seen[0] or lr != seen[1]:
        h = lr = check_real("lr", h, low=0.0)
        dict.__setitem__(group, "h", h)
        dict.__setitem__(group, "lr", lr)
    method = group["method"]
    if method in _FRICTION:
        if m is not _MISSING and m != seen[2]:  # momentum written: it sets gamma
            m = check_real("momentum", m, low=0.0, high=1.0)
            if h > 0:
                if gamma == seen[3]:
                    gamma = _gamma_of(m, h)
                elif not math.isclose(_momentum_of(_check_gamma(gamma), h), m, rel_tol=1e-9,
                                      abs_tol=1e-15):  # both written: they must agree
                    raise ValueError(f"momentum ({m!r}) and gamma ({gamma!r}) were both set and "
                                     f"disagree (momentum = exp(-gamma * h), h = {h!r}); set one")
            dict.__setitem__(group, "momentum", m)
            dict.__setitem__(group, "gamma", gamma)
        else:
            gamma = _check_gamma(gamma)
            dict.__setitem__(group, "gamma", gamma)
            dict.__setitem__(group, "momentum", _momentum_of(gamma, h))
    elif m is not _MISSING and m != seen[2]:
        key = (id(group), method)
        if key not in _warned:
            _warned.add(key)
            warnings.warn(f"a {method!r} group has no friction coefficient: the 'momentum' "
                          "written into it (e.g. by OneCycleLR or CyclicLR) is ignored",
                          RuntimeWarning, stacklevel=4)
    return (group["h"], group["lr"], group.get("momentum", _MISSING),
            group.get("gamma", _MISSING))


class _Group(dict):
    """A parameter-group dict that keeps ``h``/``lr`` and ``gamma``/``momentum`` consistent.

    Item assignment (what torch's LR schedulers do) reconciles at once; writes that bypass it
    (``group.update(...)``) are reconciled at the next ``step()``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # a new group is already consistent (validated, or as saved): the given gamma is kept
        # exactly, not recomputed from momentum
        self._seen: tuple[Any, ...] = (self["h"], self["lr"], self.get("momentum", _MISSING),
                                       self.get("gamma", _MISSING))

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        if key in ("h", "lr", "momentum", "gamma"):
            self.reconcile()

    def reconcile(self) -> None:
        self._seen = _reconcile(self, self._seen)

    def __reduce__(self) -> Any:  # pickles and deep-copies as a plain dict
        return (dict, (dict(self),))


def _validate_group(group: dict[str, Any], given: set[str]) -> None:
    """Check a new group's hyperparameters (defaults filled in) and complete h/lr, γ/momentum."""
    method = check_choice("method", group["method"], METHODS)
    if "lr" in given and "h" in given and group["lr"] != group["h"]:
        raise ValueError(f"h and lr are one value (the time step); got h={group['h']!r}, "
                         f"lr={group['lr']!r}")
    h = check_real("lr" if "lr" in given and "h" not in given else "h",
                   group["lr"] if "lr" in given else group["h"], low=0.0)
    group["h"] = group["lr"] = h
    check_real("tau", group["tau"], low=0.0)
    check_real("sigma", group["sigma"], low=0.0)
    check_real("sigma_A", group["sigma_A"], low=0.0)
    check_real("epsilon", group["epsilon"], low=0.0)
    check_real("xi0", group["xi0"])
    check_choice("xi_per", group["xi_per"], ("tensor", "group"))
    check_choice("epsilon_scale", group["epsilon_scale"], ("total", "per_entry"))
    check_choice("noise", group["noise"], NOISE_BACKENDS)
    R = group["replicas"]
    if R is not None:
        check_int("replicas", R, low=1)
        for p in group["params"]:
            if p.dim() == 0 or p.shape[0] != R:
                raise ValueError(f"replicas={R}: every parameter needs a leading replica "
                                 f"dimension of size {R}, got shape {tuple(p.shape)}")
    devices = {p.device for p in group["params"]}
    if len(devices) > 1:
        raise ValueError(f"all parameters of a group must be on one device, got {devices}; "
                         "split them into groups")
    if method == "overdamped":
        if "gamma" in given and not (isinstance(group["gamma"], float)
                                     and math.isinf(group["gamma"])):
            raise ValueError("gamma: an 'overdamped' group is the gamma = inf limit; use "
                             "method='baoab' for a finite friction")
        if "momentum" in given and group["momentum"] != 0:
            raise ValueError("momentum: an 'overdamped' group has momentum 0 (gamma = inf); use "
                             "method='baoab' for a finite friction")
        group["gamma"], group["momentum"] = math.inf, 0.0
    elif method == "baoab":
        if "momentum" in given:
            m = check_real("momentum", group["momentum"], low=0.0, high=1.0)
            if h == 0:
                raise ValueError("momentum: a group given by (lr, momentum) needs lr > 0")
            gamma = _gamma_of(m, h)
            if "gamma" in given and not math.isclose(
                    _momentum_of(_check_gamma(group["gamma"]), h), m, rel_tol=1e-9,
                    abs_tol=1e-15):
                raise ValueError(f"momentum ({m!r}) and gamma ({group['gamma']!r}) disagree "
                                 f"(momentum = exp(-gamma * h), h = {h!r}); give one of them")
            group["gamma"] = gamma
        else:
            group["momentum"] = _momentum_of(_check_gamma(group["gamma"]), h)
    else:
        if "momentum" in given:
            raise ValueError(f"momentum applies to 'baoab' and 'overdamped' groups only, not "
                             f"to a {method!r} group")
        group.pop("momentum", None)
    if method == "adl" and group["epsilon_scale"] == "total":
        R1 = R or 1
        sizes = [p.numel() // R1 for p in group["params"]]
        n = max(sizes) if group["xi_per"] == "tensor" else sum(sizes)
        load = h * group["epsilon"] * n * group["tau"]
        if load > 1.0:
            warnings.warn(
                f"Adaptive Langevin: h*epsilon*n*tau = {load:.3g} > 1 for a thermostat over {n} "
                "entries; one step can move xi by more than 1 and the scheme may blow up. "
                "Consider epsilon_scale='per_entry' (epsilon/n) or a smaller epsilon.",
                RuntimeWarning,
                stacklevel=5,
            )


# ----------------------------------------------------------------------------------------------
# noise and the per-method dispatch functions
# ----------------------------------------------------------------------------------------------
def _philox(name: str) -> Callable[..., Any]:
    """The compiled (or, without a compiler, eager) counter-based noise kernel ``name``."""
    from . import _philox as ph

    return ph.get_compiled(getattr(ph, name))


@dataclass
class NoiseSource:
    """Where one group's noise for one step comes from, aligned with the step's tensor lists.

    Attributes:
        kind: ``"eager"`` (the group's ``torch.Generator``, one ``normal_`` per draw into a
            reused flat buffer) or ``"philox"`` (counter-based, element ``i`` of tensor ``k`` is
            ``Z(keys[k], step, offsets[k] + i)``, and draw ``d`` of a step adds
            ``d * numels[k]``).
        opt: the optimizer (owner of the generators and buffers).
        index: the group's index.
        step: the optimizer's step count (the Philox counter).
        keys: per tensor, the 63-bit Philox key (seed and parameter key mixed).
        offsets: per tensor, the global flat index of its first local element (0 unless the
            parameter is a shard of a DTensor).
        numels: per tensor, the number of elements of the full (global) tensor.
    """

    kind: str
    opt: Partitioned
    index: int
    step: int
    keys: list[int]
    offsets: list[int]
    numels: list[int]

    def subset(self, idx: list[int]) -> NoiseSource:
        """The source restricted to tensors ``idx`` (same streams)."""
        return NoiseSource(self.kind, self.opt, self.index, self.step,
                           [self.keys[i] for i in idx] if self.keys else [],
                           [self.offsets[i] for i in idx] if self.offsets else [],
                           [self.numels[i] for i in idx] if self.numels else [])

    def normal(self, like: list[Tensor], std: float, draws: int = 1) -> list[list[Tensor]]:
        """``draws`` lists of N(0, std²) tensors shaped like ``like`` (views of one reused
        buffer, valid until the group's next draw)."""
        if self.kind == "eager":
            return self.opt._normal_like(self.index, like, std, draws)
        sizes = [t.numel() for t in like]
        total = sum(sizes)
        buf = self.opt._flat_buffer(self.index, draws * total, like[0])
        lib = _native.lib() if buf.dtype == torch.float32 and buf.device.type == "cpu" else None
        if lib is not None:  # the native kernel: the same numbers as philox_fill_
            def fill(v: Tensor, key: int, step: int, offset: int, sd: float) -> None:
                lib.hb_normals(v.data_ptr(), v.numel(), key, step, offset, sd)
        else:
            fill = _philox("philox_fill_")
        out = []
        for d in range(draws):
            parts = buf[d * total:(d + 1) * total].split(sizes)
            for k, v in enumerate(parts):
                fill(v, self.keys[k], self.step, self.offsets[k] + d * self.numels[k], std)
            out.append([v.view(t.shape) for v, t in zip(parts, like)])
        return out


def _kick(moms: list[Tensor], grads: list[Tensor], kicks: list[float], foreach: bool) -> None:
    """Merged kicks :math:`p \\leftarrow p - \\kappa_k g`, one multi-tensor call per value."""
    k0 = kicks[0]
    if all(k == k0 for k in kicks):
        S.B(moms, grads, k0, foreach)
        return
    for k in sorted(set(kicks)):
        idx = [i for i, v in enumerate(kicks) if v == k]
        S.B([moms[i] for i in idx], [grads[i] for i in idx], k, foreach)


def _fusable(*ts: Tensor) -> bool:
    dt = ts[0].dtype
    return all(t.is_contiguous() and t.dtype == dt for t in ts)


def _noise_kind(group: dict[str, Any], sharded: bool) -> str:
    """The backend a group uses this step: ``noise="auto"`` resolved (philox for float32 CPU
    parameters when the native kernels are built, else see ``AUTO_PHILOX_MIN``); eager noise
    on sharded parameters is refused."""
    kind = group["noise"]
    if kind == "auto":
        if sharded:
            return "philox"
        p0 = local_view(group["params"][0])
        if p0.dtype == torch.float32 and p0.device.type == "cpu" and _native.available():
            return "philox"  # the native kernels are faster than eager noise at every size
        if os.environ.get("HEATBATH_COMPILE", "1") == "0":
            return "eager"
        n = sum(local_view(p).numel() for p in group["params"])
        return "philox" if n >= AUTO_PHILOX_MIN else "eager"
    if kind == "eager" and sharded:
        raise ValueError("noise='eager' cannot give a sharded (DTensor) parameter the noise of "
                         "the unsharded run; use noise='philox' or 'auto'")
    return kind


def _philox_plan(noise: NoiseSource, tensors: list[Tensor], idx: list[int],
                 replicas: int | None = None, foreach: bool = True) -> Any:
    """The group's fused Philox plan (``_philox.ListNoise``) for tensors ``idx`` of the step's
    lists, cached on the optimizer and rebuilt when the set of tensors changes."""
    from . import _philox as ph

    plans = noise.opt.__dict__.setdefault("_philox_plans", {})
    ts = [tensors[i] for i in idx]
    keys = [noise.keys[i] for i in idx]
    offs = [noise.offsets[i] for i in idx]
    sig = (tuple(keys), tuple(offs), tuple(t.shape for t in ts), ts[0].dtype, ts[0].device,
           replicas, foreach)
    got = plans.get(noise.index)
    if got is None or got[0] != sig:
        native = foreach and all(t.dtype == ts[0].dtype for t in ts)
        plan = ph.ListNoise([t.shape for t in ts], keys, offs, ts[0].dtype, ts[0].device,
                            replicas=replicas, compiled=None if foreach else False,
                            small_tensor=None if foreach else 0, native=native)
        got = plans[noise.index] = (sig, plan)
    return got[1]


def _prepared(plan: Any, grads: list[Tensor], step: int) -> Any:
    """``plan`` with this step's noise generated (``Partitioned._check_finite`` usually did it,
    fused with the finiteness check)."""
    if plan.prepared_step != step:
        plan.prepare(grads, step, check_small=False)
    return plan


def _same_kick(kicks: list[float]) -> bool:
    return all(k == kicks[0] for k in kicks)


def _sgld_lists(params: list[Tensor], grads: list[Tensor], *, h: float, std: float,
                noise: NoiseSource, foreach: bool) -> None:
    r"""SGLD on tensor lists: :math:`\theta \leftarrow \theta - h g + \sigma\sqrt h R`
    (``std`` = :math:`\sigma\sqrt h`)."""
    rest = list(range(len(params)))
    if std > 0 and foreach and noise.kind == "philox":
        fused = [k for k, (t, g) in enumerate(zip(params, grads)) if _fusable(t, g)]
        rest = [k for k in rest if k not in set(fused)]
        if fused:
            fg = [grads[k] for k in fused]
            plan = _prepared(_philox_plan(noise, params, fused), fg, noise.step)
            plan.sgld([params[k] for k in fused], fg, h, std)
        if not rest:
            return
        params, grads = [params[i] for i in rest], [grads[i] for i in rest]
        noise = noise.subset(rest)
    if h == 0.0:
        return
    S.B(params, grads, h, foreach)
    if std > 0:
        S.D(params, noise.normal(params, std)[0], foreach)


def _langevin_lists(params: list[Tensor], grads: list[Tensor], moms: list[Tensor], *,
                    kicks: list[float], half_h: float, c: float, d: float, noise: NoiseSource,
                    foreach: bool) -> None:
    r"""Merged BAOAB (and its overdamped limit, c = 0) on tensor lists:
    :math:`p \leftarrow p - \kappa g`, :math:`\theta \leftarrow \theta + \tfrac h2 p`,
    :math:`p \leftarrow c p + d R`, :math:`\theta \leftarrow \theta + \tfrac h2 p`, with each
    tensor's merged kick :math:`\kappa` in ``kicks``."""
    if d > 0 and foreach and noise.kind == "philox":
        fused = [k for k, (t, g, p) in enumerate(zip(params, grads, moms)) if _fusable(t, g, p)]
        rest = [k for k in range(len(params)) if k not in set(fused)]
        if fused:
            fg, fm = [grads[k] for k in fused], [moms[k] for k in fused]
            fk = [kicks[k] for k in fused]
            kick = -fk[0]
            if not _same_kick(fk):  # per-tensor kicks first; then p + 0*g == p exactly
                _kick(fm, fg, fk, foreach)
                kick = 0.0
            plan = _prepared(_philox_plan(noise, params, fused), fg, noise.step)
            plan.baoab([params[k] for k in fused], fm, fg, kick, half_h, c, d)
        if not rest:
            return
        params, grads, moms = ([x[i] for i in rest] for x in (params, grads, moms))
        kicks = [kicks[i] for i in rest]
        noise = noise.subset(rest)
    _kick(moms, grads, kicks, foreach)
    if half_h == 0.0 and d == 0.0:  # h = 0: only the trailing half-kick of the last step
        return
    S.A(params, moms, half_h, foreach)
    S.O(moms, noise.normal(moms, d)[0] if d > 0 else None, c, foreach)
    S.A(params, moms, half_h, foreach)


def _friction_factors(xi: Tensor, delta: float, seg: list[int], like: list[Tensor],
                      replicas: int | None) -> list[Tensor]:
    """:math:`e^{-\\xi\\delta}` per tensor, shaped to broadcast against it."""
    f = torch.exp(xi * -delta)
    cols = f.unbind(-1)
    if replicas is None:
        return [cols[s] for s in seg]
    return [cols[s].view((replicas,) + (1,) * (t.dim() - 1)) for s, t in zip(seg, like)]


def _adl_lists(params: list[Tensor], grads: list[Tensor], moms: list[Tensor], xi: Tensor, *,
               seg: list[int], kicks: list[float], half_h: float, e_a: Tensor, e_b: Tensor,
               std: float, noise: NoiseSource, replicas: int | None, foreach: bool,
               reduce: Callable[[list[Tensor]], list[Tensor]] | None = None) -> None:
    r"""Adaptive Langevin on tensor lists, after the merged kick:
    :math:`A_{h/2} C_{h/2} D_{h/2} E_h D_{h/2} C_{h/2} A_{h/2}`.

    ``xi`` (``[S]``, or ``[R, S]`` with replicas) is updated in place; tensor ``k`` belongs to
    thermostat segment ``seg[k]``. E is :math:`\xi \leftarrow \xi + a\,p^\top p - b` with the
    per-segment constants ``e_a`` = hε and ``e_b`` = hεnτ. ``reduce`` turns each tensor's
    local :math:`p^\top p` into the global one (sharded parameters).

    With philox noise (contiguous tensors) the step runs through ``_philox.ListNoise``: the
    two D half-steps add one draw :math:`\sigma_A\sqrt h R` and E sees the exactly distributed
    kinetic energy of ``_philox.adl_kinetic_draw``, so a step costs N normals, not 2N.
    """
    if (std > 0 and noise.kind == "philox"
            and all(_fusable(t, g, p) for t, g, p in zip(params, grads, moms))):
        _adl_philox(params, grads, moms, xi, seg=seg, kicks=kicks, half_h=half_h, e_a=e_a,
                    e_b=e_b, std=std, noise=noise, replicas=replicas, foreach=foreach,
                    reduce=reduce)
        return
    _kick(moms, grads, kicks, foreach)
    noises = noise.normal(moms, std, draws=2) if std > 0 else None
    S.A(params, moms, half_h, foreach)
    S.C(moms, _friction_factors(xi, half_h, seg, moms, replicas), foreach)
    if noises is not None:
        S.D(moms, noises[0], foreach)
    if reduce is None:
        kin = S.sq_sums(moms, replicas)
    else:
        parts = reduce([S.sq_sums([p], replicas) for p in moms])
        kin = torch.cat(parts, dim=-1)
    nseg = xi.shape[-1]
    if nseg != len(moms) or seg != list(range(nseg)):
        kin = torch.zeros_like(xi).index_add_(-1, torch.tensor(seg, device=xi.device),
                                               kin.to(xi.dtype))
    xi.addcmul_(e_a, kin).sub_(e_b)
    if noises is not None:
        S.D(moms, noises[1], foreach)
    S.C(moms, _friction_factors(xi, half_h, seg, moms, replicas), foreach)
    S.A(params, moms, half_h, foreach)


def _adl_philox(params: list[Tensor], grads: list[Tensor], moms: list[Tensor], xi: Tensor, *,
                seg: list[int], kicks: list[float], half_h: float, e_a: Tensor, e_b: Tensor,
                std: float, noise: NoiseSource, replicas: int | None, foreach: bool,
                reduce: Callable[[list[Tensor]], list[Tensor]] | None) -> None:
    """:func:`_adl_lists` with counter-based noise, N normals per step (see there)."""
    from ._philox import adl_kinetic_draw, adl_noise_scales

    idx = list(range(len(params)))
    plan = _prepared(_philox_plan(noise, params, idx, replicas, foreach), grads, noise.step)
    kick = -kicks[0]
    if not _same_kick(kicks):
        _kick(moms, grads, kicks, foreach)
        kick = 0.0
    R = replicas or 1
    xi2 = xi.reshape(R, -1)

    def factors() -> list[Tensor]:
        f = torch.exp(xi2 * -half_h)
        return [f[:, s].reshape(R, 1) for s in seg]

    h = 2.0 * half_h
    sigma_a = std / math.sqrt(half_h)
    if plan.native and xi.dtype == torch.float32 and xi.device.type == "cpu":
        _adl_native(plan, params, grads, moms, xi, seg=seg, kick=kick, half_h=half_h, h=h,
                    sigma_a=sigma_a, e_a=e_a, e_b=e_b, noise=noise, reduce=reduce)
        return
    kin = plan.adl_first(params, moms, grads, kick, half_h, factors(), sigma_a, h)
    if reduce is not None:
        kin = reduce(kin)
    nseg = xi2.shape[1]
    a2 = _segment_sums(kin, seg, nseg, R)
    key_seg, n_seg = adl_segments(seg, noise.keys, noise.numels, R)
    cz = adl_noise_scales(sigma_a, h)[0]
    draws = [[adl_kinetic_draw(key_seg[s], noise.step, r, n_seg[s], a2[r][s], cz)
              for s in range(nseg)] for r in range(R)]
    kin_t = torch.tensor(draws, dtype=xi.dtype, device=xi.device).reshape(xi.shape)
    xi.addcmul_(e_a, kin_t).sub_(e_b)
    plan.adl_second(params, moms, half_h, factors())


def adl_segments(seg: list[int], keys: list[int], numels: list[int], R: int
                 ) -> tuple[list[int], list[int]]:
    """Each thermostat segment's Philox key (its first tensor's) and entry count."""
    nseg = max(seg) + 1 if seg else 0
    n_seg = [0] * nseg
    key_seg: list[int | None] = [None] * nseg
    for k, s in enumerate(seg):
        n_seg[s] += numels[k] // R
        if key_seg[s] is None:
            key_seg[s] = keys[k]
    return [int(k or 0) for k in key_seg], n_seg


def _segment_sums(kin: list[Tensor], seg: list[int], nseg: int, R: int) -> list[list[float]]:
    """:math:`|a|^2` per replica and thermostat segment: each tensor's sums (``kin[k]``, one
    per replica) added in float64, in tensor order."""
    rows = torch.stack([k.reshape(R).to(torch.float64) for k in kin], 1).tolist()
    a2 = [[0.0] * nseg for _ in range(R)]
    for r in range(R):
        for k, s in enumerate(seg):
            a2[r][s] += rows[r][k]
    return a2


def _adl_native(plan: Any, params: list[Tensor], grads: list[Tensor], moms: list[Tensor],
                xi: Tensor, *, seg: list[int], kick: float, half_h: float, h: float,
                sigma_a: float, e_a: Tensor, e_b: Tensor, noise: NoiseSource,
                reduce: Callable[[list[Tensor]], list[Tensor]] | None) -> None:
    """:func:`_adl_philox` with the native kernels: the friction factors, E's exact kinetic
    draw and the ξ update are native too (the same operations as ``hb_adl_group``, which the
    fast step of small models uses, so both paths give the same numbers)."""
    from ._philox import adl_noise_scales

    lib = _native.lib()
    R = plan.R
    xi2 = xi.reshape(R, -1)
    if not xi2.is_contiguous() or xi2.data_ptr() != xi.data_ptr():
        raise RuntimeError("the thermostat variables must be one contiguous float32 tensor")
    nseg = xi2.shape[1]
    mhh = -half_h
    f = torch.empty_like(xi2)

    def factors() -> list[Tensor]:
        lib.hb_adl_factors(xi2.data_ptr(), xi2.numel(), mhh, f.data_ptr())
        return [f[:, s].reshape(R, 1) for s in seg]

    kin = plan.adl_first(params, moms, grads, kick, half_h, factors(), sigma_a, h)
    if reduce is not None:
        kin = reduce(kin)
    a2 = _segment_sums(kin, seg, nseg, R)
    key_seg, n_seg = adl_segments(seg, noise.keys, noise.numels, R)
    cz = adl_noise_scales(sigma_a, h)[0]
    a2_t = torch.tensor(a2, dtype=torch.float64)
    draw = torch.empty_like(a2_t)
    seg_key = torch.tensor([k - (1 << 64) if k >= 1 << 63 else k for k in key_seg],
                           dtype=torch.int64)  # the uint64 bits
    seg_n = torch.tensor(n_seg, dtype=torch.int64)
    lib.hb_adl_draws(R, nseg, seg_key.data_ptr(), seg_n.data_ptr(), noise.step,
                     a2_t.data_ptr(), cz, draw.data_ptr())
    ea = e_a.to(torch.float32).contiguous()
    eb = e_b.to(torch.float32).contiguous()
    lib.hb_adl_xi(xi2.data_ptr(), R, nseg, ea.data_ptr(), eb.data_ptr(), draw.data_ptr())
    plan.adl_second(params, moms, half_h, factors())


# ----------------------------------------------------------------------------------------------
# the optimizer
# ----------------------------------------------------------------------------------------------
class Partitioned(HeatbathOptimizer):
    r"""Thermodynamic integrators per parameter group — the general form behind heatbath.

    Every group is a dict with ``params`` and any of the keys below (missing keys take the
    constructor's defaults); ``method`` picks the dynamics:

    - ``"sgld"``: :math:`d\theta = -\nabla L\,dt + \sigma\,dW`;
      step :math:`\theta \leftarrow \theta - h g + \sigma\sqrt h R`.
    - ``"baoab"``: underdamped Langevin :math:`d\theta = p\,dt`,
      :math:`dp = -\nabla L\,dt - \gamma p\,dt + \sqrt{2\gamma\tau}\,dW`, BAOAB splitting.
    - ``"overdamped"``: the γ → ∞ limit of BAOAB (momentum redrawn each step),
      :math:`\theta_{n+1} = \theta_n - \tfrac{h^2}{2} g_n + \tfrac h2\sqrt\tau (R_n + R_{n-1})`.
    - ``"adl"``: Adaptive Langevin :math:`dp = -\nabla L\,dt - \xi p\,dt + \sigma_A dW_A`,
      :math:`d\xi = \epsilon(p^\top p - n\tau)\,dt`, split as ACDEDCA after the merged kick.

    Target density (all but SGLD with arbitrary σ): :math:`\rho(\theta) \propto
    \exp(-\tilde L(\theta)/\tau)`, with :math:`\tilde L` the loss exactly as you compute it
    (by default the minibatch *mean*; see :func:`posterior_tau`). SGLD targets it with
    :math:`\tau = \sigma^2/2`.

    Groups of the friction methods (``"baoab"``, ``"overdamped"``) also carry ``momentum``
    :math:`= e^{-\gamma h}`; writing it (e.g. ``OneCycleLR``, ``CyclicLR``) sets γ, and a group
    may be given by ``lr`` and ``momentum`` instead of ``h`` and ``gamma``. ``lr`` and ``h`` are
    one value. Parameters without ``requires_grad`` or without a gradient are not stepped and
    their state is not touched (see ``docs/optimizers.md`` for the whole contract).

    Args:
        params: parameters or parameter groups (dicts); ``(name, tensor)`` pairs are accepted
            and make each group's noise stream independent of the group order.
        h: time step (≥ 0; 0 is a valid step that moves nothing). Mirrored as
            ``group["lr"]`` so torch LR schedulers scale it.
        method: default method of groups that do not name one.
        gamma: friction (≥ 0) of ``"baoab"``.
        tau: temperature (≥ 0) of ``"baoab"``, ``"overdamped"`` and ``"adl"``.
        sigma: noise amplitude (≥ 0) of ``"sgld"``.
        sigma_A: additive-noise amplitude (≥ 0) of ``"adl"``.
        epsilon: thermostat coupling (≥ 0) of ``"adl"``.
        xi0: initial thermostat variable of ``"adl"``.
        xi_per: ``"tensor"`` (one ξ per parameter tensor, the authors' choice) or ``"group"``.
        epsilon_scale: ``"total"`` (E sums over the n entries, the paper) or ``"per_entry"``
            (ε/n, the SGNHT normalisation, for large layers).
        replicas: if given, the leading dimension of every parameter indexes ``replicas``
            independent runs (ensembles); ξ and diagnostics are then per replica.
        noise: noise backend. ``"auto"`` (default): ``"philox"`` for float32 CPU groups when
            the native kernels are built (``heatbath.optim._native``, faster than eager noise
            at every size), and for sharded (DTensor) parameters; otherwise ``"philox"`` from
            ``AUTO_PHILOX_MIN`` (2**20) elements, ``"eager"`` below. ``"eager"``: one
            ``normal_`` per group and step from the group's ``torch.Generator``.
            ``"philox"``: counter-based Philox4x32-10 noise keyed by (seed, parameter name,
            step) and the element's global index, so a sharded run draws the numbers of the
            unsharded one; generated inside the native (or compiled) kernels that also check
            the gradients and apply the whole update (docs/how-to/noise.md).
            Adaptive Langevin with philox noise draws N normals per step, not 2N (see
            ``adl_kinetic_draw`` there). Eager noise cannot follow shards: it raises for
            DTensor parameters.
        seed: seed of the noise; ``None`` draws one from torch's global generator (rank 0's
            under ``torch.distributed``), so ``torch.manual_seed`` makes runs reproducible.
        generator: a ``torch.Generator`` that all groups draw from in group order
            (overrides ``seed`` for eager noise).
        check_finite: check the gradients for NaN/inf before updating anything (default on).
        foreach: ``True``/``None`` for multi-tensor kernels; ``False`` runs the same
            arithmetic tensor by tensor (a reference path for testing).
    """

    def __init__(
        self,
        params: Iterable[Any],
        h: float,
        *,
        method: str = "baoab",
        gamma: float = 1.0,
        tau: float = 0.0,
        sigma: float = 0.0,
        sigma_A: float = 0.0,
        epsilon: float = 0.0,
        xi0: float = 0.1,
        xi_per: str = "tensor",
        epsilon_scale: str = "total",
        replicas: int | None = None,
        noise: str = "auto",
        seed: int | None = None,
        generator: torch.Generator | None = None,
        check_finite: bool = True,
        foreach: bool | None = None,
    ) -> None:
        h = check_real("h", h, low=0.0)
        check_choice("method", method, METHODS)
        self.foreach = foreach is not False
        self._template: dict[str, Any] = {}
        self._adl_consts: dict[int, tuple[Any, Any]] = {}
        self._pkeys: dict[int, list[int]] = {}
        self._kinds: dict[int, tuple[Any, str]] = {}
        self._fast: FastStep | None = None
        self._fast_retry, self._fast_backoff = 0, 1
        defaults: dict[str, Any] = dict(
            h=h, lr=h, method=method, gamma=gamma, tau=tau, sigma=sigma, sigma_A=sigma_A,
            epsilon=epsilon, xi0=xi0, xi_per=xi_per, epsilon_scale=epsilon_scale,
            replicas=replicas, noise=noise,
        )
        if method in _FRICTION:  # what OneCycleLR/CyclicLR look for
            defaults["momentum"] = _momentum_of(_check_gamma(gamma) if method == "baoab"
                                                else math.inf, h)
        super().__init__(params, defaults, seed=seed, generator=generator,
                         check_finite=check_finite)

    # -- groups ------------------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group. Keys it does not set come from the optimizer's template group when
        the class has one (AdLaLa and LOL: the "rest" partition), else from the defaults.
        Atomic: a group that fails validation leaves the optimizer unchanged."""
        if self._template and isinstance(param_group, dict):
            src = self._template.get("values")
            if src is None:
                src = self.param_groups[self._template["index"]]
            param_group = {**{k: src[k] for k in _INHERITED if k in src}, **param_group}
        super().add_param_group(param_group)

    def _prepare_group(self, group: dict[str, Any], index: int,
                       given: set[str]) -> dict[str, Any]:
        _validate_group(group, given)
        if group["method"] == "adl":  # sigma_A**2 h/2 >= tau: xi runs away (a warning)
            check_thermostat(self, group, index)
        return group

    def _wrap_group(self, group: dict[str, Any]) -> dict[str, Any]:
        if isinstance(group, _Group):
            return group
        if group["method"] not in _FRICTION:  # torch re-adds the default; it means nothing here
            group.pop("momentum", None)
        return _Group(group)

    def _sync_group(self, group: dict[str, Any], index: int) -> None:
        if type(group) is not _Group:
            raise TypeError("param_groups were replaced by plain dicts; modify the groups in "
                            "place instead")
        group.reconcile()
        if group["method"] == "adl":  # re-checked only when h, sigma_A, tau or epsilon changed
            check_thermostat(self, group, index)

    def _check_saved_groups(self, saved_groups: list[dict[str, Any]]) -> None:
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            for key in ("method", "replicas", "xi_per"):
                if saved.get(key) != group[key]:
                    raise ValueError(f"state_dict's group {i} has {key}={saved.get(key)!r}, "
                                     f"this optimizer's has {group[key]!r}; build the optimizer "
                                     "with the same partition")

    def _after_load(self) -> None:
        self._fast, self._fast_retry, self._fast_backoff = None, 0, 1
        self._adl_consts.clear()
        self._pkeys.clear()
        self._kinds.clear()

    # -- the step ----------------------------------------------------------------------------
    def _fast_step(self) -> bool:
        """The steady-state step of small float32 models (``optim/_fast.py``): same numbers,
        a fraction of the Python. Built after the first step, dropped at any change; when the
        optimizer does not qualify, rebuilding is retried after 1, 2, 4, ... 256 steps."""
        fast = self._fast
        if fast is not None:
            if fast.run(self):
                return True
            self._fast = None
        if self.step_count < self._fast_retry:
            return False
        fast = FastStep.build(self)
        if fast is None:
            self._fast_retry = self.step_count + self._fast_backoff
            self._fast_backoff = min(2 * self._fast_backoff, 256)
            return False
        self._fast, self._fast_backoff = fast, 1
        if fast.run(self):
            return True
        self._fast = None
        return False

    def _kind(self, w: GroupWork) -> str:
        """:func:`_noise_kind` of ``w``'s group, cached while the group's parameter list and
        ``noise`` setting stay the same (it is asked several times per step)."""
        group = w.group
        params = group["params"]
        p0 = params[0]
        key = (group["noise"], id(params), len(params), w.sharded, p0.dtype, p0.device,
               os.environ.get("HEATBATH_COMPILE", "1"), os.environ.get("HEATBATH_NATIVE", "1"))
        got = self._kinds.get(w.index)
        if got is None or got[0] != key:
            got = self._kinds[w.index] = (key, _noise_kind(group, w.sharded))
        return got[1]

    def _noise_source(self, w: GroupWork) -> NoiseSource:
        group = w.group
        kind = self._kind(w)
        if kind == "eager":
            return NoiseSource("eager", self, w.index, self.step_count, [], [], [])
        keys = self._pkeys.get(w.index)
        if keys is None:
            keys = [self.philox_key(w.index, j) for j in range(len(group["params"]))]
            self._pkeys[w.index] = keys
        if w.sharded:
            offsets = [self.global_offset(p) for p in w.params]
        else:
            offsets = [0] * len(w.params)
        return NoiseSource("philox", self, w.index, self.step_count,
                           [keys[j] for j in w.positions], offsets,
                           [p.numel() for p in w.params])

    def _momenta(self, w: GroupWork, h: float) -> tuple[list[Tensor], list[float]]:
        """Each parameter's momentum (created as zeros at its first step) and merged kick."""
        moms, kicks = [], []
        for p in w.params:
            st = self.state[p]
            buf = st.get("momentum_buffer")
            if buf is None:
                buf = st["momentum_buffer"] = torch.zeros_like(p)
                st["h_prev"] = 0.0
            moms.append(buf)
            kicks.append(0.5 * (st.get("h_prev", 0.0) + h))
            st["h_prev"] = h
        if w.sharded:
            moms = [local_view(m) for m in moms]
        return moms, kicks

    def _update(self, work: list[GroupWork]) -> None:
        for w in work:
            group = w.group
            method = group["method"]
            h = group["h"]
            noise = self._noise_source(w)
            if method == "sgld":
                _sgld_lists(w.local, w.grads, h=h, std=group["sigma"] * math.sqrt(h),
                            noise=noise, foreach=self.foreach)
            elif method == "adl":
                self._step_adl(w, h, noise)
            else:
                moms, kicks = self._momenta(w, h)
                c, d = S.ou_coefficients(group["gamma"], group["tau"], h)
                _langevin_lists(w.local, w.grads, moms, kicks=kicks, half_h=0.5 * h, c=c, d=d,
                                noise=noise, foreach=self.foreach)
            mark = (id(self), self.step_count)
            for p in w.params:  # tag the gradients this step used (see diagnostics)
                p.grad._heatbath_used = (mark, p.grad._version)

    def _check_finite(self, work: list[GroupWork], *extra: Tensor) -> None:
        """The base check, except that groups with fused counter-based noise generate this
        step's noise and check their gradients in the same compiled pass (no extra pass over
        the gradients); only a flagged step looks closer (and raises naming the tensors)."""
        fused_checks: list[Tensor | float] = []
        rest: list[GroupWork] = []
        for w in work:
            idx = self._fused_philox(w)
            if not idx:
                rest.append(w)
                continue
            noise = self._noise_source(w)
            replicas = w.group["replicas"] if w.group["method"] == "adl" else None
            plan = _philox_plan(noise, w.local, idx, replicas, self.foreach)
            grads = [w.grads[k] for k in idx]
            check = plan.prepare(grads, self.step_count, check_small=False)
            if check is not None:
                fused_checks.append(check)
            big = {idx[i] for i in plan.big}  # small tensors: the base's one-kernel check
            left = [k for k in range(len(w.grads)) if k not in big]
            if left:
                rest.append(dataclasses.replace(
                    w, grads=[w.grads[k] for k in left],
                    positions=[w.positions[k] for k in left]))
        if fused_checks and not math.isfinite(sum(float(c) for c in fused_checks)):
            rest = work  # a NaN/inf (or an overflowing norm): the base check names the tensors
        super()._check_finite(rest, *extra)

    def _fused_philox(self, w: GroupWork) -> list[int]:
        """Indices of ``w``'s tensors whose step will run through a fused Philox plan."""
        group = w.group
        if self._kind(w) != "philox":
            return []
        h, method = group["h"], group["method"]
        if method == "sgld":
            noisy = group["sigma"] > 0 and h > 0
        elif method == "adl":
            noisy = group["sigma_A"] > 0 and h > 0
        else:
            noisy = S.ou_coefficients(group["gamma"], group["tau"], h)[1] > 0
        if not noisy:
            return []
        idx = [k for k, (t, g) in enumerate(zip(w.local, w.grads)) if _fusable(t, g)]
        if method == "adl":
            return idx if len(idx) == len(w.local) else []
        return idx if self.foreach else []

    def _xi(self, index: int, group: dict[str, Any]) -> Tensor:
        """The group's thermostat variables ``[S]`` (``[R, S]`` with replicas), made at the
        first step: one per tensor, or one for the group."""
        gs = self.group_state[index]
        xi = gs.get("xi")
        if xi is None:
            p0 = local_view(group["params"][0])
            nseg = len(group["params"]) if group["xi_per"] == "tensor" else 1
            shape = (nseg,) if group["replicas"] is None else (group["replicas"], nseg)
            xi = gs["xi"] = torch.full(shape, float(group["xi0"]), dtype=p0.dtype,
                                       device=p0.device)
        return xi

    def _step_adl(self, w: GroupWork, h: float, noise: NoiseSource) -> None:
        group = w.group
        R = group["replicas"]
        moms, kicks = self._momenta(w, h)
        xi_all = self._xi(w.index, group)
        per_tensor = group["xi_per"] == "tensor"
        tau, eps = float(group["tau"]), float(group["epsilon"])
        key = (h, eps, tau, group["epsilon_scale"], tuple(w.positions), xi_all.dtype)
        cached = self._adl_consts.get(w.index)
        if cached is None or cached[0] != key:
            R1 = R or 1
            sizes = [float(p.numel() // R1) for p in w.params]
            n = torch.tensor(sizes if per_tensor else [sum(sizes)], dtype=xi_all.dtype,
                             device=xi_all.device)
            eps_seg = eps / n if group["epsilon_scale"] == "per_entry" else torch.full_like(n, eps)
            cached = (key, (h * eps_seg, h * eps_seg * n * tau))
            self._adl_consts[w.index] = cached
        e_a, e_b = cached[1]
        if per_tensor and not w.all_active:
            cols = torch.tensor(w.positions, device=xi_all.device)
            xi = xi_all.index_select(-1, cols)
        else:
            cols, xi = None, xi_all
        seg = list(range(len(moms))) if per_tensor else [0] * len(moms)
        reduce = None
        if w.sharded:
            def reduce(parts: list[Tensor]) -> list[Tensor]:
                return [all_reduce_sum_(t, like=p) for t, p in zip(parts, w.params)]
        _adl_lists(w.local, w.grads, moms, xi, seg=seg, kicks=kicks, half_h=0.5 * h, e_a=e_a,
                   e_b=e_b, std=group["sigma_A"] * math.sqrt(0.5 * h), noise=noise,
                   replicas=R, foreach=self.foreach, reduce=reduce)
        if cols is not None:
            xi_all.index_copy_(-1, cols, xi)

    # -- inspection --------------------------------------------------------------------------
    def _fresh(self, index: int, params: list[tuple[int, Tensor]]) -> bool:
        """True when every gradient was (re)computed since the last step consumed it."""
        for _, p in params:
            g = p.grad
            if g is None:
                return False
            used = getattr(g, "_heatbath_used", None)
            if used is not None and used[0][0] == id(self) and used[1] == g._version:
                return False
        return True

    @torch.no_grad()
    def diagnostics(self) -> list[dict[str, Any]]:
        r"""Per-group temperatures and thermostat state.

        For each group: ``method``, ``tau`` (target), ``step``, ``kinetic_temperature``
        :math:`p^\top p/n` and ``configurational_temperature`` :math:`\theta\cdot\nabla L/n`
        (per replica when ``replicas`` is set), and ``xi`` for Adaptive Langevin (one per
        tensor, or one for the group; lists per replica).

        Which parameters count: those with ``requires_grad`` that have taken at least one step
        (they have a momentum); parameters that never stepped are left out, and a group with
        none reports None. Sums over the shards of DTensor parameters are all-reduced.

        The stored momentum lags the BAOAB momentum by half a kick (merged kicks). When the
        gradients are fresh — computed by ``backward()`` at the current parameters, after the
        last ``step()`` — the kinetic temperature uses the corrected
        :math:`p - \tfrac h2 \nabla L` and ``kinetic_corrected`` is True; otherwise it reports
        the stored momentum and ``kinetic_corrected`` is False, and the configurational
        temperature (which needs the gradient) is None. ``kinetic_temperature_stored`` is
        always that of the stored momentum (for BAOAB: just after the O step; on a Gaussian
        target its mean is exactly τ, while the full-step momentum's is τ(1 − h²k/4)).
        """
        out = []
        for index, group in enumerate(self.param_groups):
            method = group["method"]
            R = group["replicas"]
            d: dict[str, Any] = {"method": method, "tau": group["tau"],
                                 "step": self.step_count}
            if method in _MOMENTUM_METHODS:
                chosen = [(j, p) for j, p in enumerate(group["params"])
                          if p.requires_grad and "momentum_buffer" in self.state.get(p, {})]
            else:
                chosen = [(j, p) for j, p in enumerate(group["params"]) if p.requires_grad]
            fresh = bool(chosen) and self._fresh(index, chosen)
            d["kinetic_corrected"] = fresh and method in _MOMENTUM_METHODS
            if method in _MOMENTUM_METHODS and chosen:
                half = 0.5 * group["h"]
                stored = self._per_replica_mean(
                    [(local_view(self.state[p]["momentum_buffer"]),) * 2 for _, p in chosen],
                    [p for _, p in chosen], R)
                if fresh:
                    corr = [local_view(self.state[p]["momentum_buffer"])
                            - half * local_view(p.grad) for _, p in chosen]
                    kin = self._per_replica_mean([(c, c) for c in corr],
                                                 [p for _, p in chosen], R)
                else:
                    kin = stored
                d["kinetic_temperature"], d["kinetic_temperature_stored"] = kin, stored
            else:
                d["kinetic_temperature"] = d["kinetic_temperature_stored"] = None
            d["configurational_temperature"] = (
                self._per_replica_mean([(local_view(p), local_view(p.grad)) for _, p in chosen],
                                       [p for _, p in chosen], R) if fresh else None)
            if method == "adl":
                xi = self.group_state[index].get("xi")
                if xi is None:
                    nseg = len(group["params"]) if group["xi_per"] == "tensor" else 1
                    xi = torch.full((nseg,) if R is None else (R, nseg), float(group["xi0"]))
                d["xi"] = xi.tolist()
            out.append(d)
        return out

    @staticmethod
    def _per_replica_mean(pairs: list[tuple[Tensor, Tensor]], params: list[Tensor],
                          R: int | None) -> float | list[float]:
        r""":math:`\sum a\cdot b / n` over the tensors (per replica), shards all-reduced."""
        total: Tensor | None = None
        n = 0
        for (a, b), p in zip(pairs, params):
            if R is None:
                s = torch.linalg.vecdot(a.reshape(-1).double(), b.reshape(-1).double())
            else:
                s = torch.linalg.vecdot(a.reshape(R, -1).double(), b.reshape(R, -1).double())
            s = all_reduce_sum_(s.contiguous(), like=p)
            total = s if total is None else total + s
            n += p.numel() // (R or 1)
        assert total is not None
        total = total / n
        return total.tolist() if R is not None else float(total)

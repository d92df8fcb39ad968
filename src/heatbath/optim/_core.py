r"""The general form: any parameter group runs any thermodynamic integrator (spec §2).

:class:`Partitioned` is the one mechanism underneath :class:`~heatbath.optim.SGLD`,
:class:`~heatbath.optim.Langevin`, :class:`~heatbath.optim.AdaptiveLangevin`,
:class:`~heatbath.optim.AdLaLa` and :class:`~heatbath.optim.LOL`. Each parameter group carries
``method`` and its own hyperparameters; all groups share one gradient evaluation per step.

Methods (one gradient per ``step()``; the two half-kicks of consecutive steps are merged, spec §2):

``"sgld"``        :math:`\theta \leftarrow \theta - h g + \sigma\sqrt h R`
``"baoab"``       B A_{h/2} O_h A_{h/2}  (Langevin; per-group γ, τ = multi-layer Langevin)
``"overdamped"``  the same with the momentum redrawn, O: :math:`p \leftarrow \sqrt\tau R`
``"adl"``         B A_{h/2} C_{h/2} D_{h/2} E_h D_{h/2} C_{h/2} A_{h/2}  (Adaptive Langevin)

The merged kick of step :math:`n` is :math:`B_{(h_{n-1}+h_n)/2}` with :math:`h_{-1} = 0`, which is
exactly the trailing half-kick of the previous step plus the leading half-kick of this one, also
when an LR scheduler changes ``h`` between steps.

Implementation: at construction each group's parameters are re-seated as views into one flat
buffer ``theta`` of shape ``[R, N]`` (``R`` replicas, see ``replicas``), with momenta ``p``, noise
and gradient buffers of the same shape, so a step is a few large kernels plus one ``normal_`` per
group, whatever the number of tensors. Parameters stay ordinary ``nn.Parameter`` objects; if
something re-seats them later (``module.to(...)``), the next step notices and re-flattens.
"""

from __future__ import annotations

import math
import warnings
import weakref
import zlib
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import _global_optimizer_post_hooks as _GLOBAL_POST_HOOKS
from torch.optim.optimizer import _global_optimizer_pre_hooks as _GLOBAL_PRE_HOOKS

from .._validate import check_choice, check_int, check_real
from . import _substeps as S

__all__ = ["Partitioned", "NonFiniteGradientError", "METHODS", "posterior_tau"]

METHODS = ("sgld", "baoab", "overdamped", "adl")
_MOMENTUM_METHODS = ("baoab", "overdamped", "adl")
NOISE_BACKENDS = ("eager", "philox")


class NonFiniteGradientError(FloatingPointError):
    """Raised by ``step()`` when a gradient holds NaN or inf; no parameter was changed."""


def posterior_tau(temperature: float, num_data: int) -> float:
    r"""The τ that targets a Bayesian posterior at temperature ``T`` with a *mean* loss.

    heatbath's dynamics target :math:`\rho(\theta) \propto \exp(-\bar L(\theta)/\tau)` with
    :math:`\bar L` the per-sample mean loss (spec §4). The tempered posterior
    :math:`\exp(-N\bar L/T)` therefore needs :math:`\tau = T/N`.
    """
    check_real("temperature", temperature, low=0.0)
    check_int("num_data", num_data, low=1)
    return temperature / num_data


def _group_key(group: dict[str, Any], index: int) -> int:
    """An order-independent key for a group's noise stream: its parameter names if it has any."""
    names = group.get("param_names")
    if names:
        return zlib.crc32("\0".join(names).encode())
    return index


def _mix_seed(seed: int, key: int) -> int:
    """A 63-bit seed for one group's generator from the optimizer seed and the group key."""
    x = (seed * 0x9E3779B97F4A7C15 + key * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) % (1 << 64)
    x ^= x >> 31
    return x % (1 << 63)


def _philox_seed(seed: int, group: dict[str, Any], index: int) -> int:
    """The group's counter-based stream key, distinct from its ``torch.Generator`` seed."""
    return _mix_seed(seed, _group_key(group, index) + 0x5EED)


def _validate_group(group: dict[str, Any]) -> None:
    method = check_choice("method", group["method"], METHODS)
    h = check_real("h", group["h"], low=0.0, low_open=True)
    group["h"] = group["lr"] = h
    check_real("tau", group["tau"], low=0.0)
    check_real("sigma", group["sigma"], low=0.0)
    gamma = group["gamma"]
    if not (isinstance(gamma, float) and math.isinf(gamma) and gamma > 0):
        check_real("gamma", gamma, low=0.0)
    check_real("sigma_A", group["sigma_A"], low=0.0)
    check_real("epsilon", group["epsilon"], low=0.0)
    check_real("xi0", group["xi0"])
    check_choice("xi_per", group["xi_per"], ("tensor", "group"))
    check_choice("epsilon_scale", group["epsilon_scale"], ("total", "per_entry"))
    check_choice("noise", group["noise"], NOISE_BACKENDS)
    if group["replicas"] is not None:
        check_int("replicas", group["replicas"], low=1)
    if method == "adl" and group["epsilon_scale"] == "total":
        n = sum(p.numel() for p in group["params"]) // (group["replicas"] or 1)
        if group["xi_per"] == "tensor":
            n = max(p.numel() // (group["replicas"] or 1) for p in group["params"])
        load = h * group["epsilon"] * n * group["tau"]
        if load > 1.0:
            warnings.warn(
                f"Adaptive Langevin: h*epsilon*n*tau = {load:.3g} > 1 for a thermostat over {n} "
                "entries; one step can move xi by more than 1 and the scheme may blow up. "
                "Consider epsilon_scale='per_entry' (epsilon/n) or a smaller epsilon.",
                RuntimeWarning,
                stacklevel=4,
            )


class _Group(dict):
    """A parameter-group dict in which ``h`` and ``lr`` are one value: setting either sets both,
    so torch LR schedulers (which write ``lr``) scale the time step ``h``."""

    def __setitem__(self, key: Any, value: Any) -> None:
        if key in ("h", "lr"):
            super().__setitem__("h", value)
            super().__setitem__("lr", value)
        else:
            super().__setitem__(key, value)

    def __reduce__(self) -> Any:  # pickles and deep-copies as a plain dict
        return (dict, (dict(self),))


class _Flat:
    """Flat per-group buffers and bookkeeping (not part of the public API)."""

    def __init__(self, group: dict[str, Any], generator: torch.Generator) -> None:
        params: list[Tensor] = group["params"]
        if not params:
            raise ValueError("a parameter group must hold at least one parameter")
        dtype, device = params[0].dtype, params[0].device
        for p in params:
            if p.dtype != dtype or p.device != device:
                raise ValueError(
                    "all parameters of a group must share dtype and device "
                    f"(got {dtype}/{device} and {p.dtype}/{p.device}); split them into groups"
                )
            if not p.is_floating_point():
                raise ValueError(f"parameters must be floating point, got {p.dtype}")
        R = group["replicas"] or 1
        self.R = R
        self.replicated = group["replicas"] is not None
        if self.replicated:
            for p in params:
                if p.dim() == 0 or p.shape[0] != R:
                    raise ValueError(
                        f"replicas={R}: every parameter needs a leading replica dimension of "
                        f"size {R}, got shape {tuple(p.shape)}"
                    )
        self.params = params
        self.shapes = [p.shape for p in params]
        self.numels = [p.numel() // R for p in params]
        self.offsets = [0]
        for n in self.numels:
            self.offsets.append(self.offsets[-1] + n)
        N = self.offsets[-1]
        self.N = N
        self.theta = torch.empty(R, N, dtype=dtype, device=device)
        self.gbuf = torch.empty_like(self.theta)
        self.noise: Tensor | None = None
        self.method = group["method"]
        self.mom = torch.zeros_like(self.theta) if self.method in _MOMENTUM_METHODS else None
        self.generator = generator
        self.noise_kind = group["noise"]
        self.philox_seed = 0  # set by the optimizer: the group's 63-bit stream seed
        self.h_prev = 0.0
        self.h_seen = group["h"]
        self.consumed: list[Any] = []
        self.bind()
        # thermostat segments (Adaptive Langevin): one per tensor, or the whole group
        self.xi: Tensor | None = None
        if self.method == "adl":
            per_tensor = group["xi_per"] == "tensor"
            sizes = self.numels if per_tensor else [N]
            self.seg_bounds = list(zip(self.offsets[:-1], self.offsets[1:])) if per_tensor \
                else [(0, N)]
            self.seg_size = torch.tensor(sizes, dtype=dtype, device=device)
            self.xi = torch.full((R, len(sizes)), float(group["xi0"]), dtype=dtype,
                                 device=device)
            self.make_segment_views()

    def make_segment_views(self) -> None:
        assert self.mom is not None and self.xi is not None
        self.p_segs = [self.mom[:, a:b] for a, b in self.seg_bounds]
        self.e_key: Any = None

    # -- views ---------------------------------------------------------------------------------
    def view(self, buf: Tensor, i: int) -> Tensor:
        """Parameter ``i``'s slice of a flat ``[R, N]`` buffer, in the parameter's shape."""
        sl = buf[:, self.offsets[i] : self.offsets[i + 1]]
        return sl.view(self.shapes[i]) if self.replicated else sl[0].view(self.shapes[i])

    def bind(self) -> None:
        """Copy the parameters into the flat buffer and re-seat them as views of it."""
        with torch.no_grad():
            for i, p in enumerate(self.params):
                v = self.view(self.theta, i)
                v.copy_(p.detach())
                p.data = v
        self.ptrs = [p.data_ptr() for p in self.params]

    def ensure_bound(self) -> None:
        if any(p.data_ptr() != q for p, q in zip(self.params, self.ptrs)):
            dev = self.params[0].device
            if dev != self.theta.device:
                for name in ("theta", "gbuf", "mom", "noise", "xi", "seg_size"):
                    t = getattr(self, name, None)
                    if t is not None:
                        setattr(self, name, t.to(dev))
                if self.xi is not None:
                    self.make_segment_views()
            self.bind()

    # -- gradients -----------------------------------------------------------------------------
    def gather_grad(self) -> Tensor:
        """The group's gradient as a flat ``[R, N]`` tensor (zeros where a grad is None)."""
        grads = []
        for p in self.params:
            g = p.grad
            if g is None:
                g = torch.zeros_like(p)
            elif g.is_sparse:
                raise RuntimeError("heatbath optimizers do not support sparse gradients")
            grads.append(g.reshape(self.R, -1))
        if len(grads) == 1:
            return grads[0]
        torch.cat(grads, dim=1, out=self.gbuf)
        return self.gbuf

    def mark_consumed(self) -> None:
        self.consumed = [None if p.grad is None else (weakref.ref(p.grad), p.grad._version)
                         for p in self.params]

    def grads_fresh(self) -> bool:
        """True when every grad was (re)computed since the last step consumed it."""
        for p, c in zip(self.params, self.consumed):
            if p.grad is None:
                return False
            if c is not None and c[0]() is p.grad and p.grad._version == c[1]:
                return False
        return True

    def noise_buffer(self, rows: int) -> Tensor:
        if self.noise is None or self.noise.shape[0] != rows:
            self.noise = torch.empty(rows, self.N, dtype=self.theta.dtype, device=self.theta.device)
        return self.noise


class Partitioned(torch.optim.Optimizer):
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
    (by default the minibatch *mean*, spec §4; see :func:`posterior_tau`). SGLD targets it
    with :math:`\tau = \sigma^2/2`.

    Args:
        params: parameters or parameter groups (dicts); ``(name, tensor)`` pairs are accepted
            and make each group's noise stream independent of the group order.
        h: time step (> 0). Mirrored as ``group["lr"]`` so torch LR schedulers scale it.
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
        noise: noise backend. ``"eager"`` (default): ``normal_`` from a ``torch.Generator``
            per group — fastest for small models. ``"philox"``: counter-based Philox4x32-10
            noise keyed by (group seed, step, index), generated inside one compiled kernel
            with the BAOAB/SGLD update (``heatbath.optim._philox``); the same numbers
            whatever the thread count, compiled or not (eager fallback without a compiler).
            Worth it from ~1M parameters; the first step compiles (tens of seconds, cached).
        seed: seed of the noise; ``None`` draws one from torch's global generator, so
            ``torch.manual_seed`` makes runs reproducible. Each group gets its own stream.
        generator: a ``torch.Generator`` that all groups draw from in group order
            (overrides ``seed``).
        check_finite: check the gradients for NaN/inf before updating anything (default on).
        foreach: ``True``/``None`` for flat multi-tensor kernels; ``False`` runs the same
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
        noise: str = "eager",
        seed: int | None = None,
        generator: torch.Generator | None = None,
        check_finite: bool = True,
        foreach: bool | None = None,
    ) -> None:
        check_real("h", h, low=0.0, low_open=True)
        if seed is None:
            seed = int(torch.randint(0, 2**62, (), dtype=torch.int64).item())
        else:
            seed = check_int("seed", seed, low=0)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        self._seed = seed
        self._user_generator = generator
        self._flats: list[_Flat] = []
        self._step_count = 0
        self.check_finite = bool(check_finite)
        self.foreach = foreach is not False
        defaults = dict(
            h=h, lr=h, method=method, gamma=gamma, tau=tau, sigma=sigma, sigma_A=sigma_A,
            epsilon=epsilon, xi0=xi0, xi_per=xi_per, epsilon_scale=epsilon_scale,
            replicas=replicas, noise=noise,
        )
        super().__init__(params, defaults)

    # -- construction ------------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if "h" in param_group and "lr" not in param_group:
            param_group["lr"] = param_group["h"]
        elif "lr" in param_group and "h" not in param_group:
            param_group["h"] = param_group["lr"]
        super().add_param_group(param_group)
        group = self.param_groups[-1] = _Group(self.param_groups[-1])
        try:
            _validate_group(group)
        except Exception:
            self.param_groups.pop()
            raise
        index = len(self.param_groups) - 1
        if self._user_generator is not None:
            gen = self._user_generator
        else:
            dev = group["params"][0].device if group["params"] else torch.device("cpu")
            gen = torch.Generator(device=dev)
            gen.manual_seed(_mix_seed(self._seed, _group_key(group, index)))
        flat = _Flat(group, gen)
        flat.philox_seed = _philox_seed(self._seed, group, index)
        self._flats.append(flat)
        if flat.mom is not None:
            for i, p in enumerate(flat.params):
                self.state[p]["momentum_buffer"] = flat.view(flat.mom, i)

    @property
    def seed(self) -> int:
        """The seed the per-group noise streams were derived from."""
        return self._seed

    # -- the step ----------------------------------------------------------------------------
    def _current_h(self, group: dict[str, Any], flat: _Flat) -> float:
        """The group's ``h`` (== ``lr``), validated again when someone changed it."""
        h = group["h"]
        if h != flat.h_seen:
            check_real("h", h, low=0.0, low_open=True)
            flat.h_seen = h
        return float(h)

    @torch._dynamo.disable
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One integrator step for every group, after ``loss.backward()``.

        Raises :class:`NonFiniteGradientError` (and changes nothing) if a gradient is not
        finite.

        Under ``torch.compile`` the step always runs eagerly (it is excluded from tracing):
        the compiler's CPU random number generator is several times slower than eager
        ``normal_`` (spec/performance.md), and eager keeps the noise stream identical. The
        surrounding forward and backward are compiled as usual.

        Step pre/post hooks (``register_step_pre_hook`` and the global ones) run as in torch;
        the profiler label ``Optimizer.step#<class>.step`` is recorded only while a profiler
        is active (torch's own wrapper costs ~8 µs per call, half of a small model's step).
        """
        args: tuple[Any, ...] = (self, closure)
        kwargs: dict[str, Any] = {}
        if _GLOBAL_PRE_HOOKS or self._optimizer_step_pre_hooks:
            for hook in (*_GLOBAL_PRE_HOOKS.values(), *self._optimizer_step_pre_hooks.values()):
                result = hook(self, args, kwargs)
                if result is not None:
                    if not (isinstance(result, tuple) and len(result) == 2):
                        raise RuntimeError("an optimizer step pre-hook must return None or "
                                           f"(new_args, new_kwargs), got {result!r}")
                    args, kwargs = result
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        prev = torch.is_grad_enabled()
        torch._C._set_grad_enabled(False)
        try:
            if torch.autograd._profiler_enabled():
                with torch.autograd.profiler.record_function(
                        f"Optimizer.step#{type(self).__name__}.step"):
                    out = self._step(closure)
            else:
                out = self._step(closure)
        finally:
            torch._C._set_grad_enabled(prev)
        if _GLOBAL_POST_HOOKS or self._optimizer_step_post_hooks:
            for hook in (*self._optimizer_step_post_hooks.values(),
                         *_GLOBAL_POST_HOOKS.values()):
                hook(self, args, kwargs)
        return out

    step.hooked = True  # type: ignore[attr-defined]  # tells torch not to wrap it again

    def _step(self, closure: Callable[[], Any] | None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grads = []
        for flat in self._flats:
            flat.ensure_bound()
            grads.append(flat.gather_grad())
        if self.check_finite:
            # one reduction and one host read: a NaN or inf anywhere makes the sum non-finite
            sums = [g.sum() for g in grads]
            total = sums[0] if len(sums) == 1 else torch.stack(sums).sum()
            if not math.isfinite(total.item()):
                # the sum can also overflow on finite, huge entries: look closer before failing
                bad = [i for i, g in enumerate(grads) if not bool(torch.isfinite(g).all())]
            else:
                bad = []
            if bad:
                raise NonFiniteGradientError(
                    f"non-finite gradient in parameter group(s) {bad} at step "
                    f"{self._step_count}; no parameter was changed. Lower h, check the loss, "
                    "or clip gradients."
                )
        for group, flat, g in zip(self.param_groups, self._flats, grads):
            h = self._current_h(group, flat)
            _STEPS[flat.method](self, group, flat, g, h)
            flat.h_prev = h
            flat.mark_consumed()
        self._step_count += 1
        return loss

    def _draw(self, flat: _Flat, buf: Tensor, std: float) -> Tensor:
        """Fill ``buf`` with N(0, std²) from the group's noise stream."""
        if flat.noise_kind == "philox":
            _philox("philox_fill_")(buf.view(-1), flat.philox_seed, self._step_count, 0, std)
        else:
            buf.normal_(0.0, std, generator=flat.generator)
        return buf

    def _each(self, flat: _Flat, *bufs: Tensor | None) -> Iterable[tuple[Tensor | None, ...]]:
        """Slices ``[R, n_i]`` of flat buffers, tensor by tensor (the reference path)."""
        for a, b in zip(flat.offsets[:-1], flat.offsets[1:]):
            yield tuple(None if t is None else t[..., a:b] for t in bufs)

    def _step_sgld(self, group: dict[str, Any], flat: _Flat, g: Tensor, h: float) -> None:
        std = group["sigma"] * math.sqrt(h)
        if std > 0 and self.foreach and flat.noise_kind == "philox":
            _philox("sgld_philox_step")(flat.theta.view(-1), g.reshape(-1), h, std,
                                        flat.philox_seed, self._step_count)
            return
        noise = self._draw(flat, flat.noise_buffer(flat.R), std) if std > 0 else None
        if self.foreach:
            flat.theta.add_(g, alpha=-h)
            if noise is not None:
                flat.theta.add_(noise)
            return
        for th, gi, ni in self._each(flat, flat.theta, g, noise):
            th.add_(gi, alpha=-h)
            if ni is not None:
                th.add_(ni)

    def _step_langevin(self, group: dict[str, Any], flat: _Flat, g: Tensor, h: float) -> None:
        gamma = math.inf if flat.method == "overdamped" else float(group["gamma"])
        c, d = S.ou_coefficients(gamma, float(group["tau"]), h)
        kick = 0.5 * (flat.h_prev + h)
        if d > 0 and self.foreach and flat.noise_kind == "philox":
            _philox("baoab_philox_step")(flat.theta.view(-1), flat.mom.view(-1), g.reshape(-1),
                                         -kick, 0.5 * h, c, d, flat.philox_seed,
                                         self._step_count)
            return
        noise = self._draw(flat, flat.noise_buffer(flat.R), d) if d > 0 else None
        parts = [(flat.theta, flat.mom, g, noise)] if self.foreach else \
            self._each(flat, flat.theta, flat.mom, g, noise)
        for th, p, gi, ni in parts:
            S.B(p, gi, kick)
            S.A(th, p, 0.5 * h)
            if ni is not None:
                S.O(p, ni, c)
            else:
                p.mul_(c)
            S.A(th, p, 0.5 * h)

    def _step_adl(self, group: dict[str, Any], flat: _Flat, g: Tensor, h: float) -> None:
        assert flat.xi is not None and flat.mom is not None
        half = 0.5 * h
        kick = 0.5 * (flat.h_prev + h)
        tau = float(group["tau"])
        eps = float(group["epsilon"])
        key = (h, eps, tau, group["epsilon_scale"])
        if flat.e_key != key:  # E's constants change only with the hyperparameters
            eps_seg = eps / flat.seg_size if group["epsilon_scale"] == "per_entry" else \
                torch.full_like(flat.seg_size, eps)
            flat.e_consts = (eps_seg, h * eps_seg, h * eps_seg * flat.seg_size * tau)
            flat.e_key = key
        eps_seg, e_a, e_b = flat.e_consts
        std = group["sigma_A"] * math.sqrt(half)
        noise = self._draw(flat, flat.noise_buffer(2 * flat.R), std) if std > 0 else None
        n1 = None if noise is None else noise[: flat.R]
        n2 = None if noise is None else noise[flat.R :]
        th, p, xi = flat.theta, flat.mom, flat.xi
        if self.foreach:
            S.B(p, g, kick)
            S.A(th, p, half)
            S.C(flat.p_segs, xi, half)
            if n1 is not None:
                S.D(p, n1)
            S.E(xi, flat.p_segs, e_a, e_b)
            if n2 is not None:
                S.D(p, n2)
            S.C(flat.p_segs, xi, half)
            S.A(th, p, half)
            return
        # reference path: the same arithmetic tensor by tensor, plain (non-foreach) ops
        seg_of = [0] * len(flat.params) if xi.shape[1] == 1 else list(range(len(flat.params)))
        slices = list(self._each(flat, th, p, g, n1, n2))
        for k, (ti, pi, gi, n1i, _) in enumerate(slices):
            pi.add_(gi, alpha=-kick)
            ti.add_(pi, alpha=half)
            pi.mul_(torch.exp(xi[:, seg_of[k] : seg_of[k] + 1] * -half))
            if n1i is not None:
                pi.add_(n1i)
        kin = torch.zeros_like(xi)
        for k, (_, pi, _, _, _) in enumerate(slices):
            kin[:, seg_of[k]] += (pi * pi).sum(1)
        xi.add_(eps_seg * (kin - flat.seg_size * tau), alpha=h)
        for k, (ti, pi, _, _, n2i) in enumerate(slices):
            if n2i is not None:
                pi.add_(n2i)
            pi.mul_(torch.exp(xi[:, seg_of[k] : seg_of[k] + 1] * -half))
            ti.add_(pi, alpha=half)

    # -- inspection --------------------------------------------------------------------------
    @torch.no_grad()
    def diagnostics(self) -> list[dict[str, Any]]:
        r"""Per-group temperatures and thermostat state.

        For each group: ``method``, ``tau`` (target), ``kinetic_temperature``
        :math:`p^\top p/n` and ``configurational_temperature`` :math:`\theta\cdot\nabla L/n`
        (per replica when ``replicas`` is set), and ``xi`` for Adaptive Langevin.

        The stored momentum lags the BAOAB momentum by half a kick (merged kicks, spec §2).
        When the gradients are fresh — computed by ``backward()`` at the current parameters,
        after the last ``step()`` — the kinetic temperature uses the corrected
        :math:`p - \tfrac h2 \nabla L` and ``kinetic_corrected`` is True; otherwise it reports
        the stored momentum and ``kinetic_corrected`` is False, and the configurational
        temperature (which needs the gradient) is None. ``kinetic_temperature_stored`` is
        always that of the stored momentum (for BAOAB: just after the O step; on a Gaussian
        target its mean is exactly τ, while the full-step momentum's is τ(1 − h²k/4)).
        """
        out = []
        for group, flat in zip(self.param_groups, self._flats):
            d: dict[str, Any] = {"method": flat.method, "tau": group["tau"],
                                 "step": self._step_count}
            fresh = flat.grads_fresh()
            g = flat.gather_grad().clone() if fresh else None
            if flat.mom is not None:
                stored = _per_replica((flat.mom * flat.mom).mean(1), flat.replicated)
                p = flat.mom if g is None else flat.mom - 0.5 * group["h"] * g
                d["kinetic_temperature"] = _per_replica((p * p).mean(1), flat.replicated)
                d["kinetic_corrected"] = g is not None
                d["kinetic_temperature_stored"] = stored
            else:
                d["kinetic_temperature"] = d["kinetic_temperature_stored"] = None
                d["kinetic_corrected"] = False
            d["configurational_temperature"] = (
                None if g is None else _per_replica((flat.theta * g).mean(1), flat.replicated)
            )
            if flat.xi is not None:
                d["xi"] = flat.xi[0].tolist() if not flat.replicated else flat.xi.tolist()
            out.append(d)
        return out

    # -- persistence -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Torch's state dict (per-parameter ``momentum_buffer``) plus a ``"heatbath"`` entry
        with the step count, the thermostat variables, the last step sizes and the noise
        generators' states, so that a resumed run continues bit-identically."""
        sd = super().state_dict()
        sd["heatbath"] = {
            "step": self._step_count,
            "seed": self._seed,
            "groups": [
                {
                    "h_prev": f.h_prev,
                    "xi": None if f.xi is None else f.xi.clone(),
                    "generator": f.generator.get_state(),
                }
                for f in self._flats
            ],
        }
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        sd = dict(state_dict)
        extra = sd.pop("heatbath", None)
        if extra is None:
            raise ValueError("state_dict has no 'heatbath' entry: it was not saved by a heatbath "
                             "optimizer")
        if len(extra["groups"]) != len(self._flats):
            raise ValueError(f"state_dict has {len(extra['groups'])} parameter groups, "
                             f"this optimizer has {len(self._flats)}")
        before = [(g["method"], g["replicas"], g["xi_per"]) for g in self.param_groups]
        super().load_state_dict(sd)
        self.param_groups = [_Group(g) for g in self.param_groups]
        for group, flat, old, ex in zip(self.param_groups, self._flats, before, extra["groups"]):
            if (group["method"], group["replicas"], group["xi_per"]) != old:
                raise ValueError("state_dict's groups differ in method, replicas or xi_per from "
                                 "this optimizer's; build the optimizer with the same partition")
            _validate_group(group)
            flat.ensure_bound()
            if flat.mom is not None:
                for i, p in enumerate(flat.params):
                    v = flat.view(flat.mom, i)
                    saved = self.state[p].get("momentum_buffer")
                    v.copy_(saved) if saved is not None else v.zero_()
                    self.state[p]["momentum_buffer"] = v
            if flat.xi is not None and ex["xi"] is not None:
                flat.xi.copy_(ex["xi"])
            flat.h_prev = float(ex["h_prev"])
            flat.h_seen = group["h"]
            flat.generator.set_state(ex["generator"].cpu())
            flat.consumed = []
        self._step_count = int(extra["step"])
        self._seed = int(extra["seed"])
        for index, (group, flat) in enumerate(zip(self.param_groups, self._flats)):
            flat.philox_seed = _philox_seed(self._seed, group, index)


def _philox(name: str) -> Callable[..., Any]:
    """The compiled (or, without a compiler, eager) counter-based noise kernel ``name``."""
    from . import _philox as ph

    return ph.get_compiled(getattr(ph, name))


def _per_replica(x: Tensor, replicated: bool) -> float | list[float]:
    return x.tolist() if replicated else float(x[0])


_STEPS: dict[str, Callable[[Partitioned, dict[str, Any], _Flat, Tensor, float], None]] = {
    "sgld": Partitioned._step_sgld,
    "baoab": Partitioned._step_langevin,
    "overdamped": Partitioned._step_langevin,
    "adl": Partitioned._step_adl,
}

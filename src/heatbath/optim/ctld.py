r"""Continuously Tempered Langevin Dynamics (CTLD).

N. Ye, Z. Zhu, R. K. Mantiuk, "Langevin Dynamics with Continuous Tempering for Training Deep
Neural Networks", NIPS 2017 (arXiv 1703.04379). Equation numbers are the paper's; the decisions
D1-D14 refer to heatbath's note ``spec/ctld.md`` and are repeated in ``docs/ctld.md``.

Continuous model
----------------
With N data points, the mean training objective
:math:`f(\theta) = \bar\ell(\theta) + \tfrac12\,\mathrm{wd}\,|\theta|^2` and the potential
:math:`U = N f` (Eq. 2), the extended Hamiltonian (Eq. 6, with a base temperature :math:`T_c`)

.. math::

    H(\theta, r) = U(\theta) + \tfrac12 r^\top r, \qquad
    H_e(\theta, r, \alpha, r_\alpha) = g(\alpha)\,H(\theta, r) + \phi(\alpha) + V_b(\alpha)
        + \tfrac12 r_\alpha^2

is sampled by the SDE (Eq. 4)

.. math::

    d\theta = r\,dt, \quad dr = -\nabla U\,dt - \gamma r\,dt + \sqrt{2\gamma T_c/g(\alpha)}\,dW,\\
    d\alpha = r_\alpha dt, \quad dr_\alpha = h\,dt - \gamma_\alpha r_\alpha dt
        + \sqrt{2\gamma_\alpha T_c}\,dW_\alpha, \qquad
    h = -g'(\alpha)\,H(\theta, r) - \phi'(\alpha) - V_b'(\alpha),

whose stationary density is :math:`p(\theta, r, \alpha, r_\alpha) \propto \exp(-H_e/T_c)`.
Hence :math:`p(\theta \mid \alpha) \propto \exp(-g(\alpha) U(\theta)/T_c)`: for
:math:`|\alpha| \le \delta` (g = 1) the parameters follow the physical target
:math:`\exp(-U/T_c)`, and at :math:`|\alpha| \ge \delta'` they are hot, temperature
:math:`T_c/(1 - S)`. The temperature scaling (Eq. 7), with
:math:`z = (|\alpha| - \delta)/(\delta' - \delta)` clipped to [0, 1], is

.. math::

    g(\alpha) = 1 - S\,(3z^2 - 2z^3), \qquad
    g'(\alpha) = -\operatorname{sign}(\alpha)\,\frac{6 S z (1 - z)}{\delta' - \delta}.

The confinement (Eq. 11 with the sign fixed, D5) is :math:`\phi'(\alpha) = C\,\mathrm{sign}(\alpha)`
for :math:`|\alpha| > \delta'` ("linear"), :math:`C(|\alpha| - \delta')\,\mathrm{sign}(\alpha)`
("quadratic"), or an elastic wall at :math:`\pm\delta'` ("reflect"). The metadynamics bias
(Eqs. 12-14) lives on the K + 1 nodes :math:`a_j = -\delta' + j\Delta`, :math:`\Delta = 2\delta'/K`:

.. math::

    V_b[j] \mathrel{+}= w \exp\!\big(-(a_j - \alpha)^2 / (2\sigma^2)\big), \qquad
    V_b'(\alpha) \approx (V_b[k^*+1] - V_b[k^*]) / \Delta .

Discrete update (Algorithm 1 in heatbath's units, D1)
------------------------------------------------------
The user gives the ``torch.optim.SGD`` learning rate :math:`\lambda` on the *mean* loss, the
momentum :math:`\mu`, ``num_data`` N and ``sampling_steps`` :math:`L_s`. The paper's step and
friction are :math:`\eta = \sqrt{\lambda/N}` and :math:`\gamma = (1 - \mu)/\eta`; its momentum
is :math:`r = -\sqrt{\lambda N}\,b` with b torch's momentum buffer. Step t of phase (i),
:math:`t \le L_s`, with :math:`\theta` the parameters on entry and :math:`\bar\ell` the loss of
the minibatch that produced the gradient:

.. math::

    1.\ & b \leftarrow \mu b + \nabla f(\theta) - s_\theta\,\varepsilon, \quad
          s_\theta = \sqrt{2(1 - \mu) T_c / (\lambda N g(\alpha_{\rm old}))}\\
    2.\ & \alpha \leftarrow \alpha + \eta_\alpha r_\alpha
          \quad(\text{reflected at } \pm\delta' \text{ for "reflect"})\\
    3.\ & V_b[j] \mathrel{+}= w \exp(-(a_j - \alpha)^2/(2\sigma^2)),\ j = 0..K\\
    4.\ & \tilde H = N(\bar\ell + \tfrac12 \mathrm{wd}|\theta|^2) + \tfrac12 \lambda N |b|^2,
          \quad \tilde h = -g'(\alpha)\tilde H - \phi'(\alpha) - D_b(\alpha)\\
    5.\ & r_\alpha \leftarrow \mu_\alpha r_\alpha + \eta_\alpha \tilde h
          + \sqrt{2(1 - \mu_\alpha) T_c}\,\varepsilon_\alpha\\
    6.\ & \theta \leftarrow \theta - \lambda b

with :math:`\eta_\alpha = \kappa\sqrt{\lambda_0/N}` (``alpha_step_scale`` :math:`\kappa`, lr
:math:`\lambda_0` of group 0) and :math:`\mu_\alpha = 1 - \eta_\alpha\gamma_\alpha`
(``alpha_momentum``, default :math:`\mu`, D11). Phase (ii), :math:`t > L_s`, is exactly
``torch.optim.SGD(lr, momentum, weight_decay=wd)``: :math:`b \leftarrow \mu b + \nabla f`,
:math:`\theta \leftarrow \theta - \lambda b`, with :math:`\alpha, r_\alpha, V_b` frozen.
Initial state (D7): :math:`b^{(0)} = \sqrt{T_c/(\lambda N)}\,\xi` (i.e. :math:`r^{(0)} \sim
N(0, T_c I)`), :math:`\alpha^{(0)} = 0`, :math:`r_\alpha^{(0)} \sim N(0, T_c)`, :math:`V_b = 0`,
all drawn from the optimizer's own ``torch.Generator`` (no draw when :math:`T_c = 0` or
:math:`L_s = 0`).

Choices the paper leaves open (spec D1-D14): the confinement force C defaults to ``"auto"``,
:math:`C_t = 4\max|g'|\,|\tilde H_t|` (D5); outside :math:`[-\delta', \delta']` the bias force is
zero (D6); the deposit happens before the force is computed (D6); the noise compensation of
Eqs. 9-10 is off by default and, when on, only corrects the :math:`r_\alpha` noise (D4).
Hyperparameters not published in the main text come from :func:`ctld_defaults` (D14).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from heatbath._validate import check_choice, check_int, check_real

__all__ = ["CTLD", "ctld_defaults", "g_scale", "g_scale_prime"]

#: keys that define the one tempering variable alpha and must agree across param groups (D10)
_GLOBAL_KEYS = (
    "num_data", "sampling_steps", "temperature", "delta", "delta_prime", "span", "hill_height",
    "hill_width", "num_bins", "confine_force", "confinement", "alpha_momentum",
    "alpha_step_scale", "handoff", "reset_momentum", "noise_correction", "symmetric_bias",
)


def ctld_defaults() -> dict[str, Any]:
    """The hyperparameters the paper's main text does not fix (spec D14, section 6).

    The paper derives C, w, sigma, K ... from "empirical formulae relying on the learning rate"
    in its (unpublished here) supplementary; heatbath uses these constants instead. They are
    held in this one function so that the formulas can replace them in one place.

    delta, delta_prime, span: the paper's Fig. 1; hill_height w = 20 (in units of the N-scaled
    energy H_e) and hill_width sigma = 0.04: Fig. 4 right; num_bins K = 300 (grid spacing
    2 delta'/K = 0.01 = sigma/4, so the forward difference of Eq. 14 resolves the hills);
    confine_force "auto" (D5); temperature T_c = 1 (the paper's beta = 1).
    """
    return {
        "temperature": 1.0,
        "delta": 0.4,
        "delta_prime": 1.5,
        "span": 0.85,
        "hill_height": 20.0,
        "hill_width": 0.04,
        "num_bins": 300,
        "confine_force": "auto",
        "confinement": "linear",
        "alpha_step_scale": 1.0,
        "handoff": "last",
        "reset_momentum": False,
        "noise_correction": False,
        "symmetric_bias": False,
    }


def _ramp(alpha: Tensor, delta: float, delta_prime: float) -> Tensor:
    return ((alpha.abs() - delta) / (delta_prime - delta)).clamp(0.0, 1.0)


def _g(alpha: float, delta: float, delta_prime: float, span: float) -> float:
    z = min(1.0, max(0.0, (abs(alpha) - delta) / (delta_prime - delta)))
    return 1.0 - span * (3.0 * z * z - 2.0 * z * z * z)


def _gp(alpha: float, delta: float, delta_prime: float, span: float) -> float:
    z = min(1.0, max(0.0, (abs(alpha) - delta) / (delta_prime - delta)))
    if z <= 0.0 or z >= 1.0:
        return 0.0
    return -math.copysign(1.0, alpha) * (6.0 * span / (delta_prime - delta)) * z * (1.0 - z)


def g_scale(alpha: Tensor, delta: float, delta_prime: float, span: float) -> Tensor:
    """Temperature scaling g(alpha) of Eq. 7: 1 on |alpha| <= delta, 1 - S beyond delta'."""
    z = _ramp(alpha, delta, delta_prime)
    return 1.0 - span * (3.0 * z * z - 2.0 * z * z * z)


def g_scale_prime(alpha: Tensor, delta: float, delta_prime: float, span: float) -> Tensor:
    """Closed-form derivative g'(alpha) = -sign(alpha) 6 S z (1 - z) / (delta' - delta)."""
    z = _ramp(alpha, delta, delta_prime)
    return -torch.sign(alpha) * (6.0 * span / (delta_prime - delta)) * z * (1.0 - z)


class CTLD(Optimizer):
    """Continuously tempered Langevin dynamics, then SGD with momentum (see module docstring).

    Args:
        params: iterable of parameters or param-group dicts (``lr``, ``momentum`` and
            ``weight_decay`` may differ per group; every CTLD key must be equal, D10).
        lr: learning rate lambda of ``torch.optim.SGD`` on the mean loss, > 0.
        momentum: SGD momentum mu in [0, 1) (the paper's 1 - eta*gamma).
        num_data: N, the number of training examples, >= 1.
        sampling_steps: L_s, the exact number of phase-(i) steps, >= 0 (D8).
        temperature: T_c >= 0, multiplies both noise variances.
        delta, delta_prime, span: delta, delta', S of g (Eq. 7): 0 <= delta < delta',
            0 <= S < 1.
        hill_height, hill_width, num_bins: metadynamics w >= 0, sigma > 0, K >= 2 (Eqs. 13-14).
        confine_force: C > 0 or ``"auto"`` (C_t = 4 max|g'| |H~_t|, D5).
        confinement: ``"linear"`` (Eq. 11), ``"quadratic"`` or ``"reflect"``.
        alpha_momentum: mu_alpha in [0, 1); default: ``momentum`` of the first group (D11).
        alpha_step_scale: kappa > 0, eta_alpha = kappa sqrt(lambda_0/N).
        handoff: ``"last"`` (Algorithm 1) or ``"last_cold"`` (restore the latest iterate with
            |alpha| <= delta when phase (ii) starts; D9).
        reset_momentum: zero the momentum buffers at the hand-off.
        noise_correction: Eq. 10's variance correction on r_alpha from per-example losses (D4).
        symmetric_bias: also deposit a hill at -alpha (g is even).
        weight_decay: torch's L2 weight decay, part of the potential (D3).
        seed, generator: the randomness; ``generator`` wins over ``seed``.
        foreach: ``False`` uses a per-tensor loop instead of ``torch._foreach_*`` kernels.
        check_finite: raise ``FloatingPointError`` (parameters untouched) on a non-finite loss
            or gradient. Costs one host synchronisation per step.
        alpha_init: alpha at t = 0 (the paper: 0).
        freeze_alpha: test hook: alpha, r_alpha and V_b stay fixed during phase (i).

    ``step(closure=None, *, loss=None)``: phase (i) needs the loss value of the same forward
    pass, from ``closure`` or ``loss`` (a 0-d tensor/float, or a 1-D tensor of per-example
    losses, whose mean is used).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float,
        num_data: int,
        sampling_steps: int,
        *,
        temperature: float = 1.0,
        delta: float = 0.4,
        delta_prime: float = 1.5,
        span: float = 0.85,
        hill_height: float = 20.0,
        hill_width: float = 0.04,
        num_bins: int = 300,
        confine_force: float | str = "auto",
        confinement: str = "linear",
        alpha_momentum: float | None = None,
        alpha_step_scale: float = 1.0,
        handoff: str = "last",
        reset_momentum: bool = False,
        noise_correction: bool = False,
        symmetric_bias: bool = False,
        weight_decay: float = 0.0,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        foreach: bool | None = None,
        check_finite: bool = True,
        alpha_init: float = 0.0,
        freeze_alpha: bool = False,
    ) -> None:
        check_real("lr", lr, low=0.0, low_open=True)
        check_real("momentum", momentum, low=0.0, high=1.0, high_open=True)
        check_real("weight_decay", weight_decay, low=0.0)
        if alpha_momentum is None:
            alpha_momentum = float(momentum)
        defaults: dict[str, Any] = {
            "lr": lr, "momentum": momentum, "weight_decay": weight_decay,
            "num_data": num_data, "sampling_steps": sampling_steps, "temperature": temperature,
            "delta": delta, "delta_prime": delta_prime, "span": span,
            "hill_height": hill_height, "hill_width": hill_width, "num_bins": num_bins,
            "confine_force": confine_force, "confinement": confinement,
            "alpha_momentum": alpha_momentum, "alpha_step_scale": alpha_step_scale,
            "handoff": handoff, "reset_momentum": reset_momentum,
            "noise_correction": noise_correction, "symmetric_bias": symmetric_bias,
        }
        self._validate_global(defaults)
        check_real("alpha_init", alpha_init)
        self._foreach = foreach is not False
        self._check_finite = bool(check_finite)
        self._freeze_alpha = bool(freeze_alpha)
        self._initialised = False
        super().__init__(params, defaults)
        first = self.param_groups[0]["params"][0]
        self._device = first.device
        if generator is None:
            generator = torch.Generator(device=self._device)
            if seed is None:
                generator.seed()
            else:
                generator.manual_seed(check_int("seed", seed, low=0))
        self._gen = generator
        f64 = {"dtype": torch.float64, "device": self._device}
        g0 = self.param_groups[0]
        k = g0["num_bins"]
        dp = g0["delta_prime"]
        # nodes a_j = -delta' + j * (2 delta'/K), computed exactly as the bin lookup assumes
        self._nodes = -dp + torch.arange(k + 1, **f64) * (2.0 * dp / k)
        # alpha and r_alpha are Python floats (float64): the alpha dynamics is scalar work, and
        # on the CPU a Python float op is ~50x cheaper than a 0-d tensor op
        self._alpha = float(alpha_init)
        self._r_alpha = 0.0
        self._bias = torch.zeros(k + 1, **f64)
        self._t = 0
        self._phase = "sampling" if g0["sampling_steps"] > 0 else "optimization"
        self._cold_count = 0
        self._sampled = 0
        self._dalpha_max = 0.0
        self._clip_count = 0
        self._warned_jump = False
        self._has_cold_snapshot = False
        self._last: dict[str, float | bool] = {}
        # initial momenta (D7): r ~ N(0, T_c I) <=> b = sqrt(T_c/(lambda N)) xi, then r_alpha
        for group in self.param_groups:
            self._init_buffers(group)
        tc = g0["temperature"]
        if tc > 0 and self._phase == "sampling":
            eps = float(torch.randn((), generator=self._gen, **f64))
            self._r_alpha = math.sqrt(tc) * eps
        self._initialised = True

    # ------------------------------------------------------------------ validation / setup
    @staticmethod
    def _validate_global(d: dict[str, Any]) -> None:
        check_int("num_data", d["num_data"], low=1)
        check_int("sampling_steps", d["sampling_steps"], low=0)
        check_real("temperature", d["temperature"], low=0.0)
        check_real("delta", d["delta"], low=0.0)
        check_real("delta_prime", d["delta_prime"], low=d["delta"], low_open=True)
        check_real("span", d["span"], low=0.0, high=1.0, high_open=True)
        check_real("hill_height", d["hill_height"], low=0.0)
        check_real("hill_width", d["hill_width"], low=0.0, low_open=True)
        check_int("num_bins", d["num_bins"], low=2)
        if not (isinstance(d["confine_force"], str) and d["confine_force"] == "auto"):
            check_real("confine_force", d["confine_force"], low=0.0, low_open=True)
        check_choice("confinement", d["confinement"], ("linear", "quadratic", "reflect"))
        check_real("alpha_momentum", d["alpha_momentum"], low=0.0, high=1.0, high_open=True)
        check_real("alpha_step_scale", d["alpha_step_scale"], low=0.0, low_open=True)
        check_choice("handoff", d["handoff"], ("last", "last_cold"))
        for key in ("reset_momentum", "noise_correction", "symmetric_bias"):
            if not isinstance(d[key], bool):
                raise ValueError(f"{key} must be a bool, got {d[key]!r}")

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        check_real("lr", group["lr"], low=0.0, low_open=True)
        check_real("momentum", group["momentum"], low=0.0, high=1.0, high_open=True)
        check_real("weight_decay", group["weight_decay"], low=0.0)
        for p in group["params"]:
            if p.is_sparse:
                raise ValueError("CTLD does not support sparse parameters")
        ref = self.param_groups[0]
        for key in _GLOBAL_KEYS:
            if group[key] != ref[key]:
                raise ValueError(
                    f"CTLD has one tempering variable alpha, so {key!r} must be equal in every "
                    f"param group (D10); got {ref[key]!r} and {group[key]!r}")
        if getattr(self, "_initialised", False):
            self._init_buffers(group)

    def _init_buffers(self, group: dict[str, Any]) -> None:
        tc = group["temperature"]
        scale = math.sqrt(tc / (group["lr"] * group["num_data"]))
        for p in group["params"]:
            if tc > 0 and self._phase == "sampling":
                xi = torch.randn(p.shape, generator=self._gen, dtype=p.dtype, device=p.device)
                buf = xi.mul_(scale)
            else:
                buf = torch.zeros_like(p, memory_format=torch.preserve_format)
            self.state[p]["momentum_buffer"] = buf

    # ------------------------------------------------------------------ public helpers
    @property
    def phase(self) -> str:
        """``"sampling"`` (phase i) or ``"optimization"`` (phase ii)."""
        return self._phase

    @property
    def alpha(self) -> float:
        """Current value of the tempering variable alpha."""
        return self._alpha

    @property
    def r_alpha(self) -> float:
        """Current momentum of alpha (paper units)."""
        return self._r_alpha

    @property
    def bias(self) -> Tensor:
        """The metadynamics bias V_b on the K + 1 grid nodes (float64, live tensor)."""
        return self._bias

    @property
    def bias_nodes(self) -> Tensor:
        """The grid nodes a_j = -delta' + j * 2 delta'/K, j = 0..K."""
        return self._nodes

    @property
    def steps(self) -> int:
        """Number of steps taken."""
        return self._t

    def g(self, alpha: Tensor | float) -> Tensor:
        """g(alpha) with this optimizer's delta, delta', S."""
        c = self.param_groups[0]
        return g_scale(torch.as_tensor(alpha, dtype=torch.float64), c["delta"],
                       c["delta_prime"], c["span"])

    def bias_force(self, alpha: float) -> float:
        """D_b(alpha): forward difference of V_b across alpha's bin (Eq. 14); 0 outside."""
        c = self.param_groups[0]
        return self._bias_force_float(float(alpha), c["delta_prime"], c["num_bins"])

    def _bias_force_float(self, alpha: float, dp: float, k: int) -> float:
        if abs(alpha) > dp:
            return 0.0
        width = 2.0 * dp / k
        idx = min(k - 1, max(0, math.floor((alpha + dp) / width)))
        lo, hi = self._bias[idx:idx + 2].tolist()
        return (hi - lo) / width

    def diagnostics(self) -> dict[str, float | str | bool]:
        """Diagnostics of the latest step as Python numbers (one host sync).

        Keys: ``alpha``, ``temperature_ratio`` (1/g(alpha) = T(alpha)/T_c), ``H`` (H~),
        ``force_coupling`` (-g' H~), ``force_confinement`` (-phi'), ``force_bias`` (-D_b),
        ``confine_force`` (C in force), ``cold`` (|alpha| <= delta), ``cold_fraction`` (running,
        over phase-(i) steps), ``max_dalpha`` (largest |alpha step| so far), ``noise_clips``
        (D4 counter), ``phase``, ``step``.
        """
        out: dict[str, float | str | bool] = {"phase": self._phase, "step": self._t}
        out.update(self._last)
        out["cold_fraction"] = self.cold_fraction()
        out["max_dalpha"] = self._dalpha_max
        out["noise_clips"] = self._clip_count
        return out

    def cold_fraction(self) -> float:
        """Fraction of phase-(i) steps that ended with |alpha| <= delta."""
        return self._cold_count / self._sampled if self._sampled else float("nan")

    def _maybe_warn_jump(self, dalpha_max: float) -> None:
        c = self.param_groups[0]
        if not self._warned_jump and dalpha_max > c["delta_prime"] - c["delta"]:
            self._warned_jump = True
            warnings.warn(
                f"CTLD: alpha moved {dalpha_max:.3g} > delta' - delta = "
                f"{c['delta_prime'] - c['delta']:.3g} in one step, i.e. across the whole "
                "temperature ramp; lower lr or alpha_step_scale", RuntimeWarning, stacklevel=3)

    def end_sampling(self) -> None:
        """Switch to phase (ii) now (also called automatically after ``sampling_steps``)."""
        if self._phase == "optimization":
            return
        self._phase = "optimization"
        c = self.param_groups[0]
        if c["handoff"] == "last_cold":
            if self._has_cold_snapshot:
                for group in self.param_groups:
                    for p in group["params"]:
                        st = self.state[p]
                        if "last_cold_param" in st:
                            p.detach().copy_(st.pop("last_cold_param"))
                            st["momentum_buffer"].copy_(st.pop("last_cold_buf"))
            else:
                warnings.warn("CTLD handoff='last_cold': alpha was never cold; keeping the last "
                              "iterate", RuntimeWarning, stacklevel=2)
        if c["reset_momentum"]:
            for group in self.param_groups:
                for p in group["params"]:
                    self.state[p]["momentum_buffer"].zero_()

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        f64 = {"dtype": torch.float64}
        sd["ctld"] = {
            "alpha": torch.tensor(self._alpha, **f64),
            "r_alpha": torch.tensor(self._r_alpha, **f64),
            "bias": self._bias.clone(), "t": self._t, "phase": self._phase,
            "generator_state": self._gen.get_state().clone(),
            "cold_count": self._cold_count, "sampled": self._sampled,
            "dalpha_max": self._dalpha_max, "clip_count": self._clip_count,
            "warned_jump": self._warned_jump, "has_cold_snapshot": self._has_cold_snapshot,
        }
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        sd = dict(state_dict)
        extra = sd.pop("ctld", None)
        if extra is None:
            raise ValueError("state_dict lacks the 'ctld' entry written by CTLD.state_dict()")
        super().load_state_dict(sd)
        dev = self._device
        self._alpha = float(extra["alpha"])
        self._r_alpha = float(extra["r_alpha"])
        self._bias = extra["bias"].to(dev, torch.float64).clone()
        self._t = int(extra["t"])
        self._phase = str(extra["phase"])
        self._gen.set_state(extra["generator_state"].clone())
        self._cold_count = int(extra["cold_count"])
        self._sampled = int(extra["sampled"])
        self._dalpha_max = float(extra["dalpha_max"])
        self._clip_count = int(extra["clip_count"])
        self._warned_jump = bool(extra["warned_jump"])
        self._has_cold_snapshot = bool(extra["has_cold_snapshot"])

    # ------------------------------------------------------------------ the step
    def _collect(self) -> list[tuple[dict[str, Any], list[Tensor], list[Tensor], list[Tensor]]]:
        out = []
        for group in self.param_groups:
            params, grads, bufs = [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise ValueError("CTLD does not support sparse gradients")
                params.append(p)
                grads.append(p.grad)
                bufs.append(self.state[p]["momentum_buffer"])
            out.append((group, params, grads, bufs))
        return out

    def _loss_stats(self, loss: Any) -> tuple[Tensor, Tensor | None, int]:
        if isinstance(loss, Tensor):
            val = loss.detach().to(self._device, torch.float64)
        else:
            try:
                val = torch.tensor(float(loss), dtype=torch.float64, device=self._device)
            except (TypeError, ValueError) as err:
                raise ValueError(f"loss must be a number or a tensor, got {loss!r}") from err
        if val.dim() == 0:
            return val, None, 1
        if val.dim() == 1 and val.numel() >= 1:
            var = val.var() if val.numel() > 1 else torch.zeros((), dtype=torch.float64,
                                                                  device=self._device)
            return val.mean(), var, val.numel()
        raise ValueError(f"loss must be 0-d (the mean loss) or 1-D (per-example losses), "
                         f"got shape {tuple(val.shape)}")

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, *, loss: Any = None) -> Any:
        """One CTLD step (phase i) or SGD-momentum step (phase ii); returns the loss."""
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        sampling = self._phase == "sampling"
        if sampling and loss is None:
            raise ValueError("CTLD.step: phase (i) needs the loss value of the same forward pass "
                             "(the alpha-force uses it): pass `loss=` or a `closure`")
        collected = self._collect()
        ell = var = None
        m = 1
        if loss is not None:
            ell, var, m = self._loss_stats(loss)
        if self._check_finite:
            parts = [torch.stack(torch._foreach_norm(grads)).to(torch.float64).sum()
                     for _, _, grads, _ in collected if grads]
            if ell is not None:
                parts.append(ell)
            if parts:
                total = torch.stack(parts).sum()
                if not math.isfinite(float(total)):
                    raise FloatingPointError(
                        f"CTLD.step {self._t + 1}: non-finite loss or gradient; the step was "
                        "not applied (parameters and optimizer state are unchanged)")
        if sampling:
            assert ell is not None
            self._sampling_step(collected, ell, var, m)
        else:
            self._sgd_step(collected)
        self._t += 1
        if sampling:
            self._maybe_warn_jump(self._dalpha_max)
        if sampling and self._t >= self.param_groups[0]["sampling_steps"]:
            self.end_sampling()
        return loss

    def _momentum_update(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor],
                         bufs: list[Tensor]) -> None:
        """b <- mu b + (grad + wd theta), with exactly torch.optim.SGD's arithmetic."""
        wd, mu = group["weight_decay"], group["momentum"]
        if self._foreach:
            if wd != 0:
                grads = torch._foreach_add(grads, params, alpha=wd)
            torch._foreach_mul_(bufs, mu)
            torch._foreach_add_(bufs, grads, alpha=1.0)
        else:
            for p, gr, b in zip(params, grads, bufs, strict=True):
                if wd != 0:
                    gr = gr.add(p, alpha=wd)
                b.mul_(mu).add_(gr, alpha=1.0)

    def _param_update(self, group: dict[str, Any], params: list[Tensor],
                      bufs: list[Tensor]) -> None:
        if self._foreach:
            torch._foreach_add_(params, bufs, alpha=-group["lr"])
        else:
            for p, b in zip(params, bufs, strict=True):
                p.add_(b, alpha=-group["lr"])

    def _sgd_step(self, collected: list) -> None:
        for group, params, grads, bufs in collected:
            if params:
                self._momentum_update(group, params, grads, bufs)
                self._param_update(group, params, bufs)

    def _sampling_step(self, collected: list, ell: Tensor, var: Tensor | None, m: int) -> None:
        c = self.param_groups[0]
        n, tc = c["num_data"], c["temperature"]
        delta, dp, span = c["delta"], c["delta_prime"], c["span"]
        k = c["num_bins"]
        eta_a = c["alpha_step_scale"] * math.sqrt(c["lr"] / n)
        mu_a = c["alpha_momentum"]

        # 1. momentum with the temperature of the *old* alpha
        inv_sqrt_g_old = 1.0 / math.sqrt(_g(self._alpha, delta, dp, span))
        for group, params, grads, bufs in collected:
            if not params:
                continue
            self._momentum_update(group, params, grads, bufs)
            if tc > 0:
                s_theta = inv_sqrt_g_old * math.sqrt(
                    2.0 * (1.0 - group["momentum"]) * tc / (group["lr"] * n))
                noise = [torch.randn(p.shape, generator=self._gen, dtype=p.dtype, device=p.device)
                         for p in params]
                if self._foreach:
                    torch._foreach_mul_(noise, s_theta)
                    torch._foreach_sub_(bufs, noise)
                else:
                    for b, e in zip(bufs, noise, strict=True):
                        b.sub_(e.mul_(s_theta))

        alpha_old, r_alpha = self._alpha, self._r_alpha
        alpha = alpha_old
        if not self._freeze_alpha:
            # 2. position of alpha
            alpha = alpha_old + eta_a * r_alpha
            if c["confinement"] == "reflect" and abs(alpha) > dp:
                # elastic wall: mirror the overshoot back inside, flip the velocity
                alpha = max(-dp, min(dp, math.copysign(1.0, alpha) * (2.0 * dp - abs(alpha))))
                r_alpha = -r_alpha
            # 3. deposit a hill at the new alpha (before the force, Algorithm 1's order)
            w, sig = c["hill_height"], c["hill_width"]
            if w > 0:
                inv2s2 = -0.5 / (sig * sig)
                self._bias.add_(torch.exp((self._nodes - alpha).square_().mul_(inv2s2)), alpha=w)
                if c["symmetric_bias"]:
                    self._bias.add_(torch.exp((self._nodes + alpha).square_().mul_(inv2s2)),
                                    alpha=w)

        # 4. alpha-force from H~ = N (l + wd/2 |theta|^2) + 1/2 sum_g lambda_g N |b_g|^2
        terms = [ell]
        coefs = [float(n)]
        for group, params, _, bufs in collected:
            if not params:
                continue
            terms.append(torch.stack(torch._foreach_norm(bufs)).to(torch.float64).square().sum())
            coefs.append(0.5 * group["lr"] * n)
            if group["weight_decay"] != 0:
                terms.append(torch.stack(torch._foreach_norm(params)).to(torch.float64)
                             .square().sum())
                coefs.append(0.5 * n * group["weight_decay"])
        if var is not None and c["noise_correction"]:
            terms.append(var)
        values = torch.stack(terms).tolist()
        h_tilde = math.fsum(cf * v for cf, v in zip(coefs, values, strict=False))
        if not math.isfinite(h_tilde):
            raise FloatingPointError(
                f"CTLD.step {self._t + 1}: the energy H~ = N*loss + kinetic is not finite "
                f"({h_tilde}); the parameters were not moved")
        gp = _gp(alpha, delta, dp, span)
        f_coup = -gp * h_tilde
        if c["confine_force"] == "auto":
            big_c = 4.0 * (1.5 * span / (dp - delta)) * abs(h_tilde)
        else:
            big_c = float(c["confine_force"])
        phi_p = 0.0
        if abs(alpha) > dp:
            if c["confinement"] == "linear":
                phi_p = math.copysign(big_c, alpha)
            elif c["confinement"] == "quadratic":
                phi_p = math.copysign(big_c * (abs(alpha) - dp), alpha)
        f_conf = -phi_p
        f_bias = -self._bias_force_float(alpha, dp, k)
        h = f_coup + f_conf + f_bias

        if not self._freeze_alpha:
            # 5. momentum of alpha
            r_new = mu_a * r_alpha + eta_a * h
            if tc > 0:
                eps_a = float(torch.randn((), generator=self._gen, dtype=torch.float64,
                                          device=self._device))
                noise_var = 2.0 * (1.0 - mu_a) * tc
                if c["noise_correction"] and var is not None:
                    noise_var -= eta_a ** 2 * gp ** 2 * n ** 2 * values[-1] / m
                    if noise_var < 0:
                        self._clip_count += 1
                        noise_var = 0.0
                r_new = r_new + math.sqrt(noise_var) * eps_a
            self._alpha, self._r_alpha = alpha, r_new
            self._dalpha_max = max(self._dalpha_max, abs(alpha - alpha_old))

        # 6. parameters
        for group, params, _, bufs in collected:
            if params:
                self._param_update(group, params, bufs)

        cold = abs(self._alpha) <= delta
        self._cold_count += int(cold)
        self._sampled += 1
        self._last = {"alpha": self._alpha,
                      "temperature_ratio": 1.0 / _g(self._alpha, delta, dp, span),
                      "H": h_tilde, "force_coupling": f_coup, "force_confinement": f_conf,
                      "force_bias": f_bias, "confine_force": big_c, "cold": cold}
        if c["handoff"] == "last_cold" and cold:
            self._has_cold_snapshot = True
            for _, params, _, bufs in collected:
                for p, b in zip(params, bufs, strict=True):
                    st = self.state[p]
                    if "last_cold_param" in st:
                        st["last_cold_param"].copy_(p)
                        st["last_cold_buf"].copy_(b)
                    else:
                        st["last_cold_param"] = p.detach().clone()
                        st["last_cold_buf"] = b.clone()

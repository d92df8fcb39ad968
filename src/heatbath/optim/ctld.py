r"""Continuously Tempered Langevin Dynamics (CTLD).

N. Ye, Z. Zhu, R. K. Mantiuk, "Langevin Dynamics with Continuous Tempering for Training Deep
Neural Networks", NIPS 2017 (arXiv 1703.04379). Equation numbers are the paper's; every choice
the paper leaves open is explained in ``docs/ctld.md`` (section "Decisions"), and the default
tempering in section "Tempering at scale".

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

The confinement (Eq. 11 with the sign fixed; docs/ctld.md, "Confinement") is
:math:`\phi'(\alpha) = C\,\mathrm{sign}(\alpha)` for :math:`|\alpha| > \delta'` ("linear"),
:math:`C(|\alpha| - \delta')\,\mathrm{sign}(\alpha)` ("quadratic"), or an elastic wall at
:math:`\pm\delta'` ("reflect"). The metadynamics bias
(Eqs. 12-14) lives on the K + 1 nodes :math:`a_j = -\delta' + j\Delta`, :math:`\Delta = 2\delta'/K`:

.. math::

    V_b[j] \mathrel{+}= w \exp\!\big(-(a_j - \alpha)^2 / (2\sigma^2)\big), \qquad
    V_b'(\alpha) \approx (V_b[k^*+1] - V_b[k^*]) / \Delta .

Discrete update (Algorithm 1 in heatbath's units; docs/ctld.md, "Units")
--------------------------------------------------------------------------
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
(``alpha_momentum``, default :math:`\mu`). Phase (ii), :math:`t > L_s`, is exactly
``torch.optim.SGD(lr, momentum, weight_decay=wd)``: :math:`b \leftarrow \mu b + \nabla f`,
:math:`\theta \leftarrow \theta - \lambda b`, with :math:`\alpha, r_\alpha, V_b` frozen.
Initial state: :math:`b^{(0)} = \sqrt{T_c/(\lambda N)}\,\xi` (i.e. :math:`r^{(0)} \sim
N(0, T_c I)`), :math:`\alpha^{(0)} = 0`, :math:`r_\alpha^{(0)} \sim N(0, T_c)`, :math:`V_b = 0`,
all drawn from the optimizer's own ``torch.Generator`` (no draw when :math:`T_c = 0` or
:math:`L_s = 0`).

This is ``tempering="paper"``: Algorithm 1 exactly as printed. Choices the paper leaves open
(docs/ctld.md, "Decisions"): the confinement force C defaults to ``"auto"``,
:math:`C_t = 4\max|g'|\,|\tilde H_t|`; outside :math:`[-\delta', \delta']` the bias force is
zero; the deposit happens before the force is computed; the noise compensation of Eqs. 9-10 is
off by default and, when on, only corrects the :math:`r_\alpha` noise. Hyperparameters not
published in the main text come from :func:`ctld_defaults`.

Tempering at scale (the default, ``tempering="intensive"``)
-----------------------------------------------------------
The literal Algorithm 1 cannot temper a network: the alpha marginal carries a free energy
:math:`F(\alpha) \approx d\,T_c \log g(\alpha)` (d parameters), so moving alpha from cold to
hot needs an energy change of order :math:`d T_c` while the energy fluctuates by only
:math:`\sqrt d\,T_c` (docs/ctld.md, "Why the literal scheme cannot temper a network"). The
default keeps steps 1 and 6 (the theta update) and phase (ii) unchanged and makes alpha a slow
collective variable driven by an intensive energy (docs/ctld.md, "Tempering at scale"):

.. math::

    \tilde h = -g'(\alpha)\,\frac{\tilde H - d\,T_c/(2 g(\alpha))}{c} - \phi'(\alpha)
        - D_b(\alpha), \qquad
    r_\alpha \leftarrow \mu_\alpha r_\alpha + \eta_\alpha \tilde h
        + \sqrt{2(1 - \mu_\alpha) T_c}\,\varepsilon_\alpha, \qquad
    \eta_\alpha = a / \sqrt{T_c}

with d the number of tempered parameters, ``coupling_scale`` c (``"auto"``: the energy of the
first sampling step in units of :math:`T_c`, :math:`(U_1 + d T_c/2)/T_c`, then fixed), the
exact kinetic pre-bias :math:`V_0 = \tfrac d2 T_c\log(1/g)` whose force is the
:math:`d T_c/(2g)` term (``kinetic_prebias``), and ``alpha_step`` a (default 0.02 = sigma/2),
independent of lr and N. Hills have height ``hill_height`` * :math:`T_c` (default 0.5), are
deposited only while :math:`|\alpha| \le \delta'`, at alpha and at -alpha, with mirror
images of hills within :math:`4\sigma` of a wall, so the bias force vanishes at the walls;
the walls reflect by default. With c = 1 the stationary density is
:math:`\exp(-(H_e + V_0)/T_c)` exactly; with c > 1, theta given alpha is exact at frozen alpha
and alpha's marginal tends to :math:`\exp(-(F/c + V_0/c + \phi + V_b)/T_c)` when theta relaxes
fast.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from heatbath._validate import check_choice, check_int, check_real

from ._base import GroupWork, HeatbathOptimizer, NonFiniteGradientError
from ._distributed import all_reduce_mean_, is_sharded

__all__ = ["CTLD", "ctld_defaults", "g_scale", "g_scale_prime"]

#: keys that define the one tempering variable alpha and must agree across param groups
#: (docs/ctld.md, "One alpha per optimizer")
_GLOBAL_KEYS = (
    "num_data", "sampling_steps", "temperature", "delta", "delta_prime", "span", "hill_height",
    "hill_width", "num_bins", "confine_force", "confinement", "alpha_momentum",
    "alpha_step_scale", "handoff", "reset_momentum", "noise_correction", "symmetric_bias",
    "tempering", "coupling_scale", "kinetic_prebias", "alpha_step",
)

#: options that only exist under one tempering mode
_INTENSIVE_ONLY = ("coupling_scale", "kinetic_prebias", "alpha_step")
_PAPER_ONLY = ("alpha_step_scale",)

#: a hill is mirrored at a wall when its centre lies within this many widths of it
_MIRROR_WIDTHS = 4.0

#: "hot" for the crossing count: T(alpha) >= 5 T_c (or 95 % of the span when S < 0.8)
_HOT_RATIO = 5.0


def ctld_defaults(tempering: str = "intensive") -> dict[str, Any]:
    """The hyperparameters the paper's main text does not fix (docs/ctld.md, "Defaults").

    The paper derives C, w, sigma, K ... from "empirical formulae relying on the learning rate"
    in its supplementary, which is not available; heatbath uses these constants instead. They
    are held in this one function so that the formulas can replace them in one place.

    Both modes: delta, delta_prime, span from the paper's Fig. 1; hill_width sigma = 0.04
    (Fig. 4 right); num_bins K = 300 (grid spacing 2 delta'/K = 0.01 = sigma/4, so the forward
    difference of Eq. 14 resolves the hills); confine_force "auto"; temperature T_c = 1 (the
    paper's beta = 1).

    ``"paper"``: hill_height w = 20 in units of the N-scaled energy H_e (Fig. 4 right), linear
    confinement with the sign fixed, alpha step kappa * sqrt(lr/N) with kappa = 1.

    ``"intensive"`` (docs/ctld.md, "Tempering at scale"): hill_height 0.5 in units of T_c,
    reflecting walls, hills at +-alpha, coupling_scale "auto", the kinetic pre-bias on,
    alpha_step 0.02 = sigma/2.

    Args:
        tempering: ``"intensive"`` (the default) or ``"paper"``.

    Returns:
        A new dict of keyword arguments of :class:`CTLD`.

    Raises:
        ValueError: for an unknown ``tempering``.
    """
    check_choice("tempering", tempering, ("intensive", "paper"))
    common: dict[str, Any] = {
        "temperature": 1.0, "delta": 0.4, "delta_prime": 1.5, "span": 0.85,
        "hill_width": 0.04, "num_bins": 300, "confine_force": "auto", "handoff": "last",
        "reset_momentum": False, "noise_correction": False, "tempering": tempering,
    }
    if tempering == "paper":
        common.update({"hill_height": 20.0, "confinement": "linear", "alpha_step_scale": 1.0,
                       "symmetric_bias": False})
    else:
        common.update({"hill_height": 0.5, "confinement": "reflect", "symmetric_bias": True,
                       "coupling_scale": "auto", "kinetic_prebias": True, "alpha_step": 0.02})
    return common


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
    """Temperature scaling g(alpha) of Eq. 7: 1 on |alpha| <= delta, 1 - S beyond delta'.

    Args:
        alpha: values of the tempering variable.
        delta: delta of Eq. 7 (g = 1 on |alpha| <= delta).
        delta_prime: delta' of Eq. 7 (g = 1 - S on |alpha| >= delta').
        span: S of Eq. 7.

    Returns:
        g(alpha), elementwise.
    """
    z = _ramp(alpha, delta, delta_prime)
    return 1.0 - span * (3.0 * z * z - 2.0 * z * z * z)


def g_scale_prime(alpha: Tensor, delta: float, delta_prime: float, span: float) -> Tensor:
    """Closed-form derivative g'(alpha) = -sign(alpha) 6 S z (1 - z) / (delta' - delta).

    Args:
        alpha: values of the tempering variable.
        delta: delta of Eq. 7 (g = 1 on |alpha| <= delta).
        delta_prime: delta' of Eq. 7 (g = 1 - S on |alpha| >= delta').
        span: S of Eq. 7.

    Returns:
        g'(alpha), elementwise.
    """
    z = _ramp(alpha, delta, delta_prime)
    return -torch.sign(alpha) * (6.0 * span / (delta_prime - delta)) * z * (1.0 - z)


class CTLD(HeatbathOptimizer):
    """Continuously tempered Langevin dynamics, then SGD with momentum (see module docstring).

    Args:
        params: iterable of parameters or param-group dicts (``lr``, ``momentum`` and
            ``weight_decay`` may differ per group; every CTLD key must be equal, docs/ctld.md
            "One alpha per optimizer").
        lr: learning rate lambda of ``torch.optim.SGD`` on the mean loss, > 0 when a group is
            created (its initial momentum has scale sqrt(T_c/(lambda N))); a scheduler may
            set it to 0 later: a step of zero length (docs/ctld.md, "Zero learning rate").
        momentum: SGD momentum mu in [0, 1) (the paper's 1 - eta*gamma).
        num_data: N, the number of training examples, >= 1.
        sampling_steps: L_s, the exact number of phase-(i) steps, >= 0.
        tempering: ``"intensive"`` (default; docs/ctld.md, "Tempering at scale") or
            ``"paper"`` (Algorithm 1 exactly as printed).
        temperature: T_c >= 0, multiplies both noise variances.
        delta: delta of g (Eq. 7), >= 0.
        delta_prime: delta' of g (Eq. 7), > delta.
        span: S of g (Eq. 7), in [0, 1).
        hill_height: metadynamics w >= 0; in units of T_c under ``"intensive"`` (default 0.5),
            of the N-scaled energy under ``"paper"`` (default 20).
        hill_width: metadynamics sigma > 0 (Eq. 13).
        num_bins: K >= 2 bins of the bias grid (Eq. 14).
        confine_force: C > 0 or ``"auto"`` (C_t = 4 max|g'| |E_t|, E_t the coupling energy).
        confinement: ``"linear"`` (Eq. 11), ``"quadratic"`` or ``"reflect"``; default
            ``"reflect"`` (intensive) or ``"linear"`` (paper).
        alpha_momentum: mu_alpha in [0, 1); default: ``momentum`` of the first group.
        alpha_step_scale: ``"paper"`` only: kappa > 0, eta_alpha = kappa sqrt(lambda_0/N).
        coupling_scale: ``"intensive"`` only: c >= 1 or ``"auto"`` (default).
        kinetic_prebias: ``"intensive"`` only: add the exact pre-bias (d/2) T_c log(1/g)
            (default True).
        alpha_step: ``"intensive"`` only: a > 0, eta_alpha = a / sqrt(T_c) (default 0.02).
        handoff: ``"last"`` (Algorithm 1) or ``"last_cold"`` (restore the latest iterate with
            |alpha| <= delta when phase (ii) starts).
        reset_momentum: zero the momentum buffers at the hand-off.
        noise_correction: Eq. 10's variance correction on r_alpha from per-example losses.
        symmetric_bias: also deposit a hill at -alpha (g is even); default True (intensive)
            or False (paper).
        weight_decay: torch's L2 weight decay, part of the potential.
        seed: the noise seed, an int in ``[0, 2**63 - 1]``; ``None`` draws one from torch's
            global generator (rank 0's draw, broadcast, under ``torch.distributed``; see
            ``docs/distributed.md``). Unlike the integrators, CTLD draws all its noise (every
            group's and alpha's) from ONE ``torch.Generator`` seeded with ``seed`` itself, in
            Algorithm 1's order, so that a run is the transcription's draw for draw.
        generator: a ``torch.Generator`` to draw from instead (wins over ``seed``).
        foreach: ``False`` uses a per-tensor loop instead of ``torch._foreach_*`` kernels.
        check_finite: raise :class:`~heatbath.optim.NonFiniteGradientError` (a
            ``FloatingPointError``) on a non-finite loss or gradient (costs one host
            synchronisation per step). A non-finite energy or alpha-force raises it too, also
            with ``check_finite=False``. A raised step leaves every piece of state as it was:
            parameters, momenta, alpha, r_alpha, V_b, counters and the generator.
        alpha_init: alpha at t = 0 (the paper: 0).
        freeze_alpha: test hook: alpha, r_alpha and V_b stay fixed during phase (i).

    Raises:
        ValueError: a hyperparameter outside its range (the message names it), an option of
            the other tempering mode, or CTLD keys that differ between param groups.
        TypeError: complex or integer parameters.

    ``step(closure=None, *, loss=None)``: phase (i) needs the loss value of the same forward
    pass, from ``closure`` or ``loss`` (a 0-d tensor/float, or a 1-D tensor of per-example
    losses, whose mean is used). Under ``torch.distributed`` the mean loss is averaged over
    the ranks, so every replica drives the same alpha.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float,
        num_data: int,
        sampling_steps: int,
        *,
        tempering: str = "intensive",
        temperature: float = 1.0,
        delta: float = 0.4,
        delta_prime: float = 1.5,
        span: float = 0.85,
        hill_height: float | None = None,
        hill_width: float = 0.04,
        num_bins: int = 300,
        confine_force: float | str = "auto",
        confinement: str | None = None,
        alpha_momentum: float | None = None,
        alpha_step_scale: float | None = None,
        coupling_scale: float | str | None = None,
        kinetic_prebias: bool | None = None,
        alpha_step: float | None = None,
        handoff: str = "last",
        reset_momentum: bool = False,
        noise_correction: bool = False,
        symmetric_bias: bool | None = None,
        weight_decay: float = 0.0,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        foreach: bool | None = None,
        check_finite: bool = True,
        alpha_init: float = 0.0,
        freeze_alpha: bool = False,
    ) -> None:
        check_choice("tempering", tempering, ("intensive", "paper"))
        self._check_lr_at_creation(lr)
        check_real("momentum", momentum, low=0.0, high=1.0, high_open=True)
        check_real("weight_decay", weight_decay, low=0.0)
        given = {"alpha_step_scale": alpha_step_scale, "coupling_scale": coupling_scale,
                 "kinetic_prebias": kinetic_prebias, "alpha_step": alpha_step}
        foreign = _PAPER_ONLY if tempering == "intensive" else _INTENSIVE_ONLY
        for key in foreign:
            if given[key] is not None:
                raise ValueError(f"{key} applies only to tempering="
                                 f"{'paper' if key in _PAPER_ONLY else 'intensive'!r}; "
                                 f"got tempering={tempering!r}")
        base = ctld_defaults(tempering)
        if alpha_momentum is None:
            alpha_momentum = float(momentum)
        defaults: dict[str, Any] = {
            "lr": lr, "momentum": momentum, "weight_decay": weight_decay,
            "num_data": num_data, "sampling_steps": sampling_steps, "temperature": temperature,
            "delta": delta, "delta_prime": delta_prime, "span": span,
            "hill_height": base["hill_height"] if hill_height is None else hill_height,
            "hill_width": hill_width, "num_bins": num_bins,
            "confine_force": confine_force,
            "confinement": base["confinement"] if confinement is None else confinement,
            "alpha_momentum": alpha_momentum,
            "alpha_step_scale": (base.get("alpha_step_scale") if alpha_step_scale is None
                                 else alpha_step_scale),
            "handoff": handoff, "reset_momentum": reset_momentum,
            "noise_correction": noise_correction,
            "symmetric_bias": base["symmetric_bias"] if symmetric_bias is None else symmetric_bias,
            "tempering": tempering,
            "coupling_scale": (base.get("coupling_scale") if coupling_scale is None
                               else coupling_scale),
            "kinetic_prebias": (base.get("kinetic_prebias") if kinetic_prebias is None
                                else kinetic_prebias),
            "alpha_step": base.get("alpha_step") if alpha_step is None else alpha_step,
        }
        self._validate_global(defaults)
        check_real("alpha_init", alpha_init)
        self._foreach = foreach is not False
        self._freeze_alpha = bool(freeze_alpha)
        # the one generator of every draw (set when group 0 is added, see _make_generator) and
        # the phase the initial momenta are drawn for (group 0's sampling_steps decides)
        self._gen: torch.Generator | None = None
        self._phase = "sampling" if defaults["sampling_steps"] > 0 else "optimization"
        super().__init__(params, defaults, seed=seed, generator=generator,
                         check_finite=check_finite)
        g0 = self.param_groups[0]
        self._device = g0["params"][0].device
        f64 = {"dtype": torch.float64, "device": self._device}
        k = g0["num_bins"]
        dp = g0["delta_prime"]
        # nodes a_j = -delta' + j * (2 delta'/K), computed exactly as the bin lookup assumes
        self._nodes = -dp + torch.arange(k + 1, **f64) * (2.0 * dp / k)
        # alpha and r_alpha are Python floats (float64): the alpha dynamics is scalar work, and
        # on the CPU a Python float op is ~50x cheaper than a 0-d tensor op
        self._alpha = float(alpha_init)
        self._r_alpha = 0.0
        self._bias = torch.zeros(k + 1, **f64)
        self._cold_count = 0
        self._sampled = 0
        self._dalpha_max = 0.0
        self._clip_count = 0
        self._warned_jump = False
        self._has_cold_snapshot = False
        # intensive tempering: c (fixed at the first sampling step when "auto"), crossings
        cs = g0["coupling_scale"]
        self._coupling = 1.0 if g0["tempering"] == "paper" else (
            float("nan") if cs == "auto" else float(cs))
        self._crossings = 0
        self._extreme = "cold" if abs(self._alpha) <= g0["delta"] else ""
        self._last: dict[str, float | bool] = {}
        self._pending: tuple[Tensor | None, Tensor | None, int] = (None, None, 1)
        # the initial momenta of every group were drawn as the groups were added (b first,
        # group by group); then r_alpha ~ N(0, T_c)
        tc = g0["temperature"]
        if tc > 0 and self._phase == "sampling":
            eps = float(torch.randn((), generator=self._gen, **f64))
            self._r_alpha = math.sqrt(tc) * eps

    # ------------------------------------------------------------------ validation / setup
    @staticmethod
    def _check_lr_at_creation(lr: Any) -> None:
        check_real("lr", lr, low=0.0)
        if lr == 0:
            raise ValueError("lr must be > 0 when a CTLD parameter group is created: the "
                             "initial momentum b = sqrt(T_c/(lr N)) xi needs it. A scheduler "
                             "may set lr to 0 later (a step of zero length; docs/ctld.md, "
                             "section 'Zero learning rate')")

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
        check_choice("handoff", d["handoff"], ("last", "last_cold"))
        keys = ["reset_momentum", "noise_correction", "symmetric_bias"]
        if d["tempering"] == "paper":
            check_real("alpha_step_scale", d["alpha_step_scale"], low=0.0, low_open=True)
        else:
            if not (isinstance(d["coupling_scale"], str) and d["coupling_scale"] == "auto"):
                check_real("coupling_scale", d["coupling_scale"], low=1.0)
            check_real("alpha_step", d["alpha_step"], low=0.0, low_open=True)
            keys.append("kinetic_prebias")
        for key in keys:
            if not isinstance(d[key], bool):
                raise ValueError(f"{key} must be a bool, got {d[key]!r}")

    def _check_same_alpha(self, group: dict[str, Any], index: int) -> None:
        """Every CTLD key of group ``index`` equals group 0's (docs/ctld.md, "One alpha per
        optimizer")."""
        if index == 0:
            return
        ref = self.param_groups[0]
        for key in _GLOBAL_KEYS:
            if group[key] != ref[key]:
                raise ValueError(
                    f"CTLD has one tempering variable alpha, so {key!r} must be equal in every "
                    f"param group; got {ref[key]!r} and {group[key]!r}")

    def _prepare_group(self, group: dict[str, Any], index: int,
                       given: set[str]) -> dict[str, Any]:
        """Validate a new group (the base has checked its tensors): lr > 0, momentum in
        [0, 1), weight_decay >= 0, CTLD keys equal to group 0's; no sharded parameters."""
        self._check_lr_at_creation(group["lr"])
        check_real("momentum", group["momentum"], low=0.0, high=1.0, high_open=True)
        check_real("weight_decay", group["weight_decay"], low=0.0)
        if index == 0:
            self._validate_global(group)
        else:
            self._check_same_alpha(group, index)
        for p in group["params"]:
            if is_sharded(p):
                raise ValueError("CTLD does not support sharded (FSDP2/DTensor) parameters: its "
                                 "initial momenta and energy are drawn and summed per whole "
                                 "tensor; use it with DDP (replicated parameters)")
        return group

    def _make_generator(self, group: dict[str, Any], index: int) -> torch.Generator:
        """CTLD's one generator for every group and for alpha: ``generator``, else a new one
        seeded with the seed itself (the transcription's ``manual_seed(seed)``)."""
        if self._gen is None:
            gen = self._user_generator
            if gen is None:
                gen = torch.Generator(device=group["params"][0].device)
                gen.manual_seed(self.seed)
            self._gen = gen
        return self._gen

    def _init_group(self, group: dict[str, Any], index: int) -> None:
        if index == 0:
            self._phase = "sampling" if group["sampling_steps"] > 0 else "optimization"
        self._init_buffers(group)

    def _sync_group(self, group: dict[str, Any], index: int) -> None:
        """Hyperparameters written since the last step (a scheduler's lr and momentum): lr
        >= 0 (0 is a step of zero length), momentum in [0, 1), weight_decay >= 0, and the
        CTLD keys still equal to group 0's."""
        lr = group["lr"]
        if not (isinstance(lr, float) and 0.0 <= lr < math.inf):
            check_real("lr", lr, low=0.0)
        check_real("momentum", group["momentum"], low=0.0, high=1.0, high_open=True)
        check_real("weight_decay", group["weight_decay"], low=0.0)
        self._check_same_alpha(group, index)

    def _after_load(self) -> None:
        g0 = self.param_groups[0]
        self._device = g0["params"][0].device
        k, dp = g0["num_bins"], g0["delta_prime"]
        self._nodes = -dp + torch.arange(k + 1, dtype=torch.float64,
                                         device=self._device) * (2.0 * dp / k)

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
        """Number of steps taken (every applied ``step()`` call, also those of zero length)."""
        return self.step_count

    @property
    def coupling_scale(self) -> float:
        """The coupling scale c in force (1 under ``"paper"``; NaN before an "auto" c is set)."""
        return self._coupling

    @property
    def crossings(self) -> int:
        """One-way trips of alpha between cold (T = T_c) and hot (T >= 5 T_c) so far."""
        return self._crossings

    def g(self, alpha: Tensor | float) -> Tensor:
        """g(alpha) with this optimizer's delta, delta', S.

        Args:
            alpha: value(s) of the tempering variable.

        Returns:
            g(alpha) as a float64 tensor.
        """
        c = self.param_groups[0]
        return g_scale(torch.as_tensor(alpha, dtype=torch.float64), c["delta"],
                       c["delta_prime"], c["span"])

    def bias_force(self, alpha: float) -> float:
        """D_b(alpha): forward difference of V_b across alpha's bin (Eq. 14); 0 outside.

        Args:
            alpha: the point at which to evaluate the bias force.

        Returns:
            The forward difference, a Python float.
        """
        c = self.param_groups[0]
        return self._bias_force_float(self._bias, float(alpha), c["delta_prime"],
                                      c["num_bins"])

    @staticmethod
    def _bias_force_float(bias: Tensor, alpha: float, dp: float, k: int) -> float:
        if abs(alpha) > dp:
            return 0.0
        width = 2.0 * dp / k
        idx = min(k - 1, max(0, math.floor((alpha + dp) / width)))
        lo, hi = bias[idx:idx + 2].tolist()
        return (hi - lo) / width

    def diagnostics(self) -> dict[str, float | str | bool]:
        """Diagnostics of the latest step as Python numbers (one host sync).

        Returns:
            ``alpha``, ``temperature_ratio`` (1/g(alpha) = T(alpha)/T_c), ``H`` (H~),
            ``force_coupling`` (-g' H~ / c), ``force_prebias`` (the kinetic pre-bias force
            g' d T_c / (2 g c), 0 under ``"paper"``), ``force_confinement`` (-phi'),
            ``force_bias`` (-D_b), ``confine_force`` (C in force), ``coupling_scale`` (c),
            ``cold`` (|alpha| <= delta), ``cold_fraction`` (running, over phase-(i) steps),
            ``crossings`` (cold <-> hot trips), ``max_dalpha`` (largest |alpha step| so far),
            ``noise_clips`` (counter of the optional noise correction), ``phase``, ``step``
            (applied ``step()`` calls), ``sampling_steps_done`` (phase-(i) steps that counted
            toward ``sampling_steps``; a step with lr = 0 in every group does not).
        """
        out: dict[str, float | str | bool] = {"phase": self._phase, "step": self.step_count,
                                               "sampling_steps_done": self._sampled}
        out.update(self._last)
        out["cold_fraction"] = self.cold_fraction()
        out["max_dalpha"] = self._dalpha_max
        out["noise_clips"] = self._clip_count
        out["coupling_scale"] = self._coupling
        out["crossings"] = self._crossings
        return out

    def cold_fraction(self) -> float:
        """Fraction of phase-(i) steps that ended with |alpha| <= delta (NaN before any)."""
        return self._cold_count / self._sampled if self._sampled else float("nan")

    def _maybe_warn_jump(self, dalpha_max: float) -> None:
        c = self.param_groups[0]
        if not self._warned_jump and dalpha_max > c["delta_prime"] - c["delta"]:
            self._warned_jump = True
            knob = "alpha_step_scale" if c["tempering"] == "paper" else "alpha_step"
            warnings.warn(
                f"CTLD: alpha moved {dalpha_max:.3g} > delta' - delta = "
                f"{c['delta_prime'] - c['delta']:.3g} in one step, i.e. across the whole "
                f"temperature ramp; lower lr or {knob}", RuntimeWarning, stacklevel=5)

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
    def _extra_state(self) -> dict[str, Any]:
        f64 = {"dtype": torch.float64}
        return {
            "alpha": torch.tensor(self._alpha, **f64),
            "r_alpha": torch.tensor(self._r_alpha, **f64),
            "bias": self._bias.clone(), "phase": self._phase,
            "cold_count": self._cold_count, "sampled": self._sampled,
            "dalpha_max": self._dalpha_max, "clip_count": self._clip_count,
            "warned_jump": self._warned_jump, "has_cold_snapshot": self._has_cold_snapshot,
            "coupling_scale": self._coupling, "crossings": self._crossings,
            "extreme": self._extreme,
        }

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self._alpha = float(extra["alpha"])
        self._r_alpha = float(extra["r_alpha"])
        self._bias = extra["bias"].to(self._device, torch.float64).clone()
        self._phase = str(extra["phase"])
        self._cold_count = int(extra["cold_count"])
        self._sampled = int(extra["sampled"])
        self._dalpha_max = float(extra["dalpha_max"])
        self._clip_count = int(extra["clip_count"])
        self._warned_jump = bool(extra["warned_jump"])
        self._has_cold_snapshot = bool(extra["has_cold_snapshot"])
        self._coupling = float(extra["coupling_scale"])
        self._crossings = int(extra["crossings"])
        self._extreme = str(extra["extreme"])

    def state_dict(self) -> dict[str, Any]:
        """The base's state dict (per-parameter momenta, groups, ``"heatbath"``: step count,
        seed, generator state) with CTLD's own state under ``"ctld"``: alpha, r_alpha, V_b, the
        phase and the counters.

        Returns:
            The state dict; :meth:`load_state_dict` restores a bit-identical continuation.
        """
        sd = super().state_dict()
        sd["ctld"] = sd["heatbath"].pop("extra")
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state written by :meth:`state_dict`.

        Args:
            state_dict: the dict returned by :meth:`state_dict`.

        Raises:
            ValueError: the dict lacks CTLD's or the base's entry, or belongs to other
                parameters (see :meth:`HeatbathOptimizer.load_state_dict`).
        """
        sd = dict(state_dict)
        extra = sd.pop("ctld", None)
        if extra is None or "heatbath" not in sd:
            raise ValueError("state_dict lacks the 'ctld' and 'heatbath' entries written by "
                             "CTLD.state_dict()")
        sd["heatbath"] = {**sd["heatbath"], "extra": extra}
        super().load_state_dict(sd)

    # ------------------------------------------------------------------ the step
    def _loss_stats(self, loss: Any) -> tuple[Tensor, Tensor | None, int]:
        if isinstance(loss, Tensor):
            val = loss.detach().to(self._device, torch.float64)
        else:
            try:
                val = torch.tensor(float(loss), dtype=torch.float64, device=self._device)
            except (TypeError, ValueError) as err:
                raise ValueError(f"loss must be a number or a tensor, got {loss!r}") from err
        if val.dim() == 0:
            return all_reduce_mean_(val.clone()), None, 1
        if val.dim() == 1 and val.numel() >= 1:
            var = val.var() if val.numel() > 1 else torch.zeros((), dtype=torch.float64,
                                                                  device=self._device)
            return all_reduce_mean_(val.mean()), var, val.numel()
        raise ValueError(f"loss must be 0-d (the mean loss) or 1-D (per-example losses), "
                         f"got shape {tuple(val.shape)}")

    def _nonfinite(self, what: str) -> NonFiniteGradientError:
        return NonFiniteGradientError(
            f"CTLD.step {self.step_count + 1}: non-finite {what}; the step was not applied "
            "(parameters and optimizer state, including the generator, are unchanged)")

    @torch.compiler.disable
    def step(self, closure: Callable[[], Any] | None = None, *, loss: Any = None) -> Any:
        """One CTLD step (phase i) or SGD-momentum step (phase ii).

        Only parameters with ``requires_grad`` and a gradient are stepped. A group whose lr
        is 0 does not move: its parameters and momenta stay bit for bit and no noise is drawn
        for it; when every group's lr is 0 the step has zero length: alpha, r_alpha, V_b and
        the phase-(i) count stay too (docs/ctld.md, "Zero learning rate").

        Args:
            closure: optional; re-evaluates the model and returns the loss.
            loss: the loss of the forward pass that produced the gradients (phase i).

        Returns:
            The loss.

        Raises:
            ValueError: phase (i) without a loss value, or a loss of the wrong shape.
            NonFiniteGradientError: a non-finite loss, gradient or energy (a
                ``FloatingPointError``); nothing was changed.
        """
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        sampling = self._phase == "sampling"
        if sampling and loss is None:
            raise ValueError("CTLD.step: phase (i) needs the loss value of the same forward pass "
                             "(the alpha-force uses it): pass `loss=` or a `closure`")
        prev = torch.is_grad_enabled()
        torch.set_grad_enabled(False)
        try:
            work = self._collect()
            ell = var = None
            m = 1
            if loss is not None:
                ell, var, m = self._loss_stats(loss)
            if self.check_finite:
                try:
                    self._check_finite(work, *(() if ell is None else (ell,)))
                except NonFiniteGradientError as err:
                    raise NonFiniteGradientError(
                        f"CTLD: {err} The step was not applied.") from None
            self._pending = (ell, var, m)
            try:
                self._update(work)
            finally:
                self._pending = (None, None, 1)
            self.step_count += 1
            if sampling:
                self._maybe_warn_jump(self._dalpha_max)
            if sampling and self._sampled >= self.param_groups[0]["sampling_steps"]:
                self.end_sampling()
        finally:
            torch.set_grad_enabled(prev)
        return loss

    def _update(self, work: list[GroupWork]) -> None:
        if all(g["lr"] == 0 for g in self.param_groups):
            return  # a step of zero length (docs/ctld.md, "Zero learning rate")
        collected = [(w.group, w.local, w.grads,
                      [self.state[p]["momentum_buffer"] for p in w.params]) for w in work]
        if self._phase == "sampling":
            ell, var, m = self._pending
            assert ell is not None
            self._sampling_step(collected, ell, var, m)
        else:
            self._sgd_step(collected)

    def _grads_with_decay(self, group: dict[str, Any], params: list[Tensor],
                          grads: list[Tensor]) -> list[Tensor]:
        wd = group["weight_decay"]
        if wd == 0:
            return grads
        if self._foreach:
            return list(torch._foreach_add(grads, params, alpha=wd))
        return [gr.add(p, alpha=wd) for p, gr in zip(params, grads, strict=True)]

    def _momentum_update(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor],
                         bufs: list[Tensor]) -> None:
        """b <- mu b + (grad + wd theta), with exactly torch.optim.SGD's arithmetic."""
        mu = group["momentum"]
        grads = self._grads_with_decay(group, params, grads)
        if self._foreach:
            torch._foreach_mul_(bufs, mu)
            torch._foreach_add_(bufs, grads, alpha=1.0)
        else:
            for gr, b in zip(grads, bufs, strict=True):
                b.mul_(mu).add_(gr, alpha=1.0)

    def _momentum_new(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor],
                      bufs: list[Tensor]) -> list[Tensor]:
        """mu b + (grad + wd theta) in new tensors, with the arithmetic of _momentum_update."""
        mu = group["momentum"]
        grads = self._grads_with_decay(group, params, grads)
        if self._foreach:
            new = list(torch._foreach_mul(bufs, mu))
            torch._foreach_add_(new, grads, alpha=1.0)
            return new
        return [b.mul(mu).add_(gr, alpha=1.0) for gr, b in zip(grads, bufs, strict=True)]

    def _param_update(self, group: dict[str, Any], params: list[Tensor],
                      bufs: list[Tensor]) -> None:
        if self._foreach:
            torch._foreach_add_(params, bufs, alpha=-group["lr"])
        else:
            for p, b in zip(params, bufs, strict=True):
                p.add_(b, alpha=-group["lr"])

    def _sgd_step(self, collected: list) -> None:
        for group, params, grads, bufs in collected:
            if params and group["lr"] != 0:
                self._momentum_update(group, params, grads, bufs)
                self._param_update(group, params, bufs)

    def _hill_centres(self, alpha: float) -> list[float]:
        """Centres of the hills deposited at ``alpha`` (docs/ctld.md, "Metadynamics")."""
        c = self.param_groups[0]
        dp = c["delta_prime"]
        intensive = c["tempering"] == "intensive"
        if intensive and abs(alpha) > dp:
            return []  # deposits only inside the walls
        centres = [alpha]
        if c["symmetric_bias"]:
            centres.append(-alpha)
        if intensive:  # mirror images at the walls: the bias force vanishes at +-delta'
            reach = _MIRROR_WIDTHS * c["hill_width"]
            images = []
            for x in centres:
                if dp - x < reach:
                    images.append(2.0 * dp - x)
                if x + dp < reach:
                    images.append(-2.0 * dp - x)
            centres += images
        return centres

    def _is_hot(self, g: float) -> bool:
        span = self.param_groups[0]["span"]
        return g <= max(1.0 / _HOT_RATIO, 1.0 - 0.95 * span)

    def _sampling_step(self, collected: list, ell: Tensor, var: Tensor | None, m: int) -> None:
        # Everything is computed into new objects first and committed only once the energy and
        # the alpha-force are known to be finite, so a failing step changes nothing.
        c = self.param_groups[0]
        n, tc = c["num_data"], c["temperature"]
        delta, dp, span = c["delta"], c["delta_prime"], c["span"]
        k = c["num_bins"]
        intensive = c["tempering"] == "intensive"
        if intensive:
            eta_a = c["alpha_step"] / math.sqrt(tc) if tc > 0 else c["alpha_step"]
        else:
            eta_a = c["alpha_step_scale"] * math.sqrt(c["lr"] / n)
        mu_a = c["alpha_momentum"]
        # alpha's clock: under "paper" its step is kappa sqrt(lr_0/N), so with lr_0 = 0 no time
        # passes for alpha (alpha, r_alpha and V_b stay; docs/ctld.md, "Zero learning rate")
        frozen = self._freeze_alpha or eta_a == 0.0
        assert self._gen is not None
        gen_state = self._gen.get_state()

        # 1. momentum with the temperature of the *old* alpha (into new buffers); a group with
        # lr = 0 takes no step: no new buffer, no noise drawn
        inv_sqrt_g_old = 1.0 / math.sqrt(_g(self._alpha, delta, dp, span))
        new_bufs: list[list[Tensor]] = []
        for group, params, grads, bufs in collected:
            if not params or group["lr"] == 0:
                new_bufs.append([])
                continue
            nb = self._momentum_new(group, params, grads, bufs)
            if tc > 0:
                s_theta = inv_sqrt_g_old * math.sqrt(
                    2.0 * (1.0 - group["momentum"]) * tc / (group["lr"] * n))
                noise = [torch.randn(p.shape, generator=self._gen, dtype=p.dtype, device=p.device)
                         for p in params]
                if self._foreach:
                    torch._foreach_mul_(noise, s_theta)
                    torch._foreach_sub_(nb, noise)
                else:
                    for b, e in zip(nb, noise, strict=True):
                        b.sub_(e.mul_(s_theta))
            new_bufs.append(nb)

        # the energy H~ = N (l + wd/2 |theta|^2) + 1/2 sum_g lambda_g N |b_g|^2 (new b)
        terms = [ell]
        coefs = [float(n)]
        pot_terms = 1
        for (group, params, _, _), nb in zip(collected, new_bufs, strict=True):
            if not params:
                continue
            if group["weight_decay"] != 0:
                terms.insert(pot_terms, torch.stack(torch._foreach_norm(params))
                             .to(torch.float64).square().sum())
                coefs.insert(pot_terms, 0.5 * n * group["weight_decay"])
                pot_terms += 1
            if nb:  # an lr = 0 group has no kinetic energy (r = -sqrt(lr N) b = 0)
                terms.append(torch.stack(torch._foreach_norm(nb)).to(torch.float64)
                             .square().sum())
                coefs.append(0.5 * group["lr"] * n)
        if var is not None and c["noise_correction"]:
            terms.append(var)
        values = torch.stack(terms).tolist()
        n_energy = len(coefs)
        h_tilde = math.fsum(cf * v for cf, v in zip(coefs, values[:n_energy], strict=True))
        if not math.isfinite(h_tilde):
            self._gen.set_state(gen_state)
            raise self._nonfinite(f"the energy H~ = N*loss + kinetic is not finite ({h_tilde})")

        d_params = sum(p.numel() for (_, params, _, _), nb in zip(collected, new_bufs,
                                                                   strict=True)
                       if nb for p in params)
        coupling = self._coupling
        if intensive and math.isnan(coupling):  # "auto": the first sampling step's energy / T_c
            potential = math.fsum(cf * v for cf, v in zip(coefs[:pot_terms],
                                                          values[:pot_terms], strict=True))
            energy = abs(potential + 0.5 * d_params * tc)
            coupling = max(1.0, energy / tc if tc > 0 else energy)

        alpha_old, r_alpha = self._alpha, self._r_alpha
        alpha = alpha_old
        bias = self._bias
        if not frozen:
            # 2. position of alpha
            alpha = alpha_old + eta_a * r_alpha
            if c["confinement"] == "reflect" and abs(alpha) > dp:
                # elastic wall: mirror the overshoot back inside, flip the velocity
                alpha = max(-dp, min(dp, math.copysign(1.0, alpha) * (2.0 * dp - abs(alpha))))
                r_alpha = -r_alpha
            # 3. deposit hills at the new alpha (before the force, Algorithm 1's order)
            w, sig = c["hill_height"], c["hill_width"]
            if intensive:
                w = w * tc if tc > 0 else w
            if w > 0:
                inv2s2 = -0.5 / (sig * sig)
                centres = self._hill_centres(alpha)
                if centres:
                    bias = bias.clone()
                for x in centres:
                    bias.add_(torch.exp((self._nodes - x).square_().mul_(inv2s2)), alpha=w)

        # 4. alpha-force
        gp = _gp(alpha, delta, dp, span)
        g_new = _g(alpha, delta, dp, span)
        f_pre = 0.0
        if intensive:
            f_coup = -gp * h_tilde / coupling
            if c["kinetic_prebias"]:
                f_pre = gp * 0.5 * d_params * tc / (g_new * coupling)
            energy_c = abs(h_tilde - (0.5 * d_params * tc / g_new if c["kinetic_prebias"]
                                      else 0.0)) / coupling
        else:
            f_coup = -gp * h_tilde
            energy_c = abs(h_tilde)
        if c["confine_force"] == "auto":
            big_c = 4.0 * (1.5 * span / (dp - delta)) * energy_c
        else:
            big_c = float(c["confine_force"])
        phi_p = 0.0
        if abs(alpha) > dp:
            if c["confinement"] == "linear":
                phi_p = math.copysign(big_c, alpha)
            elif c["confinement"] == "quadratic":
                phi_p = math.copysign(big_c * (abs(alpha) - dp), alpha)
        f_conf = -phi_p
        f_bias = -self._bias_force_float(bias, alpha, dp, k)
        h = f_coup + f_conf + f_bias
        if intensive:
            h += f_pre

        r_new = r_alpha
        clipped = False
        if not frozen:
            # 5. momentum of alpha
            r_new = mu_a * r_alpha + eta_a * h
            if tc > 0:
                eps_a = float(torch.randn((), generator=self._gen, dtype=torch.float64,
                                          device=self._device))
                noise_var = 2.0 * (1.0 - mu_a) * tc
                if c["noise_correction"] and var is not None:
                    noise_var -= eta_a ** 2 * gp ** 2 * n ** 2 * values[-1] / m
                    if noise_var < 0:
                        clipped = True
                        noise_var = 0.0
                r_new = r_new + math.sqrt(noise_var) * eps_a
        if not (math.isfinite(h) and math.isfinite(r_new) and math.isfinite(alpha)):
            self._gen.set_state(gen_state)
            raise self._nonfinite(f"the alpha-force is not finite ({h})")

        # commit: momenta, bias, alpha, counters; then 6. the parameters
        for (_, _params, _, bufs), nb in zip(collected, new_bufs, strict=True):
            if nb:
                if self._foreach:
                    torch._foreach_copy_(bufs, nb)
                else:
                    for b, x in zip(bufs, nb, strict=True):
                        b.copy_(x)
        if bias is not self._bias:
            self._bias.copy_(bias)
        if intensive:
            self._coupling = coupling
        if not frozen:
            self._alpha, self._r_alpha = alpha, r_new
            self._dalpha_max = max(self._dalpha_max, abs(alpha - alpha_old))
            self._clip_count += int(clipped)
        for (group, params, _, bufs), nb in zip(collected, new_bufs, strict=True):
            if nb:
                self._param_update(group, params, bufs)

        cold = abs(self._alpha) <= delta
        g_cur = _g(self._alpha, delta, dp, span)
        state = "cold" if cold else "hot" if self._is_hot(g_cur) else ""
        if state and state != self._extreme:
            if self._extreme:
                self._crossings += 1
            self._extreme = state
        self._cold_count += int(cold)
        self._sampled += 1
        self._last = {"alpha": self._alpha,
                      "temperature_ratio": 1.0 / g_cur,
                      "H": h_tilde, "force_coupling": f_coup, "force_prebias": f_pre,
                      "force_confinement": f_conf, "force_bias": f_bias,
                      "confine_force": big_c, "cold": cold}
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

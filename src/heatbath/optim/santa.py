r"""Santa, Euler version (Chen, Carlson, Gan, Li, Carin, AISTATS 2016, Algorithm 1).

"Bridging the Gap between Stochastic Gradient MCMC and Stochastic Optimization"; a baseline of
CTLD (Ye et al., NIPS 2017, §5). Element-wise, with the N-scaled stochastic gradient
:math:`\tilde f_t = N\,\nabla f(\theta_{t-1})` (f the mean objective with weight decay) and the
inverse temperature :math:`\beta_t = t^{\,a}` (``anne_rate`` a, default 0.5), for
:math:`t = 1, 2, \dots`:

.. math::

    v_t = \sigma v_{t-1} + \frac{1 - \sigma}{N^2}\,\tilde f_t \odot \tilde f_t, \qquad
    g_t = 1 \oslash \sqrt{\lambda + \sqrt{v_t}}

exploration (:math:`t \le` ``burnin``):

.. math::

    \alpha_t = \alpha_{t-1} + u_{t-1} \odot u_{t-1} - \eta/\beta_t,\qquad
    u_t = \frac{\eta}{\beta_t}\,(1 - g_{t-1} \oslash g_t) \oslash u_{t-1}
          + \sqrt{2\eta\, g_{t-1}/\beta_t} \odot \zeta_t

refinement: :math:`\alpha_t = \alpha_{t-1}`, :math:`u_t = 0`; then always

.. math::

    u_t \leftarrow u_t + (1 - \alpha_t) \odot u_{t-1} - \eta\, g_t \odot \tilde f_t, \qquad
    \theta_t = \theta_{t-1} + g_t \odot u_t .

Initialisation: :math:`u_0 = \sqrt\eta\,\mathcal N(0, I)`, :math:`\alpha_0 = \sqrt\eta\, C`,
:math:`v_0 = 0`, :math:`g_0 := g_1`. Choices (see ``docs/ctld.md``): defaults sigma = 0.95,
lambda = 1e-8, C = 5, anne_rate = 0.5 as in public ports; ``burnin`` counts the exploration steps
exactly (t = 1..burnin); entries with :math:`u_{t-1} = 0` get a zero correction term. Since
:math:`\tilde f` is N-scaled, eta plays the role of (SGD learning rate)/N.

Preconditioner guard (heatbath's choice, not in the paper). The paper's lambda (placed as in
its Algorithm 1, inside the outer square root) is the only bound on g: :math:`g \le
\lambda^{-1/2} = 10^4`. RMSprop can live with that because its step :math:`g^2 \odot \tilde f`
vanishes with the gradient; Santa's cannot, because the exploration noise does not: a
coordinate whose gradient is exactly zero (an input pixel that is 0 in every image, the weights
into a dead ReLU) gets :math:`u \sim \sqrt{2\eta g/\beta}\,\zeta` and moves by
:math:`g \odot u \sim g^{3/2}\sqrt{2\eta/\beta}`, i.e. :math:`10^6\sqrt{2\eta}` per step,
and the run overflows within a few steps. Such a coordinate carries no curvature information,
so heatbath gives it (at most) the scale of the coordinates that do: per parameter tensor,
each entry's gradient scale :math:`\sqrt{v_t}` is floored at :math:`\rho` times the tensor's
mean,

.. math::

    g_t = 1 \oslash \sqrt{\lambda + \max\big(\sqrt{v_t},\ \rho\,\overline{\sqrt{v_t}}\big)},

with :math:`\overline{\sqrt{v_t}}` the mean over the tensor's entries. Every entry whose
gradient scale is at least :math:`\rho` times the mean gets the paper's g unchanged; an
uninformed entry gets :math:`g \le (\rho\,\overline{\sqrt{v_t}})^{-1/2}`, at most
:math:`\rho^{-1/2}` times the g of a mean entry (its exploration noise on theta at most
:math:`\rho^{-3/4}` times). ``lambda_rel`` :math:`\rho` = 0.1 by default (factors 3.2 and 5.6);
``lambda_rel=0`` is the paper's formula exactly. A tensor whose gradient is zero everywhere
still falls back to lambda.

Under heatbath's optimizer contract (``docs/optimizers.md``) Santa skips parameters without
``requires_grad`` or a gradient (their u, alpha, v, g stay as they are) and refuses a non-finite
gradient with nothing changed. Its lr (eta) enters the velocity u, not the drift: a step with
``lr = 0`` from a fresh state moves nothing, but after earlier steps the parameters still coast
on the stored u, damped by alpha.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from heatbath._validate import check_int, check_real

from ._base import GroupWork, HeatbathOptimizer
from ._distributed import local_view

__all__ = ["Santa"]


def _check_hparams(group: dict[str, Any]) -> None:
    check_real("lr", group["lr"], low=0.0)
    check_int("num_data", group["num_data"], low=1)
    check_int("burnin", group["burnin"], low=0)
    check_real("sigma", group["sigma"], low=0.0, high=1.0, high_open=True)
    check_real("lambda_", group["lambda_"], low=0.0, low_open=True)
    check_real("lambda_rel", group["lambda_rel"], low=0.0)
    check_real("C", group["C"], low=0.0)
    check_real("anne_rate", group["anne_rate"], low=0.0)
    check_real("weight_decay", group["weight_decay"], low=0.0)


class Santa(HeatbathOptimizer):
    """Santa-E: annealed, preconditioned SG-MCMC exploration, then a deterministic refinement.

    Args:
        params: parameters or param groups.
        lr: eta >= 0 (step on the N-scaled gradient).
        num_data: N >= 1.
        burnin: number of exploration steps >= 0.
        sigma: RMSprop decay in [0, 1).
        lambda_: preconditioner damping lambda > 0 (the paper's).
        lambda_rel: rho >= 0, floor of each entry's gradient scale relative to its tensor's
            mean (heatbath's guard, see the module docstring; 0 = the paper's formula).
        C: initial friction scale, alpha_0 = sqrt(eta) C, >= 0.
        anne_rate: a >= 0 in beta_t = t^a.
        weight_decay: torch's L2 weight decay >= 0 (part of f).
        seed, generator, check_finite: as in :class:`~heatbath.optim.Partitioned` (the initial
            velocity u_0 is drawn from the group's generator when the group is added).
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float,
                 num_data: int, burnin: int, *, sigma: float = 0.95, lambda_: float = 1e-8,
                 lambda_rel: float = 0.1, C: float = 5.0, anne_rate: float = 0.5,
                 weight_decay: float = 0.0, seed: int | None = None,
                 generator: torch.Generator | None = None, check_finite: bool = True) -> None:
        defaults = {"lr": lr, "num_data": num_data, "burnin": burnin, "sigma": sigma,
                    "lambda_": lambda_, "lambda_rel": lambda_rel, "C": C, "anne_rate": anne_rate,
                    "weight_decay": weight_decay}
        _check_hparams(defaults)
        super().__init__(params, defaults, seed=seed, generator=generator,
                         check_finite=check_finite)

    def _prepare_group(self, group: dict[str, Any], index: int,
                       given: set[str]) -> dict[str, Any]:
        _check_hparams(group)
        return group

    def _sync_group(self, group: dict[str, Any], index: int) -> None:
        lr = group["lr"]
        if not (isinstance(lr, float | int) and 0 <= lr < math.inf):
            check_real("lr", lr, low=0.0)

    def _init_group(self, group: dict[str, Any], index: int) -> None:
        eta = group["lr"]
        gen = self._generators[index]
        for p in group["params"]:
            st = self.state[p]
            st["u"] = math.sqrt(eta) * torch.randn(p.shape, generator=gen, dtype=p.dtype,
                                                   device=p.device)
            st["a"] = torch.full_like(p, math.sqrt(eta) * group["C"])
            st["v"] = torch.zeros_like(p)
            st["g"] = torch.zeros_like(p)

    @property
    def steps(self) -> int:
        """Steps taken so far."""
        return self.step_count

    def inverse_temperature(self, t: int | None = None) -> float:
        """beta_t = t^anne_rate (t >= 1; default: the last step taken)."""
        t = max(1, self.step_count if t is None else t)
        return float(t) ** self.param_groups[0]["anne_rate"]

    def _update(self, work: list[GroupWork]) -> None:
        t = self.step_count + 1
        for w in work:
            group = w.group
            params, grads = w.local, w.grads
            n, eta, sig = group["num_data"], group["lr"], group["sigma"]
            beta = float(t) ** group["anne_rate"]
            if group["weight_decay"] != 0:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            f = torch._foreach_mul(grads, float(n))
            st = [self.state[p] for p in w.params]

            def get(key: str, st: list[dict[str, Any]] = st, sharded: bool = w.sharded
                    ) -> list[Tensor]:
                return [local_view(s[key]) if sharded else s[key] for s in st]

            v, u, a, g_prev = get("v"), get("u"), get("a"), get("g")
            torch._foreach_mul_(v, sig)
            torch._foreach_addcmul_(v, f, f, value=(1.0 - sig) / (n * n))
            g = torch._foreach_sqrt(v)
            rho = group["lambda_rel"]
            if rho > 0:  # the guard: sqrt(v) floored at rho * its mean over the tensor
                for gi in g:
                    torch.maximum(gi, gi.mean() * rho, out=gi)
            torch._foreach_add_(g, group["lambda_"])
            torch._foreach_sqrt_(g)
            torch._foreach_reciprocal_(g)
            if t == 1:
                for gp, gn in zip(g_prev, g, strict=True):
                    gp.copy_(gn)
            if t <= group["burnin"]:
                torch._foreach_addcmul_(a, u, u)
                torch._foreach_add_(a, -eta / beta)
                # (eta/beta)(1 - g_prev/g) / u_prev, zero where u_prev == 0
                ratio = torch._foreach_div(g_prev, g)
                corr = []
                for r, up in zip(ratio, u, strict=True):
                    safe = torch.where(up == 0, torch.ones_like(up), up)
                    corr.append(torch.where(up == 0, torch.zeros_like(up),
                                            (eta / beta) * (1.0 - r) / safe))
                zeta = self._normal_like(w.index, params, 1.0)[0]
                scale = torch._foreach_sqrt(torch._foreach_mul(g_prev, 2.0 * eta / beta))
                torch._foreach_addcmul_(corr, scale, zeta)
                u_new = corr
            else:
                u_new = [torch.zeros_like(p) for p in params]
            one_minus_a = torch._foreach_neg(a)
            torch._foreach_add_(one_minus_a, 1.0)
            torch._foreach_addcmul_(u_new, one_minus_a, u)
            torch._foreach_addcmul_(u_new, g, f, value=-eta)
            torch._foreach_addcmul_(params, g, u_new)
            for uo, un, gp, gn in zip(u, u_new, g_prev, g, strict=True):
                uo.copy_(un)
                gp.copy_(gn)

r"""Underdamped Langevin dynamics with the BAOAB splitting; per-group (γ, τ) = multi-layer Langevin.

SDE (unit mass): :math:`d\theta = p\,dt,\quad dp = -\nabla L(\theta)\,dt - \gamma p\,dt
+ \sqrt{2\gamma\tau}\,dW`, with invariant density
:math:`\rho(\theta, p) \propto \exp\big(-(L(\theta) + \tfrac12 p^\top p)/\tau\big)`, i.e. the
parameters sample :math:`\exp(-L(\theta)/\tau)`.

One BAOAB step: :math:`B_{h/2}\,A_{h/2}\,O_h\,A_{h/2}\,B_{h/2}` with

.. math::
    B_\delta: p \leftarrow p - \delta\nabla L,\quad A_\delta: \theta \leftarrow \theta + \delta p,
    \quad O_h: p \leftarrow c\,p + \sqrt{\tau(1-c^2)}\,R,\ c = e^{-\gamma h}.

With one gradient per step, the trailing half-kick of one step and the leading half-kick of the
next merge into a single :math:`B_h` computed right after ``loss.backward()`` (the first step
kicks :math:`B_{h/2}`). The stored momentum therefore lags the BAOAB momentum by half a kick;
:meth:`~heatbath.optim.Partitioned.diagnostics` corrects for it.

**Step size versus learning rate**. Eliminating p at τ = 0 gives
:math:`\theta_{n+1} - \theta_n = c(\theta_n - \theta_{n-1}) - \eta g_n` with
:math:`\eta = h^2(1+c)/2`: exactly ``torch.optim.SGD(lr=eta, momentum=c, dampening=0)`` after the
first step. :meth:`Langevin.from_sgd` inverts this map.

**Multi-layer Langevin (LaLa).** Give each parameter group its own ``gamma`` and ``tau``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from .._validate import check_real
from ._core import Partitioned

__all__ = ["Langevin", "sgd_to_langevin", "langevin_to_sgd"]


def langevin_to_sgd(h: float, gamma: float) -> tuple[float, float]:
    r"""``(lr, momentum)`` of the SGD-momentum that merged BAOAB equals at τ = 0:
    :math:`c = e^{-\gamma h}`, :math:`\eta = h^2(1 + c)/2`."""
    c = math.exp(-gamma * h)
    return 0.5 * h * h * (1.0 + c), c


def sgd_to_langevin(lr: float, momentum: float) -> tuple[float, float]:
    r"""``(h, gamma)`` of the Langevin step equal to SGD(lr, momentum) at τ = 0.

    Inverts :func:`langevin_to_sgd`: :math:`h = \sqrt{2\eta/(1+c)}`, :math:`\gamma = -\ln(c)/h`.
    """
    check_real("lr", lr, low=0.0, low_open=True)
    check_real("momentum", momentum, low=0.0, high=1.0, low_open=True)
    h = math.sqrt(2.0 * lr / (1.0 + momentum))
    return h, -math.log(momentum) / h


class Langevin(Partitioned):
    r"""BAOAB Langevin sampler/optimizer; per-group ``gamma``, ``tau`` give multi-layer Langevin.

    Args:
        params: parameters or parameter groups (groups may override ``h``, ``gamma``, ``tau``).
        h: time step (≥ 0); not a learning rate (see :meth:`from_sgd`).
        gamma: friction γ (≥ 0).
        tau: temperature τ (≥ 0); τ = 0 is deterministic SGD-momentum.
        seed, generator, replicas, check_finite, foreach, noise: as in :class:`Partitioned`.
    """

    def __init__(
        self,
        params: Iterable[Any],
        h: float,
        gamma: float,
        tau: float,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        replicas: int | None = None,
        check_finite: bool = True,
        foreach: bool | None = None,
        noise: str = "auto",
    ) -> None:
        check_real("gamma", gamma, low=0.0)
        super().__init__(params, h, method="baoab", gamma=gamma, tau=tau, seed=seed,
                         generator=generator, replicas=replicas, check_finite=check_finite,
                         foreach=foreach, noise=noise)

    @classmethod
    def from_sgd(cls, params: Iterable[Any], lr: float, momentum: float, tau: float = 0.0,
                 **kwargs: Any) -> Langevin:
        """A Langevin optimizer that equals ``SGD(lr, momentum, dampening=0)`` at ``tau = 0``."""
        h, gamma = sgd_to_langevin(lr, momentum)
        return cls(params, h, gamma, tau, **kwargs)

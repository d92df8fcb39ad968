r"""Adaptive Langevin (AdL, Nosé–Hoover–Langevin): a thermostat that absorbs gradient noise.

SDE: :math:`d\theta = p\,dt,\quad dp = -\nabla L(\theta)\,dt - \xi p\,dt + \sigma_A\,dW_A,\quad
d\xi = \epsilon\,(p^\top p - n\tau)\,dt`, with n the number of entries thermostatted by ξ.

Its invariant density is :math:`\rho \propto \exp\big(-(L + \tfrac12 p^\top p)/\tau\big)\,
\exp\big(-(\xi - \bar\xi)^2/(2\epsilon\tau)\big)` for a suitable :math:`\bar\xi`, **whatever**
the (unknown, Gaussian) gradient noise: ξ settles where friction balances the injected heat, so
:math:`p^\top p/n \to \tau` at equilibrium.

Discrete step (merged kick first, see docs/optimizers.md):

.. math::
    B_h\ A_{h/2}\ C_{h/2}\ D_{h/2}\ E_h\ D_{h/2}\ C_{h/2}\ A_{h/2},\qquad
    C_\delta: p \leftarrow e^{-\xi\delta}p,\ D_\delta: p \leftarrow p + \sigma_A\sqrt\delta R,\
    E_\delta: \xi \leftarrow \xi + \delta\epsilon(p^\top p - n\tau).

Choices (following the authors' code): ε couples only the ξ equation; one ξ per
parameter tensor (``xi_per="group"`` for one per group); ξ₀ = 0.1; ξ may go negative (the layer
is heated) — it is kept, and :meth:`~heatbath.optim.Partitioned.diagnostics` shows it. Because E
sums over n entries, ξ responds faster for larger layers: ``epsilon_scale="per_entry"`` uses ε/n
(the SGNHT normalisation), and a warning is raised when :math:`h\epsilon n\tau > 1`.

The noise half-step before E gives every entry the variance :math:`\sigma_A^2 h/2` whatever ξ
is, so with :math:`\sigma_A^2 h/2 \ge \tau` the thermostat cannot reach τ and ξ grows without
bound: a ``RuntimeWarning`` names the group, the values and the bound, at construction and at
the first step after a change (a scheduler's lr) makes it hold (docs/theory/adaptive-langevin.md,
section 'Thermostat scale').
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from ._core import Partitioned

__all__ = ["AdaptiveLangevin"]


class AdaptiveLangevin(Partitioned):
    r"""Adaptive Langevin (Nosé–Hoover–Langevin) with ACDEDCA splitting after the merged kick.

    Args:
        params: parameters or parameter groups.
        h: time step (≥ 0; 0 is a valid step that moves nothing).
        tau: target temperature τ (≥ 0).
        sigma_A: additive noise amplitude σ_A (≥ 0); keep σ_A²h/2 < τ, else ξ runs away
            (a ``RuntimeWarning`` says so, see above).
        epsilon: thermostat coupling ε (≥ 0); 0 freezes ξ at ``xi0``.
        xi0: initial thermostat variable ξ₀.
        xi_per: ``"tensor"`` (default, one ξ per parameter tensor) or ``"group"``.
        epsilon_scale: ``"total"`` (default) or ``"per_entry"`` (ε/n).
        seed, generator, replicas, check_finite, foreach, noise: as in :class:`Partitioned`.
    """

    def __init__(
        self,
        params: Iterable[Any],
        h: float,
        tau: float,
        sigma_A: float,
        epsilon: float,
        xi0: float = 0.1,
        *,
        xi_per: str = "tensor",
        epsilon_scale: str = "total",
        seed: int | None = None,
        generator: torch.Generator | None = None,
        replicas: int | None = None,
        check_finite: bool = True,
        foreach: bool | None = None,
        noise: str = "auto",
    ) -> None:
        super().__init__(params, h, method="adl", tau=tau, sigma_A=sigma_A, epsilon=epsilon,
                         xi0=xi0, xi_per=xi_per, epsilon_scale=epsilon_scale, seed=seed,
                         generator=generator, replicas=replicas, check_finite=check_finite,
                         foreach=foreach, noise=noise)

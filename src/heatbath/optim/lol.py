r"""LOL: Langevin on the first layer, overdamped Langevin on the others (Leimkuhler–Matthews–Vlaar).

Layer 1 (:math:`\theta_1`) runs underdamped Langevin with (γ₁, τ₁); the other layers run its
overdamped limit with τ₂; all share h and one gradient per step:

.. math::
    d\theta_1 = p_1\,dt,\ dp_1 = -\nabla_1 L\,dt - \gamma_1 p_1\,dt + \sqrt{2\gamma_1\tau_1}\,dW_1

    \theta_2: \text{BAOAB with the momentum redrawn each step (γ → ∞), i.e.}\
    \theta_{2,n+1} = \theta_{2,n} - \tfrac{h^2}{2} g_n + \tfrac h2\sqrt{\tau_2}(R_n + R_{n-1}),

the Leimkuhler–Matthews limit method with effective step :math:`h^2/2`. With
:math:`\tau_1 = \tau_2 = \tau` the target is :math:`\exp(-L(\theta)/\tau)`.

The captions give only h, γ₁, τ₁ (e.g. h = 0.1, γ₁ = 0.01, τ₁ = 1e-3); heatbath's documented
choice is τ₂ = τ₁, and "layer 1" is the first layer (not stated in the available text of the paper).
"""

from __future__ import annotations

from typing import Any

from .._validate import check_real
from ._core import Partitioned
from ._partition import _groups, first_layer_split

__all__ = ["LOL"]


class LOL(Partitioned):
    r"""Underdamped Langevin on the first layer, overdamped Langevin on the rest.

    Args:
        model_or_groups: an ``nn.Module`` or a pair ``(first_params, rest_params)``
            (see :class:`~heatbath.optim.AdLaLa`).
        h: time step (≥ 0), shared.
        gamma1: friction γ₁ (≥ 0) of the first layer.
        tau1: temperature τ₁ (≥ 0) of the first layer.
        tau2: temperature τ₂ (≥ 0) of the other layers; ``None`` means τ₂ = τ₁.
        seed: seed of the noise (see :class:`Partitioned`).
        **kwargs: ``replicas`` and the other keywords of :class:`Partitioned`.
    """

    def __init__(
        self,
        model_or_groups: Any,
        h: float = 0.1,
        gamma1: float = 0.01,
        tau1: float = 1e-3,
        tau2: float | None = None,
        *,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        check_real("gamma1", gamma1, low=0.0)
        check_real("tau1", tau1, low=0.0)
        tau2 = tau1 if tau2 is None else check_real("tau2", tau2, low=0.0)
        first, rest = first_layer_split(model_or_groups)
        groups = _groups(first, rest, dict(method="baoab", gamma=gamma1, tau=tau1),
                         dict(method="overdamped", tau=tau2))
        super().__init__(groups, h, seed=seed, **kwargs)
        # groups added later inherit the "rest" partition's hyperparameters
        self._template = ({"index": 1} if len(self.param_groups) > 1
                          else {"values": dict(method="overdamped", tau=tau2)})

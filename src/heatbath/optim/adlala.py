r"""AdLaLa: Adaptive Langevin on the first layer, Langevin on the rest (Leimkuhler–Matthews–Vlaar).

The parameters are partitioned into the first layer :math:`\theta_1 = (W_1, b_1)` (input →
hidden) and the rest :math:`\theta_2`. All share the time step h and one gradient per step:

.. math::
    \text{layer 1: } d\theta_1 = p_1\,dt,\ dp_1 = -\nabla_1 L\,dt - \xi p_1\,dt + \sigma_A dW_A,\
    d\xi = \epsilon(p_1^\top p_1 - n\tau_1)\,dt

    \text{rest: } d\theta_2 = p_2\,dt,\ dp_2 = -\nabla_2 L\,dt - \gamma p_2\,dt
    + \sqrt{2\gamma\tau_2}\,dW

One step: merged kick B for all groups, then :math:`A_{h/2}` on all, C D E½ on layer 1,
:math:`O_h` on the rest, E½ D C on layer 1, :math:`A_{h/2}` on all (groups are independent
between gradients, so per-group sequences give the same result). With
:math:`\tau_1 = \tau_2 = \tau` the target is :math:`\exp(-L(\theta)/\tau)`; the point of the
method is that the first layer's thermostat absorbs the (unknown) minibatch gradient noise.

Defaults are the authors': h = 0.25, γ = 0.1, τ₁ = τ₂ = 1e-4, σ_A = 0.01, ε = 0.05, ξ₀ = 0.1.
"""

from __future__ import annotations

from typing import Any

from .._validate import check_real
from ._core import Partitioned
from ._partition import _groups, first_layer_split

__all__ = ["AdLaLa"]


class AdLaLa(Partitioned):
    r"""AdL on the first layer, BAOAB Langevin on the others.

    Args:
        model_or_groups: an ``nn.Module`` (its first layer is the first submodule in
            ``model.modules()`` order that directly owns parameters) or a pair
            ``(first_params, rest_params)``.
        h: time step (≥ 0), shared.
        gamma: friction γ (≥ 0) of the Langevin layers.
        tau1: temperature τ₁ (≥ 0) of the first layer's thermostat.
        tau2: temperature τ₂ (≥ 0) of the Langevin layers.
        sigma_A: additive noise amplitude σ_A (≥ 0) of the first layer; keep
            σ_A²h/2 < τ₁, else ξ runs away (a ``RuntimeWarning`` says so; see
            :mod:`heatbath.optim.adaptive_langevin`).
        epsilon: thermostat coupling ε (≥ 0).
        xi0: initial ξ.
        seed: seed of the noise (see :class:`Partitioned`).
        **kwargs: ``replicas`` and the other keywords of :class:`Partitioned` (e.g.
            ``xi_per``, ``epsilon_scale``, ``check_finite``).

    ``param_groups[0]`` is the first layer (``method="adl"``), ``param_groups[1]`` the rest
    (``method="baoab"``).
    """

    def __init__(
        self,
        model_or_groups: Any,
        h: float = 0.25,
        gamma: float = 0.1,
        tau1: float = 1e-4,
        tau2: float = 1e-4,
        sigma_A: float = 0.01,
        epsilon: float = 0.05,
        xi0: float = 0.1,
        *,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        check_real("gamma", gamma, low=0.0)
        check_real("tau1", tau1, low=0.0)
        check_real("tau2", tau2, low=0.0)
        first, rest = first_layer_split(model_or_groups)
        groups = _groups(
            first, rest,
            dict(method="adl", tau=tau1, sigma_A=sigma_A, epsilon=epsilon, xi0=xi0),
            dict(method="baoab", gamma=gamma, tau=tau2),
        )
        super().__init__(groups, h, seed=seed, **kwargs)
        # groups added later inherit the "rest" partition's hyperparameters
        self._template = ({"index": 1} if len(self.param_groups) > 1
                          else {"values": dict(method="baoab", gamma=gamma, tau=tau2)})

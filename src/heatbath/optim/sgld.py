r"""Stochastic gradient Langevin dynamics (the paper's baseline).

SDE: :math:`d\theta = -\nabla L(\theta)\,dt + \sigma\,dW`.

Discrete update (Euler–Maruyama, one minibatch gradient :math:`g_n` per step):

.. math:: \theta_{n+1} = \theta_n - h\,g_n + \sigma\sqrt{h}\,R_n,\qquad R_n \sim N(0, I).

With :math:`\sigma = 0` this is exactly ``torch.optim.SGD(lr=h)``; with
:math:`\sigma = \sqrt{2\tau}` it targets :math:`\rho(\theta) \propto \exp(-L(\theta)/\tau)`
(to first order in h). The paper's captions give (h, σ), so σ is the primary parameter.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from ._core import Partitioned

__all__ = ["SGLD"]


class SGLD(Partitioned):
    r"""SGLD: :math:`\theta \leftarrow \theta - h g + \sigma\sqrt h R`.

    Args:
        params: parameters or parameter groups (groups may override ``h`` and ``sigma``).
        h: step size (≥ 0), the learning rate of SGD.
        sigma: noise amplitude (≥ 0); ``sigma = sqrt(2 * tau)`` targets temperature τ.
        seed, generator, replicas, check_finite, foreach, noise: as in :class:`Partitioned`.
    """

    def __init__(
        self,
        params: Iterable[Any],
        h: float,
        sigma: float = 0.0,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        replicas: int | None = None,
        check_finite: bool = True,
        foreach: bool | None = None,
        noise: str = "auto",
    ) -> None:
        super().__init__(params, h, method="sgld", sigma=sigma, seed=seed, generator=generator,
                         replicas=replicas, check_finite=check_finite, foreach=foreach,
                         noise=noise)

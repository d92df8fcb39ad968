r"""AnnealSGD: SGD with momentum on an annealed, noise-perturbed gradient.

A. Neelakantan, L. Vilnis, Q. V. Le, I. Sutskever, L. Kaiser, K. Kurach, J. Martens, "Adding
Gradient Noise Improves Learning for Very Deep Networks", 2015; a baseline of CTLD (Ye et al.,
NIPS 2017, §5). Step :math:`t = 0, 1, 2, \dots` on the mean objective
:math:`f(\theta) = \bar\ell(\theta) + \tfrac12\,\mathrm{wd}\,|\theta|^2`:

.. math::

    \tilde g_t = \nabla f(\theta_t) + \mathcal N(0, \sigma_t^2 I), \qquad
    \sigma_t^2 = \frac{\eta_n}{(1 + t)^{\gamma}}, \quad \gamma = 0.55,\\
    b_{t+1} = \mu\, b_t + \tilde g_t, \qquad \theta_{t+1} = \theta_t - \lambda\, b_{t+1}.

The paper picks :math:`\eta_n \in \{0.01, 0.3, 1.0\}`. The base optimizer is SGD with momentum
(heatbath's reading of the name, see ``docs/ctld.md``); with ``momentum=0`` it is plain SGD.
The noise is added to the mean-loss gradient (weight decay included) before the momentum.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from heatbath._validate import check_real

from ._base import GroupWork, HeatbathOptimizer

__all__ = ["AnnealSGD"]


def _check_hparams(group: dict[str, Any]) -> None:
    check_real("lr", group["lr"], low=0.0)
    check_real("momentum", group["momentum"], low=0.0, high=1.0, high_open=True)
    check_real("noise_eta", group["noise_eta"], low=0.0)
    check_real("noise_decay", group["noise_decay"], low=0.0)
    check_real("weight_decay", group["weight_decay"], low=0.0)


class AnnealSGD(HeatbathOptimizer):
    """SGD-momentum with annealed Gaussian gradient noise sigma_t^2 = eta_n / (1 + t)^gamma.

    Follows heatbath's optimizer contract (``docs/optimizers.md``): parameters without
    ``requires_grad`` or a gradient are skipped, a non-finite gradient raises
    :class:`~heatbath.optim.NonFiniteGradientError` with nothing changed, ``lr = 0`` moves
    nothing, and ``momentum`` may be scheduled (``OneCycleLR``, ``CyclicLR``).

    Args:
        params: parameters or param groups.
        lr: learning rate lambda >= 0 on the mean loss.
        momentum: mu in [0, 1).
        noise_eta: eta_n >= 0, the noise variance at t = 0.
        noise_decay: gamma >= 0 (paper: 0.55).
        weight_decay: torch's L2 weight decay >= 0.
        seed, generator, check_finite: as in :class:`~heatbath.optim.Partitioned`.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float,
                 momentum: float = 0.9, noise_eta: float = 0.01, noise_decay: float = 0.55,
                 weight_decay: float = 0.0, *, seed: int | None = None,
                 generator: torch.Generator | None = None, check_finite: bool = True) -> None:
        defaults = {"lr": lr, "momentum": momentum, "noise_eta": noise_eta,
                    "noise_decay": noise_decay, "weight_decay": weight_decay}
        _check_hparams(defaults)
        super().__init__(params, defaults, seed=seed, generator=generator,
                         check_finite=check_finite)

    def _prepare_group(self, group: dict[str, Any], index: int,
                       given: set[str]) -> dict[str, Any]:
        _check_hparams(group)
        return group

    def _sync_group(self, group: dict[str, Any], index: int) -> None:
        lr, mu = group["lr"], group["momentum"]
        if not (isinstance(lr, float | int) and 0 <= lr < math.inf
                and isinstance(mu, float | int) and 0 <= mu < 1):
            check_real("lr", lr, low=0.0)
            check_real("momentum", mu, low=0.0, high=1.0, high_open=True)

    def noise_variance(self, t: int | None = None, group: int = 0) -> float:
        """sigma_t^2 = eta_n / (1 + t)^gamma for step t (default: the next step)."""
        g = self.param_groups[group]
        t = self.step_count if t is None else t
        return g["noise_eta"] / (1.0 + t) ** g["noise_decay"]

    @property
    def steps(self) -> int:
        """Steps taken so far."""
        return self.step_count

    def _update(self, work: list[GroupWork]) -> None:
        from ._distributed import local_view

        for w in work:
            group = w.group
            bufs = []
            for p in w.params:
                st = self.state[p]
                if "momentum_buffer" not in st:
                    st["momentum_buffer"] = torch.zeros_like(p)
                bufs.append(local_view(st["momentum_buffer"]) if w.sharded
                            else st["momentum_buffer"])
            torch._foreach_mul_(bufs, group["momentum"])
            torch._foreach_add_(bufs, w.grads)
            if group["weight_decay"] != 0:
                torch._foreach_add_(bufs, w.local, alpha=group["weight_decay"])
            std = math.sqrt(self.noise_variance(self.step_count, w.index))
            if std > 0:
                torch._foreach_add_(bufs, self._normal_like(w.index, w.local, std)[0])
            if group["lr"] != 0:
                torch._foreach_add_(w.local, bufs, alpha=-group["lr"])

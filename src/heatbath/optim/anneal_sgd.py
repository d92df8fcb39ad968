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
(heatbath's reading of the name, spec ``ctld.md`` §8); with ``momentum=0`` it is plain SGD.
The noise is added to the mean-loss gradient (weight decay included) before the momentum.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from heatbath._validate import check_int, check_real

from ._stateful import CounterGeneratorOptimizer

__all__ = ["AnnealSGD"]


class AnnealSGD(CounterGeneratorOptimizer):
    """SGD-momentum with annealed Gaussian gradient noise sigma_t^2 = eta_n / (1 + t)^gamma.

    Args:
        params: parameters or param groups.
        lr: learning rate lambda > 0 on the mean loss.
        momentum: mu in [0, 1).
        noise_eta: eta_n >= 0, the noise variance at t = 0.
        noise_decay: gamma >= 0 (paper: 0.55).
        weight_decay: torch's L2 weight decay >= 0.
        seed, generator: the randomness (``generator`` wins).
    """

    STATE_KEY = "anneal_sgd"

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float,
                 momentum: float = 0.9, noise_eta: float = 0.01, noise_decay: float = 0.55,
                 weight_decay: float = 0.0, *, seed: int | None = None,
                 generator: torch.Generator | None = None) -> None:
        check_real("lr", lr, low=0.0, low_open=True)
        check_real("momentum", momentum, low=0.0, high=1.0, high_open=True)
        check_real("noise_eta", noise_eta, low=0.0)
        check_real("noise_decay", noise_decay, low=0.0)
        check_real("weight_decay", weight_decay, low=0.0)
        defaults = {"lr": lr, "momentum": momentum, "noise_eta": noise_eta,
                    "noise_decay": noise_decay, "weight_decay": weight_decay}
        super().__init__(params, defaults)
        if generator is None:
            generator = torch.Generator(device=self.param_groups[0]["params"][0].device)
            if seed is None:
                generator.seed()
            else:
                generator.manual_seed(check_int("seed", seed, low=0))
        self._gen = generator
        self._t = 0

    def noise_variance(self, t: int | None = None, group: int = 0) -> float:
        """sigma_t^2 = eta_n / (1 + t)^gamma for step t (default: the next step)."""
        g = self.param_groups[group]
        t = self._t if t is None else t
        return g["noise_eta"] / (1.0 + t) ** g["noise_decay"]

    @property
    def steps(self) -> int:
        return self._t

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for gi, group in enumerate(self.param_groups):
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            bufs = []
            for p in params:
                st = self.state[p]
                if "momentum_buffer" not in st:
                    st["momentum_buffer"] = torch.zeros_like(p)
                bufs.append(st["momentum_buffer"])
            if group["weight_decay"] != 0:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            else:
                grads = [g.clone() for g in grads]
            std = math.sqrt(self.noise_variance(self._t, gi))
            if std > 0:
                noise = [torch.randn(p.shape, generator=self._gen, dtype=p.dtype,
                                     device=p.device) for p in params]
                torch._foreach_add_(grads, noise, alpha=std)
            torch._foreach_mul_(bufs, group["momentum"])
            torch._foreach_add_(bufs, grads)
            torch._foreach_add_(params, bufs, alpha=-group["lr"])
        self._t += 1
        return loss

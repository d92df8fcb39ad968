r"""Activations with the facts the structure-preserving blocks need.

For each activation :math:`\sigma` heatbath records

* its Lipschitz constant :math:`L = \sup|\sigma'|`,
* whether it is monotone (:math:`\sigma' \ge 0`), required by gradient-flow blocks:
  only then is :math:`V(z) = \gamma(Az+b)\cdot\mathbb 1` convex and the step
  :math:`z - hA^\top\sigma(Az+b)` non-expansive for :math:`hL\|A\|^2 \le 2`,
* a potential :math:`\gamma` with :math:`\gamma' = \sigma` where one is elementary, used for the
  Hamiltonian :math:`H = \gamma_1(A_1p+b_1)\cdot\mathbb 1 + \gamma_2(A_2z+b_2)\cdot\mathbb 1`:

  ============  ==============================  ====  ========  ==========================
  name          :math:`\sigma(s)`               L     monotone  :math:`\gamma(s)`
  ============  ==============================  ====  ========  ==========================
  identity      s                               1     yes       s^2/2
  tanh          tanh s                          1     yes       log cosh s
  relu          max(0, s)                       1     yes       max(0, s)^2/2
  leaky_relu    s if s>0 else 0.01 s            1     yes       s^2/2 or 0.01 s^2/2
  sigmoid       1/(1+e^{-s})                    1/4   yes       softplus(s)
  softplus      log(1+e^s)                      1     yes       (none)
  sin           sin s                           1     no        -cos s
  gelu / silu   s Phi(s), s sigmoid(s)          >1    no        (none)
  ============  ==============================  ====  ========  ==========================

(GELU and SiLU are not monotone: they dip below zero for negative s.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validate import check_choice

__all__ = ["Activation", "ACTIVATIONS", "get_activation"]


@dataclass(frozen=True)
class Activation:
    """An elementwise activation with its Lipschitz constant, monotonicity and potential."""

    name: str
    fn: Callable[[Tensor], Tensor]
    lipschitz: float
    monotone: bool
    potential: Callable[[Tensor], Tensor] | None = None

    def __call__(self, s: Tensor) -> Tensor:
        return self.fn(s)


def _logcosh(s: Tensor) -> Tensor:
    # log cosh s = |s| + log1p(exp(-2|s|)) - log 2, stable for large |s|
    a = s.abs()
    return a + torch.log1p(torch.exp(-2.0 * a)) - math.log(2.0)


def _leaky(s: Tensor) -> Tensor:
    return F.leaky_relu(s, 0.01)


def _leaky_pot(s: Tensor) -> Tensor:
    return 0.5 * torch.where(s > 0, s, 0.01 * s) * s


ACTIVATIONS: dict[str, Activation] = {
    "identity": Activation("identity", lambda s: s, 1.0, True, lambda s: 0.5 * s * s),
    "tanh": Activation("tanh", torch.tanh, 1.0, True, _logcosh),
    "relu": Activation("relu", torch.relu, 1.0, True, lambda s: 0.5 * torch.relu(s) ** 2),
    "leaky_relu": Activation("leaky_relu", _leaky, 1.0, True, _leaky_pot),
    "sigmoid": Activation("sigmoid", torch.sigmoid, 0.25, True, F.softplus),
    "softplus": Activation("softplus", F.softplus, 1.0, True, None),
    "sin": Activation("sin", torch.sin, 1.0, False, lambda s: -torch.cos(s)),
    "gelu": Activation("gelu", F.gelu, 1.13, False, None),
    "silu": Activation("silu", F.silu, 1.1, False, None),
}


def get_activation(activation: str | Activation, *, require_monotone: bool = False,
                   require_potential: bool = False, owner: str = "block") -> Activation:
    """Look up ``activation`` by name (or pass an :class:`Activation` through) and check it.

    ``require_monotone`` (gradient-flow blocks) and ``require_potential`` (energy evaluation)
    raise ``ValueError`` naming ``owner`` when the activation does not qualify.
    """
    if isinstance(activation, Activation):
        act = activation
    else:
        act = ACTIVATIONS[check_choice("activation", activation, tuple(ACTIVATIONS))]
    if require_monotone and not act.monotone:
        monos = [k for k, a in ACTIVATIONS.items() if a.monotone]
        raise ValueError(f"{owner}: activation {act.name!r} is not monotone; a gradient-flow "
                         f"block needs a monotone sigma with known Lipschitz constant, one of "
                         f"{', '.join(map(repr, monos))}")
    if require_potential and act.potential is None:
        raise ValueError(f"{owner}: activation {act.name!r} has no elementary potential gamma "
                         f"(gamma' = sigma), so the energy cannot be evaluated")
    return act

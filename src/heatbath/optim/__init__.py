"""Thermodynamic integrators as ``torch.optim.Optimizer`` subclasses.

- :class:`SGLD` — :math:`\\theta \\leftarrow \\theta - h g + \\sigma\\sqrt h R`
- :class:`Langevin` — BAOAB; per-group (γ, τ) is multi-layer Langevin
- :class:`AdaptiveLangevin` — Nosé–Hoover–Langevin thermostat
- :class:`AdLaLa` — AdL on the first layer, Langevin on the rest
- :class:`LOL` — Langevin on the first layer, overdamped Langevin on the rest
- :class:`Partitioned` — the general form: any dynamics per parameter group
- :class:`HeatbathOptimizer` — the base of all of them (seeding, finiteness, state dict)
- :class:`CTLD` — continuously tempered Langevin dynamics; baselines :class:`AnnealSGD`,
  :class:`Santa`
"""

from ._base import HeatbathOptimizer, NonFiniteGradientError
from ._build import OPTIMIZERS, build_optimizer
from ._core import METHODS, Partitioned, posterior_tau
from ._partition import first_layer_split
from .adaptive_langevin import AdaptiveLangevin
from .adlala import AdLaLa
from .anneal_sgd import AnnealSGD
from .ctld import CTLD
from .langevin import Langevin, langevin_to_sgd, sgd_to_langevin
from .lol import LOL
from .santa import Santa
from .sgld import SGLD

__all__ = [
    "SGLD", "Langevin", "AdaptiveLangevin", "AdLaLa", "LOL", "Partitioned",
    "NonFiniteGradientError", "METHODS", "OPTIMIZERS", "build_optimizer", "first_layer_split",
    "posterior_tau", "langevin_to_sgd", "sgd_to_langevin", "CTLD", "AnnealSGD", "Santa",
    "HeatbathOptimizer",
]

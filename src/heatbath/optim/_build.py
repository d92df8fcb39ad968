"""Build any optimizer of the comparison (heatbath's and torch's) from a method name."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from .._validate import check_choice, check_real
from .adaptive_langevin import AdaptiveLangevin
from .adlala import AdLaLa
from .langevin import Langevin
from .lol import LOL
from .sgld import SGLD

__all__ = ["build_optimizer", "OPTIMIZERS"]

OPTIMIZERS: dict[str, Any] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "sgld": SGLD,
    "langevin": Langevin,
    "adl": AdaptiveLangevin,
    "adlala": AdLaLa,
    "lol": LOL,
}
_TORCH_KEYS = {
    "sgd": {"h", "momentum", "dampening", "weight_decay", "nesterov"},
    "adam": {"h", "betas", "eps", "weight_decay", "amsgrad"},
}


def build_optimizer(method: str, model: nn.Module, *, replicas: int | None = None,
                    seed: int | None = None, **hparams: Any) -> torch.optim.Optimizer:
    """An optimizer for ``model`` by name, with hyperparameters under the paper's names.

    ``method`` is one of ``sgd``, ``adam`` (torch's; ``h`` is their learning rate),
    ``sgld``, ``langevin``, ``adl``, ``adlala``, ``lol`` (heatbath's; ``replicas`` and ``seed``
    are passed on). Unknown hyperparameters raise ``ValueError`` naming them.
    """
    method = check_choice("method", method, tuple(OPTIMIZERS))
    cls = OPTIMIZERS[method]
    if method in _TORCH_KEYS:
        unknown = set(hparams) - _TORCH_KEYS[method]
        if unknown:
            raise ValueError(f"unknown hyperparameter(s) for {method}: {sorted(unknown)}; "
                             f"allowed: {sorted(_TORCH_KEYS[method])}")
        kw = dict(hparams)
        lr = check_real("h", kw.pop("h", 0.01 if method == "sgd" else 1e-3), low=0.0,
                        low_open=True)
        if "betas" in kw:
            kw["betas"] = tuple(kw["betas"])
        return cls(model.parameters(), lr=lr, **kw)
    sig = inspect.signature(cls.__init__)
    allowed = {n for n, p in sig.parameters.items()
               if n not in ("self", "params", "model_or_groups", "kwargs")
               and p.kind is not p.VAR_KEYWORD}
    if method in ("adlala", "lol"):
        allowed |= {"xi_per", "epsilon_scale", "check_finite", "foreach", "noise"}
    unknown = set(hparams) - allowed
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) for {method}: {sorted(unknown)}; "
                         f"allowed: {sorted(allowed - {'seed', 'replicas', 'generator'})}")
    target = model if method in ("adlala", "lol") else model.parameters()
    return cls(target, replicas=replicas, seed=seed, **hparams)

"""The optimizer contract registry: every heatbath optimizer, how to build it on a small model,
and which optional features it has (in the spirit of torch's ``OptimizerInfo``).

``tests/test_optim_contract.py`` runs every case of the contract (``docs/optimizers.md``)
against every entry. A new optimizer gets an entry here and is then held to the whole contract.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from heatbath.optim import (
    CTLD,
    LOL,
    SGLD,
    AdaptiveLangevin,
    AdLaLa,
    AnnealSGD,
    HeatbathOptimizer,
    Langevin,
    Partitioned,
    Santa,
)


@dataclass(frozen=True)
class OptimizerInfo:
    """One optimizer of the registry.

    Attributes:
        name: test id.
        make: ``make(model, params=None, **kwargs)``: the optimizer over ``model`` (or over
            ``params`` when given: tensors or ``(name, tensor)`` pairs; layer-partitioned
            optimizers take ``(first, rest)`` then).
        by_layer: partitions the model by layer (AdLaLa, LOL): built from the module.
        momentum: its groups carry ``momentum`` (``OneCycleLR``/``CyclicLR`` with
            ``cycle_momentum=True``, the default, work); else torch refuses those at build.
        lr_zero_coasts: ``lr = 0`` after earlier steps still moves the parameters (the
            velocity carries its own step, as in Santa); from a fresh state it never does.
            Such an entry's ``make`` must accept ``lr=`` (it is built with ``lr=0.0``).
        needs_loss: ``step`` needs ``loss=`` (the loss value of the same forward).
        base: derives from :class:`~heatbath.optim.HeatbathOptimizer` (every entry does;
            the contract cases skip an entry that does not).
    """

    name: str
    make: Callable[..., torch.optim.Optimizer]
    by_layer: bool = False
    momentum: bool = False
    lr_zero_coasts: bool = False
    needs_loss: bool = False

    @property
    def base(self) -> bool:
        probe = nn.Linear(2, 1)
        return isinstance(self.make(probe), HeatbathOptimizer)


def _params(model: nn.Module, params: Any) -> Any:
    return model.parameters() if params is None else params


def _partitioned(model: nn.Module, params: Any = None, **kw: Any) -> Partitioned:
    ps = list(_params(model, params))
    if len(ps) < 3:
        return Partitioned(ps, h=0.1, gamma=1.0, tau=1e-4, **kw)
    groups = [
        {"params": ps[:2], "method": "adl", "tau": 1e-4, "sigma_A": 0.01, "epsilon": 0.1},
        {"params": ps[2:4], "method": "sgld", "sigma": 0.01},
        {"params": ps[4:], "method": "baoab"},
    ]
    return Partitioned([g for g in groups if g["params"]], h=0.1, gamma=1.0, tau=1e-4, **kw)


def _by_layer(cls: Any, **hp: Any) -> Callable[..., Any]:
    def make(model: nn.Module, params: Any = None, **kw: Any) -> Any:
        return cls(model if params is None else params, **hp, **kw)
    return make


REGISTRY: list[OptimizerInfo] = [
    OptimizerInfo("sgld", lambda m, params=None, **kw: SGLD(_params(m, params), h=0.05,
                                                              sigma=0.01, **kw)),
    OptimizerInfo("langevin", lambda m, params=None, **kw: Langevin(
        _params(m, params), h=0.1, gamma=1.0, tau=1e-4, **kw), momentum=True),
    OptimizerInfo("adl", lambda m, params=None, **kw: AdaptiveLangevin(
        _params(m, params), h=0.1, tau=1e-4, sigma_A=0.01, epsilon=0.1, **kw)),
    OptimizerInfo("adlala", _by_layer(AdLaLa, h=0.1, gamma=0.5, epsilon=0.1), by_layer=True,
                  momentum=True),
    OptimizerInfo("lol", _by_layer(LOL, h=0.1, gamma1=0.1, tau1=1e-4), by_layer=True,
                  momentum=True),
    OptimizerInfo("partitioned", _partitioned, momentum=True),
    OptimizerInfo("anneal_sgd", lambda m, params=None, **kw: AnnealSGD(
        _params(m, params), **{"lr": 0.01, "momentum": 0.9, "noise_eta": 0.01, **kw}),
        momentum=True),
    OptimizerInfo("santa", lambda m, params=None, **kw: Santa(
        _params(m, params), **{"lr": 1e-4, "num_data": 100, "burnin": 5, **kw}),
        lr_zero_coasts=True),
    OptimizerInfo("ctld", lambda m, params=None, **kw: CTLD(
        _params(m, params), **{"lr": 0.01, "momentum": 0.9, "num_data": 100,
                               "sampling_steps": 5, **kw}),
        momentum=True, needs_loss=True),
]

IDS = [info.name for info in REGISTRY]


def mlp(seed: int = 0, dtype: torch.dtype = torch.float32, unused: bool = False) -> nn.Module:
    """2 → 8 → 8 → 1, optionally with a branch the forward never uses."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(),
                          nn.Linear(8, 1)).to(dtype)
    if unused:
        model.add_module("unused", nn.Linear(3, 3).to(dtype))
    return model


def data(n: int = 32, seed: int = 0, dtype: torch.dtype = torch.float32
         ) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 2, generator=g, dtype=dtype)
    y = (X[:, 0] * X[:, 1] > 0).to(dtype)
    return X, y


def forward(model: nn.Module, X: torch.Tensor) -> torch.Tensor:
    """The model's output on X, skipping an ``unused`` branch."""
    out = X
    for name, layer in model.named_children():
        if name != "unused":
            out = layer(out)
    return out.squeeze(-1)


def loss_of(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    out = forward(model, X)
    return nn.functional.binary_cross_entropy_with_logits(out.float(), y.float())


def step(info: OptimizerInfo, model: nn.Module, opt: torch.optim.Optimizer, X: torch.Tensor,
         y: torch.Tensor, *, set_to_none: bool = True) -> torch.Tensor:
    """One forward, backward and step; returns the loss."""
    opt.zero_grad(set_to_none=set_to_none)
    loss = loss_of(model, X, y)
    loss.backward()
    if info.needs_loss:
        opt.step(loss=loss.detach())
    else:
        opt.step()
    return loss.detach()


def train(info: OptimizerInfo, model: nn.Module, opt: torch.optim.Optimizer, steps: int,
          seed: int = 0, **kw: Any) -> None:
    X, y = data(seed=seed, dtype=next(model.parameters()).dtype)
    for _ in range(steps):
        step(info, model, opt, X, y, **kw)

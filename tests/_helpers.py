"""Small shared fixtures for the optimizer tests (not collected as tests)."""

from __future__ import annotations

import math

import torch
from torch import nn

from heatbath.engine.executors import LocalExecutor


def toy_spiral(n: int, turns: float = 1.0, noise: float = 0.02, seed: int = 0):
    """A two-class spiral (the paper's form with a=2, p=0.5) for optimizer tests only."""
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(n // 2, 1, generator=g) ** 0.5
    ang = 2 * math.pi * turns * t
    x0 = 2 * t * torch.cat([torch.cos(ang), torch.sin(ang)], 1)
    X = torch.cat([x0 + noise * torch.randn(x0.shape, generator=g),
                   -x0 + noise * torch.randn(x0.shape, generator=g)])
    y = torch.cat([torch.zeros(n // 2), torch.ones(n // 2)])
    return X, y


def shlp(hidden: int = 20, seed: int = 0, dtype=torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, 1)).to(dtype)


def bce_step(model: nn.Module, X, y, idx) -> torch.Tensor:
    out = model(X[idx]).squeeze(-1)
    return nn.functional.binary_cross_entropy_with_logits(out, y[idx])


def train(model, opt, X, y, steps: int, batch: int = 25, seed: int = 0, record: bool = False):
    g = torch.Generator().manual_seed(seed)
    traj = []
    for _ in range(steps):
        idx = torch.randint(0, len(X), (batch,), generator=g)
        opt.zero_grad()
        bce_step(model, X, y, idx).backward()
        opt.step()
        if record:
            traj.append(torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()]))
    return traj


def accuracy(model, X, y) -> float:
    with torch.no_grad():
        return float(((model(X).squeeze(-1) > 0).float() == y).float().mean())


class DropJobs(LocalExecutor):
    """A local executor on which the named jobs fail (as if their worker kept dying)."""

    def __init__(self, drop: set[str]) -> None:
        super().__init__(1)
        self.drop = drop

    def _run(self, jobs, root, emit, finished, failed):  # type: ignore[no-untyped-def]
        for job in [j for j in jobs if j.name in self.drop]:
            failed(job, "its worker died 3 times (simulated)")
        super()._run([j for j in jobs if j.name not in self.drop], root, emit, finished, failed)

"""CTLD on a small network: tempered exploration, then SGD with momentum, against plain SGD.

Run: ``python examples/ctld_small_net.py`` (about a minute on one core; ``HEATBATH_TINY=1``:
seconds).

Continuously tempered Langevin dynamics (docs/ctld.md) couples the parameters to a tempering
variable alpha: while |alpha| <= delta the network samples at the base temperature, beyond it
the loss is scaled down and the parameters explore hot. After ``sampling_steps`` steps the
optimizer turns into exactly ``torch.optim.SGD(lr, momentum)``. The example trains a two-hidden-
layer MLP on the 4-turn spiral with CTLD and with SGD from the same initial weights and the same
minibatches, and prints the tempering diagnostics.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from heatbath.data import spirals
from heatbath.optim import CTLD

TINY = os.environ.get("HEATBATH_TINY") == "1"
STEPS = 200 if TINY else 6000
N_TRAIN = 1000


def make_net(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                         nn.Linear(64, 1))


def main() -> None:
    X, y = spirals(N_TRAIN, turns=4, seed=0)
    Xte, yte = spirals(2000, turns=4, seed=1)
    y, yte = y.float(), yte.float()
    loss_fn = nn.BCEWithLogitsLoss()
    # --8<-- [start:optimizers]
    nets = {"CTLD": make_net(0), "SGD": make_net(0)}
    opts = {
        # the first 70 % of the steps sample with tempering, the rest is SGD-momentum
        "CTLD": CTLD(nets["CTLD"].parameters(), lr=0.05, momentum=0.9, num_data=N_TRAIN,
                     sampling_steps=int(0.7 * STEPS), seed=0),
        "SGD": torch.optim.SGD(nets["SGD"].parameters(), lr=0.05, momentum=0.9),
    }
    gen = torch.Generator().manual_seed(0)
    for step in range(STEPS):
        idx = torch.randint(0, N_TRAIN, (50,), generator=gen)
        for name, net in nets.items():
            loss = loss_fn(net(X[idx]).squeeze(-1), y[idx])
            opts[name].zero_grad()
            loss.backward()
            if name == "CTLD":
                opts[name].step(loss=loss)     # CTLD needs the loss value of the same forward pass
            else:
                opts[name].step()
        if (step + 1) % (STEPS // 4) == 0:
            d = opts["CTLD"].diagnostics()
            print(f"step {step + 1}: phase {d['phase']}, alpha {d['alpha']:+.3f}, "
                  f"T(alpha)/T_c {d['temperature_ratio']:.2f}, cold fraction "
                  f"{d['cold_fraction']:.2f}")
    # --8<-- [end:optimizers]
    with torch.no_grad():
        for name, net in nets.items():
            acc = ((net(Xte).squeeze(-1) > 0).float() == yte).float().mean().item()
            test_loss = loss_fn(net(Xte).squeeze(-1), yte).item()
            print(f"{name}: test loss {test_loss:.4f}, test accuracy {acc:.3f}")


if __name__ == "__main__":
    main()

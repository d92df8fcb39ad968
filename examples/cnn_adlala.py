"""A small CNN on MNIST trained with AdLaLa, next to Adam on the same minibatches.

Run: ``python examples/cnn_adlala.py`` (a few minutes on one core; ``HEATBATH_TINY=1``: seconds).

Data: the 5,000 real MNIST digits that ``make venv`` installs offline (4,000 train, 1,000 test;
``heatbath.data.mnist``). AdLaLa puts the Adaptive Langevin thermostat on the model's first layer
(here the first convolution: ``AdLaLa`` takes the first submodule that owns parameters) and
BAOAB Langevin on the rest; see docs/theory/adaptive-langevin.md, section 'AdLaLa'. The loss is the
minibatch mean, so ``tau`` is a temperature on the per-sample loss (docs/how-to/temperature.md).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from heatbath.data import mnist
from heatbath.optim import AdLaLa

TINY = os.environ.get("HEATBATH_TINY") == "1"
EPOCHS = 1 if TINY else 5
N_TRAIN = 512 if TINY else None  # None: all 4,000 training digits
BATCH = 64


# --8<-- [start:model]
def make_cnn(seed: int) -> nn.Sequential:
    """28x28 digits -> 10 logits: two 3x3 convolutions with max pooling, one linear layer."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2),    # 8 x 13 x 13
        nn.Conv2d(8, 16, 3), nn.ReLU(), nn.MaxPool2d(2),   # 16 x 5 x 5
        nn.Flatten(), nn.Linear(16 * 5 * 5, 10),
    )
# --8<-- [end:model]


def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(X).argmax(1) == y).float().mean().item()


def main() -> None:
    Xtr, ytr = mnist(split="train", flatten=False)
    Xte, yte = mnist(split="test", flatten=False)
    if N_TRAIN is not None:
        Xtr, ytr = Xtr[:: len(Xtr) // N_TRAIN][:N_TRAIN], ytr[:: len(ytr) // N_TRAIN][:N_TRAIN]
    # --8<-- [start:train]
    loss_fn = nn.CrossEntropyLoss()                    # mean over the minibatch
    models = {"AdLaLa": make_cnn(0), "Adam": make_cnn(0)}  # the same initial weights
    opts = {
        "AdLaLa": AdLaLa(models["AdLaLa"], h=0.25, gamma=1.0, tau1=1e-6, tau2=1e-6,
                         sigma_A=0.001, epsilon=0.05, seed=0),
        "Adam": torch.optim.Adam(models["Adam"].parameters(), lr=1e-3),
    }
    order = torch.Generator().manual_seed(0)
    for epoch in range(EPOCHS):
        perm = torch.randperm(len(Xtr), generator=order)
        for start in range(0, len(Xtr), BATCH):
            idx = perm[start:start + BATCH]
            for name, model in models.items():
                loss = loss_fn(model(Xtr[idx]), ytr[idx])
                opts[name].zero_grad()
                loss.backward()
                opts[name].step()
        line = ", ".join(f"{n} {accuracy(m, Xte, yte):.3f}" for n, m in models.items())
        print(f"epoch {epoch + 1}: test accuracy {line}")
    # --8<-- [end:train]
    xi = opts["AdLaLa"].diagnostics()[0]["xi"]
    print(f"AdLaLa first-layer thermostats xi (weight, bias): {xi[0]:.3f}, {xi[1]:.3f}")


if __name__ == "__main__":
    main()

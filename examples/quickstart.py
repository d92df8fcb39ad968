"""Quickstart: AdLaLa on the 2-turn spiral, then the optimizer's diagnostics.

Run: ``python examples/quickstart.py`` (about a minute on one core; ``HEATBATH_TINY=1``: seconds).
The marked sections are the example of docs/getting-started.md.
"""

from __future__ import annotations

import os

# --8<-- [start:imports]
import torch
from torch import nn

from heatbath.data import spirals
from heatbath.optim import AdLaLa

# --8<-- [end:imports]

STEPS = 200 if os.environ.get("HEATBATH_TINY") == "1" else 10_000

# --8<-- [start:example]
torch.manual_seed(0)                           # the minibatch draws
X, y = spirals(500, turns=2, seed=0)          # 500 points on a 2-turn spiral, labels 0/1
model = nn.Sequential(nn.Linear(2, 20), nn.ReLU(), nn.Linear(20, 1))
opt = AdLaLa(model, h=0.25, gamma=0.5, epsilon=0.1, seed=0)
loss_fn = nn.BCEWithLogitsLoss()               # the mean over the minibatch
for _ in range(STEPS):                         # 10,000 steps
    idx = torch.randint(0, len(X), (25,))      # 5 % minibatches
    loss = loss_fn(model(X[idx]).squeeze(-1), y[idx].float())
    opt.zero_grad()
    loss.backward()
    opt.step()
# --8<-- [end:example]

# --8<-- [start:diagnostics]
opt.zero_grad()
loss_fn(model(X).squeeze(-1), y.float()).backward()   # a fresh full-batch gradient
for group in opt.diagnostics():
    print(group)
# --8<-- [end:diagnostics]
accuracy = ((model(X).squeeze(-1) > 0).long() == y).float().mean().item()
print(f"training accuracy after {STEPS} steps: {accuracy:.3f}")

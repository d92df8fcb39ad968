"""Planar trigonometric classification data (stand-in for paper Eq. 17).

The paper's Eq. 17 is not in the available text (only its captions: a = 3, 6, 10 with
c = 0.02). heatbath's documented stand-in, with parameters a (frequency), b (amplitude
divisor) and c (noise):

    x ~ U[−1, 1]²,   label = 1  iff  x₂ > sin(a·x₁) / b,   then  x ← x + c·R,  R ~ N(0, I).

The label is fixed before the noise is added, so points near the curve x₂ = sin(a x₁)/b can sit
on the "wrong" side: c sets the irreducible error. Classes are only balanced in expectation
(the curve splits the square into two halves of equal area when sin is odd, as here).

Randomness: one ``torch.Generator`` seeded with ``seed`` draws the uniform points (float64), then
the noise; output cast to float32.
"""

from __future__ import annotations

import torch

from heatbath._validate import check_int, check_real

from .spirals import _generator

__all__ = ["trig"]


def trig(
    n: int,
    a: float,
    b: float = 2.0,
    c: float = 0.02,
    *,
    seed: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` points of the planar trigonometric problem (heatbath's Eq. 17 stand-in).

    Args:
        n: number of points (>= 1).
        a: frequency of the decision boundary x₂ = sin(a x₁)/b (> 0; the paper uses 3, 6, 10).
        b: amplitude divisor (> 0).
        c: standard deviation of the Gaussian noise added after labelling (>= 0).
        seed: seed of the generator (>= 0); ``None`` draws fresh OS entropy.

    Returns:
        ``(X, y)``: float32 ``[n, 2]`` and int64 ``[n]`` labels in {0, 1}.
    """
    n = check_int("n", n, low=1)
    a = check_real("a", a, low=0.0, low_open=True)
    b = check_real("b", b, low=0.0, low_open=True)
    c = check_real("c", c, low=0.0)
    g = _generator(seed)
    x = torch.rand(n, 2, generator=g, dtype=torch.float64) * 2.0 - 1.0
    y = (x[:, 1] > torch.sin(a * x[:, 0]) / b).to(torch.int64)
    x = x + c * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return x.to(torch.float32), y

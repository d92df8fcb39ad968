"""Two interleaved spirals (paper Eq. 16).

With t ~ U[0, 1) drawn once per class-0 point, the noise-free class-0 point is

    x̄(t) = a · t^p · (cos(2π b t^p), sin(2π b t^p)),

class 0 is x = x̄ + c·R and class 1 is its point reflection x = −x̄ + c·R', with R, R' ~ N(0, I)
independent. ``b`` (``turns``) is the number of turns, ``a`` the outer radius, ``p`` shapes the
radial density (p = 0.5: uniform in area along the curve, p = 1: uniform in t), ``c`` the noise
level. The authors' values: a = 2, p = 0.5 (some captions p = 1), c = 0.02, b = 2 or 4.

Choices the paper leaves open (heatbath's):
- ``n`` is the total number of points; class 0 gets ⌈n/2⌉ and class 1 the reflections of the
  first ⌊n/2⌋ of them, so the classes are balanced (equal for even n, one apart for odd n).
- Output order: all class-0 points, then all class-1 points (as in the authors' code); the
  training engine shuffles minibatches itself. Row ``i + ⌈n/2⌉`` is the reflection of row ``i``.
- Randomness: one ``torch.Generator`` seeded with ``seed`` draws t (float64), then the noise for
  class 0, then for class 1; arithmetic in float64, output cast to float32.
"""

from __future__ import annotations

import math

import torch

from heatbath._validate import check_int, check_real

__all__ = ["spirals"]


def _generator(seed: int | None) -> torch.Generator:
    g = torch.Generator()
    if seed is None:
        g.seed()
    else:
        g.manual_seed(check_int("seed", seed, low=0))
    return g


def spirals(
    n: int,
    turns: float,
    a: float = 2.0,
    c: float = 0.02,
    p: float = 0.5,
    *,
    seed: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` points of the two-spiral problem (paper Eq. 16).

    Args:
        n: total number of points (>= 2); balanced classes, see the module docstring.
        turns: b, the number of turns of each spiral (> 0).
        a: outer radius (> 0).
        c: standard deviation of the isotropic Gaussian noise (>= 0).
        p: radial exponent (> 0).
        seed: seed of the generator (>= 0); ``None`` draws fresh OS entropy.

    Returns:
        ``(X, y)``: float32 ``[n, 2]`` coordinates and int64 ``[n]`` labels in {0, 1}.
    """
    n = check_int("n", n, low=2)
    b = check_real("turns", turns, low=0.0, low_open=True)
    a = check_real("a", a, low=0.0, low_open=True)
    c = check_real("c", c, low=0.0)
    p = check_real("p", p, low=0.0, low_open=True)
    g = _generator(seed)
    n0 = (n + 1) // 2
    n1 = n - n0
    t = torch.rand(n0, generator=g, dtype=torch.float64)
    tp = t.pow(p)
    angle = 2.0 * math.pi * b * tp
    clean = a * tp.unsqueeze(1) * torch.stack((torch.cos(angle), torch.sin(angle)), dim=1)
    noise0 = torch.randn(n0, 2, generator=g, dtype=torch.float64)
    noise1 = torch.randn(n1, 2, generator=g, dtype=torch.float64)
    x0 = clean + c * noise0
    x1 = -clean[:n1] + c * noise1
    X = torch.cat((x0, x1), dim=0).to(torch.float32)
    y = torch.cat((torch.zeros(n0, dtype=torch.int64), torch.ones(n1, dtype=torch.int64)))
    return X, y

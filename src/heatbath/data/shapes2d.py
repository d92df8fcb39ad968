r"""Binary 2-D toy sets used by the structure-preserving literature (docs/structure-preserving.md).

Every generator has the signature ``gen(n, noise_std=0.0, *, seed=None, embed_dim=None)`` and
returns ``(X, y)``: float32 inputs ``[n, 2]`` (or ``[n, embed_dim]``) and int64 labels in {0, 1}.
Class 0 gets :math:`\lceil n/2\rceil` points and class 1 :math:`\lfloor n/2\rfloor` (balanced);
rows are ordered class 0 first. Optional isotropic Gaussian noise of standard deviation
``noise_std`` is added last. ``embed_dim = nf`` places the two coordinates at channels 0 and
nf - 1 with zeros elsewhere (as ``DecodEPFL/HamiltonianNet``). Randomness: one
``torch.Generator`` seeded with ``seed`` (float64 arithmetic, float32 output); a test set is drawn
with another seed.

* **swiss roll**: with :math:`t \sim U[0, 1)` and :math:`\theta = 4\pi t`, class 1 has radius
  :math:`r = t` and class 0 :math:`r = 0.2 + t`; points :math:`r(\cos\theta, \sin\theta)`. Domain
  :math:`[-1.2, 1.2]^2`. (heatbath's choice: t is drawn uniformly rather than on a grid, so
  different seeds give different points.)
* **double moons**: :math:`\theta \sim U[0, \pi)`; class 0 is :math:`(\cos\theta, \sin\theta)`,
  class 1 is :math:`(1 - \cos\theta, 0.5 - \sin\theta)`; every second point of each class belongs
  to the second pair, shifted by +2 in x; each coordinate gets uniform jitter
  :math:`0.3(U - 0.5)`. Domain :math:`[-2, 5]\times[-1, 2]`.
* **double circles**: rings of radius 1, 2, 3, 4 with labels 0, 1, 0, 1 (each class alternates
  between its two rings), :math:`\theta \sim U[0, 4\pi)` (two turns), uniform jitter
  :math:`0.6(U - 0.5)` per coordinate. Domain :math:`[-5, 5]^2`.
* **donut** (heatbath's definition): class 0 uniform in the disk :math:`\|x\| \le 0.5`, class 1
  uniform in the annulus :math:`0.75 \le \|x\| \le 1`. Domain :math:`[-1, 1]^2`.
* **spiral**: delegates to :func:`heatbath.data.spirals.spirals` (two turns, radius 2), with
  ``noise_std`` as its noise level c.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from heatbath._validate import check_choice, check_int, check_real

__all__ = ["swiss_roll", "double_moons", "double_circles", "donut", "spiral", "SHAPES",
           "DOMAINS", "make_shape"]

#: bounding boxes (x_min, x_max, y_min, y_max) of the noise-free sets
DOMAINS: dict[str, tuple[float, float, float, float]] = {
    "swiss_roll": (-1.2, 1.2, -1.2, 1.2),
    "double_moons": (-2.0, 5.0, -1.0, 2.0),
    "double_circles": (-5.0, 5.0, -5.0, 5.0),
    "donut": (-1.0, 1.0, -1.0, 1.0),
    "spiral": (-2.1, 2.1, -2.1, 2.1),
}


def _prepare(n: int, noise_std: float, seed: int | None) -> tuple[int, int, float,
                                                                  torch.Generator]:
    n = check_int("n", n, low=2)
    noise_std = check_real("noise_std", noise_std, low=0.0)
    g = torch.Generator()
    if seed is None:
        g.seed()
    else:
        g.manual_seed(check_int("seed", seed, low=0))
    n0 = (n + 1) // 2
    return n0, n - n0, noise_std, g


def _finish(x0: Tensor, x1: Tensor, noise_std: float, g: torch.Generator,
            embed_dim: int | None) -> tuple[Tensor, Tensor]:
    X = torch.cat([x0, x1])
    if noise_std > 0:
        X = X + noise_std * torch.randn(X.shape, generator=g, dtype=torch.float64)
    y = torch.cat([torch.zeros(len(x0), dtype=torch.int64), torch.ones(len(x1), dtype=torch.int64)])
    if embed_dim is not None:
        nf = check_int("embed_dim", embed_dim, low=2)
        E = torch.zeros(len(X), nf, dtype=torch.float64)
        E[:, 0] = X[:, 0]
        E[:, nf - 1] = X[:, 1]
        X = E
    return X.to(torch.float32), y


def _polar(r: Tensor, theta: Tensor) -> Tensor:
    return torch.stack([r * torch.cos(theta), r * torch.sin(theta)], dim=1)


def swiss_roll(n: int, noise_std: float = 0.0, *, seed: int | None = None,
               embed_dim: int | None = None) -> tuple[Tensor, Tensor]:
    """Two interleaved spirals r = t and r = 0.2 + t at angle 4 pi t (see module docstring)."""
    n0, n1, noise_std, g = _prepare(n, noise_std, seed)
    t0 = torch.rand(n0, generator=g, dtype=torch.float64)
    t1 = torch.rand(n1, generator=g, dtype=torch.float64)
    x0 = _polar(0.2 + t0, 4 * math.pi * t0)
    x1 = _polar(t1, 4 * math.pi * t1)
    return _finish(x0, x1, noise_std, g, embed_dim)


def double_moons(n: int, noise_std: float = 0.0, *, seed: int | None = None,
                 embed_dim: int | None = None) -> tuple[Tensor, Tensor]:
    """Two pairs of interleaved half-moons, the second shifted by +2 in x."""
    n0, n1, noise_std, g = _prepare(n, noise_std, seed)

    def moon(m: int, cls: int) -> Tensor:
        th = math.pi * torch.rand(m, generator=g, dtype=torch.float64)
        if cls == 0:
            pts = torch.stack([torch.cos(th), torch.sin(th)], 1)
        else:
            pts = torch.stack([1 - torch.cos(th), 0.5 - torch.sin(th)], 1)
        pts[1::2, 0] += 2.0
        jit = 0.3 * (torch.rand(m, 2, generator=g, dtype=torch.float64) - 0.5)
        return pts + jit

    return _finish(moon(n0, 0), moon(n1, 1), noise_std, g, embed_dim)


def double_circles(n: int, noise_std: float = 0.0, *, seed: int | None = None,
                   embed_dim: int | None = None) -> tuple[Tensor, Tensor]:
    """Rings of radius 1, 2, 3, 4 labelled 0, 1, 0, 1 with uniform jitter."""
    n0, n1, noise_std, g = _prepare(n, noise_std, seed)

    def rings(m: int, radii: tuple[float, float]) -> Tensor:
        r = torch.tensor(radii, dtype=torch.float64)[torch.arange(m) % 2]
        th = 4 * math.pi * torch.rand(m, generator=g, dtype=torch.float64)
        jit = 0.6 * (torch.rand(m, 2, generator=g, dtype=torch.float64) - 0.5)
        return _polar(r, th) + jit

    return _finish(rings(n0, (1.0, 3.0)), rings(n1, (2.0, 4.0)), noise_std, g, embed_dim)


def donut(n: int, noise_std: float = 0.0, *, seed: int | None = None,
          embed_dim: int | None = None) -> tuple[Tensor, Tensor]:
    """Class 0 uniform in the disk r <= 0.5, class 1 uniform in the annulus 0.75 <= r <= 1."""
    n0, n1, noise_std, g = _prepare(n, noise_std, seed)
    # uniform in area: r^2 uniform between the squared radii
    r0 = 0.5 * torch.sqrt(torch.rand(n0, generator=g, dtype=torch.float64))
    th0 = 2 * math.pi * torch.rand(n0, generator=g, dtype=torch.float64)
    u1 = torch.rand(n1, generator=g, dtype=torch.float64)
    r1 = torch.sqrt(0.75 ** 2 + u1 * (1.0 - 0.75 ** 2))
    th1 = 2 * math.pi * torch.rand(n1, generator=g, dtype=torch.float64)
    return _finish(_polar(r0, th0), _polar(r1, th1), noise_std, g, embed_dim)


def spiral(n: int, noise_std: float = 0.0, *, seed: int | None = None,
           embed_dim: int | None = None) -> tuple[Tensor, Tensor]:
    """Two-spiral problem from :func:`heatbath.data.spirals.spirals` (2 turns, radius 2)."""
    from heatbath.data.spirals import spirals

    X, y = spirals(n, turns=2.0, a=2.0, c=check_real("noise_std", noise_std, low=0.0),
                   seed=seed)
    if embed_dim is not None:
        nf = check_int("embed_dim", embed_dim, low=2)
        E = torch.zeros(len(X), nf)
        E[:, 0] = X[:, 0]
        E[:, nf - 1] = X[:, 1]
        X = E
    return X, y


SHAPES: dict[str, Callable[..., tuple[Tensor, Tensor]]] = {
    "spiral": spiral,
    "swiss_roll": swiss_roll,
    "double_moons": double_moons,
    "double_circles": double_circles,
    "donut": donut,
}


def make_shape(name: str, n: int, noise_std: float = 0.0, *, seed: int | None = None,
               embed_dim: int | None = None) -> tuple[Tensor, Tensor]:
    """Generator ``name`` (one of ``SHAPES``) with the common signature."""
    gen = SHAPES[check_choice("name", name, tuple(SHAPES))]
    return gen(n, noise_std, seed=seed, embed_dim=embed_dim)

r"""Discretise-then-optimise (DTO) versus optimise-then-discretise (OTD) gradients.

Problem: :math:`\dot z = f(z, \theta_k)` on :math:`[t_k, t_{k+1}]`, :math:`t_k = kh`,
:math:`J = \Phi(z(T))`. **DTO** is backprop (autograd) through an explicit Runge–Kutta method
:math:`(a_{ij}, b_i)`:

.. math::  Z_i = z_k + h\sum_j a_{ij} f(Z_j, \theta_k),\qquad z_{k+1} = z_k + h\sum_i b_i
           f(Z_i, \theta_k).

**OTD** discretises the continuous adjoint :math:`\dot\lambda = -\partial_z f^\top\lambda`,
:math:`\lambda(T) = \nabla\Phi(z(T))`, :math:`\nabla_{\theta_k}J = \int_{t_k}^{t_{k+1}}
\partial_\theta f^\top\lambda\,dt`. Two OTD discretisations are provided:

1. :func:`discrete_adjoint_gradient` — the **symplectic partner** (Hager 2000; Sanz-Serna 2016):
   the partitioned RK method for :math:`(z, \lambda)` with :math:`\bar b_i = b_i`,
   :math:`\bar a_{ij} = b_j - b_ja_{ji}/b_i` (every :math:`b_i \ne 0`), evaluated at the forward
   stages. Written backward in time it reads

   .. math::  \Lambda_i = \lambda_{k+1} + h\sum_{j} \frac{b_ja_{ji}}{b_i}\,
              \partial_zf(Z_j)^\top\Lambda_j,\quad
              \lambda_k = \lambda_{k+1} + h\sum_i b_i\,\partial_zf(Z_i)^\top\Lambda_i,\quad
              \nabla_{\theta_k}J = h\sum_i b_i\,\partial_\theta f(Z_i)^\top\Lambda_i .

   (for an explicit method :math:`a_{ji} \ne 0` only for :math:`j > i`, so the stages are solved
   from :math:`i = s` down to 1). The pair conserves :math:`\lambda^\top\delta z`, i.e. it is
   symplectic for :math:`\mathcal H = \lambda^\top f`, and the theorem of Benning et al. and
   Sanz-Serna gives **DTO = OTD exactly** (to round-off). Derivation: chain rule through the stage
   equations with :math:`\Lambda_i := \bar K_i/(hb_i)`, where :math:`\bar K_i` is the adjoint of
   :math:`K_i = f(Z_i)`.
2. :func:`continuous_adjoint_gradient` — **the same method on the adjoint** (the black-box
   reverse-time solve of Chen et al. 2018 that the talk criticises): the augmented system
   :math:`(z, \lambda, g)` with :math:`\dot g = -\partial_\theta f^\top\lambda` is integrated
   backward from :math:`z_K` with the *same* tableau and step :math:`-h`. This pair is not
   symplectic, and its gradient differs from DTO by :math:`O(h^p)` (p = order of the method).

Only local vector–Jacobian products of f are used (``torch.autograd.grad`` on one evaluation of
f), never backprop through the solver. Stages with :math:`b_i = 0` are rejected (they need special
treatment; see docs/structure-preserving.md, section "DTO = OTD").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .._validate import check_choice, check_real

__all__ = ["ButcherTableau", "TABLEAUS", "rk_solve", "discrete_adjoint_gradient",
           "continuous_adjoint_gradient"]

VectorField = Callable[[Tensor, Sequence[Tensor]], Tensor]
Params = Sequence[Tensor]


@dataclass(frozen=True)
class ButcherTableau:
    """Explicit Runge–Kutta coefficients (strictly lower-triangular a)."""

    name: str
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    order: int

    @property
    def stages(self) -> int:
        return len(self.b)


TABLEAUS: dict[str, ButcherTableau] = {
    "euler": ButcherTableau("euler", ((0.0,),), (1.0,), 1),
    "heun": ButcherTableau("heun", ((0.0, 0.0), (1.0, 0.0)), (0.5, 0.5), 2),
    "midpoint": ButcherTableau("midpoint", ((0.0, 0.0), (0.5, 0.0)), (0.0, 1.0), 2),
    "rk4": ButcherTableau("rk4", ((0.0, 0.0, 0.0, 0.0), (0.5, 0.0, 0.0, 0.0),
                                  (0.0, 0.5, 0.0, 0.0), (0.0, 0.0, 1.0, 0.0)),
                          (1 / 6, 1 / 3, 1 / 3, 1 / 6), 4),
}


def _tableau(method: str | ButcherTableau) -> ButcherTableau:
    if isinstance(method, ButcherTableau):
        return method
    return TABLEAUS[check_choice("method", method, tuple(TABLEAUS))]


def _rk_step(f: VectorField, z: Tensor, theta: Params, h: float,
             tab: ButcherTableau) -> tuple[Tensor, list[Tensor]]:
    K: list[Tensor] = []
    Z: list[Tensor] = []
    for i in range(tab.stages):
        zi = z
        for j in range(i):
            if tab.a[i][j] != 0.0:
                zi = zi + h * tab.a[i][j] * K[j]
        Z.append(zi)
        K.append(f(zi, theta))
    out = z
    for i in range(tab.stages):
        if tab.b[i] != 0.0:
            out = out + h * tab.b[i] * K[i]
    return out, Z


def rk_solve(f: VectorField, z0: Tensor, thetas: Sequence[Params], h: float,
             method: str | ButcherTableau = "rk4") -> Tensor:
    """z_K after K = len(thetas) steps of the explicit RK method (differentiable: DTO)."""
    h = check_real("h", h, low=0.0, low_open=True)
    tab = _tableau(method)
    z = z0
    for theta in thetas:
        z, _ = _rk_step(f, z, theta, h, tab)
    return z


def _vjp(f: VectorField, z: Tensor, theta: Params, v: Tensor) -> tuple[Tensor, list[Tensor]]:
    with torch.enable_grad():
        zz = z.detach().requires_grad_(True)
        th = [t.detach().requires_grad_(True) for t in theta]
        out = f(zz, th)
        gs = torch.autograd.grad(out, (zz, *th), v, allow_unused=True)
    gz = gs[0] if gs[0] is not None else torch.zeros_like(z)
    gth = [g if g is not None else torch.zeros_like(t) for g, t in zip(gs[1:], theta, strict=True)]
    return gz, gth


def discrete_adjoint_gradient(f: VectorField, z0: Tensor, thetas: Sequence[Params], h: float,
                              grad_phi: Callable[[Tensor], Tensor],
                              method: str | ButcherTableau = "rk4"
                              ) -> tuple[list[list[Tensor]], Tensor]:
    """OTD gradient with the Sanz-Serna partner of ``method`` (equals autograd; see module doc).

    ``grad_phi(z_K)`` returns :math:`\\nabla\\Phi(z_K)`. Returns (per-step parameter gradients,
    :math:`\\lambda_0 = \\nabla_{z_0}J`).
    """
    h = check_real("h", h, low=0.0, low_open=True)
    tab = _tableau(method)
    if any(bi == 0.0 for bi in tab.b):
        raise ValueError(f"method {tab.name!r} has a weight b_i = 0; the Sanz-Serna adjoint "
                         f"needs every b_i != 0")
    stages: list[list[Tensor]] = []
    with torch.no_grad():
        z = z0.detach()
        for theta in thetas:
            z, Z = _rk_step(f, z, [t.detach() for t in theta], h, tab)
            stages.append(Z)
    lam = grad_phi(z).detach()
    grads: list[list[Tensor]] = [[] for _ in thetas]
    for k in reversed(range(len(thetas))):
        s = tab.stages
        Lam: list[Tensor | None] = [None] * s
        vz: list[Tensor | None] = [None] * s
        gth: list[list[Tensor] | None] = [None] * s
        for i in reversed(range(s)):
            li = lam
            for j in range(i + 1, s):
                if tab.a[j][i] != 0.0:
                    vzj = vz[j]
                    assert vzj is not None
                    li = li + h * (tab.b[j] * tab.a[j][i] / tab.b[i]) * vzj
            Lam[i] = li
            vz[i], gth[i] = _vjp(f, stages[k][i], thetas[k], li)
        new_lam = lam
        g_k = [torch.zeros_like(t) for t in thetas[k]]
        for i in range(s):
            vzi, gti = vz[i], gth[i]
            assert vzi is not None and gti is not None
            new_lam = new_lam + h * tab.b[i] * vzi
            g_k = [g + h * tab.b[i] * gt for g, gt in zip(g_k, gti, strict=True)]
        grads[k] = g_k
        lam = new_lam
    return grads, lam


def continuous_adjoint_gradient(f: VectorField, z0: Tensor, thetas: Sequence[Params], h: float,
                                grad_phi: Callable[[Tensor], Tensor],
                                method: str | ButcherTableau = "rk4"
                                ) -> tuple[list[list[Tensor]], Tensor]:
    """OTD gradient with the *same* method run backward on (z, lambda, g) (Chen et al. 2018).

    Not a symplectic pair: differs from autograd by O(h^order). Returns (per-step parameter
    gradients, lambda at t = 0).
    """
    h = check_real("h", h, low=0.0, low_open=True)
    tab = _tableau(method)
    with torch.no_grad():
        z = rk_solve(f, z0.detach(), [[t.detach() for t in th] for th in thetas], h, tab)
    lam = grad_phi(z).detach()
    grads: list[list[Tensor]] = [[] for _ in thetas]

    def rhs(zs: Tensor, ls: Tensor, theta: Params) -> tuple[Tensor, Tensor, list[Tensor]]:
        with torch.no_grad():
            fz = f(zs, [t.detach() for t in theta])
        gz, gth = _vjp(f, zs, theta, ls)
        return fz, -gz, [-g for g in gth]

    for k in reversed(range(len(thetas))):
        theta = thetas[k]
        g = [torch.zeros_like(t) for t in theta]
        Kz: list[Tensor] = []
        Kl: list[Tensor] = []
        Kg: list[list[Tensor]] = []
        for i in range(tab.stages):
            zi, li = z, lam
            for j in range(i):
                if tab.a[i][j] != 0.0:
                    zi = zi - h * tab.a[i][j] * Kz[j]
                    li = li - h * tab.a[i][j] * Kl[j]
            fz, fl, fg = rhs(zi, li, theta)
            Kz.append(fz)
            Kl.append(fl)
            Kg.append(fg)
        for i in range(tab.stages):
            if tab.b[i] != 0.0:
                z = z - h * tab.b[i] * Kz[i]
                lam = lam - h * tab.b[i] * Kl[i]
                g = [gg - h * tab.b[i] * kg for gg, kg in zip(g, Kg[i], strict=True)]
        grads[k] = g
    return grads, lam

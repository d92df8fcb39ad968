"""DTO versus OTD: when does backprop equal the discretised adjoint equation?

Run: ``python examples/dto_otd.py``.

Setup: the ResNet ODE z' = tanh(A z + b) on [0, 1] with one weight-tied (A, b), K = 1/h steps of an
explicit Runge–Kutta method, loss Phi = 1/2 ||z(1) - target||^2. Three gradients of Phi w.r.t. A:

* DTO — autograd through the solver (the ground truth of training);
* OTD, symplectic partner — the Sanz-Serna adjoint (b̄ = b, ā_ij = b_j - b_j a_ji / b_i) of the
  same method: equal to DTO to round-off, for every h (Benning et al. 2019; Sanz-Serna 2016);
* OTD, same method — the adjoint ODE integrated backward with the same RK method (the reverse
  solve of Chen et al. 2018): not a symplectic pair, so it differs from DTO by O(h^p).

The printed table shows the first column at ~1e-16 and the second shrinking by at least 2^p per
halving (Heun shows order 3 on this weight-tied problem: its leading error terms cancel).
"""

from __future__ import annotations

import math

import torch

from heatbath.nn import continuous_adjoint_gradient, discrete_adjoint_gradient, rk_solve


def f(z: torch.Tensor, theta) -> torch.Tensor:
    A, b = theta
    return torch.tanh(z @ A.T + b)


def main() -> None:
    g = torch.Generator().manual_seed(0)
    d = 3
    z0 = torch.randn(8, d, generator=g, dtype=torch.float64)
    target = torch.randn(8, d, generator=g, dtype=torch.float64)
    A = torch.randn(d, d, generator=g, dtype=torch.float64)
    b = torch.randn(d, generator=g, dtype=torch.float64)

    def grad_phi(zK: torch.Tensor) -> torch.Tensor:
        return zK - target

    for method, order in (("euler", 1), ("heun", 2), ("rk4", 4)):
        print(f"\n{method} (order {order}):  relative difference from autograd (DTO)")
        print(f"{'K':>5} {'h':>9} | {'symplectic partner':>18} | {'same method':>12} "
              f"{'observed order':>14}")
        prev = None
        for K in (4, 8, 16, 32, 64):
            h = 1.0 / K
            thetas = [(A, b)] * K
            Al = A.clone().requires_grad_(True)
            zK = rk_solve(f, z0, [(Al, b)] * K, h, method)
            (0.5 * (zK - target).square().sum()).backward()
            dto = Al.grad
            ss, _ = discrete_adjoint_gradient(f, z0, thetas, h, grad_phi, method)
            same, _ = continuous_adjoint_gradient(f, z0, thetas, h, grad_phi, method)
            e_ss = float((sum(t[0] for t in ss) - dto).norm() / dto.norm())
            e_same = float((sum(t[0] for t in same) - dto).norm() / dto.norm())
            rate = "" if prev is None else f"{math.log2(prev / e_same):14.2f}"
            print(f"{K:>5} {h:>9.5f} | {e_ss:>18.1e} | {e_same:>12.2e} {rate}")
            prev = e_same


if __name__ == "__main__":
    main()

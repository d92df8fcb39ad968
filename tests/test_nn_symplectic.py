"""Spec §12.1 (symplecticity / volume preservation) and §12.4 (energy behaviour)."""

from __future__ import annotations

import pytest
import torch
from torch.autograd.functional import jacobian

from heatbath.nn import (
    Conv2dOperator,
    LeapfrogBlock,
    ShearReversibleBlock,
    SymplecticHamiltonianBlock,
)


def omega(n: int) -> torch.Tensor:
    eye = torch.eye(n, dtype=torch.float64)
    zero = torch.zeros(n, n, dtype=torch.float64)
    return torch.cat([torch.cat([zero, eye], 1), torch.cat([-eye, zero], 1)], 0)


def block_jacobian(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    def f(v):
        return block(v.reshape(x.shape)).reshape(-1)

    return jacobian(f, x.reshape(-1), vectorize=True)


def randomise(block: torch.nn.Module) -> None:
    # random biases too (they are zero-initialised)
    with torch.no_grad():
        for name, p in block.named_parameters():
            if name.endswith("b") or name.endswith("b1") or name.endswith("b2"):
                p.normal_(0.0, 0.5)


S_CASES = [
    ("verlet-quadratic", dict(kinetic="quadratic", scheme="verlet"), False),
    ("verlet-tied", dict(kinetic="tied", scheme="verlet"), False),
    ("verlet-separate", dict(kinetic="separate", scheme="verlet"), False),
    ("seuler-quadratic", dict(kinetic="quadratic", scheme="symplectic_euler"), False),
    ("seuler-separate", dict(kinetic="separate", scheme="symplectic_euler"), False),
    ("verlet-conv", dict(kinetic="tied", scheme="verlet"), True),
    ("seuler-conv-separate", dict(kinetic="separate", scheme="symplectic_euler"), True),
]


@pytest.mark.parametrize("name,kw,conv", S_CASES, ids=[c[0] for c in S_CASES])
def test_family_S_is_symplectic(name, kw, conv):
    torch.manual_seed(0)
    if conv:
        blk = SymplecticHamiltonianBlock(Conv2dOperator(2, 3, 3, init_scale=2.0), h=0.3,
                                         **kw).double()
        x = torch.randn(1, 4, 3, 3, dtype=torch.float64)
    else:
        blk = SymplecticHamiltonianBlock(3, 4, h=0.3, init_scale=2.0, **kw).double()
        x = torch.randn(1, 6, dtype=torch.float64)
    randomise(blk)
    M = block_jacobian(blk, x)
    n = M.shape[0] // 2
    err = (M.T @ omega(n) @ M - omega(n)).abs().max()
    # exact identity in exact arithmetic; float64 round-off on O(1) entries is ~1e-15
    assert float(err) <= 1e-10
    assert abs(float(torch.linalg.det(M)) - 1.0) <= 1e-10


def test_leapfrog_pair_map_is_symplectic():
    torch.manual_seed(1)
    blk = LeapfrogBlock(3, 5, h=0.4, init_scale=2.0).double()
    randomise(blk)
    M = block_jacobian(blk, torch.randn(1, 6, dtype=torch.float64))
    assert float((M.T @ omega(3) @ M - omega(3)).abs().max()) <= 1e-10


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_family_R_signature(seed):
    # spec §4: z, y in R^3, h = 0.3, K ~ N(0, 1), tanh, float64 Jacobian
    torch.manual_seed(seed)
    blk = ShearReversibleBlock(3, h=0.3).double()
    with torch.no_grad():
        blk.op.weight.normal_(0.0, 1.0)
    randomise(blk)
    M = block_jacobian(blk, torch.randn(1, 6, dtype=torch.float64))
    err = float((M.T @ omega(3) @ M - omega(3)).abs().max())
    assert err > 1e-6  # D K^T is not symmetric: O(h * |K|) ~ 1e-2 .. 1e-1, far above round-off
    assert abs(float(torch.linalg.det(M)) - 1.0) <= 1e-10


def test_conv_shear_volume_preserving_not_symplectic():
    torch.manual_seed(3)
    blk = ShearReversibleBlock(Conv2dOperator(2, 2, 3, init_scale=2.0), h=0.3).double()
    randomise(blk)
    M = block_jacobian(blk, torch.randn(1, 4, 3, 3, dtype=torch.float64))
    n = M.shape[0] // 2
    assert abs(float(torch.linalg.det(M)) - 1.0) <= 1e-10
    assert float((M.T @ omega(n) @ M - omega(n)).abs().max()) > 1e-6


def test_leapfrog_equals_verlet():
    # z_{k+1} = 2 z_k - z_{k-1} - h^2 A^T s(A z_k + b)  ==  Verlet with p_{k+1/2} = (z_{k+1}-z_k)/h
    torch.manual_seed(4)
    h = 0.2
    vb = SymplecticHamiltonianBlock(3, 4, kinetic="quadratic", scheme="verlet", h=h).double()
    lf = LeapfrogBlock(3, 4, h=h).double()
    lf.load_state_dict(vb.state_dict(), strict=False)
    with torch.no_grad():
        lf.op.weight.copy_(vb.op.weight)
        lf.b.copy_(vb.b)
    z0 = torch.randn(5, 3, dtype=torch.float64)
    # Verlet started at p_0 = 0 gives p_{1/2} = -h/2 grad V(z0); the leapfrog start with that
    # velocity is z_{-1} = z_0 - h * p_{-1/2}, p_{-1/2} = p_0 + h/2 grad V(z0)
    z_prev = z0 - h * (0.5 * h * vb.grad_V(z0))
    x_v = torch.cat([z0, torch.zeros_like(z0)], 1)
    x_l = torch.cat([z_prev, z0], 1)
    for _ in range(20):
        x_v = vb(x_v)
        x_l = lf(x_l)
        assert torch.allclose(x_l[:, 3:], x_v[:, :3], atol=1e-12)


def _tied_energy_run(scheme: str, h: float, steps: int):
    torch.manual_seed(5)
    blk = SymplecticHamiltonianBlock(1, 4, kinetic="quadratic", h=h, init_scale=2.0,
                                     scheme="verlet" if scheme == "forward_euler" else scheme
                                     ).double()
    with torch.no_grad():
        blk.b.normal_(0.0, 0.3)
    x0 = torch.tensor([[1.0, 0.5], [-0.5, 1.0]], dtype=torch.float64)
    x = x0
    traj = torch.empty(steps, *x.shape, dtype=torch.float64)
    with torch.no_grad():
        for k in range(steps):
            if scheme == "forward_euler":  # H1/MS2-type: Hamiltonian field, non-symplectic step
                x = x + h * blk.vector_field(x)
            else:
                x = blk(x)
            traj[k] = x
        # energies of all states at once
        dev = blk.energy(traj.reshape(-1, 2)).reshape(steps, -1) - blk.energy(x0)
    return dev


STEPS = [2_000, pytest.param(10_000, marks=pytest.mark.slow)]


@pytest.mark.parametrize("steps", STEPS)
def test_energy_verlet_second_order_no_drift(steps):
    # Weight-tied (autonomous) stack, 10^4 steps (2,000 in the fast suite). Backward error
    # analysis: Verlet conserves a modified H~ = H + h^2 H_2 + O(h^4), so
    # max|H_k - H_0| = C h^2 + O(h^4) and halving h divides it by 4 (one degree of freedom:
    # the periodic orbit is visited completely in both runs).
    d1 = _tied_energy_run("verlet", 0.1, steps).abs()
    d2 = _tied_energy_run("verlet", 0.05, steps).abs()
    m1, m2 = d1.max(0).values, d2.max(0).values
    ratio = m1 / m2
    assert bool(((ratio > 3.5) & (ratio < 4.5)).all()), ratio
    # no drift: the second half of the run is not worse than the first
    half = d1.shape[0] // 2
    assert bool((d1[half:].max(0).values <= 1.05 * d1[:half].max(0).values).all())


@pytest.mark.parametrize("steps", STEPS)
def test_energy_symplectic_euler_first_order_forward_euler_drifts(steps):
    s1 = _tied_energy_run("symplectic_euler", 0.1, steps).abs().max(0).values
    s2 = _tied_energy_run("symplectic_euler", 0.05, steps).abs().max(0).values
    ratio = s1 / s2
    assert bool(((ratio > 1.6) & (ratio < 2.4)).all()), ratio  # O(h): halving h halves it
    fe = _tied_energy_run("forward_euler", 0.05, steps)
    # forward Euler on a centre gains energy every period: |H_k - H_0| grows without bound
    w = steps // 10
    first, last = fe[:w].abs().max(0).values, fe[-w:].abs().max(0).values
    assert bool((last > 3 * first).all()), (first, last)
    assert bool((last > 10 * s2).all())

"""Spec §12.5 (contractivity, the S5 clamp) and §12.6 (Lipschitz certificate)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian

from heatbath.nn import (
    Conv2dOperator,
    GradientFlowBlock,
    StructuredNet,
    empirical_lipschitz,
    logit_margin,
    multiclass_hinge,
    pgd_l2,
)


def test_linear_flow_contracts_at_rate_mu_star_squared():
    # sigma = id: z' = -A^T(Az + b); differences obey d' = -A^T A d, so
    # ||d(t)|| <= exp(-mu*^2 t) ||d(0)||, mu* = smallest singular value over the layers.
    # Explicit Euler with h mu_max^2 <= 1 satisfies the same bound: |1 - h mu^2| <= exp(-h mu^2).
    torch.manual_seed(0)
    d, K, h = 4, 40, 0.05
    blocks = [GradientFlowBlock(d, activation="identity", h=h, enforce=False).double()
              for _ in range(K)]
    mus = [torch.linalg.svdvals(b.op.weight.detach()) for b in blocks]
    assert max(float(m.max()) for m in mus) ** 2 * h <= 1.0
    mu_star = min(float(m.min()) for m in mus)
    z1 = torch.randn(8, d, dtype=torch.float64)
    z2 = torch.randn(8, d, dtype=torch.float64)
    d0 = (z1 - z2).norm(dim=1)
    with torch.no_grad():
        for k, blk in enumerate(blocks, start=1):
            z1, z2 = blk(z1), blk(z2)
            bound = math.exp(-mu_star ** 2 * h * k) * d0
            assert bool(((z1 - z2).norm(dim=1) <= bound * (1 + 1e-12)).all())


@pytest.mark.parametrize("activation", ["relu", "tanh", "leaky_relu", "identity", "sigmoid"])
@pytest.mark.parametrize("conv", [False, True])
def test_layer_jacobian_norm_at_most_one_when_condition_holds(activation, conv):
    torch.manual_seed(1)
    if conv:
        blk = GradientFlowBlock(Conv2dOperator(2, 3, 3, init_scale=2.0), activation=activation,
                                enforce=False).double()
        shape = (1, 2, 3, 3)
    else:
        blk = GradientFlowBlock(4, 6, activation=activation, enforce=False,
                                init_scale=2.0).double()
        shape = (1, 4)
    from heatbath.nn import operator_matrix
    norm = float(torch.linalg.matrix_norm(operator_matrix(blk.op, shape), ord=2))  # exact SVD
    L = blk.act.lipschitz
    with torch.no_grad():
        blk.b.normal_(0.0, 1.0)
    for frac in (0.5, 1.0):  # h L ||A||^2 = 1 and = 2 (the sharp end)
        blk.set_h(frac * 2.0 / (L * norm ** 2))
        for _ in range(5):
            x = torch.randn(shape, dtype=torch.float64)
            J = jacobian(lambda v: blk(v.reshape(shape)).reshape(-1), x.reshape(-1))
            assert float(torch.linalg.matrix_norm(J, ord=2)) <= 1 + 1e-6


def test_condition_is_sharp_for_identity():
    torch.manual_seed(2)
    blk = GradientFlowBlock(4, activation="identity", enforce=False).double()
    norm = float(torch.linalg.matrix_norm(blk.op.weight.detach(), ord=2))
    blk.set_h(1.05 * 2.0 / norm ** 2)
    J = jacobian(lambda v: blk(v[None])[0], torch.zeros(4, dtype=torch.float64))
    assert float(torch.linalg.eigvalsh(J).min()) < -1.0  # I - h A^T A, eigenvalue 1 - h mu^2
    blk.enforce = True  # the S5 clamp brings it back
    J = jacobian(lambda v: blk(v[None])[0], torch.zeros(4, dtype=torch.float64))
    assert float(torch.linalg.eigvalsh(J).min()) >= -1.0


def _exact_norm(op) -> float:
    import copy

    from heatbath.nn import operator_matrix
    shape = (1, op.in_features) if hasattr(op, "in_features") else (1, op.in_channels, 4, 4)
    return float(torch.linalg.matrix_norm(operator_matrix(copy.deepcopy(op).double(), shape),
                                          ord=2))


@pytest.mark.parametrize("conv", [False, True])
def test_clamp_holds_after_every_optimiser_step(conv):
    # Large steps make ||A|| grow and its top singular directions move; the clamp must keep
    # h_eff L ||A||^2 <= 2 (exact SVD of the weights used in that forward) at every step.
    torch.manual_seed(3)
    if conv:
        blocks = [GradientFlowBlock(Conv2dOperator(3, 3, 3), h=20.0) for _ in range(3)]
        net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, padding=1), *blocks,
                                  torch.nn.Flatten(), torch.nn.Linear(3 * 16, 2))
        x = torch.randn(64, 1, 4, 4)
        y = (x.mean((1, 2, 3)) > 0).long()
        opt = torch.optim.Adam(net.parameters(), lr=5e-2)
    else:
        snet = StructuredNet(2, 2, family="gradient_flow", width=6, depth=4, T=40.0)
        net, blocks = snet, snet.blocks
        x = torch.randn(64, 2)
        y = (x[:, 0] * x[:, 1] > 0).long()
        opt = torch.optim.SGD(net.parameters(), lr=0.5)
    clamped = 0
    for _ in range(15):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        for blk in blocks:
            assert blk.last_h_eff * blk.act.lipschitz * _exact_norm(blk.op) ** 2 <= 2.0
            clamped += blk.last_h_eff < float(blk.h)
        opt.step()
    assert clamped > 0  # the constraint was active (h is far above 2/||A||^2)


def test_non_monotone_activation_rejected():
    for act in ("sin", "gelu", "silu"):
        with pytest.raises(ValueError, match=f"GradientFlowBlock: activation '{act}' is not "
                                             "monotone"):
            GradientFlowBlock(3, activation=act)


def _certified_net(seed: int) -> StructuredNet:
    torch.manual_seed(seed)
    net = StructuredNet(2, 3, family="gradient_flow", width=8, depth=6, T=6.0,
                        norm_bound=True).double()
    with torch.no_grad():  # large lift/head weights: the norm bound must do the work
        net.lift.weight.mul_(5.0)
        net.head.weight.mul_(5.0)
        for blk in net.blocks:
            blk.b.normal_(0.0, 0.5)
    x = torch.randn(128, 2, dtype=torch.float64)
    y = torch.randint(0, 3, (128,))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(30):
        opt.zero_grad()
        multiclass_hinge(net(x), y, 0.15).backward()
        opt.step()
    net.eval()
    return net


def test_network_is_one_lipschitz_random_and_adversarial_pairs():
    net = _certified_net(4)
    u = 2 * torch.randn(256, 2, dtype=torch.float64)
    v = u + 0.3 * torch.randn(256, 2, dtype=torch.float64)
    ratios = empirical_lipschitz(net, u, v, steps=40)
    assert float(ratios.max()) <= 1 + 1e-6
    assert float(ratios.max()) > 0.05  # the probe is not trivially zero


def test_no_prediction_flips_inside_certified_radius():
    net = _certified_net(5)
    x = 2 * torch.randn(256, 2, dtype=torch.float64)
    with torch.no_grad():
        logits = net(x)
    pred = logits.argmax(1)
    M = logit_margin(logits, pred)
    radius = 0.999 * M / math.sqrt(2)  # Lip <= 1: margin drops by at most sqrt(2)||delta||
    xa = pgd_l2(net, x, pred, radius, steps=40, loss="margin")
    assert bool(((xa - x).norm(dim=1) <= radius + 1e-12).all())
    with torch.no_grad():
        assert bool((net(xa).argmax(1) == pred).all())
        # and the attack really pushed: margins went down
        assert float(logit_margin(net(xa), pred).mean()) < float(M.mean())

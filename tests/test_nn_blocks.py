"""Spec §12.9 (ResNet reduction), §12.10 (learned steps), §12.12 (errors) and validation."""

from __future__ import annotations

import pytest
import torch

from heatbath.nn import (
    FAMILIES,
    Conv2dOperator,
    EulerResidualBlock,
    GradientFlowBlock,
    StructuredNet,
    SymplecticHamiltonianBlock,
    project_simplex,
)


def test_euler_block_is_the_resnet_block():
    torch.manual_seed(0)
    blk = EulerResidualBlock(5, activation="relu", h=0.37)
    with torch.no_grad():
        blk.b.normal_()
    lin = torch.nn.Linear(5, 5)
    with torch.no_grad():
        lin.weight.copy_(blk.op.weight)
        lin.bias.copy_(blk.b)
    x = torch.randn(7, 5)
    assert torch.equal(blk(x), x + 0.37 * torch.relu(lin(x)))
    blk.set_h(1.0)  # h = 1: the standard residual block of He et al.
    assert torch.equal(blk(x), x + torch.relu(lin(x)))


def test_euler_conv_block_and_gradient_flow_without_constraint():
    torch.manual_seed(1)
    op = Conv2dOperator(3, 3, 3)
    blk = EulerResidualBlock(op, h=0.5)
    x = torch.randn(2, 3, 5, 5)
    ref = x + 0.5 * torch.tanh(torch.nn.functional.conv2d(x, op.weight, padding=1)
                               + blk.b)
    assert torch.allclose(blk(x), ref, atol=1e-6)
    gf = GradientFlowBlock(4, 6, activation="tanh", h=0.3, enforce=False)
    z = torch.randn(3, 4)
    W = gf.op.weight
    assert torch.allclose(gf(z), z - 0.3 * torch.tanh(z @ W.T + gf.b) @ W, atol=1e-6)


def test_simplex_projection():
    g = torch.Generator().manual_seed(2)
    for _ in range(20):
        v = torch.randn(9, generator=g, dtype=torch.float64) * 3
        T = float(torch.rand(1, generator=g)) * 5 + 0.1
        p = project_simplex(v, T)
        assert bool((p >= 0).all()) and abs(float(p.sum()) - T) <= 1e-12
        # optimality (KKT): p = max(v - tau, 0) for one tau, and p is no farther from v than
        # any other feasible point we try
        tau = (v - p)[p > 0]
        assert float(tau.max() - tau.min()) <= 1e-12
        for _ in range(5):
            q = torch.rand(9, generator=g, dtype=torch.float64)
            q = q / q.sum() * T
            assert float((p - v).norm()) <= float((q - v).norm()) + 1e-12
    with pytest.raises(ValueError, match="T must be"):
        project_simplex(torch.ones(3), 0.0)


def test_learned_steps_projection_and_gradient_matches_finite_differences():
    torch.manual_seed(3)
    net = StructuredNet(2, 2, family="symplectic", width=3, depth=5, T=2.0,
                        learn_steps=True).double()
    with torch.no_grad():
        for i, blk in enumerate(net.blocks):
            blk.h.fill_(0.9 - 0.4 * i)  # some negative, sum != T
    hp = net.project_steps()
    hs = torch.stack([b.h.detach() for b in net.blocks])
    assert torch.equal(hs, hp)
    assert bool((hs >= 0).all()) and abs(float(hs.sum()) - 2.0) <= 1e-12
    with torch.no_grad():  # interior point for finite differences
        for blk in net.blocks:
            blk.h.fill_(0.4)
    x = torch.randn(6, 2, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 1, 0])

    def J() -> torch.Tensor:
        return torch.nn.functional.cross_entropy(net(x), y)

    net.zero_grad()
    J().backward()
    for blk in net.blocks:
        g = float(blk.h.grad)
        eps = 1e-5
        with torch.no_grad():
            blk.h.add_(eps)
            jp = float(J())
            blk.h.sub_(2 * eps)
            jm = float(J())
            blk.h.add_(eps)
        fd = (jp - jm) / (2 * eps)  # central difference error O(eps^2) ~ 1e-10 relative
        assert abs(g - fd) <= 1e-6 * max(abs(fd), 1e-8)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_trains_and_reports_reversibility(family):
    torch.manual_seed(4)
    memory = "store" if family in ("euler", "gradient_flow") else "reversible"
    net = StructuredNet(2, 2, family=family, width=4, depth=6, T=3.0, memory=memory)
    x = torch.randn(64, 2)
    y = (x.norm(dim=1) > 1.1).long()
    opt = torch.optim.Adam(net.parameters(), lr=3e-2)
    first = None
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        first = float(loss.detach()) if first is None else first
    assert float(loss.detach()) < 0.8 * first
    parts = net.reversible_parts()
    assert parts["stack"] == (family not in ("euler", "gradient_flow"))
    assert len(net.trajectory(x[:3])) == 7


def test_argument_errors():
    with pytest.raises(ValueError, match="h must be"):
        EulerResidualBlock(3, h=-0.1)
    with pytest.raises(ValueError, match="scheme must be one of"):
        SymplecticHamiltonianBlock(3, scheme="rk4")
    with pytest.raises(ValueError, match="kinetic must be one of"):
        SymplecticHamiltonianBlock(3, kinetic="free")
    with pytest.raises(ValueError, match="activation must be one of"):
        EulerResidualBlock(3, activation="swish")
    with pytest.raises(ValueError, match="family must be one of"):
        StructuredNet(2, 2, family="resnet", width=3, depth=2)
    with pytest.raises(ValueError, match="memory='reversible' needs a reversible family"):
        StructuredNet(2, 2, family="euler", width=3, depth=2, memory="reversible")
    with pytest.raises(ValueError, match="eps must be"):
        GradientFlowBlock(3, eps=2.0)
    with pytest.raises(ValueError, match="norm='fft' needs a Conv2dOperator"):
        GradientFlowBlock(3, norm="fft")
    with pytest.raises(ValueError, match="depth must be"):
        StructuredNet(2, 2, family="euler", width=3, depth=0)
    with pytest.raises(ValueError, match="even channel dimension"):
        SymplecticHamiltonianBlock(3)(torch.randn(2, 5))

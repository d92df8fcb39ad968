"""Convolutional multi-stage networks: each family's guarantee survives the stages and the
down-sampling (Lipschitz bound, invertibility, symplecticity, reversible gradients), Momentum
ResNet, and BatchNorm with frozen statistics."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian

from heatbath.nn import (
    ConvStructuredNet,
    FrozenBatchNorm2d,
    LipschitzPool2d,
    MomentumResidualBlock,
    PixelUnshuffle2d,
    ReversibleSequential,
    empirical_lipschitz,
    freeze_batchnorm,
)

REVERSIBLE = ["symplectic", "symplectic_euler", "shear", "leapfrog", "midpoint", "momentum"]


def _randomise(net: torch.nn.Module, scale: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def test_pools_are_one_lipschitz_and_avg_is_tight():
    g = torch.Generator().manual_seed(0)
    u = torch.randn(64, 3, 8, 8, generator=g, dtype=torch.float64)
    v = u + 0.5 * torch.randn(64, 3, 8, 8, generator=g, dtype=torch.float64)
    for kind in ("max", "avg", "stride"):
        pool = LipschitzPool2d(kind)
        ratio = (pool(u) - pool(v)).flatten(1).norm(dim=1) / (u - v).flatten(1).norm(dim=1)
        assert float(ratio.max()) <= 1 + 1e-12
    c = torch.ones(1, 1, 4, 4, dtype=torch.float64)  # constant input: 2 x avg pool keeps the norm
    assert abs(float(LipschitzPool2d("avg")(c).norm() / c.norm()) - 1.0) <= 1e-12


def test_non_expansive_conv_net_is_one_lipschitz():
    torch.manual_seed(0)
    net = ConvStructuredNet(3, 4, family="gradient_flow", widths=(2, 4), depth=2, image_size=8,
                            T=20.0, norm_bound=True).double()
    _randomise(net, 0.8, 1)  # large weights: the clamp and the norm bounds must do the work
    net.eval()
    assert net.lipschitz_bound() <= 1.0 + 1e-9
    g = torch.Generator().manual_seed(2)
    u = torch.randn(32, 3, 8, 8, generator=g, dtype=torch.float64)
    v = u + 0.1 * torch.randn(32, 3, 8, 8, generator=g, dtype=torch.float64)
    ratios = empirical_lipschitz(net, u, v, steps=20)
    assert float(ratios.max()) <= 1.0 + 1e-6
    assert float(ratios.max()) > 1e-3  # the probe is not trivially zero


def test_unconstrained_conv_net_bound_is_an_upper_bound():
    torch.manual_seed(3)
    net = ConvStructuredNet(3, 4, family="euler", widths=(2, 4), depth=2, image_size=8,
                            normalize=((0.5, 0.5, 0.5), (0.25, 0.5, 0.5))).double()
    _randomise(net, 0.3, 4)
    L = net.lipschitz_bound()
    g = torch.Generator().manual_seed(5)
    u = torch.rand(32, 3, 8, 8, generator=g, dtype=torch.float64)
    v = u + 0.05 * torch.randn(32, 3, 8, 8, generator=g, dtype=torch.float64)
    ratios = empirical_lipschitz(net, u, v, steps=20)
    assert float(ratios.max()) <= L
    assert L > 4.0  # the normalisation alone contributes 1/0.25


@pytest.mark.parametrize("family", REVERSIBLE)
def test_reversible_conv_body_inverts_to_round_off(family):
    torch.manual_seed(6)
    net = ConvStructuredNet(3, 5, family=family, widths=(2, 8, 32), depth=3, image_size=8,
                            T=1.0).double()
    _randomise(net, 0.3, 7)
    x = torch.rand(4, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        s0 = net.initial_state(x)
        back = net.body_inverse(net.features(x))
    # 3 stages x 3 blocks of a few float64 operations each: error ~1e-15 expected
    assert float((back - s0).norm() / s0.norm()) <= 1e-12
    assert net.reversible_parts()["downsampling"] and not net.reversible_parts()["head"]


@pytest.mark.parametrize("family", ["symplectic", "symplectic_euler", "leapfrog"])
def test_symplectic_conv_body_with_unshuffle_is_symplectic(family):
    torch.manual_seed(8)
    net = ConvStructuredNet(1, 2, family=family, widths=(1, 4), depth=2, image_size=4,
                            T=1.0).double()
    _randomise(net, 0.5, 9)
    s0 = torch.randn(1, 2, 4, 4, dtype=torch.float64)

    def body(flat: torch.Tensor) -> torch.Tensor:
        s = flat.view(1, 2, 4, 4)
        for i, stage in enumerate(net.stages):
            s = stage(s)
            if i < len(net.downs):
                s = net.downs[i](s)
        return s.flatten()

    M = jacobian(body, s0.flatten())
    n = M.shape[0] // 2
    eye = torch.eye(n, dtype=torch.float64)
    zero = torch.zeros(n, n, dtype=torch.float64)
    omega = torch.cat([torch.cat([zero, eye], 1), torch.cat([-eye, zero], 1)], 0)
    assert float((M.T @ omega @ M - omega).abs().max()) <= 1e-10


@pytest.mark.parametrize("family", REVERSIBLE)
def test_reversible_gradients_equal_backprop(family):
    torch.manual_seed(10)
    kw = dict(family=family, widths=(2, 8), depth=3, image_size=8, T=1.0)
    ref = ConvStructuredNet(3, 4, memory="store", **kw).double()
    _randomise(ref, 0.3, 11)
    rev = ConvStructuredNet(3, 4, memory="reversible", **kw).double()
    rev.load_state_dict(ref.state_dict())
    x = torch.rand(5, 3, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 4, (5,))
    for net in (ref, rev):
        torch.nn.functional.cross_entropy(net(x), y).backward()
    for (name, p), q in zip(ref.named_parameters(), rev.parameters(), strict=True):
        scale = max(float(p.grad.abs().max()), 1e-300)
        assert float((p.grad - q.grad).abs().max()) / scale <= 1e-10, name


def test_momentum_block_determinant_and_inverse():
    torch.manual_seed(12)
    gamma, d = 0.7, 5
    blk = MomentumResidualBlock(d, gamma=gamma, h=0.8).double()
    x = torch.randn(2 * d, dtype=torch.float64)
    M = jacobian(lambda s: blk(s[None])[0], x)
    # det = gamma^d: reversible but not volume-preserving
    assert abs(float(torch.linalg.det(M)) - gamma ** d) <= 1e-12
    s = torch.randn(7, 2 * d, dtype=torch.float64)
    with torch.no_grad():
        assert float((blk.inverse(blk(s)) - s).abs().max()) <= 1e-13
    stack = ReversibleSequential([MomentumResidualBlock(d, gamma=gamma) for _ in range(30)])
    with torch.no_grad():
        s32 = torch.randn(7, 2 * d)
        err = float((stack.inverse(stack(s32)) - s32).norm() / s32.norm())
    # rounding is amplified by about 1/gamma per block: 0.7^-30 ~ 4e4 times float32's 6e-8
    assert err <= 4e4 * 6e-8 * 30


def test_batchnorm_only_where_the_guarantee_allows():
    kw = dict(widths=(2, 8), depth=1, image_size=8)
    ConvStructuredNet(3, 2, family="euler", norm="batch", **kw)
    ConvStructuredNet(3, 2, family="momentum", norm="frozen", **kw)
    with pytest.raises(ValueError, match="norm='batch' is not allowed for family 'momentum'"):
        ConvStructuredNet(3, 2, family="momentum", norm="batch", **kw)
    for fam in ("gradient_flow", "symplectic", "shear"):
        with pytest.raises(ValueError, match=f"not allowed for family '{fam}'"):
            ConvStructuredNet(3, 2, family=fam, norm="frozen",
                              **(kw if fam != "gradient_flow" else dict(kw, widths=(2, 4))))
    with pytest.raises(ValueError, match=r"widths\[1\] must be 8"):
        ConvStructuredNet(3, 2, family="shear", widths=(2, 4), depth=1, image_size=8)
    with pytest.raises(ValueError, match="divisible"):
        ConvStructuredNet(3, 2, family="euler", widths=(2, 4, 8), depth=1, image_size=6)


def test_frozen_batchnorm_matches_eval_and_keeps_momentum_invertible():
    torch.manual_seed(13)
    net = ConvStructuredNet(3, 2, family="euler", widths=(4,), depth=2, image_size=8,
                            norm="batch")
    x = torch.rand(16, 3, 8, 8)
    net.train()
    for _ in range(3):
        net(x)  # running statistics move away from (0, 1)
    net.eval()
    with torch.no_grad():
        ref = net(x)
        freeze_batchnorm(net)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
        assert torch.allclose(net(x), ref, atol=1e-6)
    # inside a reversible Momentum ResNet a frozen BatchNorm keeps the exact inverse
    blk = MomentumResidualBlock(6, norm="frozen").double()
    assert isinstance(blk.norm, FrozenBatchNorm2d)
    with torch.no_grad():
        blk.norm.running_mean.normal_()
        blk.norm.running_var.uniform_(0.5, 2.0)
        blk.norm.weight.normal_()
    s = torch.randn(4, 12, dtype=torch.float64)
    with torch.no_grad():
        assert float((blk.inverse(blk(s)) - s).abs().max()) <= 1e-13


def test_pixel_unshuffle_is_an_exact_permutation():
    x = torch.randn(3, 4, 6, 6, dtype=torch.float64)
    d = PixelUnshuffle2d()
    y = d(x)
    assert y.shape == (3, 16, 3, 3)
    assert torch.equal(d.inverse(y), x)
    assert math.isclose(float(y.norm()), float(x.norm()), rel_tol=1e-14)
    # the first half of the output comes from the first half of the input only
    assert torch.equal(y[:, :8], torch.nn.functional.pixel_unshuffle(x[:, :2], 2))

"""Restricted parameter sets for A (skew, negative-definite, orthogonal) and their stability
statements (see heatbath.nn.restrict)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian

from heatbath.nn import (
    Conv2dOperator,
    EulerResidualBlock,
    GradientFlowBlock,
    LinearOperator,
    restrict_operator,
)

D = 6


def _block(kind: str, activation: str, seed: int) -> EulerResidualBlock:
    torch.manual_seed(seed)
    op = restrict_operator(LinearOperator(D), kind)
    blk = EulerResidualBlock(op, activation=activation, h=0.1).double()
    with torch.no_grad():
        blk.b.normal_()
    return blk


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid", "identity"])
def test_skew_field_has_imaginary_jacobian_spectrum(activation):
    blk = _block("skew", activation, 0)
    A = blk.op.weight.detach()
    assert float((A + A.T).abs().max()) == 0.0
    for s in range(5):
        z = torch.randn(D, dtype=torch.float64, generator=torch.Generator().manual_seed(s))
        J = jacobian(lambda u: blk.velocity(u[None])[0], z)  # D sigma'(Az+b) A
        ev = torch.linalg.eigvals(J)
        # Re(lambda) = 0 up to the eigen-solver's round-off (~ eps * ||J||)
        assert float(ev.real.abs().max()) <= 1e-12 * max(1.0, float(J.norm()))


def test_skew_linear_flow_conserves_norm():
    blk = _block("skew", "identity", 1)
    A = blk.op.weight.detach()
    z = torch.randn(10, D, dtype=torch.float64)
    for t in (0.5, 2.0, 10.0):
        zt = z @ torch.linalg.matrix_exp(t * A).T
        assert torch.allclose(zt.norm(dim=1), z.norm(dim=1), rtol=1e-12)


@pytest.mark.parametrize("activation", ["tanh", "relu", "leaky_relu"])
def test_negative_definite_field_has_real_nonpositive_spectrum(activation):
    blk = _block("negative_definite", activation, 2)
    A = blk.op.weight.detach()
    assert float(torch.linalg.eigvalsh(A).max()) <= -1e-2 * (1 - 1e-12)
    for s in range(5):
        z = torch.randn(D, dtype=torch.float64, generator=torch.Generator().manual_seed(s))
        ev = torch.linalg.eigvals(jacobian(lambda u: blk.velocity(u[None])[0], z))
        scale = max(1.0, float(ev.abs().max()))
        assert float(ev.imag.abs().max()) <= 1e-10 * scale
        assert float(ev.real.max()) <= 1e-12 * scale


def test_negative_definite_linear_flow_contracts_at_rate_alpha():
    torch.manual_seed(3)
    op = restrict_operator(LinearOperator(D), "negative_definite", alpha=0.3).double()
    A = op.weight.detach()
    d = torch.randn(10, D, dtype=torch.float64)
    for t in (0.5, 2.0, 5.0):
        dt = d @ torch.linalg.matrix_exp(t * A).T
        assert bool((dt.norm(dim=1) <= math.exp(-0.3 * t) * d.norm(dim=1) * (1 + 1e-12)).all())


def test_orthogonal_gradient_flow_needs_no_norm_estimate():
    torch.manual_seed(4)
    # build in float64: the parametrisation keeps a base matrix orthogonal to its dtype's rounding
    op = restrict_operator(LinearOperator(D).double(), "orthogonal")
    W = op.weight.detach()
    assert torch.allclose(W.T @ W, torch.eye(D, dtype=torch.float64), atol=1e-12)
    # sigma = id: the step is z -> (1 - h) z - h A^T b, contracting exactly at |1 - h|
    blk = GradientFlowBlock(op, activation="identity", h=0.4, enforce=False).double()
    z1, z2 = torch.randn(5, D, dtype=torch.float64), torch.randn(5, D, dtype=torch.float64)
    with torch.no_grad():
        ratio = (blk(z1) - blk(z2)).norm(dim=1) / (z1 - z2).norm(dim=1)
    assert torch.allclose(ratio, torch.full_like(ratio, 0.6), rtol=1e-12)
    # relu (L = 1), h = 2 = 2/(L ||A||^2): non-expansive without any clamp
    blk2 = GradientFlowBlock(op, activation="relu", h=2.0, enforce=False).double()
    with torch.no_grad():
        blk2.b.normal_()
    for s in range(5):
        z = torch.randn(D, dtype=torch.float64, generator=torch.Generator().manual_seed(s))
        J = jacobian(lambda u: blk2(u[None])[0], z)
        assert float(torch.linalg.matrix_norm(J, 2)) <= 1 + 1e-12


def test_parametrisation_survives_training():
    torch.manual_seed(5)
    ops = {k: restrict_operator(LinearOperator(D), k) for k in ("skew", "negative_definite",
                                                                 "orthogonal")}
    x = torch.randn(32, D)
    target = torch.randn(32, D)
    for kind, op in ops.items():
        opt = torch.optim.SGD(op.parameters(), lr=0.1)
        for _ in range(5):
            opt.zero_grad()
            loss = (op(x) - target).square().mean()
            loss.backward()
            opt.step()
        with torch.no_grad():
            assert float((op(x) - target).square().mean()) < float(loss)  # it trained
        W = op.weight.detach().double()
        if kind == "skew":
            assert float((W + W.T).abs().max()) <= 1e-6
        elif kind == "negative_definite":
            assert float(torch.linalg.eigvalsh(0.5 * (W + W.T)).max()) <= -1e-2 + 1e-5
        else:
            assert torch.allclose(W.T @ W, torch.eye(D, dtype=torch.float64), atol=1e-5)


def test_restrict_rejects_non_square_and_conv():
    with pytest.raises(ValueError, match="square LinearOperator"):
        restrict_operator(LinearOperator(3, 5), "skew")
    with pytest.raises(ValueError, match="square LinearOperator"):
        restrict_operator(Conv2dOperator(3, 3), "orthogonal")
    with pytest.raises(ValueError, match="kind"):
        restrict_operator(LinearOperator(3), "symmetric")

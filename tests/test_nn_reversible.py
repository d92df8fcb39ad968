"""Spec §12.2 (reversibility) and §12.3 (reversible backprop = autograd, flat memory)."""

from __future__ import annotations

import pytest
import torch

from heatbath.nn import (
    LeapfrogBlock,
    MidpointBlock,
    ReversibleSequential,
    ShearReversibleBlock,
    SymplecticHamiltonianBlock,
    saved_activation_bytes,
)

D = 8


def make_blocks(kind: str, depth: int, h: float) -> list[torch.nn.Module]:
    if kind == "verlet":
        return [SymplecticHamiltonianBlock(D, kinetic="tied", h=h) for _ in range(depth)]
    if kind == "symplectic_euler":
        return [SymplecticHamiltonianBlock(D, 2 * D, kinetic="separate",
                                           scheme="symplectic_euler", h=h) for _ in range(depth)]
    if kind == "shear":
        return [ShearReversibleBlock(D, h=h) for _ in range(depth)]
    if kind == "leapfrog":
        return [LeapfrogBlock(D, h=h) for _ in range(depth)]
    return [MidpointBlock(D, h=h) for _ in range(depth)]


KINDS = ["verlet", "symplectic_euler", "shear", "leapfrog", "midpoint"]


def _randomise_biases(stack: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, p in stack.named_parameters():
            if name.split(".")[-1] in ("b", "b1", "b2"):
                p.normal_(0.0, 0.3)


def _pair_input(kind: str, n: int, dtype: torch.dtype) -> torch.Tensor:
    x = torch.randn(n, 2 * D, dtype=dtype)
    if kind in ("leapfrog", "midpoint"):  # start from (x, x) as the networks do
        x[:, :D] = x[:, D:]
    return x


@pytest.mark.parametrize("kind", KINDS)
def test_depth100_float64_roundtrip(kind):
    torch.manual_seed(0)
    h = 1.0 / 100  # default: T = 1 spread over the depth
    stack = ReversibleSequential(make_blocks(kind, 100, h)).double()
    _randomise_biases(stack)
    x = _pair_input(kind, 16, torch.float64)
    with torch.no_grad():
        err = (stack.inverse(stack(x)) - x).norm() / x.norm()
    assert float(err) <= 1e-12  # 100 blocks x few ops x 1e-16 rounding: ~1e-14 expected


@pytest.mark.parametrize("kind", KINDS)
def test_depth100_float32_roundtrip(kind):
    # float32, default initialisation, h = T/K = 0.01: each of ~600 rounded operations adds
    # ~6e-8 relative error; random-walk accumulation gives ~1e-6, the spec's bound is 1e-5.
    torch.manual_seed(0)
    stack = ReversibleSequential(make_blocks(kind, 100, 0.01))
    x = _pair_input(kind, 16, torch.float32)
    with torch.no_grad():
        err = (stack.inverse(stack(x)) - x).norm() / x.norm()
    assert float(err) <= 1e-5


def test_two_step_inverts_from_last_two_states():
    torch.manual_seed(1)
    for kind in ("leapfrog", "midpoint"):
        blocks = make_blocks(kind, 10, 0.1)
        stack = ReversibleSequential(blocks).double()
        z0 = torch.randn(4, D, dtype=torch.float64)
        traj = stack.trajectory(torch.cat([z0, z0], 1))
        # the state after the last block is exactly the pair (z_{K-1}, z_K)
        zs = [traj[0][:, :D]] + [t[:, D:] for t in traj]
        last_two = torch.cat([zs[-2], zs[-1]], 1)
        back = stack.inverse(last_two)
        assert torch.allclose(back[:, D:], z0, atol=1e-12, rtol=0)


def _grads(stack, x, memory):
    stack.memory = memory
    for p in stack.parameters():
        p.grad = None
    x = x.clone().requires_grad_(True)
    w = torch.linspace(-1, 1, x.shape[1], dtype=x.dtype)
    loss = (torch.tanh(stack(x)) * w).sum()
    loss.backward()
    return [x.grad] + [p.grad.clone() for p in stack.parameters()]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("options", [dict(), dict(checkpoint_every=3)])
def test_reversible_backprop_equals_autograd(kind, options):
    torch.manual_seed(2)
    stack = ReversibleSequential(make_blocks(kind, 12, 0.2), **options).double()
    _randomise_biases(stack)
    for blk in stack.blocks:  # learned steps get gradients too
        blk.learn_h = True
        blk.h_param = torch.nn.Parameter(blk.h_buf.clone())
    x = _pair_input(kind, 5, torch.float64)
    g_rev = _grads(stack, x, "reversible")
    g_ref = _grads(stack, x, "store")
    assert len(g_rev) == len(g_ref)
    for a, b in zip(g_rev, g_ref, strict=True):
        assert float((a - b).norm()) <= 1e-10 * float(b.norm()) + 1e-300


def test_weight_tied_and_float64_reconstruction_fallback():
    torch.manual_seed(3)
    blk = SymplecticHamiltonianBlock(D, kinetic="tied", h=0.1)
    stack = ReversibleSequential([blk] * 20, reconstruct_dtype=torch.float64)
    x = torch.randn(6, 2 * D)
    g_rev = _grads(stack, x, "reversible")
    g_ref = _grads(stack, x, "store")
    for a, b in zip(g_rev, g_ref, strict=True):
        # float32 recomputation at float64-reconstructed inputs: float32 round-off only
        assert float((a - b).norm()) <= 1e-4 * float(b.norm())


def test_saved_activations_independent_of_depth():
    torch.manual_seed(4)
    sizes = {}
    for depth in (2, 8, 32):
        for memory in ("reversible", "store"):
            stack = ReversibleSequential(make_blocks("verlet", depth, 0.1), memory=memory)
            x = torch.randn(32, 2 * D, requires_grad=True)
            sizes[memory, depth] = saved_activation_bytes(lambda s=stack, x=x: s(x),
                                                          stack.parameters())
    assert sizes["reversible", 2] == sizes["reversible", 8] == sizes["reversible", 32]
    assert sizes["reversible", 32][1] == 32 * 2 * D * 4  # just the output state, float32
    # the ordinary stack grows linearly: exactly 4x more when the depth is 4x
    assert sizes["store", 32][1] == 4 * sizes["store", 8][1] > 0


def test_errors_in_reversible_units():
    with pytest.raises(ValueError, match=r"blocks\[1\].*BatchNorm"):
        class WithBN(SymplecticHamiltonianBlock):
            def __init__(self):
                super().__init__(D)
                self.bn = torch.nn.BatchNorm1d(D)
        ReversibleSequential([SymplecticHamiltonianBlock(D), WithBN()])
    with pytest.raises(ValueError, match=r"dropout.*ShearReversibleBlock\.G"):
        ShearReversibleBlock(None, F=torch.nn.Linear(D, D),
                             G=torch.nn.Sequential(torch.nn.Linear(D, D), torch.nn.Dropout(0.1)))
    with pytest.raises(ValueError, match=r"blocks\[0\].*not a reversible block"):
        ReversibleSequential([torch.nn.Linear(2 * D, 2 * D)])

    class Shrink(torch.nn.Module):
        reversible = True

        def forward(self, x):
            return x[:, : x.shape[1] // 2]

        def inverse(self, y):
            return y

    stack = ReversibleSequential([SymplecticHamiltonianBlock(D), Shrink()])
    with pytest.raises(ValueError, match=r"blocks\[1\] \(Shrink\) changes the state's shape"):
        stack(torch.randn(2, 2 * D, requires_grad=True))
    shear = ShearReversibleBlock(None, F=torch.nn.Linear(D, D), G=torch.nn.Linear(D, D // 2))
    with pytest.raises(ValueError, match=r"ShearReversibleBlock\.G changes the shape"):
        shear(torch.randn(2, 2 * D))

r"""Two-step leapfrog block for :math:`\ddot z = -A^\top\sigma(Az + b)` (``Meganet.m`` LeapFrogNN).

.. math::  z_{k+1} = 2z_k - z_{k-1} - h^2 A^\top\sigma(Az_k + b).

This is Störmer–Verlet for the talk's case (a), :math:`H = \tfrac12\|p\|^2 +
\gamma(Az+b)\cdot\mathbb 1`, with :math:`p` eliminated: :math:`p_{k+1/2} = (z_{k+1} - z_k)/h`.
To fit the one-step interface the block acts on the pair :math:`x_k = (z_{k-1}, z_k)` stored in the
channel dimension:

.. math::  (z_{k-1}, z_k) \mapsto (z_k,\ 2z_k - z_{k-1} - h^2A^\top\sigma(Az_k+b)),

whose Jacobian :math:`[[0, I], [-I, 2I - h^2A^\top DA]]` satisfies :math:`M^\top\Omega M = \Omega`
(symplectic in the pair coordinates too) and has :math:`\det = 1`. The inverse needs the two last
states: :math:`z_{k-1} = 2z_k - z_{k+1} - h^2A^\top\sigma(Az_k + b)`. heatbath's start (its choice,
as ``LeapFrogNN``): :math:`z_{-1} = z_0`, zero initial velocity, i.e. the pair ``(x, x)``.
Rounding in the inverse is amplified more than in a one-step scheme (see
docs/structure-preserving.md, section "Reversible backprop").
"""

from __future__ import annotations

from torch import Tensor

from ._common import StepBlock, join_halves, make_bias, make_operator, split_halves
from .activations import Activation, get_activation
from .operators import Operator

__all__ = ["LeapfrogBlock"]


class LeapfrogBlock(StepBlock):
    r"""One leapfrog step on the pair :math:`(z_{k-1}, z_k)`.

    Guarantees: symplectic in the pair coordinates, volume-preserving, explicit inverse from
    the last two states; not non-expansive.

    Args:
        A: int d (dense A, hidden x d) or an Operator.
        hidden: rows of a dense A.
        activation: sigma (any; default ``"tanh"``).
        h: step size, ``h >= 0``.
        learn_h: make h a trainable parameter.
        init_scale: scale of A's initial entries.
    """

    reversible = True
    symplectic = True
    volume_preserving = True

    def __init__(self, A: int | Operator, hidden: int | None = None, *,
                 activation: str | Activation = "tanh", h: float = 0.1, learn_h: bool = False,
                 init_scale: float = 1.0) -> None:
        super().__init__(h, learn_h)
        self.op = make_operator(A, hidden, name="A", init_scale=init_scale)
        self.act = get_activation(activation, owner=type(self).__name__)
        self.b = make_bias(self.op)

    def force(self, z: Tensor) -> Tensor:
        r""":math:`A^\top\sigma(Az + b)`."""
        return self.op.adjoint(self.act(self.op(z) + self.b.to(z.dtype)), z.shape)

    def forward(self, x: Tensor) -> Tensor:
        h = self.step_for(x)
        z_prev, z = split_halves(x, type(self).__name__)
        return join_halves(z, 2.0 * z - z_prev - h * h * self.force(z))

    def inverse(self, y: Tensor) -> Tensor:
        h = self.step_for(y)
        z, z_next = split_halves(y, type(self).__name__)
        return join_halves(2.0 * z - z_next - h * h * self.force(z), z)

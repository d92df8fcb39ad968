r"""Two-step midpoint block (Chang et al. 2018): :math:`y_{k+1} = y_{k-1} + 2h\,\sigma(Ky_k + b)`.

The explicit midpoint (leapfrog) rule for :math:`\dot y = \sigma(K(t)y + b(t))`. On the pair
:math:`x_k = (y_{k-1}, y_k)`:

.. math::  (y_{k-1}, y_k) \mapsto (y_k,\ y_{k-1} + 2h\sigma(Ky_k + b)),

with Jacobian :math:`[[0, I], [I, 2hDK]]`, :math:`|\det| = 1`: **reversible** from the last two
states, :math:`y_{k-1} = y_{k+1} - 2h\sigma(Ky_k + b)`, and volume-preserving up to orientation,
but **not symplectic** (DK is not symmetric). heatbath's start: :math:`y_{-1} = y_0` (pair
``(x, x)``), so the first step is Euler with step 2h. K must be square.
"""

from __future__ import annotations

from torch import Tensor

from ._common import StepBlock, join_halves, make_bias, make_operator, split_halves
from .activations import Activation, get_activation
from .operators import Operator

__all__ = ["MidpointBlock"]


class MidpointBlock(StepBlock):
    r"""One explicit-midpoint step on the pair :math:`(y_{k-1}, y_k)`.

    Guarantees: explicit inverse from the last two states, :math:`|\det| = 1`; not
    symplectic, not non-expansive.

    Args:
        K: int d (dense square K) or a square Operator.
        activation: sigma (any; default ``"tanh"``).
        h: step size, ``h >= 0``.
        learn_h: make h a trainable parameter.
        init_scale: scale of A's initial entries.
    """

    reversible = True
    volume_preserving = True

    def __init__(self, K: int | Operator, *, activation: str | Activation = "tanh",
                 h: float = 0.1, learn_h: bool = False, init_scale: float = 1.0) -> None:
        super().__init__(h, learn_h)
        self.op = make_operator(K, name="K", init_scale=init_scale)
        if not self.op.is_square:
            raise ValueError(f"MidpointBlock: K must be square, got {self.op}")
        self.act = get_activation(activation, owner=type(self).__name__)
        self.b = make_bias(self.op)

    def velocity(self, y: Tensor) -> Tensor:
        return self.act(self.op(y) + self.b.to(y.dtype))

    def forward(self, x: Tensor) -> Tensor:
        h = self.step_for(x)
        y_prev, y = split_halves(x, type(self).__name__)
        return join_halves(y, y_prev + 2.0 * h * self.velocity(y))

    def inverse(self, x: Tensor) -> Tensor:
        h = self.step_for(x)
        y, y_next = split_halves(x, type(self).__name__)
        return join_halves(y_next - 2.0 * h * self.velocity(y), y)

r"""Momentum ResNet block (Sander, Ablin, Blondel & Peyré, ICML 2021): a reversible drop-in ResNet.

.. math::  v_{k+1} = \gamma v_k + (1 - \gamma) f(x_k),\qquad x_{k+1} = x_k + h\,v_{k+1},
           \qquad f(x) = \sigma(Ax + b),

on the state :math:`(x, v)` held in the channel dimension (dim 1); :math:`h = 1` is the paper's
form. The inverse is explicit:

.. math::  x_k = x_{k+1} - h\,v_{k+1},\qquad v_k = \big(v_{k+1} - (1-\gamma) f(x_k)\big)/\gamma .

**Guarantees** (derived, tested). The Jacobian with respect to :math:`(x, v)` is
:math:`[[I + h(1-\gamma)F', h\gamma I], [(1-\gamma)F', \gamma I]]`; subtracting h times the second
block row from the first leaves :math:`[[I, 0], [(1-\gamma)F', \gamma I]]`, so
:math:`\det = \gamma^d`. The block is **reversible** (explicit inverse) but **not
volume-preserving** for :math:`\gamma < 1`, **not symplectic** and **not non-expansive**.
Dividing by :math:`\gamma` amplifies rounding by about :math:`\gamma^{-1}` per block in the
inverse sweep (docs/structure-preserving.md, section "Reversible backprop").

**BatchNorm**: ``norm="frozen"`` puts a :class:`~heatbath.nn.FrozenBatchNorm2d` after A (in
place of b). The inverse only needs f to be a fixed function of x, so reversibility survives
frozen statistics; a BatchNorm in training mode (batch statistics) does not keep it per sample
and is rejected.
"""

from __future__ import annotations

from torch import Tensor, nn

from .._validate import check_choice, check_real
from ._common import (
    FrozenBatchNorm2d,
    StepBlock,
    join_halves,
    make_bias,
    make_operator,
    split_halves,
)
from .activations import Activation, get_activation
from .operators import Operator

__all__ = ["MomentumResidualBlock"]


class MomentumResidualBlock(StepBlock):
    r"""One Momentum ResNet step on :math:`(x, v)` (see the module docstring).

    Guarantees: reversible (explicit inverse); not volume-preserving
    (:math:`\det = \gamma^d`), not symplectic, not non-expansive.

    Args:
        A: features d (dense square A) or a shape-preserving Operator.
        gamma: momentum :math:`\gamma \in (0, 1]`.
        activation: sigma (any; default ``"tanh"``).
        h: step, ``h >= 0`` (default 1, Sander et al.'s form).
        norm: ``None`` or ``"frozen"`` (a FrozenBatchNorm2d after A).
        learn_h: make h trainable.
        init_scale: scale of A's initial entries.
    """

    reversible = True

    def __init__(self, A: int | Operator, *, gamma: float = 0.9,
                 activation: str | Activation = "tanh", h: float = 1.0, norm: str | None = None,
                 learn_h: bool = False, init_scale: float = 1.0) -> None:
        super().__init__(h, learn_h)
        self.gamma = check_real("gamma", gamma, low=0.0, high=1.0, low_open=True)
        self.op = make_operator(A, name="A", init_scale=init_scale)
        if not self.op.is_square:
            raise ValueError(f"MomentumResidualBlock: A must be square (shape-preserving), got "
                             f"{self.op}")
        self.act = get_activation(activation, owner=type(self).__name__)
        if norm is not None:
            check_choice("norm", norm, ("frozen",))
        self.norm = FrozenBatchNorm2d(self.op.bias_shape[0]) if norm == "frozen" else None
        self.b: nn.Parameter | None = make_bias(self.op) if self.norm is None else None

    def residual(self, x: Tensor) -> Tensor:
        r""":math:`f(x) = \sigma(Ax + b)` (or :math:`\sigma(\mathrm{BN}(Ax))`)."""
        s = self.op(x)
        s = self.norm(s) if self.norm is not None else s + self.b.to(s.dtype)  # type: ignore[union-attr]
        return self.act(s)

    def forward(self, state: Tensor) -> Tensor:
        x, v = split_halves(state, type(self).__name__)
        v = self.gamma * v + (1.0 - self.gamma) * self.residual(x)
        return join_halves(x + self.step_for(state) * v, v)

    def inverse(self, state: Tensor) -> Tensor:
        """Exact inverse (divides by gamma)."""
        x, v = split_halves(state, type(self).__name__)
        x = x - self.step_for(state) * v
        v = (v - (1.0 - self.gamma) * self.residual(x)) / self.gamma
        return join_halves(x, v)

r"""Explicit-Euler residual block: the ResNet as a time stepper.

.. math::  z_{k+1} = z_k + h\,\sigma(A z_k + b),

explicit Euler with step :math:`h` for :math:`\dot z = \sigma(A(t)z + b(t))`. With :math:`h = 1`
this is exactly the standard residual block :math:`z + \sigma(Wz + b)` (He et al. 2016), which is
the "ResNet reduction" of the talk (slide 5). No structure is guaranteed: the block is neither
symplectic, nor volume-preserving, nor non-expansive, and its inverse needs a nonlinear solve.

``A`` is square (the state keeps its shape): a ``LinearOperator(d, d)`` from an int ``d``, or any
:class:`~heatbath.nn.operators.Operator` whose output has the input's shape (e.g. a stride-1
``Conv2dOperator(C, C)``).
"""

from __future__ import annotations

from torch import Tensor

from ._common import StepBlock, make_bias, make_operator
from .activations import Activation, get_activation
from .operators import Operator

__all__ = ["EulerResidualBlock"]


class EulerResidualBlock(StepBlock):
    r""":math:`z \mapsto z + h\,\sigma(Az + b)` (explicit Euler, the ResNet block).

    Parameters
    ----------
    A : int (features d, dense square A) or a shape-preserving Operator.
    activation : sigma, any name in ``heatbath.nn.ACTIVATIONS`` (default ``"tanh"``).
    h : step size, ``h >= 0`` (default 1, the plain ResNet).
    learn_h : make h a trainable parameter (see :func:`heatbath.nn.project_steps`).
    bias : include b (default True).
    init_scale : scale of A's initial entries (see the operators).
    """

    def __init__(self, A: int | Operator, *, activation: str | Activation = "tanh",
                 h: float = 1.0, learn_h: bool = False, bias: bool = True,
                 init_scale: float = 1.0) -> None:
        super().__init__(h, learn_h)
        self.op = make_operator(A, name="A", init_scale=init_scale)
        self.act = get_activation(activation, owner=type(self).__name__)
        self.b = make_bias(self.op) if bias else None

    def velocity(self, z: Tensor) -> Tensor:
        r""":math:`\sigma(Az + b)`."""
        s = self.op(z)
        if self.b is not None:
            s = s + self.b.to(s.dtype)
        out = self.act(s)
        if out.shape != z.shape:
            raise ValueError(f"{type(self).__name__}: operator {self.op} changes the shape "
                             f"{tuple(z.shape)} -> {tuple(out.shape)}; a residual block needs "
                             f"a shape-preserving A")
        return out

    def forward(self, z: Tensor) -> Tensor:
        return z + self.step_for(z) * self.velocity(z)

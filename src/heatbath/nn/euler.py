r"""Explicit-Euler residual block: the ResNet as a time stepper.

.. math::  z_{k+1} = z_k + h\,\sigma(A z_k + b),

explicit Euler with step :math:`h` for :math:`\dot z = \sigma(A(t)z + b(t))`. With :math:`h = 1`
this is exactly the standard residual block :math:`z + \sigma(Wz + b)` (He et al. 2016), which is
the "ResNet reduction" of the talk (slide 5). No structure is guaranteed: the block is neither
symplectic, nor volume-preserving, nor non-expansive, and its inverse needs a nonlinear solve.

``A`` is square (the state keeps its shape): a ``LinearOperator(d, d)`` from an int ``d``, or any
:class:`~heatbath.nn.operators.Operator` whose output has the input's shape (e.g. a stride-1
``Conv2dOperator(C, C)``).

**BatchNorm.** With no structure to lose, the block accepts a normalisation of :math:`Az`:
``norm="batch"`` (a trainable ``BatchNorm``, batch statistics in training) or ``norm="frozen"``
(:class:`~heatbath.nn.FrozenBatchNorm2d`, a fixed affine map), replacing the bias b.

**Lipschitz bound** (derived): :math:`\|\phi(z_1) - \phi(z_2)\| \le (1 + hL\,\|S\|\,\|A\|)
\|z_1 - z_2\|`, L the activation's Lipschitz constant and :math:`\|S\|` the largest frozen
BatchNorm scale (1 without one).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._validate import check_choice
from ._common import FrozenBatchNorm2d, StepBlock, certified_norm, make_bias, make_operator
from .activations import Activation, get_activation
from .operators import Conv2dOperator, Operator

__all__ = ["EulerResidualBlock"]


class EulerResidualBlock(StepBlock):
    r""":math:`z \mapsto z + h\,\sigma(Az + b)` (explicit Euler, the ResNet block).

    Guarantees: none (no symplecticity, no inverse, no non-expansiveness); a Lipschitz bound
    :math:`1 + hL\|S\|\|A\|` (see the module docstring).

    Args:
        A: features d (dense square A) or a shape-preserving Operator.
        activation: sigma, any name in ``heatbath.nn.ACTIVATIONS`` (default ``"tanh"``).
        h: step size, ``h >= 0`` (default 1, the plain ResNet).
        learn_h: make h a trainable parameter (see :func:`heatbath.nn.project_steps`).
        bias: include b (default True; ignored with ``norm``, whose shift replaces it).
        init_scale: scale of A's initial entries (see the operators).
        norm: ``None`` (default), ``"batch"`` or ``"frozen"`` (see the module docstring).
    """

    def __init__(self, A: int | Operator, *, activation: str | Activation = "tanh",
                 h: float = 1.0, learn_h: bool = False, bias: bool = True,
                 init_scale: float = 1.0, norm: str | None = None) -> None:
        super().__init__(h, learn_h)
        self.op = make_operator(A, name="A", init_scale=init_scale)
        self.act = get_activation(activation, owner=type(self).__name__)
        self.norm_kind = None if norm is None else check_choice("norm", norm,
                                                                ("batch", "frozen"))
        self.norm: nn.Module | None = None
        if self.norm_kind is not None:
            c = self.op.bias_shape[0]
            conv = isinstance(self.op, Conv2dOperator)
            self.norm = (FrozenBatchNorm2d(c) if self.norm_kind == "frozen"
                         else nn.BatchNorm2d(c) if conv else nn.BatchNorm1d(c))
        self.b = make_bias(self.op) if bias and self.norm is None else None

    def velocity(self, z: Tensor) -> Tensor:
        r""":math:`\sigma(Az + b)` (or :math:`\sigma(\mathrm{BN}(Az))`)."""
        s = self.op(z)
        if self.norm is not None:
            s = self.norm(s)
        elif self.b is not None:
            s = s + self.b.to(s.dtype)
        out = self.act(s)
        if out.shape != z.shape:
            raise ValueError(f"{type(self).__name__}: operator {self.op} changes the shape "
                             f"{tuple(z.shape)} -> {tuple(out.shape)}; a residual block needs "
                             f"a shape-preserving A")
        return out

    def forward(self, z: Tensor) -> Tensor:
        return z + self.step_for(z) * self.velocity(z)

    def lipschitz_bound(self, z_shape: tuple[int, ...]) -> float:
        """:math:`1 + hL\\|S\\|\\|A\\|` with a certified norm of A (see the module docstring).

        Args:
            z_shape: input shape, with batch dimension.

        Returns:
            The bound.

        Raises:
            ValueError: with a trainable BatchNorm (its training-mode map depends on the batch;
                freeze it first).
        """
        scale = 1.0
        if isinstance(self.norm, FrozenBatchNorm2d):
            scale = self.norm.lipschitz()
        elif self.norm is not None:
            if self.norm.training:
                raise ValueError("EulerResidualBlock: a BatchNorm in training mode has no fixed "
                                 "Lipschitz constant; call eval() or freeze_batchnorm first")
            scale = FrozenBatchNorm2d.from_batchnorm(self.norm).lipschitz()  # type: ignore[arg-type]
        with torch.no_grad():
            a = float(certified_norm(self.op, z_shape))
        return 1.0 + float(self.h.detach()) * self.act.lipschitz * scale * a

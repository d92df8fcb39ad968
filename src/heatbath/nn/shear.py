r"""Family R: reversible, volume-preserving shear pairs (Haber–Ruthotto 2017, Chang et al. 2018).

Haber & Ruthotto's "Hamiltonian-inspired" system :math:`\dot y = \sigma(Kz + b_2)`,
:math:`\dot z = -\sigma(K^\top y + b_1)`, discretised as two shears (``Meganet.m``
``HamiltonianNN``):

.. math::  z_{k+1} = z_k - h\,\sigma(K^\top y_k + b_1),\qquad
           y_{k+1} = y_k + h\,\sigma(K z_{k+1} + b_2).

With custom modules ``F`` and ``G`` it is the general coupling (``DoubleHamiltonianNN``, RevNet):
:math:`z \leftarrow z - hF(y)`, :math:`y \leftarrow y + hG(z)`.

**Guarantees** (derived and tested). A shear :math:`z \leftarrow z + h\,s(y)` has Jacobian
:math:`[[I, hS], [0, I]]`, :math:`S = \partial s/\partial y`, so :math:`\det = 1`: the block is
**volume-preserving** and has an **explicit inverse** (:math:`y \leftarrow y - h\sigma(Kz+b_2)`,
then :math:`z \leftarrow z + h\sigma(K^\top y + b_1)`). It is **not symplectic**: the shear is
symplectic iff S is symmetric, and here :math:`S = DK^\top` (:math:`D = \mathrm{diag}\,\sigma'`)
is not symmetric in general. Use :class:`~heatbath.nn.SymplecticHamiltonianBlock` (whose
increments are gradients :math:`A^\top\sigma(A\cdot)`) when symplecticity matters. The
classification follows the Jacobian, not the name "Hamiltonian".

heatbath's choices: separate biases :math:`b_1, b_2` (``Meganet.m`` shares one b; separate
ones cost nothing), zero-initialised; the state is one tensor holding
:math:`(z, y)` in its channel dimension; K must be square (stride-1, C -> C for convolutions).
"""

from __future__ import annotations

from torch import Tensor, nn

from ._common import StepBlock, check_unit_modules, join_halves, make_operator, split_halves
from .activations import Activation, get_activation
from .operators import Operator

__all__ = ["ShearReversibleBlock"]


class ShearReversibleBlock(StepBlock):
    r"""Shear pair: :math:`z \leftarrow z - h\sigma(K^\top y + b_1)`, then y += h sigma(Kz + b2).

    Guarantees: volume-preserving, explicit inverse; not symplectic, not non-expansive.
    ``F``/``G`` may hold a :class:`~heatbath.nn.FrozenBatchNorm2d` (a fixed map keeps both
    guarantees), not a trainable BatchNorm.

    Args:
        K: int d (dense square K) or a square Operator; ignored when ``F`` and ``G`` are given
            (pass ``None``).
        activation: sigma (any activation; default ``"tanh"``).
        F: optional modules replacing :math:`\sigma(K^\top\cdot + b_1)` and
        G: optional modules replacing :math:`\sigma(K^\top\cdot + b_1)` and
            :math:`\sigma(K\cdot + b_2)`; they must preserve shape and contain no BatchNorm/dropout.
        h: step size, ``h >= 0``.
        learn_h: make h a trainable parameter.
        init_scale: scale of A's initial entries.
    """

    reversible = True
    volume_preserving = True

    def __init__(self, K: int | Operator | None, *, activation: str | Activation = "tanh",
                 F: nn.Module | None = None, G: nn.Module | None = None, h: float = 0.1,
                 learn_h: bool = False, init_scale: float = 1.0) -> None:
        super().__init__(h, learn_h)
        owner = type(self).__name__
        if (F is None) != (G is None):
            raise ValueError(f"{owner}: give both F and G or neither")
        self.F = F
        self.G = G
        self.op: Operator | None = None
        if F is not None and G is not None:
            if K is not None:
                raise ValueError(f"{owner}: K must be None when F and G are given")
            check_unit_modules(F, f"{owner}.F")
            check_unit_modules(G, f"{owner}.G")
        else:
            if K is None:
                raise ValueError(f"{owner}: K is required unless F and G are given")
            self.op = make_operator(K, name="K", init_scale=init_scale)
            if not self.op.is_square:
                raise ValueError(f"{owner}: K must be square (same input and output shape), "
                                 f"got {self.op}")
            self.b1 = nn.Parameter(self.op.weight.new_zeros(self.op.adjoint_bias_shape))
            self.b2 = nn.Parameter(self.op.weight.new_zeros(self.op.bias_shape))
        self.act = get_activation(activation, owner=owner)

    def _f(self, y: Tensor) -> Tensor:
        if self.F is not None:
            out = self.F(y)
        else:
            assert self.op is not None
            out = self.act(self.op.adjoint(y, y.shape) + self.b1.to(y.dtype))
        return self._same_shape(out, y, "F")

    def _g(self, z: Tensor) -> Tensor:
        if self.G is not None:
            out = self.G(z)
        else:
            assert self.op is not None
            out = self.act(self.op(z) + self.b2.to(z.dtype))
        return self._same_shape(out, z, "G")

    def _same_shape(self, out: Tensor, inp: Tensor, which: str) -> Tensor:
        if out.shape != inp.shape:
            raise ValueError(f"{type(self).__name__}.{which} changes the shape "
                             f"{tuple(inp.shape)} -> {tuple(out.shape)}; a reversible unit "
                             f"must preserve shape")
        return out

    def forward(self, x: Tensor) -> Tensor:
        h = self.step_for(x)
        z, y = split_halves(x, type(self).__name__)
        z = z - h * self._f(y)
        y = y + h * self._g(z)
        return join_halves(z, y)

    def inverse(self, x: Tensor) -> Tensor:
        h = self.step_for(x)
        z, y = split_halves(x, type(self).__name__)
        y = y - h * self._g(z)
        z = z + h * self._f(y)
        return join_halves(z, y)

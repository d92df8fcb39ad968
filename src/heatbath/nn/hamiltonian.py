r"""Family S: truly Hamiltonian blocks, integrated by symplectic Euler or Störmer–Verlet.

Separable Hamiltonian (the talk, slides 15–16; Celledoni et al. 2021), with
:math:`\gamma_i' = \sigma_i`:

.. math::
    H(z, p) = \gamma_1(A_1 p + b_1)\cdot\mathbb 1 + \gamma_2(A_2 z + b_2)\cdot\mathbb 1,\qquad
    \dot z = \partial_p H = A_1^\top\sigma_1(A_1p + b_1),\quad
    \dot p = -\partial_z H = -A_2^\top\sigma_2(A_2z + b_2).

Schemes, with :math:`\theta_k` frozen inside the layer (heatbath's choice: both Verlet half-kicks
use the same :math:`\theta_k`):

* symplectic Euler: :math:`p_{k+1} = p_k - hA_2^\top\sigma_2(A_2z_k + b_2)`,
  :math:`z_{k+1} = z_k + hA_1^\top\sigma_1(A_1p_{k+1} + b_1)` (first order);
* Störmer–Verlet: :math:`p_{k+1/2} = p_k - \tfrac h2 A_2^\top\sigma_2(A_2z_k + b_2)`,
  :math:`z_{k+1} = z_k + hA_1^\top\sigma_1(A_1p_{k+1/2} + b_1)`,
  :math:`p_{k+1} = p_{k+1/2} - \tfrac h2 A_2^\top\sigma_2(A_2z_{k+1} + b_2)`
  (second order, symmetric).

Kinetic part (``kinetic``):

* ``"quadratic"`` — the talk's case (a): :math:`A_1 = I,\ \sigma_1 = \mathrm{id},\ b_1 = 0`, so
  :math:`T = \tfrac12\|p\|^2` and the block integrates :math:`\ddot z = -A^\top\sigma(Az + b)`;
* ``"tied"`` — case (b): :math:`A_1 = A_2 = A`, :math:`b_1 = b_2 = b`, :math:`\sigma_1=\sigma_2`;
* ``"separate"`` — independent :math:`A_1` (same configuration as A), :math:`b_1`.

**Guarantees** (derived, tested): every substep is a shear whose increment is a
gradient, with Jacobian :math:`[[I, 0], [-hA^\top DA, I]]` (or its transpose), :math:`D =
\mathrm{diag}\,\sigma'`, and :math:`A^\top DA` is symmetric. Hence each layer is **symplectic**
(:math:`M^\top\Omega M = \Omega`), **volume-preserving** and has an **explicit inverse** (the
substeps run backwards with h negated). Per layer only: with :math:`\theta` varying across layers
the energy is not conserved, and heatbath never claims it is (see docs/structure-preserving.md,
section "Non-autonomous Hamiltonians"). For a weight-tied stack Verlet keeps
:math:`|H_k - H_0| = O(h^2)` and symplectic Euler :math:`O(h)`, without drift.

The state is one tensor whose channel dimension (dim 1) holds :math:`(z, p)`, each of the
operator's input shape.
"""

from __future__ import annotations

from torch import Tensor, nn

from .._validate import check_choice
from ._common import StepBlock, join_halves, make_bias, make_operator, split_halves
from .activations import Activation, get_activation
from .operators import Operator

__all__ = ["SymplecticHamiltonianBlock"]


class SymplecticHamiltonianBlock(StepBlock):
    r"""One symplectic step for :math:`H = \gamma_1(A_1p+b_1)\cdot 1 + \gamma_2(A_2z+b_2)\cdot 1`.

    Guarantees: symplectic (per layer), volume-preserving, explicit inverse; not
    non-expansive. No BatchNorm.

    Args:
        A: int d (dense :math:`A_2` of shape hidden x d) or an Operator acting on z.
        hidden: rows of a dense A (default d).
        kinetic: ``"quadratic"`` (default), ``"tied"`` or ``"separate"`` (see the module docstring).
        scheme: ``"verlet"`` (default) or ``"symplectic_euler"``.
        activation: sigma_2 (and sigma_1 unless ``kinetic_activation`` is given); any activation.
        kinetic_activation: sigma_1 for ``"separate"`` (default: ``activation``).
        h: step size, ``h >= 0``.
        learn_h: make h a trainable parameter.
        init_scale: scale of A's initial entries.
    """

    reversible = True
    symplectic = True
    volume_preserving = True

    def __init__(self, A: int | Operator, hidden: int | None = None, *,
                 kinetic: str = "quadratic", scheme: str = "verlet",
                 activation: str | Activation = "tanh",
                 kinetic_activation: str | Activation | None = None, h: float = 0.1,
                 learn_h: bool = False, init_scale: float = 1.0) -> None:
        super().__init__(h, learn_h)
        self.kinetic = check_choice("kinetic", kinetic, ("quadratic", "tied", "separate"))
        self.scheme = check_choice("scheme", scheme, ("verlet", "symplectic_euler"))
        owner = type(self).__name__
        self.op = make_operator(A, hidden, name="A", init_scale=init_scale)
        self.act = get_activation(activation, owner=owner)
        self.b = make_bias(self.op)
        self.op1: Operator | None = None
        self.b1: nn.Parameter | None = None
        self.act1 = self.act
        if self.kinetic == "separate":
            self.op1 = self.op.like()
            self.b1 = make_bias(self.op1)
            if kinetic_activation is not None:
                self.act1 = get_activation(kinetic_activation, owner=owner)
        elif kinetic_activation is not None:
            raise ValueError("kinetic_activation is only used with kinetic='separate'")

    # gradients of the two parts of H
    def grad_V(self, z: Tensor) -> Tensor:
        r""":math:`\partial_z H = A_2^\top\sigma_2(A_2z + b_2)`."""
        s = self.op(z) + self.b.to(z.dtype)
        return self.op.adjoint(self.act(s), z.shape)

    def grad_T(self, p: Tensor) -> Tensor:
        r""":math:`\partial_p H = A_1^\top\sigma_1(A_1p + b_1)` (or p for ``"quadratic"``)."""
        if self.kinetic == "quadratic":
            return p
        if self.kinetic == "tied":
            return self.grad_V(p)
        assert self.op1 is not None and self.b1 is not None
        s = self.op1(p) + self.b1.to(p.dtype)
        return self.op1.adjoint(self.act1(s), p.shape)

    def energy(self, x: Tensor) -> Tensor:
        """H(z, p) per sample (needs activations with an elementary potential)."""
        owner = type(self).__name__
        z, p = split_halves(x, owner)
        pot2 = get_activation(self.act, require_potential=True, owner=owner).potential
        assert pot2 is not None
        V = pot2(self.op(z) + self.b.to(z.dtype)).flatten(1).sum(1)
        if self.kinetic == "quadratic":
            T = 0.5 * p.flatten(1).square().sum(1)
        elif self.kinetic == "tied":
            T = pot2(self.op(p) + self.b.to(p.dtype)).flatten(1).sum(1)
        else:
            assert self.op1 is not None and self.b1 is not None
            pot1 = get_activation(self.act1, require_potential=True, owner=owner).potential
            assert pot1 is not None
            T = pot1(self.op1(p) + self.b1.to(p.dtype)).flatten(1).sum(1)
        return T + V

    def vector_field(self, x: Tensor) -> Tensor:
        r"""The Hamiltonian vector field :math:`(\partial_pH, -\partial_zH)` at x."""
        z, p = split_halves(x, type(self).__name__)
        return join_halves(self.grad_T(p), -self.grad_V(z))

    def _step(self, x: Tensor, h: Tensor) -> Tensor:
        z, p = split_halves(x, type(self).__name__)
        if self.scheme == "symplectic_euler":
            p = p - h * self.grad_V(z)
            z = z + h * self.grad_T(p)
        else:
            p = p - 0.5 * h * self.grad_V(z)
            z = z + h * self.grad_T(p)
            p = p - 0.5 * h * self.grad_V(z)
        return join_halves(z, p)

    def forward(self, x: Tensor) -> Tensor:
        return self._step(x, self.step_for(x))

    def inverse(self, y: Tensor) -> Tensor:
        """Exact inverse: the substeps in reverse order with h negated."""
        h = self.step_for(y)
        z, p = split_halves(y, type(self).__name__)
        if self.scheme == "symplectic_euler":
            z = z - h * self.grad_T(p)
            p = p + h * self.grad_V(z)
        else:
            p = p + 0.5 * h * self.grad_V(z)
            z = z - h * self.grad_T(p)
            p = p + 0.5 * h * self.grad_V(z)
        return join_halves(z, p)

r"""Restricted parameter sets for A, through ``torch.nn.utils.parametrize``.

The talk's design freedom "restrict :math:`\Theta`" (docs/structure-preserving.md, section
"Restricted parameter sets"): :func:`restrict_operator` re-parametrises the weight W of a square
:class:`LinearOperator` so that every optimiser step stays in the set. With D = diag σ' >= 0 for a
monotone σ, each set gives a statement about :math:`\dot z = \sigma(Az + b)` (the Euler block's
field) or :math:`\dot z = -A^\top\sigma(Az + b)` (the gradient-flow block's), tested in
``tests/test_nn_restrict.py``:

* ``"skew"``: :math:`A = W - W^\top`. The Jacobian :math:`DA` has the nonzero eigenvalues of
  :math:`D^{1/2}AD^{1/2}`, which is skew, so every eigenvalue is purely imaginary: the
  Haber–Ruthotto linear stability :math:`\mathrm{Re}\,\lambda = 0` holds at every point, for
  any monotone σ. With σ = id the flow :math:`e^{tA}` is orthogonal (norms are conserved).
* ``"negative_definite"``: :math:`A = -(W^\top W + \alpha I)`, :math:`\alpha > 0`. The Jacobian's
  eigenvalues are those of :math:`D^{1/2}AD^{1/2}` (symmetric, <= 0), so they are real and <= 0;
  with σ = id differences contract, :math:`\|z_1(t) - z_2(t)\| \le e^{-\alpha t}
  \|z_1(0) - z_2(0)\|`.
* ``"orthogonal"``: :math:`A^\top A = I` (``torch.nn.utils.parametrizations.orthogonal``). Then
  :math:`\|A\|_2 = 1` exactly, so a gradient-flow step is non-expansive for every
  :math:`h \le 2/L` with no norm estimate, and with σ = id it is
  :math:`z \mapsto (1 - h)z - hA^\top b`, contracting at rate :math:`|1 - h|`.

Only dense square operators are supported: orthogonal or skew convolutions need a different
construction (e.g. a skew kernel) that heatbath does not ship.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrizations, parametrize

from .._validate import check_choice, check_real
from .operators import LinearOperator, Operator

__all__ = ["restrict_operator", "RESTRICTIONS", "Skew", "NegativeDefinite"]

RESTRICTIONS = ("skew", "negative_definite", "orthogonal")


class Skew(nn.Module):
    """:math:`W \\mapsto W - W^\\top`."""

    def forward(self, W: Tensor) -> Tensor:
        return W - W.transpose(-1, -2)


class NegativeDefinite(nn.Module):
    r""":math:`W \mapsto -(W^\top W + \alpha I)`.

    Args:
        alpha: the lower bound of :math:`-\lambda_{\max}(A)`, > 0.
    """

    def __init__(self, alpha: float = 1e-2) -> None:
        super().__init__()
        self.alpha = check_real("alpha", alpha, low=0.0, low_open=True)

    def forward(self, W: Tensor) -> Tensor:
        eye = torch.eye(W.shape[-1], dtype=W.dtype, device=W.device)
        return -(W.transpose(-1, -2) @ W + self.alpha * eye)


def restrict_operator(op: Operator, kind: str, *, alpha: float = 1e-2) -> Operator:
    """Constrain ``op.weight`` to a parameter set, in place (see the module docstring).

    Args:
        op: a square :class:`LinearOperator`.
        kind: ``"skew"``, ``"negative_definite"`` or ``"orthogonal"``.
        alpha: margin of ``"negative_definite"``, > 0.

    Returns:
        ``op`` (its ``weight`` is now computed from the free parameter
        ``op.parametrizations.weight.original``).

    Raises:
        ValueError: the operator is not a square LinearOperator.
    """
    kind = check_choice("kind", kind, RESTRICTIONS)
    if not isinstance(op, LinearOperator) or not op.is_square:
        raise ValueError(f"restrict_operator needs a square LinearOperator, got {op!r}")
    if kind == "orthogonal":
        parametrizations.orthogonal(op, "weight")
    elif kind == "skew":
        parametrize.register_parametrization(op, "weight", Skew())
    else:
        parametrize.register_parametrization(op, "weight", NegativeDefinite(alpha))
    return op

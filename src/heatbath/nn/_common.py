"""Shared plumbing for the blocks: step sizes, operators, biases, structure checks."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._validate import check_real
from .operators import LinearOperator, Operator

__all__ = ["StepBlock", "make_operator", "check_unit_modules", "split_halves", "join_halves"]


def make_operator(A: int | Operator, hidden: int | None = None, *, name: str = "A",
                  init_scale: float = 1.0) -> Operator:
    """An operator from an int (``LinearOperator(A, hidden)``) or an :class:`Operator`."""
    if isinstance(A, Operator):
        if hidden is not None:
            raise ValueError(f"{name}: give either an Operator or (features, hidden), not both")
        return A
    if isinstance(A, bool) or not isinstance(A, int) or A < 1:
        raise ValueError(f"{name} must be a positive int (features) or a heatbath.nn Operator, "
                         f"got {A!r}")
    return LinearOperator(A, hidden, init_scale=init_scale)


def make_bias(op: Operator) -> nn.Parameter:
    """Zero-initialised bias shaped to be added to ``op(z)`` (heatbath's choice: zeros)."""
    return nn.Parameter(torch.zeros(op.bias_shape))


def check_unit_modules(module: nn.Module, owner: str) -> None:
    """Reject BatchNorm and dropout inside a structure-preserving unit (spec S7).

    BatchNorm makes a unit depend on the batch (and on running statistics in training), and
    dropout draws a fresh mask in every call; both break the exact inverse and the per-sample
    structure. The error names the offending submodule.
    """
    for name, sub in module.named_modules():
        bad = None
        if isinstance(sub, nn.modules.batchnorm._BatchNorm):
            bad = "BatchNorm"
        elif isinstance(sub, nn.modules.dropout._DropoutNd):
            bad = "dropout"
        if bad is not None:
            where = f"{owner}.{name}" if name else owner
            raise ValueError(f"{bad} module {where!r} ({type(sub).__name__}) is not allowed inside "
                             f"a structure-preserving unit: it breaks the exact inverse and the "
                             f"block's guarantees; move it between units")


def split_halves(x: Tensor, owner: str) -> tuple[Tensor, Tensor]:
    """Split the channel dimension (dim 1) of a two-component state into (first, second)."""
    if x.dim() < 2 or x.shape[1] % 2:
        raise ValueError(f"{owner}: the state must have an even channel dimension (dim 1) "
                         f"holding the two halves, got shape {tuple(x.shape)}")
    a, b = x.chunk(2, dim=1)
    return a, b


def join_halves(a: Tensor, b: Tensor) -> Tensor:
    return torch.cat([a, b], dim=1)


class StepBlock(nn.Module):
    """Base class holding the step size h (a fixed buffer or, if ``learn_h``, a parameter).

    Flags describe the guarantees a block family has (see the table in the docs):
    ``reversible``, ``symplectic``, ``volume_preserving``, ``non_expansive``.
    """

    reversible = False
    symplectic = False
    volume_preserving = False
    non_expansive = False

    def __init__(self, h: float, learn_h: bool = False) -> None:
        super().__init__()
        h = check_real("h", h, low=0.0)
        if learn_h:
            self.h_param = nn.Parameter(torch.tensor(h))
        else:
            self.register_buffer("h_buf", torch.tensor(h))
        self.learn_h = bool(learn_h)

    @property
    def h(self) -> Tensor:
        return self.h_param if self.learn_h else self.h_buf

    def set_h(self, h: float) -> None:
        """Set the step size in place (no autograd history)."""
        h = check_real("h", h, low=0.0)
        with torch.no_grad():
            self.h.fill_(h)

    def step_for(self, x: Tensor) -> Tensor:
        return self.h.to(x.dtype)

    def inverse(self, y: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no explicit inverse")

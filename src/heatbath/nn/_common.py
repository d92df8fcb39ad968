"""Shared plumbing for the blocks: step sizes, operators, biases, structure checks."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._validate import check_real
from .operators import Conv2dOperator, LinearOperator, Operator

__all__ = ["StepBlock", "make_operator", "check_unit_modules", "split_halves", "join_halves",
           "FrozenBatchNorm2d", "freeze_batchnorm", "certified_norm"]


def make_operator(A: int | Operator, hidden: int | None = None, *, name: str = "A",
                  init_scale: float = 1.0) -> Operator:
    """An operator from an int (``LinearOperator(A, hidden)``) or an :class:`Operator`.

    Args:
        A: features d of a dense operator, or an Operator (returned as is).
        hidden: rows of the dense operator (default d); not allowed with an Operator.
        name: the parameter's name in error messages.
        init_scale: scale of the dense operator's initial entries.

    Returns:
        The operator.
    """
    if isinstance(A, Operator):
        if hidden is not None:
            raise ValueError(f"{name}: give either an Operator or (features, hidden), not both")
        return A
    if isinstance(A, bool) or not isinstance(A, int) or A < 1:
        raise ValueError(f"{name} must be a positive int (features) or a heatbath.nn Operator, "
                         f"got {A!r}")
    return LinearOperator(A, hidden, init_scale=init_scale)


def make_bias(op: Operator) -> nn.Parameter:
    """Zero-initialised bias shaped to be added to ``op(z)`` (heatbath's choice: zeros).

    Args:
        op: the operator.

    Returns:
        The bias parameter.
    """
    return nn.Parameter(torch.zeros(op.bias_shape))


def check_unit_modules(module: nn.Module, owner: str) -> None:
    """Reject BatchNorm and dropout inside a structure-preserving unit.

    BatchNorm makes a unit depend on the batch (and on running statistics in training), and
    dropout draws a fresh mask in every call; both break the exact inverse and the per-sample
    structure (docs/structure-preserving.md, section "Reversible backprop"). A
    :class:`FrozenBatchNorm2d` (a fixed per-channel affine map) is allowed.

    Args:
        module: the unit to check.
        owner: its name in the error message.

    Raises:
        ValueError: naming the offending submodule.
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
                             f"block's guarantees; move it between units, or freeze its "
                             f"statistics with heatbath.nn.freeze_batchnorm")


def split_halves(x: Tensor, owner: str) -> tuple[Tensor, Tensor]:
    """Split the channel dimension (dim 1) of a two-component state into (first, second).

    Args:
        x: the state, with an even number of channels.
        owner: name used in the error message.

    Returns:
        The two halves.
    """
    if x.dim() < 2 or x.shape[1] % 2:
        raise ValueError(f"{owner}: the state must have an even channel dimension (dim 1) "
                         f"holding the two halves, got shape {tuple(x.shape)}")
    a, b = x.chunk(2, dim=1)
    return a, b


def join_halves(a: Tensor, b: Tensor) -> Tensor:
    """Concatenate two state components along the channel dimension."""
    return torch.cat([a, b], dim=1)


class StepBlock(nn.Module):
    """Base class holding the step size h (a fixed buffer or, if ``learn_h``, a parameter).

    Flags describe the guarantees a block family has (see the table in
    docs/structure-preserving.md, section "Block families and what each guarantees"):
    ``reversible``, ``symplectic``, ``volume_preserving``, ``non_expansive``.

    Args:
        h: step size, >= 0.
        learn_h: make h a trainable parameter.
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
        """Set the step size in place (no autograd history).

        Args:
            h: the new step, >= 0.
        """
        h = check_real("h", h, low=0.0)
        with torch.no_grad():
            self.h.fill_(h)

    def step_for(self, x: Tensor) -> Tensor:
        """The step in ``x``'s dtype."""
        return self.h.to(x.dtype)

    def inverse(self, y: Tensor) -> Tensor:
        """The exact inverse, for reversible blocks.

        Raises:
            NotImplementedError: the block has no explicit inverse.
        """
        raise NotImplementedError(f"{type(self).__name__} has no explicit inverse")

    def lipschitz_bound(self, z_shape: tuple[int, ...]) -> float:
        """A certified upper bound of the block's l2 Lipschitz constant on inputs ``z_shape``.

        Raises:
            NotImplementedError: the block provides no bound.
        """
        raise NotImplementedError(f"{type(self).__name__} provides no Lipschitz bound")


def certified_norm(op: Operator, z_shape: tuple[int, ...]) -> Tensor:
    """A certified upper bound of ``||op||_2`` on inputs shaped like ``z_shape``.

    Exact (SVD) for a :class:`LinearOperator`, the FFT bound for a :class:`Conv2dOperator`
    (differentiable in the weight).

    Args:
        op: the operator.
        z_shape: shape of the operator's input, with batch dimension.

    Returns:
        The bound, a 0-d tensor.

    Raises:
        ValueError: the operator has no certified bound (only an estimate).
    """
    if isinstance(op, LinearOperator):
        return torch.linalg.matrix_norm(op.weight, ord=2)
    if isinstance(op, Conv2dOperator):
        return op.fft_norm_bound(tuple(z_shape))
    raise ValueError(f"{type(op).__name__} has no certified norm bound (only the power-"
                     f"iteration estimate); use a LinearOperator or Conv2dOperator")


class FrozenBatchNorm2d(nn.Module):
    r"""BatchNorm with frozen statistics: the fixed per-channel affine map :math:`s\odot x + c`.

    :math:`s = w/\sqrt{\text{var} + \epsilon}`, :math:`c = \beta - s\,\text{mean}`, from a
    trained ``nn.BatchNorm2d`` (:meth:`from_batchnorm`) or the identity. It is not a
    ``_BatchNorm``, holds buffers only and does not depend on the batch, so it keeps a block
    deterministic and per-sample; its Lipschitz constant is :math:`\max|s|` and it is
    invertible when no :math:`s` is zero. Which blocks accept it is stated in each block's
    docstring.

    Args:
        num_features: channels C (inputs ``[n, C, H, W]`` or ``[n, C]``).
        eps: the variance offset.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = int(num_features)
        self.eps = check_real("eps", eps, low=0.0)
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    @classmethod
    def from_batchnorm(cls, bn: nn.modules.batchnorm._BatchNorm) -> FrozenBatchNorm2d:
        """A frozen copy of ``bn``'s current running statistics and affine parameters.

        Args:
            bn: a BatchNorm module with running statistics.

        Returns:
            The frozen module.
        """
        if bn.running_mean is None or bn.running_var is None:
            raise ValueError("bn must track running statistics to be frozen")
        out = cls(bn.num_features, bn.eps)
        with torch.no_grad():
            out.running_mean.copy_(bn.running_mean)
            out.running_var.copy_(bn.running_var)
            if bn.affine:
                out.weight.copy_(bn.weight)
                out.bias.copy_(bn.bias)
        return out.to(bn.running_mean.device)

    def scale_shift(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """The per-channel scale s and shift c."""
        s = self.weight / torch.sqrt(self.running_var + self.eps)
        return s.to(dtype), (self.bias - s * self.running_mean).to(dtype)

    def _view(self, t: Tensor, x: Tensor) -> Tensor:
        return t.view(1, -1, *([1] * (x.dim() - 2)))

    def forward(self, x: Tensor) -> Tensor:
        s, c = self.scale_shift(x.dtype)
        return x * self._view(s, x) + self._view(c, x)

    def inverse(self, y: Tensor) -> Tensor:
        """:math:`(y - c)/s` (needs every s nonzero)."""
        s, c = self.scale_shift(y.dtype)
        return (y - self._view(c, y)) / self._view(s, y)

    def lipschitz(self) -> float:
        r""":math:`\max|s|`."""
        return float(self.scale_shift(torch.float64)[0].abs().max())


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm1d/2d in ``module`` by a :class:`FrozenBatchNorm2d`, in place.

    The frozen module uses the current running statistics, i.e. it computes exactly what the
    BatchNorm computes in ``eval()``.

    Args:
        module: a network trained with BatchNorm.

    Returns:
        ``module``.
    """
    for name, child in list(module.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, FrozenBatchNorm2d.from_batchnorm(child))
        else:
            freeze_batchnorm(child)
    return module

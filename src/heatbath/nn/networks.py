r"""Whole networks: lift, a stack of K blocks of one family, linear head.

.. math::  x \xrightarrow{\ \text{lift}\ } z_0 \xrightarrow{\phi_0} z_1 \to \dots
           \xrightarrow{\phi_{K-1}} z_K \xrightarrow{\ \text{head}\ } \text{logits},
           \qquad h_k = T/K .

``family`` picks the block (see :func:`make_block`):

==================  ===============================================  ===================
family              block                                            state
==================  ===============================================  ===================
euler               :class:`EulerResidualBlock` (ResNet)              z
gradient_flow       :class:`GradientFlowBlock` (non-expansive)         z
symplectic          :class:`SymplecticHamiltonianBlock`, Verlet        (z, p), p_0 = 0
symplectic_euler    :class:`SymplecticHamiltonianBlock`, symp. Euler   (z, p), p_0 = 0
shear               :class:`ShearReversibleBlock` (family R)           (z, y), y_0 = 0
leapfrog            :class:`LeapfrogBlock`                             (z_{k-1}, z_k), (x, x)
midpoint            :class:`MidpointBlock`                             (y_{k-1}, y_k), (x, x)
momentum            :class:`MomentumResidualBlock` (Momentum ResNet)   (x, v), v_0 = 0
==================  ===============================================  ===================

Choices (heatbath's; docs/structure-preserving.md, section "Networks, learned steps, attacks"):
the second component starts at zero (p_0 = 0, as ``LeapFrogNN``)
unless ``momentum_lift=True`` adds a learned linear map p_0 = P z_0; the head reads the whole
state for the (z, p) families and the current state z_K for the two-step ones. With
``norm_bound=True`` the lift and head use :math:`W/\max(1, \|W\|_2)` (exact SVD norm, at forward
time, differentiable), so :math:`\|\text{lift}\|, \|\text{head}\| \le 1`; combined with
gradient-flow blocks the network is 1-Lipschitz in :math:`\ell^2` and a prediction with logit
margin M is certified for :math:`\|\delta\| < M/\sqrt2` (see :func:`heatbath.nn.certified_radius`;
:meth:`StructuredNet.lipschitz_bound` gives the bound for any setting of the euler and
gradient-flow families).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import check_choice, check_int, check_real
from ._common import join_halves, split_halves
from .euler import EulerResidualBlock
from .gradient_flow import GradientFlowBlock
from .hamiltonian import SymplecticHamiltonianBlock
from .leapfrog import LeapfrogBlock
from .midpoint import MidpointBlock
from .momentum import MomentumResidualBlock
from .reversible import ReversibleSequential
from .shear import ShearReversibleBlock

__all__ = ["FAMILIES", "make_block", "NormBoundedLinear", "StructuredNet"]

FAMILIES = ("euler", "gradient_flow", "symplectic", "symplectic_euler", "shear", "leapfrog",
            "midpoint", "momentum")
_TWO_COMPONENT = ("symplectic", "symplectic_euler", "shear", "momentum")
_TWO_STEP = ("leapfrog", "midpoint")
_DEFAULT_ACT = {"euler": "tanh", "gradient_flow": "relu", "symplectic": "tanh",
                "symplectic_euler": "tanh", "shear": "tanh", "leapfrog": "tanh",
                "midpoint": "tanh", "momentum": "tanh"}


def make_block(family: str, width: int, *, h: float, hidden: int | None = None,
               activation: str | None = None, learn_h: bool = False,
               init_scale: float = 1.0, **kwargs: object) -> nn.Module:
    """One block of ``family`` acting on ``width`` features (per component).

    Args:
        family: one of :data:`FAMILIES`.
        width: features d, or an Operator (e.g. a ``Conv2dOperator``) acting on one component.
        h: step size.
        hidden: rows of A for the blocks that allow a rectangular A.
        activation: sigma (default per family).
        learn_h: make h trainable.
        init_scale: scale of A's initial entries.
        **kwargs: further arguments of the block's constructor.

    Returns:
        The block.
    """
    family = check_choice("family", family, FAMILIES)
    act = activation or _DEFAULT_ACT[family]
    common = dict(activation=act, h=h, learn_h=learn_h, init_scale=init_scale)
    if family == "euler":
        return EulerResidualBlock(width, **common, **kwargs)  # type: ignore[arg-type]
    if family == "gradient_flow":
        return GradientFlowBlock(width, hidden, **common, **kwargs)  # type: ignore[arg-type]
    if family in ("symplectic", "symplectic_euler"):
        scheme = "verlet" if family == "symplectic" else "symplectic_euler"
        return SymplecticHamiltonianBlock(width, hidden, scheme=scheme, **common,
                                          **kwargs)  # type: ignore[arg-type]
    if family == "shear":
        return ShearReversibleBlock(width, **common, **kwargs)  # type: ignore[arg-type]
    if family == "leapfrog":
        return LeapfrogBlock(width, hidden, **common, **kwargs)  # type: ignore[arg-type]
    if family == "momentum":
        return MomentumResidualBlock(width, **common, **kwargs)  # type: ignore[arg-type]
    return MidpointBlock(width, **common, **kwargs)  # type: ignore[arg-type]


class NormBoundedLinear(nn.Linear):
    r"""``nn.Linear`` that, if ``bound`` is set, uses :math:`W/\max(1, \|W\|_2/\text{bound})`.

    The rescaling happens at forward time (exact SVD norm, differentiable), so the parameters
    are never changed behind the optimiser's back.

    Args:
        in_features: input size.
        out_features: output size.
        bias: include a bias.
        bound: operator-norm bound (> 0), or ``None`` for a plain linear layer.
    """

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True,
                 bound: float | None = None) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.bound = None if bound is None else check_real("bound", bound, low=0.0,
                                                           low_open=True)

    def effective_weight(self) -> Tensor:
        """The weight used in forward (rescaled to the bound)."""
        if self.bound is None:
            return self.weight
        norm = torch.linalg.matrix_norm(self.weight, ord=2)
        return self.weight / torch.clamp(norm / self.bound, min=1.0)

    def forward(self, x: Tensor) -> Tensor:
        b = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.effective_weight().to(x.dtype), b)


class StructuredNet(nn.Module):
    """Lift, K blocks of one family, linear head (see the module docstring).

    Args:
        in_features: input dimension.
        n_classes: number of outputs.
        family: one of ``FAMILIES``.
        width: features per state component (d).
        depth: K, number of blocks.
        T: final time; each block starts with h = T/K.
        hidden: rows of A for the blocks that allow a rectangular A.
        activation: sigma (default per family: relu for gradient_flow, tanh otherwise).
        learn_steps: trainable h_k; call :meth:`project_steps` after each optimiser step.
        memory: ``"store"`` (default) or ``"reversible"`` (reversible families only).
        norm_bound: bound the lift and head operator norms by 1 (for certificates).
        lift: ``"linear"`` (default) or ``"identity"`` (needs ``in_features == width``).
        momentum_lift: learn p_0 = P z_0 for the (z, p) families.
        init_scale: scale of the blocks' initial A.
        block_kwargs: extra arguments for every block (e.g. ``kinetic``, ``enforce``).
    """

    def __init__(self, in_features: int, n_classes: int, *, family: str, width: int,
                 depth: int, T: float = 1.0, hidden: int | None = None,
                 activation: str | None = None, learn_steps: bool = False,
                 memory: str = "store", norm_bound: bool = False, lift: str = "linear",
                 momentum_lift: bool = False, init_scale: float = 1.0,
                 block_kwargs: dict[str, object] | None = None) -> None:
        super().__init__()
        self.family = check_choice("family", family, FAMILIES)
        in_features = check_int("in_features", in_features, low=1)
        n_classes = check_int("n_classes", n_classes, low=1)
        self.width = check_int("width", width, low=1)
        self.depth = check_int("depth", depth, low=1)
        self.T = check_real("T", T, low=0.0, low_open=True)
        lift = check_choice("lift", lift, ("linear", "identity"))
        memory = check_choice("memory", memory, ("store", "reversible"))
        bound = 1.0 if norm_bound else None
        if lift == "identity":
            if in_features != width:
                raise ValueError(f"lift='identity' needs in_features == width, got "
                                 f"{in_features} != {width}")
            self.lift: nn.Module = nn.Identity()
        else:
            self.lift = NormBoundedLinear(in_features, width, bound=bound)
        if momentum_lift and family not in _TWO_COMPONENT:
            raise ValueError(f"momentum_lift applies to families {_TWO_COMPONENT}, not {family!r}")
        self.momentum_lift = nn.Linear(width, width, bias=False) if momentum_lift else None
        h = self.T / self.depth
        blocks = [make_block(family, width, h=h, hidden=hidden, activation=activation,
                             learn_h=learn_steps, init_scale=init_scale,
                             **(block_kwargs or {})) for _ in range(self.depth)]
        self.reversible = family not in ("euler", "gradient_flow")
        if memory == "reversible" and not self.reversible:
            raise ValueError(f"memory='reversible' needs a reversible family, {family!r} is not")
        if self.reversible:
            self.stack: nn.Module = ReversibleSequential(blocks, memory=memory)
        else:
            self.stack = nn.Sequential(*blocks)
        head_in = 2 * width if family in _TWO_COMPONENT else width
        self.head = NormBoundedLinear(head_in, n_classes, bound=bound)

    @property
    def blocks(self) -> list[nn.Module]:
        return list(self.stack.blocks) if isinstance(self.stack, ReversibleSequential) \
            else list(self.stack)

    def initial_state(self, x: Tensor) -> Tensor:
        z = self.lift(x)
        if self.family in _TWO_COMPONENT:
            p = self.momentum_lift(z) if self.momentum_lift is not None else torch.zeros_like(z)
            return join_halves(z, p)
        if self.family in _TWO_STEP:
            return join_halves(z, z)
        return z

    def readout(self, state: Tensor) -> Tensor:
        """The part of the state the head reads (see the module docstring)."""
        if self.family in _TWO_STEP:
            return split_halves(state, type(self).__name__)[1]
        return state

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.readout(self.stack(self.initial_state(x))))

    def trajectory(self, x: Tensor) -> list[Tensor]:
        """Read-out features after the lift and after each block (for layer-by-layer plots)."""
        s = self.initial_state(x)
        out = [self.readout(s)]
        for blk in self.blocks:
            s = blk(s)
            out.append(self.readout(s))
        return out

    def project_steps(self) -> Tensor:
        """Project learned steps onto {h >= 0, sum h = T} (call after each optimiser step)."""
        from .steps import project_steps
        return project_steps(self, self.T)

    def reversible_parts(self) -> dict[str, bool]:
        """Which parts are reversible: the lift and head are not; the stack may be."""
        return {"lift": False, "stack": self.reversible, "head": False}

    def lipschitz_bound(self) -> float:
        """A certified upper bound of the network's l2 Lipschitz constant.

        The product of the lift's and head's operator norms and the blocks' bounds
        (:meth:`~heatbath.nn.GradientFlowBlock.lipschitz_bound`: 1 under the clamp;
        :meth:`~heatbath.nn.EulerResidualBlock.lipschitz_bound`: :math:`1 + hL\\|A\\|`).

        Returns:
            The bound.

        Raises:
            NotImplementedError: for families whose blocks provide no bound.
        """
        if self.family not in ("euler", "gradient_flow"):
            raise NotImplementedError(f"lipschitz_bound is implemented for the euler and "
                                      f"gradient_flow families, not {self.family!r}")
        with torch.no_grad():
            bound = 1.0
            if isinstance(self.lift, NormBoundedLinear):
                bound *= float(torch.linalg.matrix_norm(self.lift.effective_weight(), ord=2))
            for blk in self.blocks:
                bound *= blk.lipschitz_bound((1, self.width))  # type: ignore[operator]
            bound *= float(torch.linalg.matrix_norm(self.head.effective_weight(), ord=2))
        return bound

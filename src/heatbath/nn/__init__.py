"""Structure-preserving networks: ODE blocks, Hamiltonian and contractive layers, reversible
backprop, convolutional multi-stage networks, DTO/OTD adjoints, L2 PGD attacks and certificates.

See ``docs/structure-preserving.md`` for the guarantees of each block family.
"""

from ._common import FrozenBatchNorm2d, freeze_batchnorm
from .activations import ACTIVATIONS, Activation, get_activation
from .adjoint import (
    TABLEAUS,
    ButcherTableau,
    continuous_adjoint_gradient,
    discrete_adjoint_gradient,
    rk_solve,
)
from .attacks import (
    PUBLISHED_PGD,
    STRONG_PGD,
    certified_accuracy,
    certified_radius,
    empirical_lipschitz,
    logit_margin,
    multiclass_hinge,
    pgd_l2,
    robust_accuracy,
)
from .convnet import (
    ConvStructuredNet,
    LipschitzPool2d,
    Normalize,
    NormBoundedConv2d,
    PixelUnshuffle2d,
)
from .euler import EulerResidualBlock
from .gradient_flow import GradientFlowBlock
from .hamiltonian import SymplecticHamiltonianBlock
from .leapfrog import LeapfrogBlock
from .midpoint import MidpointBlock
from .momentum import MomentumResidualBlock
from .networks import FAMILIES, NormBoundedLinear, StructuredNet, make_block
from .operators import Conv2dOperator, LinearOperator, Operator, operator_matrix
from .restrict import RESTRICTIONS, restrict_operator
from .reversible import ReversibleSequential, saved_activation_bytes
from .shear import ShearReversibleBlock
from .steps import learned_step_blocks, project_simplex, project_steps, smoothness_penalty

__all__ = [
    "ACTIVATIONS", "Activation", "get_activation",
    "Operator", "LinearOperator", "Conv2dOperator", "operator_matrix",
    "EulerResidualBlock", "GradientFlowBlock", "SymplecticHamiltonianBlock",
    "ShearReversibleBlock", "LeapfrogBlock", "MidpointBlock", "MomentumResidualBlock",
    "FrozenBatchNorm2d", "freeze_batchnorm", "restrict_operator", "RESTRICTIONS",
    "ConvStructuredNet", "NormBoundedConv2d", "LipschitzPool2d", "PixelUnshuffle2d", "Normalize",
    "ReversibleSequential", "saved_activation_bytes",
    "StructuredNet", "NormBoundedLinear", "make_block", "FAMILIES",
    "project_simplex", "project_steps", "learned_step_blocks", "smoothness_penalty",
    "ButcherTableau", "TABLEAUS", "rk_solve", "discrete_adjoint_gradient",
    "continuous_adjoint_gradient",
    "pgd_l2", "multiclass_hinge", "logit_margin", "robust_accuracy", "empirical_lipschitz",
    "certified_radius", "certified_accuracy", "STRONG_PGD", "PUBLISHED_PGD",
]

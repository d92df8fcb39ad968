r"""Learned step sizes on the simplex and the smoothness-in-time regulariser (Benning et al. 2019).

With ``learn_h=True`` every block's step :math:`h_k` is a parameter. After each optimiser step,
:func:`project_steps` maps :math:`(h_0, \dots, h_{K-1})` to its Euclidean projection onto

.. math::  \Delta_T = \{h : h_k \ge 0,\ \textstyle\sum_k h_k = T\},

computed by the sort-based rule (Held, Wolfe & Crowder 1974): with :math:`u` the entries sorted in
decreasing order, :math:`\rho = \max\{j : u_j - (\sum_{i\le j}u_i - T)/j > 0\}`,
:math:`\tau = (\sum_{i\le\rho}u_i - T)/\rho` and :math:`h \leftarrow \max(h - \tau, 0)`.

Smoothness-in-time regulariser (Haber–Ruthotto; ``DecodEPFL/HamiltonianNet``):

.. math::  R = \frac{\alpha}{2}\,h\sum_k\big(\|A_{k+1} - A_k\|_F^2 + \|b_{k+1} - b_k\|^2\big),

:func:`smoothness_penalty`, with :math:`h` the mean step (heatbath's choice for non-uniform steps).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .._validate import check_real
from ._common import StepBlock

__all__ = ["project_simplex", "project_steps", "learned_step_blocks", "smoothness_penalty"]


def project_simplex(v: Tensor, T: float) -> Tensor:
    r"""Euclidean projection of the vector ``v`` onto :math:`\{h \ge 0, \sum h = T\}`."""
    T = check_real("T", T, low=0.0, low_open=True)
    if v.dim() != 1 or v.numel() == 0:
        raise ValueError(f"v must be a non-empty 1-D tensor, got shape {tuple(v.shape)}")
    u, _ = torch.sort(v, descending=True)
    css = torch.cumsum(u, 0) - T
    j = torch.arange(1, v.numel() + 1, dtype=v.dtype, device=v.device)
    rho = int(torch.nonzero(u - css / j > 0).max()) + 1
    tau = css[rho - 1] / rho
    return torch.clamp(v - tau, min=0.0)


def learned_step_blocks(module: nn.Module) -> list[StepBlock]:
    """The distinct blocks of ``module`` with ``learn_h=True``, in module order."""
    seen: set[int] = set()
    out: list[StepBlock] = []
    for m in module.modules():
        if isinstance(m, StepBlock) and m.learn_h and id(m) not in seen:
            seen.add(id(m))
            out.append(m)
    return out


def project_steps(module: nn.Module | Sequence[StepBlock], T: float) -> Tensor:
    """Project the learned steps of ``module`` jointly onto the simplex of total ``T``, in place.

    Returns the projected steps. Raises ``ValueError`` when there are no learned steps.
    """
    blocks = (learned_step_blocks(module) if isinstance(module, nn.Module) else list(module))
    if not blocks:
        raise ValueError("module has no blocks with learn_h=True to project")
    with torch.no_grad():
        h = torch.stack([b.h.detach().to(torch.float64) for b in blocks])
        hp = project_simplex(h, T)
        for b, v in zip(blocks, hp, strict=True):
            b.h.copy_(v.to(b.h.dtype))
    return hp


def smoothness_penalty(blocks: Sequence[nn.Module], alpha: float,
                       names: Sequence[str] = ("op.weight", "b")) -> Tensor:
    r""":math:`\frac{\alpha}{2} h \sum_k \|\theta_{k+1} - \theta_k\|^2` over params ``names``."""
    alpha = check_real("alpha", alpha, low=0.0)
    if len(blocks) < 2:
        return torch.zeros(())
    params = [dict(b.named_parameters()) for b in blocks]
    steps = [float(b.h.detach()) for b in blocks if isinstance(b, StepBlock)]
    h = sum(steps) / len(steps) if steps else 1.0
    total = torch.zeros(())
    for name in names:
        for k in range(len(blocks) - 1):
            a, c = params[k].get(name), params[k + 1].get(name)
            if a is not None and c is not None:
                total = total + (c - a).square().sum()
    return 0.5 * alpha * h * total

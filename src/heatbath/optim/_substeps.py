r"""The sub-steps every thermodynamic integrator in heatbath is composed of.

Each function is a small in-place update on *flat* per-group buffers (one contiguous tensor per
parameter group, of shape ``[R, N]``: ``R`` replicas, ``N`` entries per replica), so that a whole
integrator step is a handful of large kernels. Notation (spec §1): :math:`\theta` parameters,
:math:`p` momenta, :math:`g = \nabla\tilde L(\theta)` the minibatch gradient, :math:`R` a fresh
standard normal draw, :math:`\delta` the length of the sub-step.

==========  ==================================================================================
sub-step    update
==========  ==================================================================================
A_δ         :math:`\theta \leftarrow \theta + \delta p`                        (drift)
B_δ         :math:`p \leftarrow p - \delta g`                                   (kick)
O_δ         :math:`p \leftarrow c p + d R,\ c = e^{-\gamma\delta},\ d = \sqrt{\tau(1-c^2)}`
C_δ         :math:`p \leftarrow e^{-\xi\delta} p`                   (thermostat friction)
D_δ         :math:`p \leftarrow p + \sigma_A\sqrt{\delta} R`                   (additive noise)
E_δ         :math:`\xi \leftarrow \xi + \delta\,\epsilon\,(p^\top p - n\tau)`  (thermostat variable)
==========  ==================================================================================

Noise arrives already scaled (``R`` drawn with the right standard deviation), which saves a
multiply per step. The thermostat variable :math:`\xi` of C and E has one entry per *segment*
(a parameter tensor, or a whole group) and per replica: ``xi`` is ``[R, S]``, and C and E
work on the list of the segments' ``[R, n_s]`` momentum views.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["A", "B", "O", "C", "D", "E", "ou_coefficients", "segment_sq_sums"]


def A(theta: Tensor, p: Tensor, delta: float) -> None:
    r"""Drift :math:`A_\delta`: :math:`\theta \leftarrow \theta + \delta p`."""
    theta.add_(p, alpha=delta)


def B(p: Tensor, g: Tensor, delta: float) -> None:
    r"""Kick :math:`B_\delta`: :math:`p \leftarrow p - \delta g`."""
    p.add_(g, alpha=-delta)


def O(p: Tensor, scaled_noise: Tensor, c: float) -> None:  # noqa: E743 - the paper's letter
    r"""Exact Ornstein–Uhlenbeck flow :math:`O_\delta`: :math:`p \leftarrow c p + dR`.

    ``scaled_noise`` must already be :math:`dR` (drawn with standard deviation ``d``).
    """
    torch.add(scaled_noise, p, alpha=c, out=p)


def ou_coefficients(gamma: float, tau: float, delta: float) -> tuple[float, float]:
    r""":math:`c = e^{-\gamma\delta}` and :math:`d = \sqrt{\tau(1-c^2)}` of :math:`O_\delta`.

    ``gamma = inf`` is the overdamped limit: the momentum is redrawn, :math:`c = 0`,
    :math:`d = \sqrt\tau`.
    """
    c = 0.0 if math.isinf(gamma) else math.exp(-gamma * delta)
    return c, math.sqrt(tau * (1.0 - c * c))


def C(p_segs: list[Tensor], xi: Tensor, delta: float) -> None:
    r"""Thermostat friction :math:`C_\delta`: :math:`p \leftarrow e^{-\xi\delta} p` per segment.

    ``p_segs`` are the ``[R, n_s]`` momentum views of the segments, ``xi`` is ``[R, S]``: the
    factors are computed in one small kernel, then one multi-tensor multiply scales every
    segment.
    """
    factor = torch.exp(xi * -delta).unsqueeze(-1)  # [R, S, 1]
    if len(p_segs) == 1:
        p_segs[0].mul_(factor[:, 0])
    else:
        torch._foreach_mul_(p_segs, factor.unbind(1))


def D(p: Tensor, scaled_noise: Tensor) -> None:
    r"""Additive noise :math:`D_\delta`: :math:`p \leftarrow p + \sigma_A\sqrt\delta R`.

    ``scaled_noise`` must already be :math:`\sigma_A\sqrt\delta R`.
    """
    p.add_(scaled_noise)


def segment_sq_sums(p_segs: list[Tensor]) -> Tensor:
    r""":math:`p^\top p` per segment and replica, shape ``[R, S]``."""
    if len(p_segs) == 1:
        return torch.linalg.vecdot(p_segs[0], p_segs[0]).unsqueeze(1)
    return torch.stack([torch.linalg.vecdot(v, v) for v in p_segs], dim=1)


def E(xi: Tensor, p_segs: list[Tensor], a: Tensor, b: Tensor) -> None:
    r"""Thermostat variable :math:`E_\delta`:
    :math:`\xi \leftarrow \xi + \delta\epsilon(p^\top p - n\tau)`, written as
    :math:`\xi \leftarrow \xi + a\,p^\top p - b` with the per-segment constants
    :math:`a = \delta\epsilon` and :math:`b = \delta\epsilon n\tau` (``epsilon`` itself or
    ``epsilon / n`` in the per-entry normalisation), which change only with the
    hyperparameters.
    """
    kin = segment_sq_sums(p_segs)
    xi.addcmul_(a, kin).sub_(b)

r"""The sub-steps every thermodynamic integrator in heatbath is composed of.

Each function is a small in-place update on *lists* of tensors (one entry per parameter, as
torch's ``foreach`` optimizers work), so a whole integrator step is a handful of multi-tensor
kernels. Notation (see ``docs/optimizers.md``): :math:`\theta` parameters, :math:`p` momenta,
:math:`g = \nabla\tilde L(\theta)` the minibatch gradient, :math:`R` a fresh standard normal
draw, :math:`\delta` the length of the sub-step.

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
multiply per step. ``foreach=False`` runs the same arithmetic tensor by tensor (the reference
path of the tests).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["A", "B", "O", "C", "D", "ou_coefficients", "sq_sums"]


def A(theta: list[Tensor], p: list[Tensor], delta: float, foreach: bool = True) -> None:
    r"""Drift :math:`A_\delta`: :math:`\theta \leftarrow \theta + \delta p`."""
    if foreach:
        torch._foreach_add_(theta, p, alpha=delta)
    else:
        for t, q in zip(theta, p):
            t.add_(q, alpha=delta)


def B(p: list[Tensor], g: list[Tensor], delta: float, foreach: bool = True) -> None:
    r"""Kick :math:`B_\delta`: :math:`p \leftarrow p - \delta g`."""
    if foreach:
        torch._foreach_add_(p, g, alpha=-delta)
    else:
        for q, gi in zip(p, g):
            q.add_(gi, alpha=-delta)


def O(p: list[Tensor], scaled_noise: list[Tensor] | None, c: float,  # noqa: E743
      foreach: bool = True) -> None:
    r"""Exact Ornstein–Uhlenbeck flow :math:`O_\delta`: :math:`p \leftarrow c p + dR`.

    ``scaled_noise`` must already be :math:`dR` (drawn with standard deviation ``d``), or None
    when ``d = 0``.
    """
    if foreach:
        if c != 1.0:
            torch._foreach_mul_(p, c)
        if scaled_noise is not None:
            torch._foreach_add_(p, scaled_noise)
        return
    for i, q in enumerate(p):
        if c != 1.0:
            q.mul_(c)
        if scaled_noise is not None:
            q.add_(scaled_noise[i])


def ou_coefficients(gamma: float, tau: float, delta: float) -> tuple[float, float]:
    r""":math:`c = e^{-\gamma\delta}` and :math:`d = \sqrt{\tau(1-c^2)}` of :math:`O_\delta`.

    ``gamma = inf`` is the overdamped limit: the momentum is redrawn, :math:`c = 0`,
    :math:`d = \sqrt\tau` (for :math:`\delta > 0`; :math:`\delta = 0` is the identity).
    """
    if delta == 0.0:
        return 1.0, 0.0
    c = 0.0 if math.isinf(gamma) else math.exp(-gamma * delta)
    return c, math.sqrt(tau * (1.0 - c * c))


def C(p: list[Tensor], factors: list[Tensor], foreach: bool = True) -> None:
    r"""Thermostat friction :math:`C_\delta`: :math:`p \leftarrow e^{-\xi\delta} p`.

    ``factors[i]`` is :math:`e^{-\xi\delta}` for tensor ``i``, broadcastable to it (a 0-d
    tensor, or ``[R, 1, ...]`` with replicas).
    """
    if foreach:
        torch._foreach_mul_(p, factors)
    else:
        for q, f in zip(p, factors):
            q.mul_(f)


def D(p: list[Tensor], scaled_noise: list[Tensor], foreach: bool = True) -> None:
    r"""Additive noise :math:`D_\delta`: :math:`p \leftarrow p + \sigma_A\sqrt\delta R`.

    ``scaled_noise`` must already be :math:`\sigma_A\sqrt\delta R`.
    """
    if foreach:
        torch._foreach_add_(p, scaled_noise)
    else:
        for q, n in zip(p, scaled_noise):
            q.add_(n)


def sq_sums(p: list[Tensor], replicas: int | None) -> Tensor:
    r""":math:`p^\top p` of each tensor (on the tensors given: local shards stay local).

    Returns shape ``[S]`` without replicas, ``[R, S]`` with ``replicas = R`` (the leading
    dimension of every tensor).
    """
    if replicas is None:
        return torch.stack([torch.linalg.vecdot(q.reshape(-1), q.reshape(-1)) for q in p])
    return torch.stack([torch.linalg.vecdot(q.reshape(replicas, -1), q.reshape(replicas, -1))
                        for q in p], dim=1)

r"""Gradient-flow (dissipative, non-expansive) block with a step-size clamp.

Vector field (Celledoni et al. 2021): :math:`f(z) = -A^\top\sigma(Az + b) = -\nabla_z V(z)`,
:math:`V(z) = \gamma(Az + b)\cdot\mathbb 1`, :math:`\gamma' = \sigma`. One explicit-Euler step:

.. math::  z_{k+1} = z_k - h_\text{eff}\,A^\top\sigma(A z_k + b).

**Non-expansiveness.** If :math:`\sigma` is monotone and :math:`L`-Lipschitz, :math:`V` is
convex with :math:`L\|A\|_2^2`-Lipschitz gradient, hence co-coercive (Baillon–Haddad), and the
step is non-expansive, :math:`\|\phi(z_1) - \phi(z_2)\| \le \|z_1 - z_2\|`, whenever

.. math::  h\,L\,\|A\|_2^2 \le 2 .

The bound is sharp: for :math:`\sigma = \mathrm{id}` the Jacobian is :math:`I - hA^\top A`, with
eigenvalues :math:`1 - h\mu_i^2 < -1` as soon as :math:`h > 2/\|A\|^2`.

**Enforcement policy (heatbath's choice; docs/structure-preserving.md, section "The
non-expansiveness clamp"): clamp h, never touch A.** At forward time

.. math::  h_\text{eff} = \min\Big(h,\ \frac{2}{L\,\widehat{\|A\|}^2\,(1+\varepsilon)}\Big),
           \qquad \varepsilon = 10^{-2},

where :math:`\widehat{\|A\|}` is, with ``norm="power"``, a power-iteration estimate on a
persistent vector: ``n_power`` (default 1) iteration per training-mode forward, ``n_power_eval``
(default 20, Lanczos) in ``eval()``, and 20 warm-up steps on first use; :math:`\varepsilon`
absorbs the estimate's error (it is a lower bound of :math:`\|A\|`).

**Why not a one-step power iteration (measured, see the docs):** a one-step tracker lags when
the top singular values of A cross during training — the persistent vector keeps following the
old, now second, direction. On a 6x6 gradient-flow net it under-estimated :math:`\|A\|` enough
to violate the condition by 14 % (Adam, lr 1e-2) to 84 % (SGD, lr 0.5). Hence ``norm="auto"``
(default) uses the **exact** spectral norm (``torch.linalg.matrix_norm(W, 2)``,
differentiable) for dense operators, where an SVD of a d x m matrix is cheap, and for
convolutions the certified FFT upper bound :meth:`~heatbath.nn.Conv2dOperator.fft_norm_bound`
(``norm="fft"``; conservative, so the condition always holds); ``norm="power"`` selects the
power-iteration estimate for any operator.

The parameters are never mutated behind the optimiser's back; the clamp is differentiable
through the norm. The value used in the last forward is exposed as ``last_h_eff`` (and
``last_norm_estimate``). With ``enforce=False`` the block is the plain step,
:math:`h_\text{eff} = h`.

**Lipschitz bound** (derived): the Jacobian :math:`I - hA^\top DA`, :math:`0 \le D \le L`, is
symmetric with eigenvalues in :math:`[1 - hL\|A\|^2, 1]`, so the step is
:math:`\max(1, hL\|A\|^2 - 1)`-Lipschitz for any h, and 1-Lipschitz under the clamp.

**BatchNorm** is rejected, even frozen: its per-channel scale may be negative, which makes
:math:`\sigma(s\cdot)` non-monotone and voids the argument above.

``A`` may be rectangular (:math:`A: \mathbb R^d \to \mathbb R^m`, ``hidden = m``) or any
Operator; the state keeps its shape because :math:`A^\top` maps back.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._validate import check_choice, check_int, check_real
from ._common import StepBlock, certified_norm, make_bias, make_operator
from .activations import Activation, get_activation
from .operators import Conv2dOperator, LinearOperator, Operator

__all__ = ["GradientFlowBlock"]


class GradientFlowBlock(StepBlock):
    r""":math:`z \mapsto z - h_\text{eff} A^\top\sigma(Az + b)`, non-expansive by construction.

    Guarantees: non-expansive (1-Lipschitz) while the clamp is on with a certified norm
    (``norm`` ``"exact"``/``"fft"``/``"auto"``); not symplectic, not volume-preserving, no
    explicit inverse.

    Args:
        A: features d (dense A of shape hidden x d) or an Operator.
        hidden: m, rows of a dense A (default d).
        activation: a monotone sigma with known Lipschitz constant L (relu, tanh, leaky_relu,
            identity, sigmoid, softplus); a non-monotone one raises ``ValueError``.
        h: requested step, ``h >= 0``.
        enforce: apply the clamp (default True).
        eps: safety factor epsilon of the clamp, in ``[0, 1]`` (default 1e-2).
        norm: ``"auto"`` (exact for dense A, FFT bound for Conv2d, power iteration otherwise),
            ``"exact"``, ``"fft"`` or ``"power"``.
        n_power: power iterations per forward in train mode.
        n_power_eval: Lanczos steps per forward in eval mode.
        learn_h: make h trainable.
        bias: include b.
        init_scale: scale of A's initial entries.
    """

    non_expansive = True

    def __init__(self, A: int | Operator, hidden: int | None = None, *,
                 activation: str | Activation = "relu", h: float = 1.0, enforce: bool = True,
                 eps: float = 1e-2, norm: str = "auto", n_power: int = 1, n_power_eval: int = 20,
                 learn_h: bool = False, bias: bool = True, init_scale: float = 1.0) -> None:
        super().__init__(h, learn_h)
        self.op = make_operator(A, hidden, name="A", init_scale=init_scale)
        self.act = get_activation(activation, require_monotone=True,
                                  owner=type(self).__name__)
        self.b = make_bias(self.op) if bias else None
        self.enforce = bool(enforce)
        self.eps = check_real("eps", eps, low=0.0, high=1.0)
        norm = check_choice("norm", norm, ("auto", "exact", "fft", "power"))
        if norm == "exact" and not isinstance(self.op, LinearOperator):
            raise ValueError("norm='exact' needs a dense LinearOperator; use norm='power' for "
                             f"{type(self.op).__name__}")
        if norm == "fft" and not isinstance(self.op, Conv2dOperator):
            raise ValueError(f"norm='fft' needs a Conv2dOperator, got {type(self.op).__name__}")
        if norm == "auto":
            norm = ("exact" if isinstance(self.op, LinearOperator) else
                    "fft" if isinstance(self.op, Conv2dOperator) else "power")
        self.norm = norm
        self.n_power = check_int("n_power", n_power, low=0)
        self.n_power_eval = check_int("n_power_eval", n_power_eval, low=0)
        self.last_h_eff: float | None = None
        self.last_norm_estimate: float | None = None

    def grad_potential(self, z: Tensor) -> Tensor:
        r""":math:`\nabla V(z) = A^\top\sigma(Az + b)`."""
        s = self.op(z)
        if self.b is not None:
            s = s + self.b.to(s.dtype)
        return self.op.adjoint(self.act(s), z.shape)

    def effective_step(self, z: Tensor) -> Tensor:
        """h_eff for inputs shaped like ``z`` (updates the power-iteration vector).

        Args:
            z: the block's input.

        Returns:
            The clamped step (differentiable in A through the norm).
        """
        h = self.step_for(z)
        if not self.enforce:
            self.last_h_eff = float(h.detach())
            return h
        if self.norm == "exact":
            norm = torch.linalg.matrix_norm(self.op.weight, ord=2).to(z.dtype)
        elif self.norm == "fft":
            assert isinstance(self.op, Conv2dOperator)
            norm = self.op.fft_norm_bound(tuple(z.shape)).to(z.dtype)
        else:
            n = self.n_power if self.training else self.n_power_eval
            norm = self.op.spectral_norm(tuple(z.shape), n_iter=n).to(z.dtype)
        bound = 2.0 / (self.act.lipschitz * norm.square() * (1.0 + self.eps))
        h_eff = torch.minimum(h, bound)
        self.last_h_eff = float(h_eff.detach())
        self.last_norm_estimate = float(norm.detach())
        return h_eff

    def forward(self, z: Tensor) -> Tensor:
        return z - self.effective_step(z) * self.grad_potential(z)

    def lipschitz_bound(self, z_shape: tuple[int, ...]) -> float:
        """:math:`\\max(1, h_\\text{eff}L\\|A\\|^2 - 1)` with a certified norm of A.

        Args:
            z_shape: input shape, with batch dimension.

        Returns:
            The bound (1 under the clamp with a certified norm).
        """
        with torch.no_grad():
            a = float(certified_norm(self.op, z_shape))
            h = float(self.h.detach())
            if self.enforce and self.norm != "power":  # the clamp used this certified norm
                h = min(h, 2.0 / (self.act.lipschitz * a * a * (1.0 + self.eps)))
            elif self.enforce and self.last_h_eff is not None:  # the step the estimate gave
                h = self.last_h_eff
        return max(1.0, h * self.act.lipschitz * a * a - 1.0)

r"""Linear maps :math:`A` with an exactly adjoint transpose and a power-iteration norm estimate.

Every structure-preserving block in :mod:`heatbath.nn` is written in terms of an operator
:math:`A: X \to Y` and its adjoint :math:`A^\top: Y \to X`, defined by

.. math::  \langle A x, y\rangle_Y = \langle x, A^\top y\rangle_X \quad \forall x, y,

so that :math:`A^\top\sigma(Az + b) = \nabla_z\,\gamma(Az+b)\cdot\mathbb 1` is a true gradient
(the structure the Hamiltonian and gradient-flow blocks rely on).

* :class:`LinearOperator`: :math:`A z = W z`, :math:`A^\top y = W^\top y` (``F.linear`` with the
  same weight, transposed).
* :class:`Conv2dOperator`: :math:`A z = W * z` (``conv2d``, stride ``s``, zero padding ``p``) and
  :math:`A^\top y` = ``conv_transpose2d`` with the *same* weight, stride and padding and the
  ``output_padding`` that restores the input's spatial size, which makes it the exact adjoint
  (heatbath's choice).

**Spectral norm.** :math:`\|A\|_2` is estimated by power iteration on :math:`A^\top A` with a
persistent unit vector :math:`v`:

.. math::  u \leftarrow A v/\|A v\|,\qquad v \leftarrow A^\top u/\|A^\top u\|,
           \qquad \widehat{\|A\|} = \langle u, A v\rangle .

The estimate is a lower bound of :math:`\|A\|_2` (heatbath's blocks add a safety factor). It is
differentiable in the weight through :math:`\langle u, A v\rangle` with :math:`u, v` held fixed
(the same trick as ``torch.nn.utils.spectral_norm``). heatbath's choices: a request for
``n_iter >= 2`` iterations (the 20 used in ``eval()``) runs ``n_iter`` *Lanczos* steps from the
persistent vector instead of plain power iterations (same number of products with A and
:math:`A^\top`, far faster convergence when the top singular values cluster, still a lower bound:
Ritz values lie inside the spectrum); when the vector is first used (or the input's spatial size
changes) 20 Lanczos warm-up steps run first, so a fresh estimate is never a one-step guess.

Weights are cast to the dtype of the input in every call, so the same module can be run in
float64 for reconstruction (see :mod:`heatbath.nn.reversible`) without copying parameters.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import check_int, check_real

__all__ = ["Operator", "LinearOperator", "Conv2dOperator", "operator_matrix"]

_WARMUP_ITERS = 20


class Operator(nn.Module):
    """Base class: a linear map with ``forward`` (A) and ``adjoint`` (A^T).

    Subclasses define ``forward(z)``, ``adjoint(y, z_shape)``, ``bias_shape`` (shape of a bias
    added to :math:`Az`, without batch dimension), ``output_shape(z_shape)`` and ``like()``
    (a freshly initialised operator with the same configuration).
    """

    weight: nn.Parameter

    def adjoint(self, y: Tensor, z_shape: torch.Size | tuple[int, ...]) -> Tensor:
        raise NotImplementedError

    @property
    def bias_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def adjoint_bias_shape(self) -> tuple[int, ...]:
        """Shape of a bias added to :math:`A^\\top y` (the input space), without batch dim."""
        raise NotImplementedError

    @property
    def is_square(self) -> bool:
        """True when A maps the input space onto a space of the same shape."""
        raise NotImplementedError

    def like(self) -> Operator:
        raise NotImplementedError

    def _unit_input(self, z_shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
        v = torch.randn((1, *z_shape[1:]), generator=generator, dtype=self.weight.dtype)
        return v / v.norm()

    def spectral_norm(self, z_shape: tuple[int, ...], n_iter: int = 1) -> Tensor:
        r"""Estimate :math:`\|A\|_2` on inputs shaped like ``z_shape`` from the persistent vector.

        ``n_iter = 1`` (the per-training-step default) is one power iteration; ``n_iter >= 2``
        (and the 20-step warm-up on first use) runs that many Lanczos steps on
        :math:`A^\top A` with full reorthogonalisation, started from the persistent vector, and
        keeps the top Ritz vector. Both give a lower bound of :math:`\|A\|`; Lanczos converges
        much faster when the top singular values are clustered (strided convolutions). Returns
        :math:`\langle u, Av\rangle`, differentiable in the weight.
        """
        check_int("n_iter", n_iter, low=0)
        want = (1, *tuple(z_shape)[1:])
        v = getattr(self, "_pi_v", None)
        with torch.no_grad():
            if v is None or tuple(v.shape) != want:
                v = self._unit_input(tuple(z_shape), None).to(self.weight.device)
                v = self._lanczos(v, _WARMUP_ITERS)
            v = v.to(self.weight.dtype)
            if n_iter == 1:
                u = self.forward(v)
                v = self.adjoint(u / u.norm().clamp_min(1e-30), v.shape)
                v = v / v.norm().clamp_min(1e-30)
            elif n_iter >= 2:
                v = self._lanczos(v, n_iter)
            u = self.forward(v)
            u = u / u.norm().clamp_min(1e-30)
        self._pi_v = v.detach()
        return (u.detach() * self.forward(v.detach())).sum()

    def _lanczos(self, v: Tensor, k: int) -> Tensor:
        """Top Ritz vector of A^T A after k Lanczos steps from v (full reorthogonalisation)."""
        q = v / v.norm().clamp_min(1e-30)
        Q = [q]
        alphas: list[Tensor] = []
        betas: list[Tensor] = []
        for _ in range(k):
            w = self.adjoint(self.forward(Q[-1]), v.shape)
            alphas.append((w * Q[-1]).sum())
            for _rep in range(2):
                for qi in Q:
                    w = w - (w * qi).sum() * qi
            beta = w.norm()
            if float(beta) <= 1e-10 * max(float(alphas[-1].abs()), 1e-30):
                break
            betas.append(beta)
            Q.append(w / beta)
        m = len(alphas)
        T = torch.diag(torch.stack(alphas))
        if m > 1:
            off = torch.stack(betas[: m - 1])
            T = T + torch.diag(off, 1) + torch.diag(off, -1)
        _, vecs = torch.linalg.eigh(T.to(torch.float64))
        y = vecs[:, -1].to(v.dtype)
        r = sum(y[i] * Q[i] for i in range(m))
        assert isinstance(r, Tensor)
        return r / r.norm().clamp_min(1e-30)


class LinearOperator(Operator):
    r"""Dense operator :math:`Az = Wz`, :math:`W \in \mathbb R^{m\times d}`, adjoint :math:`W^\top`.

    Args:
        in_features: d, dimension of :math:`z`.
        out_features: m, dimension of :math:`Az` (default ``d``).
        init_scale: the entries of W are :math:`\mathcal N(0, \text{init\_scale}^2/d)`
            (default 1, so :math:`\|W\|_2 = O(1)`).
    """

    def __init__(self, in_features: int, out_features: int | None = None, *,
                 init_scale: float = 1.0) -> None:
        super().__init__()
        self.in_features = check_int("in_features", in_features, low=1)
        self.out_features = check_int("out_features", out_features if out_features is not None
                                      else in_features, low=1)
        self.init_scale = check_real("init_scale", init_scale, low=0.0)
        w = torch.randn(self.out_features, self.in_features)
        self.weight = nn.Parameter(w * (self.init_scale / math.sqrt(self.in_features)))
        self._pi_v: Tensor | None = None

    def forward(self, z: Tensor) -> Tensor:
        if z.shape[-1] != self.in_features:
            raise ValueError(f"LinearOperator expects inputs with last dimension "
                             f"{self.in_features}, got shape {tuple(z.shape)}")
        return F.linear(z, self.weight.to(z.dtype))

    def adjoint(self, y: Tensor, z_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        return F.linear(y, self.weight.to(y.dtype).t())

    @property
    def bias_shape(self) -> tuple[int, ...]:
        return (self.out_features,)

    @property
    def adjoint_bias_shape(self) -> tuple[int, ...]:
        return (self.in_features,)

    @property
    def is_square(self) -> bool:
        return self.in_features == self.out_features

    def like(self) -> LinearOperator:
        return LinearOperator(self.in_features, self.out_features, init_scale=self.init_scale)

    def exact_norm(self) -> float:
        """Largest singular value of W (SVD), for tests and diagnostics."""
        return float(torch.linalg.matrix_norm(self.weight.detach(), ord=2))

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.out_features}"


class Conv2dOperator(Operator):
    r"""Convolution :math:`A z = W * z` with the exact adjoint ``conv_transpose2d``.

    :math:`W \in \mathbb R^{C_\text{out}\times C_\text{in}\times k\times k}`, stride ``s``, zero
    padding ``p`` (default :math:`\lfloor k/2\rfloor`). The adjoint uses the same weight, stride
    and padding, with ``output_padding`` chosen so that :math:`A^\top y` has the spatial size of
    the input :math:`z` (``z_shape``), which is what makes it exact for strided convolutions.
    Entries of W are :math:`\mathcal N(0, \text{init\_scale}^2/(C_\text{in}k^2))`.
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, kernel_size: int = 3,
                 *, stride: int = 1, padding: int | None = None,
                 init_scale: float = 1.0) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, low=1)
        self.out_channels = check_int("out_channels", out_channels if out_channels is not None
                                      else in_channels, low=1)
        self.kernel_size = check_int("kernel_size", kernel_size, low=1)
        self.stride = check_int("stride", stride, low=1)
        self.padding = check_int("padding", padding if padding is not None else kernel_size // 2,
                                 low=0)
        self.init_scale = check_real("init_scale", init_scale, low=0.0)
        fan_in = self.in_channels * self.kernel_size ** 2
        w = torch.randn(self.out_channels, self.in_channels, self.kernel_size, self.kernel_size)
        self.weight = nn.Parameter(w * (self.init_scale / math.sqrt(fan_in)))
        self._pi_v: Tensor | None = None

    def forward(self, z: Tensor) -> Tensor:
        if z.dim() != 4 or z.shape[1] != self.in_channels:
            raise ValueError(f"Conv2dOperator expects (N, {self.in_channels}, H, W) inputs, got "
                             f"shape {tuple(z.shape)}")
        return F.conv2d(z, self.weight.to(z.dtype), stride=self.stride, padding=self.padding)

    def adjoint(self, y: Tensor, z_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        if len(z_shape) != 4:
            raise ValueError("Conv2dOperator.adjoint needs z_shape = the (N, C, H, W) shape of "
                             f"the operator's input, got {tuple(z_shape)}")
        k, s, p = self.kernel_size, self.stride, self.padding
        out_pad = []
        for n_in, n_out in zip(z_shape[2:], y.shape[2:], strict=True):
            op = n_in - ((n_out - 1) * s - 2 * p + k)
            if not 0 <= op < s:
                raise ValueError(f"Conv2dOperator.adjoint: output of spatial size {n_out} cannot "
                                 f"come from an input of size {n_in}")
            out_pad.append(op)
        return F.conv_transpose2d(y, self.weight.to(y.dtype), stride=s, padding=p,
                                  output_padding=tuple(out_pad))

    @property
    def bias_shape(self) -> tuple[int, ...]:
        return (self.out_channels, 1, 1)

    @property
    def adjoint_bias_shape(self) -> tuple[int, ...]:
        return (self.in_channels, 1, 1)

    @property
    def is_square(self) -> bool:
        return self.in_channels == self.out_channels and self.stride == 1

    def like(self) -> Conv2dOperator:
        return Conv2dOperator(self.in_channels, self.out_channels, self.kernel_size,
                              stride=self.stride, padding=self.padding,
                              init_scale=self.init_scale)

    def fft_norm_bound(self, z_shape: tuple[int, ...]) -> Tensor:
        r"""Certified upper bound of :math:`\|A\|_2` on inputs of spatial size ``z_shape[2:]``.

        Embedding an :math:`H\times W` input in an :math:`N_1\times N_2` grid,
        :math:`N_i \ge n_i + k - 1`, makes the zero-padded convolution a restriction of a
        circular one, :math:`A = RCE` with :math:`\|R\|, \|E\| \le 1`; striding is a further
        restriction. The circular convolution is block-diagonalised by the 2-D DFT, so
        :math:`\|A\|_2 \le \|C\|_2 = \max_\omega \|\hat W(\omega)\|_2` (the largest singular
        value of the :math:`C_\text{out}\times C_\text{in}` symbol over the grid frequencies;
        Sedghi, Gupta & Long 2019). Differentiable in the weight.
        """
        if len(z_shape) != 4:
            raise ValueError(f"z_shape must be (N, C, H, W), got {tuple(z_shape)}")
        n1 = z_shape[2] + self.kernel_size - 1
        n2 = z_shape[3] + self.kernel_size - 1
        sym = torch.fft.fft2(self.weight, s=(n1, n2)).permute(2, 3, 0, 1)
        return torch.linalg.matrix_norm(sym, ord=2).max()

    def extra_repr(self) -> str:
        return (f"{self.in_channels} -> {self.out_channels}, k={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")


def operator_matrix(op: Operator, z_shape: tuple[int, ...]) -> Tensor:
    """Dense matrix of ``op`` acting on one input of shape ``z_shape[1:]`` (float64; tests only)."""
    n = math.prod(z_shape[1:])
    eye = torch.eye(n, dtype=torch.float64).reshape(n, *z_shape[1:])
    with torch.no_grad():
        cols = op(eye).reshape(n, -1)
    return cols.t().contiguous()

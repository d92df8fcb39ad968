r"""Convolutional multi-stage networks whose down-sampling keeps each family's guarantee.

.. math::  x \xrightarrow{\text{normalise}} \xrightarrow{\text{lift (conv)}}
           \underbrace{\phi\circ\dots\circ\phi}_{\text{stage }1}
           \xrightarrow{\text{down}} \underbrace{\phi\circ\dots\circ\phi}_{\text{stage }2}
           \to\dots\to \text{flatten} \xrightarrow{\text{dense head}} \text{logits}.

Each stage is ``depth`` blocks of one family built on a stride-1 :class:`Conv2dOperator`
(:math:`C_s \to C_s`, ``kernel_size``), with :math:`h = T/\text{depth}`. Between stages:

* **non-reversible families** (``euler``, ``gradient_flow``): a 1-Lipschitz pooling
  (:class:`LipschitzPool2d`: max pooling, :math:`2\times` average pooling or plain striding, all
  with :math:`\ell^2` operator norm <= 1) followed by a 1x1 convolution
  :math:`C_s \to C_{s+1}` (:class:`NormBoundedConv2d`, norm <= 1 when ``norm_bound``). With
  gradient-flow blocks and ``norm_bound=True`` every piece is 1-Lipschitz, so the whole network
  is, up to the input normalisation (Lipschitz :math:`1/\min_c \text{std}_c`), which
  :meth:`ConvStructuredNet.lipschitz_bound` includes.
* **reversible families** (``symplectic``, ``symplectic_euler``, ``shear``, ``leapfrog``,
  ``midpoint``, ``momentum``): :class:`PixelUnshuffle2d`, the space-to-depth permutation applied to
  each half of the two-component state, so :math:`C_{s+1} = 4C_s`. It is orthogonal, exactly
  invertible, volume-preserving and, as the same permutation P acts on both halves
  (:math:`\mathrm{diag}(P, P)^\top\Omega\,\mathrm{diag}(P, P) = \Omega`), symplectic; the map from
  the lifted state to the last stage's output is therefore invertible (and symplectic for the
  symplectic and leapfrog families). Each stage is one reversible unit
  (``memory="reversible"``: O(1) activation memory per stage in depth).

The lift (a ``kernel_size`` convolution to :math:`C_1` channels) and the dense head are not
invertible; ``reversible_parts()`` reports which parts are. The second state component starts
at zero (``p_0 = 0``) for the (z, p) families and at the lifted state for the two-step ones.

BatchNorm (``norm="batch"`` or ``"frozen"``) is accepted where the family's guarantee allows it:
``euler`` (no guarantee to lose; batch or frozen statistics) and ``momentum`` (frozen only: the
inverse needs a fixed map). Other families reject it with a ``ValueError`` naming the guarantee.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import check_choice, check_int, check_real
from ._common import join_halves, split_halves
from .networks import _DEFAULT_ACT, FAMILIES, NormBoundedLinear, make_block
from .operators import Conv2dOperator
from .reversible import ReversibleSequential

__all__ = ["ConvStructuredNet", "NormBoundedConv2d", "LipschitzPool2d", "PixelUnshuffle2d",
           "Normalize"]

_TWO_COMPONENT = ("symplectic", "symplectic_euler", "shear", "momentum")
_TWO_STEP = ("leapfrog", "midpoint")
_NON_REVERSIBLE = ("euler", "gradient_flow")


class NormBoundedConv2d(nn.Module):
    r"""Zero-padded stride-1 convolution, optionally with operator norm <= ``bound``.

    With ``bound`` set, the weight used is :math:`W/\max(1, \beta(W)/\text{bound})`, where
    :math:`\beta` is the certified FFT upper bound of :meth:`Conv2dOperator.fft_norm_bound` on the
    input's spatial size (exact for 1x1 kernels, where it is the largest singular value of the
    channel matrix). Computed at forward time, differentiable.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd kernel size (padding keeps the spatial size).
        bias: include a bias.
        bound: operator-norm bound (> 0) or ``None``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *,
                 bias: bool = True, bound: float | None = None) -> None:
        super().__init__()
        kernel_size = check_int("kernel_size", kernel_size, low=1)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same-size padding), got {kernel_size}")
        self.op = Conv2dOperator(in_channels, out_channels, kernel_size)
        self.bias = nn.Parameter(torch.zeros(out_channels, 1, 1)) if bias else None
        self.bound = None if bound is None else check_real("bound", bound, low=0.0,
                                                           low_open=True)

    def effective_weight(self, z_shape: tuple[int, ...]) -> Tensor:
        """The weight used for inputs of shape ``z_shape``."""
        w = self.op.weight
        if self.bound is None:
            return w
        return w / torch.clamp(self.op.fft_norm_bound(tuple(z_shape)) / self.bound, min=1.0)

    def forward(self, x: Tensor) -> Tensor:
        w = self.effective_weight(tuple(x.shape)).to(x.dtype)
        out = F.conv2d(x, w, padding=self.op.padding)
        return out if self.bias is None else out + self.bias.to(x.dtype)

    def lipschitz_bound(self, z_shape: tuple[int, ...]) -> float:
        """Certified bound of the operator norm on inputs ``z_shape``."""
        with torch.no_grad():
            b = float(self.op.fft_norm_bound(tuple(z_shape)))
        return b if self.bound is None else min(b, self.bound)


class LipschitzPool2d(nn.Module):
    r"""2x2 down-sampling with :math:`\ell^2` Lipschitz constant <= 1.

    * ``"max"``: max pooling; on each window :math:`|\max a - \max b| \le \max|a - b| \le
      \|a - b\|_2`, and the windows do not overlap;
    * ``"avg"``: :math:`2\times` average pooling (the window sum over 2); by Cauchy–Schwarz
      :math:`(\sum_{i=1}^4 a_i/2)^2 \le \sum a_i^2`, with equality on constant windows, so the
      norm is exactly 1;
    * ``"stride"``: keep every second row and column (a coordinate projection).

    Args:
        kind: ``"max"``, ``"avg"`` or ``"stride"``.
    """

    def __init__(self, kind: str = "max") -> None:
        super().__init__()
        self.kind = check_choice("kind", kind, ("max", "avg", "stride"))

    def forward(self, x: Tensor) -> Tensor:
        if self.kind == "max":
            return F.max_pool2d(x, 2)
        if self.kind == "avg":
            return 2.0 * F.avg_pool2d(x, 2)
        return x[:, :, ::2, ::2]

    def lipschitz_bound(self, z_shape: tuple[int, ...]) -> float:
        """1 (see the class docstring)."""
        return 1.0


class PixelUnshuffle2d(nn.Module):
    """Invertible 2x2 space-to-depth on each half of a two-component state.

    ``(N, 2C, H, W) -> (N, 8C, H/2, W/2)``: each half goes through ``pixel_unshuffle(2)``
    separately, so the result is again (first half, second half). A permutation of the entries:
    orthogonal, volume-preserving, exactly invertible (:meth:`inverse`), and symplectic for the
    (z, p) split (see the module docstring).
    """

    reversible = True
    symplectic = True
    volume_preserving = True
    non_expansive = True

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            raise ValueError(f"PixelUnshuffle2d needs even height and width, got {tuple(x.shape)}")
        a, b = split_halves(x, type(self).__name__)
        return join_halves(F.pixel_unshuffle(a, 2), F.pixel_unshuffle(b, 2))

    def inverse(self, y: Tensor) -> Tensor:
        """The exact inverse (pixel shuffle on each half)."""
        a, b = split_halves(y, type(self).__name__)
        return join_halves(F.pixel_shuffle(a, 2), F.pixel_shuffle(b, 2))

    def lipschitz_bound(self, z_shape: tuple[int, ...]) -> float:
        """1 (a permutation)."""
        return 1.0


class Normalize(nn.Module):
    r"""Per-channel :math:`(x - \mu_c)/s_c` inside the model; Lipschitz :math:`1/\min_c s_c`.

    Args:
        mean: per-channel means.
        std: per-channel standard deviations, each > 0.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or any(float(s) <= 0 for s in std):
            raise ValueError(f"mean and std must have equal length and std > 0, got {mean}, "
                             f"{std}")
        self.register_buffer("mean", torch.tensor([float(m) for m in mean]).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor([float(s) for s in std]).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def lipschitz_bound(self, z_shape: tuple[int, ...]) -> float:
        """:math:`1/\\min_c s_c`."""
        return float(1.0 / self.std.min())


class ConvStructuredNet(nn.Module):
    """Multi-stage convolutional network of one block family (see the module docstring).

    Args:
        in_channels: image channels.
        n_classes: number of outputs.
        family: one of ``heatbath.nn.FAMILIES``.
        widths: channels per stage (per state component); for the reversible families each
            stage must have 4 times the channels of the previous one (pixel-unshuffle).
        depth: blocks per stage.
        image_size: input height = width, divisible by ``2**(len(widths) - 1)``.
        T: time per stage; each block starts with h = T/depth.
        kernel_size: odd kernel of the blocks' and the lift's convolutions.
        activation: sigma (default per family).
        memory: ``"store"`` or ``"reversible"`` (reversible families: one reversible unit per
            stage).
        norm_bound: bound the lift, the 1x1 stage transitions and the head by operator norm 1.
        pool: ``"max"``, ``"avg"`` or ``"stride"`` (non-reversible families).
        norm: ``None``, ``"batch"`` (euler) or ``"frozen"`` (euler, momentum): BatchNorm in
            the blocks.
        normalize: ``(mean, std)`` per channel, applied first inside the model.
        block_kwargs: extra arguments for every block (e.g. ``gamma`` for ``momentum``).
    """

    def __init__(self, in_channels: int, n_classes: int, *, family: str,
                 widths: Sequence[int], depth: int, image_size: int, T: float = 1.0,
                 kernel_size: int = 3, activation: str | None = None, memory: str = "store",
                 norm_bound: bool = False, pool: str = "max", norm: str | None = None,
                 normalize: tuple[Sequence[float], Sequence[float]] | None = None,
                 block_kwargs: dict[str, object] | None = None) -> None:
        super().__init__()
        self.family = check_choice("family", family, FAMILIES)
        in_channels = check_int("in_channels", in_channels, low=1)
        n_classes = check_int("n_classes", n_classes, low=1)
        self.widths = [check_int("widths[i]", w, low=1) for w in widths]
        if not self.widths:
            raise ValueError("widths must name at least one stage")
        self.depth = check_int("depth", depth, low=1)
        self.image_size = check_int("image_size", image_size, low=1)
        n_down = len(self.widths) - 1
        if self.image_size % (2 ** n_down):
            raise ValueError(f"image_size must be divisible by 2**{n_down} for "
                             f"{len(self.widths)} stages, got {self.image_size}")
        self.T = check_real("T", T, low=0.0, low_open=True)
        memory = check_choice("memory", memory, ("store", "reversible"))
        self.reversible = self.family not in _NON_REVERSIBLE
        if memory == "reversible" and not self.reversible:
            raise ValueError(f"memory='reversible' needs a reversible family, {family!r} is not")
        if self.reversible:
            for i in range(n_down):
                if self.widths[i + 1] != 4 * self.widths[i]:
                    raise ValueError(
                        f"widths: family {family!r} is reversible, and its invertible "
                        f"down-sampling (pixel-unshuffle) turns C channels into 4C, so "
                        f"widths[{i + 1}] must be {4 * self.widths[i]}, got {self.widths[i + 1]}")
        if norm is not None:
            norm = check_choice("norm", norm, ("batch", "frozen"))
            allowed = {"euler": ("batch", "frozen"), "momentum": ("frozen",)}
            if norm not in allowed.get(self.family, ()):
                why = ("the inverse needs a fixed map; use norm='frozen'" if family == "momentum"
                       else "it would break the family's guarantee (non-expansiveness, "
                            "symplecticity or volume preservation)")
                raise ValueError(f"norm={norm!r} is not allowed for family {family!r}: {why}")
        bound = 1.0 if norm_bound else None
        act = activation or _DEFAULT_ACT[self.family]
        self.normalize = Normalize(*normalize) if normalize is not None else None
        self.lift = NormBoundedConv2d(in_channels, self.widths[0], kernel_size, bound=bound)
        kw = dict(block_kwargs or {})
        if norm is not None:
            kw["norm"] = norm
        stages: list[nn.Module] = []
        downs: list[nn.Module] = []
        for s, c in enumerate(self.widths):
            blocks = [make_block(self.family, Conv2dOperator(c, c, kernel_size),  # type: ignore[arg-type]
                                 h=self.T / self.depth, activation=act, **kw)
                      for _ in range(self.depth)]
            stages.append(ReversibleSequential(blocks, memory=memory) if self.reversible
                          else nn.Sequential(*blocks))
            if s < n_down:
                if self.reversible:
                    downs.append(PixelUnshuffle2d())
                else:
                    downs.append(nn.Sequential(
                        LipschitzPool2d(pool),
                        NormBoundedConv2d(c, self.widths[s + 1], 1, bound=bound)))
        self.stages = nn.ModuleList(stages)
        self.downs = nn.ModuleList(downs)
        side = self.image_size // 2 ** n_down
        comps = 2 if self.family in _TWO_COMPONENT else 1
        self.head = NormBoundedLinear(comps * self.widths[-1] * side * side, n_classes,
                                      bound=bound)

    def initial_state(self, x: Tensor) -> Tensor:
        """Normalised, lifted input, with the second component for the two-part families."""
        if self.normalize is not None:
            x = self.normalize(x)
        z = self.lift(x)
        if self.family in _TWO_COMPONENT:
            return join_halves(z, torch.zeros_like(z))
        if self.family in _TWO_STEP:
            return join_halves(z, z)
        return z

    def features(self, x: Tensor) -> Tensor:
        """The state after the last stage."""
        s = self.initial_state(x)
        for i, stage in enumerate(self.stages):
            s = stage(s)
            if i < len(self.downs):
                s = self.downs[i](s)
        return s

    def body_inverse(self, s: Tensor) -> Tensor:
        """Invert the stages and down-sampling (reversible families): lifted state from output.

        Raises:
            ValueError: for a non-reversible family.
        """
        if not self.reversible:
            raise ValueError(f"family {self.family!r} is not reversible")
        for i in reversed(range(len(self.stages))):
            if i < len(self.downs):
                s = self.downs[i].inverse(s)  # type: ignore[operator]
            s = self.stages[i].inverse(s)  # type: ignore[operator]
        return s

    def readout(self, s: Tensor) -> Tensor:
        """What the head reads: the whole state, or the current state for two-step blocks."""
        if self.family in _TWO_STEP:
            s = split_halves(s, type(self).__name__)[1]
        return s.flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.readout(self.features(x)))

    def reversible_parts(self) -> dict[str, bool]:
        """Which parts are reversible: never the lift and head; the stages and the
        down-sampling for the reversible families."""
        return {"normalize": self.normalize is not None, "lift": False,
                "stages": self.reversible, "downsampling": self.reversible, "head": False}

    def lipschitz_bound(self) -> float:
        """A certified upper bound of the network's l2 Lipschitz constant (input in pixels).

        Returns:
            The product of the pieces' bounds (normalisation, lift, blocks, down-sampling,
            head).

        Raises:
            NotImplementedError: for the reversible families (no block bounds).
        """
        if self.reversible:
            raise NotImplementedError(f"lipschitz_bound is implemented for the euler and "
                                      f"gradient_flow families, not {self.family!r}")
        side = self.image_size
        bound = 1.0
        if self.normalize is not None:
            bound *= self.normalize.lipschitz_bound(())
        bound *= self.lift.lipschitz_bound((1, self.lift.op.in_channels, side, side))
        for i, stage in enumerate(self.stages):
            shape = (1, self.widths[i], side, side)
            for blk in stage:
                bound *= blk.lipschitz_bound(shape)  # type: ignore[operator]
            if i < len(self.downs):
                pool, conv = self.downs[i]  # type: ignore[misc]
                bound *= pool.lipschitz_bound(shape)
                side //= 2
                bound *= conv.lipschitz_bound((1, self.widths[i], side, side))
        with torch.no_grad():
            bound *= float(torch.linalg.matrix_norm(self.head.effective_weight(), ord=2))
        return bound

    def n_params(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

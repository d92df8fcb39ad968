r"""Counter-based Gaussian noise: Philox4x32-10 and Box–Muller in plain tensor ops.

Why
---
On a CPU the Gaussian noise is the floor of a Langevin step (``normal_`` makes a few hundred
million normals per second and does not scale with threads), and ``torch.compile`` cannot help
a step that calls ``torch.randn``: inductor's CPU RNG is slower still. A *counter-based*
generator has no state to thread through the step: the noise for parameter element ``g`` at
step ``t`` is a pure function ``Z(seed, t, g)``, so it can be generated inside the same compiled
kernel that applies the update, on any number of threads, in any chunking, with the same bits.

Philox4x32-10 (Salmon, Moraes, Dror & Shaw, SC'11, "Parallel random numbers: as easy as 1, 2, 3")
-------------------------------------------------------------------------------------------------
Counter :math:`c = (c_0, c_1, c_2, c_3)` and key :math:`k = (k_0, k_1)`, all 32-bit words.
One round, with the multipliers :math:`M_0 = \mathtt{0xD2511F53}`, :math:`M_1 = \mathtt{0xCD9E8D57}`
and :math:`\operatorname{hi}, \operatorname{lo}` the upper and lower 32 bits of the 64-bit product:

.. math::

    (c_0, c_1, c_2, c_3) \leftarrow
    \bigl(\operatorname{hi}(M_1 c_2) \oplus c_1 \oplus k_0,\;
          \operatorname{lo}(M_1 c_2),\;
          \operatorname{hi}(M_0 c_0) \oplus c_3 \oplus k_1,\;
          \operatorname{lo}(M_0 c_0)\bigr),

and between rounds the key is bumped by the Weyl constants
:math:`k_0 \mathrel{+}= \mathtt{0x9E3779B9}`, :math:`k_1 \mathrel{+}= \mathtt{0xBB67AE85}`
(mod :math:`2^{32}`). Ten rounds. The rounds run in 32-bit integer arithmetic (wrapping
modulo :math:`2^{32}`), with the high half of the 32×32→64-bit product assembled from 16-bit
limbs (:func:`_mulhilo32`): 32-bit integer operations vectorise on AVX2, 64-bit products do
not (they were emulated lane by lane and dominated the step).
Checked against the published Random123 known-answer vectors (``tests/test_philox.py``).

Counter layout (the contract other modules rely on)
---------------------------------------------------
The Gaussian with global index :math:`g` (``g = offset + i`` for element ``i`` of a call) at
step :math:`t` under seed :math:`s` comes from Philox block :math:`b = \lfloor g/4 \rfloor`,
lane :math:`j = g \bmod 4`:

* key     :math:`= (s \bmod 2^{32},\; \lfloor s / 2^{32} \rfloor \bmod 2^{32})` — the 64-bit seed
  (an int64 is read as its two's-complement bit pattern);
* counter :math:`= (b \bmod 2^{32},\; \lfloor b / 2^{32} \rfloor,\;
  t \bmod 2^{32},\; \lfloor t / 2^{32} \rfloor \bmod 2^{32})`.

So steps and seeds address disjoint counters/keys, and each block of four consecutive
indices shares one Philox call. Element ``i`` is a pure function of ``(seed, step, offset + i)``:
splitting a buffer into pieces with matching offsets reproduces the same numbers.

Box–Muller, in basic IEEE operations only
-----------------------------------------
From the four output words :math:`w_0..w_3` of block :math:`b` take their top 24 bits
:math:`a_j = \lfloor w_j / 2^8 \rfloor`; words 0 and 2 give radii, words 1 and 3 angles:

.. math::

    u_j = (2 \lfloor a_j/2 \rfloor + 1)\, 2^{-24} \in (0, 1),\qquad
    \rho_j = \sqrt{-2 \ln u_j}\ (j = 0, 2),\qquad
    \theta_j = 2\pi\, (a_j + \tfrac12)\, 2^{-24}\ (j = 1, 3),

.. math::

    Z_{4b} = \rho_0 \cos\theta_1,\quad Z_{4b+1} = \rho_0 \sin\theta_1,\quad
    Z_{4b+2} = \rho_2 \cos\theta_3,\quad Z_{4b+3} = \rho_2 \sin\theta_3 .

Choices the method leaves open, and why:

* :math:`u_j` is an odd multiple of :math:`2^{-24}`, exact in float32, strictly inside (0, 1),
  symmetric about 1/2: the logarithm is always finite. Consequence: :math:`|Z| \le
  \sqrt{48 \ln 2} \approx 5.77` (the Gaussian tail beyond that has probability
  :math:`\approx 8\cdot10^{-9}`); values are float32-resolution.
* :math:`\ln`, :math:`\sin`, :math:`\cos` and :math:`\sqrt{\ }` are evaluated here with
  ``+ - * /``, comparisons and bit casts only (exact quadrant reduction of the integer angle and
  Taylor polynomials on :math:`|\varphi| \le \pi/4`; exponent split and the atanh series for
  :math:`\ln`; three Heron steps for :math:`\sqrt{\ }`), each within 2 ulp of float32.
  Library ``log``/``sin``/``sqrt`` differ by an ulp between eager ATen and inductor's vectorised
  code, which would break "same numbers compiled or not"; IEEE basic operations do not (inductor
  compiles with ``-ffp-contract=off`` by default, so no FMA contraction either).
* The stream is float32; other dtypes are the float32 values cast
  (``philox_normal(..., dtype=torch.float64) == philox_normal(...).double()``).

Fused steps and compilation
---------------------------
:func:`baoab_philox_step` and :func:`sgld_philox_step` update flat buffers in place; they work
in pieces of ``_STEP_CHUNK`` (4M) elements, each piece one call of a kernel that generates its
noise and applies the update. ``get_compiled(step)`` compiles that kernel once with dynamic
shapes (inductor fuses Philox and Box–Muller into one loop writing the piece's noise to a
temporary, then one loop for the update); it falls back to the same eager kernel when no
compiler works. The pieces keep the temporary below glibc's 32 MB mmap threshold, which avoids
page-faulting a fresh 40 MB buffer on every step at 10M parameters. Measured speeds are in
``benchmarks/noise.py``. The compiled call has a fixed cost of tens of microseconds (guards,
argument checks), so small models are better served by eager ``normal_``.

Tensor lists (what the optimizers use)
--------------------------------------
For float32 tensors on the CPU the optimizers use the C kernels of
:mod:`heatbath.optim._native` (the numbers of this module, bit for bit, generated inside the
update; see :class:`ListNoise`'s ``native``). The tensor-op path below serves other dtypes and
devices and machines without a C compiler.

:class:`ListNoise` serves one parameter group: tensor ``k`` has its own key and global offset
(FSDP2 shards use their offset in the full tensor). Large tensors: one compiled call per piece
writes the step's noise into a persistent buffer and checks the gradient for NaN/inf in the same
pass (so the optimizer's finiteness check costs no extra pass), then one compiled call per tensor
applies the method's whole update. Small tensors (below :data:`SMALL_TENSOR`) are handled
together: one call draws their normals for the next ``K`` steps (the numbers only depend on
(key, step, index), so they can be made ahead), and each step is a few ``foreach`` ops. Both paths
give the numbers of :func:`sgld_philox_step` / :func:`baoab_philox_step` bit for bit. Adaptive
Langevin draws N normals per step, not 2N: see :func:`adl_kinetic_draw` for the exact argument.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from heatbath._validate import check_int

from . import _native

__all__ = [
    "PHILOX_M",
    "PHILOX_W",
    "philox4x32_10",
    "philox_normal",
    "philox_fill_",
    "baoab_philox_step",
    "sgld_philox_step",
    "get_compiled",
]

PHILOX_M = (0xD2511F53, 0xCD9E8D57)  # round multipliers M_0, M_1
PHILOX_W = (0x9E3779B9, 0xBB67AE85)  # Weyl key increments W_0, W_1
_ROUNDS = 10
_MASK32 = 0xFFFFFFFF
_MAX_INDEX = 1 << 62  # offset + n must stay below this (block index < 2**60)
_EAGER_CHUNK_BLOCKS = 1 << 15  # eager path works in cache-sized pieces of Philox blocks
_STEP_CHUNK = 1 << 22  # elements per piece of a fused step: a 16 MB float32 noise temporary
# stays below glibc's 32 MB mmap ceiling, so it is reused instead of page-faulted every step

# ln 2 split so that e * _LN2_HI is exact for |e| < 2**9 (Cody–Waite)
_LN2_HI = 0.693145751953125
_LN2_LO = 1.428606820309417232e-06
_SQRT2 = 1.4142135623730951

ScalarLike = Tensor | float


# --------------------------------------------------------------------------------------------
# Philox4x32-10
# --------------------------------------------------------------------------------------------
def _signed32(v: int) -> int:
    """The int32 whose two's-complement bits are the uint32 ``v``."""
    return v - (1 << 32) if v >= 1 << 31 else v


def _to_i32(x: Tensor) -> Tensor:
    """int64 holding uint32 values -> int32 with the same 32 bits (no out-of-range cast)."""
    return (((x + 0x80000000) & _MASK32) - 0x80000000).to(torch.int32)


def _from_i32(x: Tensor) -> Tensor:
    """int32 bit patterns -> int64 holding the uint32 values."""
    return x.to(torch.int64) & _MASK32


def _mulhilo32(m: int, x: Tensor) -> tuple[Tensor, Tensor]:
    r"""(hi, lo) 32-bit halves of ``m * x`` for a constant uint32 ``m`` and int32 ``x``
    holding uint32 bit patterns; results are int32 bit patterns.

    Everything is 32-bit integer arithmetic, which vectorises on every SIMD level (64-bit
    integer products have no AVX2 instruction: inductor and ATen emulate them lane by lane,
    which made Philox the cost of a noisy step). Products and sums wrap modulo :math:`2^{32}`
    (two's complement, what torch's int32 kernels do). With 16-bit limbs
    :math:`x = 2^{16} x_h + x_l`, :math:`m = 2^{16} m_h + m_l`:
    :math:`\operatorname{lo} = m x \bmod 2^{32}` is one wrapping product, and

    .. math::

        \operatorname{hi} = x_h m_h + \lfloor x_l m_h / 2^{16} \rfloor
            + \lfloor x_h m_l / 2^{16} \rfloor
            + \bigl\lfloor (\lfloor x_l m_l / 2^{16} \rfloor + (x_l m_h \bmod 2^{16})
            + (x_h m_l \bmod 2^{16})) / 2^{16} \bigr\rfloor,

    each partial product below :math:`2^{32}` (read as unsigned: an arithmetic shift followed
    by a 16-bit mask is the logical shift).
    """
    ml, mh = m & 0xFFFF, m >> 16
    xl = x & 0xFFFF
    xh = (x >> 16) & 0xFFFF
    ll = xl * ml
    lh = xl * mh
    hl = xh * ml
    mid = ((ll >> 16) & 0xFFFF) + (lh & 0xFFFF) + (hl & 0xFFFF)
    hi = xh * mh + ((lh >> 16) & 0xFFFF) + ((hl >> 16) & 0xFFFF) + (mid >> 16)
    return hi, x * _signed32(m)


def _mulhilo(m: int, x: Tensor) -> tuple[Tensor, Tensor]:
    """(hi, lo) of ``m * x`` for int64 ``x`` in ``[0, 2**32)``, as int64 (via
    :func:`_mulhilo32`)."""
    hi, lo = _mulhilo32(m, _to_i32(x))
    return _from_i32(hi), _from_i32(lo)


def _philox_words(
    c0: Tensor, c1: Tensor, c2: Tensor, c3: Tensor, k0: Tensor, k1: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Ten Philox4x32 rounds on broadcastable int64 words holding uint32 values; returns the
    output words as int32 bit patterns (``_from_i32`` gives the uint32 values). The key
    schedule runs in int64; the rounds in 32-bit arithmetic (:func:`_mulhilo32`)."""
    m0, m1 = PHILOX_M
    w0, w1 = PHILOX_W
    x0, x1, x2, x3 = (_to_i32(c) for c in (c0, c1, c2, c3))
    for r in range(_ROUNDS):
        if r:
            k0 = (k0 + w0) & _MASK32
            k1 = (k1 + w1) & _MASK32
        hi0, lo0 = _mulhilo32(m0, x0)
        hi1, lo1 = _mulhilo32(m1, x2)
        x0, x1, x2, x3 = hi1 ^ x1 ^ _to_i32(k0), lo1, hi0 ^ x3 ^ _to_i32(k1), lo0
    return x0, x1, x2, x3


def _check_uint32_tensor(name: str, x: Tensor, width: int) -> None:
    if not isinstance(x, Tensor) or x.dtype != torch.int64:
        raise ValueError(f"{name} must be an int64 tensor of uint32 values, got "
                         f"{type(x).__name__ if not isinstance(x, Tensor) else x.dtype}")
    if x.dim() == 0 or x.shape[-1] != width:
        raise ValueError(f"{name} must have last dimension {width}, got shape {tuple(x.shape)}")
    if not torch.compiler.is_compiling() and x.numel() > 0:
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > _MASK32:
            raise ValueError(f"{name} values must be in [0, 4294967295], got range [{lo}, {hi}]")


def philox4x32_10(ctr: Tensor, key: Tensor) -> Tensor:
    """Philox4x32-10 block function (Random123), elementwise over leading dimensions.

    Args:
        ctr: int64 tensor ``[..., 4]`` of uint32 counter words ``(c0, c1, c2, c3)``.
        key: int64 tensor ``[..., 2]`` of uint32 key words ``(k0, k1)``; leading dimensions
            broadcast against ``ctr``'s.

    Returns:
        int64 tensor ``[..., 4]`` of uint32 output words, the same as Random123's
        ``philox4x32(ctr, key)`` with 10 rounds.
    """
    _check_uint32_tensor("ctr", ctr, 4)
    _check_uint32_tensor("key", key, 2)
    c = ctr.unbind(-1)
    k = key.unbind(-1)
    return torch.stack([_from_i32(w) for w in _philox_words(c[0], c[1], c[2], c[3], k[0],
                                                             k[1])], dim=-1)


# --------------------------------------------------------------------------------------------
# Box–Muller from integers, with basic IEEE operations only
# --------------------------------------------------------------------------------------------
def _sqrt_heron(y: Tensor) -> Tensor:
    r"""sqrt(y) for float32 ``y > 0``: bit-level first guess (relative error < 4 %), then three
    Heron steps :math:`s \leftarrow (s + y/s)/2` (error :math:`e \to e^2/2`: 4e-2, 8e-4, 3e-7,
    5e-14), so the result is rounding-limited: within 1 ulp."""
    s = ((y.view(torch.int32) >> 1) + 0x1FBD1DF5).view(torch.float32)
    for _ in range(3):
        s = 0.5 * (s + y / s)
    return s


def _neg2log_unit(a: Tensor) -> Tensor:
    r""":math:`-2 \ln u` for :math:`u = k\, 2^{-24}`, :math:`k = 2\lfloor a/2 \rfloor + 1`,
    ``a`` int32 in ``[0, 2**24)``.

    The odd integer :math:`k < 2^{24}` is exact in float32. Its bits give :math:`k = 2^e m`,
    :math:`m \in [1, 2)`; if :math:`m > \sqrt2` then :math:`m \leftarrow m/2,\ e \leftarrow e+1`,
    so :math:`m \in [\sqrt2/2, \sqrt2]`. Then :math:`\ln m = 2\,\mathrm{atanh}\, s =
    2(s + s^3/3 + \dots + s^9/9)` with :math:`s = (m-1)/(m+1)`, :math:`|s| \le 0.172`
    (truncation below 4e-10), and :math:`\ln u = (e - 24)\ln 2 + \ln m` with :math:`\ln 2`
    split Cody–Waite style. Within 2 ulp; never infinite since :math:`k \ge 1`.
    """
    f = (a | 1).to(torch.float32)
    bits = f.view(torch.int32)
    e = (bits >> 23) - 127
    m = ((bits & 0x7FFFFF) | 0x3F800000).view(torch.float32)  # mantissa in [1, 2)
    big = m > _SQRT2
    m = torch.where(big, m * 0.5, m)
    e = torch.where(big, e + 1, e)
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    ln_m = s * (2.0 + s2 * (2.0 / 3.0 + s2 * (2.0 / 5.0 + s2 * (2.0 / 7.0 + s2 * (2.0 / 9.0)))))
    ef = (e - 24).to(torch.float32)
    return -2.0 * (ef * _LN2_HI + (ef * _LN2_LO + ln_m))


def _cos_sin_turn(a: Tensor) -> tuple[Tensor, Tensor]:
    r""":math:`(\cos\theta, \sin\theta)` for :math:`\theta = 2\pi (a + 1/2) 2^{-24}`, ``a``
    int32 in ``[0, 2**24)``.

    Exact quadrant reduction on the integer: with :math:`a + 2^{21} \equiv 2^{22} q + r +
    2^{21} \pmod{2^{24}}`, :math:`\theta = q\pi/2 + \varphi`, :math:`\varphi = (2r+1)\pi
    2^{-24}`, :math:`|\varphi| < \pi/4`; then Taylor polynomials to :math:`\varphi^9` (sin) and
    :math:`\varphi^{10}` (cos), truncation error below 3e-9, and the quadrant's swap and signs.
    """
    a2 = (a + (1 << 21)) & ((1 << 24) - 1)
    q = a2 >> 22
    r = (a2 & ((1 << 22) - 1)) - (1 << 21)
    phi = (2 * r + 1).to(torch.float32) * (math.pi / (1 << 24))
    p2 = phi * phi
    sin_p = phi + phi * p2 * (
        -1.0 / 6.0 + p2 * (1.0 / 120.0 + p2 * (-1.0 / 5040.0 + p2 * (1.0 / 362880.0)))
    )
    cos_p = 1.0 + p2 * (
        -0.5 + p2 * (1.0 / 24.0 + p2 * (-1.0 / 720.0 + p2 * (1.0 / 40320.0
                                                             + p2 * (-1.0 / 3628800.0))))
    )
    odd = (q & 1) == 1  # quadrants 1, 3 swap cos and sin
    c = torch.where(odd, sin_p, cos_p)
    s = torch.where(odd, cos_p, sin_p)
    c = torch.where(((q + 1) & 2) == 2, -c, c)  # cos < 0 in quadrants 1, 2
    s = torch.where((q & 2) == 2, -s, s)  # sin < 0 in quadrants 2, 3
    return c, s


def _normal_blocks(nb: int, b0: Tensor | int, keys: tuple[Tensor, ...]) -> Tensor:
    """Float32 Gaussians ``Z[4*b0 : 4*(b0+nb)]`` (layout in the module docstring);
    ``keys = (k0, k1, t0, t1)`` from :func:`_key_and_step`."""
    k0, k1, t0, t1 = keys
    b = torch.arange(nb, dtype=torch.int64, device=k0.device) + b0
    w = _philox_words(b & _MASK32, b >> 32, t0, t1, k0, k1)
    a = [(x >> 8) & 0xFFFFFF for x in w]  # top 24 bits (int32 words)
    rho0 = _sqrt_heron(_neg2log_unit(a[0]))
    rho2 = _sqrt_heron(_neg2log_unit(a[2]))
    c1, s1 = _cos_sin_turn(a[1])
    c3, s3 = _cos_sin_turn(a[3])
    return torch.stack((rho0 * c1, rho0 * s1, rho2 * c3, rho2 * s3), dim=1).view(-1)


def _normals(n: int, lead: int, b0: Tensor | int, seed: Tensor, step: Tensor) -> Tensor:
    """Float32 ``Z[4*b0 + lead : 4*b0 + lead + n]``; eager works in cache-sized block chunks."""
    keys = _key_and_step(seed, step)
    nb = (lead + n + 3) // 4
    if torch.compiler.is_compiling() or nb <= _EAGER_CHUNK_BLOCKS:
        z = _normal_blocks(nb, b0, keys)
    else:
        z = torch.cat([_normal_blocks(min(_EAGER_CHUNK_BLOCKS, nb - j), b0 + j, keys)
                       for j in range(0, nb, _EAGER_CHUNK_BLOCKS)])
    return z[lead:lead + n]


def _as_u64_tensor(name: str, x: Tensor | int) -> Tensor:
    if isinstance(x, Tensor):
        if x.dim() != 0 or x.dtype != torch.int64:
            raise ValueError(f"{name} must be a 0-d int64 tensor or an int in [0, 2**63 - 1], "
                             f"got a {x.dtype} tensor of shape {tuple(x.shape)}")
        return x
    return torch.tensor(check_int(name, x, low=0, high=(1 << 63) - 1), dtype=torch.int64)


def _key_and_step(seed: Tensor, step: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Key words (k0, k1) from the seed and counter words (c2, c3) from the step (0-d int64)."""
    return seed & _MASK32, (seed >> 32) & _MASK32, step & _MASK32, (step >> 32) & _MASK32


def _check_range(n: int, offset: int) -> None:
    check_int("n", n, low=0)
    check_int("offset", offset, low=0)
    if offset + n > _MAX_INDEX:
        raise ValueError(f"offset + n must be at most 2**62, got {offset + n}")


def philox_normal(
    n: int,
    seed: Tensor | int,
    step: Tensor | int,
    offset: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """``n`` iid standard normals ``Z(seed, step, offset + i)``, ``i = 0..n-1``.

    Counter-based: no generator state; element ``i`` depends only on ``(seed, step, offset + i)``
    (layout and Box–Muller variant in the module docstring), bit-identical eager or inside
    ``torch.compile`` and for any thread count.

    Args:
        n: number of values, ``>= 0``.
        seed: int in ``[0, 2**63 - 1]`` or a 0-d int64 tensor (read as 64 bits) — the Philox key.
        step: int in ``[0, 2**63 - 1]`` or a 0-d int64 tensor — counter words 2, 3. Pass a tensor
            when calling from a compiled function, so a new step does not recompile.
        offset: global index of element 0, ``>= 0`` (``offset + n <= 2**62``).
        dtype: floating dtype of the result; values are the float32 stream cast to it.
    """
    _check_range(n, offset)
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    z = _normals(n, offset % 4, offset // 4, _as_u64_tensor("seed", seed),
                 _as_u64_tensor("step", step))
    return z if dtype == torch.float32 else z.to(dtype)


# --------------------------------------------------------------------------------------------
# Fused update steps (flat 1-D buffers, in place)
# --------------------------------------------------------------------------------------------
def _check_flat(theta: Tensor, **tensors: Tensor) -> None:
    if not isinstance(theta, Tensor) or theta.dim() != 1 or not theta.is_contiguous():
        raise ValueError("theta must be a contiguous 1-D tensor")
    if not theta.dtype.is_floating_point:
        raise ValueError(f"theta must have a floating dtype, got {theta.dtype}")
    for name, x in tensors.items():
        if not isinstance(x, Tensor) or x.dim() != 1 or not x.is_contiguous():
            raise ValueError(f"{name} must be a contiguous 1-D tensor")
        if x.shape != theta.shape or x.dtype != theta.dtype:
            raise ValueError(f"{name} must match theta's shape {tuple(theta.shape)} and dtype "
                             f"{theta.dtype}, got {tuple(x.shape)} {x.dtype}")


def _scalar(x: ScalarLike, dtype: torch.dtype) -> Tensor:
    """A step coefficient as a 0-d tensor of the parameters' dtype (computation dtype)."""
    if isinstance(x, Tensor):
        return x if x.dtype == dtype else x.to(dtype)
    return torch.tensor(x, dtype=dtype)


def _pieces(n: int, offset: int) -> list[tuple[int, int, Tensor, int]]:
    """Split ``[0, n)`` into pieces of at most ``_STEP_CHUNK`` elements whose global starts
    after the first are multiples of 4: ``(start, stop, first block, lead)``. Pieces keep the
    noise temporary below the size glibc returns to the OS (so no page faults each step)."""
    out = []
    i = 0
    while i < n:
        g = offset + i
        stop = min(n, i + _STEP_CHUNK - g % 4)
        out.append((i, stop, torch.tensor(g // 4, dtype=torch.int64), g % 4))
        i = stop
    return out


def _baoab_kernel(theta: Tensor, mom: Tensor, grad: Tensor, kick: Tensor, half_h: Tensor,
                  c: Tensor, d: Tensor, seed: Tensor, step: Tensor, b0: Tensor,
                  lead: int) -> None:
    """BAOAB on one piece (the unit ``get_compiled`` compiles, with dynamic shapes)."""
    r = _normals(theta.shape[0], lead, b0, seed, step).to(theta.dtype)
    mom.add_(kick * grad)
    theta.add_(half_h * mom)
    mom.mul_(c).add_(d * r)
    theta.add_(half_h * mom)


def _sgld_kernel(theta: Tensor, grad: Tensor, h: Tensor, noise_scale: Tensor, seed: Tensor,
                 step: Tensor, b0: Tensor, lead: int) -> None:
    """SGLD on one piece (the unit ``get_compiled`` compiles, with dynamic shapes)."""
    r = _normals(theta.shape[0], lead, b0, seed, step).to(theta.dtype)
    theta.add_(noise_scale * r - h * grad)


def baoab_philox_step(
    theta: Tensor,
    mom: Tensor,
    grad: Tensor,
    kick: ScalarLike,
    half_h: ScalarLike,
    c: ScalarLike,
    d: ScalarLike,
    seed: Tensor | int,
    step: Tensor | int,
    offset: int = 0,
    *,
    kernel: Callable[..., None] | None = None,
) -> None:
    r"""One merged-kick BAOAB step on flat buffers, in place, with Philox noise.

    .. math::

        p \leftarrow p + \kappa\, g,\quad
        \theta \leftarrow \theta + \tfrac{h}{2} p,\quad
        p \leftarrow c\, p + d\, R,\quad
        \theta \leftarrow \theta + \tfrac{h}{2} p,

    with :math:`R_i = Z(\mathrm{seed}, \mathrm{step}, \mathrm{offset} + i)`
    (``philox_normal``). For Langevin BAOAB :math:`\kappa = -h` (merged B-kicks, ``grad`` is
    :math:`\nabla L`), :math:`c = e^{-\gamma h}`, :math:`d = \sqrt{\tau(1 - c^2)}`; the caller
    chooses them, this function only applies them. Each operation is rounded as written
    (products, then sums; no FMA), identically eager and compiled.

    ``theta``, ``mom``, ``grad``: contiguous 1-D tensors of one floating dtype; ``kick, half_h,
    c, d``: 0-d tensors or floats, cast to that dtype; ``seed``, ``step``: ints or 0-d int64
    tensors; ``offset``: global index of element 0. Work is done in pieces of
    ``_STEP_CHUNK`` elements by ``kernel`` (default: eager); ``get_compiled(baoab_philox_step)``
    supplies the compiled kernel, compiled once with dynamic shapes, so new sizes, offsets,
    steps and coefficients do not recompile.
    """
    _check_flat(theta, mom=mom, grad=grad)
    _check_range(theta.numel(), offset)
    dt = theta.dtype
    coef = [_scalar(v, dt) for v in (kick, half_h, c, d)]
    s, t = _as_u64_tensor("seed", seed), _as_u64_tensor("step", step)
    run = _baoab_kernel if kernel is None else kernel
    with torch.no_grad():  # an optimizer update, never part of a graph
        for i, j, b0, lead in _pieces(theta.numel(), offset):
            run(theta[i:j], mom[i:j], grad[i:j], *coef, s, t, b0, lead)


def sgld_philox_step(
    theta: Tensor,
    grad: Tensor,
    h: ScalarLike,
    noise_scale: ScalarLike,
    seed: Tensor | int,
    step: Tensor | int,
    offset: int = 0,
    *,
    kernel: Callable[..., None] | None = None,
) -> None:
    r"""One SGLD (Euler–Maruyama) step on a flat buffer, in place, with Philox noise:

    .. math:: \theta \leftarrow \theta + \bigl(\sigma R - h\, g\bigr),
        \qquad R_i = Z(\mathrm{seed}, \mathrm{step}, \mathrm{offset} + i),

    :math:`\sigma` = ``noise_scale`` (e.g. :math:`\sqrt{2 h \tau}`). Rounded as written.
    Same argument rules as :func:`baoab_philox_step`.
    """
    _check_flat(theta, grad=grad)
    _check_range(theta.numel(), offset)
    dt = theta.dtype
    coef = [_scalar(v, dt) for v in (h, noise_scale)]
    s, t = _as_u64_tensor("seed", seed), _as_u64_tensor("step", step)
    run = _sgld_kernel if kernel is None else kernel
    with torch.no_grad():  # an optimizer update, never part of a graph
        for i, j, b0, lead in _pieces(theta.numel(), offset):
            run(theta[i:j], grad[i:j], *coef, s, t, b0, lead)


def _fill_kernel(out: Tensor, std: Tensor, seed: Tensor, step: Tensor, b0: Tensor,
                 lead: int) -> None:
    """``out = std * Z`` on one piece (the unit ``get_compiled`` compiles)."""
    out.copy_(std * _normals(out.shape[0], lead, b0, seed, step).to(out.dtype))


def philox_fill_(
    out: Tensor,
    seed: Tensor | int,
    step: Tensor | int,
    offset: int = 0,
    std: ScalarLike = 1.0,
    *,
    kernel: Callable[..., None] | None = None,
) -> Tensor:
    r"""Fill a contiguous buffer in place with :math:`\sigma Z(\mathrm{seed}, \mathrm{step},
    \mathrm{offset} + i)`, ``i`` the flat index; the drop-in replacement for
    ``out.normal_(0, std)`` (``std`` a float or 0-d tensor). Returns ``out``.

    Costs one more pass over memory than a fused step, but leaves any update code unchanged.
    ``get_compiled(philox_fill_)`` gives the compiled version (same numbers).
    """
    if not isinstance(out, Tensor) or not out.is_contiguous() or not out.dtype.is_floating_point:
        raise ValueError("out must be a contiguous floating-point tensor")
    _check_range(out.numel(), offset)
    sd = _scalar(std, out.dtype)
    s, t = _as_u64_tensor("seed", seed), _as_u64_tensor("step", step)
    run = _fill_kernel if kernel is None else kernel
    flat = out.view(-1)
    with torch.no_grad():
        for i, j, b0, lead in _pieces(flat.numel(), offset):
            run(flat[i:j], sd, s, t, b0, lead)
    return out


_KERNELS: dict[Callable[..., Any], Callable[..., None]] = {
    baoab_philox_step: _baoab_kernel,
    sgld_philox_step: _sgld_kernel,
    philox_fill_: _fill_kernel,
}


# --------------------------------------------------------------------------------------------
# Compilation with a permanent eager fallback
# --------------------------------------------------------------------------------------------
_warned: set[str] = set()


def _warn_once(key: str, msg: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(msg, RuntimeWarning, stacklevel=4)


class _CompiledOrEager:
    """Calls the compiled ``fn``; if the first compiled call fails while the eager call with the
    same arguments succeeds (no C++ compiler, unsupported platform ...), warns once and uses the
    eager function from then on. Both paths give the same numbers. A compile error is raised
    before the compiled code touches its arguments, so the eager retry starts from clean state.
    """

    def __init__(self, fn: Callable[..., Any], compiled: Callable[..., Any] | None) -> None:
        self.fn = fn
        self._compiled = compiled
        self._verified = False
        self.__name__ = getattr(fn, "__name__", "fn")

    @property
    def is_compiled(self) -> bool:
        """True while the compiled version is in use."""
        return self._compiled is not None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._compiled is None:
            return self.fn(*args, **kwargs)
        if self._verified:
            return self._compiled(*args, **kwargs)
        try:
            out = self._compiled(*args, **kwargs)
        except Exception as err:  # compile-time failure: decide by retrying eagerly
            out = self.fn(*args, **kwargs)  # a genuine user error raises here, unchanged
            self._compiled = None
            first = str(err).splitlines()[0] if str(err) else ""
            _warn_once(f"fallback:{self.__name__}",
                       f"heatbath: torch.compile of {self.__name__} failed "
                       f"({type(err).__name__}: {first}); using the eager version "
                       "(same numbers, slower).")
            return out
        self._verified = True
        return out


class _StepWithKernel:
    """A step function bound to a (compiled or eager) piece kernel."""

    def __init__(self, step_fn: Callable[..., Any], kernel: _CompiledOrEager) -> None:
        self.step_fn = step_fn
        self.kernel = kernel
        self.__name__ = step_fn.__name__
        self.__doc__ = step_fn.__doc__

    @property
    def is_compiled(self) -> bool:
        """True while the compiled kernel is in use."""
        return self.kernel.is_compiled

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.step_fn(*args, kernel=self.kernel, **kwargs)


def _try_compile(fn: Callable[..., Any], dynamic: bool) -> Callable[..., Any] | None:
    if os.environ.get("HEATBATH_COMPILE", "1") == "0":
        return None
    try:
        return torch.compile(fn, fullgraph=True, dynamic=dynamic)
    except Exception as err:  # e.g. dynamo unsupported on this Python
        _warn_once("compile-unavailable",
                   f"heatbath: torch.compile unavailable ({type(err).__name__}); using eager.")
        return None


_COMPILED: dict[Callable[..., Any], _CompiledOrEager | _StepWithKernel] = {}


def get_compiled(fn: Callable[..., Any]) -> _CompiledOrEager | _StepWithKernel:
    """Compiled version of ``fn`` with a permanent eager fallback (same numbers either way).

    For :func:`baoab_philox_step`, :func:`sgld_philox_step` and :func:`philox_fill_` the
    per-piece kernel is compiled (``fullgraph=True, dynamic=True``: one compile serves every
    size, offset, step and coefficient; a new dtype or thread count recompiles) and the
    returned callable has the function's signature. Any other ``fn`` gets
    ``torch.compile(fn, fullgraph=True, dynamic=False)``. Falls back to eager, with a one-time
    ``RuntimeWarning``, when ``torch.compile`` is unavailable or the first call fails to
    compile; the environment variable ``HEATBATH_COMPILE=0`` forces eager. The result has
    ``.is_compiled``. The first call compiles: about 20 s of CPU for the Philox graph
    (inductor's on-disk cache makes later processes fast). One wrapper per ``fn`` per process
    (memoised), so every optimizer shares the compiled graph and a fallback, once decided,
    holds everywhere.
    """
    if fn not in _COMPILED:
        kernel = _KERNELS.get(fn)
        if kernel is not None:
            compiled_kernel = _CompiledOrEager(kernel, _try_compile(kernel, True))
            _COMPILED[fn] = _StepWithKernel(fn, compiled_kernel)
        else:
            _COMPILED[fn] = _CompiledOrEager(fn, _try_compile(fn, False))
    return _COMPILED[fn]


# --------------------------------------------------------------------------------------------
# Tensor-list steps: a group's own tensors, each with its own key and global offset
# --------------------------------------------------------------------------------------------
SMALL_TENSOR = 1 << 16
"""Tensors with fewer elements take their noise from a multi-step cache (:class:`ListNoise`):
below this size a compiled call's fixed cost (tens of µs) would dominate the tensor's work."""
_CACHE_ELEMS = 1 << 19  # normals per cache refill (steps x small elements), 2 MB in float32
_CACHE_MAX_STEPS = 256
_SCALAR_C1 = 0xF0000000  # counter word 1 of scalar draws; element blocks have c1 < 2**28


def _gen_check_kernel(out: Tensor, grad: Tensor, seed: Tensor, step: Tensor, b0: Tensor,
                      lead: int) -> Tensor:
    """``out = Z`` on one piece, and ``sum(grad * 0)``: NaN exactly when ``grad`` holds a NaN or
    an inf (``inf * 0`` is NaN; finite values give zeros, so no overflow). One compiled call
    generates the noise and checks the gradient it will be combined with."""
    out.copy_(_normals(out.shape[0], lead, b0, seed, step).to(out.dtype))
    return (grad * 0).sum()


def _multi_step_kernel(blocks: Tensor, k0: Tensor, k1: Tensor, steps: Tensor) -> Tensor:
    """Normals of the given Philox blocks (one key per block) at several steps: ``[K, 4 nb]``,
    row ``j`` holding blocks ``blocks`` at step ``steps[j]`` (layout in the module docstring)."""
    t = steps.unsqueeze(1)
    w = _philox_words(blocks & _MASK32, blocks >> 32, t & _MASK32, (t >> 32) & _MASK32, k0, k1)
    a = [(x >> 8) & 0xFFFFFF for x in w]  # top 24 bits (int32 words)
    rho0 = _sqrt_heron(_neg2log_unit(a[0]))
    rho2 = _sqrt_heron(_neg2log_unit(a[2]))
    c1, s1 = _cos_sin_turn(a[1])
    c3, s3 = _cos_sin_turn(a[3])
    z = torch.stack((rho0 * c1, rho0 * s1, rho2 * c3, rho2 * s3), dim=-1)
    return z.reshape(steps.shape[0], -1)


def _sgld_update(theta: Tensor, grad: Tensor, r: Tensor, h: Tensor, std: Tensor) -> None:
    """SGLD with given noise, rounded as :func:`_sgld_kernel`."""
    theta.add_(std * r - h * grad)


def _baoab_update(theta: Tensor, mom: Tensor, grad: Tensor, r: Tensor, kick: Tensor,
                  half_h: Tensor, c: Tensor, d: Tensor) -> None:
    """BAOAB with given noise, rounded as :func:`_baoab_kernel`."""
    mom.add_(kick * grad)
    theta.add_(half_h * mom)
    mom.mul_(c).add_(d * r)
    theta.add_(half_h * mom)


def _adl_update1(theta: Tensor, mom: Tensor, grad: Tensor, r: Tensor, kick: Tensor,
                 half_h: Tensor, f: Tensor, cz: Tensor, s2: Tensor) -> Tensor:
    """Adaptive Langevin up to E, on ``[R, m]`` views: B, A, C (factor ``f``, ``[R, 1]``), and
    the merged D; returns :math:`|p' + c_z R|^2` per replica (see :func:`adl_kinetic_draw`)."""
    mom.add_(kick * grad)
    theta.add_(half_h * mom)
    mom.mul_(f)
    a = mom + cz * r
    kin = (a * a).sum(1)
    mom.add_(s2 * r)
    return kin


def _adl_update1_nonoise(theta: Tensor, mom: Tensor, grad: Tensor, kick: Tensor,
                         half_h: Tensor, f: Tensor) -> Tensor:
    """:func:`_adl_update1` with :math:`\\sigma_A = 0`."""
    mom.add_(kick * grad)
    theta.add_(half_h * mom)
    mom.mul_(f)
    return (mom * mom).sum(1)


def _adl_update2(theta: Tensor, mom: Tensor, f: Tensor, half_h: Tensor) -> None:
    """Adaptive Langevin after E: C (factor ``f``, ``[R, 1]``), then A."""
    mom.mul_(f)
    theta.add_(half_h * mom)


_LIST_KERNELS: dict[str, Callable[..., Any]] = {
    "gen_check": _gen_check_kernel,
    "multi_step": _multi_step_kernel,
    "sgld": _sgld_update,
    "baoab": _baoab_update,
    "adl1": _adl_update1,
    "adl1_nonoise": _adl_update1_nonoise,
    "adl2": _adl_update2,
}
_LIST_COMPILED: dict[str, _CompiledOrEager] = {}


def _list_kernel(name: str, compiled: bool) -> Callable[..., Any]:
    fn = _LIST_KERNELS[name]
    if not compiled:
        return fn
    if name not in _LIST_COMPILED:
        _LIST_COMPILED[name] = _CompiledOrEager(fn, _try_compile(fn, True))
    return _LIST_COMPILED[name]


# -- scalar draws for Adaptive Langevin's merged D half-steps (pure Python, float64) ----------
def _philox_py(c: tuple[int, int, int, int], k0: int, k1: int) -> tuple[int, int, int, int]:
    """Philox4x32-10 on Python ints (same function as :func:`philox4x32_10`)."""
    c0, c1, c2, c3 = c
    m0, m1 = PHILOX_M
    w0, w1 = PHILOX_W
    for r in range(_ROUNDS):
        if r:
            k0 = (k0 + w0) & _MASK32
            k1 = (k1 + w1) & _MASK32
        p0, p1 = m0 * c0, m1 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0, p1 & _MASK32, (p0 >> 32) ^ c3 ^ k1,
                          p0 & _MASK32)
    return c0, c1, c2, c3


def _unit(w: int) -> float:
    """A uniform in (0, 1) from a 32-bit word: :math:`(w + 1/2)\\, 2^{-32}`."""
    return (w + 0.5) * 2.0**-32


def adl_kinetic_draw(key: int, step: int, replica: int, n: int, a2: float, c: float) -> float:
    r"""Kinetic energy :math:`|a + c Z|^2` seen by E between the two D half-steps, drawn exactly.

    Adaptive Langevin's :math:`D_{h/2} E_h D_{h/2}` adds :math:`s(R_1 + R_2)` to the momentum
    :math:`p'` (:math:`s = \sigma_A\sqrt{h/2}`) and E reads :math:`|p' + s R_1|^2`. With
    :math:`Z_1 = (R_1 + R_2)/\sqrt2` and :math:`Z_2 = (R_1 - R_2)/\sqrt2`, independent standard
    normals, the momentum after both half-steps is :math:`p' + \sqrt2 s Z_1` and E reads
    :math:`|a + c Z_2|^2` with :math:`a = p' + c Z_1`, :math:`c = s/\sqrt2`. By rotation
    invariance of :math:`Z_2`,

    .. math:: |a + c Z_2|^2 \overset{d}{=} (|a| + c X)^2 + c^2 \chi^2_{n-1},

    with :math:`X \sim N(0, 1)` and :math:`\chi^2_{n-1}` independent of each other and of
    :math:`(p', Z_1)`. So the step needs :math:`n` normals (:math:`Z_1`) plus two scalars per
    thermostat segment instead of :math:`2n` normals, and the joint law of the new momentum and
    the new ξ is exactly that of the two-draw scheme.

    The scalars come from Philox blocks keyed by ``key`` at counter
    ``(j, 0xF0000000 + replica, step mod 2**32, step div 2**32)``, ``j = 0, 1, ...`` (element
    blocks never reach that counter word): words 0, 1 give :math:`X` and a normal by Box–Muller,
    word 2 the acceptance uniform of Marsaglia and Tsang's gamma sampler
    (:math:`\chi^2_{n-1} = 2\,\Gamma(\tfrac{n-1}{2})`; for shape below 1 it samples shape + 1
    and multiplies by :math:`U^{1/\alpha}`, word 3), rejected candidates move to the next
    ``j``. Pure Python in float64, so every rank and every backend computes the same value.

    Args:
        key: the segment's 64-bit Philox key (the key of its first tensor).
        step: the step counter.
        replica: replica index (0 without ensembles).
        n: number of entries the thermostat acts on (the global size under sharding).
        a2: :math:`|a|^2`, summed over the segment (and over shards).
        c: :math:`c = \sigma_A\sqrt h / 2`.

    Returns:
        :math:`(|a| + cX)^2 + c^2\chi^2_{n-1}`.
    """
    if c == 0.0:
        return a2
    k0, k1 = key & _MASK32, (key >> 32) & _MASK32
    t0, t1 = step & _MASK32, (step >> 32) & _MASK32
    alpha = 0.5 * (n - 1)
    boost = alpha < 1.0
    d = (alpha + 1.0 if boost else alpha) - 1.0 / 3.0
    cc = 1.0 / math.sqrt(9.0 * d)
    j = 0
    x_first: float | None = None
    gamma = 0.0
    while True:
        w = _philox_py((j, _SCALAR_C1 + replica, t0, t1), k0, k1)
        j += 1
        rad = math.sqrt(-2.0 * math.log(_unit(w[0])))
        ang = 2.0 * math.pi * _unit(w[1])
        if x_first is None:
            x_first = rad * math.cos(ang)
        if alpha <= 0.0:
            break
        x = rad * math.sin(ang)
        v = (1.0 + cc * x) ** 3
        if v <= 0.0:
            continue
        if math.log(_unit(w[2])) < 0.5 * x * x + d - d * v + d * math.log(v):
            gamma = d * v
            if boost:
                gamma *= _unit(w[3]) ** (1.0 / alpha)
            break
    return (math.sqrt(a2) + c * x_first) ** 2 + c * c * 2.0 * gamma


def adl_noise_scales(sigma_a: float, h: float) -> tuple[float, float]:
    r""":math:`(c_z, s_2) = (\sigma_A\sqrt h / 2,\ \sigma_A\sqrt h)`: the scale of the
    kinetic draw's normal and of the one noise draw of Adaptive Langevin's merged D half-steps
    (see :func:`adl_kinetic_draw`). Every path computes them here, so that all round alike."""
    return 0.5 * sigma_a * math.sqrt(h), sigma_a * math.sqrt(h)


def _fe_scalar(x: ScalarLike, dtype: torch.dtype) -> Tensor | float:
    """A coefficient for the small tensors' ``foreach`` ops: a Python float where it rounds the
    same (float32/float64 compute in their own precision, with the scalar cast to it), which
    keeps torch on its fused multi-tensor kernels; a 0-d tensor of ``dtype`` otherwise."""
    if dtype in (torch.float32, torch.float64):
        return float(x)
    return _scalar(x, dtype)


def _contiguous_strides(shape: torch.Size) -> tuple[int, ...]:
    strides, acc = [], 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= max(n, 1)
    return tuple(reversed(strides))


# -- the per-group plan ----------------------------------------------------------------------
class ListNoise:
    r"""Counter-based noise and fused steps for one parameter group's list of tensors.

    Tensor ``k`` (of any shape, contiguous) gets the normals
    :math:`Z(\mathrm{key}_k, t, \mathrm{offset}_k + i)` for its flat element ``i`` at step
    ``t``: its own key and its global offset (0, or its shard's offset under FSDP2, so that a
    sharded run draws exactly the unsharded run's numbers). Two paths, the same numbers:

    * tensors of at least :data:`SMALL_TENSOR` elements: one compiled call per piece of
      ``_STEP_CHUNK`` elements writes the step's noise into a persistent buffer *and* checks the
      gradient for NaN/inf in the same call (:meth:`prepare`), then one compiled call per tensor
      applies the method's whole update (:meth:`sgld`, :meth:`baoab`, :meth:`adl`);
    * smaller tensors, horizontally: one call generates the normals of all of them for the next
      ``K`` steps at once (``K`` up to 256, about 2 MB), and every step is a handful of
      multi-tensor (``foreach``) ops with the same arithmetic. Their gradients are checked by
      one ``foreach`` norm.

    Args:
        shapes: the tensors' shapes (local shards under sharding).
        keys: one 63-bit Philox key per tensor.
        offsets: one global offset per tensor.
        dtype: the tensors' dtype (noise is the float32 stream cast to it).
        device: their device.
        compiled: use compiled kernels (``get_compiled``'s rules and eager fallback); ``None``
            compiles when ``HEATBATH_COMPILE`` is not ``"0"``.
        replicas: leading replica dimension (ensembles) for Adaptive Langevin's per-replica
            reductions; ``None`` for one replica.
        small_tensor: size below which a tensor takes the multi-step cache (default
            :data:`SMALL_TENSOR`); 0 sends every tensor through the per-tensor kernels (the
            tensor-by-tensor reference path, same numbers).
        native: use the C kernels of :mod:`heatbath.optim._native` (float32 on the CPU, when
            they could be built): every tensor's noise is generated inside its update, with the
            numbers of the tensor-op kernels bit for bit. ``None``: when ``compiled`` and
            ``small_tensor`` is not set.

    Attributes:
        prepared_step: the step whose noise :meth:`prepare` generated last (None before).
    """

    def __init__(self, shapes: list[torch.Size], keys: list[int], offsets: list[int],
                 dtype: torch.dtype, device: torch.device, *, compiled: bool | None = None,
                 replicas: int | None = None, small_tensor: int | None = None,
                 native: bool | None = None) -> None:
        if not (len(shapes) == len(keys) == len(offsets)):
            raise ValueError("shapes, keys and offsets must have one entry per tensor")
        self.shapes = [torch.Size(s) for s in shapes]
        self.numels = [s.numel() for s in self.shapes]
        for n, off in zip(self.numels, offsets):
            _check_range(n, off)
        self.keys = [int(k) for k in keys]
        self.key_t = [torch.tensor(k, dtype=torch.int64) for k in self.keys]
        self.offsets = [int(o) for o in offsets]
        self.dtype, self.device = dtype, device
        self.R = replicas or 1
        if compiled is None:
            compiled = os.environ.get("HEATBATH_COMPILE", "1") != "0"
        self.compiled = compiled
        if native is None:
            native = compiled and small_tensor is None
        self.native = bool(native and dtype == torch.float32 and torch.device(device).type == "cpu"
                           and _native.available())
        small_at = SMALL_TENSOR if small_tensor is None else small_tensor
        if self.native:  # one native kernel per tensor generates the noise inside the update
            small_at = 0
        self.big = [i for i, n in enumerate(self.numels) if n > 0 and n >= small_at]
        self.small = [i for i, n in enumerate(self.numels) if 0 < n < small_at]
        self._bins: dict[tuple[int, int], list[list[tuple[int, int, int, int]]]] = {}
        self.prepared_step: int | None = None
        self._pieces = ({} if self.native else
                        {i: _pieces(self.numels[i], self.offsets[i]) for i in self.big})
        self._bufs: dict[int, Tensor] = {}
        self._cache: Tensor | None = None
        self._cache_first = -1
        self._cache_views: list[tuple[Tensor, ...]] = []
        self._setup_small()

    # -- small tensors: multi-step cache --------------------------------------------------------
    def _setup_small(self) -> None:
        blocks, k0, k1, self._starts = [], [], [], []
        pos = 0
        for i in self.small:
            n, off, key = self.numels[i], self.offsets[i], self.keys[i]
            b_lo, b_hi = off // 4, (off + n + 3) // 4
            self._starts.append(4 * pos + off % 4)
            blocks.append(torch.arange(b_lo, b_hi, dtype=torch.int64))
            k0.append(torch.full((b_hi - b_lo,), key & _MASK32, dtype=torch.int64))
            k1.append(torch.full((b_hi - b_lo,), (key >> 32) & _MASK32, dtype=torch.int64))
            pos += b_hi - b_lo
        self._nb = pos
        if pos:
            self._blocks = torch.cat(blocks).to(self.device)
            self._k0 = torch.cat(k0).to(self.device)
            self._k1 = torch.cat(k1).to(self.device)
        self.cache_steps = max(1, min(_CACHE_MAX_STEPS, _CACHE_ELEMS // max(1, 4 * pos)))

    def _small_noise(self, step: int) -> list[Tensor]:
        if self._cache is None or not (0 <= step - self._cache_first < self.cache_steps):
            steps = torch.arange(step, step + self.cache_steps, dtype=torch.int64,
                                 device=self.device)
            z = _list_kernel("multi_step", self.compiled)(self._blocks, self._k0, self._k1,
                                                          steps)
            z = z if self.dtype == torch.float32 else z.to(self.dtype)
            self._cache = z
            self._cache_first = step
            # every step's view of every small tensor, made once per refill (one unbind per
            # tensor) instead of a slice and a view per tensor and step
            self._cache_views = [
                z.as_strided((z.shape[0], *self.shapes[i]),
                             (z.stride(0), *_contiguous_strides(self.shapes[i])),
                             z.storage_offset() + s).unbind(0)
                for s, i in zip(self._starts, self.small)]
        j = step - self._cache_first
        return [v[j] for v in self._cache_views]

    # -- the step --------------------------------------------------------------------------------
    def prepare(self, grads: list[Tensor], step: int, noise: bool = True,
                check_small: bool = True) -> Tensor | float | None:
        """Generate step ``step``'s noise (when ``noise``) and check ``grads`` (one per tensor).

        Changes no parameter. Returns a 0-d tensor that is finite exactly when every gradient
        is finite (a sum of ``grad * 0`` for large tensors, of ``foreach`` norms for small
        ones: those can also overflow on huge finite gradients; the caller looks closer before
        raising), or None when nothing was checked. ``check_small=False`` leaves the small
        tensors' gradients to the caller (whose own multi-tensor check is cheaper for them).
        """
        if self.native:
            self._step = step
            if noise:
                self.prepared_step = step
            if not self.big:
                return None
            bad = self._run_native(lambda i, a, b, r0: (
                _native.lib().hb_nonfinite, (grads[i].data_ptr() + 4 * a, b - a)), rows=1)
            return math.nan if any(bad) else 0.0
        checks: list[Tensor] = []
        if self.big:
            t = torch.tensor(step, dtype=torch.int64)
            gen = _list_kernel("gen_check", self.compiled)
            for i in self.big:
                g = grads[i].reshape(-1)
                if noise:
                    buf = self._bufs.get(i)
                    if buf is None:
                        buf = self._bufs[i] = torch.empty(self.numels[i], dtype=self.dtype,
                                                          device=self.device)
                    for a, b, b0, lead in self._pieces[i]:
                        checks.append(gen(buf[a:b], g[a:b], self.key_t[i], t, b0, lead))
                else:
                    checks.append((g * 0).sum())
        if self.small:
            if check_small:
                checks.extend(torch._foreach_norm([grads[i] for i in self.small]))
            self._noise_small = self._small_noise(step) if noise else None
        if noise:
            self.prepared_step = step
        if not checks:
            return None
        return checks[0] if len(checks) == 1 else torch.stack(checks).sum()

    def _noise(self, i: int) -> Tensor:
        return self._bufs[i].view(self.shapes[i])

    # -- native kernels ---------------------------------------------------------------------------
    def _native_bins(self, rows: int) -> list[list[tuple[int, int, int]]]:
        """Pieces ``(tensor, start, stop)`` of every tensor, in one bin per thread of about
        equal size; a piece never crosses a replica row (``rows`` per tensor)."""
        total = sum(self.numels[i] for i in self.big)
        threads = _native.threads_for(total)
        key = (rows, threads)
        got = self._bins.get(key)
        if got is not None:
            return got
        units = [(i, r * (self.numels[i] // rows), (r + 1) * (self.numels[i] // rows))
                 for i in self.big for r in range(rows)]
        if threads == 1:
            bins = [units]
        else:
            cap = -(-total // threads)
            bins, cur, room = [], [], cap
            for i, a, b in units:
                while a < b:
                    take = b - a if b - a <= room else min(b - a, -(-room // 32) * 32)
                    cur.append((i, a, a + take))
                    a += take
                    room -= take
                    if room <= 0:
                        bins.append(cur)
                        cur, room = [], cap
            if cur:
                bins.append(cur)
        self._bins[key] = bins
        return bins

    def _run_native(self, make: Callable[[int, int, int, int], tuple[Any, tuple[Any, ...]]],
                    rows: int) -> list[Any]:
        """Run ``make(tensor, start, stop, row) -> (fn, args)`` over every piece, a bin per
        thread; returns the results in piece order (bins concatenated)."""
        bins = self._native_bins(rows)
        m = [n // rows for n in self.numels]

        def run(pieces: list[tuple[int, int, int]]) -> list[Any]:
            out = []
            for i, a, b in pieces:
                fn, args = make(i, a, b, a // m[i])
                out.append(fn(*args))
            return out

        if len(bins) == 1:
            return run(bins[0])
        parts = _native.run_tasks([(run, (b,)) for b in bins])
        return [x for part in parts for x in part]

    def sgld(self, params: list[Tensor], grads: list[Tensor], h: ScalarLike,
             std: ScalarLike) -> None:
        r""":math:`\theta \leftarrow \theta + (\sigma R - h g)` with the prepared noise
        (``std`` :math:`= \sigma`, e.g. :math:`\sqrt{2h\tau}`)."""
        if self.native:
            fn, key, off, t = _native.lib().hb_sgld, self.keys, self.offsets, self._step
            th = [p.data_ptr() for p in params]
            gr = [g.data_ptr() for g in grads]
            hf, sf = float(h), float(std)
            self._run_native(lambda i, a, b, r: (fn, (
                th[i] + 4 * a, gr[i] + 4 * a, b - a, key[i], t, off[i] + a, hf, sf)), rows=1)
            return
        if self.big:
            hs, ss = _scalar(h, self.dtype), _scalar(std, self.dtype)
            run = _list_kernel("sgld", self.compiled)
            for i in self.big:
                run(params[i], grads[i], self._noise(i), hs, ss)
        if self.small:
            P = [params[i] for i in self.small]
            a = torch._foreach_mul(self._noise_small, _fe_scalar(std, self.dtype))
            torch._foreach_sub_(a, torch._foreach_mul([grads[i] for i in self.small],
                                                      _fe_scalar(h, self.dtype)))
            torch._foreach_add_(P, a)

    def baoab(self, params: list[Tensor], moms: list[Tensor], grads: list[Tensor],
              kick: ScalarLike, half_h: ScalarLike, c: ScalarLike, d: ScalarLike) -> None:
        r"""Merged-kick BAOAB (see :func:`baoab_philox_step`) with the prepared noise."""
        if self.native:
            fn, key, off, t = _native.lib().hb_baoab, self.keys, self.offsets, self._step
            th = [p.data_ptr() for p in params]
            mo = [p.data_ptr() for p in moms]
            gr = [g.data_ptr() for g in grads]
            co = (float(kick), float(half_h), float(c), float(d))
            self._run_native(lambda i, a, b, r: (fn, (
                th[i] + 4 * a, mo[i] + 4 * a, gr[i] + 4 * a, b - a, key[i], t, off[i] + a, *co)),
                rows=1)
            return
        if self.big:
            k, hh, cc, dd = (_scalar(v, self.dtype) for v in (kick, half_h, c, d))
            run = _list_kernel("baoab", self.compiled)
            for i in self.big:
                run(params[i], moms[i], grads[i], self._noise(i), k, hh, cc, dd)
        if self.small:
            P = [params[i] for i in self.small]
            M = [moms[i] for i in self.small]
            k, hh, cc, dd = (_fe_scalar(v, self.dtype) for v in (kick, half_h, c, d))
            torch._foreach_add_(M, torch._foreach_mul([grads[i] for i in self.small], k))
            torch._foreach_add_(P, torch._foreach_mul(M, hh))
            torch._foreach_mul_(M, cc)
            torch._foreach_add_(M, torch._foreach_mul(self._noise_small, dd))
            torch._foreach_add_(P, torch._foreach_mul(M, hh))

    def adl_first(self, params: list[Tensor], moms: list[Tensor], grads: list[Tensor],
                  kick: ScalarLike, half_h: ScalarLike, factors: list[Tensor],
                  sigma_a: float, h: float) -> list[Tensor]:
        r"""Adaptive Langevin's B, A, C and the merged D half-steps, per tensor.

        ``factors[k]``: C's factor :math:`e^{-\xi h/2}` of tensor ``k``, shape ``[R, 1]``.
        Returns per tensor :math:`|a|^2` per replica (shape ``[R]``, local to this shard):
        :math:`a = p' + cR` with :math:`c = \sigma_A\sqrt h/2`, and adds
        :math:`\sigma_A\sqrt h\,R` to the momentum; E's kinetic energy then comes from
        :func:`adl_kinetic_draw` (one N-normal draw per step, not 2N).
        """
        if self.native and sigma_a > 0.0:
            return self._adl_first_native(params, moms, grads, kick, half_h, factors, sigma_a, h)
        k, hh = _scalar(kick, self.dtype), _scalar(half_h, self.dtype)
        noisy = sigma_a > 0.0
        cz, s2 = (_scalar(v, self.dtype) for v in adl_noise_scales(sigma_a, h))
        run = _list_kernel("adl1" if noisy else "adl1_nonoise", self.compiled)
        out: list[Tensor | None] = [None] * len(params)
        R = self.R
        for i in self.big:
            th, mo, gr = (x.view(R, -1) for x in (params[i], moms[i], grads[i]))
            if noisy:
                out[i] = run(th, mo, gr, self._bufs[i].view(R, -1), k, hh, factors[i], cz, s2)
            else:
                out[i] = run(th, mo, gr, k, hh, factors[i])
        if self.small:
            sm = self.small
            P = [params[i].view(R, -1) for i in sm]
            M = [moms[i].view(R, -1) for i in sm]
            torch._foreach_add_(M, torch._foreach_mul([grads[i].view(R, -1) for i in sm], k))
            torch._foreach_add_(P, torch._foreach_mul(M, hh))
            torch._foreach_mul_(M, [factors[i] for i in sm])
            if noisy:
                Z = [z.view(R, -1) for z in self._noise_small]
                A = torch._foreach_add(M, torch._foreach_mul(Z, cz))
                torch._foreach_add_(M, torch._foreach_mul(Z, s2))
            else:
                A = M
            for i, a in zip(sm, A):
                out[i] = (a * a).sum(1)
        for i, n in enumerate(self.numels):
            if n == 0:
                out[i] = torch.zeros(R, dtype=self.dtype, device=self.device)
        return out  # type: ignore[return-value]

    def _adl_first_native(self, params: list[Tensor], moms: list[Tensor], grads: list[Tensor],
                          kick: ScalarLike, half_h: ScalarLike, factors: list[Tensor],
                          sigma_a: float, h: float) -> list[Tensor]:
        """:meth:`adl_first` by the native kernel (|a|^2 summed in float64)."""
        R = self.R
        if R > 1:  # ensembles: one call per tensor covers every replica row
            return self._adl_first_rows(params, moms, grads, kick, half_h, factors, sigma_a, h)
        fn, key, off, t = _native.lib().hb_adl1, self.keys, self.offsets, self._step
        th = [p.data_ptr() for p in params]
        mo = [p.data_ptr() for p in moms]
        gr = [g.data_ptr() for g in grads]
        fl = [f.reshape(-1).tolist() for f in factors]
        co = (float(kick), float(half_h))
        cz, s2 = adl_noise_scales(sigma_a, h)

        def make(i: int, a: int, b: int, r: int) -> tuple[Any, tuple[Any, ...]]:
            return fn, (th[i] + 4 * a, mo[i] + 4 * a, gr[i] + 4 * a, b - a, key[i], t,
                        off[i] + a, *co, fl[i][r], cz, s2)

        res = self._run_native(make, rows=R)
        kin = [[0.0] * R for _ in params]
        bins = [p for b in self._native_bins(R) for p in b]
        for (i, a, _), v in zip(bins, res):
            kin[i][a // (self.numels[i] // R)] += v
        out = torch.tensor(kin, dtype=torch.float64, device=self.device)
        return list(out.unbind(0))

    def _adl_first_rows(self, params: list[Tensor], moms: list[Tensor], grads: list[Tensor],
                        kick: ScalarLike, half_h: ScalarLike, factors: list[Tensor],
                        sigma_a: float, h: float) -> list[Tensor]:
        """:meth:`_adl_first_native` for ``R > 1`` replicas: one native call per tensor
        (single-threaded: ensembles are many small runs)."""
        R = self.R
        fn = _native.lib().hb_adl1_rows
        cz, s2 = adl_noise_scales(sigma_a, h)
        kin = torch.zeros(len(params), R, dtype=torch.float64)
        for i in self.big:
            f = factors[i].reshape(R).to(torch.float32).contiguous()
            fn(params[i].data_ptr(), moms[i].data_ptr(), grads[i].data_ptr(), R,
               self.numels[i] // R, self.keys[i], self._step, self.offsets[i], float(kick),
               float(half_h), f.data_ptr(), cz, s2, kin[i].data_ptr())
        return list(kin.to(self.device).unbind(0))

    def adl_second(self, params: list[Tensor], moms: list[Tensor], half_h: ScalarLike,
                   factors: list[Tensor]) -> None:
        """Adaptive Langevin's closing C (factors as in :meth:`adl_first`) and A."""
        hh = _scalar(half_h, self.dtype)
        R = self.R
        if self.native and R > 1:
            rows = _native.lib().hb_adl2_rows
            for i in self.big:
                f = factors[i].reshape(R).to(torch.float32).contiguous()
                rows(params[i].data_ptr(), moms[i].data_ptr(), R, self.numels[i] // R,
                     f.data_ptr(), float(half_h))
            return
        if self.native:
            fn = _native.lib().hb_adl2
            th = [p.data_ptr() for p in params]
            mo = [p.data_ptr() for p in moms]
            fl = [f.reshape(-1).tolist() for f in factors]
            hf = float(half_h)
            self._run_native(lambda i, a, b, r: (fn, (
                th[i] + 4 * a, mo[i] + 4 * a, b - a, fl[i][r], hf)), rows=R)
            return
        run = _list_kernel("adl2", self.compiled)
        for i in self.big:
            run(params[i].view(R, -1), moms[i].view(R, -1), factors[i], hh)
        if self.small:
            sm = self.small
            M = [moms[i].view(R, -1) for i in sm]
            torch._foreach_mul_(M, [factors[i] for i in sm])
            torch._foreach_add_([params[i].view(R, -1) for i in sm], torch._foreach_mul(M, hh))

"""Native C noise kernels (heatbath/optim/_native.c) against the tensor-op reference, bit for bit.

Every kernel is compared with an independent computation: the tensor-op Philox stream
(``philox_normal``) and the eager tensor-op steps (``sgld_philox_step``, ``baoab_philox_step``,
or a float32 transcription of the update), never with the native kernel itself.
"""

from __future__ import annotations

import math

import pytest
import torch

from heatbath.optim import Langevin, _native
from heatbath.optim import _philox as P
from heatbath.optim._philox import baoab_philox_step, philox_normal, sgld_philox_step

from ._helpers import shlp, toy_spiral, train

if _native.lib() is None:
    pytest.skip("the native kernels are not built here (no C compiler or HEATBATH_NATIVE=0)",
                allow_module_level=True)

F32 = torch.float32
U = 2.0**-53  # unit roundoff of float64
U32 = 2.0**-24  # unit roundoff of float32
WRAP = 4 * (1 << 32)  # global index of block 2**32: the low 32-bit counter word wraps here

# (n, offset, key, step): n below, at and above the 32-element vector width, offsets that are
# not multiples of 4 or 32, 64-bit keys and steps (above 2**32, at 2**63 - 1), and ranges that
# cross block 2**32, where counter word 0 wraps to 0 and word 1 becomes 1.
STREAM_CASES = [
    (0, 5, 1, 1),
    (1, 0, 0, 0),
    (3, 1, 5, 7),
    (31, 0, 1, 1),
    (32, 0, 1, 2),
    (33, 5, 2**40 + 3, 9),
    (64, 32, 7, 2**32),
    (100, 4, 0xFFFFFFFF, 0xFFFFFFFF),
    (257, 30, 2**63 - 1, 2**63 - 1),
    (1000, 17, 2**32 + 1, 2**32 + 5),
    (513, 2**40 + 3, 2**62 + 17, 2**33 + 1),
    (5000, 3, 12345, 678),
    (200, 4 * ((1 << 32) - 3) - 7, 11, 3),
    (64, 4 * ((1 << 32) - 3), 11, 3),
    (96, 4 * ((1 << 32) - 3) + 1, 2**63 - 2, 2**62),
    (300, WRAP - 150, 2**33 + 7, 1),
    (160, WRAP - 128, 9, 2**40),  # 32-aligned: the vector path's last group before the wrap
    (77, WRAP + 3, 9, 4),
]


def _ptr(t: torch.Tensor, start: int = 0) -> int:
    assert t.dtype == F32 and t.is_contiguous()
    return t.data_ptr() + 4 * start


def _f32(x: float) -> torch.Tensor:
    """A coefficient as the reference rounds it (a 0-d float32 tensor, round to nearest)."""
    return torch.tensor(x, dtype=F32)


def _rand(n: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, generator=g)


# ------------------------------------------------------------------------------- the stream
@pytest.mark.parametrize("n,off,key,step", STREAM_CASES)
def test_normals_equal_the_tensor_op_stream(n, off, key, step):
    lib = _native.lib()
    out = torch.full((n + 8,), 7.0)  # the 8 trailing sentinels must stay untouched
    lib.hb_normals(_ptr(out), n, key, step, off, 1.0)
    assert torch.equal(out[:n], philox_normal(n, key, step, off))
    assert torch.equal(out[n:], torch.full((8,), 7.0))


@pytest.mark.parametrize("std", [0.37, -2.5, 1e-3, 3.0e30])
def test_normals_with_std_are_std_times_the_stream_in_float32(std):
    lib = _native.lib()
    n, off, key, step = 173, 13, 2**35 + 1, 4
    out = torch.empty(n)
    lib.hb_normals(_ptr(out), n, key, step, off, std)
    assert torch.equal(out, _f32(std) * philox_normal(n, key, step, off))


def test_normals_of_pieces_are_the_normals_of_the_whole():
    # a buffer filled piece by piece (pointer + 4*start, offset + start), as the thread split
    # does, at boundaries that are and are not multiples of 4 and 32
    lib = _native.lib()
    n, off, key, step = 1111, 6, 2**45 + 9, 31
    out = torch.empty(n)
    cuts = [0, 1, 5, 32, 64, 99, 512, 1000, n]
    for a, b in zip(cuts, cuts[1:]):
        lib.hb_normals(_ptr(out, a), b - a, key, step, off + a, 1.0)
    assert torch.equal(out, philox_normal(n, key, step, off))


# --------------------------------------------------------------------------- fused steps
STEP_CASES = [c for c in STREAM_CASES if c[0] > 0]


@pytest.mark.parametrize("n,off,key,step", STEP_CASES)
def test_sgld_equals_the_eager_reference(n, off, key, step):
    lib = _native.lib()
    lo, hi = 3, 3 + n  # the kernel works on a slice of a larger buffer
    th, gr = _rand(n + 7, 1), _rand(n + 7, 2, 1e-1)
    ref = th.clone()
    h, std = 0.1, math.sqrt(2 * 0.1 * 1e-2)
    lib.hb_sgld(_ptr(th, lo), _ptr(gr, lo), n, key, step, off, h, std)
    sgld_philox_step(ref[lo:hi], gr[lo:hi], h, std, key, step, off)
    assert torch.equal(th, ref)  # includes the untouched elements outside the slice


@pytest.mark.parametrize("n,off,key,step", STEP_CASES)
def test_baoab_equals_the_eager_reference(n, off, key, step):
    lib = _native.lib()
    lo, hi = 5, 5 + n
    th, mo, gr = _rand(n + 9, 3), _rand(n + 9, 4, 0.3), _rand(n + 9, 5, 1e-1)
    ref_th, ref_mo = th.clone(), mo.clone()
    c = math.exp(-0.7 * 0.1)
    co = (-0.1, 0.05, c, math.sqrt(0.3 * (1 - c * c)))  # kick, h/2, c, d
    lib.hb_baoab(_ptr(th, lo), _ptr(mo, lo), _ptr(gr, lo), n, key, step, off, *co)
    baoab_philox_step(ref_th[lo:hi], ref_mo[lo:hi], gr[lo:hi], *co, key, step, off)
    assert torch.equal(th, ref_th)
    assert torch.equal(mo, ref_mo)


def _adl1_transcription(th, mo, gr, z, kick, hh, f, cz, s2):
    """Adaptive Langevin's first half in float32 tensor ops, rounded as written; returns the
    new (theta, mom) and a."""
    kick, hh, f, cz, s2 = (_f32(v) for v in (kick, hh, f, cz, s2))
    p = mo + kick * gr
    th = th + hh * p
    p = p * f
    a = p + cz * z
    mo = p + s2 * z
    return th, mo, a


@pytest.mark.parametrize("n,off,key,step", STEP_CASES)
def test_adl_kernels_equal_the_float32_transcription(n, off, key, step):
    lib = _native.lib()
    th, mo, gr = _rand(n, 6), _rand(n, 7, 0.3), _rand(n, 8, 1e-1)
    h, sigma_a = 0.1, 0.3
    co = (-h, 0.5 * h, math.exp(-0.2 * 0.5 * h), 0.5 * sigma_a * math.sqrt(h),
          sigma_a * math.sqrt(h))  # kick, h/2, f, cz, s2
    z = philox_normal(n, key, step, off)
    ref_th, ref_mo, a = _adl1_transcription(th, mo, gr, z, *co)
    kin = lib.hb_adl1(_ptr(th), _ptr(mo), _ptr(gr), n, key, step, off, *co)
    assert torch.equal(th, ref_th)
    assert torch.equal(mo, ref_mo)
    # The kernel adds the float32 squares a*a in float64, in its own order (vector lanes,
    # then the tail). A sum of n >= 0 doubles in any order is within (n - 1) u of the exact
    # sum (u = 2**-53): at most 5.6e-13 relative for n <= 5000, hence 1e-12.
    assert n <= 5000
    ref_kin = float((a * a).double().sum())
    assert kin == pytest.approx(ref_kin, rel=1e-12, abs=0.0)
    # and against the exact squares: each float32 square is within u32 = 2**-24 relative
    exact = float((a.double() ** 2).sum())
    assert abs(kin - exact) <= (U32 + n * U) * exact

    f2, hh = math.exp(-0.25 * 0.5 * h), 0.5 * h
    ref_mo2 = ref_mo * _f32(f2)
    ref_th2 = ref_th + _f32(hh) * ref_mo2
    lib.hb_adl2(_ptr(th), _ptr(mo), n, f2, hh)
    assert torch.equal(th, ref_th2)
    assert torch.equal(mo, ref_mo2)


# --------------------------------------------------------------------------- the NaN/inf check
@pytest.mark.parametrize("n", [1, 31, 5000])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nonfinite_flags_nan_and_inf_anywhere(n, bad):
    lib = _native.lib()
    for pos in sorted({0, n // 2, n - 1}):
        g = _rand(n, 9)
        g[pos] = bad
        assert lib.hb_nonfinite(_ptr(g), n) == 1, (n, pos, bad)


@pytest.mark.parametrize("n", [1, 31, 5000])
def test_nonfinite_passes_finite_data_including_extremes(n):
    lib = _native.lib()
    g = _rand(n, 10)
    g[0] = 3e38
    g[n // 2] = -torch.finfo(F32).max
    g[-1] = torch.finfo(F32).tiny / 8  # subnormal
    if n > 3:
        g[1] = -torch.finfo(F32).tiny / 1024
        g[2] = 0.0
    assert torch.isfinite(g).all()
    assert lib.hb_nonfinite(_ptr(g), n) == 0
    # a bad value right after the checked range is not read
    h = torch.cat([g, torch.tensor([math.nan])])
    assert lib.hb_nonfinite(_ptr(h), n) == 0
    assert lib.hb_nonfinite(_ptr(h), n + 1) == 1


# ------------------------------------------------------------------------- ListNoise, native
def _list_case(monkeypatch, replicas=1):
    """Mixed shapes, keys and offsets; the tensor-op plan takes both its per-tensor path and
    its small-tensor cache (patched sizes)."""
    monkeypatch.setattr(P, "SMALL_TENSOR", 40)
    monkeypatch.setattr(P, "_STEP_CHUNK", 32)
    shapes = [(7, 11), (5,), (3, 3), (101,), (2, 2, 2)]
    shapes = [torch.Size((replicas, *s) if replicas > 1 else s) for s in shapes]
    keys = [11, 2**40 + 3, 5, 2**62 + 17, 9]
    offsets = [0, 3, 130, 6, WRAP - 50]
    return shapes, keys, offsets


def _plans(shapes, keys, offsets, replicas=None):
    native = P.ListNoise(shapes, keys, offsets, F32, torch.device("cpu"), compiled=False,
                         replicas=replicas, native=True)
    ref = P.ListNoise(shapes, keys, offsets, F32, torch.device("cpu"), compiled=False,
                      replicas=replicas, native=False)
    assert native.native and not ref.native
    assert ref.big and ref.small  # the reference exercises both of its paths
    return native, ref


def _rand_list(shapes, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return [scale * torch.randn(s, generator=g) for s in shapes]


def _clone(ts):
    return [t.clone() for t in ts]


@pytest.mark.parametrize("method", ["sgld", "baoab"])
def test_list_native_equals_tensor_op_plan_bitwise(monkeypatch, method):
    shapes, keys, offsets = _list_case(monkeypatch)
    nat, ref = _plans(shapes, keys, offsets)
    th, mo = _rand_list(shapes, 0), _rand_list(shapes, 1, 0.3)
    ref_th, ref_mo = _clone(th), _clone(mo)
    for step in (0, 1, 2, 7, 2**32 + 1):
        gr = _rand_list(shapes, 100 + step % 97, 1e-2)
        assert float(nat.prepare(gr, step)) == 0.0
        assert math.isfinite(float(ref.prepare(gr, step)))
        if method == "sgld":
            nat.sgld(th, gr, 0.1, 0.03)
            ref.sgld(ref_th, gr, 0.1, 0.03)
        else:
            nat.baoab(th, mo, gr, -0.1, 0.05, 0.9, 0.2)
            ref.baoab(ref_th, ref_mo, gr, -0.1, 0.05, 0.9, 0.2)
        for a, b in zip(th + mo, ref_th + ref_mo):
            assert torch.equal(a, b)


def test_list_native_prepare_flags_non_finite(monkeypatch):
    shapes, keys, offsets = _list_case(monkeypatch)
    nat, _ = _plans(shapes, keys, offsets)
    for i in (0, 1, 4):
        for bad in (math.nan, math.inf, -math.inf):
            gr = _rand_list(shapes, 3)
            gr[i].view(-1)[-1] = bad
            assert not math.isfinite(float(nat.prepare(gr, 4)))


@pytest.mark.parametrize("replicas", [1, 2])
def test_list_native_adl_equals_tensor_op_plan(monkeypatch, replicas):
    shapes, keys, offsets = _list_case(monkeypatch, replicas)
    R = replicas
    nat, ref = _plans(shapes, keys, offsets, replicas=R if R > 1 else None)
    th, mo = _rand_list(shapes, 0), _rand_list(shapes, 1, 0.1)
    ref_th, ref_mo = _clone(th), _clone(mo)
    h, sigma_a = 0.1, 0.3
    g = torch.Generator().manual_seed(5)
    for step in range(4):
        gr = _rand_list(shapes, 50 + step, 1e-2)
        nat.prepare(gr, step)
        ref.prepare(gr, step)
        # the same factors on both sides (one per tensor and replica), so theta and mom must
        # agree bit for bit: both paths round every product and sum as written in float32
        f1 = [torch.exp(-0.5 * h * torch.rand(R, 1, generator=g)) for _ in shapes]
        kin = nat.adl_first(th, mo, gr, -h, 0.5 * h, f1, sigma_a, h)
        ref_kin = ref.adl_first(ref_th, ref_mo, gr, -h, 0.5 * h, f1, sigma_a, h)
        for a, b in zip(th + mo, ref_th + ref_mo):
            assert torch.equal(a, b)
        # |a|^2 per replica: the tensor-op plan sums the float32 squares in float32, the native
        # one in float64. Summing m >= 0 terms in float32 is within (m - 1) u32 relative.
        for k, (u, v) in enumerate(zip(kin, ref_kin)):
            m = shapes[k].numel() // R
            assert u.shape == v.shape == (R,)
            torch.testing.assert_close(u, v.double(), rtol=max(m - 1, 1) * U32, atol=0.0)
        f2 = [torch.exp(-0.5 * h * torch.rand(R, 1, generator=g)) for _ in shapes]
        nat.adl_second(th, mo, 0.5 * h, f2)
        ref.adl_second(ref_th, ref_mo, 0.5 * h, f2)
        for a, b in zip(th + mo, ref_th + ref_mo):
            assert torch.equal(a, b)


# ----------------------------------------------------------------------------- thread split
def test_thread_split_gives_the_numbers_of_one_thread(monkeypatch):
    monkeypatch.setattr(_native, "PARALLEL_MIN", 64)
    shapes = [torch.Size(s) for s in [(2, 1500), (1700,), (2, 2049)]]
    keys, offsets = [3, 2**41 + 1, 77], [0, 5, WRAP - 1001]
    plan = P.ListNoise(shapes, keys, offsets, F32, torch.device("cpu"), compiled=False,
                       native=True, replicas=2)
    assert plan.native
    th0, mo0 = _rand_list(shapes, 0), _rand_list(shapes, 1, 0.3)
    grads = [_rand_list(shapes, 10 + s, 1e-2) for s in range(3)]
    f = [torch.tensor([[0.97], [0.93]]) for _ in shapes]
    old = torch.get_num_threads()
    out = {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            th, mo = _clone(th0), _clone(mo0)
            kins = []
            for step, gr in enumerate(grads):
                plan.prepare(gr, step)
                plan.baoab(th, mo, gr, -0.1, 0.05, 0.9, 0.2)
                kins.append(plan.adl_first(th, mo, gr, -0.1, 0.05, f, 0.3, 0.1))
                plan.adl_second(th, mo, 0.05, f)
                plan.sgld(th, gr, 0.1, 0.03)
            out[threads] = (th, mo, kins)
            if threads == 2:
                assert len(plan._native_bins(1)) > 1
                assert len(plan._native_bins(2)) > 1
            else:
                assert len(plan._native_bins(1)) == 1
    finally:
        torch.set_num_threads(old)
    (th1, mo1, k1), (th2, mo2, k2) = out[1], out[2]
    for a, b in zip(th1 + mo1, th2 + mo2):
        assert torch.equal(a, b)
    # |a|^2 per replica is added piece by piece in float64; a different split only changes the
    # order of the float64 additions: within (m - 1) u relative for m <= 4098 terms
    for ka, kb in zip(k1, k2):
        for u, v in zip(ka, kb):
            torch.testing.assert_close(u, v, rtol=4098 * U, atol=0.0)


# ------------------------------------------------------------------------ switch and optimizer
def _langevin(model, seed=3):
    return Langevin(model.parameters(), 0.2, 1.0, 1e-3, noise="philox", seed=seed)


def test_native_off_by_environment_and_the_step_still_works(monkeypatch):
    monkeypatch.setenv("HEATBATH_NATIVE", "0")
    monkeypatch.setenv("HEATBATH_COMPILE", "0")
    monkeypatch.setattr(P, "_COMPILED", {})
    assert _native.lib() is None
    assert not _native.available()
    plan = P.ListNoise([torch.Size((10,))], [1], [0], F32, torch.device("cpu"), native=True)
    assert not plan.native
    X, y = toy_spiral(100)
    m = shlp(seed=1)
    before = [p.detach().clone() for p in m.parameters()]
    train(m, _langevin(m), X, y, 2)
    after = list(m.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert not any(torch.equal(a, b) for a, b in zip(before, after))
    monkeypatch.delenv("HEATBATH_NATIVE")
    assert _native.lib() is not None  # the cached library comes back


def test_langevin_native_equals_the_tensor_op_eager_path(monkeypatch):
    X, y = toy_spiral(200)
    out = []
    for native in (True, False):
        with monkeypatch.context() as mp:
            if native:
                mp.delenv("HEATBATH_NATIVE", raising=False)
                mp.delenv("HEATBATH_COMPILE", raising=False)
            else:
                mp.setenv("HEATBATH_NATIVE", "0")
                mp.setenv("HEATBATH_COMPILE", "0")
                mp.setattr(P, "_COMPILED", {})
            assert _native.available() is native
            m = shlp(seed=1)
            opt = _langevin(m, seed=11)
            traj = train(m, opt, X, y, 5, record=True)
            plans = opt.__dict__.get("_philox_plans", {})
            assert plans and all(p[1].native is native for p in plans.values())
            out.append(traj)
    for a, b in zip(*out):
        assert torch.equal(a, b)

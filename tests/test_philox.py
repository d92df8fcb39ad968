"""Philox4x32-10 noise engine: known answers, layout, accuracy, statistics, compiled == eager."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from heatbath.optim import _philox as P
from heatbath.optim._philox import (
    baoab_philox_step,
    get_compiled,
    philox4x32_10,
    philox_fill_,
    philox_normal,
    sgld_philox_step,
)

EPS32 = torch.finfo(torch.float32).eps
MASK32 = 0xFFFFFFFF

# Random123 known-answer vectors, tests/kat_vectors of the Random123 distribution
# (DEShawResearch/random123, lines "philox4x32 10 ..."): counter[4] key[2] -> output[4].
KAT_PHILOX4X32_10 = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


# ------------------------------------------------------------------------------ Philox itself
@pytest.mark.parametrize("ctr,key,expected", KAT_PHILOX4X32_10, ids=["zeros", "ones", "pi"])
def test_known_answer_vectors(ctr, key, expected):
    out = philox4x32_10(torch.tensor(ctr), torch.tensor(key))
    assert out.tolist() == list(expected)


def test_known_answers_batched_with_broadcast_key():
    ctr = torch.tensor([v[0] for v in KAT_PHILOX4X32_10])
    key = torch.tensor([v[1] for v in KAT_PHILOX4X32_10])
    assert philox4x32_10(ctr, key).tolist() == [list(v[2]) for v in KAT_PHILOX4X32_10]
    # one key for many counters broadcasts
    zeros_key = torch.zeros(2, dtype=torch.int64)
    out = philox4x32_10(ctr[:1].expand(5, 4), zeros_key)
    assert out.tolist() == [list(KAT_PHILOX4X32_10[0][2])] * 5


def test_mulhilo_matches_python_integers():
    g = torch.Generator().manual_seed(7)
    x = torch.randint(0, 1 << 32, (4096,), generator=g, dtype=torch.int64)
    x[:3] = torch.tensor([0, 1, MASK32])
    for m in P.PHILOX_M:
        hi, lo = P._mulhilo(m, x)
        ref = [m * v for v in x.tolist()]
        assert hi.tolist() == [r >> 32 for r in ref]
        assert lo.tolist() == [r & MASK32 for r in ref]


def test_philox_rejects_bad_input():
    with pytest.raises(ValueError, match="ctr"):
        philox4x32_10(torch.zeros(4, dtype=torch.int32), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="ctr"):
        philox4x32_10(torch.zeros(3, dtype=torch.int64), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="key"):
        philox4x32_10(torch.zeros(4, dtype=torch.int64), torch.tensor([0, 1 << 32]))
    with pytest.raises(ValueError, match="ctr"):
        philox4x32_10(torch.tensor([0, 0, -1, 0]), torch.zeros(2, dtype=torch.int64))


# ------------------------------------------------------------------- layout of philox_normal
def _reference_normals(g_idx: list[int], seed: int, step: int) -> tuple[list[float], list[float]]:
    """Documented layout, independently: Philox words via the public block function, then
    Box–Muller in float64 with the math module. Returns (z, rho) per global index."""
    z, rho = [], []
    for g in g_idx:
        b, j = divmod(g, 4)
        ctr = torch.tensor([b & MASK32, b >> 32, step & MASK32, step >> 32])
        key = torch.tensor([seed & MASK32, seed >> 32])
        a = [w >> 8 for w in philox4x32_10(ctr, key).tolist()]
        r_word, t_word = (a[0], a[1]) if j < 2 else (a[2], a[3])
        u = (2 * (r_word // 2) + 1) * 2.0**-24
        r = math.sqrt(-2.0 * math.log(u))
        theta = 2.0 * math.pi * (t_word + 0.5) * 2.0**-24
        z.append(r * (math.cos(theta) if j % 2 == 0 else math.sin(theta)))
        rho.append(r)
    return z, rho


def test_layout_matches_documented_counter_and_key():
    # seed, step and block index all above 2**32, so every high word is exercised
    seed, step, offset = (1 << 40) + 12345, (1 << 33) + 7, 3 * (1 << 34) + 2
    n = 37
    z = philox_normal(n, seed, step, offset=offset)
    ref, rho = _reference_normals([offset + i for i in range(n)], seed, step)
    # float32 evaluation error: rho to ~2.1 eps (relative), cos/sin to 0.82 eps (absolute),
    # one final rounding 0.5 eps: |z - z_ref| <= 3.5 eps * rho; allow 4 eps * rho
    for zi, ri, rh in zip(z.tolist(), ref, rho, strict=True):
        assert abs(zi - ri) <= 4 * EPS32 * rh + 1e-12


def test_element_is_function_of_global_index_only():
    seed, step = 99, 5
    full = philox_normal(1000, seed, step, offset=0)
    for off, n in [(0, 1), (1, 3), (3, 10), (4, 8), (7, 993), (500, 0), (998, 2)]:
        part = philox_normal(n, seed, step, offset=off)
        assert torch.equal(part, full[off:off + n])
    # tensor seed/step give the same stream as ints
    same = philox_normal(1000, torch.tensor(seed), torch.tensor(step))
    assert torch.equal(same, full)


def test_chunked_eager_path_equals_single_block_call(monkeypatch):
    nb = 64
    monkeypatch.setattr(P, "_EAGER_CHUNK_BLOCKS", nb)
    n, off = 8 * nb + 21, 3  # spans three eager chunks, unaligned start
    z = philox_normal(n, 11, 2, offset=off)
    keys = P._key_and_step(torch.tensor(11), torch.tensor(2))
    direct = P._normal_blocks((off + n + 3) // 4, 0, keys)[off:off + n]
    assert torch.equal(z, direct)


def test_dtypes_are_casts_of_the_float32_stream():
    z = philox_normal(999, 3, 4, offset=1)
    assert torch.equal(philox_normal(999, 3, 4, offset=1, dtype=torch.float64), z.double())
    assert torch.equal(philox_normal(999, 3, 4, offset=1, dtype=torch.bfloat16), z.bfloat16())


def test_philox_normal_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n must"):
        philox_normal(-1, 0, 0)
    with pytest.raises(ValueError, match="seed"):
        philox_normal(4, -3, 0)
    with pytest.raises(ValueError, match="step"):
        philox_normal(4, 0, 1.5)
    with pytest.raises(ValueError, match="offset"):
        philox_normal(4, 0, 0, offset=-4)
    with pytest.raises(ValueError, match="offset \\+ n"):
        philox_normal(8, 0, 0, offset=(1 << 62) - 4)
    with pytest.raises(ValueError, match="seed"):
        philox_normal(4, torch.tensor(1.0), 0)
    with pytest.raises(ValueError, match="dtype"):
        philox_normal(4, 0, 0, dtype=torch.int32)


# -------------------------------------------------------------- accuracy of the basic-op math
def _sample_ints(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, 1 << 24, (n,), generator=g, dtype=torch.int32)
    edges = torch.tensor([0, 1, 2, 3, (1 << 21) - 1, 1 << 21, (1 << 22) - 1, 1 << 22,
                          (1 << 23) - 1, 1 << 23, (1 << 24) - 2, (1 << 24) - 1], dtype=torch.int32)
    return torch.cat([edges, a])


def test_neg2log_and_sqrt_accuracy():
    a = _sample_ints(1 << 18, 1)
    u = (2 * (a.double() // 2) + 1) * 2.0**-24
    ref = -2.0 * torch.log(u)
    y = P._neg2log_unit(a)
    assert torch.isfinite(y).all() and (y > 0).all()  # u never 0 or 1
    # about six float32 roundings of relative size <= eps/2, series truncation < 4e-10
    assert ((y.double() - ref).abs() / ref).max() <= 3 * EPS32
    s = P._sqrt_heron(y)
    ref_s = y.double().sqrt()
    # Heron's third step leaves 5e-14 relative; the rest is rounding of its last two ops
    assert ((s.double() - ref_s).abs() / ref_s).max() <= 1.5 * EPS32
    # the largest radius is sqrt(48 ln 2), from u = 2**-24
    assert math.isclose(P._sqrt_heron(P._neg2log_unit(torch.tensor([0], dtype=torch.int32)))
                        .item(), math.sqrt(48 * math.log(2)), rel_tol=2 * EPS32)


def test_cos_sin_accuracy():
    a = _sample_ints(1 << 18, 2)
    theta = 2.0 * math.pi * (a.double() + 0.5) * 2.0**-24
    c, s = P._cos_sin_turn(a)
    # exact integer quadrant reduction; phi rounded once (<= eps/2 * pi/4), Taylor error < 3e-9,
    # Horner roundings ~ eps/2 each on terms <= 1: total below 1.5 eps
    assert (c.double() - theta.cos()).abs().max() <= 1.5 * EPS32
    assert (s.double() - theta.sin()).abs().max() <= 1.5 * EPS32


# --------------------------------------------------------------------------------- statistics
N_STAT = 1_000_000
SIGMAS = 5.0  # every statistic must fall within 5 standard errors of its expected value


@pytest.fixture(scope="module")
def base_stream() -> torch.Tensor:
    return philox_normal(N_STAT, 2024, 0).double()


def test_moments_and_distribution(base_stream):
    z = base_stream
    n = z.numel()
    m = z.mean()
    c = z - m
    var = (c**2).mean()
    skew = (c**3).mean() / var**1.5
    exkurt = (c**4).mean() / var**2 - 3.0
    # standard errors under N(0,1): mean 1/sqrt(n), variance sqrt(2/n), skewness sqrt(6/n),
    # excess kurtosis sqrt(24/n); truncation at |z| = 5.77 shifts them by < 1e-6
    assert abs(m.item()) < SIGMAS / math.sqrt(n)
    assert abs(var.item() - 1.0) < SIGMAS * math.sqrt(2.0 / n)
    assert abs(skew.item()) < SIGMAS * math.sqrt(6.0 / n)
    assert abs(exkurt.item()) < SIGMAS * math.sqrt(24.0 / n)
    # Kolmogorov–Smirnov: P(sqrt(n) D > 2.0) = 6.7e-4 for the true distribution
    zs, _ = torch.sort(z)
    cdf = torch.special.ndtr(zs)
    k = torch.arange(1, n + 1, dtype=torch.float64)
    d = torch.maximum(k / n - cdf, cdf - (k - 1) / n).max()
    assert math.sqrt(n) * d.item() < 2.0
    # tails: fraction beyond 3 sigma, binomial standard error
    p3 = 2.0 * (1.0 - torch.special.ndtr(torch.tensor(3.0, dtype=torch.float64)).item())
    frac3 = (z.abs() > 3.0).double().mean().item()
    assert abs(frac3 - p3) < SIGMAS * math.sqrt(p3 * (1 - p3) / n)


def _corr(x: torch.Tensor, y: torch.Tensor) -> float:
    x = x - x.mean()
    y = y - y.mean()
    return (x @ y / (x.norm() * y.norm())).item()


def test_independence_within_stream(base_stream):
    z = base_stream
    # lags 1..3 pair lanes of one Philox block (incl. cos/sin of one Box–Muller pair),
    # lag 4 the same lane of neighbouring blocks; sample correlation has SE 1/sqrt(n)
    for lag in (1, 2, 3, 4, 5):
        se = 1.0 / math.sqrt(z.numel() - lag)
        assert abs(_corr(z[:-lag], z[lag:])) < SIGMAS * se
        # squares catch a shared radius (dependence with zero linear correlation)
        assert abs(_corr(z[:-lag] ** 2, z[lag:] ** 2)) < SIGMAS * se


@pytest.mark.parametrize("seed,step", [(2024, 1), (2025, 0), (2024 + (1 << 32), 0),
                                       (2024, 1 << 32)],
                         ids=["next-step", "next-seed", "seed-high-word", "step-high-word"])
def test_independence_across_steps_and_seeds(base_stream, seed, step):
    other = philox_normal(N_STAT, seed, step).double()
    se = 1.0 / math.sqrt(N_STAT)
    assert abs(_corr(base_stream, other)) < SIGMAS * se
    assert abs(_corr(base_stream**2, other**2)) < SIGMAS * se


def test_reproducible_across_thread_counts():
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = philox_normal(300_001, 8, 9, offset=5)
        torch.set_num_threads(max(2, old))
        many = philox_normal(300_001, 8, 9, offset=5)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(one, many)


# ------------------------------------------------------------------------------ fused steps
def _flat(n: int, seed: int, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=g, dtype=dtype) for _ in range(3)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_baoab_step_applies_documented_update(dtype):
    n, off = 1003, 6
    theta, mom, grad = _flat(n, 0, dtype)
    kick, half_h, c, d = -0.1, 0.05, 0.9, 0.3
    r = philox_normal(n, 5, 3, offset=off).to(dtype)
    s = {k: torch.tensor(v, dtype=dtype) for k, v in dict(k=kick, h=half_h, c=c, d=d).items()}
    p = mom + s["k"] * grad
    q = theta + s["h"] * p
    p = s["c"] * p + s["d"] * r
    q = q + s["h"] * p
    baoab_philox_step(theta, mom, grad, kick, half_h, c, d, 5, 3, off)
    assert torch.equal(mom, p) and torch.equal(theta, q)


def test_sgld_step_applies_documented_update():
    n, off = 1001, 2
    theta, _, grad = _flat(n, 1)
    r = philox_normal(n, 9, 4, offset=off)
    expected = theta + (torch.tensor(0.02) * r - torch.tensor(0.001) * grad)
    sgld_philox_step(theta, grad, 0.001, 0.02, 9, 4, off)
    assert torch.equal(theta, expected)


def test_fill_replaces_normal_with_the_same_stream(monkeypatch):
    out = torch.empty(3, 333, dtype=torch.float64)
    assert philox_fill_(out, 5, 6, offset=2, std=0.5) is out
    expected = (torch.tensor(0.5, dtype=torch.float64)
                * philox_normal(999, 5, 6, offset=2, dtype=torch.float64)).view(3, 333)
    assert torch.equal(out, expected)
    monkeypatch.setattr(P, "_STEP_CHUNK", 100)  # pieces give the same numbers
    again = philox_fill_(torch.empty(3, 333, dtype=torch.float64), 5, 6, offset=2, std=0.5)
    assert torch.equal(again, expected)
    with pytest.raises(ValueError, match="out"):
        philox_fill_(out.t(), 5, 6)


def test_steps_update_leaf_parameters_in_place():
    theta = torch.nn.Parameter(torch.zeros(10))
    grad = torch.ones(10)
    sgld_philox_step(theta, grad, 0.5, 0.0, 0, 0)
    assert torch.equal(theta.detach(), torch.full((10,), -0.5))


def test_steps_reject_mismatched_buffers():
    theta, mom, grad = _flat(8, 2)
    with pytest.raises(ValueError, match="mom"):
        baoab_philox_step(theta, mom[:4], grad, 0.1, 0.1, 0.9, 0.1, 0, 0)
    with pytest.raises(ValueError, match="grad"):
        sgld_philox_step(theta, grad.double(), 0.1, 0.1, 0, 0)
    with pytest.raises(ValueError, match="theta"):
        sgld_philox_step(theta.view(2, 4), grad.view(2, 4), 0.1, 0.1, 0, 0)


# -------------------------------------------------------------------- compile and fallback
def test_compiled_baoab_equals_eager_bitwise_without_recompiles():
    """The one compile in the default suite (about 20 s of CPU on a cold inductor cache)."""
    step_fn = get_compiled(baoab_philox_step)
    seed = torch.tensor(1234)
    # (n, offset, coefficients): new step, coefficients, size and alignment must all reuse
    # the first compiled graph (dynamic shapes), and every result must equal eager bit for bit
    calls = [(1027, 6, (-0.1, 0.05, 0.9, 0.3)), (1027, 6, (-0.2, 0.07, 0.8, 0.4)),
             (515, 4001, (-0.3, 0.01, 0.5, 0.6))]
    for t, (n, off, coef) in enumerate(calls):
        theta, mom, grad = _flat(n, 3 + t)
        theta_e, mom_e = theta.clone(), mom.clone()
        k, h, c, d = (torch.tensor(v) for v in coef)
        step = torch.tensor(t)
        with torch._dynamo.config.patch(error_on_recompile=t > 0):
            step_fn(theta, mom, grad, k, h, c, d, seed, step, off)
        baoab_philox_step(theta_e, mom_e, grad, k, h, c, d, seed, step, off)
        assert torch.equal(theta, theta_e) and torch.equal(mom, mom_e)
    if not step_fn.is_compiled:
        pytest.skip("torch.compile unavailable here; checked the eager fallback only")


def test_pieces_do_not_change_the_numbers(monkeypatch):
    n, off = 1001, 3
    theta, mom, grad = _flat(n, 7)
    theta2, mom2 = theta.clone(), mom.clone()
    baoab_philox_step(theta, mom, grad, -0.1, 0.05, 0.9, 0.3, 4, 5, off)
    monkeypatch.setattr(P, "_STEP_CHUNK", 64)
    assert len(P._pieces(n, off)) > 10
    baoab_philox_step(theta2, mom2, grad, -0.1, 0.05, 0.9, 0.3, 4, 5, off)
    assert torch.equal(theta, theta2) and torch.equal(mom, mom2)


def test_compile_failure_falls_back_to_eager_once(monkeypatch):
    def broken_compile(fn, **kwargs):
        def run(*args, **kw):
            raise RuntimeError("no C++ compiler (simulated)")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setattr(P, "_warned", set())
    monkeypatch.setattr(P, "_COMPILED", {})
    step_fn = get_compiled(sgld_philox_step)
    theta, _, grad = _flat(64, 4)
    theta_e = theta.clone()
    with pytest.warns(RuntimeWarning, match="eager"):
        step_fn(theta, grad, 0.01, 0.1, 1, 2)
    sgld_philox_step(theta_e, grad, 0.01, 0.1, 1, 2)
    assert torch.equal(theta, theta_e) and not step_fn.is_compiled
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        step_fn(theta, grad, 0.01, 0.1, 1, 3)


def test_user_error_is_not_mistaken_for_compile_failure(monkeypatch):
    def broken_compile(fn, **kwargs):
        def run(*args, **kw):
            raise RuntimeError("compile failed (simulated)")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setattr(P, "_COMPILED", {})
    step_fn = get_compiled(sgld_philox_step)
    theta, _, grad = _flat(64, 5)
    with pytest.raises(ValueError, match="grad"):
        step_fn(theta, grad[:3], 0.01, 0.1, 1, 2)
    assert step_fn.is_compiled  # the compiled path stays on for the next, valid call


def test_env_switch_disables_compile(monkeypatch):
    monkeypatch.setenv("HEATBATH_COMPILE", "0")
    monkeypatch.setattr(P, "_COMPILED", {})
    assert not get_compiled(sgld_philox_step).is_compiled


@pytest.mark.slow
def test_compiled_sgld_several_pieces_equals_eager_any_thread_count():
    n, off = P._STEP_CHUNK + 1003, 1  # two pieces, unaligned start
    theta, _, grad = _flat(n, 6)
    step_fn = get_compiled(sgld_philox_step)
    old = torch.get_num_threads()
    results = []
    try:
        for threads in (1, max(2, old)):
            torch.set_num_threads(threads)
            th = theta.clone()
            step_fn(th, grad, torch.tensor(0.01), torch.tensor(0.1), torch.tensor(3),
                    torch.tensor(7), off)
            results.append(th)
    finally:
        torch.set_num_threads(old)
    theta_e = theta.clone()
    sgld_philox_step(theta_e, grad, 0.01, 0.1, 3, 7, off)
    assert torch.equal(results[0], theta_e) and torch.equal(results[1], theta_e)


@pytest.mark.slow
def test_compiled_fill_equals_eager():
    fill = get_compiled(philox_fill_)
    out = torch.empty(2, 50_001)
    fill(out, torch.tensor(9), torch.tensor(4), 3, torch.tensor(0.25))
    assert torch.equal(out, philox_fill_(torch.empty(2, 50_001), 9, 4, 3, 0.25))


@pytest.mark.parametrize("ctr,key,expected", KAT_PHILOX4X32_10, ids=["zeros", "ones", "pi"])
def test_python_int_philox_matches_known_answers(ctr, key, expected):
    assert P._philox_py(ctr, key[0], key[1]) == expected


@pytest.mark.slow
def test_compiled_list_steps_equal_eager(monkeypatch):
    # Compiled kernels (noise + check, and each method's update) give the eager numbers:
    # bitwise for SGLD and BAOAB; Adaptive Langevin's |a|^2 is a reduction whose summation
    # order the compiler chooses, so there equality is to float32 rounding of that sum.
    monkeypatch.setattr(P, "SMALL_TENSOR", 40)
    monkeypatch.setattr(P, "_STEP_CHUNK", 64)
    shapes = [torch.Size(s) for s in [(13, 11), (5,), (300,)]]
    keys, offsets = [3, 2**41 + 1, 7], [0, 2, 5]
    g = torch.Generator().manual_seed(0)
    init = [torch.randn(s, generator=g) for s in shapes]
    out = {}
    for compiled in (False, True):
        plan = P.ListNoise(shapes, keys, offsets, torch.float32, torch.device("cpu"),
                           compiled=compiled)
        th, mo = [t.clone() for t in init], [0.1 * t.clone() for t in init]
        xi = torch.full((1, 3), 0.1)
        for step in range(3):
            gr = [1e-2 * torch.randn(s, generator=torch.Generator().manual_seed(step))
                  for s in shapes]
            assert math.isfinite(float(plan.prepare(gr, step)))
            plan.sgld(th, gr, 0.1, 0.01)
            plan.baoab(th, mo, gr, -0.1, 0.05, 0.9, 0.1)
            f = [x.unsqueeze(1) for x in torch.exp(-0.05 * xi).unbind(1)]
            kin = plan.adl_first(th, mo, gr, -0.1, 0.05, f, 0.2, 0.1)
            xi += 0.01 * torch.stack(kin, 1)
            f = [x.unsqueeze(1) for x in torch.exp(-0.05 * xi).unbind(1)]
            plan.adl_second(th, mo, 0.05, f)
            if step == 0:  # before any reduction fed back: bitwise
                out[(compiled, "first")] = [t.clone() for t in th + mo]
        out[compiled] = th + mo
        if compiled:
            assert P._list_kernel("gen_check", True).is_compiled
    for a, b in zip(out[(False, "first")], out[(True, "first")]):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    for a, b in zip(out[False], out[True]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)

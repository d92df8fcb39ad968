"""The verdict rules of :mod:`heatbath.output.claims` on constructed data: each rule must fail
where the data do not support the claim (noise, too few runs, a peak inside the error bars) and
pass where they do. The closed forms used as references are stated next to each test."""

from __future__ import annotations

import math

import numpy as np
import pytest

from heatbath.output.claims import (
    FEW_RUNS,
    SETTINGS_NOT_GIVEN,
    SHORTENED,
    Claim,
    binom_sf,
    block_mean_se,
    central_interval,
    claims_table,
    not_tested,
    paired_t,
    shorten,
    sign_test,
    student_t_sf,
    totals,
    verdict_beats,
    verdict_interior,
    verdict_mean,
    verdict_mean_blocks,
    verdict_single,
    verdict_single_run,
)

# ----------------------------------------------------------------- single-run numbers


def _fig4_like_adam() -> np.ndarray:
    """20 runs with the bulk near 90 % and two outliers (80.8 % and 99.4 %), as Adam's test
    accuracy in the issue's Fig. 4 run."""
    bulk = np.linspace(0.86, 0.95, 18)
    return np.concatenate([[0.808], bulk, [0.994]])


def test_single_run_outside_the_central_interval_differs() -> None:
    ours = _fig4_like_adam()
    # the old rule accepts anything inside [min, max] ...
    assert verdict_single(0.99, ours)[1] == "reproduced"
    # ... the central 5-95 % interval does not: 0.99 is above the 95 % quantile + rounding
    lo, hi = central_interval(ours)
    assert hi < 0.985
    j = verdict_single_run(0.99, ours)
    assert j.verdict == "differs" and "above" in j.reason
    assert verdict_single_run(0.80, ours).verdict == "differs"
    # a value in the bulk passes
    assert verdict_single_run(0.91, ours).verdict == "reproduced"


def test_single_run_interval_edges_and_rounding() -> None:
    ours = np.linspace(0.0, 1.0, 21)  # quantiles are exact: q05 = 0.05, q95 = 0.95
    assert central_interval(ours) == pytest.approx((0.05, 0.95))
    assert verdict_single_run(0.954, ours).verdict == "reproduced"   # within rounding 0.005
    assert verdict_single_run(0.956, ours).verdict == "differs"
    assert verdict_single_run(0.956, ours, rounding=0.01).verdict == "reproduced"


def test_single_run_with_too_few_runs_is_not_tested() -> None:
    j = verdict_single_run(0.9, np.array([0.85, 0.9, 0.95, np.nan]))
    assert j.verdict == "not tested" and j.untested == FEW_RUNS
    with pytest.raises(ValueError, match="lo and hi"):
        central_interval([1.0, 2.0], lo=0.9, hi=0.1)
    with pytest.raises(ValueError, match="min_runs"):
        verdict_single_run(0.5, np.ones(20), min_runs=1)


# ----------------------------------------------------------------- paired tests


def test_binom_sf_exact_values() -> None:
    # P(X >= 15 | n = 20) = (C(20,15) + ... + C(20,20)) / 2^20 = 21700 / 1048576
    assert binom_sf(15, 20) == pytest.approx(21700 / 2 ** 20, rel=1e-12)
    # P(X >= 12 | n = 20) = 263950 / 1048576 (the 12-of-20 case)
    assert binom_sf(12, 20) == pytest.approx(263950 / 2 ** 20, rel=1e-12)
    assert binom_sf(0, 5) == 1.0 and binom_sf(6, 5) == 0.0
    assert binom_sf(5, 5) == pytest.approx(1 / 32)


def test_student_t_sf_against_closed_forms() -> None:
    # df = 1 (Cauchy): P(T > t) = 1/2 - atan(t)/pi; df = 2: 1/2 - t / (2 sqrt(t^2 + 2))
    for t in (-3.0, -0.5, 0.0, 0.3, 1.0, 2.5, 10.0):
        assert student_t_sf(t, 1) == pytest.approx(0.5 - math.atan(t) / math.pi, abs=1e-12)
        assert student_t_sf(t, 2) == pytest.approx(0.5 - t / (2 * math.sqrt(t * t + 2)),
                                                   abs=1e-12)
    # printed tables: t_{0.975, 9} = 2.262, t_{0.95, 4} = 2.132 (4 significant digits)
    assert student_t_sf(2.262, 9) == pytest.approx(0.025, abs=2e-5)
    assert student_t_sf(2.132, 4) == pytest.approx(0.05, abs=2e-5)
    with pytest.raises(ValueError, match="df"):
        student_t_sf(1.0, 0)


def test_sign_test_twelve_of_twenty_is_not_enough() -> None:
    a = np.array([1.0] * 12 + [0.0] * 8)
    b = 1.0 - a
    r = sign_test(a, b)
    assert (r.n, r.wins, r.losses) == (20, 12, 8)
    assert r.p == pytest.approx(263950 / 2 ** 20)
    j = verdict_beats(a, b, names=("AdLaLa", "Adam"))
    assert j.verdict == "not reproduced" and "12 of 20" in j.ours
    # 15 of 20 passes (p = 0.0207)
    a15 = np.array([1.0] * 15 + [0.0] * 5)
    assert verdict_beats(a15, 1.0 - a15).verdict == "reproduced"


def test_sign_test_drops_ties_and_needs_five_pairs() -> None:
    a, b = np.array([0.9, 0.8, 0.7, 0.7]), np.array([0.8, 0.7, 0.6, 0.7])
    r = sign_test(a, b)
    assert (r.n, r.wins, r.losses) == (3, 3, 0)
    j = verdict_beats(a, b)  # 0.5^3 = 0.125 > 0.05: no sign test can pass
    assert j.verdict == "not tested" and j.untested == FEW_RUNS
    five = verdict_beats(np.ones(5), np.zeros(5))
    assert five.verdict == "reproduced"  # 0.5^5 = 0.031


def test_paired_t_statistic() -> None:
    d = np.array([0.01, 0.03, -0.01, 0.02, 0.05])
    r = paired_t(d, np.zeros(5))
    t = d.mean() / (d.std(ddof=1) / math.sqrt(5))
    assert r.statistic == pytest.approx(t) and r.p == pytest.approx(student_t_sf(t, 4))
    assert verdict_beats(d, np.zeros(5), test="t").verdict == "not reproduced"  # p ~ 0.07
    with pytest.raises(ValueError, match="test must be"):
        verdict_beats(d, d, test="wilcoxon")
    with pytest.raises(ValueError, match="same length"):
        sign_test(d, d[:3])


def test_noise_cannot_pass_an_ordering_claim() -> None:
    """Two methods with the same distribution: the 5 % sign test may pass at most 5 % of the
    time. For n = 20 the exact rate is P(X >= 15) = 0.0207; over 2000 repetitions the count is
    Binomial(2000, 0.0207) (sd 6.4): within 4 sd of 41.4."""
    rng = np.random.default_rng(11)
    passed = 0
    for _ in range(2000):
        a, b = rng.normal(0.9, 0.03, 20), rng.normal(0.9, 0.03, 20)
        passed += verdict_beats(a, b).verdict == "reproduced"
    assert abs(passed - 2000 * 21700 / 2 ** 20) <= 4 * 6.4
    assert passed / 2000 <= 0.05


# ----------------------------------------------------------------- interior optimum


def test_interior_optimum_rules() -> None:
    taus = ["1e-7", "1e-6", "1e-5", "1e-4", "1e-3"]
    se = np.full(5, 0.01)
    clear = verdict_interior([0.70, 0.80, 0.90, 0.85, 0.50], se, taus, at=2)
    assert clear.verdict == "reproduced"
    # one run per setting (the quick Fig. 16): no SE, nothing to judge
    one_run = verdict_interior([0.51, 0.55, 0.52, 0.50, 0.49], np.full(5, np.nan), taus)
    assert one_run.verdict == "not tested" and one_run.untested == FEW_RUNS
    # the best is inside but within 2 SE of an end: 0.90 - 0.88 < 2·sqrt(2)·0.01
    close = verdict_interior([0.88, 0.85, 0.90, 0.85, 0.50], se, taus)
    assert close.verdict == "not reproduced" and "1e-7" in close.reason
    # monotone: the best is an end
    assert verdict_interior([0.5, 0.6, 0.7, 0.8, 0.9], se, taus).verdict == "not reproduced"
    # the paper names 1e-5, but 1e-4 beats it by more than 2 SE
    other = verdict_interior([0.60, 0.70, 0.80, 0.90, 0.50], se, taus, at=2)
    assert other.verdict == "not reproduced" and "1e-4 beats 1e-5" in other.reason
    with pytest.raises(ValueError, match="at least 3"):
        verdict_interior([0.5, 0.6], [0.1, 0.1])


# ----------------------------------------------------------------- means over blocks of runs


def test_block_se_includes_the_between_block_variance() -> None:
    # 10 draws × 10 runs: draw means 0.86 ... 0.95, tiny spread inside a draw
    draws = np.repeat(np.arange(10), 10)
    rng = np.random.default_rng(0)
    vals = np.linspace(0.86, 0.95, 10)[draws] + rng.normal(0, 0.002, 100)
    m, se, g = block_mean_se(vals, draws)
    block_means = np.array([vals[draws == k].mean() for k in range(10)])
    assert g == 10 and m == pytest.approx(vals.mean())
    assert se == pytest.approx(block_means.std(ddof=1) / math.sqrt(10))
    naive = vals.std(ddof=1) / 10
    assert se > 2.5 * naive  # runs of one draw are not independent draws of the problem
    # 2 pp off: the naive SE (band 1.3 pp) calls it different, the SE over draws (band
    # 3.2 pp) does not
    assert verdict_mean(m + 0.02, vals)[1] == "differs"
    assert verdict_mean_blocks(m + 0.02, vals, draws).verdict == "reproduced"
    # 5 pp off fails under both
    assert verdict_mean_blocks(m + 0.05, vals, draws).verdict == "differs"
    one = verdict_mean_blocks(0.9, vals, np.zeros(100, dtype=int))
    assert one.verdict == "not tested" and one.untested == FEW_RUNS


# ----------------------------------------------------------------- claims, shortened runs


def test_shorten_marks_every_judged_claim_and_totals_count_why() -> None:
    claims = [Claim("a", "1 %", "2 %", "reproduced"), Claim("b", "x", "y", "not reproduced"),
              Claim("c", "3 %", "4 %", "differs", "far"),
              not_tested("d", "-", "5 %", SETTINGS_NOT_GIVEN),
              Claim("e", "-", "6 %", "not tested", "no number"),
              verdict_beats(np.ones(3), np.zeros(3)).claim("f", "f > g")]  # too few runs
    short = shorten(claims)
    assert [c.label for c in short] == [f"not tested ({SHORTENED})"] * 3 + [
        f"not tested ({SETTINGS_NOT_GIVEN})", "not tested", f"not tested ({SHORTENED})"]
    assert [c.ours for c in short] == [c.ours for c in claims]
    assert totals(short) == ("Totals: 6 not tested (4 shortened run, 1 settings not given, "
                             "1 no claim to judge).\n")
    assert "– not tested (shortened run)" in claims_table(short)
    with pytest.raises(ValueError, match="untested"):
        Claim("a", "b", "c", "reproduced", untested=SHORTENED)
    with pytest.raises(ValueError, match="untested"):
        not_tested("a", "b", "c", "")

"""A paper's claims next to our numbers: one :class:`Claim` type, the verdict rules, one report
writer (:func:`write_report`) shared by every paper under :mod:`heatbath.papers`.

A claim is one statement of the paper (a caption's number, an ordering, "CTLD ends best"), the
paper's value, ours, and a verdict from :data:`VERDICTS`. The rules (docs/reproduce.md, section
'Verdicts', explains each and why):

- a *mean over runs* the paper reports is "reproduced" when our mean lies within
  2·√2·SE + 0.5 pp of it, else "differs" (:func:`verdict_mean`; with the runs in blocks that
  share a data draw, :func:`verdict_mean_blocks` takes the SE over the blocks' means, so that
  it includes the data-draw variance);
- a number from *one run* is "reproduced" when it lies inside the central 5–95 % interval of
  our runs (widened by the paper's rounding), else "differs" (:func:`verdict_single_run`);
- an *ordering* ("A beats B") is "reproduced" only when a one-sided paired test on the runs
  (exact sign test, :func:`sign_test`, or paired t, :func:`paired_t`) rejects "A is not better"
  at the 5 % level, else "not reproduced" (:func:`verdict_beats`);
- an *interior optimum* is "reproduced" when the best setting of a sweep is not at either end
  and beats both ends by 2 SE of the difference (:func:`verdict_interior`);
- another qualitative statement is "reproduced" when it holds for our numbers, else "not
  reproduced" (:func:`verdict_holds`);
- "not tested": nothing the run can judge. :attr:`Claim.untested` says why in a few words,
  printed next to the verdict ("not tested (shortened run)"); :func:`not_tested` builds such a
  claim and :func:`shorten` turns every judged claim of a shortened run (``--quick``, step or
  run caps) into one, since the paper's numbers are for its full settings.

One caption sentence is one claim: a number it states is a claim, a statement it makes is a
claim, but a weaker restatement (a threshold or an ordering read off numbers that are already
claims) is not a second one; report it in the notes instead.

The older rules :func:`verdict_single` (inside [min, max] of our runs) and a plain
:func:`verdict_holds` on an ordering of means are kept for existing callers; they pass noise too
easily and new code should not use them.

A report (``REPORT.md``) is a title, an introduction, the verdict legend and totals, a summary
table of every claim, a list of the jobs that did not finish (the report is built from the
finished ones only), and one :class:`Section` per figure or experiment.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from heatbath.output.io import write_text

__all__ = [
    "ALPHA",
    "FEW_RUNS",
    "SETTINGS_NOT_GIVEN",
    "SHORTENED",
    "VERDICTS",
    "VERDICT_LEGEND",
    "Claim",
    "Judged",
    "PairedTest",
    "Section",
    "binom_sf",
    "block_mean_se",
    "central_interval",
    "claims_table",
    "markdown_table",
    "mean_se",
    "not_tested",
    "paired_t",
    "pct",
    "shorten",
    "sign_test",
    "student_t_sf",
    "summary_table",
    "totals",
    "verdict_beats",
    "verdict_holds",
    "verdict_interior",
    "verdict_mean",
    "verdict_mean_blocks",
    "verdict_single",
    "verdict_single_run",
    "write_report",
]

VERDICTS = ("reproduced", "differs", "not reproduced", "not tested")

#: the level of every test behind a verdict (one-sided)
ALPHA = 0.05

#: :attr:`Claim.untested` of a claim judged on a shortened run (``--quick``, caps)
SHORTENED = "shortened run"
#: :attr:`Claim.untested` when the paper gives no setting to reproduce the claim under
SETTINGS_NOT_GIVEN = "settings not given"
#: :attr:`Claim.untested` when there are too few runs for the rule (e.g. a 5 % sign test)
FEW_RUNS = "too few runs"

#: how the verdicts are decided, for the top of a report
VERDICT_LEGEND = (
    "**Verdicts.** *reproduced*: a mean over runs within 2·√2·SE + 0.5 pp of the paper's "
    "mean (SE over data draws where runs share draws); a single-run number of the paper "
    "inside the central 5–95 % interval of our runs (± its rounding); an ordering that a "
    "one-sided paired test on our runs (exact sign test) supports at the 5 % level; an "
    "interior optimum whose best setting beats both ends by 2 SE; another statement that "
    "holds for our numbers. *differs*: the number is outside that band. *not reproduced*: "
    "the statement is not supported by our runs. *not tested*: nothing to judge; the reason "
    "is in brackets (*shortened run*: `--quick` or caps, the paper's numbers are for the "
    "full settings; *settings not given*: the paper states no setting for it; the caption "
    "states no number). One caption sentence is one claim.\n")

_VERDICT_MARK = {"reproduced": "✅ reproduced", "differs": "≈ differs",
                 "not reproduced": "❌ not reproduced", "not tested": "– not tested"}


@dataclass
class Claim:
    """One statement of a paper, the paper's number, ours, and the verdict.

    Attributes:
        claim: the statement, e.g. ``"AdLaLa beats Adam"``.
        paper: what the paper reports (``"85.3 %"``, ``"best throughout"``, ``"–"``).
        ours: our number(s) as text.
        verdict: one of :data:`VERDICTS`.
        reason: why, when the verdict is not "reproduced".
        untested: for "not tested", why in a few words (:data:`SHORTENED`,
            :data:`SETTINGS_NOT_GIVEN`, :data:`FEW_RUNS`, or a paper's own reason such as
            ``"Eq. 17 unavailable"``); printed as "not tested (shortened run)" and counted
            separately in the totals. Empty otherwise.
    """

    claim: str
    paper: str
    ours: str
    verdict: str
    reason: str = ""
    untested: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if self.untested and self.verdict != "not tested":
            raise ValueError(f"untested is only for the verdict 'not tested', got verdict "
                             f"{self.verdict!r} with untested={self.untested!r}")

    @property
    def label(self) -> str:
        """The verdict as printed: ``"not tested (shortened run)"``, ``"differs"``."""
        return f"{self.verdict} ({self.untested})" if self.untested else self.verdict


class Judged(NamedTuple):
    """What a new-style verdict rule returns: our numbers as text, the verdict, the reason, and
    (for "not tested") why in a few words; :meth:`claim` makes the :class:`Claim`."""

    ours: str
    verdict: str
    reason: str = ""
    untested: str = ""

    @property
    def label(self) -> str:
        """The verdict as printed (see :attr:`Claim.label`)."""
        return f"{self.verdict} ({self.untested})" if self.untested else self.verdict

    def claim(self, claim: str, paper: str) -> Claim:
        """The :class:`Claim` ``claim`` (the statement) with the paper's ``paper`` text."""
        return Claim(claim, paper, self.ours, self.verdict, self.reason, self.untested)


def not_tested(claim: str, paper: str, ours: str, untested: str, reason: str = "") -> Claim:
    """A "not tested" claim; ``untested`` is the few-word reason printed with the verdict
    (e.g. :data:`SETTINGS_NOT_GIVEN`), ``reason`` the longer explanation."""
    if not untested:
        raise ValueError("untested must say in a few words why the claim is not tested")
    return Claim(claim, paper, ours, "not tested", reason, untested)


def shorten(claims: Iterable[Claim], why: str = SHORTENED,
            reason: str = "the paper's numbers are for its full settings; run without "
                          "--quick or caps to judge this claim") -> list[Claim]:
    """Every judged claim as "not tested (``why``)", ours kept (a shortened run cannot be
    judged against the paper's full-length numbers). Claims "not tested" for a reason of their
    own (no number in the caption, :data:`SETTINGS_NOT_GIVEN`, ...) stay as they are; those
    "not tested (too few runs)" are shortened too, since the full run has more runs."""
    return [c if c.verdict == "not tested" and c.untested != FEW_RUNS else
            replace(c, verdict="not tested", untested=why, reason=reason) for c in claims]


# --------------------------------------------------------------------------- verdict rules


def pct(x: float, digits: int = 1) -> str:
    """A fraction in [0, 1] as a percentage string (``"n/a"`` when not finite)."""
    return "n/a" if not math.isfinite(x) else f"{100 * x:.{digits}f} %"


def mean_se(v: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of the finite values of ``v`` (SE ``nan`` for one value)."""
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan
    se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan
    return float(v.mean()), se


def verdict_mean(paper: float, ours: np.ndarray) -> tuple[str, str, str]:
    """Compare the paper's mean over runs with ours: ``(ours text, verdict, reason)``.

    Reproduced when |mean − paper| ≤ 2·√2·SE + 0.005 (see the module docstring).
    """
    m, se = mean_se(ours)
    if not math.isfinite(m):
        return "n/a", "not tested", "no finite values"
    tol = 2 * math.sqrt(2) * (se if math.isfinite(se) else 0.0) + 0.005
    text = f"{pct(m)} ± {100 * se:.1f} (SE, n={ours.size})" if math.isfinite(se) else pct(m)
    ok = abs(m - paper) <= tol
    reason = "" if ok else f"|ours − paper| = {100 * abs(m - paper):.1f} pp > {100 * tol:.1f} pp"
    return text, "reproduced" if ok else "differs", reason


def verdict_single(paper: float, ours: np.ndarray) -> tuple[str, str, str]:
    """Compare one run of the paper with our runs: inside our [min, max] ± 0.5 pp?

    Kept for existing callers: with many runs the range accepts almost anything; new code uses
    :func:`verdict_single_run` (the central 5–95 % interval).
    """
    v = ours[np.isfinite(ours)]
    if v.size == 0:
        return "n/a", "not tested", "no finite values"
    lo, hi = float(v.min()), float(v.max())
    text = (f"mean {pct(float(v.mean()))}, range {100 * lo:.1f}–{100 * hi:.1f} % (n={v.size})"
            if v.size > 1 else pct(lo))
    ok = lo - 0.005 <= paper <= hi + 0.005
    reason = "" if ok else ("paper's run is better than all of ours" if paper > hi
                            else "paper's run is worse than all of ours")
    return text, "reproduced" if ok else "differs", reason


def verdict_holds(holds: bool, reason_if_not: str = "") -> tuple[str, str]:
    """``(verdict, reason)`` of a qualitative statement."""
    return ("reproduced", "") if holds else ("not reproduced", reason_if_not)


def _finite(v: Sequence[float] | np.ndarray) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64).reshape(-1)
    return a[np.isfinite(a)]


def central_interval(values: Sequence[float] | np.ndarray, lo: float = 0.05, hi: float = 0.95
                     ) -> tuple[float, float]:
    """The ``lo`` and ``hi`` quantiles of the finite ``values`` (linear interpolation between
    order statistics, numpy's default): the central 90 % of our runs by default.

    Raises:
        ValueError: ``0 <= lo < hi <= 1`` fails, or no value is finite.
    """
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"lo and hi must satisfy 0 <= lo < hi <= 1, got lo={lo}, hi={hi}")
    v = _finite(values)
    if v.size == 0:
        raise ValueError("values must hold at least one finite number")
    q = np.quantile(v, [lo, hi])
    return float(q[0]), float(q[1])


def verdict_single_run(paper: float, ours: Sequence[float] | np.ndarray, *, lo: float = 0.05,
                       hi: float = 0.95, rounding: float = 0.005, min_runs: int = 10
                       ) -> Judged:
    """One run of the paper against our runs: "reproduced" when ``paper`` lies inside the
    central ``lo``–``hi`` interval of ours (:func:`central_interval`) widened by ``rounding``
    (half the last digit the paper prints: 0.005 for "0.66" or "99 %"), else "differs".

    A run of the paper is an ordinary draw of our run-to-run distribution when it falls in its
    central 90 %; the range [min, max] of many runs would accept almost anything. With fewer
    than ``min_runs`` finite runs the quantiles are not estimable: "not tested (too few runs)".
    """
    if min_runs < 2:
        raise ValueError(f"min_runs must be >= 2, got {min_runs}")
    v = _finite(ours)
    if v.size < min_runs:
        text = (f"mean {pct(float(v.mean()))}, range {100 * v.min():.1f}–{100 * v.max():.1f} % "
                f"(n={v.size})" if v.size else "no finite runs")
        return Judged(text, "not tested",
                      f"{v.size} runs; the {100 * lo:.0f}–{100 * hi:.0f} % interval needs at "
                      f"least {min_runs}", FEW_RUNS)
    a, b = central_interval(v, lo, hi)
    text = (f"mean {pct(float(v.mean()))}, {100 * lo:.0f}–{100 * hi:.0f} % of runs "
            f"{100 * a:.1f}–{100 * b:.1f} % (n={v.size})")
    if a - rounding <= paper <= b + rounding:
        return Judged(text, "reproduced")
    side = "above" if paper > b else "below"
    return Judged(text, "differs", f"the paper's run is {side} the central "
                                   f"{100 * (hi - lo):.0f} % of ours")


def block_mean_se(values: Sequence[float] | np.ndarray, blocks: Sequence[int] | np.ndarray
                  ) -> tuple[float, float, int]:
    r"""Mean and standard error of runs grouped in blocks (e.g. runs sharing one data draw):
    ``(mean, se, number of blocks)``.

    The mean is the mean of the block means and the SE their standard deviation over
    :math:`\sqrt{G}` (G blocks): a two-level (cluster) SE that contains the between-block
    variance (the data draw) as well as the within-block one. With equal block sizes the mean
    equals the plain mean of the runs. Non-finite values are dropped; one block gives SE ``nan``.

    Raises:
        ValueError: ``values`` and ``blocks`` differ in length.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    g = np.asarray(blocks).reshape(-1)
    if v.shape != g.shape:
        raise ValueError(f"values and blocks must have the same length, got {v.size} and "
                         f"{g.size}")
    ok = np.isfinite(v)
    means = np.array([v[ok & (g == b)].mean() for b in np.unique(g[ok])])
    if means.size == 0:
        return math.nan, math.nan, 0
    se = float(means.std(ddof=1) / math.sqrt(means.size)) if means.size > 1 else math.nan
    return float(means.mean()), se, int(means.size)


def verdict_mean_blocks(paper: float, values: Sequence[float] | np.ndarray,
                        blocks: Sequence[int] | np.ndarray, rounding: float = 0.005) -> Judged:
    """The paper's mean over runs against ours when our runs come in blocks (data draws):
    "reproduced" when |mean − paper| ≤ 2·√2·SE + ``rounding`` with the SE of
    :func:`block_mean_se` (it includes the data-draw variance), else "differs"."""
    m, se, g = block_mean_se(values, blocks)
    n = int(np.isfinite(np.asarray(values, dtype=np.float64)).sum())
    if not math.isfinite(m):
        return Judged("n/a", "not tested", "no finite values", FEW_RUNS)
    if not math.isfinite(se):
        return Judged(pct(m), "not tested", "one block: no SE over data draws", FEW_RUNS)
    text = f"{pct(m)} ± {100 * se:.1f} (SE over {g} data draws, n={n})"
    tol = 2 * math.sqrt(2) * se + rounding
    if abs(m - paper) <= tol:
        return Judged(text, "reproduced")
    return Judged(text, "differs",
                  f"|ours − paper| = {100 * abs(m - paper):.1f} pp > {100 * tol:.1f} pp")


class PairedTest(NamedTuple):
    """A one-sided paired test of "a is better than b" on runs paired by seed.

    Attributes:
        n: pairs used (the sign test drops ties).
        wins: pairs with a > b.
        losses: pairs with a < b.
        statistic: the number of wins (sign test) or the t statistic (paired t).
        p: one-sided p-value of "a is not better than b".
        test: ``"sign"`` or ``"t"``.
    """

    n: int
    wins: int
    losses: int
    statistic: float
    p: float
    test: str


def binom_sf(k: int, n: int, p: float = 0.5) -> float:
    """P(X ≥ k) for X ~ Binomial(n, p), exactly (a sum of terms, n up to a few thousand)."""
    if n < 0 or not 0.0 <= p <= 1.0:
        raise ValueError(f"n must be >= 0 and p in [0, 1], got n={n}, p={p}")
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return float(min(1.0, sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i)
                              for i in range(k, n + 1))))


def _paired(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> np.ndarray:
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"a and b must be paired runs of the same length, got {x.size} and "
                         f"{y.size}")
    d = x - y
    return d[np.isfinite(d)]


def sign_test(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> PairedTest:
    """Exact one-sided sign test of "a beats b" on paired runs (``a[i]`` and ``b[i]`` share a
    seed): with k wins among the n untied pairs, p = P(X ≥ k), X ~ Binomial(n, 1/2)."""
    d = _paired(a, b)
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    n = wins + losses
    return PairedTest(n, wins, losses, float(wins), binom_sf(wins, n) if n else 1.0, "sign")


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-14:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function :math:`I_x(a, b)`."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbt = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x)
           + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbt) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lbt) * _betacf(b, a, 1.0 - x) / b


def student_t_sf(t: float, df: float) -> float:
    r"""P(T > t) for Student's t with ``df`` degrees of freedom,
    :math:`\tfrac12 I_{df/(df+t^2)}(df/2, 1/2)` for t ≥ 0."""
    if df <= 0:
        raise ValueError(f"df must be > 0, got {df}")
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * _betainc(0.5 * df, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def paired_t(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> PairedTest:
    """One-sided paired t test of "a beats b": t = mean(d)/(sd(d)/√n), d = a − b, p = P(T > t)
    with n − 1 degrees of freedom (n ≥ 2; all-equal differences give p = 0 or 1)."""
    d = _paired(a, b)
    n = d.size
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    if n < 2:
        return PairedTest(n, wins, losses, math.nan, 1.0, "t")
    sd = float(d.std(ddof=1))
    mean = float(d.mean())
    if sd == 0.0:
        t = math.inf if mean > 0 else (-math.inf if mean < 0 else 0.0)
        return PairedTest(n, wins, losses, t, 0.0 if mean > 0 else 1.0, "t")
    t = mean / (sd / math.sqrt(n))
    return PairedTest(n, wins, losses, t, student_t_sf(t, n - 1), "t")


def verdict_beats(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *,
                  names: tuple[str, str] = ("a", "b"), test: str = "sign",
                  alpha: float = ALPHA) -> Judged:
    """"``names[0]`` beats ``names[1]``" on runs paired by seed: "reproduced" when the one-sided
    paired test (``"sign"``: :func:`sign_test`, ``"t"``: :func:`paired_t`) gives p ≤ ``alpha``,
    else "not reproduced". When the sign test cannot reach ``alpha`` even with every pair won
    (0.5ⁿ > alpha: fewer than 5 pairs at 5 %), "not tested (too few runs)".

    Raises:
        ValueError: ``test`` is not "sign" or "t", or ``alpha`` is not in (0, 1).
    """
    if test not in ("sign", "t"):
        raise ValueError(f"test must be 'sign' or 't', got {test!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    r = sign_test(a, b) if test == "sign" else paired_t(a, b)
    x, y = _finite(a), _finite(b)
    means = (f"; means {pct(float(x.mean()))} vs {pct(float(y.mean()))}"
             if x.size and y.size else "")
    text = (f"{names[0]} ahead in {r.wins} of {r.n} paired runs ({r.losses} behind){means}; "
            f"one-sided {'sign' if test == 'sign' else 'paired t'} test p = {r.p:.3g}")
    if test == "sign" and 0.5 ** max(r.n, 0) > alpha:
        return Judged(text, "not tested", f"{r.n} untied pairs: a sign test cannot reach "
                                          f"p ≤ {alpha:g}", FEW_RUNS)
    if test == "t" and r.n < 3:
        return Judged(text, "not tested", f"{r.n} pairs: too few for a paired t test",
                      FEW_RUNS)
    if r.p <= alpha:
        return Judged(text, "reproduced")
    return Judged(text, "not reproduced",
                  f"p = {r.p:.3g} > {alpha:g}: {names[0]} is not significantly ahead")


def verdict_interior(means: Sequence[float] | np.ndarray, ses: Sequence[float] | np.ndarray,
                     labels: Sequence[str] | None = None, *, k: float = 2.0,
                     at: int | None = None) -> Judged:
    r""""Performance peaks inside the sweep": "reproduced" when the best setting b is not at
    either end and beats both ends by ``k`` SE of the difference,
    :math:`\bar x_b - \bar x_e \ge k \sqrt{SE_b^2 + SE_e^2}` for e = first and last;
    with ``at`` (the index the paper names as best), also when ``at`` itself satisfies that
    and no setting beats ``at`` by ``k`` SE. Otherwise "not reproduced"; an undefined SE at
    a setting that matters (one run) gives "not tested (too few runs)".

    Raises:
        ValueError: fewer than 3 settings, or ``means``/``ses``/``labels`` lengths differ.
    """
    m = np.asarray(means, dtype=np.float64).reshape(-1)
    s = np.asarray(ses, dtype=np.float64).reshape(-1)
    if m.size < 3 or s.shape != m.shape or (labels is not None and len(labels) != m.size):
        raise ValueError(f"means and ses must have one entry per setting (at least 3), got "
                         f"{m.size} and {s.size}")
    names = list(labels) if labels is not None else [str(i) for i in range(m.size)]
    text = ", ".join(f"{n}: {pct(float(x))} ± {100 * float(e):.1f}"
                     for n, x, e in zip(names, m, s, strict=True))
    if not np.isfinite(m).any():
        return Judged(text, "not tested", "no finite values", FEW_RUNS)
    best = int(np.nanargmax(m))
    peak = best if at is None else at
    last = m.size - 1

    def margin(i: int, j: int) -> float:
        return float(m[i] - m[j] - k * math.hypot(s[i], s[j]))

    need = [peak, 0, last] + ([best] if at is not None else [])
    if not all(math.isfinite(float(s[i])) for i in need):
        return Judged(text, "not tested", "no standard error at an end or at the peak "
                                          "(one run per setting)", FEW_RUNS)
    if peak in (0, last):
        return Judged(text, "not reproduced", f"the best setting is an end ({names[peak]})")
    short = [names[e] for e in (0, last) if margin(peak, e) < 0]
    if short:
        return Judged(text, "not reproduced", f"{names[peak]} does not beat "
                      f"{' and '.join(short)} by {k:g} SE")
    if at is not None and best != at and margin(best, at) >= 0:
        return Judged(text, "not reproduced", f"{names[best]} beats {names[at]} by more than "
                                              f"{k:g} SE")
    return Judged(text, "reproduced")


# --------------------------------------------------------------------------- tables


def _mark(c: Claim) -> str:
    mark = _VERDICT_MARK.get(c.verdict, c.verdict)
    return f"{mark} ({c.untested})" if getattr(c, "untested", "") else mark


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def markdown_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> str:
    """A Markdown table of ``rows`` (floats with 4 significant digits, ``nan`` kept)."""
    def fmt(v: object) -> str:
        if isinstance(v, float):
            return "nan" if math.isnan(v) else f"{v:.4g}"
        return _cell(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def claims_table(claims: Iterable[Claim]) -> str:
    """The claims of one section as a Markdown table."""
    lines = ["| claim | paper | ours | verdict | reason |", "|---|---|---|---|---|"]
    lines += [f"| {_cell(c.claim)} | {_cell(c.paper)} | {_cell(c.ours)} | "
              f"{_mark(c)} | {_cell(c.reason)} |" for c in claims]
    return "\n".join(lines) + "\n"


def summary_table(groups: Iterable[tuple[str, Sequence[Claim]]], group_label: str = "fig"
                  ) -> str:
    """Every claim of every section, with the section's key in the first column."""
    lines = [f"| {group_label} | claim | paper | ours | verdict | reason |",
             "|---|---|---|---|---|---|"]
    for key, claims in groups:
        lines += [f"| {_cell(key)} | {_cell(c.claim)} | {_cell(c.paper)} | {_cell(c.ours)} | "
                  f"{_mark(c)} | {_cell(c.reason)} |" for c in claims]
    return "\n".join(lines) + "\n"


def totals(claims: Iterable[Claim]) -> str:
    """``"Totals: 3 reproduced, 1 differs, 4 not tested (3 shortened run, 1 settings not
    given)."`` (verdicts in :data:`VERDICTS` order; the "not tested" ones by
    :attr:`Claim.untested` when any has one, those without one as "no claim to judge")."""
    claims = list(claims)
    counts = Counter(c.verdict for c in claims)
    why = Counter(c.untested or "no claim to judge" for c in claims if c.verdict == "not tested")
    parts = []
    for v in VERDICTS:
        if counts[v]:
            parts.append(f"{counts[v]} {v}")
            if v == "not tested" and any(c.untested for c in claims):
                parts[-1] += " (" + ", ".join(f"{n} {w}" for w, n in why.most_common()) + ")"
    return "Totals: " + (", ".join(parts) or "no claims") + ".\n"


# --------------------------------------------------------------------------- the report


@dataclass
class Section:
    """One figure or experiment of a report.

    Attributes:
        key: its name in the summary table (``"8"`` for Fig. 8, ``"sda"``).
        title: the section heading.
        claims: its claims (a table after ``before``).
        before: Markdown blocks before the claims table (caption, choices, images).
        after: Markdown blocks after it (notes, links to the data).
    """

    key: str
    title: str
    claims: list[Claim] = field(default_factory=list)
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)


def write_report(path: str | Path, *, title: str, intro: Sequence[str],
                 sections: Sequence[Section], middle: Sequence[str] = (),
                 missing: Mapping[str, str] | None = None, group_label: str = "fig",
                 legend: str = VERDICT_LEGEND) -> Path:
    """Write a claims report (Markdown) to ``path`` and return it.

    Layout: ``# title``, the ``intro`` blocks, the verdict ``legend``, the totals, the summary
    table of every section's claims, the missing jobs (``{job: why}``, when any: the report
    covers the finished jobs only), the ``middle`` blocks (e.g. a table of times), then every
    section.
    """
    parts = [f"# {title}\n", *intro, legend,
             totals(c for s in sections for c in s.claims),
             "## Summary: the paper's claims against ours\n",
             summary_table(((s.key, s.claims) for s in sections), group_label)]
    if missing:
        parts.append("## Missing jobs\n")
        parts.append(f"{len(missing)} job(s) did not finish; the sections that need them are "
                     "left out (run again to fill them in):\n")
        parts.extend(f"- `{name}`: {_cell(why)}" for name, why in missing.items())
        parts.append("")
    parts.extend(middle)
    for s in sections:
        parts.append(f"## {s.title}\n")
        parts.extend(s.before)
        if s.claims:
            parts.append(claims_table(s.claims))
        parts.extend(s.after)
    return write_text(path, "\n".join(parts) + "\n")

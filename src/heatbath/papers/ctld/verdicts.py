"""The CTLD paper's claims as :class:`heatbath.output.claims.Claim` s, judged by its rules.

- An ordering over methods ("CTLD ends with the best MSE", "SGD-M is far worse than all
  others", "RMSprop/Adam lead early") is judged on runs paired by seed (every method runs with
  the same seeds): "reproduced" when the named method is ahead of *every* other one by a
  one-sided paired t test at 5 % (:func:`heatbath.output.claims.verdict_beats`); "not
  reproduced" when it is not ahead on the mean, or a test fails; "not tested (too few runs)"
  with fewer than 3 paired seeds (a paired t test needs them).
- A statement about one trace (the temperature is non-monotone) or about the tempering (alpha
  explores) holds or not for our numbers.
- Sensitivity (one setting varied at a time): "flat" and "larger S slightly better" need the
  seed-to-seed spread of a cell: with one seed per cell they are "not tested (too few runs)".
- A ``--quick`` run judges nothing: every claim becomes "not tested (shortened run)"
  (:func:`heatbath.output.claims.shorten`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from heatbath.optim.ctld import ctld_defaults
from heatbath.output.claims import ALPHA, FEW_RUNS, Claim, shorten, verdict_beats

__all__ = ["best_claim", "exploration_claim", "holds_claim", "mean_se", "sensitivity_claims",
           "shortened", "worst_claim"]


def mean_se(values: Iterable[float]) -> tuple[float, float]:
    """Mean and standard error over seeds (finite values only; SE NaN for one value)."""
    v = np.array([x for x in values if math.isfinite(x)], dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan")
    se = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")
    return float(v.mean()), se


def _pm(mean: float, se: float) -> str:
    if math.isnan(mean):
        return "nan"
    return f"{mean:.4g}" if math.isnan(se) else f"{mean:.4g} ± {se:.2g}"


def best_claim(claim: str, paper: str, per_seed: Mapping[str, Mapping[int, float]],
               target: str, labels: Mapping[str, str], *, lower: bool = True) -> Claim:
    """"``target`` is the best method" (lowest value with ``lower``, else highest).

    Args:
        claim: the statement.
        paper: what the paper shows.
        per_seed: ``{method: {seed: value}}`` of the finished, non-diverged runs.
        target: the method the claim names.
        labels: display names of the methods.
        lower: lower is better.

    Returns:
        The judged claim (see the module docstring).
    """
    stats = {m: mean_se(v.values()) for m, v in per_seed.items()}
    ok = {m: s for m, s in stats.items() if math.isfinite(s[0])}
    ours = ", ".join(f"{labels.get(m, m)} {_pm(*s)}" for m, s in ok.items())
    ours += f" (mean ± SE over {max((len(v) for v in per_seed.values()), default=0)} seeds)"
    if target not in ok or len(ok) < 2:
        return Claim(claim, paper, ours, "not tested",
                     "the method diverged or has no finished run, or is alone",
                     untested="no comparison")
    sign = 1.0 if lower else -1.0
    order = sorted(ok, key=lambda m: sign * ok[m][0])
    if order[0] != target:
        return Claim(claim, paper, ours, "not reproduced",
                     f"{'best' if lower else 'highest'} mean: {labels.get(order[0], order[0])}")
    worst_p, few = 0.0, False
    for other in order[1:]:
        seeds = sorted(set(per_seed[target]) & set(per_seed[other]))
        a = [-sign * per_seed[target][s] for s in seeds]  # larger = better for the test
        b = [-sign * per_seed[other][s] for s in seeds]
        j = verdict_beats(a, b, names=(labels.get(target, target), labels.get(other, other)),
                          test="t")
        if j.verdict == "not tested":
            few = True
        elif j.verdict != "reproduced":
            return Claim(claim, paper, ours, "not reproduced",
                         f"ahead of {labels.get(other, other)} on the mean but not "
                         f"significantly (paired t, {j.reason})")
        else:
            worst_p = max(worst_p, _p_of(j.ours))
    if few:
        return Claim(claim, paper, ours, "not tested",
                     f"{'best' if lower else 'highest'} mean, but fewer than 3 paired seeds: "
                     f"a paired t test at "
                     f"{ALPHA:g} cannot be made", untested=FEW_RUNS)
    return Claim(claim, paper, ours + f"; paired t against each other method, largest p = "
                 f"{worst_p:.3g}", "reproduced")


def worst_claim(claim: str, paper: str, per_seed: Mapping[str, Mapping[int, float]],
                target: str, labels: Mapping[str, str]) -> Claim:
    """"``target`` is the worst method" (highest value): :func:`best_claim` reversed."""
    return best_claim(claim, paper, per_seed, target, labels, lower=False)


def _p_of(text: str) -> float:
    try:
        return float(text.rsplit("p = ", 1)[1].split()[0].rstrip(";,"))
    except (IndexError, ValueError):
        return float("nan")


def holds_claim(claim: str, paper: str, ours: str, holds: bool, reason_if_not: str) -> Claim:
    """A statement about one trace or one quantity: "reproduced" when it holds for our numbers.

    Args:
        claim: the statement.
        paper: what the paper shows.
        ours: our numbers.
        holds: whether the statement holds.
        reason_if_not: why not, when it does not.

    Returns:
        The claim.
    """
    return Claim(claim, paper, ours, "reproduced" if holds else "not reproduced",
                 "" if holds else reason_if_not)


def exploration_claim(cold: Sequence[float], crossings: Sequence[int],
                      max_dalpha: float) -> Claim:
    """Did alpha visit both temperatures, with steps that resolve the ramp (delta' - delta)?

    Args:
        cold: CTLD's cold fraction per run.
        crossings: crossings between T_c and >= 5 T_c per run.
        max_dalpha: the largest alpha step of all runs.

    Returns:
        The claim (every CTLD claim needs it).
    """
    c = ctld_defaults()
    ramp = c["delta_prime"] - c["delta"]
    claim = "alpha explores: CTLD spends time both cold and hot (needed by every CTLD claim)"
    paper = "alpha moves between T_c and hot (Fig. 2 right)"
    mean_cold = float(np.nanmean(cold)) if len(cold) else float("nan")
    total = int(sum(crossings))
    ours = (f"cold fraction {mean_cold:.3f} (runs: {', '.join(f'{v:.2f}' for v in cold)}), "
            f"crossings T_c <-> 5 T_c: {', '.join(str(x) for x in crossings)}, largest alpha "
            f"step {max_dalpha:.3g}")
    if not len(cold):
        return Claim(claim, paper, ours, "not tested", "no finished CTLD run",
                     untested="no comparison")
    if not mean_cold < 0.99:
        return Claim(claim, paper, ours, "not reproduced", "alpha stayed cold: CTLD acted as "
                                                            "SGD-M")
    if not mean_cold > 0.01:
        return Claim(claim, paper, ours, "not reproduced", "alpha stayed hot")
    if max_dalpha > ramp:
        return Claim(claim, paper, ours, "not reproduced",
                     "only numerically: alpha jumped across the ramp")
    if total == 0:
        return Claim(claim, paper, ours, "not reproduced",
                     "alpha moved but never went from cold to hot")
    return Claim(claim, paper, ours, "reproduced")


def sensitivity_claims(name: str, heat: np.ndarray, line: Sequence[float],
                       spans: Sequence[float], rows: Sequence[Mapping[str, Any]], ppl0: float,
                       seeds: int) -> list[Claim]:
    """"Flat in (w, sigma)" and "larger S slightly better" for one reading of the lr.

    Args:
        name: the reading (``"mean-loss"``, ``"sum-loss"``).
        heat: seed-mean test perplexity over (w, sigma) (NaN: a missing cell).
        line: seed-mean test perplexity over ``spans``.
        spans: the S values.
        rows: the reading's runs (``part``: ``"heat"`` or ``"line"``, ``w``, ``sigma``,
            ``S``, ``seed``, ``test_ppl``, ``cold_fraction``).
        ppl0: the untrained model's test perplexity.
        seeds: seeds per cell.

    Returns:
        Two claims.
    """
    flat_c, s_c = f"flat in (w, sigma) [{name}]", f"larger S slightly better [{name}]"
    flat_p, s_p = "robust to w and sigma (Fig. 4)", "slightly better for larger S (Fig. 4)"
    g = np.asarray(heat, dtype=float)
    ln = np.asarray(line, dtype=float)
    if not np.isfinite(g).any() or not np.isfinite(ln).any():
        return [Claim(flat_c, flat_p, "no finished cell", "not tested", "the cells are missing",
                      untested="no comparison"),
                Claim(s_c, s_p, "no finished cell", "not tested", "the cells are missing",
                      untested="no comparison")]
    mean_ppl = float(np.nanmean(g))
    spread_ws = float(np.nanmax(g) - np.nanmin(g))
    spread_s = float(np.nanmax(ln) - np.nanmin(ln))
    ok = np.isfinite(ln)
    trend = (float(np.polyfit(np.asarray(spans)[ok], ln[ok], 1)[0]) if ok.sum() > 1
             else float("nan"))
    flat_ours = f"max-min = {spread_ws:.3g} ({100 * spread_ws / mean_ppl:.1f} % of the mean " \
                f"{mean_ppl:.3g})"
    s_ours = f"slope {trend:.3g} ppl per unit S; max-min {spread_s:.3g}"
    if not mean_ppl < 0.9 * ppl0:
        why = (f"the model barely trained at this lr (mean test perplexity {mean_ppl:.3g} vs "
               f"{ppl0:.3g} untrained)")
        return [Claim(flat_c, flat_p, flat_ours, "not tested", why, untested="did not train"),
                Claim(s_c, s_p, s_ours, "not tested", why, untested="did not train")]
    if min((r["cold_fraction"] for r in rows), default=1.0) >= 0.99:
        why = "alpha never left the cold region, so w, sigma and S could not act"
        return [Claim(flat_c, flat_p, flat_ours, "not tested", why, untested="alpha cold"),
                Claim(s_c, s_p, s_ours, "not tested", why, untested="alpha cold")]
    if seeds < 2:
        why = "one seed per cell: the spread cannot be told from seed-to-seed noise"
        return [Claim(flat_c, flat_p, flat_ours, "not tested", why, untested=FEW_RUNS),
                Claim(s_c, s_p, s_ours, "not tested", why, untested=FEW_RUNS)]
    # seed-to-seed noise of one cell: the scale against which "flat" is judged
    by_cell: dict[tuple[Any, Any, Any], list[float]] = {}
    for r in rows:
        by_cell.setdefault((r["w"], r["sigma"], r["S"]), []).append(r["test_ppl"])
    se_cell = float(np.nanmean([np.std(v, ddof=1) / math.sqrt(len(v))
                                for v in by_cell.values() if len(v) > 1]))
    tol = 2 * math.sqrt(2) * se_cell
    flat = Claim(flat_c, flat_p, flat_ours + f"; 2·√2·SE of one cell = {tol:.3g}",
                 "reproduced" if spread_ws <= tol else "not reproduced",
                 "" if spread_ws <= tol else "the spread over (w, sigma) exceeds 2·√2·SE of a "
                                             "cell")
    lo_s, hi_s = min(spans), max(spans)
    at = {s: {int(r["seed"]): r["test_ppl"] for r in rows
              if r.get("part") == "line" and r["S"] == s} for s in (lo_s, hi_s)}
    seeds_both = sorted(set(at[lo_s]) & set(at[hi_s]))
    j = verdict_beats([-at[hi_s][s] for s in seeds_both], [-at[lo_s][s] for s in seeds_both],
                      names=(f"S = {hi_s:g}", f"S = {lo_s:g}"), test="t")
    better = Claim(s_c, s_p, s_ours + f"; S = {hi_s:g} against S = {lo_s:g}, paired t",
                   j.verdict, j.reason, untested=j.untested)
    return [flat, better]


def shortened(claims: Sequence[Claim]) -> list[Claim]:
    """A ``--quick`` run: every judged claim becomes "not tested (shortened run)"."""
    return shorten(claims)

"""A paper's claims next to our numbers: one :class:`Claim` type, the verdict rules, one report
writer (:func:`write_report`) shared by every paper under :mod:`heatbath.papers`.

A claim is one statement of the paper (a caption's number, an ordering, "CTLD ends best"), the
paper's value, ours, and a verdict from :data:`VERDICTS`:

- a *mean over runs* the paper reports is "reproduced" when our mean over n runs lies within
  2·√2·SE + 0.5 pp of it (SE = our standard error; √2 because the paper's mean carries a
  comparable error of its own; 0.5 pp for the paper's rounding), else "differs"
  (:func:`verdict_mean`);
- a number from *one run* is "reproduced" when it lies inside the range of our runs (min … max,
  widened by 0.5 pp for rounding): one run of the paper is then an ordinary draw of our
  run-to-run spread; else "differs" (:func:`verdict_single`);
- a qualitative statement (an ordering, "no loss barrier", "best at τ = 1e-5") is "reproduced"
  when the statement holds for our numbers, else "not reproduced" (:func:`verdict_holds`);
- "not tested": nothing to compare (the paper states no number).

A report (``REPORT.md``) is a title, an introduction, the verdict legend and totals, a summary
table of every claim, a list of the jobs that did not finish (the report is built from the
finished ones only), and one :class:`Section` per figure or experiment.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from heatbath.output.io import write_text

__all__ = [
    "VERDICTS",
    "VERDICT_LEGEND",
    "Claim",
    "Section",
    "claims_table",
    "markdown_table",
    "mean_se",
    "pct",
    "summary_table",
    "totals",
    "verdict_holds",
    "verdict_mean",
    "verdict_single",
    "write_report",
]

VERDICTS = ("reproduced", "differs", "not reproduced", "not tested")

#: how the verdicts are decided, for the top of a report
VERDICT_LEGEND = (
    "**Verdicts.** *reproduced*: a mean over runs within 2·√2·SE + 0.5 pp of the paper's "
    "mean; a single-run number of the paper inside the range of our runs (± 0.5 pp); a "
    "qualitative statement that holds for our numbers. *differs*: the number is outside "
    "that band (the qualitative point may still hold: see the other rows). *not "
    "reproduced*: the statement does not hold for our numbers. *not tested*: nothing to "
    "compare (the caption gives no number).\n")

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
    """

    claim: str
    paper: str
    ours: str
    verdict: str
    reason: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


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
    """Compare one run of the paper with our runs: inside our [min, max] ± 0.5 pp?"""
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


# --------------------------------------------------------------------------- tables


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
              f"{_VERDICT_MARK.get(c.verdict, c.verdict)} | {_cell(c.reason)} |"
              for c in claims]
    return "\n".join(lines) + "\n"


def summary_table(groups: Iterable[tuple[str, Sequence[Claim]]], group_label: str = "fig"
                  ) -> str:
    """Every claim of every section, with the section's key in the first column."""
    lines = [f"| {group_label} | claim | paper | ours | verdict | reason |",
             "|---|---|---|---|---|---|"]
    for key, claims in groups:
        lines += [f"| {_cell(key)} | {_cell(c.claim)} | {_cell(c.paper)} | {_cell(c.ours)} | "
                  f"{_VERDICT_MARK.get(c.verdict, c.verdict)} | {_cell(c.reason)} |"
                  for c in claims]
    return "\n".join(lines) + "\n"


def totals(claims: Iterable[Claim]) -> str:
    """``"Totals: 3 reproduced, 1 differs."`` (verdicts in :data:`VERDICTS` order)."""
    counts = Counter(c.verdict for c in claims)
    return "Totals: " + (", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts[v])
                         or "no claims") + ".\n"


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

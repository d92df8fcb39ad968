"""The experiment framework: claims and verdicts, the report writer, sweeps, and the papers'
experiments run through jobs and executors with the same outputs."""

from __future__ import annotations

import numpy as np
import pytest

from heatbath.output.claims import (
    Claim,
    Section,
    markdown_table,
    totals,
    verdict_holds,
    verdict_mean,
    verdict_single,
    write_report,
)


def test_verdict_mean_band() -> None:
    # 100 values with sd 0.1 -> SE = 0.01; band = 2*sqrt(2)*0.01 + 0.005 = 0.0333
    rng = np.random.default_rng(0)
    v = rng.normal(0.0, 1.0, 100)
    v = 0.8 + 0.1 * (v - v.mean()) / v.std(ddof=1)
    assert verdict_mean(0.8 + 0.030, v)[1] == "reproduced"
    assert verdict_mean(0.8 - 0.036, v)[1] == "differs"
    assert verdict_mean(0.5, np.array([np.nan]))[1] == "not tested"


def test_verdict_single_range_and_holds() -> None:
    ours = np.array([0.60, 0.70, 0.90])
    assert verdict_single(0.905, ours)[1] == "reproduced"  # within the 0.5 pp rounding
    assert verdict_single(0.95, ours)[1] == "differs"
    assert "better than all of ours" in verdict_single(0.95, ours)[2]
    assert verdict_single(0.55, ours)[1] == "differs"
    assert verdict_holds(True) == ("reproduced", "")
    assert verdict_holds(False, "why") == ("not reproduced", "why")
    with pytest.raises(ValueError, match="verdict"):
        Claim("c", "p", "o", "maybe")


def test_report_lists_sections_claims_and_missing_jobs(tmp_path) -> None:
    a = Section("1", "Fig. 1: one", [Claim("x beats y", "yes", "85 %", "reproduced"),
                                      Claim("z | w", "–", "n/a", "not tested", "no number")],
                before=["CAPTION-1\n"], after=["NOTES-1\n"])
    b = Section("2", "Fig. 2: two", [Claim("q", "1", "2", "differs", "far")])
    path = write_report(tmp_path / "REPORT.md", title="A paper", intro=["intro\n"],
                        sections=[a, b], middle=["## Times\n"],
                        missing={"fig3/jobs/adam": "its worker died 3 times"})
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# A paper\n")
    assert "Totals: 1 reproduced, 1 differs, 1 not tested." in text
    # the summary table has one row per claim with the section key; pipes are escaped
    assert "| 1 | z \\| w | – | n/a | – not tested | no number |" in text
    assert "| 2 | q | 1 | 2 | ≈ differs | far |" in text
    assert "## Missing jobs" in text and "`fig3/jobs/adam`: its worker died 3 times" in text
    order = [text.index(s) for s in ("## Summary", "## Missing jobs", "## Times",
                                     "## Fig. 1: one", "CAPTION-1", "\n| x beats y", "NOTES-1",
                                     "## Fig. 2: two")]
    assert order == sorted(order)
    assert "Missing" not in write_report(tmp_path / "R2.md", title="t", intro=[],
                                         sections=[a]).read_text(encoding="utf-8")
    assert totals([]) == "Totals: no claims.\n"


def test_markdown_table() -> None:
    t = markdown_table([{"a": 1, "b": 0.123456, "c": float("nan")}], ["a", "b", "c"])
    assert t.splitlines() == ["| a | b | c |", "|---|---|---|", "| 1 | 0.1235 | nan |"]

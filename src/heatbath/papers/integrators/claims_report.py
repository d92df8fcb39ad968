"""``REPORT.md`` of the integrators paper, written by :func:`heatbath.output.claims.write_report`.

Layout: a header (mode, how the verdicts are decided), the summary table (one row per claim),
the jobs that did not finish, the times, then one section per figure with its caption, the
values heatbath chose where the caption is silent, the embedded PNGs and links to the CSVs of
every plotted number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from heatbath.output.claims import Section
from heatbath.output.claims import write_report as write_claims_report

from .common import FigureOutput

__all__ = ["write_report"]

TITLE = ("Reproducing *Partitioned integrators for thermodynamic parameterization of neural "
         "networks* (Leimkuhler, Matthews, Vlaar 2019)")


def _section(out: FigureOutput) -> Section:
    before = [f"**Caption (abridged).** {out.caption}\n"]
    if out.choices:
        before.append("**Chosen where the caption is silent:**\n")
        before.extend(f"- `{k}`: {v}" for k, v in out.choices.items())
        before.append("")
    before.extend(f"![{out.key} {img}]({out.key}/{img})\n" for img in out.images)
    after = []
    if out.notes:
        after.append("**Notes.**\n")
        after.extend(f"- {n}" for n in out.notes)
        after.append("")
    after.append("Data: " + ", ".join(f"[{c}]({out.key}/{c})" for c in out.csvs)
                 + f" · [config.toml]({out.key}/config.toml) · wall time "
                   f"{out.wall_s:.0f} s (CPU {out.cpu_s:.0f} s)\n")
    return Section(out.key[3:], out.title, list(out.claims), before, after)


def write_report(out_dir: Path, outputs: Sequence[tuple[FigureOutput, dict[str, Any]]],
                 missing: Mapping[str, str] | None = None) -> Path:
    """Write ``out_dir/REPORT.md`` from the figures' outputs; ``missing`` lists the jobs that
    did not finish (their figures are left out)."""
    quick = any(meta.get("quick") or any(meta.get("caps", {}).values()) for _, meta in outputs)
    intro = [
        "Written by `heatbath reproduce`. Every number plotted is in a CSV next to its PNG; "
        "`config.toml` in each figure folder holds the settings used and the values heatbath "
        "chose where the caption is silent.\n"]
    if quick:
        intro.append("> **Shortened runs** (`--quick` or step/run caps): fewer runs and steps "
                     "than the captions, so every numeric and ordering claim is *not tested "
                     "(shortened run)*; our numbers are shown for information. Run "
                     "`heatbath reproduce all` for verdicts.\n")
    total = sum(out.wall_s for out, _ in outputs)
    total_cpu = sum(out.cpu_s for out, _ in outputs)
    times = [
        "## Times (one torch thread per training job)\n",
        "Wall time is the training jobs' time plus the figure's own (summed over jobs, so "
        "it does not shrink when jobs run in parallel; shared machines inflate it); CPU time "
        "is the CPU seconds of the processes that ran them, i.e. the wall time on an idle "
        "core.\n",
        "| fig | wall time (s) | CPU time (s) | mode |\n|---|---|---|---|"]
    for out, meta in outputs:
        mode = "quick" if meta.get("quick") else "full"
        caps = {k: v for k, v in meta.get("caps", {}).items() if v}
        if caps:
            mode += " (" + ", ".join(f"{k} ≤ {v}" for k, v in caps.items()) + ")"
        times.append(f"| {out.key[3:]} | {out.wall_s:.0f} | {out.cpu_s:.0f} | {mode} |")
    times.append(f"| **sum** | **{total:.0f}** | **{total_cpu:.0f}** | |\n")
    return write_claims_report(out_dir / "REPORT.md", title=TITLE, intro=intro,
                               sections=[_section(out) for out, _ in outputs], middle=times,
                               missing=missing)

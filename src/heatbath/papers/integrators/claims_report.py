"""``REPORT.md``: for every caption claim the paper's number, ours and a verdict; every figure.

Layout: a header (mode, how the verdicts are decided), the summary table (one row per claim),
the wall times, then one section per figure with its caption, the values heatbath chose where
the caption is silent, the embedded PNGs and links to the CSVs of every plotted number.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from heatbath.output.io import write_text

from .common import FigureOutput

__all__ = ["write_report", "summary_table"]

_VERDICT_MARK = {"reproduced": "✅ reproduced", "differs": "≈ differs",
                 "not reproduced": "❌ not reproduced", "not tested": "– not tested"}


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def summary_table(outputs: Sequence[tuple[FigureOutput, dict[str, Any]]]) -> str:
    """The per-claim table (Markdown)."""
    lines = ["| fig | claim | paper | ours | verdict | reason |",
             "|---|---|---|---|---|---|"]
    for out, _ in outputs:
        for c in out.claims:
            lines.append(f"| {out.key[3:]} | {_cell(c.claim)} | {_cell(c.paper)} | "
                         f"{_cell(c.ours)} | {_VERDICT_MARK.get(c.verdict, c.verdict)} | "
                         f"{_cell(c.reason)} |")
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, outputs: Sequence[tuple[FigureOutput, dict[str, Any]]]) -> Path:
    """Write ``out_dir/REPORT.md`` from the figures' outputs."""
    quick = any(meta.get("quick") or any(meta.get("caps", {}).values()) for _, meta in outputs)
    counts = Counter(c.verdict for out, _ in outputs for c in out.claims)
    total = sum(out.wall_s for out, _ in outputs)
    total_cpu = sum(out.cpu_s for out, _ in outputs)
    parts = [
        "# Reproducing *Partitioned integrators for thermodynamic parameterization of neural "
        "networks* (Leimkuhler, Matthews, Vlaar 2019)\n",
        "Written by `heatbath reproduce`. Every number plotted is in a CSV next to its PNG; "
        "`config.toml` in each figure folder holds the settings used and the values heatbath "
        "chose where the caption is silent.\n",
    ]
    if quick:
        parts.append("> **Shortened runs** (`--quick` or step/run caps): fewer runs and steps "
                     "than the captions. The verdicts below refer to these shortened runs; run "
                     "`heatbath reproduce all` for the full settings.\n")
    parts.append(
        "**Verdicts.** *reproduced*: a mean over runs within 2·√2·SE + 0.5 pp of the paper's "
        "mean; a single-run number of the paper inside the range of our runs (± 0.5 pp); a "
        "qualitative statement that holds for our numbers. *differs*: the number is outside "
        "that band (the qualitative point may still hold: see the other rows). *not "
        "reproduced*: the statement does not hold for our numbers. *not tested*: nothing to "
        "compare (the caption gives no number).\n")
    parts.append("Totals: " + ", ".join(f"{counts[v]} {v}" for v in
                                         ("reproduced", "differs", "not reproduced", "not tested")
                                         if counts[v]) + ".\n")
    parts.append("## Summary: the paper's claims against ours\n")
    parts.append(summary_table(outputs))
    parts.append("## Times (one torch thread per training call)\n")
    parts.append("Wall time is what this run took on its machine (shared machines inflate it); "
                 "CPU time is the figure process's own CPU seconds, i.e. the wall time on an idle "
                 "core. With `--jobs 2` on 2 idle cores, `all` takes about half the CPU total.\n")
    parts.append("| fig | wall time (s) | CPU time (s) | mode |\n|---|---|---|---|")
    for out, meta in outputs:
        mode = "quick" if meta.get("quick") else "full"
        caps = {k: v for k, v in meta.get("caps", {}).items() if v}
        if caps:
            mode += " (" + ", ".join(f"{k} ≤ {v}" for k, v in caps.items()) + ")"
        parts.append(f"| {out.key[3:]} | {out.wall_s:.0f} | {out.cpu_s:.0f} | {mode} |")
    parts.append(f"| **sum** | **{total:.0f}** | **{total_cpu:.0f}** | |\n")
    for out, _ in outputs:
        parts.append(f"## {out.title}\n")
        parts.append(f"**Caption (abridged).** {out.caption}\n")
        if out.choices:
            parts.append("**Chosen where the caption is silent:**\n")
            parts.extend(f"- `{k}`: {v}" for k, v in out.choices.items())
            parts.append("")
        for img in out.images:
            parts.append(f"![{out.key} {img}]({out.key}/{img})\n")
        if out.claims:
            parts.append("| claim | paper | ours | verdict | reason |\n|---|---|---|---|---|")
            parts.extend(f"| {_cell(c.claim)} | {_cell(c.paper)} | {_cell(c.ours)} | "
                         f"{_VERDICT_MARK.get(c.verdict, c.verdict)} | {_cell(c.reason)} |"
                         for c in out.claims)
            parts.append("")
        if out.notes:
            parts.append("**Notes.**\n")
            parts.extend(f"- {n}" for n in out.notes)
            parts.append("")
        parts.append("Data: " + ", ".join(f"[{c}]({out.key}/{c})" for c in out.csvs)
                     + f" · [config.toml]({out.key}/config.toml) · wall time "
                       f"{out.wall_s:.0f} s (CPU {out.cpu_s:.0f} s)\n")
    return write_text(out_dir / "REPORT.md", "\n".join(parts) + "\n")

"""Run outputs: atomic file writing, per-method summaries and the figures.

- :mod:`heatbath.output.io` - files written whole or not at all (CSV, JSON, TOML, bytes).
- :mod:`heatbath.output.summary` - final-value statistics per method (``summary.md``/``.csv``).
- :mod:`heatbath.output.plots` - decision maps, learning curves, parameter histograms (PNG).

``plots`` imports matplotlib (the ``experiments`` extra), so it is not imported here.
"""

from heatbath.output.io import atomic_write, to_toml, write_csv, write_json, write_text, write_toml
from heatbath.output.summary import (
    METRIC_COLUMNS,
    MethodSummary,
    Stat,
    summarize,
    summary_markdown,
    write_summary,
)

__all__ = [
    "atomic_write",
    "to_toml",
    "write_csv",
    "write_json",
    "write_text",
    "write_toml",
    "METRIC_COLUMNS",
    "MethodSummary",
    "Stat",
    "summarize",
    "summary_markdown",
    "write_summary",
]

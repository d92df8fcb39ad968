"""Figure-by-figure reproduction of the partitioned-integrators paper (``heatbath reproduce``).

Leimkuhler, Matthews, Vlaar, "Partitioned integrators for thermodynamic parameterization of
neural networks" (2019); spec ``thermodynamic-integrators.md`` §7 lists the figures.

- :data:`FIGURES` — figure keys (``"fig1"`` … ``"fig16"``) and where each is defined; every
  figure module holds its :class:`FigureSpec` (caption settings, choices, quick overrides) and a
  ``run(spec, cfg, ctx)``.
- :func:`run_figures` / :func:`run_figure` — run figures into ``ctx.out`` and rewrite
  ``REPORT.md``.
- :mod:`.reproduce_cli` — ``heatbath reproduce`` (``setup``/``run`` for :mod:`heatbath.cli`).
"""

from .common import Claim, Context, FigureOutput, FigureSpec
from .figures import FIGURES, figure_spec, parse_keys, run_figure, run_figures

__all__ = [
    "FIGURES",
    "Claim",
    "Context",
    "FigureOutput",
    "FigureSpec",
    "figure_spec",
    "parse_keys",
    "run_figure",
    "run_figures",
]

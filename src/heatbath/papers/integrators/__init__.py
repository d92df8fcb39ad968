"""Figure-by-figure reproduction of the partitioned-integrators paper (``heatbath reproduce``).

Leimkuhler, Matthews, Vlaar, "Partitioned integrators for thermodynamic parameterization of
neural networks" (2019); docs/reproduce.md lists the figures and the choices made.

- :data:`FIGURES` — figure keys (``"fig1"`` … ``"fig16"``) and where each is defined; every
  figure module holds its :class:`FigureSpec` (caption settings, choices, quick overrides),
  ``jobs(spec, cfg, ctx)`` (its training jobs) and ``report(spec, cfg, ctx, results)`` (the
  figure, from the finished jobs).
- :func:`run_figures` / :func:`run_figure` — run figures' jobs on an executor (local processes
  or Ray, :mod:`heatbath.engine.executors`) into ``ctx.out`` and rewrite ``REPORT.md``.
- :mod:`.reproduce_cli` — ``heatbath reproduce`` (``setup``/``run`` for :mod:`heatbath.cli`).
"""

from heatbath.output.claims import Claim

from .common import Context, FigureOutput, FigureSpec
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

"""The papers heatbath reproduces, one subpackage each, all built on :mod:`heatbath.engine`.

- :mod:`heatbath.papers.integrators` - Leimkuhler, Matthews & Vlaar (2019), partitioned
  integrators (``heatbath reproduce``).
- :mod:`heatbath.papers.ctld` - Ye, Zhu & Mantiuk, continuously tempered Langevin dynamics
  (``heatbath ctld``).
- :mod:`heatbath.papers.structure` - structure-preserving deep learning (``heatbath structure``).
"""

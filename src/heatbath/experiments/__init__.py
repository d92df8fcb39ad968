"""Experiments built on heatbath's engine: CTLD (:mod:`.ctld`) and structure-preserving networks
(:mod:`.structure`). Each ``run_*`` function writes its plots, tables and report section into an
output folder and returns its numbers; the ``heatbath`` CLI exposes them."""

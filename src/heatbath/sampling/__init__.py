"""From trajectories to posteriors: samples, predictive averages, calibration, diagnostics.

- :class:`SampleCollector` — keep thinned samples after a burn-in, in memory, on disk (one
  safetensors file per sample, resumable) or as a bounded reservoir; one chain per replica.
- :func:`predictive` — the posterior predictive (class probabilities, or regression mean and
  variance) averaged over samples and chains; :func:`chain_diagnostics` — R̂/ESS of the loss,
  the predictions and random projections of θ.
- metrics: :func:`nll`, :func:`accuracy`, :func:`brier`, :func:`ece`,
  :func:`predictive_entropy`, :func:`ood_auroc`, :func:`reliability_diagram`.
- diagnostics: :func:`rhat`, :func:`ess` (bulk), :func:`ess_tail`, :func:`autocorr_time`,
  :func:`trace_plot`.
- :mod:`heatbath.sampling.reference` — a worked case with an exact posterior.

See docs/sampling.md.
"""

from .collector import MANIFEST_FORMAT, Sample, SampleCollector, load_samples, stack_samples
from .diagnostics import (
    autocorr_time,
    ess,
    ess_bulk,
    ess_tail,
    mcse_mean,
    rank_normalize,
    rhat,
    split_chains,
    summarize,
    trace_plot,
)
from .metrics import (
    accuracy,
    brier,
    calibration_bins,
    classification_metrics,
    ece,
    gaussian_nll,
    nll,
    ood_auroc,
    predictive_entropy,
    reliability_diagram,
)
from .predictive import Predictive, as_stacked, chain_diagnostics, predictive

__all__ = [
    "MANIFEST_FORMAT", "Sample", "SampleCollector", "load_samples", "stack_samples",
    "autocorr_time", "ess", "ess_bulk", "ess_tail", "mcse_mean", "rank_normalize", "rhat",
    "split_chains", "summarize", "trace_plot",
    "accuracy", "brier", "calibration_bins", "classification_metrics", "ece", "gaussian_nll",
    "nll", "ood_auroc", "predictive_entropy", "reliability_diagram",
    "Predictive", "as_stacked", "chain_diagnostics", "predictive",
]

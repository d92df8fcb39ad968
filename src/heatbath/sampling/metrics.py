r"""Predictive metrics: NLL, accuracy, Brier score, calibration error, entropy, OOD AUROC.

Classification metrics take class probabilities ``probs [n, k]`` (rows summing to 1, e.g. the
posterior predictive from :func:`heatbath.sampling.predictive`) and int64 labels ``y [n]``:

- NLL :math:`-\frac1n\sum_i \log p_{i, y_i}` (probabilities clamped at 1e-12);
- accuracy of the arg-max class;
- Brier score :math:`\frac1n\sum_i \sum_c (p_{ic} - [y_i = c])^2` (0 … 2);
- expected calibration error of the top-label confidence,
  :math:`\mathrm{ECE} = \sum_b \frac{n_b}{n}\,|\mathrm{acc}_b - \mathrm{conf}_b|`, over bins of
  equal width in confidence or of equal mass (each bin the same number of points);
- predictive entropy :math:`-\sum_c p_c \log p_c` per point;
- AUROC of a score (e.g. the entropy) separating in-distribution from shifted inputs, the
  Mann–Whitney statistic with ties counted one half.

For regression, :func:`gaussian_nll` scores a Gaussian predictive mean and variance.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from heatbath._validate import check_choice, check_int

__all__ = [
    "nll", "accuracy", "brier", "ece", "calibration_bins", "predictive_entropy", "ood_auroc",
    "gaussian_nll", "classification_metrics", "reliability_diagram",
]

_EPS = 1e-12


def _probs_labels(probs: Any, y: Any) -> tuple[Tensor, Tensor]:
    p = torch.as_tensor(probs).detach().to(torch.float64).cpu()
    t = torch.as_tensor(y).detach().cpu()
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probs must be shaped [n, k] with k >= 2, got {tuple(p.shape)}")
    if t.ndim != 1 or t.shape[0] != p.shape[0]:
        raise ValueError(f"y must be shaped [n] = [{p.shape[0]}], got {tuple(t.shape)}")
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ValueError(f"y must hold integer class labels, got dtype {t.dtype}")
    if p.shape[0] == 0:
        raise ValueError("probs must hold at least one row")
    if int(t.min()) < 0 or int(t.max()) >= p.shape[1]:
        raise ValueError(f"y must hold labels in [0, {p.shape[1] - 1}]")
    return p, t.to(torch.int64)


def nll(probs: Any, y: Any) -> float:
    """Mean negative log-likelihood of the labels under ``probs``."""
    p, t = _probs_labels(probs, y)
    return float(-torch.log(p.gather(1, t[:, None]).clamp_min(_EPS)).mean())


def accuracy(probs: Any, y: Any) -> float:
    """Fraction of points whose arg-max class is the label."""
    p, t = _probs_labels(probs, y)
    return float((p.argmax(1) == t).double().mean())


def brier(probs: Any, y: Any) -> float:
    """Multi-class Brier score (mean squared distance to the one-hot label, in [0, 2])."""
    p, t = _probs_labels(probs, y)
    onehot = torch.nn.functional.one_hot(t, p.shape[1]).to(p.dtype)
    return float(((p - onehot) ** 2).sum(1).mean())


def calibration_bins(probs: Any, y: Any, n_bins: int = 15, binning: str = "equal_width"
                     ) -> dict[str, np.ndarray]:
    """Per-bin confidence, accuracy and count of the top-label prediction.

    Args:
        probs: class probabilities ``[n, k]``.
        y: labels ``[n]``.
        n_bins: number of bins (>= 1).
        binning: ``"equal_width"`` (bins of width 1/n_bins in confidence; a point of
            confidence exactly at an edge goes to the upper bin, 1.0 to the last) or
            ``"equal_mass"`` (points sorted by confidence, split into ``n_bins`` nearly equal
            groups).

    Returns:
        ``{"confidence", "accuracy", "count", "lower", "upper"}``, arrays over the non-empty
        bins (``lower``/``upper``: the bins' confidence range).
    """
    p, t = _probs_labels(probs, y)
    check_int("n_bins", n_bins, low=1)
    binning = check_choice("binning", binning, ("equal_width", "equal_mass"))
    conf, pred = p.max(1)
    correct = (pred == t).double().numpy()
    conf_np = conf.numpy()
    n = conf_np.shape[0]
    if binning == "equal_width":
        idx = np.minimum((conf_np * n_bins).astype(np.int64), n_bins - 1)
        groups = [np.flatnonzero(idx == b) for b in range(n_bins)]
        edges = [(b / n_bins, (b + 1) / n_bins) for b in range(n_bins)]
    else:
        order = np.argsort(conf_np, kind="mergesort")
        groups = [g for g in np.array_split(order, min(n_bins, n))]
        edges = [(float(conf_np[g].min()), float(conf_np[g].max())) for g in groups]
    keep = [(g, e) for g, e in zip(groups, edges) if g.size]
    return {
        "confidence": np.array([conf_np[g].mean() for g, _ in keep]),
        "accuracy": np.array([correct[g].mean() for g, _ in keep]),
        "count": np.array([g.size for g, _ in keep], dtype=np.int64),
        "lower": np.array([e[0] for _, e in keep]),
        "upper": np.array([e[1] for _, e in keep]),
    }


def ece(probs: Any, y: Any, n_bins: int = 15, binning: str = "equal_width") -> float:
    """Expected calibration error of the top-label confidence (see :func:`calibration_bins`)."""
    bins = calibration_bins(probs, y, n_bins, binning)
    w = bins["count"] / bins["count"].sum()
    return float(np.sum(w * np.abs(bins["accuracy"] - bins["confidence"])))


def predictive_entropy(probs: Any) -> Tensor:
    """Entropy (nats) of each row of ``probs [n, k]``, shape ``[n]``."""
    p = torch.as_tensor(probs).detach().to(torch.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must be shaped [n, k], got {tuple(p.shape)}")
    return -(p * torch.log(p.clamp_min(_EPS))).sum(1)


def ood_auroc(score_in: Any, score_out: Any) -> float:
    """AUROC of ``score`` for telling shifted (``score_out``) from in-distribution inputs.

    The probability that a random shifted point scores higher than a random in-distribution
    point (ties count one half): 0.5 is chance, 1.0 perfect. Use a score that should grow off
    the data, such as :func:`predictive_entropy`.
    """
    a = torch.as_tensor(score_in).detach().double().reshape(-1).cpu().numpy()
    b = torch.as_tensor(score_out).detach().double().reshape(-1).cpu().numpy()
    if a.size == 0 or b.size == 0:
        raise ValueError("score_in and score_out must each hold at least one score")
    both = np.concatenate([a, b])
    from .diagnostics import _average_ranks

    ranks = _average_ranks(both)
    r_out = float(ranks[a.size:].sum())
    return (r_out - b.size * (b.size + 1) / 2.0) / (a.size * b.size)


def gaussian_nll(mean: Any, var: Any, y: Any) -> float:
    r"""Mean Gaussian NLL :math:`\frac12\log(2\pi v) + (y - m)^2/(2v)` of targets ``y``."""
    m = torch.as_tensor(mean).detach().double()
    v = torch.as_tensor(var).detach().double()
    t = torch.as_tensor(y).detach().double().reshape(m.shape)
    if bool((v <= 0).any()):
        raise ValueError("var must be positive")
    return float((0.5 * torch.log(2 * math.pi * v) + (t - m) ** 2 / (2 * v)).mean())


def classification_metrics(probs: Any, y: Any, n_bins: int = 15) -> dict[str, float]:
    """``{"nll", "accuracy", "brier", "ece", "ece_equal_mass", "entropy"}`` of ``probs``."""
    return {"nll": nll(probs, y), "accuracy": accuracy(probs, y), "brier": brier(probs, y),
            "ece": ece(probs, y, n_bins, "equal_width"),
            "ece_equal_mass": ece(probs, y, n_bins, "equal_mass"),
            "entropy": float(predictive_entropy(probs).mean())}


def reliability_diagram(curves: dict[str, tuple[Any, Any]], *, n_bins: int = 15,
                        binning: str = "equal_width", path: Any = None,
                        title: str | None = None) -> Any:
    """Reliability diagram: accuracy against confidence per bin, one line per predictor.

    Args:
        curves: ``{label: (probs [n, k], y [n])}``, e.g. the final iterate and the sample
            average; each label gets its ECE in the legend.
        n_bins: number of bins, as for :func:`calibration_bins`.
        binning: ``"equal_width"`` or ``"equal_mass"``, as for :func:`calibration_bins`.
        path: if given, save the figure there and close it.
        title: a figure title.

    Returns:
        The matplotlib figure (None when saved to ``path``).
    """
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if not curves:
        raise ValueError("curves must hold at least one (probs, y) pair")
    fig, (ax, axh) = plt.subplots(2, 1, figsize=(4.8, 5.6), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfect calibration")
    for label, (probs, y) in curves.items():
        bins = calibration_bins(probs, y, n_bins, binning)
        e = ece(probs, y, n_bins, binning)
        line, = ax.plot(bins["confidence"], bins["accuracy"], marker="o", ms=3,
                        label=f"{label} (ECE {e:.3f})")
        axh.plot(bins["confidence"], bins["count"] / bins["count"].sum(), marker=".",
                 color=line.get_color())
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1.0)
    ax.set_ylim(0, 1.0)
    ax.legend(fontsize=7, loc="upper left")
    axh.set_xlabel(f"confidence ({binning.replace('_', ' ')} bins)")
    axh.set_ylabel("fraction")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return None
    return fig

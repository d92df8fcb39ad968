r"""Convergence diagnostics across chains: split-R̂, bulk/tail ESS, autocorrelation time, traces.

All functions take ``chains`` shaped ``[n_chains, n_draws]`` (a torch tensor, a NumPy array or
nested lists) and work in float64 NumPy.

The estimators follow the rank-normalised recipe of Vehtari, Gelman, Simpson, Carpenter and
Bürkner (2021), implemented here from the paper's definitions:

- **Split chains.** Each chain is cut into its first and second half (the middle draw of an odd
  length is dropped), so a chain that drifts looks like two chains that disagree.
- **Rank normalisation.** All draws are ranked together (ties share their mean rank) and mapped
  to normal scores :math:`z = \Phi^{-1}((r - 3/8)/(S + 1/4))`, which makes the diagnostics
  well defined for heavy tails and invariant under monotone transforms.
- **R̂** of :math:`M` chains of :math:`n` draws: with :math:`W` the mean within-chain variance and
  :math:`B/n` the variance of the chain means,
  :math:`\hat R = \sqrt{((n-1)W/n + B/n)/W}`. The reported value is the larger of the bulk R̂
  (rank-normalised split chains) and the tail R̂ (the same on the folded draws
  :math:`|x - \mathrm{median}(x)|`).
- **ESS** :math:`= MN/\hat\tau` with the integrated autocorrelation time
  :math:`\hat\tau = -1 + 2\sum_{k}(\hat\rho_{2k} + \hat\rho_{2k+1})`, the autocorrelations
  :math:`\hat\rho_t = 1 - (W - \bar c_t)/\widehat{\mathrm{var}}^+` combined over chains
  (:math:`\bar c_t` the mean autocovariance at lag t, from an FFT), truncated by Geyer's initial
  positive sequence, made monotone (Geyer's initial monotone sequence), plus the first dropped
  even-lag term when it is positive (the paper's improved estimate).
  *Bulk* ESS applies this to the rank-normalised split chains, *tail* ESS is the smaller ESS of
  the indicators :math:`x \le q_{0.05}` and :math:`x \le q_{0.95}`, and ``method="mean"``
  uses the raw split draws (the ESS that sets the Monte Carlo error of a mean).

See docs/sampling.md, section 'Diagnose', for how to read them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from heatbath._validate import check_choice, check_int

__all__ = [
    "as_chains", "rhat", "ess", "ess_bulk", "ess_tail", "autocorr_time", "mcse_mean",
    "split_chains", "rank_normalize", "summarize", "trace_plot",
]


def as_chains(chains: Any, *, name: str = "chains", min_draws: int = 4) -> np.ndarray:
    """``chains`` as a float64 array ``[n_chains, n_draws]``; ValueError for other shapes.

    Args:
        chains: a tensor, array or nested sequence shaped ``[n_chains, n_draws]``.
        name: the parameter name used in error messages.
        min_draws: the fewest draws per chain accepted.

    Returns:
        A C-contiguous float64 array.

    Raises:
        ValueError: if ``chains`` is not two-dimensional, too short, or not finite.
    """
    if hasattr(chains, "detach"):
        chains = chains.detach().cpu().double().numpy()
    arr = np.asarray(chains, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be shaped [n_chains, n_draws], got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < min_draws:
        raise ValueError(f"{name} needs at least 1 chain and {min_draws} draws per chain, got "
                         f"shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} holds NaN or inf")
    return np.ascontiguousarray(arr)


def split_chains(x: np.ndarray) -> np.ndarray:
    """``[M, n]`` → ``[2M, n // 2]``: first and second half of every chain (middle draw dropped
    when ``n`` is odd)."""
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half:]], axis=0)


def _average_ranks(flat: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their mean rank."""
    order = np.argsort(flat, kind="mergesort")
    sorted_vals = flat[order]
    ranks = np.empty(flat.size, dtype=np.float64)
    # boundaries of runs of equal values
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_vals)) + 1]
    ends = np.r_[starts[1:], flat.size]
    mean_rank = (starts + ends + 1) / 2.0  # mean of (start+1 .. end)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def _norm_ppf(p: np.ndarray) -> np.ndarray:
    """Inverse standard normal CDF (via ``torch.special.ndtri``, exact to double precision)."""
    import torch

    return torch.special.ndtri(torch.from_numpy(np.ascontiguousarray(p))).numpy()


def rank_normalize(x: np.ndarray) -> np.ndarray:
    """Normal scores :math:`\\Phi^{-1}((r - 3/8)/(S + 1/4))` of the pooled ranks, same shape."""
    flat = x.reshape(-1)
    r = _average_ranks(flat)
    return _norm_ppf((r - 0.375) / (flat.size + 0.25)).reshape(x.shape)


def _rhat_basic(x: np.ndarray) -> float:
    M, n = x.shape
    if M < 2:
        raise ValueError("R-hat needs at least two (split) chains")
    W = float(np.mean(np.var(x, axis=1, ddof=1)))
    B_over_n = float(np.var(np.mean(x, axis=1), ddof=1))
    if W == 0.0:
        return 1.0 if B_over_n == 0.0 else math.inf
    return math.sqrt(((n - 1) / n * W + B_over_n) / W)


def rhat(chains: Any) -> float:
    r"""Rank-normalised split-R̂: the larger of bulk and tail R̂ (Vehtari et al. 2021).

    Args:
        chains: draws shaped ``[n_chains, n_draws]`` (tensor, array or lists), at least 4 draws.
            One chain is allowed (its halves are compared).

    Returns:
        R̂ as a float; values above about 1.01 say the chains have not mixed.
    """
    x = as_chains(chains)
    s = split_chains(x)
    bulk = _rhat_basic(rank_normalize(s))
    folded = np.abs(s - np.median(s))
    tail = _rhat_basic(rank_normalize(folded))
    return max(bulk, tail)


def _autocov(x: np.ndarray) -> np.ndarray:
    """Biased (1/n) autocovariance of every row at lags 0 … n-1, via FFT."""
    n = x.shape[1]
    centred = x - x.mean(axis=1, keepdims=True)
    size = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(centred, n=size, axis=1)
    return np.fft.irfft(f * np.conj(f), n=size, axis=1)[:, :n] / n


def _ess_raw(x: np.ndarray) -> float:
    """ESS of chains ``[M, n]`` (no splitting or normalisation): Geyer's initial monotone
    sequence on the multi-chain autocorrelation estimate."""
    M, n = x.shape
    acov = _autocov(x)
    chain_var = acov[:, 0] * n / (n - 1)
    W = float(chain_var.mean())
    var_plus = W * (n - 1) / n
    if M > 1:
        var_plus += float(np.var(x.mean(axis=1), ddof=1))
    if var_plus <= 0.0:
        return float(M * n)  # constant draws: every draw is as good as independent
    rho = 1.0 - (W - acov.mean(axis=0)) / var_plus
    rho[0] = 1.0
    # Geyer's initial positive sequence on the pair sums Γ_k = ρ_2k + ρ_2k+1 (k = 0 … K): keep
    # the pairs before the first k >= 1 with Γ_k <= 0, make them non-increasing (initial
    # monotone sequence), and add the first dropped even-lag ρ when it is still positive.
    K = max(0, math.ceil((n - 2) / 2) - 1)
    gamma = rho[0 : 2 * K + 2 : 2] + rho[1 : 2 * K + 2 : 2]
    if gamma[0] <= 0.0:
        k_stop = 0
    else:
        nonpos = np.flatnonzero(gamma[1:] <= 0.0)
        k_stop = int(nonpos[0]) + 1 if nonpos.size else K
    kept = np.minimum.accumulate(gamma[:k_stop]) if k_stop > 0 else gamma[:0]
    tau = -1.0 + 2.0 * float(kept.sum()) + max(float(rho[2 * k_stop]), 0.0)
    total = M * n
    # an antithetic chain can give tau < 1: cap ESS at S log10(S), as Stan does
    tau = max(tau, 1.0 / math.log10(total)) if total > 1 else max(tau, 1.0)
    return total / tau


def ess_bulk(chains: Any) -> float:
    """Bulk ESS: the ESS of the rank-normalised split chains."""
    return _ess_raw(rank_normalize(split_chains(as_chains(chains))))


def ess_tail(chains: Any) -> float:
    """Tail ESS: the smaller ESS of the 5% and 95% quantile indicators (split chains)."""
    x = as_chains(chains)
    lo, hi = np.quantile(x, [0.05, 0.95])  # quantiles of all draws, before splitting
    s = split_chains(x)
    return min(_ess_raw((s <= lo).astype(np.float64)), _ess_raw((s <= hi).astype(np.float64)))


def ess(chains: Any, method: str = "bulk") -> float:
    """Effective sample size of all draws together.

    Args:
        chains: draws shaped ``[n_chains, n_draws]`` (tensor, array or lists).
        method: ``"bulk"`` (default, rank-normalised), ``"tail"`` or ``"mean"`` (raw split
            draws: the ESS behind the Monte Carlo error of the mean).

    Returns:
        The ESS as a float, at most about ``n_chains * n_draws * log10(n_chains * n_draws)``.
    """
    method = check_choice("method", method, ("bulk", "tail", "mean"))
    if method == "bulk":
        return ess_bulk(chains)
    if method == "tail":
        return ess_tail(chains)
    return _ess_raw(split_chains(as_chains(chains)))


def autocorr_time(chains: Any) -> float:
    r"""Integrated autocorrelation time :math:`\tau = 1 + 2\sum_{t\ge1}\rho_t` in draws.

    Estimated from all chains together (not split, not rank-normalised), with Geyer's initial
    monotone sequence: ``n_chains * n_draws / autocorr_time`` is the ESS of the mean.
    """
    x = as_chains(chains)
    return x.size / _ess_raw(x)


def mcse_mean(chains: Any) -> float:
    """Monte Carlo standard error of the mean of all draws: ``sd / sqrt(ESS_mean)``."""
    x = as_chains(chains)
    return float(np.std(x, ddof=1)) / math.sqrt(ess(x, "mean"))


def summarize(chains: Any) -> dict[str, float]:
    """``{"mean", "sd", "rhat", "ess_bulk", "ess_tail", "autocorr_time", "mcse_mean"}``."""
    x = as_chains(chains)
    return {"mean": float(x.mean()), "sd": float(x.std(ddof=1)), "rhat": rhat(x),
            "ess_bulk": ess_bulk(x), "ess_tail": ess_tail(x), "autocorr_time": autocorr_time(x),
            "mcse_mean": mcse_mean(x)}


def trace_plot(series: dict[str, Any] | Any, *, steps: Sequence[int] | None = None,
               path: Any = None, title: str | None = None, max_panels: int = 8) -> Any:
    """Trace plot: one panel per quantity, one line per chain, R̂ and bulk ESS in the title.

    Args:
        series: ``{name: chains [n_chains, n_draws]}`` or one ``chains`` array.
        steps: the x values (e.g. the optimizer step of each draw); default 0 … n_draws-1.
        path: if given, the figure is saved there (PNG, PDF, … by suffix) and closed.
        title: a figure title.
        max_panels: at most this many quantities are drawn (>= 1).

    Returns:
        The matplotlib figure (None when it was saved to ``path`` and closed).
    """
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    check_int("max_panels", max_panels, low=1)
    if not isinstance(series, dict):
        series = {"value": series}
    items = [(k, as_chains(v, name=f"series[{k!r}]")) for k, v in series.items()][:max_panels]
    if not items:
        raise ValueError("series must hold at least one quantity")
    fig, axes = plt.subplots(len(items), 1, figsize=(7, 1.9 * len(items) + 0.6), squeeze=False,
                             sharex=True)
    for ax, (name, x) in zip(axes[:, 0], items):
        xs = np.arange(x.shape[1]) if steps is None else np.asarray(steps)
        if xs.shape[0] != x.shape[1]:
            raise ValueError(f"steps has {xs.shape[0]} entries, series {name!r} {x.shape[1]} "
                             "draws")
        for c in range(x.shape[0]):
            ax.plot(xs, x[c], lw=0.7, alpha=0.8)
        r = rhat(x)
        ax.set_title(f"{name}: R̂ = {r:.3f}, bulk ESS = {ess_bulk(x):.0f}", fontsize=9)
    axes[-1, 0].set_xlabel("step" if steps is not None else "draw")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return None
    return fig

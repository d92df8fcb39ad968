r"""The posterior predictive of collected samples, and diagnostics across chains.

For samples :math:`\theta_{s,r}` (sample s of chain r) the posterior predictive of a classifier
is the average of the samples' class probabilities,

.. math:: \hat p(y \mid x) = \frac{1}{SR}\sum_{s,r} p(y \mid x, \theta_{s,r}),

and for regression the mean :math:`\bar f(x) = \frac1{SR}\sum f_{\theta_{s,r}}(x)` and the
epistemic variance :math:`\frac1{SR}\sum (f_{\theta_{s,r}}(x) - \bar f(x))^2` (plus the noise
variance when given).

:func:`predictive` evaluates the model at every sample without touching the model's own
parameters: ``torch.func.functional_call`` with the sample's tensors, either one sample after
another (``"loop"``) or all samples of a chunk at once under ``torch.func.vmap`` (``"vmap"``).
``path="auto"`` times both on the first batch and keeps the faster; the result says which ran.

See docs/sampling.md, section 'Predict'.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from heatbath._validate import check_choice, check_int
from heatbath.models.heads import HEADS, probabilities

from .collector import Sample, SampleCollector, load_samples, stack_samples
from .diagnostics import summarize

__all__ = ["Predictive", "predictive", "chain_diagnostics", "as_stacked"]

# samples evaluated together: at most this many output activations at once
_CHUNK_BUDGET = 1 << 24


@dataclass
class Predictive:
    """Result of :func:`predictive`.

    Attributes:
        task: ``"classification"`` or ``"regression"``.
        probs: posterior predictive class probabilities ``[n, k]`` (classification).
        chain_probs: the same per chain, ``[R, n, k]``.
        mean: regression predictive mean ``[n, ...]``; ``var`` its epistemic variance (plus
            ``noise_var`` when given); ``chain_mean`` per chain ``[R, n, ...]``.
        y: the labels or targets the loader yielded (None if it yielded inputs only).
        per_sample: ``[R, S]`` test-set mean log-likelihood of each sample (classification
            with labels), or the mean prediction of each sample (otherwise): the quantity
            whose R̂ says whether the chains agree on their predictions.
        path: ``"loop"`` or ``"vmap"``, the evaluation path that ran; ``reason`` why.
        timings: seconds per sample of the paths that were timed.
        n_samples: S, the number of samples per chain.
        n_chains: R, the number of chains.
    """

    task: str
    path: str
    reason: str
    n_samples: int
    n_chains: int
    probs: Tensor | None = None
    chain_probs: Tensor | None = None
    mean: Tensor | None = None
    var: Tensor | None = None
    chain_mean: Tensor | None = None
    y: Tensor | None = None
    per_sample: Tensor | None = None
    timings: dict[str, float] = field(default_factory=dict)


def as_stacked(samples: Any) -> tuple[dict[str, Tensor], list[Sample] | None]:
    """``({name: [S, R, ...]}, samples or None)`` from a collector, a list of samples, a folder
    written by a collector, or an already stacked dict."""
    if isinstance(samples, SampleCollector):
        samples = samples.samples
    elif isinstance(samples, str | os.PathLike):
        samples = load_samples(Path(samples))
    if isinstance(samples, dict):
        if not samples or not all(isinstance(v, Tensor) and v.dim() >= 2
                                  for v in samples.values()):
            raise ValueError("stacked samples must map names to tensors [S, R, ...]")
        return samples, None
    if isinstance(samples, Sequence) and all(isinstance(s, Sample) for s in samples):
        return stack_samples(samples), list(samples)
    raise TypeError("samples must be a SampleCollector, a list of Sample, a folder path or a "
                    f"dict of stacked tensors, got {type(samples).__name__}")


def _batches(loader: Any) -> Iterable[tuple[Tensor, Tensor | None]]:
    if isinstance(loader, Tensor):
        yield loader, None
        return
    if isinstance(loader, tuple | list) and len(loader) == 2 and all(
            isinstance(t, Tensor) for t in loader) and loader[0].shape[0] == loader[1].shape[0]:
        yield loader[0], loader[1]
        return
    for batch in loader:
        if isinstance(batch, Tensor):
            yield batch, None
        elif isinstance(batch, tuple | list) and len(batch) >= 1:
            yield batch[0], (batch[1] if len(batch) > 1 else None)
        else:
            raise TypeError("loader must yield tensors or (x, y) pairs, got "
                            f"{type(batch).__name__}")


class _Evaluator:
    """Outputs ``[S_chunk, R, n, ...]`` of the samples on one batch, by loop or vmap."""

    def __init__(self, model: nn.Module, stacked: dict[str, Tensor]) -> None:
        self.model = model
        own = dict(model.named_parameters())
        missing = [n for n in stacked if n not in own]
        if missing:
            raise ValueError(f"samples hold parameters the model does not have: {missing[:3]}")
        first = next(iter(stacked))
        S, R = stacked[first].shape[:2]
        self.S, self.R = S, R
        # the model either takes a chain dimension itself (an ensemble of R replicas) or not
        if all(tuple(own[n].shape) == tuple(v.shape[1:]) for n, v in stacked.items()):
            self.ensemble = True
        elif all(tuple(own[n].shape) == tuple(v.shape[2:]) for n, v in stacked.items()):
            self.ensemble = False
        else:
            n = next(n for n, v in stacked.items() if tuple(own[n].shape) not in
                     (tuple(v.shape[1:]), tuple(v.shape[2:])))
            raise ValueError(f"parameter {n!r}: samples {tuple(stacked[n].shape)} do not fit the "
                             f"model's {tuple(own[n].shape)} (as [S, R, ...] or [S, ...])")
        self.stacked = stacked

    def _call(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(self.model, params, (x,))

    def loop(self, lo: int, hi: int, x: Tensor) -> Tensor:
        outs = []
        for s in range(lo, hi):
            if self.ensemble:
                outs.append(self._call({n: v[s] for n, v in self.stacked.items()}, x))
            else:
                outs.append(torch.stack([self._call({n: v[s, r] for n, v in
                                                     self.stacked.items()}, x)
                                         for r in range(self.R)]))
        return torch.stack(outs)

    def vmap(self, lo: int, hi: int, x: Tensor) -> Tensor:
        chunk = {n: v[lo:hi] for n, v in self.stacked.items()}
        if self.ensemble:
            return vmap(lambda p: self._call(p, x))(chunk)
        flat = {n: v.reshape(-1, *v.shape[2:]) for n, v in chunk.items()}
        out = vmap(lambda p: self._call(p, x))(flat)
        return out.reshape(hi - lo, self.R, *out.shape[1:])


def predictive(
    model: nn.Module,
    samples: Any,
    loader: Any,
    *,
    task: str = "classification",
    head: str | None = None,
    noise_var: float = 0.0,
    path: str = "auto",
    transform: Callable[[Tensor], Tensor] | None = None,
) -> Predictive:
    """Average a model's predictions over posterior samples and chains.

    Args:
        model: a model of the sampled architecture: the single model (samples
            ``[S, R, ...]`` are then R chains of it) or the ensemble of R replicas. Its own
            parameters are not changed.
        samples: a :class:`SampleCollector`, a list of :class:`Sample`, a collector's folder or
            ``{name: tensor [S, R, ...]}``.
        loader: a tensor of inputs, an ``(X, y)`` pair, or an iterable of batches (tensors or
            ``(x, y)`` pairs, e.g. a ``DataLoader``).
        task: ``"classification"`` (logits → probabilities by ``head``) or ``"regression"``
            (outputs are the predicted means).
        head: ``"sigmoid"`` or ``"softmax"``; default ``model.head`` or ``"softmax"``.
        noise_var: regression noise variance added to the predictive variance (>= 0).
        path: ``"auto"`` (time both on the first batch, keep the faster), ``"loop"`` or
            ``"vmap"``.
        transform: applied to every input batch first (e.g. flattening images).

    Returns:
        A :class:`Predictive`.
    """
    task = check_choice("task", task, ("classification", "regression"))
    path = check_choice("path", path, ("auto", "loop", "vmap"))
    if head is None:
        head = getattr(model, "head", "softmax")
    head = check_choice("head", head, HEADS)
    if not (isinstance(noise_var, int | float) and noise_var >= 0 and math.isfinite(noise_var)):
        raise ValueError(f"noise_var must be a finite number in [0, inf), got {noise_var!r}")
    stacked, _ = as_stacked(samples)
    dtype = next(model.parameters()).dtype
    stacked = {n: v.to(dtype) for n, v in stacked.items()}
    ev = _Evaluator(model, stacked)
    S, R = ev.S, ev.R
    chosen = None if path == "auto" else path
    reason = "requested" if chosen else ""
    timings: dict[str, float] = {}
    sums: Tensor | None = None
    sumsq: Tensor | None = None
    per_sample = torch.zeros(R, S, dtype=torch.float64)
    n_total = 0
    ys: list[Tensor] = []
    outs: list[tuple[Tensor, Tensor | None]] = []
    with torch.no_grad():
        for x, y in _batches(loader):
            if transform is not None:
                x = transform(x)
            x = x.to(dtype)
            n = x.shape[0]
            width = max(getattr(model, "sizes", [64]))
            chunk = max(1, min(S, _CHUNK_BUDGET // max(1, R * n * width)))
            if chosen is None:
                chosen, reason, timings = _choose(ev, x, chunk)
            run = ev.loop if chosen == "loop" else ev.vmap
            for lo in range(0, S, chunk):
                hi = min(S, lo + chunk)
                out = run(lo, hi, x).double()  # [s, R, n, ...]
                if task == "classification":
                    pr = probabilities(out, head)  # [s, R, n, k]
                    part = pr.sum(0)
                    if y is not None:
                        ll = torch.log(pr.gather(-1, y.view(1, 1, n, 1).expand(
                            hi - lo, R, n, 1)).clamp_min(1e-12)).squeeze(-1)
                        per_sample[:, lo:hi] += ll.sum(-1).T
                    else:
                        per_sample[:, lo:hi] += pr.max(-1).values.sum(-1).T
                    sums = part if lo == 0 else sums + part  # type: ignore[operator]
                else:
                    part = out.sum(0)
                    partsq = (out * out).sum(0)
                    per_sample[:, lo:hi] += out.reshape(hi - lo, R, -1).mean(-1).T * n
                    sums = part if lo == 0 else sums + part  # type: ignore[operator]
                    sumsq = partsq if lo == 0 else sumsq + partsq  # type: ignore[operator]
            if y is not None:
                ys.append(y.detach().cpu())
            outs.append((sums, sumsq))  # type: ignore[arg-type]
            n_total += n
    if not outs:
        raise ValueError("loader yielded no batches")
    res = Predictive(task=task, path=chosen or "loop", reason=reason, n_samples=S, n_chains=R,
                     timings=timings, per_sample=per_sample / n_total,
                     y=torch.cat(ys) if ys else None)
    if task == "classification":
        chain = torch.cat([s for s, _ in outs], dim=1) / S  # [R, n, k]
        res.chain_probs = chain
        res.probs = chain.mean(0)
    else:
        mean_c = torch.cat([s for s, _ in outs], dim=1) / S
        sq = torch.cat([q for _, q in outs], dim=1) / S  # type: ignore[misc]
        res.chain_mean = mean_c
        res.mean = mean_c.mean(0)
        res.var = (sq.mean(0) - res.mean ** 2).clamp_min(0.0) * (S * R / max(1, S * R - 1)) \
            + noise_var
    return res


def _choose(ev: _Evaluator, x: Tensor, chunk: int) -> tuple[str, str, dict[str, float]]:
    """Time the loop and vmap paths on one chunk of samples and pick the faster."""
    k = min(chunk, ev.S, 16)
    timings: dict[str, float] = {}
    try:
        ev.vmap(0, k, x)  # warm-up (vmap traces the model on the first call)
        t0 = time.perf_counter()
        ev.vmap(0, k, x)
        timings["vmap"] = (time.perf_counter() - t0) / k
    except Exception as err:  # noqa: BLE001 - any failure of vmap means: use the loop
        return "loop", f"vmap failed ({type(err).__name__}: {err})", timings
    ev.loop(0, min(k, 2), x)
    t0 = time.perf_counter()
    ev.loop(0, k, x)
    timings["loop"] = (time.perf_counter() - t0) / k
    best = min(timings, key=timings.__getitem__)
    return best, (f"timed on {k} samples: loop {timings['loop'] * 1e3:.3g} ms, "
                  f"vmap {timings['vmap'] * 1e3:.3g} ms per sample"), timings


def chain_diagnostics(samples: Any, pred: Predictive | None = None, *,
                      n_projections: int = 3, seed: int = 0) -> dict[str, dict[str, float]]:
    r"""R̂, bulk/tail ESS and autocorrelation time of the chains, on several quantities.

    - ``"loss"``: the loss recorded with the samples (when every sample has one);
    - ``"prediction"``: ``pred.per_sample`` (the test log-likelihood of each sample);
    - ``"proj<j>"``: random projections :math:`u_j^\top\theta` with
      :math:`u_j \sim N(0, I/N)` (seeded by ``seed``), which see every parameter.

    Args:
        samples: as for :func:`predictive`.
        pred: a :class:`Predictive` of the same samples, for the prediction diagnostics.
        n_projections: number of random projections (>= 0).
        seed: seed of the projection directions.

    Returns:
        ``{quantity: summarize(chains)}``; needs at least 4 samples.
    """
    check_int("n_projections", n_projections, low=0)
    stacked, listed = as_stacked(samples)
    out: dict[str, dict[str, float]] = {}
    if listed is not None and all(s.loss is not None for s in listed):
        loss = np.array([s.loss for s in listed], dtype=np.float64).T  # [R, S]
        if np.all(np.isfinite(loss)):
            out["loss"] = summarize(loss)
    if pred is not None and pred.per_sample is not None:
        out["prediction"] = summarize(pred.per_sample)
    if n_projections:
        flat = torch.cat([v.reshape(v.shape[0], v.shape[1], -1).double()
                          for v in stacked.values()], dim=-1)  # [S, R, N]
        gen = torch.Generator().manual_seed(seed)
        u = torch.randn(flat.shape[-1], n_projections, generator=gen, dtype=torch.float64)
        proj = (flat @ u / math.sqrt(flat.shape[-1])).permute(2, 1, 0)  # [J, R, S]
        for j in range(n_projections):
            out[f"proj{j}"] = summarize(proj[j])
    return out

r"""Collecting posterior samples from a running integrator.

At :math:`\tau > 0` the iterates of heatbath's integrators sample
:math:`\rho(\theta) \propto \exp(-\bar L(\theta)/\tau)`; :class:`SampleCollector` keeps a
thinned subset of them after a burn-in. It is either hooked to the optimizer (a step post-hook:
every ``step()`` is one draw) or called in the training loop (:meth:`SampleCollector.update`).

Which steps are kept: step :math:`k` (counted from 1 for the first ``step()``) is *eligible*
when :math:`k > \text{burn\_in}` and :math:`(k - \text{burn\_in}) \bmod \text{thin} = 0`; the
rule depends on the step number only, so a resumed run keeps the same steps. With
``max_samples`` the collector either keeps the first ``max_samples`` eligible steps, or, with
``reservoir=True``, a uniform random subset of all eligible steps so far (reservoir sampling,
Algorithm R: the :math:`n`-th eligible step replaces a random slot with probability
:math:`\text{max\_samples}/n`), which bounds memory however long the run.

Storage: in memory (``path=None``) or on disk (``path=<folder>``), one safetensors file per
sample and a JSON manifest ``manifest.json`` listing them with their metadata. Every file is
written to a temporary name and moved into place with ``os.replace`` (sample file first, then
the manifest), so a crash leaves either the old or the new manifest, never a torn one. A
collector opened on a folder that already holds a manifest continues it: same settings
required, samples and the reservoir's random state restored, steps at or before the last one
seen ignored.

Chains: a single model is one chain; a model with ``replicas = R`` (parameters with a leading
replica dimension, as :mod:`heatbath.models.ensemble` builds them) is R chains. Every sample
stores each parameter as ``[R, ...]`` (``R = 1`` for a single model), together with the step,
each parameter group's ``h`` and ``τ``, the loss per chain when known and the optimizer's
:meth:`~heatbath.optim.Partitioned.diagnostics`.

See docs/sampling.md, section 'Collect'.
"""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from heatbath._validate import check_int

__all__ = ["Sample", "SampleCollector", "load_samples", "stack_samples", "MANIFEST_FORMAT"]

MANIFEST_FORMAT = "heatbath.sampling/1"
MANIFEST = "manifest.json"


@dataclass
class Sample:
    """One kept draw.

    Attributes:
        step: the optimizer step it was taken after (1 = after the first ``step()``).
        params: ``{name: tensor [R, ...]}``, R chains (1 for a single model).
        h: each parameter group's step size at that step.
        tau: each group's temperature (SGLD: :math:`\\sigma^2/2`; plain torch optimizers: 0).
        loss: the loss of each chain, when it was given or ``loss_fn`` was set.
        diagnostics: the optimizer's ``diagnostics()`` (heatbath optimizers), else None.
    """

    step: int
    params: dict[str, Tensor]
    h: list[float] = field(default_factory=list)
    tau: list[float] = field(default_factory=list)
    loss: list[float] | None = None
    diagnostics: Any = None

    def meta(self) -> dict[str, Any]:
        """The JSON-able metadata (everything but the parameters)."""
        return {"step": self.step, "h": self.h, "tau": self.tau, "loss": self.loss,
                "diagnostics": self.diagnostics}


def _jsonable(x: Any) -> Any:
    """Tensors and NumPy values turned into plain Python, recursively (non-finite → None)."""
    if isinstance(x, Tensor):
        x = x.detach().cpu().tolist()
    if hasattr(x, "tolist") and not isinstance(x, str | bytes):
        x = x.tolist()
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _group_h_tau(optimizer: torch.optim.Optimizer | None) -> tuple[list[float], list[float]]:
    if optimizer is None:
        return [], []
    hs, taus = [], []
    for g in optimizer.param_groups:
        hs.append(float(g.get("h", g.get("lr", float("nan")))))
        if g.get("method") == "sgld":
            taus.append(0.5 * float(g.get("sigma", 0.0)) ** 2)
        else:
            taus.append(float(g.get("tau", 0.0)))
    return hs, taus


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _loss_per_chain(loss: Any, R: int) -> list[float]:
    if isinstance(loss, Tensor):
        loss = loss.detach().double().reshape(-1).cpu().tolist()
    elif isinstance(loss, int | float):
        loss = [float(loss)]
    else:
        loss = [float(v) for v in loss]
    if len(loss) != R:
        raise ValueError(f"loss must hold one value per chain ({R}), got {len(loss)}")
    return loss


class SampleCollector:
    """Keep thinned samples of a model's parameters during a run.

    Args:
        model: the model being trained; its trainable parameters are collected by name.
        optimizer: the optimizer. With ``hook=True`` (default) the collector registers a step
            post-hook on it (every ``step()`` is one draw); its ``param_groups`` give ``h`` and
            ``τ`` and, for heatbath optimizers, ``diagnostics()`` is recorded with each sample.
        burn_in: steps discarded at the start (>= 0).
        thin: keep every ``thin``-th step after the burn-in (>= 1).
        max_samples: keep at most this many samples (>= 1); ``None`` for no limit.
        reservoir: with ``max_samples``, keep a uniform random subset of all eligible steps
            instead of the first ``max_samples``.
        path: a folder for on-disk storage (created if missing; continued if it holds a
            manifest); ``None`` keeps the samples in memory.
        replicas: number of chains R when the parameters carry a leading replica dimension;
            ``None`` takes ``model.replicas`` or the optimizer's ``replicas`` when set, else 1
            (a single model, stored with a leading dimension of size 1).
        seed: seed of the reservoir's random choices.
        loss_fn: called at kept steps (only) when :meth:`update` gets no loss; returns the
            loss per chain (a float, a list or a tensor ``[R]``).
        record_diagnostics: record ``optimizer.diagnostics()`` with each sample.
        hook: register the step post-hook on ``optimizer``.

    Raises:
        ValueError: for out-of-range settings, or when ``path`` holds samples collected with
            different settings or parameters.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        burn_in: int = 0,
        thin: int = 1,
        max_samples: int | None = None,
        reservoir: bool = False,
        path: str | os.PathLike[str] | None = None,
        replicas: int | None = None,
        seed: int = 0,
        loss_fn: Callable[[], Any] | None = None,
        record_diagnostics: bool = True,
        hook: bool = True,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        self.burn_in = check_int("burn_in", burn_in, low=0)
        self.thin = check_int("thin", thin, low=1)
        self.max_samples = None if max_samples is None else check_int("max_samples",
                                                                      max_samples, low=1)
        if reservoir and max_samples is None:
            raise ValueError("reservoir=True needs max_samples (the reservoir's size)")
        self.reservoir = bool(reservoir)
        self.seed = check_int("seed", seed, low=0)
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.record_diagnostics = record_diagnostics
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("model has no trainable parameters")
        self.names = [n for n, _ in named]
        self._params = [p for _, p in named]
        if replicas is None:
            replicas = getattr(model, "replicas", None)
            if not isinstance(replicas, int) and optimizer is not None:
                replicas = next((g.get("replicas") for g in optimizer.param_groups
                                 if g.get("replicas")), None)
        self.replicated = replicas is not None
        self.chains = 1 if replicas is None else check_int("replicas", replicas, low=1)
        for n, p in named:
            if self.replicated and (p.dim() == 0 or p.shape[0] != self.chains):
                raise ValueError(f"replicas={self.chains}: parameter {n!r} has shape "
                                 f"{tuple(p.shape)}, without a leading replica dimension of "
                                 f"size {self.chains}")
        self.shapes = {n: [self.chains, *(p.shape[1:] if self.replicated else p.shape)]
                       for n, p in named}
        self.last_step = 0
        self.n_eligible = 0
        self._rng = random.Random(self.seed)
        self._samples: list[Sample] = []  # memory: with params; disk: metadata only
        self._files: list[str] = []       # disk: one file per entry of _samples
        self.path = None if path is None else Path(path)
        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)
            if (self.path / MANIFEST).exists():
                self._resume()
            else:
                self._write_manifest()
        self._handle = None
        if optimizer is not None and hook:
            self.attach(optimizer)

    # ------------------------------------------------------------------ hooking
    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Register the step post-hook on ``optimizer`` (every ``step()`` is one draw)."""
        if self._handle is not None:
            raise RuntimeError("the collector is already attached to an optimizer; detach() "
                               "first")
        self.optimizer = optimizer
        self._handle = optimizer.register_step_post_hook(lambda opt, a, k: self.update())

    def detach(self) -> None:
        """Remove the step post-hook (no-op when not attached)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    # ------------------------------------------------------------------ collecting
    @property
    def full(self) -> bool:
        """True when ``max_samples`` are stored and no reservoir replaces them."""
        return (self.max_samples is not None and not self.reservoir
                and len(self._samples) >= self.max_samples)

    def eligible(self, step: int) -> bool:
        """Whether ``step`` passes the burn-in and thinning rule."""
        return step > self.burn_in and (step - self.burn_in) % self.thin == 0

    def update(self, step: int | None = None, loss: Any = None) -> bool:
        """Record that a step was taken; keep the parameters if the step is eligible.

        Args:
            step: the step just completed (default: the previous one plus 1). Steps at or
                before the last one seen are ignored (a resumed run replaying them).
            loss: the loss of each chain at this step (float, list or tensor ``[R]``), stored
                with the sample; default: ``loss_fn()`` when set.

        Returns:
            True if a sample was stored.
        """
        step = self.last_step + 1 if step is None else check_int("step", step, low=1)
        if step <= self.last_step:
            return False
        self.last_step = step
        if not self.eligible(step):
            return False
        self.n_eligible += 1
        slot = len(self._samples)
        if self.max_samples is not None and slot >= self.max_samples:
            if not self.reservoir:
                self._save_state_only()
                return False
            j = self._rng.randrange(self.n_eligible)
            if j >= self.max_samples:
                self._save_state_only()
                return False
            slot = j
        sample = self._snapshot(step, loss)
        self._store(slot, sample)
        return True

    def _snapshot(self, step: int, loss: Any) -> Sample:
        with torch.no_grad():
            params = {}
            for n, p in zip(self.names, self._params):
                t = p.detach().clone()
                params[n] = t if self.replicated else t.unsqueeze(0)
        if loss is None and self.loss_fn is not None:
            loss = self.loss_fn()
        h, tau = _group_h_tau(self.optimizer)
        diag = None
        if self.record_diagnostics and self.optimizer is not None \
                and callable(getattr(self.optimizer, "diagnostics", None)):
            diag = _jsonable(self.optimizer.diagnostics())
        return Sample(step=step, params=params, h=h, tau=tau,
                      loss=None if loss is None else _loss_per_chain(loss, self.chains),
                      diagnostics=diag)

    def _store(self, slot: int, sample: Sample) -> None:
        if self.path is None:
            if slot == len(self._samples):
                self._samples.append(sample)
            else:
                self._samples[slot] = sample
            return
        from safetensors.torch import save_file

        name = f"sample_{sample.step:010d}.safetensors"
        tensors = {k: v.contiguous() for k, v in sample.params.items()}
        _atomic_write(self.path / name,
                      lambda tmp: save_file(tensors, tmp, metadata={"step": str(sample.step)}))
        meta = Sample(step=sample.step, params={}, h=sample.h, tau=sample.tau, loss=sample.loss,
                      diagnostics=sample.diagnostics)
        old = None
        if slot == len(self._samples):
            self._samples.append(meta)
            self._files.append(name)
        else:
            old = self._files[slot]
            self._samples[slot] = meta
            self._files[slot] = name
        self._write_manifest()
        if old is not None and old != name:
            (self.path / old).unlink(missing_ok=True)

    def _save_state_only(self) -> None:
        if self.path is not None and self.reservoir:
            self._write_manifest()  # the reservoir's random state moved on

    # ------------------------------------------------------------------ disk
    def _settings(self) -> dict[str, Any]:
        return {"names": self.names, "shapes": self.shapes, "chains": self.chains,
                "replicated": self.replicated, "burn_in": self.burn_in, "thin": self.thin,
                "max_samples": self.max_samples, "reservoir": self.reservoir, "seed": self.seed}

    def _write_manifest(self) -> None:
        assert self.path is not None
        state = self._rng.getstate()
        manifest = {
            "format": MANIFEST_FORMAT,
            "settings": self._settings(),
            "last_step": self.last_step,
            "n_eligible": self.n_eligible,
            "rng_state": [state[0], list(state[1]), state[2]],
            "samples": [{"file": f, **s.meta()} for f, s in zip(self._files, self._samples)],
        }
        text = json.dumps(manifest)

        def write(tmp: str) -> None:
            with open(tmp, "w") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())

        _atomic_write(self.path / MANIFEST, write)

    def _resume(self) -> None:
        assert self.path is not None
        manifest = _read_manifest(self.path)
        saved = manifest["settings"]
        mine = _jsonable(self._settings())
        diff = sorted(k for k in mine if saved.get(k) != mine[k])
        if diff:
            raise ValueError(f"{self.path} holds samples collected with different settings "
                             f"or parameters (differs in: {', '.join(diff)}); use another path")
        self.last_step = int(manifest["last_step"])
        self.n_eligible = int(manifest["n_eligible"])
        v, internal, gauss = manifest["rng_state"]
        self._rng.setstate((v, tuple(internal), gauss))
        self._files = [s["file"] for s in manifest["samples"]]
        self._samples = [Sample(step=s["step"], params={}, h=s["h"], tau=s["tau"],
                                loss=s["loss"], diagnostics=s["diagnostics"])
                         for s in manifest["samples"]]
        # sample files written after the manifest last was (a crash in between) are not listed
        listed = set(self._files)
        for f in self.path.iterdir():
            if (f.suffix == ".safetensors" and f.name not in listed) or f.suffix == ".tmp":
                f.unlink(missing_ok=True)

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return len(self._samples)

    @property
    def steps(self) -> list[int]:
        """Steps of the stored samples, ascending."""
        return sorted(s.step for s in self._samples)

    @property
    def samples(self) -> list[Sample]:
        """The stored samples in step order (read from disk for on-disk storage)."""
        if self.path is None:
            return sorted(self._samples, key=lambda s: s.step)
        return load_samples(self.path)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def stacked(self) -> dict[str, Tensor]:
        """``{name: tensor [S, R, ...]}`` of all samples in step order."""
        return stack_samples(self.samples)


def _read_manifest(path: Path) -> dict[str, Any]:
    with open(path / MANIFEST) as fh:
        manifest = json.load(fh)
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path / MANIFEST} is not a heatbath sample manifest "
                         f"(format {manifest.get('format')!r})")
    return manifest


def load_samples(path: str | os.PathLike[str]) -> list[Sample]:
    """The samples stored in a collector's folder, in step order."""
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / MANIFEST).exists():
        raise ValueError(f"path {path} holds no {MANIFEST}")
    manifest = _read_manifest(path)
    out = [Sample(step=s["step"], params=load_file(path / s["file"]), h=s["h"], tau=s["tau"],
                  loss=s["loss"], diagnostics=s["diagnostics"]) for s in manifest["samples"]]
    return sorted(out, key=lambda s: s.step)


def stack_samples(samples: Sequence[Sample]) -> dict[str, Tensor]:
    """``{name: tensor [S, R, ...]}`` from samples (all with the same parameters)."""
    if not samples:
        raise ValueError("samples is empty: nothing was collected (check burn_in and thin "
                         "against the number of steps)")
    names = list(samples[0].params)
    return {n: torch.stack([s.params[n] for s in samples]) for n in names}

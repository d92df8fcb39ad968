r"""The training loop: minibatches, full-set evaluation, divergence stop, checkpoints, ensembles.

One :class:`Trainer` trains either **one run** (``seed=s``: a plain single model) or **an
ensemble of R runs** (``seeds=[s_1 … s_R]``: one model whose parameters carry a leading replica
dimension, trained as one batched computation). Replica r of an ensemble is run r: same
initialisation (``seed = s_r``), same minibatch stream; with a noise-free optimizer (SGD, Adam,
or any Langevin method at τ = 0) it follows the single run with seed ``s_r`` up to float
rounding (the batched matrix products may round differently in the last bit).

Per step k (parameters θ_k, minibatch B_k of m points drawn for each run):

    L_r(θ_k) = (1/m) Σ_{i ∈ B_k,r} ℓ(f_r(x_i), y_i)            (mean minibatch loss of run r)
    loss      = Σ_r L_r,  backward,  optimizer.step()  →  θ_{k+1}

Summing the replicas' losses gives each replica exactly its own gradient (replicas never mix).

Choices:

- Minibatch size m = round(N · subsample / 100) (at least 1), or ``batch_size``. Each run draws
  a fresh permutation of the N training points per epoch from its own ``torch.Generator``
  (seeded ``derive_seed(s, STREAM_DATA_ORDER)``) and takes consecutive slices of m: sampling
  without replacement within an epoch; the last N mod m points of a permutation are skipped
  (``drop_last``), so every minibatch has exactly m points.
- Evaluation: loss and accuracy on the full training and test sets (never the last minibatch),
  for all replicas in one batched forward (chunked over the samples to bound memory), at step 0,
  every ``eval_every`` steps (default: steps // 100) or at the given ``eval_steps``, and always
  at the last step. Accuracy is a fraction in [0, 1].
- Non-finite loss: before each update the minibatch loss of every run is checked. If run r's
  loss at θ_k is NaN or ±inf, run r stops: its parameters go back to θ_{k−1} (the last state
  with a finite loss; a copy is kept each step), it is evaluated there (rows at step k − 1) and
  it is frozen for the rest of the training; ``diverged[s_r] = k`` and a message says so (also
  logged as a warning). If an optimizer refuses a non-finite gradient
  (``NonFiniteGradientError``), the runs with non-finite gradients stop likewise, keeping θ_k.
  Training ends when every run has stopped.
- Checkpoints hold the model, the optimizer (with its noise generator), the data-order
  generators and the position in the current epoch, the step, the rows and snapshots so far:
  resuming continues bit-identically. The files are written atomically with their SHA-256 and
  verified before they are read (:mod:`heatbath.engine.checkpoint`).
- A stop request (SIGTERM/SIGINT while :func:`heatbath.engine.shutdown.handle_signals` is
  active, or in a worker process) ends training at the next step boundary: the checkpoint is
  written, then :class:`heatbath.engine.shutdown.Interrupted` is raised.
- Optimizer noise seed: ``derive_seed(s, STREAM_OPTIMIZER)`` for one run; an ensemble draws all
  replicas' noise as one block from one generator (see ``optimizer_seed``), so at τ > 0 replica
  r's noise is independent of the other replicas' but not the same numbers as single run r's.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from heatbath._validate import check_int, check_real
from heatbath.data import STREAM_DATA_ORDER, Dataset, derive_seed
from heatbath.models.heads import loss_per_sample, predict, probabilities
from heatbath.optim import NonFiniteGradientError

from . import checkpoint as _checkpoint
from . import shutdown
from .specs import ModelSpec, OptimSpec, optimizer_seed

__all__ = ["Trainer", "TrainResult", "train", "ProgressFn", "CHECKPOINT_FORMAT"]

log = logging.getLogger("heatbath.engine")

#: ``progress(step, steps, new_rows)`` is called after every evaluation
ProgressFn = Callable[[int, int, list[dict[str, Any]]], None]

CHECKPOINT_FORMAT = "heatbath.engine.checkpoint/1"


# evaluation chunk: at most this many activations (replicas x samples x widest layer) at once
_EVAL_BUDGET = 1 << 22


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        method: the label in the rows' ``method`` column.
        seeds: one seed per run (replica order).
        steps: planned number of steps; ``steps_done`` the step counter reached (``steps``,
            or, when every run stopped early, the step of the last non-finite loss).
        rows: long-format metrics, dicts with keys ``method, seed, step, split, loss, accuracy``.
        diverged: ``{seed: step}`` for runs stopped by a non-finite loss at that step.
        messages: human-readable notes (divergences).
        snapshots: ``{step: {parameter name: tensor [R, ...]}}`` at the requested steps.
        model: the trained model (single, or ensemble with parameters ``[R, ...]``).
        head: ``"sigmoid"`` or ``"softmax"`` (how to read the model's logits).
        wall_time_s: seconds spent in :meth:`Trainer.run` calls (this process).
    """

    method: str
    seeds: tuple[int, ...]
    steps: int
    steps_done: int
    rows: list[dict[str, Any]]
    diverged: dict[int, int]
    messages: list[str]
    snapshots: dict[int, dict[str, Tensor]]
    model: nn.Module
    head: str
    wall_time_s: float = 0.0
    ensemble: bool = field(default=False)

    def predict_proba(self, X: Tensor, step: int | None = None) -> Tensor:
        """Class probabilities ``[R, n, n_classes]`` of every run on inputs ``X [n, d]``.

        ``step=None`` uses the current (final) parameters, otherwise the snapshot at ``step``.
        """
        return _predict_proba(self.model, self.head, self.ensemble, X,
                              None if step is None else self._snapshot(step))

    def replica_model(self, r: int) -> nn.Module:
        """A standalone single model with run ``r``'s final parameters."""
        if self.ensemble:
            return self.model.replica(r)  # type: ignore[operator]
        check_int("r", r, low=0, high=0)
        return self.model

    def _snapshot(self, step: int) -> dict[str, Tensor]:
        if step not in self.snapshots:
            raise ValueError(f"step must be a snapshot step {sorted(self.snapshots)}, got {step}")
        return self.snapshots[step]


def _predict_proba(model: nn.Module, head: str, ensemble: bool, X: Tensor,
                   params: dict[str, Tensor] | None) -> Tensor:
    X = X.reshape(X.shape[0], -1).to(torch.float32)
    with torch.no_grad():
        if params is None:
            out = model(X)
        else:
            p = params if ensemble else {k: v[0] for k, v in params.items()}
            out = functional_call(model, p, (X,))
        if not ensemble:
            out = out.unsqueeze(0)
        return probabilities(out, head)


def _eval_schedule(steps: int, eval_every: int | None, eval_steps: Iterable[int] | None
                   ) -> list[int]:
    if eval_steps is not None:
        chosen = {check_int("eval_steps[]", int(s), low=0, high=steps) for s in eval_steps}
    else:
        every = max(1, steps // 100) if eval_every is None else \
            check_int("eval_every", eval_every, low=1)
        chosen = set(range(0, steps + 1, every))
    chosen.add(steps)
    return sorted(chosen)


class Trainer:
    """Train one run (``seed``) or an ensemble of runs (``seeds``) of a classifier.

    Args:
        data: training and test tensors (:class:`heatbath.data.Dataset`).
        model: the architecture (:class:`ModelSpec`).
        optimizer: method and hyperparameters (:class:`OptimSpec`).
        steps: number of optimizer steps (>= 1).
        subsample: minibatch size as a percentage of the training set, in (0, 100].
        batch_size: explicit minibatch size (overrides ``subsample``), in [1, N].
        seed: seed (>= 0) of a single run: plain model, no replica dimension.
        seeds: seeds of an ensemble (R = len(seeds) >= 1, distinct): one batched model.
        eval_every: evaluate every this many steps (default steps // 100, at least 1).
        eval_steps: explicit evaluation steps (instead of ``eval_every``).
        snapshot_steps: steps at which to copy all parameters (for weight histograms and
            decision maps averaged over the last steps); step 0 is the initialisation.

    Exactly one of ``seed`` and ``seeds`` must be given.
    """

    def __init__(
        self,
        data: Dataset,
        model: ModelSpec,
        optimizer: OptimSpec,
        *,
        steps: int,
        subsample: float = 5.0,
        batch_size: int | None = None,
        seed: int | None = None,
        seeds: Sequence[int] | None = None,
        eval_every: int | None = None,
        eval_steps: Iterable[int] | None = None,
        snapshot_steps: Iterable[int] = (),
    ) -> None:
        if not isinstance(data, Dataset):
            raise ValueError(f"data must be a heatbath.data.Dataset, got {type(data).__name__}")
        if not isinstance(model, ModelSpec):
            raise ValueError(f"model must be a ModelSpec, got {type(model).__name__}")
        if not isinstance(optimizer, OptimSpec):
            raise ValueError(f"optimizer must be an OptimSpec, got {type(optimizer).__name__}")
        if (seed is None) == (seeds is None):
            raise ValueError("give exactly one of seed (one run) and seeds (an ensemble)")
        self.ensemble = seeds is not None
        run_seeds = [seed] if seeds is None else list(seeds)
        if not run_seeds:
            raise ValueError("seeds must hold at least one seed")
        self.seeds = tuple(check_int("seeds[]" if self.ensemble else "seed", s, low=0)
                           for s in run_seeds)
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {list(self.seeds)}")
        self.steps = check_int("steps", steps, low=1)
        self.data = data
        self.model_spec = model
        self.optim_spec = optimizer
        self.method = optimizer.name
        n_train = data.X_train.shape[0]
        if batch_size is None:
            pct = check_real("subsample", subsample, low=0.0, high=100.0, low_open=True)
            self.batch_size = max(1, round(n_train * pct / 100.0))
            self.subsample: float | None = pct
        else:
            self.batch_size = check_int("batch_size", batch_size, low=1, high=n_train)
            self.subsample = None
        self.eval_steps = _eval_schedule(self.steps, eval_every, eval_steps)
        self.snapshot_steps = sorted({check_int("snapshot_steps[]", int(s), low=0, high=self.steps)
                                      for s in snapshot_steps})
        self.R = len(self.seeds)
        self.head = model.head_for(data.n_classes)

        # data as flat float32 tensors; targets pre-cast for the sigmoid head
        self._X = {"train": data.X_train.reshape(n_train, -1).to(torch.float32).contiguous(),
                   "test": data.X_test.reshape(data.X_test.shape[0], -1).to(torch.float32)
                   .contiguous()}
        self._y = {"train": data.y_train, "test": data.y_test}
        self._target = data.y_train.to(torch.float32) if self.head == "sigmoid" else data.y_train
        d_in = self._X["train"].shape[1]

        if self.ensemble:
            self.model: nn.Module = model.build_ensemble(d_in, data.n_classes, self.seeds)
        else:
            self.model = model.build(d_in, data.n_classes, self.seeds[0])
        self._widest = max(self.model.sizes)  # type: ignore[attr-defined]
        self.optimizer = optimizer.build(self.model, replicas=self.R if self.ensemble else None,
                                         seed=optimizer_seed(self.seeds))
        self._params = [p for p in self.model.parameters()]
        self._names = [n for n, _ in self.model.named_parameters()]

        self._gens = [torch.Generator().manual_seed(derive_seed(s, STREAM_DATA_ORDER))
                      for s in self.seeds]
        self._perm: Tensor | None = None
        self._pos = 0
        self.step = 0
        self.rows: list[dict[str, Any]] = []
        self.snapshots: dict[int, dict[str, Tensor]] = {}
        self.diverged: dict[int, int] = {}
        self.messages: list[str] = []
        self._alive = torch.ones(self.R, dtype=torch.bool)
        self._n_dead = 0
        self._backup = [self._rview(p).clone() for p in self._params]
        self._frozen = [b.clone() for b in self._backup]
        self._evaluated: set[int] = set()
        self.wall_time_s = 0.0

    # ------------------------------------------------------------------ helpers
    def _rview(self, p: Tensor) -> Tensor:
        """``p`` detached, with a leading replica dimension (a view: writes go through)."""
        t = p.detach()
        return t if self.ensemble else t.unsqueeze(0)

    def _forward(self, x: Tensor) -> Tensor:
        out = self.model(x)
        return out if self.ensemble else out.unsqueeze(0)

    def _next_batch(self) -> Tensor:
        n = self._X["train"].shape[0]
        m = self.batch_size
        if self._perm is None or (self._pos + 1) * m > n:
            self._perm = torch.stack([torch.randperm(n, generator=g) for g in self._gens])
            self._pos = 0
        idx = self._perm[:, self._pos * m:(self._pos + 1) * m]
        self._pos += 1
        return idx

    @property
    def alive(self) -> list[bool]:
        """Whether each run is still training (False once stopped by a non-finite loss)."""
        return self._alive.tolist()

    @property
    def done(self) -> bool:
        return self.step >= self.steps or self._n_dead == self.R

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self) -> dict[str, tuple[Tensor, Tensor]]:
        """Full-set ``{split: (loss [R], accuracy [R])}`` of every run at the current step."""
        result = {}
        for split in ("train", "test"):
            X, y = self._X[split], self._y[split]
            n = X.shape[0]
            chunk = max(1, _EVAL_BUDGET // (self.R * self._widest))
            loss_sum = torch.zeros(self.R, dtype=torch.float64)
            correct = torch.zeros(self.R, dtype=torch.int64)
            for start in range(0, n, chunk):
                xc, yc = X[start:start + chunk], y[start:start + chunk]
                out = self._forward(xc)
                yr = yc.unsqueeze(0).expand(self.R, -1)
                loss_sum += loss_per_sample(out, yr, self.head).sum(1, dtype=torch.float64)
                correct += (predict(out, self.head) == yr).sum(1)
            result[split] = ((loss_sum / n).to(torch.float32), correct.double() / n)
        return result

    def _record(self, step: int, metrics: dict[str, dict[str, Any]] | Any,
                runs: Sequence[int]) -> list[dict[str, Any]]:
        new = []
        values = {split: (loss.tolist(), acc.tolist()) for split, (loss, acc) in metrics.items()}
        for r in runs:
            for split in ("train", "test"):
                loss, acc = values[split]
                new.append({"method": self.method, "seed": self.seeds[r], "step": step,
                            "split": split, "loss": loss[r], "accuracy": acc[r]})
        self.rows.extend(new)
        return new

    def _evaluate_now(self) -> list[dict[str, Any]]:
        metrics = self.evaluate()
        bad = (~torch.isfinite(metrics["train"][0]) | ~torch.isfinite(metrics["test"][0])) \
            & self._alive
        if bool(bad.any()):
            # non-finite full-set loss: the parameters themselves are broken at this step
            self._stop(bad, self.step, "non-finite full-set loss", restore_backup=True)
            metrics = self.evaluate()
        alive = torch.nonzero(self._alive).flatten().tolist()
        self._evaluated.add(self.step)
        return self._record(self.step, metrics, alive)

    def _snapshot_now(self) -> None:
        self.snapshots[self.step] = {n: self._rview(p).clone()
                                     for n, p in zip(self._names, self._params, strict=True)}

    # ------------------------------------------------------------------ divergence
    def _stop(self, bad: Tensor, step: int, why: str, *, restore_backup: bool) -> None:
        """Stop the runs in ``bad`` (bool [R]) at ``step``; restore θ_{step-1} if asked."""
        idx = torch.nonzero(bad).flatten()
        kept = step - 1 if restore_backup and step > 0 else step
        for p, b, f in zip(self._params, self._backup, self._frozen, strict=True):
            v = self._rview(p)
            if restore_backup:
                v[idx] = b[idx]
            f[idx] = v[idx]
        self._alive[idx] = False
        self._n_dead = int((~self._alive).sum())
        for r in idx.tolist():
            s = self.seeds[r]
            self.diverged[s] = step
            msg = (f"{self.method} seed {s}: {why} at step {step}; stopped, keeping the "
                   f"parameters of step {kept}")
            self.messages.append(msg)
            log.warning(msg)
        # rows for the kept state of the stopped runs (a summary reads each run's last row),
        # replacing rows already recorded for them at that step or later (discarded states)
        stopped = {self.seeds[r] for r in idx.tolist()}
        metrics = self.evaluate()
        self.rows = [row for row in self.rows
                     if not (row["step"] >= kept and row["seed"] in stopped)]
        self._record(kept, metrics, idx.tolist())

    def _zero_dead_grads(self, dead: Tensor) -> None:
        for p in self._params:
            if p.grad is not None:
                (p.grad if self.ensemble else p.grad.unsqueeze(0))[dead] = 0.0

    def _restore_dead(self, dead: Tensor) -> None:
        for p, f in zip(self._params, self._frozen, strict=True):
            self._rview(p)[dead] = f[dead]

    # ------------------------------------------------------------------ one step
    def _train_step(self) -> None:
        idx = self._next_batch()
        if self.ensemble:
            xb, yb = self._X["train"][idx], self._target[idx]
        else:
            xb, yb = self._X["train"][idx[0]], self._target[idx[0]].unsqueeze(0)
        per_run = loss_per_sample(self._forward(xb), yb, self.head).mean(1)
        total = per_run.sum() if self._n_dead == 0 else per_run[self._alive].sum()
        if not bool(torch.isfinite(total)):
            bad = ~torch.isfinite(per_run.detach()) & self._alive
            self._stop(bad, self.step, "non-finite loss", restore_backup=True)
            if self._n_dead == self.R:
                return
            # the restore wrote into the parameters: build the graph again
            per_run = loss_per_sample(self._forward(xb), yb, self.head).mean(1)
            total = per_run[self._alive].sum()
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        dead = ~self._alive if self._n_dead else None
        if dead is not None:
            self._zero_dead_grads(dead)
        torch._foreach_copy_(self._backup, [self._rview(p) for p in self._params])
        try:
            self.optimizer.step()
        except NonFiniteGradientError:
            bad = torch.zeros(self.R, dtype=torch.bool)
            for p in self._params:
                if p.grad is not None:
                    g = p.grad if self.ensemble else p.grad.unsqueeze(0)
                    bad |= ~torch.isfinite(g.reshape(self.R, -1)).all(1)
            bad &= self._alive
            if not bool(bad.any()):
                raise
            self._stop(bad, self.step, "non-finite gradient", restore_backup=False)
            if self._n_dead == self.R:
                return
            dead = ~self._alive
            self._zero_dead_grads(dead)
            self.optimizer.step()
        if dead is not None:
            self._restore_dead(dead)
        self.step += 1

    # ------------------------------------------------------------------ driving
    def run(
        self,
        until: int | None = None,
        *,
        progress: ProgressFn | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        checkpoint_every: int | None = None,
        num_threads: int | None = None,
    ) -> TrainResult:
        """Train up to step ``until`` (default: ``steps``) and return the result so far.

        Args:
            until: stop after this step (<= steps); a later ``run()`` continues.
            progress: ``progress(step, steps, new_rows)`` after every evaluation.
            checkpoint: file to save the full state to, atomically, every ``checkpoint_every``
                steps (if given) and when this call returns.
            checkpoint_every: checkpoint period in steps (>= 1).
            num_threads: if given, ``torch.set_num_threads(num_threads)`` for the duration of
                this call (restored afterwards). Tiny models (the SHLP) run fastest on one
                thread: their kernels are too small to split, and on a busy machine every
                parallel region can wait a scheduler time slice.
        """
        if num_threads is None:
            return self._run(until, progress, checkpoint, checkpoint_every)
        before = torch.get_num_threads()
        torch.set_num_threads(check_int("num_threads", num_threads, low=1))
        try:
            return self._run(until, progress, checkpoint, checkpoint_every)
        finally:
            torch.set_num_threads(before)

    def _run(self, until: int | None, progress: ProgressFn | None,
             checkpoint: str | os.PathLike[str] | None, checkpoint_every: int | None
             ) -> TrainResult:
        until = self.steps if until is None else check_int("until", until, low=0,
                                                          high=self.steps)
        if checkpoint_every is not None:
            check_int("checkpoint_every", checkpoint_every, low=1)
            if checkpoint is None:
                raise ValueError("checkpoint_every needs a checkpoint path")
        eval_set = set(self.eval_steps)
        snap_set = set(self.snapshot_steps)
        t0 = time.perf_counter()
        if self.step == 0 and 0 not in self._evaluated and self._n_dead < self.R:
            if 0 in snap_set:
                self._snapshot_now()
            if 0 in eval_set:
                new = self._evaluate_now()
                if progress is not None:
                    progress(0, self.steps, new)
        while self.step < until and self._n_dead < self.R:
            if shutdown.requested():
                self.wall_time_s += time.perf_counter() - t0
                if checkpoint is not None:
                    self.save(checkpoint)
                raise shutdown.Interrupted(shutdown.requested())
            self._train_step()
            if self._n_dead == self.R:
                break
            if self.step in snap_set:
                self._snapshot_now()
            if self.step in eval_set:
                new = self._evaluate_now()
                if progress is not None:
                    progress(self.step, self.steps, new)
            if checkpoint_every is not None and self.step % checkpoint_every == 0:
                self.save(checkpoint)  # type: ignore[arg-type]
        self.wall_time_s += time.perf_counter() - t0
        if checkpoint is not None:
            self.save(checkpoint)
        return self.result()

    def result(self) -> TrainResult:
        """The result so far (rows and snapshots are shared, not copied)."""
        return TrainResult(method=self.method, seeds=self.seeds, steps=self.steps,
                           steps_done=self.step, rows=self.rows, diverged=dict(self.diverged),
                           messages=list(self.messages), snapshots=self.snapshots,
                           model=self.model, head=self.head, wall_time_s=self.wall_time_s,
                           ensemble=self.ensemble)

    def predict_proba(self, X: Tensor) -> Tensor:
        """Class probabilities ``[R, n, n_classes]`` of every run with the current parameters."""
        return _predict_proba(self.model, self.head, self.ensemble, X, None)

    # ------------------------------------------------------------------ checkpoints
    def config(self) -> dict[str, Any]:
        """Everything that defines the run (stored in checkpoints, compared on resume)."""
        return {"model": self.model_spec.to_dict(), "optimizer": self.optim_spec.to_dict(),
                "steps": self.steps, "batch_size": self.batch_size, "subsample": self.subsample,
                "seeds": list(self.seeds), "ensemble": self.ensemble,
                "eval_steps": list(self.eval_steps), "snapshot_steps": list(self.snapshot_steps)}

    def state_dict(self) -> dict[str, Any]:
        """The complete training state (see the module docstring)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config(),
            "data": self.data.fingerprint(),
            "step": self.step,
            "model": {k: v.clone() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "data_generators": [g.get_state() for g in self._gens],
            "perm": self._perm,
            "pos": self._pos,
            "alive": self._alive.clone(),
            "backup": [b.clone() for b in self._backup],
            "frozen": [f.clone() for f in self._frozen],
            "diverged": [[s, k] for s, k in self.diverged.items()],
            "messages": list(self.messages),
            "rows": [dict(r) for r in self.rows],
            "snapshots": [[k, v] for k, v in self.snapshots.items()],
            "evaluated": sorted(self._evaluated),
            "wall_time_s": self.wall_time_s,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict` (same config and data, else ValueError)."""
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint format {state.get('format')!r} is not "
                             f"{CHECKPOINT_FORMAT!r}")
        if state["config"] != self.config():
            diff = sorted(k for k in self.config() if state["config"].get(k) != self.config()[k])
            raise ValueError(f"checkpoint was written for a different run (differs in: "
                             f"{', '.join(diff)})")
        if state["data"] != self.data.fingerprint():
            raise ValueError("checkpoint was written for different data")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for g, s in zip(self._gens, state["data_generators"], strict=True):
            g.set_state(s)
        self._perm = state["perm"]
        self._pos = int(state["pos"])
        self.step = int(state["step"])
        self._alive = state["alive"].clone()
        self._n_dead = int((~self._alive).sum())
        for dst, src in zip(self._backup, state["backup"], strict=True):
            dst.copy_(src)
        for dst, src in zip(self._frozen, state["frozen"], strict=True):
            dst.copy_(src)
        self.diverged = {int(s): int(k) for s, k in state["diverged"]}
        self.messages = list(state["messages"])
        self.rows = [dict(r) for r in state["rows"]]
        self.snapshots = {int(k): v for k, v in state["snapshots"]}
        self._evaluated = set(state["evaluated"])
        self.wall_time_s = float(state["wall_time_s"])

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the state to ``path`` atomically, with its SHA-256
        (:func:`heatbath.engine.checkpoint.save`)."""
        return _checkpoint.save(path, self.state_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str], data: Dataset, model: ModelSpec,
             optimizer: OptimSpec, **kwargs: Any) -> Trainer:
        """A trainer built from the same arguments, with the state saved at ``path``.

        Raises:
            CheckpointError: the file is missing, truncated, corrupt or not a checkpoint.
            ValueError: the checkpoint belongs to another run or other data.
        """
        state = _checkpoint.load(path)  # verified before anything is built
        trainer = cls(data, model, optimizer, **kwargs)
        if not isinstance(state, dict):
            raise _checkpoint.CheckpointError(path, "not a training state")
        try:
            trainer.load_state_dict(state)
        except (KeyError, TypeError, IndexError, RuntimeError) as exc:
            raise _checkpoint.CheckpointError(
                path, f"not a complete training state ({type(exc).__name__}: "
                      f"{' '.join(str(exc).split())[:120]})") from None
        return trainer


def train(
    data: Dataset,
    model: ModelSpec,
    optimizer: OptimSpec,
    *,
    steps: int,
    subsample: float = 5.0,
    batch_size: int | None = None,
    seed: int | None = None,
    seeds: Sequence[int] | None = None,
    eval_every: int | None = None,
    eval_steps: Iterable[int] | None = None,
    snapshot_steps: Iterable[int] = (),
    progress: ProgressFn | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    num_threads: int | None = None,
    collect: dict[str, Any] | None = None,
    collect_path: str | os.PathLike[str] | None = None,
) -> TrainResult:
    """Train one run (``seed``) or an ensemble (``seeds``) to ``steps`` and return the result.

    Arguments as for :class:`Trainer` and :meth:`Trainer.run`. With ``resume=True`` and an
    existing ``checkpoint`` file, training continues from it (the arguments must match the
    checkpointed run, else ``ValueError``). With ``collect`` (settings from
    :func:`heatbath.sampling.run.parse_collect`) posterior samples of every run are stored in
    the folder ``collect_path`` (see docs/sampling.md).
    """
    kwargs: dict[str, Any] = {"steps": steps, "subsample": subsample, "batch_size": batch_size,
                              "seed": seed, "seeds": seeds, "eval_every": eval_every,
                              "eval_steps": eval_steps, "snapshot_steps": snapshot_steps}
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path")
    resuming = resume and Path(checkpoint).exists()  # type: ignore[arg-type]
    if collect is not None:
        if collect_path is None:
            raise ValueError("collect needs collect_path, the folder for the samples")
        if not resuming and (Path(collect_path) / "manifest.json").exists():
            raise ValueError(f"collect_path {collect_path} holds samples of an earlier run, "
                             "and this one starts at step 0; use an empty folder")
    if resuming:
        trainer = Trainer.load(checkpoint, data, model, optimizer, **kwargs)  # type: ignore[arg-type]
    else:
        trainer = Trainer(data, model, optimizer, **kwargs)
    if collect is not None:
        from heatbath.sampling.run import collector_for

        collector_for(trainer, collect, collect_path)
    return trainer.run(progress=progress, checkpoint=checkpoint,
                       checkpoint_every=checkpoint_every, num_threads=num_threads)


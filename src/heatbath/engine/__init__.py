"""Training engine: single runs and batched ensembles of runs (docs/how-to/ensembles.md).

Public API (stable; the CLI and reports build on it)::

    from heatbath.data import make_dataset
    from heatbath.engine import ModelSpec, OptimSpec, Trainer, train

    data = make_dataset("spirals", n_train=500, n_test=1000, seed=0, turns=2)
    result = train(
        data,
        ModelSpec("shlp", hidden=20),                 # name "shlp"|"mlp", hidden, activation,
                                                      # head (None: auto), init "torch"|"gaussian:s"
        OptimSpec("adlala", {"h": 0.25, "gamma": 0.5}, label="adlala"),
        steps=10_000, subsample=5.0,                  # minibatch = 5 % of the training set
        seeds=range(20),                              # an ensemble of 20 runs (or seed=0: one run)
        eval_every=100,                               # full train+test loss/accuracy; or eval_steps
        snapshot_steps=[0, 5000, 10_000],             # parameter copies (histograms, maps)
        progress=lambda step, steps, new_rows: ...,   # after every evaluation
        checkpoint="runs/x/ckpt.pt", checkpoint_every=1000, resume=True,
        num_threads=1,                                # torch threads during the call (restored)
    )

``train`` returns a :class:`TrainResult`:

- ``rows``: long-format metrics, dicts ``{method, seed, step, split ("train"|"test"), loss,
  accuracy (fraction in [0, 1])}``, for every evaluated step and run;
- ``diverged`` ``{seed: step}`` and ``messages``: runs stopped by a non-finite loss (each keeps
  its last parameters with a finite loss, evaluated and recorded at that step);
- ``snapshots`` ``{step: {param name: tensor [R, ...]}}`` (names ``layers.<i>.weight|bias``;
  R = 1 for a single run);
- ``model`` (trained; ensemble parameters ``[R, ...]``), ``head``, ``predict_proba(X, step=None)``
  → ``[R, n, n_classes]`` (``step`` = a snapshot step), ``replica_model(r)``, ``steps_done``,
  ``wall_time_s``, ``seeds``, ``method``.

:class:`Trainer` is the same with finer control: ``Trainer(data, model, optimizer, steps=…,
seed=|seeds=…, …)``, ``.run(until=None, progress=, checkpoint=, checkpoint_every=)``,
``.evaluate()``, ``.predict_proba(X)``, ``.save(path)`` / ``Trainer.load(path, data, model,
optimizer, **same kwargs)`` (bit-identical continuation), ``.state_dict()``/``.load_state_dict()``,
``.model``, ``.optimizer``, ``.step``, ``.alive``, ``.config()``.

Errors: bad arguments raise ``ValueError`` naming the parameter before any training; a
checkpoint of another run or other data raises ``ValueError`` on load.

The optimizer is built with ``heatbath.optim.build_optimizer(method, model, replicas=R or None,
seed=…, **hparams)``. See ``trainer`` for the loop's definitions and choices.
"""

from .specs import MODEL_NAMES, ModelSpec, OptimSpec, optimizer_seed
from .trainer import CHECKPOINT_FORMAT, ProgressFn, Trainer, TrainResult, train

__all__ = [
    "CHECKPOINT_FORMAT",
    "MODEL_NAMES",
    "ModelSpec",
    "OptimSpec",
    "ProgressFn",
    "TrainResult",
    "Trainer",
    "optimizer_seed",
    "train",
]

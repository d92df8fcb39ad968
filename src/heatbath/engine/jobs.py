r"""Jobs: the unit of work of every experiment.

An experiment is a set of :class:`Job`\ s. A job is a *(setting, block of seeds)* pair: a plain
dict that says what to train (data, model, optimizer, steps, ...) and the seeds of the runs
trained together as one batched ensemble. A job runs a *task* (an importable function, by
default :func:`train_classifier`, the training engine) and writes into its own folder::

    <root>/<job.name>/job.json        what the job is (task, setting, seeds, key)
    <root>/<job.name>/checkpoint.pt   the task's checkpoint while it runs (deleted at the end)
    <root>/<job.name>/result.pt       the finished result (written once, atomically)

A job is *finished* when ``result.pt`` exists and holds the job's :meth:`Job.key`. A worker that
dies leaves at most a checkpoint; the next attempt resumes from it (the engine continues
bit-identically) and the result is written once, so nothing is lost or counted twice.

Executors (:mod:`heatbath.engine.executors`) decide where jobs run: processes on this machine
or a Ray cluster. Both call :func:`execute` on the worker and get the result file's bytes back,
so a cluster without shared storage still collects every result into the driver's folder.

A task is a function ``task(job: Job, ctx: JobContext) -> object`` (the object must pickle).
It should checkpoint to ``ctx.checkpoint`` and resume from it when the file exists, and report
``ctx.progress(step, total)``. Example (a custom training loop)::

    def train_sda(job: Job, ctx: JobContext) -> dict:
        model = build(job.setting, seed=job.seeds[0])
        start = load_if_exists(ctx.checkpoint, model)        # resume after a dead worker
        for step in range(start, job.setting["steps"]):
            ...
            ctx.progress(step + 1, job.setting["steps"])
        return {"curve": curve}

    job = Job("sda/ctld", {"method": "ctld", "steps": 2000}, seeds=(0,),
              task="mypackage.recipes:train_sda")
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from heatbath.output.io import write_bytes, write_json

__all__ = [
    "DEFAULT_TASK",
    "Job",
    "JobContext",
    "JobResult",
    "classifier_job",
    "execute",
    "load_result",
    "result_bytes",
    "seed_blocks",
    "train_classifier",
]

#: the engine's classifier training (see :func:`train_classifier`)
DEFAULT_TASK = "heatbath.engine.jobs:train_classifier"

RESULT_FORMAT = "heatbath.engine.job-result/1"
RESULT_FILE = "result.pt"
CHECKPOINT_FILE = "checkpoint.pt"
JOB_FILE = "job.json"

_NAME = re.compile(r"^[A-Za-z0-9_.=+,\-]+(/[A-Za-z0-9_.=+,\-]+)*$")


def _canonical(obj: Any) -> Any:
    """A JSON-able copy of ``obj`` (tuples become lists); anything else is a TypeError."""
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"a job setting holds plain values only (dict, list, str, number, bool, "
                    f"None), got {type(obj).__name__} {obj!r}")


@dataclass(frozen=True)
class Job:
    """One unit of work: a setting trained over a block of seeds, into its own folder.

    Attributes:
        name: unique within the experiment; the folder below the root (``"fig10/adam_h0.01"``;
            letters, digits, ``_ . = + , -``, parts separated by ``/``).
        setting: what to train, plain values only (what :func:`train_classifier` reads is
            documented there).
        seeds: the runs of the block (one batched ensemble).
        task: ``"module:function"`` run on the worker (default: :func:`train_classifier`).
        cost: a scheduling hint (any unit, e.g. steps × runs × width); larger jobs start first.
        checkpoint: where the task checkpoints, relative to the root (default:
            ``<name>/checkpoint.pt``, deleted when the job has finished; a path given here is
            kept, e.g. a ``compare`` run's ``checkpoints/<label>.pt``, which ``--resume``
            verifies). Not part of :meth:`key`.
    """

    name: str
    setting: Mapping[str, Any]
    seeds: tuple[int, ...]
    task: str = DEFAULT_TASK
    cost: float = 0.0
    checkpoint: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name) or any(
                part in (".", "..") for part in self.name.split("/")):
            raise ValueError(f"job name must be path parts of letters, digits and _ . = + , - "
                             f"separated by '/', got {self.name!r}")
        object.__setattr__(self, "setting", _canonical(self.setting))
        seeds = tuple(int(s) for s in self.seeds)
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be a non-empty block of distinct seeds, got "
                             f"{self.seeds!r}")
        object.__setattr__(self, "seeds", seeds)
        if not isinstance(self.task, str) or ":" not in self.task:
            raise ValueError(f"task must be 'module:function', got {self.task!r}")

    def key(self) -> str:
        """A digest of what the job computes (task, setting, seeds): equal keys, equal results."""
        blob = json.dumps({"task": self.task, "setting": self.setting,
                           "seeds": list(self.seeds)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def folder(self, root: str | os.PathLike[str]) -> Path:
        """The job's folder below ``root``."""
        return Path(root) / self.name

    def checkpoint_path(self, root: str | os.PathLike[str]) -> Path:
        """Where the job's task checkpoints (see ``checkpoint``)."""
        if self.checkpoint is None:
            return self.folder(root) / CHECKPOINT_FILE
        return Path(root) / self.checkpoint

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "task": self.task, "setting": self.setting,
                "seeds": list(self.seeds), "key": self.key()}


#: ``report(step, total)`` from inside a task
ProgressReport = Callable[[int, int], None]


@dataclass
class JobContext:
    """What a task gets besides its job: its folder, checkpoint path, progress hook.

    Attributes:
        folder: the job's folder (created).
        checkpoint: where to checkpoint (``folder/checkpoint.pt``); resume when it exists.
        attempt: 1 for the first try, 2 after a worker died once, ...
        threads: torch threads to use (``None``: torch's default).
    """

    folder: Path
    checkpoint: Path
    attempt: int = 1
    threads: int | None = 1
    report: ProgressReport | None = None

    def progress(self, step: int, total: int) -> None:
        """Report that the job is at ``step`` of ``total``."""
        if self.report is not None:
            self.report(int(step), int(total))


@dataclass
class JobResult:
    """A finished job: the task's return value and how it ran.

    Attributes:
        name: the job's name; ``key`` its :meth:`Job.key`.
        value: what the task returned (for :func:`train_classifier`, a
            :class:`heatbath.engine.TrainResult`).
        wall_s: seconds the last attempt took; ``cpu_s`` its process CPU seconds.
        attempts: how many attempts it took (more than 1: a worker died and it resumed).
    """

    name: str
    key: str
    value: Any
    wall_s: float = 0.0
    cpu_s: float = 0.0
    attempts: int = 1
    meta: dict[str, Any] = field(default_factory=dict)


def _resolve_task(task: str) -> Callable[[Job, JobContext], Any]:
    module, _, attr = task.partition(":")
    fn = getattr(importlib.import_module(module), attr, None)
    if not callable(fn):
        raise ValueError(f"task {task!r}: {module} has no function {attr!r}")
    return fn  # type: ignore[no-any-return]


def result_bytes(result: JobResult) -> bytes:
    """The bytes of a result file."""
    buf = io.BytesIO()
    torch.save({"format": RESULT_FORMAT, "name": result.name, "key": result.key,
                "value": result.value, "wall_s": result.wall_s, "cpu_s": result.cpu_s,
                "attempts": result.attempts, "meta": result.meta}, buf)
    return buf.getvalue()


def _from_bytes(data: bytes) -> JobResult:
    # result files are written by heatbath itself (full pickles: a result holds a model)
    raw = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    if not isinstance(raw, dict) or raw.get("format") != RESULT_FORMAT:
        raise ValueError("not a heatbath job result")
    return JobResult(raw["name"], raw["key"], raw["value"], raw["wall_s"], raw["cpu_s"],
                     raw["attempts"], raw["meta"])


def load_result(job: Job, root: str | os.PathLike[str]) -> JobResult | None:
    """The job's finished result under ``root``, or ``None`` (none yet, or another job's)."""
    path = job.folder(root) / RESULT_FILE
    if not path.is_file():
        return None
    try:
        res = _from_bytes(path.read_bytes())
    except Exception:  # a foreign or damaged file: the job is not finished
        return None
    return res if res.key == job.key() else None


def store_result(job: Job, root: str | os.PathLike[str], data: bytes) -> JobResult:
    """Write a result received from a worker into the job's folder under ``root`` (unless the
    worker, sharing the storage, already wrote the same bytes); return it."""
    res = _from_bytes(data)
    if res.key != job.key():
        raise ValueError(f"job {job.name}: the worker returned the result of another job")
    path = job.folder(root) / RESULT_FILE
    if not (path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data):
        write_bytes(path, data)
    if job.checkpoint is None:
        job.checkpoint_path(root).unlink(missing_ok=True)
    return res


def execute(job: Job, root: str | os.PathLike[str], *, attempt: int = 1,
            threads: int | None = 1, report: ProgressReport | None = None) -> bytes:
    """Run ``job`` here (on a worker): its task in its folder; returns the result file's bytes.

    The result is written to ``<root>/<job.name>/result.pt`` (atomically) and returned, so the
    driver can store it when the worker's disk is not its own. An attempt after the first
    resumes from the job's checkpoint when the task supports it.
    """
    folder = job.folder(root)
    folder.mkdir(parents=True, exist_ok=True)
    if attempt == 1 or not (folder / JOB_FILE).exists():
        write_json(folder / JOB_FILE, job.to_dict())
    fn = _resolve_task(job.task)
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    ckpt = job.checkpoint_path(root)
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        value = fn(job, JobContext(folder, ckpt, attempt, threads, report))
    finally:
        torch.set_num_threads(before)
    res = JobResult(job.name, job.key(), value, time.perf_counter() - t0,
                    time.process_time() - c0, attempt)
    data = result_bytes(res)
    write_bytes(folder / RESULT_FILE, data)
    if job.checkpoint is None:
        ckpt.unlink(missing_ok=True)
    return data


def seed_blocks(seeds: Sequence[int], per_job: int | None) -> list[tuple[int, ...]]:
    """Split ``seeds`` into consecutive blocks of ``per_job`` (``None``: one block)."""
    seeds = tuple(int(s) for s in seeds)
    if per_job is None or per_job >= len(seeds):
        return [seeds]
    if per_job < 1:
        raise ValueError(f"seeds per job must be >= 1, got {per_job}")
    return [seeds[i:i + per_job] for i in range(0, len(seeds), per_job)]


# --------------------------------------------------------------------------- the engine's task

_DATA_CACHE: dict[str, Any] = {}


def _dataset(spec: Mapping[str, Any]) -> Any:
    """The data set of a setting, built once per process (jobs of one figure share it)."""
    from heatbath.data import make_dataset

    key = json.dumps(spec, sort_keys=True)
    if key not in _DATA_CACHE:
        d = dict(spec)
        name = d.pop("name")
        n_train, n_test, seed = d.pop("n_train", None), d.pop("n_test", None), d.pop("seed", 0)
        if len(_DATA_CACHE) >= 4:
            _DATA_CACHE.pop(next(iter(_DATA_CACHE)))
        _DATA_CACHE[key] = make_dataset(name, n_train=n_train, n_test=n_test, seed=seed, **d)
    return _DATA_CACHE[key]


def classifier_job(name: str, *, data: Mapping[str, Any], model: Mapping[str, Any],
                   method: str, hparams: Mapping[str, Any], label: str | None = None,
                   seeds: Sequence[int], steps: int, subsample: float | None = 5.0,
                   batch_size: int | None = None, eval_every: int | None = None,
                   eval_steps: Sequence[int] | None = None,
                   snapshot_steps: Sequence[int] = (), checkpoint_every: int | None = None,
                   checkpoint: str | None = None, collect: Mapping[str, Any] | None = None
                   ) -> Job:
    """A :class:`Job` for :func:`train_classifier` (keyword arguments as in
    :func:`heatbath.engine.train`; ``data`` as for :func:`heatbath.data.make_dataset` with its
    ``name``; ``model`` as :class:`heatbath.engine.ModelSpec`'s fields; ``checkpoint`` as
    :class:`Job`'s; ``collect``: posterior-sample settings, the samples go to the job's
    folder's ``samples/``)."""
    width = model.get("hidden", 20)
    widest = max(width) if isinstance(width, (list, tuple)) else int(width)
    setting = {
        "data": dict(data), "model": dict(model),
        "optimizer": {"method": method, "hparams": dict(hparams), "label": label},
        "train": {"steps": steps, "subsample": subsample if subsample is not None else 5.0,
                  "batch_size": batch_size, "eval_every": eval_every,
                  "eval_steps": None if eval_steps is None else sorted(set(eval_steps)),
                  "snapshot_steps": sorted(set(snapshot_steps))},
        "checkpoint_every": checkpoint_every or max(1, steps // 10),
    }
    if collect is not None:
        setting["collect"] = dict(collect)
    return Job(name, setting, tuple(seeds), cost=float(steps) * len(seeds) * widest,
               checkpoint=checkpoint)


def train_classifier(job: Job, ctx: JobContext) -> Any:
    """The engine's task: train ``job.setting``'s classifier over ``job.seeds``.

    The setting (see :func:`classifier_job`) has ``data`` (for ``make_dataset``), ``model``
    (``ModelSpec`` fields), ``optimizer`` (``method``, ``hparams``, ``label``), ``train``
    (``steps``, ``subsample``, ``batch_size``, ``eval_every``, ``eval_steps``,
    ``snapshot_steps``) and ``checkpoint_every``. Returns the
    :class:`heatbath.engine.TrainResult`; checkpoints to ``ctx.checkpoint`` and resumes from it.
    """
    from heatbath.engine import ModelSpec, OptimSpec, train

    s = job.setting
    m = dict(s["model"])
    model = ModelSpec(m.pop("name", "shlp"), m.pop("hidden", 20), **m)
    o = s["optimizer"]
    optim = OptimSpec(o["method"], o.get("hparams", {}), label=o.get("label"))
    t = dict(s["train"])
    if s.get("collect") is not None:
        samples = ctx.folder / "samples"
        if not ctx.checkpoint.exists():  # training starts at step 0: earlier samples are stale
            shutil.rmtree(samples, ignore_errors=True)
        t.update(collect=s["collect"], collect_path=samples)
    return train(_dataset(s["data"]), model, optim, seeds=list(job.seeds),
                 progress=lambda step, total, _rows: ctx.progress(step, total),
                 checkpoint=ctx.checkpoint, checkpoint_every=s.get("checkpoint_every"),
                 resume=True, num_threads=ctx.threads, **t)

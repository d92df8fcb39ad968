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

Result files hold plain data only and are read with ``torch.load(..., weights_only=True)``, so
loading a result never runs code from the file (a tampered or foreign file is refused with a
:class:`ResultFileError`). A task may return plain values (``None``, bool, int, float, complex,
str, bytes), tensors, NumPy arrays and scalars, dicts, lists, tuples and sets of these, instances
of dataclasses defined in heatbath's own modules (rebuilt field by field, without running their
``__init__``), and heatbath's classifier models (:class:`heatbath.models.MLP`, ``SHLP`` and their
ensembles, stored as constructor arguments and a state dict), so a
:class:`heatbath.engine.TrainResult` round-trips. Anything else is a TypeError naming the job
and where in the value it sits.

Executors (:mod:`heatbath.engine.executors`) decide where jobs run: processes on this machine
or a Ray cluster. Both call :func:`execute` on the worker and get the result file's bytes back,
so a cluster without shared storage still collects every result into the driver's folder.

A task is a function ``task(job: Job, ctx: JobContext) -> object`` (a value as above).
It should checkpoint to ``ctx.checkpoint`` and resume from it when the file exists, and report
``ctx.progress(step, total)`` (optionally with a few figures: ``ctx.progress(step, total,
{"test_acc": 0.91})``). Example (a custom training loop)::

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

import dataclasses
import hashlib
import importlib
import inspect
import io
import json
import os
import re
import shutil
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from heatbath.output.io import write_bytes, write_json

__all__ = [
    "DEFAULT_TASK",
    "Job",
    "JobContext",
    "JobResult",
    "ResultFileError",
    "check_job_name",
    "classifier_job",
    "execute",
    "load_result",
    "result_bytes",
    "seed_blocks",
    "train_classifier",
]

#: the engine's classifier training (see :func:`train_classifier`)
DEFAULT_TASK = "heatbath.engine.jobs:train_classifier"

RESULT_FORMAT = "heatbath.engine.job-result/2"
RESULT_FILE = "result.pt"
CHECKPOINT_FILE = "checkpoint.pt"
JOB_FILE = "job.json"

# one part of a job name: the safe-name rule of heatbath.engine.runfolder.check_component (first
# character a letter, a digit or "_", so never ".", "..", a hidden name or an option-like "-x";
# no path separator, so never absolute) with "= + ," added for settings such as "lr=0.01,h=2"
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.=+,\-]{0,127}")


def check_job_name(name: object) -> str:
    """Return ``name`` if it is a safe job name, else raise a ValueError naming it.

    A job name is a relative path below the experiment's root: parts separated by ``/``, each
    1 to 128 characters from ``A-Z a-z 0-9 _ . = + , -`` whose first is a letter, a digit or
    ``_`` (the rule of :func:`heatbath.engine.runfolder.check_component`, plus ``= + ,``), and
    none equal to a file the job writes (``job.json``, ``result.pt``, ``checkpoint.pt``). So a
    name never climbs out of the root (``..``), is never absolute, hidden or empty.

    Args:
        name: the job's name.

    Returns:
        ``name``, unchanged.

    Raises:
        ValueError: ``name`` is not a string or not a safe relative path.
    """
    rule = ("parts of 1-128 characters from A-Z a-z 0-9 _ . = + , - starting with a letter, "
            "digit or _, separated by '/'")
    if not isinstance(name, str):
        raise ValueError(f"job name must be a string of {rule}, got {name!r}")
    for part in name.split("/"):
        if not _PART.fullmatch(part):
            raise ValueError(f"job name {name!r} is not a safe relative path: part {part!r} "
                             f"breaks the rule ({rule})")
        if part in (JOB_FILE, RESULT_FILE, CHECKPOINT_FILE):
            raise ValueError(f"job name {name!r}: part {part!r} is the name of a job's own file")
    return name


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
            a safe relative path, see :func:`check_job_name`).
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
        check_job_name(self.name)
        object.__setattr__(self, "setting", _canonical(self.setting))
        seeds = tuple(int(s) for s in self.seeds)
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be a non-empty block of distinct seeds, got "
                             f"{self.seeds!r}")
        object.__setattr__(self, "seeds", seeds)
        if not isinstance(self.task, str) or ":" not in self.task:
            raise ValueError(f"task must be 'module:function', got {self.task!r}")
        if self.checkpoint is not None and (
                not isinstance(self.checkpoint, str)
                or not all(_PART.fullmatch(p) for p in self.checkpoint.split("/"))):
            raise ValueError(f"job {self.name!r}: checkpoint must be a safe relative path "
                             f"(parts as in a job name), got {self.checkpoint!r}")

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


#: ``report(step, total, info)`` from inside a task; ``info`` holds a few figures of the run so
#: far (e.g. ``{"test_acc": 0.91}``), or is empty
ProgressReport = Callable[[int, int, dict[str, float]], None]


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

    def progress(self, step: int, total: int, info: Mapping[str, float] | None = None) -> None:
        """Report that the job is at ``step`` of ``total``.

        Args:
            step: steps done.
            total: steps planned.
            info: a few figures of the run so far, by name (e.g. ``{"test_acc": 0.91}``: the
                progress display of ``compare`` shows it), or ``None``.
        """
        if self.report is None:
            return
        figures = {} if info is None else {str(k): float(v) for k, v in info.items()}
        if _takes_info(self.report):
            self.report(int(step), int(total), figures)
        else:  # a two-argument report(step, total), as before progress carried figures
            self.report(int(step), int(total))  # type: ignore[call-arg]


def _takes_info(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` takes the figures as a third argument (``report(step, total, info)``)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return True
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    # a third argument without a default, or one named "info" (a default-bound third argument,
    # as in ``lambda s, t, n=name: ...``, is not for the figures)
    return (len([p for p in positional if p.default is p.empty]) >= 3
            or any(p.name == "info" for p in positional[2:3]))


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


# --------------------------------------------------------------------------- result files
#
# A result file is ``torch.save`` of plain data: what ``torch.load(weights_only=True)`` reads
# (dicts, lists, tuples, sets, numbers, strings, bytes, tensors) and nothing that can run code on
# loading. Other values are written as tagged dicts, ``{_TAG: kind, ...}``, and rebuilt by
# :func:`_decode` only from heatbath's own dataclasses and models.

_TAG = "__heatbath_value__"
_OWN = "heatbath."


class ResultFileError(ValueError):
    """A job's result file that is not a heatbath result, or not safe to load; the message
    names the file."""


def _classname(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _own_class(name: object, where: str) -> type:
    """The class ``"module:qualname"``, only from heatbath's own modules."""
    if not isinstance(name, str) or ":" not in name:
        raise ResultFileError(f"{where}: bad type name {name!r}")
    module, _, qual = name.partition(":")
    if not module.startswith(_OWN):
        raise ResultFileError(f"{where}: refuses to build {name!r} (only heatbath's own classes "
                              f"are rebuilt from result files)")
    obj: Any = importlib.import_module(module)
    for attr in qual.split("."):
        obj = getattr(obj, attr, None)
    if not isinstance(obj, type):
        raise ResultFileError(f"{where}: {name!r} is not a class")
    return obj


def _model_args(model: nn.Module) -> dict[str, Any] | None:
    """Constructor arguments of heatbath's classifier models (``None`` for any other module)."""
    from heatbath.models.ensemble import EnsembleMLP
    from heatbath.models.mlp import MLP

    if isinstance(model, (MLP, EnsembleMLP)) and type(model).__module__.startswith(_OWN):
        sizes = list(model.sizes)
        hidden: Any = sizes[1:-1]
        if getattr(type(model), "single_cls", None) is not None:  # an ensemble
            hidden = model.hidden
        elif len(hidden) == 1 and type(model).__name__ == "SHLP":
            hidden = hidden[0]
        args = {"d_in": sizes[0], "hidden": hidden, "n_classes": model.n_classes,
                "activation": model.activation, "head": model.head, "init": model.init}
        if isinstance(model, EnsembleMLP):
            args["seeds"] = list(model.seeds)
        return args
    return None


_SCALARS = frozenset({type(None), bool, int, float, complex, str, bytes})


class _Unstorable(TypeError):
    """A value a result file cannot hold; ``path`` says where it sits (built on the way out)."""

    def __init__(self, obj: Any) -> None:
        super().__init__()
        self.obj = obj
        self.path: list[str] = []


def _encode(obj: Any, where: str) -> Any:
    """``obj`` as plain data (see the module docstring); a TypeError says where ``where``'s
    value holds something that is not."""
    try:
        return _enc(obj)
    except _Unstorable as exc:
        t = type(exc.obj)
        raise TypeError(f"{where}{''.join(exc.path)} is a {t.__module__}.{t.__qualname__}, "
                        f"which a result file cannot hold; return plain data (numbers, "
                        f"strings, tensors, NumPy arrays, dicts, lists, tuples), heatbath "
                        f"dataclasses or heatbath's classifier models (see "
                        f"heatbath.engine.jobs)") from None


def _enc(obj: Any) -> Any:
    t = type(obj)
    if t in _SCALARS:
        return obj
    if t is list or t is tuple or t is set or t is frozenset:
        enc = []
        for i, v in enumerate(obj):
            try:
                enc.append(v if type(v) in _SCALARS else _enc(v))
            except _Unstorable as exc:
                exc.path.insert(0, f"[{i}]")
                raise
        return {_TAG: "frozenset", "items": enc} if t is frozenset else t(enc)
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, np.ndarray) and obj.dtype != object:
        return {_TAG: "ndarray", "dtype": obj.dtype.str, "shape": list(obj.shape),
                "data": np.ascontiguousarray(obj).tobytes()}
    if isinstance(obj, np.generic) and not isinstance(obj, np.object_):
        return {_TAG: "npscalar", "dtype": obj.dtype.str, "data": obj.tobytes()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if t.__module__.startswith(_OWN):
            fields = {}
            for f in dataclasses.fields(obj):
                try:
                    fields[f.name] = _enc(getattr(obj, f.name))
                except _Unstorable as exc:
                    exc.path.insert(0, f".{f.name}")
                    raise
            return {_TAG: "dataclass", "type": _classname(t), "fields": fields}
    elif isinstance(obj, nn.Module):
        args = _model_args(obj)
        if args is not None:
            return {_TAG: "model", "type": _classname(t), "args": args,
                    "state": OrderedDict((k, v.detach().cpu().clone())
                                         for k, v in obj.state_dict().items()),
                    "training": obj.training}
    elif isinstance(obj, Mapping):
        items = []
        for k, v in obj.items():
            try:
                items.append((k if type(k) in _SCALARS else _enc(k),
                              v if type(v) in _SCALARS else _enc(v)))
            except _Unstorable as exc:
                exc.path.insert(0, f"[{k!r}]")
                raise
        if t is OrderedDict:
            return OrderedDict(items)
        if any(type(k) is str and k == _TAG for k, _ in items):
            return {_TAG: "dict", "items": items}  # a dict that would read as a tagged one
        try:
            return dict(items)
        except TypeError:
            raise _Unstorable(obj) from None  # a key that is not hashable once encoded
    raise _Unstorable(obj)


def _decode(obj: Any, where: str) -> Any:
    """The value :func:`_encode` wrote (heatbath classes only; see :func:`_own_class`)."""
    t = type(obj)
    if t in _SCALARS:
        return obj
    if isinstance(obj, dict):
        kind = obj.get(_TAG) if t is dict else None
        if kind is None:
            out = {k: v if type(v) in _SCALARS else _decode(v, where) for k, v in obj.items()}
            return OrderedDict(out) if isinstance(obj, OrderedDict) else out
        if kind == "ndarray":
            arr = np.frombuffer(obj["data"], dtype=np.dtype(obj["dtype"]))
            return arr.reshape(obj["shape"]).copy()
        if kind == "npscalar":
            return np.frombuffer(obj["data"], dtype=np.dtype(obj["dtype"]))[0]
        if kind == "dict":
            return {_decode(k, where): _decode(v, where) for k, v in obj["items"]}
        if kind == "frozenset":
            return frozenset(_decode(v, where) for v in obj["items"])
        if kind == "dataclass":
            cls = _own_class(obj["type"], where)
            if not dataclasses.is_dataclass(cls):
                raise ResultFileError(f"{where}: {obj['type']!r} is not a dataclass")
            names = {f.name for f in dataclasses.fields(cls)}
            value = object.__new__(cls)
            for k, v in obj["fields"].items():
                if k not in names:
                    raise ResultFileError(f"{where}: {obj['type']} has no field {k!r}")
                object.__setattr__(value, k, _decode(v, where))
            return value
        if kind == "model":
            from heatbath.models.ensemble import EnsembleMLP
            from heatbath.models.mlp import MLP

            cls = _own_class(obj["type"], where)
            if not issubclass(cls, (MLP, EnsembleMLP)):
                raise ResultFileError(f"{where}: {obj['type']!r} is not a heatbath classifier "
                                      f"model")
            args = dict(obj["args"])
            model = cls(args.pop("d_in"), args.pop("hidden"), args.pop("n_classes"), **args)
            model.load_state_dict(obj["state"])
            model.train(bool(obj["training"]))
            return model
        raise ResultFileError(f"{where}: unknown value kind {kind!r}")
    if t is list or t is tuple or t is set:
        return t([v if type(v) in _SCALARS else _decode(v, where) for v in obj])
    return obj


def result_bytes(result: JobResult) -> bytes:
    """The bytes of a result file (plain data; see the module docstring).

    Raises:
        TypeError: the task's value holds something a result file cannot (named).
    """
    buf = io.BytesIO()
    value = _encode(result.value, f"job {result.name!r}: the result value")
    torch.save({"format": RESULT_FORMAT, "name": result.name, "key": result.key,
                "value": value, "wall_s": float(result.wall_s), "cpu_s": float(result.cpu_s),
                "attempts": int(result.attempts), "meta": _encode(result.meta, "meta")}, buf)
    return buf.getvalue()


def _from_bytes(data: bytes, where: str = "a job result") -> JobResult:
    try:
        # weights_only: plain data only, nothing in the file is run
        raw = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        why = " ".join(str(exc).split())[:200]
        raise ResultFileError(
            f"{where} is not a heatbath result file that is safe to load (it may be damaged, "
            f"written by another program or by heatbath before results were plain data); it "
            f"was not loaded. Delete it, or run without --resume. ({why})") from None
    if not isinstance(raw, dict) or raw.get("format") != RESULT_FORMAT:
        raise ResultFileError(f"{where} is not a heatbath job result (format "
                              f"{raw.get('format') if isinstance(raw, dict) else None!r}, "
                              f"expected {RESULT_FORMAT!r}); delete it, or run without --resume")
    try:
        value = _decode(raw["value"], where)
        meta = _decode(raw["meta"], where)
        return JobResult(raw["name"], raw["key"], value, raw["wall_s"], raw["cpu_s"],
                         raw["attempts"], meta)
    except ResultFileError:
        raise
    except Exception as exc:
        raise ResultFileError(f"{where}: its value could not be rebuilt ({type(exc).__name__}: "
                              f"{' '.join(str(exc).split())[:200]})") from None


def load_result(job: Job, root: str | os.PathLike[str]) -> JobResult | None:
    """The job's finished result under ``root``, or ``None`` (none yet, or another job's).

    Raises:
        ResultFileError: the file is not a heatbath result file that is safe to load (it is
            never run: results are read with ``weights_only=True``).
    """
    path = job.folder(root) / RESULT_FILE
    if not path.is_file():
        return None
    res = _from_bytes(path.read_bytes(), f"job {job.name!r}: {path}")
    return res if res.key == job.key() else None


def store_result(job: Job, root: str | os.PathLike[str], data: bytes) -> JobResult:
    """Write a result received from a worker into the job's folder under ``root`` (unless the
    worker, sharing the storage, already wrote the same bytes); return it."""
    res = _from_bytes(data, f"job {job.name!r}: the result received from its worker")
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


def _test_acc(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """``{"test_acc": mean}`` of the newly evaluated test rows (empty when there are none)."""
    acc = [float(r["accuracy"]) for r in rows if r.get("split") == "test"]
    return {"test_acc": float(np.mean(acc))} if acc else {}


def train_classifier(job: Job, ctx: JobContext) -> Any:
    """The engine's task: train ``job.setting``'s classifier over ``job.seeds``.

    The setting (see :func:`classifier_job`) has ``data`` (for ``make_dataset``), ``model``
    (``ModelSpec`` fields), ``optimizer`` (``method``, ``hparams``, ``label``), ``train``
    (``steps``, ``subsample``, ``batch_size``, ``eval_every``, ``eval_steps``,
    ``snapshot_steps``) and ``checkpoint_every``. Returns the
    :class:`heatbath.engine.TrainResult`; checkpoints to ``ctx.checkpoint`` and resumes from it;
    reports progress at every evaluation with the mean test accuracy over the seeds
    (``{"test_acc": ...}``).
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
                 progress=lambda step, total, rows: ctx.progress(step, total, _test_acc(rows)),
                 checkpoint=ctx.checkpoint, checkpoint_every=s.get("checkpoint_every"),
                 resume=True, num_threads=ctx.threads, **t)

"""Executors: where the jobs of an experiment run.

- :class:`LocalExecutor` (``--executor local``, the default): ``jobs`` worker processes on this
  machine (``--jobs N``); with one job at a time it runs them in this process.
- :class:`RayExecutor` (``--executor ray [--address ADDR]``): one Ray task per job on a Ray
  cluster; with no address, ``ray.init()`` starts a local cluster on this machine. Ray is the
  optional extra ``pip install heatbath[ray]``.

Both run the same function on the worker (:func:`heatbath.engine.jobs.execute`) and return the
same results, so an experiment's outputs do not depend on the executor. Both:

- retry a job whose worker died (killed, out of memory, node lost) up to ``retries`` times; the
  new attempt resumes from the job's last checkpoint, and a result is stored once per job;
- report progress per job and overall (:class:`ConsoleProgress`, or any ``progress(event)``);
- keep going when a job fails (its task raised): the :class:`Outcome` lists the finished
  results and, for every other job, why it is missing.

Use :func:`make_executor` to build one from the command-line options.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import sys
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from heatbath._validate import check_int

from . import shutdown
from .jobs import (
    CHECKPOINT_FILE,
    JOB_FILE,
    RESULT_FILE,
    Job,
    JobResult,
    execute,
    load_result,
    store_result,
)

__all__ = [
    "EXECUTORS",
    "ConsoleProgress",
    "Executor",
    "JobEvent",
    "LocalExecutor",
    "Outcome",
    "RayExecutor",
    "add_executor_options",
    "executor_from_args",
    "make_executor",
]

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class JobEvent:
    """What happened to a job.

    ``kind`` is ``"start"`` (an attempt began on a worker with process id ``pid``),
    ``"progress"`` (at ``step`` of ``total``; ``info`` holds the figures the task reported with
    it, e.g. ``{"test_acc": 0.91}``), ``"done"``, ``"reused"`` (finished in an earlier
    run), ``"retry"`` (the worker died; ``attempt`` is the next one), or ``"failed"``
    (``message`` says why).
    """

    kind: str
    job: str
    step: int = 0
    total: int = 0
    attempt: int = 1
    pid: int | None = None
    message: str = ""
    wall_s: float = 0.0
    info: Mapping[str, float] = field(default_factory=dict)


ProgressFn = Callable[[JobEvent], None]


@dataclass
class Outcome:
    """The result of running a set of jobs: finished results by job name, and the missing
    jobs with the reason (in the order the jobs were given)."""

    results: dict[str, JobResult] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.missing

    def value(self, name: str) -> Any:
        """The task's return value of the finished job ``name`` (KeyError if it is missing)."""
        return self.results[name].value


class ConsoleProgress:
    """Progress lines: one per finished, retried or failed job, with the overall count and
    percentage, and a line for a running job at most every ``every_s`` seconds."""

    def __init__(self, jobs: Sequence[Job], *, log: Callable[[str], None] | None = None,
                 every_s: float = 10.0) -> None:
        self.total = len(jobs)
        self.frac = {j.name: 0.0 for j in jobs}
        self.done = 0
        self.every_s = every_s
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._last: dict[str, float] = {}

    def _head(self) -> str:
        overall = 100 * sum(self.frac.values()) / max(1, self.total)
        return f"[{self.done}/{self.total} jobs, {overall:3.0f} %]"

    def __call__(self, ev: JobEvent) -> None:
        now = time.monotonic()
        if ev.kind == "start":
            self._last[ev.job] = now
        elif ev.kind == "progress":
            if ev.total > 0:
                self.frac[ev.job] = ev.step / ev.total
            if now - self._last.get(ev.job, now) >= self.every_s:
                self._last[ev.job] = now
                acc = ev.info.get("test_acc")
                figure = f", test acc {100 * acc:.1f} %" if acc is not None else ""
                self.log(f"{self._head()} {ev.job}: step {ev.step:,}/{ev.total:,}{figure}")
        elif ev.kind in ("done", "reused"):
            self.done += 1
            self.frac[ev.job] = 1.0
            what = ("finished earlier, reused" if ev.kind == "reused"
                    else f"done in {ev.wall_s:.1f} s")
            retried = f" (attempt {ev.attempt})" if ev.attempt > 1 else ""
            self.log(f"{self._head()} {ev.job}: {what}{retried}")
        elif ev.kind == "retry":
            self.log(f"{self._head()} {ev.job}: worker died; attempt {ev.attempt} resumes "
                     f"from the last checkpoint")
        elif ev.kind == "failed":
            self.done += 1
            self.frac[ev.job] = 1.0
            self.log(f"{self._head()} {ev.job}: FAILED: {ev.message}")


class Executor(ABC):
    """Runs jobs and collects their results (see the module docstring).

    Args:
        threads: torch threads per job (``None``: torch's default).
        retries: attempts after a worker died, per job (>= 0).

    A stop request (SIGTERM/SIGINT under :func:`heatbath.engine.shutdown.handle_signals`) ends
    :meth:`run`: running jobs write their checkpoint and :class:`shutdown.Interrupted` is
    raised; ``--resume`` continues them.
    """

    name = ""

    def __init__(self, *, threads: int | None = 1, retries: int = 2) -> None:
        self.threads = None if threads is None else check_int("threads", threads, low=1)
        self.retries = check_int("retries", retries, low=0)

    def run(self, jobs: Sequence[Job], root: str | os.PathLike[str], *, resume: bool = False,
            progress: ProgressFn | None = None,
            on_result: Callable[[Job, JobResult], None] | None = None) -> Outcome:
        """Run ``jobs`` into folders under ``root``; returns the finished and missing jobs.

        Args:
            jobs: jobs with distinct names.
            root: the folder that holds one folder per job.
            resume: keep the results (and checkpoints) of an earlier run of the same jobs;
                otherwise every job's folder is cleared first.
            progress: called with every :class:`JobEvent`, in this process.
            on_result: called in this process as soon as a job has finished (in completion
                order), e.g. to write a report part whose jobs are all done.
        """
        names = [j.name for j in jobs]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise ValueError(f"job names must be distinct; {dup!r} repeats")
        root = Path(root)
        out = Outcome()
        emit = progress or (lambda ev: None)
        pending = []
        for job in jobs:
            done = load_result(job, root) if resume else None
            if done is not None:
                out.results[job.name] = done
                emit(JobEvent("reused", job.name, attempt=done.attempts))
                if on_result is not None:
                    on_result(job, done)
                continue
            if not resume:
                _clear(job, root)
            pending.append(job)
        pending.sort(key=lambda j: -j.cost)  # stable: equal costs keep their order

        def finished(job: Job, res: JobResult) -> None:
            out.results[job.name] = res
            emit(JobEvent("done", job.name, attempt=res.attempts, wall_s=res.wall_s))
            if on_result is not None:
                on_result(job, res)

        def failed(job: Job, why: str) -> None:
            out.missing[job.name] = why
            emit(JobEvent("failed", job.name, message=why))

        if pending:
            self._run(pending, root, emit, finished, failed)
        order = {n: i for i, n in enumerate(names)}
        out.results = dict(sorted(out.results.items(), key=lambda kv: order[kv[0]]))
        out.missing = dict(sorted(out.missing.items(), key=lambda kv: order[kv[0]]))
        return out

    @abstractmethod
    def _run(self, jobs: list[Job], root: Path, emit: ProgressFn,
             finished: Callable[[Job, JobResult], None], failed: Callable[[Job, str], None]
             ) -> None:
        """Run every job once it is its turn; call ``finished`` or ``failed`` for each."""


def _clear(job: Job, root: Path) -> None:
    for name in (RESULT_FILE, CHECKPOINT_FILE, JOB_FILE):
        (job.folder(root) / name).unlink(missing_ok=True)
    job.checkpoint_path(root).unlink(missing_ok=True)


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500]


# --------------------------------------------------------------------------- local


def _worker_main(conn: Connection, root: str, threads: int | None, parent: int) -> None:
    """A local worker: run the jobs the driver sends, one at a time, until it sends None.

    It dies with the driver; SIGTERM/SIGINT make its job write its checkpoint and stop.
    """
    shutdown.worker_init(parent)
    while True:
        try:
            item = conn.recv()
        except EOFError:
            return
        if item is None:
            return
        job, attempt = item
        conn.send(("start", job.name, attempt, os.getpid()))
        try:
            execute(job, root, attempt=attempt, threads=threads,
                    report=lambda s, t, i, n=job.name: conn.send(("progress", n, s, t, i)))
            conn.send(("done", job.name))
        except shutdown.Interrupted:
            with contextlib.suppress(OSError):
                conn.send(("interrupted", job.name))
            return
        except Exception as exc:
            conn.send(("error", job.name, _why(exc), traceback.format_exc(limit=20)))


@dataclass
class _Worker:
    proc: Any
    conn: Connection
    job: Job | None = None
    attempt: int = 0


class LocalExecutor(Executor):
    """Jobs in ``jobs`` worker processes on this machine (spawned, so torch's thread pools start
    clean), each job in its own process slot; ``jobs=1`` runs them in this process unless
    ``processes=True``.

    Args:
        jobs: how many jobs run at once (>= 1).
        threads, retries: see :class:`Executor`.
        processes: run in worker processes even for ``jobs=1`` (default: ``jobs > 1``). A dead
            worker can only be retried when jobs run in worker processes.
    """

    name = "local"

    def __init__(self, jobs: int = 1, *, threads: int = 1, retries: int = 2,
                 processes: bool | None = None) -> None:
        super().__init__(threads=threads, retries=retries)
        self.jobs = check_int("jobs", jobs, low=1)
        self.processes = self.jobs > 1 if processes is None else bool(processes)

    def _run(self, jobs: list[Job], root: Path, emit: ProgressFn,
             finished: Callable[[Job, JobResult], None], failed: Callable[[Job, str], None]
             ) -> None:
        if not self.processes:
            for job in jobs:
                emit(JobEvent("start", job.name, pid=os.getpid()))
                try:
                    execute(job, root, threads=self.threads,
                            report=lambda s, t, i, n=job.name: emit(
                                JobEvent("progress", n, s, t, info=i)))
                except Exception as exc:
                    failed(job, _why(exc))
                    continue
                res = load_result(job, root)
                assert res is not None
                finished(job, res)
            return
        self._run_pool(jobs, root, emit, finished, failed)

    def _run_pool(self, jobs: list[Job], root: Path, emit: ProgressFn,
                  finished: Callable[[Job, JobResult], None],
                  failed: Callable[[Job, str], None]) -> None:
        ctx = multiprocessing.get_context("spawn")
        queue: list[tuple[Job, int]] = [(j, 1) for j in jobs]
        workers: list[_Worker] = []

        def start_worker() -> _Worker:
            mine, theirs = ctx.Pipe(duplex=True)
            proc = ctx.Process(target=_worker_main,
                               args=(theirs, str(root), self.threads, os.getpid()), daemon=True)
            proc.start()
            theirs.close()
            return _Worker(proc, mine)

        def lost(w: _Worker, why: str) -> None:
            """The worker ``w`` died; retry its job or give it up."""
            job, attempt = w.job, w.attempt
            w.job = None
            with contextlib.suppress(OSError):
                w.conn.close()
            if job is None:
                return
            res = load_result(job, root)  # it may have finished just before it died
            if res is not None:
                finished(job, res)
            elif attempt <= self.retries:
                emit(JobEvent("retry", job.name, attempt=attempt + 1, message=why))
                queue.insert(0, (job, attempt + 1))
            else:
                failed(job, f"its worker died {attempt} times ({why})")

        try:
            workers = [start_worker() for _ in range(min(self.jobs, len(queue)))]
            while queue or any(w.job is not None for w in workers):
                if shutdown.requested():
                    raise shutdown.Interrupted(shutdown.requested())
                for i, w in enumerate(workers):
                    if w.job is None and queue:
                        if w.proc.exitcode is not None or w.conn.closed:
                            w = workers[i] = start_worker()
                        w.job, w.attempt = queue.pop(0)
                        try:
                            w.conn.send((w.job, w.attempt))
                        except OSError:
                            lost(w, "the worker could not take the job")
                busy = [w for w in workers if w.job is not None]
                ready = wait([w.conn for w in busy], timeout=0.2) if busy else []
                for w in busy:
                    if w.conn not in ready:
                        if w.proc.exitcode is not None:
                            lost(w, f"exit code {w.proc.exitcode}")
                        continue
                    try:
                        msg = w.conn.recv()
                    except (EOFError, OSError) as exc:
                        w.proc.join(timeout=5)
                        lost(w, f"exit code {w.proc.exitcode}" if w.proc.exitcode is not None
                             else _why(exc))
                        continue
                    if self._handle(w, msg, root, emit, finished, failed):
                        w.proc.join(timeout=STOP_GRACE_S)
                        lost(w, "the worker was stopped by a signal")
        finally:
            _stop_workers(workers)

    @staticmethod
    def _handle(w: _Worker, msg: tuple[Any, ...], root: Path, emit: ProgressFn,
                finished: Callable[[Job, JobResult], None],
                failed: Callable[[Job, str], None]) -> bool:
        """Handle a worker's message; True when the worker stopped on a signal of its own."""
        kind, name = msg[0], msg[1]
        job = w.job
        assert job is not None and name == job.name
        if kind == "start":
            emit(JobEvent("start", name, attempt=msg[2], pid=msg[3]))
        elif kind == "progress":
            emit(JobEvent("progress", name, msg[2], msg[3], attempt=w.attempt,
                          info=msg[4] if len(msg) > 4 else {}))
        elif kind == "done":
            w.job = None
            res = load_result(job, root)
            if res is None:
                failed(job, "the worker finished but its result file is missing")
            else:
                res.attempts = w.attempt
                finished(job, res)
        elif kind == "error":
            w.job = None
            failed(job, msg[2])
        elif kind == "interrupted":  # the worker was asked to stop; its checkpoint is written
            if shutdown.requested():
                raise shutdown.Interrupted(shutdown.requested())
            return True
        return False


#: seconds busy workers get to write their checkpoints after a stop, before they are killed
STOP_GRACE_S = 30.0


def _stop_workers(workers: Sequence[_Worker]) -> None:
    """Idle workers get None (they exit); busy ones SIGTERM (their job writes its checkpoint at
    the next step boundary) and up to :data:`STOP_GRACE_S`; then whatever lives is killed."""
    for w in workers:
        with contextlib.suppress(OSError):
            if w.job is None and not w.conn.closed:
                w.conn.send(None)
            elif w.job is not None and w.proc.exitcode is None:
                w.proc.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for w in workers:
        w.proc.join(timeout=max(0.0, min(deadline - time.monotonic(),
                                         2.0 if w.job is None else STOP_GRACE_S)))
        if w.proc.is_alive():
            w.proc.kill()
            w.proc.join()
        with contextlib.suppress(OSError):
            w.conn.close()


# --------------------------------------------------------------------------- Ray


class _Sink:
    """A Ray actor collecting the workers' progress events for the driver."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def put(self, event: tuple[Any, ...]) -> None:
        self.events.append(event)

    def drain(self) -> list[tuple[Any, ...]]:
        out, self.events = self.events, []
        return out


def _ray_task(job: Job, root: str, attempt: int, threads: int | None, sink: Any) -> bytes:
    """A Ray task: announce the attempt, execute the job, return the result file's bytes."""
    sink.put.remote(("start", job.name, attempt, os.getpid()))
    return execute(job, root, attempt=attempt, threads=threads,
                   report=lambda s, t, i: sink.put.remote(("progress", job.name, s, t, i)))


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ValueError("executor 'ray' needs Ray: pip install 'heatbath[ray]'") from None
    return ray


class RayExecutor(Executor):
    """One Ray task per job, one CPU each.

    Args:
        address: the cluster (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``); ``None``
            starts a local Ray instance on this machine (``ray.init()``), or uses the one this
            process already started.
        threads, retries: see :class:`Executor`.
        num_cpus: CPUs of the local instance (``None``: all); ignored with an address.

    Workers write into the same root path as the driver (shared storage), and return each
    result's bytes, which the driver stores in its own job folder; so without shared storage
    every result is still collected on the driver (checkpoints then stay on the worker's disk).
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, threads: int | None = 1, retries: int = 2,
                 num_cpus: int | None = None) -> None:
        super().__init__(threads=threads, retries=retries)
        self.address = address
        self.num_cpus = num_cpus
        _import_ray()

    def _init(self, ray: Any) -> None:
        if ray.is_initialized():
            return
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True,
                              "configure_logging": False}
        if self.address is None and self.num_cpus is not None:
            kw["num_cpus"] = self.num_cpus
        ray.init(address=self.address, **kw)

    def _run(self, jobs: list[Job], root: Path, emit: ProgressFn,
             finished: Callable[[Job, JobResult], None], failed: Callable[[Job, str], None]
             ) -> None:
        ray = _import_ray()
        from ray.exceptions import RayError, RayTaskError

        self._init(ray)
        sink = ray.remote(num_cpus=0)(_Sink).remote()
        task = ray.remote(num_cpus=1, max_retries=0)(_ray_task)
        inflight: dict[Any, tuple[Job, int]] = {}

        def submit(job: Job, attempt: int) -> None:
            ref = task.remote(job, str(root), attempt, self.threads, sink)
            inflight[ref] = (job, attempt)

        def drain() -> None:
            for ev in ray.get(sink.drain.remote()):
                if ev[0] == "start":
                    emit(JobEvent("start", ev[1], attempt=ev[2], pid=ev[3]))
                else:
                    emit(JobEvent("progress", ev[1], ev[2], ev[3],
                                  info=ev[4] if len(ev) > 4 else {}))

        for job in jobs:
            submit(job, 1)
        try:
            while inflight:
                if shutdown.requested():
                    raise shutdown.Interrupted(shutdown.requested())
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.2)
                drain()
                for ref in ready:
                    job, attempt = inflight.pop(ref)
                    try:
                        data = ray.get(ref)
                    except RayTaskError as exc:  # the task raised: not retried
                        cause = exc.cause if getattr(exc, "cause", None) else exc
                        failed(job, _why(cause))
                        continue
                    except RayError as exc:  # the worker or its node died
                        if attempt <= self.retries:
                            emit(JobEvent("retry", job.name, attempt=attempt + 1,
                                          message=_why(exc)))
                            submit(job, attempt + 1)
                        else:
                            failed(job, f"its worker died {attempt} times ({_why(exc)})")
                        continue
                    res = store_result(job, root, data)
                    res.attempts = attempt
                    finished(job, res)
            drain()
        finally:
            for ref in inflight:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            with contextlib.suppress(Exception):
                ray.kill(sink)


def make_executor(name: str = "local", *, jobs: int = 1, address: str | None = None,
                  threads: int | None = 1, retries: int = 2) -> Executor:
    """The executor of the command-line options ``--executor``, ``--jobs``, ``--address``."""
    if name not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {name!r}")
    if name == "local":
        if address is not None:
            raise ValueError("address is for --executor ray")
        return LocalExecutor(jobs, threads=threads, retries=retries)
    return RayExecutor(address, threads=threads, retries=retries)


def add_executor_options(p: argparse.ArgumentParser, *, jobs_help: str = "") -> None:
    """Add ``--executor``, ``--address``, ``--jobs`` and ``--threads`` to a command's parser."""
    g = p.add_argument_group("where the jobs run")
    g.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local: processes on this machine (default); ray: a Ray cluster "
                        "(pip install 'heatbath[ray]'; docs/cluster.md)")
    g.add_argument("--address", metavar="ADDR",
                   help="Ray cluster address (e.g. auto, or ray://HOST:10001); default: start "
                        "a local Ray instance")
    g.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                   help=jobs_help or "local executor: jobs run at once in worker processes "
                                     "(default 1: in this process)")
    g.add_argument("--threads", type=int, default=1,
                   help="torch threads per job (default 1: fastest for small models)")


def executor_from_args(args: argparse.Namespace) -> Executor:
    """The executor of the options added by :func:`add_executor_options`."""
    return make_executor(args.executor, jobs=args.jobs, address=args.address,
                         threads=args.threads)

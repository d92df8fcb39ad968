"""Executors: the same jobs give the same results in this process, in worker processes and on a
local Ray instance; a job whose worker is killed resumes from its checkpoint; failures are
reported as missing jobs, never silently dropped.

The worker-process and Ray tests start Python processes (each imports torch), so they are
marked slow.
"""

from __future__ import annotations

import importlib.util
import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from heatbath.data import make_dataset
from heatbath.engine import ModelSpec, OptimSpec, train
from heatbath.engine.executors import JobEvent, LocalExecutor, Outcome, make_executor
from heatbath.engine.jobs import Job, classifier_job, load_result, seed_blocks

HAVE_RAY = importlib.util.find_spec("ray") is not None

DATA = {"name": "spirals", "n_train": 120, "n_test": 100, "seed": 0}


def _jobs(steps: int = 60, methods: tuple[str, ...] = ("sgd", "adlala")) -> list[Job]:
    return [classifier_job(f"t/{m}", data=DATA, model={"name": "shlp", "hidden": 8},
                           method=m, hparams={"h": 0.1}, seeds=range(3), steps=steps,
                           eval_every=max(1, steps // 6), checkpoint_every=max(1, steps // 6))
            for m in methods]


def _same(a: Outcome, b: Outcome) -> None:
    assert list(a.results) == list(b.results) and not a.missing and not b.missing
    for name in a.results:
        ra, rb = a.value(name), b.value(name)
        assert ra.rows == rb.rows, name
        for k, v in ra.model.state_dict().items():
            assert v.equal(rb.model.state_dict()[k]), (name, k)


def test_job_validation_and_key() -> None:
    job = _jobs()[0]
    assert job.key() == _jobs()[0].key()
    assert job.key() != _jobs(steps=61)[0].key()
    for bad in ("", "a//b", "../x", "a b", "/abs"):
        with pytest.raises(ValueError, match="job name"):
            Job(bad, {}, (0,))
    with pytest.raises(ValueError, match="seeds"):
        Job("a", {}, ())
    with pytest.raises(ValueError, match="seeds"):
        Job("a", {}, (1, 1))
    with pytest.raises(TypeError, match="plain values"):
        Job("a", {"x": object()}, (0,))
    with pytest.raises(ValueError, match="task"):
        Job("a", {}, (0,), task="nocolon")
    assert seed_blocks(range(5), 2) == [(0, 1), (2, 3), (4,)]
    assert seed_blocks(range(5), None) == [(0, 1, 2, 3, 4)]


def test_inline_results_equal_the_engine(tmp_path: Path) -> None:
    """A classifier job is exactly the engine's ``train`` with the same arguments."""
    events: list[JobEvent] = []
    out = LocalExecutor(1).run(_jobs(), tmp_path, progress=events.append)
    assert out.complete and list(out.results) == ["t/sgd", "t/adlala"]
    data = make_dataset("spirals", n_train=120, n_test=100, seed=0)
    ref = train(data, ModelSpec("shlp", 8), OptimSpec("adlala", {"h": 0.1}), steps=60,
                seeds=[0, 1, 2], eval_every=10)
    assert out.value("t/adlala").rows == ref.rows
    kinds = Counter(e.kind for e in events)
    assert kinds["start"] == kinds["done"] == 2 and kinds["progress"] >= 2 * 7
    # finished: the result file, no checkpoint left
    folder = tmp_path / "t" / "adlala"
    assert (folder / "result.pt").is_file() and not (folder / "checkpoint.pt").exists()
    assert (folder / "job.json").is_file()


def test_failed_job_is_missing_and_the_others_finish(tmp_path: Path) -> None:
    jobs = _jobs() + [classifier_job("t/bad", data=DATA, model={"name": "shlp", "hidden": 8},
                                     method="nosuchmethod", hparams={}, seeds=[0], steps=5)]
    out = LocalExecutor(1).run(jobs, tmp_path)
    assert list(out.results) == ["t/sgd", "t/adlala"]
    assert list(out.missing) == ["t/bad"] and "nosuchmethod" in out.missing["t/bad"]
    with pytest.raises(ValueError, match="distinct"):
        LocalExecutor(1).run(_jobs() + _jobs()[:1], tmp_path)


def test_resume_reuses_finished_jobs_only(tmp_path: Path) -> None:
    first = LocalExecutor(1).run(_jobs(), tmp_path)
    jobs = _jobs()[:1] + _jobs(steps=30, methods=("adlala",))  # adlala now differs
    events: list[JobEvent] = []
    again = LocalExecutor(1).run(jobs, tmp_path, resume=True, progress=events.append)
    assert [e.job for e in events if e.kind == "reused"] == ["t/sgd"]
    assert again.value("t/sgd").rows == first.value("t/sgd").rows
    assert again.value("t/adlala").steps == 30
    # a fresh run (no resume) clears the old results first
    assert load_result(jobs[0], tmp_path) is not None
    events.clear()
    LocalExecutor(1).run(jobs[:1], tmp_path, progress=events.append)
    assert "reused" not in {e.kind for e in events}


def test_make_executor_checks_its_options() -> None:
    assert isinstance(make_executor("local", jobs=2), LocalExecutor)
    with pytest.raises(ValueError, match="executor must be one of"):
        make_executor("slurm")
    with pytest.raises(ValueError, match="jobs"):
        make_executor("local", jobs=0)
    with pytest.raises(ValueError, match="address"):
        make_executor("local", address="auto")


def _kill_once(at_step: int) -> tuple[list[JobEvent], object]:
    """A progress hook that SIGKILLs the worker of ``t/adlala`` once it passed ``at_step``."""
    events: list[JobEvent] = []
    pids: dict[str, int] = {}
    killed: list[int] = []

    def hook(ev: JobEvent) -> None:
        events.append(ev)
        if ev.kind == "start":
            pids[ev.job] = ev.pid  # type: ignore[assignment]
        if (ev.kind == "progress" and ev.job == "t/adlala" and ev.step >= at_step
                and not killed):
            killed.append(pids[ev.job])
            os.kill(pids[ev.job], signal.SIGKILL)

    return events, hook


def _check_retried(out: Outcome, ref: Outcome, events: list[JobEvent]) -> None:
    _same(out, ref)
    assert out.results["t/adlala"].attempts == 2
    assert [e.job for e in events if e.kind == "retry"] == ["t/adlala"]
    rows = out.value("t/adlala").rows
    keys = Counter((r["seed"], r["step"], r["split"]) for r in rows)
    assert max(keys.values()) == 1  # nothing counted twice
    assert len(keys) == 3 * 7 * 2  # nothing lost: 3 seeds x 7 evaluations x 2 splits
    assert sum(e.kind == "done" for e in events) == 2


@pytest.mark.slow
def test_worker_processes_match_inline_and_survive_a_killed_worker(tmp_path: Path) -> None:
    """Two worker processes give the inline results; a worker SIGKILLed mid-job (after its
    checkpoint at step 1000 of 3000) is replaced and the job resumes from that checkpoint."""
    jobs = _jobs(steps=3000)
    ref = LocalExecutor(1).run(jobs, tmp_path / "inline")
    events, hook = _kill_once(at_step=1000)
    out = LocalExecutor(2).run(jobs, tmp_path / "pool", progress=hook)  # type: ignore[arg-type]
    _check_retried(out, ref, events)
    # the retry started from the checkpoint, not from step 0
    second = [e for e in events if e.job == "t/adlala" and e.kind == "progress"
              and e.attempt == 2]
    assert second and second[0].step > 0


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_RAY, reason="ray is not installed (pip install 'heatbath[ray]')")
def test_ray_matches_local_and_survives_a_killed_worker(tmp_path: Path) -> None:
    """A local Ray instance (ray.init()) gives the local results; a killed Ray worker's job is
    resubmitted and resumes from its checkpoint."""
    import ray

    from heatbath.engine.executors import RayExecutor

    jobs = _jobs(steps=3000)
    ref = LocalExecutor(1).run(jobs, tmp_path / "inline")
    events, hook = _kill_once(at_step=1000)
    try:
        out = RayExecutor(num_cpus=2).run(jobs, tmp_path / "ray", progress=hook)  # type: ignore[arg-type]
    finally:
        ray.shutdown()
    _check_retried(out, ref, events)
    assert (tmp_path / "ray" / "t" / "adlala" / "result.pt").is_file()

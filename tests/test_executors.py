"""Executors: the same jobs give the same results in this process, in worker processes and on a
local Ray instance; a job whose worker is killed resumes from its checkpoint; failures are
reported as missing jobs, never silently dropped.

The worker-process and Ray tests start Python processes (each imports torch), so they are
marked slow.
"""

from __future__ import annotations

import importlib.util
import io
import os
import signal
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from heatbath.data import make_dataset
from heatbath.engine import ModelSpec, OptimSpec, train
from heatbath.engine.executors import JobEvent, LocalExecutor, Outcome, make_executor
from heatbath.engine.jobs import (
    Job,
    JobResult,
    ResultFileError,
    classifier_job,
    load_result,
    result_bytes,
    seed_blocks,
)

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
    for bad in ("", "a//b", "../x", "a b", "/abs", "a/..", "a/./b", ".hidden", "a/-rf", "a/",
                "x/result.pt", "a\\b", "a/b\n", "é", "a" * 129, 3):
        with pytest.raises(ValueError, match="job name") as err:
            Job(bad, {}, (0,))  # type: ignore[arg-type]
        assert repr(bad) in str(err.value)  # the error names the job
    for good in ("fig10/adam_h0.01", "s/adlala/tau1=1e-05,hidden=4/seeds0-2", "_x/a+b", "a" * 128):
        assert Job(good, {}, (0,)).name == good
    with pytest.raises(ValueError, match="checkpoint"):
        Job("a", {}, (0,), checkpoint="../../etc/x.pt")
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
    got = out.value("t/adlala")
    assert got.rows == ref.rows
    # the model came back from the (plain-data) result file: same class, same parameters
    assert type(got.model) is type(ref.model) and got.ensemble and got.seeds == (0, 1, 2)
    for k, v in ref.model.state_dict().items():
        assert v.equal(got.model.state_dict()[k]), k
    X = data.X_test[:7]
    assert got.predict_proba(X).equal(ref.predict_proba(X))
    kinds = Counter(e.kind for e in events)
    assert kinds["start"] == kinds["done"] == 2 and kinds["progress"] >= 2 * 7
    # finished: the result file, no checkpoint left
    folder = tmp_path / "t" / "adlala"
    assert (folder / "result.pt").is_file() and not (folder / "checkpoint.pt").exists()
    assert (folder / "job.json").is_file()


@dataclass
class _Unknown:  # a dataclass outside heatbath: a result file may not rebuild it
    x: int = 1


def test_result_files_hold_plain_data_and_round_trip(tmp_path: Path) -> None:
    from heatbath.engine.executors import JobEvent as OwnDataclass  # a heatbath dataclass

    value = {"rows": [{"a": 1, "b": 0.5, "c": None, "d": "x"}], "t": (1, 2.5), "s": {3, 4},
             "f": frozenset({"a"}), "arr": np.arange(6, dtype=np.float32).reshape(2, 3),
             "np": np.float64(0.25), "ten": torch.arange(4), "bytes": b"\x00\x01", 7: "int key",
             "own": OwnDataclass("done", "j", info={"test_acc": 0.5}),
             "looks_tagged": {"__heatbath_value__": "ndarray", "x": 1}}
    job = Job("v", {}, (0,))
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "result.pt").write_bytes(result_bytes(JobResult("v", job.key(), value)))
    back = load_result(job, tmp_path).value  # type: ignore[union-attr]
    assert back.keys() == value.keys()
    for k in ("rows", "t", "s", "f", "bytes", 7, "own", "looks_tagged", "np"):
        assert back[k] == value[k] and type(back[k]) is type(value[k]), k
    assert back["arr"].dtype == np.float32 and (back["arr"] == value["arr"]).all()
    assert back["ten"].equal(value["ten"])
    # anything else is refused when the result is written, naming the job and the place
    with pytest.raises(TypeError, match=r"job 'v': the result value\['bad'\]\.info is a "
                                        r"builtins.object"):
        result_bytes(JobResult("v", job.key(), {"bad": OwnDataclass("done", "j", info=object())}))
    with pytest.raises(TypeError, match="_Unknown"):
        result_bytes(JobResult("v", job.key(), [_Unknown()]))
    with pytest.raises(TypeError, match="Linear"):
        result_bytes(JobResult("v", job.key(), torch.nn.Linear(2, 2)))


class _Exploit:
    """Unpickling this would run ``open(path, "w")``: a tampered result file's payload."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (self.path, "w"))


def test_tampered_or_foreign_result_files_are_refused_without_running_code(
        tmp_path: Path) -> None:
    job = Job("j", {}, (0,))
    folder = tmp_path / "j"
    folder.mkdir()
    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    torch.save({"format": "heatbath.engine.job-result/2", "name": "j", "key": job.key(),
                "value": _Exploit(str(marker)), "wall_s": 0.0, "cpu_s": 0.0, "attempts": 1,
                "meta": {}}, buf)
    (folder / "result.pt").write_bytes(buf.getvalue())
    with pytest.raises(ResultFileError, match=r"job 'j'.*not a heatbath result file that is "
                                              r"safe to load"):
        load_result(job, tmp_path)
    assert not marker.exists()  # the payload never ran
    # the executor reports it too (with --resume) instead of loading it
    with pytest.raises(ResultFileError, match="result.pt"):
        LocalExecutor(1).run([job], tmp_path, resume=True)
    assert not marker.exists()
    # a foreign file, and a plain-data file of another program
    (folder / "result.pt").write_bytes(b"not a torch file")
    with pytest.raises(ResultFileError, match="safe to load"):
        load_result(job, tmp_path)
    buf = io.BytesIO()
    torch.save({"weights": torch.ones(2)}, buf)
    (folder / "result.pt").write_bytes(buf.getvalue())
    with pytest.raises(ResultFileError, match="not a heatbath job result"):
        load_result(job, tmp_path)
    # a tagged value that names a class outside heatbath is not built
    buf = io.BytesIO()
    torch.save({"format": "heatbath.engine.job-result/2", "name": "j", "key": job.key(),
                "value": {"__heatbath_value__": "dataclass", "type": "os:_wrap_close",
                          "fields": {}}, "wall_s": 0.0, "cpu_s": 0.0, "attempts": 1,
                "meta": {}}, buf)
    (folder / "result.pt").write_bytes(buf.getvalue())
    with pytest.raises(ResultFileError, match="only heatbath's own classes"):
        load_result(job, tmp_path)
    # without --resume the job's folder is cleared and the job runs
    assert LocalExecutor(1).run([Job("j", {}, (0,), task="tests.test_executors:_plain_task")],
                                tmp_path).value("j") == {"seeds": [0]}


def _plain_task(job: Job, ctx: object) -> dict:
    return {"seeds": list(job.seeds)}


def test_progress_events_carry_the_test_accuracy(tmp_path: Path) -> None:
    from heatbath.engine.executors import ConsoleProgress

    events: list[JobEvent] = []
    jobs = _jobs(steps=12, methods=("sgd",))
    out = LocalExecutor(1).run(jobs, tmp_path, progress=events.append)
    prog = [e for e in events if e.kind == "progress"]
    # one event per evaluation (every 2 steps), each with the mean test accuracy over the seeds
    rows = out.value("t/sgd").rows
    for e in prog:
        acc = [r["accuracy"] for r in rows if r["split"] == "test" and r["step"] == e.step]
        assert e.info["test_acc"] == pytest.approx(sum(acc) / len(acc), abs=1e-12)
    lines: list[str] = []
    console = ConsoleProgress(jobs, log=lines.append, every_s=0.0)
    for e in events:
        console(e)
    assert any(f"step 12/12, test acc {100 * prog[-1].info['test_acc']:.1f} %" in ln
               for ln in lines)


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

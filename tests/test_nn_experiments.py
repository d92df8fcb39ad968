"""The structure-preserving experiments as jobs of the experiment framework: quick and tiny
sizes, reports from finished jobs only, exact resume from a job's checkpoint, the command line.
(The quick thermo run is slow; the local-vs-Ray byte identity is in tests/test_framework.py.)"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from heatbath.engine.executors import LocalExecutor
from heatbath.engine.jobs import JobContext
from heatbath.nn import StructuredNet
from heatbath.papers.structure import experiments as structure

from ._helpers import DropJobs

TINY_SHAPES = dict(n=60, steps=15, families=["euler", "symplectic"], depth=4)
TINY_SETS = ["double_moons", "donut"]


@pytest.fixture()
def tiny(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny sizes for the 2-D and thermo experiments (the jobs carry their sizes, so the tasks
    see them too)."""
    monkeypatch.setitem(structure.QUICK, "shapes2d", TINY_SHAPES)
    monkeypatch.setattr(structure, "DATASETS", TINY_SETS)
    monkeypatch.setitem(structure.QUICK, "thermo", dict(
        n=80, steps=15, families=["symplectic"], methods=["adam", "adlala"]))


def test_report_from_finished_jobs_names_the_missing_and_resume_fills_in(
        tmp_path: Path, tiny: None) -> None:
    lost = "jobs/donut/symplectic"
    with pytest.raises(structure.IncompleteExperiment, match=lost) as err:
        structure.run_shapes2d(tmp_path, quick=True, seed=0, executor=DropJobs({lost}))
    assert list(err.value.missing) == [lost]
    report = (tmp_path / "REPORT.md").read_text(encoding="utf-8")
    assert "## Missing jobs" in report and f"`{lost}`: its worker died 3 times" in report
    rows = (tmp_path / "shapes2d.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 and not any(r.startswith("donut,symplectic") for r in rows)
    assert (tmp_path / "shapes2d_donut.png").exists()  # drawn from the family that finished
    # the next run (--resume) trains only the missing job and writes the complete report
    ran: list[str] = []
    res = structure.run_shapes2d(tmp_path, quick=True, seed=0, resume=True,
                                 executor=_Recording(ran))
    assert ran == [lost]
    assert [(r["dataset"], r["family"]) for r in res["rows"]] == [
        (d, f) for d in TINY_SETS for f in TINY_SHAPES["families"]]
    for name in TINY_SETS:
        assert (tmp_path / f"shapes2d_{name}.png").read_bytes()[:4] == b"\x89PNG"
        for fam in TINY_SHAPES["families"]:
            assert (tmp_path / "jobs" / name / fam / "result.pt").is_file()
            assert not (tmp_path / "jobs" / name / fam / "checkpoint.pt").exists()
    assert (tmp_path / "shapes2d.csv").read_text().count("\n") == 1 + len(res["rows"])
    report = (tmp_path / "REPORT.md").read_text(encoding="utf-8")
    assert report.startswith("# Structure-preserving networks on 2-D sets")
    assert "Missing jobs" not in report and "not tested (no number in the paper)" in report
    for r in res["rows"]:  # the table in the report holds every row
        assert f"| {r['dataset']} | {r['family']} | {r['params']} |" in report


class _Recording(LocalExecutor):
    """A local executor that records which jobs it actually ran."""

    def __init__(self, ran: list[str]) -> None:
        super().__init__(1)
        self.ran = ran

    def _run(self, jobs, root, emit, finished, failed):  # type: ignore[no-untyped-def]
        self.ran.extend(j.name for j in jobs)
        super()._run(jobs, root, emit, finished, failed)


class _Stop(Exception):
    pass


def test_training_resumes_exactly_from_its_checkpoint(tmp_path: Path) -> None:
    """A job's training stopped after a checkpoint continues to the same losses and weights as
    an uninterrupted run (gradient-flow blocks with norm bounds: their power-iteration vectors,
    which are not in the state dict, are in the checkpoint too)."""
    X = torch.randn(90, 6, generator=torch.Generator().manual_seed(1))
    y = (X[:, 0] > 0).long()

    def run(ctx: JobContext | None) -> tuple[list[float], dict[str, torch.Tensor]]:
        torch.manual_seed(3)
        net = StructuredNet(6, 2, family="gradient_flow", width=6, depth=3, T=3.0,
                            norm_bound=True)
        losses = structure._train(net, X, y, steps=40, batch=32, make_opt=structure._adam(1e-2),
                                  seed=5, ctx=ctx)
        return losses, net.state_dict()

    ref_losses, ref_state = run(None)
    ctx = JobContext(tmp_path, tmp_path / "checkpoint.pt")
    seen: list[int] = []

    def stop_at_20(step: int, total: int) -> None:  # as if the worker died there
        seen.append(step)
        if step == 20:  # a checkpoint every 4 steps, written before the progress report
            raise _Stop

    ctx.report = stop_at_20
    with pytest.raises(_Stop):
        run(ctx)
    assert seen == [4, 8, 12, 16, 20] and ctx.checkpoint.is_file()
    ctx.report = lambda step, total: seen.append(step)
    seen.clear()
    losses, state = run(ctx)
    assert seen == [24, 28, 32, 36, 40]  # resumed from step 20
    assert losses == ref_losses
    for k, v in ref_state.items():
        assert v.equal(state[k]), k


def test_structure_cli_runs_experiments_as_one_set_of_jobs(tmp_path: Path, tiny: None,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    from heatbath.cli import main

    rc = main(["structure", "shapes2d", "thermo", "--quick", "--out", str(tmp_path),
               "--jobs", "1"])
    assert rc == 0
    err = capsys.readouterr().err
    # one progress line per finished job, with the overall count over both experiments
    assert "[6/6 jobs, 100 %]" in err and "thermo/jobs/symplectic/adlala: done" in err
    for name in ("shapes2d", "thermo"):
        result = json.loads((tmp_path / name / "result.json").read_text())
        assert result["rows"] and "missing" not in result
        assert (tmp_path / name / "REPORT.md").is_file()
    thermo = (tmp_path / "thermo" / "REPORT.md").read_text(encoding="utf-8")
    # a --quick run judges no claim: the paper's orderings are for full runs
    assert "AdLaLa beats Adam (test accuracy, symplectic network)" in thermo
    assert "not tested (shortened run)" in thermo
    assert main(["structure", "shapes2d", "--eps", "1", "--out", str(tmp_path)]) == 2
    assert "only apply to the robustness experiment" in capsys.readouterr().err
    assert main(["structure", "nosuch", "--out", str(tmp_path)]) == 2


def test_mnist_quick(tmp_path):
    res = structure.run_mnist_families(tmp_path, quick=True, seed=0)
    if "skipped" in res:
        pytest.skip(res["skipped"])
    counts = [r["params"] for r in res["rows"]]
    assert max(counts) <= 1.03 * min(counts)  # equal parameter count up to the head
    assert all(r["test_acc"] > 0.3 for r in res["rows"])  # 10 classes: chance is 0.1
    assert (tmp_path / "mnist_families.png").exists()


def _check_robustness(res: dict, tmp_path) -> None:
    rows = res["rows"]
    for label in ("unconstrained", "non-expansive"):
        strong = [r[f"{label} (strong PGD)"] for r in rows]
        published = [r[f"{label} (published PGD)"] for r in rows]
        # robust accuracy never exceeds clean accuracy (a sample counts only if also correct)
        assert all(a <= strong[0] + 1e-12 for a in strong)
        # the strong attack (more steps, restarts, best iterate) is never weaker than the
        # published one; one test point of slack per radius for the different random starts
        slack = 1.0 / res["n_test"] + 1e-12
        assert all(s <= p + slack for s, p in zip(strong, published, strict=True))
    # certified accuracy never exceeds the empirical robust accuracy of the same net
    assert all(r["non-expansive certified"] <= r["non-expansive (strong PGD)"] + 1e-9
               for r in rows)
    assert rows[0]["eps"] == 0.0 and not math.isnan(rows[0]["non-expansive (strong PGD)"])
    assert (tmp_path / "robustness.png").exists() and (tmp_path / "robustness.csv").exists()
    assert res["source"] in (tmp_path / "robustness.md").read_text()


def test_robustness_quick_mnist(tmp_path):
    res = structure.run_robustness(tmp_path, quick=True, seed=0, eps=[0.0, 0.5, 2.0],
                                   n_test=100, attack_steps=20, restarts=2)
    assert res["data"] == "mnist"
    _check_robustness(res, tmp_path)
    # a --quick run lists the claims with our numbers but judges none of them
    report = (tmp_path / "REPORT.md").read_text(encoding="utf-8")
    assert "Totals: 4 not tested (4 shortened run)." in report
    assert "overstates the non-expansive net's robust accuracy at eps = 2" in report


def test_orderings_are_judged_on_paired_test_points() -> None:
    # 12 points only the first net gets right, 2 only the second, 6 both: sign test on the 14
    # discordant points, P(Bin(14, 1/2) >= 12) = 0.0065 <= 0.05
    a = torch.tensor([True] * 12 + [False] * 2 + [True] * 6)
    b = torch.tensor([False] * 12 + [True] * 2 + [True] * 6)
    c = structure._beats(a, b, ("A", "B"), "A beats B", "–")
    assert c.verdict == "reproduced" and "12 of 14 paired test points" in c.ours
    # 7 against 7: no evidence either way
    a2 = torch.tensor([True] * 7 + [False] * 7)
    assert structure._beats(a2, ~a2, ("A", "B"), "A beats B", "–").verdict == "not reproduced"


def test_robustness_cifar10_cli_on_test_made_files(tmp_path):
    from heatbath.cli import main

    from .test_cifar10 import write_cifar

    write_cifar(tmp_path / "cifar", n_per_batch=16, fmt="binary", subdir=True)
    out = tmp_path / "out"
    rc = main(["structure", "robustness", "--quick", "--quiet", "--data-dir",
               str(tmp_path / "cifar"), "--attack-steps", "10", "--restarts", "2",
               "--eps", "0", "0.5", "2", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "robustness" / "result.json").read_text())
    assert res["data"] == "cifar10" and "CIFAR-10" in res["source"]
    assert res["eps"] == [0.0, 0.5, 2.0]
    assert res["attack"]["strong"]["steps"] == 10 and res["attack"]["published"]["steps"] == 10
    _check_robustness(res, out / "robustness")
    # the non-expansive convolutional net's bound: 1/min(std) of the normalisation, times <= 1
    assert res["lipschitz"]["non-expansive"] <= 1 / 0.2435 + 1e-6


def test_robustness_cli_errors(tmp_path, capsys):
    from heatbath.cli import main

    assert main(["structure", "robustness", "--data", "cifar10", "--out", str(tmp_path)]) != 0
    assert "needs --data-dir" in capsys.readouterr().err
    assert main(["structure", "robustness", "--quick", "--data-dir", str(tmp_path / "none"),
                 "--out", str(tmp_path)]) != 0
    assert "does not exist" in capsys.readouterr().err
    assert main(["structure", "robustness", "--restarts", "0", "--out", str(tmp_path)]) != 0
    assert "restarts" in capsys.readouterr().err


@pytest.mark.slow
def test_thermo_quick(tmp_path):
    res = structure.run_thermo_training(tmp_path, quick=True, seed=0)
    if "skipped" in res:
        pytest.skip(res["skipped"])
    assert {r["method"] for r in res["rows"]} == {"adam", "langevin", "adlala"}
    assert all(math.isfinite(r["final_loss"]) for r in res["rows"])
    assert (tmp_path / "thermo_training.png").exists()

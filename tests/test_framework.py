"""The experiment framework: claims and verdicts, the report writer, sweeps, and the papers'
experiments run through jobs and executors with the same outputs."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest

from heatbath import cli
from heatbath.engine.config import ConfigError
from heatbath.engine.executors import LocalExecutor
from heatbath.engine.sweep import (
    Axis,
    Sweep,
    parse_grid,
    sweep_table,
    sweeps_from_config,
    write_sweep,
)
from heatbath.output.claims import (
    Claim,
    Section,
    markdown_table,
    totals,
    verdict_holds,
    verdict_mean,
    verdict_single,
    write_report,
)

from ._helpers import DropJobs


def test_verdict_mean_band() -> None:
    # 100 values with sd 0.1 -> SE = 0.01; band = 2*sqrt(2)*0.01 + 0.005 = 0.0333
    rng = np.random.default_rng(0)
    v = rng.normal(0.0, 1.0, 100)
    v = 0.8 + 0.1 * (v - v.mean()) / v.std(ddof=1)
    assert verdict_mean(0.8 + 0.030, v)[1] == "reproduced"
    assert verdict_mean(0.8 - 0.036, v)[1] == "differs"
    assert verdict_mean(0.5, np.array([np.nan]))[1] == "not tested"


def test_verdict_single_range_and_holds() -> None:
    ours = np.array([0.60, 0.70, 0.90])
    assert verdict_single(0.905, ours)[1] == "reproduced"  # within the 0.5 pp rounding
    assert verdict_single(0.95, ours)[1] == "differs"
    assert "better than all of ours" in verdict_single(0.95, ours)[2]
    assert verdict_single(0.55, ours)[1] == "differs"
    assert verdict_holds(True) == ("reproduced", "")
    assert verdict_holds(False, "why") == ("not reproduced", "why")
    with pytest.raises(ValueError, match="verdict"):
        Claim("c", "p", "o", "maybe")


def test_report_lists_sections_claims_and_missing_jobs(tmp_path) -> None:
    a = Section("1", "Fig. 1: one", [Claim("x beats y", "yes", "85 %", "reproduced"),
                                      Claim("z | w", "–", "n/a", "not tested", "no number")],
                before=["CAPTION-1\n"], after=["NOTES-1\n"])
    b = Section("2", "Fig. 2: two", [Claim("q", "1", "2", "differs", "far")])
    path = write_report(tmp_path / "REPORT.md", title="A paper", intro=["intro\n"],
                        sections=[a, b], middle=["## Times\n"],
                        missing={"fig3/jobs/adam": "its worker died 3 times"})
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# A paper\n")
    assert "Totals: 1 reproduced, 1 differs, 1 not tested." in text
    # the summary table has one row per claim with the section key; pipes are escaped
    assert "| 1 | z \\| w | – | n/a | – not tested | no number |" in text
    assert "| 2 | q | 1 | 2 | ≈ differs | far |" in text
    assert "## Missing jobs" in text and "`fig3/jobs/adam`: its worker died 3 times" in text
    order = [text.index(s) for s in ("## Summary", "## Missing jobs", "## Times",
                                     "## Fig. 1: one", "CAPTION-1", "\n| x beats y", "NOTES-1",
                                     "## Fig. 2: two")]
    assert order == sorted(order)
    assert "Missing" not in write_report(tmp_path / "R2.md", title="t", intro=[],
                                         sections=[a]).read_text(encoding="utf-8")
    assert totals([]) == "Totals: no claims.\n"


def test_markdown_table() -> None:
    t = markdown_table([{"a": 1, "b": 0.123456, "c": float("nan")}], ["a", "b", "c"])
    assert t.splitlines() == ["| a | b | c |", "|---|---|---|", "| 1 | 0.1235 | nan |"]


# --------------------------------------------------------------------------- sweeps

HAVE_RAY = importlib.util.find_spec("ray") is not None
DATA = {"name": "spirals", "n_train": 80, "n_test": 60, "seed": 0, "turns": 1}

CONFIG = """
name = "sw"
steps = 30
seeds = 3
eval_every = 10
[data]
name = "spirals"
n_train = 80
n_test = 60
turns = 1
[model]
hidden = 6
[methods.adlala]
[methods.sgd]
h = 0.05
"""


def _sweep() -> Sweep:
    return Sweep("s/adlala", {"data": DATA, "model": {"name": "shlp", "hidden": 6},
                              "method": "adlala", "hparams": {"h": 0.1}, "steps": 30,
                              "eval_every": 10},
                 [Axis("tau1", ("hparams", "tau1"), (1e-5, 1e-3)),
                  Axis("hidden", ("model", "hidden"), (4, 6))],
                 seeds=range(3), seeds_per_job=2)


def test_sweep_jobs_table_and_missing_cells(tmp_path: Path) -> None:
    sw = _sweep()
    assert sw.points == [{"tau1": 1e-5, "hidden": 4}, {"tau1": 1e-5, "hidden": 6},
                         {"tau1": 1e-3, "hidden": 4}, {"tau1": 1e-3, "hidden": 6}]
    jobs = sw.jobs()
    # 4 points x 2 blocks of seeds (0-1, 2)
    assert [j.name for j in jobs[:2]] == ["s/adlala/tau1=1e-05,hidden=4/seeds0-1",
                                          "s/adlala/tau1=1e-05,hidden=4/seeds2-2"]
    assert jobs[0].setting["optimizer"]["hparams"] == {"h": 0.1, "tau1": 1e-5}
    assert jobs[0].setting["model"]["hidden"] == 4 and jobs[1].seeds == (2,)
    assert jobs[0].setting["optimizer"]["label"] == "adlala tau1=1e-05 hidden=4"
    dropped = "s/adlala/tau1=0.001,hidden=6/seeds2-2"
    out = DropJobs({dropped}).run(jobs, tmp_path / "jobs")
    assert list(out.missing) == [dropped]
    table = sweep_table(sw, out.results)
    # the statistics are those of the runs' last test accuracies, over the finished blocks
    for row, point in zip(table, sw.points, strict=True):
        names = [j.name for j in sw.point_jobs(point)]
        finals = [max((r for r in out.value(n).rows if r["split"] == "test"
                       and r["seed"] == s), key=lambda r: r["step"])["accuracy"]
                  for n in names if n in out.results for s in out.results[n].value.seeds]
        assert row["runs"] == len(finals) and row["runs_planned"] == 3
        assert row["test_accuracy_mean"] == pytest.approx(np.mean(finals), abs=1e-12)
        assert row["test_accuracy_sd"] == pytest.approx(np.std(finals, ddof=1), abs=1e-12)
    assert table[-1]["missing"] == dropped and table[0]["missing"] == ""
    files = write_sweep(tmp_path, [sw], out.results, out.missing, title="t")
    assert {f.name for f in files} == {"sweep.csv", "sweep.md", "metrics.csv", "heatmap.png"}
    md = (tmp_path / "sweep.md").read_text(encoding="utf-8")
    assert "## Missing jobs" in md and dropped in md and "| 2/3 |" in md


def test_sweep_of_another_task_builds_plain_jobs(tmp_path: Path) -> None:
    sw = Sweep("grid/m", {"method": "m", "steps": 10, "lr": 0.1},
               [Axis("lr", ("lr",), (0.1, 0.01))], seeds=range(3), seeds_per_job=2,
               task="tests.test_framework:_lr_task")
    jobs = sw.jobs()
    assert [j.name for j in jobs] == ["grid/m/lr=0.1/seeds0-1", "grid/m/lr=0.1/seeds2-2",
                                      "grid/m/lr=0.01/seeds0-1", "grid/m/lr=0.01/seeds2-2"]
    assert all(j.task == "tests.test_framework:_lr_task" for j in jobs)
    assert jobs[2].setting == {"method": "m", "steps": 10, "lr": 0.01, "label": "m lr=0.01"}
    assert jobs[0].cost == 20.0 and jobs[1].cost == 10.0  # steps x runs
    out = LocalExecutor(1).run(jobs, tmp_path)
    assert out.value("grid/m/lr=0.01/seeds2-2") == {"lr": 0.01, "seeds": [2]}
    # the default task is unchanged: classifier jobs
    assert _sweep().jobs()[0].task == "heatbath.engine.jobs:train_classifier"


def _lr_task(job, ctx):  # type: ignore[no-untyped-def]
    return {"lr": job.setting["lr"], "seeds": list(job.seeds)}


def test_parse_grid_and_config_errors() -> None:
    assert parse_grid("adlala.tau1=1e-5, 1e-4") == (["adlala", "tau1"], (1e-5, 1e-4))
    assert parse_grid("adlala.init=gaussian:0.01,torch") == (["adlala", "init"],
                                                             ("gaussian:0.01", "torch"))
    for bad in ("adlala.tau1", "=1", "adlala.tau1=1,,2"):
        with pytest.raises(ValueError):
            parse_grid(bad)
    cfg = tomllib.loads(CONFIG)
    _, sweeps = sweeps_from_config(cfg, ["adlala.tau1=1e-5,1e-4", "model.hidden=4,6"])
    assert [len(s.points) for s in sweeps] == [4, 2]  # sgd: only the model axis
    with pytest.raises(ConfigError, match="METHOD.hparam"):
        sweeps_from_config(cfg, ["nosuch.h=1,2"])
    with pytest.raises(ConfigError, match="steps"):
        sweeps_from_config(cfg, ["steps=10,-1"])
    with pytest.raises(ConfigError, match="adlala"):
        sweeps_from_config(cfg, ["adlala.nosuch=1,2"])


def test_sweep_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "sw.toml"
    cfg.write_text(CONFIG)
    rc = cli.main(["sweep", str(cfg), "--grid", "adlala.tau1=1e-5,1e-3", "--grid",
                   "adlala.sigma_A=0.01,0.1", "--out", str(tmp_path), "--quiet"])
    assert rc == 0
    rows = (tmp_path / "sw" / "sweep.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 + 1  # header, 2x2 AdLaLa points, SGD once
    assert (tmp_path / "sw" / "heatmap.png").read_bytes()[:4] == b"\x89PNG"
    assert cli.main(["sweep", str(cfg), "--grid", "adlala.h=abc", "--out",
                     str(tmp_path)]) == 2
    assert "adlala" in capsys.readouterr().err


# --------------------------------------------------------------------------- missing jobs


def test_compare_reports_the_finished_methods_and_names_the_missing(tmp_path: Path) -> None:
    from heatbath.engine.experiment import run_experiment

    cfg = tomllib.loads(CONFIG) | {"out": str(tmp_path), "name": "cmp"}
    res = run_experiment(cfg, quiet=True, executor=DropJobs({"jobs/sgd"}))
    assert res.missing == {"sgd": "its worker died 3 times (simulated)"}
    assert [s.method for s in res.summaries] == ["adlala"]
    summary = (tmp_path / "cmp" / "summary.md").read_text(encoding="utf-8")
    assert "sgd: MISSING" in summary


class Reversed(LocalExecutor):
    """A local executor that finishes the jobs in the reverse order (as a busy cluster may)."""

    def _run(self, jobs, root, emit, finished, failed):  # type: ignore[no-untyped-def]
        super()._run(list(reversed(jobs)), root, emit, finished, failed)


def test_compare_outputs_do_not_depend_on_the_order_jobs_finish(tmp_path: Path) -> None:
    from heatbath.engine.experiment import run_experiment

    cfg = tomllib.loads(CONFIG) | {"name": "cmp", "steps": 10, "eval_every": 5}
    run_experiment(cfg | {"out": str(tmp_path / "a")}, quiet=True, executor=LocalExecutor(1))
    run_experiment(cfg | {"out": str(tmp_path / "b")}, quiet=True, executor=Reversed(1))
    for name in ("metrics.csv", "decision_maps.png", "histograms.png", "curves.png"):
        a = (tmp_path / "a" / "cmp" / name).read_bytes()
        assert a == (tmp_path / "b" / "cmp" / name).read_bytes(), name


def test_reproduce_leaves_out_a_figure_with_missing_jobs(tmp_path: Path) -> None:
    from heatbath.papers.integrators import Context, run_figures

    ctx = Context(out=tmp_path, quick=True, steps=20, runs=2, verbose=False)
    with pytest.raises(RuntimeError, match="fig13/jobs/adam"):
        run_figures(["fig4", "fig13"], ctx, DropJobs({"fig13/jobs/adam"}))
    report = (tmp_path / "REPORT.md").read_text(encoding="utf-8")
    assert "Fig. 4:" in report and "## Fig. 13" not in report
    assert "## Missing jobs" in report and "`fig13/jobs/adam`" in report
    assert not (tmp_path / "fig13" / "result.json").exists()
    # a later run that finishes the figure removes the note
    run_figures(["fig13"], ctx, LocalExecutor(1), resume=True)
    report = (tmp_path / "REPORT.md").read_text(encoding="utf-8")
    assert "## Missing jobs" not in report and "## Fig. 13" in report


# --------------------------------------------------------------------------- local == ray

_TIMES = re.compile(r"wall time|CPU|\d+(\.\d+)? s\b|time per method|Times|\| \*\*sum|"
                    r"\| (quick|full)")


def _outputs(root: Path) -> dict[str, bytes]:
    """Every output file under ``root`` except the job folders and checkpoints (they hold wall
    times); lines that state times are dropped from the Markdown files."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        parts = set(Path(rel).parts[:-1])
        if not p.is_file() or parts & {"jobs", "checkpoints"} or p.name == "result.json":
            continue  # job results and checkpoints hold their wall times
        data = p.read_bytes()
        if p.suffix == ".md":
            data = b"\n".join(line for line in data.splitlines()
                              if not _TIMES.search(line.decode()))
        out[rel] = data
    return out


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_RAY, reason="ray is not installed (pip install 'heatbath[ray]')")
def test_local_and_ray_outputs_are_byte_identical(tmp_path: Path) -> None:
    """reproduce, sweep and compare write the same bytes with --executor local and ray (a
    local Ray instance)."""
    import ray

    cfg = tmp_path / "sw.toml"
    cfg.write_text(CONFIG)
    runs = {
        "reproduce": lambda ex, out: ["reproduce", "fig4", "fig15", "--quick", "--steps", "30",
                                      "--runs", "2", "--out", str(out), "--quiet", *ex],
        "sweep": lambda ex, out: ["sweep", str(cfg), "--grid", "adlala.tau1=1e-5,1e-3",
                                  "--grid", "adlala.sigma_A=0.01,0.1", "--out", str(out),
                                  "--quiet", *ex],
        "compare": lambda ex, out: ["compare", "--config", str(cfg), "--out", str(out),
                                    "--quiet", *ex],
    }
    try:
        for what, argv in runs.items():
            # the same --out for both (configs record it), moved aside after each run
            out, local, remote = (tmp_path / what / n for n in ("run", "local", "ray"))
            assert cli.main(argv([], out)) == 0
            out.rename(local)
            assert cli.main(argv(["--executor", "ray"], out)) == 0
            out.rename(remote)
            a, b = _outputs(local), _outputs(remote)
            assert a.keys() == b.keys() and len(a) >= 4, what
            for k in a:
                assert a[k] == b[k], f"{what}: {k} differs"
    finally:
        ray.shutdown()


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_RAY, reason="ray is not installed (pip install 'heatbath[ray]')")
def test_structure_outputs_are_byte_identical_under_local_and_ray(tmp_path: Path) -> None:
    """``heatbath structure shapes2d --quick`` writes the same bytes (figures, tables, report)
    with --executor local and ray (a local Ray instance)."""
    import ray

    argv = ["structure", "shapes2d", "--quick", "--quiet"]
    out, local, remote = (tmp_path / n for n in ("run", "local", "ray"))
    try:
        assert cli.main([*argv, "--out", str(out)]) == 0
        out.rename(local)
        assert cli.main([*argv, "--out", str(out), "--executor", "ray"]) == 0
        out.rename(remote)
    finally:
        ray.shutdown()
    a, b = _outputs(local), _outputs(remote)
    assert a.keys() == b.keys()
    assert {"shapes2d/REPORT.md", "shapes2d/shapes2d.csv", "shapes2d/shapes2d_donut.png"} <= set(a)
    for k in a:
        assert a[k] == b[k], f"structure: {k} differs"
    # the donut is separable by a radius threshold: both families learn it well above chance
    rows = (local / "shapes2d" / "shapes2d.csv").read_text().splitlines()
    donut = [float(r.split(",")[-1]) for r in rows if r.startswith("donut,")]
    assert len(donut) == 2 and all(acc > 0.8 for acc in donut)

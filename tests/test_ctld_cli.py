"""``heatbath ctld ...`` (papers/ctld/ctld_cli.py): end to end through heatbath.cli.main."""

from __future__ import annotations

import importlib.util
import json
from contextlib import nullcontext
from pathlib import Path

import pytest

from heatbath import cli


@pytest.fixture
def ctld_main():
    """heatbath.cli.main (``ctld`` is in its subcommand table)."""
    return cli.main


def test_charrnn_quick_two_methods(ctld_main, tmp_path, capsys):
    out = tmp_path / "rnn"
    rc = ctld_main(["ctld", "charrnn", "--quick", "--out", str(out), "--seed", "3",
                    "--methods", "ctld,sgdm", "--threads", "1", "--alpha-step", "0.03"])
    assert rc == 0
    for name in ("charrnn_perplexity.png", "charrnn_table.csv", "charrnn_times.csv",
                 "charrnn_report.md", "charrnn_summary.json"):
        assert (out / name).stat().st_size > 0
    summary = json.loads((out / "charrnn_summary.json").read_text())
    assert summary["seed"] == 3 and summary["quick"] is True
    assert summary["config"]["alpha_step"] == 0.03
    assert summary["config"]["tempering"] == "intensive"  # the default
    assert [r["method"] for r in summary["table"]] == ["CTLD", "SGD-M"]
    captured = capsys.readouterr()
    printed = captured.out
    assert "| claim | paper | ours | verdict | reason |" in printed and str(out) in printed
    # progress per job and overall on stderr
    assert "[1/4 jobs," in captured.err and "jobs/search/ctld/lr=3: done" in captured.err
    # the table lists the same methods as the CSV
    csv = (out / "charrnn_table.csv").read_text().splitlines()
    assert len(csv) == 3 and csv[0].startswith("method")


@pytest.mark.parametrize("argv,needle", [
    (["ctld", "nope"], "invalid choice"),
    (["ctld", "charrnn", "--seed", "-1"], "seed"),
    (["ctld", "charrnn", "--text", "/nonexistent/file.txt"], "text"),
    (["ctld", "sda", "--mnist-dir", "/nonexistent/dir"], "mnist-dir"),
    (["ctld", "sda", "--text", "x.txt"], "--text applies"),
    (["ctld", "charrnn", "--mnist-dir", "."], "--mnist-dir applies"),
    (["ctld", "charrnn", "--methods", "ctld,foo"], "unknown method 'foo'"),
    (["ctld", "sensitivity", "--methods", "ctld"], "does not apply"),
    (["ctld", "charrnn", "--threads", "0"], "threads"),
    (["ctld", "charrnn", "--tempering", "paper", "--alpha-step-scale", "big"],
     "alpha-step-scale"),
    (["ctld", "charrnn", "--tempering", "paper", "--alpha-step-scale", "-1"],
     "alpha-step-scale"),
    (["ctld", "charrnn", "--alpha-step-scale", "1"], "applies to --tempering paper"),
    (["ctld", "charrnn", "--alpha-step", "0"], "alpha-step"),
    (["ctld", "charrnn", "--tempering", "paper", "--alpha-step", "0.1"],
     "applies to --tempering intensive"),
    (["ctld", "charrnn", "--seeds", "0"], "seeds"),
    (["ctld", "charrnn", "--jobs", "0"], "jobs"),
    (["ctld", "charrnn", "--address", "auto"], "address is for --executor ray"),
    (["ctld", "charrnn", "--executor", "dask"], "invalid choice"),
    (["ctld", "charrnn", "--quick", "--size", "full"], "contradicts"),
])
def test_bad_input_exits_2_with_one_line(ctld_main, tmp_path, capsys, argv, needle):
    with pytest.raises(SystemExit) if needle == "invalid choice" else nullcontext():
        rc = ctld_main(argv + ["--out", str(tmp_path / "o")])
        assert rc == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_resume_reuses_the_finished_jobs(ctld_main, tmp_path, capsys):
    """A second run with --resume into the same folder reuses every finished job and writes the
    same table."""
    argv = ["ctld", "charrnn", "--quick", "--out", str(tmp_path), "--methods", "sgdm"]
    assert ctld_main(argv) == 0
    table = (tmp_path / "charrnn_table.csv").read_bytes()
    capsys.readouterr()
    assert ctld_main([*argv, "--resume"]) == 0
    err = capsys.readouterr().err
    assert err.count("finished earlier, reused") == 3  # two lr trials and one run
    assert (tmp_path / "charrnn_table.csv").read_bytes() == table


def test_mnist_dir_without_idx_files(ctld_main, tmp_path, capsys):
    rc = ctld_main(["ctld", "sda", "--mnist-dir", str(tmp_path), "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("heatbath ctld: error: mnist-dir") and len(err.splitlines()) == 1


def test_text_not_utf8(ctld_main, tmp_path, capsys):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 ".encode("latin-1") * 500)
    rc = ctld_main(["ctld", "charrnn", "--text", str(bad), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "not UTF-8" in capsys.readouterr().err



# --------------------------------------------------------------------------- local == ray
HAVE_RAY = importlib.util.find_spec("ray") is not None


def _outputs(root: Path) -> dict[str, bytes]:
    """The experiment's files under ``root``: not the job folders (their results and job files
    hold wall times) nor ``*_times.csv``; the report's line of wall times is dropped."""
    out = {}
    for p in sorted(root.iterdir()):
        if not p.is_file() or p.name.endswith("_times.csv"):
            continue
        data = p.read_bytes()
        if p.suffix == ".md":
            data = b"\n".join(line for line in data.splitlines()
                              if not line.startswith(b"Wall time of the jobs:"))
        out[p.name] = data
    return out


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_RAY, reason="ray is not installed (pip install 'heatbath[ray]')")
def test_sda_quick_local_and_ray_outputs_are_byte_identical(tmp_path):
    """``heatbath ctld sda --quick`` (CTLD and SGD-M: six jobs) writes the same bytes
    (figures, table, report, summary) under --executor local and --executor ray (a local Ray
    instance started by ray.init())."""
    import ray

    out, local, remote = (tmp_path / n for n in ("run", "local", "ray"))
    argv = ["ctld", "sda", "--quick", "--methods", "ctld,sgdm", "--out", str(out), "--quiet"]
    try:
        assert cli.main(argv) == 0
        out.rename(local)  # the same --out for both: the summary records it
        assert cli.main([*argv, "--executor", "ray"]) == 0
        out.rename(remote)
    finally:
        ray.shutdown()
    a, b = _outputs(local), _outputs(remote)
    assert sorted(a) == sorted(b) and {"sda_mse.png", "sda_temperature.png", "sda_table.csv",
                                       "sda_report.md", "sda_summary.json"} <= set(a)
    for name in a:
        assert a[name] == b[name], f"{name} differs"
    # the jobs' results agree too (their wall times aside): every job ran under both
    jobs = sorted(p.relative_to(local).as_posix() for p in local.rglob("result.pt"))
    assert jobs == sorted(p.relative_to(remote).as_posix() for p in remote.rglob("result.pt"))
    assert len(jobs) == 2 * 2 + 2

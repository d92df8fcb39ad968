"""heatbath compare|train --collect: samples, the final-vs-samples report, R-hat, figures."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
from heatbath import cli  # noqa: E402

ARGS = ["--steps", "40", "--seeds", "2", "--n-train", "40", "--n-test", "60", "--hidden", "6",
        "--eval-every", "20", "--threads", "1", "--workers", "1", "--quiet"]


def test_compare_collect_writes_samples_report_and_figures(tmp_path: Path) -> None:
    code = cli.main(["compare", "--methods", "langevin,sgd", "--collect", "burn_in=10,thin=5",
                     "--out", str(tmp_path), "--name", "post", *ARGS])
    assert code == 0
    run = tmp_path / "post"
    assert tomllib.loads((run / "config.toml").read_text())["collect"] == {
        "burn_in": 10, "thin": 5, "reservoir": False}
    report = json.loads((run / "samples" / "report.json").read_text())
    for label in ("langevin", "sgd"):
        manifest = json.loads((run / "jobs" / label / "samples" / "manifest.json").read_text())
        assert [s["step"] for s in manifest["samples"]] == [15, 20, 25, 30, 35, 40]
        rep = report["methods"][label]
        assert rep["n_samples"] == 6 and rep["n_chains"] == 2
        assert set(rep["diagnostics"]) == {"loss", "prediction", "proj0", "proj1"}
        assert (run / "samples" / f"reliability_{label}.png").exists()
        assert (run / "samples" / f"trace_{label}.png").exists()
    summary = (run / "summary.md").read_text()
    assert "## Posterior samples" in summary
    assert "| langevin | sample average (6 samples x 2 chains)" in summary
    assert "| sgd | final iterate (mean over runs)" in summary
    assert "| langevin | loss |" in summary  # the R-hat table
    # a finished run resumed: the samples are reused, the report is the same
    first = (run / "samples" / "report.json").read_text()
    assert cli.main(["compare", "--methods", "langevin,sgd", "--collect", "burn_in=10,thin=5",
                     "--out", str(tmp_path), "--name", "post", "--resume", *ARGS]) == 0
    again = json.loads((run / "samples" / "report.json").read_text())
    before = json.loads(first)
    for label in ("langevin", "sgd"):
        a, b = before["methods"][label], again["methods"][label]
        # predictive() times loop against vmap each time: the path (and the last bits of the
        # probabilities) may differ; the samples and every number up to rounding may not
        assert a.pop("path") in ("loop", "vmap") and b.pop("path") in ("loop", "vmap")
        assert a["final"] == b["final"] and a["n_samples"] == b["n_samples"]
        assert b["samples"] == pytest.approx(a["samples"], rel=1e-6)
        for q in a["diagnostics"]:
            assert b["diagnostics"][q] == pytest.approx(a["diagnostics"][q], rel=1e-6)


def test_train_collect_without_plots_and_bad_settings(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["train", "sgld", "--collect", "burn_in=30,thin=10,max_samples=1",
                     "--out", str(tmp_path), "--name", "one", "--no-plots", *ARGS])
    assert code == 0
    report = json.loads((tmp_path / "one" / "samples" / "report.json").read_text())
    assert report["methods"]["sgld"]["n_samples"] == 1  # max_samples: the first eligible step
    assert report["methods"]["sgld"]["diagnostics"] == {}  # too few draws for R-hat
    assert not list((tmp_path / "one" / "samples").glob("*.png"))
    capsys.readouterr()
    assert cli.main(["train", "sgld", "--collect", "thin=0", "--out", str(tmp_path),
                     "--name", "bad", *ARGS]) == 2
    err = capsys.readouterr().err.strip()
    assert "collect.thin" in err and len(err.splitlines()) == 1

"""--collect plumbing: settings parsing, a collector on an engine Trainer, the report."""

from __future__ import annotations

import pytest

from heatbath.data import make_dataset
from heatbath.engine.specs import ModelSpec, OptimSpec
from heatbath.engine.trainer import Trainer
from heatbath.sampling import load_samples
from heatbath.sampling.run import (
    collector_for,
    parse_collect,
    report_markdown,
    sample_report,
    write_sample_reports,
)


def test_parse_collect() -> None:
    assert parse_collect("burn_in=10,thin=5") == {"burn_in": 10, "thin": 5, "reservoir": False}
    assert parse_collect({"thin": 2, "max_samples": 7, "reservoir": 1})["reservoir"] is True
    assert parse_collect(None) is None
    with pytest.raises(ValueError, match="unknown"):
        parse_collect("burnin=3")
    with pytest.raises(ValueError, match="thin"):
        parse_collect("thin=0")
    with pytest.raises(ValueError, match="integer"):
        parse_collect("thin=two")
    with pytest.raises(ValueError, match="key=value"):
        parse_collect("thin")
    with pytest.raises(ValueError, match="reservoir"):
        parse_collect("reservoir=1")


@pytest.mark.parametrize("ensemble", [True, False])
def test_collect_on_trainer_and_report(tmp_path, ensemble: bool) -> None:
    data = make_dataset("spirals", n_train=100, n_test=80, seed=0)
    seeds = {"seeds": [0, 1]} if ensemble else {"seed": 0}
    tr = Trainer(data, ModelSpec("shlp", hidden=8),
                 OptimSpec("langevin", {"h": 0.2, "gamma": 1.0, "tau": 1e-3}), steps=60,
                 eval_every=60, **seeds)
    settings = parse_collect("burn_in=20,thin=10")
    col = collector_for(tr, settings, tmp_path / "samples" / "langevin")
    res = tr.run()
    assert col.steps == [30, 40, 50, 60]
    loaded = load_samples(tmp_path / "samples" / "langevin")
    R = 2 if ensemble else 1
    assert loaded[0].params["layers.0.weight"].shape == (R, 8, 2)
    assert len(loaded[0].loss) == R
    rep = sample_report(res.model, res.head, tmp_path / "samples" / "langevin", data.X_test,
                        data.y_test, label="langevin", figure=tmp_path / "rel.png")
    assert rep["n_samples"] == 4 and rep["n_chains"] == R
    assert set(rep["diagnostics"]) == {"loss", "prediction", "proj0", "proj1"}
    assert (tmp_path / "rel.png").exists()
    for key in ("final", "runs_average", "samples"):
        assert 0.0 <= rep[key]["ece"] <= 1.0 and rep[key]["nll"] > 0
    md = report_markdown({"langevin": rep}, settings)
    assert "| langevin | sample average (4 samples x" in md and "R̂" in md
    (tmp_path / "summary.md").write_text("# run\n")
    files = write_sample_reports(tmp_path, data, {"langevin": res}, settings,
                                 tmp_path / "summary.md")
    assert (tmp_path / "samples" / "report.json") in files
    assert (tmp_path / "summary.md").read_text().startswith("# run\n\n## Posterior samples")
    # nothing collected yet: the report still gives the final iterates
    empty = sample_report(res.model, res.head, tmp_path / "none", data.X_test, data.y_test,
                          label="x")
    assert empty["samples"] is None and empty["final"]["accuracy"] >= 0

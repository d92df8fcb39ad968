"""Tests for ``heatbath reproduce``: figure keys, settings, data-draw blocks, Fig. 3's line and
flat-direction drift, end to end. The verdict rules themselves are tested in test_verdicts.py.

The end-to-end tests run real figures with tiny caps (a few dozen steps, two runs), so they
check the plumbing (files, report rows, CSV contents against the engine's metrics, every claim
"not tested (shortened run)"), not the paper's numbers; ``test_all_quick`` (slow) runs every
figure in ``--quick`` mode.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from heatbath import cli
from heatbath.output.claims import SHORTENED
from heatbath.papers.integrators import FIGURES, figure_spec, parse_keys
from heatbath.papers.integrators.common import (
    Context,
    FigureSpec,
    block_jobs,
    draw_plan,
    final_values,
)
from heatbath.papers.integrators.fig03 import barrier_height, flat_drift, interpolate_loss


def test_parse_keys() -> None:
    assert parse_keys(["all"]) == list(FIGURES)
    assert parse_keys(["8", "fig1"]) == ["fig8", "fig1"]
    assert parse_keys(["fig6-8", "fig7"]) == ["fig6", "fig7", "fig8"]
    for bad in (["fig2"], ["fig17"], ["spiral"], ["fig"]):
        with pytest.raises(ValueError, match="figure must be one of"):
            parse_keys(bad)


def test_every_figure_has_a_spec_with_choices_and_quick_mode() -> None:
    for key in FIGURES:
        spec, mod = figure_spec(key)
        assert spec.key == key and callable(mod.jobs) and callable(mod.report)
        assert spec.choices, f"{key}: the caption's gaps must be recorded"
        full, quick = spec.resolve(False), spec.resolve(True)
        # quick mode never trains longer or with more runs than the full figure
        for k in ("steps", "runs"):
            if k in full:
                assert quick[k] <= full[k], (key, k)


def test_resolve_caps_rescale_steps_and_cap_runs() -> None:
    spec = FigureSpec("figx", "t", "c", {"steps": 1000, "runs": 50, "snapshot_steps": [0, 500,
                                                                                       1000]},
                      quick={"runs": 5})
    cfg = spec.resolve(True, steps=100, runs=3)
    assert cfg["steps"] == 100 and cfg["runs"] == 3
    assert cfg["snapshot_steps"] == [1, 50, 100]  # rescaled by 100/1000, at least step 1
    assert spec.resolve(False)["runs"] == 50  # the spec itself is unchanged


def test_draw_blocks_give_each_block_its_data_and_seeds(tmp_path: Path) -> None:
    assert draw_plan(100, 10) == [(k, list(range(10 * k, 10 * k + 10))) for k in range(10)]
    assert draw_plan(2, 10) == [(0, [0]), (1, [1])]  # a run cap: at most one draw per run
    with pytest.raises(ValueError, match="runs and draws"):
        draw_plan(0, 10)
    spec, _ = figure_spec("fig8")
    cfg = spec.resolve(False)
    jobs = block_jobs(Context(out=tmp_path, verbose=False), spec, cfg, steps=10, runs=100,
                      draws=10)
    assert len(jobs) == 10 * len(cfg["methods"])
    by_method: dict[str, list[int]] = {}
    for j in jobs:
        draw = int(j.name.split("/")[2][4:])
        assert j.setting["data"]["seed"] == draw  # block k draws its data with seed k
        assert j.seeds == tuple(range(10 * draw, 10 * draw + 10))
        by_method.setdefault(j.setting["optimizer"]["label"], []).extend(j.seeds)
    # every method runs the same 100 seeds: runs are paired across methods
    assert all(sorted(v) == list(range(100)) for v in by_method.values())


def test_settings_follow_the_caption_of_the_same_problem() -> None:
    """Fig. 8 takes Fig. 14's stated choices (2 %, 0.01·N(0, 1)) and cites Fig. 14."""
    f8, f14 = figure_spec("fig8")[0], figure_spec("fig14")[0]
    assert f8.settings["subsample"] == f14.settings["subsample"] == 2.0
    assert f8.settings["model"]["init"] == "gaussian:0.01"
    assert f8.settings["data"]["n_test"] == 1000 and f8.settings["draws"] == 10
    assert "Fig. 14" in f8.choices["subsample"] and "Fig. 14" in f8.choices["model.init"]
    sgld, other = (f8.settings["methods"][m]["hparams"] for m in ("sgld", "sgld_per_step"))
    # the σ-per-step reading: σ·R per step = σ'·√h·R with σ' = σ/√h
    assert other["sigma"] * math.sqrt(other["h"]) == pytest.approx(sgld["sigma"])
    f3 = figure_spec("fig3")[0].settings["mnist"]["methods"]
    for m in ("adlala", "adlala_cold"):
        hp = f3[m]["hparams"]
        assert hp["sigma_A"] ** 2 * hp["h"] / 2 < hp["tau1"]  # the thermostat can hold τ₁
    assert {f3["adlala"]["hparams"]["tau1"], f3["adlala_cold"]["hparams"]["tau1"]} == {1e-4,
                                                                                         1e-6}


class _Ensemble(torch.nn.Module):
    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList([torch.nn.Module()])
        self.layers[0].weight = torch.nn.Parameter(w)


def test_flat_drift_measures_only_the_always_zero_pixels() -> None:
    X = torch.zeros(6, 4)
    X[:, 0] = 1.0
    X[:3, 2] = 0.5  # pixels 1 and 3 are always zero
    w0 = torch.full((2, 3, 4), 0.1)
    w1 = w0.clone()
    w1[..., 1] = 0.5   # an always-zero pixel: drifts to 5× its initial scale
    w1[..., 3] = -0.5
    w1[..., 0] = 9.0   # a pixel the data constrains: not counted
    res = type("R", (), {"snapshots": {0: {"layers.0.weight": w0}},
                         "model": _Ensemble(w1)})()
    d = flat_drift(res, X, h=0.25, steps=100)  # type: ignore[arg-type]
    assert list(d["dead"]) == [2, 2]
    np.testing.assert_allclose(d["init_rms"], 0.1)
    np.testing.assert_allclose(d["ratio"], 5.0)
    # displacements 0.4 and -0.6 on the two dead pixels: RMS sqrt((0.16 + 0.36) / 2)
    np.testing.assert_allclose(d["moved_rms"], math.sqrt(0.26), rtol=1e-6)  # float32 weights


def test_barrier_height() -> None:
    alphas = list(np.linspace(-0.5, 1.5, 41))
    convex = np.array([[(a - 0.5) ** 2] for a in alphas])
    assert barrier_height(alphas, convex)[0] == 0.0  # the middle lies below the ends
    bump = np.array([[1.0 + 0.3 * math.exp(-((a - 0.5) / 0.1) ** 2)] for a in alphas])
    assert barrier_height(alphas, bump)[0] == pytest.approx(0.3, abs=1e-9)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_fig4_and_fig8_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "paper"
    rc = cli.main(["reproduce", "fig8", "fig4", "--quick", "--steps", "40", "--runs", "2", "--out",
                         str(out), "--quiet"])
    assert rc == 0
    for key, pngs in (("fig8", ("histograms.png", "final_accuracy.png", "curves.png")),
                      ("fig4", ("decision_maps.png", "final_accuracy.png"))):
        for png in pngs:
            assert (out / key / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / key / "config.toml").exists()
    report = (out / "REPORT.md").read_text(encoding="utf-8")
    # every claim of the figure is a row of the summary table, and none is judged: the run
    # is shortened, the paper's numbers are for its full settings
    for key in ("fig8", "fig4"):
        res = json.loads((out / key / "result.json").read_text(encoding="utf-8"))
        assert res["claims"]
        for c in res["claims"]:
            assert c["claim"] in report
            assert (c["verdict"], c["untested"]) == ("not tested", SHORTENED), c
    assert "not tested (shortened run)" in report
    assert "![fig8 histograms.png](fig8/histograms.png)" in report
    assert "Shortened runs" in report
    # the final-accuracy CSV holds exactly each run's last test accuracy from metrics.csv
    metrics = [{**r, "step": int(r["step"]), "seed": int(r["seed"]),
                "accuracy": float(r["accuracy"])} for r in _rows(out / "fig8" / "metrics.csv")]
    finals = _rows(out / "fig8" / "final_accuracy.csv")
    assert len(finals) == 6 * 2  # 6 configurations × 2 runs (2 draws of one run each)
    assert {r["draw"] for r in finals} == {"0", "1"}
    for r in finals:
        want = final_values([m for m in metrics if m["seed"] == int(r["seed"])], r["method"])
        assert float(r["test_accuracy"]) == pytest.approx(float(want[0]))
    assert all(m["step"] <= 40 for m in metrics)


def test_fig3_line_ends_are_the_trained_minima(tmp_path: Path) -> None:
    """θ(0) and θ(1) are the two trained models: their losses equal the engine's evaluation."""
    from heatbath.engine.executors import LocalExecutor
    from heatbath.papers.integrators.common import (
        Context,
        FigureResults,
        make_data,
        setting_jobs,
    )

    spec, _ = figure_spec("fig3")
    c = spec.resolve(True)["spiral"]
    ctx = Context(out=tmp_path, verbose=False)
    data = make_data(c["data"], ctx)
    jobs = setting_jobs(ctx, spec, c, steps=30, runs=5, eval_steps=[30])
    jobs = [dataclasses.replace(j, seeds=(3, 4)) for j in jobs]
    res = FigureResults(spec, jobs, LocalExecutor(1).run(jobs, tmp_path).results).methods()
    loss = interpolate_loss(res["adam"], res["adlala"], data.X_train, data.y_train, [0.0, 1.0])
    for i, m in enumerate(("adam", "adlala")):
        want = final_values(res[m].rows, m, "train", "loss")
        np.testing.assert_allclose(loss[i], want, rtol=1e-5)
    # and the two end points differ (the optimizers moved differently from the same init)
    assert not torch.equal(res["adam"].model.layers[0].weight, res["adlala"].model.layers[0].weight)


def test_cli_registration_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["reproduce", "--list"]) == 0
    assert "fig16" in capsys.readouterr().out
    assert cli.main(["reproduce", "fig2"]) == 2
    assert "figure must be one of" in capsys.readouterr().err
    assert cli.main(["reproduce", "fig8", "--threads", "0"]) == 2
    assert "threads" in capsys.readouterr().err


@pytest.mark.slow
def test_all_quick(tmp_path: Path) -> None:
    """``heatbath reproduce all --quick``: every figure, one report, every judged claim "not
    tested (shortened run)" (266 s on 2 idle cores, more under load)."""
    out = tmp_path / "paper"
    assert cli.main(["reproduce", "all", "--quick", "--jobs", "2", "--out", str(out),
                     "--quiet"]) == 0
    report = (out / "REPORT.md").read_text(encoding="utf-8")
    for key in FIGURES:
        spec, _ = figure_spec(key)
        assert f"## {spec.title}" in report
        result = json.loads((out / key / "result.json").read_text(encoding="utf-8"))
        assert result["images"] and result["csvs"] and result["claims"]
        for img in result["images"]:
            assert (out / key / img).stat().st_size > 1000
        assert all(c["verdict"] == "not tested" for c in result["claims"])

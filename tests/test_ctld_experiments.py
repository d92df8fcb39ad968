"""CTLD experiments (spec ctld.md §9): the recipes run end to end and write their outputs."""

from __future__ import annotations

import json
import math

import pytest

from heatbath.papers.ctld.recipes import run_charrnn, run_sda, run_sensitivity

TINY_RNN = {"max_chars": 20_000, "batch": 4, "seq_len": 16, "steps": 8, "search_steps": 2,
            "grid_size": 2, "log_every": 4, "eval_windows": 4}


def test_charrnn_tiny_end_to_end(tmp_path):
    """Two methods, minimal sizes: outputs exist, numbers are finite perplexities >= 1."""
    s = run_charrnn(tmp_path, methods=("ctld", "sgdm"), config=TINY_RNN)
    for name in ("charrnn_perplexity.png", "charrnn_table.csv", "charrnn_report.md",
                 "charrnn_summary.json"):
        assert (tmp_path / name).stat().st_size > 0
    rows = {r["method"]: r for r in s["table"]}
    assert set(rows) == {"CTLD", "SGD-M"}
    for r in rows.values():
        assert r["diverged"] or (math.isfinite(r["test_ppl"]) and r["test_ppl"] >= 1.0)
    assert 0.0 <= rows["CTLD"]["cold_fraction"] <= 1.0
    report = (tmp_path / "charrnn_report.md").read_text()
    assert "standard-library source text" in report and "our verdict" in report
    assert json.loads((tmp_path / "charrnn_summary.json").read_text())["experiment"] == "charrnn"


def test_config_rejects_unknown_keys(tmp_path):
    with pytest.raises(ValueError, match="config key"):
        run_charrnn(tmp_path, config={"epochs": 3})


@pytest.mark.slow
def test_quick_sizes_end_to_end(tmp_path):
    sda = run_sda(tmp_path / "sda", quick=True)
    assert len(sda["table"]) == 6 and (tmp_path / "sda" / "sda_temperature.png").exists()
    rows = {r["method"]: r for r in sda["table"]}
    # Santa overflows at large steps (its grid spans 8 decades, GRIDS_SDA): the grid search
    # must reject diverging values and the final run must stay finite
    assert not rows["Santa"]["diverged"]
    assert math.isfinite(rows["Santa"]["test_recon_mse"])
    assert any("alpha explores" in v["claim"] for v in sda["verdicts"])
    rnn = run_charrnn(tmp_path / "rnn", quick=True)
    assert len(rnn["table"]) == 6
    sens = run_sensitivity(tmp_path / "sens", quick=True)
    assert (tmp_path / "sens" / "sensitivity.png").exists()
    assert len(sens["table"]) == 2 * (2 * 2 + 3)

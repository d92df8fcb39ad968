"""Quick-size runs of the structure-preserving experiments (the 2-D and optimiser runs are slow)."""

from __future__ import annotations

import math

import pytest

from heatbath.papers.structure import experiments as structure


@pytest.mark.slow
def test_shapes2d_quick(tmp_path):
    res = structure.run_shapes2d(tmp_path, quick=True, seed=0)
    n_fam = len(structure.QUICK["shapes2d"]["families"])
    assert len(res["rows"]) == len(structure.DATASETS) * n_fam
    for name in structure.DATASETS:
        assert (tmp_path / f"shapes2d_{name}.png").stat().st_size > 0
    assert (tmp_path / "shapes2d.md").exists() and (tmp_path / "shapes2d.csv").exists()
    # the donut is separable by a radius threshold: every family must learn it above chance
    donut = [r for r in res["rows"] if r["dataset"] == "donut"]
    assert all(r["test_acc"] > 0.8 for r in donut)


def test_mnist_quick(tmp_path):
    res = structure.run_mnist_families(tmp_path, quick=True, seed=0)
    if "skipped" in res:
        pytest.skip(res["skipped"])
    counts = [r["params"] for r in res["rows"]]
    assert max(counts) <= 1.03 * min(counts)  # equal parameter count up to the head
    assert all(r["test_acc"] > 0.3 for r in res["rows"])  # 10 classes: chance is 0.1
    assert (tmp_path / "mnist_families.png").exists()


def test_robustness_quick(tmp_path):
    res = structure.run_robustness(tmp_path, quick=True, seed=0)
    rows = res["rows"]
    for label in ("unconstrained ResNet", "non-expansive"):
        accs = [r[label] for r in rows]
        # a larger ball contains the smaller one, so a converged attack can only do better;
        # 10-step PGD is not converged: allow 4 of the 200 test points (0.02) per eps step
        assert all(a2 <= a1 + 0.02 for a1, a2 in zip(accs, accs[1:], strict=False))
    # certified accuracy never exceeds the empirical robust accuracy of the same net
    assert all(r["non-expansive certified"] <= r["non-expansive"] + 1e-9 for r in rows)
    assert not math.isnan(rows[0]["non-expansive"])
    assert (tmp_path / "robustness.png").exists() and (tmp_path / "robustness.csv").exists()


@pytest.mark.slow
def test_thermo_quick(tmp_path):
    res = structure.run_thermo_training(tmp_path, quick=True, seed=0)
    if "skipped" in res:
        pytest.skip(res["skipped"])
    assert {r["method"] for r in res["rows"]} == {"adam", "langevin", "adlala"}
    assert all(math.isfinite(r["final_loss"]) for r in res["rows"])
    assert (tmp_path / "thermo_training.png").exists()

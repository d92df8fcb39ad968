"""Quick-size runs of the structure-preserving experiments (the 2-D and optimiser runs are slow)."""

from __future__ import annotations

import json
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

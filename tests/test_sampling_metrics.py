"""Predictive metrics against hand computations and brute-force definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from heatbath.sampling import (
    accuracy,
    brier,
    calibration_bins,
    classification_metrics,
    ece,
    gaussian_nll,
    nll,
    ood_auroc,
    predictive_entropy,
    reliability_diagram,
)

P = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]], dtype=torch.float64)
Y = torch.tensor([0, 1, 1, 1])


def test_hand_computed_values() -> None:
    assert nll(P, Y) == pytest.approx(-(math.log(0.9) + math.log(0.8) + math.log(0.4)
                                        + math.log(0.7)) / 4)
    assert accuracy(P, Y) == 0.75
    # Brier: sum over classes of squared errors, e.g. row 3: (0.6-0)^2 + (0.4-1)^2
    assert brier(P, Y) == pytest.approx((2 * 0.01 + 2 * 0.04 + 2 * 0.36 + 2 * 0.09) / 4)
    H = predictive_entropy(P)
    assert float(H[0]) == pytest.approx(-(0.9 * math.log(0.9) + 0.1 * math.log(0.1)))
    assert gaussian_nll(torch.zeros(2), torch.ones(2), torch.tensor([0.0, 2.0])) == \
        pytest.approx(0.5 * math.log(2 * math.pi) + (0 + 2.0 ** 2 / 2) / 2)


def test_ece_equal_width_by_hand() -> None:
    # top-label confidences 0.9, 0.8, 0.6, 0.7; correct: yes, yes, no, yes.
    # 5 bins of width 0.2: [0.6, 0.8) holds 0.6 and 0.7 (acc 1/2, conf 0.65);
    # [0.8, 1.0] holds 0.8 and 0.9 (acc 1, conf 0.85): ECE = 1/2 |0.5-0.65| + 1/2 |1-0.85|
    assert ece(P, Y, n_bins=5) == pytest.approx(0.5 * 0.15 + 0.5 * 0.15)
    # one bin: |mean accuracy - mean confidence|
    assert ece(P, Y, n_bins=1) == pytest.approx(abs(0.75 - 0.75))
    # equal mass, 2 bins: sorted confidences (0.6, 0.7 | 0.8, 0.9), the same split here
    assert ece(P, Y, n_bins=2, binning="equal_mass") == pytest.approx(0.15)
    bins = calibration_bins(P, Y, n_bins=4, binning="equal_mass")
    assert bins["count"].tolist() == [1, 1, 1, 1]


def test_ece_of_calibrated_predictions_is_small() -> None:
    # labels drawn from the predicted probabilities: calibrated by construction. Per bin the
    # accuracy has sd sqrt(c(1-c)/n_b) <= 0.5/sqrt(n_b); with 10 equal-mass bins of 2000 points
    # the ECE is about the mean |error| <= 0.5 * sqrt(2/pi) / sqrt(2000) = 0.009; allow 3x.
    g = torch.Generator().manual_seed(0)
    p1 = torch.rand(20000, generator=g, dtype=torch.float64)
    probs = torch.stack([1 - p1, p1], 1)
    y = (torch.rand(20000, generator=g, dtype=torch.float64) < p1).long()
    assert ece(probs, y, 10, "equal_mass") < 0.027
    assert ece(probs, y, 10, "equal_width") < 0.03
    # overconfident: push probabilities towards 0/1 (p^4 normalised): clearly miscalibrated
    sharp = probs ** 4 / (probs ** 4).sum(1, keepdim=True)
    assert ece(sharp, y, 10) > 0.1


def test_auroc_matches_pairwise_definition() -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 5, size=30).astype(float)  # ties on purpose
    b = rng.integers(1, 7, size=20).astype(float)
    pairs = np.mean([(bj > ai) + 0.5 * (bj == ai) for ai in a for bj in b])
    assert ood_auroc(a, b) == pytest.approx(pairs)
    assert ood_auroc([0.0, 1.0], [2.0, 3.0]) == 1.0
    assert ood_auroc([2.0, 3.0], [0.0, 1.0]) == 0.0


def test_validation() -> None:
    with pytest.raises(ValueError, match="probs"):
        nll(torch.ones(3), Y)
    with pytest.raises(ValueError, match="y"):
        nll(P, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels"):
        nll(P, torch.tensor([0, 1, 2, 1]))
    with pytest.raises(ValueError, match="binning"):
        ece(P, Y, binning="quantile")
    with pytest.raises(ValueError, match="n_bins"):
        ece(P, Y, n_bins=0)
    with pytest.raises(ValueError, match="var"):
        gaussian_nll(torch.zeros(1), torch.zeros(1), torch.zeros(1))


def test_summary_and_reliability_diagram(tmp_path) -> None:
    m = classification_metrics(P, Y, n_bins=5)
    assert m["ece"] == ece(P, Y, 5) and m["nll"] == nll(P, Y)
    out = tmp_path / "rel.png"
    reliability_diagram({"a": (P, Y), "b": (P.flip(1), Y)}, n_bins=5, path=out)
    assert out.stat().st_size > 1000

"""Reliability bins and ECE on hand-computed cases."""

import math

import pytest
import torch

from prerec_pyro.calibration import expected_calibration_error, reliability_table, top_predictions

CONFIDENCE = [0.05, 0.15, 0.12, 0.95, 0.85]
CORRECT = [False, True, False, True, False]


def test_ece_of_a_hand_computed_case():
    # bins of width 0.1: {0.05} acc 0, {0.15, 0.12} acc 0.5 conf 0.135, {0.85} acc 0, {0.95} acc 1
    expected = (0.05 + 2 * abs(0.5 - 0.135) + 0.85 + 0.05) / 5
    assert math.isclose(expected_calibration_error(CONFIDENCE, CORRECT), expected, rel_tol=1e-12)
    table = reliability_table(CONFIDENCE, CORRECT)
    assert table["bin"].tolist() == [0, 1, 8, 9] and table["count"].tolist() == [1, 2, 1, 1]
    assert table["lower"].tolist() == pytest.approx([0.0, 0.1, 0.8, 0.9])


def test_edges_go_to_the_upper_bin_and_one_to_the_last():
    table = reliability_table([0.1, 1.0, 0.0], [True, True, False], n_bins=10)
    assert table["bin"].tolist() == [0, 1, 9]


def test_a_perfectly_calibrated_case_has_zero_ece_and_quantile_bins_hold_equal_counts():
    confidence = torch.tensor([0.25] * 4 + [0.75] * 4)
    correct = torch.tensor([1, 0, 0, 0, 1, 1, 1, 0], dtype=torch.bool)
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.0)
    table = reliability_table(torch.linspace(0.01, 0.04, 8), torch.zeros(8, dtype=torch.bool), n_bins=4,
                              binning="quantile")
    assert table["count"].tolist() == [2, 2, 2, 2]


def test_top_predictions_and_bad_input():
    log_probs = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]))
    confidence, correct = top_predictions(log_probs, torch.tensor([0, 1]))
    assert confidence.tolist() == pytest.approx([0.7, 0.6]) and correct.tolist() == [True, False]
    with pytest.raises(ValueError, match="binning must be one of"):
        reliability_table(CONFIDENCE, CORRECT, binning="adaptive")
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        reliability_table([1.5], [True])
    with pytest.raises(ValueError, match="one length"):
        reliability_table([0.5, 0.2], [True])

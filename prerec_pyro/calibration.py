"""Calibration of next-item probabilities: reliability bins and the expected calibration error (ECE).

A prediction is the top item of a next-item distribution: its probability is the *confidence* and it is *correct*
when it is the item that came next. Predictions are grouped into bins of confidence and

    ECE = sum_b (n_b / N) * |accuracy_b - confidence_b|

with accuracy_b and confidence_b the mean correctness and confidence of bin b. ``uniform`` bins split [0, 1] into
equal widths (a confidence on an edge goes to the upper bin, 1.0 to the last); ``quantile`` bins hold equal numbers
of predictions, which suits a recommender whose confidences are all small (thousands of items).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import Tensor

BINNINGS = ("uniform", "quantile")


def top_predictions(log_probs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Confidence and correctness of the top item of each next-item distribution: ``log_probs`` [N, J] (log of
    normalised probabilities), ``targets`` [N] item rows. Returns ([N] float, [N] bool)."""
    confidence, top = log_probs.max(dim=-1)  # [N], [N]
    return confidence.exp(), top == targets


def reliability_table(confidence: Tensor | np.ndarray, correct: Tensor | np.ndarray, n_bins: int = 10,
                      binning: str = "uniform") -> pd.DataFrame:
    """One row per non-empty bin: lower, upper, count, confidence (mean), accuracy (mean)."""
    if binning not in BINNINGS:
        raise ValueError(f"binning must be one of {BINNINGS}, got {binning!r}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    confidence = torch.as_tensor(confidence, dtype=torch.float64).flatten().cpu().numpy()
    correct = torch.as_tensor(correct).flatten().cpu().numpy().astype(np.float64)
    if confidence.shape != correct.shape or not len(confidence):
        raise ValueError(f"confidence and correct must be non-empty and of one length, got {confidence.shape} and "
                         f"{correct.shape}")
    if ((confidence < 0) | (confidence > 1)).any():
        raise ValueError("confidence must be probabilities in [0, 1]")
    if binning == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    else:
        edges = np.unique(np.quantile(confidence, np.linspace(0.0, 1.0, n_bins + 1)))
    inner = edges[1:-1]
    bins = np.searchsorted(inner, confidence, side="right")  # [N] in [0, len(edges) - 2]
    frame = pd.DataFrame({"bin": bins, "confidence": confidence, "accuracy": correct})
    table = frame.groupby("bin").agg(count=("confidence", "size"), confidence=("confidence", "mean"),
                                     accuracy=("accuracy", "mean")).reset_index()
    table.insert(1, "lower", edges[table["bin"]])
    table.insert(2, "upper", edges[table["bin"] + 1])
    return table


def expected_calibration_error(confidence: Tensor | np.ndarray, correct: Tensor | np.ndarray, n_bins: int = 10,
                               binning: str = "uniform") -> float:
    """ECE of the predictions (see the module docstring)."""
    table = reliability_table(confidence, correct, n_bins, binning)
    weights = table["count"] / table["count"].sum()
    return float((weights * (table["accuracy"] - table["confidence"]).abs()).sum())

"""The shared training loop's helpers (``prerec_pyro.training``)."""

import math

import pytest
import torch

from prerec_pyro.training import FLAT, checked_losses, loss_trend


def test_loss_trend_is_the_mean_relative_change_per_epoch_over_the_window():
    history = [{"epoch": e, "loss": loss} for e, loss in enumerate([10.0, 8.0, 4.0, 3.9, 3.8, 3.7, 3.6])]
    trend = loss_trend(history, window=5)
    assert trend["epochs"] == [1, 6]
    assert trend["relative_change_per_epoch"] == pytest.approx((3.6 - 8.0) / 8.0 / 5)
    assert not trend["flat"]
    steady = [{"epoch": e, "loss": 2.0 * (1 - FLAT / 2) ** e} for e in range(6)]
    assert loss_trend(steady, window=5)["flat"]
    assert loss_trend(history[:5], window=5) is None  # too few epochs to say


def test_checked_losses_name_the_first_bad_step():
    losses = [torch.tensor(1.0), torch.tensor(math.inf), torch.tensor(math.nan)]
    assert checked_losses(losses[:1], epoch=2, first_step=7) == [1.0]
    with pytest.raises(FloatingPointError, match="inf at step 8 of epoch 2"):
        checked_losses(losses, epoch=2, first_step=7)

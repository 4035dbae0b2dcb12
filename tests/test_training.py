"""The shared training loop's helpers (``prerec_pyro.training``)."""

import math

import pytest
import torch

from prerec_pyro.training import (
    FLAT,
    OptimConfig,
    _Interrupt,
    checked_losses,
    convergence,
    fit_epochs,
    learning_rate_factor,
    learning_rate_schedule,
    loss_trend,
    new_state,
    run_epoch_steps,
    training_windows,
)


def test_loss_trend_is_the_fitted_relative_change_per_epoch_over_the_window():
    history = [{"epoch": e, "loss": loss} for e, loss in enumerate([10.0, 5.0, 4.0, 3.9, 3.8, 3.7])]
    trend = loss_trend(history, window=3)
    assert trend["epochs"] == [2, 5]
    assert trend["relative_change_per_epoch"] == pytest.approx(-0.1 / 3.85)  # a straight line: slope -0.1
    assert not trend["flat"]
    noisy = [{"epoch": e, "loss": 2.0 + 0.01 * (-1) ** e} for e in range(11)]  # no drift, noise of 0.5%
    assert abs(loss_trend(noisy)["relative_change_per_epoch"]) < FLAT and loss_trend(noisy)["flat"]
    assert loss_trend(history[:3], window=3) is None  # too few epochs to say


def test_checked_losses_name_the_first_bad_step():
    losses = [torch.tensor(1.0), torch.tensor(math.inf), torch.tensor(math.nan)]
    assert checked_losses(losses[:1], epoch=2, first_step=7) == [1.0]
    with pytest.raises(FloatingPointError, match="inf at step 8 of epoch 2"):
        checked_losses(losses, epoch=2, first_step=7)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped one, on purpose
def test_an_interrupt_dropped_by_a_finaliser_stops_training_at_the_next_check():
    class Finaliser:
        def __del__(self):  # Ctrl-C arriving while a finaliser runs: Python prints the KeyboardInterrupt, drops it
            _Interrupt.handler(2, None)

    epochs = []

    def run_epoch(epoch: int) -> float:
        epochs.append(epoch)
        Finaliser()  # collected at once
        return 1.0

    with pytest.raises(KeyboardInterrupt):
        fit_epochs(run_epoch, None, OptimConfig(max_epochs=5, patience=5), new_state(), lambda improved: None)
    assert epochs == [0]  # raised again before the second epoch
    assert not _Interrupt.requested  # and forgotten once training is left


@pytest.mark.parametrize("scores, max_epochs, stopped_by, epochs_run, best_epoch", [
    ([0.1, 0.2, 0.15, 0.14, 0.3], 10, "patience", 4, 1),  # two epochs without gain at patience 2
    ([0.1, 0.2, 0.3, 0.4, 0.5], 3, "cap", 3, 2),  # still improving at the cap: not converged
])
def test_convergence_records_why_training_stopped(scores, max_epochs, stopped_by, epochs_run, best_epoch):
    values = iter(scores)
    config = OptimConfig(max_epochs=max_epochs, patience=2, max_steps_per_epoch=7)
    state = fit_epochs(lambda epoch: 1.0, lambda: {"score": next(values)}, config, new_state(), lambda improved: None)
    assert convergence(state, config) == {"stopped_by": stopped_by, "epochs_run": epochs_run, "best_epoch": best_epoch,
                                          "patience": 2, "max_epochs": max_epochs, "cosine_epochs": 0,
                                          "max_steps_per_epoch": 7, "min_steps_per_epoch": None}
    assert convergence(new_state(), config)["stopped_by"] == "running"


def test_an_epoch_on_small_data_goes_on_for_min_steps_through_reshuffled_windows(tiny_sources):
    from prerec_pyro.data.batches import DomainBalancedSampler

    sampler = DomainBalancedSampler(training_windows(tiny_sources), batch_size=8, seed=0)
    config = OptimConfig(min_steps_per_epoch=3 * len(sampler), max_steps_per_epoch=5 * len(sampler))
    assert config.steps_per_epoch(len(sampler)) == 3 * len(sampler)
    assert OptimConfig(max_steps_per_epoch=2).steps_per_epoch(len(sampler)) == min(2, len(sampler))
    assert OptimConfig().steps_per_epoch(len(sampler)) == len(sampler)
    batches = list(sampler.epoch(0, 3 * len(sampler)))
    assert len(batches) == 3 * len(sampler)
    assert [(k, list(r)) for k, r in batches[: len(sampler)]] == [(k, list(r)) for k, r in sampler.epoch(0)]
    with pytest.raises(ValueError, match="min_steps_per_epoch must be >= 1 and <= max_steps_per_epoch"):
        OptimConfig(min_steps_per_epoch=10, max_steps_per_epoch=5)


def test_the_learning_rate_warms_up_linearly_then_decays_once_per_epoch_without_gain():
    config = OptimConfig(lr=1e-2, warmup_steps=4, lr_decay=0.5)
    assert [learning_rate_factor(config, step, 0) for step in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert learning_rate_factor(config, 2, 3) == 0.75 * 0.125
    assert learning_rate_factor(OptimConfig(), 0, 5) == 1.0  # the defaults: a constant rate
    scores = iter([0.1, 0.2, 0.15, 0.25, 0.2, 0.1])
    factors = []
    state = fit_epochs(lambda epoch: 1.0, lambda: {"score": next(scores)}, OptimConfig(lr_decay=0.5, patience=2,
                       max_epochs=6), new_state(), lambda improved: factors.append(improved))
    assert [r["lr_factor"] for r in state["history"]] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.25]  # decayed after 0.15, 0.2
    assert state["lr_decays"] == 3 and state["epoch"] == 6
    assert fit_epochs(lambda epoch: 1.0, lambda: {"score": 0.0}, OptimConfig(max_epochs=3, patience=3), new_state(),
                      lambda improved: None)["lr_decays"] == 0  # lr_decay 1: nothing counted
    for bad in ({"warmup_steps": -1}, {"lr_decay": 0.0}, {"lr_decay": 1.5}, {"cosine_epochs": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            OptimConfig(**bad)


def test_the_schedule_scales_each_group_from_its_own_base_rate_and_leaves_a_constant_rate_exact():
    weights, scales = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.Adam([{"params": [weights]}, {"params": [scales], "lr": 0.3}], lr=1e-3)
    state = new_state()
    schedule = learning_rate_schedule([optimizer], OptimConfig(warmup_steps=10, lr_decay=0.5), state)
    schedule(4, 10)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([5e-4, 0.15])
    state["lr_decays"] = 2
    schedule(40, 10)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([2.5e-4, 0.075])
    constant = torch.optim.Adam([weights], lr=3e-4)
    learning_rate_schedule([constant], OptimConfig(), new_state())(123, 10)
    assert constant.param_groups[0]["lr"] == 3e-4  # bit for bit: the previous default's training is unchanged


def test_the_cosine_schedule_falls_from_the_full_rate_to_zero_over_its_epochs_and_ends_training():
    config = OptimConfig(warmup_steps=2, cosine_epochs=2, max_epochs=10, patience=5)
    factors = [learning_rate_factor(config, step, 0, steps_per_epoch=4) for step in range(9)]  # 8 steps in all
    assert factors[:2] == [0.5, 1.0 * 0.5 * (1 + math.cos(math.pi / 8))]  # the warm-up times the cosine
    assert factors[4] == pytest.approx(0.5)  # half way: half the rate
    assert factors[8] == 0.0 and all(a > b for a, b in zip(factors[1:], factors[2:]))  # falling to 0 at the end
    scores, state = iter([0.1, 0.2, 0.3]), new_state()
    schedule = learning_rate_schedule([torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)], config, state)

    def run_epoch(epoch: int) -> float:
        for index in range(4):
            schedule(epoch * 4 + index, 4)
        return 1.0

    state = fit_epochs(run_epoch, lambda: {"score": next(scores)}, config, state, lambda improved: None)
    assert state["epoch"] == 2 and config.last_epoch == 2  # training ends with the schedule, before max_epochs
    assert [r["lr_last_step_factor"] for r in state["history"]] == pytest.approx([factors[3], factors[7]])
    assert convergence(state, config)["stopped_by"] == "schedule"
    assert OptimConfig(cosine_epochs=30, max_epochs=10).last_epoch == 10  # a smaller cap still holds


def test_run_epoch_steps_hands_the_schedule_the_global_step_and_the_epoch_length(tiny_sources):
    from prerec_pyro.data.batches import DomainBalancedSampler

    sampler = DomainBalancedSampler(training_windows(tiny_sources), batch_size=8, seed=0)
    calls = []
    run_epoch_steps(lambda domain, rows, generator: torch.tensor(1.0), sampler, OptimConfig(max_steps_per_epoch=3),
                    epoch=2, schedule=lambda step, steps_per_epoch: calls.append((step, steps_per_epoch)))
    assert calls == [(6, 3), (7, 3), (8, 3)]

"""The training loop shared by PreRec's MAP / variational training (``inference/map.py``) and the learnable
baselines (``prerec_pyro/baselines/train.py``): optimisation settings, the training windows, one epoch of steps with
its loss checks, and the epochs with early stopping on a validation score; across ``torchrun`` processes when given a
``Distributed`` (``prerec_pyro.distributed``)."""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from prerec_pyro.data.batches import DomainBalancedSampler
from prerec_pyro.data.dataset import MultiDomainData
from prerec_pyro.distributed import SINGLE, Distributed
from prerec_pyro.progress import progress_bar

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation settings shared by PreRec's MAP training and the learnable baselines (paper: Adam 3e-4,
    batches of 256 sequences, 255 negatives)."""

    n_negatives: int = 255
    batch_size: int = 256
    lr: float = 3e-4
    max_epochs: int = 20
    patience: int = 3
    max_steps_per_epoch: int | None = None
    min_steps_per_epoch: int | None = None  # an epoch shorter than this goes on through reshuffled data (small data)
    grad_clip_norm: float | None = 10.0
    seed: int = 0
    device: str = "cpu"
    check_every: int = 50  # steps between reads of the losses (a NaN stops training at the next read)
    warmup_steps: int = 0  # the learning rate rises linearly to lr over the first steps (0: from the first step)
    lr_decay: float = 1.0  # factor on the learning rate after each epoch without a better validation score (1: off)
    cosine_epochs: int = 0  # the learning rate falls by a half cosine to 0 over this many epochs, then training ends

    def __post_init__(self):
        if self.check_every < 1:
            raise ValueError(f"check_every must be >= 1, got {self.check_every}")
        if self.max_epochs < 1 or self.patience < 1:
            raise ValueError(f"max_epochs and patience must be >= 1, got {self.max_epochs}, {self.patience}")
        if self.n_negatives < 1 or self.batch_size < 1:
            raise ValueError(f"n_negatives and batch_size must be >= 1, got {self.n_negatives}, {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1] (1: no decay), got {self.lr_decay}")
        if self.cosine_epochs < 0:
            raise ValueError(f"cosine_epochs must be >= 0 (0: no cosine decay), got {self.cosine_epochs}")
        low, high = self.min_steps_per_epoch, self.max_steps_per_epoch
        if low is not None and (low < 1 or (high is not None and low > high)):
            raise ValueError(f"min_steps_per_epoch must be >= 1 and <= max_steps_per_epoch ({high}), got {low}")

    def steps_per_epoch(self, batches: int) -> int:
        """The steps of an epoch over ``batches`` batches of data: at most ``max_steps_per_epoch``, at least
        ``min_steps_per_epoch`` (a validation period, not one pass, on data smaller than that)."""
        steps = min(batches, self.max_steps_per_epoch or batches)
        return max(steps, self.min_steps_per_epoch or steps)

    @property
    def last_epoch(self) -> int:
        """The epoch count training cannot pass: ``max_epochs``, or the end of the cosine schedule if sooner."""
        return min(self.max_epochs, self.cosine_epochs) if self.cosine_epochs else self.max_epochs


def learning_rate_factor(config: OptimConfig, step: int, decays: int, steps_per_epoch: int | None = None) -> float:
    """The factor on every parameter group's base learning rate at global ``step`` (from 0), after ``decays``
    epochs without a better validation score: a linear warm-up over ``warmup_steps`` (Vaswani et al. 2017, 5.3;
    Adam's early moment estimates are noisy) times ``lr_decay ** decays`` (the rate lowered on each plateau of the
    selection criterion, torch's ReduceLROnPlateau with patience 0) times, with ``cosine_epochs``, a half cosine from
    1 to 0 over that many epochs of ``steps_per_epoch`` (Loshchilov & Hutter 2017, SGDR without restarts: the rate
    is high while the model is far from a minimum, and falls to 0 so the last steps settle instead of rattling at a
    constant rate's noise floor). A pure function of the step and the training state, so a resumed run continues
    the same schedule (docs/DESIGN.md, "Time to quality")."""
    warm = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
    factor = warm * config.lr_decay ** decays
    if config.cosine_epochs:
        assert steps_per_epoch, "a cosine schedule needs the steps of an epoch"
        progress = min(1.0, step / (config.cosine_epochs * steps_per_epoch))
        factor *= 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


def learning_rate_schedule(optimizers: list[torch.optim.Optimizer], config: OptimConfig,
                           state: dict) -> Callable[[int, int], None]:
    """``schedule(step, steps_per_epoch)`` for ``run_epoch_steps``: sets each group's learning rate to its base rate
    (kept as ``initial_lr`` in the group, so it travels with the optimiser's checkpoint) times
    ``learning_rate_factor``, which it keeps in ``state["lr_step_factor"]`` (the epoch's record takes the last
    step's: with a warm-up or a cosine the rate moves within an epoch)."""

    def schedule(step: int, steps_per_epoch: int) -> None:
        factor = learning_rate_factor(config, step, state.get("lr_decays", 0), steps_per_epoch)
        state["lr_step_factor"] = factor
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
                group["lr"] = group["initial_lr"] * factor

    return schedule


class _Interrupt:
    """Whether Ctrl-C (SIGINT) came during training. Python drops a KeyboardInterrupt that is raised while a
    finaliser runs (a generator closed, a file released), so the loop raises it again at its next step."""

    requested = False

    @staticmethod
    def handler(signum, frame):
        _Interrupt.requested = True
        raise KeyboardInterrupt

    @staticmethod
    def check() -> None:
        if _Interrupt.requested:
            raise KeyboardInterrupt


@contextlib.contextmanager
def interruptible():
    """Ctrl-C raises KeyboardInterrupt within the block, and again at each later step should the first be dropped
    (the default SIGINT handler is restored after; only the main thread installs handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _Interrupt.requested = False
    previous = signal.signal(signal.SIGINT, _Interrupt.handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _Interrupt.requested = False


def training_windows(data: MultiDomainData, first_n: int | None = None):
    """Windows of every domain's training users (optionally only their first ``first_n`` interactions)."""
    return [d.windows(d.users_in("train"), data.sequences, first_n=first_n) for d in data.domains]


def training_targets(windows) -> int:
    """The observed next items of training ``windows`` (every domain's): N_obs, the unit of per-observation
    priors."""
    return sum(int(w.target_mask.sum()) for w in windows)


def run_epoch_steps(step: Callable[[int, np.ndarray, torch.Generator], Tensor], sampler: DomainBalancedSampler,
                    config: OptimConfig, epoch: int, parallel: Distributed = SINGLE,
                    schedule: Callable[[int, int], None] | None = None) -> float:
    """One epoch of ``step(domain, rows, generator)`` (the step's detached loss, left on its device) over the
    sampler's batches (``config.steps_per_epoch``), with a progress bar; the mean loss. The losses are read back
    ``check_every`` steps at a time, one host-device sync each: a non-finite loss stops training then, naming its
    step. Seeded by (seed, epoch): dropout, guide draws and sampled negatives repeat exactly when an epoch is rerun
    (resume). Across processes, ``step`` returns this rank's share of the loss and the losses read are their sums
    (the same on every rank, so a NaN stops every rank at the same read). ``schedule(global_step, steps_per_epoch)``,
    when given, runs before each step (``learning_rate_schedule``)."""
    seed = config.seed * 100_003 + epoch
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    n_steps = config.steps_per_epoch(len(sampler))
    losses, pending = [], []
    progress = progress_bar(sampler.epoch(epoch, n_steps), total=n_steps, desc=f"epoch {epoch}", leave=False)
    for index, (domain, rows) in enumerate(progress):
        _Interrupt.check()
        if index >= n_steps:
            break
        if schedule is not None:
            schedule(epoch * n_steps + index, n_steps)
        pending.append(torch.as_tensor(step(domain, rows, generator)))
        if len(pending) == config.check_every or index == n_steps - 1:
            losses += checked_losses(pending, epoch, first_step=index + 1 - len(pending), parallel=parallel)
            pending = []
            progress.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", refresh=False)
    progress.close()
    return float(np.mean(losses))


def checked_losses(losses: list[Tensor], epoch: int, first_step: int,
                   parallel: Distributed = SINGLE) -> list[float]:
    """The scalar ``losses`` of consecutive steps (summed over the ranks) as floats (one sync); FloatingPointError
    at the first that is not finite."""
    values = parallel.sum(torch.stack([loss.float().to(losses[0].device) for loss in losses])).tolist()
    for offset, value in enumerate(values):
        if not math.isfinite(value):
            raise FloatingPointError(f"training loss became {value} at step {first_step + offset} of epoch {epoch}; "
                                     "lower the learning rate or check the data for degenerate sequences")
    return values


def loss_trend(history: list[dict], window: int = 10) -> dict | None:
    """How much the training loss still moves: the least-squares slope of the last ``window`` + 1 epochs' losses
    over their mean, i.e. the relative change per epoch (negative: falling; a fit, because a loss that is read one
    epoch at a time is noisy), the epochs it covers, and whether it is under ``FLAT`` in size. None before
    ``window`` + 1 epochs."""
    if len(history) <= window:
        return None
    losses = np.array([record["loss"] for record in history[-window - 1:]])
    slope = np.polyfit(np.arange(len(losses)), losses, 1)[0]
    change = float(slope / abs(losses.mean()))
    return {"relative_change_per_epoch": change, "epochs": [history[-window - 1]["epoch"], history[-1]["epoch"]],
            "flat": abs(change) < FLAT}


FLAT = 0.002  # |relative change of the training loss per epoch| under which ``loss_trend`` calls it flat


def convergence(state: dict, config: OptimConfig) -> dict:
    """Why training stopped and where: "patience" (``patience`` epochs without a better validation score: converged
    by the method's own criterion), "schedule" (the end of the cosine schedule, where the learning rate reaches 0:
    the parameters cannot move further), "cap" (``max_epochs`` reached while still improving within the patience:
    not converged), else "running"; with the best and the last epoch and the limits."""
    if state["bad_epochs"] >= config.patience:
        reason = "patience"
    elif config.cosine_epochs and state["epoch"] >= config.cosine_epochs:
        reason = "schedule"
    elif state["epoch"] >= config.max_epochs:
        reason = "cap"
    else:
        reason = "running"
    return {"stopped_by": reason, "epochs_run": state["epoch"], "best_epoch": state["best_epoch"],
            "patience": config.patience, "max_epochs": config.max_epochs, "cosine_epochs": config.cosine_epochs,
            "max_steps_per_epoch": config.max_steps_per_epoch, "min_steps_per_epoch": config.min_steps_per_epoch}


def new_state() -> dict:
    """The state of ``fit_epochs`` before the first epoch (saved in checkpoints as it is)."""
    return {"epoch": 0, "best_score": -math.inf, "best_epoch": -1, "bad_epochs": 0, "lr_decays": 0, "history": []}


def fit_epochs(run_epoch: Callable[[int], float], validate: Callable[[], dict] | None, config: OptimConfig,
               state: dict, on_epoch: Callable[[bool], None], name: str = "training",
               parallel: Distributed = SINGLE) -> dict:
    """Epochs from ``state["epoch"]`` until ``last_epoch`` or ``patience`` epochs without a better validation
    ``"score"`` (``-loss`` without ``validate``). Each epoch's record (epoch, loss, seconds, the validation's keys) is
    appended to ``state["history"]``; ``on_epoch(improved)`` follows each (checkpoints, the best weights). Across
    processes, rank 0 validates and every rank takes its record, so all stop at the same epoch."""
    with interruptible():
        while state["epoch"] < config.last_epoch and state["bad_epochs"] < config.patience:
            _Interrupt.check()
            _fit_epoch(run_epoch, validate, config, state, on_epoch, name, parallel)
    return state


def _fit_epoch(run_epoch, validate, config: OptimConfig, state: dict, on_epoch, name: str,
               parallel: Distributed) -> None:
    """One epoch of ``fit_epochs``: train, validate (rank 0, broadcast), record, then ``on_epoch``."""
    epoch, started = state["epoch"], time.perf_counter()
    record = {"epoch": epoch, "lr_factor": config.lr_decay ** state.get("lr_decays", 0), "loss": run_epoch(epoch),
              "seconds": time.perf_counter() - started}
    if "lr_step_factor" in state:  # the factor of the epoch's last step (warm-up, plateaus and cosine together)
        record["lr_last_step_factor"] = state["lr_step_factor"]
    validated = time.perf_counter()
    record.update(parallel.broadcast(validate() if validate and parallel.is_main else None)
                  if validate else {"score": -record["loss"]})
    record["validation_seconds"] = time.perf_counter() - validated  # wall clock = seconds + validation_seconds
    improved = record["score"] > state["best_score"]
    state["history"].append(record)
    state["epoch"] = epoch + 1
    if improved:
        state.update(best_score=record["score"], best_epoch=epoch, bad_epochs=0)
    else:
        state["bad_epochs"] += 1
        state["lr_decays"] = state.get("lr_decays", 0) + (config.lr_decay < 1)
    logger.info("%s epoch %d: %s", name, epoch, {k: round(v, 5) if isinstance(v, float) else v
                                                 for k, v in record.items()})
    on_epoch(improved)

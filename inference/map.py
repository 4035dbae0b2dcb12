"""MAP inference (Eq. 7) with SVI: ``Trace_ELBO`` under a Delta guide is the log joint up to a constant.

The loss is scaled by 1/N_obs (the number of observed next items in the training data, docs/DESIGN.md pitfall 6).
Networks and dense guide tables are trained with Adam; the sparse Delta guide's user table with SparseAdam. Each epoch
is followed by a validation pass (mean r-NDCG@K% over the sources' validation users) that drives early stopping and
the choice of ``best.pt``; ``last.pt`` lets an interrupted run resume where it stopped.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from torch import Tensor

from prerec_pyro.data.batches import BatchBuilder, DomainBalancedSampler
from prerec_pyro.data.dataset import MultiDomainData
from prerec_pyro.models.prerec import PreRecModel
from prerec_pyro.progress import progress_bar

from .checkpoint import load_checkpoint, save_checkpoint, save_json
from .guides import SparseDeltaGuide, check_guide, scale_parameters, svi_model

logger = logging.getLogger(__name__)
LIKELIHOODS = ("sampled", "full")
ELBOS = ("trace", "meanfield")


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
    grad_clip_norm: float | None = 10.0
    seed: int = 0
    device: str = "cpu"
    check_every: int = 50  # steps between reads of the losses (a NaN stops training at the next read)

    def __post_init__(self):
        if self.check_every < 1:
            raise ValueError(f"check_every must be >= 1, got {self.check_every}")
        if self.max_epochs < 1 or self.patience < 1:
            raise ValueError(f"max_epochs and patience must be >= 1, got {self.max_epochs}, {self.patience}")
        if self.n_negatives < 1 or self.batch_size < 1:
            raise ValueError(f"n_negatives and batch_size must be >= 1, got {self.n_negatives}, {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


@dataclass(frozen=True)
class TrainConfig(OptimConfig):
    """MAP (or variational) training: ``likelihood`` "sampled" (softmax over the positive and shared negatives) or
    "full"; ``elbo`` "trace" (``Trace_ELBO``: the log joint under a Delta guide) or "meanfield"
    (``TraceMeanField_ELBO``: the Gaussian KLs of a mean-field guide in closed form, a lower-variance gradient for its
    scales); ``scale_lr`` the learning rate of a variational guide's scale parameters (None: ``lr``)."""

    likelihood: str = "sampled"
    elbo: str = "trace"
    scale_lr: float | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if self.elbo not in ELBOS:
            raise ValueError(f"elbo must be one of {ELBOS}, got {self.elbo!r}")
        if self.scale_lr is not None and not self.scale_lr > 0:
            raise ValueError(f"scale_lr must be > 0 (or None: lr), got {self.scale_lr}")


def training_windows(data: MultiDomainData, first_n: int | None = None):
    """Windows of every domain's training users (optionally only their first ``first_n`` interactions)."""
    return [d.windows(d.users_in("train"), data.sequences, first_n=first_n) for d in data.domains]


def run_epoch_steps(step: Callable[[int, np.ndarray, torch.Generator], Tensor], sampler: DomainBalancedSampler,
                    config: OptimConfig, epoch: int) -> float:
    """One epoch of ``step(domain, rows, generator)`` (the step's detached loss, left on its device) over the
    sampler's batches (at most ``max_steps_per_epoch``), with a progress bar; the mean loss. The losses are read back
    ``check_every`` steps at a time, one host-device sync each: a non-finite loss stops training then, naming its
    step. Seeded by (seed, epoch): dropout, guide draws and sampled negatives repeat exactly when an epoch is rerun
    (resume)."""
    seed = config.seed * 100_003 + epoch
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    n_steps = min(len(sampler), config.max_steps_per_epoch or len(sampler))
    losses, pending = [], []
    progress = progress_bar(sampler.epoch(epoch), total=n_steps, desc=f"epoch {epoch}", leave=False)
    for index, (domain, rows) in enumerate(progress):
        if index >= n_steps:
            break
        pending.append(torch.as_tensor(step(domain, rows, generator)))
        if len(pending) == config.check_every or index == n_steps - 1:
            losses += checked_losses(pending, epoch, first_step=index + 1 - len(pending))
            pending = []
            progress.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", refresh=False)
    progress.close()
    return float(np.mean(losses))


def checked_losses(losses: list[Tensor], epoch: int, first_step: int) -> list[float]:
    """The scalar ``losses`` of consecutive steps as floats (one sync); FloatingPointError at the first that is not
    finite."""
    values = torch.stack([loss.float().to(losses[0].device) for loss in losses]).tolist()
    for offset, value in enumerate(values):
        if not math.isfinite(value):
            raise FloatingPointError(f"training loss became {value} at step {first_step + offset} of epoch {epoch}; "
                                     "lower the learning rate or check the data for degenerate sequences")
    return values


def map_loss(model, guide, *args) -> Tensor:
    """-ELBO = E_q[log q(z) - log p(x, z)] with one draw of a guide whose sample sites are all reparameterised (Delta,
    Normal, low-rank MVN): ``Trace_ELBO``'s differentiable loss, without the float copy of every site's log-density
    that it also takes (a host-device sync each). Shapes and the model-guide match are checked by ``Trace_ELBO``
    on a trainer's first step."""
    guide_trace = poutine.trace(guide).get_trace(*args)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args)
    return guide_trace.log_prob_sum() - model_trace.log_prob_sum()


class MapTrainer:
    """Fits ``model`` and ``guide`` on the training users of ``data``; ``validate()`` returns a dict with the
    early-stopping ``"score"`` (higher is better)."""

    _checked = False  # whether a step went through Pyro's validated ELBO (see ``loss``)

    def __init__(self, model: PreRecModel, guide, data: MultiDomainData, config: TrainConfig,
                 validate: Callable[[], dict] | None = None, run_dir: Path | None = None,
                 first_n: int | None = None):
        check_guide(guide)
        self.model, self.guide, self.data, self.config = model, guide, data, config
        self.validate, self.run_dir = validate, Path(run_dir) if run_dir else None
        self.windows = training_windows(data, first_n)
        self.n_obs = sum(int(w.target_mask.sum()) for w in self.windows)
        self.n_sequences = sum(len(w) for w in self.windows)  # the "sequences" plate: every domain's windows
        if self.n_obs == 0:
            raise ValueError("no training interactions: every domain's training users are empty")
        self.sampler = DomainBalancedSampler(self.windows, config.batch_size, config.seed)
        n_neg = config.n_negatives if config.likelihood == "sampled" else None
        self.builder = BatchBuilder(data, n_negatives=n_neg, device=config.device)
        model.set_observation_count(self.n_obs)  # the unit of per-observation priors
        scale = 1.0 / self.n_obs
        self.scaled_model = poutine.scale(svi_model(model), scale=scale)
        self.scaled_guide = poutine.scale(guide, scale=scale)
        self.elbo = TraceMeanField_ELBO() if config.elbo == "meanfield" else Trace_ELBO()
        self.state = {"epoch": 0, "best_score": -math.inf, "best_epoch": -1, "bad_epochs": 0, "history": []}
        self._optimizers = None
        self._best = None

    def _batch(self, domain: int, rows: np.ndarray, generator: torch.Generator):
        return self.builder.make(domain, self.windows[domain].select(rows), generator, n_sequences=self.n_sequences)

    def _setup(self) -> None:
        """Create the guide's parameters (autoguides build them on first call) and the optimisers."""
        if self._optimizers is not None:
            return
        domain, rows = next(self.sampler.epoch(0))
        self.guide(self._batch(domain, rows, torch.Generator().manual_seed(0)))
        sparse = self.guide.sparse_parameters() if isinstance(self.guide, SparseDeltaGuide) else []
        scales = scale_parameters(self.guide)
        dense = list(self.model.parameters()) + [p for p in self.guide.parameters() if p.requires_grad
                                                 and all(p is not s for s in sparse + scales)]
        groups = [{"params": dense}] + ([{"params": scales, "lr": self.config.scale_lr or self.config.lr}]
                                        if scales else [])
        self._optimizers = [torch.optim.Adam(groups, lr=self.config.lr)]
        if sparse:
            self._optimizers.append(torch.optim.SparseAdam(sparse, lr=self.config.lr))

    def loss(self, batch) -> Tensor:
        """The scaled -ELBO of ``batch``. The first call goes through Pyro's ``Trace_ELBO`` (or
        ``TraceMeanField_ELBO``) with validation on; later ``trace`` ELBOs through ``map_loss`` with validation off,
        so a step makes no host-device sync of its own."""
        if self.config.elbo == "meanfield" or not self._checked:
            self._checked = True
            return self.elbo.differentiable_loss(self.scaled_model, self.scaled_guide, batch)
        with pyro.validation_enabled(False):
            return map_loss(self.scaled_model, self.scaled_guide, batch)

    def step(self, batch) -> Tensor:
        """One optimiser step; the detached loss, still on the device (``run_epoch_steps`` checks it)."""
        loss = self.loss(batch)
        for opt in self._optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip_norm:
            dense = [p for group in self._optimizers[0].param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(dense, self.config.grad_clip_norm)
        for opt in self._optimizers:
            opt.step()
        return loss.detach()

    def run_epoch(self, epoch: int) -> float:
        self.model.train()
        return run_epoch_steps(lambda domain, rows, generator: self.step(self._batch(domain, rows, generator)),
                               self.sampler, self.config, epoch)

    def fit(self, resume: bool = False) -> dict:
        """Train until ``max_epochs`` or ``patience`` epochs without a better validation score."""
        self._setup()
        if resume:
            self.load(self.run_dir / "last.pt")
        while self.state["epoch"] < self.config.max_epochs and self.state["bad_epochs"] < self.config.patience:
            epoch, started = self.state["epoch"], time.perf_counter()
            loss = self.run_epoch(epoch)
            record = {"epoch": epoch, "loss": loss, "seconds": time.perf_counter() - started}
            record.update(self.validate() if self.validate else {"score": -loss})
            self._update_best(record)
            logger.info("epoch %d: %s", epoch, {k: round(v, 5) if isinstance(v, float) else v
                                                 for k, v in record.items()})
        if self.run_dir and (self.run_dir / "best.pt").exists():
            self.load(self.run_dir / "best.pt", optimizers=False)
        elif self._best is not None:
            self.model.load_state_dict(self._best["model"])
            self.guide.load_state_dict(self._best["guide"])
        return self.state

    def _update_best(self, record: dict) -> None:
        state = self.state
        state["history"].append(record)
        state["epoch"] = record["epoch"] + 1
        if record["score"] > state["best_score"]:
            state.update(best_score=record["score"], best_epoch=record["epoch"], bad_epochs=0)
            if self.run_dir:
                save_checkpoint(self.run_dir / "best.pt", self.checkpoint())
            else:  # keep the best weights in memory
                self._best = copy.deepcopy({"model": self.model.state_dict(), "guide": self.guide.state_dict()})
        else:
            state["bad_epochs"] += 1
        if self.run_dir:
            save_checkpoint(self.run_dir / "last.pt", self.checkpoint())
            save_json(self.run_dir / "history.json", {**state, "config": asdict(self.config), "n_obs": self.n_obs})

    def checkpoint(self) -> dict:
        return {"model": self.model.state_dict(), "guide": self.guide.state_dict(),
                "optimizers": [opt.state_dict() for opt in self._optimizers], "state": dict(self.state)}

    def load(self, path: Path, optimizers: bool = True) -> None:
        ckpt = load_checkpoint(path, self.config.device)
        self.model.load_state_dict(ckpt["model"])
        self.guide.load_state_dict(ckpt["guide"])
        if optimizers:
            for opt, opt_state in zip(self._optimizers, ckpt["optimizers"]):
                opt.load_state_dict(opt_state)
            self.state = ckpt["state"]
        logger.info("loaded %s (epoch %d)", path, ckpt["state"]["epoch"])

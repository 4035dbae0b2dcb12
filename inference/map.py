"""MAP inference (Eq. 7) with SVI: ``Trace_ELBO`` under a Delta guide is the log joint up to a constant.

The loss is scaled by 1/N_obs (the number of observed next items in the training data, docs/DESIGN.md pitfall 6).
Networks and dense guide tables are trained with Adam; the sparse Delta guide's user table with SparseAdam. Each epoch
is followed by a validation pass (mean r-NDCG@K% over the sources' validation users) that drives early stopping and
the choice of ``best.pt``; ``last.pt`` lets an interrupted run resume where it stopped. Under ``torchrun`` each rank
fits its users' share of every batch (``RankShare``) and DistributedDataParallel averages the gradients.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from pyro.poutine.messenger import Messenger
from torch import Tensor

from prerec_pyro.data.batches import BatchBuilder, DomainBalancedSampler, PreRecBatch
from prerec_pyro.data.dataset import MultiDomainData
from prerec_pyro.distributed import SINGLE, Distributed, LossModule
from prerec_pyro.models.prerec import PreRecModel
from prerec_pyro.training import (
    OptimConfig,
    fit_epochs,
    learning_rate_schedule,
    new_state,
    run_epoch_steps,
    training_targets,
    training_windows,
)

from .checkpoint import load_checkpoint, save_checkpoint, save_json
from .guides import SparseDeltaGuide, check_guide, scale_parameters, svi_model

logger = logging.getLogger(__name__)
LIKELIHOODS = ("sampled", "full")
ELBOS = ("trace", "meanfield")


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


def map_loss(model, guide, *args) -> Tensor:
    """-ELBO = E_q[log q(z) - log p(x, z)] with one draw of a guide whose sample sites are all reparameterised (Delta,
    Normal, low-rank MVN): ``Trace_ELBO``'s differentiable loss, without the float copy of every site's log-density
    that it also takes (a host-device sync each). Shapes and the model-guide match are checked by ``Trace_ELBO``
    on a trainer's first step."""
    guide_trace = poutine.trace(guide).get_trace(*args)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args)
    return guide_trace.log_prob_sum() - model_trace.log_prob_sum()


class RankShare(Messenger):
    """Scales every site's log-density to this rank's share of the global batch, so that the shares of all ranks
    sum to the one-process loss: sites in the "sequences" plate by R_rank / R_batch and in the "users" plate by
    U_rank / U_batch (the plates' own subsample scales count only this rank's rows and users), every other site
    (the global latents, the same on every rank) by 1 / world."""

    def __init__(self, sequences: float, users: float, world_size: int):
        super().__init__()
        self.factors = {"sequences": sequences, "users": users}
        self.others = 1.0 / world_size

    def _process_message(self, msg):
        plates = {frame.name for frame in msg["cond_indep_stack"]}
        factor = next((f for name, f in self.factors.items() if name in plates), self.others)
        msg["scale"] = factor * msg["scale"]


class MapTrainer:
    """Fits ``model`` and ``guide`` on the training users of ``data``; ``validate()`` returns a dict with the
    early-stopping ``"score"`` (higher is better)."""

    _checked = False  # whether a step went through Pyro's validated ELBO (see ``loss``)
    _objective = None  # the loss as a module, under DistributedDataParallel across processes (set by ``_setup``)
    parallel = SINGLE

    def __init__(self, model: PreRecModel, guide, data: MultiDomainData, config: TrainConfig,
                 validate: Callable[[], dict] | None = None, run_dir: Path | None = None,
                 first_n: int | None = None, parallel: Distributed = SINGLE):
        check_guide(guide)
        self.parallel = parallel
        self.model, self.guide, self.data, self.config = model, guide, data, config
        self.validate, self.run_dir = validate, Path(run_dir) if run_dir else None
        self.windows = training_windows(data, first_n)
        self.n_obs = training_targets(self.windows)
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
        self.state = new_state()
        self._optimizers = None
        self._best = None

    def _batch(self, domain: int, rows: np.ndarray, generator: torch.Generator) -> PreRecBatch:
        """The batch of ``rows`` (of this rank's users across processes; see ``make_batch``)."""
        return self.make_batch(domain, rows, generator)[0]

    def make_batch(self, domain: int, rows: np.ndarray,
                   generator: torch.Generator) -> tuple[PreRecBatch, tuple[float, float] | None]:
        """The batch of ``rows`` (this rank's users' rows of it across processes) and this rank's (sequences,
        users) shares of the global batch (None for one process; ``Distributed.shard``). Every rank draws the same
        negatives; a rank that owns none of the rows adds only its part of the global sites."""
        windows = self.windows[domain].select(rows)
        if not self.parallel.enabled:
            return self.builder.make(domain, windows, generator, n_sequences=self.n_sequences), None
        keep, shares = self.parallel.shard(self.data.user_rows[domain][windows.user])
        return self.builder.make(domain, windows.select(keep), generator, n_sequences=self.n_sequences), shares

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
        # the sparse user table stays rank-local: each rank owns its users' rows (gathered for checkpoints)
        ignore = tuple(f"guide.{name}" for name, p in self.guide.named_parameters() if any(p is s for s in sparse))
        self._objective = self.parallel.wrap(LossModule(self.loss, model=self.model, guide=self.guide), ignore)

    def loss(self, batch: PreRecBatch, shares: tuple[float, float] | None = None) -> Tensor:
        """The scaled -ELBO of ``batch`` (this rank's share of it, given the rank's ``shares``). The first call goes
        through Pyro's ``Trace_ELBO`` (or ``TraceMeanField_ELBO``) with validation on; later ``trace`` ELBOs through
        ``map_loss`` with validation off, so a step makes no host-device sync of its own."""
        model, guide = self.scaled_model, self.scaled_guide
        if shares is not None:  # one handler each: a messenger is entered once at a time
            model = RankShare(*shares, self.parallel.world_size)(model)
            guide = RankShare(*shares, self.parallel.world_size)(guide)
        if self.config.elbo == "meanfield" or not self._checked:
            self._checked = True
            return self.elbo.differentiable_loss(model, guide, batch)
        with pyro.validation_enabled(False):
            return map_loss(model, guide, batch)

    def step(self, batch: PreRecBatch, shares: tuple[float, float] | None = None) -> Tensor:
        """One optimiser step; the detached loss (this rank's share), still on the device (``run_epoch_steps``
        checks it); ``Distributed.backward`` turns the share into the whole batch's gradient."""
        loss = (self.loss if self._objective is None else self._objective)(batch, shares)
        for opt in self._optimizers:
            opt.zero_grad(set_to_none=True)
        self.parallel.backward(loss, self._sparse_parameters())
        if self.config.grad_clip_norm:
            dense = [p for group in self._optimizers[0].param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(dense, self.config.grad_clip_norm)
        for opt in self._optimizers:
            opt.step()
        return loss.detach()

    def run_epoch(self, epoch: int) -> float:
        self.model.train()
        return run_epoch_steps(lambda domain, rows, generator: self.step(*self.make_batch(domain, rows, generator)),
                               self.sampler, self.config, epoch, self.parallel,
                               learning_rate_schedule(self._optimizers, self.config, self.state))

    def fit(self, resume: bool = False) -> dict:
        """Train until ``last_epoch`` (the cap, or the end of a cosine schedule) or ``patience`` epochs without a
        better validation score."""
        self._setup()
        if resume:
            self.load(self.run_dir / "last.pt")
        fit_epochs(self.run_epoch, self.validate, self.config, self.state, self._after_epoch, "PreRec", self.parallel)
        if self.run_dir and (self.run_dir / "best.pt").exists():
            self.load(self.run_dir / "best.pt", optimizers=False)
        elif self._best is not None:
            self.model.load_state_dict(self._best["model"])
            self.guide.load_state_dict(self._best["guide"])
        return self.state

    def _after_epoch(self, improved: bool) -> None:
        """``best.pt`` (or the best weights in memory) when the epoch improved; ``last.pt`` and the history. Across
        processes the user table is gathered first and rank 0 writes, the others waiting for it."""
        self._gather_users()
        if self.run_dir and not self.parallel.is_main:
            self.parallel.barrier()
            return
        if improved and self.run_dir:
            save_checkpoint(self.run_dir / "best.pt", self.checkpoint())
        elif improved:
            self._best = copy.deepcopy({"model": self.model.state_dict(), "guide": self.guide.state_dict()})
        if self.run_dir:
            save_checkpoint(self.run_dir / "last.pt", self.checkpoint())
            save_json(self.run_dir / "history.json", {**self.state, "config": asdict(self.config),
                                                      "n_obs": self.n_obs})
            self.parallel.barrier()

    def _gather_users(self) -> None:
        """Across processes: every rank's copy of the sparse user table (and its SparseAdam moments) takes each row
        from the rank that owns it."""
        if not self.parallel.enabled or len(self._optimizers) < 2:
            return
        state = self._optimizers[1].state
        with torch.no_grad():
            for param in self._sparse_parameters():
                self.parallel.gather_owned(param.data)
                for key in ("exp_avg", "exp_avg_sq"):
                    if key in state.get(param, {}):
                        self.parallel.gather_owned(state[param][key])

    def _sparse_parameters(self) -> list[Tensor]:
        """The parameters SparseAdam trains (the sparse Delta guide's user table), [] without."""
        if len(self._optimizers) < 2:
            return []
        return [p for group in self._optimizers[1].param_groups for p in group["params"]]

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

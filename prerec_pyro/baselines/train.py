"""Training and scoring of the learnable baselines (plain PyTorch: they are not probabilistic programs).

Training sees exactly what PreRec's MAP training sees: the windows of every domain's training users
(``training_windows``), domain-balanced batches (``DomainBalancedSampler``) built by the same ``BatchBuilder``.
Losses:

- ``"sampled"``: softmax over [positive, 255 negatives shared by the batch] (a negative equal to the target masked);
- ``"full"``: softmax over the domain's whole catalogue;
- ``"contrastive"``: UniSRec's in-batch loss: each target's positive against the positives of the batch's other
  targets (the batch holds one domain), a repeat of the same item masked so it is not its own negative.

Early stopping follows ``validate()`` (its ``"score"``, higher is better); the best weights are kept in memory and
restored at the end. Across ``torchrun`` processes (``parallel``) each rank trains its users' rows of every batch,
weighted by its share of the batch's targets, and DistributedDataParallel averages the gradients (the ``sampled``
and ``full`` losses; the in-batch ``contrastive`` loss does not split by rank).

Shape legend: R = sequences, L = positions, C = candidates, N = targets in a batch, B = embedding size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prerec_pyro.data.batches import BatchBuilder, DomainBalancedSampler, PreRecBatch
from prerec_pyro.data.dataset import MultiDomainData
from prerec_pyro.distributed import SINGLE, Distributed, LossModule
from prerec_pyro.evaluate import EvalConfig, evaluate_domain, summarize
from prerec_pyro.training import (
    OptimConfig,
    convergence,
    fit_epochs,
    learning_rate_schedule,
    new_state,
    run_epoch_steps,
    training_targets,
    training_windows,
)

from .sequential import SequentialRecommender

logger = logging.getLogger(__name__)
LOSSES = ("sampled", "full", "contrastive")


@dataclass(frozen=True)
class BaselineTrainConfig(OptimConfig):
    """The baselines' optimisation (PreRec's CPU-sized defaults: Adam 1e-3, batches of 64 sequences, 255
    negatives) and ``loss``, one of ``LOSSES``."""

    batch_size: int = 64
    lr: float = 1e-3
    loss: str = "sampled"

    def __post_init__(self):
        super().__post_init__()
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")


def next_item_loss(model: SequentialRecommender, batch: PreRecBatch) -> Tensor:
    """Mean cross-entropy of the observed next items (sampled: the positive is slot 0; full: the item index)."""
    logits = model.logits(batch)  # [R, L, C']
    mask = batch.target_mask  # [R, L]
    target = torch.zeros_like(batch.targets) if batch.negatives is not None else batch.targets  # [R, L]
    return F.cross_entropy(logits[mask], target[mask])


def in_batch_logits(scores: Tensor, rows: Tensor) -> Tensor:
    """Mask a column that holds the same item as the row's own positive (other than the diagonal). [N, N]"""
    same = rows.unsqueeze(1) == rows.unsqueeze(0)  # [N, N]
    same.fill_diagonal_(False)
    return scores.masked_fill(same, torch.finfo(scores.dtype).min)


def contrastive_loss(model: SequentialRecommender, batch: PreRecBatch) -> Tensor:
    """In-batch contrastive loss: target n's positive (column n) against the batch's other positives."""
    mask = batch.target_mask  # [R, L]
    users = model.user_states(batch)[mask]  # [N, B]
    rows = batch.items[mask]  # [N] global item rows of the positives
    scores = in_batch_logits(model.pair_scores(users, model.item_embedding(rows)), rows)  # [N, N]
    loss = F.cross_entropy(scores, torch.arange(len(rows), device=scores.device))
    return loss + model.auxiliary_loss(batch, users)


def batch_loss(model: SequentialRecommender, batch: PreRecBatch, loss: str) -> Tensor:
    """The training loss ``loss`` (one of ``LOSSES``) of one batch, plus the model's -log-prior terms in the same
    per-observation unit (ZESRec's offsets; none for the others)."""
    data_term = contrastive_loss(model, batch) if loss == "contrastive" else next_item_loss(model, batch)
    return data_term + model.negative_log_prior(batch)


class _Fitter:
    """One training run's state: windows, sampler, batch builder and optimiser (and, across processes, the model
    under DistributedDataParallel)."""

    def __init__(self, model: SequentialRecommender, data: MultiDomainData, config: BaselineTrainConfig,
                 first_n: int | None, params: list[nn.Parameter], parallel: Distributed = SINGLE):
        if parallel.enabled and config.loss == "contrastive":
            raise ValueError("the contrastive loss takes its negatives from the whole batch, so it does not split "
                             "across processes: train it in one process, or use loss='sampled'")
        self.model, self.config, self.data, self.parallel = model, config, data, parallel
        self.windows = training_windows(data, first_n)
        if training_targets(self.windows) == 0:
            raise ValueError("no training interactions: every domain's training users are empty")
        self.sampler = DomainBalancedSampler(self.windows, config.batch_size, config.seed)
        n_neg = config.n_negatives if config.loss == "sampled" else None
        self.builder = BatchBuilder(data, n_negatives=n_neg, device=config.device)
        self.params = params
        self.optimizer = torch.optim.Adam(params, lr=config.lr)
        self.state = new_state()  # fit_epochs's; the learning-rate schedule reads its plateaus
        self.objective = parallel.wrap(LossModule(self.loss, model=model))

    def loss(self, batch: PreRecBatch, share: float) -> Tensor:
        """The batch's loss times this rank's ``share`` of the global batch's targets (1 in one process)."""
        return batch_loss(self.model, batch, self.config.loss) * share

    def make_batch(self, domain: int, rows: np.ndarray, generator: torch.Generator) -> tuple[PreRecBatch, float]:
        """The batch of ``rows`` (this rank's users' rows across processes, ``Distributed.shard``) and its share of
        the targets."""
        windows = self.windows[domain].select(rows)
        if not self.parallel.enabled:
            return self.builder.make(domain, windows, generator), 1.0
        keep, (row_share, _) = self.parallel.shard(self.data.user_rows[domain][windows.user])
        share = 0.0 if row_share == 0 else windows.target_mask[keep].sum() / windows.target_mask.sum()
        return self.builder.make(domain, windows.select(keep), generator), float(share)

    def step(self, batch: PreRecBatch, share: float = 1.0) -> Tensor:
        """One optimiser step; the detached loss (this rank's share), still on the device (``run_epoch_steps``
        checks it); ``Distributed.backward`` turns the share into the whole batch's gradient."""
        loss = self.objective(batch, share)
        self.optimizer.zero_grad(set_to_none=True)
        self.parallel.backward(loss)
        if self.config.grad_clip_norm:
            torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip_norm)
        self.optimizer.step()
        return loss.detach()

    def run_epoch(self, epoch: int) -> float:
        self.model.train()
        return run_epoch_steps(lambda domain, rows, generator: self.step(*self.make_batch(domain, rows, generator)),
                               self.sampler, self.config, epoch, self.parallel,
                               learning_rate_schedule([self.optimizer], self.config, self.state))


def _trainable(model: nn.Module, trainable: Iterable[nn.Parameter] | None) -> list[nn.Parameter]:
    """The parameters to optimise (all by default), checked to belong to ``model``."""
    if trainable is None:
        return [p for p in model.parameters() if p.requires_grad]
    params, owned = list(trainable), {id(p) for p in model.parameters()}
    if not params:
        raise ValueError("trainable is empty: nothing to fit")
    if any(id(p) not in owned for p in params):
        raise ValueError("trainable holds a parameter that is not one of the model's parameters")
    return params


def fit_baseline(model: SequentialRecommender, data: MultiDomainData, config: BaselineTrainConfig,
                 validate: Callable[[], dict] | None = None, first_n: int | None = None,
                 trainable: Iterable[nn.Parameter] | None = None, parallel: Distributed = SINGLE,
                 resume: dict | None = None, on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
    """Train ``model`` on the training users of ``data`` (its text vectors must be ``data``'s global rows), across
    the processes of ``parallel`` when given (rank 0 validates).

    Early-stops after ``patience`` epochs without a better ``validate()["score"]`` (``-loss`` without
    ``validate``) and restores the best weights. ``first_n`` keeps only the first interactions (incremental
    fine-tuning); ``trainable`` restricts the optimised parameters (the others are frozen while fitting).
    ``on_epoch(snapshot)`` follows every epoch (on rank 0) with what continuing needs: the weights, the optimiser,
    the loop's state and the best weights so far, as live references that training goes on changing (serialise
    them at once, e.g. ``save_checkpoint``); ``resume`` is such a snapshot to continue from (epochs are seeded
    by their index, so a resumed run repeats the uninterrupted one).
    Returns one record per epoch: epoch, loss, seconds, score and whatever ``validate`` returned.
    """
    if model.n_items != data.n_items:
        raise ValueError(f"the model holds {model.n_items} text vectors but the data has {data.n_items} items; "
                         "call set_item_text with the text vectors of data.all_texts()")
    model.to(config.device)
    params = _trainable(model, trainable)
    keep = {id(p) for p in params}
    frozen = [p for p in model.parameters() if id(p) not in keep and p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        return _fit(_Fitter(model, data, config, first_n, params, parallel), validate, resume, on_epoch)
    finally:
        for p in frozen:
            p.requires_grad_(True)


def _fit(fitter: _Fitter, validate: Callable[[], dict] | None, resume: dict | None = None,
         on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
    """The shared epoch loop with early stopping on the validation score; restores the best state dict. The last
    record holds ``convergence`` (why training stopped, ``prerec_pyro.training.convergence``)."""
    model, best = fitter.model, {}
    if resume is not None:
        model.load_state_dict(resume["model"])
        fitter.optimizer.load_state_dict(resume["optimizer"])
        fitter.state.update(resume["state"])  # in place: the learning-rate schedule holds this dict
        best.update(resume["best"])
        logger.info("%s: continuing after epoch %d", type(model).__name__, fitter.state["epoch"] - 1)

    def keep_best(improved: bool) -> None:
        if improved:
            best["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if on_epoch is not None and fitter.parallel.is_main:
            on_epoch({"model": model.state_dict(), "optimizer": fitter.optimizer.state_dict(),
                      "state": fitter.state, "best": best})

    state = fit_epochs(fitter.run_epoch, validate, fitter.config, fitter.state, keep_best, type(model).__name__,
                       fitter.parallel)
    if best:
        model.load_state_dict(best["state"])
    state["history"][-1]["convergence"] = convergence(state, fitter.config)
    return state["history"]


class BaselineScorer:
    """The Scorer protocol for a trained baseline: logits over the domain's full catalogue. [R, L, J]"""

    def __init__(self, model: SequentialRecommender, name: str | None = None):
        self.model = model
        self.name = name if name is not None else model.label

    def __call__(self, batch: PreRecBatch) -> Tensor:
        if batch.negatives is not None:
            raise ValueError("BaselineScorer ranks the full catalogue; build the batch with n_negatives=None")
        self.model.eval()
        with torch.no_grad():
            return self.model.logits(batch)  # [R, L, J]


def validation_callback(model: SequentialRecommender, data: MultiDomainData,
                        eval_config: EvalConfig) -> Callable[[], dict]:
    """``validate()`` for ``fit_baseline``: mean r-NDCG@K% over the domains of ``data`` (``eval_config.split``)."""
    scorer = BaselineScorer(model)

    def validate() -> dict:
        per_domain = {d.name: summarize(evaluate_domain(scorer, data, k, eval_config), eval_config)
                      for k, d in enumerate(data.domains)}
        record = {f"{name}/rndcg@k%": m.get("rndcg@k%", 0.0) for name, m in per_domain.items()}
        record["score"] = sum(record.values()) / len(per_domain)
        return record

    return validate

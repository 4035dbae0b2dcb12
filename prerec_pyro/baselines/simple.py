"""Non-learnable baselines (the paper's Appendix B), as scorers for the evaluation harness.

- ``RandomScorer``: uniform random scores (a sampled check of the closed-form Random row).
- ``PopScorer``: the item's count in the previous interval (the same counts behind the popularity factors).
- ``SbertScorer``: inner product of the last history item's raw text vector with every item's.
- ``SbertPopScorer``: SBERT+POP, ``cos(X_last, X_j) + α·log(1 + F_j1)`` with F_j1 = c_j / s_1 the item's recent
  count relative to the domain's mean count (the factor POP ranks by, so one α serves a large source and a small
  target), α fitted on the sources' validation users by ``fit_sbert_pop`` (no target data): the rule a
  practitioner would try first, and the one a pre-trained model has to beat.

Shape legend: R = windows, L = positions, J = the domain's items, T = text dimension.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from prerec_pyro.data.batches import PreRecBatch
from prerec_pyro.data.dataset import MultiDomainData
from prerec_pyro.evaluate import EvalConfig, SampleRanks, batch_ranks, eval_batches, seen_mask, summarize

logger = logging.getLogger(__name__)
ALPHA_GRID = (0.0, 0.003, 0.01, 0.03, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 10.0)  # SBERT+POP's α, searched on sources


class RandomScorer:
    name = "Random (sampled)"

    def __init__(self, seed: int = 0):
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, batch: PreRecBatch) -> Tensor:
        shape = (*batch.items.shape, batch.n_domain_items)
        return torch.rand(shape, generator=self.generator).to(batch.items.device)  # [R, L, J]


class PopScorer:
    """Scores = c_j of the interval before each target (F_1 = c_j / s_1 orders items exactly as c_j does)."""

    name = "POP"

    def __call__(self, batch: PreRecBatch) -> Tensor:
        return batch.candidate_factors()[..., 0][batch.period_index]  # [R, L, J]


class SbertScorer:
    """Scores = X_last · X_j with X the frozen sentence vectors (rows in the same global order as the batch)."""

    name = "SBERT"

    def __init__(self, item_text: Tensor):
        self.item_text = item_text  # [J_all, T]

    def __call__(self, batch: PreRecBatch) -> Tensor:
        text = self.item_text.to(batch.items.device)
        last = text[batch.items]  # [R, L, T]: the item at p - 1 is the last history item of position p
        last = torch.cat([torch.zeros_like(last[:, :1]), last[:, :-1]], dim=1)  # [R, L, T]
        return last @ text[batch.candidate_rows].T  # [R, L, J]


class SbertPopScorer:
    """Scores = cos(X_last, X_j) + α·log(1 + F_j1) (see the module docstring); α = 0 ranks as ``SbertScorer`` with
    unit-norm text vectors."""

    name = "SBERT+POP"

    def __init__(self, item_text: Tensor, alpha: float):
        if not (np.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"SBERT+POP's alpha must be a finite number >= 0, got {alpha!r}")
        self.sbert, self.alpha = SbertScorer(F.normalize(item_text.float(), dim=-1)), float(alpha)

    def __call__(self, batch: PreRecBatch) -> Tensor:
        popularity = torch.log1p(PopScorer()(batch))  # [R, L, J]
        return self.sbert(batch) + self.alpha * popularity  # [R, L, J]


def fit_sbert_pop(sources: MultiDomainData, source_text: Tensor, config: EvalConfig,
                  grid: tuple[float, ...] = ALPHA_GRID) -> SbertPopScorer:
    """SBERT+POP with the α of ``grid`` that maximises the mean r-NDCG@K% over the source domains on
    ``config.split`` users (the sources' validation users; ties: the smallest α). ``source_text``: the sources'
    text vectors in their global row order. [J_all, T]"""
    if config.split == "test":
        raise ValueError("fit SBERT+POP's alpha on the sources' validation (or training) users, not on test users")
    config = replace(config, history_items=config.history_items[:1], n_boot=1)
    scores = sbert_pop_grid_scores(sources, source_text, config, grid)
    best = grid[int(np.argmax(scores))]
    logger.info("SBERT+POP: alpha %g (sources' %s r-NDCG@K%% %.4f; alpha 0: %.4f)", best, config.split, max(scores),
                scores[grid.index(0.0)] if 0.0 in grid else float("nan"))
    return SbertPopScorer(source_text, best)


@torch.no_grad()
def sbert_pop_grid_scores(sources: MultiDomainData, source_text: Tensor, config: EvalConfig,
                          grid: tuple[float, ...]) -> list[float]:
    """The mean r-NDCG@K% over the source domains of SBERT+POP at each α of ``grid`` (``config``'s split, its first
    history rule), in one pass over the evaluation's batches: each batch's SBERT and popularity scores are computed
    once and only the ranking is repeated per α. Equal to ``evaluate_domain`` with ``SbertPopScorer(text, α)``, α by
    α (the same sum, the same ranks; tested), at a fraction of the cost on long histories."""
    sbert, per_alpha = SbertScorer(F.normalize(source_text.float(), dim=-1)), {alpha: [] for alpha in grid}
    rule = config.history_items[0]
    for k, dom in enumerate(sources.domains):
        ranks, users = {alpha: [] for alpha in grid}, []
        for windows, batch in eval_batches(sources, k, config):
            keep = batch.target_mask.cpu().numpy()  # [R, L']
            text, popularity = sbert(batch), torch.log1p(PopScorer()(batch))  # [R, L', J] each
            seen = seen_mask(dom, windows, keep, config.device) if rule == "exclude" else None  # [T, J]
            for alpha in grid:
                scores = text + alpha * popularity  # [R, L', J]
                ranks[alpha].append(batch_ranks(lambda _, s=scores: s, batch, keep, dom.n_items, seen,
                                                (rule,))[rule].cpu().numpy())  # [T]
            users.append(np.broadcast_to(windows.user[:, None], keep.shape)[keep])  # [T]
        users = np.concatenate(users) if users else np.zeros(0, dtype=np.int64)
        for alpha in grid:
            values = np.concatenate(ranks[alpha]) if ranks[alpha] else np.zeros(0)
            result = SampleRanks(dom.name, dom.n_items, values, users, np.zeros(len(users), dtype=bool),
                                 history_ranks={rule: values})
            per_alpha[alpha].append(summarize(result, config).get("rndcg@k%", 0.0))
    return [float(np.mean(per_alpha[alpha])) for alpha in grid]

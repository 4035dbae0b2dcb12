"""Non-learnable baselines (the paper's Appendix B), as scorers for the evaluation harness.

- ``RandomScorer``: uniform random scores (a sampled check of the closed-form Random row).
- ``PopScorer``: the item's count in the previous interval (the same counts behind the popularity factors).
- ``SbertScorer``: inner product of the last history item's raw text vector with every item's.

Shape legend: R = windows, L = positions, J = the domain's items, T = text dimension.
"""

from __future__ import annotations

import torch
from torch import Tensor

from prerec_pyro.data.batches import PreRecBatch


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
        return batch.factors_candidates[..., 0][batch.period_index]  # [R, L, J]


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

"""Where a zero-shot score comes from: the terms of Eq. 8 switched off one at a time, and agreement with SBERT.

For a pre-trained model pointed at a target, the scorers here rank the same samples as the evaluation harness:

- ``WithoutPopularity``: Eq. 8 with every candidate's popularity factors F = 0, so Z_j = f_pop(0) is the same for
  every item: the text and sequence terms alone;
- ``TextHeadOnly``: the learned text head used the way SBERT uses raw vectors, f_e(X_last) · f_e(X_j): what the
  text head alone knows, without the Transformer's user state or popularity;
- ``SbertAgreement``: wraps a scorer and records, for every evaluated position, the Spearman rank correlation of
  its scores with SBERT's over the catalogue (``mean_correlation``).

They read what Eq. 8 reads (histories, the catalogue, the previous interval's counts) and nothing else.

Shape legend: R = windows, L = positions, J = the domain's items, B = embedding size.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from prerec_pyro.baselines.simple import SbertScorer
from prerec_pyro.data.batches import PreRecBatch
from prerec_pyro.models.prerec import PreRecModel


class WithoutPopularity:
    """A scorer's scores with every candidate's popularity factors set to 0 (F = 0: no recent count)."""

    def __init__(self, scorer):
        self.scorer, self.name = scorer, f"{scorer.name} without popularity"

    def __call__(self, batch: PreRecBatch) -> Tensor:
        return self.scorer(replace(batch, factors_candidates=torch.zeros_like(batch.factors_candidates)))


class TextHeadOnly:
    """f_e(X_last) · f_e(X_j): the run's text head as a similarity between the last history item and each item."""

    def __init__(self, model: PreRecModel, name: str = "text head only"):
        self.model, self.name = model, name

    @torch.no_grad()
    def __call__(self, batch: PreRecBatch) -> Tensor:
        self.model.eval()
        items = self.model.f_e(self.model.item_text[batch.items])  # [R, L, B]
        last = torch.cat([torch.zeros_like(items[:, :1]), items[:, :-1]], dim=1)  # [R, L, B]
        return last @ self.model.f_e(self.model.item_text[batch.candidate_rows]).T  # [R, L, J]


def _ranks(scores: Tensor) -> Tensor:
    """Ranks of each row's scores (ties broken by position: enough for a correlation over many items). [N, J]"""
    return scores.argsort(dim=-1).argsort(dim=-1).double()


def spearman(first: Tensor, second: Tensor) -> Tensor:
    """Row-wise Spearman rank correlation of two score matrices ``[N, J]``. [N]"""
    a, b = _ranks(first), _ranks(second)
    a, b = a - a.mean(-1, keepdim=True), b - b.mean(-1, keepdim=True)
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp(min=1e-12)


class SbertAgreement:
    """Passes ``scorer``'s scores through and records their rank correlation with SBERT at the target positions
    that have history (the evaluated ones)."""

    def __init__(self, scorer, item_text: Tensor):
        self.scorer, self.name, self.sbert = scorer, scorer.name, SbertScorer(item_text)
        self.correlations: list[Tensor] = []

    def __call__(self, batch: PreRecBatch) -> Tensor:
        scores = self.scorer(batch)  # [R, L, J]
        evaluated = batch.target_mask.clone()  # [R, L]
        evaluated[:, 0] = False  # position 0 has no history item to compare with
        if evaluated.any():
            self.correlations.append(spearman(scores[evaluated], self.sbert(batch)[evaluated]).cpu())
        return scores

    def mean_correlation(self) -> float:
        return float(torch.cat(self.correlations).mean()) if self.correlations else float("nan")

"""Scorers that turn the PreRec model into full-catalogue scores for the evaluation harness.

``MapScorer`` scores with the guide's point estimate of every latent site (MAP, or the posterior median for
AutoNormal): the in-domain scores of §3.4 of the paper (re-estimated D̂, Ẑ, V̂, Û). The zero-shot scorers that
intervene on the model live in ``inference.intervene``.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from pyro import poutine
from torch import Tensor

from prerec_pyro.data.batches import PreRecBatch
from prerec_pyro.models.prerec import EPS_U, PreRecModel

from .guides import latent_values


class MapScorer:
    """Scores = the model's logits with every latent fixed at the guide's point estimate."""

    def __init__(self, model: PreRecModel, guide, name: str = "PreRec"):
        self.model, self.guide, self.name = model, guide, name

    @torch.no_grad()
    def __call__(self, batch: PreRecBatch) -> Tensor:
        """Users outside the fitted ``users`` plate (validation, test) have no data behind their offset: it stays
        at its prior mean, eps_u = 0."""
        was_training = self.model.training
        self.model.eval()
        try:
            fitted = batch.user_index < self.model.n_users  # [U]
            batch = replace(batch, user_index=torch.where(fitted, batch.user_index, 0))
            values = self._point_estimates(batch, fitted)
            return poutine.condition(self.model, data=values)(batch)  # [R, L, J]
        finally:
            self.model.train(was_training)

    def _point_estimates(self, batch: PreRecBatch, fitted: Tensor) -> dict[str, Tensor]:
        """The guide's estimates, asked once per distinct fitted user (a subsampled plate must not be asked for
        more rows than it has); eps_u of users outside the plate is 0."""
        rows = torch.unique(batch.user_index[fitted])  # sorted
        rows = rows if len(rows) else batch.user_index[:1]
        values = latent_values(self.guide, replace(batch, user_index=rows), self.model)
        if EPS_U in values:
            table = values[EPS_U]  # [len(rows), B]
            position = torch.searchsorted(rows, batch.user_index)  # [U]
            values[EPS_U] = table[position] * fitted[:, None]  # [U, B]
        return values

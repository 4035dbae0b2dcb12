"""Scorers that turn the PreRec model into full-catalogue scores for the evaluation harness.

``MapScorer`` scores with the guide's point estimate of every latent site (MAP, or the posterior median of a
variational guide): the in-domain scores of §3.4 of the paper (re-estimated D̂, Ẑ, V̂, Û). ``PosteriorScorer`` is
the posterior predictive: the next-item distribution averaged over draws of the latents from the guide. The
zero-shot scorers that intervene on the model live in ``inference.intervene``.

Shape legend: R = rows (sequences), L = positions, A = target positions, J = catalogue items, U = batch users,
B = hidden size.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import replace

import torch
from pyro import poutine
from torch import Tensor

from prerec_pyro.data.batches import PreRecBatch
from prerec_pyro.models.prerec import EPS_U, PreRecModel

from .guides import latent_draw, latent_values


@contextmanager
def eval_mode(model: PreRecModel):
    """``model`` in eval mode (no dropout) inside the block, in its previous mode after it."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def latent_dict(model: PreRecModel, batch: PreRecBatch, condition: dict[str, Tensor] | None = None,
                do: dict[str, Tensor] | None = None) -> dict[str, Tensor | None]:
    """The values of the model's latent sites (``PreRecModel.latents``) under ``poutine.do(data=do)`` and
    ``poutine.condition(data=condition)``, hidden from any outer handler. ``do`` splits each site into the
    intervened node, whose value its children see, and the original node, which it samples from the prior again;
    conditioning that original node on the same values spares the draw (a [J, B] table per batch)."""
    latents = model.latents
    if do is not None:
        latents = poutine.condition(poutine.do(latents, data=do), data=do)
    if condition is not None:
        latents = poutine.condition(latents, data=condition)
    with poutine.block():
        return latents(batch)


def model_logits(model: PreRecModel, batch: PreRecBatch, latent: dict, at_targets: bool) -> Tensor:
    """The model's full-catalogue logits given its latent values: at the batch's target positions only ([A, J],
    ``PreRecModel.target_logits``) or in the observed site's layout ([R, L, J], ``PreRecModel.logits``)."""
    if at_targets:
        return model.target_logits(batch, latent)  # [A, J]
    return model.logits(batch, latent)[0]  # [R, L, J]


class ModelScorer:
    """A scorer from the PreRec model's own logits. ``__call__`` returns them in the observed site's layout
    [R, L, J] (the evaluation harness's ``Scorer``); ``score_targets`` at the batch's target positions only [A, J],
    in ``batch.target_layout()`` order: what evaluation ranks, without the scores of the positions it does not."""

    def __call__(self, batch: PreRecBatch) -> Tensor:
        return self.scores(batch, at_targets=False)  # [R, L, J]

    def score_targets(self, batch: PreRecBatch) -> Tensor:
        return self.scores(batch, at_targets=True)  # [A, J]

    def scores(self, batch: PreRecBatch, at_targets: bool) -> Tensor:
        raise NotImplementedError


class MapScorer(ModelScorer):
    """Scores = the model's logits with every latent fixed at the guide's point estimate.

    Users outside the fitted ``users`` plate (validation, test) have no data behind their offset: it stays at its
    prior mean, eps_u = 0."""

    def __init__(self, model: PreRecModel, guide, name: str = "PreRec"):
        self.model, self.guide, self.name = model, guide, name

    @torch.no_grad()
    def scores(self, batch: PreRecBatch, at_targets: bool) -> Tensor:
        with eval_mode(self.model):
            return self._logits(batch, latent_values, at_targets)  # [R, L, J] or [A, J]

    def fixed_item_side(self):
        """A block over which the catalogue's item side is built once (``PreRecModel.fixed_item_side``): the
        guide's point estimates do not change while one evaluation ranks its batches."""
        return self.model.fixed_item_side()

    @torch.no_grad()
    def score_targets_by_sequence(self, batch: PreRecBatch) -> tuple[Tensor, Tensor]:
        """``score_targets`` and the sequence model's term of it, in one pass ([A, J] each;
        ``PreRecModel.target_logits_and_sequence_term``)."""
        with eval_mode(self.model):
            return self.model.target_logits_and_sequence_term(*self._latent(batch, latent_values))

    def _logits(self, batch: PreRecBatch, estimate, at_targets: bool) -> Tensor:
        """The model's logits with every latent at the guide's ``estimate`` (see ``_point_estimates``)."""
        return model_logits(self.model, *self._latent(batch, estimate), at_targets)

    def _latent(self, batch: PreRecBatch, estimate) -> tuple[PreRecBatch, dict]:
        """The batch as the model sees it (users outside the fitted plate at row 0) and the latent values at the
        guide's ``estimate``."""
        fitted = batch.user_index < self.model.n_users  # [U]
        batch = replace(batch, user_index=torch.where(fitted, batch.user_index, 0))
        return batch, latent_dict(self.model, batch, condition=self._point_estimates(batch, fitted, estimate))

    def _point_estimates(self, batch: PreRecBatch, fitted: Tensor, estimate=latent_values) -> dict[str, Tensor]:
        """The guide's ``estimate`` (point estimates, or a draw), asked once per distinct fitted user (a subsampled
        plate must not be asked for more rows than it has); eps_u of users outside the plate is 0."""
        rows = torch.unique(batch.user_index[fitted])  # sorted
        rows = rows if len(rows) else batch.user_index[:1]
        values = estimate(self.guide, replace(batch, user_index=rows), self.model)
        if EPS_U in values:
            table = values[EPS_U]  # [len(rows), B]
            position = torch.searchsorted(rows, batch.user_index)  # [U]
            values[EPS_U] = table[position] * fitted[:, None]  # [U, B]
        return values


class PosteriorScorer(MapScorer):
    """The posterior predictive: log of the next-item softmax averaged over ``n_samples`` draws of the latents from
    the guide (seeded; the global RNG is restored). Users outside the fitted plate keep eps_u = 0, as in
    ``MapScorer``, so the two differ only by the uncertainty of the fitted sites. A point-estimate guide gives the
    log-softmax of ``MapScorer``'s logits."""

    def __init__(self, model: PreRecModel, guide, n_samples: int, seed: int = 0,
                 name: str = "PreRec (posterior predictive)"):
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        super().__init__(model, guide, name)
        self.n_samples, self.seed = n_samples, seed

    score_targets_by_sequence = None  # the draws are averaged after the softmax: the logits have no linear split
    fixed_item_side = None  # each batch draws its own latents: no item side outlives a batch

    @torch.no_grad()
    def scores(self, batch: PreRecBatch, at_targets: bool) -> Tensor:
        log_probs = self.log_prob_draws(batch, at_targets)  # [S, R, L, J] or [S, A, J]
        return torch.logsumexp(log_probs, dim=0) - math.log(self.n_samples)  # [R, L, J] or [A, J]

    @torch.no_grad()
    def log_prob_draws(self, batch: PreRecBatch, at_targets: bool = True) -> Tensor:
        """The next-item log-softmax under each of the ``n_samples`` seeded draws. [S, A, J] (or [S, R, L, J])"""
        with eval_mode(self.model), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return torch.stack([torch.log_softmax(self._logits(batch, latent_draw, at_targets), -1)
                                for _ in range(self.n_samples)])


def target_scores(scorer, batch: PreRecBatch) -> Tensor:
    """``scorer``'s scores at the batch's targets, in ``batch.target_layout()`` order: its ``score_targets`` when
    it has one (PreRec's scorers), else its [R, L, J] scores at those positions. [A, J]"""
    if hasattr(scorer, "score_targets"):
        return scorer.score_targets(batch)  # [A, J]
    scores = scorer(batch)  # [R, L, J]
    return scores.reshape(-1, scores.shape[-1])[batch.target_layout()[0]]  # [A, J]

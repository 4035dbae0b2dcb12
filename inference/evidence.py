"""Weighing the sequence model by what the user's own history says about it (Bayesian model averaging).

On a platform whose texts and habits the sources never showed, the pre-trained sequence model can rank worse than
what the last item alone says (docs/NETWORKS.md: from MovieLens to the retail catalogues, Eq. 8 with f_seq is 8x
below Eq. 8 with f_seq silenced). Nothing in the sources can tell which platform is unlike them, but each user's
own history can: it is a sequence of next items the zero-shot scorer already reads. Two models of the next item,
m = 1 Eq. 8 as pre-trained and m = 0 Eq. 8 with a silent sequence model (n_i = 0: the last item's text embedding,
the text channel, popularity, the repeat term), and a user-level choice between them with prior weights (π, 1 - π).
Before position t of a window, the posterior weight of m is

    w_m(t) ∝ π_m · Π_{1 <= s < t} g_m(R_s | H_<s)        (the window's earlier next items, each under model m)

and the scores are the log of the averaged next-item distribution, log Σ_m w_m(t) p_m(· | H_<t). Only the user's
items before t enter w(t): the harness's rule for what zero-shot may read is unchanged (docs/DESIGN.md, "Zero-shot
(Eq. 8) and what it may read"). A long sequence is cut into windows; the weights see the window's items, as the
model does.

What g_m, the evidence of one earlier item, is (``EVIDENCE``):

- ``"ranks"`` (the default): the item's place in model m's ranking of the catalogue, under a likelihood over
  ranks, g(r) ∝ 1/r (Zipf's; its normaliser is the same for both models and cancels); a comparison of two scores
  closer than ``RANK_TOLERANCE`` counts in part (``soft_ranks``). Each model is used as a ranking, so the history
  judges it as one: a model gains weight when it ranked the user's earlier items higher,
  whatever the spread of its probabilities. The two models' probabilities are not on one scale across platforms:
  without f_seq the scores were never trained alone, and a sequence model that is wrong in a diffuse way can give
  the true item more probability on average than a sharper model that ranks it higher (docs/NETWORKS.md, "The
  history's evidence in ranks").
- ``"likelihood"``: the probability model m gave the item, g_m = p_m(R_s | H_<s) (the previous default; the
  posterior of the switch under the models' own likelihoods).

Shape legend: M = models (2), R = windows, L = positions, J = the domain's items.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace

import torch
from torch import Tensor, nn

from prerec_pyro.data.batches import PreRecBatch
from prerec_pyro.models.config import PreRecConfig
from prerec_pyro.models.prerec import PreRecModel

from .scoring import target_scores


class SilentSequence(nn.Module):
    """f_seq that says nothing: the user state of every position is 0."""

    def forward(self, first: Tensor, history: Tensor) -> Tensor:
        return history.new_zeros(history.shape[0], history.shape[1] + 1, history.shape[2])  # [R, L, B]


@contextmanager
def replaced_sequence_model(model: PreRecModel, f_seq: nn.Module):
    """``model`` with its f_seq replaced by ``f_seq`` inside the block (the pre-trained one back after it)."""
    kept, model.f_seq = model.f_seq, f_seq
    try:
        yield model
    finally:
        model.f_seq = kept


class WithoutSequence:
    """A zero-shot scorer's scores with a silent sequence model (f_seq = 0): the other terms alone."""

    label = "without sequence model"

    def __init__(self, scorer):
        self.scorer, self.name = scorer, f"{scorer.name} {self.label}"

    def sequence_model(self) -> nn.Module:
        return SilentSequence()

    def __call__(self, batch: PreRecBatch) -> Tensor:
        with replaced_sequence_model(self.scorer.model, self.sequence_model()):
            return self.scorer(batch)  # [R, L, J]

    def score_targets(self, batch: PreRecBatch) -> Tensor:
        with replaced_sequence_model(self.scorer.model, self.sequence_model()):
            return target_scores(self.scorer, batch)  # [A, J]


def every_position(batch: PreRecBatch) -> PreRecBatch:
    """``batch`` with every position from 1 up to each window's last target marked as a target (windows are
    right-padded, so these are the window's real items), so that each is scored."""
    length = batch.items.shape[1]
    positions = torch.arange(length, device=batch.items.device)  # [L]
    last = torch.where(batch.target_mask, positions, -1).max(dim=1).values  # [R]
    mask = (positions >= 1) & (positions <= last.unsqueeze(1))  # [R, L]
    return replace(batch, target_mask=mask, target_order=None, period_sizes=None)


def history_weights(observed: Tensor, scored: Tensor, prior: Tensor) -> Tensor:
    """Posterior log-weights of the models before each position: log π_m plus the log-evidence the window's earlier
    next items (scored positions s < t) give each model, normalised over the models.

    Args:
        observed: [M, R, L] log g_m of the next item at each position (module docstring: -log of its rank under
            model m, or its log-probability).
        scored: [R, L] bool, the positions whose next item counts as evidence.
        prior: [M] the prior weights (summing to 1).

    Returns: [M, R, L] log-weights.
    """
    observed = observed * scored  # [M, R, L]
    before = observed.cumsum(dim=-1) - observed  # [M, R, L]: the sum over s < t
    log_weights = prior.log().view(-1, 1, 1) + before  # [M, R, L]
    return log_weights - torch.logsumexp(log_weights, dim=0, keepdim=True)


def both_models(scorer, batch: PreRecBatch) -> tuple[Tensor, Tensor]:
    """``scorer``'s scores at the batch's targets with the sequence model and with it silent ([A, J] each). A
    scorer whose logits are linear in the user state (Eq. 8, MAP) gives both in one pass, Eq. 8's logits and f_seq's
    term of them, the second being their difference (``score_targets_by_sequence``); any other is run twice."""
    logits, term = logits_and_sequence_term(scorer, batch)  # [A, J] each
    return logits, logits - term


def logits_and_sequence_term(scorer, batch: PreRecBatch) -> tuple[Tensor, Tensor]:
    """``scorer``'s scores at the batch's targets and the sequence model's term of them, what silencing f_seq takes
    away ([A, J] each): from one pass where the logits are linear in the user state (``score_targets_by_sequence``),
    else the difference of two passes."""
    by_sequence = getattr(scorer, "score_targets_by_sequence", None)
    if by_sequence is not None:
        return by_sequence(batch)  # [A, J], [A, J]
    logits = target_scores(scorer, batch)  # [A, J]
    return logits, logits - target_scores(WithoutSequence(scorer), batch)  # [A, J] each


def log_normalisers(logits: Tensor, term: Tensor) -> Tensor:
    """log Z of both models at each row, from the logits with the sequence model [A, J] and its term [A, J]: the
    model without f_seq (logits - term) is formed a block of rows at a time, never whole. [M, A]"""
    rows = max(1, _NORMALISER_BLOCK // max(logits.shape[-1], 1))
    return torch.stack([torch.logsumexp(logits, dim=-1), torch.cat(
        [torch.logsumexp(logits[start: start + rows] - term[start: start + rows], dim=-1)
         for start in range(0, len(logits), rows)]) if len(logits) else logits.new_zeros(0)])


_NORMALISER_BLOCK = 1 << 16  # scores of the model without f_seq formed at once (a block that stays in cache)

EVIDENCE = ("ranks", "likelihood")  # what an earlier next item says about each model (module docstring)


RANK_TOLERANCE = 1e-3  # nats: two scores closer than this count as partly tied in the evidence's ranks (soft_ranks)


def soft_ranks(scores: Tensor, targets: Tensor, tolerance: float = RANK_TOLERANCE) -> Tensor:
    """The rank of each row's target among the row's scores, each comparison smoothed over ``tolerance``: an item
    counts 1 when it scores more than ``tolerance`` above the target, 0 when more than that below, linearly between
    (1/2 when level: the target itself, and an exact tie as the average rank counts it). So it equals
    ``metrics.average_ranks`` unless two scores are within ``tolerance``, and unlike it, it moves continuously with
    the scores: float rounding (a history scored alone or in a batch) cannot flip a weight. ([A, J], [A]) -> [A]"""
    at_target = scores.gather(-1, targets.unsqueeze(-1))  # [A, 1]
    counted = (scores - at_target).mul_(0.5 / tolerance).add_(0.5).clamp_(0.0, 1.0)  # [A, J]
    return counted.sum(dim=-1) + 0.5  # [A]


def next_item_ranks(logits: Tensor, term: Tensor, next_items: Tensor) -> Tensor:
    """The (soft) rank of each row's next item under both models, from the logits with the sequence model [A, J],
    its term [A, J] and the next items [A]; the model without f_seq formed a block of rows at a time. [M, A]"""
    if not len(logits):
        return logits.new_zeros(2, 0)  # [M, 0]
    rows = max(1, _NORMALISER_BLOCK // max(logits.shape[-1], 1))
    blocks = range(0, len(logits), rows)
    with_sequence = [soft_ranks(logits[start: start + rows], next_items[start: start + rows])  # [rows]
                     for start in blocks]
    without = [soft_ranks(logits[start: start + rows] - term[start: start + rows], next_items[start: start + rows])
               for start in blocks]  # [rows] each: the model without f_seq a block at a time
    return torch.stack([torch.cat(with_sequence), torch.cat(without)])  # [M, A]


def sequence_is_all(config: PreRecConfig) -> bool:
    """Whether the model's scores are f_seq's alone: without popularity, the last-item skip, the text channel and
    the repeat term, its version without f_seq scores every item alike, and averaging with a uniform distribution
    changes no ranking (weighing is then skipped: PreRec_n)."""
    return not (config.use_popularity or config.last_item_skip or config.text_channel != "off" or config.repeat_term)


class HistoryWeightedSequence:
    """A zero-shot PreRec scorer's model averaged with its own version without the sequence model, each weighted
    by how high it ranked the user's earlier items in the window (module docstring). ``prior`` is π, the prior
    weight of the sequence model; ``evidence`` what an earlier item says (``EVIDENCE``: its rank under each model,
    the default, or its probability). Scores are log-probabilities [R, L, J] (the harness ranks them)."""

    def __init__(self, scorer, prior: float = 0.5, name: str | None = None, evidence: str = "ranks"):
        if not 0.0 < prior < 1.0:
            raise ValueError(f"prior (the sequence model's prior weight) must be in (0, 1), got {prior}")
        if evidence not in EVIDENCE:
            raise ValueError(f"evidence must be one of {EVIDENCE}, got {evidence!r}")
        self.scorer, self.prior, self.evidence = scorer, prior, evidence
        self.name = name or f"{scorer.name}, f_seq weighed by the history" + (
            "" if evidence == "ranks" else f" ({evidence})")

    @property
    def model(self) -> PreRecModel:
        return self.scorer.model

    @property
    def fixed_item_side(self):
        """The wrapped scorer's ``fixed_item_side`` (None without one): both models share its item side."""
        return getattr(self.scorer, "fixed_item_side", None)

    @torch.no_grad()
    def targets_and_weights(self, batch: PreRecBatch) -> tuple[Tensor, Tensor]:
        """The averaged scores at the batch's targets [A, J] and the sequence model's posterior weight w_1(t) there
        [A], in ``batch.target_layout()`` order."""
        with_sequence, without, log_weights = self.target_models(batch)  # [A, J], [A, J], [M, A]
        return self.combine(log_weights, with_sequence, without), log_weights[0].exp()  # [A, J], [A]

    @torch.no_grad()
    def target_models(self, batch: PreRecBatch) -> tuple[Tensor, Tensor, Tensor]:
        """Both models' log-probabilities at the batch's targets ([A, J] each, with and without f_seq) and their
        posterior log-weights there [M, A], in ``batch.target_layout()`` order. Each model scores every position
        once [A', J] (A' = the window's positions up to its last target); the mixture is for the targets only."""
        evidence = every_position(batch).target_mask  # [R, L]: positions 1 .. last target
        full = replace(batch, target_mask=evidence | batch.target_mask, target_order=None, period_sizes=None)
        order, _ = full.target_layout()  # [A']
        logits, term = logits_and_sequence_term(self.scorer, full)  # [A', J] each, unnormalised
        next_items = full.layout_targets().clamp(min=0)  # [A']
        if self.evidence == "ranks":
            observed, normalisers = -next_item_ranks(logits, term, next_items).log(), None  # [M, A']: log g(r)
        else:
            normalisers = log_normalisers(logits, term)  # [M, A']: log Z_m
            at_next = logits.gather(-1, next_items.unsqueeze(-1))[:, 0]  # [A']
            observed = torch.stack([at_next, at_next - term.gather(-1, next_items.unsqueeze(-1))[:, 0]]) - normalisers
        observed = observed.new_zeros(2, full.items.numel()).index_copy(1, order, observed)  # [M, R * L]
        prior = torch.tensor([self.prior, 1.0 - self.prior], device=observed.device)  # [M]
        log_weights = history_weights(observed.view(2, *full.items.shape), evidence, prior)  # [M, R, L]
        targets = batch.target_layout()[0]  # [A]: the batch's targets, flat positions in [R, L]
        row_of = torch.full((full.items.numel(),), -1, device=order.device)  # [R * L]: each position's row of A'
        row_of[order] = torch.arange(len(order), device=order.device)
        at, weights = row_of[targets], log_weights.view(2, -1)[:, targets]  # [A], [M, A]
        with_sequence, without = logits[at], term[at]  # [A, J] each (copies)
        torch.sub(with_sequence, without, out=without)  # [A, J]: the logits without f_seq
        if normalisers is None:  # the targets' own log Z_m [A] each
            with_z, without_z = torch.logsumexp(with_sequence, dim=-1), torch.logsumexp(without, dim=-1)
        else:
            with_z, without_z = normalisers[0, at], normalisers[1, at]
        with_sequence.sub_(with_z[:, None])
        without.sub_(without_z[:, None])
        return with_sequence, without, weights  # [A, J] (log-probabilities) each, [M, A]

    def combine(self, log_weights: Tensor, with_sequence: Tensor, without: Tensor) -> Tensor:
        """The averaged next-item distribution, log Σ_m w_m p_m, from the models' log-weights [M, A] and their
        log-probabilities [A, J] each (overwritten: the [A, J] tensors are the largest of an evaluation). [A, J]"""
        with_sequence.add_(log_weights[0, :, None])
        return torch.logaddexp(with_sequence, without.add_(log_weights[1, :, None]), out=with_sequence)

    def score_targets(self, batch: PreRecBatch) -> Tensor:
        return self.targets_and_weights(batch)[0]  # [A, J]

    def __call__(self, batch: PreRecBatch) -> Tensor:
        """The scores in the observed site's layout [R, L, J] (0 at the positions that are not targets)."""
        scores = self.score_targets(batch)  # [A, J]
        out = scores.new_zeros(batch.items.numel(), scores.shape[-1])  # [R * L, J]
        return out.index_copy(0, batch.target_layout()[0], scores).view(*batch.items.shape, -1)  # [R, L, J]


class HistoryPooledSequence(HistoryWeightedSequence):
    """A diagnostic beside ``HistoryWeightedSequence``: the same posterior weights, the two models pooled
    geometrically, Σ_m w_m log p_m (the logarithmic opinion pool), instead of averaged. Ranking by it equals ranking
    by Eq. 8's logits with f_seq's term scaled by w_1(t): the sequence model counts in proportion to its weight,
    where in the average the sharper model's top items stay on top unless its weight is near 0. Not the default
    (docs/NETWORKS.md)."""

    def __init__(self, scorer, prior: float = 0.5, name: str | None = None, evidence: str = "ranks"):
        super().__init__(scorer, prior, name or f"{scorer.name}, f_seq pooled by the history" + (
            "" if evidence == "ranks" else f" ({evidence})"), evidence)

    def combine(self, log_weights: Tensor, with_sequence: Tensor, without: Tensor) -> Tensor:
        weights = log_weights.exp()  # [M, A]
        return with_sequence.mul_(weights[0, :, None]).add_(without.mul_(weights[1, :, None]))  # [A, J]

"""Where a zero-shot score comes from: the terms of Eq. 8 switched off one at a time, and agreement with SBERT.

For a pre-trained model pointed at a target, the scorers here rank the same samples as the evaluation harness:

- ``WithoutPopularity``: Eq. 8 with every candidate's popularity factors F = 0, so Z_j = f_pop(0) is the same for
  every item: the text and sequence terms alone;
- ``WithoutSequence`` (from ``inference/evidence.py``, which averages Eq. 8 with it): Eq. 8 with a silent sequence
  model (f_seq = 0): the user state is what the last item says (the skip and the text channel, when the run has
  them); the gap to Eq. 8 is what the Transformer adds;
- ``SequenceMeanOnly`` / ``SequenceCentred``: Eq. 8 with f_seq's output split into the part every user shares (its
  mean over the batch's windows and positions) and the rest: the mean alone is an item prior learned from the
  sources' texts (the same ranking for everyone), the centred part what tells users apart. Eq. 8 plus the silenced
  score equals the two summed (the score is linear in the user state);
- ``HistoryWeightedSequence`` (``inference/evidence.py``): Eq. 8 averaged with Eq. 8 without f_seq, each weighted by
  how high it ranked the user's earlier items;
- ``WithoutHistory``: a scorer with the items already in the window's history ranked last (SBERT ranks the last
  item itself first);
- ``TextHeadOnly``: the learned text head used the way SBERT uses raw vectors, f_e(X_last) · f_e(X_j): what the
  text head alone knows, without the Transformer's user state or popularity;
- ``SbertAgreement``: wraps a scorer and records, for every evaluated position, the Spearman rank correlation of
  its scores with SBERT's over the catalogue (``mean_correlation``).

They read what Eq. 8 reads (histories, the catalogue, the previous interval's counts) and nothing else.
``diagnostic_rows`` scores all of them, POP and SBERT on one target (``scripts/diagnose.py``, the study).

Shape legend: R = windows, L = positions, J = the domain's items, B = embedding size.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor, nn

from prerec_pyro.baselines.simple import PopScorer, SbertScorer
from prerec_pyro.data.batches import PreRecBatch
from prerec_pyro.evaluate import EvalConfig
from prerec_pyro.models.prerec import PreRecModel
from prerec_pyro.pipeline import PreparedBenchmark
from prerec_pyro.text import centering_label

from .evidence import HistoryPooledSequence, HistoryWeightedSequence, WithoutSequence, soft_ranks
from .pretrained import PretrainedRun
from .zero_shot import score_target


class WithoutPopularity:
    """A scorer's scores with every candidate's popularity factors set to 0 (F = 0: no recent count)."""

    def __init__(self, scorer):
        self.scorer, self.name = scorer, f"{scorer.name} without popularity"

    def __call__(self, batch: PreRecBatch) -> Tensor:
        return self.scorer(replace(batch, factors_candidates=torch.zeros_like(batch.candidate_factors())))


class WithoutHistory:
    """A scorer's scores with every item already in the window's history ranked last: what the scorer would reach
    if it knew that items are not taken twice (the repeat term learns how often they are)."""

    def __init__(self, scorer):
        self.scorer, self.name = scorer, f"{scorer.name} without history items"

    def __call__(self, batch: PreRecBatch) -> Tensor:
        scores = self.scorer(batch)  # [R, L, J]
        return scores.masked_fill(batch.seen_before(batch.candidate_rows), torch.finfo(scores.dtype).min)


class _SequencePart(nn.Module):
    """f_seq's output reduced to the part all users share (``"mean"``: its mean over the batch's windows and
    positions, padding included) or to what is left (``"centred"``)."""

    def __init__(self, f_seq: nn.Module, part: str):
        super().__init__()
        assert part in ("mean", "centred"), part
        self.f_seq, self.part = f_seq, part

    def forward(self, first: Tensor, history: Tensor) -> Tensor:
        state = self.f_seq(first, history)  # [R, L, B]
        mean = state.mean(dim=(0, 1), keepdim=True).expand_as(state)  # [R, L, B]
        return mean if self.part == "mean" else state - mean


class SequenceMeanOnly(WithoutSequence):
    """A zero-shot scorer's scores with f_seq's output replaced by its mean over the batch: the item prior the
    sequence model gives every user alike."""

    label = "with f_seq's shared state only"

    def sequence_model(self) -> nn.Module:
        return _SequencePart(self.scorer.model.f_seq, "mean")


class SequenceCentred(WithoutSequence):
    """A zero-shot scorer's scores with f_seq's output less its mean over the batch: what tells users apart."""

    label = "with f_seq centred"

    def sequence_model(self) -> nn.Module:
        return _SequencePart(self.scorer.model.f_seq, "centred")


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


class SequenceWeightRecord(HistoryWeightedSequence):
    """``HistoryWeightedSequence`` that also records, at every evaluated position, the sequence model's posterior
    weight w_1(t) (how far the users' own histories trust f_seq on this target: ``mean_weight``) and what each of
    the two models says of the next item, its log-probability and its rank (``next_item_evidence``: whether the
    models' probabilities and their rankings tell the same story)."""

    def __init__(self, scorer, prior: float = 0.5, evidence: str = "ranks"):
        super().__init__(scorer, prior, evidence=evidence)
        self.weights: list[Tensor] = []
        self.log_probs: list[Tensor] = []
        self.ranks: list[Tensor] = []

    def score_targets(self, batch: PreRecBatch) -> Tensor:
        with_sequence, without, log_weights = self.target_models(batch)  # [A, J], [A, J], [M, A]
        self.weights.append(log_weights[0].exp().cpu())  # [A]
        next_items = batch.layout_targets().clamp(min=0)  # [A]
        models = (with_sequence, without)
        self.log_probs.append(torch.stack([m.gather(-1, next_items[:, None])[:, 0] for m in models]).cpu())  # [M, A]
        self.ranks.append(torch.stack([soft_ranks(m, next_items) for m in models]).cpu())  # [M, A]
        return self.combine(log_weights, with_sequence, without)  # [A, J] (overwrites both models)

    def mean_weight(self) -> float:
        return float(torch.cat(self.weights).mean()) if self.weights else float("nan")

    def next_item_evidence(self) -> dict[str, float]:
        """The evaluated next items' mean log-probability and median rank under Eq. 8 ("with") and Eq. 8 without
        f_seq ("without")."""
        if not self.ranks:
            return {}
        log_probs, ranks = torch.cat(self.log_probs, dim=1), torch.cat(self.ranks, dim=1)  # [M, T] each
        return {"log_prob_with": float(log_probs[0].mean()), "log_prob_without": float(log_probs[1].mean()),
                "median_rank_with": float(ranks[0].median()), "median_rank_without": float(ranks[1].median())}


TERMS = ("without-popularity", "without-sequence", "sequence-shared", "sequence-centred", "history-weighted",
         "history-likelihood", "history-pooled", "text-head", "pop", "sbert",
         "sbert-without-history")  # rows beside Eq. 8, in order


def diagnostic_rows(prepared: PreparedBenchmark, target: str, run: Path, config: EvalConfig,
                    terms: tuple[str, ...] = TERMS) -> list[dict]:
    """Eq. 8 of run ``run`` on ``target`` and the rows named in ``terms`` (``TERMS``: each term switched off, the
    sequence model's parts, Eq. 8 with f_seq weighed by the history, the text head alone, POP, SBERT), subset
    "all"; Eq. 8's row also holds ``sbert_spearman``."""
    unknown = sorted(set(terms) - set(TERMS))
    if unknown:
        raise ValueError(f"unknown diagnostic terms {unknown}; expected some of {list(TERMS)}")
    eq8 = PretrainedRun.of(run, config.device).target_scorer(prepared, target, weigh_sequence=False)
    text = prepared.item_text(prepared.target(target)).to(config.device)
    agreement = SbertAgreement(eq8, text)
    rows_of = {"without-popularity": lambda: WithoutPopularity(eq8), "without-sequence": lambda: WithoutSequence(eq8),
               "sequence-shared": lambda: SequenceMeanOnly(eq8), "sequence-centred": lambda: SequenceCentred(eq8),
               "history-weighted": lambda: SequenceWeightRecord(eq8),
               "history-likelihood": lambda: SequenceWeightRecord(eq8, evidence="likelihood"),
               "history-pooled": lambda: HistoryPooledSequence(eq8),
               "text-head": lambda: TextHeadOnly(eq8.model, name=f"{eq8.name} text head only"),
               "pop": PopScorer, "sbert": lambda: SbertScorer(text),
               "sbert-without-history": lambda: WithoutHistory(SbertScorer(text))}
    scorers = [agreement] + [rows_of[term]() for term in TERMS if term in terms]
    rows = [r for r in score_target(prepared, target, scorers, config, with_random=False) if r["subset"] == "all"]
    rows[0]["sbert_spearman"] = agreement.mean_correlation()
    weighed = {scorer.name: scorer for scorer in scorers if isinstance(scorer, SequenceWeightRecord)}
    for row in rows:  # the history-weighed rows: the sequence model's mean posterior weight, the two models' evidence
        if row["method"] in weighed:
            row.update(sequence_weight=weighed[row["method"]].mean_weight(),
                       **weighed[row["method"]].next_item_evidence())
    for row in rows:  # the rules read the run's vectors: say so when they are centred
        row["method"] += centering_label(prepared.text.centering) if row["method"].startswith("SBERT") else ""
    return rows

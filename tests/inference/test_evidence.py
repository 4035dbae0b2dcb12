"""Weighing the sequence model by the user's own history (inference/evidence.py): the weights by hand, the mixture,
its limits, and that it reads nothing after the position it scores."""

import math
from dataclasses import replace

import pytest
import torch

from prerec_pyro.inference.diagnostics import SequenceWeightRecord, WithoutSequence
from prerec_pyro.inference.evidence import (
    RANK_TOLERANCE,
    HistoryWeightedSequence,
    both_models,
    every_position,
    history_weights,
    next_item_ranks,
    soft_ranks,
)
from prerec_pyro.inference.pretrained import PretrainedRun
from prerec_pyro.inference.scoring import PosteriorScorer, target_scores
from prerec_pyro.metrics import average_ranks

TARGET = "japan"


def test_history_weights_by_hand():
    """Two models, one window of 3 positions, 2 items. Model 0 gives the observed items probability 1/2 then 1/4,
    model 1 gives 1/4 then 1/2; prior (0.5, 0.5). Before position 1: the prior; before 2: (1/2, 3/4) normalised,
    i.e. (0.4, 0.6); position 0 is not evidence."""
    observed = torch.log(torch.tensor([[[0.5, 0.5, 0.25]], [[0.5, 0.75, 0.5]]]))  # [M=2, R=1, L=3]
    scored = torch.tensor([[False, True, True]])  # position 1's next item: 1/2 vs 3/4; position 2's: 1/4 vs 1/2
    weights = history_weights(observed, scored, torch.tensor([0.5, 0.5])).exp()  # [2, 1, 3]
    torch.testing.assert_close(weights[:, 0, 0], torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(weights[:, 0, 1], torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(weights[:, 0, 2], torch.tensor([0.4, 0.6]))  # 1/2 : 3/4
    skewed = history_weights(observed, scored, torch.tensor([0.8, 0.2])).exp()
    torch.testing.assert_close(skewed[:, 0, 2], torch.tensor([0.8 * 0.5, 0.2 * 0.75]) / (0.4 + 0.15))


def test_every_position_marks_the_windows_real_items(scored):
    _, batch, _ = scored
    full = every_position(batch)
    positions = torch.arange(batch.items.shape[1])
    for row in range(batch.items.shape[0]):
        last = int(positions[batch.target_mask[row]].max())
        assert full.target_mask[row].tolist() == [1 <= p <= last for p in range(batch.items.shape[1])]


def test_mixture_is_a_distribution_between_its_two_models(scored):
    eq8, batch, _ = scored
    full = every_position(batch)
    mixed = HistoryWeightedSequence(eq8)(full)  # [R, L, J]
    assert mixed.shape == (*batch.items.shape, batch.n_domain_items)
    torch.testing.assert_close(mixed[full.target_mask].exp().sum(-1), torch.ones(int(full.target_mask.sum())))
    with_sequence = torch.log_softmax(eq8(full), -1)[full.target_mask]
    without = torch.log_softmax(WithoutSequence(eq8)(full), -1)[full.target_mask]
    low, high = torch.minimum(with_sequence, without), torch.maximum(with_sequence, without)
    assert bool((mixed[full.target_mask] >= low - 1e-5).all() and (mixed[full.target_mask] <= high + 1e-5).all())
    first = full.target_mask & (torch.arange(batch.items.shape[1]) == 1)  # position 1: the prior's weights alone
    expected = torch.logsumexp(torch.stack([with_sequence, without]), 0) - math.log(2)
    torch.testing.assert_close(mixed[first], expected[first[full.target_mask]], rtol=1e-5, atol=1e-5)


def test_near_certain_prior_gives_one_model(scored):
    eq8, batch, _ = scored
    full = every_position(batch)
    almost_all = HistoryWeightedSequence(eq8, prior=1 - 1e-12)(full)[full.target_mask]
    torch.testing.assert_close(almost_all, torch.log_softmax(eq8(full), -1)[full.target_mask], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="prior"):
        HistoryWeightedSequence(eq8, prior=1.0)


def test_a_position_reads_only_the_items_before_it(scored):
    """Changing the window's items from position p on leaves the scores of every position up to p unchanged."""
    eq8, batch, _ = scored
    scorer = HistoryWeightedSequence(eq8)
    row = int(batch.target_mask.sum(1).argmax())
    length = int(every_position(batch).target_mask[row].sum()) + 1
    cut = length // 2
    assert cut >= 2, "the fixture needs a window of at least 4 items"
    changed_items, changed_targets = batch.items.clone(), batch.targets.clone()
    changed_items[row, cut:length] = batch.item_offset + (batch.targets[row, cut:length] + 1) % batch.n_domain_items
    changed_targets[row, cut:length] = (batch.targets[row, cut:length] + 1) % batch.n_domain_items
    changed = every_position(replace(batch, items=changed_items, targets=changed_targets))
    before, after = scorer(every_position(batch)), scorer(changed)  # [R, L, J]: every position scored
    torch.testing.assert_close(after[row, : cut + 1], before[row, : cut + 1], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(after[row, cut + 1: length], before[row, cut + 1: length])


def test_weighed_sequence_reads_no_target_training_data(pretrained, reads_no_training_users):
    run_dir, prepared = pretrained
    scorer = PretrainedRun.load(run_dir).target_scorer(prepared, TARGET, weigh_sequence=True)
    assert scorer.name == "PreRec, f_seq weighed by the history"
    reads_no_training_users(scorer, prepared.target(TARGET))


def test_sequence_weight_is_the_posterior_of_the_sequence_model(scored):
    """With the likelihood as evidence, the recorded weight w_1(t) at each target: the prior at position 1, then
    π p_1 / (π p_1 + (1 - π) p_0) of the window's earlier items, computed here from the two models' own
    log-probabilities."""
    eq8, batch, _ = scored
    record = SequenceWeightRecord(eq8, prior=0.3, evidence="likelihood")
    scores = record(batch)
    torch.testing.assert_close(scores, HistoryWeightedSequence(eq8, prior=0.3, evidence="likelihood")(batch))
    full = every_position(batch)
    log_probs = torch.stack([torch.log_softmax(eq8(full), -1), torch.log_softmax(WithoutSequence(eq8)(full), -1)])
    observed = log_probs.gather(-1, full.targets.clamp(min=0)[None, ..., None].expand(2, -1, -1, 1))[..., 0]
    before = (observed * full.target_mask).cumsum(-1) - observed * full.target_mask  # [2, R, L]
    expected = torch.sigmoid(math.log(0.3 / 0.7) + before[0] - before[1])  # [R, L]
    at_targets = expected.reshape(-1)[batch.target_layout()[0]]  # [A]: the scorer's target order
    torch.testing.assert_close(record.weights[0], at_targets, rtol=1e-4, atol=1e-5)
    first = batch.target_mask & (torch.arange(batch.items.shape[1]) == 1)
    torch.testing.assert_close(expected[first], torch.full((int(first.sum()),), 0.3))
    assert record.mean_weight() == pytest.approx(float(expected[batch.target_mask].mean()), abs=1e-5)


def test_one_pass_gives_both_models_as_two_passes_do(scored):
    """Eq. 8's scorer gives its logits and f_seq's term in one pass; the two models it yields equal Eq. 8 and Eq. 8
    with a silent f_seq scored separately. The posterior predictive averages after the softmax and has no such
    split: it is scored twice."""
    eq8, batch, _ = scored
    full = every_position(batch)
    with_sequence, without = both_models(eq8, full)  # [A', J] each
    torch.testing.assert_close(with_sequence, target_scores(eq8, full), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(without, target_scores(WithoutSequence(eq8), full), rtol=1e-5, atol=1e-5)
    assert PosteriorScorer.score_targets_by_sequence is None


def test_next_item_ranks_by_hand():
    """Scores with f_seq [1, 2, 3] and f_seq's term [0, 0, 3] (without it: [1, 2, 0]): item 0 is third with the
    sequence model and second without; a tie takes the average rank (items 0 and 1 level at 1, item 2 above: 2.5)."""
    logits = torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 3.0]])  # [A=2, J=3]
    term = torch.tensor([[0.0, 0.0, 3.0], [0.0, 0.0, 0.0]])
    ranks = next_item_ranks(logits, term, torch.tensor([0, 0]))  # [M=2, A]
    torch.testing.assert_close(ranks, torch.tensor([[3.0, 2.5], [2.0, 2.5]]))
    torch.testing.assert_close(next_item_ranks(0.1 * logits, 0.1 * term, torch.tensor([0, 0])), ranks)  # tempered
    generator = torch.Generator().manual_seed(0)
    separated = torch.stack([torch.randperm(50, generator=generator) for _ in range(6)]).float() * 0.1  # [6, 50]
    next_items = torch.randint(0, 50, (6,), generator=generator)
    torch.testing.assert_close(soft_ranks(separated, next_items), average_ranks(separated, next_items).float())
    near = torch.tensor([[0.0, 1e-6, 5.0]])  # a gap far below the tolerance: the tie's average rank, continuously
    torch.testing.assert_close(soft_ranks(near, torch.tensor([0])), torch.tensor([2.5]), atol=1e-3, rtol=0)
    halfway = torch.tensor([[0.0, 0.5 * RANK_TOLERANCE, -5.0]])  # half the tolerance above: counts 3/4
    torch.testing.assert_close(soft_ranks(halfway, torch.tensor([0])), torch.tensor([1.75]))
    assert next_item_ranks(logits[:0], term[:0], torch.tensor([], dtype=torch.long)).shape == (2, 0)


def test_rank_evidence_is_the_posterior_under_a_zipf_likelihood_of_ranks(scored):
    """The default weight w_1(t): π Π 1/r_1 / (π Π 1/r_1 + (1 - π) Π 1/r_0) over the window's earlier next items,
    r_m their average ranks under each model (the two models' scores from the one pass the scorer makes)."""
    eq8, batch, _ = scored
    record = SequenceWeightRecord(eq8, prior=0.3)
    record(batch)
    full = every_position(batch)
    next_items = full.layout_targets()  # [A']
    ranks = torch.stack([((scores - scores.gather(-1, next_items[:, None])) / (2 * RANK_TOLERANCE) + 0.5).clamp(0, 1)
                         .sum(-1) + 0.5 for scores in both_models(eq8, full)])  # [2, A']
    observed = torch.zeros(2, full.items.numel()).index_copy(1, full.target_layout()[0], -ranks.log().float())
    observed = observed.view(2, *full.items.shape)  # [2, R, L]
    before = observed.cumsum(-1) - observed  # [2, R, L]
    expected = torch.sigmoid(math.log(0.3 / 0.7) + before[0] - before[1])  # [R, L]
    torch.testing.assert_close(record.weights[0], expected.reshape(-1)[batch.target_layout()[0]], rtol=1e-4,
                               atol=1e-5)
    assert record.name == "PreRec, f_seq weighed by the history"
    assert SequenceWeightRecord(eq8, evidence="likelihood").name.endswith("(likelihood)")
    with pytest.raises(ValueError, match="evidence"):
        HistoryWeightedSequence(eq8, evidence="votes")


def test_the_likelihood_evidence_keeps_the_previous_scores(scored):
    """``evidence="likelihood"`` is the previous default: the mixture of the two models' log-probabilities weighed by
    the probabilities of the earlier items, formed here from scratch."""
    eq8, batch, _ = scored
    scores = HistoryWeightedSequence(eq8, evidence="likelihood").score_targets(batch)  # [A, J]
    evidence = every_position(batch).target_mask  # [R, L]
    full = replace(batch, target_mask=evidence | batch.target_mask, target_order=None, period_sizes=None)
    log_probs = torch.stack([torch.log_softmax(eq8(full), -1), torch.log_softmax(WithoutSequence(eq8)(full), -1)])
    observed = log_probs.gather(-1, full.targets.clamp(min=0)[None, ..., None].expand(2, -1, -1, 1))[..., 0]
    log_weights = history_weights(observed, evidence, torch.tensor([0.5, 0.5]))  # [2, R, L]
    mixed = torch.logsumexp(log_probs + log_weights[..., None], dim=0)  # [R, L, J]
    expected = mixed.reshape(-1, mixed.shape[-1])[batch.target_layout()[0]]
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-5)


def test_the_scripts_flag_offers_the_evidences_the_scorer_takes():
    import argparse

    from prerec_pyro import cli
    from prerec_pyro.inference.evidence import EVIDENCE

    parser = argparse.ArgumentParser()
    cli.add_weigh_sequence(parser)
    action = next(a for a in parser._actions if a.dest == "sequence_evidence")
    assert tuple(action.choices) == EVIDENCE and action.default == EVIDENCE[0] == "ranks"


def test_the_record_keeps_what_each_model_says_of_the_next_item(scored):
    """The diagnostic record's next-item evidence: the mean log-probability Eq. 8 (and Eq. 8 without f_seq) gave the
    evaluated items, and their median rank, computed here from the two scorers directly."""
    eq8, batch, _ = scored
    record = SequenceWeightRecord(eq8)
    record(batch)
    found = record.next_item_evidence()
    targets = batch.targets[batch.target_mask]  # [A] row-major; the means and medians do not depend on the order
    for key, scores in (("with", eq8(batch)), ("without", WithoutSequence(eq8)(batch))):
        rows = scores[batch.target_mask]  # [A, J]
        log_probs = torch.log_softmax(rows, -1).gather(-1, targets[:, None])[:, 0]
        assert found[f"log_prob_{key}"] == pytest.approx(float(log_probs.mean()), abs=1e-4)
        assert found[f"median_rank_{key}"] == pytest.approx(float(soft_ranks(rows, targets).median()), abs=1e-2)

"""Zero-shot scoring by intervention: what it reads, what it ignores, and how it is computed."""


from dataclasses import replace

import numpy as np
import pytest
import torch
from pyro import poutine

from prerec_pyro.data.batches import BatchBuilder
from prerec_pyro.data.dataset import MultiDomainData, SequenceConfig
from prerec_pyro.inference.intervene import BackdoorScorer, InterventionScorer, target_model, zero_interventions
from prerec_pyro.models.prerec import D, PreRecConfig, PreRecModel

CONFIG = PreRecConfig(hidden_dim=16, n_heads=2, max_len=8)


@pytest.fixture
def target(tiny_synthetic):
    return MultiDomainData.from_domains([tiny_synthetic.domain("japan")], sequences=SequenceConfig(max_len=8))


@pytest.fixture
def zero_shot_model(tiny_sources, target, encode_hash):
    model = PreRecModel(CONFIG, 3, tiny_sources.n_fit_users, encode_hash(tiny_sources))
    return target_model(model, target, encode_hash(target))


def test_scores_ignore_the_targets_training_users(zero_shot_model, target, reads_no_training_users):
    """Hold the target's popularity counts fixed; scramble every training user's sequence: no score changes."""
    reads_no_training_users(InterventionScorer(zero_shot_model), target)


def test_intervention_sets_the_confounders_to_zero(zero_shot_model, target):
    dom = target.domains[0]
    batch = BatchBuilder(target, n_negatives=None).make(0, dom.windows(dom.users_in("test")[:3], target.sequences))
    zero_shot_model.eval()
    values = zero_interventions(zero_shot_model, batch)
    scores = InterventionScorer(zero_shot_model)(batch)
    with torch.no_grad():
        replayed = poutine.condition(zero_shot_model, data=values)(batch)
    torch.testing.assert_close(scores, replayed)
    with torch.no_grad():
        other = dict(values, **{D: torch.ones_like(values[D])})
        moved = poutine.condition(zero_shot_model, data=other)(batch)
    assert not torch.allclose(scores, moved), "D must matter, or the intervention tests nothing"
    trace = poutine.trace(poutine.do(zero_shot_model, data=values)).get_trace(batch)
    assert not torch.equal(trace.nodes[D]["value"], values[D])  # the do'd node holds a prior draw: never score it


def test_backdoor_average_is_a_normalised_log_probability(zero_shot_model, target):
    dom = target.domains[0]
    batch = BatchBuilder(target, n_negatives=None).make(0, dom.windows(dom.users_in("test")[:2], target.sequences))
    log_probs = BackdoorScorer(zero_shot_model, n_samples=4)(batch)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(log_probs.shape[:-1]))
    again = BackdoorScorer(zero_shot_model, n_samples=4)(batch)
    torch.testing.assert_close(log_probs, again)
    with pytest.raises(ValueError, match="n_samples"):
        BackdoorScorer(zero_shot_model, n_samples=0)


def test_scorer_logits_equal_plain_do(zero_shot_model, target):
    """The scorer also pins the do'd sites' original nodes (no prior draw); the logits are those of do alone."""
    dom = target.domains[0]
    batch = BatchBuilder(target, n_negatives=None).make(0, dom.windows(dom.users_in("test")[:3], target.sequences))
    zero_shot_model.eval()
    with torch.no_grad():
        plain = poutine.do(zero_shot_model, data=zero_interventions(zero_shot_model, batch))(batch)
    torch.testing.assert_close(InterventionScorer(zero_shot_model)(batch), plain)


def test_eq8_scores_by_hand_whatever_the_prior_units(zero_shot_model, target, encode_hash):
    """Eq. 8 written directly: U = f_seq(0, f_e(X_H)), V_j = f_pop(F_j) + f_e(X_j), logits U·V_j + f_pop(F_j)·W_z.
    The per-observation reading of λ changes the priors only, never the intervened scores."""
    dom = target.domains[0]
    batch = BatchBuilder(target, n_negatives=None).make(0, dom.windows(dom.users_in("test")[:3], target.sequences))
    model = zero_shot_model.eval()
    with torch.no_grad():
        first = torch.zeros(batch.items.shape[0], CONFIG.hidden_dim)
        user = model.f_seq(first, model.f_e(model.item_text[batch.items[:, :-1]]))  # [R, L, B]
        expected = torch.zeros(*batch.items.shape, dom.n_items)
        for r in range(batch.items.shape[0]):
            for t in range(batch.items.shape[1]):
                z = model.f_pop(batch.candidate_factors()[batch.period_index[r, t]])  # [J, B]
                value = z + model.f_e(model.item_text[batch.candidate_rows])  # [J, B]
                expected[r, t] = user[r, t] @ value.T + z @ model.w_z
    scores = InterventionScorer(model)(batch)
    torch.testing.assert_close(scores[batch.target_mask], expected[batch.target_mask], rtol=1e-5, atol=1e-5)
    per_obs = PreRecModel(replace(CONFIG, prior_units="per_observation"), 1, target.n_users, encode_hash(target))
    per_obs.load_state_dict(model.state_dict())
    per_obs.set_observation_count(5000)
    torch.testing.assert_close(InterventionScorer(per_obs)(batch), scores)


def test_evaluation_builds_the_item_side_once_for_fixed_latents_only(zero_shot_model, target, monkeypatch):
    """``evaluate_domain`` scores Eq. 8 and Eq. 8 weighed by the history inside the model's ``fixed_item_side``
    (the same ranks as batch by batch outside it), and the back-door scorer, which draws D per batch, outside."""
    from prerec_pyro.evaluate import EvalConfig, batch_ranks, eval_batches, evaluate_domain
    from prerec_pyro.inference.evidence import HistoryWeightedSequence

    config = EvalConfig(k_percent=5.0, score_budget=2_000)
    assert len(list(eval_batches(target, 0, config))) > 1, "the test needs an evaluation of several batches"
    eq8 = InterventionScorer(zero_shot_model)
    for scorer in (eq8, HistoryWeightedSequence(eq8)):
        expected = np.concatenate([batch_ranks(scorer, batch, batch.target_mask.numpy(), target.domains[0].n_items)
                                   ["keep"].numpy() for _, batch in eval_batches(target, 0, config)])
        np.testing.assert_array_equal(evaluate_domain(scorer, target, 0, config).ranks, expected)
    inside = []
    monkeypatch.setattr(type(zero_shot_model), "catalogue_text", lambda self, batch: inside.append(
        self._item_side_memo is not None) or None)  # None: f_e runs on the rows it needs, as with sampled negatives
    evaluate_domain(eq8, target, 0, config)
    assert inside and all(inside)
    inside.clear()
    evaluate_domain(BackdoorScorer(zero_shot_model, n_samples=2), target, 0, config)
    assert inside and not any(inside)

"""The zero-shot study's scorers: Eq. 8, and the opt-in shared item offsets."""

import math

import numpy as np
import pytest
import torch

from prerec_pyro.evaluate import EvalConfig, evaluate_domain
from prerec_pyro.inference.intervene import BackdoorScorer
from prerec_pyro.inference.pretrained import (
    PretrainedRun,
    learned_shared_offsets,
    probe_batch,
    shared_item_offsets,
    source_estimates,
)
from prerec_pyro.inference.runs import load_run
from prerec_pyro.inference.zero_shot import evaluate_target, intervened_source_score, source_scorer
from prerec_pyro.models.prerec import EPS_V, EPS_V_SHARED, EPS_Z

TARGET = "japan"


def test_shared_offsets_average_the_source_rows_of_the_same_item(pretrained):
    run_dir, prepared = pretrained
    estimates = source_estimates(run_dir, prepared, "cpu")
    offsets = shared_item_offsets(estimates, prepared, TARGET)
    sources, target_ids = prepared.sources, prepared.target(TARGET).domains[0].item_ids
    shared = unshared = 0
    for row, item in enumerate(target_ids):
        source_rows = [int(sources.item_offsets[k]) + list(dom.item_ids).index(item)
                       for k, dom in enumerate(sources.domains) if item in set(dom.item_ids)]
        for site in (EPS_V, EPS_Z):
            expected = (estimates[site][source_rows].mean(0) if source_rows
                        else torch.zeros(estimates[site].shape[1]))
            torch.testing.assert_close(offsets[site][row], expected)
        shared, unshared = shared + bool(source_rows), unshared + (not source_rows)
    assert shared > 0 and unshared > 0, "the fixture must have both kinds of target items"


def test_shared_offsets_read_no_target_training_data(pretrained, reads_no_training_users):
    run_dir, prepared = pretrained
    data = prepared.target(TARGET)
    scorer = PretrainedRun.load(run_dir).target_scorer(prepared, TARGET, item_offsets="shared", weigh_sequence=False)
    assert scorer.name == "PreRec (shared offsets)"
    ranks = reads_no_training_users(scorer, data)
    config = EvalConfig(k_percent=5.0, n_boot=10)
    eq8 = PretrainedRun.load(run_dir).target_scorer(prepared, TARGET, weigh_sequence=False)
    plain = evaluate_domain(eq8, data, 0, config)
    assert not np.array_equal(ranks, plain.ranks), "the shared offsets must change some score"


def test_evaluate_target_rows_and_bad_options(pretrained):
    run_dir, prepared = pretrained
    config = EvalConfig(k_percent=5.0, n_boot=10, history_items=("keep", "exclude"))
    rows = evaluate_target(prepared, TARGET, {"prerec": run_dir}, config, item_offsets="shared",
                           weigh_sequence=False)
    methods = {"Random", "POP", "SBERT", "SBERT+POP", "PreRec (shared offsets)"}
    assert {r["method"] for r in rows} == methods
    for rule in ("keep", "exclude"):  # every method under both history rules, each subset once
        assert sorted((r["method"], r["subset"]) for r in rows if r["history_items"] == rule) == \
            sorted((m, s) for m in methods for s in ("all", "unseen", "new_items"))
    with pytest.raises(ValueError, match="item_offsets must be one of"):
        PretrainedRun.load(run_dir).target_scorer(prepared, TARGET, item_offsets="source", weigh_sequence=False)
    backdoor = PretrainedRun.load(run_dir).target_scorer(prepared, TARGET, 4, item_offsets="shared",
                                                         weigh_sequence=False)
    assert isinstance(backdoor, BackdoorScorer) and set(backdoor.item_offsets) == {EPS_V, EPS_Z}


def test_the_posterior_back_door_averages_over_the_sources_d_k(pretrained):
    """A MAP run: the posterior of D_k is its point estimate, so the back-door over the posterior is the mean of the
    next-item softmax over do(D = D_k), each source domain once."""
    from prerec_pyro.data.batches import BatchBuilder
    from prerec_pyro.inference.intervene import logits_under, zero_interventions
    from prerec_pyro.inference.pretrained import source_domain_draws
    from prerec_pyro.models.prerec import D

    run_dir, prepared = pretrained
    n_sources = len(prepared.sources.domains)
    draws = source_domain_draws(run_dir, prepared, 2 * n_sources, "cpu")
    domains = source_estimates(run_dir, prepared, "cpu")[D]  # [K, B]
    torch.testing.assert_close(draws, torch.cat([domains, domains]))
    scorer = PretrainedRun.load(run_dir).target_scorer(prepared, TARGET, n_sources, backdoor_from="posterior",
                                                       weigh_sequence=False)
    assert "posterior" in scorer.name
    data = prepared.target(TARGET)
    dom = data.domains[0]
    batch = BatchBuilder(data, None).make(0, dom.windows(dom.users_in("test")[:3], data.sequences))
    scorer.model.eval()  # no dropout, as the scorer
    values = zero_interventions(scorer.model, batch)
    by_hand = []
    for k in range(n_sources):
        values[D] = domains[k].expand(scorer.model.n_domains, -1)
        by_hand.append(torch.log_softmax(logits_under(scorer.model, values, batch), -1))
    expected = torch.logsumexp(torch.stack(by_hand), 0) - math.log(n_sources)
    torch.testing.assert_close(scorer(batch), expected)
    with pytest.raises(ValueError, match="backdoor_from must be one of"):
        PretrainedRun.load(run_dir).target_scorer(prepared, TARGET, 2, backdoor_from="data", weigh_sequence=False)
    with pytest.raises(ValueError, match="domain_draws must have shape"):
        BackdoorScorer(scorer.model, 3, domain_draws=domains[:2])


def test_learned_shared_offsets_keep_known_items_and_give_new_items_the_prior_mean(pretrained_shared):
    run_dir, prepared = pretrained_shared
    estimates = source_estimates(run_dir, prepared, "cpu")
    source_ids, target_ids = prepared.sources.item_keys()[1], prepared.target(TARGET).item_keys()[1]
    table = learned_shared_offsets(estimates, source_ids, target_ids)[EPS_V_SHARED]  # [I_t, B]
    source_ids = list(source_ids)
    known = [i for i, item in enumerate(target_ids) if item in set(source_ids)]
    new = [i for i, item in enumerate(target_ids) if item not in set(source_ids)]
    assert known and new, "the fixture must have both kinds of target items"
    for i in known:
        torch.testing.assert_close(table[i], estimates[EPS_V_SHARED][source_ids.index(target_ids[i])])
    assert table[new].abs().sum() == 0 and estimates[EPS_V_SHARED].abs().sum() > 0


def test_shared_item_offset_model_zero_shot_reads_no_target_training_data(pretrained_shared,
                                                                        reads_no_training_users):
    run_dir, prepared = pretrained_shared
    scorer = PretrainedRun.load(run_dir).target_scorer(prepared, TARGET, weigh_sequence=False)
    assert set(scorer.item_offsets) == {EPS_V_SHARED}
    reads_no_training_users(scorer, prepared.target(TARGET))


def test_the_target_free_source_score_keeps_learned_shared_offsets(pretrained_shared):
    run_dir, prepared = pretrained_shared
    sources = prepared.sources
    probe = probe_batch(sources)
    _, model, guide = load_run(run_dir, sources, prepared.item_text(sources), probe)
    scorer = source_scorer(model, guide, probe)
    expected = source_estimates(run_dir, prepared, "cpu")[EPS_V_SHARED]
    torch.testing.assert_close(scorer.item_offsets[EPS_V_SHARED], expected)
    score = intervened_source_score(run_dir, prepared, EvalConfig(k_percent=5.0, split="valid", n_boot=1))
    assert 0.0 < score < 1.0


class _Dense:
    """``scorer`` without its ``score_targets``: the harness ranks its [R, L, J] scores."""

    def __init__(self, scorer):
        self.scorer, self.name = scorer, scorer.name

    def __call__(self, batch):
        return self.scorer(batch)


@pytest.mark.parametrize("samples", [0, 2])  # Eq. 8, the back-door
def test_scores_at_the_targets_only_rank_as_the_dense_layout(pretrained_shared, samples):
    """Evaluation asks PreRec's scorers for the target positions only ([A, J], grouped by period); the ranks equal
    those of the observed site's [R, L, J] layout, sample for sample (the default model: text channel, repeat term,
    sliding popularity, so several periods and counted items per batch)."""
    run_dir, prepared = pretrained_shared
    scorer = PretrainedRun.load(run_dir).target_scorer(prepared, TARGET, samples, weigh_sequence=False)
    assert hasattr(scorer, "score_targets")
    data = prepared.target(TARGET)
    config = EvalConfig(score_budget=20_000)  # several batches
    fast, dense = (evaluate_domain(s, data, 0, config) for s in (scorer, _Dense(scorer)))
    assert len(fast.ranks) > 50
    np.testing.assert_allclose(fast.ranks, dense.ranks, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(fast.users, dense.users)

"""Random, POP and SBERT scorers through the evaluation harness."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from prerec_pyro.baselines.simple import (
    PopScorer,
    RandomScorer,
    SbertPopScorer,
    SbertScorer,
    fit_sbert_pop,
    sbert_pop_grid_scores,
)
from prerec_pyro.data.batches import BatchBuilder
from prerec_pyro.evaluate import EvalConfig, evaluate_domain, random_summary, summarize


def test_sampled_random_matches_the_closed_form(tiny_sources):
    config = EvalConfig(k_percent=10.0, split="all", n_boot=10)
    results = [evaluate_domain(RandomScorer(seed), tiny_sources, 0, config) for seed in range(20)]
    sampled = np.mean([summarize(r, config)["recall@k%"] for r in results])
    exact = random_summary(tiny_sources.domains[0].n_items, config, len(results[0].ranks))["recall@k%"]
    assert abs(sampled - exact) < 0.25 * exact


def test_pop_scores_are_the_previous_interval_counts(tiny_sources):
    dom = tiny_sources.domains[0]
    windows = dom.windows(dom.users_in("train")[:4], tiny_sources.sequences)
    batch = BatchBuilder(tiny_sources, n_negatives=None).make(0, windows)
    scores = PopScorer()(batch)  # [R, L, J]
    periods = torch.as_tensor(dom.popularity.period_of(windows.times[:, : batch.items.shape[1]]))
    counts = dom.popularity.counts(periods.reshape(-1), torch.arange(dom.n_items)).reshape(scores.shape)
    order_scores, order_counts = scores.argsort(dim=-1, stable=True), counts.argsort(dim=-1, stable=True)
    assert torch.equal(order_scores, order_counts)


def test_sbert_scores_the_last_history_item(tiny_sources, encode_hash):
    text = encode_hash(tiny_sources)
    dom = tiny_sources.domains[1]
    batch = BatchBuilder(tiny_sources, n_negatives=None).make(1, dom.windows(dom.users_in("test")[:3],
                                                                             tiny_sources.sequences))
    scores = SbertScorer(text)(batch)
    last = batch.items[0, 1]  # the item at position 1 is the last history item of position 2
    expected = text[last] @ text[batch.candidate_rows].T
    torch.testing.assert_close(scores[0, 2], expected)


def test_sbert_pop_with_alpha_zero_ranks_as_sbert(tiny_sources, encode_hash):
    text = encode_hash(tiny_sources)
    config = EvalConfig(k_percent=10.0, split="all", n_boot=10, history_items=("keep", "exclude"))
    plain = evaluate_domain(SbertScorer(torch.nn.functional.normalize(text, dim=-1)), tiny_sources, 0, config)
    with_pop = evaluate_domain(SbertPopScorer(text, 0.0), tiny_sources, 0, config)
    for rule in config.history_items:
        np.testing.assert_allclose(with_pop.ranks_under(rule), plain.ranks_under(rule))
    heavy = evaluate_domain(SbertPopScorer(text, 100.0), tiny_sources, 0, config)
    popular = evaluate_domain(PopScorer(), tiny_sources, 0, config)
    assert np.mean(np.abs(heavy.ranks - popular.ranks)) < np.mean(np.abs(plain.ranks - popular.ranks))


def test_sbert_pop_alpha_is_fitted_on_the_sources_validation_users(tiny_sources, encode_hash):
    text = encode_hash(tiny_sources)
    config = EvalConfig(k_percent=10.0, split="valid", n_boot=10)
    fitted = fit_sbert_pop(tiny_sources, text, config, grid=(0.0, 0.1, 1.0, 10.0))
    scores = {alpha: np.mean([summarize(evaluate_domain(SbertPopScorer(text, alpha), tiny_sources, k, config),
                                        config)["rndcg@k%"] for k in range(len(tiny_sources.domains))])
              for alpha in (0.0, 0.1, 1.0, 10.0)}
    assert fitted.alpha == max(scores, key=scores.get)
    one_pass = sbert_pop_grid_scores(tiny_sources, text, config, (0.0, 0.1, 1.0, 10.0))  # what the fit compares
    assert one_pass == [scores[alpha] for alpha in (0.0, 0.1, 1.0, 10.0)]  # exactly: the same sums, the same ranks
    excluded = replace(config, history_items=("exclude",))  # fitted under the rule asked for first
    by_hand = [np.mean([summarize(evaluate_domain(SbertPopScorer(text, alpha), tiny_sources, k, excluded),
                                  excluded)["rndcg@k%"] for k in range(len(tiny_sources.domains))])
               for alpha in (0.0, 1.0)]
    assert sbert_pop_grid_scores(tiny_sources, text, excluded, (0.0, 1.0)) == by_hand and by_hand != one_pass[::2]
    with pytest.raises(ValueError, match="not on test users"):
        fit_sbert_pop(tiny_sources, text, EvalConfig(k_percent=10.0))
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0"):
        SbertPopScorer(text, -1.0)

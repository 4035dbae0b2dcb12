"""The evaluation harness: batch packing, block-wise ranking, and that packing changes no rank."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from prerec_pyro import popularity
from prerec_pyro.data.batches import BatchBuilder
from prerec_pyro.evaluate import (
    SUBSETS,
    EvalConfig,
    SampleRanks,
    eval_batches,
    evaluate_domain,
    pack_by_length,
    random_summary,
    ranks_at,
    summarize,
    trimmed_lengths,
)
from prerec_pyro.metrics import average_ranks


def test_trimmed_lengths_end_at_the_last_target():
    mask = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=bool)
    np.testing.assert_array_equal(trimmed_lengths(mask), [2, 3, 1, 4])


@pytest.mark.parametrize("budget", [1, 40, 100, 10_000])
def test_pack_by_length_covers_every_window_once_within_budget(budget):
    lengths = np.random.default_rng(0).integers(1, 9, size=50)
    order = np.argsort(lengths, kind="stable")
    packed = pack_by_length(order, lengths, n_items=5, budget=budget)
    np.testing.assert_array_equal(np.concatenate(packed), order)
    for rows in packed:
        assert len(rows) == 1 or len(rows) * lengths[rows].max() * 5 <= budget
    if budget == 10_000:
        assert len(packed) == 1


def test_ranks_at_equals_ranking_the_gathered_rows(monkeypatch):
    monkeypatch.setattr("prerec_pyro.metrics._RANK_CHUNK_ELEMENTS", 14)  # blocks of 2 rows of 7 items
    generator = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (3, 5, 7), generator=generator).float()  # ties on purpose
    targets = torch.randint(0, 7, (3, 5), generator=generator)
    keep = np.random.default_rng(0).random((3, 5)) < 0.6
    keep_t = torch.as_tensor(keep)
    expected = average_ranks(scores[keep_t], targets[keep_t])
    torch.testing.assert_close(ranks_at(scores, targets, keep), expected)


def test_catalogue_factors_match_the_table_after_eviction(tiny_sources, monkeypatch):
    monkeypatch.setattr(popularity, "COUNTED_CACHE", 3)  # at most 3 counted (period, item) rows kept
    builder, table = BatchBuilder(tiny_sources, n_negatives=None), tiny_sources.domains[0].popularity
    table._counted_lists.clear()  # the fixture's table may keep periods from other tests
    n_items = tiny_sources.domains[0].n_items
    for periods in ([0, 1, 2], [2, 3], [0, 3, 1]):
        periods_t = torch.as_tensor(periods)
        period, column, rows = builder.catalogue_factors(0, periods_t)
        dense = table.factors(periods_t, torch.arange(n_items))  # [P, J, F]
        expected_period, expected_column = dense.ne(0).any(-1).nonzero(as_tuple=True)
        assert torch.equal(period, expected_period) and torch.equal(column, expected_column)
        assert torch.equal(rows, dense[period, column])
        assert sum(len(kept) for kept, _ in table._counted_lists.values()) <= 3


def test_packing_changes_no_rank(tiny_sources):
    """One window per batch or every window in one batch: the same ranks for the same samples."""

    class LastItemScorer:  # scores depend on each position's own history only
        name = "last-item"

        def __call__(self, batch):
            n = batch.n_domain_items
            last = batch.items - batch.item_offset  # [R, L]
            return torch.cos(last.unsqueeze(-1).float() * torch.arange(n).float() / 7.0)  # [R, L, J]

    config = EvalConfig(k_percent=5.0)
    n_items, max_len = tiny_sources.domains[0].n_items, tiny_sources.sequences.max_len
    small = evaluate_domain(LastItemScorer(), tiny_sources, 0, replace(config, score_budget=1))
    large = evaluate_domain(LastItemScorer(), tiny_sources, 0, replace(config, score_budget=10**9))
    assert len(small.ranks) > 0 and n_items * max_len > 1
    by_user_small, by_user_large = np.lexsort((small.ranks, small.users)), np.lexsort((large.ranks, large.users))
    np.testing.assert_array_equal(small.users[by_user_small], large.users[by_user_large])
    np.testing.assert_array_equal(small.ranks[by_user_small], large.ranks[by_user_large])


def _rndcg(rank: float, n_items: int, b: float) -> float:
    return math.log(2) / math.log(2 + b * (rank - 1) / n_items)


def test_summarize_rndcg_b_follows_k_percent_unless_given():
    """rank 1, 3 (inside K = 5 of N = 1000 at K% = 0.5) and 30 (outside): b = 600 / 0.5 = 1200 by default."""
    result = SampleRanks("d", 1000, np.array([1.0, 3.0, 30.0]), np.array([0, 1, 2]), np.zeros(3, bool))
    default, fixed = EvalConfig(k_percent=0.5, n_boot=10), EvalConfig(k_percent=0.5, n_boot=10, rndcg_b=15000.0)
    by_default, by_fixed = summarize(result, default), summarize(result, fixed)
    assert by_default["rndcg@k%"] == pytest.approx((1 + _rndcg(3, 1000, 1200.0)) / 3, rel=1e-12)
    assert by_fixed["rndcg@k%"] == pytest.approx((1 + _rndcg(3, 1000, 15000.0)) / 3, rel=1e-12)
    assert by_fixed["rndcg@k%"] < by_default["rndcg@k%"]
    assert by_fixed["recall@k%"] == by_default["recall@k%"] == pytest.approx(2 / 3)
    assert random_summary(1000, fixed, 3)["rndcg@k%"] < random_summary(1000, default, 3)["rndcg@k%"]


@pytest.mark.parametrize("kwargs, message", [({"k_percent": 0.0}, r"k_percent .*got 0\.0"),
                                             ({"k_percent": 101.0}, r"k_percent .*got 101\.0"),
                                             ({"rndcg_b": 0.0}, r"rndcg_b .*got 0\.0"),
                                             ({"rndcg_b": -5.0}, r"rndcg_b .*got -5\.0")])
def test_eval_config_rejects_bad_k_percent_and_rndcg_b(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EvalConfig(**kwargs)


def test_summarize_new_items_subset_counts_new_items_whatever_the_user():
    """Samples 1 and 2 have new items; only sample 2's user is also new: "unseen" holds 1 sample, "new_items" 2."""
    ranks, users = np.array([1.0, 3.0, 30.0, 500.0]), np.array([0, 1, 1, 2])
    unseen, new_item = np.array([False, False, True, False]), np.array([False, True, True, False])
    result = SampleRanks("d", 1000, ranks, users, unseen, new_item)
    config = EvalConfig(k_percent=0.5, n_boot=10)  # K = 5 of 1000 items
    counts = {subset: summarize(result, config, subset)["n_samples"] for subset in SUBSETS}
    assert SUBSETS == ("all", "unseen", "new_items") and counts == {"all": 4, "unseen": 1, "new_items": 2}
    new = summarize(result, config, "new_items")
    assert new["recall@k%"] == pytest.approx(0.5)  # rank 3 inside K, rank 30 outside
    assert new == summarize(SampleRanks("d", 1000, ranks[new_item], users[new_item], unseen[new_item]), config)
    assert summarize(SampleRanks("d", 1000, ranks, users, unseen), config, "new_items") == {"n_samples": 0}
    with pytest.raises(ValueError, match="unknown subset 'cold'.*new_items"):
        summarize(result, config, "cold")


class _PreviousItemScorer:
    """Scores that depend on the previous item only (a fixed random table, with ties): row ``prev`` of ``table``."""

    name = "previous-item"

    def __init__(self, n_items: int):
        self.table = torch.randint(0, 5, (n_items, n_items), generator=torch.Generator().manual_seed(3)).float()

    def __call__(self, batch):
        previous = torch.cat([batch.items[:, :1], batch.items[:, :-1]], dim=1) - batch.item_offset  # [R, L]
        return self.table[previous]  # [R, L, J]


class _TargetsOnly(_PreviousItemScorer):
    """The same scores through the ``score_targets`` path (layout order, grouped by period)."""

    def score_targets(self, batch):
        return self(batch).reshape(-1, batch.n_domain_items)[batch.target_layout()[0]]  # [A, J]


def _expected_exclude_ranks(data, config, table: torch.Tensor) -> tuple[np.ndarray, int]:
    """Ranks under "exclude" computed sample by sample from the users' whole sequences, in the harness's order, and
    how many samples had a seen item outside their own window."""
    dom, expected, outside = data.domains[0], [], 0
    for windows, batch in eval_batches(data, 0, config):
        keep = batch.target_mask.numpy()
        for row, position in zip(*np.nonzero(keep)):
            user, absolute = windows.user[row], windows.position[row, position]
            sequence = dom.seq_items[dom.seq_offsets[user]: dom.seq_offsets[user + 1]]
            seen = set(sequence[:absolute].tolist())
            outside += bool(seen - set(windows.items[row, :position].tolist()))
            scores = table[sequence[absolute - 1]].numpy().copy()
            target = sequence[absolute]
            scores[list(seen)] = -np.inf
            higher, level = (scores > scores[target]).sum(), (scores == scores[target]).sum()
            expected.append(higher + (level + 1) / 2)
    return np.array(expected), outside


@pytest.mark.parametrize("scorer_class", [_PreviousItemScorer, _TargetsOnly])
def test_exclude_ranks_the_whole_history_last_and_keeps_other_ranks_in_order(tiny_sources, scorer_class):
    """Sequences longer than max_len = 8 are cut into windows; "exclude" ranks last every item of the whole history
    before the target (also those before its window), the rest in score order, the catalogue size unchanged."""
    scorer = scorer_class(tiny_sources.domains[0].n_items)
    config = EvalConfig(k_percent=5.0, history_items=("keep", "exclude"), score_budget=4_000)
    result = evaluate_domain(scorer, tiny_sources, 0, config)
    expected, outside = _expected_exclude_ranks(tiny_sources, config, scorer.table)
    assert outside > 0, "the fixture must have targets whose seen items lie before their window"
    np.testing.assert_array_equal(result.ranks_under("exclude"), expected)
    np.testing.assert_array_equal(result.ranks, result.ranks_under("keep"))
    keep_only = evaluate_domain(scorer, tiny_sources, 0, replace(config, history_items="keep"))
    np.testing.assert_array_equal(keep_only.ranks, result.ranks_under("keep"))
    assert not np.array_equal(result.ranks_under("exclude"), result.ranks)
    excluded = summarize(result, replace(config, k_percent=50.0), history_items="exclude")
    assert excluded["recall@k%"] != summarize(result, replace(config, k_percent=50.0))["recall@k%"]
    with pytest.raises(ValueError, match="not ranked under history rule 'exclude'"):
        summarize(keep_only, config, history_items="exclude")


@pytest.mark.parametrize("rules", [(), ("keep", "keep"), ("drop",), "everything"])
def test_eval_config_rejects_unknown_history_rules(rules):
    with pytest.raises(ValueError, match="history_items must be distinct rules"):
        EvalConfig(history_items=rules)

"""Tests of prerec_pyro.metrics against hand-computed values."""

from __future__ import annotations

import math
import re

import pytest
import torch

from prerec_pyro.metrics import (
    MetricNames,
    average_ranks,
    bootstrap_ci,
    k_from_percent,
    ndcg_at_10,
    random_baseline,
    recall_at_10,
    recall_at_k,
    rndcg_at_k,
    rndcg_b,
    sample_metrics,
)

INF = float("inf")


def test_k_from_percent_values() -> None:
    assert k_from_percent(10000, 0.04) == 4
    assert k_from_percent(4000, 0.5) == 20
    assert k_from_percent(4223, 0.5) == 21  # 21.115 -> 21
    assert k_from_percent(10000, 0.29) == 29  # float arithmetic would give 28.999... -> 28
    assert k_from_percent(100, 100) == 100


def test_k_from_percent_zero_k_error_names_inputs_and_minimum() -> None:
    with pytest.raises(ValueError, match=r"N = 2000 .*k_percent = 0\.04.*k_percent >= 0\.05"):
        k_from_percent(2000, 0.04)


@pytest.mark.parametrize("n_items, k_percent", [(0, 1.0), (10, 0.0), (10, -1.0), (10, 101.0), (10, float("nan"))])
def test_k_from_percent_bad_input(n_items: int, k_percent: float) -> None:
    with pytest.raises(ValueError):
        k_from_percent(n_items, k_percent)


def test_average_ranks_plain_ties_and_padding() -> None:
    scores = torch.tensor(
        [
            [0.1, 0.9, 0.5, 0.3],  # target 2 (0.5): one above -> rank 2
            [0.5, 0.5, 0.5, 0.1],  # target 0 tied with two others: 0 above, 3 equal -> 0 + (3 + 1) / 2 = 2
            [0.7, 0.2, -INF, -INF],  # target 1, padding below: rank 2
            [-INF, 0.3, -INF, 0.3],  # target 3 tied with 1, padding below: 0 + (2 + 1) / 2 = 1.5
            [0.2, 0.2, 0.9, 0.2],  # target 1: one above, three equal -> 1 + 2 = 3
        ]
    )
    targets = torch.tensor([2, 0, 1, 3, 1])
    ranks = average_ranks(scores, targets)
    assert ranks.dtype == torch.float64
    assert ranks.tolist() == [2.0, 2.0, 2.0, 1.5, 3.0]


def test_average_ranks_matches_unique_sort_rank_without_ties() -> None:
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(50, 30, generator=gen)
    targets = torch.randint(30, (50,), generator=gen)
    order_rank = scores.argsort(dim=1, descending=True).argsort(dim=1) + 1
    expected = order_rank.gather(1, targets[:, None]).squeeze(1).to(torch.float64)
    assert torch.equal(average_ranks(scores, targets), expected)


def test_average_ranks_errors() -> None:
    with pytest.raises(ValueError, match="NaN"):
        average_ranks(torch.tensor([[0.1, float("nan")]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="-inf"):
        average_ranks(torch.tensor([[0.1, -INF]]), torch.tensor([1]))
    with pytest.raises(ValueError, match="range"):
        average_ranks(torch.tensor([[0.1, 0.2]]), torch.tensor([2]))
    with pytest.raises(ValueError, match="shape"):
        average_ranks(torch.tensor([[0.1, 0.2]]), torch.tensor([0, 1]))


def test_recall_and_rndcg_by_hand() -> None:
    ranks = torch.tensor([1.0, 2.0, 4.0, 4.5, 5.0, 100.0])
    n_items, k = 10000, 4
    assert recall_at_k(ranks, k).tolist() == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    got = rndcg_at_k(ranks, n_items, k, b=15000.0)
    # rank 2: log 2 / log(2 + 15000 * 1 / 10000) = log 2 / log 3.5; rank 4: log 2 / log(2 + 4.5) = log 2 / log 6.5
    expected = [1.0, math.log(2) / math.log(3.5), math.log(2) / math.log(6.5), 0.0, 0.0, 0.0]
    assert got.tolist() == pytest.approx(expected, rel=1e-12)
    # fractional rank inside K uses the formula on the fractional rank
    frac = rndcg_at_k(torch.tensor([2.5]), 1000, 3, b=15000.0)
    assert frac.item() == pytest.approx(math.log(2) / math.log(2 + 15000 * 1.5 / 1000), rel=1e-12)


def test_rndcg_b_follows_k_percent() -> None:
    assert rndcg_b(0.5) == pytest.approx(1200.0, rel=1e-12)
    assert rndcg_b(0.04) == pytest.approx(15000.0, rel=1e-12)
    assert rndcg_b(5.0) == pytest.approx(120.0, rel=1e-12)
    assert rndcg_b(0.5, 15000.0) == 15000.0  # an explicit b overrides
    assert rndcg_b(0.04, b=7.5) == 7.5


@pytest.mark.parametrize("b", [0.0, -1.0, float("nan"), float("inf")])
def test_rndcg_b_rejects_bad_b(b: float) -> None:
    with pytest.raises(ValueError, match=re.escape(f"b = {b!r}")):
        rndcg_b(0.5, b)
    with pytest.raises(ValueError, match=re.escape(f"b = {b!r}")):
        sample_metrics(torch.tensor([1.0]), 1000, 0.5, b=b)
    with pytest.raises(ValueError, match=re.escape(f"b = {b!r}")):
        random_baseline(1000, 0.5, b=b)
    with pytest.raises(ValueError, match="b > 0"):
        rndcg_at_k(torch.tensor([1.0]), 1000, 5, b=0.0)


def test_rndcg_b_rejects_bad_k_percent() -> None:
    with pytest.raises(ValueError, match="k_percent"):
        rndcg_b(0.0)


def test_rndcg_at_k_needs_b() -> None:
    with pytest.raises(TypeError):
        rndcg_at_k(torch.tensor([1.0]), 1000, 5)  # b has no default: it follows K%


def test_recall_and_ndcg_at_10_by_hand() -> None:
    ranks = torch.tensor([1.0, 3.0, 10.0, 10.5, 11.0])
    assert recall_at_10(ranks).tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert ndcg_at_10(ranks).tolist() == pytest.approx([1.0, 0.5, 1 / math.log2(11), 0.0, 0.0], rel=1e-12)


def test_sample_metrics_keys_and_values() -> None:
    ranks = torch.tensor([1.0, 3.0, 30.0])
    metrics = sample_metrics(ranks, n_items=1000, k_percent=0.5)  # K = 5
    assert tuple(metrics) == MetricNames.ALL
    assert metrics[MetricNames.RECALL_K].tolist() == [1.0, 1.0, 0.0]
    # b = 600 / 0.5 = 1200: rank 3 of N = 1000 gives log 2 / log(2 + 1200 * 2 / 1000) = log 2 / log 4.4
    assert metrics[MetricNames.RNDCG_K][1].item() == pytest.approx(math.log(2) / math.log(2 + 1200 * 2 / 1000),
                                                                   rel=1e-12)
    assert metrics[MetricNames.RNDCG_K][1].item() == pytest.approx(math.log(2) / math.log(4.4), rel=1e-12)
    assert metrics[MetricNames.RNDCG_K][2].item() == 0.0
    assert metrics[MetricNames.NDCG_10].tolist() == pytest.approx([1.0, 0.5, 0.0])


def test_sample_metrics_explicit_b_overrides() -> None:
    ranks = torch.tensor([1.0, 3.0, 30.0])
    metrics = sample_metrics(ranks, n_items=1000, k_percent=0.5, b=15000.0)  # K = 5
    assert metrics[MetricNames.RNDCG_K].tolist() == pytest.approx([1.0, math.log(2) / math.log(32.0), 0.0], rel=1e-12)
    assert metrics[MetricNames.RECALL_K].tolist() == [1.0, 1.0, 0.0]


def test_random_baseline_table1_xmarket() -> None:
    base = random_baseline(10000, 0.04)  # K = 4, b = 600 / 0.04 = 15000
    assert base[MetricNames.RECALL_K] == pytest.approx(0.0004, rel=1e-12)
    by_hand = (1 + math.log(2) / math.log(3.5) + math.log(2) / math.log(5) + math.log(2) / math.log(6.5)) / 10000
    assert base[MetricNames.RNDCG_K] == pytest.approx(by_hand, rel=1e-12)
    assert round(base[MetricNames.RNDCG_K], 4) == 0.0002
    assert base[MetricNames.RECALL_10] == pytest.approx(0.001)
    assert base[MetricNames.NDCG_10] == pytest.approx(sum(1 / math.log2(r + 1) for r in range(1, 11)) / 10000)
    assert round(random_baseline(10000, 0.04, b=1200.0)[MetricNames.RNDCG_K], 4) == 0.0004  # b must follow K%


def test_random_baseline_table1_online_retail() -> None:
    base = random_baseline(4223, 0.5)  # K = 21, b = 600 / 0.5 = 1200
    assert base[MetricNames.RECALL_K] == pytest.approx(21 / 4223, rel=1e-12)
    by_hand = sum(math.log(2) / math.log(2 + 1200 * (r - 1) / 4223) for r in range(1, 22)) / 4223
    assert base[MetricNames.RNDCG_K] == pytest.approx(by_hand, rel=1e-12)
    assert round(base[MetricNames.RNDCG_K], 4) == 0.0025  # the paper's Online Retail Random row
    fixed = random_baseline(4223, 0.5, b=15000.0)  # the old fixed b misses the paper's value
    assert round(fixed[MetricNames.RNDCG_K], 4) == 0.0012
    assert fixed[MetricNames.RECALL_K] == base[MetricNames.RECALL_K]


def test_random_baseline_small_catalogue() -> None:
    base = random_baseline(5, 40.0)  # K = 2, N < 10, b = 600 / 40 = 15
    assert base[MetricNames.RECALL_K] == pytest.approx(0.4)
    assert base[MetricNames.RNDCG_K] == pytest.approx((1 + math.log(2) / math.log(2 + 15 * 1 / 5)) / 5, rel=1e-12)
    assert base[MetricNames.RECALL_10] == 1.0
    assert base[MetricNames.NDCG_10] == pytest.approx(sum(1 / math.log2(r + 1) for r in range(1, 6)) / 5)


def test_random_scores_match_closed_form_monte_carlo() -> None:
    n_items, k_percent, n_samples = 200, 5.0, 20000  # K = 10
    gen = torch.Generator().manual_seed(1)
    scores = torch.rand(n_samples, n_items, generator=gen)
    targets = torch.randint(n_items, (n_samples,), generator=gen)
    metrics = sample_metrics(average_ranks(scores, targets), n_items, k_percent)
    expected = random_baseline(n_items, k_percent)
    for name in MetricNames.ALL:
        mean = metrics[name].mean().item()
        std_err = metrics[name].std().item() / math.sqrt(n_samples)
        assert abs(mean - expected[name]) < 4 * std_err, name


def _grouped_values(n_users: int, per_user: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    user_effect = torch.rand(n_users, generator=gen, dtype=torch.float64)
    groups = torch.arange(n_users).repeat_interleave(per_user)
    values = (user_effect[groups] + 0.1 * torch.rand(n_users * per_user, generator=gen, dtype=torch.float64)) > 0.5
    return values.to(torch.float64), groups


def test_bootstrap_ci_contains_mean_and_shrinks_with_users() -> None:
    values_small, groups_small = _grouped_values(50, 4, seed=0)
    values_big, groups_big = _grouped_values(2000, 4, seed=0)
    low_s, high_s = bootstrap_ci(values_small, groups_small, n_boot=500)
    low_b, high_b = bootstrap_ci(values_big, groups_big, n_boot=500)
    assert low_s < values_small.mean().item() < high_s
    assert low_b < values_big.mean().item() < high_b
    assert (high_b - low_b) < 0.5 * (high_s - low_s)
    assert bootstrap_ci(values_small, groups_small, n_boot=500) == (low_s, high_s)  # seeded, deterministic


def test_bootstrap_ci_resamples_users_not_samples() -> None:
    # Within-user perfectly correlated values: the cluster bootstrap must be wider than an i.i.d. one.
    gen = torch.Generator().manual_seed(3)
    user_values = (torch.rand(100, generator=gen) > 0.5).to(torch.float64)
    groups = torch.arange(100).repeat_interleave(20)
    values = user_values[groups]
    low_c, high_c = bootstrap_ci(values, groups, n_boot=400)
    low_i, high_i = bootstrap_ci(values, torch.arange(values.numel()), n_boot=400)
    assert (high_c - low_c) > 3 * (high_i - low_i)


def test_bootstrap_ci_constant_values_and_errors() -> None:
    assert bootstrap_ci(torch.full((10,), 0.25), torch.arange(10) % 3) == pytest.approx((0.25, 0.25))
    with pytest.raises(ValueError, match="equal length"):
        bootstrap_ci(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="empty"):
        bootstrap_ci(torch.zeros(0), torch.zeros(0))

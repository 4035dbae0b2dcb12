"""Tests of the synthetic benchmark: determinism, sizes, ids, persistence and the planted effects."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest

from prerec_pyro.data.synthetic import (
    ATTRIBUTES,
    CATEGORIES,
    TERMS,
    PlantedTruth,
    SyntheticConfig,
    generate_synthetic,
    load_synthetic,
    planted_scores,
    write_synthetic,
)

SMALL = SyntheticConfig.small()


@pytest.fixture(scope="module")
def small():
    return generate_synthetic(SMALL)


@pytest.fixture(scope="module")
def default():
    return generate_synthetic(SyntheticConfig())


def _interval_counts(data, name: str) -> np.ndarray:
    """Counts [n_intervals, n_items_k] of the domain's choices per planted interval, in catalogue order."""
    truth, log = data.truth, data.domain(name).interactions
    interval = (log["timestamp"].to_numpy() - truth.interval_origin) // truth.interval_seconds
    counts = np.zeros(truth.log_popularity[name].shape)
    np.add.at(counts, (interval, pd.Index(truth.domain_items[name]).get_indexer(log["item_id"])), 1)
    return counts


def _rank_percentile(scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Fraction of the other items scored above the target (ties count half): 0 best, 0.5 random."""
    chosen = scores[np.arange(len(target)), target][:, None]
    above, ties = (scores > chosen).sum(axis=1), (scores == chosen).sum(axis=1) - 1
    return (above + 0.5 * ties) / (scores.shape[1] - 1)


def _mean_percentile(data, name: str, terms) -> float:
    """Mean rank percentile of the chosen item at every position with a previous item."""
    log = data.domain(name).interactions
    prev = log.groupby("user_id")["item_id"].shift(1)
    keep = prev.notna().to_numpy()
    log, prev = log[keep], prev[keep].to_numpy()
    scores = planted_scores(data.truth, name, log["user_id"], prev, log["timestamp"], terms)
    target = pd.Index(data.truth.domain_items[name]).get_indexer(log["item_id"])
    return float(_rank_percentile(scores, target).mean())


def _assert_truth_equal(a: PlantedTruth, b: PlantedTruth) -> None:
    for field in dataclasses.fields(PlantedTruth):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, dict):
            assert list(x) == list(y), field.name
            for key in x:
                np.testing.assert_array_equal(x[key], y[key], err_msg=f"{field.name}[{key}]")
        elif isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y, err_msg=field.name)
        else:
            assert x == y, field.name


def _assert_domains_equal(a, b) -> None:
    assert [d.name for d in a.domains] == [d.name for d in b.domains]
    for x, y in zip(a.domains, b.domains):
        pd.testing.assert_frame_equal(x.items, y.items)
        pd.testing.assert_frame_equal(x.interactions, y.interactions)


def test_same_seed_same_data_other_seed_other_data(small):
    again = generate_synthetic(SMALL)
    _assert_domains_equal(small, again)
    _assert_truth_equal(small.truth, again.truth)
    other = generate_synthetic(SyntheticConfig.small(seed=1))
    assert not small.domains[0].interactions.equals(other.domains[0].interactions)


def test_sizes_and_shapes(small):
    cfg, truth = SMALL, small.truth
    assert small.sources == ("india", "spain", "canada")
    assert small.targets == ("australia", "mexico", "germany", "japan")
    assert [d.name for d in small.domains] == list(cfg.sources + cfg.targets)
    n_all = cfg.n_pool_items + 7 * cfg.unique_items_per_domain
    assert truth.item_ids.shape == (n_all,) and truth.item_vectors.shape == (n_all, cfg.latent_dim)
    np.testing.assert_allclose(np.linalg.norm(truth.item_vectors, axis=1), 1.0)
    assert cfg.n_intervals == 6
    for domain in small.domains:
        n_items = cfg.items_per_domain + cfg.unique_items_per_domain
        assert domain.n_items == n_items and domain.n_users == 60
        assert truth.log_popularity[domain.name].shape == (6, n_items)
        assert truth.user_vectors[domain.name].shape == (60, cfg.latent_dim)
        assert truth.domain_vectors[domain.name].shape == (cfg.latent_dim,)
        np.testing.assert_array_equal(truth.domain_items[domain.name], domain.items["item_id"].to_numpy())
        lengths = domain.interactions.groupby("user_id").size()
        assert lengths.between(cfg.min_seq_len, cfg.max_seq_len).all()


def test_default_sizes(default):
    cfg = SyntheticConfig()
    source = sum(default.domain(name).n_interactions for name in cfg.sources)
    assert 50_000 <= source <= 80_000
    for domain in default.domains:
        assert domain.n_items == 680
        assert domain.n_users == (1500 if domain.name in cfg.sources else 400)


def test_ids_unique_and_users_never_shared(small):
    assert len(set(small.truth.item_ids)) == len(small.truth.item_ids)
    assert all(re.fullmatch(r"P\d{5}", item) for item in small.truth.item_ids)
    seen: set[str] = set()
    for domain in small.domains:
        assert domain.items["item_id"].is_unique
        users = set(domain.interactions["user_id"])
        assert all(re.fullmatch(rf"{domain.name}_u\d{{6}}", user) for user in users)
        assert not users & seen
        seen |= users


def test_sequences_are_ordered_without_repeats_inside_the_horizon(small):
    for domain in small.domains:
        log = domain.interactions
        assert not log.duplicated(["user_id", "item_id"]).any()
        assert (log.groupby("user_id")["timestamp"].diff().dropna() > 0).all()
        offsets = log["timestamp"] - small.truth.interval_origin
        assert offsets.min() == 0 and offsets.max() < SMALL.horizon_days * 86_400


def test_targets_have_items_absent_from_every_source_and_choose_them(small):
    source_items = set().union(*(set(small.domain(s).items["item_id"]) for s in small.sources))
    for name in small.targets:
        domain = small.domain(name)
        unseen = set(domain.items["item_id"]) - source_items
        assert len(unseen) >= SMALL.unique_items_per_domain
        assert domain.interactions["item_id"].isin(unseen).sum() > 0


def test_text_and_content_vector_follow_the_attributes(small):
    truth, domain = small.truth, small.domains[0]
    row = int(np.searchsorted(truth.item_ids, domain.items["item_id"].iloc[0]))
    words = {g: ATTRIBUTES[g][v] for g, v in zip(ATTRIBUTES, truth.item_attributes[row])}
    expected = (f"{words['brand']} {words['colour']} {words['style']} {words['category']}. Features: "
                f"{words['feature']}, {words['material']}. Category: {CATEGORIES[words['category']]}.")
    assert domain.items["text"].iloc[0] == expected
    total = sum((1.0 if g == "category" else SMALL.attribute_weight) * truth.attribute_vectors[g][v]
                for g, v in zip(ATTRIBUTES, truth.item_attributes[row]))
    np.testing.assert_allclose(truth.item_vectors[row], total / np.linalg.norm(total))


def test_domain_vector_is_the_favourite_categories_without_noise():
    data = generate_synthetic(SyntheticConfig.small(sigma_d=0.0, source_users=5, target_users=5))
    cats = data.truth.attribute_vectors["category"]
    unit = cats / np.linalg.norm(cats, axis=1, keepdims=True)
    for name, vector in data.truth.domain_vectors.items():
        favourites = data.truth.favourite_categories[name]
        assert len(favourites) == SMALL.n_favourite_categories
        np.testing.assert_allclose(vector, SMALL.favourite_weight * unit[favourites].sum(axis=0))


def test_truth_round_trip(small, tmp_path):
    small.truth.save(tmp_path)
    _assert_truth_equal(small.truth, PlantedTruth.load(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["truth.json", "truth.npz"]


def test_written_dataset_round_trip(small, tmp_path):
    written = write_synthetic(SMALL, tmp_path)
    loaded = load_synthetic(tmp_path)
    _assert_domains_equal(small, written)
    _assert_domains_equal(written, loaded)
    _assert_truth_equal(written.truth, loaded.truth)
    assert (loaded.sources, loaded.targets) == (SMALL.sources, SMALL.targets)
    assert not list(tmp_path.rglob("*.tmp"))


def test_missing_files_raise_naming_the_file(tmp_path):
    with pytest.raises(ValueError, match="manifest.json"):
        load_synthetic(tmp_path)
    with pytest.raises(ValueError, match="truth.json"):
        PlantedTruth.load(tmp_path)


@pytest.mark.parametrize("bad", [dict(items_per_domain=200), dict(targets=("india",)), dict(max_seq_len=100),
                                 dict(start_date="not a date"), dict(pop_ar_rho=1.0)])
def test_bad_config_raises(bad):
    with pytest.raises(ValueError, match="SyntheticConfig"):
        SyntheticConfig.small(**bad)


def test_planted_scores_sum_the_terms_by_hand(small):
    truth, name = small.truth, "mexico"
    log = small.domain(name).interactions
    user, prev, now = log["user_id"].iloc[1], log["item_id"].iloc[0], int(log["timestamp"].iloc[1])
    rows = truth.item_rows(name)
    m, j = truth.item_vectors[rows], 7
    interval = (now - truth.interval_origin) // truth.interval_seconds
    sequence = truth.gamma * truth.item_vectors[np.searchsorted(truth.item_ids, prev)] @ m[j]
    expected = (truth.user_vectors[name][int(user.split("_u")[1])] @ m[j] + truth.domain_vectors[name] @ m[j]
                + truth.beta_pop * truth.log_popularity[name][interval, j] + sequence)
    scores = planted_scores(truth, name, [user, user], [prev, None], [now, now])
    assert scores[0, j] == pytest.approx(expected)
    assert scores[0, j] - scores[1, j] == pytest.approx(sequence)
    only_popularity = planted_scores(truth, name, [user], [prev], [now], ("popularity",))
    np.testing.assert_allclose(only_popularity[0], truth.beta_pop * truth.log_popularity[name][interval])
    with pytest.raises(ValueError, match="terms"):
        planted_scores(truth, name, [user], [prev], [now], ("bogus",))
    with pytest.raises(ValueError, match="not in"):
        planted_scores(truth, name, ["india_u000000"], [prev], [now])


def test_popular_items_are_chosen_more_and_popularity_persists(small, default):
    for name in SMALL.domain_names:
        counts, logpop = _interval_counts(small, name), small.truth.log_popularity[name]
        spearman = [pd.Series(logpop[i]).corr(pd.Series(counts[i]), method="spearman") for i in range(len(counts))]
        assert np.mean(spearman) > 0.3
        assert np.corrcoef(counts[:-1].ravel(), counts[1:].ravel())[0, 1] > 0.3
    for name in SyntheticConfig().domain_names:  # the dynamic part: last interval predicts better than older ones
        counts = _interval_counts(default, name)
        lag1, lag5 = (np.corrcoef(counts[:-lag].ravel(), counts[lag:].ravel())[0, 1] for lag in (1, 5))
        assert lag1 > lag5 + 0.05


def test_domains_choose_the_categories_their_vector_favours(small):
    truth, lifts, affinities = small.truth, [], []
    for domain in small.domains:
        rows = truth.item_rows(domain.name)
        category = truth.item_attributes[rows, 0]
        chosen = truth.item_attributes[np.searchsorted(truth.item_ids, domain.interactions["item_id"]), 0]
        share = np.bincount(chosen, minlength=len(CATEGORIES)) / len(chosen)
        offered = np.bincount(category, minlength=len(CATEGORIES)) / len(category)
        favourites = truth.favourite_categories[domain.name]
        assert share[favourites].sum() > 1.5 * offered[favourites].sum()
        affinity = pd.Series(truth.item_vectors[rows] @ truth.domain_vectors[domain.name]).groupby(category).mean()
        lifts.append(np.log((share + 1e-3) / (offered + 1e-3)))
        affinities.append(affinity.reindex(range(len(CATEGORIES))).to_numpy())
    lifts, affinities = np.array(lifts), np.array(affinities)
    lift_dev, affinity_dev = lifts - lifts.mean(axis=0), affinities - np.nanmean(affinities, axis=0)
    offered_everywhere = ~np.isnan(affinity_dev)
    assert np.corrcoef(lift_dev[offered_everywhere], affinity_dev[offered_everywhere])[0, 1] > 0.5


def test_oracle_ranks_far_better_than_single_signals_and_random(small):
    for name in SMALL.domain_names:
        oracle = _mean_percentile(small, name, TERMS)
        last_item = _mean_percentile(small, name, ("sequence",))
        popularity = _mean_percentile(small, name, ("popularity",))
        assert oracle < 0.2
        assert oracle + 0.05 < min(last_item, popularity)
        assert max(last_item, popularity) < 0.4
    assert _rank_percentile(np.zeros((3, 11)), np.array([0, 4, 10])).tolist() == [0.5, 0.5, 0.5]

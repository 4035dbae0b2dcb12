"""``prepare_benchmark``'s cold-item protocol on the tiny synthetic benchmark: a seeded fraction of the targets' item
ids leaves every source (catalogue and log), the targets stay as they are, and those items count as new items."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from prerec_pyro.baselines.simple import PopScorer
from prerec_pyro.evaluate import EvalConfig, evaluate_domain, summarize
from prerec_pyro.pipeline import domain_statistics, prepare_benchmark
from prerec_pyro.text import TextEncoderConfig, encode_texts


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    return TextEncoderConfig(model="hash-bow-32", cache_dir=str(tmp_path_factory.mktemp("cache")), show_progress=False)


@pytest.fixture(scope="module")
def plain(text):
    return prepare_benchmark("synthetic-small", text=text)


@pytest.fixture(scope="module")
def cold(text):
    return prepare_benchmark("synthetic-small", cold_items=0.3, cold_seed=1, text=text)


def target_ids(prepared) -> np.ndarray:
    return np.unique(np.concatenate([prepared.domains[n].items["item_id"].to_numpy()
                                     for n in prepared.benchmark.targets]))


def test_cold_items_leave_every_source_catalogue_and_log(plain, cold):
    removed = set(cold.cold_item_ids)
    assert len(removed) == len(cold.cold_item_ids) == round(0.3 * len(target_ids(plain)))
    assert removed <= set(target_ids(plain))
    assert (cold.cold_items, cold.cold_seed) == (0.3, 1)
    assert removed & plain.sources.item_id_set()  # the protocol removes ids the sources did list
    for name in cold.benchmark.sources:
        before, after = plain.domains[name], cold.domains[name]
        assert not removed & set(after.items["item_id"]) and not removed & set(after.interactions["item_id"])
        kept = before.interactions[~before.interactions["item_id"].isin(removed)].reset_index(drop=True)
        pd.testing.assert_frame_equal(after.interactions, kept)  # nothing else dropped, still sorted
        pd.testing.assert_frame_equal(after.items, before.items[~before.items["item_id"].isin(removed)]
                                      .reset_index(drop=True))
    assert not removed & cold.sources.item_id_set()
    logged_users = {u for n in cold.benchmark.sources for u in cold.domains[n].interactions["user_id"]}
    assert cold.sources.user_id_set() == logged_users  # users left without interactions are gone
    assert cold.sources.n_items < plain.sources.n_items


def test_cold_items_leave_the_targets_untouched(plain, cold):
    for name in cold.benchmark.targets:
        pd.testing.assert_frame_equal(cold.domains[name].items, plain.domains[name].items)
        pd.testing.assert_frame_equal(cold.domains[name].interactions, plain.domains[name].interactions)
        np.testing.assert_array_equal(cold.target(name).domains[0].item_ids, plain.target(name).domains[0].item_ids)


def test_cold_items_are_drawn_by_the_seed(text, cold):
    again = prepare_benchmark("synthetic-small", cold_items=0.3, cold_seed=1, text=text)
    np.testing.assert_array_equal(again.cold_item_ids, cold.cold_item_ids)
    other = prepare_benchmark("synthetic-small", cold_items=0.3, cold_seed=2, text=text)
    assert len(other.cold_item_ids) == len(cold.cold_item_ids)
    assert set(other.cold_item_ids) != set(cold.cold_item_ids)


def test_zero_cold_items_is_the_plain_benchmark(text, plain):
    zero = prepare_benchmark("synthetic-small", cold_items=0.0, cold_seed=7, text=text)
    assert len(zero.cold_item_ids) == 0 and zero.cold_items == 0.0
    assert plain.cold_items == 0.0 and len(plain.cold_item_ids) == 0
    for name, domain in plain.domains.items():
        pd.testing.assert_frame_equal(zero.domains[name].items, domain.items)
        pd.testing.assert_frame_equal(zero.domains[name].interactions, domain.interactions)
    np.testing.assert_array_equal(zero.sources.item_keys()[1], plain.sources.item_keys()[1])


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5, float("nan")])
def test_bad_cold_fractions_raise_naming_the_value(fraction):
    with pytest.raises(ValueError, match=rf"cold_items .*got {fraction!r}"):
        prepare_benchmark("synthetic-small", cold_items=fraction)


def test_removed_items_are_new_items_of_the_targets_whatever_the_user(plain, cold):
    before, after = domain_statistics(plain), domain_statistics(cold)
    targets = after["role"] == "target"
    assert (after.loc[targets, "new_item_test_samples"] > before.loc[targets, "new_item_test_samples"]).all()
    assert (after.loc[~targets, "new_item_test_samples"] == 0).all()
    data, config = cold.target("japan"), EvalConfig(k_percent=5.0, n_boot=10)
    source_items = cold.sources.item_id_set()
    result = evaluate_domain(PopScorer(), data, 0, config, source_items, cold.sources.user_id_set())
    assert result.new_item.sum() == after.set_index("domain").loc["japan", "new_item_test_samples"]
    assert not (result.unseen & ~result.new_item).any()  # unseen samples are new items' samples
    # the same users counted as source users: no sample is unseen, the new-item samples stay
    known_users = set(data.domains[0].user_ids)
    same_users = evaluate_domain(PopScorer(), data, 0, config, source_items, known_users)
    assert summarize(same_users, config, "unseen")["n_samples"] == 0
    assert summarize(same_users, config, "new_items") == summarize(result, config, "new_items")


def test_centred_text_is_each_domains_vectors_minus_their_mean(text, plain):
    centred = prepare_benchmark("synthetic-small", text=replace(text, centering="domain"))
    for data in (plain.sources, plain.target(plain.benchmark.targets[0])):
        raw = plain.item_text(data)  # [J, T]
        shifted = centred.item_text(centred.sources if data is plain.sources else
                                    centred.target(plain.benchmark.targets[0]))
        for k, domain in enumerate(data.domains):
            rows = slice(int(data.item_offsets[k]), int(data.item_offsets[k]) + domain.n_items)
            assert torch.allclose(shifted[rows], raw[rows] - raw[rows].mean(0), atol=1e-6)
            assert shifted[rows].mean(0).abs().max() < 1e-5


@pytest.mark.parametrize("centering", ["domain", "whiten"])
def test_a_targets_centred_text_reads_its_catalogue_not_its_log(text, centering):
    """Zero-shot reads no target interactions: the target's centred (or whitened) vectors are the same with its log
    emptied to one interaction."""
    centred = prepare_benchmark("synthetic-small", text=replace(text, centering=centering))
    name = centred.benchmark.targets[0]
    before = centred.item_text(centred.target(name))
    domain = centred.domains[name]
    centred.domains[name] = replace(domain, interactions=domain.interactions.iloc[:1])
    centred._targets.clear()
    assert torch.equal(centred.item_text(centred.target(name)), before)


def test_whitened_text_is_each_domains_vectors_whitened_alone(text, plain):
    from prerec_pyro.text_space import whiten_block

    whitened = prepare_benchmark("synthetic-small", text=replace(text, centering="whiten"))
    raw, out = plain.item_text(plain.sources), whitened.item_text(whitened.sources)  # [J, T]
    for k, domain in enumerate(plain.sources.domains):
        rows = slice(int(plain.sources.item_offsets[k]), int(plain.sources.item_offsets[k]) + domain.n_items)
        assert torch.equal(out[rows], whiten_block(raw[rows]))


def test_text_geometry_is_the_catalogues_mean_pairwise_cosine(text):
    from prerec_pyro.pipeline import text_geometry

    centred = prepare_benchmark("synthetic-small", text=replace(text, centering="domain"))
    table = text_geometry(centred).set_index("domain")  # read as encoded, whatever the centring
    name = centred.benchmark.targets[0]
    vectors = torch.as_tensor(encode_texts(centred.domains[name].items["text"].tolist(), text))
    unit = torch.nn.functional.normalize(vectors, dim=-1)
    assert table.loc[name, "mean_pairwise_cos"] == pytest.approx(float((unit @ unit.T).mean()), abs=1e-3)
    assert set(table["role"]) == {"source", "target"} and table["cos_to_sources"].between(-1, 1).all()
    if len(centred.benchmark.sources) == 1:
        assert table.loc[centred.benchmark.sources[0], "cos_to_sources"] == pytest.approx(1.0, abs=1e-3)

"""The zero-shot study's scorers: Eq. 8, and the opt-in shared item offsets."""


import numpy as np
import pytest
import torch

from prerec_pyro.evaluate import EvalConfig, evaluate_domain
from prerec_pyro.inference.intervene import BackdoorScorer
from prerec_pyro.inference.runs import load_run
from prerec_pyro.inference.zero_shot import (
    evaluate_target,
    intervened_source_score,
    learned_shared_offsets,
    pretrained_scorer,
    probe_batch,
    shared_item_offsets,
    source_estimates,
    source_scorer,
)
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


def test_shared_offsets_read_no_target_training_data(pretrained, scramble_training_users):
    run_dir, prepared = pretrained
    data = prepared.target(TARGET)
    scorer = pretrained_scorer(run_dir, prepared, TARGET, samples=0, device="cpu", item_offsets="shared")
    assert scorer.name == "PreRec (shared offsets)"
    config = EvalConfig(k_percent=5.0, n_boot=10)
    before = evaluate_domain(scorer, data, 0, config)
    after = evaluate_domain(scorer, scramble_training_users(data), 0, config)
    assert len(before.ranks) > 0
    np.testing.assert_array_equal(before.ranks, after.ranks)
    plain = evaluate_domain(pretrained_scorer(run_dir, prepared, TARGET, 0, "cpu"), data, 0, config)
    assert not np.array_equal(before.ranks, plain.ranks), "the shared offsets must change some score"


def test_evaluate_target_rows_and_bad_options(pretrained):
    run_dir, prepared = pretrained
    rows = evaluate_target(prepared, TARGET, {"prerec": run_dir}, EvalConfig(k_percent=5.0, n_boot=10),
                           item_offsets="shared")
    assert {r["method"] for r in rows} == {"Random", "POP", "SBERT", "PreRec (shared offsets)"}
    with pytest.raises(ValueError, match="item_offsets must be one of"):
        pretrained_scorer(run_dir, prepared, TARGET, 0, "cpu", item_offsets="source")
    backdoor = pretrained_scorer(run_dir, prepared, TARGET, 4, "cpu", item_offsets="shared")
    assert isinstance(backdoor, BackdoorScorer) and set(backdoor.item_offsets) == {EPS_V, EPS_Z}


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
                                                                        scramble_training_users):
    run_dir, prepared = pretrained_shared
    data = prepared.target(TARGET)
    scorer = pretrained_scorer(run_dir, prepared, TARGET, samples=0, device="cpu")
    assert set(scorer.item_offsets) == {EPS_V_SHARED}
    config = EvalConfig(k_percent=5.0, n_boot=10)
    before = evaluate_domain(scorer, data, 0, config)
    after = evaluate_domain(scorer, scramble_training_users(data), 0, config)
    assert len(before.ranks) > 0
    np.testing.assert_array_equal(before.ranks, after.ranks)


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

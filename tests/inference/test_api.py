"""The public API (prerec_pyro.api) and scripts/recommend.py: the same scores as the evaluation harness, top-k
rules, and clear errors. Here beside the inference tests, whose pre-training fixtures it uses."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from prerec_pyro import PretrainedRun
from prerec_pyro.data.batches import BatchBuilder

TARGET = "japan"
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "recommend.py"


@pytest.fixture
def shop(pretrained):
    run_dir, prepared = pretrained
    domain = prepared.domains[TARGET]
    run = PretrainedRun.load(run_dir)
    return run, domain


def harness_scores(run_dir, prepared, user: int):
    """Full-catalogue scores of the evaluation harness for one target user's window. [L, J], items, times"""
    data = prepared.target(TARGET)
    dom = data.domains[0]
    windows = dom.windows(np.array([user]), data.sequences)
    batch = BatchBuilder(data, None).make(0, windows.select([0]))
    scorer = PretrainedRun.load(run_dir).target_scorer(prepared, TARGET, weigh_sequence=False)  # Eq. 8
    return scorer(batch)[0], dom.item_ids[windows.items[0]], windows.times[0], windows.target_mask[0]


def test_scores_equal_the_evaluation_harness(pretrained, shop):
    run_dir, prepared = pretrained
    run, domain = shop
    scores, ids, times, mask = harness_scores(run_dir, prepared, user=int(prepared.target(TARGET).domains[0]
                                                                             .users_in("test")[0]))
    position = int(np.flatnonzero(mask)[-1])
    assert position >= 1
    recommender = run.on_domain(domain.items, recent_interactions=domain.interactions, now=int(times[position]),
                                weigh_sequence=False)
    api = recommender.score([list(ids[:position])])[0]  # [J]
    torch.testing.assert_close(api, scores[position], rtol=1e-5, atol=1e-5)
    top = recommender.recommend(list(ids[:position]), k=5, exclude_seen=False)
    expected = torch.sort(scores[position], descending=True, stable=True).indices[:5]
    assert list(top["item_id"]) == list(domain.items["item_id"].to_numpy()[expected.numpy()])
    assert list(top["rank"]) == [1, 2, 3, 4, 5]


def test_a_run_trained_on_a_gpu_is_put_onto_a_target_on_this_cpu(pretrained, tmp_path):
    """The run's config says it trained on CUDA: loading it on the CPU maps every model it builds there, and the
    scores are the CPU run's."""
    import json
    import shutil

    run_dir, prepared = pretrained
    moved = tmp_path / run_dir.name
    shutil.copytree(run_dir, moved)
    payload = json.loads((moved / "config.json").read_text())
    payload["train"]["device"] = "cuda"
    (moved / "config.json").write_text(json.dumps(payload))
    run = PretrainedRun.load(moved, device="cpu")
    assert run.config.train.device == "cpu"
    data = prepared.target(TARGET)
    batch = BatchBuilder(data, None).make(0, data.domains[0].windows(data.domains[0].users_in("test")[:2],
                                                                     data.sequences))
    expected = PretrainedRun.load(run_dir).target_scorer(prepared, TARGET)(batch)
    torch.testing.assert_close(run.target_scorer(prepared, TARGET)(batch), expected)
    assert run.model_on(data, prepared.item_text(data)).item_text.device.type == "cpu"


def test_the_back_door_over_the_posterior_recommends_as_the_harness_scores(pretrained, shop):
    run_dir, prepared = pretrained
    run, domain = shop
    data = prepared.target(TARGET)
    user = int(data.domains[0].users_in("test")[0])
    windows = data.domains[0].windows(np.array([user]), data.sequences)
    batch = BatchBuilder(data, None).make(0, windows.select([0]))
    harness = run.target_scorer(prepared, TARGET, 3, backdoor_from="posterior", weigh_sequence=False)(batch)[0]
    ids, times, mask = data.domains[0].item_ids[windows.items[0]], windows.times[0], windows.target_mask[0]
    position = int(np.flatnonzero(mask)[-1])
    recommender = run.on_domain(domain.items, recent_interactions=domain.interactions, now=int(times[position]),
                                samples=3, backdoor_from="posterior", weigh_sequence=False)
    assert "back-door" in recommender.scorer.name and recommender.scorer.domain_draws.shape[0] == 3
    torch.testing.assert_close(recommender.score([list(ids[:position])])[0], harness[position], rtol=1e-5,
                               atol=1e-5)
    with pytest.raises(ValueError, match="backdoor_from must be one of"):
        run.on_domain(domain.items, samples=2, backdoor_from="data")


def test_the_recommender_weighs_the_sequence_model_by_the_history_by_default(shop):
    """One item of history: nothing to weigh yet, the scores are the prior's mixture of Eq. 8 and Eq. 8 without
    f_seq; a longer history gives a distribution over the catalogue too."""
    import math

    from prerec_pyro.inference.evidence import SilentSequence, replaced_sequence_model

    run, domain = shop
    plain = run.on_domain(domain.items, recent_interactions=domain.interactions, weigh_sequence=False)
    weighed = run.on_domain(domain.items, recent_interactions=domain.interactions)
    assert weighed.scorer.name == "PreRec, f_seq weighed by the history"
    first = [list(domain.items["item_id"][:1])]
    with_sequence = torch.log_softmax(plain.score(first)[0], -1)  # [J]
    with replaced_sequence_model(plain.model, SilentSequence()):
        without = torch.log_softmax(plain.score(first)[0], -1)  # [J]
    expected = torch.logsumexp(torch.stack([with_sequence, without]), 0) - math.log(2)
    torch.testing.assert_close(weighed.score(first)[0], expected, rtol=1e-5, atol=1e-5)
    longer = weighed.score([list(domain.items["item_id"][:6])])[0]  # [J]
    torch.testing.assert_close(longer.exp().sum(), torch.tensor(1.0), rtol=1e-5, atol=1e-5)


def test_histories_scored_together_score_as_each_alone(shop):
    """Histories of different lengths in one call (one batch, the target rows in the scorer's layout order) get
    the scores each gets alone, by the default weighed scoring and by Eq. 8."""
    run, domain = shop
    ids = list(domain.items["item_id"])
    histories = [ids[:5], ids[3:4], ids[7:10], ids[1:3]]
    for weigh in (True, False):
        recommender = run.on_domain(domain.items, recent_interactions=domain.interactions, weigh_sequence=weigh)
        together = recommender.score(histories)  # [4, J]
        alone = torch.cat([recommender.score([history]) for history in histories])  # [4, J]
        torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_top_k_is_in_the_catalogue_excludes_the_history_and_is_deterministic(shop):
    run, domain = shop
    recommender = run.on_domain(domain.items, recent_interactions=domain.interactions)
    catalogue = list(domain.items["item_id"])
    histories = {"a": catalogue[:3], "b": [catalogue[5]], "c": catalogue[2:9]}
    first = recommender.recommend(histories, k=4)
    assert list(first.columns) == ["user_id", "rank", "item_id", "score"] and len(first) == 12
    assert set(first["item_id"]) <= set(catalogue)
    for user, history in histories.items():
        assert not set(first.loc[first["user_id"] == user, "item_id"]) & set(history)
        assert first.loc[first["user_id"] == user, "score"].is_monotonic_decreasing
    pd.testing.assert_frame_equal(first, recommender.recommend(histories, k=4))
    with_seen = recommender.recommend(histories, k=len(catalogue), exclude_seen=False)
    assert set(with_seen.loc[with_seen["user_id"] == "a", "item_id"]) == set(catalogue)


def test_bad_inputs_give_clear_errors(pretrained, shop, caplog):
    run_dir, _ = pretrained
    run, domain = shop
    recommender = run.on_domain(domain.items)
    known = list(domain.items["item_id"])[:2]
    with pytest.raises(ValueError, match=r"\['nope'\] are not in the catalogue"):
        recommender.recommend(known + ["nope"])
    kept = recommender.recommend(known + ["nope"], unknown="drop")
    assert len(kept) == 10 and "dropping 1 item id" in caplog.text
    with pytest.raises(ValueError, match="history 0 is empty"):
        recommender.recommend([[]])
    for bad_k in (0, None, 2.0, True):
        with pytest.raises(ValueError, match=r"k must be an integer in \[1, "):
            recommender.recommend(known, k=bad_k)
    for empty in ([], {}):
        with pytest.raises(ValueError, match="histories is empty"):
            recommender.recommend(empty)
    with pytest.raises(ValueError, match="histories is empty"):
        recommender.score([])
    with pytest.raises(ValueError, match="trained on text vectors of 'hash-bow-32'"):
        PretrainedRun.load(run_dir, text_model="all-MiniLM-L6-v2")
    with pytest.raises(ValueError, match="no item text"):
        run.on_domain(domain.items.assign(text=""))
    with pytest.raises(ValueError, match="appears more than once"):
        run.on_domain(pd.concat([domain.items, domain.items.iloc[:1]]))
    with pytest.raises(ValueError, match="not a torch device"):
        PretrainedRun.load(run_dir, device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            PretrainedRun.load(run_dir, device="cuda")


def test_shared_offset_model_recommends_through_its_learned_offsets(pretrained_shared):
    run_dir, prepared = pretrained_shared
    domain = prepared.domains[TARGET]
    recommender = PretrainedRun.load(run_dir).on_domain(domain.items, weigh_sequence=False)  # Eq. 8's own scorer
    table = recommender.scorer.item_offsets["eps_v_shared"]  # [J, B]
    assert table.shape[0] == len(domain.items) and table.abs().sum() > 0


def test_recommend_script_writes_top_k_per_user(pretrained, shop, tmp_path):
    run_dir, _ = pretrained
    _, domain = shop
    domain.items.to_csv(tmp_path / "items.csv", index=False)
    log = domain.interactions.head(40)
    log.to_csv(tmp_path / "histories.csv", index=False)
    domain.interactions[["item_id", "timestamp"]].to_csv(tmp_path / "recent.csv", index=False)
    spec = importlib.util.spec_from_file_location("recommend", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(script.parse_args(["--run", str(run_dir), "--items", str(tmp_path / "items.csv"), "--histories",
                                   str(tmp_path / "histories.csv"), "--interactions", str(tmp_path / "recent.csv"),
                                   "--k", "3", "--out", str(tmp_path / "recs"), "--batch-users", "2"]))
    recs = pd.read_csv(tmp_path / "recs" / "recommendations.csv", dtype={"user_id": str, "item_id": str})
    assert list(recs.columns) == ["user_id", "rank", "item_id", "score"]
    assert set(recs["user_id"]) == set(log["user_id"]) and (recs.groupby("user_id").size() == 3).all()


def test_a_history_longer_than_the_window_leaves_out_every_item_it_holds(shop):
    """The model reads the last max_len - 1 = 7 items; the recommendations leave out all 20 (issue: items seen
    before the window came back as new)."""
    run, domain = shop
    recommender = run.on_domain(domain.items, recent_interactions=domain.interactions)
    catalogue = list(domain.items["item_id"])
    history = catalogue[:20]
    window = history[-(run.config.model.max_len - 1):]
    torch.testing.assert_close(recommender.score([history]), recommender.score([window]))
    top = recommender.recommend(history, k=len(catalogue) - len(history))
    assert not set(top["item_id"]) & set(history)
    assert len(top) == len(catalogue) - len(history)


def test_k_beyond_the_unseen_items_returns_only_unseen_items_with_finite_scores(shop, caplog):
    run, domain = shop
    recommender = run.on_domain(domain.items, recent_interactions=domain.interactions)
    catalogue = list(domain.items["item_id"])
    histories = {"long": catalogue[:-3] + catalogue[:5], "short": catalogue[:2]}  # "long": 3 unseen items
    top = recommender.recommend(histories, k=10)
    assert sorted(top.loc[top["user_id"] == "long", "item_id"]) == sorted(catalogue[-3:])
    assert (top.groupby("user_id").size() == pd.Series({"long": 3, "short": 10})).all()
    assert np.isfinite(top["score"]).all()
    assert "1 of 2 histories have fewer than k = 10 unseen items (the fewest: 3)" in caplog.text


def test_a_table_of_several_domains_needs_one_named(shop, tmp_path, caplog):
    """Two shops in one items table: refused without a domain (not ranked together), each shop's rows with one (a
    trailing space in a domain value is no other domain); a time far from the log warns that popularity is empty."""
    run, domain = shop
    items = domain.items.assign(domain=["north"] * 10 + ["south "] * (len(domain.items) - 10))
    with pytest.raises(ValueError, match=r"holds 2 domains \['north', 'south'\]; name the one to use"):
        run.on_domain(items)
    north = run.on_domain(items, domain="north")
    assert list(north.item_ids) == list(domain.items["item_id"][:10])
    assert len(run.on_domain(items, domain="south").item_ids) == len(domain.items) - 10
    log = domain.interactions
    far = int(log["timestamp"].max()) + 400 * 86_400
    recommender = run.on_domain(domain.items, recent_interactions=log, now=far)
    assert "no interaction in the popularity window before" in caplog.text and not recommender.factors.any()


def test_integer_item_ids_are_one_history_of_a_numeric_catalogue(shop):
    run, domain = shop
    numeric = domain.items.assign(item_id=range(100, 100 + len(domain.items)))
    recommender = run.on_domain(numeric)
    top = recommender.recommend([100, 101], k=3)
    assert list(top.columns) == ["rank", "item_id", "score"] and not {"100", "101"} & set(top["item_id"])
    with pytest.raises(ValueError, match="history 1 is 7, not a list"):
        recommender.score([[100], 7])
    with pytest.raises(ValueError, match=r"'100\.0' is read as text and the catalogue lists '100'"):
        recommender.recommend([100.0, 101.0], k=3)  # float ids, as a numeric parquet column gives them


def test_with_unknown_drop_a_user_with_no_known_item_is_named_and_skipped(shop, caplog):
    run, domain = shop
    recommender = run.on_domain(domain.items)
    catalogue = list(domain.items["item_id"])
    top = recommender.recommend({"a": catalogue[:2], "ghost": ["x1", "x2"], "b": [catalogue[3], "x3"]}, k=2,
                                unknown="drop")
    assert sorted(set(top["user_id"])) == ["a", "b"]
    assert "1 user(s) have no item of the catalogue in their history" in caplog.text and "ghost" in caplog.text
    with pytest.raises(ValueError, match="history ghost: item id"):
        recommender.recommend({"a": catalogue[:2], "ghost": ["x1"]}, k=2)
    with pytest.raises(ValueError, match="history 0 is empty after dropping"):
        recommender.score([["x1"]], unknown="drop")

"""Fine-tuning from a pre-training run: it improves on zero-shot, respects first_n, and keeps its own parameters."""

from dataclasses import replace

import pytest
import torch

from prerec_pyro.data.batches import BatchBuilder
from prerec_pyro.evaluate import EvalConfig, evaluate_domain, summarize
from prerec_pyro.inference.finetune import finetune, incremental_study
from prerec_pyro.inference.map import TrainConfig

TRAIN = TrainConfig(batch_size=16, lr=3e-3, max_epochs=6, patience=6, n_negatives=31)


@pytest.mark.parametrize("fixture", ["pretrained", "pretrained_shared"])
def test_finetuning_improves_the_validation_metric_over_zero_shot(fixture, request):
    """For Eq. 6 as written and for the default configuration, whose per-observation priors fine-tuning reads in
    total units (the target's offsets are free to learn its items)."""
    run_dir, prepared = request.getfixturevalue(fixture)
    data = prepared.target("mexico")
    config = EvalConfig(k_percent=5.0, split="valid", n_boot=10)
    zero = finetune(run_dir, prepared, "mexico", TRAIN, first_n=0)
    zero_score = summarize(evaluate_domain(zero.scorer, data, 0, config), config)["rndcg@k%"]
    tuned = finetune(run_dir, prepared, "mexico", TRAIN)
    assert max(r["score"] for r in tuned.history) > zero_score
    assert tuned.n_train_interactions == sum(int(w.target_mask.sum()) for w in [
        data.domains[0].windows(data.domains[0].users_in("train"), data.sequences)])
    with pytest.raises(ValueError, match="prior_units"):
        finetune(run_dir, prepared, "mexico", TRAIN, prior_units="per_item")


def test_incremental_rows_respect_first_n(pretrained):
    run_dir, prepared = pretrained
    test = EvalConfig(k_percent=5.0, n_boot=10)
    rows = incremental_study(run_dir, prepared, "japan", TRAIN, [0, 50], test)
    assert [(r["method"], r["first_n"], r["n_train"]) for r in rows] == [
        ("PreRec (pre-trained)", 0, 0), ("PreRec (pre-trained)", 50, 50), ("PreRec (from scratch)", 50, 50)]
    with pytest.raises(ValueError, match="without pre-training"):
        finetune(run_dir, prepared, "japan", TRAIN, first_n=0, pretrained=False)


def test_a_fine_tuned_scorer_keeps_its_estimates_after_another_fit(pretrained):
    """Table 2 scores the fine-tuned model after fitting the one from scratch: each guide keeps its own values."""
    run_dir, prepared = pretrained
    short = replace(TRAIN, max_epochs=2)
    data = prepared.target("japan")
    dom = data.domains[0]
    batch = BatchBuilder(data, n_negatives=None).make(0, dom.windows(dom.users_in("test")[:4], data.sequences))
    tuned = finetune(run_dir, prepared, "japan", short)
    before = tuned.scorer(batch)
    scratch = finetune(run_dir, prepared, "japan", short, pretrained=False)
    torch.testing.assert_close(tuned.scorer(batch), before)
    assert not torch.allclose(scratch.scorer(batch), before)


def test_fine_tuning_starts_at_the_zero_shot_point(pretrained_shared):
    """With shared item offsets and per-observation priors: before any real step (lr 1e-12) the fine-tuned model
    scores exactly as zero-shot, so the learned eps_v_shared of known items is where fine-tuning starts."""
    run_dir, prepared = pretrained_shared
    data = prepared.target("mexico")
    dom = data.domains[0]
    batch = BatchBuilder(data, n_negatives=None).make(0, dom.windows(dom.users_in("test")[:4], data.sequences))
    zero = finetune(run_dir, prepared, "mexico", TRAIN, first_n=0)
    still = finetune(run_dir, prepared, "mexico", replace(TRAIN, lr=1e-12, max_epochs=1))
    torch.testing.assert_close(still.scorer(batch), zero.scorer(batch), atol=1e-4, rtol=1e-4)


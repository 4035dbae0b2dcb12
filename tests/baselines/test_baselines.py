"""The learnable baselines: SASRec, GRU4Rec/ZESRec, UniSRec and their training loop, on the tiny synthetic data."""

import copy
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from prerec_pyro.baselines.sequential import Gru4Rec, SasRec, SequentialConfig
from prerec_pyro.baselines.train import (
    BaselineScorer,
    BaselineTrainConfig,
    batch_loss,
    contrastive_loss,
    fit_baseline,
    in_batch_logits,
    validation_callback,
)
from prerec_pyro.baselines.unisrec import MoEAdaptor, UniSRec
from prerec_pyro.data.batches import BatchBuilder
from prerec_pyro.data.dataset import MultiDomainData, SequenceConfig
from prerec_pyro.data.synthetic import SyntheticConfig, generate_synthetic
from prerec_pyro.evaluate import EvalConfig, eval_samples, evaluate_domain, summarize
from prerec_pyro.inference.map import training_windows
from prerec_pyro.text import HashBowEncoder

SEQUENCES = SequenceConfig(max_len=8)
SIZES = dict(hidden_dim=16, n_layers=1, max_len=8, dropout=0.0)
FAST = BaselineTrainConfig(batch_size=16, n_negatives=31, max_epochs=2, max_steps_per_epoch=3, lr=3e-3)
BUILDERS = {
    "SASRec": lambda text: SasRec(text, n_heads=2, **SIZES),
    "GRU4Rec": lambda text: Gru4Rec(text, **SIZES),
    "UniSRec": lambda text: UniSRec(text, n_heads=2, adaptor_dropout=0.0, **SIZES),
}


def encode(data: MultiDomainData) -> torch.Tensor:
    return torch.as_tensor(HashBowEncoder(32).encode(data.all_texts()))


@pytest.fixture(scope="module")
def bench():
    synthetic = generate_synthetic(SyntheticConfig.small())
    sources = MultiDomainData.from_domains([synthetic.domain(n) for n in synthetic.sources], sequences=SEQUENCES)
    target = MultiDomainData.from_domains([synthetic.domain("japan")], sequences=SEQUENCES)
    return sources, encode(sources), target, encode(target)


def build(name: str, text: torch.Tensor, seed: int = 0):
    torch.manual_seed(seed)
    return BUILDERS[name](text)


def first_batch(data: MultiDomainData, n_negatives: int | None, rows: int = 16):
    windows = training_windows(data)[0].select(np.arange(rows))
    return BatchBuilder(data, n_negatives).make(0, windows, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name, loss", [("SASRec", "sampled"), ("GRU4Rec", "full"), ("UniSRec", "contrastive"),
                                        ("UniSRec", "sampled")])
def test_loss_decreases_on_a_fixed_batch(bench, name, loss):
    sources, text, _, _ = bench
    model = build(name, text)
    batch = first_batch(sources, 31 if loss == "sampled" else None)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        value = batch_loss(model, batch, loss)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        losses.append(float(value.detach()))
    assert np.all(np.diff(losses[:5]) < 0) and losses[-1] < 0.95 * losses[0], losses


def test_sampled_logits_are_the_full_logits_at_the_positive_and_negatives(bench):
    sources, text, _, _ = bench
    model = build("SASRec", text).eval()
    sampled, full = first_batch(sources, 31), first_batch(sources, None)
    with torch.no_grad():
        s_logits, f_logits = model.logits(sampled), model.logits(full)  # [R, L, 32], [R, L, J]
    assert s_logits.shape == (16, 8, 32) and f_logits.shape == (16, 8, sources.domains[0].n_items)
    positive = f_logits.gather(-1, sampled.targets.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(s_logits[..., 0], positive)
    duplicate = sampled.negatives == sampled.targets.unsqueeze(-1)  # [R, L, 31]
    assert duplicate.any()  # the tiny catalogue makes a collision certain here
    expected = f_logits[..., sampled.negatives].masked_fill(duplicate, torch.finfo(f_logits.dtype).min)
    torch.testing.assert_close(s_logits[..., 1:], expected)


def test_in_batch_logits_mask_repeated_positives_exactly():
    scores = torch.arange(1.0, 10.0).reshape(3, 3)
    rows = torch.tensor([3, 5, 3])
    masked = in_batch_logits(scores, rows)
    low = torch.finfo(scores.dtype).min
    assert torch.equal(masked, torch.tensor([[1.0, 2.0, low], [4.0, 5.0, 6.0], [low, 8.0, 9.0]]))
    loss = torch.nn.functional.cross_entropy(masked, torch.arange(3))
    expected = np.mean([math.log(math.e + math.e**2) - 1, math.log(math.e**4 + math.e**5 + math.e**6) - 5,
                        math.log(math.e**8 + math.e**9) - 9])
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_contrastive_loss_uses_each_targets_positive_against_the_other_distinct_positives(bench):
    sources, text, _, _ = bench
    model = build("UniSRec", text).eval()
    batch = first_batch(sources, None)
    with torch.no_grad():
        loss = contrastive_loss(model, batch)
        users = model.user_states(batch)[batch.target_mask]  # [N, B]
        rows = batch.items[batch.target_mask]  # [N]
        scores = model.pair_scores(users, model.item_embedding(rows))  # [N, N]
    assert len(rows.unique()) < len(rows)  # the batch repeats items
    per_target = [torch.logsumexp(scores[n, (rows != rows[n]) | (torch.arange(len(rows)) == n)], 0) - scores[n, n]
                  for n in range(len(rows))]
    torch.testing.assert_close(loss, torch.stack(per_target).mean())


def test_moe_adaptor_is_the_gated_sum_of_centred_projections():
    torch.manual_seed(0)
    adaptor = MoEAdaptor(text_dim=5, hidden_dim=3, n_experts=4)
    with torch.no_grad():
        adaptor.centres.normal_()
        adaptor.gate.normal_()
    x = torch.randn(2, 5)
    gates = torch.softmax(x @ adaptor.gate, -1)  # [2, 4]
    expected = sum(gates[:, k: k + 1] * ((x - adaptor.centres[k]) @ adaptor.weights[k]) for k in range(4))
    adaptor.eval()  # scoring: no gate noise
    torch.testing.assert_close(adaptor(x), expected)
    windows = torch.stack([x, x.flip(0)]).unsqueeze(0)  # [1, 2, 2, 5]: any leading shape, each row on its own
    torch.testing.assert_close(adaptor(windows)[0, 0], expected)
    torch.testing.assert_close(adaptor(windows)[0, 1], expected.flip(0))
    torch.testing.assert_close(MoEAdaptor(5, 3, 4).eval().gates(x), torch.full((2, 4), 0.25))  # zero gate: uniform
    adaptor.train()  # training: noisy gating (noise scale softplus(x W_n) > 0)
    noisy = adaptor.gates(x)
    assert not torch.allclose(noisy, gates) and torch.allclose(noisy.sum(-1), torch.ones(2))


@pytest.mark.parametrize("name", ["SASRec", "GRU4Rec", "UniSRec"])
def test_trained_on_sources_scores_a_target_catalogue_zero_shot(bench, name):
    sources, text, target, target_text = bench
    model = build(name, text)
    config = FAST if name != "UniSRec" else replace(FAST, loss="contrastive")
    history = fit_baseline(model, sources, config)
    assert len(history) == 2 and all(np.isfinite(r["loss"]) for r in history)
    model.set_item_text(target_text)
    result = evaluate_domain(BaselineScorer(model), target, 0, EvalConfig(k_percent=5.0, n_boot=10))
    _, mask = eval_samples(target, 0, "test")
    n_items = target.domains[0].n_items
    assert target.n_items == n_items != sources.n_items  # another catalogue, other global rows
    assert len(result.ranks) == mask.sum() > 0
    assert result.ranks.min() >= 1 and result.ranks.max() <= n_items
    fresh = build(name, target_text, seed=1)  # another init, then the trained weights: the text is not state
    fresh.load_state_dict(model.state_dict())
    batch = BatchBuilder(target, None).make(0, target.domains[0].windows(np.arange(4), SEQUENCES))
    torch.testing.assert_close(BaselineScorer(fresh)(batch), BaselineScorer(model)(batch))


def test_set_item_text_rejects_another_text_dimension(bench):
    _, text, _, _ = bench
    model = build("GRU4Rec", text)
    with pytest.raises(ValueError, match=r"item_text must be \[items, 32\]"):
        model.set_item_text(torch.zeros(10, 16))


def test_unisrec_fine_tuning_changes_only_the_adaptor(bench):
    _, _, target, target_text = bench
    model = build("UniSRec", target_text)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fit_baseline(model, target, replace(FAST, loss="contrastive", max_epochs=1),
                 trainable=model.adaptor_parameters())
    adaptor = {f"item_encoder.{k}" for k, _ in model.adaptor.named_parameters()}
    assert adaptor == {"item_encoder.centres", "item_encoder.weights", "item_encoder.gate", "item_encoder.noise"}
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == adaptor
    assert all(p.requires_grad for p in model.parameters())  # the freeze is lifted after fitting


def test_fit_is_deterministic_given_the_seed(bench):
    sources, text, _, _ = bench
    states, losses = [], []
    for seed in (0, 0, 1):
        model = build("SASRec", text)
        history = fit_baseline(model, sources, replace(FAST, seed=seed))
        states.append(model.state_dict())
        losses.append([r["loss"] for r in history])
    assert losses[0] == losses[1] and losses[0] != losses[2]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_early_stopping_restores_the_best_epoch(bench):
    sources, text, _, _ = bench
    model = build("GRU4Rec", text)
    scores, snapshots = iter([0.1, 0.3, 0.2, 0.25, 0.9]), []

    def validate() -> dict:
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"score": next(scores)}

    config = replace(FAST, max_epochs=5, patience=2, max_steps_per_epoch=1)
    history = fit_baseline(model, sources, config, validate=validate)
    assert [r["score"] for r in history] == [0.1, 0.3, 0.2, 0.25]  # two epochs without a better score
    final = model.state_dict()
    assert all(torch.equal(final[k], snapshots[1][k]) for k in final)
    assert not all(torch.equal(final[k], snapshots[3][k]) for k in final)


def test_a_baseline_follows_the_learning_rate_schedule_of_its_plateaus(bench):
    sources, text, _, _ = bench
    model, scores = build("GRU4Rec", text), iter([0.1, 0.3, 0.2, 0.25])
    config = replace(FAST, max_epochs=4, patience=3, max_steps_per_epoch=1, warmup_steps=2, lr_decay=0.5)
    history = fit_baseline(model, sources, config, validate=lambda: {"score": next(scores)})
    assert [r["lr_factor"] for r in history] == [1.0, 1.0, 1.0, 0.5]  # halved after the epoch that scored 0.2


def test_nan_loss_raises_floating_point_error(bench):
    sources, text, _, _ = bench
    model = build("SASRec", text)
    with torch.no_grad():
        model.start.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="training loss became nan"):
        fit_baseline(model, sources, FAST)


def test_bad_inputs_are_rejected(bench):
    sources, text, target, _ = bench
    with pytest.raises(ValueError, match="loss must be one of"):
        BaselineTrainConfig(loss="bpr")
    with pytest.raises(ValueError, match="sequence_model must be one of"):
        SequentialConfig(sequence_model="lstm")
    with pytest.raises(ValueError, match="call set_item_text"):
        fit_baseline(build("SASRec", text), target, FAST)
    with pytest.raises(ValueError, match="n_negatives=None"):
        BaselineScorer(build("SASRec", text))(first_batch(sources, 31))


def test_validation_callback_averages_the_domains_r_ndcg(bench):
    sources, text, _, _ = bench
    model = build("GRU4Rec", text)
    config = EvalConfig(k_percent=5.0, split="valid", n_boot=10)
    record = validation_callback(model, sources, config)()
    per_domain = [summarize(evaluate_domain(BaselineScorer(model), sources, k, config), config)["rndcg@k%"]
                  for k in range(3)]
    assert record["india/rndcg@k%"] == per_domain[0]
    assert record["score"] == pytest.approx(np.mean(per_domain), rel=1e-12)


def test_trainable_must_be_the_models_own_parameters(bench):
    sources, text, _, _ = bench
    with pytest.raises(ValueError, match="not one of the model's parameters"):
        fit_baseline(build("SASRec", text), sources, FAST, trainable=[torch.nn.Parameter(torch.zeros(1))])


def test_unisrec_adds_the_sequence_sequence_contrast_in_training_only(bench):
    sources, text, _, _ = bench
    batch = first_batch(sources, None)
    users = torch.randn(int(batch.target_mask.sum()), SIZES["hidden_dim"])
    model = UniSRec(text, n_heads=2, **SIZES)
    assert model.config.dropout == 0.0 and UniSRec(text, n_heads=2, hidden_dim=16, max_len=8).config.dropout == 0.5
    term = model.auxiliary_loss(batch, users)
    assert term > 0 and term < 1e-3 * 2 * math.log(len(users))  # λ = 1e-3 times a cross-entropy over the batch
    assert model.eval().auxiliary_loss(batch, users) == 0
    assert UniSRec(text, n_heads=2, sequence_weight=0.0, **SIZES).auxiliary_loss(batch, users) == 0


def test_a_resumed_fit_repeats_the_uninterrupted_one(bench):
    """Stopped after epoch 1 (its snapshot kept by on_epoch), then resumed with the full budget: the same history
    and the same final weights as three epochs in one go (UniSRec: noisy gating, dropout; a schedule with plateaus)."""
    sources, text, _, _ = bench
    config = replace(FAST, max_epochs=3, patience=3, lr_decay=0.5, loss="contrastive")

    def scores():
        return iter([0.2, 0.1, 0.3]).__next__

    whole = build("UniSRec", text)
    validate = scores()
    history = fit_baseline(whole, sources, config, validate=lambda: {"score": validate()})
    snapshots = []
    first = build("UniSRec", text)
    validate = scores()
    fit_baseline(first, sources, replace(config, max_epochs=1), validate=lambda: {"score": validate()},
                 on_epoch=lambda snapshot: snapshots.append(copy.deepcopy(snapshot)))
    assert len(snapshots) == 1 and snapshots[0]["state"]["epoch"] == 1
    resumed = build("UniSRec", text, seed=5)  # other initial weights: the snapshot replaces them
    rest = fit_baseline(resumed, sources, config, validate=lambda: {"score": validate()}, resume=snapshots[0])
    assert [(r["loss"], r["score"], r["lr_factor"]) for r in rest] == [
        (r["loss"], r["score"], r["lr_factor"]) for r in history]
    assert all(torch.equal(whole.state_dict()[k], resumed.state_dict()[k]) for k in whole.state_dict())

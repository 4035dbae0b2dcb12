"""ZESRec as published: item and user offsets with Gaussian priors in training, at their prior mean zero-shot."""

import math

import numpy as np
import pytest
import torch

from prerec_pyro.baselines.sequential import Gru4Rec
from prerec_pyro.baselines.train import BaselineScorer, BaselineTrainConfig, batch_loss, fit_baseline
from prerec_pyro.baselines.zesrec import ZesRec, offset_stds
from prerec_pyro.data.batches import BatchBuilder
from prerec_pyro.data.dataset import MultiDomainData, SequenceConfig
from prerec_pyro.data.synthetic import SyntheticConfig, generate_synthetic
from prerec_pyro.evaluate import EvalConfig, evaluate_domain
from prerec_pyro.text import HashBowEncoder
from prerec_pyro.training import training_windows

SEQUENCES = SequenceConfig(max_len=8)
SIZES = dict(hidden_dim=16, n_layers=1, max_len=8, dropout=0.0)


@pytest.fixture(scope="module")
def bench():
    synthetic = generate_synthetic(SyntheticConfig.small())
    sources = MultiDomainData.from_domains([synthetic.domain(n) for n in synthetic.sources], sequences=SEQUENCES)
    target = MultiDomainData.from_domains([synthetic.domain("japan")], sequences=SEQUENCES)
    encode = HashBowEncoder(32)
    return (sources, torch.as_tensor(encode.encode(sources.all_texts())), target,
            torch.as_tensor(encode.encode(target.all_texts())))


def zesrec(sources, text, item_std=0.5, user_std=0.5):
    torch.manual_seed(0)
    n_obs = sum(int(w.target_mask.sum()) for w in training_windows(sources))
    return ZesRec(text, sources.n_fit_users, item_std, user_std, n_obs, **SIZES)


def batch_of(data, users, n_negatives=None):
    dom = data.domains[0]
    return BatchBuilder(data, n_negatives).make(0, dom.windows(users, data.sequences), torch.Generator().manual_seed(0))


def test_offset_stds_read_the_precisions_in_the_reference_units():
    assert offset_stds("total", 100.0, 1e4, 1000) == pytest.approx((0.1, 0.01))
    per_observation = offset_stds("per_observation", 100.0, 1e4, 1000)
    assert per_observation == pytest.approx((1 / math.sqrt(1e5), 1 / math.sqrt(1e7)))
    assert offset_stds("offsets_per_observation", 100.0, 1e4, 1000) == per_observation


def test_offsets_absorb_identity_in_training_and_carry_their_gaussian_prior(bench):
    sources, text, _, _ = bench
    model = zesrec(sources, text)
    config = BaselineTrainConfig(batch_size=16, n_negatives=31, max_epochs=2, max_steps_per_epoch=5, lr=3e-2)
    history = fit_baseline(model, sources, config)
    assert history[-1]["convergence"]["stopped_by"] in ("cap", "patience")
    assert history[-1]["convergence"]["epochs_run"] == len(history) == 2
    assert model.item_z.abs().sum() > 0 and model.user_z.abs().sum() > 0, "the offsets must be fitted"
    train_users = sources.domains[0].users_in("train")[:4]
    batch = batch_of(sources, train_users, n_negatives=31)
    prior = model.negative_log_prior(batch)
    fitted_users = batch.user_index[batch.user_index < sources.n_fit_users]
    expected = (0.5 * model.item_z.pow(2).sum() + sources.n_fit_users / len(fitted_users)
                * 0.5 * model.user_z[fitted_users].pow(2).sum()) / model.n_obs
    torch.testing.assert_close(prior, expected)
    loss = batch_loss(model, batch, "sampled")
    model.item_z.data.zero_()
    model.user_z.data.zero_()
    assert batch_loss(model, batch, "sampled") != loss


def test_zero_shot_sets_the_offsets_to_their_prior_mean_and_reads_no_target_training_data(bench):
    sources, text, target, target_text = bench
    model = zesrec(sources, text)
    with torch.no_grad():  # offsets far from their prior mean: zero-shot must not see them
        model.item_z.normal_(0.0, 3.0)
        model.user_z.normal_(0.0, 3.0)
    plain = Gru4Rec(text, **SIZES)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if k not in ("item_z", "user_z")})
    model.set_item_text(target_text)
    plain.set_item_text(target_text)
    test_users = target.domains[0].users_in("test")
    batch = batch_of(target, test_users)
    torch.testing.assert_close(BaselineScorer(model)(batch), BaselineScorer(plain)(batch))
    # the target's training users changed (their sequences reversed): the test users' ranks are the same
    config = EvalConfig(k_percent=10.0)
    before = evaluate_domain(BaselineScorer(model), target, 0, config)
    dom = target.domains[0]
    train = np.isin(np.repeat(np.arange(dom.n_users), np.diff(dom.seq_offsets)), dom.users_in("train"))
    dom.seq_items[train] = dom.seq_items[train][::-1]
    after = evaluate_domain(BaselineScorer(model), target, 0, config)
    np.testing.assert_array_equal(before.ranks, after.ranks)


def test_validation_users_of_the_sources_are_scored_without_an_offset(bench):
    sources, text, _, _ = bench
    model = zesrec(sources, text)
    with torch.no_grad():
        model.user_z.normal_(0.0, 3.0)
    valid = batch_of(sources, sources.domains[0].users_in("valid")[:5])
    assert (valid.user_index >= sources.n_fit_users).all()
    states = model.user_states(valid)
    model.user_z.data.zero_()
    torch.testing.assert_close(states, model.user_states(valid))

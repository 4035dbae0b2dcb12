"""Variational guides that fit: the structured guide's joint posterior over D, the scales' own learning rate, the
mean-field ELBO, and the posterior spread a run reports."""

import math

import pyro
import pytest
import torch
from pyro.infer.autoguide import AutoGuideList, AutoLowRankMultivariateNormal, AutoNormal

from prerec_pyro.inference.guides import INIT_SCALE, guide_moments, make_guide, posterior_spread, scale_parameters
from prerec_pyro.inference.map import MapTrainer, TrainConfig
from prerec_pyro.models.prerec import EPS_U, EPS_V, D, PreRecConfig, PreRecModel

CONFIG = PreRecConfig(hidden_dim=16, n_heads=2, max_len=8, prior_units="per_observation")


def build(data, text, config=CONFIG):
    return PreRecModel(config, len(data.domains), data.n_fit_users, text)


def trained(data, text, kind, steps=20, **overrides):
    """A guide after ``steps`` steps on the same batches (seeded), and its trainer."""
    pyro.set_rng_seed(0)
    model = build(data, text)
    guide = make_guide(kind, model)
    base = dict(n_negatives=15, batch_size=16, lr=3e-3, max_epochs=1, patience=5, max_steps_per_epoch=steps)
    trainer = MapTrainer(model, guide, data, TrainConfig(**{**base, **overrides}))
    trainer._setup()
    trainer.run_epoch(0)
    return guide, trainer


def test_structured_guide_is_a_joint_low_rank_posterior_over_d_and_mean_field_elsewhere(tiny_sources, encode_hash):
    guide, trainer = trained(tiny_sources, encode_hash(tiny_sources), "structured", steps=3)
    assert isinstance(guide, AutoGuideList)
    joint, rest = list(guide)
    assert isinstance(joint, AutoLowRankMultivariateNormal) and isinstance(rest, AutoNormal)
    n_domains, hidden = len(tiny_sources.domains), CONFIG.hidden_dim
    assert joint.loc.shape == (n_domains * hidden,)  # every D_k in one vector: their correlations are kept
    assert joint.cov_factor.shape[0] == n_domains * hidden
    assert "D_decentered" in joint.prototype_trace.nodes and not hasattr(rest.locs, "D_decentered")
    moments = guide_moments(guide)
    assert moments["D_decentered"][1].shape == (n_domains, hidden)
    assert moments["eps_u_decentered"][0].shape == (tiny_sources.n_fit_users, hidden)
    spread = posterior_spread(guide, trainer.model)
    assert len(spread[D]["posterior_std_per_domain"]) == n_domains and spread[EPS_U]["posterior_std_mean"] > 0


def test_the_structured_guide_needs_d(tiny_sources, encode_hash):
    with pytest.raises(ValueError, match="no D"):
        make_guide("structured", build(tiny_sources, encode_hash(tiny_sources), CONFIG.ablation()))


@pytest.mark.parametrize("kind", ["normal", "structured"])
def test_scales_take_their_own_learning_rate_and_move_further_with_it(kind, tiny_sources, encode_hash):
    text = encode_hash(tiny_sources)
    slow, trainer = trained(tiny_sources, text, kind)
    fast, fast_trainer = trained(tiny_sources, text, kind, scale_lr=0.05)
    groups = fast_trainer._optimizers[0].param_groups
    assert [g["lr"] for g in groups] == [3e-3, 0.05]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in scale_parameters(fast)}
    assert all(id(p) not in {id(q) for q in groups[0]["params"]} for p in groups[1]["params"])

    def moved(guide) -> float:  # mean |log(std / INIT_SCALE)| of the item offsets, which every step touches
        return float((guide_moments(guide)["eps_v_decentered"][1] / INIT_SCALE).log().abs().mean())

    assert moved(fast) > 2 * moved(slow) > 0


def test_point_estimate_guides_have_no_scales_and_no_spread(tiny_sources, encode_hash):
    model = build(tiny_sources, encode_hash(tiny_sources))
    guide = make_guide("delta", model)
    trainer = MapTrainer(model, guide, tiny_sources, TrainConfig(n_negatives=15, batch_size=16, scale_lr=0.05))
    trainer._setup()
    assert scale_parameters(guide) == [] and len(trainer._optimizers[0].param_groups) == 1
    assert posterior_spread(guide, model) is None


def test_the_mean_field_elbo_trains_the_normal_guide(tiny_sources, encode_hash):
    guide, trainer = trained(tiny_sources, encode_hash(tiny_sources), "normal", steps=30, elbo="meanfield")
    assert type(trainer.elbo).__name__ == "TraceMeanField_ELBO"
    history = trainer.state["history"]
    assert history == [] and torch.isfinite(guide_moments(guide)["eps_v_decentered"][0]).all()
    with pytest.raises(ValueError, match="elbo must be one of"):
        TrainConfig(elbo="renyi")
    with pytest.raises(ValueError, match="scale_lr must be > 0"):
        TrainConfig(scale_lr=0.0)
    assert EPS_V in posterior_spread(guide, trainer.model)


def _batch(data):
    from prerec_pyro.data.batches import BatchBuilder

    dom = data.domains[0]
    users = torch.cat([torch.as_tensor(dom.users_in("train")[:3]), torch.as_tensor(dom.users_in("valid")[:2])])
    return BatchBuilder(data, None).make(0, dom.windows(users.numpy(), data.sequences))


def test_posterior_predictive_equals_map_when_the_posterior_is_a_point(tiny_sources, encode_hash):
    from prerec_pyro.inference.scoring import MapScorer, PosteriorScorer

    guide, trainer = trained(tiny_sources, encode_hash(tiny_sources), "delta", steps=5)
    batch = _batch(tiny_sources)
    expected = torch.log_softmax(MapScorer(trainer.model, guide)(batch), -1)
    torch.testing.assert_close(PosteriorScorer(trainer.model, guide, 3)(batch), expected)
    normal, trainer = trained(tiny_sources, encode_hash(tiny_sources), "structured", steps=5)
    with torch.no_grad():  # collapse the posterior: every std to ~0 (softplus(-30) ~ 1e-13), the low-rank factor 0
        for parameter in scale_parameters(normal):
            parameter.fill_(-30.0)
        list(normal)[0].cov_factor.zero_()
    expected = torch.log_softmax(MapScorer(trainer.model, normal)(batch), -1)
    torch.testing.assert_close(PosteriorScorer(trainer.model, normal, 2)(batch), expected, rtol=1e-4, atol=1e-4)


def test_posterior_draws_differ_and_are_seeded(tiny_sources, encode_hash):
    from prerec_pyro.inference.scoring import PosteriorScorer

    guide, trainer = trained(tiny_sources, encode_hash(tiny_sources), "normal", steps=5, scale_lr=0.1)
    batch = _batch(tiny_sources)
    state = torch.random.get_rng_state()
    first = PosteriorScorer(trainer.model, guide, 2, seed=1)(batch)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is restored
    torch.testing.assert_close(PosteriorScorer(trainer.model, guide, 2, seed=1)(batch), first)
    assert not torch.allclose(PosteriorScorer(trainer.model, guide, 2, seed=2)(batch), first)
    with pytest.raises(ValueError, match="n_samples must be >= 1"):
        PosteriorScorer(trainer.model, guide, 0)


def test_compare_with_gold_of_a_matching_guide_is_zero_and_nuts_runs_on_a_tiny_model(tiny_sources, encode_hash):
    from prerec_pyro.data.batches import BatchBuilder
    from prerec_pyro.inference.posterior import compare_with_gold, nuts_domain_posterior

    gold = torch.randn(400, 2, 3, generator=torch.Generator().manual_seed(0)) * 0.5 + 1.0  # [S, K, B]
    same = compare_with_gold(gold, gold.mean(0), gold.std(0), torch.ones(3))
    assert same["mean_error_in_prior_stds"] == pytest.approx(0.0, abs=1e-6)
    assert same["std_ratio"] == pytest.approx(1.0) and same["kl_gold_to_guide"] == pytest.approx(0.0, abs=1e-6)
    assert compare_with_gold(gold, gold.mean(0), 2 * gold.std(0), torch.ones(3))["kl_gold_to_guide"] > 0.1

    guide, trainer = trained(tiny_sources, encode_hash(tiny_sources), "structured", steps=5, scale_lr=0.1)
    model, builder = trainer.model, BatchBuilder(tiny_sources, None)
    batches = [builder.make(k, dom.windows(dom.users_in("train")[:6], tiny_sources.sequences))
               for k, dom in enumerate(tiny_sources.domains)]
    draws = nuts_domain_posterior(model, guide, batches, n_samples=10, warmup=10, max_tree_depth=4)
    assert draws.shape == (10, len(tiny_sources.domains), CONFIG.hidden_dim) and torch.isfinite(draws).all()
    assert draws.std(0).mean() > 0  # the chain moves
    loc, scale = (value * model.prior(D).stddev for value in guide_moments(guide)["D_decentered"])
    report = compare_with_gold(draws, loc, scale, model.prior(D).stddev)
    assert all(math.isfinite(value) for value in report.values())

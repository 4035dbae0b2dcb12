"""Guides (user pairing, refusals, sparse updates) and MAP training (determinism, NaN check, resume)."""

import math

import pyro
import pytest
import torch
from pyro.infer.autoguide import AutoDiagonalNormal

from prerec_pyro.data.batches import BatchBuilder
from prerec_pyro.inference.guides import SparseDeltaGuide, check_guide, latent_values, make_guide, svi_model
from prerec_pyro.inference.map import MapTrainer, TrainConfig
from prerec_pyro.models.prerec import EPS_U, EPS_V, EPS_V_SHARED, EPS_Z, D, PreRecConfig, PreRecModel

CONFIG = PreRecConfig(hidden_dim=16, n_heads=2, max_len=8, lambda_u=10.0)


def build(data, text, config=CONFIG):
    return PreRecModel(config, len(data.domains), data.n_fit_users, text)


def train_config(**overrides):
    base = dict(likelihood="sampled", n_negatives=15, batch_size=16, lr=3e-3, max_epochs=2, patience=5)
    return TrainConfig(**{**base, **overrides})


@pytest.mark.parametrize("kind", ["delta", "sparse-delta", "normal", "structured"])
def test_step_updates_only_the_batch_users_offsets(kind, tiny_sources, encode_hash):
    model = build(tiny_sources, encode_hash(tiny_sources))
    guide = make_guide(kind, model)
    trainer = MapTrainer(model, guide, tiny_sources, train_config())
    trainer._setup()
    dom = tiny_sources.domains[1]
    windows = dom.windows(dom.users_in("train")[:5], tiny_sources.sequences)
    batch = BatchBuilder(tiny_sources, n_negatives=15).make(1, windows)
    everyone = torch.arange(model.n_users)

    def offsets():
        probe = BatchBuilder(tiny_sources, n_negatives=15).make(1, windows)
        probe.user_index = everyone
        return latent_values(guide, probe, model)[EPS_U].clone()  # [N, B]

    before = offsets()
    trainer.step(batch)
    changed = (offsets() - before).abs().sum(-1) > 0  # [N]
    assert set(torch.nonzero(changed).flatten().tolist()) == set(batch.user_index.tolist())


def test_guides_that_cannot_follow_the_user_plate_are_refused(tiny_sources, encode_hash):
    model = build(tiny_sources, encode_hash(tiny_sources))
    with pytest.raises(ValueError, match="one batch of users"):
        check_guide(AutoDiagonalNormal(model))
    with pytest.raises(ValueError, match="unknown guide"):
        make_guide("flow", model)


def test_sparse_guide_gets_sparse_user_gradients(tiny_sources, encode_hash):
    model = build(tiny_sources, encode_hash(tiny_sources))
    guide = make_guide("sparse-delta", model)
    assert isinstance(guide, SparseDeltaGuide)
    trainer = MapTrainer(model, guide, tiny_sources, train_config())
    trainer._setup()
    assert any(isinstance(opt, torch.optim.SparseAdam) for opt in trainer._optimizers)


def fit_history(data, text, run_dir=None, **overrides):
    pyro.set_rng_seed(0)  # same seed -> same initial networks
    model = build(data, text)
    guide = make_guide("delta", model)
    trainer = MapTrainer(model, guide, data, train_config(**overrides), run_dir=run_dir)
    return trainer.fit()["history"], model


def test_training_is_deterministic_and_lowers_the_loss(tiny_sources, encode_hash):
    text = encode_hash(tiny_sources)
    first, _ = fit_history(tiny_sources, text, max_epochs=3)
    second, _ = fit_history(tiny_sources, text, max_epochs=3)
    assert [r["loss"] for r in first] == [r["loss"] for r in second]
    pyro.set_rng_seed(0)
    model = build(tiny_sources, text)
    trainer = MapTrainer(model, make_guide("delta", model), tiny_sources, train_config(max_epochs=3))
    trainer._setup()
    domain, rows = next(trainer.sampler.epoch(0))
    fixed = trainer._batch(domain, rows, torch.Generator().manual_seed(1))

    def fixed_loss():
        model.eval()
        with torch.no_grad():
            return float(trainer.elbo.differentiable_loss(trainer.scaled_model, trainer.scaled_guide, fixed))

    before = fixed_loss()
    trainer.fit()
    assert fixed_loss() < before


@pytest.mark.parametrize("schedule", [{}, {"warmup_steps": 7, "lr_decay": 0.5},
                                      {"warmup_steps": 3, "cosine_epochs": 5}], ids=["constant", "scheduled", "cosine"])
def test_resume_continues_exactly(schedule, tiny_sources, encode_hash, tmp_path):
    text = encode_hash(tiny_sources)
    straight, model_straight = fit_history(tiny_sources, text, tmp_path / "a", max_epochs=3, patience=10, **schedule)
    fit_history(tiny_sources, text, tmp_path / "b", max_epochs=2, patience=10, **schedule)  # "interrupted" after 2
    model = build(tiny_sources, text)
    trainer = MapTrainer(model, make_guide("delta", model), tiny_sources,
                         train_config(max_epochs=3, patience=10, **schedule), run_dir=tmp_path / "b")
    resumed = trainer.fit(resume=True)["history"]
    assert [r["epoch"] for r in resumed] == [0, 1, 2]
    assert math.isclose(resumed[-1]["loss"], straight[-1]["loss"], rel_tol=1e-6)
    assert (tmp_path / "b" / "best.pt").exists() and not list((tmp_path / "b").glob("*.tmp"))


def test_nan_loss_stops_training(tiny_sources, encode_hash):
    text = encode_hash(tiny_sources)
    text[0, 0] = float("nan")
    model = build(tiny_sources, text)
    trainer = MapTrainer(model, make_guide("delta", model), tiny_sources, train_config(likelihood="full"))
    with pytest.raises(FloatingPointError, match="loss became"):
        trainer.fit()


def test_bad_train_config():
    with pytest.raises(ValueError, match="likelihood"):
        TrainConfig(likelihood="exact")


@pytest.mark.parametrize("kind", ["delta", "sparse-delta", "normal", "structured"])
def test_noncentred_guides_hold_standard_sites_and_map_back(kind, tiny_sources, encode_hash):
    """Under per-observation priors SVI fits s_decentered ~ N(0, 1); latent_values returns s = prior std x it,
    the value the model's deterministic site s takes."""
    config = PreRecConfig(hidden_dim=16, n_heads=2, max_len=8, prior_units="per_observation",
                          shared_item_offsets=True)
    model = PreRecModel(config, len(tiny_sources.domains), tiny_sources.n_fit_users, encode_hash(tiny_sources),
                        torch.as_tensor(tiny_sources.item_keys()[0]))
    guide = make_guide(kind, model)
    trainer = MapTrainer(model, guide, tiny_sources, train_config())
    assert float(model.n_obs) == trainer.n_obs > 1
    trainer._setup()
    batch = BatchBuilder(tiny_sources, n_negatives=15).make(0, tiny_sources.domains[0].windows(
        tiny_sources.domains[0].users_in("train")[:4], tiny_sources.sequences))
    trainer.step(batch)
    guide_trace = pyro.poutine.trace(guide).get_trace(batch)
    assert {f"{s}_decentered" for s in (D, EPS_V_SHARED, EPS_V, EPS_Z, EPS_U)} <= set(guide_trace.nodes)
    values = latent_values(guide, batch, model)
    if kind in ("normal", "structured"):  # a posterior draw is not the median: the median's site values instead
        median = guide.median(batch)
        expected = {site: median[f"{site}_decentered"] * model.prior(site).stddev
                    for site in (D, EPS_V_SHARED, EPS_V, EPS_Z)}
    else:
        model_trace = pyro.poutine.trace(pyro.poutine.replay(svi_model(model), trace=guide_trace)).get_trace(batch)
        expected = {site: model_trace.nodes[site]["value"] for site in (D, EPS_V_SHARED, EPS_V, EPS_Z)}
    for site in (D, EPS_V_SHARED, EPS_V, EPS_Z):
        assert torch.allclose(values[site], expected[site], atol=1e-9), site
    assert values[EPS_V].abs().max() < 10 * model.prior(EPS_V).stddev.max()  # on the prior's scale, ~1e-3

"""The PreRec Pyro model: sites and shapes, the loss against an independent Eq. 7, the ablation, the likelihood."""

import math
from dataclasses import replace

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

from prerec_pyro.baselines.simple import SbertScorer
from prerec_pyro.data.batches import BatchBuilder
from prerec_pyro.inference.guides import make_guide
from prerec_pyro.models.categorical import CandidateCategorical
from prerec_pyro.models.prerec import (
    EPS_U,
    EPS_V,
    EPS_V_SHARED,
    EPS_Z,
    LATENT_SITES,
    D,
    PreRecConfig,
    PreRecModel,
    R,
)

CONFIG = PreRecConfig(hidden_dim=16, n_heads=2, max_len=8, dropout=0.0, lambda_d=0.3, lambda_v=100.0,
                      lambda_z=50.0, lambda_u=1e3)


def make_batch(data, negatives, domain=0, rows=6, seed=0):
    dom = data.domains[domain]
    windows = dom.windows(dom.users_in("train"), data.sequences)
    return BatchBuilder(data, n_negatives=negatives).make(domain, windows.select(list(range(rows))),
                                                          torch.Generator().manual_seed(seed), n_sequences=len(windows))


@pytest.fixture
def model(tiny_sources, encode_hash):
    return PreRecModel(CONFIG, len(tiny_sources.domains), tiny_sources.n_fit_users, encode_hash(tiny_sources))


def test_sites_and_shapes(model, tiny_sources):
    batch = make_batch(tiny_sources, negatives=7)
    trace = poutine.trace(model).get_trace(batch)
    n_items, hidden, rows, length = tiny_sources.n_items, CONFIG.hidden_dim, 6, 8
    assert trace.nodes[D]["value"].shape == (3, hidden)
    assert trace.nodes[EPS_V]["value"].shape == (n_items, hidden)
    assert trace.nodes[EPS_Z]["value"].shape == (n_items, hidden)
    assert trace.nodes[EPS_U]["value"].shape == (len(batch.user_index), hidden)
    assert trace.nodes[R]["value"].shape == (rows, length) and trace.nodes[R]["is_observed"]
    assert trace.nodes["_RETURN"]["value"].shape == (rows, length, 8)  # positive + 7 negatives
    frames = {f.name: f.dim for f in trace.nodes[R]["cond_indep_stack"]}
    assert frames == {"sequences": -2, "positions": -1}
    assert {f.name: f.dim for f in trace.nodes[EPS_U]["cond_indep_stack"]} == {"users": -1}


def test_ablation_has_no_debiasing_sites(tiny_sources, encode_hash):
    ablated = PreRecModel(CONFIG.ablation(), 3, tiny_sources.n_fit_users, encode_hash(tiny_sources))
    trace = poutine.trace(ablated).get_trace(make_batch(tiny_sources, negatives=None))
    assert not set(LATENT_SITES) & set(trace.nodes)
    assert trace.nodes[R]["is_observed"]
    assert not hasattr(ablated, "f_pop") and not hasattr(ablated, "w_d")


def manual_log_joint(model, batch, values):
    """Eq. 7 written directly in torch: Gaussian log-priors + the masked next-item log-likelihood."""
    cfg, k = model.config, batch.domain
    d_all, eps_v, eps_z, eps_u = values[D], values[EPS_V], values[EPS_Z], values[EPS_U]

    def log_normal(x, precision):
        return (-0.5 * precision * x.pow(2) + 0.5 * math.log(precision / (2 * math.pi))).sum()

    priors = log_normal(d_all, cfg.lambda_d) + log_normal(eps_v, cfg.lambda_v) + log_normal(eps_z, cfg.lambda_z)
    first = d_all[k].expand(batch.items.shape[0], -1)
    history = model.f_e(model.item_text[batch.items[:, :-1]])
    user = model.f_seq(first, history) + eps_u[batch.user_position].unsqueeze(1)  # [R, L, B]
    rows = batch.candidate_rows  # full catalogue of domain k
    logits = []
    for r in range(batch.items.shape[0]):
        for t in range(batch.items.shape[1]):
            z = model.f_pop(batch.candidate_factors()[batch.period_index[r, t]]) + eps_z[rows]  # [J, B]
            v = eps_v[rows] + d_all[k] + z + model.f_e(model.item_text[rows])
            logits.append(user[r, t] @ v.T + d_all[k] @ model.w_d + z @ model.w_z)
    logits = torch.stack(logits).reshape(*batch.items.shape, -1)
    log_lik = torch.log_softmax(logits, -1).gather(-1, batch.targets.unsqueeze(-1)).squeeze(-1)
    user_scale = model.n_users / len(batch.user_index)
    sequence_scale = batch.n_sequences / batch.items.shape[0]
    return (priors + user_scale * log_normal(eps_u, cfg.lambda_u)
            + sequence_scale * (log_lik * batch.target_mask).sum())


def test_trace_elbo_with_delta_guide_equals_eq7(model, tiny_sources):
    model.eval()
    batch = make_batch(tiny_sources, negatives=None, domain=1)
    guide = make_guide("delta", model)
    guide(batch)
    with torch.no_grad():  # move the point estimates away from zero so every term matters
        for name, param in guide.named_parameters():
            param.copy_(0.3 * torch.randn_like(param))
    values = {name: value.detach() for name, value in guide(batch).items()}
    assert len(batch.user_index) < batch.items.shape[0] < batch.n_sequences  # windows share users; subsampled
    loss = Trace_ELBO().differentiable_loss(model, guide, batch)
    expected = -manual_log_joint(model, batch, values)
    assert torch.allclose(loss, expected, rtol=1e-5), (loss.item(), expected.item())


def test_sampled_likelihood_masks_duplicate_negatives(model, tiny_sources):
    model.eval()
    batch = make_batch(tiny_sources, negatives=40)
    logits = poutine.trace(model).get_trace(batch).nodes["_RETURN"]["value"]  # [R, L, 41]
    duplicate = batch.negatives == batch.targets.unsqueeze(-1)
    assert duplicate.any(), "fixture should contain a negative equal to a target"
    assert (logits[..., 1:][duplicate] == torch.finfo(logits.dtype).min).all()
    assert (logits[..., 0] > torch.finfo(logits.dtype).min).all()


def test_candidate_categorical_matches_log_softmax():
    logits = torch.randn(2, 3, 5)
    full = CandidateCategorical(logits)
    value = torch.tensor([[0, 4, 2], [1, 1, 3]])
    expected = torch.log_softmax(logits, -1).gather(-1, value.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(full.log_prob(value), expected)
    candidates = torch.tensor([7, 3, 9, 3, 1]).expand(2, 3, 5)
    sampled = CandidateCategorical(logits, candidates, n_items=10)
    got = sampled.log_prob(torch.tensor([[7, 3, 1], [9, 5, 3]]))
    assert torch.allclose(got[0, 0], torch.log_softmax(logits[0, 0], -1)[0])
    assert torch.allclose(got[0, 1], torch.log_softmax(logits[0, 1], -1)[1])  # first slot holding item 3
    assert got[1, 1] == -math.inf  # item 5 is not a candidate


def test_config_validation():
    with pytest.raises(ValueError, match="lambda_u"):
        PreRecConfig(lambda_u=0.0)
    with pytest.raises(ValueError, match="sequence_model"):
        PreRecConfig(sequence_model="lstm")
    with pytest.raises(ValueError, match="transformer_dtype"):
        PreRecConfig(transformer_dtype="float16")
    with pytest.raises(ValueError, match="text_dropout must be in"):
        PreRecConfig(text_dropout=1.0)


def test_bfloat16_transformer_stays_close_to_float32(model, tiny_sources, encode_hash):
    """The bf16 option changes the Transformer's arithmetic only: float32 logits close to the float32 model's."""
    fast = PreRecModel(replace(CONFIG, transformer_dtype="bfloat16"), len(tiny_sources.domains),
                       tiny_sources.n_fit_users, encode_hash(tiny_sources))
    fast.load_state_dict(model.state_dict())
    model.eval(), fast.eval()
    batch = make_batch(tiny_sources, negatives=None)
    trace = poutine.trace(model).get_trace(batch)
    values = {site: torch.zeros_like(trace.nodes[site]["value"]) for site in LATENT_SITES if site in trace.nodes}
    with torch.no_grad():
        exact = poutine.condition(model, data=values)(batch)
        approx = poutine.condition(fast, data=values)(batch)
    assert approx.dtype == torch.float32
    scored = batch.target_mask.unsqueeze(-1).expand_as(exact)
    torch.testing.assert_close(approx[scored], exact[scored], atol=0.05, rtol=0.05)
    assert not torch.equal(approx, exact), "bf16 must actually run"


def test_gru_sequence_model_runs(tiny_sources, encode_hash):
    gru = PreRecModel(PreRecConfig(hidden_dim=16, n_heads=2, max_len=8, sequence_model="gru"), 3,
                      tiny_sources.n_fit_users, encode_hash(tiny_sources))
    logits = gru(make_batch(tiny_sources, negatives=None))
    assert logits.shape == (6, 8, tiny_sources.domains[0].n_items)
    assert pyro.get_param_store().keys()  # the nets were registered with pyro.module


def test_per_observation_priors_equal_total_priors_with_lambda_times_n_obs(model, tiny_sources):
    """Units of λ: a per-observation prior of precision λ is the literal prior of precision λ·N_obs."""
    n_obs = 1234
    per_obs = PreRecModel(replace(CONFIG, prior_units="per_observation", parametrisation="centred"),
                          len(tiny_sources.domains), tiny_sources.n_fit_users, model.item_text)
    per_obs.load_state_dict(model.state_dict())
    per_obs.set_observation_count(n_obs)
    scaled = replace(CONFIG, lambda_d=CONFIG.lambda_d * n_obs, lambda_v=CONFIG.lambda_v * n_obs,
                     lambda_z=CONFIG.lambda_z * n_obs, lambda_u=CONFIG.lambda_u * n_obs)
    literal = PreRecModel(scaled, len(tiny_sources.domains), tiny_sources.n_fit_users, model.item_text)
    literal.load_state_dict(model.state_dict())
    batch = make_batch(tiny_sources, negatives=7, domain=2)
    values = {name: node["value"] for name, node in poutine.trace(model).get_trace(batch).nodes.items()
              if name in LATENT_SITES}
    log_joint = {}
    for name, candidate in (("per_obs", per_obs), ("literal", literal)):
        candidate.eval()
        log_joint[name] = poutine.trace(poutine.condition(candidate, data=values)).get_trace(batch).log_prob_sum()
    assert torch.allclose(log_joint["per_obs"], log_joint["literal"], rtol=1e-6), log_joint
    assert per_obs.prior(EPS_V).stddev[0].item() == pytest.approx((CONFIG.lambda_v * n_obs) ** -0.5, rel=1e-6)

def test_offsets_per_observation_reads_lambda_d_in_total_units(model, tiny_sources):
    """"offsets_per_observation": D's prior is Eq. 7's literal one, every offset's is λ·N_obs."""
    n_obs = 1234
    mixed = PreRecModel(replace(CONFIG, prior_units="offsets_per_observation"), len(tiny_sources.domains),
                        tiny_sources.n_fit_users, model.item_text)
    mixed.set_observation_count(n_obs)
    assert mixed.config.noncentred
    assert mixed.prior(D).stddev[0].item() == pytest.approx(CONFIG.lambda_d**-0.5, rel=1e-6)
    for site, lam in ((EPS_V, CONFIG.lambda_v), (EPS_Z, CONFIG.lambda_z), (EPS_U, CONFIG.lambda_u)):
        assert mixed.prior(site).stddev[0].item() == pytest.approx((lam * n_obs) ** -0.5, rel=1e-6), site



def test_prior_units_and_parametrisation_are_validated():
    with pytest.raises(ValueError, match="prior_units"):
        PreRecConfig(prior_units="per_item")
    with pytest.raises(ValueError, match="parametrisation"):
        PreRecConfig(parametrisation="whitened")
    assert PreRecConfig(prior_units="per_observation").noncentred
    assert not PreRecConfig(prior_units="per_observation", parametrisation="centred").noncentred
    assert not PreRecConfig().noncentred


def test_shared_item_offsets_are_one_latent_per_item_id(model, tiny_sources):
    """With shared_item_offsets an item listed by several domains has one eps_v_shared row, added to V of each of
    its rows; switching it off leaves Eq. 6 (no such site)."""
    keys, ids = tiny_sources.item_keys()
    assert len(ids) < tiny_sources.n_items, "the fixture must list some item in several domains"
    shared = PreRecModel(replace(CONFIG, shared_item_offsets=True), len(tiny_sources.domains),
                         tiny_sources.n_fit_users, model.item_text, torch.as_tensor(keys))
    shared.load_state_dict(model.state_dict())
    shared.eval(), model.eval()
    batch = make_batch(tiny_sources, negatives=None, domain=1)
    trace = poutine.trace(shared).get_trace(batch)
    assert trace.nodes[EPS_V_SHARED]["value"].shape == (len(ids), CONFIG.hidden_dim)
    assert {f.name: f.dim for f in trace.nodes[EPS_V_SHARED]["cond_indep_stack"]} == {"item_ids": -1}
    assert EPS_V_SHARED not in poutine.trace(model).get_trace(batch).nodes
    values = {site: trace.nodes[site]["value"] for site in LATENT_SITES}
    with torch.no_grad():
        with_shared = poutine.condition(shared, data=values)(batch)
        values[EPS_V] = values[EPS_V] + values[EPS_V_SHARED][torch.as_tensor(keys)]  # folded into eps_v by hand
        folded = poutine.condition(model, data={k: v for k, v in values.items() if k != EPS_V_SHARED})(batch)
    torch.testing.assert_close(with_shared, folded)
    with pytest.raises(ValueError, match="needs use_offsets"):
        PreRecModel(replace(CONFIG.ablation(), shared_item_offsets=True), 3, 5, model.item_text)


class _Silent(torch.nn.Module):
    """A sequence model that says nothing: the user state is the skip alone."""

    def forward(self, first, history):
        return torch.zeros(history.shape[0], history.shape[1] + 1, history.shape[2])


def test_last_item_skip_with_the_other_terms_off_ranks_as_sbert(tiny_sources, encode_hash):
    """The text path alone: an identity text head, a silent f_seq, no debiasing terms -> U·V_j = X_last·X_j."""
    text = encode_hash(tiny_sources)  # [J, T]
    config = replace(CONFIG, hidden_dim=text.shape[1], n_heads=2, last_item_skip=True).ablation()
    model = PreRecModel(config, len(tiny_sources.domains), tiny_sources.n_fit_users, text).eval()
    with torch.no_grad():
        model.f_e.linear.weight.copy_(torch.eye(text.shape[1]))
        model.f_e.linear.bias.zero_()
    model.f_seq = _Silent()
    batch = make_batch(tiny_sources, negatives=None, domain=1)
    scores = model(batch)  # [R, L, J]
    expected = SbertScorer(text)(batch)
    keep = batch.target_mask.clone()
    keep[:, 0] = False  # no history item before position 0
    torch.testing.assert_close(scores[keep], expected[keep])
    without = PreRecModel(replace(config, last_item_skip=False), len(tiny_sources.domains),
                          tiny_sources.n_fit_users, text).eval()
    without.load_state_dict(model.state_dict(), strict=False)
    without.f_seq = _Silent()
    assert without(batch)[keep].abs().max() == 0, "without the skip a silent f_seq scores nothing"


def _cosine_of_last(text, batch):
    """cos(X_last, X_j) for every position and candidate (0 at position 0, which has no history). [R, L, J]"""
    return SbertScorer(torch.nn.functional.normalize(text, dim=-1))(batch)


def test_text_channel_with_the_other_terms_off_is_sbert_at_a_temperature(tiny_sources, encode_hash):
    """A silent f_seq, a zero text head and no debiasing terms leave the channel: U·V_j = τ·cos(X_last, X_j), so
    the text path alone ranks every catalogue exactly as SBERT on normalised vectors."""
    text = 3.0 * encode_hash(tiny_sources)  # [J, T], not unit length: the channel normalises
    config = replace(CONFIG, text_channel="last", text_temperature=7.0).ablation()
    model = PreRecModel(config, len(tiny_sources.domains), tiny_sources.n_fit_users, text).eval()
    with torch.no_grad():
        model.f_e.linear.weight.zero_()
        model.f_e.linear.bias.zero_()
    model.f_seq = _Silent()
    batch = make_batch(tiny_sources, negatives=None, domain=1)
    keep = batch.target_mask.clone()
    keep[:, 0] = False
    torch.testing.assert_close(model(batch)[keep], 7.0 * _cosine_of_last(text, batch)[keep])


def _text_side(text, batch, channel, tau):
    """The user's side of the text channel by hand: τ_1·X̂_last [+ τ_2·mean of X̂ over the history]. [R, L, T]"""
    unit = torch.nn.functional.normalize(text, dim=-1)[batch.items]  # [R, L, T]
    rows, length, _ = unit.shape
    side = torch.zeros_like(unit)
    for p in range(1, length):
        side[:, p] = tau[0] * unit[:, p - 1]
        if channel == "last+mean":
            side[:, p] += tau[1] * unit[:, :p].mean(1)
    return side


def _logits_and_gain(extended, tiny_sources, text, base, batch):
    """The logits of ``extended`` and what it adds over the same model built from ``base`` (shared networks and
    latent values): ([R, L, C'], [R, L, C'])."""
    without = PreRecModel(base, len(tiny_sources.domains), tiny_sources.n_fit_users, text).eval()
    without.load_state_dict(extended.state_dict(), strict=False)
    trace = poutine.trace(extended).get_trace(batch)
    values = {site: trace.nodes[site]["value"] for site in (D, EPS_V, EPS_Z, EPS_U)}
    with torch.no_grad():
        logits = poutine.condition(extended, data=values)(batch)
        return logits, logits - poutine.condition(without, data=values)(batch)


@pytest.mark.parametrize("channel", ["last", "last+mean"])
@pytest.mark.parametrize("negatives", [None, 5])
def test_text_channel_adds_exactly_its_similarity_to_eq6(tiny_sources, encode_hash, negatives, channel):
    """With every Eq. 6 term on (D, popularity, offsets, the skip) the channel adds τ_1·cos(X_last, X_j) [+ τ_2·
    X̂_j·mean X̂_history] to each logit and changes nothing else, on the full catalogue and on sampled candidates."""
    text = encode_hash(tiny_sources)  # [J, T]
    base = replace(CONFIG, last_item_skip=True)
    with_channel = PreRecModel(replace(base, text_channel=channel), len(tiny_sources.domains),
                               tiny_sources.n_fit_users, text).eval()
    with torch.no_grad():
        with_channel.log_tau.copy_(torch.tensor([2.0, 3.0][:len(with_channel.log_tau)]).log())
    batch = make_batch(tiny_sources, negatives=negatives, domain=1)
    logits, gained = _logits_and_gain(with_channel, tiny_sources, text, base, batch)
    unit = torch.nn.functional.normalize(text, dim=-1)
    side = _text_side(text, batch, channel, [2.0, 3.0])  # [R, L, T]
    expected = side @ unit[batch.candidate_rows].T  # [R, L, C]: the catalogue, or the sampled negatives
    if negatives is not None:  # the positive (the item at each position) comes first
        positive = (side * unit[batch.items]).sum(-1, keepdim=True)  # [R, L, 1]
        expected = torch.cat([positive, expected], dim=-1)  # [R, L, 1 + C]
    keep = batch.target_mask.unsqueeze(-1) & (logits > torch.finfo(logits.dtype).min)  # a negative equal to its
    torch.testing.assert_close(gained[keep], expected[keep], atol=1e-4, rtol=1e-4)  # positive is masked out


def test_seen_before_marks_the_items_earlier_in_each_window(tiny_sources):
    """By hand: position p of a window sees its items 0..p-1, and a position's own item is 'seen' only when it
    occurred before it."""
    batch = make_batch(tiny_sources, negatives=None, domain=1)
    rows = batch.candidate_rows
    seen = batch.seen_before(rows)  # [R, L, J]
    items = batch.items
    for r in range(2):
        for p in range(items.shape[1]):
            expected = torch.zeros(len(rows), dtype=torch.bool)
            for s in range(p):
                expected |= rows == items[r, s]
            assert torch.equal(seen[r, p], expected)
            assert bool(batch.target_seen_before()[r, p]) == bool((items[r, :p] == items[r, p]).any())


@pytest.mark.parametrize("negatives", [None, 40])
def test_seen_columns_scatter_to_the_dense_marks_at_those_positions(tiny_sources, negatives):
    """With 40 negatives from a small catalogue some item is listed twice: both of its columns are marked."""
    batch = make_batch(tiny_sources, negatives=negatives, domain=1)
    rows = batch.candidate_rows
    if negatives is not None:
        assert len(torch.unique(rows)) < len(rows), "the fixture must list some negative twice"
    positions = torch.tensor([0, 1, 3, batch.items.shape[1] + 2, batch.items.numel() - 1])
    columns, marked, canonical = batch.seen_columns(rows, positions)
    marks = torch.zeros(len(positions), len(rows)).scatter_add_(1, columns, marked.float())  # [A, C]
    assert marks.max() <= 1, "a column was marked twice"
    dense = batch.seen_before(rows).reshape(-1, len(rows))  # [R*L, C]
    assert torch.equal(marks[:, canonical] > 0, dense[positions])
    for a, flat in enumerate(positions.tolist()):  # by hand
        r, p = divmod(flat, batch.items.shape[1])
        expected = (rows.unsqueeze(1) == batch.items[r, :p].unsqueeze(0)).any(1)
        assert torch.equal(dense[flat], expected)


SCORING_CHANGES = [{}, {"use_domain": False, "use_popularity": False, "use_offsets": False},  # Eq. 6, PreRec_n,
                   {"last_item_skip": True, "text_channel": "last", "repeat_term": True,  # the extensions
                    "shared_item_offsets": True}]


def scoring_model(tiny_sources, encode_hash, changes: dict) -> PreRecModel:
    """An untrained model of ``CONFIG`` with ``changes``, in eval mode, its repeat weight (if any) away from 0."""
    model = PreRecModel(replace(CONFIG, **changes), len(tiny_sources.domains), tiny_sources.n_fit_users,
                        encode_hash(tiny_sources)).eval()
    if model.config.repeat_term:
        with torch.no_grad():
            model.repeat_weight.fill_(-0.3)
    return model


@pytest.mark.parametrize("changes", SCORING_CHANGES)
@pytest.mark.parametrize("negatives", [None, 5])
def test_target_logits_are_the_observed_sites_logits_at_the_targets(tiny_sources, encode_hash, changes, negatives):
    """The scorers' path (logits at target positions only) and the observed site's [R, L, C] layout agree."""
    model = scoring_model(tiny_sources, encode_hash, changes)
    batch = make_batch(tiny_sources, negatives=negatives, domain=1)
    latent = poutine.trace(model.latents).get_trace(batch).nodes["_RETURN"]["value"]
    with torch.no_grad():
        dense, _, _ = model.logits(batch, latent)  # [R, L, C']
        at_targets = model.target_logits(batch, latent)  # [A, C]
    assert at_targets.shape == (int(batch.target_mask.sum()), len(batch.candidate_rows))
    order, sizes = batch.target_layout()
    assert sum(sizes) == len(order) and torch.equal(order.sort().values, batch.target_mask.reshape(-1).nonzero()[:, 0])
    expected = dense.reshape(-1, dense.shape[-1])[order]
    if negatives is not None:  # the observed site puts each position's own item first and masks duplicates
        expected = expected[:, 1:]
        keep = expected > torch.finfo(expected.dtype).min
        torch.testing.assert_close(at_targets[keep], expected[keep])
    else:
        torch.testing.assert_close(at_targets, expected)


class _SilentSequence(torch.nn.Module):
    def forward(self, first, history):
        return history.new_zeros(history.shape[0], history.shape[1] + 1, history.shape[2])  # [R, L, B]


@pytest.mark.parametrize("changes", SCORING_CHANGES)
def test_the_sequence_term_is_what_a_silent_f_seq_takes_away(tiny_sources, encode_hash, changes):
    """One pass gives the target logits and f_seq's term of them; their difference is the logits with f_seq's output
    at 0 (the rest of the user state, the text channel, popularity and the repeat term kept), to 1e-5."""
    model = scoring_model(tiny_sources, encode_hash, changes)
    batch = make_batch(tiny_sources, negatives=None, domain=1)
    latent = poutine.trace(model.latents).get_trace(batch).nodes["_RETURN"]["value"]
    logits, term = model.target_logits_and_sequence_term(batch, latent)  # [A, J], [A, J]
    with torch.no_grad():
        torch.testing.assert_close(logits, model.target_logits(batch, latent))
        kept, model.f_seq = model.f_seq, _SilentSequence()
        silent = model.target_logits(batch, latent)  # [A, J]
        model.f_seq = kept
    assert float(term.abs().max()) > 1e-3, "the sequence model's term must not vanish, or the test shows nothing"
    torch.testing.assert_close(logits - term, silent, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="whole catalogue"):
        model.target_logits_and_sequence_term(make_batch(tiny_sources, negatives=5, domain=1), latent)


@pytest.mark.parametrize("negatives", [None, 5])
def test_repeat_term_adds_w_r_to_items_already_in_the_history(tiny_sources, encode_hash, negatives):
    text = encode_hash(tiny_sources)  # [J, T]
    base = replace(CONFIG, last_item_skip=True, text_channel="last")
    repeat = PreRecModel(replace(base, repeat_term=True), len(tiny_sources.domains), tiny_sources.n_fit_users,
                         text).eval()
    with torch.no_grad():
        repeat.repeat_weight.fill_(-0.25)  # w_r = REPEAT_UNIT x the parameter
    assert repeat.w_r.item() == pytest.approx(-2.5)
    batch = make_batch(tiny_sources, negatives=negatives, domain=1)
    logits, gained = _logits_and_gain(repeat, tiny_sources, text, base, batch)
    expected = batch.seen_before(batch.candidate_rows).float()  # [R, L, C]
    if negatives is not None:
        expected = torch.cat([batch.target_seen_before().float().unsqueeze(-1), expected], dim=-1)
    assert expected[batch.target_mask].any(), "the fixture must repeat some item, or the test shows nothing"
    keep = batch.target_mask.unsqueeze(-1) & (logits > torch.finfo(logits.dtype).min)
    torch.testing.assert_close(gained[keep], -2.5 * expected[keep], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("changes", [{}, {"last_item_skip": True, "text_channel": "last"},
                                     {"last_item_skip": False, "text_channel": "last+mean"}],
                         ids=["plain", "skip+last", "last+mean"])
def test_the_user_state_at_the_targets_is_the_whole_states_rows_exactly(tiny_sources, encode_hash, changes):
    """``user_state_at`` (the scoring paths' user side, built at the target positions only) holds exactly the rows
    of ``user_state`` [R, L, .] at ``target_layout()``'s positions, with and without a fitted user offset."""
    model = PreRecModel(replace(CONFIG, **changes), len(tiny_sources.domains), tiny_sources.n_fit_users,
                        encode_hash(tiny_sources)).eval()
    batch = make_batch(tiny_sources, negatives=None, domain=1, rows=6)
    latent = poutine.trace(model.latents).get_trace(batch).nodes["_RETURN"]["value"]
    order = batch.target_layout()[0]  # [A]
    for eps_u in (latent, {**latent, EPS_U: None}):
        whole = model.user_state(batch, eps_u, model.catalogue_text(batch))  # [R, L, W]
        got = model.user_state_at(batch, eps_u, order, model.catalogue_text(batch))  # [A, W]
        assert got.shape == (len(order), whole.shape[-1])
        assert torch.equal(got, whole.reshape(-1, whole.shape[-1])[order])
    every = torch.arange(batch.items.numel())  # every position, 0 included: the state before any history item
    whole = model.user_state(batch, latent)  # [R, L, W]
    assert torch.equal(model.user_state_at(batch, latent, every), whole.reshape(-1, whole.shape[-1]))
    single = replace(batch, items=batch.items[:, :1])  # windows of one position: no history item at all
    whole = model.user_state(single, latent)  # [R, 1, W]
    assert whole.shape[:2] == single.items.shape
    if model.config.text_channel != "off":  # nothing read before p = 0
        assert not whole[..., model.config.hidden_dim:].any()
    every = torch.arange(len(single.items))  # [R]
    assert torch.equal(model.user_state_at(single, latent, every), whole.reshape(-1, whole.shape[-1]))


@pytest.mark.parametrize("changes", [{}, {"last_item_skip": True, "text_channel": "last", "repeat_term": False,
                                          "shared_item_offsets": True}])
@pytest.mark.parametrize("negatives", [None, 5])
@pytest.mark.parametrize("grad", [False, True])
def test_candidate_logits_equal_each_periods_item_side_built_whole(tiny_sources, encode_hash, changes, negatives, grad):
    """The optimised item side (the static part once, only Z per period; a catalogue's counted items updated in
    place) gives what building [V_c(t), bias_c(t)] whole for each target's period gives (to 1e-5)."""
    model = PreRecModel(replace(CONFIG, **changes), len(tiny_sources.domains), tiny_sources.n_fit_users,
                        encode_hash(tiny_sources)).eval()
    batch = make_batch(tiny_sources, negatives=negatives, domain=1, rows=6)
    latent = poutine.trace(model.latents).get_trace(batch).nodes["_RETURN"]["value"]
    with torch.set_grad_enabled(grad):
        user = model.user_state(batch, latent, model.catalogue_text(batch))  # [R, L, B (+ T)]
        got = model.target_logits(batch, latent)  # [A, C]
        order, sizes = batch.target_layout()
        users = user.reshape(-1, user.shape[-1])[order]  # [A, B (+ T)]
        periods = torch.repeat_interleave(torch.arange(len(sizes)), torch.as_tensor(sizes))  # [A]
        rows = batch.candidate_rows
        expected = []
        for a in range(len(order)):
            value, bias = model.item_parts(rows, batch.candidate_factors()[periods[a]], batch, latent)  # [C, .], [C]
            expected.append(users[a] @ value.T + bias)
    assert len(set(periods.tolist())) > 1, "the fixture's targets must fall in several periods"
    torch.testing.assert_close(got, torch.stack(expected), rtol=1e-5, atol=1e-5)


def _per_target_log_likelihood(model, batch, latent):
    """The sampled softmax's log-likelihood written per target, with V_c(t) and the bias built whole for the
    target's period (the reference for the training step's bucketed products)."""
    user = model.user_state(batch, latent)  # [R, L, B (+ T)]
    rows = batch.candidate_rows
    expected = []
    for r, p in batch.target_mask.nonzero().tolist():
        factors = batch.candidate_factors()[batch.period_index[r, p]]  # [C, F]
        value, bias = model.item_parts(rows, factors, batch, latent)  # [C, .], [C]
        target = batch.items[r, p].reshape(1)
        own, own_bias = model.item_parts(target, batch.factors_targets[r, p].unsqueeze(0), batch, latent)
        scores = user[r, p] @ value.T + bias  # [C]
        positive = user[r, p] @ own[0] + own_bias[0]
        if model.config.repeat_term:
            seen = torch.isin(rows, batch.items[r, :p])  # [C]
            scores = scores + model.w_r * seen
            positive = positive + model.w_r * torch.isin(target, batch.items[r, :p]).float()[0]
        scores = scores.masked_fill(batch.negatives == batch.targets[r, p], float("-inf"))
        expected.append(positive - torch.logsumexp(torch.cat([positive.reshape(1), scores]), dim=0))
    return torch.stack(expected).sum()


def _sampled_log_likelihood(tiny_sources, encode_hash, changes):
    """A model, its training step's log-likelihood on a sampled batch, and the per-target reference of it."""
    model = PreRecModel(replace(CONFIG, **changes), len(tiny_sources.domains), tiny_sources.n_fit_users,
                        encode_hash(tiny_sources)).eval()
    batch = make_batch(tiny_sources, negatives=5, domain=1, rows=6)
    trace = poutine.trace(model).get_trace(batch)
    latent = {site: trace.nodes[site]["value"] if site in trace.nodes else None for site in LATENT_SITES}
    got = trace.nodes[R]["fn"].log_prob(batch.targets)[batch.target_mask].sum()
    assert len(set(batch.period_index[batch.target_mask].tolist())) > 1, "targets must fall in several periods"
    counted = batch.factors_candidates.ne(0).any(-1).sum(-1)  # [P]
    assert ((counted > 0) & (counted < len(batch.negatives))).any(), "a period must count some candidates only"
    return model, got, _per_target_log_likelihood(model, batch, latent)


SAMPLED_CHANGES = [{}, {"last_item_skip": True, "text_channel": "last", "repeat_term": True,
                        "shared_item_offsets": True}]


@pytest.mark.parametrize("changes", SAMPLED_CHANGES)
def test_the_sampled_likelihood_equals_each_targets_item_side_built_whole(tiny_sources, encode_hash, changes):
    """The training step's log-likelihood (f_pop once per distinct factor row, periods batched by their number of
    targets, the observed item's logit at target positions only) equals the sampled softmax written per target, with
    V_c(t) and the bias built whole for the target's period (to 1e-5)."""
    _, got, expected = _sampled_log_likelihood(tiny_sources, encode_hash, changes)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("changes", SAMPLED_CHANGES)
def test_the_sampled_likelihoods_gradients_equal_each_targets_item_side_built_whole(tiny_sources, encode_hash,
                                                                                     changes):
    """The gradients of the training step's log-likelihood (the bucketed, counted-only popularity products,
    models/candidates.py ``BucketProducts``) with respect to every network parameter are those of the same
    likelihood written per target with V_c(t) and the bias built whole (to 1e-5 of the largest gradient entry)."""
    model, got, expected = _sampled_log_likelihood(tiny_sources, encode_hash, changes)
    names, parameters = zip(*model.named_parameters())
    got_grads = torch.autograd.grad(got, parameters, allow_unused=True, retain_graph=True)
    expected_grads = torch.autograd.grad(expected, parameters, allow_unused=True)
    scale = max(float(grad.abs().max()) for grad in expected_grads if grad is not None)  # W_d's terms cancel: 0
    for name, mine, theirs in zip(names, got_grads, expected_grads):
        assert (mine is None) == (theirs is None), name
        if mine is not None:
            torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-5 * scale, msg=lambda m: name + m)
    assert got_grads[names.index("f_pop.mlp.0.weight")].abs().sum() > 0


class _CountCalls(torch.nn.Module):
    """A module that counts its calls and passes them on."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, rows):
        self.calls += 1
        return self.inner(rows)


@pytest.mark.parametrize("changes", SCORING_CHANGES)
def test_a_fixed_item_side_is_built_once_and_scores_as_before(tiny_sources, encode_hash, changes):
    """Inside ``fixed_item_side`` a catalogue's f_e(X) and item side (and the "last" text channel's cosine table)
    are built for the first batch and reused by the next (f_e runs once), the scores bitwise those built per batch;
    gradients, another catalogue and the end of the block each stop the reuse."""
    model = scoring_model(tiny_sources, encode_hash, changes)
    batches = [make_batch(tiny_sources, negatives=None, domain=1, rows=rows) for rows in (6, 3)]
    latent = poutine.trace(model.latents).get_trace(batches[0]).nodes["_RETURN"]["value"]
    model.f_e = _CountCalls(model.f_e)
    with torch.no_grad():
        expected = [model.target_logits(batch, latent) for batch in batches]
    assert model.f_e.calls == 2
    with model.fixed_item_side(), torch.no_grad():
        kept = [model.target_logits(batch, latent) for batch in batches]
        kinds = {"m", "item side"} | ({"cosine table"} if model.config.text_channel == "last" else set())
        assert model.f_e.calls == 3 and {key[0] for key in model._item_side_memo} == kinds
        model.set_catalogue(model.n_domains, model.n_users, model.item_text, model.item_key)
        assert model._item_side_memo == {}
    assert model._item_side_memo is None
    for got, want in zip(kept, expected):
        assert torch.equal(got, want)
    with model.fixed_item_side():
        model.target_logits(batches[0], latent)  # with gradients: nothing kept
        assert model._item_side_memo == {} and model.f_e.calls == 4

"""The candidate-scoring algebra (models/candidates.py): the bucketed popularity products and their gradients."""

from dataclasses import replace

import pytest
import torch
from pyro import poutine

from prerec_pyro.data.batches import BatchBuilder
from prerec_pyro.models.candidates import BucketProducts
from prerec_pyro.models.prerec import LATENT_SITES, PreRecConfig, PreRecModel, R

CONFIG = PreRecConfig(hidden_dim=16, n_heads=2, max_len=8, dropout=0.0, lambda_d=0.3, lambda_v=100.0,
                      lambda_z=50.0, lambda_u=1e3)


def make_batch(data, negatives, domain, rows):
    dom = data.domains[domain]
    windows = dom.windows(dom.users_in("train"), data.sequences)
    return BatchBuilder(data, n_negatives=negatives).make(domain, windows.select(list(range(rows))),
                                                          torch.Generator().manual_seed(0), n_sequences=len(windows))


def _reference_products(users, side, rows, columns, shapes, n_candidates):
    """What ``BucketProducts`` computes, written with autograd's own gathers and products, a target at a time."""
    out, start = [], 0
    for row, col, (groups, size) in zip(rows, columns, shapes):
        for group in range(groups):
            for _ in range(size):
                line = users.new_zeros(n_candidates).index_put((col[group],), users[start] @ side[row[group]].T)
                out.append(line)
                start += 1
    return torch.stack(out)


def test_bucket_products_and_their_gradients_equal_autograds():
    """Buckets of one and of several targets a period, padded rows (the zero row) and a bucket that counts nothing:
    the values and both gradients (gradcheck, float64) are autograd's."""
    generator = torch.Generator().manual_seed(0)
    n_candidates, width, n_rows = 7, 5, 6
    side = torch.cat([torch.randn(n_rows, width, generator=generator, dtype=torch.float64),
                      torch.zeros(1, width, dtype=torch.float64)]).requires_grad_()  # row 6 pads
    shapes = [(3, 1), (2, 3), (1, 2)]
    columns = [torch.stack([torch.randperm(n_candidates, generator=generator)[:4] for _ in range(3)]),
               torch.stack([torch.randperm(n_candidates, generator=generator)[:2] for _ in range(2)]),
               torch.zeros(1, 0, dtype=torch.long)]
    rows = [torch.randint(0, n_rows, (3, 4), generator=generator), torch.tensor([[2, 6], [0, 6]]),
            torch.zeros(1, 0, dtype=torch.long)]
    users = torch.randn(3 + 6 + 2, width, generator=generator, dtype=torch.float64, requires_grad=True)
    got = BucketProducts.apply(users, side, rows, columns, shapes, n_candidates)
    torch.testing.assert_close(got, _reference_products(users, side, rows, columns, shapes, n_candidates))
    assert torch.autograd.gradcheck(lambda u, s: BucketProducts.apply(u, s, rows, columns, shapes, n_candidates),
                                    (users, side))


@pytest.mark.parametrize("changes", [{}, {"last_item_skip": True, "text_channel": "last", "repeat_term": True,
                                          "shared_item_offsets": True}])
def test_the_sampled_likelihoods_gradients_equal_each_targets_item_side_built_whole(tiny_sources, encode_hash,
                                                                                     changes):
    """The gradients of the training step's log-likelihood (the bucketed, counted-only popularity products) with
    respect to every network parameter are those of the same likelihood written per target with V_c(t) and the bias
    built whole (to 1e-5 of the largest gradient entry)."""
    model = PreRecModel(replace(CONFIG, **changes), len(tiny_sources.domains), tiny_sources.n_fit_users,
                        encode_hash(tiny_sources)).eval()
    batch = make_batch(tiny_sources, negatives=5, domain=1, rows=6)
    trace = poutine.trace(model).get_trace(batch)
    latent = {site: trace.nodes[site]["value"] if site in trace.nodes else None for site in LATENT_SITES}
    got = trace.nodes[R]["fn"].log_prob(batch.targets)[batch.target_mask].sum()
    got_grads = torch.autograd.grad(got, list(model.parameters()), allow_unused=True)
    user = model.user_state(batch, latent)  # [R, L, B (+ T)]
    rows, expected = batch.candidate_rows, []
    for r, p in batch.target_mask.nonzero().tolist():
        value, bias = model.item_parts(rows, batch.candidate_factors()[batch.period_index[r, p]], batch, latent)
        own, own_bias = model.item_parts(batch.items[r, p].reshape(1), batch.factors_targets[r, p].unsqueeze(0),
                                         batch, latent)
        scores = user[r, p] @ value.T + bias  # [C]
        positive = user[r, p] @ own[0] + own_bias[0]
        if model.config.repeat_term:
            scores = scores + model.w_r * torch.isin(rows, batch.items[r, :p])
            positive = positive + model.w_r * torch.isin(batch.items[r, p], batch.items[r, :p]).float()
        scores = scores.masked_fill(batch.negatives == batch.targets[r, p], float("-inf"))
        expected.append(positive - torch.logsumexp(torch.cat([positive.reshape(1), scores]), dim=0))
    expected_grads = torch.autograd.grad(torch.stack(expected).sum(), list(model.parameters()), allow_unused=True)
    assert any(0 < int(batch.factors_candidates[q].ne(0).any(-1).sum()) < len(rows) for q in range(len(
        batch.factors_candidates))), "some period must count some candidates and not others"
    scale = max(float(grad.abs().max()) for grad in expected_grads if grad is not None)  # W_d's terms cancel: 0
    for (name, _), mine, theirs in zip(model.named_parameters(), got_grads, expected_grads):
        assert (mine is None) == (theirs is None), name
        if mine is not None:
            torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-5 * scale, msg=lambda m: name + m)
    assert got_grads[[n for n, _ in model.named_parameters()].index("f_pop.mlp.0.weight")].abs().sum() > 0

"""The candidate-scoring algebra (models/candidates.py): the bucketed popularity products and their gradients, the
text channel's scores from cosine rows (the training step's likelihood and its gradients against a per-target
reference: tests/models/test_prerec.py)."""

from dataclasses import replace

import pytest
import torch

from prerec_pyro.models import candidates
from prerec_pyro.models.candidates import BucketProducts
from prerec_pyro.models.prerec import EPS_U, D, PreRecModel
from tests.models.test_prerec import CONFIG, make_batch


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


@pytest.mark.parametrize("table_fits", [True, False])
def test_the_text_channel_from_cosine_rows_is_the_full_product(tiny_sources, encode_hash, monkeypatch, table_fits):
    """The "last" channel's scores τ·X̂_last·X̂_c from rows of the cosine table equal the [A, T] @ [T, C] product of
    the user side it builds, per batch and inside ``fixed_item_side`` (the table kept and filled over two batches,
    or, when it does not fit, rows per batch and no table), for targets without a last item (position 0) and with
    one from no row of the catalogue."""
    if not table_fits:
        monkeypatch.setattr(candidates, "COSINE_TABLE_ENTRIES", 1)
    model = PreRecModel(replace(CONFIG, text_channel="last"), len(tiny_sources.domains), tiny_sources.n_fit_users,
                        encode_hash(tiny_sources)).eval()
    with torch.no_grad():
        model.log_tau.fill_(1.7)
    batches = [make_batch(tiny_sources, negatives=None, domain=1, rows=rows) for rows in (6, 3)]
    strange = batches[1].items.clone()
    strange[0, :3] = 0  # another domain's item (domain 1's rows start after domain 0's)
    batches[1] = replace(batches[1], items=strange)
    assert batches[1].item_offset > 0
    width, catalogue = CONFIG.hidden_dim, model.item_text_unit[batches[0].item_offset:][:batches[0].n_domain_items]
    row, position, has_last = model.previous_positions(batches[1], batches[1].target_layout()[0])  # [A] each
    last = batches[1].items[row, position]  # [A]
    assert bool((~has_last).any()) and bool((has_last & (last < batches[1].item_offset)).any())

    def scores(batch):  # [A, C] both ways, from the user side that user_state_at builds
        order, _ = batch.target_layout()
        silent = torch.zeros(*batch.items.shape, width)  # [R, L, B]: f_seq's output, not read by the text side
        users = model.user_state_at(batch, {EPS_U: None, D: None}, order, sequence=silent)[:, width:]  # [A, T]
        return model._text_channel_scores(users, batch, catalogue), users @ catalogue.T

    with torch.no_grad():
        for batch in batches:  # per batch
            torch.testing.assert_close(*scores(batch), rtol=1e-5, atol=1e-6)
        with model.fixed_item_side():
            for batch in batches:
                torch.testing.assert_close(*scores(batch), rtol=1e-5, atol=1e-6)
            kept = [key for key in model._item_side_memo if key[0] == "cosine table"]
            assert len(kept) == (1 if table_fits else 0)

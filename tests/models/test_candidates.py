"""The candidate-scoring algebra (models/candidates.py): the bucketed popularity products and their gradients
(the training step's likelihood and its gradients against a per-target reference: tests/models/test_prerec.py)."""

import torch

from prerec_pyro.models.candidates import BucketProducts


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

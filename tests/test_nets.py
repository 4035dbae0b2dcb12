"""prerec_pyro.nets: f_pop once per distinct factor row gives f_pop of every row."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prerec_pyro.nets import PopularityNet, distinct_rows


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from([0.0, -0.0, 1.0, 0.5, 2.0, 1e-30]), min_size=3, max_size=3),
                min_size=1, max_size=40))
def test_distinct_rows_rebuild_the_rows_and_are_distinct(values):
    rows = torch.tensor(values, dtype=torch.float32)  # [N, 3]
    distinct, index = distinct_rows(rows)
    assert torch.equal(distinct[index], rows)
    assert len(torch.unique(distinct, dim=0)) == len(distinct)  # -0.0 == 0.0: one row


def test_distinct_rows_of_other_dtypes_and_empty_rows():
    rows = torch.tensor([[1.0, 2.0], [1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    distinct, index = distinct_rows(rows)
    assert distinct.shape == (2, 2) and torch.equal(distinct[index], rows)
    distinct, index = distinct_rows(torch.zeros(0, 4))
    assert distinct.shape == (0, 4) and index.shape == (0,)


def test_distinct_rows_survive_a_hash_collision(monkeypatch):
    """Rows whose hashes collide still come back exactly (the exact check sends them to torch.unique(dim=0))."""
    rows = torch.tensor([[1.0, 2.0], [5.0, 6.0], [1.0, 2.0]])
    real_unique = torch.unique

    def colliding(tensor, *args, **kwargs):  # every key the same: the worst collision
        if tensor.dim() == 1 and tensor.dtype == torch.int64:
            return real_unique(torch.zeros_like(tensor), *args, **kwargs)
        return real_unique(tensor, *args, **kwargs)

    monkeypatch.setattr(torch, "unique", colliding)
    distinct, index = distinct_rows(rows)
    assert len(distinct) == 2 and torch.equal(distinct[index], rows)


@pytest.mark.parametrize("shape", [(7, 5, 4), (30, 4)])
def test_f_pop_per_distinct_row_equals_f_pop_of_every_row(shape):
    torch.manual_seed(0)
    f_pop = PopularityNet(n_factors=4, hidden_dim=8)
    factors = torch.randint(0, 3, shape).float()  # many repeated rows, as in a batch's (period, candidate) factors
    values, index = f_pop.per_distinct(factors)  # [Q, B], [...]
    assert index.shape == shape[:-1] and len(values) < factors[..., 0].numel()
    torch.testing.assert_close(values[index], f_pop(factors), rtol=0, atol=1e-6)

"""prerec_pyro.data.batches: the distinct candidate factor rows a batch carries (f_pop runs once a row)."""

from dataclasses import replace

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prerec_pyro.data.batches import BatchBuilder, distinct_rows, trim


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from([0.0, -0.0, 1.0, 0.5, 2.0, 1e-30]), min_size=3, max_size=3),
                min_size=1, max_size=40))
def test_distinct_rows_rebuild_the_rows_and_are_distinct(values):
    rows = torch.tensor(values, dtype=torch.float32)  # [N, 3]
    distinct, index = distinct_rows(rows)
    assert torch.equal(distinct[index], rows)
    assert len(torch.unique(distinct, dim=0)) == len(distinct)  # -0.0 == 0.0: one row


def test_distinct_rows_of_other_dtypes_and_of_no_rows():
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


def test_a_sampled_batch_carries_its_distinct_candidate_factors(tiny_sources):
    domain = tiny_sources.domains[0]
    windows = domain.windows(domain.users_in("train"), tiny_sources.sequences)
    batch = BatchBuilder(tiny_sources, n_negatives=20).make(0, windows, torch.Generator().manual_seed(0))
    assert batch.factor_rows is not None
    distinct, index = batch.candidate_factor_rows()  # [Q, F], [P, C]
    assert index.shape == batch.factors_candidates.shape[:-1]
    assert torch.equal(distinct[index], batch.factors_candidates)
    assert len(distinct) < index.numel(), "the fixture's factors must repeat, or the test shows nothing"
    uncounted, counts = batch.candidate_counted()  # on the host, found with the distinct rows
    assert torch.equal(distinct[uncounted], torch.zeros(distinct.shape[1]))
    assert counts == tuple(batch.factors_candidates.ne(0).any(-1).sum(-1).tolist())
    assert 0 < sum(counts) < index.numel(), "the fixture must count some candidates and not others"


def test_replaced_candidate_factors_are_not_read_from_the_old_rows(tiny_sources):
    """A batch whose factors were replaced (e.g. a diagnostic that silences popularity) gets its own rows."""
    domain = tiny_sources.domains[0]
    windows = domain.windows(domain.users_in("train"), tiny_sources.sequences)
    batch = BatchBuilder(tiny_sources, n_negatives=20).make(0, windows, torch.Generator().manual_seed(0))
    silenced = replace(batch, factors_candidates=torch.zeros_like(batch.candidate_factors()))
    distinct, index = silenced.candidate_factor_rows()
    assert torch.equal(distinct, torch.zeros(1, batch.factors_candidates.shape[-1]))
    assert torch.equal(distinct[index], silenced.factors_candidates)
    assert silenced.candidate_counted() == (0, (0,) * len(index))


def test_a_catalogue_batch_lists_its_counted_candidates(tiny_sources):
    """A whole-catalogue batch carries its counted (period, item) pairs from the popularity table: the same pairs,
    order and rows as a scan of its dense factors; a batch whose factors were replaced scans its own."""
    domain = tiny_sources.domains[0]
    windows = domain.windows(domain.users_in("test"), tiny_sources.sequences)
    builder = BatchBuilder(tiny_sources, n_negatives=None)
    periods = torch.as_tensor(np.unique(domain.popularity.period_of(trim(windows).times)))  # [P]
    dense = domain.popularity.factors(periods, torch.arange(domain.n_items))  # [P, J, F]: the table's own
    for _ in range(2):  # the second batch reads the builder's kept lists
        batch = builder.make(0, windows)
        assert batch.counted_rows is not None and batch.factors_candidates is None, "the grid is built when read"
        period, column, rows = batch.counted_candidates()
        expected_period, expected_column = dense.ne(0).any(-1).nonzero(as_tuple=True)
        assert len(period) > 0
        assert torch.equal(period, expected_period) and torch.equal(column, expected_column)
        assert torch.equal(rows, dense[period, column])
        assert torch.equal(batch.candidate_factors(), dense) and batch.n_periods() == len(periods)
    silenced = replace(batch, factors_candidates=torch.zeros_like(batch.candidate_factors()))
    assert all(len(part) == 0 for part in silenced.counted_candidates())

"""Tensor batches for the PreRec model: windows of one domain, their popularity factors and candidate items.

Each batch holds sequences of a single domain k, so the Categorical over "the items of domain k" is one catalogue
for the whole batch. Popularity factors F are data: they are looked up here (time-dependent, previous interval) for
every target and for every candidate item at every period the batch's targets fall in.

Shape legend: R = sequences, L = positions, C = candidate items (sampled negatives or the whole catalogue),
P = distinct periods in the batch, F = popularity factors, A = target positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from prerec_pyro.data.dataset import MultiDomainData, Windows


@dataclass
class PreRecBatch:
    """One domain's windows as tensors; ``negatives is None`` means the full catalogue is the candidate set."""

    domain: int
    item_offset: int  # global row of the domain's item 0
    n_domain_items: int  # J_k
    user_index: Tensor  # [U] the batch's distinct global user rows, sorted (training users first)
    user_position: Tensor  # [R] each sequence's user as a position in ``user_index``
    n_sequences: int  # how many sequences the batch's rows were drawn from (the "sequences" plate size)
    items: Tensor  # [R, L] global item rows
    targets: Tensor  # [R, L] local item index (the observed next items)
    target_mask: Tensor  # [R, L] bool
    period_index: Tensor  # [R, L] index into the batch's periods
    factors_targets: Tensor  # [R, L, F]
    factors_candidates: Tensor | None  # [P, C, F]; None: a catalogue's, built from counted_rows when read (below)
    negatives: Tensor | None  # [C] local item index, or None for the full catalogue
    target_order: Tensor | None = None  # [A, 2] the targets' (row, position), grouped by period (see below)
    period_sizes: tuple[int, ...] | None = None  # [P] targets per period, in ``target_order``
    factor_rows: tuple | None = None  # (factors_candidates, its distinct rows [Q, F], their index [P, C], the
    # uncounted row's place among them (-1: none), each period's counted candidates [P] on the host); see below
    counted_rows: tuple | None = None  # (factors_candidates, period [N], column [N], F [N, F]); see below
    _dense: Tensor | None = field(default=None, init=False, repr=False, compare=False)  # candidate_factors' grid

    def candidate_factors(self) -> Tensor:
        """F of every (period, candidate) [P, C, F]: ``factors_candidates``, or, for a catalogue batch that lists
        only its counted pairs (``BatchBuilder``: the grid is most of an evaluation's memory at large catalogues,
        and the model reads the list), the dense grid built from the list on first read (zero elsewhere)."""
        if self.factors_candidates is not None:
            return self.factors_candidates
        if self._dense is None:
            assert self.counted_rows is not None, "a batch without factors_candidates lists its counted pairs"
            _, period, column, rows = self.counted_rows
            self._dense = rows.new_zeros(self.n_periods(), self.n_domain_items, rows.shape[-1])  # [P, J, F]
            self._dense[period, column] = rows
        return self._dense

    def n_periods(self) -> int:
        """P, the number of distinct periods of the batch's positions (``period_index`` indexes them all)."""
        if self.factors_candidates is not None:
            return self.factors_candidates.shape[0]
        return int(self.period_index.max()) + 1 if self.period_index.numel() else 0

    def candidate_factor_rows(self) -> tuple[Tensor, Tensor]:
        """The distinct rows of ``factors_candidates`` and each (period, candidate)'s index among them, so that
        ``factors_candidates == distinct[index]`` (most candidates are uncounted in most periods: f_pop runs once a
        row). ``BatchBuilder`` finds them on the host (no device sync in a training step); a batch made by hand, or
        one whose ``factors_candidates`` were replaced, gets them here. ([Q, F], [P, C])"""
        if self.factor_rows is not None and self.factor_rows[0] is self.factors_candidates:
            return self.factor_rows[1], self.factor_rows[2]
        factors = self.candidate_factors()  # [P, C, F]
        distinct, index = distinct_rows(factors.reshape(-1, factors.shape[-1]))  # [Q, F], [P * C]
        return distinct, index.reshape(factors.shape[:-1])

    def candidate_counted(self) -> tuple[int, tuple[int, ...]]:
        """Which of ``candidate_factor_rows()``'s distinct rows is the uncounted one (F = 0; -1 if no candidate is
        uncounted anywhere), and how many candidates each period counts (F != 0): on the host, so that a training
        step plans its products without a device sync. ``BatchBuilder`` finds them with the distinct rows; a batch
        made by hand gets them here. (int, [P])"""
        if self.factor_rows is not None and self.factor_rows[0] is self.factors_candidates:
            return self.factor_rows[3], self.factor_rows[4]
        distinct, index = self.candidate_factor_rows()
        return uncounted_and_counts(distinct.cpu(), index.cpu())

    def counted_candidates(self) -> tuple[Tensor, Tensor, Tensor]:
        """The (period, candidate) pairs of ``factors_candidates`` with a non-zero row, period by period and columns
        ascending, and their rows: ``factors_candidates`` is zero everywhere else. ``BatchBuilder`` lists them from
        the popularity table for a whole catalogue (no scan of [P, J, F]); a batch made by hand, or one whose
        ``factors_candidates`` were replaced, gets them here. ([N], [N], [N, F])"""
        if self.counted_rows is not None and self.counted_rows[0] is self.factors_candidates:
            return self.counted_rows[1], self.counted_rows[2], self.counted_rows[3]
        return counted_entries(self.candidate_factors())

    def target_layout(self) -> tuple[Tensor, tuple[int, ...]]:
        """The order in which the model scores targets: their flat (row-major) positions in [R, L], grouped by
        period (stable), and how many fall in each of the batch's periods, so that each period's item side is built
        once. ``BatchBuilder`` sets the order as (row, position) pairs on the host (no device sync in a training
        step; padding added or cut along L keeps it valid); a batch made by hand gets it here, from its
        ``target_mask`` and ``period_index``. ([A], [P])"""
        if self.target_order is None or self.period_sizes is None:
            order, sizes = group_targets(self.target_mask.cpu().numpy(), self.period_index.cpu().numpy(),
                                         self.n_periods())
            return torch.as_tensor(order[:, 0] * self.items.shape[1] + order[:, 1], device=self.items.device), sizes
        return self.target_order[:, 0] * self.items.shape[1] + self.target_order[:, 1], self.period_sizes

    def layout_targets(self) -> Tensor:
        """The observed next items (local index) at the targets, in ``target_layout()`` order. [A]"""
        return self.targets.reshape(-1)[self.target_layout()[0]]

    @property
    def candidate_rows(self) -> Tensor:
        """Global item rows of the candidate set. [C]"""
        if self.negatives is not None:
            return self.negatives + self.item_offset
        return torch.arange(self.item_offset, self.item_offset + self.n_domain_items, device=self.items.device)

    def seen_before(self, rows: Tensor) -> Tensor:
        """Whether item ``rows`` [C] (global rows) occurs earlier in the window than each position (windows are
        right-padded, so every position before a target holds a real item); a candidate listed twice is marked in
        both columns. [R, L, C] bool"""
        columns, marked, canonical = self.seen_columns(rows, torch.arange(self.items.numel(), device=rows.device))
        marks = torch.zeros(len(columns), len(rows), device=rows.device).scatter_add_(1, columns, marked.float())
        return (marks > 0)[:, canonical].reshape(*self.items.shape, len(rows))  # [R, L, C]

    def seen_columns(self, rows: Tensor, positions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``seen_before(rows)`` at flat positions ``positions`` [A] of [R, L] as a scatter index, without an
        [A, C] pass or a device sync: for each position and each slot s of its window, the candidate column of the
        item at s and whether it marks the column (s is before the position, the item is a candidate, and s is
        the item's first slot in the window, so no column is marked twice); and for each candidate the column
        its marks land in (itself, unless ``rows`` lists its item twice). Scatter-adding ``marked`` at ``columns``
        into [A, C] zeros and taking columns ``canonical`` gives ``seen_before(rows)`` at ``positions``.
        ([A, L] long, [A, L] bool, [C] long)"""
        length = self.items.shape[1]
        rows_of = positions // length  # [A]
        lookup = torch.full((self.n_domain_items,), -1, dtype=torch.long, device=self.items.device)  # [J_k]
        lookup[rows - self.item_offset] = torch.arange(len(rows), device=rows.device)
        column = lookup[self.items - self.item_offset]  # [R, L]: candidate column of each window item, -1 if none
        same = self.items.unsqueeze(2) == self.items.unsqueeze(1)  # [R, L (s), L (s')]
        first = ~(same & torch.ones_like(same[0]).tril(-1)).any(-1)  # [R, L]: no earlier slot holds the item
        before = torch.arange(length, device=rows.device) < (positions % length).unsqueeze(1)  # [A, L]
        marked = before & first[rows_of] & (column[rows_of] >= 0)  # [A, L]
        return column[rows_of].clamp(min=0), marked, lookup[rows - self.item_offset]

    def target_seen_before(self) -> Tensor:
        """Whether each position's own item occurs earlier in its window. [R, L] bool"""
        same = self.items.unsqueeze(2) == self.items.unsqueeze(1)  # [R, L (p), L (s)]
        earlier = torch.ones(same.shape[1:], dtype=torch.bool, device=same.device).tril(-1)  # s < p
        return (same & earlier).any(-1)

    @property
    def n_targets(self) -> int:
        return int(self.target_mask.sum())


class BatchBuilder:
    """Turns windows of a domain into ``PreRecBatch``es on ``device``.

    Args:
        data: the indexed domains (global rows are the model's plates).
        n_negatives: sampled negatives per batch, drawn uniformly from the domain and shared by the batch's
            targets (a negative equal to a target is masked by the model); ``None`` scores the full catalogue.
        device: where the batch's tensors live.
    """

    def __init__(self, data: MultiDomainData, n_negatives: int | None, device: torch.device | str = "cpu"):
        if n_negatives is not None and n_negatives < 1:
            raise ValueError(f"n_negatives must be >= 1 or None (full softmax), got {n_negatives}")
        self.data = data
        self.n_negatives = n_negatives
        self.device = torch.device(device)

    def catalogue_factors(self, domain: int, periods: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """F of every item of ``domain`` at each of ``periods`` [P] as the sparse list of
        ``PreRecBatch.counted_candidates`` (period [N], item [N], F [N, F]; every other item is uncounted, F = 0),
        from the popularity table, which keeps each period's list (``PopularityTable.counted``; docs/DESIGN.md,
        "Scoring only what is ranked"). The dense [P, J_k, F] grid is built only where it is read
        (``PreRecBatch.candidate_factors``)."""
        return self.data.domains[domain].popularity.counted(periods)

    def make(self, domain: int, windows: Windows, generator: torch.Generator | None = None,
             n_sequences: int | None = None) -> PreRecBatch:
        """A batch of ``windows`` of ``domain``; ``n_sequences`` is the size of the set they were sampled from
        (default: the batch itself, i.e. no subsampling)."""
        data, dom = self.data, self.data.domains[domain]
        windows = trim(windows)
        users, position = np.unique(data.user_rows[domain][windows.user], return_inverse=True)  # [U], [R]
        offset = int(data.item_offsets[domain])
        periods = dom.popularity.period_of(windows.times)  # [R, L]
        unique, inverse = np.unique(periods, return_inverse=True)  # [P], [R*L]
        items = torch.as_tensor(windows.items, dtype=torch.long)  # [R, L]
        period_index = torch.as_tensor(inverse.reshape(periods.shape), dtype=torch.long)  # [R, L]
        unique_t = torch.as_tensor(unique, dtype=torch.long)  # [P]
        negatives = None
        if self.n_negatives is not None:
            negatives = torch.randint(0, dom.n_items, (self.n_negatives,), generator=generator)  # [C]
        table = dom.popularity
        factors_targets = table.factors_at(unique_t[period_index], items)  # [R, L, F]
        counted, factors_candidates = None, None  # a catalogue's dense [P, J, F] only where read
        if negatives is None:
            counted = self.catalogue_factors(domain, unique_t)  # [N], [N], [N, F]
        else:
            factors_candidates = table.factors(unique_t, negatives)  # [P, C, F]
        to = self._to
        target_order, period_sizes = group_targets(windows.target_mask, period_index.numpy(), len(unique))
        factor_rows = None
        if negatives is not None:  # sampled candidates: f_pop once per distinct row (PreRecBatch.candidate_factor_rows)
            distinct, index = distinct_rows(factors_candidates.reshape(-1, factors_candidates.shape[-1]))  # host
            index = index.reshape(factors_candidates.shape[:-1])  # [P, C]
            factor_rows = (to(distinct), to(index), *uncounted_and_counts(distinct, index))
        factors_candidates = None if factors_candidates is None else to(factors_candidates)
        return PreRecBatch(
            domain=domain, item_offset=offset, n_domain_items=dom.n_items,
            user_index=to(torch.as_tensor(users, dtype=torch.long)),
            user_position=to(torch.as_tensor(position.reshape(-1), dtype=torch.long)),
            n_sequences=len(windows) if n_sequences is None else n_sequences,
            items=to(items + offset), targets=to(items),
            target_mask=to(torch.as_tensor(windows.target_mask)), period_index=to(period_index),
            factors_targets=to(factors_targets), factors_candidates=factors_candidates,
            negatives=None if negatives is None else to(negatives),
            target_order=to(torch.as_tensor(target_order)), period_sizes=period_sizes,
            factor_rows=None if factor_rows is None else (factors_candidates, *factor_rows),
            counted_rows=None if counted is None else (factors_candidates, *(to(part) for part in counted)))

    def _to(self, tensor: Tensor) -> Tensor:
        """To the batch's device; to a GPU through pinned memory, asynchronously (the copy overlaps the previous
        step's kernels)."""
        if self.device.type != "cuda":
            return tensor.to(self.device)
        return tensor.pin_memory().to(self.device, non_blocking=True)


def group_targets(target_mask: np.ndarray, period_index: np.ndarray,
                  n_periods: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """The (row, position) of the targets of ``target_mask`` [R, L] grouped by their ``period_index`` [R, L]
    (stable: row-major within a period), and the number in each of ``n_periods`` periods. ([A, 2], [P])"""
    flat = np.flatnonzero(target_mask)  # [A], row-major
    periods = period_index.reshape(-1)[flat]  # [A]
    order = flat[np.argsort(periods, kind="stable")]
    pairs = np.stack(np.divmod(order, target_mask.shape[1]), axis=1).astype(np.int64)  # [A, 2]
    return pairs, tuple(np.bincount(periods, minlength=n_periods).tolist())


def trim(windows: Windows) -> Windows:
    """Drop the trailing positions that are padding in every row (a causal pass gives the same states for the
    positions kept), so short sequences do not pay for ``max_len``."""
    filled = windows.target_mask.any(axis=0)  # [L]
    length = int(np.flatnonzero(filled)[-1]) + 1 if filled.any() else 1
    if length == windows.items.shape[1]:
        return windows
    return Windows(windows.user, windows.items[:, :length], windows.times[:, :length],
                   windows.target_mask[:, :length], windows.position[:, :length])


class DomainBalancedSampler:
    """Yields ``(domain, rows)`` batches of training windows, cycling through the domains in turn.

    One epoch has as many batches as the training windows of all domains fill; each batch takes ``batch_size``
    windows of one domain, domains taking turns (so each domain gets the same number of batches), each domain's
    windows reshuffled whenever they run out. Deterministic given (seed, epoch), so a resumed run repeats it.
    """

    def __init__(self, windows: list[Windows], batch_size: int, seed: int):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.sizes = [len(w) for w in windows]
        self.active = [k for k, n in enumerate(self.sizes) if n > 0]
        if not self.active:
            raise ValueError("no domain has any training window")
        self.batch_size, self.seed = batch_size, seed

    def __len__(self) -> int:
        return max(1, -(-sum(self.sizes) // self.batch_size))

    def epoch(self, epoch: int, steps: int | None = None):
        """The batches of ``epoch``: ``len(self)`` of them, or ``steps`` (going on through reshuffled windows)."""
        rng = np.random.default_rng([self.seed, epoch])
        perms = {k: rng.permutation(self.sizes[k]) for k in self.active}
        cursor = {k: 0 for k in self.active}
        for step in range(len(self) if steps is None else steps):
            k = self.active[step % len(self.active)]
            n = min(self.batch_size, self.sizes[k])
            if cursor[k] + n > self.sizes[k]:
                perms[k], cursor[k] = rng.permutation(self.sizes[k]), 0
            rows = perms[k][cursor[k]: cursor[k] + n]
            cursor[k] += n
            yield k, rows


def distinct_rows(rows: Tensor) -> tuple[Tensor, Tensor]:
    """The distinct rows of ``rows`` [N, F] and each row's index among them: ``rows == distinct[index]``. A 1-D
    unique over a hash of each float32 row's bits (about 20x faster than ``torch.unique(dim=0)``'s sort of rows),
    checked exactly; a hash collision, or another dtype, takes ``torch.unique(dim=0)``. [Q, F], [N]"""
    if rows.dtype == torch.float32 and len(rows):
        bits = (rows + 0.0).contiguous().view(torch.int32).to(torch.int64)  # [N, F]; -0.0 + 0.0 is 0.0
        key = bits[:, 0]
        for column in range(1, bits.shape[1]):
            key = key * 1_000_003 + bits[:, column]  # wraps around in int64: a hash, checked below
        keys, index = torch.unique(key, return_inverse=True)  # [Q], [N]
        first = torch.empty_like(keys).scatter_(0, index, torch.arange(len(key), device=rows.device))  # [Q]
        distinct = rows[first]  # [Q, F]
        if torch.equal(distinct[index], rows):
            return distinct, index
    return torch.unique(rows, dim=0, return_inverse=True)


def uncounted_and_counts(distinct: Tensor, index: Tensor) -> tuple[int, tuple[int, ...]]:
    """The place of the zero row among ``distinct`` [Q, F] (-1 if none) and, for each row of ``index`` [P, C] (rows
    of ``distinct``), how many entries are not it: ``PreRecBatch.candidate_counted``. (int, [P])"""
    zero = torch.nonzero(distinct.eq(0).all(-1)).reshape(-1)
    zero_row = int(zero[0]) if len(zero) else -1
    return zero_row, tuple(index.ne(zero_row).sum(-1).tolist())


def counted_entries(factors: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The (period, column) pairs of ``factors`` [P, C, F] with a non-zero row, period by period and columns
    ascending, and those rows: the sparse list ``PreRecBatch.counted_candidates`` returns. ([N], [N], [N, F])"""
    period, column = factors.ne(0).any(-1).nonzero(as_tuple=True)  # [N], [N]
    return period, column, factors[period, column]

"""Ranking metrics of the paper: full-catalogue ranks, Recall/r-NDCG@K%, Recall/NDCG@10, bootstrap CIs.

Every metric is returned per evaluated sample (one next-item position of one test user) so callers can average,
group by domain or bootstrap over users. With ``N`` items and ``K = int(N * K% / 100)``:

- rank of the target: 1-based, ties take the average rank, ``rank = #(s > s_t) + (#(s == s_t) + 1) / 2``;
- ``Recall@K% = 1[rank <= K]``;
- ``r-NDCG@K% = log(a) / log(a + b * (rank - 1) / N)`` if ``rank <= K`` else 0, with ``a = 2`` and, by default,
  ``b = 600 / K%`` (K% in percent: ``b = 15000`` at K% = 0.04, ``b = 1200`` at K% = 0.5), so that at the cut-off
  ``b * (K - 1) / N ~ 6`` (gain ``log 2 / log 8 = 1/3``) and the curve's range is the same for every K%;
- ``Recall@10 = 1[rank <= 10]`` and ``NDCG@10 = 1 / log2(rank + 1)`` if ``rank <= 10`` else 0.

The evidence for ``b = 600 / K%`` is the Random rows of the paper's Table 1: a uniformly random ranking scores
r-NDCG@K% = 0.0025 on Online Retail (N = 4,223 items, K% = 0.5, K = 21) with ``b = 1200`` (``b = 15000`` would
give 0.0012), and 0.0002 on XMarket (K% = 0.04, e.g. N = 10,000, K = 4) with ``b = 15000`` (``b = 1200`` would give
0.0004).

Fractional (average) ranks are plugged into the same formulas. All functions work on CPU and CUDA tensors.
"""

from __future__ import annotations

import math
from decimal import Decimal

import torch
from torch import Tensor

DEFAULT_A = 2.0
B_TIMES_K_PERCENT = 600.0  # default r-NDCG b = B_TIMES_K_PERCENT / K% (K% in percent), see the module docstring
_RANK_CHUNK_ELEMENTS = 1 << 17  # scores compared at once: a block that stays in cache across its passes
_BOOT_CHUNK_ELEMENTS = 1 << 24  # bootstrap replicates x groups held at once


class MetricNames:
    """Keys of the metric dictionaries returned by :func:`sample_metrics` and :func:`random_baseline`."""

    RECALL_K = "recall@k%"
    RNDCG_K = "rndcg@k%"
    RECALL_10 = "recall@10"
    NDCG_10 = "ndcg@10"
    ALL = (RECALL_K, RNDCG_K, RECALL_10, NDCG_10)


def _check_k_percent(k_percent: float) -> None:
    if not (math.isfinite(k_percent) and 0.0 < k_percent <= 100.0):
        raise ValueError(f"k_percent must be in (0, 100] (a percentage), got {k_percent!r}")


def k_from_percent(n_items: int, k_percent: float) -> int:
    """Return ``K = int(N * k_percent / 100)`` (``k_percent`` in percent: 0.5 means 0.5%).

    The product is computed in decimal arithmetic on ``repr(k_percent)`` so that e.g. N = 10000, 0.29% gives
    exactly 29 (binary floating point would give 28.999...). Raises ``ValueError`` when K would be 0.
    """
    if isinstance(n_items, bool) or int(n_items) != n_items or n_items < 1:
        raise ValueError(f"n_items must be a positive integer, got {n_items!r}")
    _check_k_percent(k_percent)
    k = math.floor(Decimal(repr(float(k_percent))) * int(n_items) / 100)
    if k < 1:
        raise ValueError(
            f"K = int(N * k_percent / 100) is 0 for N = {n_items} items and k_percent = {k_percent}; "
            f"use k_percent >= {100.0 / n_items:.6g} to get K >= 1"
        )
    return int(k)


def average_ranks(scores: Tensor, targets: Tensor, rows: Tensor | None = None) -> Tensor:
    """1-based rank of each row's target item among the row's scores, ties taking the average rank.

    One pass over each row: with n_>, n_= and n_< the items scored above, level with and below the target,
    n_> + (n_= + 1) / 2 = (Σ_j sign(s_j - s_t) + J + 1) / 2. Rows are compared block by block (about
    ``_RANK_CHUNK_ELEMENTS`` scores at once), so each block stays in cache; with ``rows`` the blocks are gathered
    from those rows of ``scores`` only.

    Args:
        scores: ``[N, J]`` scores (higher is better); ``-inf`` marks masked (padding) items, ranked below all others.
        targets: ``[T]`` integer column index of the target item in each ranked row.
        rows: ``[T]`` row indices of ``scores`` to rank (default: every row, T = N).

    Returns:
        ``[T]`` float64 ranks on the device of ``scores``: ``#(s > s_t) + (#(s == s_t) + 1) / 2``.

    Raises:
        ValueError: on shape mismatch, out-of-range targets, NaN scores or a masked (``-inf``) target score.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be a [T, J] matrix, got shape {tuple(scores.shape)}")
    if rows is not None and (rows.dim() != 1 or rows.dtype.is_floating_point or rows.dtype == torch.bool):
        raise ValueError(f"rows must be a 1-D tensor of row indices, got shape {tuple(rows.shape)}, {rows.dtype}")
    n_rows, n_cols = (scores.shape[0] if rows is None else rows.shape[0]), scores.shape[1]
    if targets.dim() != 1 or targets.shape[0] != n_rows:
        raise ValueError(f"targets must have shape [{n_rows}] to match the ranked rows, got {tuple(targets.shape)}")
    if targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise ValueError(f"targets must be integer item indices, got dtype {targets.dtype}")
    if n_rows == 0:
        return torch.zeros(0, dtype=torch.float64, device=scores.device)
    targets = targets.to(device=scores.device, dtype=torch.long)
    if bool(((targets < 0) | (targets >= n_cols)).any()):
        raise ValueError(f"targets must be column indices in [0, {n_cols}), got values outside that range")
    rows_per_chunk = max(1, _RANK_CHUNK_ELEMENTS // max(n_cols, 1))
    balance, masked, nan_rows = [], [], []
    exact = torch.float64 if n_cols >= 2**24 else None  # a float32 sum of ±1s is exact below 2^24 terms
    for start in range(0, n_rows, rows_per_chunk):
        chunk = slice(start, start + rows_per_chunk)
        block = scores[chunk] if rows is None else scores[rows[chunk]]  # [c, J]
        block = block if block.dtype.is_floating_point else block.double()
        t = block.gather(1, targets[chunk, None])  # [c, 1]
        masked.append(torch.isneginf(t).any())
        difference = torch.sub(block, t)  # [c, J]
        nan_rows.append(difference.sum(dim=1).isnan())  # a NaN score makes its row's sum NaN (its sign would be 0)
        balance.append(difference.sign_().sum(dim=1, dtype=exact))  # [c]: #(s > t) - #(s < t)
    if bool(torch.stack(masked).any()):
        raise ValueError("a target item has score -inf (masked/padding); targets must be real catalogue items")
    nan_rows = torch.cat(nan_rows)  # [T]
    if bool(nan_rows.any()):  # a row's sum is also NaN where it holds +inf and -inf: count the true NaN rows
        bad = sum(int(torch.isnan(scores[r] if rows is None else scores[rows[r]]).any()) for r in
                  nan_rows.nonzero()[:, 0].tolist())
        if bad:
            raise ValueError(f"scores contain NaN in {bad} of {n_rows} rows")
    balance = torch.cat(balance).double()  # [T]
    # #(s > t) + (#(s == t) + 1) / 2 = (#(s > t) - #(s < t) + J + 1) / 2, as #(s > t) + #(s == t) + #(s < t) = J
    return (balance + n_cols + 1.0) / 2.0


def _check_ranks(ranks: Tensor) -> Tensor:
    """Return ``ranks`` as float64, after checking it is a 1-D tensor of values >= 1."""
    if ranks.dim() != 1:
        raise ValueError(f"ranks must be a 1-D tensor, got shape {tuple(ranks.shape)}")
    ranks = ranks.to(torch.float64)
    if ranks.numel() and bool((torch.isnan(ranks) | (ranks < 1.0)).any()):
        raise ValueError("ranks must be 1-based (>= 1) and not NaN")
    return ranks


def rndcg_b(k_percent: float, b: float | None = None) -> float:
    """The r-NDCG constant ``b``: ``B_TIMES_K_PERCENT / k_percent`` (600 / K%, the paper's) unless ``b`` is given."""
    if b is not None:
        if not (math.isfinite(b) and b > 0.0):
            raise ValueError(f"r-NDCG b must be a finite number > 0, got b = {b!r}")
        return float(b)
    _check_k_percent(k_percent)
    return B_TIMES_K_PERCENT / k_percent


def recall_at_k(ranks: Tensor, k: int) -> Tensor:
    """Per-sample ``1[rank <= k]`` as float64."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return (_check_ranks(ranks) <= k).to(torch.float64)


def rndcg_at_k(ranks: Tensor, n_items: int, k: int, a: float = DEFAULT_A, *, b: float) -> Tensor:
    """Per-sample ``log(a) / log(a + b * (rank - 1) / N)`` if ``rank <= k`` else 0, as float64.

    ``b`` has no default: it follows K% (see :func:`rndcg_b`).
    """
    if n_items < 1 or k < 1:
        raise ValueError(f"n_items and k must be >= 1, got n_items = {n_items}, k = {k}")
    if not (a > 1.0 and b > 0.0):
        raise ValueError(f"r-NDCG needs a > 1 and b > 0, got a = {a}, b = {b}")
    ranks = _check_ranks(ranks)
    gain = math.log(a) / torch.log(a + b * (ranks - 1.0) / n_items)
    return torch.where(ranks <= k, gain, torch.zeros_like(gain))


def recall_at_10(ranks: Tensor) -> Tensor:
    """Per-sample ``1[rank <= 10]`` as float64."""
    return recall_at_k(ranks, 10)


def ndcg_at_10(ranks: Tensor) -> Tensor:
    """Per-sample ``1 / log2(rank + 1)`` if ``rank <= 10`` else 0, as float64."""
    ranks = _check_ranks(ranks)
    gain = 1.0 / torch.log2(ranks + 1.0)
    return torch.where(ranks <= 10, gain, torch.zeros_like(gain))


def sample_metrics(ranks: Tensor, n_items: int, k_percent: float, b: float | None = None) -> dict[str, Tensor]:
    """All four per-sample metrics keyed by :class:`MetricNames` (K from ``k_from_percent(n_items, k_percent)``,
    r-NDCG's b from ``rndcg_b(k_percent, b)``)."""
    k = k_from_percent(n_items, k_percent)
    return {
        MetricNames.RECALL_K: recall_at_k(ranks, k),
        MetricNames.RNDCG_K: rndcg_at_k(ranks, n_items, k, b=rndcg_b(k_percent, b)),
        MetricNames.RECALL_10: recall_at_10(ranks),
        MetricNames.NDCG_10: ndcg_at_10(ranks),
    }


def random_baseline(
    n_items: int, k_percent: float, a: float = DEFAULT_A, b: float | None = None
) -> dict[str, float]:
    """Exact expected metrics of a uniformly random ranking of ``n_items`` (rank uniform on 1..N).

    r-NDCG's b is ``rndcg_b(k_percent, b)``: 600 / K% unless given.

    Recall@K% = K/N, r-NDCG@K% = (1/N) sum_{r<=K} rndcg(r), Recall@10 = min(10, N)/N,
    NDCG@10 = (1/N) sum_{r<=min(10, N)} 1/log2(r + 1).
    """
    k = k_from_percent(n_items, k_percent)
    top_k = torch.arange(1, k + 1, dtype=torch.float64)
    top_10 = torch.arange(1, min(10, n_items) + 1, dtype=torch.float64)
    return {
        MetricNames.RECALL_K: k / n_items,
        MetricNames.RNDCG_K: float(rndcg_at_k(top_k, n_items, k, a, b=rndcg_b(k_percent, b)).sum()) / n_items,
        MetricNames.RECALL_10: min(10, n_items) / n_items,
        MetricNames.NDCG_10: float(ndcg_at_10(top_10).sum()) / n_items,
    }


def bootstrap_ci(
    values: Tensor, groups: Tensor, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of per-sample ``values``, resampling whole groups (users).

    Each replicate draws ``G`` groups with replacement out of the ``G`` distinct ``groups`` and takes the mean over
    all samples of the drawn groups (a group drawn twice counts twice). Vectorised: per-group sums and counts by
    ``bincount``, replicate weights by ``bincount`` of the draws, replicates processed in chunks.

    Returns:
        ``(low, high)``: the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the replicate means.
    """
    if values.dim() != 1 or groups.shape != values.shape:
        raise ValueError(
            f"values and groups must be 1-D of equal length, got {tuple(values.shape)} and {tuple(groups.shape)}"
        )
    if values.numel() == 0:
        raise ValueError("bootstrap_ci needs at least one sample, got empty values")
    if n_boot < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"need n_boot >= 1 and 0 < level < 1, got n_boot = {n_boot}, level = {level}")
    vals = values.detach().to("cpu", torch.float64)
    if bool(torch.isnan(vals).any()):
        raise ValueError("values contain NaN")
    _, group_index = torch.unique(groups.detach().cpu(), return_inverse=True)
    n_groups = int(group_index.max()) + 1
    group_sums = torch.bincount(group_index, weights=vals, minlength=n_groups)
    group_counts = torch.bincount(group_index, minlength=n_groups).to(torch.float64)
    generator = torch.Generator().manual_seed(seed)
    chunk = max(1, _BOOT_CHUNK_ELEMENTS // n_groups)
    means = []
    for start in range(0, n_boot, chunk):
        reps = min(chunk, n_boot - start)
        draws = torch.randint(n_groups, (reps, n_groups), generator=generator)
        flat = (draws + n_groups * torch.arange(reps)[:, None]).reshape(-1)
        weights = torch.bincount(flat, minlength=reps * n_groups).reshape(reps, n_groups).to(torch.float64)
        means.append((weights @ group_sums) / (weights @ group_counts))
    boot = torch.cat(means)
    alpha = (1.0 - level) / 2.0
    low, high = torch.quantile(boot, torch.tensor([alpha, 1.0 - alpha], dtype=torch.float64))
    return float(low), float(high)

"""Popularity factors F_j of the paper's Appendix C (the paper's Appendix C), as sparse tables with vectorised torch
lookups.

A domain's time line is cut into *periods*. For an interaction at time t in period p, the item counts c_j behind
its factors come from a window of earlier periods, never from p itself (no leakage):

- ``mode="interval"`` (the paper, default): periods are intervals of ``interval_days`` days starting at ``origin``;
  the window is the previous interval p - 1, and the power means average over ALL items of the catalogue:
  ``s_w = (sum_j c_j^w / |J_k|)^(1/w)``.
- ``mode="sliding"`` (the official code): periods are days, ``floor(t / 86400)`` relative to the origin's day; the
  window is the ``interval_days`` days ending the day before (days p - W .. p - 1), and the power means average
  only over the items with c_j > 0.

In both modes ``F_j = [c_j / s_1, ..., c_j / s_n]`` with w = 1..n_factors, and F = 0 for every item when the
window holds no interaction (the first period, an empty previous interval, periods before or long after the log).

Storage is sparse: the sorted keys ``item * n_periods + period`` of the non-zero (period, item) counts with a
prefix sum of the counts, so that a window count is the difference of two prefix sums found by
``torch.searchsorted`` (or, when (periods + 1) x items fits ``DENSE_COUNTS_MAX``, of two rows of a dense table of
running counts built once per table, up to 80 MB of int64; lookups then cost two gathers), plus a dense
``[n_periods + W, n_factors]`` table of the scales s_w of each lookup period.
The scales are built in one pass over per-item change points of the window counts (no loop over periods or items),
with exact integer power sums.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import torch

logger = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400
MODES = ("interval", "sliding")
# Integer power sums are exact in int64 while every partial value stays below this bound; above it, Python ints.
_INT64_SAFE = 2**62
DENSE_COUNTS_MAX = 10_000_000  # (periods + 1) x items up to which lookups read a dense table of running counts
COUNTED_CACHE = 1 << 22  # counted (period, item) rows a table keeps from ``counted`` (oldest periods leave first)


@dataclass(frozen=True)
class PopularityConfig:
    """How popularity factors are computed.

    Attributes:
        interval_days: interval length (interval mode) or window length in days (sliding mode, must be whole).
        mode: ``"interval"`` (the paper's Appendix C, default) or ``"sliding"`` (the official code).
        n_factors: number of factors, one per power w = 1..n_factors.
    """

    interval_days: float = 15.0
    mode: str = "interval"
    n_factors: int = 4

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"PopularityConfig.mode: got {self.mode!r}; expected one of {MODES}")
        days = self.interval_days
        if isinstance(days, bool) or not isinstance(days, (int, float)) or not math.isfinite(days) or days <= 0:
            raise ValueError(f"PopularityConfig.interval_days: got {days!r}; expected a finite number > 0")
        if days * SECONDS_PER_DAY < 1:
            raise ValueError(f"PopularityConfig.interval_days: got {days!r}; expected at least one second")
        if self.mode == "sliding" and float(days) != int(days):
            raise ValueError(f"PopularityConfig.interval_days: got {days!r}; sliding mode needs a whole number of "
                             "days")
        if isinstance(self.n_factors, bool) or not isinstance(self.n_factors, int) or self.n_factors < 1:
            raise ValueError(f"PopularityConfig.n_factors: got {self.n_factors!r}; expected an integer >= 1")

    @property
    def window(self) -> int:
        """Number of base periods in the window behind a period: 1 interval, or ``interval_days`` days."""
        return 1 if self.mode == "interval" else int(self.interval_days)

    @property
    def period_seconds(self) -> float:
        """Length of one base period in seconds (an interval, or a day)."""
        return self.interval_days * SECONDS_PER_DAY if self.mode == "interval" else float(SECONDS_PER_DAY)


def _check_log(items: np.ndarray, timestamps: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate the log arrays and return them as 1-D int64."""
    if isinstance(n_items, bool) or not isinstance(n_items, (int, np.integer)) or n_items < 1:
        raise ValueError(f"PopularityTable.from_log: n_items={n_items!r}; expected an integer >= 1")
    items, timestamps = np.asarray(items), np.asarray(timestamps)
    for name, values in (("items", items), ("timestamps", timestamps)):
        if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"PopularityTable.from_log: {name} has shape {values.shape} and dtype {values.dtype}; "
                             "expected a 1-D integer array")
    if len(items) != len(timestamps):
        raise ValueError(f"PopularityTable.from_log: items has {len(items)} entries but timestamps has "
                         f"{len(timestamps)}; expected equal lengths")
    bad = (items < 0) | (items >= n_items)
    if bad.any():
        raise ValueError(f"PopularityTable.from_log: items holds {int(bad.sum())} value(s) outside [0, {n_items}), "
                         f"such as {int(items[bad][0])}")
    return items.astype(np.int64), timestamps.astype(np.int64)


def _period_of_numpy(timestamps: np.ndarray, origin: int, config: PopularityConfig) -> np.ndarray:
    """Period index of epoch-second timestamps (numpy)."""
    timestamps = np.asarray(timestamps, dtype=np.int64)
    if config.mode == "sliding":
        return timestamps // SECONDS_PER_DAY - origin // SECONDS_PER_DAY
    seconds = config.period_seconds
    if float(seconds).is_integer():
        return (timestamps - origin) // int(seconds)
    return np.floor((timestamps - origin).astype(np.float64) / seconds).astype(np.int64)


def _period_of_torch(timestamps: torch.Tensor, origin: int, config: PopularityConfig) -> torch.Tensor:
    """Period index of epoch-second timestamps (torch); identical to :func:`_period_of_numpy`."""
    timestamps = timestamps.long()
    if config.mode == "sliding":
        return torch.div(timestamps, SECONDS_PER_DAY, rounding_mode="floor") - origin // SECONDS_PER_DAY
    seconds = config.period_seconds
    if float(seconds).is_integer():
        return torch.div(timestamps - origin, int(seconds), rounding_mode="floor")
    return torch.floor((timestamps - origin).double() / seconds).long()


def _window_segments(item: np.ndarray, period: np.ndarray, count: np.ndarray, window: int,
                     n_lookup: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Piecewise-constant window counts of every item as segments [start, end) of lookup periods with value > 0.

    A count x of (item, period q) enters the window of lookup periods q+1 .. q+window, i.e. it adds +x at q+1 and
    -x at q+window+1. Summing the change points per (item, lookup period) and taking a running sum gives each
    item's window count, constant until its next change point. Every item's changes sum to zero, so one global
    running sum over the (item, period)-sorted change points restarts at zero for each item.
    """
    stride = n_lookup + 1
    keys = np.concatenate([item * stride + period + 1, item * stride + period + window + 1])
    deltas = np.concatenate([count, -count])
    order = np.argsort(keys, kind="stable")
    keys, deltas = keys[order], deltas[order]
    unique_keys, first = np.unique(keys, return_index=True)
    values = np.cumsum(np.add.reduceat(deltas, first))
    positive = values[:-1] > 0
    assert values[-1] == 0, "every item's window count must return to zero after its last change point"
    points = unique_keys % stride
    return points[:-1][positive], points[1:][positive], values[:-1][positive]


def _range_sums(start: np.ndarray, end: np.ndarray, values: np.ndarray, n_lookup: int) -> np.ndarray:
    """Sum over segments of ``values`` on each lookup period they cover, with a difference array (exact)."""
    diff = np.zeros(n_lookup + 1, dtype=values.dtype)
    np.add.at(diff, start, values)
    np.add.at(diff, end, -values)
    return np.cumsum(diff)[:n_lookup]


def _scales(item: np.ndarray, period: np.ndarray, count: np.ndarray, n_lookup: int, n_items: int,
            config: PopularityConfig) -> np.ndarray:
    """Scales s_w (float64, [n_lookup, n_factors]) of the window behind every lookup period; 0 for empty windows."""
    scales = np.zeros((n_lookup, config.n_factors), dtype=np.float64)
    if len(item) == 0:
        return scales
    start, end, values = _window_segments(item, period, count, config.window, n_lookup)
    totals = _range_sums(start, end, values, n_lookup)  # sum_j c_j: bounds every c_j and every sum of c_j^w
    exact_int64 = int(totals.max()) ** config.n_factors < _INT64_SAFE
    if not exact_int64:
        logger.warning("popularity counts up to %d per window: power sums in Python integers (slow but exact)",
                       int(totals.max()))
        values = values.astype(object)
    if config.mode == "interval":
        denominator = np.full(n_lookup, float(n_items))
    else:
        denominator = _range_sums(start, end, np.ones_like(start), n_lookup).astype(np.float64)
    nonempty = totals > 0
    for w in range(1, config.n_factors + 1):  # a loop over the few powers only
        power_sums = _range_sums(start, end, values**w, n_lookup).astype(np.float64)
        scales[nonempty, w - 1] = (power_sums[nonempty] / denominator[nonempty]) ** (1.0 / w)
    return scales


@dataclass(frozen=True)
class PopularityTable:
    """Counts of one domain's log, for looking up F (and raw counts) by (period, item).

    Build it with :meth:`from_log`. Lookups take long tensors on the table's device (see :meth:`to`) and never
    loop in Python. Items outside [0, n_items) and periods whose window lies outside the log get count 0 and F = 0.

    Attributes:
        config: how the factors are computed.
        n_items: catalogue size |J_k| (local item indices 0..n_items-1).
        n_periods: number of periods spanned by the log (periods 0..n_periods-1 hold its interactions).
        origin: epoch seconds of the start of period 0 (sliding mode: its day is day 0).
        keys: sorted int64 ``item * n_periods + period`` of the non-zero counts.
        prefix: int64 running sum of the counts along ``keys``, with a leading 0 (length len(keys) + 1).
        scales: float32 [n_periods + window, n_factors], the s_w behind each lookup period (0: empty window).
    """

    config: PopularityConfig
    n_items: int
    n_periods: int
    origin: int
    keys: torch.Tensor
    prefix: torch.Tensor
    scales: torch.Tensor

    @classmethod
    def from_log(cls, items: np.ndarray, timestamps: np.ndarray, n_items: int, config: PopularityConfig,
                 origin: int | None = None) -> PopularityTable:
        """Count a domain's log.

        Args:
            items: int local item index (0..n_items-1) of every interaction.
            timestamps: int epoch seconds of every interaction.
            n_items: the catalogue size |J_k| (items with no interaction count as zeros).
            config: interval length, mode and number of factors.
            origin: epoch seconds of the start of period 0; default the log's earliest timestamp. It must not be
                later than any timestamp of the log.
        """
        if not isinstance(config, PopularityConfig):
            raise ValueError(f"PopularityTable.from_log: config is a {type(config).__name__}; expected a "
                             "PopularityConfig")
        items, timestamps = _check_log(items, timestamps, n_items)
        if origin is None:
            origin = int(timestamps.min()) if len(timestamps) else 0
        origin = int(origin)
        period = _period_of_numpy(timestamps, origin, config)
        if len(period) and period.min() < 0:
            raise ValueError(f"PopularityTable.from_log: origin={origin} is later than the earliest timestamp "
                             f"{int(timestamps.min())}; expected origin <= every timestamp")
        n_periods = int(period.max()) + 1 if len(period) else 0
        keys, counts = np.unique(items * n_periods + period, return_counts=True)
        counts = counts.astype(np.int64)
        n_lookup = n_periods + config.window
        scales = _scales(keys // max(n_periods, 1), keys % max(n_periods, 1), counts, n_lookup, n_items, config)
        logger.debug("popularity table: %d interactions, %d items, %d periods, %d non-zero counts",
                     len(items), n_items, n_periods, len(keys))
        prefix = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(config=config, n_items=int(n_items), n_periods=n_periods, origin=origin,
                   keys=torch.from_numpy(keys.astype(np.int64)), prefix=torch.from_numpy(prefix),
                   scales=torch.from_numpy(scales.astype(np.float32)))

    @property
    def device(self) -> torch.device:
        """Device of the table's tensors."""
        return self.keys.device

    def to(self, device: torch.device | str) -> PopularityTable:
        """A copy of the table with its tensors on ``device``."""
        return replace(self, keys=self.keys.to(device), prefix=self.prefix.to(device),
                       scales=self.scales.to(device))

    def period_of(self, timestamps: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Period index (int64, same type as the input) of epoch-second timestamps.

        Interval mode: ``floor((t - origin) / interval_seconds)``; sliding mode: ``floor(t / 86400)`` minus the
        origin's day. May be negative or >= n_periods for times outside the log.
        """
        if isinstance(timestamps, torch.Tensor):
            return _period_of_torch(timestamps, self.origin, self.config)
        return _period_of_numpy(timestamps, self.origin, self.config)

    def _prefix_at(self, keys: torch.Tensor) -> torch.Tensor:
        """Sum of the stored counts whose key is <= each of ``keys``."""
        return self.prefix[torch.searchsorted(self.keys, keys.contiguous(), right=True)]

    @cached_property
    def _running_counts(self) -> torch.Tensor | None:
        """int64 [n_periods + 1, n_items]: row q holds each item's counts over the periods before q, when it has at
        most ``DENSE_COUNTS_MAX`` entries (None otherwise). A lookup is then two gathers instead of two binary
        searches in ``keys`` (a whole catalogue at hundreds of days is millions of lookups per batch)."""
        if (self.n_periods + 1) * self.n_items > DENSE_COUNTS_MAX or not len(self.keys):
            return None
        periods = max(self.n_periods, 1)
        counts = self.prefix.diff()  # [nnz]
        running = torch.zeros(self.n_periods + 1, self.n_items, dtype=torch.long, device=self.device)
        running[self.keys % periods + 1, self.keys // periods] = counts
        return running.cumsum(0)  # [n_periods + 1, n_items]

    def _window_counts(self, periods: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """int64 window counts of (periods, items) broadcast together."""
        periods, items = torch.broadcast_tensors(periods.long(), items.long())
        high, low = self._window_bounds(periods)
        running = self._running_counts
        if running is not None:  # the counts of periods in (low, high]
            inside = (items >= 0) & (items < self.n_items)
            column = items.clamp(0, self.n_items - 1)
            counts = running[high + 1, column] - running[low + 1, column]
            return torch.where(inside, counts, torch.zeros((), dtype=counts.dtype, device=counts.device))
        # key item * n_periods - 1 is the last key of item - 1: prefix differences never mix items.
        base = items.clamp(-1, self.n_items) * self.n_periods
        return self._prefix_at(base + high) - self._prefix_at(base + low)

    def _window_bounds(self, periods: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The window behind each period as the half-open range of periods (low, high], clamped to the table."""
        last = self.n_periods - 1
        return (periods - 1).clamp(-1, last), (periods - 1 - self.config.window).clamp(-1, last)

    def _scales_at(self, periods: torch.Tensor) -> torch.Tensor:
        """float32 [*periods.shape, n_factors] scales of the window behind each period (0 outside the table)."""
        periods = periods.long()
        inside = (periods >= 0) & (periods < self.scales.shape[0])
        rows = self.scales[periods.clamp(0, self.scales.shape[0] - 1)]
        return torch.where(inside.unsqueeze(-1), rows, torch.zeros((), dtype=rows.dtype, device=rows.device))

    @staticmethod
    def _divide(counts: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        """c / s, with 0 where s = 0 (then the window is empty and c = 0 too)."""
        return counts / torch.where(scales > 0, scales, torch.ones((), dtype=scales.dtype, device=scales.device))

    def counts(self, periods: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """float32 [P, C]: the raw counts c_j behind F at each of ``periods`` [P] for each of ``items`` [C]."""
        return self._window_counts(periods.reshape(-1, 1), items.reshape(1, -1)).float()

    def factors(self, periods: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """float32 [P, C, n_factors]: F of each of ``items`` [C] at each of ``periods`` [P]."""
        counts = self.counts(periods, items)
        return self._divide(counts.unsqueeze(-1), self._scales_at(periods.reshape(-1)).unsqueeze(1))

    def counted(self, periods: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The whole catalogue's F at each of ``periods`` [P] as a sparse list of the counted (period, item) pairs:
        each pair's position in ``periods``, its item and its F, period by period, items ascending;
        ``factors(periods, arange(n_items))`` is zero at every other pair (a catalogue at hundreds of days is mostly
        uncounted: docs/DESIGN.md, "Scoring only what is ranked"). Each period's list is kept (up to
        ``COUNTED_CACHE`` rows, oldest first out): the batches of an evaluation share periods, and validation,
        diagnostics and the fair protocol's methods evaluate the same users again. ([N], [N], [N, n_factors])"""
        periods = periods.reshape(-1).tolist()
        kept = self._counted_lists
        missing = sorted(set(periods) - kept.keys())
        if missing:
            position, item, factors = self._scan_counted(torch.as_tensor(missing, device=self.device))
            sizes = torch.bincount(position, minlength=len(missing)).tolist()
            for period, items, rows in zip(missing, torch.split(item, sizes), torch.split(factors, sizes)):
                kept[period] = (items, rows)
        lists = [kept[period] for period in periods]
        sizes = torch.as_tensor([len(items) for items, _ in lists], device=self.device)
        position = torch.repeat_interleave(torch.arange(len(lists), device=self.device), sizes)  # [N]
        item, factors = torch.cat([i for i, _ in lists]), torch.cat([f for _, f in lists])  # [N], [N, n_factors]
        total = sum(len(items) for items, _ in kept.values())
        while total > COUNTED_CACHE:  # oldest periods first
            total -= len(kept.pop(next(iter(kept)))[0])
        return position, item, factors

    @cached_property
    def _counted_lists(self) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """period -> (its counted items [n], their F [n, n_factors]), as ``counted`` found them."""
        return {}

    def _scan_counted(self, periods: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``counted`` for ``periods`` [P], from the running counts (whole rows) or the stored keys."""
        running = self._running_counts
        if running is not None:  # whole rows of the running counts: the counts of periods in (low, high]
            high, low = self._window_bounds(periods)  # [P], [P]
            counts = running[high + 1] - running[low + 1]  # [P, J]
        else:
            items = torch.arange(self.n_items, device=self.device)  # [J]
            counts = self._window_counts(periods.reshape(-1, 1), items.reshape(1, -1))  # [P, J]
        position, item = counts.nonzero(as_tuple=True)  # [N], [N]
        scales = self._scales_at(periods)[position]  # [N, n_factors]
        return position, item, self._divide(counts[position, item].float().unsqueeze(-1), scales)

    def factors_at(self, periods: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """float32 [*S, n_factors]: F elementwise for ``periods`` and ``items`` of a common (broadcast) shape S."""
        periods, items = torch.broadcast_tensors(periods.long(), items.long())
        counts = self._window_counts(periods, items).float()
        return self._divide(counts.unsqueeze(-1), self._scales_at(periods))

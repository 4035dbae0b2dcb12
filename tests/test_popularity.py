"""Tests of the popularity factors F_j (the paper's Appendix C) on hand-computed logs and against a slow reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prerec_pyro import popularity
from prerec_pyro.popularity import PopularityConfig, PopularityTable

DAY = 86_400
T0 = 1_600_000_000  # not aligned to a day
D0 = 19_000 * DAY  # aligned to a day


def _expected_factors(counts: list[float], denominator: float, n_factors: int = 4) -> np.ndarray:
    """F by the formula, in float64: rows = items, columns = w."""
    c = np.asarray(counts, dtype=np.float64)
    scales = np.array([(np.sum(c**w) / denominator) ** (1.0 / w) for w in range(1, n_factors + 1)])
    return c[:, None] / scales[None, :]


def _interval_table(extra_items=(), extra_times=(), interval_days: float = 15.0) -> PopularityTable:
    """3 items; interval 0 has c = [2, 1, 0]; interval 1 has item 2 three times (+ extra interactions)."""
    items = np.array([0, 1, 0, 2, 2, 2, *extra_items], dtype=np.int64)
    step = int(interval_days * DAY)
    times = np.array([T0, T0 + 100, T0 + step - 1, T0 + step, T0 + step + 5, T0 + 2 * step - 1, *extra_times],
                     dtype=np.int64)
    return PopularityTable.from_log(items, times, 3, PopularityConfig(interval_days=interval_days))


def _t(values) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.long)


def test_interval_mode_hand_computed():
    table = _interval_table()
    assert table.n_periods == 2
    all_items = _t([0, 1, 2])
    f = table.factors(_t([1, 2]), all_items)
    assert f.shape == (2, 3, 4) and f.dtype == torch.float32
    np.testing.assert_allclose(f[0].numpy(), _expected_factors([2, 1, 0], 3), rtol=1e-6)
    np.testing.assert_allclose(f[1].numpy(), _expected_factors([0, 0, 3], 3), rtol=1e-6)
    # s_1 = 1, s_2 = sqrt(5/3), s_3 = 3^(1/3), s_4 = (17/3)^(1/4) for c = [2, 1, 0]
    expected_item0 = 2.0 / np.array([1.0, np.sqrt(5 / 3), 3 ** (1 / 3), (17 / 3) ** 0.25])
    np.testing.assert_allclose(f[0, 0].numpy(), expected_item0, rtol=1e-6)
    np.testing.assert_array_equal(f[0, 2].numpy(), np.zeros(4))


def test_interval_mode_first_interval_and_outside_log_are_zero():
    table = _interval_table()
    f = table.factors(_t([-5, -1, 0, 3, 4, 1000]), _t([0, 1, 2]))
    np.testing.assert_array_equal(f.numpy(), np.zeros((6, 3, 4), dtype=np.float32))
    # interval 2 (just after the log) uses the log's last interval: not zero
    assert table.factors(_t([2]), _t([2]))[0, 0, 0].item() == pytest.approx(3.0)


def test_interval_mode_no_leakage_from_current_interval():
    base = _interval_table()
    # more interactions inside interval 1 (the current one) change nothing about F at interval 1
    leaky = _interval_table(extra_items=(1, 1, 2, 0), extra_times=(T0 + 15 * DAY + 7, T0 + 20 * DAY,
                                                                   T0 + 25 * DAY, T0 + 16 * DAY))
    torch.testing.assert_close(leaky.factors(_t([1]), _t([0, 1, 2])), base.factors(_t([1]), _t([0, 1, 2])),
                               rtol=0, atol=0)
    # ... but they do change F at interval 2, which reads interval 1
    assert not torch.equal(leaky.factors(_t([2]), _t([0, 1, 2])), base.factors(_t([2]), _t([0, 1, 2])))


def test_interval_mode_empty_previous_interval_is_zero():
    items = np.array([0, 1, 1, 2], dtype=np.int64)
    times = np.array([T0, T0 + 1, T0 + 30 * DAY, T0 + 31 * DAY], dtype=np.int64)  # intervals 0 and 2
    table = PopularityTable.from_log(items, times, 4, PopularityConfig())
    f = table.factors(_t([1, 2, 3]), _t([0, 1, 2, 3]))
    np.testing.assert_allclose(f[0].numpy(), _expected_factors([1, 1, 0, 0], 4), rtol=1e-6)
    np.testing.assert_array_equal(f[1].numpy(), np.zeros((4, 4)))
    np.testing.assert_allclose(f[2].numpy(), _expected_factors([0, 1, 1, 0], 4), rtol=1e-6)


def test_counts_are_the_previous_interval():
    table = _interval_table()
    c = table.counts(_t([0, 1, 2, 3]), _t([0, 1, 2]))
    assert c.dtype == torch.float32
    np.testing.assert_array_equal(c.numpy(), [[0, 0, 0], [2, 1, 0], [0, 0, 3], [0, 0, 0]])
    # items outside the catalogue count as zero
    np.testing.assert_array_equal(table.counts(_t([1]), _t([-1, 3, 10**9])).numpy(), [[0, 0, 0]])


def test_period_of_numpy_and_torch_agree():
    table = _interval_table()
    stamps = np.array([T0 - 1, T0, T0 + 15 * DAY - 1, T0 + 15 * DAY, T0 + 45 * DAY], dtype=np.int64)
    expected = np.array([-1, 0, 0, 1, 3])
    np.testing.assert_array_equal(table.period_of(stamps), expected)
    np.testing.assert_array_equal(table.period_of(torch.from_numpy(stamps)).numpy(), expected)
    fractional = PopularityTable.from_log(np.zeros(1, np.int64), np.array([T0]), 1,
                                          PopularityConfig(interval_days=2.5 / DAY))  # 2.5-second intervals
    stamps = T0 + np.arange(11)
    expected = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4])
    np.testing.assert_array_equal(fractional.period_of(stamps), expected)
    np.testing.assert_array_equal(fractional.period_of(torch.from_numpy(stamps)).numpy(), expected)


def test_factors_at_agrees_with_factors():
    table = _interval_table()
    periods = _t([[0, 1, 2], [1, 1, 3]])
    items = _t([[0, 1, 2], [2, 0, 1]])
    f_at = table.factors_at(periods, items)
    assert f_at.shape == (2, 3, 4)
    grid = table.factors(periods.reshape(-1), _t([0, 1, 2]))
    expected = grid[torch.arange(6), items.reshape(-1)].reshape(2, 3, 4)
    torch.testing.assert_close(f_at, expected, rtol=0, atol=0)


def _sliding_table(origin_offset: int = 0) -> PopularityTable:
    """4 items, 3-day window: day 0 item 0 x2, day 1 item 1, day 2 item 0, day 4 item 2 x2."""
    items = np.array([0, 0, 1, 0, 2, 2], dtype=np.int64)
    days = np.array([0, 0, 1, 2, 4, 4])
    times = D0 + days * DAY + np.array([10, 80_000, 5, 3_600, 0, 86_399])
    config = PopularityConfig(interval_days=3, mode="sliding")
    origin = None if origin_offset == 0 else D0 + origin_offset
    return PopularityTable.from_log(items, times, 4, config, origin=origin)


def test_sliding_mode_hand_computed():
    table = _sliding_table()
    assert table.n_periods == 5
    f = table.factors(_t([0, 1, 3, 4, 5, 7, 8]), _t([0, 1, 2, 3]))
    np.testing.assert_array_equal(f[0].numpy(), np.zeros((4, 4)))
    np.testing.assert_allclose(f[1].numpy(), [[1] * 4, [0] * 4, [0] * 4, [0] * 4], rtol=1e-6)
    # day 3: window days 0..2, c = [3, 1, 0, 0], averaged over the 2 items with c > 0
    np.testing.assert_allclose(f[2].numpy(), _expected_factors([3, 1, 0, 0], 2), rtol=1e-6)
    expected_item0 = 3.0 / np.array([2.0, np.sqrt(5.0), 14 ** (1 / 3), 41**0.25])
    np.testing.assert_allclose(f[2, 0].numpy(), expected_item0, rtol=1e-6)
    np.testing.assert_allclose(f[3].numpy(), [[1] * 4, [1] * 4, [0] * 4, [0] * 4], rtol=1e-6)
    np.testing.assert_allclose(f[4].numpy(), _expected_factors([1, 0, 2, 0], 2), rtol=1e-6)
    np.testing.assert_allclose(f[5].numpy(), [[0] * 4, [0] * 4, [1] * 4, [0] * 4], rtol=1e-6)
    np.testing.assert_array_equal(f[6].numpy(), np.zeros((4, 4)))
    c = table.counts(_t([3, 5]), _t([0, 1, 2, 3]))
    np.testing.assert_array_equal(c.numpy(), [[3, 1, 0, 0], [1, 0, 2, 0]])


def test_sliding_mode_periods_are_days_of_the_origin_day():
    table = _sliding_table(origin_offset=50_000)  # same day as D0: day numbering unchanged
    stamps = np.array([D0 - 1, D0, D0 + DAY - 1, D0 + 3 * DAY + 5_000], dtype=np.int64)
    np.testing.assert_array_equal(table.period_of(stamps), [-1, 0, 0, 3])
    np.testing.assert_array_equal(table.period_of(torch.from_numpy(stamps)).numpy(), [-1, 0, 0, 3])


def test_interval_and_sliding_denominators_differ():
    items, times = np.array([0, 0, 1]), np.array([D0, D0 + 1, D0 + 2])
    paper = PopularityTable.from_log(items, times, 10, PopularityConfig(interval_days=1))
    official = PopularityTable.from_log(items, times, 10, PopularityConfig(interval_days=1, mode="sliding"))
    np.testing.assert_allclose(paper.factors(_t([1]), _t([0, 1]))[0].numpy(),
                               _expected_factors([2, 1], 10), rtol=1e-6)
    np.testing.assert_allclose(official.factors(_t([1]), _t([0, 1]))[0].numpy(),
                               _expected_factors([2, 1], 2), rtol=1e-6)


def test_huge_counts_stay_exact():
    # 60,000^4 > 2^62: the power sums fall back to Python integers
    items = np.concatenate([np.zeros(60_000, np.int64), [1]])
    times = T0 + np.arange(len(items), dtype=np.int64)
    table = PopularityTable.from_log(items, times, 2, PopularityConfig())
    c = np.array([60_000.0, 1.0])
    expected = [c / ((np.sum(c**w) / 2) ** (1 / w)) for w in range(1, 5)]
    np.testing.assert_allclose(table.factors(_t([1]), _t([0, 1]))[0].numpy(), np.array(expected).T, rtol=1e-6)


@pytest.mark.parametrize("kwargs", [dict(mode="paper"), dict(interval_days=0), dict(interval_days=-3.0),
                                    dict(interval_days=float("nan")), dict(interval_days="15"),
                                    dict(interval_days=1e-6), dict(mode="sliding", interval_days=1.5),
                                    dict(n_factors=0), dict(n_factors=2.0), dict(n_factors=True)])
def test_config_validation(kwargs):
    with pytest.raises(ValueError, match="PopularityConfig"):
        PopularityConfig(**kwargs)


def test_from_log_validation():
    config = PopularityConfig()
    good_items, good_times = np.array([0, 1]), np.array([T0, T0 + 1])
    with pytest.raises(ValueError, match="outside"):
        PopularityTable.from_log(np.array([0, 3]), good_times, 3, config)
    with pytest.raises(ValueError, match="equal lengths"):
        PopularityTable.from_log(good_items, np.array([T0]), 3, config)
    with pytest.raises(ValueError, match="items has shape"):
        PopularityTable.from_log(np.array([0.0, 1.0]), good_times, 3, config)
    with pytest.raises(ValueError, match="n_items"):
        PopularityTable.from_log(good_items, good_times, 0, config)
    with pytest.raises(ValueError, match="origin"):
        PopularityTable.from_log(good_items, good_times, 3, config, origin=T0 + 1)
    with pytest.raises(ValueError, match="PopularityConfig"):
        PopularityTable.from_log(good_items, good_times, 3, {"mode": "interval"})


def test_empty_log_gives_zeros():
    table = PopularityTable.from_log(np.zeros(0, np.int64), np.zeros(0, np.int64), 3, PopularityConfig())
    assert table.n_periods == 0
    np.testing.assert_array_equal(table.factors(_t([0, 1, 5]), _t([0, 1, 2])).numpy(), np.zeros((3, 3, 4)))


def test_to_device_keeps_results():
    table = _interval_table()
    moved = table.to("cpu")
    torch.testing.assert_close(moved.factors(_t([1, 2]), _t([0, 1, 2])), table.factors(_t([1, 2]), _t([0, 1, 2])))
    if torch.cuda.is_available():
        gpu = table.to("cuda")
        assert gpu.device.type == "cuda"
        out = gpu.factors(_t([1, 2]).cuda(), _t([0, 1, 2]).cuda())
        torch.testing.assert_close(out.cpu(), table.factors(_t([1, 2]), _t([0, 1, 2])))


def _reference_factors(table: PopularityTable, items: np.ndarray, times: np.ndarray, period: int) -> np.ndarray:
    """Slow, literal F at one period for all items: recount the window from the raw log."""
    config = table.config
    periods = table.period_of(times)
    window = 1 if config.mode == "interval" else int(config.interval_days)
    inside = (periods >= period - window) & (periods <= period - 1)
    c = np.bincount(items[inside], minlength=table.n_items).astype(np.float64)
    out = np.zeros((table.n_items, config.n_factors))
    if c.sum() == 0:
        return out
    denominator = table.n_items if config.mode == "interval" else np.count_nonzero(c)
    for w in range(1, config.n_factors + 1):
        out[:, w - 1] = c / (np.sum(c**w) / denominator) ** (1.0 / w)
    return out


@pytest.mark.parametrize("dense", [True, False], ids=["running-counts", "binary-search"])
@pytest.mark.parametrize("mode, interval_days", [("interval", 15.0), ("sliding", 15), ("interval", 2.5)])
def test_random_log_matches_reference(mode, interval_days, dense, monkeypatch):
    """Both lookups (a dense table of running counts, binary searches in the sorted keys of a large one) give the
    reference's factors, items and periods outside the table included."""
    if not dense:
        monkeypatch.setattr(popularity, "DENSE_COUNTS_MAX", 0)
    rng = np.random.default_rng(0)
    n_items, n = 5_000, 100_000
    items = (rng.zipf(1.3, size=n) - 1) % n_items  # skewed popularity
    times = T0 + rng.integers(0, 400 * DAY, size=n)
    config = PopularityConfig(interval_days=interval_days, mode=mode)
    table = PopularityTable.from_log(items, times, n_items, config)  # its speed: benchmarks/, not a timed test
    last = table.n_periods + table.config.window
    sample = np.unique(np.concatenate([[-1, 0, 1, 2, last - 1, last, last + 3], rng.integers(0, last, size=12)]))
    assert (table._running_counts is not None) == dense
    got = table.factors(torch.from_numpy(sample), torch.arange(n_items)).numpy()
    outside = table.factors_at(torch.tensor([5, 5]), torch.tensor([-1, n_items]))
    assert torch.equal(outside, torch.zeros(2, table.config.n_factors))
    for row, period in enumerate(sample):
        np.testing.assert_allclose(got[row], _reference_factors(table, items, times, int(period)), rtol=2e-6,
                                   atol=1e-7, err_msg=f"{mode} period {period}")
    assert np.abs(got).sum() > 0


@pytest.mark.parametrize("dense", [True, False], ids=["running-counts", "binary-search"])
@pytest.mark.parametrize("mode, interval_days", [("interval", 2.5), ("sliding", 15)])
def test_counted_lists_exactly_the_catalogues_nonzero_factors(mode, interval_days, dense, monkeypatch):
    """The sparse list of counted (period, item) pairs is the dense catalogue grid's non-zero rows, in the same
    (period, item) order, periods outside the table included (they list nothing)."""
    if not dense:
        monkeypatch.setattr(popularity, "DENSE_COUNTS_MAX", 0)
    rng = np.random.default_rng(1)
    n_items = 300
    items = (rng.zipf(1.3, size=4_000) - 1) % n_items
    times = T0 + rng.integers(0, 60 * DAY, size=4_000)
    table = PopularityTable.from_log(items, times, n_items, PopularityConfig(interval_days=interval_days, mode=mode))
    periods = torch.tensor([-3, 0, 1, 5, table.n_periods - 1, table.n_periods + table.config.window + 2])
    grid = table.factors(periods, torch.arange(n_items))  # [P, J, F]
    position, item, factors = table.counted(periods)
    expected_position, expected_item = grid.ne(0).any(-1).nonzero(as_tuple=True)
    assert torch.equal(position, expected_position) and torch.equal(item, expected_item)
    assert torch.equal(factors, grid[position, item])
    assert len(position) > 0 and not (position == 0).any() and not (position == len(periods) - 1).any()

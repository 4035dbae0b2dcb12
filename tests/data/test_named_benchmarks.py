"""Named benchmarks: the cross-platform ones reuse the in-platform sources and read real data."""

import pytest

from prerec_pyro.data.benchmarks import BENCHMARKS, RETAIL_WHOLE, get_benchmark


def test_cross_platform_benchmarks_share_the_in_platform_sources():
    assert get_benchmark("retail-to-movielens").sources == get_benchmark("retail-countries").sources
    assert get_benchmark("retail-to-movielens").targets == get_benchmark("movielens-ages").targets
    assert get_benchmark("movielens-to-retail").sources == get_benchmark("movielens-ages").sources
    assert RETAIL_WHOLE in get_benchmark("movielens-to-retail").targets
    mixed = get_benchmark("mixed-sources")
    assert set(mixed.sources) == set(BENCHMARKS["retail-countries"].sources + BENCHMARKS["movielens-ages"].sources)


@pytest.mark.slow
def test_retail_to_movielens_loads_sources_and_targets_from_two_datasets(shared_data_dir):
    benchmark = get_benchmark("retail-to-movielens")
    domains = {d.name: d for d in benchmark.load(shared_data_dir)}
    assert set(domains) == set(benchmark.sources + benchmark.targets)
    retail_items = set().union(*(set(domains[name].items["item_id"]) for name in benchmark.sources))
    movie_items = set().union(*(set(domains[name].items["item_id"]) for name in benchmark.targets))
    assert not retail_items & movie_items, "the two platforms share no item"


@pytest.mark.slow
def test_the_whole_online_retail_log_is_the_papers_target(shared_data_dir):
    from prerec_pyro.data.benchmarks import _load_retail_whole

    (whole,) = _load_retail_whole(shared_data_dir)
    assert whole.name == RETAIL_WHOLE
    assert (len(whole.items), whole.interactions["user_id"].nunique(), len(whole.interactions)) == (4223, 24446,
                                                                                                    540455)

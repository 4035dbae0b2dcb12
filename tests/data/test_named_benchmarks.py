"""Named benchmarks: TOML files of the package, the cross-platform ones reuse the in-platform sources and read real
data."""

import pytest

from prerec_pyro.data.benchmarks import BENCHMARKS, NAMED_FOLDER, benchmark_from_toml, get_benchmark
from prerec_pyro.data.datasets import DATASETS

RETAIL_WHOLE = "online_retail"


def test_every_named_benchmark_is_a_toml_file_read_by_the_same_path():
    files = sorted(NAMED_FOLDER.glob("*.toml"))
    assert {path.stem for path in files} == set(BENCHMARKS) >= {"synthetic", "retail-countries", "mixed-sources"}
    for path in files:
        named = get_benchmark(path.stem)
        again = benchmark_from_toml(path, named=True)
        assert (named.name, named.folder) == (path.stem, path.stem)
        for key in ("sources", "targets", "k_percent", "interval_days", "text_model", "description", "defaults"):
            assert getattr(again, key) == getattr(named, key), (path.stem, key)
    assert get_benchmark("synthetic").defaults["hidden_dim"] == 64 and get_benchmark("xmarket").k_percent == 0.04


def test_cross_platform_benchmarks_share_the_in_platform_sources():
    assert get_benchmark("retail-to-movielens").sources == get_benchmark("retail-countries").sources
    assert get_benchmark("retail-to-movielens").targets == get_benchmark("movielens-ages").targets
    assert get_benchmark("movielens-to-retail").sources == get_benchmark("movielens-ages").sources
    assert RETAIL_WHOLE in get_benchmark("movielens-to-retail").targets
    pairs = (("movielens-uk-to-retail", "movielens-ages"), ("retail-young-to-movielens", "retail-countries"))
    for name, other in pairs:
        mixed_in = get_benchmark(name)
        assert set(get_benchmark(other).sources) < set(mixed_in.sources), name  # the other platform's sources, and
        assert not set(mixed_in.sources) & set(mixed_in.targets), name  # one domain of the targets' platform
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
    (whole,) = DATASETS["online-retail"].read(shared_data_dir, (RETAIL_WHOLE,), {})
    assert whole.name == RETAIL_WHOLE
    assert (len(whole.items), whole.interactions["user_id"].nunique(), len(whole.interactions)) == (4223, 24446,
                                                                                                    540455)

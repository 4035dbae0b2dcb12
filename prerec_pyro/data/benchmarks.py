"""Named benchmarks: which domains are sources and targets, K%, the text model, and how to load the data.

A benchmark is declarative: its ``load(data_dir)`` returns every domain it uses (sources and targets), read from
``data_dir`` (a flag, else ``$PREREC_DATA_DIR``). Targets are named by alias (``--target japan``); an unknown name
fails with the list of valid ones. ``defaults`` are the benchmark's model/training settings for this project's
CPU runs (the paper's B = 256 is kept for XMarket).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from prerec_pyro.data.domain import Domain

DATA_DIR_ENV = "PREREC_DATA_DIR"


def alias(name: str) -> str:
    """Readable, flag-friendly alias of a domain name ("United Kingdom" -> "united_kingdom")."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


@dataclass(frozen=True)
class Benchmark:
    name: str
    sources: tuple[str, ...]
    targets: tuple[str, ...]
    k_percent: float
    load: Callable[[Path | None], list[Domain]]
    text_model: str = "all-MiniLM-L6-v2"
    interval_days: float = 15.0
    description: str = ""
    defaults: dict = field(default_factory=dict)

    def resolve_targets(self, name: str) -> tuple[str, ...]:
        """``"all"`` or a target's name/alias -> domain names; unknown names list the valid ones."""
        if name == "all":
            return self.targets
        by_alias = {alias(t): t for t in self.targets} | {t: t for t in self.targets}
        key = name if name in by_alias else alias(name)
        if key not in by_alias:
            valid = sorted({alias(t) for t in self.targets})
            raise ValueError(f"unknown target {name!r} for benchmark {self.name!r}; expected 'all' or one of {valid}")
        return (by_alias[key],)


def resolve_data_dir(data_dir: str | Path | None, what: str) -> Path:
    """The data directory from the flag, else ``$PREREC_DATA_DIR``; a clear error when neither exists."""
    chosen = data_dir or os.environ.get(DATA_DIR_ENV)
    if not chosen:
        raise ValueError(f"{what} needs its data: pass --data-dir DIR or set {DATA_DIR_ENV} (e.g. ../shared/data)")
    path = Path(chosen).expanduser()
    if not path.is_dir():
        raise ValueError(f"data directory {path} does not exist (from --data-dir or {DATA_DIR_ENV})")
    return path


def _load_synthetic(data_dir: Path | None) -> list[Domain]:
    from prerec_pyro.data.synthetic import SyntheticConfig, generate_synthetic

    return generate_synthetic(SyntheticConfig()).domains


def _load_synthetic_small(data_dir: Path | None) -> list[Domain]:
    from prerec_pyro.data.synthetic import SyntheticConfig, generate_synthetic

    return generate_synthetic(SyntheticConfig.small()).domains


RETAIL_SOURCES = ("United Kingdom", "Germany", "France", "EIRE")
RETAIL_TARGETS = ("Spain", "Netherlands", "Belgium", "Switzerland", "Portugal", "Australia", "Norway", "Japan")


RETAIL_WHOLE = "online_retail"  # the whole log as one domain: the paper's cross-platform target


def _retail_file(data_dir: Path | None) -> Path:
    root = resolve_data_dir(data_dir, "Online Retail") / "online_retail"
    candidates = [root / name for name in ("online_retail.parquet", "Online Retail.xlsx", "online_retail.csv")]
    path = next((p for p in candidates if p.exists()), None)
    if path is None:
        raise ValueError(f"{root}: none of {[p.name for p in candidates]} found; "
                         "run scripts/prepare_data.py download-retail to fetch the UCI file")
    return path


def _load_retail_countries(data_dir: Path | None, countries: tuple[str, ...]) -> list[Domain]:
    from prerec_pyro.data.loaders.retail import RetailOptions, load_online_retail

    return load_online_retail(_retail_file(data_dir), RetailOptions(by_country=True, countries=countries))


def _load_retail(data_dir: Path | None) -> list[Domain]:
    return _load_retail_countries(data_dir, RETAIL_SOURCES + RETAIL_TARGETS)


def _load_retail_whole(data_dir: Path | None) -> list[Domain]:
    from prerec_pyro.data.loaders.retail import load_online_retail

    return load_online_retail(_retail_file(data_dir))  # one domain named RETAIL_WHOLE


ML1M_SOURCES = ("18_24", "25_34", "35_44")
ML1M_TARGETS = ("under_18", "45_49", "50_55", "56_plus")


def _load_movielens(data_dir: Path | None) -> list[Domain]:
    from prerec_pyro.data.loaders.recbole import ML1M_AGE_DOMAINS, DomainSpec, load_recbole

    root = resolve_data_dir(data_dir, "benchmark 'movielens-ages'") / "movielens"
    return load_recbole(root, "ml-1m", text_columns=("movie_title", "release_year", "genre"),
                        domain_by=DomainSpec(table="user", column="age", mapping=ML1M_AGE_DOMAINS))


def _load_retail_to_movielens(data_dir: Path | None) -> list[Domain]:
    """Retail's source countries, then MovieLens' target age groups: no item, user or text style in common."""
    targets = [d for d in _load_movielens(data_dir) if d.name in ML1M_TARGETS]
    return _load_retail_countries(data_dir, RETAIL_SOURCES) + targets


def _load_movielens_to_retail(data_dir: Path | None) -> list[Domain]:
    """MovieLens' source age groups, then Retail's target countries and the whole Online Retail log."""
    movielens = [d for d in _load_movielens(data_dir) if d.name in ML1M_SOURCES]
    return movielens + _load_retail_countries(data_dir, RETAIL_TARGETS) + _load_retail_whole(data_dir)


def _load_mixed(data_dir: Path | None) -> list[Domain]:
    """Both datasets' sources (several markets and a second platform), both datasets' targets."""
    return _load_retail(data_dir) + _load_movielens(data_dir)


XMARKET_SOURCES = ("india", "spain", "canada")
XMARKET_TARGETS = ("australia", "mexico", "germany", "japan")


def _load_xmarket(data_dir: Path | None) -> list[Domain]:
    from prerec_pyro.data.loaders.xmarket import load_xmarket

    root = resolve_data_dir(data_dir, "benchmark 'xmarket'") / "xmarket"
    return load_xmarket(root, XMARKET_SOURCES + XMARKET_TARGETS, categories=("Electronics",))


# CPU-budget settings: a smaller B, and smaller batches of sequences at a higher learning rate, i.e. more steps in
# the same time (a batch of 64 sequences already holds up to 64 * 64 targets, 16x the paper's 256 samples a step).
CPU_MODEL = {"hidden_dim": 64, "n_heads": 2, "batch_size": 64, "lr": 1e-3}

BENCHMARKS: dict[str, Benchmark] = {
    "synthetic": Benchmark(
        "synthetic", ("india", "spain", "canada"), ("australia", "mexico", "germany", "japan"), 0.5,
        _load_synthetic, description="drawn from the PreRec generative process with planted D_k and popularity",
        defaults={**CPU_MODEL, "max_epochs": 20, "patience": 4}),
    "synthetic-small": Benchmark(
        "synthetic-small", ("india", "spain", "canada"), ("australia", "mexico", "germany", "japan"), 5.0,
        _load_synthetic_small, description="a tiny synthetic benchmark for smoke tests (115 items per domain)",
        defaults={"hidden_dim": 32, "n_heads": 2, "max_epochs": 3, "batch_size": 32, "lr": 1e-3}),
    "xmarket": Benchmark(
        "xmarket", XMARKET_SOURCES, XMARKET_TARGETS, 0.04, _load_xmarket,
        description="XMarket Electronics (the paper's cross-market setting)", defaults={}),
    "retail-countries": Benchmark(
        "retail-countries", RETAIL_SOURCES, RETAIL_TARGETS, 0.5, _load_retail,
        description="UCI Online Retail by Country, user = invoice", defaults={**CPU_MODEL, "max_epochs": 20}),
    "movielens-ages": Benchmark(
        "movielens-ages", ML1M_SOURCES, ML1M_TARGETS, 0.5, _load_movielens,
        description="MovieLens-1M split by user age group", defaults={**CPU_MODEL, "max_epochs": 10, "patience": 2}),
    # Cross-platform: pre-trained on one dataset's sources, zero-shot on the other's targets. Their sources equal
    # those of retail-countries / movielens-ages, so those runs can be scored here (scripts/ablations.py
    # --pretrained-on).
    "retail-to-movielens": Benchmark(
        "retail-to-movielens", RETAIL_SOURCES, ML1M_TARGETS, 0.5, _load_retail_to_movielens,
        description="Online Retail countries -> MovieLens-1M age groups (cross-platform)",
        defaults={**CPU_MODEL, "max_epochs": 20}),
    "movielens-to-retail": Benchmark(
        "movielens-to-retail", ML1M_SOURCES, RETAIL_TARGETS + (RETAIL_WHOLE,), 0.5, _load_movielens_to_retail,
        description="MovieLens-1M age groups -> Online Retail countries and the whole log (cross-platform)",
        defaults={**CPU_MODEL, "max_epochs": 10, "patience": 2}),
    "mixed-sources": Benchmark(
        "mixed-sources", RETAIL_SOURCES + ML1M_SOURCES, RETAIL_TARGETS + ML1M_TARGETS, 0.5, _load_mixed,
        description="both datasets' sources pre-trained together, both datasets' targets",
        defaults={**CPU_MODEL, "max_epochs": 10, "patience": 2}),
}


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; expected one of {sorted(BENCHMARKS)}")
    return BENCHMARKS[name]

"""Public datasets a benchmark file can name: ``dataset = "<name>"`` in a ``[[data]]`` entry.

A benchmark (``benchmarks.py``) takes its domains from generic-format tables or from these readers of well-known
logs, which read the files under the data directory (``--data-dir``, else ``$PREREC_DATA_DIR``). Each reader gets
the domain names the entry lists and returns those domains, in that order; a name the data does not hold is an error
that lists the names it does.

================================  ==========================================  =======================================
dataset                           files under the data directory               domains
================================  ==========================================  =======================================
``online-retail-countries``       ``online_retail/`` (UCI, xlsx/parquet/csv)   one per ``Country``
``online-retail``                 the same file                                the whole log as one: ``online_retail``
``movielens-1m-ages``             ``movielens/ml-1m.{inter,item,user}``        one per age group (``18_24``, ...)
``xmarket``                       ``xmarket/`` (``categories = [...]``)        one per market (``india``, ``japan``)
``synthetic``, ``synthetic-small``  none: drawn from the PreRec generative      the planted markets (``india``, ...)
                                  process (``data/synthetic.py``)
================================  ==========================================  =======================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from prerec_pyro.data.domain import Domain

DATA_DIR_ENV = "PREREC_DATA_DIR"


def resolve_data_dir(data_dir: str | Path | None, what: str) -> Path:
    """The data directory from the flag, else ``$PREREC_DATA_DIR``; a clear error when neither exists."""
    chosen = data_dir or os.environ.get(DATA_DIR_ENV)
    if not chosen:
        raise ValueError(f"{what} needs its data: pass --data-dir DIR or set {DATA_DIR_ENV} (e.g. ../shared/data)")
    path = Path(chosen).expanduser()
    if not path.is_dir():
        raise ValueError(f"data directory {path} does not exist (from --data-dir or {DATA_DIR_ENV})")
    return path


def _retail_file(data_dir: Path | None) -> Path:
    root = resolve_data_dir(data_dir, "dataset 'online-retail'") / "online_retail"
    candidates = [root / name for name in ("online_retail.parquet", "Online Retail.xlsx", "online_retail.csv")]
    path = next((p for p in candidates if p.exists()), None)
    if path is None:
        raise ValueError(f"{root}: none of {[p.name for p in candidates]} found; "
                         "run scripts/prepare_data.py download-retail to fetch the UCI file")
    return path


def _retail_countries(data_dir: Path | None, names: tuple[str, ...], options: dict) -> list[Domain]:
    from prerec_pyro.data.loaders.retail import RetailOptions, load_online_retail

    return load_online_retail(_retail_file(data_dir), RetailOptions(by_country=True, countries=names))


def _retail_whole(data_dir: Path | None, names: tuple[str, ...], options: dict) -> list[Domain]:
    from prerec_pyro.data.loaders.retail import load_online_retail

    return _select(load_online_retail(_retail_file(data_dir)), names, "online-retail")


def _movielens_ages(data_dir: Path | None, names: tuple[str, ...], options: dict) -> list[Domain]:
    from prerec_pyro.data.loaders.recbole import ML1M_AGE_DOMAINS, ML1M_TEXT_COLUMNS, DomainSpec, load_recbole

    root = resolve_data_dir(data_dir, "dataset 'movielens-1m-ages'") / "movielens"
    domains = load_recbole(root, "ml-1m", text_columns=ML1M_TEXT_COLUMNS,
                           domain_by=DomainSpec(table="user", column="age", mapping=ML1M_AGE_DOMAINS))
    return _select(domains, names, "movielens-1m-ages")


def _xmarket(data_dir: Path | None, names: tuple[str, ...], options: dict) -> list[Domain]:
    from prerec_pyro.data.loaders.xmarket import load_xmarket

    root = resolve_data_dir(data_dir, "dataset 'xmarket'") / "xmarket"
    return load_xmarket(root, names, categories=tuple(options.get("categories", ("Electronics",))))


def _synthetic(small: bool) -> Callable[[Path | None, tuple[str, ...], dict], list[Domain]]:
    def read(data_dir: Path | None, names: tuple[str, ...], options: dict) -> list[Domain]:
        from prerec_pyro.data.synthetic import SyntheticConfig, generate_synthetic

        config = SyntheticConfig.small() if small else SyntheticConfig()
        return _select(generate_synthetic(config).domains, names, "synthetic-small" if small else "synthetic")

    return read


def _select(domains: list[Domain], names: tuple[str, ...], dataset: str) -> list[Domain]:
    by_name = {d.name: d for d in domains}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ValueError(f"dataset {dataset!r} has no domain(s) {missing}; it holds {sorted(by_name)}")
    return [by_name[n] for n in names]


@dataclass(frozen=True)
class PublicDataset:
    """A reader ``(data_dir, domain names, options) -> domains`` and the entry keys it takes besides ``dataset`` and
    ``domains``."""

    read: Callable[[Path | None, tuple[str, ...], dict], list[Domain]]
    options: tuple[str, ...] = ()


DATASETS: dict[str, PublicDataset] = {
    "online-retail-countries": PublicDataset(_retail_countries),
    "online-retail": PublicDataset(_retail_whole),
    "movielens-1m-ages": PublicDataset(_movielens_ages),
    "xmarket": PublicDataset(_xmarket, options=("categories",)),
    "synthetic": PublicDataset(_synthetic(small=False)),
    "synthetic-small": PublicDataset(_synthetic(small=True)),
}

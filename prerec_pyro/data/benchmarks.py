"""Named benchmarks: which domains are sources and targets, K%, the text model, and how to load the data.

A benchmark is declarative: its ``load(data_dir)`` returns every domain it uses (sources and targets), read from
``data_dir`` (a flag, else ``$PREREC_DATA_DIR``). Targets are named by alias (``--target japan``); an unknown name
fails with the list of valid ones. ``defaults`` are the benchmark's model/training settings for this project's
CPU runs (the paper's B = 256 is kept for XMarket).

Your own data is a benchmark too: a small TOML file naming generic-format tables (``loaders/generic.py``), the
sources, the targets and K%, read by :func:`benchmark_from_toml`. ``get_benchmark`` takes a named benchmark or the
path of such a file::

    name = "my-shops"                      # optional (default: the file's stem)
    description = "three shops -> a new one"
    sources = ["shop_a", "shop_b", "shop_c"]
    targets = ["shop_d"]
    k_percent = 5
    interval_days = 15                     # optional; text_model = "all-MiniLM-L6-v2" likewise
    [defaults]                             # optional: hidden_dim, n_heads, batch_size, lr, max_epochs, patience
    max_epochs = 3
    [data]                                 # one pair of tables with a 'domain' column ...
    items = "items.csv"
    interactions = "interactions.csv"
    # ... or one pair per domain instead: [domains.shop_a] items = "a_items.csv", interactions = "a_log.csv"

Relative paths are relative to the TOML file's folder. Such a benchmark's ``name`` is the file's absolute path (what
a run's config records, so the run can be rebuilt) and its ``folder`` (the folder of its runs) is its readable
name with a short hash of that path.
"""

from __future__ import annotations

import functools
import hashlib
import math
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
    folder: str = ""  # the benchmark's folder under a root of runs (default: its name)

    def __post_init__(self):
        if not self.folder:
            object.__setattr__(self, "folder", self.name)

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
BENCHMARK_HELP = f"a named benchmark ({', '.join(sorted(BENCHMARKS))}) or the path of a .toml file (your own data)"

TOML_KEYS = ("name", "description", "sources", "targets", "k_percent", "interval_days", "text_model", "defaults",
             "data", "domains")
TABLE_KEYS = ("items", "interactions")
DEFAULT_TYPES = {"hidden_dim": int, "n_heads": int, "batch_size": int, "lr": float, "max_epochs": int,
                 "patience": int}


@dataclass(frozen=True)
class TomlTables:
    """Where a TOML benchmark's tables are: ``(domain, items, interactions)`` per pair, domain ``None`` for the
    single ``[data]`` pair whose ``domain`` column names the domains."""

    path: Path
    tables: tuple[tuple[str | None, Path, Path], ...]
    sources: tuple[str, ...]
    targets: tuple[str, ...]


def _load_toml_tables(spec: TomlTables, data_dir: Path | None) -> list[Domain]:
    """The sources then the targets of a TOML benchmark (``data_dir`` is unused: its paths are in the file)."""
    from prerec_pyro.data.loaders.generic import load_generic

    wanted, found = spec.sources + spec.targets, {}
    for name, items, interactions in spec.tables:
        if name is not None and name not in wanted:
            continue
        domains = load_generic(items, interactions, default_domain=name or "default")
        if name is not None and [d.name for d in domains] != [name]:
            raise ValueError(f"{spec.path}: [domains.{name}]: {interactions} holds domain(s) "
                             f"{[d.name for d in domains]} in its 'domain' column, not only {name!r}")
        found |= {d.name: d for d in domains}
    for key, names in (("sources", spec.sources), ("targets", spec.targets)):
        missing = [n for n in names if n not in found]
        if missing:
            raise ValueError(f"{spec.path}: {key}: {missing} not in the data of [data] ({spec.tables[0][2]}, whose "
                             f"'domain' column names the domains): found {sorted(found)}")
    return [found[n] for n in wanted]


def _toml_error(path: Path, key: str, problem: str) -> ValueError:
    return ValueError(f"{path}: {key}: {problem}")


def _check_keys(path: Path, table: dict, allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise _toml_error(path, where, f"unknown key(s) {unknown}; expected some of {list(allowed)}")


def _names(path: Path, raw: dict, key: str) -> tuple[str, ...]:
    value = raw.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise _toml_error(path, key, f"expected a non-empty list of domain names, got {value!r}")
    if len(set(value)) < len(value):
        raise _toml_error(path, key, f"lists a domain twice: {value!r}")
    return tuple(value)


def _number(path: Path, raw: dict, key: str, default: float | None = None) -> float:
    value = raw.get(key, default)
    if value is None:
        raise _toml_error(path, key, "missing (a number)")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise _toml_error(path, key, f"expected a positive number, got {value!r}")
    return float(value)


def _text(path: Path, raw: dict, key: str, default: str) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        raise _toml_error(path, key, f"expected a string, got {value!r}")
    return value


def _defaults(path: Path, raw: dict) -> dict:
    table = raw.get("defaults", {})
    if not isinstance(table, dict):
        raise _toml_error(path, "defaults", f"expected a table, got {table!r}")
    _check_keys(path, table, tuple(DEFAULT_TYPES), "[defaults]")
    defaults = {}
    for key, value in table.items():
        kind = DEFAULT_TYPES[key]
        if isinstance(value, bool) or not isinstance(value, (kind, int)) or value <= 0:
            raise _toml_error(path, f"defaults.{key}", f"expected a positive {kind.__name__}, got {value!r}")
        defaults[key] = kind(value)
    return defaults


def _table_pair(path: Path, table, where: str) -> tuple[Path, Path]:
    if not isinstance(table, dict):
        raise _toml_error(path, where, f"expected a table with {list(TABLE_KEYS)}, got {table!r}")
    _check_keys(path, table, TABLE_KEYS, f"[{where}]")
    files = []
    for key in TABLE_KEYS:
        value = table.get(key)
        if not isinstance(value, str) or not value:
            raise _toml_error(path, f"{where}.{key}", f"expected the path of a .csv or .parquet file, got {value!r}")
        file = Path(value).expanduser()
        file = file if file.is_absolute() else path.parent / file
        if not file.is_file():
            raise _toml_error(path, f"{where}.{key}", f"file {file} does not exist")
        files.append(file)
    return files[0], files[1]


def _tables(path: Path, raw: dict, sources: tuple[str, ...], targets: tuple[str, ...]) -> TomlTables:
    if ("data" in raw) == ("domains" in raw):
        raise _toml_error(path, "data", "expected exactly one of [data] (items, interactions with a 'domain' "
                                        "column) or [domains.<name>] tables (one pair per domain)")
    if "data" in raw:
        return TomlTables(path, ((None, *_table_pair(path, raw["data"], "data")),), sources, targets)
    domains = raw["domains"]
    if not isinstance(domains, dict) or not domains:
        raise _toml_error(path, "domains", f"expected [domains.<name>] tables, got {domains!r}")
    for key, names in (("sources", sources), ("targets", targets)):
        missing = [n for n in names if n not in domains]
        if missing:
            raise _toml_error(path, key, f"{missing} not in the data: the [domains] tables are {sorted(domains)}")
    pairs = tuple((name, *_table_pair(path, table, f"domains.{name}")) for name, table in domains.items())
    return TomlTables(path, pairs, sources, targets)


def _read_toml(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise ValueError(f"{path}: reading a TOML benchmark needs Python >= 3.11 (or `pip install tomli`)") \
                from None
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: not valid TOML: {error}") from None


def benchmark_from_toml(path: str | os.PathLike[str]) -> Benchmark:
    """The benchmark a TOML file describes (see the module docstring); ValueError naming the file and key."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise ValueError(f"benchmark file {path} does not exist")
    raw = _read_toml(path)
    _check_keys(path, raw, TOML_KEYS, "top level")
    label = _text(path, raw, "name", path.stem).strip()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._")
    if not slug:
        raise _toml_error(path, "name", f"expected a readable name (letters or digits), got {label!r}")
    sources, targets = _names(path, raw, "sources"), _names(path, raw, "targets")
    both = [n for n in sources if n in targets]
    if both:
        raise _toml_error(path, "targets", f"{both} also listed in sources; a domain is a source or a target")
    k_percent = _number(path, raw, "k_percent")
    if k_percent > 100:
        raise _toml_error(path, "k_percent", f"expected a percentage in (0, 100], got {raw['k_percent']!r}")
    description = _text(path, raw, "description", "").strip()
    text_model = _text(path, raw, "text_model", "all-MiniLM-L6-v2").strip()
    if not text_model:
        raise _toml_error(path, "text_model", "empty; expected e.g. 'all-MiniLM-L6-v2'")
    tables = _tables(path, raw, sources, targets)
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    return Benchmark(str(path), sources, targets, k_percent, functools.partial(_load_toml_tables, tables),
                     text_model=text_model, interval_days=_number(path, raw, "interval_days", 15.0),
                     description=f"{label}: {description}" if description else f"{label} (from {path.name})",
                     defaults=_defaults(path, raw), folder=f"{slug}-{digest}")


def get_benchmark(name: str | os.PathLike[str]) -> Benchmark:
    """A named benchmark, or the benchmark of a ``.toml`` file (a path); ValueError listing the names otherwise."""
    name = os.fspath(name)
    if name in BENCHMARKS:
        return BENCHMARKS[name]
    if name.lower().endswith(".toml"):
        return benchmark_from_toml(name)
    raise ValueError(f"unknown benchmark {name!r}; expected one of {sorted(BENCHMARKS)} or the path of a .toml file")

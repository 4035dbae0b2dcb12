"""Benchmarks: which domains are sources and targets, K%, the text model, and where the data comes from.

Every benchmark is a small TOML file, read by :func:`benchmark_from_toml`: the named ones ship with the library
(``prerec_pyro/data/named/*.toml``, e.g. ``--benchmark retail-countries``) and your own data is a file beside your
tables (``--benchmark my_shops.toml``), through the same path. ``get_benchmark`` takes a name or a path::

    name = "my-shops"                      # optional (default: the file's stem)
    description = "three shops -> a new one"
    sources = ["shop_a", "shop_b", "shop_c"]
    targets = ["shop_d"]
    k_percent = 5
    interval_days = 15                     # optional; text_model = "all-MiniLM-L6-v2" likewise
    [defaults]                             # optional: hidden_dim, n_heads, batch_size, lr, warmup_steps, lr_decay,
    max_epochs = 3                         #   cosine_epochs, max_epochs, patience (the training flags' names)
    [data]                                 # one pair of generic-format tables with a 'domain' column ...
    items = "items.csv"
    interactions = "interactions.csv"
    # ... or one pair per domain instead: [domains.shop_a] items = "a_items.csv", interactions = "a_log.csv"
    # ... or several [[data]] entries, each a pair of tables or a public dataset (``data/datasets.py``):
    # [[data]]
    # dataset = "movielens-1m-ages"        # read from --data-dir / $PREREC_DATA_DIR
    # domains = ["18_24", "under_18"]

Relative table paths are relative to the TOML file's folder. A file of yours is named by its absolute path (what a
run's config records, so the run can be rebuilt) and its ``folder`` (the folder of its runs) is its readable name with
a short hash of that path; a named benchmark is named, and filed, by its name. Targets are named by alias
(``--target japan``); an unknown name fails with the list of valid ones. ``defaults`` are the benchmark's
model/training settings for CPU runs.
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

from prerec_pyro.data.datasets import DATASETS
from prerec_pyro.data.domain import Domain

NAMED_FOLDER = Path(__file__).with_name("named")


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

    def resolve_sources(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """Source names or aliases (``--held-out united_kingdom``) -> domain names, in the order given; an unknown
        name fails with the valid ones."""
        by_alias = {alias(s): s for s in self.sources} | {s: s for s in self.sources}
        unknown = [name for name in names if name not in by_alias and alias(name) not in by_alias]
        if unknown:
            valid = sorted({alias(s) for s in self.sources})
            raise ValueError(f"{unknown} are not sources of benchmark {self.name!r}; expected some of {valid}")
        return tuple(by_alias[name] if name in by_alias else by_alias[alias(name)] for name in names)


TOML_KEYS = ("name", "description", "sources", "targets", "k_percent", "interval_days", "text_model", "defaults",
             "data", "domains")
TABLE_KEYS = ("items", "interactions")
DATASET_KEYS = ("dataset", "domains")
DEFAULT_TYPES = {"hidden_dim": int, "n_heads": int, "batch_size": int, "lr": float, "max_epochs": int,
                 "patience": int, "warmup_steps": int, "lr_decay": float, "cosine_epochs": int}
OFF_AT_ZERO = ("warmup_steps", "cosine_epochs")  # [defaults] keys whose 0 is a setting (off), not an error


@dataclass(frozen=True)
class TableEntry:
    """A pair of generic-format tables: of one domain (``[domains.<name>]``), or of the domains that their
    ``domain`` column names (``domain`` None)."""

    where: str
    domain: str | None
    items: Path
    interactions: Path
    date_format: str | None = None  # strftime codes of the interactions' timestamps (the table's date_format key)

    def read(self, data_dir: Path | None) -> list[Domain]:
        from prerec_pyro.data.loaders.generic import load_generic

        return load_generic(self.items, self.interactions, default_domain=self.domain or "default",
                            date_format=self.date_format)


@dataclass(frozen=True)
class DatasetEntry:
    """Some domains of a public dataset (``data/datasets.py``), read from the data directory."""

    where: str
    dataset: str
    domains: tuple[str, ...]
    options: dict = field(default_factory=dict)

    def read(self, data_dir: Path | None) -> list[Domain]:
        return DATASETS[self.dataset].read(data_dir, self.domains, self.options)


@dataclass(frozen=True)
class TomlData:
    """Where a TOML benchmark's domains come from, in the file's order."""

    path: Path
    entries: tuple[TableEntry | DatasetEntry, ...]
    sources: tuple[str, ...]
    targets: tuple[str, ...]


def _load_toml_data(spec: TomlData, data_dir: Path | None) -> list[Domain]:
    """The sources then the targets of a TOML benchmark (``data_dir`` serves the public datasets only)."""
    wanted, found = spec.sources + spec.targets, {}
    for entry in spec.entries:
        if isinstance(entry, TableEntry) and entry.domain is not None and entry.domain not in wanted:
            continue
        domains = entry.read(data_dir)
        if isinstance(entry, TableEntry) and entry.domain is not None and [d.name for d in domains] != [entry.domain]:
            raise ValueError(f"{spec.path}: [{entry.where}]: {entry.interactions} holds domain(s) "
                             f"{[d.name for d in domains]} in its 'domain' column, not only {entry.domain!r}")
        twice = sorted(d.name for d in domains if d.name in found and d.name in wanted)
        if twice:
            raise ValueError(f"{spec.path}: [{entry.where}]: domain(s) {twice} also come from an earlier entry")
        found |= {d.name: d for d in domains}
    for key, names in (("sources", spec.sources), ("targets", spec.targets)):
        missing = [n for n in names if n not in found]
        if missing:
            where = ", ".join(f"[{e.where}]" for e in spec.entries)
            raise ValueError(f"{spec.path}: {key}: {missing} not in the data of {where} (a table's 'domain' column "
                             f"names its domains): found {sorted(found)}")
    return [found[n] for n in wanted]


def _toml_error(path: Path, key: str, problem: str) -> ValueError:
    return ValueError(f"{path}: {key}: {problem}")


def _check_keys(path: Path, table: dict, allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise _toml_error(path, where, f"unknown key(s) {unknown}; expected some of {list(allowed)}")


def _names(path: Path, raw: dict, key: str, where: str | None = None) -> tuple[str, ...]:
    value = raw.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise _toml_error(path, where or key, f"expected a non-empty list of domain names, got {value!r}")
    if len(set(value)) < len(value):
        raise _toml_error(path, where or key, f"lists a domain twice: {value!r}")
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
        low_ok = key in OFF_AT_ZERO and value == 0  # 0 switches these off
        if isinstance(value, bool) or not isinstance(value, (kind, int)) or (value <= 0 and not low_ok):
            raise _toml_error(path, f"defaults.{key}", f"expected a positive {kind.__name__}"
                              + (" or 0 (off)" if key in OFF_AT_ZERO else "") + f", got {value!r}")
        defaults[key] = kind(value)
    return defaults


def _table_pair(path: Path, table, where: str) -> tuple[Path, Path, str | None]:
    if not isinstance(table, dict):
        raise _toml_error(path, where, f"expected a table with {list(TABLE_KEYS)}, got {table!r}")
    _check_keys(path, table, TABLE_KEYS + ("date_format",), f"[{where}]")
    date_format = table.get("date_format")
    if date_format is not None and (not isinstance(date_format, str) or "%" not in date_format):
        raise _toml_error(path, f"{where}.date_format", f"expected strftime codes such as '%d/%m/%Y', got "
                                                        f"{date_format!r}")
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
    return files[0], files[1], date_format


def _dataset_entry(path: Path, table: dict, where: str) -> DatasetEntry:
    name = table["dataset"]
    if name not in DATASETS:
        raise _toml_error(path, f"{where}.dataset", f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    _check_keys(path, table, DATASET_KEYS + DATASETS[name].options, f"[{where}]")
    domains = _names(path, table, "domains", f"{where}.domains")
    options = {key: table[key] for key in DATASETS[name].options if key in table}
    for key, value in options.items():
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise _toml_error(path, f"{where}.{key}", f"expected a non-empty list of names, got {value!r}")
    return DatasetEntry(where, name, domains, options)


def _data_entries(path: Path, raw: dict) -> tuple[TableEntry | DatasetEntry, ...]:
    if "domains" in raw:
        domains = raw["domains"]
        if not isinstance(domains, dict) or not domains:
            raise _toml_error(path, "domains", f"expected [domains.<name>] tables, got {domains!r}")
        return tuple(TableEntry(f"domains.{name}", name, *_table_pair(path, table, f"domains.{name}"))
                     for name, table in domains.items())
    data = raw["data"]
    if isinstance(data, dict):
        tables = [(data, "data")]
    elif isinstance(data, list) and data:
        tables = [(table, f"data[{index}]") for index, table in enumerate(data)]
    else:
        raise _toml_error(path, "data", f"expected a [data] table or [[data]] entries, got {data!r}")
    return tuple(_dataset_entry(path, table, where) if isinstance(table, dict) and "dataset" in table
                 else TableEntry(where, None, *_table_pair(path, table, where)) for table, where in tables)


def _data(path: Path, raw: dict, sources: tuple[str, ...], targets: tuple[str, ...]) -> TomlData:
    if ("data" in raw) == ("domains" in raw):
        raise _toml_error(path, "data", "expected exactly one of [data] (items, interactions with a 'domain' "
                                        "column; or [[data]] entries) or [domains.<name>] tables (one per domain)")
    entries = _data_entries(path, raw)
    if all(isinstance(e, DatasetEntry) or e.domain is not None for e in entries):  # the domains are known now
        known = [name for e in entries for name in (e.domains if isinstance(e, DatasetEntry) else (e.domain,))]
        for key, names in (("sources", sources), ("targets", targets)):
            missing = [n for n in names if n not in known]
            if missing:
                raise _toml_error(path, key, f"{missing} not in the data: its entries name {known}")
    return TomlData(path, entries, sources, targets)


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


def benchmark_from_toml(path: str | os.PathLike[str], named: bool = False) -> Benchmark:
    """The benchmark a TOML file describes (see the module docstring); ValueError naming the file and key.

    ``named``: one of the library's own definitions, named and filed by its ``name`` (which must be the file's stem)
    rather than by its path."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise ValueError(f"benchmark file {path} does not exist")
    raw = _read_toml(path)
    _check_keys(path, raw, TOML_KEYS, "top level")
    label = _text(path, raw, "name", path.stem).strip()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._")
    if not slug:
        raise _toml_error(path, "name", f"expected a readable name (letters or digits), got {label!r}")
    assert not named or label == path.stem, f"{path}: a named benchmark's name must be its file's stem"
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
    load = functools.partial(_load_toml_data, _data(path, raw, sources, targets))
    if not named:
        description = f"{label}: {description}" if description else f"{label} (from {path.name})"
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    return Benchmark(label if named else str(path), sources, targets, k_percent, load, text_model=text_model,
                     interval_days=_number(path, raw, "interval_days", 15.0), description=description,
                     defaults=_defaults(path, raw), folder=label if named else f"{slug}-{digest}")


#: The library's own benchmarks, one TOML file each in ``prerec_pyro/data/named/``.
BENCHMARKS: dict[str, Benchmark] = {path.stem: benchmark_from_toml(path, named=True)
                                    for path in sorted(NAMED_FOLDER.glob("*.toml"))}
BENCHMARK_HELP = f"a named benchmark ({', '.join(sorted(BENCHMARKS))}) or the path of a .toml file (your own data)"


def target_groups(benchmark: Benchmark) -> dict[str, tuple[str, ...]]:
    """The benchmark's targets grouped by where they come from: one group per ``[[data]]`` entry (a dataset, or a
    pair of tables) that holds any, e.g. the platform halves of mixed-sources. A benchmark not built from TOML
    entries has one group."""
    spec = getattr(benchmark.load, "args", (None,))[0]
    if not isinstance(spec, TomlData):
        return {benchmark.name: benchmark.targets}
    groups, left = {}, list(benchmark.targets)
    for entry in spec.entries:
        domains = entry.domains if isinstance(entry, DatasetEntry) else ((entry.domain,) if entry.domain else ())
        name = entry.dataset if isinstance(entry, DatasetEntry) else entry.where
        mine = tuple(t for t in left if t in domains)
        if mine:
            groups[name], left = mine, [t for t in left if t not in mine]
    if left:  # targets from tables whose domain column names them
        groups["tables"] = tuple(left)
    return groups


def get_benchmark(name: str | os.PathLike[str]) -> Benchmark:
    """A named benchmark, or the benchmark of a ``.toml`` file (a path); ValueError listing the names otherwise."""
    name = os.fspath(name)
    if name in BENCHMARKS:
        return BENCHMARKS[name]
    if name.lower().endswith(".toml"):
        return benchmark_from_toml(name)
    raise ValueError(f"unknown benchmark {name!r}; expected one of {sorted(BENCHMARKS)} or the path of a .toml file")

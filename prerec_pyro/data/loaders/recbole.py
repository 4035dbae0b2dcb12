"""RecBole atomic files: ``{dataset}.inter``, ``{dataset}.item`` and ``{dataset}.user`` in one directory.

Each file is tab-separated with a typed header such as ``user_id:token  item_id:token  rating:float
timestamp:float``; the ``:type`` suffix is stripped from the column names and every value is read as text (as
RecBole does, without quoting). ``.inter`` needs ``user_id``, ``item_id`` and ``timestamp`` (epoch seconds) and, for
``min_rating``, ``rating``; ``.item`` needs ``item_id`` and the text columns; ``.user`` (needed only to split domains
by a user column) needs ``user_id``. Whole floats are rendered without ``.0`` (``1995.0`` -> ``"1995"``).

An item's text is its text columns joined with ``", "`` (empty values skipped), e.g. for ml-1m with
``("movie_title", "release_year", "genre")``: ``"Toy Story, 1995, Animation Children's Comedy"``. Domains come from
a :class:`DomainSpec`: a user column (e.g. ml-1m's age groups, :data:`ML1M_AGE_DOMAINS`) puts each user in one
domain, an item column (e.g. a category) may put a user in several. A domain's catalogue is every ``.item`` row of
the domain (items nobody rated included); interactions whose item is not in ``.item`` are dropped and counted.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from prerec_pyro.data.domain import Domain, make_domain
from prerec_pyro.data.tables import MissingDataFile

logger = logging.getLogger(__name__)

#: ml-1m's age codes -> domain names.
ML1M_AGE_DOMAINS: dict[str, str] = {"1": "under_18", "18": "18_24", "25": "25_34", "35": "35_44", "45": "45_49",
                                    "50": "50_55", "56": "56_plus"}
#: ml-1m's item text columns, in order.
ML1M_TEXT_COLUMNS: tuple[str, ...] = ("movie_title", "release_year", "genre")


@dataclass(frozen=True)
class DomainSpec:
    """Which column splits the data into domains.

    Attributes:
        table: ``"user"`` (a column of ``.user``) or ``"item"`` (a column of ``.item``).
        column: the column's name without its type suffix, e.g. ``"age"``.
        mapping: column value (as text) -> domain name; values outside it are dropped. ``None``: each value is
            a domain named by the value. Several values may map to one name.
    """

    table: str
    column: str
    mapping: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if self.table not in ("user", "item"):
            raise ValueError(f"DomainSpec.table={self.table!r}: expected 'user' or 'item'")
        if self.mapping is not None and not self.mapping:
            raise ValueError("DomainSpec.mapping is empty; give None to use every value as a domain")


def _whole_floats_as_ints(values: pd.Series) -> pd.Series:
    return values.str.replace(r"^(-?\d+)\.0+$", r"\1", regex=True)


def read_atomic(path: str | os.PathLike[str], required: Sequence[str] = ()) -> pd.DataFrame:
    """Read one atomic file as text columns named without their type; check ``required`` columns.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a required column is missing (the message names the file and lists its columns).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataFile(f"RecBole atomic file {path} not found (is --data-dir / PREREC_DATA_DIR the folder "
                              "that holds movielens/ml-1m.inter?)")
    try:
        frame = pd.read_csv(path, sep="\t", dtype=str, quoting=csv.QUOTE_NONE, engine="c", keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"{path}: not a tab-separated RecBole atomic file ({err})") from err
    frame.columns = [str(c).split(":", 1)[0] for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {list(frame.columns)}")
    return frame


def _numbers(values: pd.Series, path: Path, column: str) -> pd.Series:
    parsed = pd.to_numeric(values, errors="coerce")
    if parsed.isna().any():
        raise ValueError(f"{path}: column {column!r} has non-numeric value {values[parsed.isna()].iloc[0]!r}")
    return parsed


def _read_interactions(path: Path, min_rating: float | None) -> pd.DataFrame:
    inter = read_atomic(path, ("user_id", "item_id", "timestamp") + (("rating",) if min_rating is not None else ()))
    if min_rating is not None:
        kept = _numbers(inter["rating"], path, "rating") >= min_rating
        logger.info("%s: keeping %d of %d interactions rated >= %s", path, int(kept.sum()), len(inter), min_rating)
        inter = inter[kept]
    stamps = _numbers(inter["timestamp"], path, "timestamp")
    return pd.DataFrame({"user_id": inter["user_id"], "item_id": inter["item_id"],
                         "timestamp": stamps.round().astype("int64")})


def _item_table(path: Path, text_columns: Sequence[str], extra: Sequence[str]) -> pd.DataFrame:
    """``item_id``, ``text`` and the ``extra`` columns of ``.item``."""
    item = read_atomic(path, ("item_id", *text_columns, *extra)).drop_duplicates("item_id", keep="first")
    parts = item[list(text_columns)].apply(_whole_floats_as_ints).replace("", pd.NA)
    text = parts.stack().dropna().groupby(level=0).agg(", ".join).reindex(item.index, fill_value="")
    table = pd.DataFrame({"item_id": item["item_id"], "text": text})
    for column in extra:
        table[column] = _whole_floats_as_ints(item[column])
    return table


def _domain_of(values: pd.Series, spec: DomainSpec) -> pd.Series:
    """Map column values to domain names (missing where the value is outside the mapping)."""
    values = _whole_floats_as_ints(values)
    return values if spec.mapping is None else values.map(dict(spec.mapping))


def _domain_names(labels: pd.Series, spec: DomainSpec) -> list[str]:
    if spec.mapping is None:
        return sorted(labels.dropna().unique())
    present = set(labels.dropna())
    return [name for name in dict.fromkeys(spec.mapping.values()) if name in present]


def _split(log: pd.DataFrame, items: pd.DataFrame, spec: DomainSpec, directory: Path,
           dataset: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add a ``domain`` column to the log (and, for item columns, to the items); drop rows outside every domain."""
    if spec.table == "user":
        users = read_atomic(directory / f"{dataset}.user", ("user_id", spec.column))
        user_domain = pd.Series(_domain_of(users[spec.column], spec).to_numpy(), index=users["user_id"])
        log = log.assign(domain=log["user_id"].map(user_domain[~user_domain.index.duplicated()]))
    else:
        items = items.assign(domain=_domain_of(items[spec.column], spec))
        log = log.assign(domain=log["item_id"].map(items.set_index("item_id")["domain"]))
    outside = log["domain"].isna()
    if outside.any():
        logger.info("%s: dropping %d interactions outside the domains of %s.%s", dataset, int(outside.sum()),
                    spec.table, spec.column)
    return log[~outside], items


def load_recbole(directory: str | os.PathLike[str], dataset: str, text_columns: Sequence[str],
                 domain_by: DomainSpec | None = None, min_rating: float | None = None) -> list[Domain]:
    """Load a RecBole dataset as domains (see the module docstring).

    Args:
        directory: the folder holding ``{dataset}.inter``, ``.item`` (and ``.user`` for a user-column split).
        dataset: the files' base name, e.g. ``"ml-1m"``; also the single domain's name without ``domain_by``.
        text_columns: ``.item`` columns making the item text, in order.
        domain_by: the column splitting the data into domains; ``None`` gives one domain.
        min_rating: keep only interactions rated at least this (needs a ``rating`` column).
    """
    directory = Path(directory)
    if isinstance(text_columns, str) or not text_columns:
        raise ValueError(f"text_columns={text_columns!r}: expected a non-empty sequence of .item column names")
    inter_path = directory / f"{dataset}.inter"
    log = _read_interactions(inter_path, min_rating)
    extra = [domain_by.column] if domain_by is not None and domain_by.table == "item" else []
    items = _item_table(directory / f"{dataset}.item", text_columns, extra)
    unknown = ~log["item_id"].isin(items["item_id"])
    if unknown.any():
        logger.warning("%s: dropping %d interactions whose item is not in %s.item", inter_path, int(unknown.sum()),
                       dataset)
        log = log[~unknown]
    if domain_by is None:
        return [make_domain(dataset, items, log, source=str(inter_path))]
    log, items = _split(log, items, domain_by, directory, dataset)
    domains = []
    for name in _domain_names(log["domain"], domain_by):
        catalogue = items if domain_by.table == "user" else items[items["domain"] == name]
        domains.append(make_domain(name, catalogue, log[log["domain"] == name],
                                   source=f"{inter_path} (domain {name!r})"))
    return domains

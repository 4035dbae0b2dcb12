"""A plain two-table format for bringing your own data.

Two files, each CSV (``.csv``) or Parquet (``.parquet``/``.pq``), chosen by suffix:

``items``
    ``item_id``, ``text``, optionally ``domain``. Ids are read as text; missing text becomes ``""``. With a
    ``domain`` column a row belongs to that domain only and a row whose domain is empty to every domain; without
    one, every item belongs to every domain. Extra columns are ignored.

``interactions``
    ``user_id``, ``item_id``, ``timestamp``, optionally ``domain``. ``timestamp`` holds epoch times (seconds, or
    milliseconds and finer, told by magnitude) or date/datetime strings (``2021-03-04``, ``2021-03-04 10:15:00``),
    read as UTC (rules: ``prerec_pyro.data.timestamps``; ``date_format`` for day/month strings). With a
    ``domain`` column there is one domain per value, in order of first appearance; without one, a single domain
    named ``default_domain``. Users are identified by id across domains.

Example (CSV)::

    item_id,text,domain            user_id,item_id,timestamp,domain
    i1,Red mug,shop_a              u1,i1,1614816000,shop_a
    i2,Blue plate,                 u1,i2,2021-03-05,shop_b

Every interaction's item must be in its domain's items unless ``drop_unknown_items``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from prerec_pyro.data.domain import Domain, make_domain
from prerec_pyro.data.tables import read_frame
from prerec_pyro.data.timestamps import epoch_seconds

logger = logging.getLogger(__name__)

ITEM_COLUMNS = ("item_id", "text")
INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp")
TEXT_COLUMNS = ("item_id", "text", "user_id", "domain")


def read_table(path: str | os.PathLike[str], required: tuple[str, ...]) -> pd.DataFrame:
    """Read a CSV or Parquet table (``prerec_pyro.data.tables``) and check its ``required`` columns; id columns
    become text."""
    frame = read_frame(path, TEXT_COLUMNS, expected=f"a header row with {list(required)}")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        separator = next((sep for sep in (";", "\t", "|") if len(frame.columns) == 1 and sep in frame.columns[0]),
                         None)
        hint = f"; the header looks {separator!r}-separated: save the file comma-separated" if separator else ""
        raise ValueError(f"{path}: missing column(s) {missing}; expected {list(required)} (and optionally "
                         f"'domain'), found {list(frame.columns)}{hint}")
    for column in ("item_id", "user_id", "domain"):
        if column in frame.columns:
            values = frame[column]
            frame[column] = values.where(values.isna(), values.astype(str))
    if "domain" in frame.columns:  # a trailing space is no other domain
        frame["domain"] = frame["domain"].where(frame["domain"].isna(), frame["domain"].str.strip())
    return frame


def _check_no_missing(frame: pd.DataFrame, columns: tuple[str, ...], path: Path) -> None:
    for column in columns:
        empty = frame[column].isna()
        if empty.any():
            raise ValueError(f"{path}: column {column!r} is empty on row {int(empty.to_numpy().argmax()) + 2} "
                             "(counting the header as row 1)")


def rows_of_domain(table: pd.DataFrame, domain: str | None, path: str, shared_rows: bool) -> pd.DataFrame:
    """The rows of ``domain`` (and, if ``shared_rows``, rows with an empty domain); the table itself without a
    ``domain`` column, or when it names one domain only. A table of several domains without ``domain`` is refused
    (ranking every shop's items together would be silently wrong)."""
    names = sorted(table["domain"].dropna().astype(str).str.strip().unique()) if "domain" in table.columns else []
    if domain is None:
        if len(names) > 1:
            raise ValueError(f"{path}: the table holds {len(names)} domains {names[:10]}; name the one to use "
                             "(--target NAME, or domain=NAME)")
        return table
    if "domain" not in table.columns:
        raise ValueError(f"{path}: domain {domain!r} given but the table has no 'domain' column")
    values = table["domain"].astype("string").str.strip()  # a trailing space is no other domain
    rows = table[(values == domain.strip()) | (table["domain"].isna() if shared_rows else False)]
    if rows.empty:
        found = sorted(table["domain"].dropna().unique())[:10]
        raise ValueError(f"{path}: no row of domain {domain!r}; found {found}")
    return rows.reset_index(drop=True)


def _domain_items(items: pd.DataFrame, name: str) -> pd.DataFrame:
    if "domain" not in items.columns:
        return items
    return items[items["domain"].isna() | (items["domain"] == name)]


def load_generic(items_path: str | os.PathLike[str], interactions_path: str | os.PathLike[str],
                 default_domain: str = "default", drop_unknown_items: bool = False,
                 date_format: str | None = None) -> list[Domain]:
    """Load the two-table format (see the module docstring) as domains.

    Args:
        items_path: the items table.
        interactions_path: the interactions table.
        default_domain: the domain's name when the interactions have no ``domain`` column.
        drop_unknown_items: drop interactions whose item is not among its domain's items instead of raising.
        date_format: ``strftime`` format of the timestamps (e.g. ``"%d/%m/%Y"``), for day/month strings.
    """
    items_path, interactions_path = Path(items_path), Path(interactions_path)
    items = read_table(items_path, ITEM_COLUMNS)
    log = read_table(interactions_path, INTERACTION_COLUMNS)
    _check_no_missing(items, ("item_id",), items_path)
    _check_no_missing(log, INTERACTION_COLUMNS, interactions_path)
    if log.empty:
        raise ValueError(f"{interactions_path}: the table has a header but no interaction rows")
    log["timestamp"] = epoch_seconds(log["timestamp"], str(interactions_path), date_format)
    if "domain" not in log.columns:
        if "domain" in items.columns and items["domain"].notna().any():
            raise ValueError(f"{items_path}: items carry a 'domain' column but {interactions_path} has none; "
                             "add 'domain' to the interactions or drop it from the items")
        return [make_domain(default_domain, items, log, source=str(interactions_path),
                            drop_unknown_items=drop_unknown_items, items_source=str(items_path))]
    _check_no_missing(log, ("domain",), interactions_path)
    domains = []
    for name in pd.unique(log["domain"]):
        part = log[log["domain"] == name]
        catalogue = _domain_items(items, name)
        domain = make_domain(name, catalogue, part, source=f"{interactions_path} (domain {name!r})",
                             drop_unknown_items=drop_unknown_items, items_source=f"{items_path} (domain {name!r})")
        if domain.n_interactions < len(part):
            logger.info("%s: dropped %d interactions of domain %r whose item is not in %s", interactions_path,
                        len(part) - domain.n_interactions, name, items_path)
        domains.append(domain)
    return domains

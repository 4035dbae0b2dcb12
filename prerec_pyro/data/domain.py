"""One domain (market, platform) as tables: the unit every loader returns.

A ``Domain`` is a name, an item table and an interaction log:

- ``items``: columns ``item_id`` (str), ``text`` (str); one row per item of the domain's catalogue.
- ``interactions``: columns ``user_id`` (str), ``item_id`` (str), ``timestamp`` (int64, seconds since the epoch),
  sorted by (user, timestamp). Every ``item_id`` is in ``items``.

Loaders build domains with :func:`make_domain`, which validates and normalises the tables and raises ``ValueError``
naming the source, column and offending values.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

from prerec_pyro.data.timestamps import epoch_seconds

logger = logging.getLogger(__name__)

ITEM_COLUMNS = ("item_id", "text")
INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp")


@dataclass(frozen=True)
class Domain:
    """A domain's catalogue and time-ordered interaction log (see the module docstring for the columns)."""

    name: str
    items: pd.DataFrame
    interactions: pd.DataFrame

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_users(self) -> int:
        return int(self.interactions["user_id"].nunique())

    @property
    def n_interactions(self) -> int:
        return len(self.interactions)


def _require_columns(frame: pd.DataFrame, columns: tuple[str, ...], source: str, what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{source}: {what} table lacks column(s) {missing}; expected {list(columns)}, "
                         f"found {list(frame.columns)}")


DUPLICATES = ("drop", "keep")


def make_domain(name: str, items: pd.DataFrame, interactions: pd.DataFrame, source: str | None = None,
                drop_unknown_items: bool = False, duplicates: str = "drop", items_source: str | None = None) -> Domain:
    """Validate and normalise a domain's tables.

    Args:
        name: the domain's name (e.g. ``"japan"``).
        items: a table with ``item_id`` and ``text``; duplicate ids keep their first row; missing text becomes "".
        interactions: a table with ``user_id``, ``item_id``, ``timestamp`` (epoch seconds, datetimes or date
            strings).
        source: what to name in error messages (a file path); defaults to the domain name.
        items_source: what to name in messages about the item table (default: ``source``).
        drop_unknown_items: drop interactions whose item has no row in ``items`` instead of raising.
        duplicates: rows repeating a (user_id, item_id, timestamp) already in the log are dropped with a warning
            that counts them ("drop", the rule for every loader: a table written twice must not count twice), or
            kept ("keep": only where the source really records one event twice, e.g. an invoice listing a product
            on two lines, which the paper's Online Retail counts include).
    """
    if duplicates not in DUPLICATES:
        raise ValueError(f"duplicates must be one of {DUPLICATES}, got {duplicates!r}")
    source = source or f"domain {name!r}"
    items_source = items_source or source
    _require_columns(items, ITEM_COLUMNS, source, "item")
    _require_columns(interactions, INTERACTION_COLUMNS, source, "interaction")
    items = pd.DataFrame({"item_id": items["item_id"].astype(str).to_numpy(),
                          "text": items["text"].fillna("").astype(str).to_numpy()})
    duplicated = items["item_id"].duplicated(keep="first")
    if duplicated.any():
        differing = items[items["item_id"].isin(items.loc[duplicated, "item_id"])].groupby("item_id")["text"].nunique()
        logger.warning("%s: %d duplicate item row(s) (e.g. id %r); each id keeps its first row's text%s", items_source,
                       int(duplicated.sum()), items.loc[duplicated, "item_id"].iloc[0],
                       f", and {int((differing > 1).sum())} of them have differing texts" if (differing > 1).any()
                       else "")
    items = items[~duplicated].reset_index(drop=True)
    if len(items) and not items["text"].str.strip().any():
        logger.warning("%s: every item's text is empty: the text head sees one vector for all items, so PreRec "
                       "ranks by popularity alone (as POP does)", items_source)
    for column in ("user_id", "item_id"):
        if interactions[column].isna().any():
            raise ValueError(f"{source}: column {column!r} has {int(interactions[column].isna().sum())} "
                             "missing value(s)")
    log = pd.DataFrame({"user_id": interactions["user_id"].astype(str).to_numpy(),
                        "item_id": interactions["item_id"].astype(str).to_numpy(),
                        "timestamp": epoch_seconds(interactions["timestamp"], source).to_numpy()})
    known = log["item_id"].isin(items["item_id"])
    if not known.all():
        if not drop_unknown_items:
            example = log.loc[~known, "item_id"].iloc[0]
            raise ValueError(f"{source}: {int((~known).sum())} interaction(s) name item(s) absent from the item "
                             f"table, e.g. {example!r}")
        log = log[known]
    repeated = log.duplicated(keep="first")
    if repeated.any() and duplicates == "drop":
        example = log.loc[repeated].iloc[0]
        logger.warning("%s: dropped %d duplicate interaction row(s) (the same user_id, item_id and timestamp as an "
                       "earlier row, e.g. user %r, item %r) of %d", source, int(repeated.sum()), example["user_id"],
                       example["item_id"], len(log))
        log = log[~repeated]
    if log.empty:
        raise ValueError(f"{source}: domain {name!r} has no interactions")
    log = log.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)
    return Domain(name=name, items=items, interactions=log)

"""XMarket (Bonab et al., CIKM 2021): Amazon reviews from 18 national markets, one :class:`Domain` per market.

Files, per market code ``mk`` and category ``cat`` (each plain or gzip'd with a ``.gz`` suffix), looked up first as
``root/mk/cat/<name>`` (the layout of the XMarket site, and of :func:`download_xmarket`) and then as ``root/<name>``:

- ``metadata_{mk}_{cat}.json``: one JSON object per line with at least ``asin``, ``title``, ``features`` (list of
  str) and ``categories`` (list of str); other fields are ignored, null lines skipped.
- ``reviews_{mk}_{cat}.json``: one JSON list per line of review objects with at least ``reviewerID``, ``asin`` and
  ``cleanReviewTime`` (``YYYY-MM-DD``); null lines and null list entries are skipped.
- ``ratings_{mk}_{cat}.txt``: whitespace-separated ``userId itemId rating date`` rows, no header.

A market's catalogue is its metadata (items without interactions included); its item text is, as in the official
PreRec code, ``title + ' ' + ' '.join(features) + ' This item belongs to the following categories: ' +
' '.join(categories)``. Interactions come from the reviews (default) or the ratings; a review's date becomes
00:00 UTC of that day, in epoch seconds. User ids are kept raw, so a user reviewing in several markets is the same
user in several domains.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd

from prerec_pyro.data.domain import Domain, make_domain
from prerec_pyro.data.download import download_file
from prerec_pyro.data.tables import MissingDataFile
from prerec_pyro.data.timestamps import epoch_seconds

logger = logging.getLogger(__name__)

#: Market code -> name used for the domain (the 18 markets listed on https://xmrec.github.io).
MARKETS: dict[str, str] = {
    "ae": "uae", "au": "australia", "br": "brazil", "ca": "canada", "cn": "china", "de": "germany",
    "es": "spain", "fr": "france", "in": "india", "it": "italy", "jp": "japan", "mx": "mexico",
    "nl": "netherlands", "sa": "saudi_arabia", "sg": "singapore", "tr": "turkey", "uk": "uk", "us": "us",
}
#: Further accepted spellings (after lower-casing and turning spaces and hyphens into underscores).
EXTRA_ALIASES: dict[str, str] = {
    "united_arab_emirates": "ae", "united_kingdom": "uk", "great_britain": "uk", "gb": "uk",
    "united_states": "us", "usa": "us",
}
#: The 16 product categories of XMarket.
CATEGORIES: tuple[str, ...] = (
    "Arts_Crafts_and_Sewing", "Automotive", "Books", "CDs_and_Vinyl", "Cell_Phones_and_Accessories",
    "Digital_Music", "Electronics", "Grocery_and_Gourmet_Food", "Home_and_Kitchen", "Industrial_and_Scientific",
    "Kindle_Store", "Movies_and_TV", "Musical_Instruments", "Office_Products", "Sports_and_Outdoors",
    "Toys_and_Games",
)
#: File kind -> extension (before ``.gz``).
FILE_KINDS: dict[str, str] = {"metadata": "json", "reviews": "json", "ratings": "txt"}
#: Root of the public files; a file's URL is ``{base}/{mk}/{cat}/{kind}_{mk}_{cat}.{ext}.gz`` (as linked from
#: https://xmrec.github.io/data/<mk>).
XMARKET_BASE_URL = "https://ciir.cs.umass.edu/downloads/XMarket/FULL"

METADATA_COLUMNS = ("asin", "title", "features", "categories")
REVIEW_COLUMNS = ("reviewerID", "asin", "cleanReviewTime")
RATING_COLUMNS = ("userId", "itemId", "rating", "date")
CATEGORY_PHRASE = " This item belongs to the following categories: "
JSON_CHUNK_LINES = 50_000


def resolve_market(name: str) -> str:
    """Return the market code for a code or alias (case-insensitive), e.g. ``"Japan"`` -> ``"jp"``."""
    key = str(name).strip().lower().replace(" ", "_").replace("-", "_")
    if key in MARKETS:
        return key
    by_alias = {alias: code for code, alias in MARKETS.items()} | EXTRA_ALIASES
    if key in by_alias:
        return by_alias[key]
    valid = ", ".join(f"{code} ({alias})" for code, alias in MARKETS.items())
    raise ValueError(f"unknown XMarket market {name!r}; expected one of: {valid}")


def _as_tuple(names: str | Sequence[str]) -> tuple[str, ...]:
    return (names,) if isinstance(names, str) else tuple(names)


def xmarket_file_name(kind: str, market: str, category: str) -> str:
    """The uncompressed file name, e.g. ``metadata_jp_Electronics.json``."""
    if kind not in FILE_KINDS:
        raise ValueError(f"unknown XMarket file kind {kind!r}; expected one of {list(FILE_KINDS)}")
    code = resolve_market(market)
    return f"{kind}_{code}_{category}.{FILE_KINDS[kind]}"


def xmarket_url(kind: str, market: str, category: str, base_url: str = XMARKET_BASE_URL) -> str:
    """The public URL of one gzip'd XMarket file."""
    code = resolve_market(market)
    return f"{base_url.rstrip('/')}/{code}/{category}/{xmarket_file_name(kind, code, category)}.gz"


def find_xmarket_file(root: str | os.PathLike[str], kind: str, market: str, category: str) -> Path:
    """Locate a file under ``root`` (nested ``mk/cat/`` or flat, plain or ``.gz``).

    Raises:
        FileNotFoundError: none of the candidate paths exists (the message lists them).
    """
    root, code = Path(root), resolve_market(market)
    name = xmarket_file_name(kind, code, category)
    candidates = [folder / f"{name}{suffix}" for folder in (root / code / category, root) for suffix in ("", ".gz")]
    for path in candidates:
        if path.is_file():
            return path
    raise MissingDataFile(f"XMarket {kind} file for market {code!r}, category {category!r} not found; "
                            f"looked for {[str(p) for p in candidates]}")


def _json_line_chunks(path: Path) -> Iterator[pd.Series]:
    """Yield the file's JSON values in chunks of lines (index = 0-based line number); null lines are dropped."""
    try:
        with pd.read_json(path, lines=True, typ="series", dtype=False, chunksize=JSON_CHUNK_LINES) as reader:
            for chunk in reader:
                yield chunk.dropna()
    except ValueError as err:
        raise ValueError(f"{path}: not valid JSON lines ({err})") from err


def _records(values: pd.Series, path: Path, what: str) -> pd.DataFrame:
    """Turn a Series of JSON objects into a frame; anything but an object is an error naming its line."""
    not_object = ~values.map(type).eq(dict)
    if not_object.any():
        line = int(values.index[not_object.to_numpy()][0]) + 1
        raise ValueError(f"{path}: line {line} holds a {type(values[not_object].iloc[0]).__name__} where {what} "
                         "(a JSON object) was expected")
    return pd.DataFrame.from_records(values.tolist(), index=values.index)


def _require(seen: set[str], required: tuple[str, ...], path: Path) -> None:
    if not seen:
        raise ValueError(f"{path}: the file holds no records; expected JSON lines with {list(required)}")
    missing = [c for c in required if c not in seen]
    if missing:
        raise ValueError(f"{path}: records lack field(s) {missing}; expected at least {list(required)}, "
                         f"found {sorted(seen)}")


def _join_list(values: pd.Series) -> pd.Series:
    """Join each list of strings with spaces; missing values (or non-lists) give ""."""
    return values.map(lambda v: " ".join(map(str, v)) if isinstance(v, list) else "")


def item_text(metadata: pd.DataFrame) -> pd.Series:
    """The official item text from a metadata frame with ``title``, ``features`` and ``categories``."""
    title = metadata["title"].map(lambda v: v if isinstance(v, str) else "")
    return title + " " + _join_list(metadata["features"]) + CATEGORY_PHRASE + _join_list(metadata["categories"])


def read_metadata(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a metadata file into an item table (``item_id``, ``text``)."""
    path = Path(path)
    seen: set[str] = set()
    parts = []
    for chunk in _json_line_chunks(path):
        records = _records(chunk, path, "a product")
        seen.update(records.columns)
        parts.append(records.reindex(columns=list(METADATA_COLUMNS)))
    _require(seen, METADATA_COLUMNS, path)
    meta = pd.concat(parts)
    if meta["asin"].isna().any():
        line = int(meta.index[meta["asin"].isna().to_numpy()][0]) + 1
        raise ValueError(f"{path}: line {line} has no 'asin'")
    return pd.DataFrame({"item_id": meta["asin"].astype(str).to_numpy(), "text": item_text(meta).to_numpy()})


def _utc_day_seconds(dates: pd.Series, path: Path, column: str) -> pd.Series:
    """``YYYY-MM-DD`` strings as epoch seconds at 00:00 UTC (the library's one timestamp reader)."""
    return epoch_seconds(dates, str(path), "%Y-%m-%d", column=column)


def read_reviews(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a reviews file into an interaction log (``user_id``, ``item_id``, ``timestamp``)."""
    path = Path(path)
    seen: set[str] = set()
    parts = []
    for chunk in _json_line_chunks(path):
        not_list = ~chunk.map(type).eq(list)
        if not_list.any():
            line = int(chunk.index[not_list.to_numpy()][0]) + 1
            raise ValueError(f"{path}: line {line} is not a JSON list of reviews")
        reviews = chunk.explode().dropna()
        if reviews.empty:
            continue
        records = _records(reviews, path, "a review")
        seen.update(records.columns)
        parts.append(records.reindex(columns=list(REVIEW_COLUMNS)))
    _require(seen, REVIEW_COLUMNS, path)
    log = pd.concat(parts)
    incomplete = log.isna().any(axis=1)
    if incomplete.any():
        line = int(log.index[incomplete.to_numpy()][0]) + 1
        raise ValueError(f"{path}: a review on line {line} lacks a value for one of {list(REVIEW_COLUMNS)}")
    return pd.DataFrame({"user_id": log["reviewerID"].astype(str).to_numpy(),
                         "item_id": log["asin"].astype(str).to_numpy(),
                         "timestamp": _utc_day_seconds(log["cleanReviewTime"], path, "cleanReviewTime").to_numpy()})


def read_ratings(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a ratings file (``userId itemId rating date`` rows) into an interaction log."""
    path = Path(path)
    try:
        rows = pd.read_csv(path, sep=r"\s+", header=None, names=list(RATING_COLUMNS), dtype=str, engine="c")
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"{path}: not 'userId itemId rating date' rows ({err})") from err
    incomplete = rows.isna().any(axis=1)
    if incomplete.any():
        row = int(rows.index[incomplete.to_numpy()][0]) + 1
        raise ValueError(f"{path}: row {row} has fewer than 4 fields; expected 'userId itemId rating date'")
    return pd.DataFrame({"user_id": rows["userId"].to_numpy(), "item_id": rows["itemId"].to_numpy(),
                         "timestamp": _utc_day_seconds(rows["date"], path, "date").to_numpy()})


def _load_market(root: Path, code: str, categories: tuple[str, ...], source: str,
                 drop_unknown_items: bool) -> Domain:
    read_log = read_reviews if source == "reviews" else read_ratings
    items = pd.concat([read_metadata(find_xmarket_file(root, "metadata", code, c)) for c in categories])
    log = pd.concat([read_log(find_xmarket_file(root, source, code, c)) for c in categories])
    unknown = int((~log["item_id"].isin(items["item_id"])).sum())
    if unknown and drop_unknown_items:
        logger.info("XMarket %s: dropped %d of %d %s whose item has no metadata", code, unknown, len(log), source)
    domain = make_domain(MARKETS[code], items, log, source=f"XMarket market {code!r} under {root}",
                         drop_unknown_items=drop_unknown_items)
    logger.info("XMarket %s: %d items, %d users, %d interactions", code, domain.n_items, domain.n_users,
                domain.n_interactions)
    return domain


def load_xmarket(root: str | os.PathLike[str], markets: str | Sequence[str],
                 categories: str | Sequence[str] = ("Electronics",), source: str = "reviews",
                 drop_unknown_items: bool = True) -> list[Domain]:
    """Load XMarket markets as domains, in the order given.

    Args:
        root: folder holding the files (see the module docstring for the layouts accepted).
        markets: market codes or aliases (``"jp"``, ``"Japan"``); each domain is named by its alias (``"japan"``).
        categories: categories whose files are merged into each market.
        source: ``"reviews"`` (the paper's choice) or ``"ratings"``.
        drop_unknown_items: drop interactions whose item has no metadata (logged) instead of raising.
    """
    if source not in ("reviews", "ratings"):
        raise ValueError(f"XMarket source {source!r}: expected 'reviews' or 'ratings'")
    codes = [resolve_market(m) for m in _as_tuple(markets)]
    if len(set(codes)) != len(codes):
        raise ValueError(f"XMarket markets {list(_as_tuple(markets))} name a market twice")
    cats = _as_tuple(categories)
    if not cats:
        raise ValueError("XMarket: no category given")
    return [_load_market(Path(root), code, cats, source, drop_unknown_items) for code in codes]


def download_xmarket(root: str | os.PathLike[str], markets: str | Sequence[str],
                     categories: str | Sequence[str] = ("Electronics",),
                     kinds: Sequence[str] = ("metadata", "reviews", "ratings"), base_url: str = XMARKET_BASE_URL,
                     overwrite: bool = False) -> list[Path]:
    """Download gzip'd XMarket files to ``root/mk/cat/`` (existing files are kept unless ``overwrite``).

    Returns the paths of the files, in the order market, category, kind.
    """
    unknown = [c for c in _as_tuple(categories) if c not in CATEGORIES]
    if unknown:
        raise ValueError(f"unknown XMarket categor(y/ies) {unknown}; expected some of {list(CATEGORIES)}")
    paths = []
    for code in (resolve_market(m) for m in _as_tuple(markets)):
        for category in _as_tuple(categories):
            for kind in kinds:
                dest = Path(root) / code / category / f"{xmarket_file_name(kind, code, category)}.gz"
                paths.append(download_file(xmarket_url(kind, code, category, base_url), dest, overwrite=overwrite))
    return paths

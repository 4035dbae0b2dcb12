"""UCI Online Retail (Chen, Sain, Guo 2012): a UK gift shop's invoice lines, 2010-12 to 2011-12.

Input: the UCI ``Online Retail.xlsx``, or the same table as ``.csv`` or ``.parquet``, with columns ``InvoiceNo``,
``StockCode``, ``Description``, ``Quantity``, ``InvoiceDate`` (a datetime or a string such as ``12/1/2010 8:26``),
``UnitPrice``, ``CustomerID`` (float, missing for guests) and ``Country``.

The paper's setting (the defaults of :class:`RetailOptions`): a user is an invoice (one shopping session), an item
is a product and its text the ``Description``; rows without a Description are dropped, cancellations (invoice
numbers starting with ``C``) are kept, there is no k-core filter. The paper's official counts (4,223 items, 24,446
users, 540,455 interactions) are reproduced only when a product is identified by its Description: the file has
3,958 distinct StockCodes among those rows but 4,223 distinct Descriptions, so ``item="description"`` is the
default and ``item="stock_code"`` (text = the code's first non-empty Description, in file order) an option.
Invoice times carry no time zone; they are read as UTC.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from prerec_pyro.data.domain import Domain, make_domain
from prerec_pyro.data.download import download_file, extract_zip_member
from prerec_pyro.data.tables import read_frame
from prerec_pyro.data.timestamps import epoch_seconds

logger = logging.getLogger(__name__)

ONLINE_RETAIL_URL = "https://archive.ics.uci.edu/static/public/352/online+retail.zip"
ONLINE_RETAIL_MEMBER = "Online Retail.xlsx"
DOMAIN_NAME = "online_retail"
UCI_DATE_FORMAT = "%m/%d/%Y %H:%M"  # InvoiceDate in UCI's CSV export
STRING_COLUMNS = ("InvoiceNo", "StockCode", "Description", "InvoiceDate", "Country")
BASE_COLUMNS = ("InvoiceNo", "StockCode", "Description", "InvoiceDate")


@dataclass(frozen=True)
class RetailOptions:
    """How Online Retail becomes domains.

    Attributes:
        user: ``"invoice"`` (one session per user, the paper) or ``"customer"`` (drops rows without CustomerID).
        item: ``"description"`` (the paper's counts) or ``"stock_code"``.
        drop_cancellations: drop invoices whose number starts with ``C``.
        by_country: one domain per Country (named by the country) instead of one ``"online_retail"`` domain.
        countries: keep only these countries (in this order when ``by_country``); ``None`` keeps all.
    """

    user: str = "invoice"
    item: str = "description"
    drop_cancellations: bool = False
    by_country: bool = False
    countries: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.user not in ("invoice", "customer"):
            raise ValueError(f"RetailOptions.user={self.user!r}: expected 'invoice' or 'customer'")
        if self.item not in ("description", "stock_code"):
            raise ValueError(f"RetailOptions.item={self.item!r}: expected 'description' or 'stock_code'")
        if self.countries is not None:
            if isinstance(self.countries, str) or not self.countries:
                raise ValueError(f"RetailOptions.countries={self.countries!r}: expected a non-empty tuple of names")
            object.__setattr__(self, "countries", tuple(self.countries))


def read_retail_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read the raw table from ``.xlsx``/``.xls``, ``.csv`` (UTF-8, else Latin-1 as UCI's export) or ``.parquet``
    (``prerec_pyro.data.tables``); ids come back as stripped text."""
    text = tuple(c for c in STRING_COLUMNS if c != "InvoiceDate" or Path(path).suffix.lower() == ".csv")
    frame = read_frame(path, text, workbooks=True, fallback_encoding="latin-1",
                       expected=f"a header row with {list(BASE_COLUMNS)}")
    for column in ("InvoiceNo", "StockCode", "Country"):
        if column in frame.columns:
            values = frame[column]
            frame[column] = values.where(values.isna(), values.astype(str).str.strip())
    return frame


def parse_invoice_dates(values: pd.Series, source: str) -> pd.Series:
    """Invoice dates as int64 epoch seconds (UTC) through the library's one timestamp reader
    (``prerec_pyro.data.timestamps``). UCI's own file writes ``12/1/2010 8:26`` (month first): a column of strings
    some of which read so is read so, strictly (a value that does not is an error naming it); anything else
    (datetimes from the workbook, ISO strings, epochs) follows the reader's rules."""
    if not pd.api.types.is_datetime64_any_dtype(values) and not pd.api.types.is_numeric_dtype(values):
        text = values.astype("string").str.strip()
        if pd.to_datetime(text, format=UCI_DATE_FORMAT, errors="coerce").notna().any():
            return epoch_seconds(text, source, UCI_DATE_FORMAT, column="InvoiceDate")
    return epoch_seconds(values, source, column="InvoiceDate")


def _customer_ids(values: pd.Series) -> pd.Series:
    """CustomerID as text without a float's ``.0`` (17850.0 -> "17850")."""
    if pd.api.types.is_float_dtype(values) and (values % 1 == 0).all():
        return values.astype("int64").astype(str)
    return values.astype(str).str.replace(r"\.0+$", "", regex=True)


def _log(frame: pd.DataFrame, options: RetailOptions, source: str) -> pd.DataFrame:
    """The interaction log (with Country) of the rows kept."""
    if options.drop_cancellations:
        cancelled = frame["InvoiceNo"].fillna("").str.upper().str.startswith("C")
        logger.info("%s: dropping %d cancellation rows", source, int(cancelled.sum()))
        frame = frame[~cancelled]
    if options.user == "customer":
        guest = frame["CustomerID"].isna()
        logger.info("%s: dropping %d rows without CustomerID", source, int(guest.sum()))
        frame = frame[~guest]
        users = _customer_ids(frame["CustomerID"])
    else:
        users = frame["InvoiceNo"]
    items = frame["Description"] if options.item == "description" else frame["StockCode"]
    log = pd.DataFrame({"user_id": users, "item_id": items,
                        "timestamp": parse_invoice_dates(frame["InvoiceDate"], source)})
    if options.by_country or options.countries is not None:
        log["Country"] = frame["Country"]
    return log


def _item_table(frame: pd.DataFrame, item: str) -> pd.DataFrame:
    """One row per item: a Description is its own text; a StockCode takes its first Description in file order."""
    key = "Description" if item == "description" else "StockCode"
    first = frame.drop_duplicates(key, keep="first")
    return pd.DataFrame({"item_id": first[key].to_numpy(), "text": first["Description"].to_numpy()})


def _countries(frame: pd.DataFrame, options: RetailOptions, source: str) -> list[str]:
    available = sorted(frame["Country"].dropna().unique())
    if options.countries is None:
        return available
    unknown = [c for c in options.countries if c not in available]
    if unknown:
        raise ValueError(f"{source}: unknown countr(y/ies) {unknown}; available: {available}")
    return list(options.countries)


def load_online_retail(path: str | os.PathLike[str], options: RetailOptions = RetailOptions()) -> list[Domain]:
    """Load Online Retail as one domain (``"online_retail"``) or one domain per country (see :class:`RetailOptions`).

    A domain's catalogue is the items occurring in its interactions.
    """
    source = str(path)
    frame = read_retail_table(path)
    needed = list(BASE_COLUMNS) + (["CustomerID"] if options.user == "customer" else [])
    needed += ["Country"] if options.by_country or options.countries is not None else []
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; expected {needed}, found {list(frame.columns)}")
    countries = _countries(frame, options, source) if "Country" in needed else []
    described = frame["Description"].fillna("").astype(str).str.strip().ne("")
    logger.info("%s: dropping %d of %d rows without Description", source, int((~described).sum()), len(frame))
    frame = frame[described]
    items = _item_table(frame, options.item)
    log = _log(frame, options, source)
    if options.countries is not None:
        log = log[log["Country"].isin(countries)]
    # an invoice may list one product on two lines at one time: real events, and the paper's counts include them
    if not options.by_country:
        return [make_domain(DOMAIN_NAME, items[items["item_id"].isin(log["item_id"])], log, source=source,
                            duplicates="keep")]
    domains = []
    for country in countries:
        part = log[log["Country"] == country]
        if part.empty and options.countries is None:
            continue
        domains.append(make_domain(country, items[items["item_id"].isin(part["item_id"])], part,
                                   source=f"{source} (Country {country!r})", duplicates="keep"))
    return domains


def download_online_retail(dest_dir: str | os.PathLike[str], url: str = ONLINE_RETAIL_URL,
                           overwrite: bool = False) -> Path:
    """Download UCI's ``online+retail.zip`` and extract ``Online Retail.xlsx`` into ``dest_dir`` (atomically).

    An existing workbook is kept unless ``overwrite``; the archive is deleted once extracted. Returns the
    workbook's path.
    """
    dest_dir = Path(dest_dir)
    workbook = dest_dir / ONLINE_RETAIL_MEMBER
    if workbook.exists() and not overwrite:
        logger.info("%s exists; not downloading", workbook)
        return workbook
    archive = download_file(url, dest_dir / "online+retail.zip", overwrite=True)
    extract_zip_member(archive, ONLINE_RETAIL_MEMBER, workbook)
    archive.unlink()
    return workbook

"""Online Retail loader: a synthetic table in every input format, a local-mirror download, and the real data."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prerec_pyro.data.loaders.retail import (
    RetailOptions,
    download_online_retail,
    load_online_retail,
    parse_invoice_dates,
)

T1, T2, T3, T4 = 1291191960, 1291280400, 1291371300, 1291374000  # 2010-12-01 08:26, 12-02 09:00, 12-03 10:15, 11:00


def raw_frame() -> pd.DataFrame:
    """Seven invoice lines: one without Description, one whitespace-only, a cancellation, a guest, two countries."""
    return pd.DataFrame({
        "InvoiceNo": ["536365", "536365", "536366", "536367", "C536368", "536369", "536370"],
        "StockCode": ["85123A", "71053", "22633", "85123A", "71053", "22633", "22633"],
        "Description": ["WHITE HEART", "METAL LANTERN", None, "CREAM HEART", "METAL LANTERN", "HAND WARMER", "  "],
        "Quantity": [6, 6, 6, 2, -1, 3, 1],
        "InvoiceDate": ["12/1/2010 8:26", "12/1/2010 8:26", "12/1/2010 8:28", "12/2/2010 9:00", "12/3/2010 10:15",
                        "12/3/2010 11:00", "12/4/2010 12:00"],
        "UnitPrice": [2.55, 3.39, 1.85, 2.55, 3.39, 2.1, 2.1],
        "CustomerID": [17850.0, 17850.0, 17850.0, 13047.0, 13047.0, np.nan, np.nan],
        "Country": ["United Kingdom", "United Kingdom", "United Kingdom", "Japan", "Japan", "United Kingdom",
                    "France"],
    })


@pytest.fixture(params=["csv", "parquet"])
def table(request, tmp_path: Path) -> Path:
    path = tmp_path / f"retail.{request.param}"
    frame = raw_frame()
    if request.param == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def rows(domain) -> list[list]:
    return domain.interactions.values.tolist()


def test_paper_setting(table: Path) -> None:
    (domain,) = load_online_retail(table)
    assert domain.name == "online_retail"
    assert rows(domain) == [["536365", "WHITE HEART", T1], ["536365", "METAL LANTERN", T1],
                            ["536367", "CREAM HEART", T2], ["536369", "HAND WARMER", T4],
                            ["C536368", "METAL LANTERN", T3]]
    assert domain.items.values.tolist() == [[d, d] for d in ("WHITE HEART", "METAL LANTERN", "CREAM HEART",
                                                             "HAND WARMER")]


def test_stock_code_items_take_their_first_non_empty_description(table: Path) -> None:
    (domain,) = load_online_retail(table, RetailOptions(item="stock_code"))
    assert domain.items.values.tolist() == [["85123A", "WHITE HEART"], ["71053", "METAL LANTERN"],
                                            ["22633", "HAND WARMER"]]
    assert domain.interactions["item_id"].tolist() == ["85123A", "71053", "85123A", "22633", "71053"]


def test_customers_as_users_without_cancellations(table: Path) -> None:
    (domain,) = load_online_retail(table, RetailOptions(user="customer"))
    assert rows(domain) == [["13047", "CREAM HEART", T2], ["13047", "METAL LANTERN", T3],
                            ["17850", "WHITE HEART", T1], ["17850", "METAL LANTERN", T1]]
    (domain,) = load_online_retail(table, RetailOptions(user="customer", drop_cancellations=True))
    assert rows(domain) == [["13047", "CREAM HEART", T2], ["17850", "WHITE HEART", T1],
                            ["17850", "METAL LANTERN", T1]]


def test_by_country(table: Path) -> None:
    japan, uk = load_online_retail(table, RetailOptions(by_country=True))
    assert (japan.name, uk.name) == ("Japan", "United Kingdom")  # France has only a blank Description
    assert rows(japan) == [["536367", "CREAM HEART", T2], ["C536368", "METAL LANTERN", T3]]
    assert japan.items["item_id"].tolist() == ["METAL LANTERN", "CREAM HEART"]
    assert uk.n_interactions == 3 and uk.n_items == 3
    (only,) = load_online_retail(table, RetailOptions(by_country=True, countries=("Japan",)))
    assert only.name == "Japan"
    (pooled,) = load_online_retail(table, RetailOptions(countries=("Japan",)))
    assert pooled.name == "online_retail" and pooled.n_interactions == 2


def test_unknown_country_lists_the_available_ones(table: Path) -> None:
    with pytest.raises(ValueError, match=r"\['Atlantis'\].*\['France', 'Japan', 'United Kingdom'\]"):
        load_online_retail(table, RetailOptions(by_country=True, countries=("Atlantis",)))


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    path = tmp_path / "retail.csv"
    raw_frame().drop(columns=["CustomerID"]).to_csv(path, index=False)
    assert load_online_retail(path)[0].n_interactions == 5  # CustomerID is only needed for customers
    with pytest.raises(ValueError, match=r"retail\.csv: missing column\(s\) \['CustomerID'\]"):
        load_online_retail(path, RetailOptions(user="customer"))


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"retail\.json: unsupported suffix"):
        load_online_retail(tmp_path / "retail.json")
    with pytest.raises(ValueError, match="'shopper'"):
        RetailOptions(user="shopper")
    with pytest.raises(ValueError, match="'sku'"):
        RetailOptions(item="sku")
    frame = raw_frame()
    frame.loc[3, "InvoiceDate"] = "yesterday"
    frame.to_csv(tmp_path / "dates.csv", index=False)
    with pytest.raises(ValueError, match=r"dates\.csv.*'yesterday'"):
        load_online_retail(tmp_path / "dates.csv")


def test_invoice_date_formats() -> None:
    """UCI's month-first strings, ISO strings, other unambiguous dates and datetimes all give the same epoch seconds
    (UTC) through the library's one timestamp reader."""
    expected = [int(pd.Timestamp(t, tz="UTC").timestamp()) for t in ("2010-12-01 08:26", "2011-12-09 12:50")]
    for values in (["12/1/2010 8:26", "12/9/2011 12:50"], ["2010-12-01 08:26:00", "2011-12-09 12:50:00"],
                   ["2010-12-01T08:26", "9 Dec 2011 12:50"]):
        assert parse_invoice_dates(pd.Series(values), "test").tolist() == expected
    dates = pd.Series(pd.to_datetime(["2010-12-01 08:26", "2011-12-09 12:50"]))
    assert parse_invoice_dates(dates, "test").tolist() == expected
    with pytest.raises(ValueError, match="test: column 'InvoiceDate' value 'soon'"):
        parse_invoice_dates(pd.Series(["2010-12-01 08:26", "soon"]), "test")


def test_download_from_a_local_mirror_reads_the_workbook(tmp_path: Path) -> None:
    frame = raw_frame()
    frame["InvoiceDate"] = pd.to_datetime(frame["InvoiceDate"], format="%m/%d/%Y %H:%M")
    frame["InvoiceNo"] = [536365, 536365, 536366, 536367, "C536368", 536369, 536370]  # numbers, as in UCI's file
    workbook = tmp_path / "Online Retail.xlsx"
    frame.to_excel(workbook, index=False)
    archive = tmp_path / "mirror" / "online+retail.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(workbook, "Online Retail.xlsx")
    dest = tmp_path / "dest"
    path = download_online_retail(dest, url=archive.as_uri())
    assert path == dest / "Online Retail.xlsx" and sorted(p.name for p in dest.iterdir()) == ["Online Retail.xlsx"]
    (domain,) = load_online_retail(path)
    assert rows(domain)[0] == ["536365", "WHITE HEART", T1] and domain.n_users == 4
    archive.unlink()
    assert download_online_retail(dest, url=archive.as_uri()) == path  # kept: no second download


def real_parquet() -> Path:
    root = Path(os.environ.get("PREREC_DATA_DIR", Path(__file__).resolve().parents[2] / ".." / "shared" / "data"))
    path = root / "online_retail" / "online_retail.parquet"
    if not path.is_file():
        pytest.skip(f"real Online Retail data not found at {path} (set PREREC_DATA_DIR)")
    return path


def test_real_data_reproduces_the_paper_counts() -> None:
    (domain,) = load_online_retail(real_parquet())
    assert (domain.n_items, domain.n_users, domain.n_interactions) == (4_223, 24_446, 540_455)


def test_real_data_by_country() -> None:
    """The data README's per-country counts (customers as users, without guests and cancellations)."""
    domains = load_online_retail(real_parquet(), RetailOptions(user="customer", drop_cancellations=True,
                                                               by_country=True))
    by_name = {d.name: d for d in domains}
    assert len(domains) == 37 and {"United Kingdom", "Japan", "Germany"} <= set(by_name)
    assert (by_name["United Kingdom"].n_interactions, by_name["United Kingdom"].n_users) == (354_345, 3_921)
    assert (by_name["Japan"].n_interactions, by_name["Japan"].n_users) == (321, 8)
    assert (by_name["Germany"].n_interactions, by_name["Germany"].n_users) == (9_042, 94)

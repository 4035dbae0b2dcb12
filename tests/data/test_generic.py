"""The generic two-table format, as CSV and Parquet."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from prerec_pyro.data.loaders.generic import load_generic, read_table
from prerec_pyro.data.timestamps import epoch_seconds

DAY_2021_03_04, DAY_2021_03_05 = 1614816000, 1614902400
TWO_TIMES = [DAY_2021_03_04 + 1, DAY_2021_03_04 + 2]  # two interactions a second apart


def write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


@pytest.fixture(params=[".csv", ".parquet"])
def suffix(request) -> str:
    return request.param


def test_single_domain(tmp_path: Path, suffix: str) -> None:
    items = write(pd.DataFrame({"item_id": ["i1", "007"], "text": ["Red mug", None]}), tmp_path / f"items{suffix}")
    log = write(pd.DataFrame({"user_id": ["u2", "u1", "u1"], "item_id": ["i1", "007", "i1"],
                              "timestamp": [DAY_2021_03_05, DAY_2021_03_05, DAY_2021_03_04]}),
                tmp_path / f"log{suffix}")
    (domain,) = load_generic(items, log, default_domain="shop")
    assert domain.name == "shop"
    assert domain.items.values.tolist() == [["i1", "Red mug"], ["007", ""]]  # "007" stays text
    assert domain.interactions.values.tolist() == [["u1", "i1", DAY_2021_03_04], ["u1", "007", DAY_2021_03_05],
                                                   ["u2", "i1", DAY_2021_03_05]]


def test_domains_from_a_column_with_shared_and_own_items(tmp_path: Path, suffix: str) -> None:
    items = write(pd.DataFrame({"item_id": ["i1", "i2", "i3"], "text": ["Red mug", "Blue plate", "Green cup"],
                                "domain": ["shop_a", None, "shop_b"]}), tmp_path / f"items{suffix}")
    log = write(pd.DataFrame({"user_id": ["u1", "u1", "u2", "u1"], "item_id": ["i2", "i3", "i1", "i1"],
                              "timestamp": ["2021-03-05", "2021-03-04", "2021-03-04", "1614816000"],
                              "domain": ["shop_b", "shop_b", "shop_a", "shop_a"]}), tmp_path / f"log{suffix}")
    shop_b, shop_a = load_generic(items, log)
    assert (shop_b.name, shop_a.name) == ("shop_b", "shop_a")  # order of first appearance
    assert shop_b.items["item_id"].tolist() == ["i2", "i3"]
    assert shop_a.items["item_id"].tolist() == ["i1", "i2"]
    assert shop_b.interactions.values.tolist() == [["u1", "i3", DAY_2021_03_04], ["u1", "i2", DAY_2021_03_05]]
    assert shop_a.interactions.values.tolist() == [["u1", "i1", DAY_2021_03_04], ["u2", "i1", DAY_2021_03_04]]


def test_items_without_domain_apply_to_every_domain(tmp_path: Path) -> None:
    items = write(pd.DataFrame({"item_id": ["i1"], "text": ["Red mug"]}), tmp_path / "items.csv")
    log = write(pd.DataFrame({"user_id": ["u1", "u1"], "item_id": ["i1", "i1"], "timestamp": TWO_TIMES,
                              "domain": ["a", "b"]}), tmp_path / "log.csv")
    assert [(d.name, d.n_items, d.n_interactions) for d in load_generic(items, log)] == [("a", 1, 1), ("b", 1, 1)]


def test_item_outside_its_domain(tmp_path: Path) -> None:
    items = write(pd.DataFrame({"item_id": ["i1", "i2"], "text": ["x", "y"], "domain": ["a", "b"]}),
                  tmp_path / "items.csv")
    log = write(pd.DataFrame({"user_id": ["u1", "u1"], "item_id": ["i1", "i2"], "timestamp": TWO_TIMES,
                              "domain": ["a", "a"]}), tmp_path / "log.csv")
    with pytest.raises(ValueError, match=r"log\.csv \(domain 'a'\).*'i2'"):
        load_generic(items, log)
    (a,) = load_generic(items, log, drop_unknown_items=True)
    assert a.interactions["item_id"].tolist() == ["i1"]


@pytest.mark.parametrize(("items", "log", "message"), [
    ({"item_id": ["i1"], "title": ["x"]}, {"user_id": ["u"], "item_id": ["i1"], "timestamp": TWO_TIMES[:1]},
     r"items\.csv: missing column\(s\) \['text'\]"),
    ({"item_id": ["i1"], "text": ["x"]}, {"user_id": ["u"], "item_id": ["i1"], "time": [1]},
     r"log\.csv: missing column\(s\) \['timestamp'\]"),
    ({"item_id": ["i1"], "text": ["x"]}, {"user_id": ["u", None], "item_id": ["i1", "i1"], "timestamp": TWO_TIMES},
     r"log\.csv: column 'user_id' is empty on row 3"),
    ({"item_id": ["i1"], "text": ["x"]}, {"user_id": ["u"], "item_id": ["i1"], "timestamp": ["next week"]},
     r"log\.csv: column 'timestamp' value 'next week'"),
    ({"item_id": ["i1"], "text": ["x"], "domain": ["a"]},
     {"user_id": ["u"], "item_id": ["i1"], "timestamp": TWO_TIMES[:1]},
     r"items\.csv: items carry a 'domain' column but .*log\.csv has none"),
])
def test_errors_name_file_and_column(tmp_path: Path, items: dict, log: dict, message: str) -> None:
    items_path = write(pd.DataFrame(items), tmp_path / "items.csv")
    log_path = write(pd.DataFrame(log), tmp_path / "log.csv")
    with pytest.raises(ValueError, match=message):
        load_generic(items_path, log_path)


def test_unsupported_suffix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"items\.json: unsupported suffix '\.json'"):
        load_generic(tmp_path / "items.json", tmp_path / "log.csv")


@pytest.mark.parametrize("fallback", [None, "latin-1"])
def test_a_malformed_csv_is_named(tmp_path: Path, fallback) -> None:
    """A row with more fields than the header is one clear error naming the file, for every loader's reader."""
    from prerec_pyro.data.tables import read_frame

    path = tmp_path / "items.csv"
    path.write_text("item_id,text\ni1,Red mug\ni2,Blue,plate,extra\n")
    with pytest.raises(ValueError, match=r"items\.csv: not a well-formed CSV"):
        read_frame(path, ("item_id", "text"), fallback_encoding=fallback)


def test_epoch_seconds_forms() -> None:
    mixed = pd.Series(["1614816000", "2021-03-05", "2021-03-04T10:00:00+02:00", "2021-03-04 10:15:00"])
    assert epoch_seconds(mixed, "t").tolist() == [DAY_2021_03_04, DAY_2021_03_05, DAY_2021_03_04 + 8 * 3600,
                                                  DAY_2021_03_04 + 10 * 3600 + 15 * 60]
    paris = pd.Series(pd.to_datetime(["2021-03-05 02:00"])).dt.tz_localize("Europe/Paris")
    assert epoch_seconds(paris, "t").tolist() == [DAY_2021_03_05 + 3600]
    assert epoch_seconds(pd.Series([DAY_2021_03_04 + 1.0, DAY_2021_03_04 + 2.4]), "t").tolist() == [
        DAY_2021_03_04 + 1, DAY_2021_03_04 + 2]


@pytest.mark.parametrize("values, message", [
    ([20230414, 20230415], r"column 'timestamp' holds numbers such as 20230414 that look like dates \(YYYYMMDD\).*"
                           r"--date-format '%Y%m%d'"),
    (["20230414", "20230501"], r"look like dates \(YYYYMMDD\)"),
    ([19460, 19461, 19470], r"falls entirely in 1970 \(1970-01-01 05:24:20 to 1970-01-01 05:24:30\)"),  # day numbers
    ([45000.5, 45001.25], r"falls entirely in 1970"),  # spreadsheet serials
])
def test_numbers_that_are_no_clock_are_refused_with_what_they_read_as(values, message):
    with pytest.raises(ValueError, match=message):
        epoch_seconds(pd.Series(values), "interactions.csv")


@pytest.mark.parametrize("codes", [["20210304", "20210305"], [20210304, 20210305], [20210304.0, 20210305.0]])
def test_date_codes_read_with_their_format(codes):
    assert epoch_seconds(pd.Series(codes), "t", date_format="%Y%m%d").tolist() == [DAY_2021_03_04, DAY_2021_03_05]


def test_a_benchmark_table_entry_takes_its_date_format(tmp_path):
    from prerec_pyro.data.benchmarks import benchmark_from_toml

    pd.DataFrame({"item_id": ["i1", "i2"], "text": ["a", "b"], "domain": ["x", "y"]}).to_csv(tmp_path / "items.csv",
                                                                                          index=False)
    pd.DataFrame({"user_id": ["u", "u", "v", "v"], "item_id": ["i1", "i1", "i2", "i2"], "domain": ["x", "x", "y", "y"],
                  "timestamp": ["04/03/2021", "05/03/2021", "04/03/2021", "05/03/2021"]}).to_csv(
        tmp_path / "interactions.csv", index=False)
    toml = tmp_path / "b.toml"
    toml.write_text('sources = ["x"]\ntargets = ["y"]\nk_percent = 50\n[data]\nitems = "items.csv"\n'
                    'interactions = "interactions.csv"\n')
    with pytest.raises(ValueError, match=r"date_format = '%d/%m/%Y' in the benchmark TOML"):
        benchmark_from_toml(toml).load(None)
    toml.write_text(toml.read_text() + 'date_format = "%d/%m/%Y"\n')
    domains = {d.name: d for d in benchmark_from_toml(toml).load(None)}
    assert domains["x"].interactions["timestamp"].tolist() == [DAY_2021_03_04, DAY_2021_03_05]


def test_a_semicolon_separated_file_gets_a_separator_hint(tmp_path):
    (tmp_path / "items.csv").write_text("item_id;text\ni1;a mug\n")
    with pytest.raises(ValueError, match=r"items\.csv: missing column\(s\).*looks ';'-separated"):
        read_table(tmp_path / "items.csv", ("item_id", "text"))

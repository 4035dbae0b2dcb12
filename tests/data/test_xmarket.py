"""XMarket loader on small fixture files written in the documented format (plain and gzip'd)."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from prerec_pyro.data.loaders.xmarket import (
    MARKETS,
    download_xmarket,
    find_xmarket_file,
    load_xmarket,
    read_ratings,
    read_reviews,
    resolve_market,
    xmarket_url,
)

PHRASE = " This item belongs to the following categories: "
DAY_2019_12_31, DAY_2020_01_01, DAY_2020_01_02, DAY_2021_03_04 = 1577750400, 1577836800, 1577923200, 1614816000

METADATA_JP = [
    {"asin": "B001", "title": "Cable", "features": ["USB-C", "1 m"], "categories": ["Electronics", "Cables"],
     "price": "", "related": {"alsoBought": ["B002"]}, "ratingDist": {"5": "59%"}},
    None,
    {"asin": "B002", "title": "Mouse", "features": [], "categories": ["Electronics"]},
    {"asin": "B003", "title": None, "features": ["Wireless"], "categories": []},
]
REVIEWS_JP = [
    [{"reviewerID": "u1", "asin": "B001", "cleanReviewTime": "2020-01-02", "overall": 5.0, "reviewText": "ok"},
     None,
     {"reviewerID": "u2", "asin": "B002", "cleanReviewTime": "2020-01-01", "reviewTime": "1 January 2020"}],
    None,
    [{"reviewerID": "u1", "asin": "B002", "cleanReviewTime": "2019-12-31"},
     {"reviewerID": "u1", "asin": "B999", "cleanReviewTime": "2020-01-05"}],
    [],
]


def write_lines(path: Path, values: list, compress: bool = False) -> Path:
    """Write one JSON value per line (``None`` -> ``null``), gzip'd when ``compress``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(v) + "\n" for v in values)
    if compress:
        with gzip.open(path.with_name(path.name + ".gz"), "wt", encoding="utf8") as out:
            out.write(text)
        return path.with_name(path.name + ".gz")
    path.write_text(text, encoding="utf8")
    return path


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    """Japan in the site's nested layout (metadata gzip'd), Germany flat; user u1 reviews in both."""
    jp = tmp_path / "jp" / "Electronics"
    write_lines(jp / "metadata_jp_Electronics.json", METADATA_JP, compress=True)
    write_lines(jp / "reviews_jp_Electronics.json", REVIEWS_JP)
    (jp / "ratings_jp_Electronics.txt").write_text("u1 B001 5.0 2020-01-02\nu3  B003\t4.0 2021-03-04\n")
    write_lines(tmp_path / "metadata_de_Electronics.json", [{"asin": "D1", "title": "Kabel", "features": ["x"],
                                                               "categories": ["Elektronik"]}])
    write_lines(tmp_path / "reviews_de_Electronics.json",
                [[{"reviewerID": "u1", "asin": "D1", "cleanReviewTime": "2021-03-04"}]], compress=True)
    return tmp_path


def test_item_text_is_exact(root: Path) -> None:
    (japan,) = load_xmarket(root, ["jp"])
    assert japan.name == "japan"
    assert japan.items["item_id"].tolist() == ["B001", "B002", "B003"]
    assert japan.items["text"].tolist() == [
        "Cable USB-C 1 m" + PHRASE + "Electronics Cables",
        "Mouse " + PHRASE + "Electronics",
        " Wireless" + PHRASE,
    ]


def test_reviews_give_utc_day_timestamps_and_drop_unknown_items(root: Path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="prerec_pyro.data.loaders.xmarket"):
        (japan,) = load_xmarket(root, "Japan")
    expected = pd.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": ["B002", "B001", "B002"],
                             "timestamp": [DAY_2019_12_31, DAY_2020_01_02, DAY_2020_01_01]})
    pd.testing.assert_frame_equal(japan.interactions, expected, check_dtype=False)
    assert japan.interactions["timestamp"].dtype == "int64"
    assert "dropped 1 of 4 reviews" in caplog.text


def test_unknown_items_raise_when_not_dropped(root: Path) -> None:
    with pytest.raises(ValueError, match="B999"):
        load_xmarket(root, ["jp"], drop_unknown_items=False)


def test_ratings_source(root: Path) -> None:
    (japan,) = load_xmarket(root, ["jp"], source="ratings")
    assert japan.interactions.values.tolist() == [["u1", "B001", DAY_2020_01_02], ["u3", "B003", DAY_2021_03_04]]


def test_several_markets_share_raw_user_ids(root: Path) -> None:
    japan, germany = load_xmarket(root, ["jp", "DE"])
    assert (japan.name, germany.name) == ("japan", "germany")
    assert germany.interactions.values.tolist() == [["u1", "D1", DAY_2021_03_04]]
    assert "u1" in set(japan.interactions["user_id"])
    assert germany.items["text"].tolist() == ["Kabel x" + PHRASE + "Elektronik"]


def test_categories_are_merged(root: Path) -> None:
    books = root / "jp" / "Books"
    write_lines(books / "metadata_jp_Books.json", [{"asin": "K1", "title": "Novel", "features": [],
                                                     "categories": ["Books"]}])
    write_lines(books / "reviews_jp_Books.json", [[{"reviewerID": "u9", "asin": "K1",
                                                      "cleanReviewTime": "2020-01-01"}]])
    (japan,) = load_xmarket(root, ["jp"], categories=("Electronics", "Books"))
    assert japan.items["item_id"].tolist() == ["B001", "B002", "B003", "K1"]
    assert japan.n_interactions == 4 and japan.n_users == 3


def test_missing_metadata_field_names_file_and_field(tmp_path: Path) -> None:
    write_lines(tmp_path / "metadata_jp_Electronics.json", [{"asin": "B1", "title": "t", "features": []}])
    write_lines(tmp_path / "reviews_jp_Electronics.json", [[{"reviewerID": "u", "asin": "B1",
                                                               "cleanReviewTime": "2020-01-01"}]])
    with pytest.raises(ValueError, match=r"metadata_jp_Electronics\.json.*\['categories'\]"):
        load_xmarket(tmp_path, ["jp"])


def test_missing_review_field_names_file_and_field(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "reviews_jp_Electronics.json", [[{"reviewerID": "u", "asin": "B1"}]])
    with pytest.raises(ValueError, match=r"reviews_jp_Electronics\.json.*\['cleanReviewTime'\]"):
        read_reviews(path)


@pytest.mark.parametrize(("lines", "message"), [
    (['[{"reviewerID": "u", "asin": "B1", "cleanReviewTime": "2020-01-01"}]', '{"reviewerID": "u"}'],
     "line 2 is not a JSON list"),
    (['[{"reviewerID": "u", "asin": "B1", "cleanReviewTime": "01/02/2020"}]'],
     "'01/02/2020' is not the format '%Y-%m-%d'"),
    (['[{"reviewerID": "u", "asin": "B1", "cleanReviewTime": "2020-01-01"}, 7]'], "line 1 holds a int"),
    (['[{"reviewerID": "u", "asin": "B1", "cleanReviewTime": "2020-01-01"}', ''], "not valid JSON"),
    (['[{"reviewerID": "u", "asin": "B1", "cleanReviewTime": "2020-01-01"}]',
      '[{"reviewerID": null, "asin": "B1", "cleanReviewTime": "2020-01-01"}]'], "line 2 lacks a value"),
    (["null", "[]"], "holds no records"),
])
def test_malformed_reviews(tmp_path: Path, lines: list[str], message: str) -> None:
    path = tmp_path / "reviews_jp_Electronics.json"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=message) as info:
        read_reviews(path)
    assert str(path) in str(info.value)


def test_malformed_ratings(tmp_path: Path) -> None:
    short = tmp_path / "ratings_short.txt"
    short.write_text("u1 B1 5 2020-01-01\nu2 B1 4\n")
    with pytest.raises(ValueError, match=r"ratings_short\.txt: row 2 has fewer than 4 fields"):
        read_ratings(short)
    long = tmp_path / "ratings_long.txt"
    long.write_text("u1 B1 5 2020-01-01\nu2 B1 4 2020-01-01 extra\n")
    with pytest.raises(ValueError, match=r"ratings_long\.txt"):
        read_ratings(long)


def test_missing_file_lists_candidates(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"jp/Electronics/metadata_jp_Electronics\.json\.gz"):
        find_xmarket_file(tmp_path, "metadata", "jp", "Electronics")


def test_bad_source_and_duplicate_markets(root: Path) -> None:
    with pytest.raises(ValueError, match="'clicks'"):
        load_xmarket(root, ["jp"], source="clicks")
    with pytest.raises(ValueError, match="twice"):
        load_xmarket(root, ["jp", "japan"])


def test_resolve_market() -> None:
    assert resolve_market("JP") == "jp"
    assert resolve_market("Japan") == "jp"
    assert resolve_market("Saudi Arabia") == "sa"
    assert resolve_market("united-kingdom") == "uk"
    assert len(MARKETS) == 18 and {"nl", "tr"} <= set(MARKETS)
    with pytest.raises(ValueError, match=r"'atlantis'.*jp \(japan\)"):
        resolve_market("atlantis")


def test_url_layout() -> None:
    assert xmarket_url("metadata", "Japan", "Electronics") == (
        "https://ciir.cs.umass.edu/downloads/XMarket/FULL/jp/Electronics/metadata_jp_Electronics.json.gz")
    assert xmarket_url("ratings", "us", "Books", base_url="http://mirror/x/") == (
        "http://mirror/x/us/Books/ratings_us_Books.txt.gz")


def test_download_from_a_local_mirror(root: Path, tmp_path: Path) -> None:
    """A file:// mirror in the site's layout: downloads land where load_xmarket finds them."""
    mirror = tmp_path / "mirror"
    jp = mirror / "jp" / "Electronics"
    jp.mkdir(parents=True)
    (jp / "metadata_jp_Electronics.json.gz").write_bytes((root / "jp/Electronics/metadata_jp_Electronics.json.gz")
                                                         .read_bytes())
    for name in ("reviews_jp_Electronics.json", "ratings_jp_Electronics.txt"):
        (jp / f"{name}.gz").write_bytes(gzip.compress((root / "jp/Electronics" / name).read_bytes()))
    dest = tmp_path / "downloaded"
    paths = download_xmarket(dest, ["japan"], base_url=mirror.as_uri())
    assert [p.relative_to(dest).as_posix() for p in paths] == [
        "jp/Electronics/metadata_jp_Electronics.json.gz", "jp/Electronics/reviews_jp_Electronics.json.gz",
        "jp/Electronics/ratings_jp_Electronics.txt.gz"]
    assert not list(dest.rglob("*.part"))
    (fetched,) = load_xmarket(dest, ["jp"])
    (original,) = load_xmarket(root, ["jp"])
    pd.testing.assert_frame_equal(fetched.interactions, original.interactions)
    pd.testing.assert_frame_equal(fetched.items, original.items)


def test_download_rejects_unknown_category(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'Gadgets'"):
        download_xmarket(tmp_path, ["jp"], categories=("Gadgets",))

"""RecBole atomic-file loader on fixture files, and on the real ml-1m when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prerec_pyro.data.loaders.recbole import (
    ML1M_AGE_DOMAINS,
    ML1M_TEXT_COLUMNS,
    DomainSpec,
    load_recbole,
    read_atomic,
)

INTER = """user_id:token\titem_id:token\trating:float\ttimestamp:float
u1\tToy Story (1995)\t5\t978300760
u1\tHeat (1995)\t3\t978300700
u2\tToy Story (1995)\t4\t978300800
u3\tHeat (1995)\t2\t978300900
u3\tGhost "Movie" (1990)\t5\t978300950
u4\tHeat (1995)\t4\t978301000
u4\tNot In Item File\t5\t978301100
"""
ITEM = """item_id:token\tmovie_title:token\trelease_year:float\tgenre:token_seq\tkind:token
Toy Story (1995)\tToy Story\t1995.0\tAnimation Children's Comedy\tfamily
Heat (1995)\tHeat\t1995\tAction Crime Thriller\tadult
Ghost "Movie" (1990)\tGhost "Movie"\t\tHorror\tadult
Unrated (2000)\tUnrated\t2000\tDrama\tfamily
"""
USER = """user_id:token\tage:float\tgender:token
u1\t1.0\tF
u2\t25\tM
u3\t18\tF
u4\t99\tM
"""


@pytest.fixture()
def directory(tmp_path: Path) -> Path:
    for suffix, text in (("inter", INTER), ("item", ITEM), ("user", USER)):
        (tmp_path / f"toy.{suffix}").write_text(text, encoding="utf8")
    return tmp_path


def test_one_domain_with_exact_text(directory: Path) -> None:
    (domain,) = load_recbole(directory, "toy", ML1M_TEXT_COLUMNS)
    assert domain.name == "toy"
    assert domain.items.values.tolist() == [
        ["Toy Story (1995)", "Toy Story, 1995, Animation Children's Comedy"],
        ["Heat (1995)", "Heat, 1995, Action Crime Thriller"],
        ['Ghost "Movie" (1990)', 'Ghost "Movie", Horror'],
        ["Unrated (2000)", "Unrated, 2000, Drama"],
    ]
    assert domain.interactions.values.tolist() == [
        ["u1", "Heat (1995)", 978300700], ["u1", "Toy Story (1995)", 978300760],
        ["u2", "Toy Story (1995)", 978300800], ["u3", "Heat (1995)", 978300900],
        ["u3", 'Ghost "Movie" (1990)', 978300950], ["u4", "Heat (1995)", 978301000],
    ]


def test_min_rating(directory: Path) -> None:
    (domain,) = load_recbole(directory, "toy", ["movie_title"], min_rating=4)
    assert domain.interactions[["user_id", "item_id"]].values.tolist() == [
        ["u1", "Toy Story (1995)"], ["u2", "Toy Story (1995)"], ["u3", 'Ghost "Movie" (1990)'], ["u4", "Heat (1995)"]]


def test_user_column_domains_with_mapping(directory: Path) -> None:
    spec = DomainSpec("user", "age", ML1M_AGE_DOMAINS)
    domains = load_recbole(directory, "toy", ["movie_title"], domain_by=spec)
    assert [d.name for d in domains] == ["under_18", "18_24", "25_34"]  # mapping order; age 99 is dropped
    under_18, young, middle = domains
    assert under_18.interactions["user_id"].unique().tolist() == ["u1"] and under_18.n_interactions == 2
    assert young.interactions["item_id"].tolist() == ["Heat (1995)", 'Ghost "Movie" (1990)']
    assert middle.interactions["user_id"].tolist() == ["u2"]
    assert all(d.n_items == 4 for d in domains)  # the whole catalogue in every user-defined domain


def test_user_column_domains_without_mapping_and_merged_values(directory: Path) -> None:
    names = [d.name for d in load_recbole(directory, "toy", ["movie_title"], DomainSpec("user", "gender"))]
    assert names == ["F", "M"]
    merged = load_recbole(directory, "toy", ["movie_title"], DomainSpec("user", "age", {"1": "young", "18": "young"}))
    assert [(d.name, d.n_users, d.n_interactions) for d in merged] == [("young", 2, 4)]


def test_item_column_domains_share_users(directory: Path) -> None:
    family, adult = load_recbole(directory, "toy", ["movie_title"],
                                 DomainSpec("item", "kind", {"family": "family", "adult": "adult"}))
    assert family.items["item_id"].tolist() == ["Toy Story (1995)", "Unrated (2000)"]
    assert adult.items["item_id"].tolist() == ["Heat (1995)", 'Ghost "Movie" (1990)']
    assert family.interactions["user_id"].tolist() == ["u1", "u2"]
    assert adult.interactions["user_id"].tolist() == ["u1", "u3", "u3", "u4"]


def test_missing_column_names_file_and_column(directory: Path) -> None:
    with pytest.raises(ValueError, match=r"toy\.item: missing column\(s\) \['plot'\]"):
        load_recbole(directory, "toy", ["movie_title", "plot"])
    with pytest.raises(ValueError, match=r"toy\.user: missing column\(s\) \['income'\]"):
        load_recbole(directory, "toy", ["movie_title"], DomainSpec("user", "income"))
    (directory / "bare.inter").write_text("user_id:token\titem_id:token\nu1\ti1\n")
    with pytest.raises(ValueError, match=r"bare\.inter: missing column\(s\) \['timestamp'\]"):
        load_recbole(directory, "bare", ["movie_title"])


def test_missing_file_and_bad_values(directory: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothing\.inter"):
        load_recbole(directory, "nothing", ["movie_title"])
    (directory / "toy.user").unlink()
    with pytest.raises(FileNotFoundError, match=r"toy\.user"):
        load_recbole(directory, "toy", ["movie_title"], DomainSpec("user", "age"))
    (directory / "toy.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\nu1\tHeat (1995)\tsoon\n")
    with pytest.raises(ValueError, match=r"toy\.inter: column 'timestamp' has non-numeric value 'soon'"):
        load_recbole(directory, "toy", ["movie_title"])
    with pytest.raises(ValueError, match="'genre'"):
        DomainSpec("genre", "x")
    with pytest.raises(ValueError, match="text_columns"):
        load_recbole(directory, "toy", "movie_title")


def test_read_atomic_strips_types_and_keeps_text(directory: Path) -> None:
    users = read_atomic(directory / "toy.user")
    assert list(users.columns) == ["user_id", "age", "gender"]
    assert users["age"].tolist() == ["1.0", "25", "18", "99"]


def ml1m_dir() -> Path:
    root = Path(os.environ.get("PREREC_DATA_DIR", Path(__file__).resolve().parents[2] / ".." / "shared" / "data"))
    folder = root / "movielens"
    if not (folder / "ml-1m.inter").is_file():
        pytest.skip(f"real ml-1m not found in {folder} (set PREREC_DATA_DIR)")
    return folder


def test_real_ml1m_age_domains() -> None:
    domains = load_recbole(ml1m_dir(), "ml-1m", ML1M_TEXT_COLUMNS, DomainSpec("user", "age", ML1M_AGE_DOMAINS))
    assert [d.name for d in domains] == list(ML1M_AGE_DOMAINS.values())
    assert sum(d.n_interactions for d in domains) == 1_000_209
    assert sum(d.n_users for d in domains) == 6_040
    assert [d.n_users for d in domains] == [222, 1_103, 2_096, 1_193, 550, 496, 380]
    text = domains[0].items.set_index("item_id")["text"]
    assert text["Toy Story (1995)"] == "Toy Story, 1995, Animation Children's Comedy"

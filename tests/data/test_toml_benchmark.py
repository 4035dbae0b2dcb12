"""Benchmarks from TOML files: the example's tables, the per-domain form, validation and the name's round trip."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from prerec_pyro.data.benchmarks import Benchmark, benchmark_from_toml, get_benchmark
from prerec_pyro.data.loaders.generic import load_generic

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "own_data"
SOURCES = ("shop_berlin", "shop_paris", "shop_madrid")
TARGETS = ("shop_oslo",)
HEADER = 'sources = ["shop_berlin", "shop_paris", "shop_madrid"]\ntargets = ["shop_oslo"]\nk_percent = 5\n'
DATA = '[data]\nitems = "items.csv"\ninteractions = "interactions.csv"\n'


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The example's two tables copied into a fresh folder."""
    for name in ("items.csv", "interactions.csv"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    return tmp_path


def write_toml(folder: Path, text: str, name: str = "shops.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def assert_same_domains(left: list, right: list) -> None:
    assert [d.name for d in left] == [d.name for d in right]
    for a, b in zip(left, right):
        pd.testing.assert_frame_equal(a.items, b.items)
        pd.testing.assert_frame_equal(a.interactions, b.interactions)


def test_the_example_tables_give_the_benchmark_built_by_hand(folder: Path) -> None:
    path = write_toml(folder, HEADER + '[defaults]\nmax_epochs = 3\nlr = 1e-3\ncosine_epochs = 0\n' + DATA)
    by_hand = Benchmark("shops", SOURCES, TARGETS, 5.0,
                        lambda _: load_generic(folder / "items.csv", folder / "interactions.csv"))
    loaded = benchmark_from_toml(path)
    assert (loaded.sources, loaded.targets, loaded.k_percent) == (by_hand.sources, by_hand.targets, 5.0)
    assert (loaded.interval_days, loaded.text_model) == (15.0, "all-MiniLM-L6-v2")
    assert loaded.defaults == {"max_epochs": 3, "lr": 1e-3, "cosine_epochs": 0}  # 0 is a setting (off)
    by_name = {d.name: d for d in by_hand.load(None)}
    assert_same_domains(loaded.load(None), [by_name[n] for n in SOURCES + TARGETS])
    assert loaded.name == str(path.resolve()) and loaded.folder.startswith("shops-")
    assert "shops" in loaded.description


def test_per_domain_tables_give_the_same_domains(folder: Path) -> None:
    items = pd.read_csv(folder / "items.csv", dtype=str, keep_default_na=False)
    log = pd.read_csv(folder / "interactions.csv", dtype=str)
    tables = ""
    for shop in SOURCES + TARGETS:
        items[items["domain"].isin(["", shop])].drop(columns="domain").to_csv(folder / f"{shop}_items.csv",
                                                                              index=False)
        log[log["domain"] == shop].drop(columns="domain").to_csv(folder / f"{shop}_log.csv", index=False)
        tables += f'[domains.{shop}]\nitems = "{shop}_items.csv"\ninteractions = "{shop}_log.csv"\n'
    per_domain = benchmark_from_toml(write_toml(folder, HEADER + tables, "per_domain.toml"))
    together = benchmark_from_toml(write_toml(folder, HEADER + DATA))
    assert_same_domains(per_domain.load(None), together.load(None))


def test_get_benchmark_round_trips_the_name_from_anywhere(folder: Path, monkeypatch) -> None:
    write_toml(folder, 'name = "My shops!"\ndescription = "a test"\ninterval_days = 7\n' + HEADER + DATA)
    monkeypatch.chdir(folder)
    first = get_benchmark("shops.toml")  # relative to the working directory
    assert Path(first.name).is_absolute() and first.folder.startswith("My_shops-")
    monkeypatch.chdir(folder.parent)
    again = get_benchmark(first.name)
    for key in ("name", "sources", "targets", "k_percent", "interval_days", "folder", "description", "defaults"):
        assert getattr(again, key) == getattr(first, key), key
    assert again.description == "My shops!: a test"
    assert get_benchmark("synthetic-small").folder == "synthetic-small"


@pytest.mark.parametrize("text, match", [
    ("colour = 1\n" + HEADER + DATA, r"top level: unknown key\(s\) \['colour'\]"),
    (HEADER + "[defaults]\nepochs = 3\n" + DATA, r"\[defaults\]: unknown key\(s\) \['epochs'\]"),
    (HEADER + "[defaults]\nhidden_dim = 3.5\n" + DATA, r"defaults.hidden_dim: expected a positive int, got 3.5"),
    (HEADER + "[defaults]\ncosine_epochs = -2\n" + DATA,
     r"defaults.cosine_epochs: expected a positive int or 0 \(off\), got -2"),
    (HEADER + DATA + 'extra = "x.csv"\n', r"\[data\]: unknown key\(s\) \['extra'\]"),
    (HEADER.replace('["shop_oslo"]', '["shop_paris"]') + DATA, r"targets: \['shop_paris'\] also listed in sources"),
    (HEADER.replace("k_percent = 5", "k_percent = 0") + DATA, r"k_percent: expected a positive number, got 0"),
    (HEADER.replace("k_percent = 5", "k_percent = 150") + DATA, r"k_percent: expected a percentage in \(0, 100\]"),
    (HEADER.replace("k_percent = 5", 'k_percent = "5"') + DATA, r"k_percent: expected a positive number, got '5'"),
    (HEADER.replace("k_percent = 5\n", "") + DATA, r"k_percent: missing"),
    (HEADER.replace('["shop_oslo"]', "[]") + DATA, r"targets: expected a non-empty list of domain names"),
    (HEADER + DATA.replace("items.csv", "nowhere.csv"), r"data.items: file .*nowhere.csv does not exist"),
    (HEADER, r"data: expected exactly one of \[data\]"),
    (HEADER + DATA + '[domains.shop_oslo]\nitems = "items.csv"\ninteractions = "interactions.csv"\n',
     r"data: expected exactly one of \[data\]"),
    (HEADER + '[domains.shop_berlin]\nitems = "items.csv"\ninteractions = "interactions.csv"\n',
     r"sources: \['shop_paris', 'shop_madrid'\] not in the data"),
    ("sources = [\n", r"not valid TOML"),
])
def test_invalid_files_name_the_file_and_the_key(folder: Path, text: str, match: str) -> None:
    path = write_toml(folder, text)
    with pytest.raises(ValueError, match=match) as error:
        benchmark_from_toml(path)
    assert str(path) in str(error.value)


def test_a_domain_missing_from_the_data_is_named_when_loading(folder: Path) -> None:
    path = write_toml(folder, HEADER.replace('["shop_oslo"]', '["shop_tromso"]') + DATA)
    with pytest.raises(ValueError, match=r"targets: \['shop_tromso'\] not in the data .*found \['shop_berlin'") as e:
        benchmark_from_toml(path).load(None)
    assert str(path) in str(e.value)


def test_a_per_domain_table_holding_another_domain_is_refused(folder: Path) -> None:
    tables = "".join(f'[domains.{shop}]\nitems = "items.csv"\ninteractions = "interactions.csv"\n'
                     for shop in SOURCES + TARGETS)
    with pytest.raises(ValueError, match=r"\[domains.shop_berlin\]: .*interactions.csv holds domain\(s\)"):
        benchmark_from_toml(write_toml(folder, HEADER + tables)).load(None)


def test_unknown_names_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown benchmark 'atlantis'; expected one of \[.*'synthetic'.*\.toml"):
        get_benchmark("atlantis")
    with pytest.raises(ValueError, match=r"benchmark file .*absent.toml does not exist"):
        get_benchmark(str(tmp_path / "absent.toml"))


def test_a_toml_benchmark_equals_the_named_one_it_copies(tmp_path: Path) -> None:
    """synthetic-small written out as generic tables, one [domains.<name>] pair per domain: the same benchmark."""
    named = get_benchmark("synthetic-small")
    domains = named.load(None)
    lines = [f"sources = {list(named.sources)!r}".replace("'", '"'),
             f"targets = {list(named.targets)!r}".replace("'", '"'), f"k_percent = {named.k_percent}",
             f"interval_days = {named.interval_days}", f'text_model = "{named.text_model}"']
    for domain in domains:
        domain.items.to_csv(tmp_path / f"{domain.name}_items.csv", index=False)
        domain.interactions.to_csv(tmp_path / f"{domain.name}_log.csv", index=False)
        lines += [f"[domains.{domain.name}]", f'items = "{domain.name}_items.csv"',
                  f'interactions = "{domain.name}_log.csv"']
    copy = get_benchmark(str(write_toml(tmp_path, "\n".join(lines) + "\n", "copy.toml")))
    assert (copy.sources, copy.targets, copy.k_percent, copy.interval_days, copy.text_model) == \
        (named.sources, named.targets, named.k_percent, named.interval_days, named.text_model)
    copied = {d.name: d for d in copy.load(None)}
    assert_same_domains([copied[d.name] for d in domains], domains)


def test_data_entries_mix_public_datasets_and_tables(folder: Path, tmp_path_factory) -> None:
    """[[data]] entries: the shops' tables and synthetic-small's markets (a public dataset) in one benchmark."""
    named = get_benchmark("synthetic-small")
    text = ('sources = ["shop_berlin", "india"]\ntargets = ["japan"]\nk_percent = 5\n'
            '[[data]]\nitems = "items.csv"\ninteractions = "interactions.csv"\n'
            '[[data]]\ndataset = "synthetic-small"\ndomains = ["india", "japan"]\n')
    mixed = benchmark_from_toml(write_toml(folder, text))
    domains = {d.name: d for d in mixed.load(None)}
    assert list(domains) == ["shop_berlin", "india", "japan"]
    shops = {d.name: d for d in load_generic(folder / "items.csv", folder / "interactions.csv")}
    markets = {d.name: d for d in named.load(None)}
    assert_same_domains(list(domains.values()), [shops["shop_berlin"], markets["india"], markets["japan"]])


@pytest.mark.parametrize("entry, match", [
    ('dataset = "atlantis"\ndomains = ["india"]\n', r"data\[0\].dataset: unknown dataset 'atlantis'; expected one of"),
    ('dataset = "synthetic"\ndomains = ["india"]\ncategories = ["x"]\n',
     r"\[data\[0\]\]: unknown key\(s\) \['categories'\]"),
    ('dataset = "synthetic"\ndomains = []\n', r"data\[0\].domains: expected a non-empty list of domain names"),
    ('dataset = "xmarket"\ndomains = ["india", "japan"]\ncategories = "Electronics"\n',
     r"data\[0\].categories: expected a non-empty list of names"),
    ('dataset = "synthetic"\ndomains = ["india"]\n', r"targets: \['japan'\] not in the data: its entries name"),
])
def test_invalid_dataset_entries_name_the_file_and_the_key(tmp_path: Path, entry: str, match: str) -> None:
    path = write_toml(tmp_path, 'sources = ["india"]\ntargets = ["japan"]\nk_percent = 5\n[[data]]\n' + entry)
    with pytest.raises(ValueError, match=match) as error:
        benchmark_from_toml(path)
    assert str(path) in str(error.value)


def test_a_dataset_domain_that_is_not_there_or_comes_twice_is_named_when_loading(tmp_path: Path) -> None:
    head = 'sources = ["india"]\ntargets = ["japan"]\nk_percent = 5\n'
    entry = '[[data]]\ndataset = "synthetic-small"\ndomains = ["india", "japan"]\n'
    absent = write_toml(tmp_path, head + entry.replace('"japan"]', '"japan", "peru"]'))
    with pytest.raises(ValueError, match=r"dataset 'synthetic-small' has no domain\(s\) \['peru'\]; it holds"):
        benchmark_from_toml(absent).load(None)
    twice = write_toml(tmp_path, head + entry + entry, "twice.toml")
    with pytest.raises(ValueError, match=r"\[data\[1\]\]: domain\(s\) \['india', 'japan'\] also come from an earlier"):
        benchmark_from_toml(twice).load(None)

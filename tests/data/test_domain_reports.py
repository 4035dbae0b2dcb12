"""make_domain reports what it does to a catalogue: duplicate ids and a text column with nothing in it."""

import pandas as pd

from prerec_pyro.data.domain import make_domain


def test_duplicate_ids_and_empty_texts_are_reported(caplog):

    log = pd.DataFrame({"user_id": ["u", "u"], "item_id": ["a", "b"], "timestamp": [1_614_816_000, 1_614_816_060]})
    items = pd.DataFrame({"item_id": ["a", "a", "b"], "text": ["red mug", "blue mug", "plate"]})
    domain = make_domain("shop", items, log, source="items.csv")
    assert list(domain.items["text"]) == ["red mug", "plate"]
    assert "items.csv: 1 duplicate item row(s) (e.g. id 'a')" in caplog.text and "differing texts" in caplog.text
    make_domain("shop", pd.DataFrame({"item_id": ["a", "b"], "text": ["", None]}), log, source="blank.csv")
    assert "blank.csv: every item's text is empty" in caplog.text


def test_the_generic_loader_names_the_items_file_for_item_problems(tmp_path, caplog):
    from prerec_pyro.data.loaders.generic import load_generic

    pd.DataFrame({"item_id": ["a", "a", "b"], "text": ["red mug", "blue mug", "plate"]}).to_csv(tmp_path / "items.csv",
                                                                                                index=False)
    pd.DataFrame({"user_id": ["u", "u"], "item_id": ["a", "b"], "timestamp": [1_614_816_000, 1_614_816_060]}).to_csv(
        tmp_path / "interactions.csv", index=False)
    load_generic(tmp_path / "items.csv", tmp_path / "interactions.csv")
    assert f"{tmp_path / 'items.csv'}: 1 duplicate item row(s)" in caplog.text

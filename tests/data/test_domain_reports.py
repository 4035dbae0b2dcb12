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

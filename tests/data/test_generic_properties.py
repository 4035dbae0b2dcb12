"""Property-based test of the generic loader (Hypothesis): random tables with missing values, odd ids, unicode and
mixed timestamp forms give either a ValueError that names the file and a column or value, or domains whose
invariants hold. Never a half-read table or a silently different clock."""

import string

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prerec_pyro.data.loaders.generic import load_generic
from prerec_pyro.data.timestamps import epoch_seconds

DAY = 1_614_816_000  # 2021-03-04 00:00 UTC
FIRST, LAST = pd.Timestamp("2000-01-01"), pd.Timestamp("2030-12-31")  # the dates drawn (epochs: 2021 to 2021 + 116 d)
IDS = st.one_of(st.text(alphabet=string.ascii_letters + string.digits + " -_/é中😀", min_size=1, max_size=6),
                st.integers(min_value=-5, max_value=10**12).map(str), st.sampled_from(["0", "00", "1.0", "nan", "NA"]))
TIMES = st.one_of(
    st.integers(min_value=DAY, max_value=DAY + 10**7),  # epoch seconds
    st.integers(min_value=DAY, max_value=DAY + 10**7).map(lambda s: s * 1000),  # milliseconds
    st.dates(min_value=FIRST.date(), max_value=LAST.date()).map(str),
    st.sampled_from(["03/04/2021", "13/04/2021", "04/13/2021", "yesterday", ""]),
    st.dates(min_value=FIRST.date(), max_value=LAST.date()).map(lambda day: int(day.strftime("%Y%m%d"))),  # codes
)


@st.composite
def tables(draw):
    ids = draw(st.lists(IDS, min_size=1, max_size=6))
    texts = draw(st.lists(st.one_of(st.none(), st.text(max_size=12)), min_size=len(ids), max_size=len(ids)))
    items = pd.DataFrame({"item_id": ids, "text": texts})
    n = draw(st.integers(min_value=0, max_value=12))
    log = pd.DataFrame({
        "user_id": draw(st.lists(st.one_of(IDS, st.none()), min_size=n, max_size=n)),
        "item_id": draw(st.lists(st.one_of(st.sampled_from(ids), IDS), min_size=n, max_size=n)),
        "timestamp": draw(st.lists(TIMES, min_size=n, max_size=n)),
    })
    if draw(st.booleans()):  # several domains in one table (the catalogue shared by all)
        log["domain"] = draw(st.lists(st.sampled_from(["north", "south", " south"]), min_size=n, max_size=n))
    if draw(st.booleans()):  # the table written twice (or some of its rows again)
        log = pd.concat([log, log.iloc[: draw(st.integers(min_value=0, max_value=n))]], ignore_index=True)
    return items, log, draw(st.booleans())


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=tables())
def test_generic_loader_errors_clearly_or_keeps_its_invariants(tmp_path, case):
    items, log, drop_unknown = case
    items_path, log_path = tmp_path / "items.csv", tmp_path / "interactions.csv"
    items.to_csv(items_path, index=False)
    log.to_csv(log_path, index=False)
    try:
        domains = load_generic(items_path, log_path, drop_unknown_items=drop_unknown)
    except ValueError as error:
        message = str(error)
        assert "items.csv" in message or "interactions.csv" in message, message
        return
    written = pd.read_csv(log_path, dtype=str, keep_default_na=False)
    names = sorted(written["domain"].str.strip().unique()) if "domain" in written else ["default"]
    assert sorted(d.name for d in domains) == names, "one domain per value of the domain column, as written"
    assert 0 < sum(d.n_interactions for d in domains) <= len(written)
    for domain in domains:
        assert not domain.interactions.duplicated().any(), "a row repeating (user, item, time) is never counted twice"
    if not drop_unknown:  # nothing else may be dropped without drop_unknown_items
        stamped = written.assign(timestamp=epoch_seconds(written["timestamp"], "written"))
        if "domain" in stamped:
            stamped["domain"] = stamped["domain"].str.strip()
        assert sum(d.n_interactions for d in domains) == len(stamped.drop_duplicates())
    for domain in domains:
        frame = domain.interactions
        assert frame["item_id"].isin(domain.items["item_id"]).all()
        assert not domain.items["item_id"].duplicated().any()
        assert frame["timestamp"].dtype == "int64"
        assert frame["timestamp"].between(FIRST.timestamp(), LAST.timestamp()).all(), \
            "every clock form must land in the years it was written in"
        assert set(frame["user_id"]) <= set(written["user_id"]), "user ids are read as written, as text"
        assert (frame.groupby("user_id")["timestamp"].diff().dropna() >= 0).all(), "each user's log is in time order"


def test_a_table_written_twice_is_the_table_once_with_a_warning(tmp_path, caplog):
    """Every row of interactions.csv twice: the same domain as once (the count named), not twice the samples."""
    items = pd.DataFrame({"item_id": ["a", "b", "c"], "text": ["x", "y", "z"]})
    log = pd.DataFrame({"user_id": ["u", "u", "v"], "item_id": ["a", "b", "c"], "timestamp": [DAY, DAY + 60, DAY + 9]})
    items.to_csv(tmp_path / "items.csv", index=False)
    log.to_csv(tmp_path / "once.csv", index=False)
    pd.concat([log, log]).to_csv(tmp_path / "interactions.csv", index=False)
    [once] = load_generic(tmp_path / "items.csv", tmp_path / "once.csv")
    [twice] = load_generic(tmp_path / "items.csv", tmp_path / "interactions.csv")
    pd.testing.assert_frame_equal(twice.interactions, once.interactions)
    assert "interactions.csv: dropped 3 duplicate interaction row(s)" in caplog.text


@pytest.mark.parametrize("values", [["1614816000", "1614816000000"], ["03/04/2021", "13/04/2021", "04/13/2021"]])
def test_one_column_is_never_read_with_two_clocks(tmp_path, values):
    """The two classes the property test draws most often, pinned: mixed epoch units and mixed day/month order."""
    pd.DataFrame({"item_id": ["a"], "text": ["x"]}).to_csv(tmp_path / "items.csv", index=False)
    pd.DataFrame({"user_id": ["u"] * len(values), "item_id": ["a"] * len(values), "timestamp": values}).to_csv(
        tmp_path / "interactions.csv", index=False)
    with pytest.raises(ValueError, match=r"interactions\.csv: column 'timestamp'"):
        load_generic(tmp_path / "items.csv", tmp_path / "interactions.csv")

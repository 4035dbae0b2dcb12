"""One reading of timestamps: units from magnitude, one day/month convention per column, clear refusals."""

import pandas as pd
import pytest

from prerec_pyro.data.timestamps import epoch_seconds

DAY = 1_614_816_000  # 2021-03-04 00:00 UTC


@pytest.mark.parametrize("scale", [1, 1_000, 1_000_000, 1_000_000_000])
def test_epoch_units_are_read_off_the_magnitude(scale):
    values = pd.Series([DAY * scale, (DAY + 86_400) * scale])
    assert epoch_seconds(values, "t").tolist() == [DAY, DAY + 86_400]
    assert epoch_seconds(values.astype(str), "t").tolist() == [DAY, DAY + 86_400]


def test_a_column_mixing_epoch_units_is_refused():
    with pytest.raises(ValueError, match=r"log\.csv: column 'timestamp' mixes epoch units \(s and ms"):
        epoch_seconds(pd.Series([DAY, DAY * 1_000]), "log.csv")


def test_day_month_strings_follow_one_convention_for_the_whole_column():
    day_first = epoch_seconds(pd.Series(["03/04/2021", "13/04/2021"]), "t")
    assert day_first.tolist() == [DAY + 30 * 86_400, DAY + 40 * 86_400]  # 3 and 13 April
    month_first = epoch_seconds(pd.Series(["03/04/2021", "04/13/2021"]), "t")
    assert month_first.tolist() == [DAY, DAY + 40 * 86_400]  # 4 March and 13 April


def test_ambiguous_or_inconsistent_day_month_strings_are_refused_unless_a_format_is_given():
    with pytest.raises(ValueError, match=r"log\.csv: .*'03/04/2021'.* day/month or month/day alike.*--date-format"):
        epoch_seconds(pd.Series(["03/04/2021", "05/04/2021"]), "log.csv")
    with pytest.raises(ValueError, match="day-first .*'13/04/2021'.* and month-first .*'04/13/2021'"):
        epoch_seconds(pd.Series(["13/04/2021", "04/13/2021"]), "t")
    assert epoch_seconds(pd.Series(["03/04/2021"]), "t", date_format="%m/%d/%Y").tolist() == [DAY]
    with pytest.raises(ValueError, match=r"'2021-03-04' is not the format '%d/%m/%Y'"):
        epoch_seconds(pd.Series(["2021-03-04"]), "t", date_format="%d/%m/%Y")


def test_missing_and_unparseable_values_name_the_row_or_value():
    with pytest.raises(ValueError, match="empty on data row 2"):
        epoch_seconds(pd.Series([1.0, None]), "t")
    with pytest.raises(ValueError, match="'yesterday' is not a date"):
        epoch_seconds(pd.Series(["2021-03-04", "yesterday"]), "t")


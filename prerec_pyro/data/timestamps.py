"""One reading of a timestamp column as int64 epoch seconds (UTC), for every table a user brings.

Rules, in order:

- datetimes (timezone-aware ones are converted to UTC; naive ones are read as UTC) pass through;
- numbers are epoch times whose unit is read off their magnitude: below 10^11 seconds (up to the year 5138), below
  10^14 milliseconds, below 10^17 microseconds, otherwise nanoseconds; a column whose values span two units is
  refused (it is not one clock). Fractions are rounded to the nearest second. Numbers that are no epoch clock are
  refused with what they were read as: 8-digit date codes (``20230414``: pass ``date_format="%Y%m%d"``) and
  columns whose seconds all fall in 1970 (day numbers, spreadsheet serials, row counters);
- strings: numbers as above, ISO dates and datetimes (``2021-03-04``, ``2021-03-04 10:15:00``, an explicit offset
  honoured), or, with ``date_format`` (``strftime`` codes, e.g. ``"%d/%m/%Y"``), exactly that format. Day/month
  strings such as ``03/04/2021`` are read day-first when some value's first field is above 12, month-first when some
  value's second field is, and refused as ambiguous when neither tells (pass ``date_format``); one column is never
  read with two conventions.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

UNITS = (("s", 1e11, 1), ("ms", 1e14, 1_000), ("us", 1e17, 1_000_000), ("ns", np.inf, 1_000_000_000))
YEAR_1971 = 31_536_000  # epoch seconds at 1971-01-01: a clock of real interactions is past it
DAY_MONTH = re.compile(r"^\s*(\d{1,2})[/.-](\d{1,2})[/.-](\d{2}|\d{4})\b")


def epoch_seconds(values: pd.Series, source: str, date_format: str | None = None,
                  column: str = "timestamp") -> pd.Series:
    """``values`` as int64 epoch seconds (module docstring); ``source`` and ``column`` name the file or table and the
    column in errors."""
    values = pd.Series(values)
    if values.isna().any():
        row = int(values.isna().to_numpy().argmax())
        raise ValueError(f"{source}: column {column!r} is empty on data row {row + 1}")
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.astype("datetime64[s]").astype("int64")
    if pd.api.types.is_bool_dtype(values):
        raise ValueError(f"{source}: column {column!r} holds booleans; expected epoch times or dates")
    if pd.api.types.is_numeric_dtype(values) and date_format is None:
        return _numbers_to_seconds(values.astype("float64"), source, column)
    if pd.api.types.is_float_dtype(values) and (values % 1 == 0).all():  # 20230414.0 from a numeric column
        values = values.astype("int64")
    text = values.astype(str).str.strip()
    if date_format is not None:
        return _dates_to_seconds(pd.to_datetime(text, format=date_format, errors="coerce", utc=True), text, source,
                                 f"the format {date_format!r}", column)
    numbers = pd.to_numeric(text, errors="coerce")
    out = pd.Series(np.zeros(len(text), dtype=np.int64), index=text.index)
    if numbers.notna().any():
        out[numbers.notna()] = _numbers_to_seconds(numbers[numbers.notna()], source, column)
    dates = text[numbers.isna()]
    if len(dates):
        out[numbers.isna()] = _dates_to_seconds(_parse_dates(dates, source, column), dates, source, "a date", column)
    return out.astype("int64")


def how_to_pass(example: str) -> str:
    """Where a date format can be given, for an error message."""
    return (f"--date-format '{example}' (recommend.py, serve.py), date_format = '{example}' in the benchmark TOML's "
            f"table entry, or date_format='{example}' in Python")


def _numbers_to_seconds(numbers: pd.Series, source: str, column: str) -> pd.Series:
    """Epoch numbers in one unit (read off their magnitude) to whole seconds."""
    magnitude = numbers.abs()
    unit_of = np.searchsorted([bound for _, bound, _ in UNITS[:-1]], magnitude.to_numpy(), side="right")
    units = np.unique(unit_of)
    if len(units) > 1:
        low, high = (UNITS[u][0] for u in (units[0], units[-1]))
        example = numbers[unit_of == units[-1]].iloc[0]
        raise ValueError(f"{source}: column {column!r} mixes epoch units ({low} and {high}, e.g. {example!r}); "
                         "expected one clock for the whole column")
    name, _, per_second = UNITS[int(units[0])] if len(units) else UNITS[0]
    if name != "s":
        logger.info("%s: column %r read as epoch %s (from its magnitude)", source, column, name)
    seconds = (numbers / per_second).round().astype("int64")
    if name == "s" and len(seconds):
        _refuse_non_clocks(numbers, seconds, source, column)
    return seconds


def _refuse_non_clocks(numbers: pd.Series, seconds: pd.Series, source: str, column: str) -> None:
    """ValueError for numbers that read as epoch seconds but are no clock: 8-digit date codes, or all in 1970."""
    first = pd.to_datetime(int(seconds.min()), unit="s")
    codes = pd.to_datetime(numbers.astype("int64").astype(str), format="%Y%m%d", errors="coerce")
    if (numbers % 1 == 0).all() and numbers.between(19_000_101, 21_001_231).all() and codes.notna().all():
        raise ValueError(f"{source}: column {column!r} holds numbers such as {int(numbers.iloc[0])} that look like "
                         f"dates (YYYYMMDD); read as epoch seconds they would all fall on {first:%Y-%m-%d}. Pass "
                         f"the format: {how_to_pass('%Y%m%d')}")
    if seconds.min() < YEAR_1971 <= seconds.max():
        early = int(numbers[seconds < YEAR_1971].iloc[0])
        raise ValueError(f"{source}: column {column!r} mixes times in 1970 (e.g. {early}: a date code or a day "
                         f"number?) with later ones (up to {pd.to_datetime(int(seconds.max()), unit='s')}); expected "
                         "one clock for the whole column")
    if seconds.max() < YEAR_1971:
        last = pd.to_datetime(int(seconds.max()), unit="s")
        raise ValueError(f"{source}: column {column!r} read as epoch seconds falls entirely in 1970 ({first} to "
                         f"{last}): these are not times of interactions (day numbers? a counter?); convert them to "
                         "epoch seconds or dates, or pass their date format")


def _parse_dates(text: pd.Series, source: str, column: str) -> pd.Series:
    """Date strings to UTC datetimes, with one day/month convention for the whole column."""
    fields = text.str.extract(DAY_MONTH)
    slashed = fields[0].notna()
    if not slashed.any():
        return pd.to_datetime(text, format="mixed", errors="coerce", utc=True)
    first, second = fields.loc[slashed, 0].astype(int), fields.loc[slashed, 1].astype(int)
    day_first, month_first = bool((first > 12).any()), bool((second > 12).any())
    if day_first and month_first:
        raise ValueError(f"{source}: column {column!r} has day-first ({text[slashed][first > 12].iloc[0]!r}) and "
                         f"month-first ({text[slashed][second > 12].iloc[0]!r}) dates; fix the column or pass its "
                         f"format: {how_to_pass('%d/%m/%Y')}")
    if not (day_first or month_first):
        raise ValueError(f"{source}: column {column!r} has dates such as {text[slashed].iloc[0]!r} that read as "
                         f"day/month or month/day alike; pass the format: {how_to_pass('%d/%m/%Y')}")
    return pd.to_datetime(text, format="mixed", dayfirst=day_first, errors="coerce", utc=True)


def _dates_to_seconds(dates: pd.Series, text: pd.Series, source: str, expected: str, column: str) -> pd.Series:
    bad = dates.isna()
    if bad.any():
        hint = " (epoch seconds, milliseconds or a date)" if expected == "a date" else ""
        raise ValueError(f"{source}: column {column!r} value {text[bad].iloc[0]!r} is not {expected}{hint}")
    return (dates - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)

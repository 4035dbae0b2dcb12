"""Reading a table file, for every loader: one place for suffixes, empty and missing files and text encodings.

Rules: the reader is chosen by suffix (``.csv``; ``.parquet``/``.pq``; ``.xlsx``/``.xls`` where a loader allows
workbooks); a missing or 0-byte file is an error naming it; ``text_columns`` are read as strings (ids are never
numbers); a CSV must be UTF-8, and a file that is not is an error naming the first bad line and the fix, unless the
loader names a fallback encoding (UCI's Online Retail export is Latin-1), which is then logged; a CSV pandas cannot
parse (a row with more fields than the header) is an error naming the file and pandas' reason. Timestamps are read
by ``prerec_pyro.data.timestamps``; what the columns mean is each loader's business.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

logger = logging.getLogger(__name__)

CSV, PARQUET, WORKBOOK = (".csv",), (".parquet", ".pq"), (".xlsx", ".xls")



class MissingDataFile(FileNotFoundError, ValueError):
    """A data file that is not where the data directory says it is: a FileNotFoundError that the scripts report as
    one line (they report ValueErrors so), naming the path and what to pass."""

def read_frame(path: str | os.PathLike[str], text_columns: tuple[str, ...] = (), workbooks: bool = False,
               fallback_encoding: str | None = None, expected: str = "a header row") -> pd.DataFrame:
    """The table in ``path`` (module docstring); ``expected`` says what an empty file should have held."""
    path = Path(path)
    suffix = path.suffix.lower()
    allowed = CSV + PARQUET + (WORKBOOK if workbooks else ())
    if suffix not in allowed:
        raise ValueError(f"{path}: unsupported suffix {suffix!r}; expected one of {', '.join(allowed)}")
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: the file is empty (0 bytes); expected {expected}")
    if suffix in WORKBOOK:
        logger.info("reading %s (a large workbook takes a minute or two)", path)
        return pd.read_excel(path, dtype={c: str for c in text_columns})
    if suffix in PARQUET:
        return pd.read_parquet(path)
    return _read_csv(path, {c: str for c in text_columns}, fallback_encoding)


def _read_csv(path: Path, dtype: dict, fallback_encoding: str | None) -> pd.DataFrame:
    options = {"dtype": dtype, "keep_default_na": False, "na_values": [""]}
    try:
        try:
            return pd.read_csv(path, encoding="utf-8", **options)
        except UnicodeDecodeError:
            if fallback_encoding is None:
                raise ValueError(_not_utf8(path)) from None
            logger.warning("%s is not UTF-8; reading it as %s", path, fallback_encoding)
            return pd.read_csv(path, encoding=fallback_encoding, **options)
    except pd.errors.ParserError as error:
        raise ValueError(f"{path}: not a well-formed CSV ({str(error).strip()})") from None


def _not_utf8(path: Path) -> str:
    """The error for a CSV that is not UTF-8: its first bad line and byte, and the fix."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
        position = 0
    except UnicodeDecodeError as error:
        position = error.start
    line = data[:position].count(b"\n") + 1
    return (f"{path}: line {line} is not UTF-8 (byte {data[position]:#04x}); save the file as UTF-8, "
            f"e.g. iconv -f latin1 -t utf-8 {path.name} > fixed.csv")

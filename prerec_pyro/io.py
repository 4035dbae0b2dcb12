"""Atomic file writes: nothing half-written is ever left under a final name."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable

if TYPE_CHECKING:
    import pandas as pd


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path`` (parents created), then rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
        os.replace(tmp, path)
    except OSError as error:  # a full disk says so on a file descriptor: name the file it was for
        Path(tmp).unlink(missing_ok=True)
        if error.filename is None:
            raise OSError(error.errno, error.strerror or str(error), str(path)) from error
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_csv(path: str | os.PathLike[str], table: pd.DataFrame) -> Path:
    """``table`` as CSV (no index) at ``path``, written atomically."""
    return atomic_write(path, lambda f: f.write(table.to_csv(index=False).encode()))

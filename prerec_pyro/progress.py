"""Progress bars that stay readable in a log file: tqdm refreshing at most every ``LOG_INTERVAL`` seconds when
stderr is not a terminal (a redirected bar otherwise writes a line per refresh), as usual on a terminal; shown by
rank 0 only under ``torchrun``."""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm

LOG_INTERVAL = 30.0  # seconds between refreshes of a bar written to a file


def progress_bar(*args, **kwargs) -> tqdm:
    """``tqdm(*args, **kwargs)``, refreshing every ``LOG_INTERVAL`` seconds at most when stderr is not a TTY, and
    hidden on the ranks other than 0 of a ``torchrun`` job."""
    if os.environ.get("RANK", "0") != "0":
        kwargs.setdefault("disable", True)
    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", LOG_INTERVAL)
    return tqdm(*args, **kwargs)

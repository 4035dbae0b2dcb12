"""What every command-line script shares: a user error ends in one line on stderr and exit status 2."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable


def run(main: Callable, parse_args: Callable, script: str) -> None:
    """``main(parse_args())``; a ``ValueError`` (bad input, bad run, bad flag value) is printed as
    ``<script>: error: <message>`` and the process exits with status 2, without a traceback."""
    try:
        main(parse_args())
    except ValueError as error:
        print(f"{Path(script).name}: error: {error}", file=sys.stderr)
        sys.exit(2)

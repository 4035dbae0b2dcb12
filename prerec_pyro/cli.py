"""What the command-line scripts share: a user error ends in one line on stderr and exit status 2, and a script can
run another (a study pre-trains through ``scripts/map_pretrain.py``)."""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every script's ``--help``: the description as written, and each flag's default (unless its help already
    says it, or there is none to say)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


def run(main: Callable, parse_args: Callable, script: str) -> None:
    """``main(parse_args())``; a ``ValueError`` (bad input, bad run, bad flag value) is printed as
    ``<script>: error: <message>`` and the process exits with status 2, without a traceback."""
    try:
        main(parse_args())
    except ValueError as error:
        print(f"{Path(script).name}: error: {error}", file=sys.stderr)
        sys.exit(2)


def command_line(script: str, argv: list[str] | None) -> str:
    """How ``script`` was invoked (``argv``, or this process's arguments), to record beside what it wrote: a line
    a shell runs again as it was (an argument with a space, e.g. a domain name, quoted)."""
    return f"python scripts/{Path(script).name} " + shlex.join(sys.argv[1:] if argv is None else argv)


def load_script(path: str | Path) -> ModuleType:
    """The script at ``path`` as a module (its ``main`` and ``parse_args``), without running it."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def device(value: str) -> str:
    """An argparse ``type`` for ``--device``: a torch device that exists on this machine (``cpu``, ``cuda``,
    ``cuda:1``), else the usage error says why."""
    import torch

    try:
        chosen = torch.device(value)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a device; expected cpu, cuda or cuda:<n>") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{value!r}: this machine has no CUDA device; use cpu")
    if chosen.type == "cuda" and chosen.index is not None and chosen.index >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{value!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if chosen.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"{value!r}: only cpu and cuda devices are supported")
    return value


WEIGH_SEQUENCE_HELP = ("zero-shot scores: the run's scores averaged with its own scores without the sequence model "
                       "(f_seq = 0), each weighed by how high it ranked the user's earlier items (inference/"
                       "evidence.py; the default); --no-weigh-sequence: Eq. 8 as the paper writes it")


SEQUENCE_EVIDENCE_HELP = ("with --weigh-sequence, what each of the user's earlier items says about the two models: "
                          "ranks (its rank under each, with a likelihood 1/rank; the default) or likelihood (the "
                          "probability each gave it)")


def add_weigh_sequence(parser: argparse.ArgumentParser) -> None:
    """``--weigh-sequence`` / ``--no-weigh-sequence`` and ``--sequence-evidence`` with one meaning in every script
    that scores zero-shot."""
    parser.add_argument("--weigh-sequence", action=argparse.BooleanOptionalAction, default=True,
                        help=WEIGH_SEQUENCE_HELP)
    parser.add_argument("--sequence-evidence", choices=("ranks", "likelihood"), default="ranks",
                        help=SEQUENCE_EVIDENCE_HELP)

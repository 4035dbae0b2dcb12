"""One CLI vocabulary: one meaning per flag name across scripts, the TOML [defaults] keys as flags, defaults shown
in --help."""

import argparse
from pathlib import Path

import pytest

from prerec_pyro.cli import load_script
from prerec_pyro.data.benchmarks import DEFAULT_TYPES

SCRIPTS = sorted((Path(__file__).resolve().parents[2] / "scripts").glob("*.py"))


class Captured(Exception):
    def __init__(self, parser):
        self.parser = parser


def parser_of(path: Path) -> argparse.ArgumentParser:
    """The parser a script's ``parse_args`` builds (caught as it starts to parse)."""
    script = load_script(path)
    original = argparse.ArgumentParser.parse_args

    def capture(self, *args, **kwargs):
        raise Captured(self)

    argparse.ArgumentParser.parse_args = capture
    try:
        script.parse_args([])
    except Captured as caught:
        return caught.parser
    finally:
        argparse.ArgumentParser.parse_args = original
    raise AssertionError(f"{path.name}: parse_args built no parser")


@pytest.fixture(scope="module")
def parsers():
    return {path.stem: parser_of(path) for path in SCRIPTS}


def test_one_meaning_per_flag_name(parsers):
    for name, parser in parsers.items():
        for action in parser._actions:
            flags = set(action.option_strings)
            assert not {"--out", "--runs"} <= flags, f"{name}: --out is an output folder, --runs the run root"
            assert "--domain" not in flags or "--target" in flags, f"{name}: a domain is --target everywhere"
    outs = {name for name, parser in parsers.items() for action in parser._actions if "--out" in action.option_strings}
    assert {"intervene_eval", "recommend", "ablations", "finetune", "reproduce", "posterior_study"} <= outs


def test_the_toml_defaults_are_flags_of_the_same_names(parsers):
    flags = {flag for action in parsers["map_pretrain"]._actions for flag in action.option_strings}
    assert {"--" + key.replace("_", "-") for key in DEFAULT_TYPES} <= flags


def test_help_shows_every_default(parsers):
    for name, parser in parsers.items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or action.default in (None, False, argparse.SUPPRESS) or not action.help:
                continue
            shown = formatter._get_help_string(action)
            assert "default" in shown, (name, action.option_strings)  # its own words or "(default: %(default)s)"

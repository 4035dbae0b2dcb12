"""prerec_pyro.cli: a user error is one line on stderr and exit status 2."""

import pytest

from prerec_pyro.cli import run


def test_a_value_error_is_one_line_and_status_2(capsys):
    def main(args):
        raise ValueError(f"items.csv: column 'text' missing ({args})")

    with pytest.raises(SystemExit) as stop:
        run(main, lambda: "parsed", "/somewhere/scripts/recommend.py")
    assert stop.value.code == 2
    assert capsys.readouterr().err == "recommend.py: error: items.csv: column 'text' missing (parsed)\n"


def test_other_errors_are_not_swallowed():
    def main(args):
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        run(main, lambda: None, "diagnose.py")

"""prerec_pyro.cli: a user error is one line on stderr and exit status 2."""

from pathlib import Path

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


@pytest.mark.parametrize("value, message", [("cdua", "'cdua' is not a device"), ("meta", "only cpu and cuda"),
                                            ("cuda:99", "CUDA device")])
def test_a_bad_device_is_a_usage_error(value, message, capsys):
    import torch

    from prerec_pyro.cli import load_script

    if value == "cuda:99" and torch.cuda.device_count() >= 99:
        pytest.skip("a machine with 99 GPUs")
    script = load_script(Path(__file__).resolve().parents[1] / "scripts" / "intervene_eval.py")
    with pytest.raises(SystemExit) as stop:
        script.parse_args(["--device", value])
    assert stop.value.code == 2 and message in capsys.readouterr().err

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


def test_a_data_directory_without_the_dataset_is_one_line_naming_the_file(tmp_path):
    """A wrong --data-dir for MovieLens: one line naming the file and what the folder must hold, exit 2."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "map_pretrain.py"
    done = subprocess.run([sys.executable, str(script), "--benchmark", "movielens-ages", "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{tmp_path}/movielens/ml-1m.inter not found" in done.stderr.strip().splitlines()[-1]


def test_a_recorded_command_line_quotes_what_the_shell_would_split():
    from prerec_pyro.cli import command_line

    line = command_line("scripts/ablations.py", ["--held-out", "United Kingdom", "--seeds", "0"])
    assert line == "python scripts/ablations.py --held-out 'United Kingdom' --seeds 0"

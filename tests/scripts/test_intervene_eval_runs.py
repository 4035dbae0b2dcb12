"""intervene_eval.py on runs: targets of another benchmark, runs checked for their method, file names that carry what
changes the numbers, and flag values that make no sense refused."""

import json
from pathlib import Path

import pandas as pd
import pytest

from prerec_pyro.cli import load_script as load_path

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "own_data" / "benchmark.toml"
TINY = ["--benchmark", "synthetic-small", "--text-model", "hash-bow-32", "--epochs", "1", "--max-len", "8",
        "--valid-max-users", "20"]


def load_script(name):
    return load_path(SCRIPTS / f"{name}.py")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PREREC_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def runs(tmp_path):
    script = load_script("map_pretrain")
    prerec = script.main(script.parse_args([*TINY, "--runs", str(tmp_path / "runs")]))
    prerec_n = script.main(script.parse_args([*TINY, "--runs", str(tmp_path / "runs"), "--method", "prerec_n"]))
    return prerec, prerec_n


def evaluate(*flags):
    script = load_script("intervene_eval")
    return script.main(script.parse_args(["--n-boot", "20", *flags]))


def test_a_run_scores_the_targets_of_another_benchmark(runs, tmp_path):
    prerec, prerec_n = runs
    table = evaluate("--run", str(prerec), "--run-n", str(prerec_n), "--benchmark", str(EXAMPLE), "--target", "all",
                     "--out", str(tmp_path / "out"))
    assert set(table["domain"]) == {"shop_oslo", "mean"}
    assert {"PreRec, f_seq weighed by the history", "PreRec_n, f_seq weighed by the history", "SBERT"} <= \
        set(table["method"])  # the default scoring, for both runs
    [written] = (tmp_path / "out").glob("zero_shot_all_on_own-shops-*.json")
    record = json.loads(written.read_text())
    assert record["pretrained_on"] == "synthetic-small" and record["sources"] == ["india", "spain", "canada"]
    assert record["targets"] == ["shop_oslo"] and record["benchmark"].endswith("benchmark.toml")
    assert len(pd.read_csv(written.with_suffix(".csv"))) == len(table)


def test_runs_of_the_wrong_method_are_refused(runs):
    prerec, prerec_n = runs
    with pytest.raises(ValueError, match="--run .* is a prerec_n run; expected a prerec run"):
        evaluate("--run", str(prerec_n), "--benchmark", "synthetic-small", "--target", "japan")
    with pytest.raises(ValueError, match="--run-n .* is a prerec run; expected a prerec_n run"):
        evaluate("--run", str(prerec), "--run-n", str(prerec), "--benchmark", "synthetic-small", "--target", "japan")


def test_options_that_change_the_numbers_change_the_file_name(runs):
    prerec, prerec_n = runs
    base = ["--run", str(prerec), "--run-n", str(prerec_n), "--benchmark", "synthetic-small", "--target", "japan"]
    evaluate(*base)
    evaluate(*base, "--k-percent", "10")
    evaluate(*base, "--split", "all")
    names = sorted(p.name for p in prerec.glob("zero_shot_*.csv"))
    assert names == ["zero_shot_japan.csv", "zero_shot_japan_all.csv", "zero_shot_japan_k10.csv"]


@pytest.mark.parametrize("flags", [["--k-percent", "0"], ["--k-percent", "-1"], ["--samples", "-1"]])
def test_senseless_flag_values_are_refused(flags, capsys):
    with pytest.raises(SystemExit):
        load_script("intervene_eval").parse_args(flags)
    assert "must be" in capsys.readouterr().err


def test_resume_refuses_flags_that_define_a_run_and_epochs_zero_is_an_error(capsys):
    script = load_script("map_pretrain")
    with pytest.raises(SystemExit):
        script.parse_args(["--resume", "RUN", "--method", "prerec_n", "--hidden-dim", "8"])
    assert "it takes only --epochs, --patience and --device, but also got --method, --hidden-dim" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.parse_args(["--epochs", "0"])
    assert "--epochs must be >= 1" in capsys.readouterr().err


def test_an_interrupted_run_is_marked_and_says_how_to_go_on(tmp_path, monkeypatch, capsys):
    from prerec_pyro.inference.map import MapTrainer
    from prerec_pyro.inference.runs import run_state

    def interrupted(self, resume=False):
        raise KeyboardInterrupt

    monkeypatch.setattr(MapTrainer, "fit", interrupted)
    script = load_script("map_pretrain")
    with pytest.raises(SystemExit) as stopped:
        script.main(script.parse_args([*TINY, "--runs", str(tmp_path / "runs")]))
    assert stopped.value.code == 130
    [run_dir] = (tmp_path / "runs" / "synthetic-small").iterdir()
    assert run_state(run_dir) == "interrupted"
    assert "nothing to resume" in capsys.readouterr().err
    with pytest.raises(ValueError, match="is interrupted, not finished"):
        load_script("intervene_eval").main(load_script("intervene_eval").parse_args(
            ["--run", str(run_dir), "--benchmark", "synthetic-small", "--target", "japan"]))


def test_every_target_reads_each_run_once(runs, tmp_path, monkeypatch):
    """--target all on 4 targets: each run's config.json and best.pt are read once, then handed on."""
    import builtins
    import io

    opened, real_open = [], builtins.open

    def counting_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(io, "open", counting_open)
    prerec, prerec_n = runs
    table = evaluate("--benchmark", "synthetic-small", "--target", "all", "--run", str(prerec), "--run-n",
                     str(prerec_n), "--out", str(tmp_path / "out"))
    assert table["domain"].nunique() == 5  # four targets and their mean
    for run in (prerec, prerec_n):
        for name in ("config.json", "best.pt"):
            assert opened.count(str(run / name)) == 1, (run.name, name, opened.count(str(run / name)))

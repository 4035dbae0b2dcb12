"""The scripts on a benchmark of your own: examples/own_data/benchmark.toml pre-trained and evaluated zero-shot."""

import json
from pathlib import Path

import pandas as pd
import pytest

from prerec_pyro.cli import load_script, run

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
EXAMPLE = REPO / "examples" / "own_data" / "benchmark.toml"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PREREC_CACHE_DIR", str(tmp_path / "cache"))


def test_map_pretrain_then_intervene_eval_on_the_example(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the path as the README gives it, relative to the repository
    pretrain = load_script(SCRIPTS / "map_pretrain.py")
    run_dir = pretrain.main(pretrain.parse_args(["--benchmark", "examples/own_data/benchmark.toml", "--text-model",
                                                 "hash-bow-32", "--epochs", "1", "--max-len", "8", "--runs",
                                                 str(tmp_path / "runs")]))
    config = json.loads((run_dir / "config.json").read_text())
    assert config["benchmark"] == str(EXAMPLE)  # the absolute path: the run can be rebuilt from anywhere
    assert run_dir.parent.parent == tmp_path / "runs" and run_dir.parent.name.startswith("own-shops-")
    evaluate = load_script(SCRIPTS / "intervene_eval.py")
    evaluate.main(evaluate.parse_args(["--benchmark", str(EXAMPLE), "--target", "all", "--runs",
                                       str(tmp_path / "runs"), "--n-boot", "20"]))
    table = pd.read_csv(run_dir / "zero_shot_all.csv")
    assert "PreRec, f_seq weighed by the history" in set(table.loc[table["domain"] == "shop_oslo", "method"])
    recommend = load_script(SCRIPTS / "recommend.py")  # the README's last step: top-k for the target's users
    data = REPO / "examples" / "own_data"
    recs = recommend.main(recommend.parse_args(["--run", str(run_dir), "--items", str(data / "items.csv"),
                                                "--histories", str(data / "interactions.csv"), "--interactions",
                                                str(data / "interactions.csv"), "--target", "shop_oslo", "--k", "3",
                                                "--out", str(tmp_path / "recs")]))
    assert (tmp_path / "recs" / "recommendations.csv").exists()
    items = pd.read_csv(data / "items.csv")
    oslo = set(items.loc[items["domain"].isna() | (items["domain"] == "shop_oslo"), "item_id"])
    assert set(recs["item_id"]) <= oslo and recs["user_id"].str.startswith("oslo_").all()
    assert len(recs) == 3 * recs["user_id"].nunique()


def test_a_wrong_benchmark_is_one_line_and_status_2(capsys):
    script = load_script(SCRIPTS / "map_pretrain.py")
    with pytest.raises(SystemExit) as stop:
        run(script.main, lambda: script.parse_args(["--benchmark", "atlantis"]), str(SCRIPTS / "map_pretrain.py"))
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("map_pretrain.py: error: unknown benchmark 'atlantis'") and err.count("\n") == 1

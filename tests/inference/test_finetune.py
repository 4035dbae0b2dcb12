"""Fine-tuning from a pre-training run: it improves on zero-shot, respects first_n, and keeps its own parameters."""

import importlib.util
from pathlib import Path

import pytest

from prerec_pyro.evaluate import EvalConfig, evaluate_domain, summarize
from prerec_pyro.inference.finetune import finetune, incremental_study
from prerec_pyro.inference.map import TrainConfig
from prerec_pyro.inference.runs import load_run_config
from prerec_pyro.pipeline import prepare_benchmark
from prerec_pyro.text import TextEncoderConfig

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "map_pretrain.py"


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    spec = importlib.util.spec_from_file_location("map_pretrain", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    args = script.parse_args(["--benchmark", "synthetic-small", "--text-model", "hash-bow-32", "--epochs", "3",
                              "--max-len", "8", "--out", str(tmp_path_factory.mktemp("runs"))])
    run_dir = script.main(args)
    config = load_run_config(run_dir)
    prepared = prepare_benchmark("synthetic-small", None, config.sequences, config.popularity,
                                 TextEncoderConfig(model="hash-bow-32", cache_dir=str(cache), show_progress=False))
    return run_dir, prepared


TRAIN = TrainConfig(batch_size=16, lr=3e-3, max_epochs=6, patience=6, n_negatives=31)


def test_finetuning_improves_the_validation_metric_over_zero_shot(pretrained):
    run_dir, prepared = pretrained
    data = prepared.target("mexico")
    config = EvalConfig(k_percent=5.0, split="valid", n_boot=10)
    zero = finetune(run_dir, prepared, "mexico", TRAIN, first_n=0)
    zero_score = summarize(evaluate_domain(zero.scorer, data, 0, config), config)["rndcg@k%"]
    tuned = finetune(run_dir, prepared, "mexico", TRAIN)
    assert max(r["score"] for r in tuned.history) > zero_score
    assert tuned.n_train_interactions == sum(int(w.target_mask.sum()) for w in [
        data.domains[0].windows(data.domains[0].users_in("train"), data.sequences)])


def test_incremental_rows_respect_first_n(pretrained):
    run_dir, prepared = pretrained
    test = EvalConfig(k_percent=5.0, n_boot=10)
    rows = incremental_study(run_dir, prepared, "japan", TRAIN, [0, 50], test)
    assert [(r["method"], r["first_n"], r["n_train"]) for r in rows] == [
        ("PreRec (pre-trained)", 0, 0), ("PreRec (pre-trained)", 50, 50), ("PreRec (from scratch)", 50, 50)]
    with pytest.raises(ValueError, match="without pre-training"):
        finetune(run_dir, prepared, "japan", TRAIN, first_n=0, pretrained=False)

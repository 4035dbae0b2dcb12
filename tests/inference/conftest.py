"""Fixtures shared by the inference tests: one small pre-training run on synthetic-small."""

import importlib.util
from pathlib import Path

import pytest

from prerec_pyro.inference.runs import load_run_config
from prerec_pyro.pipeline import prepare_benchmark
from prerec_pyro.text import TextEncoderConfig

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "map_pretrain.py"


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory):
    """(run directory, prepared benchmark) of a 3-epoch PreRec run on synthetic-small."""
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

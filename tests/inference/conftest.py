"""Fixtures shared by the inference tests: one small pre-training run on synthetic-small, and a way to scramble a
target's training users."""

import importlib.util
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from prerec_pyro.data.dataset import MultiDomainData
from prerec_pyro.inference.runs import load_run_config
from prerec_pyro.pipeline import prepare_benchmark
from prerec_pyro.text import TextEncoderConfig

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "map_pretrain.py"


EQ6 = ("--prior-units", "total", "--popularity-mode", "interval", "--no-shared-item-offsets", "--no-last-item-skip",
       "--text-channel", "off", "--no-repeat-term")


def pretrain(tmp_path_factory, *flags):
    """(run directory, prepared benchmark) of a 3-epoch PreRec run on synthetic-small with extra ``flags``."""
    cache = tmp_path_factory.mktemp("cache")
    spec = importlib.util.spec_from_file_location("map_pretrain", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    args = script.parse_args(["--benchmark", "synthetic-small", "--text-model", "hash-bow-32", "--epochs", "3",
                              "--max-len", "8", "--runs", str(tmp_path_factory.mktemp("runs")), *flags])
    run_dir = script.main(args)
    config = load_run_config(run_dir)
    prepared = prepare_benchmark("synthetic-small", None, config.sequences, config.popularity,
                                 TextEncoderConfig(model="hash-bow-32", cache_dir=str(cache), show_progress=False),
                                 cold_items=config.cold_items, cold_seed=config.cold_seed)
    return run_dir, prepared


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory):
    """A 3-epoch PreRec run on synthetic-small (Eq. 6 as written)."""
    return pretrain(tmp_path_factory, *EQ6)


@pytest.fixture(scope="session")
def pretrained_shared(tmp_path_factory):
    """A 3-epoch PreRec run on synthetic-small in the default configuration (per-observation priors, shared item
    offsets, last-item skip, sliding popularity)."""
    return pretrain(tmp_path_factory)


@pytest.fixture(scope="session")
def scramble_training_users():
    """``scramble(data)``: a copy of one-domain ``data`` whose training users' items are random, everything else
    (other users, the popularity table) unchanged."""

    def scramble(data: MultiDomainData, seed: int = 1) -> MultiDomainData:
        dom = data.domains[0]
        owner = np.repeat(np.arange(dom.n_users), np.diff(dom.seq_offsets))
        in_train = np.isin(owner, dom.users_in("train"))
        scrambled = dom.seq_items.copy()
        scrambled[in_train] = np.random.default_rng(seed).integers(0, dom.n_items, in_train.sum())
        return MultiDomainData([replace(dom, seq_items=scrambled)], data.sequences)  # same popularity table

    return scramble


@pytest.fixture(scope="session")
def reads_no_training_users(scramble_training_users):
    """``check(scorer, data)``: evaluates ``scorer`` on one-domain ``data`` and on its copy with the training users
    scrambled, asserts that no rank changes (and that there are ranks), and returns the ranks."""
    from prerec_pyro.evaluate import EvalConfig, evaluate_domain

    def check(scorer, data: MultiDomainData) -> np.ndarray:
        config = EvalConfig(k_percent=5.0, n_boot=10)
        before = evaluate_domain(scorer, data, 0, config)
        after = evaluate_domain(scorer, scramble_training_users(data), 0, config)
        assert len(before.ranks) > 0
        np.testing.assert_array_equal(before.ranks, after.ranks)
        return before.ranks

    return check


@pytest.fixture
def scored(pretrained):
    """The session run's Eq. 8 scorer on japan, a batch of four of japan's test users' windows, and japan's text
    vectors."""
    from prerec_pyro.data.batches import BatchBuilder
    from prerec_pyro.inference.pretrained import PretrainedRun

    run_dir, prepared = pretrained
    data = prepared.target("japan")
    dom = data.domains[0]
    batch = BatchBuilder(data, None).make(0, dom.windows(dom.users_in("test")[:4], data.sequences))
    return PretrainedRun.load(run_dir).target_scorer(prepared, "japan", weigh_sequence=False), batch, \
        prepared.item_text(data)  # Eq. 8

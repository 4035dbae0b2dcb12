"""Run configurations on disk: the cold-item protocol is remembered, old config.json files still load, and runs of
different protocols are not mixed."""

import json

import pytest

from prerec_pyro.data.dataset import SequenceConfig
from prerec_pyro.inference.map import TrainConfig
from prerec_pyro.inference.runs import RunConfig, common_cold_protocol, load_run_config, save_run_config
from prerec_pyro.models.prerec import PreRecConfig
from prerec_pyro.popularity import PopularityConfig


def run_config(**changes) -> RunConfig:
    return RunConfig(benchmark="synthetic-small", method="prerec", guide="delta", model=PreRecConfig(),
                     train=TrainConfig(), sequences=SequenceConfig(), popularity=PopularityConfig(),
                     text_model="hash-bow-32", **changes)


def test_cold_protocol_round_trips_and_old_configs_load_without_it(tmp_path):
    save_run_config(tmp_path / "cold", run_config(cold_items=0.3, cold_seed=4))
    loaded = load_run_config(tmp_path / "cold")
    assert (loaded.cold_items, loaded.cold_seed) == (0.3, 4) and loaded.cold_protocol() == (0.3, 4)
    payload = json.loads((tmp_path / "cold" / "config.json").read_text())
    del payload["cold_items"], payload["cold_seed"]  # a config.json written before the protocol existed
    old = RunConfig.from_json(payload)
    assert (old.cold_items, old.cold_seed) == (0.0, 0) and old == run_config(created=payload["created"])


def test_common_cold_protocol_refuses_runs_of_different_protocols(tmp_path):
    for name, changes in {"a": {"cold_items": 0.3, "cold_seed": 1}, "b": {"cold_items": 0.3, "cold_seed": 1},
                          "plain": {}, "plain_seeded": {"cold_seed": 9}}.items():
        save_run_config(tmp_path / name, run_config(**changes))
    assert common_cold_protocol({"prerec": tmp_path / "a", "prerec_n": tmp_path / "b"}) == (0.3, 1)
    assert common_cold_protocol({"prerec": tmp_path / "plain", "prerec_n": tmp_path / "plain_seeded"}) == (0.0, 0)
    with pytest.raises(ValueError, match="different cold-item protocols.*cold_items=0.3, cold_seed=1"):
        common_cold_protocol({"prerec": tmp_path / "a", "prerec_n": tmp_path / "plain"})


def test_only_finished_runs_are_found_and_unfinished_ones_are_refused_with_the_resume_command(tmp_path):
    from prerec_pyro.inference.runs import check_finished, find_latest_run, run_state, save_run_state

    folder = tmp_path / "runs" / "synthetic-small"
    for name, state in (("prerec-delta-seed0-20260101-000000", "finished"),
                        ("prerec-delta-seed0-20260102-000000", "interrupted"),
                        ("prerec-delta-seed0-20260103-000000", "running")):
        run = folder / name
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"method": "prerec", "benchmark": "synthetic-small",
                                                     "created": name[-15:]}))
        (run / "best.pt").write_bytes(b"")  # a checkpoint alone does not make a run finished
        save_run_state(run, state)
    assert find_latest_run(tmp_path / "runs", "synthetic-small", "prerec").name.endswith("20260101-000000")
    assert run_state(folder / "prerec-delta-seed0-20260102-000000") == "interrupted"
    with pytest.raises(ValueError, match="the run is still being trained by process .*; wait for it to finish"):
        check_finished(folder / "prerec-delta-seed0-20260103-000000")  # its owner (this process) is alive

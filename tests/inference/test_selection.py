"""The held-out selection: a stage trained without some sources and selected on them zero-shot, then the refit on
every source for the stage's best length (inference/selection.py)."""

import json
import logging
from dataclasses import replace

import pytest
import torch

from prerec_pyro import pretrain, resume_pretraining, run_config
from prerec_pyro.inference.checkpoint import load_checkpoint
from prerec_pyro.inference.runs import RunConfig, load_run_config, prepare_for_run, run_state, save_run_config
from prerec_pyro.inference.selection import SELECTION_DIR, check_held_out, held_out_users, stage_config


def tiny(held_out=("canada",), **train) -> RunConfig:
    return run_config("synthetic-small", model={"max_len": 8}, train={"max_epochs": 3, "patience": 3, **train},
                      text_model="hash-bow-32", valid_max_users=20, select_by="held_out", held_out=held_out)


def test_the_held_out_sources_must_be_named_with_the_selection_and_be_some_of_the_sources():
    with pytest.raises(ValueError, match="needs the held-out sources"):
        run_config("synthetic-small", select_by="held_out")
    with pytest.raises(ValueError, match="held_out needs select_by='held_out'"):
        run_config("synthetic-small", held_out=("canada",))
    with pytest.raises(ValueError, match=r"\['japan'\] are not sources of benchmark 'synthetic-small'"):
        tiny(held_out=("japan",))
    with pytest.raises(ValueError, match=r"\['japan'\] are not sources of benchmark 'synthetic-small'"):
        check_held_out(replace(tiny(), held_out=("japan",)))
    assert tiny(held_out=("Canada",)).held_out == ("canada",)  # an alias, as --target takes
    with pytest.raises(ValueError, match="holds out every source"):
        check_held_out(tiny(held_out=("india", "spain", "canada")))
    config = tiny()
    assert RunConfig.from_json(json.loads(json.dumps(config.to_json()))) == config  # a list in config.json
    assert held_out_users(config) == 20 and held_out_users(replace(config, valid_max_users=None)) is None


def test_the_selection_stage_is_trained_without_the_held_out_source_and_scores_it_like_a_target():
    prepared = prepare_for_run(stage_config(tiny()))
    assert [d.name for d in prepared.sources.domains] == ["india", "spain"]
    assert prepared.benchmark.sources == ("india", "spain") and prepared.benchmark.targets[0] == "canada"
    assert prepared.target("canada").domains[0].name == "canada"
    full = prepare_for_run(tiny())  # the refit's data: every source
    assert [d.name for d in full.sources.domains] == ["india", "spain", "canada"]


def test_a_held_out_run_refits_every_source_for_the_selected_length(tmp_path, caplog):
    config = tiny()
    run_dir = pretrain(config, runs=tmp_path / "runs")
    stage = run_dir / SELECTION_DIR
    assert run_state(run_dir) == "finished" and run_state(stage) == "finished"
    assert load_run_config(stage).selection_stage and not load_run_config(run_dir).selection_stage
    stage_history = json.loads((stage / "history.json").read_text())["history"]
    assert all(set(k for k in record if k.endswith("/rndcg@k%")) == {"canada/rndcg@k%"} for record in stage_history)
    best = max(range(len(stage_history)), key=lambda e: (stage_history[e]["score"], -e))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["selection"]["best_epoch"] == best and metrics["epochs_run"] == best + 1
    assert metrics["convergence"]["stopped_by"] == "held_out" and "not converged" not in caplog.text
    assert "the held-out selection stopped at the epoch cap (3)" in caplog.text  # the stage's own cap, said so
    history = json.loads((run_dir / "history.json").read_text())["history"]
    assert {"india/rndcg@k%", "spain/rndcg@k%", "canada/rndcg@k%", "sources_score"} <= set(history[-1])
    assert load_checkpoint(run_dir / "best.pt")["state"]["epoch"] == best + 1  # best.pt is the last epoch
    plain = replace(config, select_by="in_domain", held_out=(),
                    train=replace(config.train, max_epochs=best + 1, patience=10))
    plain_dir = pretrain(plain, runs=tmp_path / "plain")  # the refit is the plain run, stopped at that length
    refit, reference = load_checkpoint(run_dir / "best.pt")["model"], load_checkpoint(plain_dir / "last.pt")["model"]
    assert all(torch.equal(refit[name], reference[name]) for name in reference)
    assert resume_pretraining(run_dir) == run_dir and "chosen by its held-out selection" in caplog.text


def test_a_held_out_run_interrupted_after_its_selection_resumes_with_the_refit(tmp_path):
    run_dir = pretrain(tiny(max_epochs=2), runs=tmp_path / "runs")
    finished = load_checkpoint(run_dir / "best.pt")["model"]
    for name in ("best.pt", "last.pt", "metrics.json", "history.json", "sources.pt"):
        (run_dir / name).unlink()
    (run_dir / "state.json").write_text(json.dumps({"state": "interrupted"}))
    stage_mtime = (run_dir / SELECTION_DIR / "best.pt").stat().st_mtime
    assert resume_pretraining(run_dir) == run_dir and run_state(run_dir) == "finished"
    assert (run_dir / SELECTION_DIR / "best.pt").stat().st_mtime == stage_mtime  # the stage is not trained again
    again = load_checkpoint(run_dir / "best.pt")["model"]
    assert all(torch.equal(finished[name], again[name]) for name in finished)


def test_resuming_the_stage_directory_continues_the_run_it_belongs_to(tmp_path, caplog):
    run_dir = pretrain(tiny(max_epochs=2), runs=tmp_path / "runs")
    stage = run_dir / SELECTION_DIR
    for name in ("metrics.json", "sources.pt"):  # interrupted in its stage, after its last checkpoint
        (stage / name).unlink()
    (stage / "state.json").write_text(json.dumps({"state": "interrupted"}))
    for name in ("best.pt", "last.pt", "metrics.json", "history.json", "sources.pt"):
        (run_dir / name).unlink()
    (run_dir / "state.json").write_text(json.dumps({"state": "interrupted"}))
    save_run_config(run_dir, replace(load_run_config(stage), selection_stage=False))  # the run's, before its refit
    with caplog.at_level(logging.INFO):
        assert resume_pretraining(stage) == run_dir and "resuming that run" in caplog.text
    assert run_state(stage) == "finished" and run_state(run_dir) == "finished"
    assert json.loads((run_dir / "metrics.json").read_text())["convergence"]["stopped_by"] == "held_out"


def test_a_held_out_selection_refuses_plateau_decays_it_could_not_repeat():
    with pytest.raises(ValueError, match="lr_decay 0.5 with a held-out selection"):
        check_held_out(tiny(lr_decay=0.5))


def test_ablations_resume_a_held_out_run_whose_refit_length_differs(tmp_path):
    from prerec_pyro.cli import load_script

    ablations = load_script("scripts/ablations.py")
    wanted = tiny(max_epochs=100)
    run = tmp_path / "run"
    (run / SELECTION_DIR).mkdir(parents=True)
    save_run_config(run, replace(wanted, train=replace(wanted.train, max_epochs=4)))  # the refit's length, written
    assert not ablations.resumable_as(run, wanted)  # no checkpoint kept yet
    (run / SELECTION_DIR / "last.pt").write_bytes(b"")
    assert ablations.resumable_as(run, wanted)
    assert not ablations.resumable_as(run, replace(wanted, held_out=("india",)))


def test_the_held_out_validation_reads_the_held_out_sources_and_no_target(tmp_path):
    from prerec_pyro.inference.guides import make_guide
    from prerec_pyro.inference.pretrained import probe_batch
    from prerec_pyro.inference.runs import build_model
    from prerec_pyro.inference.selection import held_out_validation

    config = stage_config(tiny())
    prepared = prepare_for_run(config)
    model = build_model(config, prepared.sources, prepared.item_text(prepared.sources))
    guide = make_guide(config.guide, model, name="pretrain")
    guide(probe_batch(prepared.sources))
    record = held_out_validation(model, guide, prepared, config)()
    assert set(prepared._targets) == {"canada"}  # the benchmark's targets (australia, ...) are never prepared
    assert set(record) == {"canada/rndcg@k%", "score"} and 0.0 < record["score"] < 1.0

"""Pre-training as a library call: a RunConfig in, a finished, self-contained run out, resumable."""

import json

import pytest

from prerec_pyro import pretrain, resume_pretraining, run_config
from prerec_pyro.inference.runs import load_run_config, run_state


def test_a_config_in_a_finished_run_out_and_resumed_with_a_longer_budget(tmp_path, caplog):
    config = run_config("synthetic-small", model={"max_len": 8}, train={"max_epochs": 1}, text_model="hash-bow-32",
                        valid_max_users=20)
    assert config.model.repeat_term and config.popularity.mode == "sliding"  # the library's default configuration
    assert config.model.hidden_dim == 32 and config.train.batch_size == 32  # the benchmark's [defaults]
    run_dir = pretrain(config, runs=tmp_path / "runs")
    assert run_dir.parent == tmp_path / "runs" / "synthetic-small" and run_state(run_dir) == "finished"
    for name in ("config.json", "best.pt", "last.pt", "history.json", "metrics.json", "sources.pt"):
        assert (run_dir / name).exists(), name
    assert load_run_config(run_dir).model == config.model
    assert resume_pretraining(run_dir) == run_dir and "nothing to do" in caplog.text  # finished: said, not redone
    assert len(json.loads((run_dir / "history.json").read_text())["history"]) == 1
    resume_pretraining(run_dir, max_epochs=2)
    assert len(json.loads((run_dir / "history.json").read_text())["history"]) == 2
    ablation = run_config("synthetic-small", method="prerec_n")
    assert not (ablation.model.use_domain or ablation.model.use_popularity or ablation.model.use_offsets)
    with pytest.raises(ValueError, match="no such run directory: nothing to resume"):
        resume_pretraining(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"is not a run directory \(no config.json\)"):
        resume_pretraining(tmp_path / "empty")


def test_the_learning_rate_schedule_comes_from_the_benchmark_then_the_flags_and_reaches_the_baselines(tmp_path):
    from prerec_pyro.baseline_runs import train_config
    from prerec_pyro.run_flags import parse_run_args, run_config_from_args

    toml = tmp_path / "shops.toml"
    toml.write_text('name = "shops"\nsources = ["india"]\ntargets = ["japan"]\nk_percent = 5\n[defaults]\nlr = 2e-3\n'
                    'warmup_steps = 40\nlr_decay = 0.5\ncosine_epochs = 12\n[[data]]\ndataset = "synthetic-small"\n'
                    'domains = ["india", "japan"]\n')
    config = run_config(str(toml))
    assert (config.train.lr, config.train.warmup_steps, config.train.lr_decay, config.train.cosine_epochs) == (
        2e-3, 40, 0.5, 12)
    flagged = run_config_from_args(parse_run_args(["--benchmark", str(toml), "--warmup-steps", "0",
                                                   "--cosine-epochs", "20"]))
    assert (flagged.train.warmup_steps, flagged.train.lr_decay, flagged.train.cosine_epochs) == (0, 0.5, 20)
    baseline = train_config("zesrec", config, seed=1, device="cpu")
    assert (baseline.lr, baseline.warmup_steps, baseline.lr_decay, baseline.cosine_epochs) == (
        2e-3, 40, 0.5, 12)  # every method alike
    plain = run_config("synthetic-small")
    assert (plain.train.warmup_steps, plain.train.lr_decay, plain.train.cosine_epochs) == (0, 1.0, 0)
    for bad in (["--lr-decay", "1.5"], ["--cosine-epochs", "-1"]):
        with pytest.raises(SystemExit):
            parse_run_args(bad)


def test_a_run_on_centred_text_keeps_its_centring_and_refuses_plain_text(tmp_path):
    from dataclasses import replace

    from prerec_pyro.evaluate import EvalConfig
    from prerec_pyro.inference.diagnostics import diagnostic_rows
    from prerec_pyro.inference.pretrained import PretrainedRun
    from prerec_pyro.inference.runs import RunConfig, prepare_for_run
    from prerec_pyro.run_flags import parse_run_args, run_config_from_args

    flagged = run_config_from_args(parse_run_args(["--benchmark", "synthetic-small", "--text-centering", "domain"]))
    assert flagged.text_centering == "domain" and run_config("synthetic-small").text_centering == "none"
    config = replace(run_config("synthetic-small", model={"max_len": 8}, train={"max_epochs": 1},
                                text_model="hash-bow-32", valid_max_users=20), text_centering="domain")
    run = PretrainedRun.load(pretrain(config, runs=tmp_path / "runs"))
    assert run.config.text_centering == "domain"
    prepared = prepare_for_run(run.config)
    model, _, _ = run.on_sources(prepared)
    for k, domain in enumerate(prepared.sources.domains):  # the model was given each domain's centred vectors
        start = int(prepared.sources.item_offsets[k])
        assert model.item_text[start: start + domain.n_items].mean(0).abs().max() < 1e-5
    target = prepared.benchmark.targets[0]
    config = EvalConfig(k_percent=prepared.benchmark.k_percent, max_users=10, n_boot=5)
    methods = {row["method"] for row in diagnostic_rows(prepared, target, run, config)}
    assert {"SBERT (domain-centred text)", "POP"} <= methods  # the rules read the run's vectors, and say so
    plain = prepare_for_run(replace(run.config, text_centering="none"))
    with pytest.raises(ValueError, match="text centring 'domain'.*prepared with 'none'"):
        run.target_scorer(plain, target)
    payload = run.config.to_json()
    del payload["text_centering"]  # a run written before the option: plain text
    assert RunConfig.from_json(payload).text_centering == "none"
    with pytest.raises(ValueError, match="text_centering must be one of"):
        replace(run.config, text_centering="sphere")


def test_a_baseline_resumes_only_its_own_interrupted_training(tmp_path):
    from prerec_pyro.baseline_runs import resumable
    from prerec_pyro.inference.checkpoint import save_checkpoint

    last, recipe = tmp_path / "last.pt", {"kind": "unisrec", "train": {"seed": 0, "max_epochs": 100}}
    assert resumable(last, recipe, "cpu") is None  # nothing to resume
    save_checkpoint(last, {"model": {}, "state": {"epoch": 4}, "recipe": recipe})
    assert resumable(last, recipe, "cpu")["state"]["epoch"] == 4
    other = {**recipe, "train": {"seed": 1, "max_epochs": 100}}
    with pytest.raises(ValueError, match=rf"{last} holds an interrupted training of another configuration"):
        resumable(last, other, "cpu")
    higher_cap = {**recipe, "train": {"seed": 0, "max_epochs": 300}}  # the cap alone changes no epoch's steps
    assert resumable(last, higher_cap, "cpu")["state"]["epoch"] == 4
    scheduled = {**recipe, "train": {"seed": 0, "max_epochs": 100, "cosine_epochs": 0}}  # saved before the key
    assert resumable(last, scheduled, "cpu")["state"]["epoch"] == 4
    with pytest.raises(ValueError, match="differing: train"):
        resumable(last, {**recipe, "train": {"seed": 0, "max_epochs": 100, "cosine_epochs": 20}}, "cpu")


def test_a_run_ended_by_its_cosine_schedule_is_finished_and_says_why(tmp_path, caplog):
    config = run_config("synthetic-small", model={"max_len": 8}, train={"max_epochs": 5, "cosine_epochs": 2,
                        "patience": 5}, text_model="hash-bow-32", valid_max_users=20)
    run_dir = pretrain(config, runs=tmp_path / "runs")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["convergence"]["stopped_by"] == "schedule" and metrics["convergence"]["epochs_run"] == 2
    assert "not converged" not in caplog.text  # neither the cap's warning nor the loss trend's advice to resume
    assert resume_pretraining(run_dir, max_epochs=10) == run_dir  # the rate is 0: nothing to train
    assert "cosine schedule has ended" in caplog.text
    assert len(json.loads((run_dir / "history.json").read_text())["history"]) == 2

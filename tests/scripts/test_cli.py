"""Each command-line script end to end with tiny arguments (the tiny synthetic benchmark, hashed text vectors)."""

import importlib.util
import json
import re
from pathlib import Path

import pandas as pd
import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PREREC_CACHE_DIR", str(tmp_path / "cache"))


TINY = ["--benchmark", "synthetic-small", "--text-model", "hash-bow-32", "--epochs", "2", "--max-len", "8",
        "--valid-max-users", "20"]


def pretrain(tmp_path, *extra):
    script = load_script("map_pretrain")
    return script.main(script.parse_args([*TINY, "--runs", str(tmp_path / "runs"), *extra]))


def test_map_pretrain_writes_a_run_directory(tmp_path):
    run_dir = pretrain(tmp_path)
    for name in ("config.json", "best.pt", "last.pt", "history.json", "metrics.json"):
        assert (run_dir / name).exists(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["valid"]) == {"india", "spain", "canada"}
    assert 0.0 <= metrics["valid"]["india"]["rndcg@k%"] <= 1.0
    assert metrics["epochs_run"] == 2
    convergence = metrics["convergence"]
    assert convergence["epochs_run"] == 2 and convergence["max_epochs"] == 2
    assert convergence["stopped_by"] in ("cap", "patience") and 0 <= convergence["best_epoch"] <= 1


def test_map_pretrain_resume_and_print_shapes(tmp_path, capsys):
    run_dir = pretrain(tmp_path)
    script = load_script("map_pretrain")
    resumed = script.main(script.parse_args(["--resume", str(run_dir)]))
    assert resumed == run_dir
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history["history"]) == 2  # already finished: nothing re-run
    pretrain(tmp_path, "--print-shapes")
    assert "eps_u" in capsys.readouterr().out


def test_intervene_eval_prints_the_table_and_writes_files(tmp_path, capsys):
    pretrain(tmp_path)
    pretrain(tmp_path, "--ablation", "prerec_n")
    script = load_script("intervene_eval")
    table = script.main(script.parse_args(["--benchmark", "synthetic-small", "--target", "japan", "--runs",
                                           str(tmp_path / "runs"), "--n-boot", "50"]))
    out = capsys.readouterr().out
    for method in ("Random", "POP", "SBERT", "SBERT+POP", "PreRec_n, f_seq weighed by the history",
                   "PreRec, f_seq weighed by the history"):
        assert method in set(table["method"]), method  # the default scoring, for both runs
    assert "rndcg@k% (unseen, keep)" in out and "rndcg@k% (all, exclude)" in out
    assert set(table["history_items"]) == {"keep", "exclude"}
    written = list((tmp_path / "runs" / "synthetic-small").glob("prerec-*/zero_shot_japan.csv"))
    assert len(written) == 1 and written[0].with_suffix(".png").stat().st_size > 0  # the figure beside the table
    assert "mean over 1 target(s)" in out and "rndcg@k% (exclude)" in out
    by_likelihood = script.main(script.parse_args(["--benchmark", "synthetic-small", "--target", "japan", "--runs",
                                                   str(tmp_path / "runs"), "--n-boot", "20",
                                                   "--sequence-evidence", "likelihood"]))
    assert "PreRec, f_seq weighed by the history (likelihood)" in set(by_likelihood["method"])
    assert list((tmp_path / "runs" / "synthetic-small").glob("prerec-*/zero_shot_japan_evidence_likelihood.csv"))
    plain = script.main(script.parse_args(["--benchmark", "synthetic-small", "--target", "japan", "--runs",
                                           str(tmp_path / "runs"), "--n-boot", "20", "--no-weigh-sequence"]))
    assert {"PreRec", "PreRec_n", "Random", "POP", "SBERT", "SBERT+POP"} == set(plain["method"])  # Eq. 8 as written


def test_cold_items_are_remembered_by_the_run_and_scored_as_new_items(tmp_path):
    from prerec_pyro.inference.runs import load_run_config
    from prerec_pyro.pipeline import domain_statistics, prepare_benchmark
    from prerec_pyro.text import TextEncoderConfig

    run_dir = pretrain(tmp_path, "--cold-items", "0.3", "--cold-seed", "1")
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["cold_items"], config["cold_seed"]) == (0.3, 1)
    script = load_script("intervene_eval")
    table = script.main(script.parse_args(["--benchmark", "synthetic-small", "--target", "japan", "--runs",
                                           str(tmp_path / "runs"), "--n-boot", "20"]))
    rows = table[(table["domain"] == "japan") & (table["subset"] == "new_items") & (table["history_items"] == "keep")]
    rows = rows.set_index("method")
    assert {"Random", "POP", "SBERT", "PreRec, f_seq weighed by the history"} <= set(rows.index)
    assert (rows["n_samples"] > 0).all() and rows["n_samples"].nunique() == 1
    run = load_run_config(run_dir)  # the evaluated benchmark is the run's: the same ids removed from the sources
    text = TextEncoderConfig(model="hash-bow-32", cache_dir=str(tmp_path / "stats"), show_progress=False)
    stats = {f: domain_statistics(prepare_benchmark("synthetic-small", None, run.sequences, run.popularity, text,
                                                    cold_items=f, cold_seed=1)).set_index("domain")
             for f in (0.0, 0.3)}
    prerec = rows.loc["PreRec, f_seq weighed by the history", "n_samples"]
    assert prerec == stats[0.3].loc["japan", "new_item_test_samples"]
    assert prerec > stats[0.0].loc["japan", "new_item_test_samples"]
    written = json.loads((run_dir / "zero_shot_japan.json").read_text())
    assert (written["cold_items"], written["cold_seed"]) == (0.3, 1)


def test_intervene_eval_rejects_unknown_targets(tmp_path):
    pretrain(tmp_path)
    script = load_script("intervene_eval")
    with pytest.raises(ValueError, match="unknown target 'atlantis'.*japan"):
        script.main(script.parse_args(["--benchmark", "synthetic-small", "--target", "atlantis",
                                       "--runs", str(tmp_path / "runs")]))


def test_prepare_data_prints_statistics(capsys):
    script = load_script("prepare_data")
    stats = script.main(script.parse_args(["--benchmark", "synthetic-small", "--text-model", "hash-bow-32"]))
    assert list(stats["domain"]) == ["india", "spain", "canada", "australia", "mexico", "germany", "japan"]
    assert (stats.loc[stats.role == "target", "unseen_test_samples"] > 0).all()
    assert "interactions" in capsys.readouterr().out


def test_reproduce_runs_the_whole_study_and_resumes(tmp_path):
    script = load_script("reproduce")
    args = ["--benchmark", "synthetic-small", "--runs", str(tmp_path / "runs"), "--first-n", "0", "all",
            "--ft-epochs", "1", "--baseline-epochs", "1", "--n-boot", "10",
            "--pretrain-args", "--text-model", "hash-bow-32", "--epochs", "1", "--max-len", "8"]
    study = script.main(script.parse_args(args))
    table1 = (study / "table1_zero_shot.csv").read_text()
    for method in ("POP", "SBERT", "PreRec_n", "PreRec", "ZESRec", "UniSRec"):
        assert method in table1, method
    table2 = (study / "table2_fine_tuned.csv").read_text()
    for method in ("SASRec", "GRU4Rec", "UniSRec", "PreRec (from scratch)"):
        assert method in table2, method
    diagnostics = pd.read_csv(study / "zero_shot_diagnostics.csv")
    assert {"PreRec", "PreRec without sequence model", "SBERT"} <= set(diagnostics["method"])
    assert diagnostics["sbert_spearman"].notna().sum() == 4  # Eq. 8's row of each target
    assert (study / "fig3_incremental.png").stat().st_size > 10_000
    assert (study / "fig5_popularity.png").stat().st_size > 10_000
    before = (study / "table2_fine_tuned.csv").stat().st_mtime_ns
    first = json.loads((study / "study.json").read_text())
    assert first["steps_reused"] == [] and set(first["pretraining_wall_seconds"]) == {"prerec", "prerec_n"}
    script.main(script.parse_args(args))  # resumes: every step is on disk already
    assert (study / "table2_fine_tuned.csv").stat().st_mtime_ns == before
    again = json.loads((study / "study.json").read_text())
    assert again["steps_reused"] == ["zero_shot", "diagnostics", "fine_tuned", "curves"]
    for step in again["steps_reused"]:  # the time each step took when it ran, not the time to read it back
        assert again["seconds"][step] == first["seconds"][step]


def test_synthetic_recovery_refuses_other_benchmarks(tmp_path):
    run_dir = pretrain(tmp_path)
    script = load_script("synthetic_recovery")
    with pytest.raises(ValueError, match="planted truth exists for 'synthetic' only"):
        script.main(script.parse_args(["--run", str(run_dir)]))


def test_resume_with_more_epochs_continues_training(tmp_path):
    run_dir = pretrain(tmp_path)
    script = load_script("map_pretrain")
    script.main(script.parse_args(["--resume", str(run_dir), "--epochs", "3", "--patience", "5"]))
    history = json.loads((run_dir / "history.json").read_text())
    assert [r["epoch"] for r in history["history"]] == [0, 1, 2]
    assert json.loads((run_dir / "config.json").read_text())["train"]["max_epochs"] == 3


@pytest.mark.parametrize("name", ["intervene_eval", "finetune", "reproduce"])
def test_rndcg_b_flag_defaults_to_following_k_percent(name):
    script = load_script(name)
    assert script.parse_args([]).rndcg_b is None  # None: b = 600 / K%
    assert script.parse_args(["--rndcg-b", "15000"]).rndcg_b == 15000.0


def test_ablations_trains_each_variant_and_seed_once_and_summarises(tmp_path, capsys):
    script = load_script("ablations")
    flags = ["--benchmark", "synthetic-small", "--variants", "prerec_n", "prerec_per_obs", "--seeds", "0", "1",
             "--scorings", "eq8", "shared", "history", "history_likelihood", "--runs", str(tmp_path / "abl"),
             "--n-boot", "20",
             "--pretrain-args",
             *TINY[2:]]
    out = script.main(script.parse_args(flags))
    both = pd.read_csv(out / "ablations.csv")
    assert list(both["history_items"].drop_duplicates()) == ["keep", "exclude"]
    table = both[both["history_items"] == "keep"].reset_index(drop=True)
    assert list(table["method"]) == ["Random", "POP", "SBERT", "SBERT+POP", "prerec_n/eq8", "prerec_per_obs/eq8",
                                     "prerec_per_obs/shared", "prerec_per_obs/history",
                                     "prerec_per_obs/history_likelihood"]
    assert (table.loc[4:, "n_seeds"] == 2).all() and (table.loc[:3, "n_seeds"] == 1).all()
    assert (table["rndcg@k%_std"] >= 0).all() and table.loc[4:, "rndcg@k%_std"].gt(0).any()
    assert table.loc[:3, "selection_mean"].isna().all()  # training-free baselines have no selection score
    assert table.loc[[4, 5], "selection_mean"].between(0, 1).all()
    assert table.loc[[6, 7, 8], "selection_mean"].isna().all()  # a scoring rule of the same run has no score of its own
    printed = capsys.readouterr().out
    assert "| prerec_per_obs/eq8 |" in printed and "history items: exclude" in printed
    assert printed.count("| prerec_n/eq8 |") == 3  # keep, exclude and the new-items table
    assert "| cap after 2, cap after 2 |" in printed
    runs = sorted((tmp_path / "abl").glob("*/seed*/synthetic-small/*/best.pt"))
    assert len(runs) == 4
    script.main(script.parse_args(flags))  # reuses the finished runs
    assert sorted((tmp_path / "abl").glob("*/seed*/synthetic-small/*/best.pt")) == runs
    targets = (out / "ablations_targets.md").read_text()
    assert targets.count("| japan |") == 2 and "history items: exclude" in targets  # a table per rule
    merged = script.main(script.parse_args(["--benchmark", "synthetic-small", "--from-long",
                                            str(out / "ablations_long.csv"), str(out / "ablations_long.csv"),
                                            "--out", str(tmp_path / "merged")]))
    pd.testing.assert_frame_equal(pd.read_csv(merged / "ablations.csv"), both)
    made_by = (merged / "command.txt").read_text().splitlines()  # what made the inputs, then the merge
    assert made_by[0] == (out / "command.txt").read_text().strip() and "--from-long" in made_by[1]
    assert len(made_by) == 2 and len(pd.read_csv(merged / "ablations_long.csv")) == len(
        pd.read_csv(out / "ablations_long.csv"))


def test_ablations_refuses_runs_of_a_benchmark_with_other_sources():
    script = load_script("ablations")
    with pytest.raises(SystemExit):
        script.parse_args(["--benchmark", "retail-to-movielens", "--pretrained-on", "movielens-ages"])
    assert script.parse_args(["--benchmark", "retail-to-movielens", "--pretrained-on", "retail-countries"])


def test_map_pretrain_selects_on_the_intervened_validation_score(tmp_path):
    run_dir = pretrain(tmp_path, "--select-by", "intervened", "--prior-units", "per_observation",
                       "--popularity-mode", "sliding")
    config = json.loads((run_dir / "config.json").read_text())
    assert config["select_by"] == "intervened" and config["model"]["prior_units"] == "per_observation"
    assert config["popularity"]["mode"] == "sliding"
    history = json.loads((run_dir / "history.json").read_text())
    assert history["best_score"] == max(h["score"] for h in history["history"])
    with pytest.raises(SystemExit):
        load_script("map_pretrain").parse_args([*TINY, "--select-by", "target"])


def test_map_pretrain_selects_the_length_on_a_held_out_source(tmp_path, capsys):
    run_dir = pretrain(tmp_path, "--select-by", "held_out", "--held-out", "spain")
    config = json.loads((run_dir / "config.json").read_text())
    assert config["select_by"] == "held_out" and config["held_out"] == ["spain"]
    stage = json.loads((run_dir / "selection" / "config.json").read_text())
    assert stage["selection_stage"] and config["train"]["max_epochs"] == json.loads(
        (run_dir / "selection" / "metrics.json").read_text())["best_epoch"] + 1
    for flags in (["--select-by", "held_out"], ["--held-out", "spain"]):
        with pytest.raises(SystemExit):
            load_script("map_pretrain").parse_args([*TINY, *flags])
        assert "--select-by held_out and --held-out SOURCE ... go together" in capsys.readouterr().err


def test_ablations_refuses_to_score_runs_of_differently_prepared_data(tmp_path):
    from prerec_pyro.inference.runs import save_run_config

    pretrain_script, script = load_script("map_pretrain"), load_script("ablations")
    runs = {}
    for mode in ("interval", "sliding"):
        config = pretrain_script.run_config_from_args(pretrain_script.parse_args([*TINY, "--popularity-mode", mode]))
        save_run_config(tmp_path / mode, config)
        runs[(mode, 0)] = tmp_path / mode
    script.check_same_data({("interval", 0): runs[("interval", 0)]})
    with pytest.raises(ValueError, match="differently prepared data"):
        script.check_same_data(runs)


def test_ablations_train_the_baselines_with_prerecs_budget_and_reuse_them(tmp_path):
    script = load_script("ablations")
    flags = ["--benchmark", "synthetic-small", "--variants", "prerec_n", "zesrec", "unisrec", "--seeds", "0",
             "--runs", str(tmp_path / "abl"), "--n-boot", "20", "--pretrain-args", *TINY[2:]]
    out = script.main(script.parse_args(flags))
    table = pd.read_csv(out / "ablations.csv").set_index("method")
    assert {"prerec_n/eq8", "zesrec", "unisrec"} <= set(table.index)
    assert table.loc[["zesrec", "unisrec"], "rndcg@k%_mean"].between(0, 1).all()
    saved = sorted((tmp_path / "abl").glob("*/seed0/synthetic-small/model.pt"))
    assert [p.parts[-4] for p in saved] == ["unisrec", "zesrec"]
    config = json.loads((saved[1].parent / "config.json").read_text())
    assert (config["train"]["max_epochs"], config["train"]["loss"]) == (2, "sampled")  # TINY's --epochs 2
    stamps = [p.stat().st_mtime_ns for p in saved]
    script.main(script.parse_args(flags))
    assert [p.stat().st_mtime_ns for p in saved] == stamps  # reused, not trained again
    only = ["--benchmark", "synthetic-small", "--variants", "zesrec", "--seeds", "0", "--runs", str(tmp_path / "abl"),
            "--skip-targets", "--out", str(tmp_path / "only"), "--pretrain-args", *TINY[2:]]
    assert script.main(script.parse_args(only)) == tmp_path / "only"  # baselines only: trained (here reused), no table
    assert not (tmp_path / "only" / "ablations.csv").exists()


def test_ablations_on_centred_text_name_it_and_keep_their_baselines_apart(tmp_path):
    script = load_script("ablations")
    flags = ["--benchmark", "synthetic-small", "--variants", "prerec_n_default", "zesrec", "--seeds", "0",
             "--runs", str(tmp_path / "abl"), "--n-boot", "20", "--pretrain-args", *TINY[2:]]
    plain = pd.read_csv(script.main(script.parse_args(flags)) / "ablations.csv").query("history_items == 'keep'")
    plain = plain.set_index("method")
    with pytest.raises(ValueError, match="trained on text centring 'none', not 'domain'"):  # the plain runs
        script.main(script.parse_args(flags + ["--text-centering", "domain"]))
    flags[flags.index("--runs") + 1] = str(tmp_path / "centred")
    out = script.main(script.parse_args(flags + ["--text-centering", "domain"]))
    centred = pd.read_csv(out / "ablations.csv").query("history_items == 'keep'").set_index("method")
    label = " (domain-centred text)"
    assert {"Random", "POP", "SBERT" + label, "SBERT+POP" + label, "prerec_n_default/eq8" + label,
            "zesrec" + label} <= set(centred.index)
    assert centred.loc["POP", "rndcg@k%_mean"] == plain.loc["POP", "rndcg@k%_mean"]  # reads no text
    row = next(line for line in (out / "ablations.md").read_text().splitlines()
               if line.startswith("| prerec_n_default/eq8" + label))
    assert re.search(r"\| (cap|patience) after \d+ \|$", row)  # its convergence record found under its label
    assert centred.loc["SBERT" + label, "rndcg@k%_mean"] != plain.loc["SBERT", "rndcg@k%_mean"]


def test_ablations_resumes_an_interrupted_run_of_the_same_configuration(tmp_path):
    """An interrupted run is continued from its checkpoint (not trained again from scratch); one of another
    configuration is left alone."""
    script = load_script("ablations")
    flags = ["--benchmark", "synthetic-small", "--variants", "prerec_n", "--seeds", "0", "--runs", str(tmp_path),
             "--skip-targets", "--pretrain-args", *TINY[2:]]
    args = script.parse_args(flags)
    run_dir = script.ensure_run(args, "prerec_n", 0)
    history = json.loads((run_dir / "history.json").read_text())["history"]
    (run_dir / "state.json").write_text(json.dumps({"state": "interrupted"}))
    assert script.ensure_run(args, "prerec_n", 0) == run_dir  # the same configuration: resumed
    assert json.loads((run_dir / "state.json").read_text())["state"] == "finished"
    assert json.loads((run_dir / "history.json").read_text())["history"] == history  # at its budget: nothing retrained
    (run_dir / "state.json").write_text(json.dumps({"state": "interrupted"}))
    longer = script.parse_args(flags[:-len(TINY[2:])] + ["--epochs", "3", *TINY[4:]])
    assert script.ensure_run(longer, "prerec_n", 0) != run_dir  # --epochs 3 is another configuration: a new run
    assert json.loads((run_dir / "state.json").read_text())["state"] == "interrupted"

"""Each benchmark script's main() with tiny arguments: it runs, prints its table and writes JSON with the expected keys.

No timing is asserted (timings depend on the machine); the exact checks are on what the benchmarks compute besides
time: the hand-written loss equals Pyro's, cutting a batch to its longest window changes no loss, the counts of
evaluated targets.
"""

import dataclasses
import importlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SYNTHETIC = ["--source-users", "40", "--items-per-domain", "60", "--pool-items", "80", "--unique-items", "5",
             "--min-seq-len", "2", "--mean-seq-len", "6", "--max-seq-len", "12", "--max-len", "8", "--text-dim", "16"]
MODEL = ["--hidden-dim", "8", "--heads", "2", "--layers", "1"]
TIMING = ["--repeats", "2", "--warmup", "0", "--threads", "1"]  # one thread: tiny ops, no contention


@pytest.fixture
def load(monkeypatch):
    """Import a benchmark script as a module (the scripts import their helpers from the benchmarks folder);
    torch's thread count, which ``--threads`` sets, is restored afterwards."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    threads = torch.get_num_threads()
    yield importlib.import_module
    torch.set_num_threads(threads)


def run(module, tmp_path, *argv):
    out = tmp_path / f"{module.__name__}.json"
    payload = module.main(module.parse_args([*argv, "--out", str(out)]))
    written = json.loads(out.read_text())
    assert set(written) == set(payload)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")], "atomic write left a temp file"
    return written


def test_bench_train(load, tmp_path, capsys):
    bench = load("bench_train")
    result = run(bench, tmp_path, *SYNTHETIC, *MODEL, *TIMING, "--batch-size", "4", "--negatives", "7",
                 "--steps", "2", "--config", "eq6")
    assert {"results", "ratios", "loss_check", "targets_met", "environment", "batch_build_ms"} <= set(result)
    assert set(result["results"]) == {"ours", "prerec_n", "ours-cut", "algebra-floor", "hand", "reference"}
    for row in result["results"].values():
        assert len(row["seconds_per_round"]) == 2 and row["targets_per_s"] > 0
    assert result["results"]["reference"]["targets_per_step"] == 4  # one target per sample
    assert result["results"]["ours"]["targets_per_step"] == result["results"]["hand"]["targets_per_step"]
    assert set(result["ratios"]) == {"ours_vs_reference", "pyro_overhead", "cut_vs_ours", "prerec_vs_prerec_n_step",
                                     "step_vs_algebra_floor"}
    assert result["loss_check"]["rel_diff"] < 1e-5  # the hand-written loss is Pyro's, up to the prior constants
    out = capsys.readouterr().out
    assert "ours vs per-sample reference: " in out and "pyro overhead: " in out and "prerec vs prerec_n step" in out


def test_bench_train_times_the_default_configuration(load, tmp_path, capsys):
    bench = load("bench_train")
    result = run(bench, tmp_path, *SYNTHETIC, *MODEL, *TIMING, "--batch-size", "4", "--negatives", "7",
                 "--steps", "2")
    assert result["config"] == "recommended"
    assert set(result["results"]) == {"ours", "prerec_n", "ours-cut", "algebra-floor"}
    assert result["ratios"]["prerec_vs_prerec_n_step"] > 0 and "prerec_vs_prerec_n_step <= 1.5" in result["targets_met"]
    assert result["ratios"]["step_vs_algebra_floor"] > 0 and "step_vs_algebra_floor <= 2" in result["targets_met"]
    out = capsys.readouterr().out
    assert "configuration: recommended" in out and "step vs algebra floor: " in out


def test_trailing_padding_changes_no_loss(load):
    """BatchBuilder trims trailing padding (cut_batch then has nothing to cut); padding it back changes no loss."""
    bench = load("bench_train")
    args = bench.parse_args([*SYNTHETIC, *MODEL, "--batch-size", "6", "--negatives", "7", "--steps", "2",
                             "--max-len", "16"])
    data, text = load("bench_common").synthetic_sources(args)
    trainer, batches, _ = bench.build_ours(args, data, text, torch.device("cpu"))
    trainer.model.eval()
    for batch in batches:
        assert load("bench_common").cut_batch(batch).items.shape == batch.items.shape
        padded = dataclasses.replace(
            batch, items=pad(batch.items), targets=pad(batch.targets), target_mask=pad(batch.target_mask),
            period_index=pad(batch.period_index), factors_targets=pad(batch.factors_targets))
        with torch.no_grad():
            full = trainer.elbo.differentiable_loss(trainer.scaled_model, trainer.scaled_guide, padded)
            short = trainer.elbo.differentiable_loss(trainer.scaled_model, trainer.scaled_guide, batch)
        assert torch.allclose(full, short, rtol=1e-5)


def pad(tensor, extra=3):
    """Append ``extra`` padding positions (zeros / False) along dim 1."""
    shape = list(tensor.shape)
    shape[1] = extra
    return torch.cat([tensor, torch.zeros(shape, dtype=tensor.dtype)], dim=1)


def test_bench_scale(load, tmp_path, capsys):
    bench = load("bench_scale")
    result = run(bench, tmp_path, *MODEL, *TIMING, "--users", "50,400", "--items", "30", "--text-dim", "8",
                 "--batch-size", "4", "--seq-len", "4", "--negatives", "7", "--steps", "2")
    rows = {(r["guide"], r["users"]): r for r in result["results"]}
    assert set(rows) == {(g, n) for g in ("delta", "sparse-delta") for n in (50, 400)}
    for row in rows.values():
        assert row["step_ms"] > 0 and row["peak_mb"] > 0 and len(row["step_ms_per_round"]) == 2
    ratios = result["ratio_largest_to_smallest"]
    assert ratios["delta"] == pytest.approx(rows[("delta", 400)]["step_ms"] / rows[("delta", 50)]["step_ms"])
    assert set(ratios) == {"delta", "sparse-delta"} and len(result["targets_met"]) == 1
    assert "sparse-delta: step time at 400 users / at 50 users" in capsys.readouterr().out


def test_bench_eval_counts_every_evaluated_position(load, tmp_path):
    bench = load("bench_eval")
    cache = tmp_path / "data"
    argv = [*SYNTHETIC, *MODEL, *TIMING, "--data-cache", str(cache)]
    result = run(bench, tmp_path, *argv)
    scorers = {"map", "intervention", "intervention-weighed", "map-dense", "intervention-scan"}  # weighed: the default
    assert set(result["results"]) == scorers | {"matmul", "transformer+matmul"}
    assert set(result["ratio_to_matmul"]) == scorers and len(result["targets_met"]) == 5
    assert set(result["ratio_to_transformer_matmul"]) == set(result["ratio_to_matmul"])
    data, _ = load("bench_common").synthetic_sources(bench.parse_args(argv))  # read back from the cache
    assert len(list(cache.glob("synthetic-*/manifest.json"))) == 1
    dom = data.domains[0]
    lengths = np.diff(dom.seq_offsets)[dom.users_in("test")]
    assert result["n_targets"] == int(np.maximum(lengths - 1, 0).sum())  # positions >= 1, each once
    assert result["scored_pairs"] == result["n_targets"] * dom.n_items == result["n_targets"] * result["n_items"]


def test_dense_scorer_ranks_like_the_target_scorer(load):
    bench = load("bench_eval")
    args = bench.parse_args([*SYNTHETIC, *MODEL, "--max-len", "16"])
    data, text = load("bench_common").synthetic_sources(args)
    scorers = bench.build_scorers(args, data, text, torch.device("cpu"))
    config = bench.EvalConfig(split="test")
    fast, dense = (bench.evaluate_domain(scorers[name], data, 0, config) for name in ("map", "map-dense"))
    assert len(fast.ranks) > 0 and hasattr(scorers["map"], "score_targets")
    np.testing.assert_allclose(dense.ranks, fast.ranks)
    listed, scanned = (bench.evaluate_domain(scorers[name], data, 0, config)
                       for name in ("intervention", "intervention-scan"))  # the counted pairs listed or scanned
    np.testing.assert_allclose(scanned.ranks, listed.ranks)


def test_bench_encode_hash_bow(load, tmp_path, monkeypatch):
    monkeypatch.setenv("PREREC_CACHE_DIR", str(tmp_path / "unused"))
    bench = load("bench_encode")
    result = run(bench, tmp_path, "--n-texts", "30", "--models", "hash-bow-32", "--repeats", "2", "--threads", "1")
    row = result["results"]["hash-bow-32"]
    assert result["n_texts"] == 30 and row["dim"] == 32 and row["cached_equals_cold"] is True
    assert row["cold_texts_per_s"] > 0 and row["cached_texts_per_s"] > 0 and len(row["cold_s_per_round"]) == 2
    assert len(set(bench.synthetic_texts(30, 0))) == 30


def test_common_helpers(load, tmp_path):
    common = load("bench_common")
    assert common.paired_ratio([2.0, 4.0, 9.0], [1.0, 1.0, 3.0]) == 3.0  # median of 2, 4, 3
    calls = []
    seconds = common.alternate({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3,
                               warmup=1, device=torch.device("cpu"))
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"] and [len(v) for v in seconds.values()] == [3, 3]
    table = common.format_table([{"name": "x", "value": 1.23456}], ["name", "value"]).splitlines()
    assert table[0].split() == ["name", "value"] and table[2].split() == ["x", "1.235"]
    common.write_json(tmp_path / "sub" / "r.json", {"n": np.int64(3)})
    assert json.loads((tmp_path / "sub" / "r.json").read_text()) == {"n": 3}


def test_gpu_check_script_parses():
    subprocess.run(["bash", "-n", str(BENCHMARKS / "gpu_check.sh")], check=True)


def test_bench_recommend(load, tmp_path, capsys):
    bench = load("bench_recommend")
    result = run(bench, tmp_path, *MODEL, *TIMING, "--histories", "30", "--items", "50", "--max-history", "6",
                 "--batch-size", "8")
    assert set(result["results"]) == {"recommend", "recommend, weighed", "matmul", "transformer+matmul"}
    assert all(row["histories_per_s"] > 0 for row in result["results"].values())
    assert set(result["recommend_ratio_to"]) == {"matmul", "transformer+matmul"}
    assert result["weighed_vs_eq8"] > 0
    printed = capsys.readouterr().out
    assert "recommend vs matmul: " in printed and "recommend, weighed (the default" in printed


def test_bench_train_paper_scale_path_on_tiny_sizes(load, capsys):
    """``--paper-scale`` sets the paper's sizes; its path (data preparation, sparse guide, projected epoch) runs here
    on tiny sizes put back after parsing."""
    bench = load("bench_train")
    args = bench.parse_args(["--paper-scale", "--steps", "2", *TIMING])
    assert (args.source_users, args.hidden_dim, args.batch_size) == (633_334, 256, 256)
    tiny = bench.parse_args([*SYNTHETIC, *MODEL, "--steps", "2", "--batch-size", "4", *TIMING])
    tiny.paper_scale = True
    result = bench.main(tiny)
    assert result["n_obs"] > 0 and result["targets_per_s"] > 0 and result["prepare_peak_mb"] > 0
    assert result["projected_epoch_minutes"] == pytest.approx(result["n_obs"] / result["targets_per_s"] / 60)
    assert "projected epoch:" in capsys.readouterr().out


def test_bench_ddp_times_one_and_two_processes(load, tmp_path, capsys):
    bench = load("bench_ddp")
    flags = (*SYNTHETIC, *MODEL, "--threads", "1", "--warmup", "0", "--steps", "2", "--batch-size", "4",
             "--negatives", "7", "--processes", "1", "2")
    result = run(bench, tmp_path, *flags)  # each rank ends by Distributed.exit (docs/DESIGN.md, "Ending a rank")
    rows = {row["processes"]: row for row in result["rows"]}
    assert set(rows) == {1, 2} and rows[1]["speedup_vs_1"] == 1.0
    assert all(row["targets_per_s"] > 0 and row["threads_per_process"] == 1 for row in rows.values())
    assert "speedup_vs_1" in capsys.readouterr().out


def _fake_run(folder: Path, records: list[dict]) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"benchmark": "movielens-ages", "train": {"lr": 1e-3}}))
    (folder / "history.json").write_text(json.dumps({"history": records}))
    (folder / "metrics.json").write_text(json.dumps({"convergence": {"stopped_by": "patience"}}))
    return folder


def test_bench_convergence_reads_the_wall_clock_and_the_time_to_95_percent(load, tmp_path, capsys):
    """Hand-computed: scores 0.5, 0.9, 0.96, 1.0, 0.99 -> converged 1.0, 95% first reached at epoch 2, whose wall
    clock is (10 + 2) + (10 + 2) + (10 + 2) = 36 s."""
    bench = load("bench_convergence")
    scores = [0.5, 0.9, 0.96, 1.0, 0.99]
    run_dir = _fake_run(tmp_path / "run", [{"epoch": e, "seconds": 10.0, "validation_seconds": 2.0, "score": s}
                                           for e, s in enumerate(scores)])
    curves = bench.main(bench.parse_args(["--run-dirs", str(run_dir), "--out-dir", str(tmp_path / "out")]))
    (result,) = curves
    assert result["converged_score"] == 1.0 and result["epoch_to_95"] == 2 and result["time_to_95_s"] == 36.0
    assert result["total_s"] == 60.0 and result["stopped_by"] == "patience"
    written = (tmp_path / "out" / "convergence.csv").read_text().splitlines()
    assert written[0] == "benchmark,recipe,run_dir,epoch,wall_s,score,train_s,valid_s"
    assert len(written) == 1 + len(scores)
    assert written[1].startswith("movielens-ages,lr 0.001,")
    assert (tmp_path / "out" / "convergence.png").stat().st_size > 0
    assert ("95% of it at epoch 2, 0.6 min (target <= 10 min: met); an epoch's median 10.0 s of training and 2.0 s "
            "of validation") in capsys.readouterr().out
    (run_dir / "metrics.json").unlink()  # an unfinished run (still training, or stopped by hand) is read as such
    (unfinished,) = bench.main(bench.parse_args(["--run-dirs", str(run_dir), "--out-dir", str(tmp_path / "out")]))
    assert unfinished["stopped_by"] == "unfinished"
    assert bench.recipe({"lr": 3e-3, "warmup_steps": 100, "lr_decay": 0.5}) == "lr 0.003, warm-up 100, x0.5 per plateau"
    assert bench.recipe({"lr": 3e-3, "cosine_epochs": 20}) == "lr 0.003, cosine over 20 epochs"


def test_bench_convergence_refuses_a_history_without_validation_times(load, tmp_path):
    bench = load("bench_convergence")
    run_dir = _fake_run(tmp_path / "old", [{"epoch": 0, "seconds": 10.0, "score": 0.5}])
    with pytest.raises(ValueError, match="validation_seconds"):
        bench.main(bench.parse_args(["--run-dirs", str(run_dir), "--out-dir", str(tmp_path / "out")]))


def test_profile_step_times_and_profiles_the_default_on_a_named_benchmark(load, capsys):
    """The embedded synthetic-small benchmark, more steps than one epoch has batches: the seconds and both profiles
    (the model's own functions among them: every function is listed, so the check does not depend on how the
    machine's timings order them) are printed and returned."""
    bench = load("profile_step")
    result = bench.main(bench.parse_args(["--benchmark", "synthetic-small", "--warmup", "0", "--steps", "1",
                                          "--profile-steps", "30", "--top", "100000", "--valid-max-users", "5",
                                          "--threads", "1"]))
    assert result["step_seconds"] > 0 and result["validation_seconds"] > 0
    assert "candidates.py" in result["step_profile"] and "evaluate.py" in result["validation_profile"]
    assert "s a training step (32 sequences)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench.parse_args(["--steps", "0"])

"""The ablation suite: one ablations.py invocation per benchmark and group, never mixing popularity modes."""

from pathlib import Path

import pytest

from prerec_pyro.cli import load_script as load_path

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def load_script(name):
    return load_path(SCRIPTS / f"{name}.py")


def test_every_group_shares_one_popularity_mode():
    from prerec_pyro.baseline_runs import BASELINE_KINDS
    from prerec_pyro.models.config import RECOMMENDED_POPULARITY_MODE

    ablations = load_script("ablations")
    suite = load_script("ablation_suite")
    for variants, *_ in suite.GROUPS.values():
        modes = {ablations.VARIANTS[v].popularity_mode or RECOMMENDED_POPULARITY_MODE for v in variants
                 if ablations.VARIANTS[v].method not in BASELINE_KINDS}  # the baselines have no popularity term
        assert len(modes) == 1, (variants, modes)


def test_variants_are_configuration_changes_of_the_invocations_base():
    ablations = load_script("ablations")
    args = ablations.parse_args(["--benchmark", "synthetic-small", "--pretrain-args", "--epochs", "7",
                                 "--hidden-dim", "24", "--heads", "2"])
    base = ablations.base_config(args, seed=3)
    literal = ablations.variant_config("prerec_literal", base)
    assert (literal.model.prior_units, literal.model.repeat_term, literal.popularity.mode) == ("total", False,
                                                                                            "interval")
    assert (literal.model.hidden_dim, literal.train.max_epochs, literal.train.seed) == (24, 7, 3)  # the base's
    default_n = ablations.variant_config("prerec_n_default", base)
    assert default_n.method == "prerec_n" and default_n.model == base.model.ablation()
    intervened = ablations.variant_config("prerec_per_obs_intervened", base)
    assert intervened.select_by == "intervened" and intervened.model.prior_units == "per_observation"
    assert ablations.variant_config("prerec_default", base) == base


def test_the_plan_parses_as_ablations_arguments(capsys):
    ablations = load_script("ablations")
    suite = load_script("ablation_suite")
    args = suite.parse_args(["--data-dir", "DATA", "--runs", "R", "--seeds", "0", "1", "--groups", *suite.GROUPS])
    plan = suite.invocations(args)
    settings = suite.BENCHMARK_SETTINGS
    assert [(b, g) for b, g, _ in plan] == [(b, g) for b in settings for g in suite.GROUPS if g in settings[b].groups]
    assert suite.parse_args([]).groups == ["fair"]  # the protocol is the default
    for benchmark, group, argv in plan:
        parsed = ablations.parse_args(argv)
        assert (parsed.benchmark, parsed.seeds, parsed.runs) == (benchmark, [0, 1], "R")
        assert parsed.out == f"R/{benchmark}/{group}"
        assert (parsed.data_dir == "DATA") == (not benchmark.startswith("synthetic"))
        assert parsed.pretrained_on == settings[benchmark].pretrained_on
        if group == "fair":  # trained to convergence: the patience decides, a cap far beyond it
            assert parsed.pretrain_args == list(suite.CONVERGED)
    assert suite.main(suite.parse_args(["--dry-run", "--benchmarks", "synthetic"])) == []
    assert capsys.readouterr().out.count("python scripts/ablations.py --benchmark synthetic ") == 1


def test_summaries_cover_the_new_items_subset_when_it_has_samples(tmp_path):
    import pandas as pd

    from prerec_pyro import ablation_tables

    rows = []
    for seed, (all_score, new_score) in enumerate([(0.10, 0.02), (0.12, 0.04)]):
        for domain in ("a", "b"):
            rows.append({"method": "v/eq8", "domain": domain, "subset": "all", "seed": seed, "n_samples": 9,
                         "rndcg@k%": all_score, "recall@k%": 0.2, "rndcg@k%_low": 0.0, "rndcg@k%_high": 1.0})
            rows.append({"method": "v/eq8", "domain": domain, "subset": "new_items", "seed": seed, "n_samples": 3,
                         "rndcg@k%": new_score, "recall@k%": 0.1, "rndcg@k%_low": 0.0, "rndcg@k%_high": 1.0})
    long = pd.DataFrame(rows)
    table = ablation_tables.summary_table(long, "new_items").set_index("method")
    assert table.loc["v/eq8", "rndcg@k%_mean"] == 0.03 and round(table.loc["v/eq8", "n_seeds"]) == 2
    ablation_tables.write_summaries(long, tmp_path, "bench")
    assert "(new_items: 6 samples in 2 target(s))" in (tmp_path / "ablations.md").read_text()


FAIR = {"prerec_default/history": [0.3, 0.31], "prerec_default/history_likelihood": [0.25, 0.25],
        "prerec_default/eq8": [0.1, 0.1], "SBERT+POP": [0.2]}  # a fair group


def _long(scores: dict[str, list[float]], rule: str = "keep"):
    """A long table: each method's mean r-NDCG@K% per seed (two targets of equal score), under ``rule``."""
    import pandas as pd

    rows = [{"method": method, "domain": domain, "subset": "all", "seed": seed, "history_items": rule,
             "rndcg@k%": value} for method, values in scores.items() for seed, value in enumerate(values)
            for domain in ("a", "b")]
    return pd.DataFrame(rows)


def test_the_report_names_the_best_other_method_and_calls_a_gap_inside_the_spread_a_tie():
    import pandas as pd

    from prerec_pyro.report import summary_rows

    wins = _long({"prerec_default/eq8": [0.20, 0.22], "SBERT+POP": [0.10], "zesrec": [0.12, 0.12]})
    tie = _long({"prerec_default/eq8": [0.20, 0.30], "SBERT+POP": [0.24]}, rule="exclude")
    rows = summary_rows(pd.concat([wins, tie]), "bench")
    by_rule = {row["history_items"]: row for row in rows}
    assert by_rule["keep"]["best_other"] == "zesrec" and by_rule["keep"]["outcome"] == "best"
    assert abs(by_rule["keep"]["ratio"] - 0.21 / 0.12) < 1e-12 and by_rule["keep"]["seeds"] == 2
    assert by_rule["exclude"]["best_other"] == "SBERT+POP" and by_rule["exclude"]["outcome"].startswith("tied")
    losing = summary_rows(_long({"prerec_default/eq8": [0.10, 0.10], "SBERT": [0.20]}), "bench")[0]
    assert losing["outcome"] == "not best" and losing["ratio"] == 0.5
    halves = summary_rows(wins, "bench", {"x": ("a",), "y": ("b",)}, rules=("keep",))
    assert [row["targets"] for row in halves] == ["all targets", "x", "y"]
    partial = summary_rows(wins, "bench", rules=("keep",), missing=("unisrec",))[0]  # a table without UniSRec
    assert partial["outcome"] == "best (not run: unisrec)"


def test_the_suite_runs_each_invocation_in_its_own_process_and_writes_the_results(tmp_path, monkeypatch):
    """Each ablations.py invocation is a subprocess (no script imports another); the fair group's outputs become
    docs/RESULTS.md with a verdict per history rule; a failed invocation stops the suite naming it."""
    import subprocess
    import sys

    suite = load_script("ablation_suite")
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        assert command[:2] == [sys.executable, str(SCRIPTS / "ablations.py")]
        out = Path(command[command.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        _long(FAIR).to_csv(out / "ablations_long.csv", index=False)
        (out / "ablations.md").write_text("| table |\n")
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    results, records = tmp_path / "RESULTS.md", ["--records", str(tmp_path / "records"), *_readme(tmp_path)]
    suite.main(suite.parse_args(["--benchmarks", "synthetic-small", "--seeds", "0", "1", "--runs",
                                 str(tmp_path / "runs"), "--results", str(results), *records]))
    assert len(calls) == 2 and "--from-long" in calls[1]  # the fair group, then the merge
    text = results.read_text()
    assert "| synthetic-small | all targets | keep | 0.3050 ± 0.0071 | SBERT+POP |" in text
    assert "python scripts/ablation_suite.py --benchmarks synthetic-small" in text
    assert "Made by `python scripts/ablations.py --benchmark synthetic-small" in text
    readme = (tmp_path / "README.md").read_text()  # the verdict block rewritten, the rest kept
    assert readme.startswith("# intro\n") and readme.endswith("after\n") and "| old verdict |" not in readme
    assert "| synthetic-small | all targets | keep | 0.3050 ± 0.0071 | SBERT+POP |" in readme
    results.unlink()
    calls.clear()
    suite.main(suite.parse_args(["--benchmarks", "synthetic-small", "retail-countries", "--seeds", "0", "1", "--runs",
                                 str(tmp_path / "runs"), "--results", str(results), "--report-only", *records]))
    assert not calls and "| synthetic-small | all targets | keep |" in results.read_text()  # nothing run again
    assert "Not measured under this protocol yet: retail-countries, " in results.read_text()  # no outputs: said
    assert "| retail-countries |" not in results.read_text()
    monkeypatch.setattr(subprocess, "run", lambda command, **kwargs: subprocess.CompletedProcess(command, 1))
    with pytest.raises(ValueError, match="this invocation failed"):
        suite.main(suite.parse_args(["--benchmarks", "synthetic-small", "--runs", str(tmp_path / "runs"), *records]))


def _readme(folder: Path) -> list[str]:
    """A README with a verdict block, as the flags that point the suite at it."""
    from prerec_pyro.report import README_BEGIN, README_END

    (folder / "README.md").write_text(f"# intro\n{README_BEGIN}\n| old verdict |\n{README_END}\nafter\n")
    return ["--readme", str(folder / "README.md")]


def test_a_readme_without_a_verdict_block_is_refused_naming_the_markers():
    from prerec_pyro.report import with_verdicts

    with pytest.raises(ValueError, match="no <!-- verdicts"):
        with_verdicts("# a README\n", "## PreRec against the best other method\n\n| a |\n")


def test_results_are_rebuilt_from_the_kept_records_and_older_tables_are_carried_once(tmp_path):
    """The run directories are gone on a new machine; the records under docs/results/ rebuild the file, and a
    benchmark an earlier file holds without a record is carried as written, marked, and not marked twice."""
    from prerec_pyro.report import CARRIED

    suite = load_script("ablation_suite")
    record = tmp_path / "records" / "synthetic-small"
    record.mkdir(parents=True)
    _long(FAIR).to_csv(record / "ablations_long.csv", index=False)
    (record / "ablations.md").write_text("| table |\n")
    (record / "command.txt").write_text("python scripts/ablations.py --benchmark synthetic-small\n")
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\n| benchmark |\n|---|\n| movielens-ages | all targets | keep | 0.19 | x |\n"
                       "| synthetic-small | old row |\n\n## movielens-ages\n\nMade by `x`.\n\n| old table |\n\n"
                       "## synthetic-small\n\n| old |\n")
    args = ["--benchmarks", "synthetic-small", "--runs", str(tmp_path / "none"), "--results", str(results),
            "--records", str(tmp_path / "records"), "--report-only", *_readme(tmp_path)]
    for _ in range(2):
        suite.main(suite.parse_args(args))
        text = results.read_text()
        assert "| movielens-ages | all targets | keep | 0.19 (Eq. 8) | x |" in text and "| old table |" in text  # once
        assert text.count(CARRIED) == 1 and "old row" not in text and "| old |" not in text  # the record wins
        assert "| synthetic-small | all targets | keep | 0.3050 ± 0.0071 | SBERT+POP |" in text
        assert "Made by `python scripts/ablations.py --benchmark synthetic-small`" in text
        assert "Not measured under this protocol yet: retail-countries, " in text


def test_a_record_made_in_parts_names_every_command_and_the_methods_it_lacks(tmp_path):
    suite = load_script("ablation_suite")
    _long(FAIR).to_csv(tmp_path / "ablations_long.csv", index=False)
    (tmp_path / "ablations.md").write_text("| table |\n")
    commands = "python scripts/ablations.py --variants prerec_default\npython scripts/ablations.py --from-long a b"
    (tmp_path / "command.txt").write_text(commands + "\n")
    section = suite.fair_section("synthetic-small", tmp_path)
    assert f"Made by these commands, in order:\n\n```bash\n{commands}\n```" in section["tables"]
    assert section["missing"] == ("prerec_n_default", "zesrec", "unisrec")
    assert section["tables"].startswith("Not in this benchmark's tables: prerec_n_default, zesrec, unisrec (not run).")


def test_one_seed_of_prerec_gets_no_verdict():
    """A gap needs a spread to be judged: one training seed of PreRec says ahead or behind, never best."""
    import pandas as pd

    from prerec_pyro.report import verdict

    scores = pd.DataFrame({"mean": [0.20, 0.16], "sd": [0.0, 0.0], "seeds": [1, 1]},
                          index=["prerec_default/eq8", "prerec_n_default/eq8"])
    assert verdict(scores)["outcome"] == "ahead on one seed (no spread yet: no verdict)"
    two = scores.assign(seeds=[2, 2], sd=[0.001, 0.001])
    assert verdict(two)["outcome"] == "best"


def test_another_scoring_of_prerecs_own_run_is_not_the_best_other_method():
    import pandas as pd

    from prerec_pyro.report import summary_markdown, verdict

    scores = pd.DataFrame({"mean": [0.20, 0.30, 0.16], "sd": [0.001, 0.001, 0.001], "seeds": [2, 2, 2]},
                          index=["prerec_default/eq8", "prerec_default/history", "SBERT+POP"])
    found = verdict(scores)
    assert found["best_other"] == "SBERT+POP" and found["outcome"] == "best"
    assert found["prerec_row"] == "prerec_default/history" and found["prerec"] == 0.30  # the default scoring
    assert verdict(scores.drop(index="SBERT+POP")) is None  # nothing but PreRec's own scorings: no verdict
    older = verdict(scores.drop(index="prerec_default/history"))  # a table made before the default scoring: Eq. 8
    assert older["prerec_row"] == "prerec_default/eq8" and older["prerec"] == 0.20
    table = summary_markdown([{"benchmark": "b", "targets": "all", "history_items": "keep", **found},
                              {"benchmark": "c", "targets": "all", "history_items": "keep", **older}])
    assert "| 0.3000 ± 0.0010 |" in table and "| 0.2000 ± 0.0010 (Eq. 8) |" in table


def test_history_rows_made_before_the_rank_evidence_say_so():
    """A table with PreRec's history rows and no ``/history_likelihood`` rows was weighed by the probabilities (the
    earlier evidence): its verdict says so; one scored both ways is judged on the ranks, and PreRec's likelihood
    scoring is not another method, PreRec_n's is."""
    from prerec_pyro.report import summary_markdown, summary_rows

    before = {method: scores for method, scores in FAIR.items() if not method.endswith("_likelihood")}
    older = summary_rows(_long(before), "older", rules=("keep",))[0]
    assert older["likelihood_evidence"] and "0.3050 ± 0.0071 (likelihood evidence)" in summary_markdown([older])
    both = summary_rows(_long({**FAIR, "prerec_default/history_likelihood": [0.4, 0.4],
                               "prerec_n_default/history_likelihood": [0.25, 0.26]}), "both", rules=("keep",))[0]
    assert not both["likelihood_evidence"] and both["best_other"] == "prerec_n_default/history_likelihood"
    assert "(likelihood evidence)" not in summary_markdown([both])

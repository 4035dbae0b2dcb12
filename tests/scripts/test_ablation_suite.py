"""The ablation suite: one ablations.py invocation per benchmark and group, never mixing popularity modes."""

from pathlib import Path

from prerec_pyro.cli import load_script as load_path

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def load_script(name):
    return load_path(SCRIPTS / f"{name}.py")


def test_every_group_shares_one_popularity_mode():
    ablations = load_script("ablations")
    suite = load_script("ablation_suite")
    from prerec_pyro.baseline_runs import BASELINE_KINDS
    from prerec_pyro.models.config import RECOMMENDED_POPULARITY_MODE

    for variants, *_ in suite.GROUPS.values():
        modes = set()
        for variant in variants:
            method, flags = ablations.VARIANTS[variant]
            if method in BASELINE_KINDS:  # the baselines have no popularity term
                continue
            given = "--popularity-mode" in flags  # else map_pretrain.py's default
            modes.add(flags[flags.index("--popularity-mode") + 1] if given else RECOMMENDED_POPULARITY_MODE)
        assert len(modes) == 1, (variants, modes)


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

    ablations = load_script("ablations")
    rows = []
    for seed, (all_score, new_score) in enumerate([(0.10, 0.02), (0.12, 0.04)]):
        for domain in ("a", "b"):
            rows.append({"method": "v/eq8", "domain": domain, "subset": "all", "seed": seed, "n_samples": 9,
                         "rndcg@k%": all_score, "recall@k%": 0.2, "rndcg@k%_low": 0.0, "rndcg@k%_high": 1.0})
            rows.append({"method": "v/eq8", "domain": domain, "subset": "new_items", "seed": seed, "n_samples": 3,
                         "rndcg@k%": new_score, "recall@k%": 0.1, "rndcg@k%_low": 0.0, "rndcg@k%_high": 1.0})
    long = pd.DataFrame(rows)
    table = ablations.summary_table(long, "new_items").set_index("method")
    assert table.loc["v/eq8", "rndcg@k%_mean"] == 0.03 and round(table.loc["v/eq8", "n_seeds"]) == 2
    ablations.write_summaries(long, tmp_path, "bench")
    assert "(new_items: 6 samples in 2 target(s))" in (tmp_path / "ablations.md").read_text()


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

"""The ablation suite: one ablations.py invocation per benchmark and group, never mixing popularity modes."""

from pathlib import Path

from prerec_pyro.cli import load_script as load_path

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def load_script(name):
    return load_path(SCRIPTS / f"{name}.py")


def test_every_group_shares_one_popularity_mode():
    ablations = load_script("ablations")
    suite = load_script("ablation_suite")
    for variants, _ in suite.GROUPS.values():
        modes = set()
        for variant in variants:
            flags = ablations.VARIANTS[variant][1]
            if "--popularity-mode" in flags:  # the baselines have no popularity term
                modes.add(flags[flags.index("--popularity-mode") + 1])
        assert len(modes) == 1, (variants, modes)


def test_the_plan_parses_as_ablations_arguments(capsys):
    ablations = load_script("ablations")
    suite = load_script("ablation_suite")
    args = suite.parse_args(["--data-dir", "DATA", "--runs", "R", "--seeds", "0", "1"])
    plan = suite.invocations(args)
    settings = suite.BENCHMARK_SETTINGS
    assert [(b, g) for b, g, _ in plan] == [(b, g) for b in settings for g in suite.GROUPS if g in settings[b].groups]
    for benchmark, group, argv in plan:
        parsed = ablations.parse_args(argv)
        assert (parsed.benchmark, parsed.seeds, parsed.runs) == (benchmark, [0, 1], "R")
        assert parsed.out == f"R/{benchmark}/{group}"
        assert (parsed.data_dir == "DATA") == (benchmark != "synthetic")
        assert parsed.pretrained_on == settings[benchmark].pretrained_on
    assert suite.main(suite.parse_args(["--dry-run", "--benchmarks", "synthetic"])) == []
    assert capsys.readouterr().out.count("python scripts/ablations.py --benchmark synthetic") == len(suite.GROUPS)


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

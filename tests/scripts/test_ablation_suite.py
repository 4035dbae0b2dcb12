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
            modes.add(flags[flags.index("--popularity-mode") + 1])
        assert len(modes) == 1, (variants, modes)


def test_the_plan_parses_as_ablations_arguments(capsys):
    ablations = load_script("ablations")
    suite = load_script("ablation_suite")
    args = suite.parse_args(["--data-dir", "DATA", "--runs", "R", "--seeds", "0", "1"])
    plan = suite.invocations(args)
    assert [(b, g) for b, g, _ in plan] == [(b, g) for b in suite.BENCHMARK_SETTINGS for g in suite.GROUPS]
    for benchmark, group, argv in plan:
        parsed = ablations.parse_args(argv)
        assert (parsed.benchmark, parsed.seeds, parsed.runs) == (benchmark, [0, 1], "R")
        assert parsed.out == f"R/{benchmark}/{group}"
        assert (parsed.data_dir == "DATA") == (benchmark != "synthetic")
    assert suite.main(suite.parse_args(["--dry-run", "--benchmarks", "synthetic"])) == []
    assert capsys.readouterr().out.count("python scripts/ablations.py --benchmark synthetic") == len(suite.GROUPS)

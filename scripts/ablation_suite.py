"""The README's ablation tables in one command: every benchmark x group of variants through ``scripts/ablations.py``.

    python scripts/ablation_suite.py --data-dir ../shared/data            # everything (runs are reused)
    python scripts/ablation_suite.py --benchmarks synthetic --dry-run     # print the invocations only

A group is one ``ablations.py`` invocation: variants trained on identically prepared data (one popularity mode), so
they can be scored together. Each benchmark has its budget (the same for every variant of that benchmark) and its
number of evaluated test users. After the groups, their ``ablations_long.csv`` files are merged into
``<runs>/<benchmark>/`` (``ablations.md``, ``ablations_targets.md``), which is what the README's results show.
Runs live under ``<runs>/<variant>/seed<s>/<benchmark>/`` and are trained only when missing, so an interrupted
suite resumes where it stopped.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from prerec_pyro import cli

SHORT = ("--patience", "2", "--max-steps-per-epoch", "100", "--valid-max-users", "200")
# benchmark: (pre-training budget flags, test users per target or None for all, data needed)
BENCHMARK_SETTINGS = {
    "retail-countries": (("--epochs", "6") + SHORT, None, True),
    "movielens-ages": (("--epochs", "5") + SHORT, 500, True),
    "synthetic": ((), None, False),
}
# group: (variants, zero-shot scorings); a group's variants share their popularity mode
GROUPS = {
    "paper-intervals": (("prerec_n", "prerec_literal", "prerec_per_obs", "prerec_shared", "prerec_per_obs_intervened"),
                        ("eq8", "backdoor")),
    "sliding": (("prerec_n_sliding_skip", "prerec_per_obs_sliding", "prerec_combined", "zesrec", "unisrec"), ("eq8",)),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--benchmarks", nargs="+", default=list(BENCHMARK_SETTINGS), choices=list(BENCHMARK_SETTINGS),
                   help="benchmarks to run (default: all three)")
    p.add_argument("--groups", nargs="+", default=list(GROUPS), choices=list(GROUPS), help="groups of variants")
    p.add_argument("--data-dir", default=None, help="data root (default: $PREREC_DATA_DIR); unused by synthetic")
    p.add_argument("--runs", default="runs_ablations", help="root of the variants' run directories and outputs")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds")
    p.add_argument("--device", type=cli.device, default=None, help="cpu or cuda (default: ablations.py's)")
    p.add_argument("--dry-run", action="store_true", help="print the ablations.py invocations and stop")
    return p.parse_args(argv)


def invocations(args: argparse.Namespace) -> list[tuple[str, str, list[str]]]:
    """(benchmark, group, ablations.py argv) for every benchmark x group asked for."""
    out = []
    for benchmark in args.benchmarks:
        budget, max_users, needs_data = BENCHMARK_SETTINGS[benchmark]
        for group in args.groups:
            variants, scorings = GROUPS[group]
            argv = ["--benchmark", benchmark, "--runs", args.runs, "--seeds", *map(str, args.seeds),
                    "--variants", *variants, "--scorings", *scorings,
                    "--out", str(Path(args.runs) / benchmark / group)]
            argv += ["--data-dir", args.data_dir] if needs_data and args.data_dir else []
            argv += ["--max-users", str(max_users)] if max_users else []
            argv += ["--device", args.device] if args.device else []
            argv += ["--pretrain-args", *budget] if budget else []
            out.append((benchmark, group, argv))
    return out


def main(args: argparse.Namespace) -> list[Path]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    ablations = cli.load_script(Path(__file__).with_name("ablations.py"))
    plan = invocations(args)
    if args.dry_run:
        for _, _, argv in plan:
            print("python scripts/ablations.py " + " ".join(argv))
        return []
    merged = []
    for benchmark in args.benchmarks:
        longs = []
        for name, group, argv in plan:
            if name == benchmark:
                longs.append(str(ablations.main(ablations.parse_args(argv)) / "ablations_long.csv"))
        out = Path(args.runs) / benchmark
        merged.append(ablations.main(ablations.parse_args(["--benchmark", benchmark, "--out", str(out),
                                                           "--from-long", *longs])))
    return merged


if __name__ == "__main__":
    cli.run(main, parse_args, __file__)

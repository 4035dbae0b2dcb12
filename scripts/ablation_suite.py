"""The results tables in one command: every benchmark x group of variants through ``scripts/ablations.py``.

    python scripts/ablation_suite.py --data-dir ../shared/data            # the fair protocol -> docs/RESULTS.md
    python scripts/ablation_suite.py --benchmarks synthetic --dry-run     # print the invocations only
    python scripts/ablation_suite.py --groups paper-intervals sliding ... # the model variants (README budget)

The ``fair`` group (the default) is the protocol every comparison is made under: PreRec's default, PreRec_n, ZESRec
and UniSRec, each trained until its own sources' validation score has not improved for ``patience`` epochs (a step
cap that a run should not reach; each run records why it stopped), scored beside Random, POP, SBERT and SBERT+POP
under both history rules; its verdicts and tables go to ``--results`` (docs/RESULTS.md).

A group is one ``ablations.py`` invocation: variants trained on identically prepared data (one popularity mode), so
they can be scored together. Each benchmark has its budget (the same for every variant of that benchmark) and its
number of evaluated test users. The cross-platform benchmarks (``retail-to-movielens``, ``movielens-to-retail``)
score the runs of the in-platform benchmark with the same sources (``--pretrained-on``); ``mixed-sources`` trains
its own. After the groups, their ``ablations_long.csv`` files are merged into
``<runs>/<benchmark>/`` (``ablations.md``, ``ablations_targets.md``), which is what the README's results show.
Runs live under ``<runs>/<variant>/seed<s>/<benchmark>/`` and are trained only when missing, so an interrupted
suite resumes where it stopped.

Run directories stay on the machine that trained them; the fair group's outputs (a few small tables per benchmark)
are also kept in the repository under ``--records`` (docs/results/<benchmark>/), and docs/RESULTS.md is built from
every benchmark with a record there, so a later run of the suite on another machine adds benchmarks without
training the earlier ones again. A benchmark that an earlier docs/RESULTS.md holds but that has no record (made
before the records were kept) is carried over from that file as it was written, and marked so.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from prerec_pyro import cli
from prerec_pyro.data.benchmarks import get_benchmark, target_groups
from prerec_pyro.io import atomic_write
from prerec_pyro.report import carried_sections, results_markdown, with_verdicts

SHORT = ("--patience", "2", "--max-steps-per-epoch", "100", "--valid-max-users", "200")
# to convergence: up to 100 epochs of 100 steps (on smaller data too), stopped after 3 epochs without a better
# sources' validation score
CONVERGED = ("--epochs", "100", "--patience", "3", "--max-steps-per-epoch", "100", "--min-steps-per-epoch", "100",
             "--valid-max-users", "200")


class Setting(NamedTuple):
    """A benchmark's pre-training budget flags (the same for every variant), test users per target (None: all),
    whether it reads ``--data-dir``, the benchmark whose runs it scores (``--pretrained-on``: the cross-platform
    benchmarks reuse the in-platform runs of the same sources) and its groups of variants."""

    budget: tuple[str, ...]
    max_users: int | None
    needs_data: bool
    pretrained_on: str | None = None
    groups: tuple[str, ...] = ("fair", "paper-intervals", "sliding")


RETAIL_BUDGET, MOVIELENS_BUDGET = ("--epochs", "6") + SHORT, ("--epochs", "5") + SHORT
BENCHMARK_SETTINGS = {
    "retail-countries": Setting(RETAIL_BUDGET, None, True),
    "movielens-ages": Setting(MOVIELENS_BUDGET, 500, True),
    "synthetic": Setting((), None, False),
    "retail-to-movielens": Setting(RETAIL_BUDGET, 300, True, "retail-countries", ("fair", "sliding")),
    "movielens-to-retail": Setting(MOVIELENS_BUDGET, 200, True, "movielens-ages", ("fair", "sliding")),
    "mixed-sources": Setting(RETAIL_BUDGET, 300, True, None, ("fair", "sliding")),
    "synthetic-small": Setting((), None, False, None, ("fair",)),
    # one market or group of the target platform among the sources (issue: the networks earn their place)
    "movielens-uk-to-retail": Setting(RETAIL_BUDGET, 300, True, None, ("fair",)),
    "retail-young-to-movielens": Setting(RETAIL_BUDGET, 300, True, None, ("fair",)),
}
# group: (variants, zero-shot scorings[, budget replacing the benchmark's]); a group's variants share their popularity
# mode
GROUPS = {
    # the fair group scores every PreRec-family run by Eq. 8, by the default (f_seq weighed by the ranks of each
    # user's earlier items) and by the weighing with their probabilities (scorings of one run, not other methods:
    # verdicts judge the default; a table without the last predates the ranks, prerec_pyro/report.py)
    "fair": (("prerec_default", "prerec_n_default", "zesrec", "unisrec"), ("eq8", "history", "history_likelihood"),
             CONVERGED),
    "paper-intervals": (("prerec_n", "prerec_literal", "prerec_per_obs", "prerec_shared", "prerec_per_obs_intervened"),
                        ("eq8", "backdoor")),
    "sliding": (("prerec_n_sliding_skip", "prerec_per_obs_sliding", "prerec_combined", "prerec_n_text", "prerec_text",
                 "prerec_n_repeat", "prerec_repeat", "zesrec", "unisrec"), ("eq8",)),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--benchmarks", nargs="+", default=list(BENCHMARK_SETTINGS), choices=list(BENCHMARK_SETTINGS),
                   help="benchmarks to run (default: all; the cross-platform ones score the in-platform runs)")
    p.add_argument("--groups", nargs="+", default=["fair"], choices=list(GROUPS), help="groups of variants")
    p.add_argument("--results", default="docs/RESULTS.md",
                   help="where the fair group's verdicts and tables are written")
    p.add_argument("--records", default="docs/results",
                   help="where the fair group's outputs are kept per benchmark (the tables of --results are built "
                        "from every benchmark recorded there)")
    p.add_argument("--readme", default="README.md",
                   help="whose verdict block (between its verdict markers) is rewritten from --results")
    p.add_argument("--data-dir", default=None, help="data root (default: $PREREC_DATA_DIR); unused by synthetic")
    p.add_argument("--runs", default="runs_ablations", help="root of the variants' run directories and outputs")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds")
    p.add_argument("--device", type=cli.device, default=None, help="cpu or cuda (default: ablations.py's)")
    p.add_argument("--dry-run", action="store_true", help="print the ablations.py invocations and stop")
    p.add_argument("--report-only", action="store_true",
                   help="write --results from the fair group's outputs already under --runs (nothing is trained or "
                        "scored); benchmarks without them are left out")
    args = p.parse_args(argv)
    args.command = cli.command_line(__file__, argv)
    return args


def invocations(args: argparse.Namespace) -> list[tuple[str, str, list[str]]]:
    """(benchmark, group, ablations.py argv) for every benchmark x group asked for."""
    out = []
    for benchmark in args.benchmarks:
        setting = BENCHMARK_SETTINGS[benchmark]
        for group in args.groups:
            if group not in setting.groups:
                continue
            variants, scorings, *budget = GROUPS[group]
            budget = budget[0] if budget else setting.budget
            argv = ["--benchmark", benchmark, "--runs", args.runs, "--seeds", *map(str, args.seeds),
                    "--variants", *variants, "--scorings", *scorings,
                    "--out", str(Path(args.runs) / benchmark / group)]
            argv += ["--pretrained-on", setting.pretrained_on] if setting.pretrained_on else []
            argv += ["--data-dir", args.data_dir] if setting.needs_data and args.data_dir else []
            argv += ["--max-users", str(setting.max_users)] if setting.max_users else []
            argv += ["--device", args.device] if args.device else []
            argv += ["--pretrain-args", *budget] if budget else []
            out.append((benchmark, group, argv))
    return out


def ablations(argv: list[str]) -> None:
    """One ``scripts/ablations.py`` invocation, in a process of its own (its memory goes back when it ends); a
    failure stops the suite with the invocation named."""
    command = [sys.executable, str(Path(__file__).with_name("ablations.py")), *argv]
    if subprocess.run(command).returncode != 0:
        raise ValueError(f"this invocation failed (its error is above): python scripts/ablations.py {' '.join(argv)}")


def main(args: argparse.Namespace) -> list[Path]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    plan = invocations(args)
    if args.dry_run:
        for _, _, argv in plan:
            print("python scripts/ablations.py " + " ".join(argv))
        return []
    merged = []
    for benchmark in args.benchmarks:
        longs = {}
        for name, group, argv in plan:
            if name == benchmark:
                out = Path(argv[argv.index("--out") + 1])
                if args.report_only and not (out / "ablations_long.csv").exists():
                    continue
                if not args.report_only:
                    ablations(argv)
                longs[group] = out
                if group == "fair":
                    keep_record(out, Path(args.records) / benchmark, argv)
        if longs and not args.report_only:
            out = Path(args.runs) / benchmark
            ablations(["--benchmark", benchmark, "--out", str(out), "--from-long",
                       *(str(folder / "ablations_long.csv") for folder in longs.values())])
            merged.append(out)
    if "fair" in args.groups:
        write_results(args)
    return merged


RECORD_FILES = ("ablations_long.csv", "ablations.md", "ablations_targets.md", "command.txt")


def keep_record(out: Path, record: Path, argv: list[str]) -> None:
    """The fair group's outputs of one benchmark (``out``) copied to its record folder, each file written whole; the
    command that made them is written when ablations.py did not."""
    record.mkdir(parents=True, exist_ok=True)
    for name in RECORD_FILES:
        source = out / name
        text = source.read_bytes() if source.exists() else (
            f"python scripts/ablations.py {' '.join(argv)}\n".encode() if name == "command.txt" else None)
        if text is not None:
            atomic_write(record / name, lambda f, text=text: f.write(text))


def write_results(args: argparse.Namespace) -> None:
    """docs/RESULTS.md from every benchmark with a record (in the suite's order), then the benchmarks an earlier file
    holds without one (carried as written), then the protocol's benchmarks not measured yet."""
    records = Path(args.records)
    recorded = [b for b in BENCHMARK_SETTINGS if (records / b / "ablations_long.csv").exists()]
    previous = Path(args.results).read_text() if Path(args.results).exists() else ""
    carried = carried_sections(previous, [b for b in BENCHMARK_SETTINGS if b not in recorded])
    fair = [fair_section(b, records / b) for b in recorded]
    absent = [b for b in BENCHMARK_SETTINGS if "fair" in BENCHMARK_SETTINGS[b].groups
              and b not in recorded and b not in carried]
    if not fair and not carried:
        return
    text = results_markdown(fair, args.command, absent, carried)
    atomic_write(Path(args.results), lambda f: f.write(text.encode()))
    print(f"written: {args.results}")
    readme = with_verdicts(Path(args.readme).read_text(), text)
    atomic_write(Path(args.readme), lambda f: f.write(readme.encode()))
    print(f"verdicts written into: {args.readme}")


def fair_section(benchmark: str, folder: Path) -> dict:
    """One benchmark's part of docs/RESULTS.md, from its record (the fair group's outputs) in ``folder``."""
    made_by = (folder / "command.txt").read_text().strip()
    if "\n" in made_by:  # a record made in parts (e.g. a scoring added to older runs), then merged
        made_by = "Made by these commands, in order:\n\n```bash\n" + made_by + "\n```\n\n"
    else:
        made_by = f"Made by `{made_by}`.\n\n"
    tables = made_by + (folder / "ablations.md").read_text()
    tables += "\nPer target (mean ± sd over seeds [95% interval over users]):\n\n"
    tables += (folder / "ablations_targets.md").read_text() if (folder / "ablations_targets.md").exists() else ""
    long = pd.read_csv(folder / "ablations_long.csv")
    scored = {str(method).split("/")[0] for method in long["method"]}
    missing = [variant for variant in GROUPS["fair"][0] if variant not in scored]
    if missing:
        tables = f"Not in this benchmark's tables: {', '.join(missing)} (not run).\n\n" + tables
    return {"benchmark": benchmark, "long": long, "groups": target_groups(get_benchmark(benchmark)),
            "tables": tables, "missing": tuple(missing)}


if __name__ == "__main__":
    cli.run(main, parse_args, __file__)

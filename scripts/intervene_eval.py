"""Zero-shot evaluation by intervention on unseen target domains (the paper's Table 1).

    python scripts/intervene_eval.py --target japan           # latest PreRec / PreRec_n runs of the benchmark
    python scripts/intervene_eval.py --target all --benchmark retail-countries --data-dir ../shared/data
    python scripts/intervene_eval.py --run RUN --benchmark new_market.toml --target all   # targets from elsewhere

Prints a table (methods x Recall@K% / r-NDCG@K% on all, unseen and new-item samples, under each history rule of
``--history-items``: ``keep`` ranks the scores as given, ``exclude`` ranks the user's earlier items last for every
method) and writes it as CSV and JSON
beside the PreRec run or in ``--out`` (``zero_shot_<target>[_<what differs from the defaults>].csv|json``). With
``--run``, the benchmark may be any other one: its targets are scored, the run's own sources are rebuilt from the
run's definition, and the JSON records both. The benchmark is rebuilt as the runs saw it: a run
pre-trained under the cold-item protocol (``map_pretrain.py --cold-items``) has the same target ids removed from
its sources here, and the JSON records ``cold_items`` / ``cold_seed``.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from prerec_pyro import cli
from prerec_pyro.cli import run
from prerec_pyro.data.benchmarks import BENCHMARK_HELP, get_benchmark
from prerec_pyro.evaluate import HISTORY_RULES, EvalConfig, results_table
from prerec_pyro.figures import plot_zero_shot
from prerec_pyro.inference.checkpoint import save_json
from prerec_pyro.inference.pretrained import BACKDOOR_FROM, PretrainedRun
from prerec_pyro.inference.runs import (
    common_cold_protocol,
    find_latest_run,
    prepare_for_run,
)
from prerec_pyro.inference.zero_shot import evaluate_target, sbert_pop_alpha
from prerec_pyro.io import write_csv

logger = logging.getLogger("intervene_eval")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--benchmark", default="synthetic", help=BENCHMARK_HELP)
    p.add_argument("--target", default="all", help="a target domain of the benchmark (name or alias) or 'all'")
    p.add_argument("--data-dir", default=None, help="data root (default: $PREREC_DATA_DIR); unused by synthetic")
    p.add_argument("--run", default=None, help="PreRec run directory (default: the latest under --runs)")
    p.add_argument("--run-n", default=None, help="PreRec_n run directory (default: the latest, if any)")
    p.add_argument("--runs", default="runs", help="root of run directories")
    p.add_argument("--k-percent", type=float, default=None, help="K%% of the catalogue (default: benchmark's)")
    p.add_argument("--split", default="test", choices=("test", "all"), help="which target users to evaluate")
    p.add_argument("--samples", type=int, default=0,
                   help="back-door draws of D from its prior (0: plain do(D=0))")
    p.add_argument("--backdoor-from", default="prior", choices=BACKDOOR_FROM,
                   help="with --samples: draws of D from its prior (default) or from the run's posterior of the "
                        "sources' D_k (a point-estimate run: its MAP D_k, each equally often)")
    p.add_argument("--item-offsets", default="zero", choices=("zero", "shared"),
                   help="zero: do(eps_v = eps_z = 0) as Eq. 8 (default); shared: items also in a source catalogue keep "
                        "the mean of their source offsets (an extension for overlapping catalogues)")
    cli.add_weigh_sequence(p)
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    p.add_argument("--rndcg-b", type=float, default=None, help="fixed r-NDCG b (default: 600 / K%%, the paper's)")
    p.add_argument("--device", type=cli.device, default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cpu or cuda (default: cuda when present)")
    p.add_argument("--history-items", nargs="+", default=list(HISTORY_RULES), choices=HISTORY_RULES,
                   help="history rules, each a column of the table: keep (scores as given) or exclude (every item "
                        "the user had before the target ranked last, for every method)")
    p.add_argument("--out", default=None, help="output folder (default: the PreRec run's directory)")
    args = p.parse_args(argv)
    if args.k_percent is not None and not 0 < args.k_percent <= 100:
        p.error(f"--k-percent must be in (0, 100], got {args.k_percent}")
    if args.samples < 0 or args.n_boot < 1:
        p.error(f"--samples must be >= 0 and --n-boot >= 1, got {args.samples}, {args.n_boot}")
    return args


def find_runs(args: argparse.Namespace, benchmark: str) -> dict[str, PretrainedRun]:
    """--run / --run-n, else the latest finished runs under --runs: of ``benchmark`` (its name), or with --run given,
    of the benchmark that run was pre-trained on; each loaded once (its config.json and best.pt read once) and handed
    on. Each run must be of its method, and both of one pre-training benchmark."""
    runs = {}
    for method, explicit in (("prerec", args.run), ("prerec_n", args.run_n)):
        path = Path(explicit) if explicit else find_latest_run(Path(args.runs), benchmark, method)
        if path is None:
            logger.warning("no finished %s run of %s under %s: its row is left out (run scripts/map_pretrain.py%s)",
                           method, benchmark, args.runs, " --method prerec_n" if method == "prerec_n" else "")
            continue
        flag = "--run" if method == "prerec" else "--run-n"
        try:
            run = PretrainedRun.load(path, args.device)
        except ValueError as error:
            raise ValueError(f"{flag} {error}") from None
        if run.config.method != method:
            raise ValueError(f"{flag} {path} is a {run.config.method} run; expected a {method} run")
        if method == "prerec" and explicit:
            benchmark = run.config.benchmark  # --run: its own benchmark decides which PreRec_n run goes with it
        if run.config.benchmark != benchmark:
            raise ValueError(f"{path} was pre-trained on {run.config.benchmark!r}, the PreRec run on {benchmark!r}: "
                             "compare runs of one pre-training benchmark")
        runs[method] = run
    if "prerec" not in runs:
        raise ValueError(f"no PreRec run found for benchmark {args.benchmark!r} under {args.runs}; "
                         "run `python scripts/map_pretrain.py` first or pass --run")
    return runs


def output_stem(args: argparse.Namespace, runs: dict[str, PretrainedRun], benchmark, transfer: bool) -> Path:
    """``zero_shot_<target>`` and, where they differ from the defaults, what changes the numbers: another benchmark's
    targets, the split, K%, a fixed b, back-door draws, offsets, Eq. 8 unweighed. In --out, else beside the PreRec
    run."""
    parts = [f"zero_shot_{args.target}"]
    parts += [f"on_{benchmark.folder}"] if transfer else []
    parts += [args.split] if args.split != "test" else []
    parts += [f"k{args.k_percent:g}"] if args.k_percent is not None else []
    parts += [f"b{args.rndcg_b:g}"] if args.rndcg_b is not None else []
    parts += [f"backdoor{args.samples}"] if args.samples else []
    parts += ["posterior_d"] if args.samples and args.backdoor_from == "posterior" else []
    parts += [f"{args.item_offsets}_offsets"] if args.item_offsets != "zero" else []
    parts += ["eq8"] if not args.weigh_sequence else []  # the paper's scoring instead of the default
    parts += [f"evidence_{args.sequence_evidence}"] if args.weigh_sequence and args.sequence_evidence != "ranks" else []
    return Path(args.out or runs["prerec"].run_dir) / "_".join(parts)


def mean_table(table: pd.DataFrame) -> str:
    """The short table: r-NDCG@K% and Recall@K% of each method, mean over the targets ("all" samples), a column
    per history rule."""
    means = table[(table["domain"] == "mean") & (table["subset"] == "all")]
    wide = means.pivot_table(index="method", columns="history_items", values=["rndcg@k%", "recall@k%"], sort=False)
    wide.columns = [f"{metric} ({rule})" for metric, rule in wide.columns]
    return wide.to_string(float_format=lambda v: f"{v:.4f}")


def format_table(table: pd.DataFrame) -> str:
    wide = table.pivot_table(index=["domain", "method"], columns=["history_items", "subset"],
                             values=["recall@k%", "rndcg@k%"], sort=False)
    wide.columns = [f"{metric} ({subset}, {rule})" for metric, rule, subset in wide.columns]
    return wide.to_string(float_format=lambda v: f"{v:.4f}")


def main(args: argparse.Namespace) -> pd.DataFrame:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    benchmark = get_benchmark(args.benchmark)
    targets = benchmark.resolve_targets(args.target)
    runs = find_runs(args, benchmark.name)
    run_config = runs["prerec"].config
    cold = common_cold_protocol({m: r.run_dir for m, r in runs.items()}, {m: r.config for m, r in runs.items()})
    prepared = prepare_for_run(run_config, benchmark.name, args.data_dir, cold)
    transfer = run_config.benchmark != benchmark.name
    k_percent = benchmark.k_percent if args.k_percent is None else args.k_percent
    config = EvalConfig(k_percent=k_percent, split=args.split, n_boot=args.n_boot, device=args.device,
                        rndcg_b=args.rndcg_b, history_items=tuple(args.history_items))
    rows, alpha = [], sbert_pop_alpha(prepared, config)
    for target in targets:
        rows += evaluate_target(prepared, target, runs, replace(config), samples=args.samples,
                                item_offsets=args.item_offsets, backdoor_from=args.backdoor_from, alpha=alpha,
                                weigh_sequence=args.weigh_sequence,
                                sequence_evidence=args.sequence_evidence)
    table = results_table(rows)
    print(format_table(table))
    print(f"\nmean over {len(targets)} target(s), all test samples (per-target 95% intervals: the table above and "
          "the figure)\n" + mean_table(table))
    stem = output_stem(args, runs, benchmark, transfer)
    write_csv(stem.with_suffix(".csv"), table)
    plot_zero_shot(table, stem.with_suffix(".png"))
    save_json(stem.with_suffix(".json"), {"benchmark": benchmark.name, "pretrained_on": run_config.benchmark,
                                          "sources": list(prepared.benchmark.sources), "targets": list(targets),
                                          "split": args.split, "k_percent": config.k_percent,
                                          "cold_items": prepared.cold_items, "cold_seed": prepared.cold_seed,
                                          "samples": args.samples, "backdoor_from": args.backdoor_from,
                                          "weigh_sequence": args.weigh_sequence,
                                          "sequence_evidence": args.sequence_evidence,
                                          "item_offsets": args.item_offsets, "sbert_pop_alpha": alpha,
                                          "history_items": list(config.history_items),
                                          "runs": {k: str(v.run_dir) for k, v in runs.items()},
                                          "rows": table.to_dict(orient="records")})
    print(f"written: {stem}.csv, {stem}.json, {stem}.png")
    return table


if __name__ == "__main__":
    run(main, parse_args, __file__)

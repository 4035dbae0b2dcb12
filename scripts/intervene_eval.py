"""Zero-shot evaluation by intervention on unseen target domains (the paper's Table 1).

    python scripts/intervene_eval.py --target japan           # latest PreRec / PreRec_n runs of the benchmark
    python scripts/intervene_eval.py --target all --benchmark retail-countries --data-dir ../shared/data

Prints a table (methods x Recall@K% / r-NDCG@K% on all, unseen and new-item samples) and writes it as CSV and JSON
beside the PreRec run (``zero_shot_<target>.csv|json``). The benchmark is rebuilt as the runs saw it: a run
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

from prerec_pyro.cli import run
from prerec_pyro.data.benchmarks import BENCHMARK_HELP, get_benchmark
from prerec_pyro.evaluate import EvalConfig, results_table
from prerec_pyro.inference.checkpoint import save_json
from prerec_pyro.inference.runs import common_cold_protocol, find_latest_run, load_run_config
from prerec_pyro.inference.zero_shot import evaluate_target
from prerec_pyro.io import atomic_write
from prerec_pyro.pipeline import prepare_benchmark
from prerec_pyro.text import TextEncoderConfig

logger = logging.getLogger("intervene_eval")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    p.add_argument("--item-offsets", default="zero", choices=("zero", "shared"),
                   help="zero: do(eps_v = eps_z = 0) as Eq. 8 (default); shared: items also in a source catalogue keep "
                        "the mean of their source offsets (an extension for overlapping catalogues)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    p.add_argument("--rndcg-b", type=float, default=None, help="fixed r-NDCG b (default: 600 / K%%, the paper's)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    return p.parse_args(argv)


def find_runs(args: argparse.Namespace, benchmark: str) -> dict[str, Path]:
    """--run / --run-n, else the latest runs of ``benchmark`` (its name) under --runs."""
    runs = {}
    for method, explicit in (("prerec_n", args.run_n), ("prerec", args.run)):
        path = Path(explicit) if explicit else find_latest_run(Path(args.runs), benchmark, method)
        if path is None:
            logger.warning("no finished %s run of %s under %s: its row is left out (run scripts/map_pretrain.py%s)",
                           method, args.benchmark, args.runs, " --ablation prerec_n" if method == "prerec_n" else "")
            continue
        if load_run_config(path).benchmark != benchmark:
            raise ValueError(f"{path} is a run of another benchmark, not {args.benchmark!r}")
        runs[method] = path
    if "prerec" not in runs:
        raise ValueError(f"no PreRec run found for benchmark {args.benchmark!r} under {args.runs}; "
                         "run `python scripts/map_pretrain.py` first or pass --run")
    return runs


def format_table(table: pd.DataFrame) -> str:
    wide = table.pivot_table(index=["domain", "method"], columns="subset",
                             values=["recall@k%", "rndcg@k%"], sort=False)
    wide.columns = [f"{metric} ({subset})" for metric, subset in wide.columns]
    return wide.to_string(float_format=lambda v: f"{v:.4f}")


def main(args: argparse.Namespace) -> pd.DataFrame:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    benchmark = get_benchmark(args.benchmark)
    targets = benchmark.resolve_targets(args.target)
    runs = find_runs(args, benchmark.name)
    run_config = load_run_config(runs["prerec"])
    cold_items, cold_seed = common_cold_protocol(runs)  # PreRec_n must have seen the same sources
    prepared = prepare_benchmark(benchmark.name, args.data_dir or run_config.data_dir, run_config.sequences,
                                 run_config.popularity, TextEncoderConfig(model=run_config.text_model),
                                 cold_items=cold_items, cold_seed=cold_seed)
    config = EvalConfig(k_percent=args.k_percent or benchmark.k_percent, split=args.split, n_boot=args.n_boot,
                        device=args.device, rndcg_b=args.rndcg_b)
    rows = []
    for target in targets:
        rows += evaluate_target(prepared, target, runs, replace(config), samples=args.samples,
                                item_offsets=args.item_offsets)
    table = results_table(rows)
    print(format_table(table))
    suffix = "" if args.item_offsets == "zero" else f"_{args.item_offsets}_offsets"
    stem = runs["prerec"] / f"zero_shot_{args.target}{suffix}"
    atomic_write(stem.with_suffix(".csv"), lambda f: f.write(table.to_csv(index=False).encode()))
    save_json(stem.with_suffix(".json"), {"benchmark": benchmark.name, "k_percent": config.k_percent,
                                          "cold_items": prepared.cold_items, "cold_seed": prepared.cold_seed,
                                          "runs": {k: str(v) for k, v in runs.items()},
                                          "rows": table.to_dict(orient="records")})
    print(f"written: {stem}.csv, {stem}.json")
    return table


if __name__ == "__main__":
    run(main, parse_args, __file__)

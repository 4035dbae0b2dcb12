"""Fine-tune a pre-trained PreRec on target domains, in full and incrementally (the paper's Table 2 and Fig. 3).

    python scripts/finetune.py --target japan                       # latest PreRec run of the benchmark
    python scripts/finetune.py --target all --first-n 0 100 all --benchmark retail-countries --data-dir ../shared/data

For each N in --first-n (the first N interactions of the target's training users in time order; 0 = zero-shot,
"all" = every one), fine-tunes from the run and, unless --no-scratch, trains the same model from scratch; scores the
target's test users. Writes finetune_<target>.csv|json beside the run.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd
import torch

from prerec_pyro import cli
from prerec_pyro.data.benchmarks import BENCHMARK_HELP, get_benchmark
from prerec_pyro.evaluate import HISTORY_RULES, EvalConfig
from prerec_pyro.inference.checkpoint import save_json
from prerec_pyro.inference.finetune import FINETUNE_PRIOR_UNITS, incremental_study, parse_sizes
from prerec_pyro.inference.map import TrainConfig
from prerec_pyro.inference.runs import check_finished, find_latest_run, prepare_for_run
from prerec_pyro.io import write_csv


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--benchmark", default="synthetic", help=BENCHMARK_HELP)
    p.add_argument("--target", default="all", help="a target domain (name or alias) or 'all'")
    p.add_argument("--data-dir", default=None, help="data root (default: $PREREC_DATA_DIR); unused by synthetic")
    p.add_argument("--run", default=None, help="PreRec run directory (default: the latest under --runs)")
    p.add_argument("--runs", default="runs", help="root of run directories")
    p.add_argument("--first-n", nargs="+", default=["0", "100", "1000", "all"],
                   help="numbers of target training interactions (0 = zero-shot, 'all' = every one)")
    p.add_argument("--no-scratch", action="store_true", help="skip the from-scratch comparison")
    p.add_argument("--epochs", type=int, default=10, help="maximum fine-tuning epochs")
    p.add_argument("--patience", type=int, default=2, help="epochs without validation gain before stopping")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (paper: 1e-4)")
    p.add_argument("--batch-size", type=int, default=64, help="sequences per batch")
    p.add_argument("--history-items", default="keep", choices=HISTORY_RULES,
                   help="history rule of the evaluation: keep (scores as given) or exclude (every item the user had "
                        "before the target ranked last)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    p.add_argument("--rndcg-b", type=float, default=None, help="fixed r-NDCG b (default: 600 / K%%, the paper's)")
    p.add_argument("--device", type=cli.device, default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cpu or cuda (default: cuda when present)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--out", default=None, help="output folder (default: the run's directory)")
    p.add_argument("--prior-units", default="total", choices=FINETUNE_PRIOR_UNITS,
                   help="units of λ on the target: total (default; Eq. 7 on the target's log, offsets free to learn "
                        "its items), per_observation, or run (the pre-training's)")
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> pd.DataFrame:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    benchmark = get_benchmark(args.benchmark)
    targets, sizes = benchmark.resolve_targets(args.target), parse_sizes(args.first_n)
    run = Path(args.run) if args.run else find_latest_run(Path(args.runs), benchmark.name, "prerec")
    if run is None:
        raise ValueError(f"no PreRec run of {args.benchmark!r} under {args.runs}; run scripts/map_pretrain.py first")
    config = check_finished(run, "prerec")  # fine-tuning starts from a finished PreRec run
    prepared = prepare_for_run(config, benchmark.name, args.data_dir)  # the run's sources, the benchmark's targets
    train = TrainConfig(likelihood=config.train.likelihood, n_negatives=config.train.n_negatives,
                        batch_size=args.batch_size, lr=args.lr, max_epochs=args.epochs, patience=args.patience,
                        seed=args.seed, device=args.device)
    test = EvalConfig(k_percent=benchmark.k_percent, n_boot=args.n_boot, device=args.device, rndcg_b=args.rndcg_b,
                      history_items=args.history_items)
    rows = []
    for target in targets:
        rows += incremental_study(run, prepared, target, train, sizes, test, from_scratch=not args.no_scratch,
                                  prior_units=args.prior_units)
    table = pd.DataFrame(rows)
    columns = ["domain", "method", "first_n", "n_train", "epochs", "recall@k%", "rndcg@k%", "recall@10", "ndcg@10"]
    print(table[columns].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    transfer = "" if config.benchmark == benchmark.name else f"_on_{benchmark.folder}"
    stem = Path(args.out or run) / f"finetune_{args.target}{transfer}"
    write_csv(stem.with_suffix(".csv"), table)
    save_json(stem.with_suffix(".json"), {"benchmark": benchmark.name, "pretrained_on": config.benchmark,
                                          "run": str(run), "prior_units": args.prior_units,
                                          "history_items": args.history_items, "rows": rows})
    print(f"written: {stem}.csv, {stem}.json")
    return table


if __name__ == "__main__":
    cli.run(main, parse_args, __file__)

"""Where a pre-trained run's zero-shot score comes from, per target (inference/diagnostics.py).

    python scripts/diagnose.py --run runs_ablations/prerec_per_obs/seed0/retail-countries/prerec-... \\
        --benchmark retail-countries --data-dir ../shared/data
    python scripts/diagnose.py --run RUN --benchmark retail-to-movielens --data-dir ../shared/data   # cross-platform
    python scripts/diagnose.py --run RUN --terms without-sequence history-weighted   # some rows only

Rows (``--terms``): Eq. 8 as evaluated, Eq. 8 without the target's popularity, without the sequence model
(f_seq = 0), with f_seq's state shared by all users only or with that part removed, Eq. 8 averaged with its
f_seq = 0 version weighed by each user's history (inference/evidence.py: by the ranks of the user's earlier items,
or by their probabilities), the run's text head alone
(f_e(X_last)·f_e(X_j)), POP, SBERT and SBERT with the history's items ranked last; the
column ``sbert_spearman`` is the mean rank correlation of Eq. 8's scores with SBERT's, and ``sequence_weight`` the
history-weighted rows' mean posterior weight of the sequence model at the evaluated positions (how far the users'
own histories trust f_seq on that target), beside the next items' mean log-probability and median rank under Eq. 8
and under Eq. 8 without f_seq (``log_prob_with``, ``median_rank_with``, ...). The benchmark's targets are
scored with the run's own sources (any benchmark, a .toml file included). Writes ``diagnose_<benchmark>.csv``
beside the run (a .toml benchmark: its folder name, as under a root of runs).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd
import torch

from prerec_pyro import cli
from prerec_pyro.cli import run
from prerec_pyro.data.benchmarks import BENCHMARK_HELP, get_benchmark
from prerec_pyro.evaluate import HISTORY_RULES, EvalConfig
from prerec_pyro.inference.diagnostics import TERMS, diagnostic_rows
from prerec_pyro.inference.runs import load_run_config, prepare_for_run
from prerec_pyro.io import write_csv

logger = logging.getLogger("diagnose")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--run", required=True, help="a PreRec or PreRec_n run directory")
    p.add_argument("--benchmark", default=None,
                   help=f"benchmark whose targets are scored (default: the run's own): {BENCHMARK_HELP}")
    p.add_argument("--target", default="all", help="a target of the benchmark (name or alias) or 'all'")
    p.add_argument("--data-dir", default=None, help="data root (default: the run's, else $PREREC_DATA_DIR)")
    p.add_argument("--max-users", type=int, default=None, help="at most this many test users per target")
    p.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples for the 95%% intervals")
    p.add_argument("--terms", nargs="+", default=list(TERMS), choices=TERMS,
                   help="rows to score beside Eq. 8 (default: all): without-popularity (F = 0), without-sequence "
                        "(f_seq = 0), sequence-shared / sequence-centred (f_seq's mean state over the batch, or the "
                        "rest), history-weighted (Eq. 8 averaged with f_seq = 0, weighed by the ranks of the "
                        "user's earlier items), history-likelihood (the same, weighed by their probabilities), "
                        "history-pooled (the same weights, the two pooled geometrically), "
                        "text-head, pop, sbert, sbert-without-history")
    p.add_argument("--history-items", nargs="+", default=list(HISTORY_RULES), choices=HISTORY_RULES,
                   help="history rules, each a column group: keep (scores as given) or exclude (every item the user "
                        "had before the target ranked last, for every method)")
    p.add_argument("--device", type=cli.device, default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cpu or cuda (default: cuda when present)")
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> pd.DataFrame:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    run, config = Path(args.run), load_run_config(Path(args.run))
    name = args.benchmark or config.benchmark
    benchmark = get_benchmark(name)
    prepared = prepare_for_run(config, benchmark.name, args.data_dir)  # the run's sources, the benchmark's targets
    eval_config = EvalConfig(k_percent=benchmark.k_percent, n_boot=args.n_boot, device=args.device,
                             max_users=args.max_users, history_items=tuple(args.history_items))
    rows = []
    for target in benchmark.resolve_targets(args.target):
        rows += diagnostic_rows(prepared, target, run, eval_config, tuple(args.terms))
    table = pd.DataFrame(rows)
    wide = table.pivot_table(index="domain", columns=["history_items", "method"], values="rndcg@k%", sort=False)
    wide.loc["mean"] = wide.mean()
    print(wide.to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"mean Spearman(Eq. 8, SBERT): {table['sbert_spearman'].mean():.3f}")
    if "sequence_weight" in table:  # one value per target and weighing, repeated on its rules' rows
        weighed = table.dropna(subset="sequence_weight").groupby(["method", "domain"], sort=False)["sequence_weight"]
        for method, weights in weighed.first().groupby(level=0, sort=False):
            weights = weights.droplevel(0)
            print(f"mean posterior weight of the sequence model ({method}, prior 0.5): {weights.mean():.3f} "
                  f"(per target: {', '.join(f'{d} {w:.3f}' for d, w in weights.items())})")
    if "median_rank_with" in table:  # the two models' evidence, the same for every weighing of a target
        evidence = table.dropna(subset="median_rank_with").groupby("domain", sort=False).first()
        print("the evaluated next items, mean over targets, under Eq. 8 / Eq. 8 without f_seq: mean log-probability "
              f"{evidence['log_prob_with'].mean():.3f} / {evidence['log_prob_without'].mean():.3f}, median rank "
              f"{evidence['median_rank_with'].mean():.1f} / {evidence['median_rank_without'].mean():.1f}")
    write_csv(run / f"diagnose_{benchmark.folder}.csv", table)
    return table


if __name__ == "__main__":
    run(main, parse_args, __file__)

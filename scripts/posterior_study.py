"""What a run's posterior says, in one command (inference/posterior.py): a figure and its tables.

    python scripts/map_pretrain.py --benchmark synthetic-small --guide structured --epochs 40 --runs runs
    python scripts/posterior_study.py --run runs/synthetic-small/prerec-structured-seed0-...

- ``posterior_convergence.csv``: whether the fit has settled: the training loss's fitted change per epoch over the last
  10 epochs (flat under 0.2%) and each latent site's posterior std over its prior's;
- ``posterior_domains.csv``: posterior distance between each pair of source D_k (mean and 90% credible interval)
  beside the Spearman correlation of the two domains' item counts;
- ``posterior_calibration.csv`` (and ``posterior_reliability.csv``): ECE of the top next-item prediction on the
  sources' validation users, MAP against the posterior predictive (``--samples`` draws);
- ``posterior_target_calibration.csv``: the same zero-shot on every target's test users, Eq. 8 against the back-door
  average over the posterior of the sources' D_k;
- ``posterior_coverage.csv`` (synthetic benchmarks): how often the 50% and 90% credible intervals of the predicted
  probability of the next item hold its planted probability, per source domain;
- ``posterior_items.csv``: the item offsets with the widest and the narrowest posterior spread;
- ``posterior_gold.csv`` (with ``--nuts-samples N``): NUTS over D, the networks and the other latents fixed, as a
  gold standard for the guide's posterior of D (mean error in prior stds, std ratio, KL); for small models;
- ``posterior_study.png``: the three as panels.

A point-estimate run (``--guide delta``) works too: its intervals collapse and the two scorers agree, which is the
reference a variational guide is read against. Written into ``--out`` (default: the run's directory).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pandas as pd

from prerec_pyro import cli
from prerec_pyro.data.synthetic import named_truth
from prerec_pyro.figures import plot_posterior_study
from prerec_pyro.inference.guides import domain_draws
from prerec_pyro.inference.posterior import (
    calibration,
    convergence,
    domain_similarity,
    gold_comparison,
    item_uncertainty,
    planted_coverage,
    target_calibration,
)
from prerec_pyro.inference.pretrained import PretrainedRun
from prerec_pyro.inference.runs import check_finished, prepare_for_run
from prerec_pyro.io import write_csv


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--run", required=True, help="a PreRec run directory (any guide)")
    p.add_argument("--data-dir", default=None, help="data root (default: the run's, else $PREREC_DATA_DIR)")
    p.add_argument("--samples", type=int, default=20, help="posterior draws (domain distances, predictive)")
    p.add_argument("--max-users", type=int, default=200,
                   help="validation users per source domain, test users per target")
    p.add_argument("--top", type=int, default=10, help="items listed at each end of the posterior spread")
    p.add_argument("--nuts-samples", type=int, default=0,
                   help="also NUTS over D as a gold standard for the guide's posterior of D (0: off; small models)")
    p.add_argument("--nuts-users", type=int, default=50, help="training users per source domain for NUTS")
    p.add_argument("--out", default=None, help="output folder (default: the run's directory)")
    args = p.parse_args(argv)
    if args.nuts_samples < 0:
        p.error(f"--nuts-samples must be >= 0, got {args.nuts_samples}")
    for flag in ("samples", "max_users", "top", "nuts_users"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    return args


def main(args: argparse.Namespace) -> dict[str, pd.DataFrame]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    run = Path(args.run)
    config = check_finished(run, method="prerec")
    prepared = prepare_for_run(config, data_dir=args.data_dir)
    pretrained = PretrainedRun.load(run)
    model, guide, probe = pretrained.on_sources(prepared)
    history = json.loads((run / "history.json").read_text())["history"]
    tables = {"convergence": convergence(history, model, guide),
              "domains": domain_similarity(domain_draws(model, guide, probe, args.samples), prepared)}
    tables["calibration"], tables["reliability"] = calibration(model, guide, prepared, args.samples, args.max_users)
    if prepared.benchmark.targets:
        tables["target_calibration"] = target_calibration(pretrained, prepared, args.samples, args.max_users)
    truth = named_truth(config.benchmark)
    if truth is not None:
        tables["coverage"] = planted_coverage(model, guide, prepared, truth, args.samples, args.max_users)
    tables["items"] = item_uncertainty(model, guide, prepared, args.top)
    if args.nuts_samples:
        tables["gold"] = gold_comparison(model, guide, prepared, args.nuts_samples, args.nuts_samples,
                                         args.nuts_users)
    out = Path(args.out) if args.out else run
    for name, table in tables.items():
        write_csv(out / f"posterior_{name}.csv", table)
    figure = plot_posterior_study(tables["domains"], tables["reliability"], tables["items"],
                                  out / "posterior_study.png")
    with pd.option_context("display.width", 160, "display.max_colwidth", 40):
        for name in ("convergence", "domains", "calibration", "target_calibration", "coverage", "items", "gold"):
            if name not in tables:
                continue
            print(f"\n{name}:\n{tables[name].to_string(index=False, float_format=lambda v: f'{v:.4g}')}")
    print(f"\nwritten: {out}/posterior_*.csv, {figure}")
    return tables


if __name__ == "__main__":
    cli.run(main, parse_args, __file__)

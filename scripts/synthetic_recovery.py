"""Does a synthetic pre-training run recover what the generator planted? (domain tastes, popularity effect)

    python scripts/synthetic_recovery.py                      # the latest PreRec run of the synthetic benchmark
    python scripts/synthetic_recovery.py --run runs/synthetic/prerec-delta-seed0-...

Prints the Spearman correlations of learned vs planted domain-specific tastes (rows learned, columns planted;
recovery = a dominant diagonal) and, per domain, of the learned popularity score vs the planted log-popularity.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from prerec_pyro import cli
from prerec_pyro.data.synthetic import SyntheticConfig, generate_synthetic
from prerec_pyro.inference.guides import latent_values
from prerec_pyro.inference.pretrained import probe_batch
from prerec_pyro.inference.recovery import popularity_recovery, taste_correlations
from prerec_pyro.inference.runs import find_latest_run, load_run, load_run_config
from prerec_pyro.pipeline import prepare_benchmark


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--run", default=None, help="a PreRec run of the synthetic benchmark (default: the latest)")
    p.add_argument("--runs", default="runs", help="root of run directories")
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> dict:
    logging.basicConfig(level=logging.WARNING)
    run = Path(args.run) if args.run else find_latest_run(Path(args.runs), "synthetic", "prerec")
    if run is None:
        raise ValueError(f"no PreRec run of the synthetic benchmark under {args.runs}; run map_pretrain.py first")
    config = load_run_config(run)
    if config.benchmark != "synthetic":
        raise ValueError(f"{run} is a run of {config.benchmark!r}; the planted truth exists for 'synthetic' only")
    prepared = prepare_benchmark("synthetic", None, config.sequences, config.popularity,
                                 config.text_encoder(show_progress=False),
                                 cold_items=config.cold_items, cold_seed=config.cold_seed)
    data = prepared.sources
    probe = probe_batch(data)
    _, model, guide = load_run(run, data, prepared.item_text(data), probe)
    values = latent_values(guide, probe, model)
    truth = generate_synthetic(SyntheticConfig()).truth
    tastes = taste_correlations(model, values, data, truth)
    popularity = popularity_recovery(model, values, data, truth)
    print(f"run: {run}\nlearned (rows) vs planted (columns) domain-specific tastes, Spearman:")
    print(tastes.round(3).to_string())
    print("learned popularity score vs planted log-popularity, Spearman per domain:")
    print(popularity.round(3).to_string())
    return {"tastes": tastes, "popularity": popularity}


if __name__ == "__main__":
    cli.run(main, parse_args, __file__)

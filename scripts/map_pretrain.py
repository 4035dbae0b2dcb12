"""MAP pre-training of PreRec (or the PreRec_n ablation) on a benchmark's source domains.

    python scripts/map_pretrain.py                                   # synthetic benchmark, a few minutes on a CPU
    python scripts/map_pretrain.py --benchmark movielens-ages --data-dir ../shared/data
    python scripts/map_pretrain.py --benchmark examples/own_data/benchmark.toml   # your own data
    python scripts/map_pretrain.py --method prerec_n               # the ablation, same everything else
    python scripts/map_pretrain.py --resume runs/synthetic/prerec-delta-seed0-...   # continue an interrupted run
    torchrun --nproc_per_node 2 scripts/map_pretrain.py --guide sparse-delta ...   # data parallel over 2 processes

Flags -> ``run_config`` -> ``pretrain`` (``inference/pretraining.py``; the flags: ``prerec_pyro/run_flags.py``).
Writes a self-contained run directory (config.json, best.pt, last.pt, history.json, metrics.json, sources.pt,
state.json) under --runs/<benchmark>/ (for a .toml benchmark, --runs/<its name>-<hash of its path>/). Under torchrun
every process trains its users' share of each batch (gloo on CPUs, NCCL on GPUs, one GPU per process) and rank 0
writes the run directory.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

import pyro

from prerec_pyro.cli import run
from prerec_pyro.data.batches import BatchBuilder
from prerec_pyro.distributed import Distributed
from prerec_pyro.inference.map import training_windows
from prerec_pyro.inference.pretraining import PretrainingInterrupted, model_and_guide, pretrain, resume_pretraining
from prerec_pyro.inference.runs import (
    RunConfig,
)
from prerec_pyro.run_flags import parse_run_args, run_config_from_args

logger = logging.getLogger("map_pretrain")


def parse_args(argv=None) -> argparse.Namespace:
    return parse_run_args(argv, __doc__)


def print_shapes(config: RunConfig) -> None:
    """The model's and the guide's trace shapes on a few training windows (no run is written)."""
    prepared, model, guide = model_and_guide(config)
    data = prepared.sources
    windows = training_windows(data)[0]
    batch = BatchBuilder(data, None, device=config.train.device).make(0, windows.select(list(range(min(4, len(
        windows))))))
    guide_trace = pyro.poutine.trace(guide).get_trace(batch)
    model_trace = pyro.poutine.trace(pyro.poutine.replay(model, trace=guide_trace)).get_trace(batch)
    print(model_trace.format_shapes())


def main(args: argparse.Namespace) -> Path:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    parallel, device = Distributed.from_env(args.device)
    if not parallel.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    try:
        if args.resume:
            run_dir = resume_pretraining(args.resume, args.epochs, args.patience, device, parallel)
        else:
            config = run_config_from_args(args)
            config = replace(config, train=replace(config.train, device=device))
            if args.print_shapes:
                print_shapes(config)
                return Path(".")
            run_dir = pretrain(config, args.runs, parallel)
    except PretrainingInterrupted as interrupted:
        if parallel.is_main:
            print(f"map_pretrain.py: {interrupted}", file=sys.stderr)
        run_dir = None
    finally:
        parallel.close()
    if run_dir is None:
        parallel.exit(130)  # a rank of a multi-process run ends here (prerec_pyro/distributed.py); else a no-op
        sys.exit(130)
    if parallel.is_main:
        print(f"run directory: {run_dir}")
    parallel.exit()
    return run_dir


if __name__ == "__main__":
    run(main, parse_args, __file__)

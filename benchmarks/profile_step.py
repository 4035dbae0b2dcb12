"""Where the default's time goes on a named benchmark: a cProfile of training steps and of one sources' validation.

    python benchmarks/profile_step.py --benchmark movielens-ages --data-dir ../shared/data --threads 2

The library's default configuration (``run_config`` -> the model, guide and trainer ``pretrain`` builds, with the
fair protocol's batches and validation users) on the benchmark's sources: ``--warmup`` steps untimed, then ``--steps``
steps timed and ``--profile-steps`` under cProfile; then one validation pass timed and one under cProfile (the
untrained model: a validation's cost does not depend on the weights). Prints the seconds per step and per validation
and the ``--top`` functions by their own time for each. The profiles are for reading, not for targets: cProfile adds
its own overhead to every Python call.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import logging
import pstats
import sys
import time

import pyro
import torch

from prerec_pyro import cli, run_config
from prerec_pyro.inference.map import MapTrainer
from prerec_pyro.inference.pretraining import model_and_guide, validation

FAIR_BATCHES = {"max_steps_per_epoch": 100, "min_steps_per_epoch": 100}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--benchmark", default="movielens-ages", help="benchmark whose sources are trained")
    p.add_argument("--data-dir", default=None, help="data root (default: $PREREC_DATA_DIR)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's default)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    p.add_argument("--steps", type=int, default=30, help="timed steps")
    p.add_argument("--profile-steps", type=int, default=20, help="steps under cProfile")
    p.add_argument("--valid-max-users", type=int, default=200, help="validation users per source domain")
    p.add_argument("--top", type=int, default=15, help="functions listed per profile")
    args = p.parse_args(argv)
    if args.steps < 1 or min(args.warmup, args.profile_steps) < 0:
        p.error(f"--steps must be >= 1 and --warmup, --profile-steps >= 0, got {args.steps}, {args.warmup}, "
                f"{args.profile_steps}")
    return args


def profiled(run, top: int) -> str:
    """``run()`` under cProfile: the ``top`` functions by their own time, as pstats prints them."""
    profile = cProfile.Profile()
    profile.runcall(run)
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(top)
    return text.getvalue()


def main(args: argparse.Namespace) -> dict:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    config = run_config(args.benchmark, train=FAIR_BATCHES, data_dir=args.data_dir,
                        valid_max_users=args.valid_max_users)
    pyro.set_rng_seed(config.train.seed)
    prepared, model, guide = model_and_guide(config)
    data = prepared.sources
    trainer = MapTrainer(model, guide, data, config.train)
    trainer._setup()  # the optimisers, as fit() makes them
    model.train()
    batches = itertools.chain.from_iterable(trainer.sampler.epoch(epoch) for epoch in itertools.count())  # endless
    generator = torch.Generator().manual_seed(config.train.seed)

    def steps(n: int) -> None:
        for _, (domain, rows) in zip(range(n), batches):
            trainer.step(*trainer.make_batch(domain, rows, generator))

    steps(args.warmup)
    started = time.perf_counter()
    steps(args.steps)
    step_seconds = (time.perf_counter() - started) / args.steps
    step_profile = profiled(lambda: steps(args.profile_steps), args.top)
    validate = validation(model, guide, data, prepared.benchmark.k_percent, config)
    started = time.perf_counter()
    validate()
    valid_seconds = time.perf_counter() - started
    valid_profile = profiled(validate, args.top)
    print(f"{args.benchmark}: {step_seconds:.3f} s a training step ({config.train.batch_size} sequences), "
          f"{valid_seconds:.2f} s a validation ({args.valid_max_users} users per source)")
    print(f"training steps ({args.profile_steps}), by own time:\n{step_profile}")
    print(f"one validation, by own time:\n{valid_profile}")
    return {"step_seconds": step_seconds, "validation_seconds": valid_seconds,
            "step_profile": step_profile, "validation_profile": valid_profile}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    main(parse_args())
    sys.exit(0)

"""Data-parallel training throughput: PreRec's MAP step on 1 and N processes under ``torchrun``, the same global
batches split by user across the ranks (prerec_pyro.distributed).

    python benchmarks/bench_ddp.py                                   # 1 and 2 CPU processes (gloo), ~2 min on 2 cores
    python benchmarks/bench_ddp.py --device cuda --processes 1 2 4   # GPUs (NCCL), one GPU per process

For each N the script launches ``python -m torch.distributed.run --standalone --nproc_per_node N`` on itself with
``--worker``. Every worker builds the same synthetic sources and model (the sizes of bench_train.py), runs
``--warmup`` untimed and ``--steps`` timed optimiser steps of ``MapTrainer.step`` on its share of each global batch
of ``--batch-size`` sequences, and rank 0 writes its timing. On a CPU the ``--threads`` (default: all cores) are
split evenly between the processes, so every N uses the same cores. Prints, per N: seconds per step, target
interactions per second, the speed-up over one process, and the seconds of one gather of the sparse user table
(``MapTrainer._gather_users``: each rank's rows from their owner, once an epoch before the checkpoint; the only
traffic the table makes); ``--out`` writes JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_common as bc
import torch

from prerec_pyro import cli
from prerec_pyro.distributed import Distributed
from prerec_pyro.inference.guides import GUIDES, make_guide
from prerec_pyro.inference.map import MapTrainer, TrainConfig
from prerec_pyro.models.prerec import PreRecModel

logger = logging.getLogger("bench_ddp")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    bc.add_common_args(p, repeats=1, warmup=3)
    bc.add_model_args(p)
    bc.add_synthetic_args(p)
    bc.add_config_arg(p)
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="process counts to run (default: 1 2)")
    p.add_argument("--batch-size", type=int, default=64, help="global sequences per step (default: 64)")
    p.add_argument("--negatives", type=int, default=255, help="sampled negatives (default: 255)")
    p.add_argument("--steps", type=int, default=20, help="timed optimiser steps (default: 20)")
    p.add_argument("--guide", default="sparse-delta", choices=GUIDES,
                   help="the guide (default: sparse-delta, whose user table stays rank-local)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: the launch's folder
    args = p.parse_args(argv)
    if args.worker:  # a rank: the parent's flags, this process's thread count
        return argparse.Namespace(**json.loads((Path(args.worker) / "args.json").read_text()))
    if any(n < 1 for n in args.processes) or args.steps < 1:
        p.error(f"--processes and --steps must be >= 1, got {args.processes} and {args.steps}")
    return args


def worker(args: argparse.Namespace) -> None:
    """One rank: build, warm up, time ``--steps`` steps; rank 0 writes seconds and targets into ``--worker``; the rank
    ends without the interpreter's shutdown (``Distributed.exit``)."""
    parallel, device = Distributed.from_env(args.device)
    try:
        timing = time_steps(args, parallel, device)
    finally:
        parallel.close()
    if parallel.is_main:
        bc.write_json(Path(args.worker) / "rank0.json", timing)
    parallel.exit()


def time_steps(args: argparse.Namespace, parallel: Distributed, device: str) -> dict:
    """Build, warm up and time ``--steps`` steps on this rank: seconds, targets and the user-table gather."""
    bc.setup(args)
    data, text = bc.synthetic_sources(args, bc.popularity_mode(args))
    config = bc.model_config(args)
    model = PreRecModel(config, len(data.domains), data.n_fit_users, text.to(device)).to(device)
    train = TrainConfig(n_negatives=args.negatives, batch_size=args.batch_size, seed=args.seed, device=device)
    trainer = MapTrainer(model, make_guide(args.guide, model, name="bench_ddp_guide"), data, train,
                         parallel=parallel)
    trainer._setup()
    generator, batches = torch.Generator().manual_seed(args.seed), iter(trainer.sampler.epoch(0))
    targets, seconds = 0, 0.0
    for index in range(args.warmup + args.steps):
        domain, rows = next(batches)
        parallel.barrier()
        started = time.perf_counter()
        loss = trainer.step(*trainer.make_batch(domain, rows, generator))
        parallel.sum(loss.reshape(1))  # every rank's step is done (and the loss is read)
        bc.synchronize(torch.device(device))
        if index >= args.warmup:
            seconds += time.perf_counter() - started
            targets += int(trainer.windows[domain].select(rows).target_mask.sum())
    started = time.perf_counter()
    trainer._gather_users()  # what ownership of the user table costs, once an epoch (before checkpoints)
    gather = time.perf_counter() - started
    return {"seconds": seconds, "targets": targets, "steps": args.steps, "gather_users_s": gather,
            "threads_per_process": torch.get_num_threads(), "n_users": data.n_fit_users}


def launch(args: argparse.Namespace, processes: int) -> dict:
    """Run the workers of ``processes`` ranks; rank 0's timing."""
    threads = max(1, (args.threads or os.cpu_count() or 1) // processes)
    with tempfile.TemporaryDirectory() as folder:
        worker_args = {**vars(args), "out": None, "worker": folder,
                       "threads": threads if args.device == "cpu" else args.threads}
        (Path(folder) / "args.json").write_text(json.dumps(worker_args))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
                   str(Path(__file__).resolve()), "--worker", folder]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        logger.info("%d process(es), %d thread(s) each", processes, threads)
        subprocess.run(command, check=True, env=env)
        return json.loads((Path(folder) / "rank0.json").read_text())


def main(args: argparse.Namespace) -> dict:
    if args.worker:
        worker(args)
        return {}
    if args.data_cache:
        bc.ensure_cached(args)  # generated once, before the workers read it
    rows = []
    for processes in args.processes:
        timing = launch(args, processes)
        rows.append({"processes": processes, "threads_per_process": timing["threads_per_process"],
                     "s_per_step": timing["seconds"] / timing["steps"],
                     "targets_per_s": timing["targets"] / timing["seconds"],
                     "gather_users_s": timing["gather_users_s"], "n_users": timing["n_users"]})
    base = next((r for r in rows if r["processes"] == 1), rows[0])
    for row in rows:
        row["speedup_vs_1"] = row["targets_per_s"] / base["targets_per_s"]
    print(bc.format_table(rows, ["processes", "threads_per_process", "s_per_step", "targets_per_s",
                                 "speedup_vs_1", "gather_users_s"]))
    payload = {"rows": rows, "args": {k: v for k, v in vars(args).items() if k != "worker"},
               "environment": bc.environment(torch.device(args.device))}
    if args.out:
        bc.write_json(args.out, payload)
    return payload


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    main(parse_args())

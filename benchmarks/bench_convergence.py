"""Time to quality: the default configuration's sources' validation score against wall-clock time.

    python benchmarks/bench_convergence.py --data-dir ../shared/data     # trains movielens-ages, retail-countries
    python benchmarks/bench_convergence.py --run-dirs runs_fair/prerec_default/seed0/movielens-ages/prerec-...

Each benchmark is pre-trained with the library's default (``run_config`` -> ``pretrain``) under the fair protocol's
budget (epochs of 100 steps, patience 3 under a cap of 100 epochs, 200 validation users per source), or a finished
run is read (``--run-dirs``). From the run's history.json: the wall clock after each epoch (its training seconds plus
its validation seconds, summed over the epochs; the set-up before the first epoch is left out), the sources'
validation score (r-NDCG@K%, the selection criterion), the converged score (the best one of a run stopped by its
patience), and the time to 95% of it: the wall clock at the end of the first epoch that reached it. Writes
``convergence.csv`` and ``convergence.png`` under ``--out-dir``; target: 95% within 10 minutes on movielens-ages.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
from pathlib import Path

import pandas as pd
import torch

from prerec_pyro import cli, pretrain, run_config
from prerec_pyro.io import atomic_write

logger = logging.getLogger("bench_convergence")

FAIR_BUDGET = {"max_epochs": 100, "patience": 3, "max_steps_per_epoch": 100, "min_steps_per_epoch": 100}
SHARE, TARGET_MINUTES = 0.95, {"movielens-ages": 10.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--benchmarks", nargs="+", default=["movielens-ages", "retail-countries"],
                   help="benchmarks to pre-train the default on")
    p.add_argument("--run-dirs", nargs="+", default=None, help="finished run directories to read instead of training")
    p.add_argument("--data-dir", default=None, help="data root (default: $PREREC_DATA_DIR)")
    p.add_argument("--runs", default="runs_convergence", help="root of the runs this script trains")
    p.add_argument("--out-dir", default="runs_convergence", help="where convergence.csv and convergence.png go")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's default)")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--valid-max-users", type=int, default=200, help="validation users per source domain")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: the benchmark's)")
    p.add_argument("--warmup-steps", type=int, default=None,
                   help="steps of linear learning-rate warm-up (default: the benchmark's warmup_steps, else 0)")
    p.add_argument("--lr-decay", type=float, default=None,
                   help="factor on the learning rate after each epoch without a better validation score "
                        "(default: the benchmark's lr_decay, else 1: constant)")
    p.add_argument("--cosine-epochs", type=int, default=None,
                   help="the learning rate falls by a half cosine to 0 over this many epochs, where training ends "
                        "(default: the benchmark's cosine_epochs, else 0: off)")
    return p.parse_args(argv)


def recipe(train: dict) -> str:
    """The learning-rate recipe of a run's training config, for labels."""
    decay = train.get("lr_decay", 1.0)
    return (f"lr {train['lr']:g}" + (f", warm-up {train['warmup_steps']}" if train.get("warmup_steps") else "")
            + (f", x{decay:g} per plateau" if decay < 1 else "")
            + (f", cosine over {train['cosine_epochs']} epochs" if train.get("cosine_epochs") else ""))


def curve(run_dir: Path) -> dict:
    """The run's (epoch, wall-clock seconds, validation score) and its time to ``SHARE`` of its converged score."""
    history = json.loads((run_dir / "history.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    records = history["history"]
    if not records or any("validation_seconds" not in r for r in records):
        raise ValueError(f"{run_dir}/history.json: epochs without 'validation_seconds' (a run trained before the "
                         "wall clock was recorded); train it again with this version")
    wall, points = 0.0, []
    for record in records:
        wall += record["seconds"] + record["validation_seconds"]
        points.append({"epoch": record["epoch"], "wall_s": wall, "score": record["score"],
                       "train_s": record["seconds"], "valid_s": record["validation_seconds"]})
    best = max(p["score"] for p in points)
    reached = next(p for p in points if p["score"] >= SHARE * best)
    metrics = run_dir / "metrics.json"  # the run's own record; absent while a run is unfinished
    stopped = json.loads(metrics.read_text())["convergence"]["stopped_by"] if metrics.exists() else "unfinished"
    return {"run_dir": str(run_dir), "benchmark": config["benchmark"], "recipe": recipe(config["train"]),
            "points": points, "converged_score": best,
            "stopped_by": stopped, "time_to_95_s": reached["wall_s"], "epoch_to_95": reached["epoch"],
            "total_s": wall, "epochs": len(points)}


def train(benchmark: str, args: argparse.Namespace) -> Path:
    """The default configuration under the fair budget, trained (a library call) into a new run directory."""
    schedule = {k: v for k, v in (("lr", args.lr), ("warmup_steps", args.warmup_steps), ("lr_decay", args.lr_decay),
                                  ("cosine_epochs", args.cosine_epochs)) if v is not None}
    config = run_config(benchmark, train={**FAIR_BUDGET, **schedule, "seed": args.seed}, data_dir=args.data_dir,
                        valid_max_users=args.valid_max_users)
    return pretrain(config, runs=args.runs)


def write_outputs(curves: list[dict], out_dir: Path) -> None:
    """convergence.csv (one row per run and epoch) and convergence.png (score against minutes, the 95% mark)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = pd.DataFrame([{"benchmark": c["benchmark"], "recipe": c["recipe"], "run_dir": c["run_dir"], **p}
                         for c in curves for p in c["points"]])
    text = io.StringIO()
    rows.to_csv(text, index=False)
    atomic_write(out_dir / "convergence.csv", lambda stream: stream.write(text.getvalue().encode()))
    figure, axis = plt.subplots(figsize=(7, 4))
    for c in curves:
        minutes = [p["wall_s"] / 60 for p in c["points"]]
        label = f"{c['benchmark']} ({c['recipe']})"
        line, = axis.plot(minutes, [p["score"] for p in c["points"]], marker=".", label=label)
        axis.axvline(c["time_to_95_s"] / 60, color=line.get_color(), linestyle=":", linewidth=1)
    axis.set_xlabel("wall clock (minutes, training + validation)")
    axis.set_ylabel("sources' validation r-NDCG@K%")
    axis.set_title("The default configuration: time to quality (dotted: 95% of the converged score)")
    axis.legend()
    figure.tight_layout()
    atomic_write(out_dir / "convergence.png", lambda stream: figure.savefig(stream, format="png", dpi=120))
    plt.close(figure)


def report(curves: list[dict]) -> None:
    for c in curves:
        goal = TARGET_MINUTES.get(c["benchmark"])
        met = goal is not None and c["time_to_95_s"] <= 60 * goal
        verdict = "" if goal is None else f" (target <= {goal:.0f} min: {'met' if met else 'missed'})"
        print(f"{c['benchmark']} ({c['recipe']}): converged validation {c['converged_score']:.4f} after "
              f"{c['epochs']} epochs ({c['total_s'] / 60:.1f} min, stopped by {c['stopped_by']}); "
              f"95% of it at epoch {c['epoch_to_95']}, "
              f"{c['time_to_95_s'] / 60:.1f} min{verdict}; an epoch's median {median(c, 'train_s'):.1f} s of "
              f"training and {median(c, 'valid_s'):.1f} s of validation")


def median(curve_: dict, key: str) -> float:
    """The median over a run's epochs of ``key`` (seconds of training or of validation)."""
    return float(pd.Series([p[key] for p in curve_["points"]]).median())


def main(args: argparse.Namespace) -> list[dict]:
    if args.lr is not None and not args.lr > 0:
        raise ValueError(f"--lr must be > 0, got {args.lr}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    run_dirs = [Path(d) for d in args.run_dirs] if args.run_dirs else [train(b, args) for b in args.benchmarks]
    curves = [curve(d) for d in run_dirs]
    write_outputs(curves, Path(args.out_dir))
    report(curves)
    return curves


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sys.exit(0 if main(parse_args()) else 1)

"""The whole study of a benchmark: pre-training, zero-shot (Table 1), fine-tuning (Table 2), incremental curves
(Fig. 3) and popularity (Fig. 5). Resumable: every finished step is kept in the study directory and skipped.

    python scripts/reproduce.py                                          # synthetic benchmark
    python scripts/reproduce.py --benchmark movielens-ages --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace
from pathlib import Path

import torch

from prerec_pyro import cli
from prerec_pyro.cli import run
from prerec_pyro.data.benchmarks import BENCHMARK_HELP, get_benchmark
from prerec_pyro.inference.checkpoint import load_json, save_json
from prerec_pyro.inference.finetune import parse_sizes
from prerec_pyro.inference.pretraining import pretrain
from prerec_pyro.inference.runs import common_cold_protocol, find_latest_run, load_run_config
from prerec_pyro.pipeline import prepare_benchmark
from prerec_pyro.progress import progress_bar
from prerec_pyro.run_flags import parse_run_args, run_config_from_args
from prerec_pyro.study import STEP_FILES, Study, StudyConfig

logger = logging.getLogger("reproduce")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--benchmark", default="synthetic", help=BENCHMARK_HELP)
    p.add_argument("--data-dir", default=None, help="data root (default: $PREREC_DATA_DIR); unused by synthetic")
    p.add_argument("--runs", default="runs", help="root of run directories (pre-training runs are reused)")
    p.add_argument("--out", default=None, help="study directory (default: <runs>/<benchmark folder>/study)")
    p.add_argument("--first-n", nargs="+", default=["0", "100", "1000", "10000", "all"],
                   help="incremental fine-tuning sizes (0 = zero-shot, 'all' = every training interaction)")
    p.add_argument("--pretrain-args", nargs=argparse.REMAINDER, default=[],
                   help="extra flags for scripts/map_pretrain.py when a run must be trained (put last)")
    p.add_argument("--ft-epochs", type=int, default=10, help="maximum fine-tuning epochs")
    p.add_argument("--baseline-epochs", type=int, default=10, help="maximum epochs of the learnable baselines")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    p.add_argument("--rndcg-b", type=float, default=None, help="fixed r-NDCG b (default: 600 / K%%, the paper's)")
    p.add_argument("--device", type=cli.device, default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cpu or cuda (default: cuda when present)")
    return p.parse_args(argv)


def ensure_run(args: argparse.Namespace, method: str) -> Path:
    """The latest finished run of ``method``, pre-training one (``--pretrain-args``: pre-training flags) if there is
    none."""
    run = find_latest_run(Path(args.runs), args.benchmark, method)
    if run is not None:
        return run
    flags = ["--benchmark", args.benchmark, "--method", method, "--device", args.device]
    flags += ["--data-dir", args.data_dir] if args.data_dir else []
    return pretrain(run_config_from_args(parse_run_args(flags + list(args.pretrain_args))), args.runs)


def main(args: argparse.Namespace) -> Path:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    started, timings = time.perf_counter(), {}
    benchmark = get_benchmark(args.benchmark)  # an unknown name or a bad .toml fails here, before any work
    steps = progress_bar(total=7, desc=f"study {args.benchmark}")
    runs = {}
    for method in ("prerec_n", "prerec"):
        runs[method] = ensure_run(args, method)
        steps.update()
    timings["pretraining"] = time.perf_counter() - started
    config = load_run_config(runs["prerec"])
    cold_items, cold_seed = common_cold_protocol(runs)  # both runs must have seen the same sources
    prepared = prepare_benchmark(args.benchmark, args.data_dir or config.data_dir, config.sequences,
                                 config.popularity, config.text_encoder(),
                                 cold_items=cold_items, cold_seed=cold_seed)
    base = StudyConfig()
    study_config = replace(base, sizes=tuple(parse_sizes(args.first_n)), n_boot=args.n_boot, device=args.device,
                           rndcg_b=args.rndcg_b,
                           finetune=replace(base.finetune, max_epochs=args.ft_epochs),
                           baseline=replace(base.baseline, max_epochs=args.baseline_epochs))
    directory = Path(args.out) if args.out else Path(args.runs) / benchmark.folder / "study"
    study = Study(prepared, runs, directory, study_config)
    previous = load_json(directory / "study.json").get("seconds", {}) if (directory / "study.json").exists() else {}
    reused = []
    for name, step in (("zero_shot", study.zero_shot), ("diagnostics", study.diagnostics),
                       ("fine_tuned", study.fine_tuned), ("curves", study.curves)):
        step_started = time.perf_counter()
        if (directory / STEP_FILES[name]).exists() and name in previous:
            reused.append(name)  # kept from an earlier invocation: report the time it took then
        table = step()
        timings[name] = previous[name] if name in reused else time.perf_counter() - step_started
        steps.update()
    figures = study.figures(table)
    steps.update()
    steps.close()
    timings["this_invocation"] = time.perf_counter() - started
    pretraining = {method: load_json(run / "metrics.json").get("wall_seconds") for method, run in runs.items()}
    save_json(directory / "study.json", {"benchmark": benchmark.name, "runs": {k: str(v) for k, v in runs.items()},
                                         "cold_items": prepared.cold_items, "cold_seed": prepared.cold_seed,
                                         "seconds": timings, "steps_reused": reused,
                                         "pretraining_wall_seconds": pretraining,
                                         "figures": [str(p) for p in figures]})
    for name in STEP_FILES.values():
        print(f"{directory / name}")
    print(*map(str, figures), sep="\n")
    return directory


if __name__ == "__main__":
    run(main, parse_args, __file__)

"""Training throughput (target interactions per second) of PreRec's MAP step against plain-PyTorch contenders.

    python benchmarks/bench_train.py                            # CPU-sized synthetic data, a few minutes on 2 cores
    python benchmarks/bench_train.py --device cuda --hidden-dim 256 --heads 4 --batch-size 256   # paper sizes
    python benchmarks/bench_train.py --paper-scale --steps 10 --threads 2   # the paper's data size, projected epoch

Contenders, on the same synthetic source domains, embedding size B, layers, negatives, Adam and clipping:

- ``ours``: ``MapTrainer.step`` (inference/map.py): ``Trace_ELBO`` under the AutoDelta guide; one causal pass per
  window of ``--max-len`` items scores every position against the batch's shared negatives. ``--config
  recommended`` (the default) times the library's default configuration (``PreRecConfig.recommended()``, sliding
  popularity), ``--config eq6`` the paper's Eq. 6 as written (interval popularity);
- ``prerec_n``: the same step of the PreRec_n ablation of that configuration on the same batches: ``prerec vs prerec_n
  step`` is what PreRec's own terms (D, popularity periods, offsets) cost;
- ``ours-cut`` (diagnostic): the same step on the same batches cut to the batch's longest window (results are
  identical: the Transformer is causal); it shows what the padding of short sequences costs;
- ``hand``: our model's loss written by hand in plain torch (the same nets, logits, priors and sampled softmax,
  dense tables, one Adam): ``ours / hand`` is Pyro's overhead. Its loss is checked against Pyro's on one batch;
- ``reference``: trained the way the official PreRec code does: one Transformer pass per (history, target) sample,
  history padded to ``--max-len``, ``--negatives`` drawn per sample, dense Adam over per-item and per-user tables;
  ``--batch-size`` samples per step. ``hand`` and ``reference`` write Eq. 6's loss, so they run with ``--config eq6``.

Each timed round runs ``--steps`` optimiser steps of every contender (side by side, see bench_common); the table
shows medians over rounds, the ratios are medians of the per-round ratios. Prints the table,
``ours vs per-sample reference: N.Nx`` and ``pyro overhead: N.NNx``; ``--out`` writes JSON.
"""

from __future__ import annotations

import argparse
import copy
import logging
import time

import bench_common as bc
import numpy as np
import torch
from train_contenders import (
    AlgebraFloor,
    HandLoss,
    PerSampleReference,
    PlainTrainer,
    SampleMaker,
    map_loss,
    prior_constant,
)

from prerec_pyro import cli
from prerec_pyro.inference.guides import latent_values, make_guide
from prerec_pyro.inference.map import MapTrainer, TrainConfig
from prerec_pyro.models.prerec import PreRecConfig, PreRecModel

logger = logging.getLogger("bench_train")
TARGET_SPEEDUP, TARGET_OVERHEAD, TARGET_ABLATION_RATIO, TARGET_FLOOR_RATIO = 10.0, 1.15, 1.5, 2.0
# the paper's pre-training (XMarket: 3.4M interactions) and its sizes (Table 4); its epoch: 25 minutes on one V100
PAPER_SCALE = {"source_users": 633_334, "min_seq_len": 1, "mean_seq_len": 1.8, "max_seq_len": 30, "max_len": 64,
               "hidden_dim": 256, "heads": 4, "layers": 2, "batch_size": 256, "negatives": 255, "lr": 3e-4}
PAPER_EPOCH_MINUTES = 25.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    bc.add_common_args(p, repeats=9, warmup=1)
    bc.add_model_args(p)
    bc.add_synthetic_args(p)
    p.add_argument("--batch-size", type=int, default=64, help="sequences (ours) or samples (reference) per step "
                                                              "(default: 64; paper: 256)")
    p.add_argument("--negatives", type=int, default=255, help="sampled negatives (default: 255, as the paper)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    p.add_argument("--steps", type=int, default=4, help="optimiser steps per contender per round (default: 4)")
    bc.add_config_arg(p)
    p.add_argument("--paper-scale", action="store_true",
                   help="the paper's XMarket scale (3 sources of 633,334 users, 1.8 items a sequence: ~1.9M users, "
                        "~3.4M interactions; B = 256, 4 heads, batches of 256) with the sparse Delta guide: times "
                        "the data preparation (and its peak memory) and --steps steps of ours only, and projects "
                        "the epoch time beside the paper's 25 minutes on a V100")
    args = p.parse_args(argv)
    if args.paper_scale:
        for name, value in PAPER_SCALE.items():
            setattr(args, name, value)
    return args


def build_ours(args: argparse.Namespace, data, text: torch.Tensor, device: torch.device, guide_kind: str = "delta",
               config: PreRecConfig | None = None):
    """Model, guide (AutoDelta by default) and MapTrainer (optimisers created), and ``--steps`` training batches."""
    config = config or bc.model_config(args)
    model = PreRecModel(config, len(data.domains), data.n_fit_users, text.to(device)).to(device)
    guide = make_guide(guide_kind, model, name="bench_train_guide")
    train = TrainConfig(n_negatives=args.negatives, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                        device=args.device)
    trainer = MapTrainer(model, guide, data, train)
    trainer._setup()  # creates the guide's tables and the optimisers, as fit() does first
    generator = torch.Generator().manual_seed(args.seed)
    started, batches = time.perf_counter(), []
    for _, (domain, rows) in zip(range(args.steps), trainer.sampler.epoch(0)):
        batches.append(trainer._batch(domain, rows, generator))  # what run_epoch does before each step
    build_ms = 1e3 * (time.perf_counter() - started) / len(batches)
    return trainer, batches, build_ms


def loss_check(trainer: MapTrainer, batch) -> dict:
    """Pyro's loss and the hand-written one on the same batch and values (dropout off)."""
    model = trainer.model
    model.eval()
    try:
        with torch.no_grad():
            pyro_loss = float(trainer.elbo.differentiable_loss(trainer.scaled_model, trainer.scaled_guide, batch))
            hand = float(map_loss(model, batch, latent_values(trainer.guide, batch, model), trainer.n_obs))
    finally:
        model.train()
    hand += prior_constant(model, trainer.n_obs)
    return {"pyro_loss": pyro_loss, "hand_loss": hand, "abs_diff": abs(pyro_loss - hand),
            "rel_diff": abs(pyro_loss - hand) / max(abs(pyro_loss), 1e-12)}


def contenders(args: argparse.Namespace, device: torch.device) -> tuple[dict, dict, dict]:
    """Step functions ``{name: run one round}``, targets per round, and facts about the setup."""
    recommended = args.config == "recommended"
    data, text = bc.synthetic_sources(args, bc.popularity_mode(args))
    torch.manual_seed(args.seed)
    trainer, batches, build_ms = build_ours(args, data, text, device)
    ablation, _, _ = build_ours(args, data, text, device, config=trainer.model.config.ablation())
    cut = [bc.cut_batch(b) for b in batches]

    def loop(step, items):
        return lambda: [step(item) for item in items]

    floor = AlgebraFloor(trainer.model)
    runs = {"ours": loop(trainer.step, batches), "prerec_n": loop(ablation.step, batches),
            "ours-cut": loop(trainer.step, cut), "algebra-floor": loop(floor.step, batches)}
    targets = {name: sum(b.n_targets for b in batches) for name in runs}
    facts = {"config": args.config, "batch_build_ms": build_ms, "n_obs": trainer.n_obs, "n_users": data.n_fit_users,
             "n_items": data.n_items, "n_interactions": sum(d.n_interactions for d in data.domains),
             "target_fraction_of_window_slots": targets["ours"] / sum(b.target_mask.numel() for b in batches),
             "mean_cut_length": float(np.mean([b.items.shape[1] for b in cut]))}
    if recommended:  # hand and reference write Eq. 6's loss
        return runs, targets, facts
    hand = PlainTrainer(HandLoss(copy.deepcopy(trainer.model), trainer.n_obs), args.lr, 10.0)
    reference_model = PerSampleReference(trainer.model.config, len(data.domains), data.n_fit_users,
                                         text.to(device), trainer.n_obs)
    reference = PlainTrainer(reference_model, args.lr, 10.0)
    maker, rng = SampleMaker(data, trainer.windows, args.negatives, device), np.random.default_rng(args.seed)
    started = time.perf_counter()
    samples = [maker.make(i % len(data.domains), args.batch_size, rng) for i in range(args.steps)]
    sample_ms = 1e3 * (time.perf_counter() - started) / len(samples)
    for batch in batches[:2]:
        trainer.step(batch)  # non-zero tables before the loss check
    facts.update(loss_check=loss_check(trainer, batches[0]), sample_build_ms=sample_ms)
    runs.update(hand=loop(hand.step, batches), reference=loop(reference.step, samples))
    targets.update(hand=targets["ours"], reference=args.batch_size * args.steps)
    return runs, targets, facts


def paper_scale(args: argparse.Namespace, device: torch.device) -> dict:
    """Data preparation (reading the logs, indexing them with their popularity tables, text vectors: seconds and peak
    memory), the trainer's set-up, and ``--steps`` timed steps of ``ours`` (sparse Delta guide) after ``--warmup``;
    the epoch time projected from them. With ``--data-cache`` the synthetic logs are generated first (once, timed
    apart: a fixture, not what a user's data goes through) and preparation reads them from their parquet files."""
    generate_s = bc.ensure_cached(args)
    bc.reset_peak_memory(torch.device("cpu"))
    started = time.perf_counter()
    data, text = bc.synthetic_sources(args)
    prepare_s, prepare_mb = time.perf_counter() - started, bc.peak_memory_mb(torch.device("cpu"))
    started = time.perf_counter()
    trainer, batches, build_ms = build_ours(args, data, text, device, guide_kind="sparse-delta")
    setup_s = time.perf_counter() - started
    for batch in batches[: args.warmup]:
        trainer.step(batch)
    seconds = [bc.timed(lambda b=batch: trainer.step(b), device) for batch in batches]
    step_s = bc.median(seconds)
    targets_per_s = float(np.mean([b.n_targets for b in batches])) / (step_s + build_ms / 1e3)
    return {"benchmark": "train-paper-scale", "args": vars(args), "environment": bc.environment(device),
            "n_users": data.n_fit_users, "n_items": data.n_items, "n_obs": trainer.n_obs,
            "n_interactions": sum(d.n_interactions for d in data.domains),
            "generate_seconds": generate_s, "prepare_seconds": prepare_s, "prepare_peak_mb": prepare_mb,
            "prepare_includes_generation": not args.data_cache, "setup_seconds": setup_s,
            "step_seconds": seconds, "batch_build_ms": build_ms, "targets_per_s": targets_per_s,
            "projected_epoch_minutes": trainer.n_obs / targets_per_s / 60, "peak_mb": bc.peak_memory_mb(device),
            "paper_epoch_minutes_v100": PAPER_EPOCH_MINUTES}


def report_paper_scale(payload: dict) -> None:
    print(f"paper scale: {payload['n_users']:,} users, {payload['n_interactions']:,} interactions "
          f"({payload['n_obs']:,} training targets), {payload['n_items']:,} items")
    if payload["generate_seconds"]:
        print(f"synthetic logs generated into the cache: {payload['generate_seconds']:.1f} s (once)")
    source = "generated in memory" if payload["prepare_includes_generation"] else "read from the cache"
    print(f"data preparation ({source}, indexed, text vectors): {payload['prepare_seconds']:.1f} s, peak "
          f"{payload['prepare_peak_mb'] / 1024:.2f} GiB; trainer set-up {payload['setup_seconds']:.1f} s")
    print(f"step: {bc.median(payload['step_seconds']):.3f} s (+ {payload['batch_build_ms']:.1f} ms to build its "
          f"batch), {payload['targets_per_s']:,.0f} targets/s; peak memory {payload['peak_mb'] / 1024:.2f} GiB")
    print(f"projected epoch: {payload['projected_epoch_minutes']:.1f} min on this device "
          f"(paper: {payload['paper_epoch_minutes_v100']:.0f} min on one V100)")


def main(args: argparse.Namespace) -> dict:
    device = bc.setup(args)
    if args.paper_scale:
        payload = paper_scale(args, device)
        report_paper_scale(payload)
        if args.out:
            bc.write_json(args.out, payload)
        return payload
    runs, targets, facts = contenders(args, device)
    seconds = bc.alternate(runs, args.repeats, args.warmup, device)
    results = {}
    for name, values in seconds.items():
        mid = bc.median(values)
        results[name] = {"seconds_per_round": values, "ms_per_step": 1e3 * mid / args.steps,
                         "targets_per_step": targets[name] / args.steps, "targets_per_s": targets[name] / mid}
    build_s = facts["batch_build_ms"] / 1e3 * args.steps
    results["ours"]["targets_with_batch_build_per_s"] = targets["ours"] / (bc.median(seconds["ours"]) + build_s)

    def speedup(fast: str, slow: str) -> float:  # throughput ratio, paired by round
        return targets[fast] / targets[slow] * bc.paired_ratio(seconds[slow], seconds[fast])

    ratios = {"prerec_vs_prerec_n_step": bc.paired_ratio(seconds["ours"], seconds["prerec_n"]),
              "step_vs_algebra_floor": bc.paired_ratio(seconds["ours"], seconds["algebra-floor"]),
              "cut_vs_ours": speedup("ours-cut", "ours")}
    goals = {"prerec_vs_prerec_n_step <= 1.5": ratios["prerec_vs_prerec_n_step"] <= TARGET_ABLATION_RATIO,
             "step_vs_algebra_floor <= 2": ratios["step_vs_algebra_floor"] <= TARGET_FLOOR_RATIO}
    if "reference" in seconds:
        ratios.update(ours_vs_reference=speedup("ours", "reference"), pyro_overhead=speedup("hand", "ours"))
        goals.update({"ours_vs_reference >= 10": ratios["ours_vs_reference"] >= TARGET_SPEEDUP,
                      "pyro_overhead <= 1.15": ratios["pyro_overhead"] <= TARGET_OVERHEAD})
    payload = {"benchmark": "train", "args": vars(args), "environment": bc.environment(device), **facts,
               "results": results, "ratios": ratios, "targets_met": goals}
    report(payload)
    if args.out:
        bc.write_json(args.out, payload)
    return payload


def report(payload: dict) -> None:
    results = payload["results"]
    base = results.get("reference", results["prerec_n"])
    column = "vs reference" if "reference" in results else "vs prerec_n"
    rows = [{"contender": name, "ms/step": r["ms_per_step"], "targets/step": r["targets_per_step"],
             "targets/s": r["targets_per_s"], column: r["targets_per_s"] / base["targets_per_s"]}
            for name, r in results.items()]
    print(f"configuration: {payload['config']}")
    print(bc.format_table(rows, ["contender", "ms/step", "targets/step", "targets/s", column]))
    ratios = payload["ratios"]
    print(f"targets / window slots: {payload['target_fraction_of_window_slots']:.3f}  "
          f"(mean cut length {payload['mean_cut_length']:.1f} of {payload['args']['max_len']})")
    ours = payload["results"]["ours"]
    print(f"ours with BatchBuilder.make included ({payload['batch_build_ms']:.1f} ms/batch): "
          f"{ours['targets_with_batch_build_per_s']:.4g} targets/s")
    print(f"prerec vs prerec_n step: {ratios['prerec_vs_prerec_n_step']:.2f}x")
    print(f"step vs algebra floor: {ratios['step_vs_algebra_floor']:.2f}x")
    if "loss_check" in payload:
        check = payload["loss_check"]
        print(f"hand-written vs Pyro loss: |diff| = {check['abs_diff']:.3g} (relative {check['rel_diff']:.2g})")
        print(f"ours vs per-sample reference: {ratios['ours_vs_reference']:.1f}x")
        print(f"pyro overhead: {ratios['pyro_overhead']:.2f}x")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main(parse_args())

"""Step time and peak memory of the MAP step versus the number of users, for the AutoDelta and sparse Delta guides.

    python benchmarks/bench_scale.py                                  # 10k, 100k, 1M, 2M users (a few minutes)
    python benchmarks/bench_scale.py --users 10000,2000000 --hidden-dim 256 --device cuda

Only the ``users`` plate grows: the model is built without data (one domain, ``--items`` items with random text
vectors) and every batch is a ``PreRecBatch`` of ``--batch-size`` random user rows with random histories, so the step
does the same work at every size except what the guide and the optimisers spend on the per-user table. AutoDelta
keeps that table dense (its gradient and Adam touch every row: docs/DESIGN.md pitfall 2); the sparse Delta guide keeps
it in a sparse embedding updated by SparseAdam. The step is ``MapTrainer.step`` itself (``PlateTrainer`` only replaces
the data-bound constructor).

Each (guide, users) configuration is built afresh, warmed up with ``--warmup`` steps and timed over ``--steps``
steps (median), then freed; ``--repeats`` rounds go through all configurations, the order reversed every other
round, and the median over rounds is reported. Peak memory is the CUDA allocator's peak on a GPU, else the process
peak RSS (reset before each configuration). Prints a table and, per guide, the ratio of the step time at the largest
to that at the smallest number of users.
"""

from __future__ import annotations

import argparse
import functools
import gc
import logging
import time
from dataclasses import replace

import bench_common as bc
import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

from prerec_pyro import cli
from prerec_pyro.data.batches import PreRecBatch
from prerec_pyro.inference.guides import SparseDeltaGuide, check_guide, make_guide
from prerec_pyro.inference.map import MapTrainer, TrainConfig
from prerec_pyro.models.prerec import PreRecModel

logger = logging.getLogger("bench_scale")
TARGET_SPARSE_RATIO = 1.2


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from error
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    bc.add_common_args(p, repeats=3, warmup=2)
    bc.add_model_args(p)
    p.add_argument("--users", type=_int_list, default=[10_000, 100_000, 1_000_000, 2_000_000],
                   help="comma-separated numbers of users (default: 10000,100000,1000000,2000000)")
    p.add_argument("--guides", default="delta,sparse-delta", help="comma-separated guides among delta, "
                                                                  "sparse-delta (default: both)")
    bc.add_config_arg(p)
    p.add_argument("--items", type=int, default=1000, help="catalogue size (default: 1000)")
    p.add_argument("--text-dim", type=int, default=64, help="text vector dimension (default: 64)")
    p.add_argument("--batch-size", type=int, default=64, help="sequences (users) per step (default: 64)")
    p.add_argument("--seq-len", type=int, default=32, help="positions per sequence (default: 32)")
    p.add_argument("--negatives", type=int, default=255, help="sampled negatives (default: 255)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per configuration and round (default: 5)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (default: 1e-3)")
    args = p.parse_args(argv)
    args.guides = [g.strip() for g in args.guides.split(",") if g.strip()]
    bad = [g for g in args.guides if g not in ("delta", "sparse-delta")]
    if bad or not args.guides:
        p.error(f"--guides: expected delta and/or sparse-delta, got {args.guides}")
    if min(args.users) < args.batch_size:
        p.error(f"--users: every size must be >= --batch-size {args.batch_size}, got {args.users}")
    return args


class PlateTrainer(MapTrainer):
    """``MapTrainer`` without data: the same loss scaling, ``step`` and optimisers (dense Adam beside SparseAdam for
    the sparse guide's user table), set up from one batch."""

    def __init__(self, model: PreRecModel, guide, config: TrainConfig, n_obs: int, first_batch: PreRecBatch):
        check_guide(guide)
        self.model, self.guide, self.config, self.n_obs = model, guide, config, n_obs
        self.scaled_model = poutine.scale(model, scale=1.0 / n_obs)
        self.scaled_guide = poutine.scale(guide, scale=1.0 / n_obs)
        self.elbo = Trace_ELBO()
        guide(first_batch)  # autoguides create their tables on the first call
        sparse = guide.sparse_parameters() if isinstance(guide, SparseDeltaGuide) else []
        dense = list(model.parameters()) + [p for p in guide.parameters()
                                            if p.requires_grad and all(p is not s for s in sparse)]
        self._optimizers = [torch.optim.Adam(dense, lr=config.lr)]
        if sparse:
            self._optimizers.append(torch.optim.SparseAdam(sparse, lr=config.lr))


def random_batches(args: argparse.Namespace, n_users: int, count: int, rng: np.random.Generator,
                   device: torch.device) -> list[PreRecBatch]:
    """``count`` batches of ``--batch-size`` distinct random users with random histories (one domain, one period)."""
    rows, length, n_neg = args.batch_size, args.seq_len, args.negatives
    batches = []
    for _ in range(count):
        items = torch.as_tensor(rng.integers(0, args.items, (rows, length)), device=device)  # [R, L]
        batches.append(PreRecBatch(
            domain=0, item_offset=0, n_domain_items=args.items,
            user_index=torch.as_tensor(np.sort(rng.choice(n_users, rows, replace=False)), device=device),
            user_position=torch.arange(rows, device=device), n_sequences=n_users,  # a sequence per user
            items=items, targets=items, target_mask=torch.ones(rows, length, dtype=torch.bool, device=device),
            period_index=torch.zeros(rows, length, dtype=torch.long, device=device),
            factors_targets=torch.as_tensor(rng.random((rows, length, 4)), dtype=torch.float32, device=device),
            factors_candidates=torch.as_tensor(rng.random((1, n_neg, 4)), dtype=torch.float32, device=device),
            negatives=torch.as_tensor(rng.integers(0, args.items, n_neg), device=device)))
        factors = batches[-1].factors_candidates  # its distinct rows found once, untimed, as BatchBuilder does
        batches[-1] = replace(batches[-1], factor_rows=(factors, *batches[-1].candidate_factor_rows(),
                                                                 *batches[-1].candidate_counted()))
    return batches


def measure(args: argparse.Namespace, kind: str, n_users: int, round_: int, device: torch.device) -> dict:
    """Build one configuration, warm it up, time ``--steps`` steps; free it. Step time in ms, memory in MiB."""
    pyro.clear_param_store()
    gc.collect()
    baseline = bc.current_memory_mb(device)
    bc.reset_peak_memory(device)
    rng = np.random.default_rng([args.seed, round_, n_users])
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    config = bc.model_config(args, max_len=args.seq_len)
    text = torch.as_tensor(rng.standard_normal((args.items, args.text_dim)), dtype=torch.float32, device=device)
    model = PreRecModel(config, 1, n_users, text).to(device)
    guide = make_guide(kind, model, name="bench_scale_guide")
    batches = random_batches(args, n_users, args.warmup + args.steps + 1, rng, device)
    train = TrainConfig(batch_size=args.batch_size, n_negatives=args.negatives, lr=args.lr, device=args.device)
    trainer = PlateTrainer(model, guide, train, n_obs=n_users * args.seq_len, first_batch=batches[-1])
    setup_s = time.perf_counter() - started
    for batch in batches[: args.warmup]:
        trainer.step(batch)
    times = [bc.timed(functools.partial(trainer.step, batch), device) for batch in batches[args.warmup: -1]]
    peak = bc.peak_memory_mb(device)
    del trainer, guide, model, batches
    pyro.clear_param_store()
    gc.collect()
    return {"step_ms": 1e3 * bc.median(times), "peak_mb": peak, "baseline_mb": baseline, "setup_s": setup_s}


def main(args: argparse.Namespace) -> dict:
    device = bc.setup(args)
    memory_source = bc.reset_peak_memory(device)
    configs = [(kind, n) for n in sorted(args.users) for kind in args.guides]
    rounds: dict[tuple[str, int], list[dict]] = {c: [] for c in configs}
    for round_ in range(args.repeats):
        for kind, n_users in (configs if round_ % 2 == 0 else configs[::-1]):
            rounds[(kind, n_users)].append(measure(args, kind, n_users, round_, device))
            logger.info("round %d %s %d users: %s", round_, kind, n_users, rounds[(kind, n_users)][-1])
    rows = []
    for (kind, n_users), measured in rounds.items():
        rows.append({"guide": kind, "users": n_users,
                     "step_ms": bc.median([m["step_ms"] for m in measured]),
                     "peak_mb": max(m["peak_mb"] for m in measured),
                     "baseline_mb": bc.median([m["baseline_mb"] for m in measured]),
                     "setup_s": bc.median([m["setup_s"] for m in measured]),
                     "step_ms_per_round": [m["step_ms"] for m in measured]})
    ratios = {}
    for kind in args.guides:
        by_users = {r["users"]: r["step_ms"] for r in rows if r["guide"] == kind}
        ratios[kind] = by_users[max(by_users)] / by_users[min(by_users)]
    goals = {}
    if "sparse-delta" in ratios:
        goals[f"sparse-delta largest/smallest <= {TARGET_SPARSE_RATIO}"] = ratios["sparse-delta"] <= TARGET_SPARSE_RATIO
    payload = {"benchmark": "scale", "args": vars(args), "environment": bc.environment(device),
               "memory_measure": memory_source, "results": rows, "ratio_largest_to_smallest": ratios,
               "targets_met": goals}
    report(payload)
    if args.out:
        bc.write_json(args.out, payload)
    return payload


def report(payload: dict) -> None:
    print(bc.format_table(payload["results"], ["guide", "users", "step_ms", "peak_mb", "baseline_mb", "setup_s"]))
    print(f"memory: {payload['memory_measure']}")
    users = payload["args"]["users"]
    for kind, ratio in payload["ratio_largest_to_smallest"].items():
        print(f"{kind}: step time at {max(users):,} users / at {min(users):,} users: {ratio:.2f}x")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main(parse_args())

"""Choosing how long to pre-train by what transfers: held-out sources scored zero-shot (docs/DESIGN.md, "Selection
for transfer").

Early stopping on the sources' own validation users picks the epoch that fits the sources best; trained on, the
networks fit their sources better and transfer worse to a platform that is not among them (docs/NETWORKS.md,
"Fitting the sources against transferring"). A run with ``select_by="held_out"`` is trained in two stages, and
neither reads a target's data (the held-out domains are sources):

1. the selection stage (``<run>/selection/``, a run of its own): the sources without ``held_out``, validated after
   each epoch by scoring the held-out sources zero-shot exactly as a target is scored (``PretrainedRun.target_scorer``:
   Eq. 8 weighed by each user's history); its best epoch E* is where transfer to domains it has never seen peaked,
   with the usual patience;
2. the refit (the run itself): every source, trained for E* + 1 epochs with the same seed and schedule; ``best.pt``
   is its last epoch. The sources' validation is still recorded each epoch, as ``sources_score``.

Hold out the sources that stand for what the targets are to the rest, e.g. with sources from two platforms, the one
platform's domains (leave-one-platform-out).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from prerec_pyro.data.benchmarks import get_benchmark
from prerec_pyro.evaluate import EvalConfig, evaluate_domain, summarize
from prerec_pyro.pipeline import PreparedBenchmark

from .checkpoint import load_json
from .pretrained import PretrainedRun, probe_batch
from .runs import RunConfig

HELD_OUT = "held_out"
SELECTION_DIR = "selection"  # the selection stage's run directory, inside the run


def check_held_out(config: RunConfig) -> None:
    """A ValueError naming the value when ``held_out`` names a domain that is not a source of the benchmark, or
    every source (the selection stage must train on one)."""
    benchmark = get_benchmark(config.benchmark)
    sources = benchmark.sources
    if set(benchmark.resolve_sources(config.held_out)) != set(config.held_out):  # names, not aliases, in a config
        raise ValueError(f"held_out: {list(config.held_out)} must name sources as the benchmark does: {list(sources)}")
    if config.train.lr_decay < 1:
        raise ValueError(f"lr_decay {config.train.lr_decay} with a held-out selection: the refit could not repeat the "
                         "stage's decays on its plateaus (its epochs select nothing); use lr_decay 1 or a cosine")
    if set(sources) <= set(config.held_out):
        raise ValueError(f"held_out: {list(config.held_out)} holds out every source of {config.benchmark!r}; the "
                         "selection stage needs at least one to train on")


def stage_config(config: RunConfig) -> RunConfig:
    """The selection stage of ``config``: trained without the held-out sources, selected on them zero-shot."""
    return replace(config, selection_stage=True)


def refit_config(config: RunConfig, best_epoch: int) -> RunConfig:
    """The refit of ``config`` on every source: ``best_epoch + 1`` epochs, the stage's best."""
    assert best_epoch >= 0, best_epoch
    return replace(config, train=replace(config.train, max_epochs=best_epoch + 1))


def selection_record(stage_dir: Path) -> dict:
    """What metrics.json of a refit says of its selection, read from a finished stage's: the stage, its best epoch
    (the refit's length - 1), its epochs run and held-out scores; ValueError when it has no best epoch."""
    metrics = load_json(Path(stage_dir) / "metrics.json")
    best = int(metrics["best_epoch"])
    if best < 0:
        raise ValueError(f"{stage_dir}: the selection stage has no best epoch (its held-out score was never a "
                         "number); check the held-out sources have users with two or more interactions")
    return {"stage": SELECTION_DIR, "best_epoch": best, "epochs_run": int(metrics["epochs_run"]),
            "held_out_valid": metrics["valid"]}


def held_out_users(config: RunConfig) -> int | None:
    """Users scored per held-out source: ``valid_max_users``, as for each source of the in-domain validation, drawn
    from all its users (none is trained on); None: all."""
    return config.valid_max_users


def held_out_validation(model, guide, prepared: PreparedBenchmark, config: RunConfig):
    """``validate()`` of the selection stage: the mean r-NDCG@K% of the held-out sources scored zero-shot by the
    model as it is now (any of their users: none is trained on); ``validate.last`` keeps the per-domain
    metrics."""
    users = held_out_users(config)
    eval_config = EvalConfig(k_percent=prepared.benchmark.k_percent, split="all", n_boot=200,
                             device=config.train.device, max_users=users, seed=config.train.seed)
    probe = probe_batch(prepared.sources, config.train.device)

    def validate() -> dict:
        run = PretrainedRun.in_training(config, model, guide, probe, prepared.sources)
        per_domain = {name: summarize(evaluate_domain(run.target_scorer(prepared, name), prepared.target(name), 0,
                                                      eval_config), eval_config)
                      for name in config.held_out}
        record = {f"{name}/rndcg@k%": metrics.get("rndcg@k%", 0.0) for name, metrics in per_domain.items()}
        record["score"] = sum(record.values()) / len(record)
        validate.last = per_domain
        return record

    return validate


def refit_validation(validate, trainer):
    """``validate`` for the refit: its record kept (the sources' score as ``sources_score``), and as ``score`` the
    epoch, so every epoch is the best so far and ``best.pt`` is the last (the length the selection chose)."""

    def refit_validate() -> dict:
        record = validate()
        record["sources_score"] = record.pop("score")
        record["score"] = float(trainer.state["epoch"])
        return record

    return refit_validate

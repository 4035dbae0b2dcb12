"""Pre-training as a library call: a ``RunConfig`` in, a finished, self-contained run directory out.

    from prerec_pyro import pretrain, resume_pretraining, run_config

    config = run_config("synthetic-small", method="prerec", train={"max_epochs": 5})   # the benchmark's defaults
    run_dir = pretrain(config, runs="runs")        # runs/<benchmark>/<method>-<guide>-seed<s>-<time>/
    run_dir = resume_pretraining(run_dir, max_epochs=10)  # continue it (from last.pt), with a longer budget

A run directory holds config.json, best.pt, last.pt, history.json, metrics.json (with the convergence record) and
sources.pt (what zero-shot reads of the sources: ``inference/pretrained.py``), and a state.json saying whether it is
running, interrupted or finished. ``scripts/map_pretrain.py`` is flags -> ``run_config`` -> ``pretrain``; under
``torchrun`` pass the ``Distributed`` of the process group (rank 0 writes the run directory).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import pyro

from prerec_pyro.data.benchmarks import get_benchmark
from prerec_pyro.data.dataset import SequenceConfig
from prerec_pyro.distributed import SINGLE, Distributed
from prerec_pyro.evaluate import EvalConfig, evaluate_domain, summarize
from prerec_pyro.models.prerec import RECOMMENDED, RECOMMENDED_POPULARITY_MODE, PreRecConfig
from prerec_pyro.popularity import PopularityConfig
from prerec_pyro.training import convergence, loss_trend

from .checkpoint import load_checkpoint, save_json
from .guides import SCALE_LR, VARIATIONAL, make_guide, posterior_spread
from .map import MapTrainer, TrainConfig
from .pretrained import probe_batch, write_source_summary
from .runs import (
    RunConfig,
    build_model,
    check_writable,
    load_run_config,
    prepare_for_run,
    run_state,
    save_run_config,
    save_run_state,
)
from .scoring import MapScorer
from .selection import (
    HELD_OUT,
    SELECTION_DIR,
    check_held_out,
    held_out_validation,
    refit_config,
    refit_validation,
    selection_record,
    stage_config,
)
from .zero_shot import source_scorer

logger = logging.getLogger(__name__)


class PretrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during pre-training: the run is marked interrupted; ``str()`` says how to go on."""


def run_config(benchmark: str, method: str = "prerec", guide: str = "delta", model: dict | None = None,
               train: dict | None = None, popularity_mode: str = RECOMMENDED_POPULARITY_MODE, **run) -> RunConfig:
    """The library's default configuration (``PreRecConfig.recommended()``, the benchmark's sizes and budget from
    its TOML ``[defaults]``) with ``model`` / ``train`` changes (``PreRecConfig`` / ``TrainConfig`` fields) and
    ``RunConfig`` fields in ``run``; ``method="prerec_n"`` is the ablation of the same model."""
    spec = get_benchmark(benchmark)
    defaults, model, train = spec.defaults, dict(model or {}), dict(train or {})
    max_len = model.setdefault("max_len", 64)
    model.setdefault("hidden_dim", defaults.get("hidden_dim", 256))
    model.setdefault("n_heads", defaults.get("n_heads", 4))
    prerec = PreRecConfig(**{**RECOMMENDED, **model})
    for key, default in (("batch_size", 256), ("lr", 3e-4), ("warmup_steps", 0), ("lr_decay", 1.0),
                         ("cosine_epochs", 0), ("max_epochs", 20), ("patience", 3)):
        train.setdefault(key, defaults.get(key, default))
    train.setdefault("scale_lr", SCALE_LR if guide in VARIATIONAL else None)
    if run.get("held_out"):
        run["held_out"] = spec.resolve_sources(tuple(run["held_out"]))  # aliases as for targets
    return RunConfig(benchmark=spec.name, method=method, guide=guide,
                     model=prerec.ablation() if method == "prerec_n" else prerec, train=TrainConfig(**train),
                     sequences=SequenceConfig(max_len=max_len),
                     popularity=PopularityConfig(interval_days=spec.interval_days, mode=popularity_mode),
                     text_model=run.pop("text_model", None) or spec.text_model, **run)


def pretrain(config: RunConfig, runs: str | Path = "runs", parallel: Distributed = SINGLE) -> Path:
    """Pre-train ``config`` into a new run directory under ``runs`` and return it (finished)."""
    return _train(config, runs=Path(runs), resume=None, parallel=parallel)


def resume_pretraining(run_dir: str | Path, max_epochs: int | None = None, patience: int | None = None,
                       device: str | None = None, parallel: Distributed = SINGLE) -> Path:
    """Continue ``run_dir`` from its last checkpoint with its own configuration (``max_epochs`` / ``patience`` /
    ``device`` changed when given); a finished run is returned as it is, with a message."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir}: no such run directory: nothing to resume")
    if not (run_dir / "config.json").exists():
        raise ValueError(f"{run_dir} is not a run directory (no config.json): nothing to resume")
    config = load_run_config(run_dir)
    if config.selection_stage:  # a held-out selection's stage: the run it belongs to goes on (the refit after it)
        logger.info("%s is the selection stage of %s: resuming that run", run_dir, run_dir.parent)
        run_dir, config = run_dir.parent, load_run_config(run_dir.parent)
    check_writable(run_dir)  # one owner per run
    changes = {k: v for k, v in (("max_epochs", max_epochs), ("patience", patience), ("device", device))
               if v is not None}
    config = replace(config, train=replace(config.train, **changes))
    if run_state(run_dir) == "finished":
        if config.select_by == HELD_OUT:
            logger.warning("%s is finished: its length was chosen by its held-out selection (%s/); a run of another "
                           "length is a new run", run_dir, SELECTION_DIR)
            return run_dir
        state = load_checkpoint(run_dir / "last.pt")["state"]
        stopped_by = convergence(state, config.train)["stopped_by"]  # under the new limits
        if stopped_by != "running":
            advice = ("its cosine schedule has ended (the learning rate is 0): a longer schedule is a new run"
                      if stopped_by == "schedule" else "give a larger --epochs or --patience to train on")
            logger.warning("%s is finished (epoch %d of at most %d, %d epochs without gain at patience %d): nothing "
                           "to do; %s", run_dir, state["epoch"], config.train.last_epoch, state["bad_epochs"],
                           config.train.patience, advice)
            return run_dir
    return _train(config, runs=None, resume=run_dir, parallel=parallel)


def prepared_for(config: RunConfig, parallel: Distributed = SINGLE):
    """The benchmark as ``config`` trains on it (rank 0 fills the text-vector cache, the others read it)."""
    with parallel.main_first():
        return prepare_for_run(config)


def model_and_guide(config: RunConfig, parallel: Distributed = SINGLE):
    """What ``pretrain`` trains: the benchmark as ``config`` reads it (``prepared_for``), the model over its sources
    and the guide. (prepared, model, guide)"""
    prepared = prepared_for(config, parallel)
    model = build_model(config, prepared.sources, prepared.item_text(prepared.sources).to(config.train.device))
    return prepared, model, make_guide(config.guide, model, name="pretrain")


def _train(config: RunConfig, runs: Path | None, resume: Path | None, parallel: Distributed,
           into: Path | None = None, selection: dict | None = None) -> Path:
    """Train ``config`` into a new run directory under ``runs`` (or the directory ``into``), or on from ``resume``;
    ``selection``: this is the refit of a held-out selection (``select_then_refit``), whose record it is."""
    if config.select_by == HELD_OUT and not config.selection_stage and selection is None:
        return select_then_refit(config, runs, resume, parallel)
    pyro.set_rng_seed(config.train.seed)
    prepared, model, guide = model_and_guide(config, parallel)
    data = prepared.sources
    run_dir = parallel.broadcast(open_run_dir(config, runs, resume, prepared.benchmark.folder, into)
                                 if parallel.is_main else None)
    if config.selection_stage:
        validate = held_out_validation(model, guide, prepared, config)
    elif selection is not None:  # the refit: the sources' in-domain validation, recorded (it selects nothing)
        validate = validation(model, guide, data, prepared.benchmark.k_percent, replace(config, select_by="in_domain",
                                                                                           held_out=()))
    else:
        validate = validation(model, guide, data, prepared.benchmark.k_percent, config)
    trainer = MapTrainer(model, guide, data, config.train, validate=validate, run_dir=run_dir, parallel=parallel)
    if selection is not None:
        trainer.validate = refit_validation(validate, trainer)
    started = time.perf_counter()
    state = fit(trainer, run_dir, resume is not None)
    if parallel.is_main:
        finish(run_dir, config, trainer, state, validate, time.perf_counter() - started, selection)
    return run_dir


def select_then_refit(config: RunConfig, runs: Path | None, resume: Path | None, parallel: Distributed) -> Path:
    """A held-out selection (``inference/selection.py``): the selection stage in ``<run>/selection/`` (resumed or
    skipped when a previous call got that far), then the refit on every source for its best epoch + 1 epochs."""
    check_held_out(config)
    folder = get_benchmark(config.benchmark).folder
    if resume is None:
        run_dir = parallel.broadcast(open_run_dir(config, runs, None, folder) if parallel.is_main else None)
    else:  # its checkpoint (if the refit has begun) is checked by the refit
        run_dir = Path(resume)
    stage = run_dir / SELECTION_DIR
    if parallel.broadcast(run_state(stage) != "finished" if parallel.is_main else None):
        if parallel.is_main:
            save_run_state(run_dir, "running")  # the run's owner while its stage trains
        started = parallel.broadcast((stage / "last.pt").exists() if parallel.is_main else None)
        try:
            _train(stage_config(config), None, stage if started else None, parallel,
                   into=None if started else stage)
        except PretrainingInterrupted:
            if parallel.is_main:
                save_run_state(run_dir, "interrupted")
            raise PretrainingInterrupted(f"interrupted in the selection stage; continue it with: python "
                                         f"scripts/map_pretrain.py --resume {run_dir}") from None
    record = parallel.broadcast(selection_record(stage) if parallel.is_main else None)
    best = record["best_epoch"]
    logger.info("held-out selection: transfer to %s peaked after epoch %d; refitting on every source for %d epochs",
                list(config.held_out), best, best + 1)
    refit_started = parallel.broadcast((run_dir / "last.pt").exists() if parallel.is_main else None)
    return _train(refit_config(config, best), None, run_dir if refit_started else None, parallel, into=run_dir,
                  selection=record)


def finish(run_dir: Path, config: RunConfig, trainer: MapTrainer, state: dict, validate, seconds: float,
           selection: dict | None = None) -> None:
    """The end of a run (rank 0): metrics.json with the convergence record (and a refit's ``selection``),
    sources.pt, the state "finished"."""
    model, guide, data = trainer.model, trainer.guide, trainer.data
    validate()  # metrics of the best checkpoint, which fit() loaded last
    metrics = {"benchmark": config.benchmark, "method": config.method, "guide": config.guide,
               "best_epoch": state["best_epoch"], "epochs_run": state["epoch"], "n_obs": trainer.n_obs,
               "wall_seconds": seconds, "processes": trainer.parallel.world_size, "valid": validate.last,
               "posterior": posterior_spread(guide, model), "loss_trend": loss_trend(state["history"]),
               "convergence": convergence(state, config.train)}
    if selection is not None:  # the length was chosen, not reached: no advice to train on
        metrics["selection"] = selection
        metrics["convergence"]["stopped_by"] = HELD_OUT
    save_json(run_dir / "metrics.json", metrics)
    if metrics["convergence"]["stopped_by"] == "cap" and config.selection_stage:
        logger.warning("the held-out selection stopped at the epoch cap (%d) while transfer to %s was still within its "
                       "patience: the refit takes the best epoch so far; a larger --epochs (a new run) lets the "
                       "selection look further", config.train.max_epochs, list(config.held_out))
    elif metrics["convergence"]["stopped_by"] == "cap":
        logger.warning("stopped at the epoch cap (%d) while the validation score was still within its patience: not "
                       "converged by its own criterion; continue with --resume %s --epochs N", config.train.max_epochs,
                       run_dir)
    trend = metrics["loss_trend"]
    chosen = metrics["convergence"]["stopped_by"] in ("schedule", HELD_OUT) or config.selection_stage
    if trend and not trend["flat"] and not chosen:  # a length set by a schedule or a selection: nothing to add
        logger.warning("the training loss still moves %.2f%% an epoch (epochs %d-%d): not converged; continue with "
                       "--resume %s --epochs N", 100 * trend["relative_change_per_epoch"], *trend["epochs"], run_dir)
    write_source_summary(run_dir, model, guide, probe_batch(data, config.train.device), data)  # self-contained
    save_run_state(run_dir, "finished")
    for name, values in validate.last.items():
        logger.info("%s valid: r-NDCG@K%% %.4f  Recall@K%% %.4f  (%d samples)", name, values.get("rndcg@k%", 0),
                    values.get("recall@k%", 0), values["n_samples"])


def validation(model, guide, data, k_percent: float, config: RunConfig):
    """``validate()``: the mean r-NDCG@K% over the sources' validation users (at most ``valid_max_users`` each),
    scored with the fitted latents (``select_by="in_domain"``) or by Eq. 8 (``"intervened"``); ``validate.last``
    keeps the per-domain metrics."""
    eval_config = EvalConfig(k_percent=k_percent, split="valid", n_boot=200, device=config.train.device,
                             max_users=config.valid_max_users, seed=config.train.seed)
    probe = probe_batch(data, config.train.device)

    def validate() -> dict:
        in_domain = config.select_by == "in_domain"
        scorer = MapScorer(model, guide) if in_domain else source_scorer(model, guide, probe)
        per_domain = {d.name: summarize(evaluate_domain(scorer, data, k, eval_config), eval_config)
                      for k, d in enumerate(data.domains)}
        record = {f"{name}/rndcg@k%": m.get("rndcg@k%", 0.0) for name, m in per_domain.items()}
        record["valid_recall@k%"] = sum(m.get("recall@k%", 0.0) for m in per_domain.values()) / len(per_domain)
        record["score"] = sum(record[f"{n}/rndcg@k%"] for n in per_domain) / len(per_domain)
        validate.last = per_domain
        return record

    return validate


def fit(trainer: MapTrainer, run_dir: Path, resume: bool) -> dict:
    """``trainer.fit`` with the run's state recorded (by rank 0, the run's owner while it runs); Ctrl-C marks it
    interrupted and raises ``PretrainingInterrupted`` saying how to go on; a file that cannot be written (a full
    disk, a read-only folder) marks it failed and raises a ValueError naming the file."""
    main_rank = trainer.parallel.is_main
    if main_rank:
        save_run_state(run_dir, "running")
    try:
        return trainer.fit(resume=resume)
    except OSError as error:
        where = error.filename or run_dir
        reason = f"{where}: {error.strerror or error}"
        try:
            save_run_state(run_dir, "failed", reason)
        except OSError:  # the state cannot be written either: the message below says what to do
            pass
        raise ValueError(f"{reason}; the run stopped (marked failed): make room or make the folder writable, then "
                         f"continue it with python scripts/map_pretrain.py --resume {run_dir}") from None
    except KeyboardInterrupt:
        if not main_rank:
            raise PretrainingInterrupted("interrupted") from None
        save_run_state(run_dir, "interrupted")
        if (run_dir / "last.pt").exists():
            how = f"continue it with: python scripts/map_pretrain.py --resume {run_dir}"
        else:
            how = "no epoch had finished, so there is nothing to resume: start it again"
        raise PretrainingInterrupted(f"interrupted; {how}") from None


def claim_run_dir(path: Path) -> Path:
    """Create and return ``path``, or ``path-2``, ``path-3``, ... when another run (started in the same second, in
    this process or another) holds it. ``mkdir`` is atomic, so two concurrent runs never share a directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    candidate, n = path, 1
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            n += 1
            candidate = path.with_name(f"{path.name}-{n}")


def open_run_dir(config: RunConfig, runs: Path | None, resume: Path | None, folder: str,
                 into: Path | None = None) -> Path:
    """The run directory: a new one under ``runs/<folder>`` (or the given directory ``into``, created if missing)
    with the run's config.json, or the resumed one, its checkpoint checked first."""
    if resume is None and into is not None:
        run_dir = Path(into)
        run_dir.mkdir(parents=True, exist_ok=True)
    elif resume is None:
        run_dir = claim_run_dir(Path(runs) / folder / config.run_name())
    else:
        run_dir = resume
        load_checkpoint(run_dir / "last.pt")  # a missing or damaged checkpoint fails before anything is rewritten
    save_run_config(run_dir, config)
    return run_dir


__all__ = ["PretrainingInterrupted", "RunConfig", "pretrain", "resume_pretraining", "run_config"]

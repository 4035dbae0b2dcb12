"""MAP pre-training of PreRec (or the PreRec_n ablation) on a benchmark's source domains.

    python scripts/map_pretrain.py                                   # synthetic benchmark, a few minutes on a CPU
    python scripts/map_pretrain.py --benchmark movielens-ages --data-dir ../shared/data
    python scripts/map_pretrain.py --benchmark examples/own_data/benchmark.toml   # your own data
    python scripts/map_pretrain.py --method prerec_n               # the ablation, same everything else
    python scripts/map_pretrain.py --resume runs/synthetic/prerec-delta-seed0-...   # continue an interrupted run
    torchrun --nproc_per_node 2 scripts/map_pretrain.py --guide sparse-delta ...   # data parallel over 2 processes

Writes a run directory (config.json, best.pt, last.pt, history.json, metrics.json) under --out/<benchmark>/ (for a
.toml benchmark, --out/<its name>-<hash of its path>/). Under torchrun every process trains its users' share of each
batch (gloo on CPUs, NCCL on GPUs, one GPU per process) and rank 0 writes the run directory.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import pyro
import torch

from prerec_pyro import cli
from prerec_pyro.cli import run
from prerec_pyro.data.batches import BatchBuilder
from prerec_pyro.data.benchmarks import BENCHMARK_HELP, get_benchmark
from prerec_pyro.data.dataset import SequenceConfig
from prerec_pyro.distributed import Distributed
from prerec_pyro.evaluate import EvalConfig, evaluate_domain, summarize
from prerec_pyro.inference.checkpoint import load_checkpoint, save_json
from prerec_pyro.inference.guides import GUIDES, SCALE_LR, VARIATIONAL, make_guide, posterior_spread
from prerec_pyro.inference.map import ELBOS, LIKELIHOODS, MapTrainer, TrainConfig, training_windows
from prerec_pyro.inference.pretrained import probe_batch, write_source_summary
from prerec_pyro.inference.runs import (
    METHODS,
    SELECTIONS,
    RunConfig,
    build_model,
    load_run_config,
    save_run_config,
    save_run_state,
)
from prerec_pyro.inference.scoring import MapScorer
from prerec_pyro.inference.zero_shot import source_scorer
from prerec_pyro.models.prerec import (
    PARAMETRISATIONS,
    PRIOR_UNITS,
    RECOMMENDED,
    RECOMMENDED_POPULARITY_MODE,
    TEXT_CHANNELS,
    TRANSFORMER_DTYPES,
    PreRecConfig,
)
from prerec_pyro.pipeline import prepare_benchmark
from prerec_pyro.popularity import MODES, PopularityConfig
from prerec_pyro.text import TextEncoderConfig
from prerec_pyro.training import convergence, loss_trend

logger = logging.getLogger("map_pretrain")


RESUME_FLAGS = ("resume", "epochs", "patience", "device")  # what --resume may change


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--benchmark", default="synthetic", help=BENCHMARK_HELP)
    p.add_argument("--data-dir", default=None, help="data root (default: $PREREC_DATA_DIR); unused by synthetic")
    p.add_argument("--method", "--ablation", dest="method", default="prerec", choices=METHODS,
                   help="prerec (default) or prerec_n: without D, popularity and offsets (--ablation: the old name)")
    p.add_argument("--guide", default="delta", choices=GUIDES,
                   help="delta = MAP (default), normal (mean-field posterior), structured (low-rank over D, "
                        "mean-field elsewhere), sparse-delta")
    p.add_argument("--elbo", default="trace", choices=ELBOS,
                   help="trace (Trace_ELBO) or meanfield (TraceMeanField_ELBO: closed-form KLs, for --guide normal)")
    p.add_argument("--scale-lr", type=float, default=None,
                   help=f"learning rate of a variational guide's scales (default: {SCALE_LR} for normal and "
                        "structured, whose scales do not move at the networks' rate)")
    p.add_argument("--likelihood", default="sampled", choices=LIKELIHOODS,
                   help="sampled softmax with --negatives per batch, or the exact full softmax")
    p.add_argument("--negatives", type=int, default=255, help="sampled negatives (paper: 255)")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs (default: the benchmark's)")
    p.add_argument("--patience", type=int, default=None, help="epochs without validation gain before stopping")
    p.add_argument("--max-steps-per-epoch", type=int, default=None, help="cap on steps per epoch")
    p.add_argument("--min-steps-per-epoch", type=int, default=None,
                   help="steps an epoch (a validation period) takes at least: on small data it goes on through "
                        "reshuffled windows, so the patience counts comparable amounts of training")
    p.add_argument("--batch-size", type=int, default=None, help="sequences per batch (paper: 256)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (paper: 3e-4; default: benchmark's)")
    p.add_argument("--hidden-dim", type=int, default=None, help="embedding size B (paper: 256)")
    p.add_argument("--heads", type=int, default=None, help="attention heads")
    p.add_argument("--max-len", type=int, default=64, help="history length (items)")
    p.add_argument("--transformer-dtype", default="float32", choices=TRANSFORMER_DTYPES,
                   help="bfloat16 runs the Transformer layers under autocast (for GPUs; default: float32)")
    for name, default in (("d", 0.3), ("v", 100.0), ("z", 100.0), ("u", 1e4)):
        p.add_argument(f"--lambda-{name}", type=float, default=default, help=f"prior precision λ_{name}")
    p.add_argument("--lambda-v-shared", type=float, default=100.0,
                   help="prior precision λ_vs of the shared item offsets, in total units (with --shared-item-offsets)")
    p.add_argument("--shared-item-offsets", action=argparse.BooleanOptionalAction,
                   default=RECOMMENDED["shared_item_offsets"],
                   help="split eps_v into eps_v_shared (per distinct item id, kept zero-shot) and a domain part")
    p.add_argument("--popularity-mode", default=RECOMMENDED_POPULARITY_MODE, choices=MODES,
                   help="popularity factors: sliding (default; the official code: a window ending the day before, "
                        "power means over the items with a count) or interval (the paper's Appendix C: counts of the "
                        "previous interval, power means over the whole catalogue)")
    p.add_argument("--last-item-skip", action=argparse.BooleanOptionalAction, default=RECOMMENDED["last_item_skip"],
                   help="add the last history item's text embedding to the user state (n = f_seq(D, H) + m_last)")
    p.add_argument("--text-channel", default=RECOMMENDED["text_channel"], choices=TEXT_CHANNELS,
                   help="give U and V a channel of the frozen normalised text vectors: last adds τ·cos(X_last, X_j) "
                        "with a learned temperature τ (what the text encoder alone knows, on any platform); "
                        "last+mean also the similarity to the history's mean text vector; off: Eq. 6")
    p.add_argument("--repeat-term", action=argparse.BooleanOptionalAction, default=RECOMMENDED["repeat_term"],
                   help="a learned weight w_r on the logit of items already in the history (how often people take "
                        "an item again)")
    p.add_argument("--text-temperature", type=float, default=5.0,
                   help="initial value of the learned temperatures τ of --text-channel")
    p.add_argument("--prior-units", default=RECOMMENDED["prior_units"], choices=PRIOR_UNITS,
                   help="per_observation (default): every precision is λ·N_obs, the reading the paper's λ values were "
                        "tuned in; total: λ against the summed likelihood, as Eq. 7 reads; offsets_per_observation: "
                        "the offsets' λ per observation, λ_d in total units (docs/DESIGN.md)")
    p.add_argument("--parametrisation", default="auto", choices=PARAMETRISATIONS,
                   help="latent sites as SVI fits them (auto: non-centred under per-observation priors)")
    p.add_argument("--text-model", default=None, help="sentence-transformers name or path (default: benchmark's)")
    p.add_argument("--valid-max-users", type=int, default=500, help="validation users per source domain")
    p.add_argument("--select-by", default="in_domain", choices=SELECTIONS,
                   help="early stopping and best.pt on the sources' validation users scored with the fitted latents "
                        "(in_domain, the paper's) or by the zero-shot intervention of Eq. 8 (intervened: the score "
                        "that matters for a new domain, still without any target data)")
    p.add_argument("--cold-items", type=float, default=0.0,
                   help="fraction of the targets' item ids removed from every source (cold-item protocol)")
    p.add_argument("--cold-seed", type=int, default=0, help="seed of the --cold-items draw")
    p.add_argument("--device", type=cli.device, default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cpu or cuda (default: cuda when present)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--runs", "--out", dest="runs", default="runs",
                   help="root of run directories (--out: the old name)")
    p.add_argument("--resume", default=None,
                   help="a run directory to continue from its last checkpoint (--epochs/--patience change its limits)")
    p.add_argument("--print-shapes", action="store_true", help="print the model and guide trace shapes and exit")
    args = p.parse_args(argv)
    if args.resume:
        changed = [name for name, value in vars(args).items()
                   if name not in RESUME_FLAGS and value != p.get_default(name)]
        if changed:
            p.error(f"--resume continues a run with its own configuration (config.json); it takes only --epochs, "
                    f"--patience and --device, but also got {', '.join('--' + c.replace('_', '-') for c in changed)}")
    for flag in ("epochs", "patience", "max_steps_per_epoch", "min_steps_per_epoch", "batch_size", "hidden_dim",
                 "heads", "negatives", "max_len", "valid_max_users"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1 (or left out for the default), got {value}")
    for flag in ("lr", "scale_lr"):
        value = getattr(args, flag)
        if value is not None and not value > 0:
            p.error(f"--{flag.replace('_', '-')} must be > 0, got {value}")
    return args


def given(value, default):
    """A flag's value, or ``default`` when it was not given (``None``; 0 is a value, refused where senseless)."""
    return default if value is None else value


def run_config_from_args(args: argparse.Namespace) -> RunConfig:
    benchmark = get_benchmark(args.benchmark)
    defaults = benchmark.defaults
    model = PreRecConfig(hidden_dim=given(args.hidden_dim, defaults.get("hidden_dim", 256)),
                         n_heads=given(args.heads, defaults.get("n_heads", 4)), max_len=args.max_len,
                         lambda_d=args.lambda_d, lambda_v=args.lambda_v, lambda_z=args.lambda_z,
                         lambda_u=args.lambda_u, transformer_dtype=args.transformer_dtype,
                         prior_units=args.prior_units, parametrisation=args.parametrisation,
                         shared_item_offsets=args.shared_item_offsets, lambda_v_shared=args.lambda_v_shared,
                         last_item_skip=args.last_item_skip, text_channel=args.text_channel,
                         repeat_term=args.repeat_term,
                         text_temperature=args.text_temperature)
    if args.method == "prerec_n":
        model = model.ablation()
    train = TrainConfig(likelihood=args.likelihood, n_negatives=args.negatives,
                        batch_size=given(args.batch_size, defaults.get("batch_size", 256)),
                        lr=given(args.lr, defaults.get("lr", 3e-4)),
                        max_epochs=given(args.epochs, defaults.get("max_epochs", 20)),
                        patience=given(args.patience, defaults.get("patience", 3)),
                        max_steps_per_epoch=args.max_steps_per_epoch, min_steps_per_epoch=args.min_steps_per_epoch,
                        seed=args.seed, device=args.device,
                        elbo=args.elbo, scale_lr=given(args.scale_lr, SCALE_LR if args.guide in VARIATIONAL else None))
    return RunConfig(benchmark=benchmark.name, method=args.method, guide=args.guide, model=model, train=train,
                     sequences=SequenceConfig(max_len=args.max_len),
                     popularity=PopularityConfig(interval_days=benchmark.interval_days, mode=args.popularity_mode),
                     text_model=args.text_model or benchmark.text_model, data_dir=args.data_dir,
                     valid_max_users=args.valid_max_users, cold_items=args.cold_items, cold_seed=args.cold_seed,
                     select_by=args.select_by)


def validation(model, guide, data, k_percent: float, config: RunConfig):
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


def print_shapes(model, guide, builder, data) -> None:
    windows = training_windows(data)[0]
    batch = builder.make(0, windows.select(list(range(min(4, len(windows))))))
    guide_trace = pyro.poutine.trace(guide).get_trace(batch)
    model_trace = pyro.poutine.trace(pyro.poutine.replay(model, trace=guide_trace)).get_trace(batch)
    print(model_trace.format_shapes())


def resumed_config(args: argparse.Namespace) -> RunConfig:
    """A run's own configuration; ``--epochs`` / ``--patience`` given with ``--resume`` extend or shorten it."""
    config = load_run_config(Path(args.resume))
    changes = {k: v for k, v in (("max_epochs", args.epochs), ("patience", args.patience)) if v is not None}
    changes["device"] = args.device
    return replace(config, train=replace(config.train, **changes))


def fit(trainer: MapTrainer, run_dir: Path, resume: bool) -> dict:
    """``trainer.fit`` with the run's state recorded (by rank 0); Ctrl-C marks it interrupted and says how to go on."""
    main_rank = trainer.parallel.is_main
    if main_rank:
        save_run_state(run_dir, "running")
    try:
        return trainer.fit(resume=resume)
    except KeyboardInterrupt:
        if not main_rank:
            sys.exit(130)
        save_run_state(run_dir, "interrupted")
        if (run_dir / "last.pt").exists():
            how = f"continue it with: python scripts/map_pretrain.py --resume {run_dir}"
        else:
            how = "no epoch had finished, so there is nothing to resume: start it again"
        print(f"map_pretrain.py: interrupted; {how}", file=sys.stderr)
        sys.exit(130)


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


def main(args: argparse.Namespace) -> Path:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    parallel, device = Distributed.from_env(args.device)
    if not parallel.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    try:
        return pretrain(args, parallel, device)
    finally:
        parallel.close()


def pretrain(args: argparse.Namespace, parallel: Distributed, device: str) -> Path:
    """The run of ``main`` on this process (``device``: this rank's)."""
    config = resumed_config(args) if args.resume else run_config_from_args(args)
    config = replace(config, train=replace(config.train, device=device))
    pyro.set_rng_seed(config.train.seed)
    with parallel.main_first():  # rank 0 fills the text-vector cache, the others read it
        prepared = prepare_benchmark(config.benchmark, config.data_dir, config.sequences, config.popularity,
                                     TextEncoderConfig(model=config.text_model), cold_items=config.cold_items,
                                     cold_seed=config.cold_seed)
    data = prepared.sources
    model = build_model(config, data, prepared.item_text(data).to(config.train.device))
    guide = make_guide(config.guide, model, name="pretrain")
    trainer_builder = BatchBuilder(data, n_negatives=None, device=config.train.device)
    if args.print_shapes:
        print_shapes(model, guide, trainer_builder, data)
        return Path(".")
    run_dir = parallel.broadcast(open_run_dir(args, config, prepared) if parallel.is_main else None)
    validate = validation(model, guide, data, prepared.benchmark.k_percent, config)
    trainer = MapTrainer(model, guide, data, config.train, validate=validate, run_dir=run_dir, parallel=parallel)
    started = time.perf_counter()
    state = fit(trainer, run_dir, bool(args.resume))
    if not parallel.is_main:
        return run_dir
    validate()  # metrics of the best checkpoint, which fit() loaded last
    metrics = {"benchmark": config.benchmark, "method": config.method, "guide": config.guide,
               "best_epoch": state["best_epoch"], "epochs_run": state["epoch"], "n_obs": trainer.n_obs,
               "wall_seconds": time.perf_counter() - started, "processes": parallel.world_size,
               "valid": validate.last, "posterior": posterior_spread(guide, model),
               "loss_trend": loss_trend(state["history"]), "convergence": convergence(state, config.train)}
    save_json(run_dir / "metrics.json", metrics)
    if metrics["convergence"]["stopped_by"] == "cap":
        logger.warning("stopped at the epoch cap (%d) while the validation score was still within its patience: not "
                       "converged by its own criterion; continue with --resume %s --epochs N", config.train.max_epochs,
                       run_dir)
    trend = metrics["loss_trend"]
    if trend and not trend["flat"]:
        logger.warning("the training loss still moves %.2f%% an epoch (epochs %d-%d): not converged; continue with "
                       "--resume %s --epochs N", 100 * trend["relative_change_per_epoch"], *trend["epochs"], run_dir)
    write_source_summary(run_dir, model, guide, probe_batch(data, config.train.device), data)  # self-contained
    save_run_state(run_dir, "finished")
    for name, values in validate.last.items():
        logger.info("%s valid: r-NDCG@K%% %.4f  Recall@K%% %.4f  (%d samples)", name, values.get("rndcg@k%", 0),
                    values.get("recall@k%", 0), values["n_samples"])
    print(f"run directory: {run_dir}")
    return run_dir


def open_run_dir(args: argparse.Namespace, config: RunConfig, prepared) -> Path:
    """The run directory: a new one with the run's config.json, or the resumed one, its checkpoint checked first."""
    folder = Path(args.runs) / prepared.benchmark.folder
    run_dir = Path(args.resume) if args.resume else claim_run_dir(folder / config.run_name())
    if args.resume:
        load_checkpoint(run_dir / "last.pt")  # a missing or damaged checkpoint fails before anything is rewritten
    save_run_config(run_dir, config)
    return run_dir


if __name__ == "__main__":
    run(main, parse_args, __file__)


"""The pre-training flags, defined once: ``scripts/map_pretrain.py`` parses them, and so do the scripts that pass
flags on to a pre-training (``ablations.py`` and ``reproduce.py``'s ``--pretrain-args``), so no script imports
another. ``run_config_from_args`` turns them into a ``RunConfig`` (``inference.pretraining.run_config``: the
library's defaults and the benchmark's ``[defaults]`` where a flag is left out)."""

from __future__ import annotations

import argparse

import torch

from prerec_pyro import cli
from prerec_pyro.data.benchmarks import BENCHMARK_HELP
from prerec_pyro.inference.guides import GUIDES, SCALE_LR
from prerec_pyro.inference.map import ELBOS, LIKELIHOODS
from prerec_pyro.inference.pretraining import run_config
from prerec_pyro.inference.runs import METHODS, SELECTIONS, RunConfig
from prerec_pyro.models.prerec import (
    PARAMETRISATIONS,
    PRIOR_UNITS,
    RECOMMENDED,
    RECOMMENDED_POPULARITY_MODE,
    TEXT_CHANNELS,
    TEXT_HEADS,
    TRANSFORMER_DTYPES,
)
from prerec_pyro.popularity import MODES
from prerec_pyro.text import TEXT_CENTERINGS

RESUME_FLAGS = ("resume", "epochs", "patience", "device")  # what --resume may change


def parse_run_args(argv=None, description: str | None = None) -> argparse.Namespace:
    """The pre-training flags (scripts/map_pretrain.py's; ``--pretrain-args`` of ablations.py and reproduce.py),
    defaults shown in ``--help``, in groups, with their checks."""
    p = argparse.ArgumentParser(description=description, formatter_class=cli.HelpFormatter)
    _data_flags(p.add_argument_group("data"))
    _inference_flags(p.add_argument_group("inference"))
    _training_flags(p.add_argument_group("training"))
    _model_flags(p.add_argument_group("model"))
    _run_flags(p.add_argument_group("run"))
    args = p.parse_args(argv)
    _check(p, args)
    return args


def _data_flags(group) -> None:
    """The benchmark, its text vectors and the cold-item protocol."""
    group.add_argument("--benchmark", default="synthetic", help=BENCHMARK_HELP)
    group.add_argument("--data-dir", default=None, help="data root (default: $PREREC_DATA_DIR); unused by synthetic")
    group.add_argument("--text-model", default=None, help="sentence-transformers name or path (default: benchmark's)")
    group.add_argument("--text-centering", default="none", choices=TEXT_CENTERINGS,
                       help="domain: subtract each domain's mean text vector from its items'; whiten: also whiten them "
                            "by the domain's own covariance (every catalogue the run and its baselines see, the rules' "
                            "included; docs/DESIGN.md, \"Text centred per domain\")")
    group.add_argument("--cold-items", type=float, default=0.0,
                       help="fraction of the targets' item ids removed from every source (cold-item protocol)")
    group.add_argument("--cold-seed", type=int, default=0, help="seed of the --cold-items draw")


def _inference_flags(group) -> None:
    """The method, the guide, the ELBO and the likelihood."""
    group.add_argument("--method", "--ablation", dest="method", default="prerec", choices=METHODS,
                       help="prerec (default) or prerec_n: without D, popularity and offsets (--ablation: the old "
                            "name)")
    group.add_argument("--guide", default="delta", choices=GUIDES,
                       help="delta = MAP (default), normal (mean-field posterior), structured (low-rank over D, "
                            "mean-field elsewhere), sparse-delta")
    group.add_argument("--elbo", default="trace", choices=ELBOS,
                       help="trace (Trace_ELBO) or meanfield (TraceMeanField_ELBO: closed-form KLs, for --guide "
                            "normal)")
    group.add_argument("--scale-lr", type=float, default=None,
                       help=f"learning rate of a variational guide's scales (default: {SCALE_LR} for normal and "
                            "structured, whose scales do not move at the networks' rate)")
    group.add_argument("--likelihood", default="sampled", choices=LIKELIHOODS,
                       help="sampled softmax with --negatives per batch, or the exact full softmax")
    group.add_argument("--negatives", type=int, default=255, help="sampled negatives (paper: 255)")


def _training_flags(group) -> None:
    """The optimiser, the epochs and the selection."""
    group.add_argument("--max-epochs", "--epochs", dest="epochs", type=int, default=None,
                       help="maximum epochs (default: the benchmark's max_epochs)")
    group.add_argument("--patience", type=int, default=None, help="epochs without validation gain before stopping")
    group.add_argument("--max-steps-per-epoch", type=int, default=None, help="cap on steps per epoch")
    group.add_argument("--min-steps-per-epoch", type=int, default=None,
                       help="steps an epoch (a validation period) takes at least: on small data it goes on through "
                            "reshuffled windows, so the patience counts comparable amounts of training")
    group.add_argument("--batch-size", type=int, default=None, help="sequences per batch (paper: 256)")
    group.add_argument("--lr", type=float, default=None, help="Adam learning rate (paper: 3e-4; default: benchmark's)")
    group.add_argument("--warmup-steps", type=int, default=None,
                       help="steps over which the learning rate rises linearly to --lr (default: the benchmark's "
                            "warmup_steps, else 0)")
    group.add_argument("--lr-decay", type=float, default=None,
                       help="factor on the learning rate after each epoch without a better validation score, in (0, 1] "
                            "(default: the benchmark's lr_decay, else 1: constant)")
    group.add_argument("--cosine-epochs", type=int, default=None,
                       help="the learning rate falls by a half cosine from --lr to 0 over this many epochs, where "
                            "training ends (default: the benchmark's cosine_epochs, else 0: off)")
    group.add_argument("--valid-max-users", type=int, default=500, help="validation users per source domain")
    group.add_argument("--select-by", default="in_domain", choices=SELECTIONS,
                       help="early stopping and best.pt on the sources' validation users scored with the fitted "
                            "latents (in_domain, the paper's) or by the zero-shot intervention of Eq. 8 (intervened: "
                            "the score that matters for a new domain, still without any target data), or "
                            "held_out: trained first without the --held-out sources, the length that transferred best "
                            "to them (scored zero-shot) then trained on every source (docs/DESIGN.md, \"Selection "
                            "for transfer\")")
    group.add_argument("--held-out", nargs="+", default=None, metavar="SOURCE",
                       help="with --select-by held_out: the source domains the selection stage leaves out and scores "
                            "zero-shot, e.g. the sources of one platform (names or aliases: united_kingdom)")


def _model_flags(group) -> None:
    """The model's sizes, priors and terms (docs/DESIGN.md)."""
    group.add_argument("--hidden-dim", type=int, default=None, help="embedding size B (paper: 256)")
    group.add_argument("--n-heads", "--heads", dest="heads", type=int, default=None,
                       help="attention heads (default: the benchmark's n_heads)")
    group.add_argument("--max-len", type=int, default=64, help="history length (items)")
    group.add_argument("--transformer-dtype", default="float32", choices=TRANSFORMER_DTYPES,
                       help="bfloat16 runs the Transformer layers under autocast (for GPUs; default: float32)")
    for name, default in (("d", 0.3), ("v", 100.0), ("z", 100.0), ("u", 1e4)):
        group.add_argument(f"--lambda-{name}", type=float, default=default, help=f"prior precision λ_{name}")
    group.add_argument("--lambda-v-shared", type=float, default=100.0,
                       help="prior precision λ_vs of the shared item offsets, in total units (with "
                            "--shared-item-offsets)")
    group.add_argument("--shared-item-offsets", action=argparse.BooleanOptionalAction,
                       default=RECOMMENDED["shared_item_offsets"],
                       help="split eps_v into eps_v_shared (per distinct item id, kept zero-shot) and a domain part")
    group.add_argument("--popularity-mode", default=RECOMMENDED_POPULARITY_MODE, choices=MODES,
                       help="popularity factors: sliding (default; the official code: a window ending the day before, "
                            "power means over the items with a count) or interval (the paper's Appendix C: counts of "
                            "the previous interval, power means over the whole catalogue)")
    group.add_argument("--last-item-skip", action=argparse.BooleanOptionalAction, default=RECOMMENDED["last_item_skip"],
                       help="add the last history item's text embedding to the user state (n = f_seq(D, H) + m_last)")
    group.add_argument("--text-channel", default=RECOMMENDED["text_channel"], choices=TEXT_CHANNELS,
                       help="give U and V a channel of the frozen normalised text vectors: last adds τ·cos(X_last, "
                            "X_j) with a learned temperature τ (what the text encoder alone knows, on any platform); "
                            "last+mean also the similarity to the history's mean text vector; off: Eq. 6")
    group.add_argument("--repeat-term", action=argparse.BooleanOptionalAction, default=RECOMMENDED["repeat_term"],
                       help="a learned weight w_r on the logit of items already in the history (how often people take "
                            "an item again)")
    group.add_argument("--text-dropout", type=float, default=0.0,
                       help="dropout on the text vectors before the text head f_e while training (0: none)")
    group.add_argument("--text-head", default="linear", choices=TEXT_HEADS,
                       help="f_e: linear (W·X + b) or residual (a fixed length-keeping random projection of X plus "
                            "W·X + b learned from 0)")
    group.add_argument("--text-temperature", type=float, default=5.0,
                       help="initial value of the learned temperatures τ of --text-channel")
    group.add_argument("--prior-units", default=RECOMMENDED["prior_units"], choices=PRIOR_UNITS,
                       help="per_observation (default): every precision is λ·N_obs, the reading the paper's λ values "
                            "were tuned in; total: λ against the summed likelihood, as Eq. 7 reads; "
                            "offsets_per_observation: the offsets' λ per observation, λ_d in total units "
                            "(docs/DESIGN.md)")
    group.add_argument("--parametrisation", default="auto", choices=PARAMETRISATIONS,
                       help="latent sites as SVI fits them (auto: non-centred under per-observation priors)")


def _run_flags(group) -> None:
    """Where and how the run goes: device, seed, run root, resume."""
    group.add_argument("--device", type=cli.device, default="cuda" if torch.cuda.is_available() else "cpu",
                       help="cpu or cuda (default: cuda when present)")
    group.add_argument("--seed", type=int, default=0, help="random seed")
    group.add_argument("--runs", default="runs", help="root of run directories")
    group.add_argument("--resume", default=None,
                       help="a run directory to continue from its last checkpoint (--epochs/--patience change its "
                            "limits)")
    group.add_argument("--print-shapes", action="store_true", help="print the model and guide trace shapes and exit")


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Each flag's range, and --resume with no other configuration flag."""
    if args.resume:
        changed = [name for name, value in vars(args).items()
                   if name not in RESUME_FLAGS and value != parser.get_default(name)]
        if changed:
            given = ", ".join("--" + name.replace("_", "-") for name in changed)
            parser.error(f"--resume continues a run with its own configuration (config.json); it takes only --epochs, "
                         f"--patience and --device, but also got {given}")
    for flag in ("epochs", "patience", "max_steps_per_epoch", "min_steps_per_epoch", "batch_size", "hidden_dim",
                 "heads", "negatives", "max_len", "valid_max_users"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1 (or left out for the default), got {value}")
    for flag in ("lr", "scale_lr"):
        value = getattr(args, flag)
        if value is not None and not value > 0:
            parser.error(f"--{flag.replace('_', '-')} must be > 0, got {value}")
    if args.warmup_steps is not None and args.warmup_steps < 0:
        parser.error(f"--warmup-steps must be >= 0, got {args.warmup_steps}")
    if args.lr_decay is not None and not 0 < args.lr_decay <= 1:
        parser.error(f"--lr-decay must be in (0, 1] (1: constant), got {args.lr_decay}")
    if (args.select_by == "held_out") != bool(args.held_out):
        parser.error(f"--select-by held_out and --held-out SOURCE ... go together; got --select-by {args.select_by}"
                     f" and --held-out {args.held_out}")
    if not 0.0 <= args.text_dropout < 1.0:
        parser.error(f"--text-dropout must be in [0, 1), got {args.text_dropout}")
    if args.cosine_epochs is not None and args.cosine_epochs < 0:
        parser.error(f"--cosine-epochs must be >= 0 (0: off), got {args.cosine_epochs}")


def run_config_from_args(args: argparse.Namespace) -> RunConfig:
    """The flags as a ``RunConfig`` (``run_config``: the benchmark's defaults where a flag was left out)."""
    model = {"max_len": args.max_len, "lambda_d": args.lambda_d, "lambda_v": args.lambda_v, "lambda_z": args.lambda_z,
             "lambda_u": args.lambda_u, "transformer_dtype": args.transformer_dtype, "prior_units": args.prior_units,
             "parametrisation": args.parametrisation, "shared_item_offsets": args.shared_item_offsets,
             "lambda_v_shared": args.lambda_v_shared, "last_item_skip": args.last_item_skip,
             "text_channel": args.text_channel, "repeat_term": args.repeat_term,
             "text_temperature": args.text_temperature, "text_dropout": args.text_dropout,
             "text_head": args.text_head}
    model.update({k: v for k, v in (("hidden_dim", args.hidden_dim), ("n_heads", args.heads)) if v is not None})
    train = {"likelihood": args.likelihood, "n_negatives": args.negatives, "max_steps_per_epoch":
             args.max_steps_per_epoch, "min_steps_per_epoch": args.min_steps_per_epoch, "seed": args.seed,
             "device": args.device, "elbo": args.elbo}
    train.update({k: v for k, v in (("batch_size", args.batch_size), ("lr", args.lr), ("max_epochs", args.epochs),
                                    ("patience", args.patience), ("scale_lr", args.scale_lr),
                                    ("warmup_steps", args.warmup_steps), ("lr_decay", args.lr_decay),
                                    ("cosine_epochs", args.cosine_epochs))
                  if v is not None})
    return run_config(args.benchmark, args.method, args.guide, model=model, train=train,
                      popularity_mode=args.popularity_mode, text_model=args.text_model, data_dir=args.data_dir,
                      valid_max_users=args.valid_max_users, cold_items=args.cold_items, cold_seed=args.cold_seed,
                      select_by=args.select_by, held_out=tuple(args.held_out or ()),
                      text_centering=args.text_centering)

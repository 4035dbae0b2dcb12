"""The pre-trained baselines (ZESRec, UniSRec) as runs on disk, trained with PreRec's sizes and budget.

A baseline run directory holds ``model.pt`` (the weights that were best on the sources' validation users),
``history.json`` and ``config.json`` (kind, seed and the ``RunConfig`` whose sizes, optimiser settings and budget it
copied), written atomically; a finished run is reused. ZESRec is a GRU over the frozen text vectors with item and user
offsets (Gaussian priors in the reference run's prior units, dropped at zero-shot: ``zesrec.py``) trained with
PreRec's sampled softmax; UniSRec is its Transformer over MoE-adapted text vectors with the in-batch contrastive
loss. Both are trained on the same domain-balanced batches of the sources' training users as PreRec, for the same
epochs, steps and patience, and early-stopped on the sources' validation users: the comparison of the paper's
Table 1, with the same selection and budget.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import asdict
from pathlib import Path

import torch

from prerec_pyro.baselines.sequential import Gru4Rec, SequentialRecommender
from prerec_pyro.baselines.train import BaselineTrainConfig, fit_baseline, validation_callback
from prerec_pyro.baselines.unisrec import UniSRec
from prerec_pyro.baselines.zesrec import ZesRec, offset_stds
from prerec_pyro.data.dataset import MultiDomainData
from prerec_pyro.evaluate import EvalConfig
from prerec_pyro.inference.checkpoint import load_checkpoint, save_checkpoint, save_json
from prerec_pyro.inference.runs import RunConfig
from prerec_pyro.pipeline import PreparedBenchmark
from prerec_pyro.training import training_targets, training_windows

logger = logging.getLogger(__name__)
BASELINE_KINDS = {"zesrec": "ZESRec", "unisrec": "UniSRec"}  # kind: label


def new_baseline(kind: str, text: torch.Tensor, reference: RunConfig, data: MultiDomainData) -> SequentialRecommender:
    """An untrained ZESRec, UniSRec or GRU4Rec with the reference run's sizes over ``data``'s text vectors ``text``
    [J, T] (ZESRec's offsets: one per item row and training user of ``data``, priors as the reference's eps_v and
    eps_u)."""
    model = reference.model
    sizes = {"hidden_dim": model.hidden_dim, "n_layers": model.n_layers, "max_len": model.max_len}
    if kind == "zesrec":
        n_obs = training_targets(training_windows(data))
        item_std, user_std = offset_stds(model.prior_units, model.lambda_v, model.lambda_u, max(n_obs, 1))
        return ZesRec(text, max(data.n_fit_users, 1), item_std, user_std, max(n_obs, 1), **sizes)
    if kind == "gru4rec":
        return Gru4Rec(text, **sizes)
    if kind == "unisrec":
        return UniSRec(text, **sizes, n_heads=model.n_heads)
    raise ValueError(f"unknown baseline {kind!r}; expected one of {sorted(BASELINE_KINDS)} or 'gru4rec'")


def train_config(kind: str, reference: RunConfig, seed: int, device: str) -> BaselineTrainConfig:
    """The reference run's optimiser and budget, with the baseline's own loss."""
    train = reference.train
    return BaselineTrainConfig(n_negatives=train.n_negatives, batch_size=train.batch_size, lr=train.lr,
                               max_epochs=train.max_epochs, patience=train.patience,
                               warmup_steps=train.warmup_steps, lr_decay=train.lr_decay,
                               cosine_epochs=train.cosine_epochs,
                               max_steps_per_epoch=train.max_steps_per_epoch,
                               min_steps_per_epoch=train.min_steps_per_epoch, seed=seed, device=device,
                               loss="contrastive" if kind == "unisrec" else "sampled")


def pretrained_baseline(kind: str, prepared: PreparedBenchmark, reference: RunConfig, seed: int, directory: Path,
                        device: str = "cpu") -> SequentialRecommender:
    """The baseline ``kind`` trained on ``prepared``'s sources (or loaded from ``directory`` if trained before)."""
    directory = Path(directory)
    sources = prepared.sources
    finished = (directory / "model.pt").exists()
    if not finished:
        torch.manual_seed(seed)  # the initial weights of a new run
    model = new_baseline(kind, prepared.item_text(sources).to(device), reference, sources).to(device)
    if finished:
        check_text_centering(directory, prepared.text.centering)
        model.load_state_dict(load_checkpoint(directory / "model.pt", device)["model"])
        return model
    config = train_config(kind, reference, seed, device)
    eval_config = EvalConfig(k_percent=prepared.benchmark.k_percent, split="valid", n_boot=1, device=device,
                             max_users=reference.valid_max_users)
    directory.mkdir(parents=True, exist_ok=True)
    last = directory / "last.pt"  # after every epoch: an interrupted run continues from it
    recipe = {"kind": kind, "train": {**asdict(config), "device": None}, "centering": prepared.text.centering,
              "reference": {**reference.to_json(), "created": None}}  # what a snapshot must match (any device)
    resume = resumable(last, recipe, device)
    history = fit_baseline(model, sources, config, validate=validation_callback(model, sources, eval_config),
                           resume=resume, on_epoch=lambda done: save_checkpoint(last, {**done, "recipe": recipe}))
    save_json(directory / "history.json", {"history": history, "convergence": history[-1]["convergence"]})
    save_json(directory / "config.json", {"kind": kind, "seed": seed, "train": asdict(config),
                                          "reference": reference.to_json()})
    save_checkpoint(directory / "model.pt", {"model": model.state_dict()})  # last: its presence means finished
    last.unlink(missing_ok=True)
    logger.info("%s (seed %d) trained: best validation r-NDCG@K%% %.4f", BASELINE_KINDS[kind], seed,
                max(r["score"] for r in history))
    return model


def resumable(last: Path, recipe: dict, device: str) -> dict | None:
    """The snapshot an interrupted training of ``recipe`` left at ``last``, None when there is none; one of another
    recipe (another budget per epoch, seed or text) is refused rather than continued. The epoch cap alone may differ:
    it bounds the loop and changes no epoch's steps (prerec_pyro/training.py), so a snapshot continued under a
    higher cap trains as a run started with it would (a run about to stop at its cap while still improving)."""
    if not last.exists():
        return None
    snapshot = load_checkpoint(last, device)
    saved = snapshot.get("recipe") or {}
    if without_cap(saved) != without_cap(recipe):
        differ = sorted(key for key in {*saved, *recipe} if saved.get(key) != recipe.get(key))
        raise ValueError(f"{last} holds an interrupted training of another configuration (differing: "
                         f"{', '.join(differ)}); delete it to train this one from the start, or use another --runs "
                         "folder")
    logger.info("resuming %s from %s (epoch cap %s, was %s)", BASELINE_KINDS[recipe["kind"]], last,
                recipe.get("train", {}).get("max_epochs"), saved.get("train", {}).get("max_epochs"))
    return snapshot


def without_cap(recipe: dict) -> dict:
    """``recipe`` without the epoch caps (its own training's and its reference's), a schedule key that snapshots
    saved before it existed lack filled with its default (0: off)."""
    out = copy.deepcopy(recipe)
    for train in (out.get("train"), (out.get("reference") or {}).get("train")):
        if isinstance(train, dict):
            train.pop("max_epochs", None)
            train.setdefault("cosine_epochs", 0)
    return out


def check_text_centering(directory: Path, centering: str) -> None:
    """A finished baseline is reused only on text vectors made as its own were (a baseline written before the
    option saw plain vectors)."""
    saved = json.loads((directory / "config.json").read_text()) if (directory / "config.json").exists() else {}
    own = saved.get("reference", {}).get("text_centering", "none")
    if own != centering:
        raise ValueError(f"{directory} was trained on text centring {own!r}, not {centering!r}: use another --runs "
                         "folder for runs on other text vectors")

"""The zero-shot study: every method scored on a target's test users by the same harness (Table 1 layout).

Methods: Random (closed form), POP, SBERT, and each pre-trained run (PreRec_n, PreRec) scored by intervention
(``InterventionScorer``, or ``BackdoorScorer`` with ``samples > 0``). The target's training users are never read:
only its catalogue, the evaluated users' own histories and the previous interval's item counts (online data).

``item_offsets="shared"`` is an extension beyond Eq. 8 for catalogues that overlap the sources (XMarket's markets,
MovieLens' age groups): an item that is also in a source catalogue keeps the mean of its source MAP offsets
(eps_v, eps_z) instead of 0; every other site is intervened on as in the paper. It reads the pre-training run's
guide, never the target's data. A model fitted with ``shared_item_offsets`` carries the same idea inside the PGM:
its learned eps_v_shared is kept for target items whose id the sources list (``learned_shared_offsets``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from prerec_pyro.baselines.simple import PopScorer, SbertScorer
from prerec_pyro.data.batches import BatchBuilder, PreRecBatch
from prerec_pyro.data.dataset import MultiDomainData
from prerec_pyro.evaluate import SUBSETS, EvalConfig, eval_samples, evaluate_domain, random_summary, summarize
from prerec_pyro.models.prerec import EPS_V, EPS_V_SHARED, EPS_Z, PreRecModel
from prerec_pyro.pipeline import PreparedBenchmark

from .guides import latent_values
from .intervene import BackdoorScorer, InterventionScorer, target_model
from .map import training_windows
from .runs import METHOD_LABELS, build_model, load_nets, load_run, load_run_config

logger = logging.getLogger(__name__)
ITEM_OFFSETS = ("zero", "shared")


def probe_batch(data: MultiDomainData, device: str | torch.device = "cpu") -> PreRecBatch:
    """A one-window batch of ``data``'s first domain: enough to create a guide's parameters and to ask it for the
    whole tables of the global sites."""
    return BatchBuilder(data, None, device=device).make(0, training_windows(data)[0].select([0]))


def source_estimates(run_dir: Path, prepared: PreparedBenchmark, device: str) -> dict[str, Tensor]:
    """A run's MAP estimates (posterior medians) of its latent sites, on its own source data."""
    sources = prepared.sources
    probe = probe_batch(sources, device)
    _, model, guide = load_run(run_dir, sources, prepared.item_text(sources).to(device), probe)
    return latent_values(guide, probe, model)


def shared_item_offsets(estimates: dict[str, Tensor], prepared: PreparedBenchmark, target: str) -> dict[str, Tensor]:
    """Post-hoc eps_v / eps_z tables ``[J_target, B]`` from a run's ``estimates``: for each target item, the mean of
    the estimates over the source domains that list the same item id; 0 for items in no source catalogue."""
    target_ids = prepared.target(target).domains[0].item_ids
    source_ids = np.concatenate([dom.item_ids for dom in prepared.sources.domains])  # [J_s], global row order
    target_row = pd.Index(target_ids).get_indexer(source_ids)  # [J_s], -1 where the target lacks the item
    device = next(iter(estimates.values())).device
    rows = torch.as_tensor(target_row[target_row >= 0], device=device)  # [M] target rows
    source_rows = torch.as_tensor(np.flatnonzero(target_row >= 0), device=device)  # [M] their source rows
    count = torch.bincount(rows, minlength=len(target_ids)).unsqueeze(1)  # [J_t, 1]
    out = {}
    for site in (EPS_V, EPS_Z):
        if site in estimates:
            total = estimates[site].new_zeros(len(target_ids), estimates[site].shape[1])  # [J_t, B]
            out[site] = total.index_add_(0, rows, estimates[site][source_rows]) / count.clamp(min=1)
    logger.info("%s: %d of %d target items are in a source catalogue and keep their source offsets",
                target, int((count > 0).sum()), len(target_ids))
    return out


def learned_shared_offsets(estimates: dict[str, Tensor], source_ids: np.ndarray,
                           target_ids: np.ndarray) -> dict[str, Tensor]:
    """eps_v_shared ``[I_target, B]`` of the target's distinct item ids ``target_ids``: a run's estimate where the
    sources' distinct ids ``source_ids`` (the rows of ``estimates``) list the id, its prior mean 0 where they do not
    (only the text, popularity and sequence model speak for a new item)."""
    table = estimates[EPS_V_SHARED]  # [I_s, B]
    source_row = pd.Index(source_ids).get_indexer(pd.Index(target_ids))  # [I_t], -1: unknown id
    known = torch.as_tensor(source_row >= 0, device=table.device)
    rows = torch.as_tensor(np.maximum(source_row, 0), device=table.device)
    return {EPS_V_SHARED: table[rows] * known[:, None]}


def known_item_offsets(run_dir: Path, prepared: PreparedBenchmark, item_ids: np.ndarray,
                       device: str | torch.device) -> dict[str, Tensor]:
    """A run's learned eps_v_shared for the catalogue ``item_ids`` (0 for ids its sources do not list): what
    zero-shot and the start of fine-tuning keep of a model with shared item offsets; {} for a model without."""
    if not load_run_config(run_dir).model.shared_item_offsets:
        return {}
    estimates = source_estimates(run_dir, prepared, str(device))
    return learned_shared_offsets(estimates, prepared.sources.item_keys()[1], np.asarray(item_ids, dtype=object))


def source_scorer(model: PreRecModel, guide, probe: PreRecBatch) -> InterventionScorer:
    """Eq. 8 on the sources themselves, a view of zero-shot quality that needs no target data: do(D = 0, eps = 0)
    on a model fitted to the sources (``probe``: a batch of them), keeping its learned eps_v_shared (the items are
    the sources' own)."""
    offsets = None
    if model.config.shared_item_offsets:
        offsets = {EPS_V_SHARED: latent_values(guide, probe, model)[EPS_V_SHARED]}
    return InterventionScorer(model, name="PreRec (sources, intervened)", item_offsets=offsets)


def intervened_source_score(run_dir: Path, prepared: PreparedBenchmark, config: EvalConfig) -> float:
    """Mean r-NDCG@K% over the source domains of ``run_dir``'s Eq. 8 scores on ``config.split`` users of the
    sources (e.g. their validation users): a target-free criterion to compare configurations."""
    sources = prepared.sources
    probe = probe_batch(sources, config.device)
    _, model, guide = load_run(run_dir, sources, prepared.item_text(sources).to(config.device), probe)
    scorer = source_scorer(model, guide, probe)
    scores = [summarize(evaluate_domain(scorer, sources, k, config), config).get("rndcg@k%", 0.0)
              for k in range(len(sources.domains))]
    return float(np.mean(scores))


def pretrained_scorer(run_dir: Path, prepared: PreparedBenchmark, target: str, samples: int, device: str,
                      item_offsets: str = "zero"):
    """A pre-trained run's networks pointed at ``target``'s catalogue and users, scored by intervention. A model with
    ``shared_item_offsets`` keeps its learned eps_v_shared for target items the sources know."""
    if item_offsets not in ITEM_OFFSETS:
        raise ValueError(f"item_offsets must be one of {ITEM_OFFSETS}, got {item_offsets!r}")
    config = load_run_config(run_dir)
    posthoc = item_offsets == "shared" and config.model.use_offsets
    offsets = known_item_offsets(run_dir, prepared, prepared.target(target).item_keys()[1], device)
    if posthoc:
        offsets.update(shared_item_offsets(source_estimates(run_dir, prepared, device), prepared, target))
    data = prepared.target(target)
    text = prepared.item_text(data).to(device)
    model = target_model(build_model(config, data, text).to(device), data, text)  # plate: every target user
    load_nets(run_dir, model)
    label = METHOD_LABELS[config.method] + (" (shared offsets)" if posthoc else "")
    if samples > 0 and config.model.use_domain:
        return BackdoorScorer(model, samples, name=label, item_offsets=offsets)
    return InterventionScorer(model, name=label, item_offsets=offsets)


def evaluate_target(prepared: PreparedBenchmark, target: str, runs: dict[str, Path], config: EvalConfig,
                    samples: int = 0, item_offsets: str = "zero") -> list[dict]:
    """Rows {method, domain, subset, n_samples, metrics...} for one target: Random, POP, SBERT and each run."""
    data = prepared.target(target)
    scorers = [PopScorer(), SbertScorer(prepared.item_text(data).to(config.device))]
    scorers += [pretrained_scorer(run, prepared, target, samples, config.device, item_offsets)
                for run in runs.values()]
    return score_target(prepared, target, scorers, config)


def score_target(prepared: PreparedBenchmark, target: str, scorers: list, config: EvalConfig,
                 with_random: bool = True) -> list[dict]:
    """Rows {method, domain, subset, n_samples, metrics...} of ``scorers`` on one target (and the closed-form
    Random baseline first, unless ``with_random`` is False)."""
    data = prepared.target(target)
    if not eval_samples(data, 0, config.split, config.max_users, config.seed)[1].any():
        raise ValueError(f"target {target!r}: no {config.split} user has a position with history to evaluate (users "
                         "need at least two interactions); nothing to score")
    source_items, source_users = prepared.sources.item_id_set(), prepared.sources.user_id_set()
    rows, n_samples = [], {}
    for scorer in scorers:
        result = evaluate_domain(scorer, data, 0, config, source_items, source_users)
        for subset in SUBSETS:
            summary = summarize(result, config, subset)
            n_samples[subset] = summary["n_samples"]
            rows.append({"method": scorer.name, "domain": target, "subset": subset, **summary})
        logger.info("%s on %s: r-NDCG@K%% %.4f", scorer.name, target,
                    rows[-len(SUBSETS)].get("rndcg@k%", float("nan")))  # the "all" row
    if with_random and n_samples:
        n_items = data.domains[0].n_items
        for subset in SUBSETS:
            rows.insert(0, {"method": "Random", "domain": target, "subset": subset,
                            **random_summary(n_items, config, n_samples[subset])})
    return rows

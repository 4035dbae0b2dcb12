"""The zero-shot study: every method scored on a target's test users by the same harness (Table 1 layout).

Methods: Random (closed form), the training-free rules (POP, SBERT, SBERT+POP with its α fitted on the sources'
validation users), and each pre-trained run (PreRec_n, PreRec) scored by intervention
(``PretrainedRun.target_scorer``: ``InterventionScorer``, or ``BackdoorScorer`` with ``samples > 0``, weighed by each
user's history unless ``weigh_sequence=False``). The target's
training users are never read: only its catalogue, the evaluated users' own histories and the previous interval's
item counts (online data). ``item_offsets``: see ``inference/pretrained.py``.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from prerec_pyro.baselines.simple import PopScorer, RandomScorer, SbertPopScorer, SbertScorer, fit_sbert_pop
from prerec_pyro.data.batches import PreRecBatch
from prerec_pyro.evaluate import SUBSETS, EvalConfig, eval_samples, evaluate_domain, random_summary, summarize
from prerec_pyro.models.prerec import EPS_V_SHARED, PreRecModel
from prerec_pyro.pipeline import PreparedBenchmark

from .guides import latent_values
from .intervene import InterventionScorer
from .pretrained import PretrainedRun

logger = logging.getLogger(__name__)
SBERT_POP_USERS = 500  # validation users per source domain that SBERT+POP's alpha is fitted on


def sbert_pop_alpha(prepared: PreparedBenchmark, config: EvalConfig) -> float:
    """SBERT+POP's α, fitted on at most ``SBERT_POP_USERS`` validation users of each source (no target data)."""
    valid = replace(config, split="valid", max_users=SBERT_POP_USERS)
    return fit_sbert_pop(prepared.sources, prepared.item_text(prepared.sources).to(config.device), valid).alpha


def rule_scorers(prepared: PreparedBenchmark, target: str, alpha: float, device: str) -> list:
    """The training-free contenders on ``target``: POP, SBERT and SBERT+POP (α fitted on the sources)."""
    text = prepared.item_text(prepared.target(target)).to(device)
    return [PopScorer(), SbertScorer(text), SbertPopScorer(text, alpha)]


def source_scorer(model: PreRecModel, guide, probe: PreRecBatch) -> InterventionScorer:
    """Eq. 8 on the sources themselves, a view of zero-shot quality that needs no target data: do(D = 0, eps = 0)
    on a model fitted to the sources (``probe``: a batch of them), keeping its learned eps_v_shared (the items are
    the sources' own)."""
    offsets = None
    if model.config.shared_item_offsets:
        offsets = {EPS_V_SHARED: latent_values(guide, probe, model)[EPS_V_SHARED]}
    return InterventionScorer(model, name="PreRec (sources, intervened)", item_offsets=offsets)


def intervened_source_score(run: Path | PretrainedRun, prepared: PreparedBenchmark, config: EvalConfig) -> float:
    """Mean r-NDCG@K% over the source domains of ``run``'s Eq. 8 scores on ``config.split`` users of the sources
    (e.g. their validation users): a target-free criterion to compare configurations."""
    sources = prepared.sources
    model, guide, probe = PretrainedRun.of(run, config.device).on_sources(prepared)
    scorer = source_scorer(model, guide, probe)
    scores = [summarize(evaluate_domain(scorer, sources, k, config), config).get("rndcg@k%", 0.0)
              for k in range(len(sources.domains))]
    return float(np.mean(scores))


def evaluate_target(prepared: PreparedBenchmark, target: str, runs: dict[str, Path | PretrainedRun], config: EvalConfig,
                    samples: int = 0, item_offsets: str = "zero", backdoor_from: str = "prior",
                    alpha: float | None = None, weigh_sequence: bool = True,
                    sequence_evidence: str = "ranks") -> list[dict]:
    """Rows {method, domain, subset, history_items, n_samples, metrics...} for one target: Random, POP, SBERT,
    SBERT+POP (``alpha``: fitted on the sources when None) and each run (a path, or a ``PretrainedRun`` loaded
    once and handed on; ``weigh_sequence``, ``sequence_evidence``: see ``PretrainedRun.target_scorer``)."""
    alpha = sbert_pop_alpha(prepared, config) if alpha is None else alpha
    scorers = rule_scorers(prepared, target, alpha, config.device)
    scorers += [PretrainedRun.of(run, config.device).target_scorer(
        prepared, target, samples, item_offsets, backdoor_from, weigh_sequence, sequence_evidence)
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
        for rule in config.history_items:
            for subset in SUBSETS:
                summary = summarize(result, config, subset, rule)
                n_samples[subset] = summary["n_samples"]
                rows.append({"method": scorer.name, "domain": target, "subset": subset, "history_items": rule,
                             **summary})
            logger.info("%s on %s (history items %s): r-NDCG@K%% %.4f", scorer.name, target, rule,
                        rows[-len(SUBSETS)].get("rndcg@k%", float("nan")))  # the "all" row
    if with_random and n_samples:
        rows = random_rows(data, target, config, n_samples, source_items, source_users) + rows
    return rows


def random_rows(data, target: str, config: EvalConfig, n_samples: dict, source_items: set[str],
                source_users: set[str]) -> list[dict]:
    """The Random rows of a target: the closed form under "keep"; under "exclude" (the history ranked last, so the
    closed form over the whole catalogue no longer holds) a seeded uniform ranking through the harness."""
    rows = []
    for rule in config.history_items:
        if rule == "keep":
            summaries = {subset: random_summary(data.domains[0].n_items, config, n_samples[subset])
                         for subset in SUBSETS}
        else:
            rule_config = replace(config, history_items=(rule,))
            result = evaluate_domain(RandomScorer(config.seed), data, 0, rule_config, source_items, source_users)
            summaries = {subset: summarize(result, rule_config, subset) for subset in SUBSETS}
        rows += [{"method": "Random", "domain": target, "subset": subset, "history_items": rule, **summary}
                 for subset, summary in summaries.items()]
    return rows

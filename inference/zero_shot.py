"""The zero-shot study: every method scored on a target's test users by the same harness (Table 1 layout).

Methods: Random (closed form), POP, SBERT, and each pre-trained run (PreRec_n, PreRec) scored by intervention
(``InterventionScorer``, or ``BackdoorScorer`` with ``samples > 0``). The target's training users are never read:
only its catalogue, the evaluated users' own histories and the previous interval's item counts (online data).
"""

from __future__ import annotations

import logging
from pathlib import Path

from prerec_pyro.baselines.simple import PopScorer, SbertScorer
from prerec_pyro.evaluate import EvalConfig, evaluate_domain, random_summary, summarize
from prerec_pyro.pipeline import PreparedBenchmark

from .intervene import BackdoorScorer, InterventionScorer, target_model
from .runs import METHOD_LABELS, build_model, load_nets, load_run_config

logger = logging.getLogger(__name__)
SUBSETS = ("all", "unseen")


def pretrained_scorer(run_dir: Path, prepared: PreparedBenchmark, target: str, samples: int, device: str):
    """A pre-trained run's networks pointed at ``target``'s catalogue and users, scored by intervention."""
    config = load_run_config(run_dir)
    data = prepared.target(target)
    text = prepared.item_text(data).to(device)
    model = target_model(build_model(config, data, text).to(device), data, text)  # plate: every target user
    load_nets(run_dir, model)
    label = METHOD_LABELS[config.method]
    if samples > 0 and config.model.use_domain:
        return BackdoorScorer(model, samples, name=label)
    return InterventionScorer(model, name=label)


def evaluate_target(prepared: PreparedBenchmark, target: str, runs: dict[str, Path], config: EvalConfig,
                    samples: int = 0) -> list[dict]:
    """Rows {method, domain, subset, n_samples, metrics...} for one target."""
    data = prepared.target(target)
    source_items, source_users = prepared.sources.item_id_set(), prepared.sources.user_id_set()
    scorers = [PopScorer(), SbertScorer(prepared.item_text(data).to(config.device))]
    scorers += [pretrained_scorer(run, prepared, target, samples, config.device) for run in runs.values()]
    rows, n_samples = [], {}
    for scorer in scorers:
        result = evaluate_domain(scorer, data, 0, config, source_items, source_users)
        for subset in SUBSETS:
            summary = summarize(result, config, subset)
            n_samples[subset] = summary["n_samples"]
            rows.append({"method": scorer.name, "domain": target, "subset": subset, **summary})
        logger.info("%s on %s: r-NDCG@K%% %.4f", scorer.name, target, rows[-2].get("rndcg@k%", float("nan")))
    n_items = data.domains[0].n_items
    for subset in SUBSETS:
        rows.insert(0, {"method": "Random", "domain": target, "subset": subset,
                        **random_summary(n_items, config, n_samples[subset])})
    return rows

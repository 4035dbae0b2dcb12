"""Fine-tuning a pre-trained PreRec on a target domain (§3.4 of the paper), in full or incrementally.

The target gets its own model: the pre-trained networks (f_e, f_seq, f_pop, W_d, W_z) are loaded and stay
trainable; D for the target starts at its prior mean, the target catalogue's eps_v / eps_z rows at zero, and the
target's training users get their own eps_u. MAP is fitted on the target's training users (optionally only the first
``first_n`` of their interactions in time order: incremental fine-tuning), with early stopping on the target's
validation users, and the result scores with the re-estimated D̂, Ẑ, V̂, Û (``MapScorer``), no intervention.
The fine-tuning guide has its own parameter names (docs/DESIGN.md pitfall 8). ``pretrained=False`` trains the same model
from scratch on the target: the comparison of the paper's Fig. 3.

Fine-tuning starts at the zero-shot point: D and the confounded offsets at 0 (Eq. 8's values) and, for a model with
``shared_item_offsets``, eps_v_shared at the run's learned values for target items the sources list, so the first
validation pass sees what zero-shot scores. Its priors read λ in ``prior_units``, by default ``"total"`` (Eq. 7 as
written, on the target's log) whatever units the pre-training used: pre-training keeps the confounded offsets stiff
so that the shared networks carry what transfers (docs/DESIGN.md, "Units of λ"), but on the target the item and
user offsets are exactly what its data should determine; ``"run"`` keeps the pre-training's units.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from prerec_pyro.evaluate import EvalConfig, evaluate_domain, summarize
from prerec_pyro.models.prerec import PRIOR_UNITS
from prerec_pyro.pipeline import PreparedBenchmark

from .guides import make_guide
from .map import MapTrainer, TrainConfig
from .pretrained import PretrainedRun
from .runs import build_model, load_run_config
from .scoring import MapScorer

logger = logging.getLogger(__name__)
FINETUNE_PRIOR_UNITS = PRIOR_UNITS + ("run",)


def parse_sizes(values: list[str]) -> list[int | None]:
    """``--first-n`` values: non-negative integers, or "all" (``None``: every training interaction)."""
    bad = [v for v in values if v != "all" and not v.isdigit()]
    if bad:
        raise ValueError(f"--first-n takes non-negative integers or 'all', got {bad[0]!r}")
    return [None if v == "all" else int(v) for v in values]


@dataclass(frozen=True)
class FinetuneResult:
    first_n: int | None
    pretrained: bool
    scorer: object
    history: list
    n_train_interactions: int


def finetune(run_dir: Path | PretrainedRun, prepared: PreparedBenchmark, target: str, train: TrainConfig,
             first_n: int | None = None, pretrained: bool = True, eval_config: EvalConfig | None = None,
             out_dir: Path | None = None, prior_units: str = "total") -> FinetuneResult:
    """Fit a target's training users (their first ``first_n`` interactions) starting from a pre-training run.

    ``first_n == 0`` is zero-shot (nothing to fit: the pre-trained model is scored by intervention, Eq. 8, as
    ``PretrainedRun.target_scorer(..., weigh_sequence=False)`` does: the point fine-tuning starts from, scored as the
    fine-tuned models are, without the history weighing). ``prior_units``: see the module docstring."""
    if prior_units not in FINETUNE_PRIOR_UNITS:
        raise ValueError(f"prior_units must be one of {FINETUNE_PRIOR_UNITS}, got {prior_units!r}")
    if first_n == 0:
        if not pretrained:
            raise ValueError("first_n=0 without pre-training has nothing to score with")
        run = PretrainedRun.of(run_dir, train.device)
        return FinetuneResult(0, True, run.target_scorer(prepared, target, weigh_sequence=False), [], 0)
    config = run_dir.config if isinstance(run_dir, PretrainedRun) else load_run_config(run_dir)
    if prior_units != "run":
        config = replace(config, model=replace(config.model, prior_units=prior_units))
    data = prepared.target(target)
    text = prepared.item_text(data).to(train.device)
    if pretrained:
        run = PretrainedRun.of(run_dir, train.device)
        start = run.known_offsets(data.item_keys()[1])  # the zero-shot point
        model = run.fresh_model(data, text, config)
    else:
        start, model = {}, build_model(replace(config, train=replace(config.train, device=train.device)), data, text)
    guide = make_guide(config.guide, model, name="finetune", init_values=start)
    eval_config = eval_config or EvalConfig(k_percent=prepared.benchmark.k_percent, split="valid", n_boot=100,
                                            device=train.device)
    scorer = MapScorer(model, guide, name="PreRec (fine-tuned)" if pretrained else "PreRec (from scratch)")

    def validate() -> dict:
        result = summarize(evaluate_domain(scorer, data, 0, eval_config), eval_config)
        return {"score": result.get("rndcg@k%", 0.0), "valid_recall@k%": result.get("recall@k%", 0.0)}

    trainer = MapTrainer(model, guide, data, train, validate=validate, run_dir=out_dir, first_n=first_n)
    state = trainer.fit()
    return FinetuneResult(first_n, pretrained, scorer, state["history"], trainer.n_obs)


def incremental_study(run_dir: Path | PretrainedRun, prepared: PreparedBenchmark, target: str, train: TrainConfig,
                      sizes: list[int | None], test_config: EvalConfig, from_scratch: bool = True,
                      prior_units: str = "total") -> list[dict]:
    """Rows {method, domain, first_n, n_train, metrics...} on the target's test users for each ``first_n`` in
    ``sizes`` (``None`` = all training interactions), fine-tuned from the run and, if asked, from scratch."""
    data = prepared.target(target)
    source_items, source_users = prepared.sources.item_id_set(), prepared.sources.user_id_set()
    rows = []
    for first_n in sizes:
        for pretrained in (True, False) if from_scratch else (True,):
            if first_n == 0 and not pretrained:
                continue
            result = finetune(run_dir, prepared, target, train, first_n=first_n, pretrained=pretrained,
                              prior_units=prior_units)
            ranks = evaluate_domain(result.scorer, data, 0, test_config, source_items, source_users)
            label = "PreRec (pre-trained)" if pretrained else "PreRec (from scratch)"
            rows.append({"method": label, "domain": target, "first_n": "all" if first_n is None else first_n,
                         "n_train": result.n_train_interactions, "epochs": len(result.history),
                         **summarize(ranks, test_config)})
            logger.info("%s on %s, N=%s: r-NDCG@K%% %.4f", label, target, rows[-1]["first_n"],
                        rows[-1].get("rndcg@k%", float("nan")))
    return rows

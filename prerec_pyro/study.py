"""The whole study of a benchmark (the paper's Tables 1-2, Figs. 3 and 5), as resumable steps.

Each step writes its result into the study directory and is skipped when that file exists, so an interrupted study
resumes at the first missing step: pre-training (PreRec and PreRec_n through ``scripts/map_pretrain.py``'s runs;
ZESRec and UniSRec as baselines), the zero-shot table, where PreRec's zero-shot score comes from
(``inference.diagnostics``: each term switched off, agreement with SBERT), the full fine-tuning table, the incremental
curves and the figures.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from prerec_pyro.baseline_runs import new_baseline
from prerec_pyro.baselines.sequential import SasRec
from prerec_pyro.baselines.train import BaselineScorer, BaselineTrainConfig, fit_baseline, validation_callback
from prerec_pyro.evaluate import HISTORY_RULES, EvalConfig, evaluate_domain, results_table, summarize
from prerec_pyro.figures import plot_incremental, plot_popularity
from prerec_pyro.inference.checkpoint import load_checkpoint, save_checkpoint
from prerec_pyro.inference.diagnostics import diagnostic_rows
from prerec_pyro.inference.finetune import finetune, incremental_study
from prerec_pyro.inference.map import TrainConfig
from prerec_pyro.inference.pretrained import PretrainedRun
from prerec_pyro.inference.recovery import popularity_panel
from prerec_pyro.inference.zero_shot import evaluate_target, score_target
from prerec_pyro.io import write_csv
from prerec_pyro.models.prerec import D
from prerec_pyro.pipeline import PreparedBenchmark

logger = logging.getLogger(__name__)
STEP_FILES = {"zero_shot": "table1_zero_shot.csv", "diagnostics": "zero_shot_diagnostics.csv",
              "fine_tuned": "table2_fine_tuned.csv",
              "curves": "incremental_curves.csv"}  # each step's table in the study directory


@dataclass(frozen=True)
class StudyConfig:
    sizes: tuple[int | None, ...] = (0, 100, 1000, 10000, None)
    finetune: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-4, batch_size=64, max_epochs=10,
                                                                      patience=2))
    baseline: BaselineTrainConfig = field(default_factory=lambda: BaselineTrainConfig(max_epochs=10, patience=2))
    n_boot: int = 1000
    device: str = "cpu"
    rndcg_b: float | None = None  # r-NDCG@K%'s b; None: 600 / K%, the paper's


def cached_table(path: Path, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """The step's table from ``path`` if a previous run wrote it, else computed and written."""
    if path.exists():
        logger.info("step done before: %s", path.name)
        return pd.read_csv(path)
    table = compute()
    write_csv(path, table)
    return table


class Study:
    """One benchmark's study in ``directory`` from PreRec / PreRec_n runs ``runs`` {method: run_dir}, each loaded
    once and handed to every step."""

    def __init__(self, prepared: PreparedBenchmark, runs: dict[str, Path], directory: Path, config: StudyConfig):
        self.prepared, self.dir, self.config = prepared, Path(directory), config
        self.runs = {method: PretrainedRun.of(run, config.device) for method, run in runs.items()}
        self.run_config = self.runs["prerec"].config
        self.model_sizes = {"hidden_dim": self.run_config.model.hidden_dim, "n_layers": self.run_config.model.n_layers,
                            "max_len": self.run_config.model.max_len}

    def eval_config(self, split: str = "test") -> EvalConfig:
        return EvalConfig(k_percent=self.prepared.benchmark.k_percent, split=split, n_boot=self.config.n_boot,
                          device=self.config.device, rndcg_b=self.config.rndcg_b,
                          history_items=HISTORY_RULES if split == "test" else ("keep",))

    def _text(self, data) -> torch.Tensor:
        return self.prepared.item_text(data).to(self.config.device)

    def _new_baseline(self, kind: str, data):
        text = self._text(data)
        if kind == "sasrec":
            return SasRec(text, **self.model_sizes, n_heads=self.run_config.model.n_heads)
        return new_baseline(kind, text, self.run_config, data)  # ZESRec, UniSRec, GRU4Rec: PreRec's sizes

    def pretrained_baseline(self, kind: str):
        """ZESRec or UniSRec fitted on the sources, cached as a state dict in the study directory."""
        sources = self.prepared.sources
        model = self._new_baseline(kind, sources)
        path = self.dir / f"{kind}.pt"
        if path.exists():
            model.load_state_dict(load_checkpoint(path, self.config.device)["model"])
            return model
        loss = "contrastive" if kind == "unisrec" else "sampled"
        config = replace(self.config.baseline, loss=loss, device=self.config.device)
        validate = validation_callback(model, sources, self.eval_config("valid"))
        fit_baseline(model, sources, config, validate=validate)
        save_checkpoint(path, {"model": model.state_dict()})
        return model

    def zero_shot(self) -> pd.DataFrame:
        def compute() -> pd.DataFrame:
            baselines = {"ZESRec": self.pretrained_baseline("zesrec"), "UniSRec": self.pretrained_baseline("unisrec")}
            rows = []
            for target in self.prepared.benchmark.targets:
                rows += evaluate_target(self.prepared, target, self.runs, self.eval_config(),
                                        weigh_sequence=False)  # the paper's Table 1 scores Eq. 8
                rows += self._baseline_rows(target, baselines)
            return results_table(rows)

        return cached_table(self.dir / STEP_FILES["zero_shot"], compute)

    def diagnostics(self) -> pd.DataFrame:
        """Per target: PreRec's Eq. 8 with each term switched off, its text head alone, POP, SBERT, and the rank
        correlation of Eq. 8 with SBERT (``sbert_spearman``)."""
        def compute() -> pd.DataFrame:
            rows = []
            for target in self.prepared.benchmark.targets:
                rows += diagnostic_rows(self.prepared, target, self.runs["prerec"], self.eval_config())
            return pd.DataFrame(rows)

        return cached_table(self.dir / STEP_FILES["diagnostics"], compute)

    def _baseline_rows(self, target: str, models: dict) -> list[dict]:
        rows = []
        for label, model in models.items():
            model.set_item_text(self._text(self.prepared.target(target)))
            rows += score_target(self.prepared, target, [BaselineScorer(model, label)], self.eval_config(),
                                 with_random=False)
        return rows

    def fine_tuned(self) -> pd.DataFrame:
        def compute() -> pd.DataFrame:
            rows = []
            for target in self.prepared.benchmark.targets:
                rows += self._fine_tuned_rows(target)
            return results_table(rows)

        return cached_table(self.dir / STEP_FILES["fine_tuned"], compute)

    def _fine_tuned_rows(self, target: str) -> list[dict]:
        data, config = self.prepared.target(target), self.eval_config()
        text = self._text(data)
        models = {}
        for label, pretrained in (("PreRec", True), ("PreRec (from scratch)", False)):
            models[label] = finetune(self.runs["prerec"], self.prepared, target, self._finetune_config(),
                                     pretrained=pretrained).scorer
        for label, kind in (("SASRec", "sasrec"), ("GRU4Rec", "gru4rec")):
            model = self._new_baseline(kind, data)
            fit_baseline(model, data, replace(self.config.baseline, device=self.config.device),
                         validate=validation_callback(model, data, self.eval_config("valid")))
            models[label] = BaselineScorer(model, label)
        unisrec = copy.deepcopy(self.pretrained_baseline("unisrec"))
        unisrec.set_item_text(text)
        fit_baseline(unisrec, data, replace(self.config.baseline, loss="contrastive", device=self.config.device),
                     validate=validation_callback(unisrec, data, self.eval_config("valid")),
                     trainable=unisrec.adaptor_parameters())
        models["UniSRec"] = BaselineScorer(unisrec, "UniSRec")
        rows = []
        for label, scorer in models.items():
            result = evaluate_domain(scorer, data, 0, config)
            rows.append({"method": label, "domain": target, "subset": "all", **summarize(result, config)})
        return rows

    def _finetune_config(self) -> TrainConfig:
        return replace(self.config.finetune, likelihood=self.run_config.train.likelihood,
                        n_negatives=self.run_config.train.n_negatives, device=self.config.device)

    def curves(self) -> pd.DataFrame:
        def compute() -> pd.DataFrame:
            rows = []
            for target in self.prepared.benchmark.targets:
                rows += incremental_study(self.runs["prerec"], self.prepared, target, self._finetune_config(),
                                          list(self.config.sizes), self.eval_config())
            return pd.DataFrame(rows)

        return cached_table(self.dir / STEP_FILES["curves"], compute)

    def figures(self, curves: pd.DataFrame) -> list[Path]:
        """Fig. 3 (incremental curves) and Fig. 5 (popularity in the targets, learned score of the PreRec run)."""
        paths = [plot_incremental(curves, self.dir / "fig3_incremental.png")]
        panels, run = [], self.runs["prerec"]
        for target in self.prepared.benchmark.targets:
            data = self.prepared.target(target)
            text = self._text(data)
            model = run.model_on(data, text)
            if model.config.use_popularity:
                domain_off = {D: torch.zeros(model.n_domains, model.config.hidden_dim, device=text.device)}  # do(D = 0)
                panels.append(popularity_panel(model, domain_off, data, 0))
        if panels:
            paths.append(plot_popularity(panels, self.dir / "fig5_popularity.png"))
        return paths

"""A pre-trained run loaded once and pointed at any catalogue: the one place that puts a run onto a target.

``PretrainedRun`` owns a run's configuration and networks (``best.pt``) on a device of this machine (a run trained on
a GPU loads on a CPU). The evaluation harness (``zero_shot``, ``diagnostics``), fine-tuning, the study and the public
API (``prerec_pyro.api``) all go through it:

- ``model_on(data, item_text)``: the networks on a prepared target's domains, users and items;
- ``target_scorer(prepared, target)``: Eq. 8 (or the back-door average) on a prepared target's users, weighed by
  each user's history by default (``inference/evidence.py``);
- ``on_domain(items, recent_interactions)``: a ``DomainRecommender`` over a bare catalogue (no log needed);
- ``known_offsets(item_ids)``: the run's learned eps_v_shared for a catalogue's item ids.

A run is self-contained: pre-training writes ``sources.pt`` (``source_summary``: the sources' distinct item ids with
their eps_v_shared estimates, a bank of draws of the sources' D_k for the posterior back-door, the text vectors'
dimension), so recommending or evaluating on a new catalogue reads no source data. A run written before that file
existed derives it once from its sources' data (with a message) and keeps it.

``item_offsets="shared"`` is an extension beyond Eq. 8 for catalogues that overlap the sources (XMarket's markets,
MovieLens' age groups): an item that is also in a source catalogue keeps the mean of its source MAP offsets
(eps_v, eps_z) instead of 0; every other site is intervened on as in the paper. It reads the pre-training run's
guide, never the target's data. A model fitted with ``shared_item_offsets`` carries the same idea inside the PGM:
its learned eps_v_shared is kept for target items whose id the sources list (``learned_shared_offsets``).

Shape legend: J = catalogue items, I = distinct item ids, B = hidden size, T = text size, F = popularity factors.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from prerec_pyro.data.batches import BatchBuilder, PreRecBatch
from prerec_pyro.data.dataset import MultiDomainData
from prerec_pyro.models.prerec import EPS_V, EPS_V_SHARED, EPS_Z, PreRecModel
from prerec_pyro.pipeline import PreparedBenchmark
from prerec_pyro.text import canonical_model_name, catalogue_vectors
from prerec_pyro.training import training_windows

from .checkpoint import load_checkpoint, save_checkpoint
from .evidence import EVIDENCE, HistoryWeightedSequence, sequence_is_all
from .guides import domain_draws, latent_values
from .intervene import BackdoorScorer, InterventionScorer
from .recommender import DomainRecommender, TableLike, catalogue_factors, items_table
from .runs import METHOD_LABELS, RunConfig, build_model, check_finished, load_run, prepare_for_run

logger = logging.getLogger(__name__)
ITEM_OFFSETS = ("zero", "shared")
BACKDOOR_FROM = ("prior", "posterior")
SOURCES_FILE = "sources.pt"
DRAW_BANK = 1024  # draws of the sources' D_k a run keeps; the first n are ``domain_draws_in_turn(n)``


def check_device(device: str | torch.device) -> torch.device:
    """A torch device that exists here, or a ValueError saying why not."""
    try:
        device = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"device {device!r} is not a torch device (expected e.g. 'cpu' or 'cuda:0'): {error}") \
            from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r}: this machine has no CUDA device; use 'cpu'")
    return device


def probe_batch(data: MultiDomainData, device: str | torch.device = "cpu") -> PreRecBatch:
    """A one-window batch of ``data``'s first domain: enough to create a guide's parameters and to ask it for the
    whole tables of the global sites."""
    return BatchBuilder(data, None, device=device).make(0, training_windows(data)[0].select([0]))


def load_on_sources(run_dir: Path, prepared: PreparedBenchmark, device: str | torch.device = "cpu",
                    config: RunConfig | None = None, state: dict | None = None):
    """A run's (config, model, guide) rebuilt on its own sources, and the probe batch that built the guide
    (``config`` and the checkpoint ``state``, when given, are not read from ``run_dir`` again)."""
    sources = prepared.sources
    probe = probe_batch(sources, device)
    config, model, guide = load_run(run_dir, sources, prepared.item_text(sources).to(device), probe, config=config,
                                    state=state)
    return config, model, guide, probe


def source_estimates(run_dir: Path, prepared: PreparedBenchmark, device: str) -> dict[str, Tensor]:
    """A run's MAP estimates (posterior medians) of its latent sites, on its own source data."""
    _, model, guide, probe = load_on_sources(run_dir, prepared, device)
    return latent_values(guide, probe, model)


def source_domain_draws(run_dir: Path, prepared: PreparedBenchmark, n_samples: int, device: str,
                        seed: int = 0) -> Tensor:
    """``n_samples`` draws of the sources' D_k from a run's guide, taking the source domains in turn (see
    ``domain_draws_in_turn``). [n_samples, B]"""
    _, model, guide, probe = load_on_sources(run_dir, prepared, device)
    return domain_draws_in_turn(model, guide, probe, n_samples, seed)


def domain_draws_in_turn(model: PreRecModel, guide, probe: PreRecBatch, n_samples: int, seed: int = 0) -> Tensor:
    """``n_samples`` draws of the sources' D_k from ``guide``, the source domains in turn (draw s is D_{s mod K} of
    the guide's draw s // K): the back-door average over the posterior of the confounder instead of its prior. A
    point-estimate guide gives the MAP D_k, each equally often. [n_samples, B]"""
    draws = domain_draws(model, guide, probe, -(-n_samples // model.n_domains), seed)  # [S', K, B]
    return draws.flatten(0, 1)[:n_samples]  # [n_samples, B], domains in turn


def source_summary(model: PreRecModel, guide, probe: PreRecBatch, sources: MultiDomainData,
                   with_draws: bool = True) -> dict:
    """What zero-shot reads of a run's sources (see the module docstring), on the CPU (``with_draws=False``: without
    the bank of D_k draws, which only the posterior back-door reads)."""
    estimates = latent_values(guide, probe, model)
    shared = estimates.get(EPS_V_SHARED)
    draws = domain_draws_in_turn(model, guide, probe, DRAW_BANK) if model.config.use_domain and with_draws else None
    return {"item_ids": [str(item) for item in sources.item_keys()[1]], "text_dim": int(model.item_text.shape[1]),
            EPS_V_SHARED: None if shared is None else shared.detach().cpu(),
            "domain_draws": None if draws is None else draws.detach().cpu()}


def write_source_summary(run_dir: Path, model: PreRecModel, guide, probe: PreRecBatch,
                         sources: MultiDomainData) -> None:
    """Write ``sources.pt`` into ``run_dir`` (atomically): the end of pre-training."""
    save_checkpoint(Path(run_dir) / SOURCES_FILE, source_summary(model, guide, probe, sources))


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


class PretrainedRun:
    """A pre-training run's configuration and networks (``best.pt``), on ``device`` (see the module docstring)."""

    def __init__(self, run_dir: Path, config: RunConfig, checkpoint: dict, device: torch.device):
        self.run_dir, self.checkpoint, self.device = run_dir, checkpoint, device
        self.nets = checkpoint["model"]
        self.config = replace(config, train=replace(config.train, device=str(device)))  # where its models live
        self._sources = None  # (prepared, model, guide, probe, estimates): the run on the last sources asked for
        self._summary = None  # sources.pt, read (or derived) on first use

    @classmethod
    def load(cls, run_dir: str | os.PathLike, device: str | torch.device = "cpu",
             text_model: str | None = None) -> "PretrainedRun":
        """Load ``run_dir`` (written by ``scripts/map_pretrain.py``) onto ``device``. ``text_model``, when given,
        must be the sentence encoder the run was trained with."""
        run_dir, device = Path(run_dir), check_device(device)
        config = check_finished(run_dir)
        if text_model is not None and canonical_model_name(text_model) != canonical_model_name(config.text_model):
            raise ValueError(f"{run_dir} was trained on text vectors of {config.text_model!r}, not {text_model!r}: "
                             "its networks only understand that encoder's vectors")
        return cls(run_dir, config, load_checkpoint(run_dir / "best.pt", device), device)

    @classmethod
    def of(cls, run: "str | os.PathLike | PretrainedRun", device: str | torch.device = "cpu") -> "PretrainedRun":
        """``run`` itself when already loaded (callers hand one loaded run on), else ``load(run, device)``."""
        return run if isinstance(run, PretrainedRun) else cls.load(run, device)

    @classmethod
    def in_training(cls, config: RunConfig, model: PreRecModel, guide, probe: PreRecBatch,
                    sources: MultiDomainData) -> "PretrainedRun":
        """The run being trained, as it is now (its networks' current weights, shared; what a validation by
        zero-shot scores: ``inference/selection.py``); nothing is read from or written to disk."""
        run = cls(Path("<in training>"), config, {"model": model.state_dict()}, model.item_text.device)
        run._summary = source_summary(model, guide, probe, sources, with_draws=False)
        return run

    @property
    def label(self) -> str:
        return METHOD_LABELS[self.config.method]

    def fresh_model(self, data: MultiDomainData, item_text: Tensor, config: RunConfig | None = None) -> PreRecModel:
        """A model of ``config`` (default the run's) whose ``users`` plate is ``data``'s training users, with the
        run's networks: the start of fine-tuning."""
        model = build_model(replace(config or self.config, train=self.config.train), data, item_text.to(self.device))
        model.load_state_dict(self.nets)
        return model

    def model_on(self, data: MultiDomainData, item_text: Tensor) -> PreRecModel:
        """The run's networks on ``data``'s domains, items and every one of its users (what zero-shot scores). Built
        without clearing Pyro's parameter store (it is never trained; a run in training scores with it)."""
        return self._nets_on(len(data.domains), data.n_users, item_text, torch.as_tensor(data.item_keys()[0]))

    def _nets_on(self, n_domains: int, n_users: int, item_text: Tensor, item_key: Tensor | None = None) -> PreRecModel:
        """A scoring model of the run's networks over ``n_domains`` domains, ``n_users`` users and the items of
        ``item_text`` [J, T] (``item_key`` [J]: their distinct ids), on the run's device."""
        model = PreRecModel(self.config.model, n_domains, n_users, item_text.to(self.device), item_key).to(self.device)
        model.load_state_dict(self.nets)
        return model

    def on_sources(self, prepared: PreparedBenchmark) -> tuple[PreRecModel, object, PreRecBatch]:
        """The run's fitted model and guide on ``prepared``'s sources, and the probe batch that built the guide;
        loaded once for each prepared benchmark (scoring every target of a benchmark reads them several times)."""
        self.check_text(prepared)
        if self._sources is None or self._sources[0] is not prepared:
            _, model, guide, probe = load_on_sources(self.run_dir, prepared, self.device, self.config, self.checkpoint)
            self._sources = (prepared, model, guide, probe, latent_values(guide, probe, model))
        return self._sources[1:4]

    def check_text(self, prepared: PreparedBenchmark) -> None:
        """Refuse a benchmark whose text vectors are not made as the run's were (another centering: every score would
        be silently wrong)."""
        if prepared.text.centering != self.config.text_centering:
            raise ValueError(f"{self.run_dir} was trained on text centring {self.config.text_centering!r}, but this "
                             f"benchmark was prepared with {prepared.text.centering!r}; prepare it with the run's "
                             "text_encoder() (inference.runs.prepare_for_run does)")

    def source_estimates(self, prepared: PreparedBenchmark) -> dict[str, Tensor]:
        """The run's MAP estimates (posterior medians) of its latent sites on ``prepared``'s sources."""
        self.on_sources(prepared)
        return self._sources[4]

    @property
    def summary(self) -> dict:
        """``sources.pt`` (see the module docstring), read once; derived from the sources' data for a run written
        before it existed (and kept in the run directory when it is writable)."""
        if self._summary is None:
            path = self.run_dir / SOURCES_FILE
            if path.exists():
                self._summary = load_checkpoint(path, self.device)
            else:
                logger.warning("%s has no %s (runs written before it existed): deriving it once from the sources' "
                               "data", self.run_dir, SOURCES_FILE)
                prepared = prepare_for_run(self.config)
                self._summary = source_summary(*self.on_sources(prepared), prepared.sources)
                try:
                    save_checkpoint(path, self._summary)
                except OSError as error:
                    logger.warning("could not keep %s (%s); it will be derived again next time", path, error)
        return self._summary

    def known_offsets(self, item_ids: np.ndarray) -> dict[str, Tensor]:
        """The run's learned eps_v_shared for the catalogue ``item_ids`` (0 for ids its sources do not list): what
        zero-shot and the start of fine-tuning keep of a model with shared item offsets; {} for a model without."""
        if not self.config.model.shared_item_offsets:
            return {}
        summary = self.summary
        return learned_shared_offsets({EPS_V_SHARED: summary[EPS_V_SHARED].to(self.device)},
                                      np.asarray(summary["item_ids"], dtype=object), np.asarray(item_ids, dtype=object))

    def posterior_domain_draws(self, n_samples: int, prepared: PreparedBenchmark | None = None) -> Tensor:
        """``domain_draws_in_turn(n_samples)`` of the run's guide: from the run's bank, or (more draws than it
        keeps) from the guide on ``prepared``'s sources (the run's own when None). [n_samples, B]"""
        bank = self.summary["domain_draws"]
        if bank is not None and n_samples <= len(bank):
            return bank[:n_samples].to(self.device)
        return domain_draws_in_turn(*self.on_sources(prepared or prepare_for_run(self.config)), n_samples)

    def target_scorer(self, prepared: PreparedBenchmark, target: str, samples: int = 0, item_offsets: str = "zero",
                      backdoor_from: str = "prior", weigh_sequence: bool = True,
                      sequence_evidence: str = "ranks"):
        """The run pointed at ``target``'s catalogue and users, scored by intervention (Eq. 8), or by the back-door
        average over ``samples`` draws of D from its prior or (``backdoor_from="posterior"``) from the run's
        posterior of the sources' D_k. A model with ``shared_item_offsets`` keeps its learned eps_v_shared for
        target items the sources know; ``item_offsets="shared"``: see the module docstring. ``weigh_sequence`` (the
        default): that scorer averaged with its own version without the sequence model, each weighed by how high it
        ranked the user's earlier items (``inference/evidence.py``; docs/DESIGN.md, "Weighing the sequence model
        by the user's history"); False: Eq. 8 (or the back-door average) as it is. ``sequence_evidence``: what an
        earlier item says about each model (``inference.evidence.EVIDENCE``: its rank, the default, or its
        probability)."""
        return self._weighed(self._target_scorer(prepared, target, samples, item_offsets, backdoor_from),
                             weigh_sequence, sequence_evidence)

    def weighs(self) -> bool:
        """Whether weighing the sequence model can change this run's rankings (not for PreRec_n, whose scores are
        f_seq's alone: ``inference/evidence.py``)."""
        return not sequence_is_all(self.config.model)

    def _weighed(self, scorer, weigh_sequence: bool, evidence: str):
        """``scorer`` weighed by each user's history when asked and when that can change a ranking, else itself."""
        if evidence not in EVIDENCE:
            raise ValueError(f"sequence_evidence must be one of {EVIDENCE}, got {evidence!r}")
        return HistoryWeightedSequence(scorer, evidence=evidence) if weigh_sequence and self.weighs() else scorer

    def _target_scorer(self, prepared: PreparedBenchmark, target: str, samples: int, item_offsets: str,
                       backdoor_from: str):
        if item_offsets not in ITEM_OFFSETS:
            raise ValueError(f"item_offsets must be one of {ITEM_OFFSETS}, got {item_offsets!r}")
        if backdoor_from not in BACKDOOR_FROM:
            raise ValueError(f"backdoor_from must be one of {BACKDOOR_FROM}, got {backdoor_from!r}")
        self.check_text(prepared)
        posthoc = item_offsets == "shared" and self.config.model.use_offsets
        data = prepared.target(target)
        offsets = self.known_offsets(data.item_keys()[1])
        if posthoc:
            offsets.update(shared_item_offsets(self.source_estimates(prepared), prepared, target))
        model = self.model_on(data, prepared.item_text(data))
        label = self.label + (" (shared offsets)" if posthoc else "")
        if samples > 0 and self.config.model.use_domain:
            draws = None
            if backdoor_from == "posterior":
                draws = self.posterior_domain_draws(samples, prepared)
                label += " (back-door over the posterior D_k)"
            return BackdoorScorer(model, samples, name=label, item_offsets=offsets, domain_draws=draws)
        return InterventionScorer(model, name=label, item_offsets=offsets)

    def on_domain(self, items: TableLike, recent_interactions: TableLike | None = None,
                  now: int | str | pd.Timestamp | None = None, samples: int = 0,
                  backdoor_from: str = "prior", domain: str | None = None,
                  date_format: str | None = None, weigh_sequence: bool = True,
                  sequence_evidence: str = "ranks") -> DomainRecommender:
        """A recommender over catalogue ``items`` (item_id, text) with popularity from ``recent_interactions``
        (item_id, timestamp) of the interval before ``now`` (default: the latest recent interaction). ``samples`` >
        0: the back-door average over draws of D (``backdoor_from``: see ``target_scorer``) instead of Eq. 8.
        Tables with a ``domain`` column: ``domain`` picks one (needed when they hold several); ``date_format``: the
        strftime codes of the recent interactions' timestamps, where they are not epoch times or ISO dates.
        ``weigh_sequence``, ``sequence_evidence``: see ``target_scorer`` (a history's earlier items are weighed with
        the popularity of ``now``, the only one the recommender has)."""
        if backdoor_from not in BACKDOOR_FROM:
            raise ValueError(f"backdoor_from must be one of {BACKDOOR_FROM}, got {backdoor_from!r}")
        table = items_table(items, domain)
        text = catalogue_vectors(table["text"].tolist(), self.config.text_encoder(), [len(table)])  # [J, T], one domain
        text = text.to(self.device)
        factors = catalogue_factors(table, recent_interactions, now, self.config.popularity, domain,
                                    date_format)  # [1, J, F]
        model = self._nets_on(1, 1, text)
        trained_dim = self.nets["f_e.linear.weight"].shape[1]
        if text.shape[1] != trained_dim:
            raise ValueError(f"{self.run_dir} was trained on {trained_dim}-dimensional text vectors; "
                             f"{self.config.text_model!r} gave {text.shape[1]} here")
        offsets = self.known_offsets(table["item_id"].to_numpy(dtype=object)) or None
        scorer = None
        if samples > 0 and self.config.model.use_domain:
            draws = None if backdoor_from == "prior" else self.posterior_domain_draws(samples)
            scorer = BackdoorScorer(model, samples, name=f"{self.label} (back-door)", item_offsets=offsets,
                                    domain_draws=draws)
        recommender = DomainRecommender(model, table["item_id"].to_numpy(dtype=object), factors.to(self.device),
                                        offsets, scorer)
        # its own scorer (Eq. 8 or back-door), weighed
        recommender.scorer = self._weighed(recommender.scorer, weigh_sequence, sequence_evidence)
        return recommender

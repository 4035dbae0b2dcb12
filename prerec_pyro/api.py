"""The public API: load a pre-trained run, point it at a catalogue it has never seen, and recommend.

    from prerec_pyro import PretrainedRun

    run = PretrainedRun.load("runs/retail-countries/prerec-delta-seed0-20261201-120000")
    shop = run.on_domain("items.csv", recent_interactions="recent.csv")   # generic-format tables or DataFrames
    shop.recommend(["85123A", "71053"], k=10)           # one history: a DataFrame of rank, item_id, score
    shop.recommend({"u1": ["85123A"], "u2": ["22423", "71053"]}, k=5)     # many: one row per user and rank
    shop.score([["85123A", "71053"]])                   # [1, J] scores over the whole catalogue

Scores are zero-shot scores of the paper's Eq. 8, through the same ``pyro.poutine.do`` intervention as the
evaluation harness (``inference.intervene.InterventionScorer``): D = 0, every offset 0 (a model with shared item
offsets keeps its learned ones for items the sources listed), and the popularity factors F_j of the catalogue from
the recent interactions of the interval before ``now`` (none given: F = 0). The recommended item for a history is
the next item after its last one.

Shape legend: R = histories, L = positions (history + the next item), J = catalogue items, F = popularity factors.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from prerec_pyro.data.batches import PreRecBatch
from prerec_pyro.data.loaders.generic import ITEM_COLUMNS, read_table
from prerec_pyro.data.timestamps import epoch_seconds
from prerec_pyro.inference.checkpoint import load_checkpoint
from prerec_pyro.inference.intervene import InterventionScorer
from prerec_pyro.inference.runs import RunConfig, check_finished
from prerec_pyro.models.prerec import PreRecModel
from prerec_pyro.popularity import PopularityTable
from prerec_pyro.text import TextEncoderConfig, canonical_model_name, encode_texts

logger = logging.getLogger(__name__)
UNKNOWN = ("error", "drop")
TableLike = pd.DataFrame | str | os.PathLike


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


class PretrainedRun:
    """A pre-training run's configuration and networks (``best.pt``), on ``device``."""

    def __init__(self, run_dir: Path, config: RunConfig, nets: dict[str, Tensor], device: torch.device):
        self.run_dir, self.config, self.nets, self.device = run_dir, config, nets, device

    @classmethod
    def load(cls, run_dir: str | os.PathLike, device: str | torch.device = "cpu",
             text_model: str | None = None) -> "PretrainedRun":
        """Load ``run_dir`` (written by ``scripts/map_pretrain.py``) onto ``device`` (a run trained on a GPU loads
        on a CPU). ``text_model``, when given, must be the sentence encoder the run was trained with."""
        run_dir, device = Path(run_dir), check_device(device)
        config = check_finished(run_dir)
        if text_model is not None and canonical_model_name(text_model) != canonical_model_name(config.text_model):
            raise ValueError(f"{run_dir} was trained on text vectors of {config.text_model!r}, not {text_model!r}: "
                             "its networks only understand that encoder's vectors")
        nets = load_checkpoint(run_dir / "best.pt", device)["model"]
        return cls(run_dir, config, nets, device)

    def on_domain(self, items: TableLike, recent_interactions: TableLike | None = None,
                  now: int | str | pd.Timestamp | None = None) -> "DomainRecommender":
        """A recommender over catalogue ``items`` (item_id, text) with popularity from ``recent_interactions``
        (item_id, timestamp) of the interval before ``now`` (default: the latest recent interaction)."""
        table = _items_table(items)
        text = torch.as_tensor(encode_texts(table["text"].tolist(), TextEncoderConfig(model=self.config.text_model)),
                               dtype=torch.float32)  # [J, T]
        factors = self._factors(table, recent_interactions, now)  # [1, J, F]
        model = PreRecModel(self.config.model, 1, 1, text.to(self.device)).to(self.device)
        model.load_state_dict(self.nets)
        offsets = self._shared_offsets(table) if self.config.model.shared_item_offsets else None
        return DomainRecommender(model, table["item_id"].to_numpy(dtype=object), factors.to(self.device), offsets)

    def _factors(self, items: pd.DataFrame, recent: TableLike | None, now) -> Tensor:
        n_items, config = len(items), self.config.popularity
        if recent is None:
            return torch.zeros(1, n_items, config.n_factors)
        log = recent if isinstance(recent, pd.DataFrame) else read_table(recent, ("item_id", "timestamp"))
        source = "recent_interactions" if isinstance(recent, pd.DataFrame) else str(recent)
        missing = [c for c in ("item_id", "timestamp") if c not in log.columns]
        if missing:
            raise ValueError(f"{source}: missing column(s) {missing}; expected item_id and timestamp")
        rows = pd.Index(items["item_id"]).get_indexer(log["item_id"].astype(str))  # [N], -1: not in the catalogue
        if (rows < 0).any():
            logger.warning("%s: %d of %d interactions name items outside the catalogue; they are not counted",
                           source, int((rows < 0).sum()), len(rows))
        times = epoch_seconds(log["timestamp"], source).to_numpy()[rows >= 0]
        if not len(times):
            raise ValueError(f"{source}: no interaction names an item of the catalogue")
        table = PopularityTable.from_log(rows[rows >= 0], times, n_items, config)
        at = int(times.max()) if now is None else int(epoch_seconds(pd.Series([now]), "now").iloc[0])
        return table.factors(torch.as_tensor(table.period_of(np.array([at]))), torch.arange(n_items))  # [1, J, F]

    def _shared_offsets(self, items: pd.DataFrame) -> dict[str, Tensor]:
        """eps_v_shared of the catalogue's items from the run's own source estimates (needs the run's data)."""
        from prerec_pyro.inference.runs import prepare_for_run
        from prerec_pyro.inference.zero_shot import known_item_offsets

        return known_item_offsets(self.run_dir, prepare_for_run(self.config), items["item_id"].to_numpy(dtype=object),
                                  self.device)


def _items_table(items: TableLike) -> pd.DataFrame:
    """The catalogue as item_id (text, unique) and text (not all empty)."""
    source = "items" if isinstance(items, pd.DataFrame) else str(items)
    table = items.copy() if isinstance(items, pd.DataFrame) else read_table(items, ITEM_COLUMNS)
    missing = [c for c in ITEM_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; expected {list(ITEM_COLUMNS)}")
    table["item_id"] = table["item_id"].astype(str)
    table["text"] = table["text"].fillna("").astype(str)
    duplicated = table["item_id"].duplicated()
    if duplicated.any():
        raise ValueError(f"{source}: item_id {table['item_id'][duplicated].iloc[0]!r} appears more than once")
    if table.empty or not table["text"].str.strip().any():
        raise ValueError(f"{source}: the catalogue has no item text; PreRec scores items by their text")
    return table.reset_index(drop=True)


class DomainRecommender:
    """Zero-shot scores and top-k recommendations over one catalogue (see the module docstring)."""

    def __init__(self, model: PreRecModel, item_ids: np.ndarray, factors: Tensor, item_offsets=None):
        self.model, self.item_ids, self.factors = model, item_ids, factors  # factors [1, J, F]
        self.index = pd.Index(item_ids)
        self.scorer = InterventionScorer(model, name="PreRec", item_offsets=item_offsets)

    def rows(self, histories: Sequence[Sequence[str]], unknown: str = "error") -> list[np.ndarray]:
        """Each history's item ids as catalogue rows (the last ``max_len - 1`` kept)."""
        if unknown not in UNKNOWN:
            raise ValueError(f"unknown must be one of {UNKNOWN}, got {unknown!r}")
        out = []
        for number, history in enumerate(histories):
            if isinstance(history, str):
                raise ValueError(f"history {number} is a string ({history!r}); expected a list of item ids")
            ids = [str(item) for item in history]
            rows = self.index.get_indexer(ids)
            if (rows < 0).any() and unknown == "error":
                bad = [item for item, row in zip(ids, rows) if row < 0][:5]
                raise ValueError(f"history {number}: item id(s) {bad} are not in the catalogue "
                                 "(pass unknown='drop' to drop them with a warning)")
            if (rows < 0).any():
                logger.warning("history %d: dropping %d item id(s) not in the catalogue", number, int((rows < 0).sum()))
            rows = rows[rows >= 0][-(self.model.config.max_len - 1):]
            if not len(rows):
                raise ValueError(f"history {number} is empty: PreRec recommends the next item after a history")
            out.append(rows)
        return out

    def _batch(self, rows: list[np.ndarray]) -> tuple[PreRecBatch, Tensor]:
        """One batch whose only target position per row is the one after the history. Returns it and that
        position per row [R]."""
        device, n_factors = self.factors.device, self.factors.shape[-1]
        lengths = torch.as_tensor([len(r) for r in rows], device=device)  # [R]
        n_rows, length = len(rows), max(len(r) for r in rows) + 1
        items = torch.zeros(n_rows, length, dtype=torch.long, device=device)  # [R, L]; the next slot holds item 0
        for r, history in enumerate(rows):
            items[r, : len(history)] = torch.as_tensor(history, device=device)
        mask = torch.zeros(n_rows, length, dtype=torch.bool, device=device)  # [R, L]
        mask[torch.arange(n_rows, device=device), lengths] = True
        everyone = torch.arange(n_rows, device=device)  # [R]: each history its own user
        batch = PreRecBatch(domain=0, item_offset=0, n_domain_items=len(self.item_ids), user_index=everyone,
                            user_position=everyone, n_sequences=n_rows, items=items, targets=items,
                            target_mask=mask, period_index=torch.zeros_like(items),
                            factors_targets=self.factors.new_zeros(n_rows, length, n_factors),
                            factors_candidates=self.factors, negatives=None)
        return batch, lengths

    @torch.no_grad()
    def score(self, histories: Sequence[Sequence[str]], unknown: str = "error", batch_size: int = 256) -> Tensor:
        """Scores of every catalogue item as the next item of each history. [R, J]"""
        return self._score_rows(self.rows(histories, unknown), batch_size)

    def _score_rows(self, rows: list[np.ndarray], batch_size: int = 256) -> Tensor:
        out = []
        for start in range(0, len(rows), batch_size):
            chunk = rows[start: start + batch_size]
            self.model.set_catalogue(1, len(chunk), self.model.item_text)  # the users plate: this chunk
            batch, position = self._batch(chunk)
            out.append(self.scorer(batch)[torch.arange(len(chunk), device=position.device), position])  # [r, J]
        return torch.cat(out)

    def recommend(self, histories: Sequence[str] | Sequence[Sequence[str]] | Mapping[str, Sequence[str]],
                  k: int = 10, exclude_seen: bool = True, unknown: str = "error") -> pd.DataFrame:
        """The top-``k`` items after each history: one history (a list of item ids) gives rank, item_id, score;
        many (a list of lists, or a mapping user -> history) give user_id, rank, item_id, score. Ties keep
        catalogue order, so the result is deterministic."""
        single = len(histories) > 0 and not isinstance(histories, Mapping) and isinstance(next(iter(histories)), str)
        users = list(histories) if isinstance(histories, Mapping) else list(range(1 if single else len(histories)))
        lists = [histories] if single else (list(histories.values()) if isinstance(histories, Mapping)
                                           else list(histories))
        if not 1 <= k <= len(self.item_ids):
            raise ValueError(f"k must be in [1, {len(self.item_ids)}] (the catalogue size), got {k}")
        rows = self.rows(lists, unknown)
        scores = self._score_rows(rows)  # [R, J]
        if exclude_seen:
            for r, seen in enumerate(rows):
                scores[r, torch.as_tensor(seen, device=scores.device)] = -torch.inf
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k].cpu()  # [R, k]
        top = scores.cpu().gather(1, order)
        frame = pd.DataFrame({"user_id": np.repeat(users, k), "rank": np.tile(np.arange(1, k + 1), len(users)),
                              "item_id": self.item_ids[order.reshape(-1).numpy()],
                              "score": top.reshape(-1).numpy()})
        return frame.drop(columns="user_id") if single else frame

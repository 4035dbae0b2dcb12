"""Zero-shot recommendation over a catalogue no run has seen: scores and top-k lists for item-id histories.

``DomainRecommender`` scores the next item after each history through the same ``pyro.poutine.do`` intervention
as the evaluation harness (``InterventionScorer``: the paper's Eq. 8). ``PretrainedRun.on_domain``
(``inference/pretrained.py``) builds one from a run and a catalogue.

Shape legend: R = histories, L = positions (history + the next item), J = catalogue items, F = popularity factors.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from prerec_pyro.data.batches import PreRecBatch, counted_entries
from prerec_pyro.data.loaders.generic import ITEM_COLUMNS, read_table, rows_of_domain
from prerec_pyro.data.timestamps import epoch_seconds
from prerec_pyro.models.prerec import PreRecModel
from prerec_pyro.popularity import PopularityConfig, PopularityTable

from .intervene import InterventionScorer
from .scoring import target_scores

logger = logging.getLogger(__name__)
UNKNOWN = ("error", "drop")
TableLike = pd.DataFrame | str | os.PathLike


def catalogue_factors(items: pd.DataFrame, recent: TableLike | None, now, config: PopularityConfig,
                      domain: str | None = None, date_format: str | None = None) -> Tensor:
    """Popularity factors F_j of the catalogue ``items`` from the ``recent`` interactions (item_id, timestamp; the
    rows of ``domain`` when they carry a domain column) of the interval before ``now`` (default: the latest of them);
    none given: F = 0. [1, J, F]"""
    n_items = len(items)
    if recent is None:
        return torch.zeros(1, n_items, config.n_factors)
    log = recent if isinstance(recent, pd.DataFrame) else read_table(recent, ("item_id", "timestamp"))
    source = "recent_interactions" if isinstance(recent, pd.DataFrame) else str(recent)
    log = rows_of_domain(log, domain, source, shared_rows=False)
    missing = [c for c in ("item_id", "timestamp") if c not in log.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; expected item_id and timestamp")
    rows = pd.Index(items["item_id"]).get_indexer(log["item_id"].astype(str))  # [N], -1: not in the catalogue
    if (rows < 0).any():
        logger.warning("%s: %d of %d interactions name items outside the catalogue; they are not counted",
                       source, int((rows < 0).sum()), len(rows))
    times = epoch_seconds(log["timestamp"], source, date_format).to_numpy()[rows >= 0]
    if not len(times):
        raise ValueError(f"{source}: no interaction names an item of the catalogue")
    table = PopularityTable.from_log(rows[rows >= 0], times, n_items, config)
    at = int(times.max()) if now is None else int(epoch_seconds(pd.Series([now]), "now").iloc[0])
    factors = table.factors(torch.as_tensor(table.period_of(np.array([at]))), torch.arange(n_items))  # [1, J, F]
    if not bool(factors.any()):
        stamp = lambda seconds: pd.Timestamp(int(seconds), unit="s")  # noqa: E731
        logger.warning("%s: no interaction in the popularity window before %s (%g days; the log spans %s to %s): "
                       "every item's popularity is 0", source, stamp(at), config.interval_days, stamp(times.min()),
                       stamp(times.max()))
    return factors


def items_table(items: TableLike, domain: str | None = None) -> pd.DataFrame:
    """The catalogue as item_id (text, unique) and text (not all empty): the rows of ``domain`` (and those with an
    empty domain) of a table with a domain column; a table of several domains needs ``domain``."""
    source = "items" if isinstance(items, pd.DataFrame) else str(items)
    table = items.copy() if isinstance(items, pd.DataFrame) else read_table(items, ITEM_COLUMNS)
    table = rows_of_domain(table, domain, source, shared_rows=True)
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

    def __init__(self, model: PreRecModel, item_ids: np.ndarray, factors: Tensor, item_offsets=None, scorer=None):
        """``scorer``: a zero-shot scorer of ``model`` (default: Eq. 8, ``InterventionScorer``), e.g. a
        ``BackdoorScorer``."""
        self.model, self.item_ids, self.factors = model, item_ids, factors  # factors [1, J, F]
        self.counted = (factors, *counted_entries(factors))  # found once, read by every batch (counted_candidates)
        self.index = pd.Index(item_ids)
        self.scorer = scorer or InterventionScorer(model, name="PreRec", item_offsets=item_offsets)
        assert self.scorer.model is model

    def rows(self, histories: Sequence[Sequence[str]], unknown: str = "error",
             labels: Sequence | None = None, skip_emptied: bool = False) -> list[np.ndarray | None]:
        """Each history's item ids as catalogue rows, whole (the model reads the last ``max_len - 1``; the
        recommendations leave out every one). ``labels`` name the histories in messages (default: their number). A
        history left empty is an error naming it; with ``skip_emptied``, one that dropping its unknown items emptied
        is None instead (``recommend`` skips those)."""
        if unknown not in UNKNOWN:
            raise ValueError(f"unknown must be one of {UNKNOWN}, got {unknown!r}")
        if len(histories) == 0:
            raise ValueError("histories is empty: pass one history (a list of item ids) or several")
        out, labels = [], list(range(len(histories))) if labels is None else list(labels)
        for number, history in zip(labels, histories):
            if isinstance(history, str) or not isinstance(history, Sequence | np.ndarray | pd.Series):
                raise ValueError(f"history {number} is {history!r}, not a list; expected a list of item ids")
            ids = [str(item) for item in history]
            rows = self.index.get_indexer(ids)
            if (rows < 0).any() and unknown == "error":
                bad = [item for item, row in zip(ids, rows) if row < 0][:5]
                floats = [item for item in bad if item.endswith(".0") and item[:-2] in self.index]
                hint = (f"; {floats[0]!r} is read as text and the catalogue lists {floats[0][:-2]!r}: write integer "
                        "ids without '.0' (a numeric column read as floats)") if floats else ""
                raise ValueError(f"history {number}: item id(s) {bad} are not in the catalogue{hint} "
                                 "(to drop them with a warning: unknown='drop', --unknown drop, or "
                                 "\"unknown\": \"drop\" in a request)")
            if (rows < 0).any():
                logger.warning("history %s: dropping %d item id(s) not in the catalogue", number,
                               int((rows < 0).sum()))
            rows = rows[rows >= 0]
            if not len(rows) and len(ids) and skip_emptied:
                out.append(None)
                continue
            if not len(rows):
                left = " after dropping the items outside the catalogue" if len(ids) else ""
                raise ValueError(f"history {number} is empty{left}: PreRec recommends the next item after a history")
            out.append(rows)
        return out

    def _batch(self, rows: list[np.ndarray]) -> PreRecBatch:
        """One batch whose only target position per row is the one after the history (its last ``max_len - 1``
        items: the window the model reads)."""
        device, n_factors = self.factors.device, self.factors.shape[-1]
        rows = [history[-(self.model.config.max_len - 1):] for history in rows]
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
                            factors_candidates=self.factors, negatives=None, counted_rows=self.counted)
        return batch

    @torch.no_grad()
    def score(self, histories: Sequence[Sequence[str]], unknown: str = "error", batch_size: int = 256) -> Tensor:
        """Scores of every catalogue item as the next item of each history. [R, J]"""
        return self._score_rows(self.rows(histories, unknown), batch_size)

    def _score_rows(self, rows: list[np.ndarray], batch_size: int = 256) -> Tensor:
        out = []
        for start in range(0, len(rows), batch_size):
            chunk = rows[start: start + batch_size]
            self.model.set_catalogue(1, len(chunk), self.model.item_text)  # the users plate: this chunk
            batch = self._batch(chunk)
            scores = target_scores(self.scorer, batch)  # [r, J]: one target per row, in target_layout() order
            rows_of = batch.target_layout()[0] // batch.items.shape[1]  # [r]
            out.append(scores.new_empty(scores.shape).index_copy_(0, rows_of, scores))  # [r, J] in history order
        return torch.cat(out)

    def recommend(self, histories: Sequence[str] | Sequence[Sequence[str]] | Mapping[str, Sequence[str]],
                  k: int = 10, exclude_seen: bool = True, unknown: str = "error") -> pd.DataFrame:
        """The top-``k`` items after each history: one history (a list of item ids) gives rank, item_id, score;
        many (a list of lists, or a mapping user -> history) give user_id, rank, item_id, score. Ties keep
        catalogue order, so the result is deterministic. With ``exclude_seen`` no item of the whole history comes
        back (the model reads its last ``max_len - 1`` items), and a history with fewer than ``k`` unseen items
        gets only those, with a warning. With ``unknown="drop"``, a user none of whose items the catalogue lists gets
        no list, with a warning naming them (an empty history given as such is an error)."""
        single = len(histories) > 0 and not isinstance(histories, Mapping) and \
            not isinstance(next(iter(histories)), (list, tuple, np.ndarray, pd.Series))  # one history of item ids
        users = list(histories) if isinstance(histories, Mapping) else list(range(1 if single else len(histories)))
        lists = [histories] if single else (list(histories.values()) if isinstance(histories, Mapping)
                                           else list(histories))
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(self.item_ids):
            raise ValueError(f"k must be an integer in [1, {len(self.item_ids)}] (the catalogue size), got {k!r}")
        rows = self.rows(lists, unknown, labels=users, skip_emptied=True)  # None: no item of the catalogue left
        skipped = [user for user, seen in zip(users, rows) if seen is None]
        if skipped:  # named and skipped, the others served
            logger.warning("%d user(s) have no item of the catalogue in their history and get no recommendations "
                           "(e.g. %s)", len(skipped), skipped[:5])
            users, rows = [u for u, r in zip(users, rows) if r is not None], [r for r in rows if r is not None]
            if not rows:
                return pd.DataFrame(columns=["user_id", "rank", "item_id", "score"]).drop(
                    columns="user_id" if single else [])
        scores = self._score_rows(rows)  # [R, J]
        available = np.full(len(rows), len(self.item_ids))  # [R] items each list may hold
        if exclude_seen:
            for r, seen in enumerate(rows):  # the whole history, not only the window the model read
                scores[r, torch.as_tensor(seen, device=scores.device)] = -torch.inf
            available -= np.array([len(np.unique(seen)) for seen in rows], dtype=np.int64)
        short = np.flatnonzero(available < k)
        if len(short):
            logger.warning("%d of %d histories have fewer than k = %d unseen items (the fewest: %d); their lists hold "
                           "only the unseen items", len(short), len(rows), k, int(available[short].min()))
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k].cpu()  # [R, k]
        top = scores.cpu().gather(1, order)  # [R, k]
        listed = np.arange(k)[None, :] < available[:, None]  # [R, k]: never a seen item, never -inf
        frame = pd.DataFrame({"user_id": np.repeat(users, k), "rank": np.tile(np.arange(1, k + 1), len(users)),
                              "item_id": self.item_ids[order.reshape(-1).numpy()],
                              "score": top.reshape(-1).numpy()})[listed.reshape(-1)].reset_index(drop=True)
        return frame.drop(columns="user_id") if single else frame

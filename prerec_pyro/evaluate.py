"""Full-catalogue evaluation: one harness for every method.

A *scorer* maps a ``PreRecBatch`` (histories, the domain's whole catalogue as candidates, popularity factors) to
scores over the domain's items ``[R, L, J_k]``; a scorer that also has ``score_targets`` (PreRec's) is asked for
the scores at the batch's target positions only, ``[A, J_k]``, which are all that is ranked. PreRec, PreRec_n and
every baseline go through ``evaluate_domain``, so all are ranked on the same samples. Samples are the next-item
positions with at least one item of history (absolute position >= 1) of the chosen users; ties take the average
rank (docs/DESIGN.md, "Metrics").

``summarize`` reports one of ``SUBSETS`` of a target's samples: "all"; "unseen", whose item is in no source
catalogue and whose user is in no source domain; "new_items", whose item is in no source catalogue (any user).

History rule (``EvalConfig.history_items``, one or more of ``HISTORY_RULES``), the same for every method: "keep"
ranks the scores as the method gives them; "exclude" ranks last every item the user had interacted with in the
domain before the target (the whole sequence, not only the target's window), the catalogue size unchanged so K
and r-NDCG's normalisation do not move (docs/DESIGN.md, "One protocol"). Every rule asked for is ranked from one
scoring pass.

Shape legend: R = windows in a batch, L = positions, J = the domain's items, T = evaluated targets, A = a batch's
targets.
"""

from __future__ import annotations

import logging
import math
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from prerec_pyro.data.batches import BatchBuilder, PreRecBatch
from prerec_pyro.data.dataset import DomainData, MultiDomainData, Windows
from prerec_pyro.metrics import average_ranks, bootstrap_ci, random_baseline, sample_metrics

logger = logging.getLogger(__name__)
SUBSETS = ("all", "unseen", "new_items")
HISTORY_RULES = ("keep", "exclude")


class Scorer(Protocol):
    """Anything that scores a domain's whole catalogue for every position of a batch."""

    name: str

    def __call__(self, batch: PreRecBatch) -> Tensor:  # [R, L, J]
        ...


@dataclass(frozen=True)
class EvalConfig:
    k_percent: float = 0.5
    split: str = "test"
    score_budget: int = 2**24  # scores held at once: R * L * J
    n_boot: int = 1000
    seed: int = 0
    device: str = "cpu"
    max_users: int | None = None  # evaluate a fixed seeded subset of at most this many users (validation)
    rndcg_b: float | None = None  # r-NDCG@K%'s b; None: 600 / K%, the paper's (see prerec_pyro.metrics)
    history_items: tuple[str, ...] | str = ("keep",)  # the rules ranked (HISTORY_RULES); summarize's default: first

    def __post_init__(self) -> None:
        rules = (self.history_items,) if isinstance(self.history_items, str) else tuple(self.history_items)
        if not rules or len(set(rules)) != len(rules) or any(rule not in HISTORY_RULES for rule in rules):
            raise ValueError(f"EvalConfig.history_items must be distinct rules out of {HISTORY_RULES}, "
                             f"got {self.history_items!r}")
        object.__setattr__(self, "history_items", rules)
        if not (math.isfinite(self.k_percent) and 0.0 < self.k_percent <= 100.0):
            raise ValueError(f"EvalConfig.k_percent must be in (0, 100] (a percentage), got {self.k_percent!r}")
        if self.rndcg_b is not None and not (math.isfinite(self.rndcg_b) and self.rndcg_b > 0.0):
            raise ValueError(f"EvalConfig.rndcg_b must be None (600 / K%) or a number > 0, got {self.rndcg_b!r}")


@dataclass
class SampleRanks:
    """Per-sample results of one method on one domain."""

    domain: str
    n_items: int
    ranks: np.ndarray  # [T] average rank, 1-based
    users: np.ndarray  # [T] local user index
    unseen: np.ndarray  # [T] bool: item in no source catalogue and user in no source domain
    new_item: np.ndarray | None = None  # [T] bool: item in no source catalogue; None: none is (all False)
    history_ranks: dict[str, np.ndarray] | None = None  # rule -> [T] ranks; None: ``ranks`` under "keep"

    def __post_init__(self) -> None:
        if self.new_item is None:
            self.new_item = np.zeros(len(self.ranks), dtype=bool)
        if self.history_ranks is None:
            self.history_ranks = {"keep": self.ranks}

    def ranks_under(self, rule: str) -> np.ndarray:
        """The ranks under history rule ``rule`` (one of the rules this result was ranked under). [T]"""
        if rule not in self.history_ranks:
            raise ValueError(f"{self.domain}: not ranked under history rule {rule!r} (only "
                             f"{list(self.history_ranks)}); evaluate with EvalConfig(history_items=...) naming it")
        return self.history_ranks[rule]

    def subset_mask(self, subset: str) -> np.ndarray:
        """The samples of ``subset`` (one of ``SUBSETS``). [T] bool"""
        if subset == "all":
            return np.ones(len(self.ranks), dtype=bool)
        if subset == "unseen":
            return self.unseen
        if subset == "new_items":
            return self.new_item
        raise ValueError(f"unknown subset {subset!r}; expected one of {SUBSETS}")


def eval_samples(data: MultiDomainData, domain: int, split: str, max_users: int | None = None, seed: int = 0):
    """The windows of ``split`` users (at most ``max_users`` of them) with their evaluated positions (history >= 1)."""
    dom = data.domains[domain]
    users = dom.users_in(split)
    if max_users is not None and len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, size=max_users, replace=False))
    windows = dom.windows(users, data.sequences)
    mask = windows.target_mask & (windows.position >= 1)
    return windows, mask


def trimmed_lengths(target_mask: np.ndarray) -> np.ndarray:
    """Positions up to the last target of each window (what a batch keeps after trimming padding). [W]"""
    filled = target_mask.any(axis=1)  # [W]
    last = target_mask.shape[1] - np.argmax(target_mask[:, ::-1], axis=1)  # [W]
    return np.where(filled, last, 1)


def pack_by_length(order: np.ndarray, lengths: np.ndarray, n_items: int, budget: int) -> list[np.ndarray]:
    """Split windows ``order`` (sorted by ascending ``lengths``) into consecutive batches whose scores
    rows x longest length x ``n_items`` stay within ``budget`` (at least one window per batch)."""
    batches, start, sorted_lengths = [], 0, lengths[order]
    most = max(1, budget // n_items)  # no batch holds more windows than this (every length is >= 1)
    while start < len(order):
        stop = min(len(order), start + most)
        sizes = np.arange(1, stop - start + 1) * sorted_lengths[start:stop] * n_items  # increasing
        count = max(1, int(np.searchsorted(sizes, budget, side="right")))
        batches.append(order[start: start + count])
        start += count
    return batches


def new_item_flags(data: MultiDomainData, domain: int, items: np.ndarray, source_items: set[str]) -> np.ndarray:
    """A target sample is a new item's when its item (local index in ``items``) is in no source catalogue. [T]"""
    dom = data.domains[domain]
    item_new = ~np.isin(dom.item_ids, list(source_items))  # [J]
    return item_new[items]


def unseen_flags(data: MultiDomainData, domain: int, items: np.ndarray, users: np.ndarray,
                 source_items: set[str], source_users: set[str]) -> np.ndarray:
    """A target sample is unseen when its item is in no source catalogue and its user in no source domain."""
    dom = data.domains[domain]
    user_unseen = ~np.isin(dom.user_ids, list(source_users))  # [U]
    return new_item_flags(data, domain, items, source_items) & user_unseen[users]


def eval_batches(data: MultiDomainData, domain: int, config: EvalConfig):
    """Yields (windows, batch) over the evaluated samples of ``domain`` (``eval_samples``), windows of similar
    length together, each batch's scores within ``config.score_budget``; the windows' and the batch's targets are
    the evaluated positions, and the batch's trailing padding is trimmed (L' <= L)."""
    windows, mask = eval_samples(data, domain, config.split, config.max_users, config.seed)
    builder = BatchBuilder(data, n_negatives=None, device=config.device)
    lengths = trimmed_lengths(windows.target_mask)  # [W]
    by_length = np.argsort(lengths, kind="stable")  # similar lengths share a batch
    for rows in pack_by_length(by_length, lengths, data.domains[domain].n_items, config.score_budget):
        if mask[rows].any():
            selected = replace(windows.select(rows), target_mask=mask[rows])
            yield selected, builder.make(domain, selected)


@torch.no_grad()
def evaluate_domain(scorer: Scorer, data: MultiDomainData, domain: int, config: EvalConfig,
                    source_items: set[str] | None = None, source_users: set[str] | None = None) -> SampleRanks:
    """Rank the full catalogue for every evaluated position of ``config.split`` users of ``domain``, under each
    history rule of ``config.history_items`` (one scoring pass); ``ranks`` are under the first."""
    dom = data.domains[domain]
    ranks, users, items = {rule: [] for rule in config.history_items}, [], []
    with fixed_item_side(scorer):
        for windows, batch in eval_batches(data, domain, config):
            keep = batch.target_mask.cpu().numpy()  # [R, L']
            seen = seen_mask(dom, windows, keep, config.device) if "exclude" in config.history_items else None
            for rule, values in batch_ranks(scorer, batch, keep, dom.n_items, seen, config.history_items).items():
                ranks[rule].append(values.cpu().numpy())
            users.append(np.broadcast_to(windows.user[:, None], keep.shape)[keep])
            items.append(windows.items[:, : keep.shape[1]][keep])
    ranks = {rule: np.concatenate(values) if values else np.zeros(0) for rule, values in ranks.items()}
    users = np.concatenate(users) if users else np.zeros(0, dtype=np.int64)
    items = np.concatenate(items) if items else np.zeros(0, dtype=np.int64)
    if source_items is None or source_users is None:
        unseen = np.zeros(len(users), dtype=bool)
    else:
        unseen = unseen_flags(data, domain, items, users, source_items, source_users)
    new_item = None if source_items is None else new_item_flags(data, domain, items, source_items)
    return SampleRanks(dom.name, dom.n_items, ranks[config.history_items[0]], users, unseen, new_item, ranks)


def fixed_item_side(scorer: Scorer) -> AbstractContextManager:
    """The scorer's ``fixed_item_side()`` block when it has one (a scorer whose catalogue side is the same for every
    batch of an evaluation builds it once inside), else a block that does nothing."""
    block = getattr(scorer, "fixed_item_side", None)
    return nullcontext() if block is None else block()


def seen_mask(dom: DomainData, windows: Windows, keep: np.ndarray, device: str) -> Tensor:
    """Whether each catalogue item occurs in the user's whole sequence before each target (``keep`` positions of
    ``windows``, row-major), not only in the target's window: an item first taken at position f is seen at every
    position p > f. [T, J] bool"""
    users, inverse = np.unique(windows.user, return_inverse=True)  # [U_b], [R]
    starts, lengths = dom.seq_offsets[users], np.diff(dom.seq_offsets)[users]  # [U_b]
    owner = np.repeat(np.arange(len(users)), lengths)  # [N_b]
    position = np.arange(len(owner)) - np.repeat(np.cumsum(lengths) - lengths, lengths)  # [N_b]
    key = owner * dom.n_items + dom.seq_items[starts[owner] + position]  # [N_b], in sequence order per user
    distinct, first = np.unique(key, return_index=True)  # the first occurrence of each (user, item)
    first_position = np.full((len(users), dom.n_items), np.iinfo(np.int64).max, dtype=np.int64)  # [U_b, J]
    first_position.reshape(-1)[distinct] = position[first]
    target_user = np.broadcast_to(inverse.reshape(-1, 1), keep.shape)[keep]  # [T]
    target_position = windows.position[:, : keep.shape[1]][keep]  # [T] absolute position in the sequence
    return torch.as_tensor(first_position[target_user] < target_position[:, None], device=device)  # [T, J]


def batch_ranks(scorer: Scorer, batch: PreRecBatch, keep: np.ndarray, n_items: int, seen: Tensor | None = None,
                rules: tuple[str, ...] = ("keep",)) -> dict[str, Tensor]:
    """Average ranks at the ``keep`` positions [R, L] (the batch's targets), in row-major order, under each history
    rule of ``rules`` (``seen`` [T, J], row-major: the items ranked last by "exclude"). From the scorer's scores
    at the targets only when it has ``score_targets`` ([A, J] in ``batch.target_layout()`` order, e.g. PreRec's
    scorers), else from its [R, L, J] scores. {rule: [T]}"""
    score_targets = getattr(scorer, "score_targets", None)
    if score_targets is None:
        scores = scorer(batch)  # [R, L, J]
        assert scores.shape == (*keep.shape, n_items), (scorer.name, tuple(scores.shape))
        out = {"keep": ranks_at(scores, batch.targets, keep)} if "keep" in rules else {}
        if "exclude" in rules:
            where = torch.as_tensor(np.flatnonzero(keep), device=scores.device)  # [T]
            rows = scores.reshape(-1, n_items)[where]  # [T, J]
            out["exclude"] = average_ranks(rank_seen_last(rows, seen), batch.targets.reshape(-1)[where])
        return out
    scores = score_targets(batch)  # [A, J]
    assert scores.shape == (int(keep.sum()), n_items), (scorer.name, tuple(scores.shape))
    row_major = torch.argsort(batch.target_layout()[0])  # the row-major order of the layout's targets
    targets = batch.layout_targets()  # [A]
    out = {"keep": average_ranks(scores, targets)[row_major]} if "keep" in rules else {}
    if "exclude" in rules:  # ranked in row-major order, as ``seen`` is
        out["exclude"] = average_ranks(rank_seen_last(scores[row_major], seen), targets[row_major])
    return out


def rank_seen_last(scores: Tensor, seen: Tensor) -> Tensor:
    """``scores`` [T, J] (a copy of the scorer's: filled in place) with the ``seen`` items [T, J] below every other
    real score (the lowest finite value, so a seen target is still ranked, among the seen items, and padding's -inf
    stays below). [T, J]"""
    return scores.masked_fill_(seen, torch.finfo(scores.dtype).min)


def ranks_at(scores: Tensor, targets: Tensor, keep: np.ndarray) -> Tensor:
    """Average ranks of the ``keep`` positions ``[R, L]`` of ``scores [R, L, J]`` (gathered block by block by
    ``average_ranks``, never copied out whole). [T]"""
    flat = scores.reshape(-1, scores.shape[-1])  # [R*L, J]
    where = torch.as_tensor(np.flatnonzero(keep), device=scores.device)  # [T]
    return average_ranks(flat, targets.reshape(-1)[where], rows=where)


def summarize(result: SampleRanks, config: EvalConfig, subset: str = "all",
              history_items: str | None = None) -> dict[str, float]:
    """Mean of each metric over ``subset`` (one of ``SUBSETS``: "all", "unseen", "new_items") samples, with bootstrap
    CIs over users, under history rule ``history_items`` (default: the first of ``config.history_items``)."""
    keep = result.subset_mask(subset)
    out: dict[str, float] = {"n_samples": int(keep.sum())}
    if not keep.any():
        return out
    rule = history_items or config.history_items[0]
    ranks = torch.as_tensor(result.ranks_under(rule)[keep], dtype=torch.float64)
    users = torch.as_tensor(result.users[keep], dtype=torch.long)
    for name, values in sample_metrics(ranks, result.n_items, config.k_percent, config.rndcg_b).items():
        low, high = bootstrap_ci(values.double(), users, n_boot=config.n_boot, seed=config.seed)
        out[name] = float(values.double().mean())
        out[f"{name}_low"], out[f"{name}_high"] = float(low), float(high)
    return out


def random_summary(n_items: int, config: EvalConfig, n_samples: int) -> dict[str, float]:
    """The closed-form Random baseline in the same layout as ``summarize`` (no interval: it is exact); like
    ``summarize``, no metric without samples."""
    out: dict[str, float] = {"n_samples": n_samples}
    if n_samples == 0:
        return out
    for name, value in random_baseline(n_items, config.k_percent, b=config.rndcg_b).items():
        out[name] = out[f"{name}_low"] = out[f"{name}_high"] = float(value)
    return out


def results_table(rows: list[dict]) -> pd.DataFrame:
    """Rows of {method, domain, subset, [history_items,] metrics...} -> one table, with the unweighted mean over
    domains (per method, subset and history rule)."""
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    keys = ["method", "subset"] + (["history_items"] if "history_items" in table.columns else [])
    metric_cols = [c for c in table.columns if c not in ("method", "domain", *keys)]
    mean = table.groupby(keys, sort=False)[metric_cols].mean().reset_index()
    mean.insert(1, "domain", "mean")
    bounds = [c for c in metric_cols if c.endswith(("_low", "_high"))]
    mean[bounds] = float("nan")  # averaged per-domain bounds are not an interval of the mean: left empty
    return pd.concat([table, mean], ignore_index=True)

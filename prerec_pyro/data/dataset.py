"""Integer-indexed multi-domain data: item and user rows, sequences, the 4:3:3 user split and training windows.

A ``MultiDomainData`` holds several ``DomainData``. Items and users get *global rows*: the rows of the ``items`` and
``users`` plates of the model (domain k's items are rows ``item_offsets[k] : item_offsets[k + 1]``). An item that
appears in two domains has two rows (it is item j of domain k); its text vector is shared.

Sequences are stored flat (CSR): ``seq_items[seq_offsets[u] : seq_offsets[u + 1]]`` are user u's items (local to
the domain) in time order. ``windows`` cuts them into fixed-length rows for one causal pass each: every next-item
position of a sequence is a target exactly once, with between ``max_len - stride`` and ``max_len - 1`` items of
history once a sequence is longer than ``max_len``.

Shape legend: U = users, N = interactions, W = windows, L = max_len.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from prerec_pyro.data.domain import Domain
from prerec_pyro.popularity import PopularityConfig, PopularityTable

logger = logging.getLogger(__name__)

TRAIN, VALID, TEST = 0, 1, 2
SPLITS = {"train": TRAIN, "valid": VALID, "test": TEST}


@dataclass(frozen=True)
class SequenceConfig:
    """How sequences are split and cut into training/evaluation windows."""

    max_len: int = 64
    stride: int | None = None  # default max_len // 2
    split: tuple[float, float, float] = (4.0, 3.0, 3.0)
    split_seed: int = 0

    def __post_init__(self):
        if self.max_len < 2:
            raise ValueError(f"max_len must be >= 2, got {self.max_len}")
        if self.stride is not None and not 1 <= self.stride <= self.max_len - 1:
            raise ValueError(f"stride must be in [1, max_len - 1 = {self.max_len - 1}], got {self.stride}")
        if len(self.split) != 3 or min(self.split) < 0 or sum(self.split) <= 0:
            raise ValueError(f"split must be three non-negative weights (train, valid, test), got {self.split}")

    @property
    def effective_stride(self) -> int:
        return self.stride if self.stride is not None else max(1, self.max_len // 2)


@dataclass(frozen=True)
class Windows:
    """Fixed-length rows cut from sequences (numpy). Targets are ``items`` where ``target_mask`` is set."""

    user: np.ndarray  # [W] user index local to the domain
    items: np.ndarray  # [W, L] local item index (0 where padded)
    times: np.ndarray  # [W, L] epoch seconds (last valid time where padded)
    target_mask: np.ndarray  # [W, L] bool
    position: np.ndarray  # [W, L] absolute position of the item in its sequence

    def __len__(self) -> int:
        return len(self.user)

    def select(self, rows: np.ndarray) -> "Windows":
        return Windows(self.user[rows], self.items[rows], self.times[rows], self.target_mask[rows],
                       self.position[rows])


def split_users(n_users: int, weights: tuple[float, float, float], seed: int) -> np.ndarray:
    """Assign each user to train/valid/test in proportion to ``weights`` (a fixed seeded permutation)."""
    order = np.random.default_rng(seed).permutation(n_users)
    bounds = np.floor(np.cumsum(weights) / np.sum(weights) * n_users).astype(np.int64)
    split = np.empty(n_users, dtype=np.int8)
    split[order[: bounds[0]]] = TRAIN
    split[order[bounds[0]: bounds[1]]] = VALID
    split[order[bounds[1]:]] = TEST
    return split


@dataclass
class DomainData:
    """One domain as integer arrays (see the module docstring)."""

    name: str
    item_ids: np.ndarray  # [J] str
    texts: list[str]  # [J]
    user_ids: np.ndarray  # [U] str
    seq_items: np.ndarray  # [N] int64, local item index
    seq_times: np.ndarray  # [N] int64
    seq_offsets: np.ndarray  # [U + 1]
    user_split: np.ndarray  # [U] int8
    popularity: PopularityTable

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_interactions(self) -> int:
        return len(self.seq_items)

    @classmethod
    def from_domain(cls, domain: Domain, popularity: PopularityConfig, sequences: SequenceConfig) -> "DomainData":
        log = domain.interactions
        item_ids = domain.items["item_id"].to_numpy(dtype=object)
        item_index = {item: j for j, item in enumerate(item_ids)}
        items = log["item_id"].map(item_index).to_numpy(dtype=np.int64)  # [N]
        user_ids, user_of = np.unique(log["user_id"].to_numpy(dtype=object), return_inverse=True)
        order = np.lexsort((log["timestamp"].to_numpy(), user_of))  # by user, then time (stable)
        counts = np.bincount(user_of, minlength=len(user_ids))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        times = log["timestamp"].to_numpy(dtype=np.int64)
        table = PopularityTable.from_log(items, times, len(item_ids), popularity)
        return cls(name=domain.name, item_ids=item_ids, texts=domain.items["text"].tolist(), user_ids=user_ids,
                   seq_items=items[order], seq_times=times[order], seq_offsets=offsets,
                   user_split=split_users(len(user_ids), sequences.split, sequences.split_seed), popularity=table)

    def users_in(self, split: str) -> np.ndarray:
        """Local indices of the users in ``split`` ("train", "valid", "test" or "all")."""
        if split == "all":
            return np.arange(self.n_users)
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLITS) + ['all']}")
        return np.flatnonzero(self.user_split == SPLITS[split])

    def windows(self, users: np.ndarray, config: SequenceConfig, first_n: int | None = None) -> Windows:
        """Cut the sequences of ``users`` into windows of ``config.max_len``.

        ``first_n`` keeps only the first ``first_n`` interactions of these users in time order (incremental
        fine-tuning); ``None`` keeps all.
        """
        starts, lengths = self.seq_offsets[users], np.diff(self.seq_offsets)[users]  # [U'], [U']
        if first_n is not None:
            lengths = _truncate_to_first(self.seq_times, starts, lengths, first_n)
        keep = lengths > 0
        users, starts, lengths = users[keep], starts[keep], lengths[keep]
        length, stride = config.max_len, config.effective_stride
        n_win = np.where(lengths <= length, 1, 1 + -(-(lengths - length) // stride))  # [U'] ceil division
        owner = np.repeat(np.arange(len(users)), n_win)  # [W]
        w_idx = np.arange(len(owner)) - np.repeat(np.cumsum(n_win) - n_win, n_win)  # [W] window number in its seq
        seq_len = lengths[owner]  # [W]
        begin = np.minimum(w_idx * stride, np.maximum(seq_len - length, 0))  # [W]
        prev_end = np.where(w_idx == 0, 0, np.minimum((w_idx - 1) * stride, seq_len - length) + length)  # [W]
        position = begin[:, None] + np.arange(length)[None, :]  # [W, L]
        valid = position < seq_len[:, None]  # [W, L]
        flat = starts[owner][:, None] + np.minimum(position, seq_len[:, None] - 1)  # [W, L]
        return Windows(user=users[owner], items=np.where(valid, self.seq_items[flat], 0),
                       times=self.seq_times[flat], target_mask=valid & (position >= prev_end[:, None]),
                       position=position)


def _truncate_to_first(times: np.ndarray, starts: np.ndarray, lengths: np.ndarray, first_n: int) -> np.ndarray:
    """Lengths after keeping only the globally first ``first_n`` interactions (by time) of these sequences."""
    owner = np.repeat(np.arange(len(starts)), lengths)  # [N']
    flat = np.arange(len(owner)) - np.repeat(np.cumsum(lengths) - lengths, lengths) + starts[owner]  # [N']
    order = np.argsort(times[flat], kind="stable")[:first_n]
    return np.bincount(owner[order], minlength=len(starts)).astype(np.int64)


@dataclass
class MultiDomainData:
    """Several ``DomainData`` with global item and user rows (the model's plates).

    User rows put every domain's *training* users first (rows ``0 .. n_fit_users - 1``, the users whose offsets
    are fitted; the ``users`` plate of a fitted model has exactly these), then the validation and test users.
    """

    domains: list[DomainData]
    sequences: SequenceConfig
    item_offsets: np.ndarray = field(init=False)
    user_rows: list[np.ndarray] = field(init=False)
    n_fit_users: int = field(init=False)

    def __post_init__(self):
        names = [d.name for d in self.domains]
        if len(set(names)) != len(names):
            raise ValueError(f"domain names must be unique, got {names}")
        self.item_offsets = np.concatenate([[0], np.cumsum([d.n_items for d in self.domains])]).astype(np.int64)
        fit = [d.user_split == TRAIN for d in self.domains]
        self.n_fit_users = int(sum(f.sum() for f in fit))
        self.user_rows, next_fit, next_other = [], 0, self.n_fit_users
        for is_fit in fit:
            rows = np.empty(len(is_fit), dtype=np.int64)
            rows[is_fit] = next_fit + np.arange(is_fit.sum())
            rows[~is_fit] = next_other + np.arange((~is_fit).sum())
            next_fit, next_other = next_fit + int(is_fit.sum()), next_other + int((~is_fit).sum())
            self.user_rows.append(rows)

    @classmethod
    def from_domains(cls, domains: list[Domain], popularity: PopularityConfig | None = None,
                     sequences: SequenceConfig | None = None) -> "MultiDomainData":
        popularity, sequences = popularity or PopularityConfig(), sequences or SequenceConfig()
        return cls([DomainData.from_domain(d, popularity, sequences) for d in domains], sequences)

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.domains]

    @property
    def n_items(self) -> int:
        return int(self.item_offsets[-1])

    @property
    def n_users(self) -> int:
        return sum(d.n_users for d in self.domains)

    def index(self, name: str) -> int:
        if name not in self.names:
            raise ValueError(f"unknown domain {name!r}; expected one of {self.names}")
        return self.names.index(name)

    def all_texts(self) -> list[str]:
        """Item texts in global row order."""
        return [text for d in self.domains for text in d.texts]

    def item_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """Each global item row's index among the distinct item ids of all domains ``[J]``, and those ids ``[I]``
        (first-seen order): the rows that one item has in several domains share a key."""
        codes, uniques = pd.factorize(pd.Index(np.concatenate([d.item_ids for d in self.domains])))
        return codes.astype(np.int64), np.asarray(uniques, dtype=object)

    def item_id_set(self) -> set[str]:
        return {item for d in self.domains for item in d.item_ids}

    def user_id_set(self) -> set[str]:
        return {user for d in self.domains for user in d.user_ids}

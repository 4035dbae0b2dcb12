"""A synthetic multi-domain benchmark drawn from (a simulator of) PreRec's own generative process.

The story. A global pool of electronics products is sold in seven markets: three sources ("india", "spain",
"canada") and four targets ("australia", "mexico", "germany", "japan"). Every product is a combination of six
attributes (category, colour, brand, style, material, feature); its text is an English title rendered from them,
e.g. ``"Zentek black wireless headphones. Features: noise reduction, leather. Category: audio."``, so that a real
sentence encoder sees words that carry the product's meaning. Each attribute value has a planted latent vector
(``latent_dim``); a product's true content vector ``m*_j`` is the normalised weighted sum of its attribute vectors
(the category weighs most). Each market's catalogue is a random subset of the pool (markets share products) plus
products sold only there, so the targets have "unseen" products that no source catalogue holds.

The planted biases of the paper:

- cross-domain bias: a market's taste ``D*_k = sigma_d * xi_k + favourite_weight * sum_c a_c / |a_c|`` over a
  few favourite categories ``c``, so that markets prefer different categories;
- in-domain bias: each (market, product) has a log-popularity per interval of ``interval_days`` (15 days) that is
  a static level plus an AR(1) walk plus decaying bursts, independent across markets (each market has its own
  trending products) and persistent across consecutive intervals, so the previous interval's counts (the paper's
  Appendix C) tell which products trend now.

Users. Each user of market k has a personal taste ``u_i ~ N(0, sigma_u^2 I)`` and a sequence of ``min_seq_len`` to
``max_seq_len`` choices at exponentially spaced times inside the market's time line (``horizon_days``; every
market's first interaction is at ``interval_origin``). Step t picks, without repeats, from the market's catalogue
with probability ``softmax_j(u_i.m*_j + D*_k.m*_j + beta_pop * logpop_{k, l(t), j} + gamma * m*_j.m*_prev)``: the
last term makes sequences sequential (the next product resembles the last one).

Everything planted is kept in :class:`PlantedTruth`, and :func:`planted_scores` evaluates any subset of the planted
terms, so tests can check that MAP recovers what was planted and that zero-shot with ``do(D=0)`` and target counts
beats an ablation without debiasing and a text-similarity baseline.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from prerec_pyro.data.domain import Domain, make_domain
from prerec_pyro.io import atomic_write

logger = logging.getLogger(__name__)

CATEGORIES = {"headphones": "audio", "speaker": "audio", "laptop": "computing", "keyboard": "computing",
              "monitor": "computing", "camera": "photo", "tripod": "photo", "smartwatch": "wearables",
              "fitness tracker": "wearables", "phone case": "mobile", "charger": "mobile", "backpack": "bags"}
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "category": tuple(CATEGORIES),
    "colour": ("black", "white", "silver", "red", "blue", "green", "gold", "grey"),
    "brand": ("Aurora", "Zentek", "Nordvik", "Kairo", "Lumina", "Vexo", "Orbis", "Tamsin"),
    "style": ("wireless", "compact", "vintage", "premium", "portable", "classic", "smart", "rugged"),
    "material": ("leather", "aluminium", "plastic", "wood", "steel", "fabric", "glass", "carbon fibre"),
    "feature": ("water resistant", "long battery life", "fast charging", "eco friendly", "lightweight design",
                "two year warranty", "gift box", "noise reduction"),
}
TERMS = ("user", "domain", "popularity", "sequence")
DAY = 86_400


@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes and planted effects of the synthetic benchmark (defaults: ~60k source interactions)."""

    n_pool_items: int = 1500
    items_per_domain: int = 600
    unique_items_per_domain: int = 80
    source_users: int = 1500
    target_users: int = 400
    min_seq_len: int = 5
    max_seq_len: int = 30
    mean_seq_len: float = 13.0
    latent_dim: int = 16
    attribute_weight: float = 0.5
    sigma_d: float = 0.5
    n_favourite_categories: int = 3
    favourite_weight: float = 2.5
    sigma_u: float = 1.0
    beta_pop: float = 1.0
    gamma: float = 3.0
    pop_static_std: float = 0.8
    pop_ar_std: float = 0.8
    pop_ar_rho: float = 0.8
    burst_prob: float = 0.02
    burst_size: float = 2.0
    burst_decay: float = 0.6
    interval_days: int = 15
    horizon_days: int = 360
    mean_gap_days: float = 4.0
    start_date: str = "2021-01-01"
    sources: tuple[str, ...] = ("india", "spain", "canada")
    targets: tuple[str, ...] = ("australia", "mexico", "germany", "japan")
    seed: int = 0

    def __post_init__(self) -> None:
        names = self.sources + self.targets
        checks = {
            "sizes (n_pool_items, items_per_domain, source_users, target_users, min_seq_len, latent_dim)":
                min(self.n_pool_items, self.items_per_domain, self.source_users, self.target_users,
                    self.min_seq_len, self.latent_dim) > 0 and self.unique_items_per_domain >= 0,
            "items_per_domain <= n_pool_items": self.items_per_domain <= self.n_pool_items,
            "min_seq_len <= mean_seq_len <= max_seq_len < items_per_domain":
                self.min_seq_len <= self.mean_seq_len <= self.max_seq_len < self.items_per_domain,
            "times (interval_days, horizon_days, mean_gap_days) > 0":
                min(self.interval_days, self.horizon_days, self.mean_gap_days) > 0,
            "0 <= pop_ar_rho < 1 and 0 <= burst_prob <= 1": 0 <= self.pop_ar_rho < 1 and 0 <= self.burst_prob <= 1,
            f"1 <= n_favourite_categories <= {len(CATEGORIES)}": 0 < self.n_favourite_categories <= len(CATEGORIES),
            "distinct domain names, >= 1 source and >= 1 target":
                len(set(names)) == len(names) and bool(self.sources) and bool(self.targets),
        }
        failed = [rule for rule, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"SyntheticConfig: expected {failed[0]}; got {self!r}")
        try:
            pd.Timestamp(self.start_date, tz="UTC")
        except ValueError as error:
            raise ValueError(f"SyntheticConfig.start_date = {self.start_date!r}; expected a date such as "
                             "'2021-01-01'") from error

    @classmethod
    def small(cls, **overrides: object) -> SyntheticConfig:
        """A tiny benchmark for unit tests: ~150 items and 60 users per domain, 90 days."""
        sizes: dict[str, object] = dict(n_pool_items=150, items_per_domain=100, unique_items_per_domain=15,
                                        source_users=60, target_users=60, max_seq_len=20, mean_seq_len=12.0,
                                        horizon_days=90, mean_gap_days=2.0)
        sizes.update(overrides)
        return cls(**sizes)  # type: ignore[arg-type]

    @property
    def domain_names(self) -> tuple[str, ...]:
        return self.sources + self.targets

    @property
    def n_intervals(self) -> int:
        return math.ceil(self.horizon_days / self.interval_days)


@dataclass(frozen=True, eq=False)
class PlantedTruth:
    """Everything planted by the simulator. Per-domain arrays follow the domain's catalogue order
    (``domain_items[name]``, sorted ids) and user order (``user_ids[name]``)."""

    attribute_vectors: dict[str, np.ndarray]  # group -> [n_values, latent_dim]
    item_ids: np.ndarray  # [n_items] str, all items of all domains, sorted
    item_attributes: np.ndarray  # [n_items, n_groups] value index per group (ATTRIBUTES order)
    item_vectors: np.ndarray  # [n_items, latent_dim] m*_j, unit norm
    domain_vectors: dict[str, np.ndarray]  # name -> D*_k [latent_dim]
    favourite_categories: dict[str, np.ndarray]  # name -> category indices
    domain_items: dict[str, np.ndarray]  # name -> catalogue item ids (sorted)
    log_popularity: dict[str, np.ndarray]  # name -> [n_intervals, n_items_k]
    user_ids: dict[str, np.ndarray]  # name -> user ids
    user_vectors: dict[str, np.ndarray]  # name -> [n_users_k, latent_dim]
    beta_pop: float
    gamma: float
    interval_origin: int  # epoch seconds where interval 0 starts (every domain's first interaction)
    interval_seconds: int

    def save(self, directory: str | Path) -> None:
        """Write ``truth.npz`` (arrays) and ``truth.json`` (scalars, dict keys) into ``directory``, atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        meta: dict[str, object] = {"keys": {}}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, dict):
                meta["keys"][field.name] = list(value)  # type: ignore[index]
                arrays.update({f"{field.name}__{i}": v for i, v in enumerate(value.values())})
            elif isinstance(value, np.ndarray):
                arrays[field.name] = value
            else:
                meta[field.name] = value
        atomic_write(directory / "truth.npz", lambda f: np.savez(f, **arrays))
        atomic_write(directory / "truth.json", lambda f: f.write(json.dumps(meta, indent=1).encode()))

    @classmethod
    def load(cls, directory: str | Path) -> PlantedTruth:
        """Read what :meth:`save` wrote."""
        directory = Path(directory)
        meta = json.loads(_existing(directory / "truth.json", "PlantedTruth.save").read_text())
        with np.load(_existing(directory / "truth.npz", "PlantedTruth.save"), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        fields = {name: {key: arrays.pop(f"{name}__{i}") for i, key in enumerate(keys)}
                  for name, keys in meta.pop("keys").items()}
        return cls(**fields, **arrays, **meta)

    def item_rows(self, domain: str) -> np.ndarray:
        """Rows of ``item_vectors`` for the domain's catalogue, in catalogue order."""
        return np.searchsorted(self.item_ids, self.domain_items[domain])


@dataclass(frozen=True, eq=False)
class SyntheticData:
    """The generated domains (sources first, then targets) and the planted truth."""

    domains: list[Domain]
    truth: PlantedTruth
    sources: tuple[str, ...]
    targets: tuple[str, ...]

    def domain(self, name: str) -> Domain:
        """The domain called ``name``."""
        for domain in self.domains:
            if domain.name == name:
                return domain
        raise ValueError(f"no synthetic domain {name!r}; expected one of {[d.name for d in self.domains]}")


def _existing(path: Path, writer: str) -> Path:
    """``path`` if it is a file, else a ``ValueError`` naming it."""
    if not path.is_file():
        raise ValueError(f"{path}: missing; expected a file written by {writer}")
    return path


def _items(rng: np.random.Generator, config: SyntheticConfig, n_items: int) -> tuple[np.ndarray, pd.Series]:
    """Distinct attribute combinations [n_items, n_groups] and their rendered texts."""
    sizes = [len(v) for v in ATTRIBUTES.values()]
    codes = rng.choice(int(np.prod(sizes)), size=n_items, replace=False)
    attrs = np.stack(np.unravel_index(codes, sizes), axis=1)
    words = {g: pd.Series(np.asarray(values, dtype=object)[attrs[:, i]])
             for i, (g, values) in enumerate(ATTRIBUTES.items())}
    department = words["category"].map(CATEGORIES)
    text = (words["brand"] + " " + words["colour"] + " " + words["style"] + " " + words["category"]
            + ". Features: " + words["feature"] + ", " + words["material"] + ". Category: " + department + ".")
    return attrs, text


def _item_vectors(attrs: np.ndarray, attribute_vectors: dict[str, np.ndarray], weight: float) -> np.ndarray:
    """m*_j: the category vector plus ``weight`` times the other attribute vectors, normalised."""
    total = sum((1.0 if g == "category" else weight) * vecs[attrs[:, i]]
                for i, (g, vecs) in enumerate(attribute_vectors.items()))
    return total / np.linalg.norm(total, axis=1, keepdims=True)


def _log_popularity(rng: np.random.Generator, config: SyntheticConfig, n_items: int) -> np.ndarray:
    """[n_intervals, n_items]: static level + stationary AR(1) walk + decaying bursts."""
    n, rho = config.n_intervals, config.pop_ar_rho
    noise = rng.standard_normal((n, n_items)) * config.pop_ar_std
    shocks = (rng.random((n, n_items)) < config.burst_prob) * config.burst_size * (0.5 + rng.random((n, n_items)))
    walk, burst = noise.copy(), shocks.copy()
    for step in range(1, n):
        walk[step] = rho * walk[step - 1] + math.sqrt(1.0 - rho ** 2) * noise[step]
        burst[step] += config.burst_decay * burst[step - 1]
    return config.pop_static_std * rng.standard_normal(n_items)[None, :] + walk + burst


def _user_times(rng: np.random.Generator, config: SyntheticConfig, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """Sequence lengths [n_users] and strictly increasing offsets in seconds [n_users, max_len] from the origin."""
    p = 1.0 / (config.mean_seq_len - config.min_seq_len + 1.0)
    lengths = np.minimum(config.min_seq_len - 1 + rng.geometric(p, n_users), config.max_seq_len)
    width = config.max_seq_len
    gaps = rng.exponential(config.mean_gap_days * DAY, (n_users, width))
    gaps[:, 0] = 0.0
    offsets = np.cumsum(gaps, axis=1)
    limit = config.horizon_days * DAY - 2.0 * width
    span = offsets[np.arange(n_users), lengths - 1]
    shrink = np.minimum(1.0, limit / np.maximum(span, 1.0))
    offsets *= shrink[:, None]
    start = rng.random(n_users) * (limit - span * shrink)
    seconds = np.floor(start[:, None] + offsets).astype(np.int64) + np.arange(width)
    valid = np.arange(width)[None, :] < lengths[:, None]
    seconds -= seconds[valid].min()
    return lengths, np.where(valid, seconds, 0)


def _choose(rng: np.random.Generator, base: np.ndarray, pop: np.ndarray, interval: np.ndarray,
            similarity: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Catalogue indices [n_users, max_len] (-1 past the end) drawn step by step by Gumbel-max, no item twice per
    user, from ``base`` [n_users, J] = (u_i + D_k).m*_j, ``pop`` [n_intervals, J] = beta * logpop at each step's
    ``interval`` [n_users, max_len] and ``similarity`` [J, J] = gamma * m*.m* to the previous item."""
    n_users, n_items = base.shape
    choices = np.full(interval.shape, -1, dtype=np.int64)
    consumed = np.zeros((n_users, n_items), dtype=bool)
    for step in range(interval.shape[1]):
        rows = np.flatnonzero(lengths > step)
        logits = base[rows] + pop[interval[rows, step]]
        if step > 0:
            logits += similarity[choices[rows, step - 1]]
        logits[consumed[rows]] = -np.inf
        picked = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
        choices[rows, step] = picked
        consumed[rows, picked] = True
    return choices


def _simulate_domain(rng: np.random.Generator, config: SyntheticConfig, n_users: int,
                     item_vectors: np.ndarray, taste: np.ndarray) -> dict[str, np.ndarray]:
    """Draw one domain's popularity, users and choices over a catalogue with content vectors ``item_vectors``."""
    logpop = _log_popularity(rng, config, len(item_vectors))
    users = config.sigma_u * rng.standard_normal((n_users, config.latent_dim))
    lengths, seconds = _user_times(rng, config, n_users)
    interval = seconds // (config.interval_days * DAY)
    base = (users + taste) @ item_vectors.T
    similarity = config.gamma * item_vectors @ item_vectors.T
    choices = _choose(rng, base, config.beta_pop * logpop, interval, similarity, lengths)
    return {"logpop": logpop, "users": users, "lengths": lengths, "seconds": seconds, "choices": choices}


def _catalogues(rng: np.random.Generator, config: SyntheticConfig) -> dict[str, np.ndarray]:
    """Global item indices of each domain's catalogue: a pool subset plus its own unique items (sorted)."""
    catalogues = {}
    for k, name in enumerate(config.domain_names):
        shared = rng.choice(config.n_pool_items, config.items_per_domain, replace=False)
        unique = config.n_pool_items + k * config.unique_items_per_domain + np.arange(config.unique_items_per_domain)
        catalogues[name] = np.sort(np.concatenate([shared, unique]))
    return catalogues


def _domain_vectors(rng: np.random.Generator, config: SyntheticConfig,
                    category_vectors: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """D*_k = sigma_d * xi_k + favourite_weight * (sum of its favourite categories' unit vectors)."""
    unit = category_vectors / np.linalg.norm(category_vectors, axis=1, keepdims=True)
    vectors, favourites = {}, {}
    for name in config.domain_names:
        chosen = np.sort(rng.choice(len(unit), config.n_favourite_categories, replace=False))
        favourites[name] = chosen
        vectors[name] = (config.sigma_d * rng.standard_normal(config.latent_dim)
                         + config.favourite_weight * unit[chosen].sum(axis=0))
    return vectors, favourites


def generate_synthetic(config: SyntheticConfig | None = None) -> SyntheticData:
    """Draw the benchmark (deterministic given ``config.seed``); see the module docstring for the story."""
    config = config or SyntheticConfig()
    rng = np.random.default_rng(config.seed)
    n_items = config.n_pool_items + len(config.domain_names) * config.unique_items_per_domain
    attrs, texts = _items(rng, config, n_items)
    item_ids = np.array([f"P{i:05d}" for i in range(n_items)])
    attribute_vectors = {g: rng.standard_normal((len(v), config.latent_dim)) / math.sqrt(config.latent_dim)
                         for g, v in ATTRIBUTES.items()}
    item_vectors = _item_vectors(attrs, attribute_vectors, config.attribute_weight)
    catalogues = _catalogues(rng, config)
    domain_vectors, favourites = _domain_vectors(rng, config, attribute_vectors["category"])
    origin = int(pd.Timestamp(config.start_date, tz="UTC").timestamp())
    domains, planted = [], {}
    for name in config.domain_names:
        n_users = config.source_users if name in config.sources else config.target_users
        rows = catalogues[name]
        sim = _simulate_domain(rng, config, n_users, item_vectors[rows], domain_vectors[name])
        user_ids = np.array([f"{name}_u{i:06d}" for i in range(n_users)])
        valid = sim["choices"] >= 0
        interactions = pd.DataFrame({"user_id": np.repeat(user_ids, sim["lengths"]),
                                     "item_id": item_ids[rows[sim["choices"][valid]]],
                                     "timestamp": origin + sim["seconds"][valid]})
        items = pd.DataFrame({"item_id": item_ids[rows], "text": texts.to_numpy()[rows]})
        domains.append(make_domain(name, items, interactions, source=f"synthetic domain {name!r}"))
        planted[name] = {"domain_items": item_ids[rows], "log_popularity": sim["logpop"], "user_ids": user_ids,
                         "user_vectors": sim["users"]}
        logger.info("synthetic %s: %d items, %d users, %d interactions", name, len(rows), n_users,
                    len(interactions))
    fields = {field: {name: planted[name][field] for name in planted} for field in planted[config.sources[0]]}
    truth = PlantedTruth(attribute_vectors=attribute_vectors, item_ids=item_ids, item_attributes=attrs,
                         item_vectors=item_vectors, domain_vectors=domain_vectors, favourite_categories=favourites,
                         beta_pop=config.beta_pop, gamma=config.gamma, interval_origin=origin,
                         interval_seconds=config.interval_days * DAY, **fields)
    return SyntheticData(domains=domains, truth=truth, sources=config.sources, targets=config.targets)


def named_truth(benchmark: str) -> PlantedTruth | None:
    """The planted truth behind the named benchmarks ``synthetic`` and ``synthetic-small`` (generated again: the
    generator is seeded); None for any other benchmark."""
    configs = {"synthetic": SyntheticConfig, "synthetic-small": SyntheticConfig.small}
    return generate_synthetic(configs[benchmark]()).truth if benchmark in configs else None


def planted_scores(truth: PlantedTruth, domain: str, user_ids: Sequence[str], prev_item_ids: Sequence[str | None],
                   timestamps: Sequence[int], terms: Sequence[str] = TERMS) -> np.ndarray:
    """The planted logits [n, n_items_k] over the domain's catalogue, summing the chosen ``terms``
    ("user", "domain", "popularity", "sequence"); a ``None`` or "" previous item adds no sequence term."""
    unknown = set(terms) - set(TERMS)
    if unknown or domain not in truth.domain_items:
        raise ValueError(f"planted_scores: terms {sorted(unknown)} / domain {domain!r} unknown; expected terms "
                         f"in {TERMS} and a domain in {list(truth.domain_items)}")
    catalogue = pd.Index(truth.domain_items[domain])
    vectors = truth.item_vectors[truth.item_rows(domain)]
    scores = np.zeros((len(user_ids), len(catalogue)))
    if "user" in terms:
        users = pd.Index(truth.user_ids[domain]).get_indexer(pd.Index(user_ids))
        if (users < 0).any():
            raise ValueError(f"planted_scores: user {np.asarray(user_ids)[users < 0][0]!r} not in {domain!r}")
        scores += truth.user_vectors[domain][users] @ vectors.T
    if "domain" in terms:
        scores += (vectors @ truth.domain_vectors[domain])[None, :]
    if "popularity" in terms:
        interval = (np.asarray(timestamps, dtype=np.int64) - truth.interval_origin) // truth.interval_seconds
        n_intervals = len(truth.log_popularity[domain])
        if ((interval < 0) | (interval >= n_intervals)).any():
            raise ValueError(f"planted_scores: timestamps outside the {n_intervals} planted intervals of {domain!r}")
        scores += truth.beta_pop * truth.log_popularity[domain][interval]
    if "sequence" in terms:
        prev = pd.Series(prev_item_ids, dtype=object).fillna("").to_numpy()
        has = prev != ""
        rows = catalogue.get_indexer(pd.Index(prev[has]))
        if (rows < 0).any():
            raise ValueError(f"planted_scores: previous item {prev[has][rows < 0][0]!r} not in {domain!r}")
        scores[has] += truth.gamma * vectors[rows] @ vectors.T
    return scores


def write_synthetic(config: SyntheticConfig, directory: str | Path) -> SyntheticData:
    """Generate and write ``<domain>/items.parquet``, ``<domain>/interactions.parquet``, the truth and a
    ``manifest.json`` (written last: its presence marks a complete dataset), each file atomically."""
    data = generate_synthetic(config)
    directory = Path(directory)
    for domain in data.domains:
        (directory / domain.name).mkdir(parents=True, exist_ok=True)
        for table in ("items", "interactions"):
            frame = getattr(domain, table)
            atomic_write(directory / domain.name / f"{table}.parquet", lambda f, fr=frame: fr.to_parquet(f))
    data.truth.save(directory)
    manifest = {"sources": list(data.sources), "targets": list(data.targets), "config": dataclasses.asdict(config)}
    atomic_write(directory / "manifest.json", lambda f: f.write(json.dumps(manifest, indent=1).encode()))
    return data


def load_synthetic(directory: str | Path) -> SyntheticData:
    """Read a dataset written by :func:`write_synthetic`."""
    directory = Path(directory)
    manifest = json.loads(_existing(directory / "manifest.json", "write_synthetic").read_text())
    domains = []
    for name in manifest["sources"] + manifest["targets"]:
        items, interactions = (pd.read_parquet(_existing(directory / name / f"{t}.parquet", "write_synthetic"))
                               for t in ("items", "interactions"))
        domains.append(make_domain(name, items, interactions, source=str(directory / name)))
    return SyntheticData(domains=domains, truth=PlantedTruth.load(directory), sources=tuple(manifest["sources"]),
                         targets=tuple(manifest["targets"]))

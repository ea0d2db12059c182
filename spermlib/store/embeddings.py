"""Disk cache of embedding maps: ``runs/embeddings/<dataset>/<arch>/fold<K>-<key>.safetensors`` + ``.json``.

Embedding the full SMIDS (3000 images) takes ~40 s on 2 CPU cores, so ``spermlib embed`` (or
the page's first view) writes the result here and later views read it. An entry is valid for one
checkpoint (its card's ``weights_sha256``) and one set of images (the split manifest's sha256 and a
digest of every image's path, size and modification time): its file name carries the hash of both,
so a retrained checkpoint or changed data simply misses. Arrays are safetensors, everything else
JSON; nothing is ever unpickled. Torch-free (numpy safetensors).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from spermlib.errors import SpermlibError
from spermlib.fileio import atomic_path, write_text
from spermlib.store.paths import RUNS_DIR

EMBEDDINGS_ENV = "SPERMLIB_EMBEDDINGS"
CACHE_VERSION = 2  # 2: entries also hold the early-map statistics (out-of-domain scores)


class EmbeddingCacheError(SpermlibError):
    """A cache entry exists but cannot be read (truncated, edited, another format)."""


def default_embeddings_dir() -> Path:
    """``$SPERMLIB_EMBEDDINGS`` or ``runs/embeddings/`` (ignored by git, like the rest of ``runs/``)."""
    return Path(os.environ.get(EMBEDDINGS_ENV) or RUNS_DIR / "embeddings")


def images_digest(root: Path, paths: list[str]) -> str:
    """sha256 of every image's relative path, size and modification time (a stat each: ~10 ms per 1000)."""
    h = hashlib.sha256()
    for p in paths:
        st = (Path(root) / p).stat()
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def cache_key(**parts: str | int | None) -> str:
    """A short hash of what an entry depends on (checkpoint digest, data digests, precision, …)."""
    text = json.dumps({"cache_version": CACHE_VERSION, **parts}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cache_path(dataset: str, arch: str, fold: int, key: str, base: Path | None = None) -> Path:
    """Where the entry of one fold model and one key lives (``.safetensors``; its JSON beside it)."""
    return Path(base or default_embeddings_dir()) / dataset / arch / f"fold{fold}-{key}.safetensors"


@dataclass
class CachedEmbedding:
    arrays: dict[str, np.ndarray]  # float32 arrays, one row per embedded image
    meta: dict  # JSON: the key's parts, the embedded paths, the images that failed to decode, …


def _meta_path(path: Path) -> Path:
    return path.with_suffix(".json")


def write_embedding(path: Path, entry: CachedEmbedding) -> None:
    """Write both files atomically (a crash leaves the old entry or none, never half of one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in entry.arrays.items()}, str(tmp))
    write_text(_meta_path(path), json.dumps(entry.meta, indent=1) + "\n")  # last: an entry counts once it is there


def read_embedding(path: Path, key: str, arrays: tuple[str, ...] = (), meta_keys: tuple[str, ...] = ()
                   ) -> CachedEmbedding | None:
    """The entry at ``path``, ``None`` when there is none; :class:`EmbeddingCacheError` when it is unreadable,
    lacks one of ``arrays`` or ``meta_keys``, or was written for another key (a file renamed by hand)."""
    meta_file = _meta_path(path)
    if not meta_file.is_file():
        return None
    try:
        meta = json.loads(meta_file.read_text())
        tensors = load_file(str(path))
    except (OSError, ValueError, SafetensorError) as err:  # JSONDecodeError is a ValueError
        raise EmbeddingCacheError(f"embedding cache {path.name} is unreadable ({err})") from err
    if not isinstance(meta, dict) or meta.get("key") != key:
        raise EmbeddingCacheError(f"embedding cache {meta_file.name} does not belong to this checkpoint and data")
    missing = [k for k in arrays if k not in tensors] + [k for k in ("paths", *meta_keys) if k not in meta]
    rows = {len(a) for a in tensors.values()}
    if missing or rows != {len(meta["paths"])}:
        raise EmbeddingCacheError(f"embedding cache {path.name} is incomplete or inconsistent "
                                  f"(missing {missing}, row counts {sorted(rows)})")
    return CachedEmbedding(tensors, meta)

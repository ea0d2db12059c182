"""What the Embedding map page shows, beside the map itself (:mod:`spermlib.evaluation.embedding`, which
imports the model code: only this page imports this module): how a selected image is captioned.

One fold model embeds every image; the split says whether that model saw the image in training.
"""

from __future__ import annotations

from spermlib.evaluation.embedding import (
    EXCLUDED,
    HELD_OUT,
    TRAINING,
    EmbeddingMap,
    embedding_map,
    selected_paths,
)

__all__ = ["HELD_OUT", "EmbeddingMap", "embedding_map", "selected_paths", "tile_caption"]

SHORT_SPLIT = {HELD_OUT: "held out", TRAINING: "seen in training", EXCLUDED: "excluded"}


def tile_caption(row) -> str:
    """A selected image's gallery caption: true → predicted class, confidence, whether the model saw it."""
    return f"{row.true} → {row.pred} · {row.confidence:.0%} · {SHORT_SPLIT.get(row.split, '')}".rstrip(" ·")

"""2-D maps of what a model "sees": penultimate features of a dataset's images, projected by PCA.

Which model embeds the images: ONE fold model (chosen by the user, default fold 0) embeds every
image, so all points live in the same feature space and distances between them mean something.
The five fold models are different networks, so their feature spaces are not aligned, and a PCA
of out-of-fold features (each image through a different model) would mix five unrelated
coordinate systems. The price is that 4/5 of the images were in that model's training data;
each point therefore says whether the model saw it (``split`` column: its held-out test fold,
training folds, or excluded), and the map shows the two with different markers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from spermlib.data.datasets import DatasetSpec, list_images
from spermlib.data.imageio import ImageError, load_rgb
from spermlib.data.splits import manifest_for_root
from spermlib.inference.predict import Predictor
from spermlib.store.embeddings import (
    CachedEmbedding,
    EmbeddingCacheError,
    cache_key,
    cache_path,
    images_digest,
    read_embedding,
    write_embedding,
)

HELD_OUT = "held out (never seen by this model)"
TRAINING = "training folds (seen in training)"
EXCLUDED = "excluded (conflicting labels)"
UNKNOWN = "unknown (not in the split manifest)"

ProgressFn = Callable[[int, int], None]
CACHED_ARRAYS = ("features", "probabilities", "coords", "stats")  # per image; features kept for other projections,
# stats (early-map statistics) for the out-of-domain detector


@dataclass
class EmbeddingImages:
    """The images to embed and how their split relates to the checkpoints."""

    table: pd.DataFrame  # path, label, fold (-1 excluded, -2 unknown)
    manifest_sha256: str | None
    warnings: list[str] = field(default_factory=list)


def images_to_embed(spec: DatasetSpec, root: Path, splits_path: str | Path | None = None) -> EmbeddingImages:
    """Every image under ``root`` with its fold from the split manifest (when the manifest covers it)."""
    try:
        manifest, sha = manifest_for_root(spec, root, splits_path)
        return EmbeddingImages(manifest[["path", "label", "fold"]].reset_index(drop=True), sha)
    except (FileNotFoundError, ValueError) as err:
        table = list_images(spec, root).assign(fold=-2)
        return EmbeddingImages(table, None, [f"Held-out status unknown: {err}"])


def split_of(folds: pd.Series, model_fold: int) -> pd.Series:
    """Whether the fold-``model_fold`` model saw each image (fold column of the manifest)."""
    out = pd.Series(TRAINING, index=folds.index)
    out[folds == model_fold] = HELD_OUT
    out[folds == -1] = EXCLUDED
    out[folds == -2] = UNKNOWN
    return out


def embed(predictor: Predictor, fold: int, root: Path, paths: Sequence[str], batch_size: int = 32,
          progress: ProgressFn | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, str], np.ndarray]:
    """Pooled pre-logit features ``(N_ok, D)``, softmax ``(N_ok, C)`` of the fold-``fold`` model, errors per path,
    and the early-map statistics ``(N_ok, S)`` its out-of-domain detector may score.

    Images are decoded one batch at a time (the full SMIDS would take ~0.2 GB as one tensor). The
    features and probabilities come from one inference-core pass (``predictor.forward``, which holds
    ``predictor.lock``), so the softmax is the one every other path gives for the image.
    """
    fold_model = predictor.fold_model(fold)  # CheckpointError if that fold is not loaded
    one = predictor.subset([fold])  # decodes at this fold's own input size, which may not be the ensemble's
    feats, probs, stats, errors = [], [], [], {}
    for start in range(0, len(paths), batch_size):
        images = []
        for p in paths[start : start + batch_size]:
            try:
                images.append(load_rgb(Path(root) / p, name=p))
            except ImageError as err:
                errors[p] = str(err)
        if images:
            (out,) = one.forward(one.preprocess(images), stats=True)
            feats.append(out.features)
            probs.append(out.probabilities)
            stats.append(out.stats)
        if progress:
            progress(min(start + batch_size, len(paths)), len(paths))
    features = np.concatenate(feats) if feats else np.zeros((0, fold_model.model.num_features), np.float32)
    softmax = np.concatenate(probs) if probs else np.zeros((0, len(predictor.classes)), np.float32)
    summary = np.concatenate(stats) if stats else np.zeros((0, 0), np.float32)
    return features.astype(np.float32), softmax.astype(np.float32), errors, summary.astype(np.float32)


def pca_2d(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 2)`` PCA coordinates and the explained-variance ratio of the two components.

    Deterministic: full SVD, and scikit-learn fixes the component signs. Features are centred,
    not scaled (all dimensions are activations of one layer, on one scale).
    """
    if len(features) < 2:
        return np.zeros((len(features), 2), np.float32), np.zeros(2)
    n_comp = min(2, features.shape[0], features.shape[1])
    pca = PCA(n_components=n_comp, svd_solver="full")
    coords = pca.fit_transform(features.astype(np.float64))
    ratio = pca.explained_variance_ratio_
    if n_comp < 2:
        coords = np.pad(coords, ((0, 0), (0, 2 - n_comp)))
        ratio = np.pad(ratio, (0, 2 - n_comp))
    return coords.astype(np.float32), ratio


def domain_scores(predictor: Predictor, fold: int, features: np.ndarray, stats: np.ndarray | None = None
                  ) -> np.ndarray:
    """Each image's domain score by the fold-``fold`` model's out-of-domain detector (``calibration.detectors``;
    higher = more typical of its training images, < 0 = flagged), from the features (and early-map
    statistics) the map already has; NaN when that model has no detector (or one that needs logits, which
    the map does not keep)."""
    detectors = predictor.detectors([fold])
    if detectors is None or detectors[0].needs_logits or not len(features):
        return np.full(len(features), np.nan)
    if detectors[0].needs_stats and (stats is None or len(stats) != len(features)):
        return np.full(len(features), np.nan)
    return detectors[0].score(features, None, stats)


@dataclass
class EmbeddingMap:
    frame: pd.DataFrame  # path, label, true, pred, confidence, fold, split, x, y, domain_score
    explained: np.ndarray  # explained-variance ratio of x, y
    errors: dict[str, str]  # images that could not be decoded
    warnings: list[str]
    note: str | None = None  # what the disk cache did, when the user should know (e.g. a corrupt entry)

    @property
    def has_domain_scores(self) -> bool:
        return "domain_score" in self.frame and bool(self.frame["domain_score"].notna().any())


@dataclass
class _Plan:
    """What one map embeds (the table of images, with held-out status) and its cache key."""

    table: pd.DataFrame
    warnings: list[str]
    key: str | None  # None: not cacheable (a checkpoint card without weights_sha256)


def _plan(predictor: Predictor, spec: DatasetSpec, root: Path, fold: int, splits_path: str | Path | None) -> _Plan:
    images = images_to_embed(spec, root, splits_path)
    table, warnings = images.table, list(images.warnings)
    card = predictor.cards[predictor.folds.index(fold)] if fold in predictor.folds else {}
    if images.manifest_sha256 and card.get("split_sha256") not in (None, images.manifest_sha256):
        warnings.append("This checkpoint was trained on another split manifest: which images it saw is unknown.")
        table = table.assign(fold=-2)
    weights = card.get("weights_sha256")
    key = cache_key(weights_sha256=weights, manifest_sha256=images.manifest_sha256,
                    images=images_digest(root, list(table["path"])), precision=predictor.precision.name,
                    input_size=card.get("input_size", predictor.input_size),
                    # folded batch norms (models.fusion) round differently in bf16: not the same numbers
                    batch_norm_folded=any(fm.folded_bn for fm in predictor.fold_models)) if weights else None
    return _Plan(table, warnings, key)


def _assemble(predictor: Predictor, spec: DatasetSpec, plan: _Plan, fold: int, softmax: np.ndarray,
              coords: np.ndarray, explained: np.ndarray, errors: dict[str, str], features: np.ndarray,
              stats: np.ndarray | None = None) -> EmbeddingMap:
    ok = plan.table[~plan.table["path"].isin(errors)].reset_index(drop=True)
    pred_idx = softmax.argmax(1) if len(softmax) else np.zeros(0, int)
    frame = ok.assign(
        true=ok["label"].map(spec.display),
        pred=[spec.display(predictor.classes[i]) for i in pred_idx],
        confidence=softmax.max(1) if len(softmax) else np.zeros(0),
        split=split_of(ok["fold"], fold).to_numpy(),
        x=coords[:, 0], y=coords[:, 1], domain_score=domain_scores(predictor, fold, features, stats),
    )
    return EmbeddingMap(frame, np.asarray(explained), errors, plan.warnings)


def embedding_map(predictor: Predictor, spec: DatasetSpec, root: Path, fold: int, batch_size: int = 32,
                  progress: ProgressFn | None = None, splits_path: str | Path | None = None,
                  cache_dir: Path | None = None) -> EmbeddingMap:
    """Embed every image under ``root`` with the fold-``fold`` model and project to 2-D.

    With ``cache_dir`` (e.g. ``store.embeddings.default_embeddings_dir()``) a valid disk-cache entry
    is read instead of embedding, and a fresh result is written there; an unreadable entry is
    recomputed, and the map's ``note`` says so. Without it nothing is read or written.
    """
    plan = _plan(predictor, spec, root, fold, splits_path)
    use_cache = cache_dir is not None and plan.key is not None
    path = cache_path(spec.name, predictor.arch, fold, plan.key, cache_dir) if use_cache else None
    note = None
    if path is not None:
        try:
            cached = _from_cache(predictor, spec, plan, fold, path)
        except EmbeddingCacheError as err:
            cached, note = None, f"{err}: embedded the images again."
        if cached is not None:
            return cached
    features, softmax, errors, stats = embed(predictor, fold, root, list(plan.table["path"]), batch_size, progress)
    coords, explained = pca_2d(features)
    emap = _assemble(predictor, spec, plan, fold, softmax, coords, explained, errors, features, stats)
    if path is not None and len(features):
        note = _save(path, plan.key, emap, features, softmax, coords, stats) or note
    emap.note = note
    return emap


def _from_cache(predictor: Predictor, spec: DatasetSpec, plan: _Plan, fold: int, path: Path
                ) -> EmbeddingMap | None:
    """The map from a valid cache entry; None when there is none, EmbeddingCacheError when it is unusable."""
    entry = read_embedding(path, plan.key, arrays=CACHED_ARRAYS, meta_keys=("errors", "explained"))
    if entry is None:
        return None
    errors = entry.meta["errors"]
    if list(entry.meta["paths"]) != [p for p in plan.table["path"] if p not in errors]:
        raise EmbeddingCacheError(f"embedding cache {path.name} lists other images than the data folder holds")
    a = entry.arrays
    return _assemble(predictor, spec, plan, fold, a["probabilities"], a["coords"], np.asarray(entry.meta["explained"]),
                     errors, a["features"], a["stats"])


def _save(path: Path, key: str, emap: EmbeddingMap, features: np.ndarray, softmax: np.ndarray,
          coords: np.ndarray, stats: np.ndarray) -> str | None:
    """Write the cache entry; a message instead of an error when the folder is not writable."""
    meta = {"key": key, "paths": list(emap.frame["path"]), "errors": emap.errors,
            "explained": [float(v) for v in emap.explained]}
    try:
        write_embedding(path, CachedEmbedding(dict(zip(CACHED_ARRAYS, (features, softmax, coords, stats))), meta))
    except OSError as err:
        return f"Could not save the embedding cache ({err.strerror or err}): the next view embeds again."
    return None


def selected_paths(points: Sequence[Mapping], frame: pd.DataFrame) -> list[str]:
    """Image paths of plotly selection ``points`` (each carries its path as ``customdata[0]``).

    Unknown paths are dropped and order follows the frame, so the gallery is stable whichever
    trace (class colour) a point came from.
    """
    chosen = set()
    for pt in points:
        data = pt.get("customdata")
        if isinstance(data, (list, tuple)) and data:
            chosen.add(str(data[0]))
        elif isinstance(data, str):
            chosen.add(data)
    return [p for p in frame["path"] if p in chosen]

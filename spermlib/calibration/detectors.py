"""Out-of-domain detectors of one fold model: fitted on, and scoring, the inference core's outputs.

Everything here works on what one core pass (``core.forward``) already returns — pooled pre-logit
``features`` and ``logits`` — so scoring an image for its domain costs no second forward. Torch-free.

Detectors (established ones; ``spermlib ood`` picks one per fold model by measurement,
``calibration.fit``; stored by ``calibration.store``; applied by ``inference.predict``):

* ``mahalanobis`` — class-conditional Gaussians with one shared covariance (Lee et al., NeurIPS 2018),
  the covariance shrunk with scikit-learn's ``LedoitWolf``; raw score = −min over classes of the
  squared Mahalanobis distance.
* ``gaussian`` — the same with one Gaussian for all training images (class-agnostic Mahalanobis).
* ``energy`` — log-sum-exp of the logits (Liu et al., NeurIPS 2020); needs no fitted parameters.
* ``knn`` — minus the distance to the k-th nearest training feature (Sun et al., ICML 2022).
* ``multilayer`` — one class-agnostic Gaussian per layer, summed (the feature ensemble of Lee et al.,
  NeurIPS 2018, with feature statistics as in Sastry & Oore, ICML 2020): the pre-logit features as in
  ``gaussian``, plus, for each early feature map of the model (``forward_features_and_taps``), the
  per-channel mean and standard deviation over its positions (``core.channel_stats``), standardised with
  the training part's mean and std. Each layer's raw score is centred and scaled on the held-out
  in-domain images (median, std) before the sum, so no layer dominates by its dimension. Early maps
  carry what a domain shift changes first — stain, contrast, noise, magnification — which the pre-logit
  features, trained to ignore nuisance variation, partly discard: on the shipped models the pre-logit
  Gaussian separated the other dataset at AUROC 0.89–0.97, the early-map statistics at ~1.0 (ood.json).

Features are L2-normalised first for every feature-based detector (kNN by definition; for the
Gaussians it raised AUROC on natural photographs from 0.94 to 0.99 on HuSHeM, see ood.json). A
covariance is stored low-rank — its top :data:`RANK` eigenvectors plus the mean of the remaining
eigenvalues as an isotropic residual (probabilistic-PCA form) — which scored within 0.003 AUROC of
the full 1280×1280 precision matrix at 1/20 of its size.

The **threshold** is set on held-out in-domain images (the fold's inner validation) so that
:data:`FLAG_RATE` of them are flagged. The stored **domain score** is normalised per fold model,
``(raw − threshold) / (median held-out raw − threshold)``: 0 at the threshold, 1 for a typical
held-out in-domain image, negative = out of domain. Scores of different fold models are therefore
on one scale and an ensemble can average them (:func:`ensemble_domain`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from spermlib.calibration.store import DetectorFileError, StoredDetector, read_detector
from spermlib.calibration.temperature import logsumexp

if TYPE_CHECKING:  # scikit-learn is imported where a detector is fitted or a kNN bank searched: predict stays light
    from sklearn.neighbors import NearestNeighbors

METHODS = ("mahalanobis", "gaussian", "energy", "knn", "multilayer")
FEATURE_METHODS = ("mahalanobis", "gaussian", "knn", "multilayer")
FLAG_RATE = 0.05  # share of held-out in-domain images flagged
RANK = 64  # eigen-directions of a covariance kept exactly (the rest: their mean eigenvalue)
KNN_K = 5
KNN_BANK = 512  # training features kept for kNN (a fixed-seed subsample above this), ≤ 2.6 MB fp32 at 1280-D
SEED = 0


def l2_normalise(features: np.ndarray) -> np.ndarray:
    f = np.asarray(features, dtype=np.float64)
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def _low_rank_gaussian(centred: np.ndarray) -> dict[str, np.ndarray]:
    """LedoitWolf covariance of ``centred`` rows as (basis, eigenvalues, residual eigenvalue)."""
    from sklearn.covariance import LedoitWolf

    cov = LedoitWolf().fit(centred).covariance_
    eigvals, basis = np.linalg.eigh(cov)
    eigvals, basis = eigvals[::-1], basis[:, ::-1]
    rank = min(RANK, len(eigvals) - 1)
    return {"basis": basis[:, :rank], "eigvals": eigvals[:rank], "residual": np.array([eigvals[rank:].mean()])}


def _squared_distances(z: np.ndarray, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """``(N, G)`` squared Mahalanobis distances of rows ``z`` to each stored mean."""
    out = []
    for mean in arrays["means"]:
        d = z - mean
        proj = d @ arrays["basis"]
        resid = (d * d).sum(1) - (proj * proj).sum(1)
        out.append((proj * proj / arrays["eigvals"]).sum(1) + resid / arrays["residual"][0])
    return np.stack(out, 1)


def _gaussian_arrays(z: np.ndarray, prefix: str = "") -> dict[str, np.ndarray]:
    """One class-agnostic Gaussian of rows ``z``: its mean and low-rank LedoitWolf covariance."""
    means = z.mean(0, keepdims=True)
    return {f"{prefix}{k}": v for k, v in {"means": means, **_low_rank_gaussian(z - means)}.items()}


def _prefixed(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def _layer_count(arrays: dict[str, np.ndarray]) -> int:
    return sum(1 for k in arrays if k.startswith("L") and k.endswith(".shift"))


def fit_arrays(method: str, features: np.ndarray, labels: np.ndarray, stats: np.ndarray | None = None,
               stats_sizes: tuple[int, ...] = ()) -> dict[str, np.ndarray]:
    """The parameters of ``method`` fitted on one fold's training features (and class labels; for
    ``multilayer`` also its early-map ``stats``, split into layers by ``stats_sizes``)."""
    if method not in METHODS:
        raise ValueError(f"unknown detector {method!r}; choose from {', '.join(METHODS)}")
    if method == "energy":
        return {}
    z = l2_normalise(features)
    if method == "knn":
        keep = np.arange(len(z))
        if len(z) > KNN_BANK:
            keep = np.sort(np.random.default_rng(SEED).choice(len(z), KNN_BANK, replace=False))
        return {"bank": z[keep]}
    if method == "multilayer":
        if stats is None or not stats_sizes:
            raise ValueError("the multilayer detector needs the early-map statistics of the training images")
        arrays = _gaussian_arrays(z, "P.")
        for i, part in enumerate(np.split(np.asarray(stats, np.float64), np.cumsum(stats_sizes)[:-1], axis=1)):
            shift, scale = part.mean(0), part.std(0) + 1e-6
            arrays |= {f"L{i}.shift": shift, f"L{i}.scale": scale,
                       **_gaussian_arrays((part - shift) / scale, f"L{i}.")}
        return arrays
    labels = np.asarray(labels) if method == "mahalanobis" else np.zeros(len(z), int)
    classes = np.unique(labels)
    means = np.stack([z[labels == c].mean(0) for c in classes])
    centred = z - means[np.searchsorted(classes, labels)]
    return {"means": means, **_low_rank_gaussian(centred)}


def layer_scores(arrays: dict[str, np.ndarray], features: np.ndarray, stats: np.ndarray) -> np.ndarray:
    """``(N, 1 + L)`` raw scores of the ``multilayer`` detector's layers: pre-logit features, then each early map."""
    n_layers = _layer_count(arrays)
    widths = [len(arrays[f"L{i}.shift"]) for i in range(n_layers)]
    stats = np.asarray(stats, np.float64)
    if stats.ndim != 2 or stats.shape[1] != sum(widths):
        raise ValueError(f"the multilayer detector expects {sum(widths)} early-map statistics per image, got "
                         f"{stats.shape[-1] if stats.ndim else 0}: refit it for this model")
    cols = [-_squared_distances(l2_normalise(features), _prefixed(arrays, "P.")).min(1)]
    for i, part in enumerate(np.split(stats, np.cumsum(widths)[:-1], axis=1)):
        a = _prefixed(arrays, f"L{i}.")
        cols.append(-_squared_distances((part - a["shift"]) / a["scale"], a).min(1))
    return np.stack(cols, 1)


@dataclass
class Detector:
    """One fold model's fitted detector: raw scores, and scores normalised to its threshold."""

    method: str
    arrays: dict[str, np.ndarray]
    threshold: float = 0.0  # raw score below which an image is out of domain
    scale: float = 1.0  # median held-out raw score minus the threshold
    meta: dict = field(default_factory=dict)
    _knn: NearestNeighbors | None = field(default=None, repr=False, compare=False)

    @property
    def needs_logits(self) -> bool:
        return self.method == "energy"

    @property
    def needs_stats(self) -> bool:
        """Whether it scores the early-map statistics (``core.forward(stats=True)``) besides the features."""
        return self.method == "multilayer"

    def raw(self, features: np.ndarray | None, logits: np.ndarray | None = None,
            stats: np.ndarray | None = None) -> np.ndarray:
        """Higher = more typical of the training part."""
        if self.method == "energy":
            if logits is None:
                raise ValueError("the energy detector scores logits, and none were given")
            return logsumexp(logits)
        if self.method == "multilayer":
            if stats is None:
                raise ValueError("the multilayer detector scores early-map statistics, and none were given")
            layers = layer_scores(self.arrays, features, stats)
            return ((layers - self.arrays["layer_centre"]) / self.arrays["layer_spread"]).sum(1)
        z = l2_normalise(features)
        if self.method == "knn":
            if self._knn is None:
                from sklearn.neighbors import NearestNeighbors

                self._knn = NearestNeighbors(n_neighbors=min(KNN_K, len(self.arrays["bank"]))).fit(
                    self.arrays["bank"])
            return -self._knn.kneighbors(z)[0][:, -1]
        return -_squared_distances(z, self.arrays).min(1)

    def score(self, features: np.ndarray | None, logits: np.ndarray | None = None,
              stats: np.ndarray | None = None) -> np.ndarray:
        """Domain score: 0 at the threshold, 1 for a typical held-out in-domain image; ≥ 0 = in domain."""
        return (self.raw(features, logits, stats) - self.threshold) / self.scale

    def set_threshold(self, held_out_raw: np.ndarray, flag_rate: float = FLAG_RATE) -> Detector:
        """Threshold at the ``flag_rate`` quantile of held-out in-domain raw scores; scale to their median."""
        held_out_raw = np.asarray(held_out_raw, dtype=np.float64)
        self.threshold = float(np.quantile(held_out_raw, flag_rate))
        self.scale = float(max(np.median(held_out_raw) - self.threshold, 1e-12))
        return self

    def to_stored(self) -> StoredDetector:
        meta = {"method": self.method, "threshold": self.threshold, "scale": self.scale, **self.meta}
        return StoredDetector(self.arrays, meta)

    @classmethod
    def from_stored(cls, stored: StoredDetector) -> Detector:
        meta = dict(stored.meta)
        method = meta.pop("method")
        if method not in METHODS:
            raise ValueError(f"unknown detector {method!r} in a stored detector")
        arrays = {k: np.asarray(v, dtype=np.float64) for k, v in stored.arrays.items()}
        return cls(method, arrays, float(meta.pop("threshold")), float(meta.pop("scale")), meta)


def fit_detector(method: str, train_features: np.ndarray, train_labels: np.ndarray,
                 val_features: np.ndarray | None, val_logits: np.ndarray | None = None,
                 flag_rate: float = FLAG_RATE, *, train_stats: np.ndarray | None = None,
                 val_stats: np.ndarray | None = None, stats_sizes: tuple[int, ...] = ()) -> Detector:
    """Fit on the training part, set the threshold on held-out in-domain images (inner validation).

    ``multilayer`` also takes the early-map statistics of both; its per-layer centre and spread come from
    the same held-out images as the threshold (never from a test fold or out-of-domain images).
    """
    det = Detector(method, fit_arrays(method, train_features, train_labels, train_stats, stats_sizes))
    if method == "multilayer":
        if val_stats is None:
            raise ValueError("the multilayer detector needs the early-map statistics of the held-out images")
        layers = layer_scores(det.arrays, val_features, val_stats)
        det.arrays["layer_centre"] = np.median(layers, 0)
        det.arrays["layer_spread"] = np.maximum(layers.std(0), 1e-12)
    return det.set_threshold(det.raw(val_features, val_logits, val_stats), flag_rate)


def ensemble_domain(fold_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(F, B)`` normalised fold scores → (mean score, in domain) per image.

    The mean, not a majority of the fold votes: the scores share one scale (0 = each fold's own
    threshold), so the mean keeps how far each image is from it, and a single fold model gives the
    same rule as the ensemble.
    """
    mean = np.asarray(fold_scores, dtype=np.float64).mean(0)
    return mean, mean >= 0.0


def load_detector(path, weights_sha256: str | None = None) -> Detector | None:
    """The detector stored at ``path``, or ``None`` when there is none or it was fitted on other weights
    (a retrained checkpoint: its old detector would score features it never saw). An unreadable file
    raises ``calibration.store.DetectorFileError``."""
    stored = read_detector(path)
    if stored is None:
        return None
    if weights_sha256 and stored.meta.get("weights_sha256") not in (None, weights_sha256):
        return None
    try:
        return Detector.from_stored(stored)
    except (KeyError, TypeError, ValueError) as err:
        raise DetectorFileError(f"{path}: not a detector this version can read ({err}); refit it with "
                                "`spermlib ood --dataset D --refit`") from None

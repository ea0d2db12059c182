"""Per-fold fitting of a fold model's calibration: its out-of-domain detector, its temperature, its decision bias.

What ``spermlib ood`` and ``bias`` fit, from the outputs of one inference-core pass per fold model
(the passes themselves, and the evaluation of what was fitted, are ``evaluation.ood`` and
``evaluation.bias``):

* **Detector, nested**: for fold k, every method of :data:`~spermlib.calibration.detectors.METHODS` is
  fitted on fold k's training part and its nuisance views, thresholded on its inner validation and its
  views, and scored on fold k's own inner validation by AUROC against the other dataset and against
  synthetic shifts of those images, and by the share of them it flags under the robustness suite's mild
  corruptions. Among the methods that flag at most :data:`MAX_MILD_FLAGGED` of those on average, the one
  with the best mean of the two AUROCs is fold k's detector (none: the one that flags fewest); it is
  written beside the checkpoint (``calibration.store``).
* **Temperature**: fitted per fold on inner-validation logits (``calibration.temperature``) and written
  into that fold's card where the inner validation identifies one.
* **Decision bias**: the rule of ``calibration.decision_bias`` per mode; the taken biases go into the cards.

Test folds and natural photographs play no part in any of these choices.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from spermlib.calibration.decision_bias import MODES, card_bias
from spermlib.calibration.detectors import FLAG_RATE, METHODS, Detector, fit_detector, load_detector
from spermlib.calibration.store import detector_path, write_detector
from spermlib.calibration.temperature import fit_temperature, identified_temperature
from spermlib.data.datasets import DatasetSpec
from spermlib.store.cards import set_card_field
from spermlib.store.checkpoints import checkpoint_path

MAX_MILD_FLAGGED = 0.20  # a detector may flag at most this share of mildly corrupted inner-validation images


@dataclass
class FoldPass:
    """(features, logits, early-map statistics) of one fold model on every image set, and the labels of its
    own parts."""

    fold: int
    sets: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    y: dict[str, np.ndarray]
    card: dict
    split_as_trained: bool = True  # the train/inner-val parts have the sizes the card records
    run: dict = field(default_factory=dict)
    stats_sizes: tuple[int, ...] = ()  # width of each early map's part of the statistics

    def names(self, prefix: str) -> list[str]:
        """The image sets named ``<prefix><name>`` (e.g. ``val_shift:``), in the order the pass made them."""
        return [name for name in self.sets if name.startswith(prefix)]

    def features(self, name: str) -> np.ndarray:
        return self.sets[name][0]

    def scores(self, det: Detector, name: str) -> np.ndarray:
        return det.score(*self.sets[name])

    def fit(self, method: str) -> Detector:
        """``method`` fitted on this fold's training part and its nuisance views, its threshold on the inner
        validation and its nuisance views."""
        train, (val, val_logits, val_stats) = self.training_rows(), self.held_out_rows()
        views = len(train[0]) // len(self.y["train"])
        return fit_detector(method, train[0], np.tile(self.y["train"], views), val, val_logits,
                            train_stats=train[2], val_stats=val_stats, stats_sizes=self.stats_sizes)

    def training_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return _concat(self.sets["train"], self.sets["train_views"])

    def held_out_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return _concat(self.sets["val"], self.sets["val_views"])


def _concat(*parts: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(np.concatenate(arrays) for arrays in zip(*parts))  # type: ignore[return-value]


def auroc(in_domain: np.ndarray, out_domain: np.ndarray) -> float:
    """AUROC of domain scores with in-domain images as positives (1 = perfectly separated)."""
    labels = np.r_[np.ones(len(in_domain)), np.zeros(len(out_domain))]
    return float(roc_auc_score(labels, np.r_[in_domain, out_domain]))


def selection_scores(p: FoldPass, method: str) -> dict[str, float]:
    """``method`` fitted on fold ``p``'s training part, scored on its own inner validation only."""
    det = p.fit(method)
    val = p.scores(det, "val")
    a = auroc(val, p.scores(det, "other"))
    b = auroc(val, np.concatenate([p.scores(det, name) for name in p.names("val_shift:")]))
    mild = float(np.mean([(p.scores(det, name) < 0).mean() for name in p.names("val_mild:")]))
    return {"auroc_inner_val_vs_other_dataset": a, "auroc_inner_val_vs_shifted_inner_val": b,
            "criterion": (a + b) / 2, "inner_val_mild_corruptions_flagged": mild}


def choose_method(scores: dict[str, dict[str, float]]) -> str:
    """Best criterion among the methods flagging at most :data:`MAX_MILD_FLAGGED` of the mildly corrupted
    inner-validation images; none: the method that flags fewest."""
    tolerant = [m for m in scores if scores[m]["inner_val_mild_corruptions_flagged"] <= MAX_MILD_FLAGGED]
    if tolerant:
        return max(tolerant, key=lambda m: scores[m]["criterion"])
    return min(scores, key=lambda m: scores[m]["inner_val_mild_corruptions_flagged"])


def compare_methods(passes: list[FoldPass]) -> dict:
    """Every method fitted per fold and scored on that fold's inner validation; each fold's own choice (nested),
    and the scores averaged over folds (reported, not used to choose)."""
    per_fold = {p.fold: {m: selection_scores(p, m) for m in METHODS} for p in passes}
    chosen = {k: choose_method(scores) for k, scores in per_fold.items()}
    table = {m: {key: float(np.mean([per_fold[k][m][key] for k in per_fold])) for key in per_fold[passes[0].fold][m]}
             for m in METHODS}
    return {"rule": "per fold, on that fold's own inner validation: the highest mean of the two AUROCs among the "
                    f"methods that flag at most {100 * MAX_MILD_FLAGGED:.0f} % of the mildly corrupted "
                    "inner-validation images (none: the method that flags fewest)",
            "candidates": table, "per_fold": {str(k): v for k, v in per_fold.items()},
            "chosen_per_fold": {str(k): m for k, m in chosen.items()},
            "chosen": max(set(chosen.values()), key=list(chosen.values()).count)}


def fold_detectors(passes: list[FoldPass], methods: dict[str, str], spec: DatasetSpec, arch: str,
                   checkpoints_dir: Path, refit: bool, nuisance_reach: float) -> tuple[list[Detector], bool]:
    """The stored detectors of every fold (when all exist, fit these weights, are of the method chosen for
    their fold, and ``refit`` is off), else each fold's chosen method (``methods``: fold → method) fitted
    afresh and written beside its checkpoint. Returns them and whether they were fitted."""
    paths = [detector_path(spec, arch, p.fold, checkpoints_dir) for p in passes]
    if not refit:
        stored = [load_detector(path, p.card.get("weights_sha256")) for p, path in zip(passes, paths)]
        if all(d is not None and d.method == methods[str(p.fold)] for p, d in zip(passes, stored)):
            return stored, False  # type: ignore[return-value]
    fitted = []
    for p, path in zip(passes, paths):
        det = p.fit(methods[str(p.fold)])
        det.meta = {"weights_sha256": p.card.get("weights_sha256"), "split_sha256": p.card.get("split_sha256"),
                    "fitted_on": f"training part of fold {p.fold} ({len(p.y['train'])} images) and "
                                 f"{len(p.sets['train_views'][0])} nuisance views of them",
                    "threshold_on": f"inner validation of fold {p.fold} ({len(p.y['val'])} images) and "
                                    f"{len(p.sets['val_views'][0])} nuisance views of them",
                    "nuisance_reach": nuisance_reach,
                    "flag_rate": FLAG_RATE, "feature_dim": int(p.features("train").shape[1]),
                    **({"early_map_stats": list(p.stats_sizes)} if det.needs_stats else {}),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        write_detector(path, det.to_stored())
        fitted.append(det)
    return fitted, True


def fold_temperatures(passes: list[FoldPass], stored: bool = False) -> tuple[dict[int, float], dict[int, float]]:
    """``(fitted, used)`` per fold: the temperature fitted on its inner-validation logits, and the one it uses.

    ``used`` holds the identified fits (an inner validation without a mistake, or a fit at the range's bound,
    keeps T = 1: no entry), or with ``stored`` those the cards carry, i.e. what ``predict`` uses."""
    fitted = {p.fold: fit_temperature(p.sets["val"][1], p.y["val"]) for p in passes}
    if stored:
        used = {p.fold: float(p.card["temperature"]) for p in passes if p.card.get("temperature") is not None}
    else:
        used = {p.fold: t for p in passes
                if (t := identified_temperature(p.sets["val"][1], p.y["val"], fitted[p.fold])) is not None}
    return fitted, used


def store_temperatures(spec: DatasetSpec, arch: str, checkpoints_dir: Path, calib: dict) -> None:
    """Write each fold's temperature into its card where its inner-validation fit identified one, else remove it."""
    applied = set(calib.get("applied_folds", []))
    for fold, t in calib["temperatures"].items():
        set_card_field(checkpoint_path(spec, arch, int(fold), checkpoints_dir), "temperature",
                       t if int(fold) in applied else None)


def store_biases(spec: DatasetSpec, arch: str, checkpoints_dir: Path, folds: Mapping[int, Mapping[str, dict]]) -> None:
    """Write each fold's taken biases (``folds``: fold → mode → the rule's decision) into its card, removing any
    other."""
    for k, d in folds.items():
        set_card_field(checkpoint_path(spec, arch, k, checkpoints_dir), "decision_bias",
                       card_bias({m: d[m] for m in MODES}))

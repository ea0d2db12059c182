"""The ``ood`` command: one inference-core pass per fold model, the detectors and temperatures fitted on it
(``calibration.fit``), their evaluation → detectors beside the checkpoints and ``results/<dataset>/ood.json``.

Per fold model, one inference-core pass over its training, inner-validation and test images (the
split comes from ``training.fold_data``, exactly as training made it) gives features and logits:

* **Nuisance views**: a model is expected to shrug off a camera's JPEG, a slightly soft focus, a few
  degrees of rotation. Each image of the training part and of the inner validation is also seen under
  random corruptions of the robustness suite at up to :data:`NUISANCE_REACH` × its mild severity
  (``corruptions.nuisance_views``). The detector is fitted on the training part *and* its views, and its
  threshold flags 5 % of the held-out in-domain images, i.e. the inner validation *and* its views. Fitted
  on clean images only, the early-map detector flagged 91 % of HuSHeM's inner-validation images under the
  suite's mild corruptions (JPEG quality 50: 99 %); with the views, ~9 %, while the other dataset and the
  synthetic shifts stayed at AUROC ≥ 0.998 and 100 % flagged (4 CBAM folds, inner validation only).
* **Choice of detector, nested** (``calibration.fit``): for fold k, every method of
  ``calibration.detectors.METHODS`` is fitted as above and scored on fold k's own inner validation by
  AUROC against (i) the other dataset's images and (ii) the synthetic shifts of its inner-validation
  images, and by the share of its inner-validation images it flags under each of the suite's mild
  corruptions. Among the methods that flag at most ``calibration.fit.MAX_MILD_FLAGGED`` of those on
  average, the one with the best mean of (i) and (ii) is fold k's detector (none: the one that flags
  fewest). Only fold k's training part decides for fold k (another fold's inner validation holds fold k's
  test images); natural photographs and test folds play no part.
* **Evaluation**: AUROC (in-domain = the test folds, each image through the fold model that never saw
  it) and flag rates on (a) the test folds, (b) the other dataset, (c) synthetic shifts of the test-fold
  images, (d) natural photographs (scikit-image's sample images and their quadrants), and the flag rate
  of the test folds under each of the suite's mild corruptions. (b) and (d) are
  scored by every fold model (their scores share one scale), and also as ``predict`` does (the ensemble
  mean).
* **Temperature**: fitted per fold on inner-validation logits and written into that fold's card (``Predictor``
  divides the logits by it), unless the inner validation does not identify one: with no mistake on it the
  NLL keeps falling as T → 0 (likewise a fit at a bound of the range), so the fold keeps T = 1. Whether
  a temperature is used is decided from inner validation alone; the out-of-fold ECE and NLL pooled over the
  test folds, before and after, only report the outcome.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torchvision.transforms.v2.functional as F
from PIL import Image

from spermlib.calibration.detectors import FLAG_RATE, METHODS, Detector, ensemble_domain
from spermlib.calibration.fit import (
    MAX_MILD_FLAGGED,
    FoldPass,
    auroc,
    compare_methods,
    fold_detectors,
    fold_temperatures,
    store_temperatures,
)
from spermlib.calibration.store import detector_path
from spermlib.calibration.temperature import nll, softmax_t
from spermlib.data.corruptions import CORRUPTIONS, contrast, desaturate, nuisance_views, zoom
from spermlib.data.datasets import DATASETS, PROJECT_ROOT, DatasetSpec, get_dataset, is_full_dataset, resolve_data_root
from spermlib.data.preprocess import load_uint8_batch, to_uint8_tensor
from spermlib.data.splits import manifest_for_root
from spermlib.errors import SpermlibError
from spermlib.evaluation.evaluate import expected_calibration_error
from spermlib.inference.core import EVAL_BATCH, InferenceModel
from spermlib.runtime import hardware, pick_device
from spermlib.store.cards import archs_with_checkpoints
from spermlib.store.checkpoints import available_folds
from spermlib.store.paths import default_checkpoints_dir, project_relative
from spermlib.store.results import OOD_FILE, results_to_update, write_json
from spermlib.training.fold_data import DecodedImages, load_fold_data
from spermlib.training.recipe import Recipe

# Synthetic shifts (c): what another lab's camera or preparation does to an image (torchvision ops).
SHIFTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "grayscale": lambda x: desaturate(x, 0.0),
    "unstained_low_contrast": lambda x: contrast(desaturate(x, 0.0), 0.3),  # grayscale, contrast × 0.3
    "zoom_out_0.5x": lambda x: zoom(x, 0.5),  # half the magnification
    "zoom_in_2x": lambda x: zoom(x, 2.0),
    "inverted": F.invert,
}
# Natural photographs (d): scikit-image's bundled sample photographs, each whole and as four quadrants.
NATURAL_PHOTOS = ("astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
                  "hubble_deep_field", "moon", "page", "retina", "rocket", "text")
SHIPPED_CHECKPOINTS = PROJECT_ROOT / "checkpoints"
TARGETS = {"min_auroc": 0.95, "min_flagged_ood": 0.90, "max_flagged_in_domain": 0.10}
NUISANCE_REACH = 1.5  # nuisance views reach this multiple of each corruption's mild severity
NUISANCE_ROWS = 600  # views per image: enough for about this many rows, 1 to 3
NUISANCE_SEED = 1000  # + fold: the training part's view draws; 2 × it + fold: the inner validation's
PROTOCOL = (
    "per fold model: detector fitted on the features of its training part only, together with nuisance views of "
    f"those images (each under one random corruption of the robustness suite, up to {NUISANCE_REACH:g}x its mild "
    "severity); threshold at the 5th percentile of the scores of the held-out in-domain images, i.e. its inner "
    "validation and nuisance views of it (5 % of them flagged); detector chosen among "
    f"{', '.join(METHODS)} by the mean AUROC of inner-validation images against the other dataset and against "
    "synthetic shifts of the inner-validation images, among those flagging at most "
    f"{100 * MAX_MILD_FLAGGED:.0f} % of the inner-validation images under the suite's mild corruptions, chosen per "
    "fold on that fold's own inner validation (nested: no test fold, no natural photograph used); in-domain "
    "= every test-fold image scored by the fold model that never saw it; other dataset and natural "
    "photographs scored by every fold model (flag rate also for the ensemble mean, as predict); synthetic "
    "shifts of each test-fold image scored by its fold model; AUROC with the in-domain test-fold images as "
    "positives; temperature per fold fitted on inner-validation logits (NLL, L-BFGS) and used where they identify "
    "one (an inner validation without a mistake, or a fit at the range's bound, keeps T = 1), ECE pooled "
    "over the out-of-fold test images; mild corruptions: each test-fold image under each corruption of the suite "
    "at its mild severity, scored by its fold model")


def other_dataset(spec: DatasetSpec) -> DatasetSpec:
    return next(get_dataset(n) for n in DATASETS if n != spec.name)


def other_root(spec: DatasetSpec, root: Path) -> Path:
    """The other dataset beside ``root`` (full data beside full data), else where ``--data-dir`` rules put it."""
    other = other_dataset(spec)
    beside = Path(root).parent / other.folder
    return beside if beside.is_dir() else resolve_data_root(other, None)


def natural_photos(size: int) -> torch.Tensor:
    import skimage.data  # only here: the command's natural-photograph set

    tiles = []
    for name in NATURAL_PHOTOS:
        img = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        w, h = img.size
        boxes = [(0, 0, w // 2, h // 2), (w // 2, 0, w, h // 2), (0, h // 2, w // 2, h), (w // 2, h // 2, w, h)]
        tiles += [to_uint8_tensor(im, size) for im in (img, *(img.crop(b) for b in boxes))]
    return torch.stack(tiles)


@dataclass
class Images:
    """Everything one dataset's run scores, decoded once at the models' input size."""

    decoded: DecodedImages
    manifest: pd.DataFrame
    other: torch.Tensor
    natural: torch.Tensor
    other_root: Path


def views_per_image(n: int) -> int:
    """Nuisance views per image: about :data:`NUISANCE_ROWS` rows in all, 1 to 3 per image."""
    return int(np.clip(np.ceil(NUISANCE_ROWS / max(n, 1)), 1, 3))


def _views(model: InferenceModel, x: torch.Tensor, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    gen = torch.Generator().manual_seed(seed)
    return _outputs(model, nuisance_views(x, gen, views_per_image(len(x)), NUISANCE_REACH))


def _outputs(model: InferenceModel, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    out = model(x, batch_size=EVAL_BATCH, stats=True)
    return out.features, out.logits, out.stats


def fold_pass(spec: DatasetSpec, root: Path, images: Images, model: InferenceModel, card: dict) -> FoldPass:
    """One core pass over the fold's train + inner-val + test images, then the shifted and foreign sets."""
    k = int(card["fold"])
    r = Recipe(val_fraction=float(card.get("recipe", {}).get("val_fraction", Recipe.val_fraction)))
    data = load_fold_data(spec, root, images.manifest, k, r, images.decoded.size, images.decoded)
    test = images.manifest[images.manifest["fold"] == k]
    x_test = images.decoded.take(list(test["path"]))
    out = model(torch.cat([data.x_train, data.x_val, x_test]), batch_size=EVAL_BATCH, stats=True)
    feats, logits, stats = out.features, out.logits, out.stats
    cuts = np.cumsum([len(data.y_train), len(data.y_val)])
    sets = {name: (feats[a:b], logits[a:b], stats[a:b]) for name, a, b in
            (("train", 0, cuts[0]), ("val", cuts[0], cuts[1]), ("test", cuts[1], len(feats)))}
    sets["other"], sets["natural"] = _outputs(model, images.other), _outputs(model, images.natural)
    for name, shift in SHIFTS.items():
        sets[f"shift:{name}"] = _outputs(model, shift(x_test))
        sets[f"val_shift:{name}"] = _outputs(model, shift(data.x_val))
    sets["train_views"] = _views(model, data.x_train, NUISANCE_SEED + k)
    sets["val_views"] = _views(model, data.x_val, 2 * NUISANCE_SEED + k)
    for name, corruption in CORRUPTIONS.items():  # the suite's mild severity: what the detector should let by
        sets[f"val_mild:{name}"] = _outputs(model, corruption.apply(data.x_val, corruption.severities[0]))
        sets[f"mild:{name}"] = _outputs(model, corruption.apply(x_test, corruption.severities[0]))
    cls = {c: i for i, c in enumerate(spec.class_dirs)}
    y = {"train": data.y_train.numpy(), "val": data.y_val.numpy(), "test": test["label"].map(cls).to_numpy()}
    # The card counts the images training used: equal counts say this is the split the model was trained on
    # (on a subset such as the bundled sample it is not, and the JSON says so).
    same_split = (len(data.y_train), len(data.y_val)) == (card.get("n_train"), card.get("n_inner_val"))
    return FoldPass(k, sets, y, card, same_split, stats_sizes=out.stats_sizes)


def _foreign(passes: list[FoldPass], dets: list[Detector], name: str, in_domain: np.ndarray) -> dict:
    """A set every fold model scores: AUROC against the in-domain test folds, flag rate per model and as
    the ensemble mean (what ``predict`` reports)."""
    per_fold = np.stack([p.scores(d, name) for p, d in zip(passes, dets)])
    _, ok = ensemble_domain(per_fold)
    return {"n_images": int(per_fold.shape[1]), "auroc": auroc(in_domain, per_fold.ravel()),
            "flagged": float((per_fold < 0).mean()), "flagged_ensemble": float((~ok).mean())}


def evaluate_detectors(passes: list[FoldPass], dets: list[Detector]) -> dict:
    """AUROC and flag rates on (a) the test folds, (b) the other dataset, (c) shifts, (d) natural photographs."""
    test = np.concatenate([p.scores(d, "test") for p, d in zip(passes, dets)])
    val = np.concatenate([p.scores(d, "val") for p, d in zip(passes, dets)])
    shifts = {}
    for name in SHIFTS:
        s = np.concatenate([p.scores(d, f"shift:{name}") for p, d in zip(passes, dets)])
        shifts[name] = {"n_images": int(len(s)), "auroc": auroc(test, s), "flagged": float((s < 0).mean())}
    held = np.concatenate([det.score(*p.held_out_rows()) for p, det in zip(passes, dets)])
    mild = {name: float(np.concatenate([(p.scores(d, f"mild:{name}") < 0) for p, d in zip(passes, dets)]).mean())
            for name in CORRUPTIONS}
    out = {"test_folds": {"n_images": int(len(test)), "flagged": float((test < 0).mean()),
                          "inner_val_flagged": float((val < 0).mean()),
                          "inner_val_and_views_flagged": float((held < 0).mean())},
           "mild_corruptions": {"flagged": mild, "mean": float(np.mean(list(mild.values()))),
                                "worst": max(mild, key=mild.get),
                                "parameters": {n: c.severities[0] for n, c in CORRUPTIONS.items()}},
           "other_dataset": _foreign(passes, dets, "other", test), "shifts": shifts,
           "natural_photographs": _foreign(passes, dets, "natural", test)}
    t = TARGETS
    out["targets_met"] = {
        "test_folds": out["test_folds"]["flagged"] <= t["max_flagged_in_domain"],
        **{k: out[k]["auroc"] >= t["min_auroc"] and out[k]["flagged"] >= t["min_flagged_ood"]
           for k in ("other_dataset", "natural_photographs")}}
    return out


def calibration(passes: list[FoldPass], stored: bool = False) -> dict:
    """Temperature per fold on inner validation; out-of-fold ECE and NLL pooled over the test folds.

    With ``stored`` (detectors kept, nothing written), the temperatures are those the cards carry, i.e. what
    ``predict`` uses: a fit made now but not stored would report a calibration no shipped model has."""
    fitted, used = fold_temperatures(passes, stored)
    reported = {**fitted, **used}  # a fold's applied temperature, else its fit (reported, not applied)
    temps = {k: used.get(k, 1.0) for k in fitted}
    y = np.concatenate([p.y["test"] for p in passes])
    logits = [p.sets["test"][1] for p in passes]
    before = np.concatenate([softmax_t(lg) for lg in logits])
    after = np.concatenate([softmax_t(lg, temps[p.fold]) for p, lg in zip(passes, logits)])
    ece_before, ece_after = expected_calibration_error(before, y)[0], expected_calibration_error(after, y)[0]
    nll_fold = [(nll(lg, p.y["test"]), nll(lg, p.y["test"], temps[p.fold]), len(lg)) for p, lg in zip(passes, logits)]
    w = np.array([n for *_, n in nll_fold], float)
    return {"temperatures": {str(k): t for k, t in reported.items()},
            "applied_folds": sorted(used),
            "ece_before": ece_before, "ece_after": ece_after,
            "nll_before": float(np.average([b for b, _, _ in nll_fold], weights=w)),
            "nll_after": float(np.average([a for _, a, _ in nll_fold], weights=w)),
            "applied": bool(used),  # decided on inner validation (identified fits), never on the test folds
            "source": "the cards' stored temperatures" if stored else "fitted by this run",
            "where": "fold cards (`temperature`): Predictor divides each fold model's logits by it"}


def load_images(spec: DatasetSpec, root: Path, manifest: pd.DataFrame, size: int) -> Images:
    """The dataset's usable images, the other dataset's and the natural photographs, decoded once at ``size``."""
    o_spec, o_root = other_dataset(spec), other_root(spec, root)
    from spermlib.data.datasets import list_images  # the other dataset may hold images no manifest knows

    o_paths = list(list_images(o_spec, o_root)["path"])
    return Images(DecodedImages(root, manifest, size), manifest,
                  load_uint8_batch(o_root, o_paths, size, desc=f"decode {len(o_paths)} {o_spec.name} images"),
                  natural_photos(size), o_root)


def ood_arch(spec: DatasetSpec, root: Path, manifest: pd.DataFrame, sha: str, arch: str, checkpoints_dir: Path,
             images: dict[int, Images], device: str | None = None, refit: bool = False) -> dict:
    """Passes, detector choice, stored detectors, their evaluation and the calibration of one arch."""
    from spermlib.evaluation.evaluate import fold_checkpoints  # the same fold/manifest checks as evaluate

    if not is_full_dataset(root) and Path(checkpoints_dir).resolve() == SHIPPED_CHECKPOINTS.resolve():
        refit = False  # never replace the shipped detectors with ones fitted on a subset
        if not all(detector_path(spec, arch, k, checkpoints_dir).is_file()
                   for k in available_folds(spec, arch, checkpoints_dir)):
            raise SpermlibError(f"no stored detectors for {spec.name}/{arch}; fit them on the full data "
                                "(--data-dir ../shared/data), or pass --checkpoints with a copy to fit on a subset")
    dev = pick_device(device)
    passes = []
    for _, model, card in fold_checkpoints(spec, manifest, sha, arch, checkpoints_dir):
        fold_model = InferenceModel.from_card(model, card, dev)
        size = fold_model.prep.input_size
        if size not in images:
            images[size] = load_images(spec, root, manifest, size)
        passes.append(fold_pass(spec, root, images[size], fold_model, card))
        passes[-1].run = {"device": str(dev), "hardware": hardware(dev), "precision": fold_model.precision.name,
                          "batch_size": EVAL_BATCH}
    selection = compare_methods(passes)
    dets, fitted = fold_detectors(passes, selection["chosen_per_fold"], spec, arch, checkpoints_dir, refit,
                                  NUISANCE_REACH)
    calib = calibration(passes, stored=not fitted)
    if fitted:
        store_temperatures(spec, arch, checkpoints_dir, calib)
    files = [detector_path(spec, arch, p.fold, checkpoints_dir) for p in passes]
    per_fold = {str(p.fold): d.method for p, d in zip(passes, dets)}
    return {"detector": selection["chosen"], "detectors_per_fold": per_fold, "selection": selection,
            **evaluate_detectors(passes, dets),
            "calibration": calib, "detector_files": [project_relative(f) for f in files],
            "detector_bytes": int(sum(f.stat().st_size + f.with_suffix(".json").stat().st_size for f in files)),
            "refitted": fitted, "split_as_trained": all(p.split_as_trained for p in passes),
            "inference": passes[0].run}


def ood_dataset(spec: DatasetSpec, root: Path, archs: list[str] | None = None, splits_path=None,
                device: str | None = None, checkpoints_dir: Path | None = None, results_base: Path | None = None,
                refit: bool = False) -> dict:
    """Fit (if missing or ``refit``) and evaluate the detectors of ``archs`` (default: every arch with
    checkpoints), calibrate, and (re)write ood.json."""
    checkpoints_dir = Path(checkpoints_dir or default_checkpoints_dir())
    manifest, sha = manifest_for_root(spec, root, splits_path)
    archs = archs_with_checkpoints(spec, archs, checkpoints_dir)
    path, report = results_to_update(spec, root, OOD_FILE, sha, results_base)
    images: dict[int, Images] = {}
    for arch in archs:
        report["archs"][arch] = ood_arch(spec, root, manifest, sha, arch, checkpoints_dir, images, device, refit)
    some = next(iter(images.values()))
    report.update({
        "dataset": spec.name, "classes": list(spec.class_dirs), "split_sha256": sha,
        "full_dataset": is_full_dataset(root), "protocol": PROTOCOL, "targets": TARGETS, "flag_rate": FLAG_RATE,
        "sets": {"other_dataset": f"{other_dataset(spec).name}: {project_relative(some.other_root)} "
                                  f"({len(some.other)} images)",
                 "shifts": list(SHIFTS), "natural_photographs": [f"skimage.data.{n}" for n in NATURAL_PHOTOS],
                 "natural_photographs_note": "each photograph whole and as its four quadrants"},
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "written_to": project_relative(path),
    })
    write_json(path, report)
    return report

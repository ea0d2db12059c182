"""How faithful are the Grad-CAM++ maps? Scored on the test folds → ``results/<dataset>/faithfulness.json``.

Protocol: every fold model explains only images of its own test fold (never seen in training or
selection), for the class it predicts. Each map is scored with pytorch-grad-cam's metrics (see
``explain.faithfulness_scores``): ROAD combined (remove-and-debias, percentiles 20/40/60/80) and
the confidence change when the image is multiplied by its map. The same metrics are computed for a
*control*: every image scored with the map of another image of the same batch (same map statistics,
wrong place). A faithful explanation scores clearly above its control; the gap, not the raw value,
is what carries the claim.

ROAD's imputation solves a sparse linear system per image and percentile, so a stratified subset
(``per_class`` images per class per test fold, chosen with a fixed seed) keeps SMIDS affordable on
a CPU; ``per_class=0`` scores every test image (over an hour for SMIDS on 2 CPU cores). The default is the
published protocol's subset, so that the plain command regenerates the published numbers.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats
from tqdm.auto import tqdm

from spermlib.archs import ARCHS
from spermlib.data.datasets import DatasetSpec
from spermlib.data.preprocess import load_uint8_batch
from spermlib.data.splits import manifest_for_root
from spermlib.evaluation.evaluate import fold_checkpoints
from spermlib.inference.core import InferenceModel
from spermlib.inference.explain import faithfulness_scores, gradcam_pp, gradcam_precision
from spermlib.runtime import Precision, hardware
from spermlib.store.cards import CheckpointError, available_folds
from spermlib.store.paths import default_checkpoints_dir, project_relative
from spermlib.store.results import (
    FAITHFULNESS_FILE,
    PUBLISHED_PER_CLASS,
    read_for_update,
    results_dir_for,
    write_json,
)

METRICS = ("road_combined", "cam_mult_confidence_change")
SUBSET_SEED = 0
BATCH = 16


def stratified_subset(test: pd.DataFrame, per_class: int, seed: int = SUBSET_SEED) -> pd.DataFrame:
    """Up to ``per_class`` images of each class of one test fold (all of them when ``per_class <= 0``)."""
    if per_class <= 0:
        return test
    parts = [g.sample(n=min(per_class, len(g)), random_state=seed) for _, g in test.groupby("label", sort=True)]
    return pd.concat(parts).sort_values("path")


def summarise(values: np.ndarray, seed: int = 0) -> dict:
    """Mean, std and 95 % percentile-bootstrap CI of the mean."""
    values = np.asarray(values, dtype=float)
    ci = [float("nan"), float("nan")]
    if len(values) > 1 and np.ptp(values) > 0:
        res = stats.bootstrap((values,), np.mean, n_resamples=2000, confidence_level=0.95, method="percentile",
                              random_state=np.random.default_rng(seed))
        ci = [float(res.confidence_interval.low), float(res.confidence_interval.high)]
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "ci95": ci}


def _scores(model, x: torch.Tensor, pred: list[int], precision: Precision) -> tuple[dict, dict]:
    """Faithfulness of each image's own Grad-CAM++ map and of the control (its batch neighbour's map)."""
    cams = gradcam_pp(model, x, pred, precision)  # as the app explains: for the class the core predicted
    real = faithfulness_scores(model, x, cams, pred)
    control = (faithfulness_scores(model, x, np.roll(cams, 1, axis=0), pred) if len(pred) > 1
               else {m: np.full(1, np.nan) for m in METRICS})  # a batch of one has no neighbour
    return real, control


def score_arch(spec: DatasetSpec, root: Path, manifest: pd.DataFrame, manifest_sha: str, arch: str,
               checkpoints_dir: Path, per_class: int, device: str | None = None) -> tuple[pd.DataFrame, dict]:
    """One row per scored image (path, fold, label, predicted class, metrics of its map and of the control),
    and how the predictions were computed (device, precision)."""
    rows, run = [], {}
    for k, model, card in fold_checkpoints(spec, manifest, manifest_sha, arch, checkpoints_dir):
        fold_model = InferenceModel.from_card(model, card, device)
        test = stratified_subset(manifest[manifest["fold"] == k], per_class)
        u8 = load_uint8_batch(root, list(test["path"]), fold_model.prep.input_size)
        predicted = fold_model(u8).predicted  # the class evaluate reports for these images
        run = {"device": str(fold_model.device), "hardware": hardware(fold_model.device),
               "prediction_precision": fold_model.precision.name,
               "gradcam_precision": gradcam_precision(fold_model.precision), "metrics_precision": "fp32"}
        for i in tqdm(range(0, len(test), BATCH), desc=f"{arch} fold {k}: Grad-CAM++ and ROAD", unit="batch",
                      leave=False):
            pred = predicted[i : i + BATCH].tolist()
            x = fold_model.model_input(u8[i : i + BATCH])
            real, control = _scores(fold_model.model, x, pred, fold_model.precision)
            part = test.iloc[i : i + BATCH]
            for j, (path, label) in enumerate(zip(part["path"], part["label"])):
                rows.append({"path": path, "fold": k, "label": label, "pred": spec.class_dirs[pred[j]],
                             **{m: float(real[m][j]) for m in METRICS},
                             **{f"control_{m}": float(control[m][j]) for m in METRICS}})
    return pd.DataFrame(rows), run


def faithfulness_dataset(spec: DatasetSpec, root: Path, archs: list[str] | None = None,
                         per_class: int = PUBLISHED_PER_CLASS,
                         splits_path=None, checkpoints_dir: Path | None = None,
                         results_base: Path | None = None, progress=print) -> dict:
    """Score ``archs`` (default: every arch with checkpoints) and (re)write faithfulness.json."""
    checkpoints_dir = Path(checkpoints_dir or default_checkpoints_dir())
    manifest, sha = manifest_for_root(spec, root, splits_path)
    archs = archs or [a for a in ARCHS if available_folds(spec, a, checkpoints_dir)]
    if not archs:
        raise CheckpointError(f"no checkpoints for {spec.name} in {checkpoints_dir}; train first")
    out_dir = results_dir_for(spec, root, results_base)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / FAITHFULNESS_FILE
    report = read_for_update(path, sha, per_class=per_class)  # another split or subset: not comparable
    report.setdefault("archs", {})
    for arch in archs:
        t0 = time.perf_counter()
        df, run = score_arch(spec, root, manifest, sha, arch, checkpoints_dir, per_class)
        entry = {"n_images": int(len(df)), "seconds": round(time.perf_counter() - t0, 1), "inference": run}
        for m in METRICS:
            gap = (df[m] - df[f"control_{m}"]).dropna().to_numpy()
            entry[m] = {**summarise(df[m].to_numpy()), "control": summarise(df[f"control_{m}"].dropna().to_numpy()),
                        "gap_over_control": summarise(gap),
                        "share_above_control": float((gap > 0).mean()) if len(gap) else None}
        entry["per_class_road_combined"] = {c: float(g["road_combined"].mean()) for c, g in df.groupby("label")}
        report["archs"][arch] = entry
        progress(f"{spec.name}/{arch}: ROAD combined {entry['road_combined']['mean']:.4f} "
                 f"(control {entry['road_combined']['control']['mean']:.4f}), "
                 f"CamMult confidence change {entry['cam_mult_confidence_change']['mean']:.4f} "
                 f"(control {entry['cam_mult_confidence_change']['control']['mean']:.4f}) on {len(df)} images")
    report.update({
        "dataset": spec.name, "split_sha256": sha, "per_class": per_class,
        "protocol": ("Grad-CAM++ (pytorch-grad-cam GradCAMPlusPlus) of each fold model for its predicted class, on "
                     "images of its own test fold only" + (f" (stratified subset: up to {per_class} per class per "
                                                           "fold, fixed seed)" if per_class > 0 else "")
                     + "; scored with pytorch-grad-cam's ROADCombined (percentiles 20/40/60/80) and "
                     "CamMultImageConfidenceChange on softmax outputs; control = the same image scored with "
                     "the map of another image of the batch"),
        "ci95": "percentile bootstrap of the mean over images, 2000 resamples",
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "written_to": project_relative(path),
    })
    write_json(path, report)
    return report

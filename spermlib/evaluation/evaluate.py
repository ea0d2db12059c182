"""Out-of-fold evaluation: each fold's checkpoint on its own test fold → OOF CSVs and metrics.json.

Protocol: the test fold of a checkpoint is the fold it was never trained or selected on (checked
through the split-manifest hash in its card). Statistics use scikit-learn and scipy.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    roc_auc_score,
    roc_curve,
)

from spermlib.archs import ARCHS
from spermlib.data.datasets import DatasetSpec, is_full_dataset
from spermlib.data.preprocess import load_uint8_batch
from spermlib.data.splits import fold_parts, manifest_for_root
from spermlib.inference.core import EVAL_BATCH, InferenceModel
from spermlib.runtime import hardware, pick_device
from spermlib.store.cards import training_devices
from spermlib.store.checkpoints import (
    CheckpointError,
    available_folds,
    checkpoint_path,
    fold_cards,
    load_checkpoint,
)
from spermlib.store.paths import default_checkpoints_dir, project_relative
from spermlib.store.results import (
    METRICS_FILE,
    entry_name,
    load_oofs,
    prob_columns,
    read_for_update,
    results_dir_for,
    write_json,
    write_oof,
)

N_BOOTSTRAP = 2000
ECE_BINS = 15


# ----------------------------------------------------------------------------- metrics


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, n_bins: int = ECE_BINS) -> tuple[float, list[dict]]:
    """Top-label ECE with equal-width confidence bins, and the bins (for a reliability diagram)."""
    conf = proba.max(1)
    correct = (proba.argmax(1) == y).astype(float)
    edges = np.linspace(0, 1, n_bins + 1)
    ece, bins = 0.0, []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            gap = abs(correct[m].mean() - conf[m].mean())
            ece += m.mean() * gap
            bins.append({"lo": float(lo), "hi": float(hi), "count": int(m.sum()),
                         "confidence": float(conf[m].mean()), "accuracy": float(correct[m].mean())})
    return float(ece), bins


def bootstrap_ci(y: np.ndarray, pred: np.ndarray, metric, n: int = N_BOOTSTRAP, seed: int = 0) -> list[float]:
    """95 % percentile bootstrap CI of ``metric(y, pred)`` over images (scipy.stats.bootstrap)."""
    res = stats.bootstrap((y, pred), lambda a, b: metric(a, b), paired=True, vectorized=False,
                          n_resamples=n, confidence_level=0.95, method="percentile",
                          random_state=np.random.default_rng(seed))
    return [float(res.confidence_interval.low), float(res.confidence_interval.high)]


def macro_f1(y, pred) -> float:
    return float(f1_score(y, pred, average="macro"))


def compute_metrics(oof: pd.DataFrame, classes: list[str]) -> dict:
    """All metrics of one arch from its OOF table (columns label, fold, pred, prob_<class>)."""
    cidx = {c: i for i, c in enumerate(classes)}
    y = oof["label"].map(cidx).to_numpy()
    pred = oof["pred"].map(cidx).to_numpy()
    proba = oof[prob_columns(classes)].to_numpy(dtype=float)
    per_fold = []
    for k, g in oof.groupby("fold"):
        yk, pk = g["label"].map(cidx).to_numpy(), g["pred"].map(cidx).to_numpy()
        per_fold.append({"fold": int(k), "n": int(len(g)), "accuracy": float(accuracy_score(yk, pk)),
                         "macro_f1": macro_f1(yk, pk)})
    accs = np.array([f["accuracy"] for f in per_fold])
    f1s = np.array([f["macro_f1"] for f in per_fold])
    report = classification_report(y, pred, labels=list(range(len(classes))), target_names=classes,
                                   output_dict=True, zero_division=0)
    y_onehot = np.eye(len(classes))[y]
    auc_per_class = {}
    roc = {}
    for i, c in enumerate(classes):
        if 0 < y_onehot[:, i].sum() < len(y):
            auc_per_class[c] = float(roc_auc_score(y_onehot[:, i], proba[:, i]))
            fpr, tpr, _ = roc_curve(y_onehot[:, i], proba[:, i], drop_intermediate=True)
            roc[c] = {"fpr": np.round(fpr, 5).tolist(), "tpr": np.round(tpr, 5).tolist()}
    # One-vs-rest macro AUC is the mean of the per-class AUCs (what sklearn's multi_class="ovr" computes;
    # written out so the binary case works too).
    auc_macro = float(np.mean(list(auc_per_class.values()))) if auc_per_class else None
    ece, rel_bins = expected_calibration_error(proba, y)
    return {
        "n_images": int(len(oof)),
        "accuracy": {"mean": float(accs.mean()), "std": float(accs.std(ddof=1)) if len(accs) > 1 else 0.0,
                     "pooled": float(accuracy_score(y, pred)), "ci95": bootstrap_ci(y, pred, accuracy_score)},
        "macro_f1": {"mean": float(f1s.mean()), "std": float(f1s.std(ddof=1)) if len(f1s) > 1 else 0.0,
                     "pooled": macro_f1(y, pred), "ci95": bootstrap_ci(y, pred, macro_f1)},
        "per_fold": per_fold,
        "per_class": {c: {k: float(report[c][k]) for k in ("precision", "recall", "f1-score", "support")}
                      for c in classes},
        "confusion_matrix": confusion_matrix(y, pred, labels=list(range(len(classes)))).tolist(),
        "roc_auc_ovr_macro": auc_macro,
        "roc_auc_per_class": auc_per_class,
        "roc_curves": roc,
        "ece": ece,
        "reliability_bins": rel_bins,
    }


def mcnemar(oof_a: pd.DataFrame, oof_b: pd.DataFrame) -> dict:
    """Exact McNemar test on the images both archs scored (binomial test on discordant pairs)."""
    m = oof_a[["path", "label", "pred"]].merge(oof_b[["path", "pred"]], on="path", suffixes=("_a", "_b"))
    ra, rb = m["pred_a"] == m["label"], m["pred_b"] == m["label"]
    b, c = int((ra & ~rb).sum()), int((~ra & rb).sum())
    p = float(stats.binomtest(min(b, c), b + c, 0.5).pvalue) if b + c else 1.0
    return {"n": int(len(m)), "a_right_b_wrong": b, "a_wrong_b_right": c, "p_value": p}


# ----------------------------------------------------------------------------- running


def fold_checkpoints(spec: DatasetSpec, manifest: pd.DataFrame, manifest_sha: str, arch: str,
                     checkpoints_dir: Path | None = None):
    """Yield ``(fold, model, card)`` for every fold of ``manifest``, each model trained on this very split.

    Every fold must have a checkpoint, and each card must name this manifest's sha256: otherwise the
    fold's "test" images may have been training images of that checkpoint.
    """
    checkpoints_dir = Path(checkpoints_dir or default_checkpoints_dir())
    folds = sorted(int(k) for k in manifest.loc[manifest["fold"] >= 0, "fold"].unique())
    have = available_folds(spec, arch, checkpoints_dir)
    missing = [k for k in folds if k not in have]
    if missing:
        raise CheckpointError(f"{spec.name}/{arch}: no checkpoint for fold(s) {missing}")
    for k in folds:
        model, card = load_checkpoint(checkpoint_path(spec, arch, k, checkpoints_dir))
        if card.get("split_sha256") != manifest_sha:
            raise CheckpointError(
                f"{spec.name}/{arch} fold {k} was trained on another split manifest "
                f"({str(card.get('split_sha256'))[:12]}…); its test fold is not this one's — retrain it"
            )
        yield k, model, card


def inner_validation_sets(spec: DatasetSpec, root: Path, manifest: pd.DataFrame, manifest_sha: str, arch: str,
                          checkpoints_dir: Path, device: str | None = None, card_changes: dict | None = None):
    """Yield ``(fold, model, card, x, y)`` for every fold checkpoint in ``checkpoints_dir``: the fold model on the
    inference core (its card updated with ``card_changes``), and its inner-validation images (uint8) and labels,
    the split its early stopping used inside its training part. The test fold is never read."""
    dev = pick_device(device)
    for k in available_folds(spec, arch, checkpoints_dir):
        model, card = load_checkpoint(checkpoint_path(spec, arch, k, checkpoints_dir))
        if card.get("split_sha256") != manifest_sha:
            raise CheckpointError(f"{checkpoints_dir}: {spec.name}/{arch} fold {k} was trained on another split")
        fold_model = InferenceModel.from_card(model, {**card, **(card_changes or {})}, dev)
        _, val, _ = fold_parts(manifest, k, val_fraction=card["recipe"]["val_fraction"])
        x = load_uint8_batch(root, list(val["path"]), fold_model.prep.input_size)
        yield k, fold_model, card, x, np.array([spec.class_dirs.index(c) for c in val["label"]])


def oof_predictions(spec: DatasetSpec, root: Path, manifest: pd.DataFrame, manifest_sha: str, arch: str,
                    checkpoints_dir: Path | None = None, tta: bool = False,
                    device: str | None = None) -> tuple[pd.DataFrame, dict]:
    """Every fold model on its own test fold (inference core, batches of ``EVAL_BATCH``).

    Returns the OOF table and how it was computed (device, precision, batch size) for metrics.json.
    """
    dev = pick_device(device)
    rows, runs = [], []
    for k, model, card in fold_checkpoints(spec, manifest, manifest_sha, arch, checkpoints_dir):
        fold_model = InferenceModel.from_card(model, card, dev)
        test = manifest[manifest["fold"] == k]
        x = load_uint8_batch(root, list(test["path"]), fold_model.prep.input_size)
        proba = fold_model(x, batch_size=EVAL_BATCH, tta=tta).probabilities
        runs.append({"device": str(dev), "hardware": hardware(dev), "precision": fold_model.precision.name,
                     "batch_size": EVAL_BATCH})
        df = test[["path", "label", "fold"]].copy()
        df["pred"] = [spec.class_dirs[i] for i in proba.argmax(1)]
        for i, c in enumerate(prob_columns(spec.class_dirs)):
            df[c] = np.round(proba[:, i], 6)
        rows.append(df)
    oof = pd.concat(rows, ignore_index=True).sort_values("path", ignore_index=True)
    return oof, runs[0]


def input_size_of(cards: dict[int, dict]) -> int | str:
    """The folds' input size: one number when they share it, else each size with its folds (a recipe chosen per
    fold, e.g. ``224 px on folds 0, 2, 3, 160 px on folds 1, 4``)."""
    sizes: dict[int, list[int]] = {}
    for k, c in sorted(cards.items()):
        sizes.setdefault(int(c["input_size"]), []).append(k)
    if len(sizes) == 1:
        return next(iter(sizes))
    return ", ".join(f"{size} px on fold{'s' if len(ks) > 1 else ''} {', '.join(map(str, ks))}"
                     for size, ks in sorted(sizes.items(), reverse=True))


def evaluate_dataset(spec: DatasetSpec, root: Path, archs: list[str] | None = None, splits_path=None,
                     tta: bool = False, device: str | None = None, checkpoints_dir: Path | None = None,
                     results_base: Path | None = None) -> dict:
    """Evaluate ``archs`` (default: every arch with checkpoints) and (re)write metrics.json.

    Entries for archs not evaluated now are kept from an existing metrics.json, and the McNemar
    tests are recomputed from all OOF CSVs present.
    """
    checkpoints_dir = Path(checkpoints_dir or default_checkpoints_dir())
    manifest, sha = manifest_for_root(spec, root, splits_path)
    out_dir = results_dir_for(spec, root, results_base)
    out_dir.mkdir(parents=True, exist_ok=True)
    if archs is None:
        archs = [a for a in ARCHS if available_folds(spec, a, checkpoints_dir)]
    if not archs:
        raise CheckpointError(f"no checkpoints for {spec.name} in {checkpoints_dir}; train first")
    metrics_path = out_dir / METRICS_FILE
    metrics = read_for_update(metrics_path, sha)
    metrics.setdefault("archs", {})
    for arch in archs:
        name = entry_name(arch, tta)
        oof, run = oof_predictions(spec, root, manifest, sha, arch, checkpoints_dir, tta=tta, device=device)
        write_oof(out_dir, name, oof)
        m = compute_metrics(oof, list(spec.class_dirs))
        cards = fold_cards(spec, arch, checkpoints_dir)
        card = cards[min(cards)]
        m.update({"backbone": card["backbone"], "pretrained_source": card["pretrained_source"],
                  "input_size": input_size_of(cards), "tta": tta, "inference": run,
                  "training_device": training_devices(cards.values()),
                  "training_seconds_total": sum(c.get("training_seconds", 0) + c.get("init_training_seconds", 0)
                                                for c in cards.values()),
                  # which weights these numbers are of: an entry not re-evaluated after a fold is replaced shows
                  "fold_weights_sha256": {str(k): c["weights_sha256"] for k, c in sorted(cards.items())}})
        metrics["archs"][name] = m
    oofs = load_oofs(spec, out_dir.parent)
    metrics["mcnemar"] = {f"{a} vs {b}": mcnemar(oofs[a], oofs[b]) for a, b in itertools.combinations(oofs, 2)}
    metrics.update({
        "dataset": spec.name, "classes": list(spec.class_dirs), "split_manifest": f"splits/{spec.name}.csv",
        "split_sha256": sha, "full_dataset": is_full_dataset(root),
        "protocol": ("stratified 5-fold cross-validation grouped by RGB-pixel hash (duplicates share a fold; "
                     "conflicting-label duplicates excluded); each fold model selected on an inner validation "
                     "split of its training part; metrics on the never-seen test folds (out-of-fold); a fold "
                     "model's per-class decision bias applied where its own inner validation took one "
                     "(`spermlib bias`)"),
        "std": "sample standard deviation over folds (ddof=1)",
        "ci95": f"percentile bootstrap over pooled out-of-fold images, {N_BOOTSTRAP} resamples",
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "written_to": project_relative(metrics_path),
    })
    write_json(metrics_path, metrics)
    return metrics

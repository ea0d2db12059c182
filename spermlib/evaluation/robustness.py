"""Robustness suite: out-of-fold accuracy under image corruptions → ``results/<dataset>/robustness.json``.

Every image is scored by the one fold model that never saw it (``evaluate.fold_checkpoints``, the
inference core), first clean, then under each corruption of ``corruptions.CORRUPTIONS`` at its three
severities, applied to the uint8 model input. Accuracy and macro-F1 are pooled over all out-of-fold
images; the drop is clean minus corrupted. With ``tta`` each (corrupted) image is classified as ``predict``
and the Classify page do by default, by the mean over its 8 flips/90° turns (entry ``<arch>+tta``; 8× the
compute).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score

from spermlib.data import corruptions as corruptions_module
from spermlib.data import preprocess as preprocess_module
from spermlib.data.corruptions import CORRUPTIONS
from spermlib.data.datasets import DatasetSpec, is_full_dataset
from spermlib.data.preprocess import load_uint8_batch
from spermlib.data.splits import manifest_for_root
from spermlib.errors import SpermlibError
from spermlib.evaluation.evaluate import fold_checkpoints, inner_validation_sets, macro_f1
from spermlib.inference import core as core_module
from spermlib.inference.core import EVAL_BATCH, InferenceModel
from spermlib.runtime import hardware, pick_device
from spermlib.store.cards import archs_with_checkpoints
from spermlib.store.paths import default_checkpoints_dir, project_relative
from spermlib.store.results import (
    ROBUSTNESS_FILE,
    entry_name,
    read_robustness_fold,
    results_to_update,
    write_json,
    write_robustness_fold,
)

CLEAN = "clean"
MIDDLE = 2  # the middle severity, at which the robustness targets are stated
PROTOCOL = ("each image scored by the fold model that never saw it (out of fold), clean and under each corruption "
            "applied to the uint8 model input at three severities (deterministic; fixed noise seed); accuracy and "
            "macro-F1 pooled over all out-of-fold images; drop = clean minus corrupted")


def _pass_name(corruption: str, severity: int) -> str:
    return CLEAN if corruption == CLEAN else f"{corruption}@{severity}"


def _fold_key(card: dict, precision: str, tta: bool, corruptions: dict, test_paths: list[str]) -> str:
    """Everything a fold's predictions under the suite depend on: the fold model (its whole card, which names its
    weights' sha256, and holds its temperature and decision bias), how it ran, the suite, the images, and the code
    that corrupts, preprocesses and predicts (an edit there makes every fold be computed again)."""
    code = b"".join(Path(m.__file__).read_bytes() for m in (corruptions_module, preprocess_module, core_module))
    what = {"card": card, "precision": precision, "tta": tta, "paths": sorted(test_paths),
            "corruptions": {name: [c.parameter, list(c.severities)] for name, c in corruptions.items()},
            "code": hashlib.sha256(code).hexdigest()}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


def _long(test: pd.DataFrame, wide: pd.DataFrame, class_dirs: list[str], corruptions: dict) -> pd.DataFrame:
    """The long table (one row per image and pass) of a fold's wide one (one column per pass, class indices)."""
    passes = [(CLEAN, 0, None)] + [(name, s + 1, p) for name, c in corruptions.items()
                                   for s, p in enumerate(c.severities)]
    rows = []
    for name, severity, param in passes:
        df = test[["path", "label", "fold"]].copy()
        df["corruption"], df["severity"], df["parameter"] = name, severity, param
        df["pred"] = [class_dirs[i] for i in wide.loc[test["path"], _pass_name(name, severity)]]
        rows.append(df)
    return pd.concat(rows, ignore_index=True)


def corrupted_predictions(spec: DatasetSpec, root: Path, manifest: pd.DataFrame, manifest_sha: str, arch: str,
                          checkpoints_dir: Path | None = None, device: str | None = None,
                          corruptions: dict | None = None, tta: bool = False,
                          fold_store: Path | None = None, reuse: bool = True) -> tuple[pd.DataFrame, dict]:
    """Predicted class of every (image, corruption, severity), each image by its own fold's model.

    Returns a long table (path, label, fold, corruption, severity, parameter, pred; the clean pass
    has corruption ``clean`` and severity 0) and how it was computed (device, precision, batch size, and
    ``folds_from_store``). With ``fold_store`` (a results folder), each fold's predictions are stored there, and a
    fold whose stored predictions were made the same way (same card and weights, precision, TTA, suite, images and
    code) is read back instead of computed (unless not ``reuse``): a rerun after one fold model changed costs one
    fold, and an interrupted run resumes at the fold it was in.
    """
    corruptions = CORRUPTIONS if corruptions is None else corruptions
    dev = pick_device(device)
    entry = entry_name(arch, tta)
    rows, run, reused = [], {}, []
    for k, model, card in fold_checkpoints(spec, manifest, manifest_sha, arch, checkpoints_dir):
        fold_model = InferenceModel.from_card(model, card, dev)
        test = manifest[manifest["fold"] == k]
        key = _fold_key(card, fold_model.precision.name, tta, corruptions, list(test["path"]))
        stored = read_robustness_fold(fold_store, entry, k, key) if fold_store is not None and reuse else None
        if stored is not None:
            wide, run = stored
            reused.append(k)
        else:
            x = load_uint8_batch(root, list(test["path"]), fold_model.prep.input_size)
            run = {"device": str(dev), "hardware": hardware(dev), "precision": fold_model.precision.name,
                   "batch_size": EVAL_BATCH, "tta": tta}
            # One corrupted copy at a time (a generator): all of them at once would not fit for SMIDS.
            passes = ((name, s + 1, c.apply(x, p)) for name, c in corruptions.items()
                      for s, p in enumerate(c.severities))
            wide = pd.DataFrame(
                {_pass_name(name, severity): fold_model(images, batch_size=EVAL_BATCH, tta=tta).predicted
                 for name, severity, images in itertools.chain([(CLEAN, 0, x)], passes)},
                index=pd.Index(list(test["path"]), name="path"))
            if fold_store is not None:
                write_robustness_fold(fold_store, entry, k, key, wide, run)
        rows.append(_long(test, wide, list(spec.class_dirs), corruptions))
    return pd.concat(rows, ignore_index=True), {**run, "folds_from_store": reused}


def _scores(group: pd.DataFrame) -> dict:
    return {"accuracy": float(accuracy_score(group["label"], group["pred"])),
            "macro_f1": macro_f1(group["label"], group["pred"])}


def robustness_summary(preds: pd.DataFrame, corruptions: dict | None = None) -> dict:
    """Clean scores, and per corruption and severity the scores and their drop against clean."""
    corruptions = CORRUPTIONS if corruptions is None else corruptions
    clean = _scores(preds[preds["corruption"] == CLEAN])
    table = {}
    for name, c in corruptions.items():
        rows = []
        for severity, param in enumerate(c.severities, start=1):
            s = _scores(preds[(preds["corruption"] == name) & (preds["severity"] == severity)])
            rows.append({"severity": severity, "parameter": param, **s,
                         "accuracy_drop": clean["accuracy"] - s["accuracy"],
                         "macro_f1_drop": clean["macro_f1"] - s["macro_f1"]})
        table[name] = rows
    mean_drop = [float(np.mean([rows[i]["accuracy_drop"] for rows in table.values()])) for i in range(3)]
    worst = max(table, key=lambda n: table[n][-1]["accuracy_drop"])
    return {"n_images": int((preds["corruption"] == CLEAN).sum()), "clean": clean, "corruptions": table,
            "mean_accuracy_drop": mean_drop, "worst_corruption": worst}


def robustness_dataset(spec: DatasetSpec, root: Path, archs: list[str] | None = None, splits_path=None,
                       device: str | None = None, checkpoints_dir: Path | None = None,
                       results_base: Path | None = None, folds: list[int] | None = None, tta: bool = False,
                       recompute: bool = False) -> dict:
    """Run the suite for ``archs`` (default: every arch with checkpoints) and (re)write robustness.json; with
    ``folds``, only those outer folds' test images, each still by its own fold model; with ``tta``, the
    ``<arch>+tta`` entries (the other entries are kept). Each fold's predictions are stored beside robustness.json
    and reused while that fold's model and the suite are unchanged (``corrupted_predictions``), unless
    ``recompute``."""
    checkpoints_dir = Path(checkpoints_dir or default_checkpoints_dir())
    manifest, sha = manifest_for_root(spec, root, splits_path)
    if folds is not None:  # the other folds' images are left out, not re-assigned: the sha stays the split's
        manifest = manifest[manifest["fold"].isin(folds)]
        if manifest.empty:
            raise SpermlibError(f"--folds {folds}: the split has no such fold")
    archs = archs_with_checkpoints(spec, archs, checkpoints_dir)
    path, report = results_to_update(spec, root, ROBUSTNESS_FILE, sha, results_base)
    for arch in archs:
        preds, run = corrupted_predictions(spec, root, manifest, sha, arch, checkpoints_dir, device, tta=tta,
                                           fold_store=path.parent, reuse=not recompute)
        report["archs"][entry_name(arch, tta)] = {**robustness_summary(preds), "inference": run}
    report.update({
        "dataset": spec.name, "classes": list(spec.class_dirs), "split_sha256": sha,
        "full_dataset": is_full_dataset(root), "protocol": PROTOCOL, "folds": folds or "all",
        "corruptions": {name: {"parameter": c.parameter, "severities": list(c.severities)}
                        for name, c in CORRUPTIONS.items()},
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "written_to": project_relative(path),
    })
    write_json(path, report)
    return report


def inner_validation_robustness(spec: DatasetSpec, root: Path, manifest: pd.DataFrame, manifest_sha: str, arch: str,
                                checkpoints_dir: Path, device: str | None = None) -> dict[int, dict]:
    """Per fold that ``checkpoints_dir`` has: accuracy on the fold's inner-validation images (the split its early
    stopping used, inside its training part; the test fold is never read), clean and averaged over every
    corruption of the suite at the middle severity. What a recipe choice for that fold may look at."""
    out = {}
    for k, fold_model, _, x, y in inner_validation_sets(spec, root, manifest, manifest_sha, arch, checkpoints_dir,
                                                        device):
        def accuracy(images, fold_model=fold_model, y=y) -> float:
            return float((fold_model(images, batch_size=EVAL_BATCH).predicted == y).mean())

        corrupted = [accuracy(c.apply(x, c.severities[MIDDLE - 1])) for c in CORRUPTIONS.values()]
        out[k] = {"n_inner_val": len(y), "clean_accuracy": accuracy(x), "corrupted_accuracy": float(np.mean(corrupted))}
    return out


def choose_per_fold(baseline: dict[int, dict], candidate: dict[int, dict]) -> list[int]:
    """The folds where the candidate recipe wins under the nested rule, fixed before any result was seen: on that
    fold's own inner validation, a higher mean accuracy under the corruptions (middle severity) and a clean
    accuracy lower by at most one image (the resolution of ~26 HuSHeM inner-validation images: noise)."""
    won = []
    for k in sorted(set(baseline) & set(candidate)):
        b, c = baseline[k], candidate[k]
        if (c["corrupted_accuracy"] > b["corrupted_accuracy"]
                and c["clean_accuracy"] >= b["clean_accuracy"] - 1 / c["n_inner_val"] - 1e-9):
            won.append(k)
    return won


def improves_per_fold(current: dict[int, dict], candidate: dict[int, dict]) -> list[int]:
    """The folds where a more accurate recipe replaces the current (already robustness-chosen) fold model under
    the rule fixed for the 224 px + hardening candidates before those models existed: on that fold's own inner
    validation, a strictly higher clean accuracy and an accuracy under the corruptions (middle severity) at least
    as high. The mirror image of :func:`choose_per_fold`, which trades clean accuracy for robustness; this one
    trades neither away."""
    return [k for k in sorted(set(current) & set(candidate))
            if candidate[k]["clean_accuracy"] > current[k]["clean_accuracy"] + 1e-9
            and candidate[k]["corrupted_accuracy"] >= current[k]["corrupted_accuracy"] - 1e-9]


def pick_per_fold(baseline: dict[int, dict], candidates: dict[str, dict[int, dict]]) -> dict[int, str]:
    """Per fold, the one candidate that replaces the baseline when several were run: among the candidates that win
    fold k under :func:`choose_per_fold`, the highest inner-validation accuracy under the corruptions; a tie goes
    to the candidate named first (callers list the one closest to the baseline first). Folds no candidate wins
    are absent. Like ``choose_per_fold`` it reads fold k's inner validation only, so the choice stays nested."""
    picked: dict[int, str] = {}
    for name, scores in candidates.items():
        for k in choose_per_fold(baseline, scores):
            if k not in picked or scores[k]["corrupted_accuracy"] > candidates[picked[k]][k]["corrupted_accuracy"]:
                picked[k] = name
    return dict(sorted(picked.items()))


def add_inner_robustness(comparison: dict, spec: DatasetSpec, root: Path, runs: dict[str, Path],
                         splits_path=None) -> str:
    """Add each run's per-fold inner-validation robustness to ``tune``'s comparison, and to every run after the
    first (the baseline) the folds it wins under :func:`choose_per_fold`; returns the lines to print."""
    manifest, sha = manifest_for_root(spec, root, splits_path)
    scores = {name: inner_validation_robustness(spec, root, manifest, sha, comparison["arch"], Path(folder))
              for name, folder in runs.items()}
    base = comparison["baseline"]
    lines = [f"inner validation, clean / mean under the corruptions at severity {MIDDLE} (per fold):"]
    candidates: dict[str, dict[int, dict]] = {}  # every run but the baseline: its own folds' scores
    for row in comparison["configs"]:
        own = {k: v for k, v in scores[row["name"]].items() if k in row["folds"]}
        row["inner_val_robustness"] = {str(k): v for k, v in own.items()}
        row["inner_val_corrupted_accuracy"] = float(np.mean([v["corrupted_accuracy"] for v in own.values()]))
        if row["name"] != base:
            candidates[row["name"]] = own
            row["chosen_over_baseline_folds"] = choose_per_fold(scores[base], own)
        lines.append(f"  {row['name']:<16} " + "  ".join(
            f"f{k} {v['clean_accuracy']:.3f}/{v['corrupted_accuracy']:.3f}" for k, v in sorted(own.items()))
            + (f"  → chosen on folds {row['chosen_over_baseline_folds']}" if row["name"] != base else ""))
    if len(candidates) > 1:  # several candidates may win one fold: the rule of pick_per_fold names one per fold
        comparison["picked_per_fold"] = {str(k): name for k, name in pick_per_fold(scores[base], candidates).items()}
        lines.append("picked per fold (pick_per_fold): " + (", ".join(
            f"fold {k}: {name}" for k, name in comparison["picked_per_fold"].items()) or "none: the baseline stays"))
    comparison["robustness_protocol"] = (
        f"per fold, its inner-validation images clean and under every corruption of the suite at severity {MIDDLE}; "
        "a run is chosen over the baseline for fold k by fold k's inner validation alone (choose_per_fold)")
    return "\n".join(lines)

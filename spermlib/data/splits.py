"""Where folds are decided: leakage-free, stratified, grouped 5-fold cross-validation.

* Pixel-identical images (same decoded RGB pixels, whatever the file format) form one group and
  always land in the same fold, so a test image never has a copy in its training part.
* Groups whose members carry *different* labels (4 pairs in SMIDS) have no trustworthy label.
  Rule: they are excluded from training and evaluation (``fold = -1``, ``excluded =
  conflicting_labels``) and reported by ``spermlib splits``.
* An own dataset's file that has an image suffix but cannot be decoded is listed and excluded the same
  way (``excluded = unreadable``); a built-in dataset has none (its decode errors stay errors).
* The inner validation split (early stopping, model selection) is carved from the training part of
  each fold, again stratified and grouped. The test fold is only ever touched by evaluation.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from spermlib.data.datasets import PROJECT_ROOT, DataError, DatasetSpec, list_images
from spermlib.data.imageio import ImageError, load_rgb, pixel_sha256

N_FOLDS = 5
SPLIT_SEED = 20260
INNER_VAL_FRACTION = 0.15
SPLITS_DIR = PROJECT_ROOT / "splits"
MANIFEST_COLUMNS = ["path", "label", "fold", "group", "pixel_sha256", "excluded"]
CONFLICT = "conflicting_labels"
UNREADABLE = "unreadable"


@dataclass
class SplitReport:
    n_images: int
    n_groups: int
    duplicate_groups: list[list[str]]  # groups with more than one file
    conflicting_groups: list[list[tuple[str, str]]]  # (path, label) per member
    fold_counts: pd.DataFrame  # fold × label
    unreadable: list[str] = field(default_factory=list)  # own datasets: image-named files that do not decode


def hash_images(spec: DatasetSpec, root: Path) -> pd.DataFrame:
    """``list_images`` plus the RGB-pixel sha256 of every file."""
    df = list_images(spec, root)
    df["pixel_sha256"] = [_pixel_hash(spec, Path(root) / p) for p in df["path"]]
    return df


def _pixel_hash(spec: DatasetSpec, path: Path) -> str:
    """The file's RGB-pixel sha256; "" for an own dataset's undecodable file (then excluded as unreadable)."""
    try:
        return pixel_sha256(load_rgb(path))
    except ImageError:
        if spec.is_builtin:
            raise
        return ""


def assign_folds(df: pd.DataFrame, n_folds: int = N_FOLDS, seed: int = SPLIT_SEED) -> pd.DataFrame:
    """Add ``group``, ``fold`` and ``excluded`` to a frame with ``path``, ``label``, ``pixel_sha256``."""
    df = df.sort_values("path", ignore_index=True).copy()
    # Group id = order of first appearance of each pixel hash (stable, readable small integers).
    df["group"] = pd.factorize(df["pixel_sha256"])[0]
    labels_per_group = df.groupby("group")["label"].nunique()
    conflicting = set(labels_per_group[labels_per_group > 1].index)
    df["excluded"] = np.where(df["group"].isin(conflicting), CONFLICT, "")
    df.loc[df["pixel_sha256"] == "", "excluded"] = UNREADABLE
    df["fold"] = -1
    usable = df["excluded"] == ""
    sub = df[usable]
    check_enough_groups(sub, n_folds, f"{n_folds}-fold cross-validation", "pass a smaller --folds")
    from sklearn.model_selection import StratifiedGroupKFold  # here: pages read manifests, scikit-learn costs 0.8 s

    sgkf = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, test_idx) in enumerate(sgkf.split(sub, sub["label"], groups=sub["group"])):
        df.loc[sub.index[test_idx], "fold"] = k
    return df[MANIFEST_COLUMNS]


def check_enough_groups(usable: pd.DataFrame, n_parts: int, what: str, otherwise: str) -> None:
    """Refuse to split ``usable`` into ``n_parts`` with one :class:`DataError` where scikit-learn's stratified
    grouped split would raise: fewer distinct images than parts, or no class with as many images as parts."""
    if n_parts < 2:
        raise DataError(f"{what} needs at least 2 parts (got {n_parts})")
    n_groups = usable["group"].nunique()
    if n_groups < n_parts:
        raise DataError(f"{what} needs at least {n_parts} distinct usable images; there are {n_groups} "
                        f"({len(usable)} file(s), pixel-identical copies counted once); add images or {otherwise}")
    per_class = usable["label"].value_counts()
    if (per_class < n_parts).all():
        listed = ", ".join(f"{label!r} has {n}" for label, n in per_class.sort_index().items())
        raise DataError(f"{what} needs at least {n_parts} usable images in some class ({listed}); add images or "
                        f"{otherwise}")


def check_fold_counts(df: pd.DataFrame, n_folds: int = N_FOLDS, val_fraction: float = INNER_VAL_FRACTION) -> None:
    """Refuse a split some class cannot fill: every test fold needs an image of the class, and every fold's
    training part as many as its stratified inner-validation split has parts (scikit-learn's requirement)."""
    usable = df[df["excluded"] == ""]
    n_inner = max(2, round(1 / val_fraction))
    per_fold = pd.crosstab(usable["label"], usable["fold"]).reindex(sorted(set(df["label"])), fill_value=0)
    per_fold = per_fold.reindex(columns=range(n_folds), fill_value=0)
    total = per_fold.sum(axis=1)
    training_part = per_fold.rsub(total, axis=0).min(axis=1)  # the smallest training part of each class
    short = total[(per_fold.min(axis=1) < 1) | (training_part < n_inner)]
    if len(short):
        need = max(n_folds, math.ceil(n_inner * n_folds / (n_folds - 1)))
        listed = ", ".join(f"{label!r} has {n}" for label, n in short.items())
        raise DataError(f"too few usable images per class for {n_folds}-fold cross-validation: {listed}; each class "
                        f"needs about {need} (one or more per test fold, and {n_inner} in every fold's training part "
                        "for its inner-validation split); add images")


def report(df: pd.DataFrame) -> SplitReport:
    readable = df["excluded"] != UNREADABLE
    groups = df[readable].groupby("group")
    dup = [sorted(g["path"]) for _, g in groups if len(g) > 1]
    conf = [list(zip(g["path"], g["label"])) for _, g in groups if g["label"].nunique() > 1]
    counts = pd.crosstab(df["fold"], df["label"])
    return SplitReport(len(df), df[readable]["group"].nunique(), dup, conf, counts, sorted(df[~readable]["path"]))


def manifest_path(spec: DatasetSpec, splits_dir: Path = SPLITS_DIR) -> Path:
    return Path(splits_dir) / f"{spec.name}.csv"


def write_manifest(df: pd.DataFrame, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    df[MANIFEST_COLUMNS].to_csv(path, index=False, lineterminator="\n")
    return manifest_sha256(path)


def read_manifest(path: Path) -> pd.DataFrame:
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"split manifest {path} not found; create it with `spermlib splits --dataset NAME`"
        )
    df = pd.read_csv(path, dtype={"path": str, "label": str, "pixel_sha256": str}, keep_default_na=False)
    missing = set(MANIFEST_COLUMNS) - set(df.columns)
    if missing:
        raise DataError(f"{path} lacks columns {sorted(missing)}")
    df["fold"] = df["fold"].astype(int)
    df["group"] = df["group"].astype(int)
    return df


def manifest_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def fold_parts(
    manifest: pd.DataFrame, fold: int, val_fraction: float = INNER_VAL_FRACTION, seed: int = SPLIT_SEED
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, inner_val, test) for ``fold``. Train ∪ inner_val is exactly the other folds."""
    usable = manifest[manifest["fold"] >= 0]
    test = usable[usable["fold"] == fold]
    rest = usable[usable["fold"] != fold]
    if len(test) == 0:
        raise DataError(f"fold {fold} has no images")
    n_inner = max(2, round(1 / val_fraction))
    check_enough_groups(rest, n_inner, f"the inner-validation split of fold {fold}'s training part",
                        "use a larger validation fraction")
    from sklearn.model_selection import StratifiedGroupKFold

    sgkf = StratifiedGroupKFold(n_splits=n_inner, shuffle=True, random_state=seed + 1000 + fold)
    train_idx, val_idx = next(sgkf.split(rest, rest["label"], groups=rest["group"]))
    return rest.iloc[train_idx], rest.iloc[val_idx], test


def manifest_for_root(spec: DatasetSpec, root: Path, splits_path: str | Path | None = None) -> tuple[pd.DataFrame, str]:
    """The committed manifest restricted to the images present under ``root`` (e.g. the bundled
    sample, whose paths are a subset of the full dataset's), and the manifest's sha256.

    Images under ``root`` that the manifest does not know are an error: their fold is undefined, and
    silently guessing one could leak; the message says how to make a manifest for that folder.
    """
    path = Path(splits_path) if splits_path else manifest_path(spec)
    manifest = read_manifest(path)
    present = set(list_images(spec, root)["path"])
    unknown = present - set(manifest["path"])
    if unknown:
        raise DataError(
            f"{len(unknown)} images under {root} are not in {path} (e.g. {sorted(unknown)[0]}); "
            f"write a manifest for this folder with `spermlib splits --dataset {spec.name} "
            f"--data-dir {root} --out my_splits.csv` and pass --splits my_splits.csv"
        )
    return manifest[manifest["path"].isin(present)].reset_index(drop=True), manifest_sha256(path)

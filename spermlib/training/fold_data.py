"""One fold's training and inner-validation images, decoded once and kept in memory as uint8.

The test fold is never loaded here: :func:`load_fold_data` takes only the train and inner-validation
parts of :func:`spermlib.data.splits.fold_parts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from spermlib.data.datasets import DatasetSpec
from spermlib.data.preprocess import load_uint8_batch
from spermlib.data.splits import fold_parts
from spermlib.training.recipe import Recipe


@dataclass
class FoldData:
    """Decoded, resized uint8 tensors of one fold's training and inner-validation parts."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    train_paths: list[str] = field(default_factory=list)
    val_paths: list[str] = field(default_factory=list)


class DecodedImages:
    """Every usable image of a manifest decoded and resized once, kept in memory as uint8.

    All folds index into the same tensor, so ``train --fold all`` decodes each file exactly once
    (SMIDS at 160 px is about 230 MB).
    """

    def __init__(self, root: Path, manifest: pd.DataFrame, size: int):
        usable = manifest[manifest["fold"] >= 0]
        self.size = size
        self.index = {p: i for i, p in enumerate(usable["path"])}
        self.images = load_uint8_batch(root, list(usable["path"]), size, desc=f"decode {len(usable)} images")

    def take(self, paths: list[str]) -> torch.Tensor:
        return self.images[torch.tensor([self.index[p] for p in paths], dtype=torch.long)]


def load_fold_data(spec: DatasetSpec, root: Path, manifest: pd.DataFrame, fold: int, r: Recipe, size: int,
                   decoded: DecodedImages | None = None) -> FoldData:
    """Train and inner-validation tensors of ``fold`` (the test fold is not loaded here at all)."""
    train, val, _ = fold_parts(manifest, fold, val_fraction=r.val_fraction)
    if decoded is None or decoded.size != size:
        decoded = DecodedImages(root, pd.concat([train, val]), size)
    cls = {c: i for i, c in enumerate(spec.class_dirs)}
    return FoldData(
        x_train=decoded.take(list(train["path"])),
        y_train=torch.tensor([cls[c] for c in train["label"]]),
        x_val=decoded.take(list(val["path"])),
        y_val=torch.tensor([cls[c] for c in val["label"]]),
        train_paths=list(train["path"]),
        val_paths=list(val["path"]),
    )

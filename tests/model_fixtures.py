"""Fixtures that train tiny real models on a synthetic task (imported by conftest.py).

The toy task: 48×48 noisy images; class ``disc`` has a bright disc, ``square`` a bright square, and
``empty`` nothing, each object at a random position. A SimpleCNN learns it in a few seconds, and a
model that learned it must look at the object — which is what the Grad-CAM++ test checks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from spermlib.data.datasets import DatasetSpec
from spermlib.data.splits import write_manifest
from spermlib.training.train import FoldData, Recipe, train_fold

TOY = DatasetSpec(name="toy", folder="TOY", title="Toy shapes", class_dirs=("disc", "square", "empty"),
                  display_names=("Disc", "Square", "Empty"), input_size=48, citation="synthetic")
TOY_SIZE = 48


def toy_image(label: str, rng: np.random.Generator, size: int = TOY_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(H×W×3 uint8 image, boolean object mask)."""
    img = rng.normal(90, 18, (size, size, 3)).clip(0, 255)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.integers(12, size - 12, 2)
    if label == "disc":
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= 7**2
    elif label == "square":
        mask = (abs(yy - cy) <= 6) & (abs(xx - cx) <= 6)
    else:
        mask = np.zeros((size, size), bool)
    img[mask] = rng.normal(220, 10, (int(mask.sum()), 3)).clip(0, 255)
    return img.astype(np.uint8), mask


def toy_tensors(n_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for i, label in enumerate(TOY.class_dirs):
        for _ in range(n_per_class):
            xs.append(torch.from_numpy(toy_image(label, rng)[0]).permute(2, 0, 1))
            ys.append(i)
    return torch.stack(xs), torch.tensor(ys)


def toy_folder(root: Path, n_per_class: int = 10, seed: int = 1) -> pd.DataFrame:
    """Write a toy dataset on disk and a 2-fold manifest for it; returns the manifest."""
    rng = np.random.default_rng(seed)
    rows = []
    for label in TOY.class_dirs:
        (root / label).mkdir(parents=True, exist_ok=True)
        for j in range(n_per_class):
            img, _ = toy_image(label, rng)
            rel = f"{label}/{label}_{j:03d}.png"
            Image.fromarray(img).save(root / rel)
            rows.append({"path": rel, "label": label, "fold": j % 2, "group": len(rows),
                         "pixel_sha256": f"h{len(rows)}", "excluded": ""})
    return pd.DataFrame(rows)


FAST = dict(batch_size=16, epochs=6, precision="fp32", warmup_epochs=0, lr=3e-3, patience=50, rotate_deg=0.0,
            color_jitter=0.0)


@pytest.fixture(scope="session")
def toy_checkpoints(tmp_path_factory) -> dict:
    """A toy dataset on disk with a 2-fold manifest, and trained SimpleCNN checkpoints for both folds."""
    base = tmp_path_factory.mktemp("toy")
    data_root = base / "data"
    manifest = toy_folder(data_root, n_per_class=10, seed=1)
    manifest_file = base / "toy.csv"
    sha = write_manifest(manifest, manifest_file)
    ckpt_dir = base / "checkpoints"
    x, y = toy_tensors(40, seed=2)
    xv, yv = toy_tensors(8, seed=3)
    cards = []
    for fold in (0, 1):
        r = Recipe.for_arch("simplecnn", **FAST, seed=fold)
        cards.append(train_fold(TOY, "simplecnn", fold, FoldData(x, y, xv, yv), r, manifest_sha256=sha,
                                checkpoints_dir=ckpt_dir, runs_dir=base / "runs", progress=False))
    return {"data_root": data_root, "manifest": manifest_file, "sha": sha, "checkpoints": ckpt_dir,
            "cards": cards, "base": base}


def swapped_folds_manifest(toy_checkpoints: dict, out: Path) -> Path:
    """The toy manifest with its two folds swapped: a split the toy checkpoints were not trained on."""
    other = pd.read_csv(toy_checkpoints["manifest"])
    other["fold"] = 1 - other["fold"]
    other.to_csv(out, index=False)
    return out


# Each biased fold model predicts its own class whatever the image (a huge classifier bias), so a path
# that scores an image with another fold's model than the one asked for gives a visibly wrong class.
FOLD_CLASS = {0: "square", 1: "empty"}


@pytest.fixture(scope="session")
def biased_checkpoints(toy_checkpoints, tmp_path_factory) -> dict:
    """``toy_checkpoints`` with each fold model biased towards ``FOLD_CLASS[fold]`` (same data and manifest)."""
    from spermlib.store.checkpoints import checkpoint_path, load_checkpoint, save_checkpoint

    out = tmp_path_factory.mktemp("biased") / "checkpoints"
    for fold, label in FOLD_CLASS.items():
        model, card = load_checkpoint(checkpoint_path(TOY, "simplecnn", fold, toy_checkpoints["checkpoints"]))
        with torch.no_grad():
            model.get_classifier().bias[TOY.class_dirs.index(label)] += 1000.0
        card = {k: v for k, v in card.items() if k not in ("card_version", "weights_sha256")}
        save_checkpoint(model, card, checkpoint_path(TOY, "simplecnn", fold, out))
    return {**toy_checkpoints, "checkpoints": out}

"""Nested probe: do more test-time views than the 8 flips/90° turns help a model trained on any angle?

    python -m tools.tta_probe --dataset hushem [--data-dir ../shared/data] [--archs effnet,effnet_cbam]

The HuSHeM EfficientNets were trained with rotations by any angle (``rotate_deg`` 180), so a head turned by
45° is a view they know, and one the 8 dihedral views (``core.tta_views``) never show. Candidates: ``d8`` (the
shipped TTA), ``d8_45`` (those 8 and each turned by 45° more: 16 views) and ``d8_30_60`` (turned by 30° and 60°
too: 24 views). A turn is the training augmentation's own resampling (bilinear ``grid_sample`` with
reflection padding, ``training.recipe.augment``), then rounded back to uint8 as a camera image would be.

For each outer fold k, each candidate is scored on fold k's own inner validation (the split training
used); the one with the most inner-validation images right (ties: lower inner-validation NLL, then fewer
views) is fold k's choice. Test folds only report: out-of-fold accuracy and macro-F1 of each fixed candidate
and of the nested per-fold choice (2-core CPU, the inference core's precision). Prints a table; writes nothing.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, f1_score

from spermlib.data.datasets import get_dataset, resolve_data_root
from spermlib.data.splits import manifest_for_root
from spermlib.evaluation.evaluate import fold_checkpoints
from spermlib.inference.core import InferenceModel, tta_views
from spermlib.store.paths import default_checkpoints_dir
from spermlib.training.fold_data import DecodedImages, load_fold_data
from spermlib.training.recipe import Recipe

CANDIDATES = {"d8": (0.0,), "d8_45": (0.0, 45.0), "d8_30_60": (0.0, 30.0, 60.0)}


def turned(x_uint8: torch.Tensor, degrees: float) -> torch.Tensor:
    """``x_uint8`` turned by ``degrees`` as training turns images (bilinear, reflection padding), as uint8."""
    if degrees == 0:
        return x_uint8
    a = math.radians(degrees)
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]]).expand(len(x_uint8), 2, 3)
    x = x_uint8.float() / 255
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out.mul(255).round_().clamp_(0, 255).to(torch.uint8)


def view_probabilities(fm: InferenceModel, x_uint8: torch.Tensor) -> dict[float, np.ndarray]:
    """Mean softmax over the 8 dihedral views of ``x`` turned by each angle any candidate uses."""
    angles = sorted({a for c in CANDIDATES.values() for a in c})
    return {a: np.mean([fm(v.contiguous()).probabilities for v in tta_views(turned(x_uint8, a))], axis=0)
            for a in angles}


def _nll(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).mean())


def probe(dataset: str, data_dir: str | None, arch: str) -> dict:
    spec = get_dataset(dataset)
    root = resolve_data_root(spec, data_dir)
    manifest, sha = manifest_for_root(spec, root, None)
    cls = {c: i for i, c in enumerate(spec.class_dirs)}
    decoded: dict[int, DecodedImages] = {}
    y_all, pred_all, choices = [], {c: [] for c in (*CANDIDATES, "nested")}, {}
    for k, model, card in fold_checkpoints(spec, manifest, sha, arch, default_checkpoints_dir()):
        fm = InferenceModel.from_card(model, card)
        size = fm.prep.input_size
        decoded.setdefault(size, DecodedImages(root, manifest, size))
        r = Recipe(val_fraction=float(card.get("recipe", {}).get("val_fraction", Recipe.val_fraction)))
        data = load_fold_data(spec, root, manifest, k, r, size, decoded[size])
        y_val = data.y_val.numpy()
        test = manifest[manifest["fold"] == k]
        val_views = view_probabilities(fm, data.x_val)
        test_views = view_probabilities(fm, decoded[size].take(list(test["path"])))
        val_p = {c: np.mean([val_views[a] for a in angles], axis=0) for c, angles in CANDIDATES.items()}
        test_p = {c: np.mean([test_views[a] for a in angles], axis=0) for c, angles in CANDIDATES.items()}
        score = {c: (int((val_p[c].argmax(1) == y_val).sum()), -_nll(val_p[c], y_val), -len(CANDIDATES[c]))
                 for c in CANDIDATES}
        choices[k] = max(CANDIDATES, key=lambda c: score[c])
        for c in CANDIDATES:
            pred_all[c].append(test_p[c].argmax(1))
        pred_all["nested"].append(test_p[choices[k]].argmax(1))
        y_all.append(test["label"].map(cls).to_numpy())
        print(f"{arch} fold {k}: inner-val right " + ", ".join(f"{c} {score[c][0]}/{len(y_val)}" for c in CANDIDATES)
              + f" -> {choices[k]}", flush=True)
    y = np.concatenate(y_all)
    out = {}
    for c, parts in pred_all.items():
        p = np.concatenate(parts)
        out[c] = (accuracy_score(y, p), f1_score(y, p, average="macro"))
        print(f"{arch} {c:9s} out of fold: accuracy {100 * out[c][0]:.1f} %, macro-F1 {out[c][1]:.3f}", flush=True)
    return {"oof": out, "choices": choices}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--archs", default="effnet,effnet_cbam")
    args = parser.parse_args()
    for arch in args.archs.split(","):
        probe(args.dataset, args.data_dir, arch)


if __name__ == "__main__":
    main()

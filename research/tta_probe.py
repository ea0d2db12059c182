"""Nested probe: do more test-time views than the 8 flips/90° turns help a model trained on any angle?

    python -m research.tta_probe --dataset hushem [--data-dir ../shared/data] [--archs effnet,effnet_cbam]

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

import math

import numpy as np
import torch
import torch.nn.functional as F

from research.nested_choice import NestedTally, fold_sets, run_per_arch
from spermlib.inference.core import InferenceModel

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
    return {a: fm(turned(x_uint8, a).contiguous(), tta=True).probabilities for a in angles}  # the core's stacked TTA


def probe(dataset: str, data_dir: str | None, arch: str) -> dict:
    tally = NestedTally(list(CANDIDATES), tie_break=lambda c: -len(CANDIDATES[c]))  # ties: fewer views
    for f in fold_sets(dataset, data_dir, arch):
        val_views, test_views = view_probabilities(f.model, f.x_val), view_probabilities(f.model, f.x_test)
        val_p = {c: np.mean([val_views[a] for a in angles], axis=0) for c, angles in CANDIDATES.items()}
        test_p = {c: np.mean([test_views[a] for a in angles], axis=0) for c, angles in CANDIDATES.items()}
        tally.add_fold(f.fold, val_p, f.y_val, test_p, f.y_test, name=f"{arch} ")
    return tally.report(name=f"{arch} ")


def main() -> None:
    run_per_arch(__doc__, probe)


if __name__ == "__main__":
    main()

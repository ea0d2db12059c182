"""Weight-space interpolation of a fold's clean model and its hardened second stage (WiSE-FT).

Wortsman et al., "Robust fine-tuning of zero-shot models" (CVPR 2022): the weights on the straight line
between a model and its own fine-tuned continuation keep much of the continuation's robustness while losing
less of the starting model's accuracy, because both lie in one basin. Here the starting model is a fold's
clean model and the continuation the hardening stage run from exactly those weights (the stage's card
records their sha256; anything else is refused: two unrelated models have no useful midpoint). Batch-norm
running statistics are interpolated like the weights.

The result is one model per fold, so the checkpoint format, ``predict`` and the app are unchanged; its card
says what it was made of (``weight_average``) and carries its own inner-validation scores.
"""

from __future__ import annotations

from pathlib import Path

import torch

from spermlib.data.datasets import DatasetSpec
from spermlib.errors import SpermlibError
from spermlib.inference.core import predict_proba
from spermlib.runtime import pick_device, precision_policy
from spermlib.store.cards import checkpoint_path
from spermlib.store.checkpoints import load_checkpoint, round_to_fp16_, save_checkpoint
from spermlib.store.paths import project_relative
from spermlib.training.card import git_commit
from spermlib.training.fold_data import FoldData
from spermlib.training.loop import val_metrics

# Cards fields that must agree for two checkpoints to be the same fold model's start and continuation.
SAME_FIELDS = ("dataset", "arch", "fold", "backbone", "classes", "input_size", "mean", "std", "split_sha256")


def interpolate_state(clean: dict[str, torch.Tensor], stage: dict[str, torch.Tensor], alpha: float
                      ) -> dict[str, torch.Tensor]:
    """``alpha · clean + (1 − alpha) · stage`` for floating tensors; integer buffers (BN step counts) from ``stage``."""
    if set(clean) != set(stage):
        raise SpermlibError("the two models have different parameters")
    return {k: (alpha * clean[k].float() + (1 - alpha) * stage[k].float()).to(clean[k].dtype)
            if clean[k].is_floating_point() else stage[k].clone() for k in clean}


def average_fold(spec: DatasetSpec, arch: str, fold: int, clean_dir: Path, stage_dir: Path, alpha: float,
                 out_dir: Path, data: FoldData, device: str | None = None) -> dict:
    """Write fold ``fold``'s interpolated checkpoint under ``out_dir``; return its card.

    ``data`` is the fold's training and inner-validation parts (the test fold is never loaded): the card's
    inner-validation scores are those of the interpolated weights, as for a trained checkpoint.
    """
    if not 0.0 <= alpha <= 1.0:
        raise SpermlibError(f"--alpha must be within 0 and 1, got {alpha}")
    clean_model, clean_card = load_checkpoint(checkpoint_path(spec, arch, fold, clean_dir))
    stage_model, stage_card = load_checkpoint(checkpoint_path(spec, arch, fold, stage_dir))
    differ = [f for f in SAME_FIELDS if clean_card.get(f) != stage_card.get(f)]
    if differ:
        raise SpermlibError(f"{stage_dir} fold {fold} is not a continuation of {clean_dir} fold {fold}: "
                            f"{', '.join(differ)} differ")
    if stage_card.get("init_weights_sha256") != clean_card["weights_sha256"]:
        raise SpermlibError(f"{stage_dir} fold {fold} did not start from {clean_dir} fold {fold}'s weights "
                            f"(its card's init_weights_sha256 is not theirs): no common basin to interpolate in")
    model = stage_model
    model.load_state_dict(interpolate_state(clean_model.state_dict(), stage_model.state_dict(), alpha))
    round_to_fp16_(model)  # scored as shipped, like a trained checkpoint's card
    dev = pick_device(device)
    policy = precision_policy(dev)
    proba = predict_proba(model.to(dev), data.x_val, clean_card["mean"], clean_card["std"], dev, policy.bf16,
                          policy.channels_last)
    card = {k: v for k, v in stage_card.items() if k not in ("weights_sha256", "card_version", "history")}
    card.update(
        inner_val=val_metrics(proba, data.y_val.numpy()),
        weight_average={"method": "WiSE-FT: alpha * clean + (1 - alpha) * stage, batch-norm statistics included",
                        "alpha_clean": alpha, "clean": project_relative(clean_dir.resolve()),
                        "stage": project_relative(stage_dir.resolve()),
                        "clean_weights_sha256": clean_card["weights_sha256"],
                        "stage_weights_sha256": stage_card["weights_sha256"]},
        git_commit=git_commit(),
    )
    save_checkpoint(model.cpu().float(), card, checkpoint_path(spec, arch, fold, out_dir))
    return card

"""The loop's parts: optimizer groups and stage LRs, and which images reach training and inner validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from spermlib.data.splits import fold_parts
from spermlib.models import ModelInfo, create_model
from spermlib.training import train as train_module
from spermlib.training.fold_data import FoldData, load_fold_data
from spermlib.training.loop import LoopSettings, build_optimizer, enter_stage, set_learning_rates, train_one_epoch
from spermlib.training.recipe import Recipe, lr_factor
from tests.model_fixtures import TOY, toy_tensors

# ----------------------------------------------------------------------------- optimizer groups and stages


def _groups(opt: torch.optim.Optimizer) -> dict[str, dict]:
    return {g["name"]: g for g in opt.param_groups}


def test_optimizer_puts_backbone_and_head_params_in_their_groups():
    model, _ = create_model("effnet_cbam", 3, backbone="tf_efficientnet_lite0", pretrained="none")
    groups = _groups(build_optimizer(model, Recipe(lr=1e-3, weight_decay=0.05)))
    assert list(groups) == ["backbone", "head"]
    ids = {name: [id(p) for p in g["params"]] for name, g in groups.items()}
    assert ids["backbone"] == [id(p) for p in model.backbone.parameters()]
    head = {id(p) for m in (model.head, model.attention) for p in m.parameters()}
    assert set(ids["head"]) == head and len(ids["head"]) == len(head)
    assert len(ids["backbone"]) + len(ids["head"]) == len(list(model.parameters()))
    assert all(g["weight_decay"] == 0.05 for g in groups.values())


def test_simplecnn_has_no_backbone_group_members():
    model, _ = create_model("simplecnn", 3)
    groups = _groups(build_optimizer(model, Recipe()))
    assert groups["backbone"]["params"] == []
    assert len(groups["head"]["params"]) == len(list(model.parameters()))


def test_frozen_and_fine_tuning_stages_set_lrs_grads_and_bn_mode():
    model, _ = create_model("effnet", 3, backbone="tf_efficientnet_lite0", pretrained="none")
    r = Recipe(lr=1e-3, head_lr=2e-3, backbone_lr_mult=0.1)
    opt = build_optimizer(model, r)

    set_learning_rates(opt, r, factor=0.5, frozen=True)  # the factor does not apply while frozen
    enter_stage(model, frozen=True)
    assert _groups(opt)["backbone"]["lr"] == 0.0 and _groups(opt)["head"]["lr"] == 2e-3
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    assert not model.backbone.training and model.head.training  # ImageNet BN statistics kept

    set_learning_rates(opt, r, factor=0.5, frozen=False)
    enter_stage(model, frozen=False)
    assert _groups(opt)["backbone"]["lr"] == pytest.approx(5e-5) and _groups(opt)["head"]["lr"] == pytest.approx(5e-4)
    assert all(p.requires_grad for p in model.parameters())
    assert model.backbone.training


def test_train_one_epoch_follows_the_schedule(tmp_path):
    torch.manual_seed(0)
    model, info = create_model("effnet", 3, backbone="tf_efficientnet_lite0", pretrained="none")
    x, y = toy_tensors(8, seed=5)  # 24 images, batch 8: 3 steps per epoch
    data = FoldData(x, y, x[:3], y[:3])
    r = Recipe(batch_size=8, epochs=4, input_size=48, precision="fp32")
    s = LoopSettings(r, torch.device("cpu"), False, info.mean, info.std, frozen_epochs=1)
    opt = build_optimizer(model, r)
    backbone_before = [p.detach().clone() for p in model.backbone.parameters()]

    _, frozen = train_one_epoch(model, opt, data, 0, s)
    assert frozen and _groups(opt)["backbone"]["lr"] == 0.0 and _groups(opt)["head"]["lr"] == r.head_lr
    assert all(torch.equal(a, b) for a, b in zip(backbone_before, model.backbone.parameters(), strict=True))

    _, frozen = train_one_epoch(model, opt, data, 2, s)
    last_step_factor = lr_factor(2 * 3 + 2, 3, r, 1)[0]
    assert not frozen and _groups(opt)["head"]["lr"] == pytest.approx(r.lr * last_step_factor)
    assert not all(torch.equal(a, b) for a, b in zip(backbone_before, model.backbone.parameters(), strict=True))


# ----------------------------------------------------------------------------- no leakage

N_FOLDS = 3


def grey_level(i: int) -> int:
    return 10 + 7 * i  # one grey level per image, far enough apart to survive interpolation


def grey_images_manifest(root) -> pd.DataFrame:
    """8 images per class in 3 folds; image ``i`` is a flat grey of :func:`grey_level` ``(i)``."""
    rows = []
    for label in TOY.class_dirs:
        (root / label).mkdir(parents=True)
        for j in range(8):
            i, rel = len(rows), f"{label}/{j}.png"
            Image.fromarray(np.full((20, 20, 3), grey_level(i), np.uint8)).save(root / rel)
            rows.append({"path": rel, "label": label, "fold": j % N_FOLDS, "group": i, "pixel_sha256": f"h{i}",
                         "excluded": ""})
    return pd.DataFrame(rows)


class GreyLevelRecorder(nn.Module):
    """A classifier stand-in (timm contract) that records the grey level of every image it is fed, by mode."""

    has_backbone = False
    num_classes, num_features = len(TOY.class_dirs), 1

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(1, self.num_classes)
        self.seen: dict[str, list[int]] = {"train": [], "eval": []}

    def backbone_parameters(self) -> list[nn.Parameter]:
        return []

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        levels = ((x[:, 0].mean((1, 2)) * 0.5 + 0.5) * 255).round().int()  # undo the (0.5, 0.5) normalisation
        self.seen["train" if self.training else "eval"].extend(levels.tolist())
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pooled = x.mean((1, 2, 3))[:, None]
        return pooled if pre_logits else self.fc(pooled)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@pytest.mark.parametrize("balanced", [False, True], ids=["shuffled", "balanced"])
@pytest.mark.parametrize("fold", range(N_FOLDS))
def test_test_fold_never_reaches_training_or_inner_validation(tmp_path, monkeypatch, fold, balanced):
    manifest = grey_images_manifest(tmp_path / "data")
    level_of = {p: grey_level(i) for i, p in enumerate(manifest["path"])}
    # No continuous jitter or MixUp: a flat grey image stays that grey under flips and 90° turns.
    r = Recipe(batch_size=1, epochs=3, warmup_epochs=0, patience=99, rotate_deg=0, scale=0, translate=0,
               color_jitter=0, val_fraction=0.25, precision="fp32", channels_last=False, balanced_sampling=balanced)
    data = load_fold_data(TOY, tmp_path / "data", manifest, fold, r, size=16)
    _, _, test = fold_parts(manifest, fold, val_fraction=r.val_fraction)
    train_levels = {level_of[p] for p in data.train_paths}
    val_levels, test_levels = {level_of[p] for p in data.val_paths}, {level_of[p] for p in test["path"]}
    assert not train_levels & val_levels and not (train_levels | val_levels) & test_levels
    assert train_levels | val_levels | test_levels == set(level_of.values())

    recorder = GreyLevelRecorder()
    info = ModelInfo("simplecnn", "simplecnn", "none", (0.5,) * 3, (0.5,) * 3)
    monkeypatch.setattr(train_module, "create_model", lambda *a, **k: (recorder, info))
    card = train_module.train_fold(TOY, "simplecnn", fold, data, r, manifest_sha256="x", progress=False,
                                   checkpoints_dir=tmp_path / "ck", runs_dir=tmp_path / "runs")
    assert card["n_train"] == len(train_levels) and card["epochs_run"] == 3
    assert len(recorder.seen["train"]) == 3 * len(train_levels)  # batch 1: no partial batch dropped
    assert set(recorder.seen["train"]) <= train_levels
    if not balanced:  # each epoch is a permutation of the training images
        assert sorted(recorder.seen["train"]) == sorted(3 * list(train_levels))
    # Inner validation after each epoch and once more on the shipped weights: the val images only.
    assert sorted(recorder.seen["eval"]) == sorted(4 * [level_of[p] for p in data.val_paths])

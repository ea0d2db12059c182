"""The training recipe: hyper-parameters, the augmentation and the learning-rate schedule.

Everything here is a pure function of its inputs (the augmentation draws only from the generator it
is given), which is what makes a seeded run and a resumed run reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from spermlib.data.corruptions import random_corruptions


@dataclass
class Recipe:
    """Hyper-parameters. Defaults fit 2 CPU cores; the published runs: docs/models.md, docs/experiments.md."""

    input_size: int = 0  # 0 → the dataset's default
    batch_size: int = 32
    epochs: int = 20  # maximum, warm-up included
    warmup_epochs: int = 2  # frozen-backbone stage (ignored for archs without a backbone)
    # lr 1e-3 with the backbone at full LR beat 5e-4 / ×0.5 on HuSHeM fold 0's inner validation
    # split (macro-F1 0.87 vs 0.72); see docs/experiments.md.
    lr: float = 1e-3  # peak LR of the fine-tuning stage
    head_lr: float = 2e-3  # LR of head (+CBAM) during the frozen stage
    backbone_lr_mult: float = 1.0  # backbone LR = lr × this during fine-tuning
    lr_warmup_epochs: float = 1.0  # linear LR warm-up at the start of fine-tuning
    min_lr_ratio: float = 0.02
    weight_decay: float = 0.02
    label_smoothing: float = 0.1
    mixup_alpha: float = 0.0  # 0 disables MixUp
    # EMA of the weights (timm ModelEmaV3, decay warmed up from 0 to this cap); 0 disables it. When on,
    # the EMA weights are the ones validated, selected and shipped: with 25 inner-val images (HuSHeM)
    # a single epoch's weights are a noisy pick.
    ema_decay: float = 0.0
    balanced_sampling: bool = False
    patience: int = 6  # epochs without inner-val macro-F1 improvement (after warm-up)
    rotate_deg: float = 15.0
    # Random 90° turns and up-down flips (with the left-right mirror: the 8 flips/90° turns). False for
    # pose-normalised images (data/align.py), whose long axis is upright: only the mirror keeps that.
    quarter_turns: bool = True
    scale: float = 0.1
    translate: float = 0.06
    color_jitter: float = 0.1
    # Hardening: the share of training images put under one random corruption of the robustness suite's
    # photometric and resolution families (JPEG, blur, noise, brightness, contrast, gamma, hue, grayscale,
    # lower resolution) at a random strength; 0 disables it. See data/corruptions.py: random_corruptions.
    corrupt_p: float = 0.0
    # Ship the last epoch instead of the best inner-validation one: for a fixed-length second stage such as
    # hardening, where the clean inner-validation score would pick the least-hardened epoch.
    keep_last: bool = False
    val_fraction: float = 0.15
    seed: int = 0
    precision: str = "auto"  # auto | bf16 | fp32
    channels_last: bool = True

    @classmethod
    def for_arch(cls, arch: str, dataset: str | None = None, **overrides) -> Recipe:
        """Defaults for ``arch`` (and ``dataset``), then ``overrides`` (``None`` values ignored)."""
        r = cls()
        if dataset == "hushem":  # 173 training images per fold: more, cheaper epochs and more patience
            r.epochs, r.patience = 40, 12
        if arch == "simplecnn":  # from scratch: no frozen stage, higher LR
            r.warmup_epochs, r.lr, r.weight_decay = 0, 2e-3, 0.01
        elif dataset == "hushem":
            # A first comparison won on inner validation over the 40-epoch / batch-32 recipe (macro-F1 0.936 vs
            # 0.874, CBAM): 4x the optimizer steps, any-angle rotation (a head's orientation says nothing about its
            # class) and an EMA of the weights, run over the full cosine schedule. A recipe sweep (input size,
            # MixUp, balanced sampling, frozen stage and length) added 224 px and 100 epochs (0.952 and 0.951 over
            # two seeds vs 0.942 and 0.920). Both in results/hushem/tuning.json and docs/experiments.md.
            r.batch_size, r.epochs, r.patience, r.rotate_deg, r.ema_decay = 16, 100, 100, 180.0, 0.98
            r.input_size = 224
        for k, v in overrides.items():
            if v is not None:
                setattr(r, k, v)
        return r

    @classmethod
    def from_dict(cls, d: dict) -> Recipe:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def augment(x: torch.Tensor, gen: torch.Generator, r: Recipe) -> torch.Tensor:
    """Per-sample microscopy augmentation on a float ``[0,1]`` batch, in one ``grid_sample``.

    Orientation carries no class information in these patches, so: any of the 8 flips/90° rotations,
    plus a small rotation, isotropic scale and shift; then mild brightness/contrast/saturation jitter;
    then, in a hardened recipe, a random corruption for a share ``corrupt_p`` of the images.
    """
    b = x.shape[0]
    u = lambda *s: torch.rand(*s, generator=gen)  # noqa: E731
    k90 = torch.randint(0, 4, (b,), generator=gen).float() * (math.pi / 2)
    if not r.quarter_turns:  # drawn anyway, so the other draws of a seeded epoch stay the same
        k90 = torch.zeros_like(k90)
    angle = k90 + (u(b) * 2 - 1) * math.radians(r.rotate_deg)
    scale = 1 + (u(b) * 2 - 1) * r.scale
    flip = torch.where(u(b) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos * flip, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin * flip, cos
    theta[:, :, 2] = (u(b, 2) * 2 - 1) * r.translate * 2
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if r.color_jitter > 0:
        x = _color_jitter(x, gen, r.color_jitter)
    if r.corrupt_p > 0:  # the corruptions work on uint8 images, as the camera and the suite make them
        u8 = x.mul(255).round_().clamp_(0, 255).to(torch.uint8).cpu()
        x = random_corruptions(u8, gen, r.corrupt_p).to(x.device, x.dtype).div_(255)
    return x


def _color_jitter(x: torch.Tensor, gen: torch.Generator, j: float) -> torch.Tensor:
    """Brightness, contrast, saturation, each scaled by a factor drawn in ``[1-j, 1+j]`` per sample."""
    b = x.shape[0]
    bright, contrast, sat = ((1 + (torch.rand(b, generator=gen) * 2 - 1) * j).view(b, 1, 1, 1).to(x.device)
                             for _ in range(3))
    x = x * bright
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean
    grey = x.mean(dim=1, keepdim=True)
    x = (x - grey) * sat + grey
    return x.clamp(0, 1)


def lr_factor(step: int, steps_per_epoch: int, r: Recipe, frozen_epochs: int) -> tuple[float, bool]:
    """(LR multiplier of ``r.lr`` / ``r.head_lr``, whether the backbone is frozen) at global ``step``."""
    epoch_f = step / steps_per_epoch
    if epoch_f < frozen_epochs:
        return 1.0, True
    t = epoch_f - frozen_epochs
    span = max(r.epochs - frozen_epochs, 1e-9)
    if t < r.lr_warmup_epochs:
        return max(t / r.lr_warmup_epochs, 1e-3), False
    progress = min((t - r.lr_warmup_epochs) / max(span - r.lr_warmup_epochs, 1e-9), 1.0)
    return r.min_lr_ratio + (1 - r.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)), False

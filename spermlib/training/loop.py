"""The training loop's parts, torchvision-references style: optimizer, one epoch, inner evaluation.

Reproducibility rests on one rule: everything random in epoch ``e`` (shuffle order, augmentation,
MixUp, dropout) is drawn from generators seeded by ``(seed, e)``, and the learning rate is a pure
function of the global step. So an epoch's outcome depends only on the weights and optimizer state
it starts from, which :class:`~spermlib.training.state.TrainState` saves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score
from timm.utils import ModelEmaV3
from torch import nn
from tqdm.auto import tqdm

from spermlib.data.preprocess import normalize
from spermlib.inference.core import predict_proba
from spermlib.runtime import autocast
from spermlib.training.fold_data import FoldData
from spermlib.training.recipe import Recipe, augment, lr_factor


@dataclass(frozen=True)
class LoopSettings:
    """What stays fixed over a run's epochs."""

    recipe: Recipe
    device: torch.device
    bf16: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]
    frozen_epochs: int = 0  # epochs with the backbone frozen (0 for archs without one)
    progress: bool = False


def build_optimizer(model: nn.Module, r: Recipe) -> torch.optim.AdamW:
    """AdamW with two named groups, ``backbone`` (``model.backbone_parameters()``) and ``head`` (the rest)."""
    backbone_ids = {id(p) for p in model.backbone_parameters()}
    groups = [
        {"params": [p for p in model.parameters() if id(p) in backbone_ids], "name": "backbone"},
        {"params": [p for p in model.parameters() if id(p) not in backbone_ids], "name": "head"},
    ]
    return torch.optim.AdamW(groups, lr=r.lr, weight_decay=r.weight_decay)


def set_learning_rates(opt: torch.optim.Optimizer, r: Recipe, factor: float, frozen: bool) -> None:
    """Frozen stage: head at ``head_lr``, backbone 0. Fine-tuning: ``lr × factor``, backbone × ``backbone_lr_mult``."""
    for g in opt.param_groups:
        if frozen:
            g["lr"] = r.head_lr if g["name"] == "head" else 0.0
        else:
            g["lr"] = r.lr * factor * (r.backbone_lr_mult if g["name"] == "backbone" else 1.0)


def enter_stage(model: nn.Module, frozen: bool) -> None:
    """Train mode; while frozen, the backbone keeps its ImageNet BN statistics and gets no gradients."""
    model.train()
    if frozen:
        model.backbone.eval()
    for p in model.backbone_parameters():
        p.requires_grad_(not frozen)


def make_ema(model: nn.Module, r: Recipe) -> ModelEmaV3 | None:
    return ModelEmaV3(model, decay=r.ema_decay, use_warmup=True, warmup_power=3 / 4) if r.ema_decay > 0 else None


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    return max(1, n_train // batch_size)  # drop the last partial batch: stable BN statistics


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The epoch's generator (order, augmentation, MixUp); also reseeds the global RNG that dropout uses."""
    epoch_seed = seed * 100_003 + epoch
    torch.manual_seed(epoch_seed)
    return torch.Generator().manual_seed(epoch_seed)


def epoch_order(y_train: torch.Tensor, r: Recipe, gen: torch.Generator) -> torch.Tensor:
    """Indices into the training set in this epoch's order (class-balanced draws with replacement, or a shuffle)."""
    n = len(y_train)
    if r.balanced_sampling:
        sample_w = (1.0 / torch.bincount(y_train).float().clamp(min=1))[y_train]
        return torch.multinomial(sample_w, n, replacement=True, generator=gen)
    return torch.randperm(n, generator=gen)


def training_batch(data: FoldData, idx: torch.Tensor, gen: torch.Generator, s: LoopSettings):
    """(augmented, normalised images, labels) of the training images ``idx``."""
    xb = data.x_train[idx].to(s.device).float().div_(255)
    yb = data.y_train[idx].to(s.device)
    xb = normalize(augment(xb, gen, s.recipe), s.mean, s.std)
    if s.recipe.channels_last:
        xb = xb.contiguous(memory_format=torch.channels_last)
    return xb, yb


def train_step(model: nn.Module, opt: torch.optim.Optimizer, loss_fn: nn.Module, xb: torch.Tensor,
               yb: torch.Tensor, gen: torch.Generator, s: LoopSettings) -> float:
    """One optimizer step on a batch (MixUp'd with a partner permutation when ``mixup_alpha`` > 0)."""
    alpha = s.recipe.mixup_alpha
    lam = None
    if alpha > 0:
        lam = float(np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=gen))).beta(alpha, alpha))
        perm = torch.randperm(len(xb), generator=gen).to(s.device)
        xb = lam * xb + (1 - lam) * xb[perm]
    with autocast(s.device, s.bf16):
        logits = model(xb)
    logits = logits.float()
    loss = loss_fn(logits, yb) if lam is None else lam * loss_fn(logits, yb) + (1 - lam) * loss_fn(logits, yb[perm])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def train_one_epoch(model: nn.Module, opt: torch.optim.Optimizer, data: FoldData, epoch: int, s: LoopSettings,
                    ema: ModelEmaV3 | None = None) -> tuple[float, bool]:
    """Train epoch ``epoch`` (0-based); returns (mean training loss, whether the backbone was frozen)."""
    r = s.recipe
    steps = steps_per_epoch(len(data.y_train), r.batch_size)
    gen = epoch_generator(r.seed, epoch)
    order = epoch_order(data.y_train, r, gen)
    _, frozen = lr_factor(epoch * steps, steps, r, s.frozen_epochs)
    enter_stage(model, frozen)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=r.label_smoothing)
    losses = []
    for step in tqdm(range(steps), leave=False, disable=not s.progress, desc=f"epoch {epoch + 1}"):
        global_step = epoch * steps + step
        set_learning_rates(opt, r, lr_factor(global_step, steps, r, s.frozen_epochs)[0], frozen)
        xb, yb = training_batch(data, order[step * r.batch_size : (step + 1) * r.batch_size], gen, s)
        losses.append(train_step(model, opt, loss_fn, xb, yb, gen, s))
        if ema is not None:
            ema.update(model, step=global_step + 1)
    return float(np.mean(losses)), frozen


def val_metrics(proba: np.ndarray, y: np.ndarray) -> dict:
    """Accuracy, macro-F1 and mean negative log-likelihood of softmax ``proba`` against labels ``y``."""
    pred = proba.argmax(1)
    nll = float(-np.log(np.clip(proba[np.arange(len(y)), y], 1e-7, 1)).mean())
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, average="macro")),
        "nll": nll,
    }


def evaluate_inner(model: nn.Module, data: FoldData, s: LoopSettings) -> dict:
    """:func:`val_metrics` of ``model`` on the fold's inner-validation images (never the test fold)."""
    proba = predict_proba(model, data.x_val, s.mean, s.std, s.device, s.bf16, s.recipe.channels_last)
    return val_metrics(proba, data.y_val.numpy())

"""Training of one cross-validation fold: recipe, loop, resume. Knows nothing about Streamlit.

Reproducibility and resume rest on one rule: everything random in epoch ``e`` (shuffle order,
augmentation, MixUp, dropout) is drawn from generators seeded by ``(seed, e)``, and the learning
rate is a pure function of the step. So a run killed at any point and resumed from its last finished
epoch (model + optimizer + early-stopping state, saved as safetensors + JSON after every epoch)
finishes with exactly the weights an uninterrupted run would have produced.

Stages: ``warmup_epochs`` with the pretrained backbone frozen (new head and CBAM learn first, BN
statistics of the backbone untouched), then full fine-tuning with a linear warm-up and cosine decay.
Model selection and early stopping use the macro-F1 on the inner validation split only.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from sklearn.metrics import accuracy_score, f1_score
from timm.utils import ModelEmaV3
from torch import nn
from tqdm.auto import tqdm

from spermlib import __version__
from spermlib.data.datasets import PROJECT_ROOT, DatasetSpec
from spermlib.data.preprocess import load_uint8_batch, normalize
from spermlib.data.splits import fold_parts
from spermlib.inference.core import predict_proba
from spermlib.models import create_model
from spermlib.runtime import autocast, pick_device, resolve_precision
from spermlib.store.checkpoints import checkpoint_path, read_card, round_to_fp16_, save_checkpoint

RUNS_DIR = PROJECT_ROOT / "runs"


@dataclass
class Recipe:
    """Hyper-parameters. Defaults are chosen to fit 2 CPU cores; see README for the published runs."""

    input_size: int = 0  # 0 → the dataset's default
    batch_size: int = 32
    epochs: int = 20  # maximum, warm-up included
    warmup_epochs: int = 2  # frozen-backbone stage (ignored for archs without a backbone)
    # lr 1e-3 with the backbone at full LR beat 5e-4 / ×0.5 on HuSHeM fold 0's inner validation
    # split (macro-F1 0.87 vs 0.72); see the training notes in README.md.
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
    scale: float = 0.1
    translate: float = 0.06
    color_jitter: float = 0.1
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
            # Round 1 won on inner validation over the 40-epoch / batch-32 recipe (macro-F1 0.936 vs 0.874,
            # CBAM): 4x the optimizer steps, any-angle rotation (a head's orientation says nothing about its
            # class) and an EMA of the weights, run over the full cosine schedule. Round 2 (a GPU sweep of
            # input size, MixUp, balanced sampling, frozen stage and length) added 224 px and 100 epochs
            # (0.952 and 0.951 over two seeds vs 0.942 and 0.920). Both in results/hushem/tuning.json.
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


@dataclass
class FoldData:
    """Decoded, resized uint8 tensors of one fold's three parts."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    train_paths: list[str] = field(default_factory=list)
    val_paths: list[str] = field(default_factory=list)


def git_commit() -> str:
    # A copy of the tree without .git (e.g. on a lent GPU machine) gets the commit from the caller.
    if os.environ.get("SPERMLIB_GIT_COMMIT"):
        return os.environ["SPERMLIB_GIT_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ----------------------------------------------------------------------------- augmentation


def augment(x: torch.Tensor, gen: torch.Generator, r: Recipe) -> torch.Tensor:
    """Per-sample microscopy augmentation on a float ``[0,1]`` batch, in one ``grid_sample``.

    Orientation carries no class information in these patches, so: any of the 8 flips/90° rotations,
    plus a small rotation, isotropic scale and shift; then mild brightness/contrast/saturation jitter.
    """
    b = x.shape[0]
    u = lambda *s: torch.rand(*s, generator=gen)  # noqa: E731
    k90 = torch.randint(0, 4, (b,), generator=gen).float() * (math.pi / 2)
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
        j = r.color_jitter
        bright = (1 + (u(b) * 2 - 1) * j).view(b, 1, 1, 1).to(x.device)
        contrast = (1 + (u(b) * 2 - 1) * j).view(b, 1, 1, 1).to(x.device)
        sat = (1 + (u(b) * 2 - 1) * j).view(b, 1, 1, 1).to(x.device)
        x = x * bright
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * contrast + mean
        grey = x.mean(dim=1, keepdim=True)
        x = (x - grey) * sat + grey
        x = x.clamp(0, 1)
    return x


# ----------------------------------------------------------------------------- schedule


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


# ----------------------------------------------------------------------------- state (resume)


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{pid}.{k}"] = v.contiguous()
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, pid, k = key.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    for key, v in meta["scalars"].items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def _save_state(run_dir: Path, model: nn.Module, best: dict | None, opt, ema_model: nn.Module | None,
                meta: dict) -> None:
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if ema_model is not None:
        tensors.update({f"ema.{k}": v.detach().contiguous().cpu() for k, v in ema_model.state_dict().items()})
    if best is not None:
        tensors.update({f"best.{k}": v.contiguous() for k, v in best.items()})
    opt_tensors, opt_meta = _flatten_optimizer(opt)
    tensors.update({k: v.cpu() for k, v in opt_tensors.items()})
    run_dir.mkdir(parents=True, exist_ok=True)
    # Write both files under temporary names, then rename: a kill never leaves a torn state.
    save_file(tensors, str(run_dir / "state.safetensors.tmp"))
    (run_dir / "state.json.tmp").write_text(json.dumps({**meta, "optimizer": opt_meta}, indent=1))
    os.replace(run_dir / "state.safetensors.tmp", run_dir / "state.safetensors")
    os.replace(run_dir / "state.json.tmp", run_dir / "state.json")


def _load_state(run_dir: Path) -> tuple[dict, dict] | None:
    sj, st = run_dir / "state.json", run_dir / "state.safetensors"
    if not (sj.is_file() and st.is_file()):
        return None
    return json.loads(sj.read_text()), load_file(str(st))


# ----------------------------------------------------------------------------- loop


def _val_metrics(proba: np.ndarray, y: np.ndarray) -> dict:
    pred = proba.argmax(1)
    eps = 1e-7
    nll = float(-np.log(np.clip(proba[np.arange(len(y)), y], eps, 1)).mean())
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, average="macro")),
        "nll": nll,
    }


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


def train_fold(
    spec: DatasetSpec,
    arch: str,
    fold: int,
    data: FoldData,
    recipe: Recipe,
    *,
    manifest_sha256: str,
    backbone: str = "auto",
    pretrained: str = "auto",
    weights_path: str | None = None,
    checkpoints_dir: Path | None = None,
    runs_dir: Path = RUNS_DIR,
    device: str | None = None,
    max_epochs_this_call: int | None = None,
    progress: bool = True,
) -> dict | None:
    """Train (or resume) one fold; write its checkpoint and card; return the card.

    ``max_epochs_this_call`` stops after that many epochs *without* finishing (used to test
    resume); then ``None`` is returned and the run directory holds the resumable state.
    """
    r = recipe
    dev = pick_device(device)
    bf16 = resolve_precision(r.precision, dev)
    size = r.input_size or spec.input_size
    run_dir = Path(runs_dir) / spec.name / arch / f"fold{fold}"
    run_dir.mkdir(parents=True, exist_ok=True)
    log_file = open(run_dir / "train.log", "a", buffering=1)  # noqa: SIM115 - closed in finally

    def log(msg: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log_file.write(f"{stamp} {msg}\n")
        if progress:
            tqdm.write(msg)

    try:
        torch.manual_seed(r.seed)
        model, info = create_model(arch, spec.num_classes, backbone, pretrained, weights_path)
        model.to(dev)
        if r.channels_last:
            model = model.to(memory_format=torch.channels_last)
        frozen_epochs = r.warmup_epochs if model.has_backbone else 0
        backbone_params = {id(p) for p in model.backbone_parameters()}
        head_params = [p for p in model.parameters() if id(p) not in backbone_params]
        opt = torch.optim.AdamW(
            [
                {"params": [p for p in model.parameters() if id(p) in backbone_params], "name": "backbone"},
                {"params": head_params, "name": "head"},
            ],
            lr=r.lr,
            weight_decay=r.weight_decay,
        )
        ema = ModelEmaV3(model, decay=r.ema_decay, use_warmup=True, warmup_power=3 / 4) if r.ema_decay > 0 else None
        scored = ema.module if ema is not None else model  # the weights validated, selected and shipped
        config = {
            "dataset": spec.name, "arch": arch, "fold": fold, "recipe": asdict(r), "input_size": size,
            "backbone": info.backbone, "pretrained_source": info.pretrained_source,
            "split_sha256": manifest_sha256, "n_train": len(data.y_train), "n_val": len(data.y_val),
        }
        start_epoch, history, best_state, best = 0, [], None, {"macro_f1": -1.0, "epoch": -1}
        train_seconds = 0.0
        resumed = _load_state(run_dir)
        if resumed is not None:
            meta, tensors = resumed
            if meta.get("config") != config:
                log(f"fold {fold}: saved state was made with another configuration; starting afresh")
            else:
                model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
                if ema is not None:
                    ema.module.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
                best_state = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} or None
                opt.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
                start_epoch, history, best = meta["epoch"] + 1, meta["history"], meta["best"]
                train_seconds = meta["train_seconds"]
                log(f"fold {fold}: resuming after epoch {meta['epoch']} (best macro-F1 {best['macro_f1']:.4f})")

        n = len(data.y_train)
        steps_per_epoch = max(1, n // r.batch_size)  # drop the last partial batch: stable BN statistics
        y_val = data.y_val.numpy()
        counts = torch.bincount(data.y_train, minlength=spec.num_classes).float()
        sample_w = (1.0 / counts.clamp(min=1))[data.y_train]
        mean, std = info.mean, info.std
        loss_fn = nn.CrossEntropyLoss(label_smoothing=r.label_smoothing)

        epochs_bar = tqdm(
            range(start_epoch, r.epochs), initial=start_epoch, total=r.epochs, disable=not progress,
            desc=f"{spec.name}/{arch} fold {fold}", unit="ep", dynamic_ncols=True,
        )
        done_this_call = 0
        stopped_early = False
        for epoch in epochs_bar:
            if epoch - best["epoch"] > r.patience and epoch >= frozen_epochs + r.patience and best["epoch"] >= 0:
                stopped_early = True
                break
            t0 = time.perf_counter()
            gen = torch.Generator().manual_seed(r.seed * 100_003 + epoch)
            torch.manual_seed(r.seed * 100_003 + epoch)  # dropout
            if r.balanced_sampling:
                order = torch.multinomial(sample_w, n, replacement=True, generator=gen)
            else:
                order = torch.randperm(n, generator=gen)
            model.train()
            _, frozen = lr_factor(epoch * steps_per_epoch, steps_per_epoch, r, frozen_epochs)
            if frozen:
                model.backbone.eval()  # keep ImageNet BN statistics during warm-up
            for p in model.backbone_parameters():
                p.requires_grad_(not frozen)
            losses = []
            for step in tqdm(range(steps_per_epoch), leave=False, disable=not progress, desc=f"epoch {epoch + 1}"):
                fac, _ = lr_factor(epoch * steps_per_epoch + step, steps_per_epoch, r, frozen_epochs)
                for g in opt.param_groups:
                    if frozen:
                        g["lr"] = r.head_lr if g["name"] == "head" else 0.0
                    else:
                        g["lr"] = r.lr * fac * (r.backbone_lr_mult if g["name"] == "backbone" else 1.0)
                idx = order[step * r.batch_size : (step + 1) * r.batch_size]
                xb = data.x_train[idx].to(dev).float().div_(255)
                yb = data.y_train[idx].to(dev)
                xb = augment(xb, gen, r)
                xb = normalize(xb, mean, std)
                if r.channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                lam = None
                if r.mixup_alpha > 0:
                    lam = float(np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=gen))).beta(
                        r.mixup_alpha, r.mixup_alpha))
                    perm = torch.randperm(len(idx), generator=gen).to(dev)
                    xb = lam * xb + (1 - lam) * xb[perm]
                with autocast(dev, bf16):
                    logits = model(xb)
                logits = logits.float()
                loss = loss_fn(logits, yb) if lam is None else (
                    lam * loss_fn(logits, yb) + (1 - lam) * loss_fn(logits, yb[perm]))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if ema is not None:
                    ema.update(model, step=epoch * steps_per_epoch + step + 1)
                losses.append(loss.item())
            proba = predict_proba(scored, data.x_val, mean, std, dev, bf16, r.channels_last)
            vm = _val_metrics(proba, y_val)
            secs = time.perf_counter() - t0
            train_seconds += secs
            rec = {"epoch": epoch, "train_loss": float(np.mean(losses)), **{f"val_{k}": v for k, v in vm.items()},
                   "frozen": frozen, "seconds": round(secs, 2)}
            history.append(rec)
            # Ties broken by lower validation loss, so a plateau still selects the better-calibrated epoch.
            improved = vm["macro_f1"] > best["macro_f1"] or (
                vm["macro_f1"] == best["macro_f1"] and vm["nll"] < best.get("nll", float("inf")))
            if improved:
                best = {"epoch": epoch, **vm}
                best_state = {k: v.detach().cpu().clone() for k, v in scored.state_dict().items()}
            epochs_bar.set_postfix(loss=f"{rec['train_loss']:.3f}", val_f1=f"{vm['macro_f1']:.3f}",
                                   best=f"{best['macro_f1']:.3f}")
            log(f"fold {fold} epoch {epoch + 1}/{r.epochs} loss {rec['train_loss']:.4f} "
                f"val_acc {vm['accuracy']:.4f} val_f1 {vm['macro_f1']:.4f} {'(frozen) ' if frozen else ''}{secs:.1f}s")
            _save_state(run_dir, model, best_state, opt, ema.module if ema is not None else None, {
                "config": config, "epoch": epoch, "history": history, "best": best, "train_seconds": train_seconds})
            done_this_call += 1  # noqa: SIM113 - counts epochs of this call, not of the run
            if max_epochs_this_call is not None and done_this_call >= max_epochs_this_call and epoch + 1 < r.epochs:
                return None
        epochs_bar.close()

        # Ship the best inner-validation weights, rounded to fp16 exactly as stored, and re-measure them.
        model.load_state_dict(best_state)
        round_to_fp16_(model)
        final = _val_metrics(predict_proba(model, data.x_val, mean, std, dev, bf16, r.channels_last), y_val)
        card = {
            "dataset": spec.name, "fold": fold, "arch": arch, "backbone": info.backbone,
            "pretrained_source": info.pretrained_source, "classes": list(spec.class_dirs),
            "display_names": list(spec.display_names), "input_size": size, "mean": list(mean), "std": list(std),
            "split_manifest": f"splits/{spec.name}.csv", "split_sha256": manifest_sha256,
            "n_train": len(data.y_train), "n_inner_val": len(data.y_val), "recipe": asdict(r),
            "epochs_run": len(history), "best_epoch": best["epoch"] + 1, "stopped_early": stopped_early,
            "inner_val": final, "history": history, "training_seconds": round(train_seconds, 1),
            "device": str(dev), "bf16": bf16, "torch_threads": torch.get_num_threads(),
            "git_commit": git_commit(), "spermlib_version": __version__, "torch_version": torch.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        path = checkpoint_path(spec.name, arch, fold, checkpoints_dir)
        save_checkpoint(model.to(memory_format=torch.contiguous_format).cpu(), card, path)
        log(f"fold {fold}: saved {path} (inner-val macro-F1 {final['macro_f1']:.4f}, best epoch {best['epoch'] + 1})")
        for f in ("state.safetensors", "state.json"):
            (run_dir / f).unlink(missing_ok=True)
        return read_card(path)
    finally:
        log_file.close()


def fold_is_done(spec: DatasetSpec, arch: str, fold: int, manifest_sha256: str,
                 checkpoints_dir: Path | None = None) -> bool:
    """A finished checkpoint exists for this fold and was trained on this exact split manifest."""
    path = checkpoint_path(spec.name, arch, fold, checkpoints_dir)
    if not path.is_file():
        return False
    try:
        return read_card(path).get("split_sha256") == manifest_sha256
    except ValueError:
        return False

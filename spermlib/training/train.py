"""Training of one cross-validation fold: the entry point that ties recipe, loop, state and card together.

Reproducibility and resume rest on one rule: everything random in epoch ``e`` (shuffle order,
augmentation, MixUp, dropout) is drawn from generators seeded by ``(seed, e)``, and the learning
rate is a pure function of the step. So a run killed at any point and resumed from its last finished
epoch (model + optimizer + early-stopping state, saved as safetensors + JSON after every epoch)
finishes with exactly the weights an uninterrupted run would have produced.

Stages: ``warmup_epochs`` with the pretrained backbone frozen (new head and CBAM learn first, BN
statistics of the backbone untouched), then full fine-tuning with a linear warm-up and cosine decay.
Model selection and early stopping use the macro-F1 on the inner validation split only.

The parts live in :mod:`.recipe` (Recipe, augment, lr_factor), :mod:`.fold_data` (FoldData,
DecodedImages, load_fold_data), :mod:`.loop` (build_optimizer, train_one_epoch, evaluate_inner),
:mod:`.state` (TrainState) and :mod:`.card` (git_commit, build_card); they are re-exported here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from spermlib.data.datasets import DatasetSpec
from spermlib.models import ModelInfo, create_model
from spermlib.runtime import pick_device, resolve_precision
from spermlib.store.checkpoints import (
    CheckpointError,
    checkpoint_path,
    load_checkpoint,
    read_card,
    round_to_fp16_,
    save_checkpoint,
)
from spermlib.store.paths import RUNS_DIR, fold_run_dir, project_relative
from spermlib.training.card import build_card, git_commit, run_config
from spermlib.training.fold_data import DecodedImages, FoldData, load_fold_data
from spermlib.training.loop import LoopSettings, build_optimizer, evaluate_inner, make_ema, train_one_epoch
from spermlib.training.recipe import Recipe, augment, lr_factor
from spermlib.training.state import TrainState, clear_state, read_state

__all__ = ["RUNS_DIR", "DecodedImages", "FoldData", "Recipe", "augment", "fold_is_done", "git_commit",
           "load_fold_data", "lr_factor", "train_fold"]

# How an epoch loop ended.
FINISHED, STOPPED_EARLY, INTERRUPTED = "finished", "stopped_early", "interrupted"


class RunLog:
    """Time-stamped lines appended to a run's ``train.log``, echoed above the progress bars if asked."""

    def __init__(self, path: Path, echo: bool):
        self._file = open(path, "a", buffering=1)  # noqa: SIM115 - closed by __exit__
        self.echo = echo

    def __call__(self, msg: str) -> None:
        self._file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")
        if self.echo:
            tqdm.write(msg)

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()


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
    init_from: Path | None = None,
    transfer_from: Path | None = None,
    checkpoints_dir: Path | None = None,
    runs_dir: Path = RUNS_DIR,
    device: str | None = None,
    max_epochs_this_call: int | None = None,
    progress: bool = True,
    on_epoch: Callable[[dict], None] | None = None,
) -> dict | None:
    """Train (or resume) one fold; write its checkpoint and card; return the card.

    ``max_epochs_this_call`` stops after that many epochs *without* finishing (used to test
    resume); then ``None`` is returned and the run directory holds the resumable state. ``init_from`` (a
    checkpoints folder) starts from that folder's model of this same fold and split instead of ImageNet
    weights (a second stage, e.g. hardening a shipped model); ``transfer_from`` (a checkpoint of another
    dataset, same arch and backbone) replaces the ImageNet backbone (and CBAM) weights with its own, the
    head starting new (domain transfer). ``on_epoch`` gets each
    epoch's record (inner-validation scores included) once its state is saved (``sweep`` reports it to Ray Tune).
    """
    r = recipe
    dev = pick_device(device)
    size = r.input_size or spec.input_size
    run_dir = fold_run_dir(spec.name, arch, fold, runs_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLog(run_dir / "train.log", progress) as log:
        if init_from is None:
            model, info = _initial_model(spec, arch, r, dev, backbone, pretrained, weights_path)
            start = {} if transfer_from is None else _transfer(model, spec, arch, Path(transfer_from))
        else:
            model, info, start = _start_from_checkpoint(spec, arch, fold, size, manifest_sha256, Path(init_from))
            model = _to_device(model, r, dev)
        s = LoopSettings(r, dev, resolve_precision(r.precision, dev), info.mean, info.std,
                         r.warmup_epochs if model.has_backbone else 0, progress)
        state = TrainState(model, build_optimizer(model, r), make_ema(model, r),
                           {**run_config(spec, arch, fold, r, size, info, manifest_sha256, data), **start})
        _resume(state, run_dir, log)
        outcome = _run_epochs(state, data, s, run_dir, log, max_epochs_this_call, on_epoch)
        if outcome == INTERRUPTED:
            return None
        path = checkpoint_path(spec.name, arch, fold, checkpoints_dir)
        _ship(spec, state, data, s, outcome == STOPPED_EARLY, path, log)
        clear_state(run_dir)  # the fold is finished: nothing left to resume
        return read_card(path)


def _initial_model(spec: DatasetSpec, arch: str, r: Recipe, dev: torch.device, backbone: str, pretrained: str,
                   weights_path: str | None):
    """(model on ``dev`` with its ImageNet backbone and a seeded new head, ModelInfo)."""
    torch.manual_seed(r.seed)
    model, info = create_model(arch, spec.num_classes, backbone, pretrained, weights_path)
    return _to_device(model, r, dev), info


def _to_device(model: torch.nn.Module, r: Recipe, dev: torch.device) -> torch.nn.Module:
    model.to(dev)
    return model.to(memory_format=torch.channels_last) if r.channels_last else model


def _transfer(model: torch.nn.Module, spec: DatasetSpec, arch: str, path: Path) -> dict:
    """Copy the backbone (and CBAM) weights of another dataset's checkpoint into ``model``; its head stays new.

    Refused for the same dataset: a fold model of it has seen other folds' test images (leakage).
    Returns the config fields that record where the weights came from.
    """
    source, card = load_checkpoint(path)
    if card.get("dataset") == spec.name:
        raise CheckpointError(f"--transfer-from {path} is a {spec.name} model: its training images include other "
                              f"folds' test images; use --init-from for a second stage on the same split")
    if card["arch"] != arch or card["backbone"] != getattr(model, "backbone_name", None):
        raise CheckpointError(f"--transfer-from {path} is {card['arch']} / {card['backbone']}, not this {arch} model's")
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("head.")}
    loaded = model.load_state_dict(state, strict=False)
    if loaded.unexpected_keys or any(not k.startswith("head.") for k in loaded.missing_keys):
        raise CheckpointError(f"--transfer-from {path} does not fit this model ({loaded})")
    return {"transfer_from": project_relative(path), "transfer_weights_sha256": card["weights_sha256"],
            "transfer_dataset": card["dataset"]}


def _start_from_checkpoint(spec: DatasetSpec, arch: str, fold: int, size: int, manifest_sha256: str,
                           folder: Path) -> tuple[torch.nn.Module, ModelInfo, dict]:
    """(the model of ``fold`` in ``folder``, its ModelInfo, the config fields that record where it came from).

    Refused unless it was trained on this very split: fold ``fold`` of another split has other test
    images, some of which the start weights would then have seen (leakage), and at this input size.
    """
    path = checkpoint_path(spec.name, arch, fold, folder)
    model, card = load_checkpoint(path)
    if card.get("split_sha256") != manifest_sha256 or card.get("fold") != fold:
        raise CheckpointError(f"--init-from {path}: trained on another split or fold, so its weights may have "
                              f"seen fold {fold}'s test images; start from a checkpoint of this split")
    if card.get("input_size") != size:
        raise CheckpointError(f"--init-from {path}: trained at {card.get('input_size')} px, this recipe at {size} px")
    info = ModelInfo(arch, card["backbone"], card["pretrained_source"], tuple(card["mean"]), tuple(card["std"]))
    # The first stage's time and device, so that results state what the shipped model cost in all.
    first = {"init_training_seconds": round(card.get("training_seconds", 0) + card.get("init_training_seconds", 0), 1),
             "init_device": card.get("init_device") or card.get("device")}
    return model, info, {"init_from": project_relative(folder), "init_weights_sha256": card["weights_sha256"],
                         **{k: v for k, v in first.items() if v}}


def _resume(state: TrainState, run_dir: Path, log: RunLog) -> None:
    """Continue from the saved state in ``run_dir``, if there is one made with the same configuration."""
    saved = read_state(run_dir)
    if saved is None:
        return
    meta, tensors = saved
    fold = state.config["fold"]
    if meta.get("config") != state.config:
        log(f"fold {fold}: saved state was made with another configuration; starting afresh")
        return
    state.restore(meta, tensors)
    log(f"fold {fold}: resuming after epoch {meta['epoch']} (best macro-F1 {state.best['macro_f1']:.4f})")


def _run_epochs(state: TrainState, data: FoldData, s: LoopSettings, run_dir: Path, log: RunLog,
                max_epochs_this_call: int | None, on_epoch: Callable[[dict], None] | None = None) -> str:
    """Epochs from the state's next one to the last, or until early stopping or ``max_epochs_this_call``."""
    r, c = s.recipe, state.config
    start = state.epoch + 1
    with tqdm(range(start, r.epochs), initial=start, total=r.epochs, disable=not s.progress, unit="ep",
              desc=f"{c['dataset']}/{c['arch']} fold {c['fold']}", dynamic_ncols=True) as bar:
        for done, epoch in enumerate(bar, 1):
            if state.should_stop(epoch, r.patience, s.frozen_epochs):
                return STOPPED_EARLY
            _epoch(state, data, s, epoch, log)
            last = state.history[-1]
            bar.set_postfix(loss=f"{last['train_loss']:.3f}", val_f1=f"{last['val_macro_f1']:.3f}",
                            best=f"{state.best['macro_f1']:.3f}")
            state.save(run_dir)
            if on_epoch is not None:
                on_epoch({**last, "best_macro_f1": state.best["macro_f1"]})
            if max_epochs_this_call is not None and done >= max_epochs_this_call and epoch + 1 < r.epochs:
                return INTERRUPTED
    return FINISHED


def _epoch(state: TrainState, data: FoldData, s: LoopSettings, epoch: int, log: RunLog) -> None:
    """Train one epoch, score the selected weights on inner validation, record and log it."""
    t0 = time.perf_counter()
    loss, frozen = train_one_epoch(state.model, state.optimizer, data, epoch, s, state.ema)
    vm = evaluate_inner(state.scored, data, s)
    secs = time.perf_counter() - t0
    record = {"epoch": epoch, "train_loss": loss, **{f"val_{k}": v for k, v in vm.items()}, "frozen": frozen,
              "seconds": round(secs, 2)}
    state.record_epoch(record, vm, secs, keep_last=s.recipe.keep_last)
    log(f"fold {state.config['fold']} epoch {epoch + 1}/{s.recipe.epochs} loss {loss:.4f} "
        f"val_acc {vm['accuracy']:.4f} val_f1 {vm['macro_f1']:.4f} {'(frozen) ' if frozen else ''}{secs:.1f}s")


def _ship(spec: DatasetSpec, state: TrainState, data: FoldData, s: LoopSettings, stopped_early: bool,
          path: Path, log: RunLog) -> None:
    """Save the best inner-validation weights, rounded to fp16 exactly as stored and re-measured, with their card."""
    model = state.model
    model.load_state_dict(state.best_weights)
    round_to_fp16_(model)
    final = evaluate_inner(model, data, s)
    card = build_card(spec, state, final, stopped_early, s)
    save_checkpoint(model.to(memory_format=torch.contiguous_format).cpu(), card, path)
    log(f"fold {card['fold']}: saved {path} (inner-val macro-F1 {final['macro_f1']:.4f}, "
        f"best epoch {card['best_epoch']})")


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

"""The checkpoint card of a trained fold: what the model is, what it was trained on, how, and how well."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import asdict

import torch

from spermlib.data.datasets import PROJECT_ROOT, DatasetSpec
from spermlib.models import ModelInfo
from spermlib.training.fold_data import FoldData
from spermlib.training.loop import LoopSettings
from spermlib.training.recipe import Recipe
from spermlib.training.state import TrainState
from spermlib.version import __version__


def git_commit() -> str:
    # A copy of the tree without .git (e.g. shipped to another machine to train there) gets the commit from the caller.
    if os.environ.get("SPERMLIB_GIT_COMMIT"):
        return os.environ["SPERMLIB_GIT_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_config(spec: DatasetSpec, arch: str, fold: int, r: Recipe, input_size: int, info: ModelInfo,
               split_sha256: str, data: FoldData) -> dict:
    """What a run is started with (the card's identity fields); a saved state is resumed only under the same."""
    return {
        "dataset": spec.name, "arch": arch, "fold": fold, "recipe": asdict(r), "input_size": input_size,
        "backbone": info.backbone, "pretrained_source": info.pretrained_source,
        "split_sha256": split_sha256, "n_train": len(data.y_train), "n_val": len(data.y_val),
    }


def build_card(spec: DatasetSpec, state: TrainState, inner_val: dict, stopped_early: bool, s: LoopSettings) -> dict:
    """The card of the weights ``state`` selected; ``inner_val`` are their scores as shipped (fp16)."""
    c = state.config
    return {
        "dataset": spec.name, "fold": c["fold"], "arch": c["arch"], "backbone": c["backbone"],
        "pretrained_source": c["pretrained_source"], "classes": list(spec.class_dirs),
        "display_names": list(spec.display_names), "input_size": c["input_size"], "mean": list(s.mean),
        "std": list(s.std), "split_manifest": f"splits/{spec.name}.csv", "split_sha256": c["split_sha256"],
        "n_train": c["n_train"], "n_inner_val": c["n_val"], "recipe": asdict(s.recipe),
        "epochs_run": len(state.history), "best_epoch": state.best["epoch"] + 1, "stopped_early": stopped_early,
        "inner_val": inner_val, "history": state.history, "training_seconds": round(state.train_seconds, 1),
        "device": str(s.device), "bf16": s.bf16, "torch_threads": torch.get_num_threads(),
        "git_commit": git_commit(), "spermlib_version": __version__, "torch_version": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        # A second-stage run (train --init-from) or a transfer (--transfer-from): what it started from.
        **{k: c[k] for k in ("init_from", "init_weights_sha256", "init_training_seconds", "init_device",
                             "transfer_from", "transfer_weights_sha256", "transfer_dataset") if k in c},
    }

"""The resumable state of a training run, saved after every epoch as safetensors + JSON.

``runs/<dataset>/<arch>/fold<K>/state.safetensors`` holds the tensors under prefixed keys: ``model.*``
(the trained weights), ``ema.*`` (the EMA copy, when on), ``best.*`` (the weights model selection
kept) and ``opt.<param id>.<name>`` (AdamW's moments). ``state.json`` holds ``config`` (what the run
was started with: a state made with another configuration is not resumed), ``epoch`` (the last
finished one), ``history``, ``best``, ``train_seconds`` and ``optimizer`` (param groups and the
optimizer's non-tensor state). Both files are written under temporary names and then renamed, so a
run killed at any moment leaves either the previous epoch's state or this one's, never a torn one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from timm.utils import ModelEmaV3
from torch import nn

STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"


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


def _prefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v.detach().contiguous().cpu() for k, v in tensors.items()}


def _unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def read_state(run_dir: Path) -> tuple[dict, dict[str, torch.Tensor]] | None:
    """(state.json, state.safetensors tensors) of ``run_dir``, or ``None`` when there is no saved state."""
    sj, st = Path(run_dir) / STATE_JSON, Path(run_dir) / STATE_TENSORS
    if not (sj.is_file() and st.is_file()):
        return None
    return json.loads(sj.read_text()), load_file(str(st))


def clear_state(run_dir: Path) -> None:
    """Remove the saved state (once the fold's checkpoint is written it is no longer needed)."""
    for name in (STATE_TENSORS, STATE_JSON):
        (Path(run_dir) / name).unlink(missing_ok=True)


@dataclass
class TrainState:
    """Everything that changes while a fold trains, and what a resumed run needs to continue bit-identically."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    ema: ModelEmaV3 | None = None
    config: dict = field(default_factory=dict)
    epoch: int = -1  # last finished epoch
    history: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"macro_f1": -1.0, "epoch": -1})
    best_weights: dict[str, torch.Tensor] | None = None
    train_seconds: float = 0.0

    @property
    def scored(self) -> nn.Module:
        """The weights validated, selected and shipped: the EMA's when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def record_epoch(self, record: dict, metrics: dict, seconds: float, keep_last: bool = False) -> bool:
        """Append ``record`` (epoch ``record["epoch"]``); keep the scored weights if ``metrics`` are the best yet
        (or always, with ``keep_last``: the recipe ships its last epoch)."""
        self.epoch = record["epoch"]
        self.history.append(record)
        self.train_seconds += seconds
        # Ties broken by lower validation loss, so a plateau still selects the better-calibrated epoch.
        improved = keep_last or metrics["macro_f1"] > self.best["macro_f1"] or (
            metrics["macro_f1"] == self.best["macro_f1"] and metrics["nll"] < self.best.get("nll", float("inf")))
        if improved:
            self.best = {"epoch": self.epoch, **metrics}
            self.best_weights = {k: v.detach().cpu().clone() for k, v in self.scored.state_dict().items()}
        return improved

    def should_stop(self, epoch: int, patience: int, frozen_epochs: int) -> bool:
        """Early stopping before ``epoch``: more than ``patience`` epochs since the best, none of them frozen."""
        best = self.best["epoch"]
        return best >= 0 and epoch - best > patience and epoch >= frozen_epochs + patience

    def save(self, run_dir: Path) -> None:
        tensors = _prefixed("model", self.model.state_dict())
        if self.ema is not None:
            tensors.update(_prefixed("ema", self.ema.module.state_dict()))
        if self.best_weights is not None:
            tensors.update(_prefixed("best", self.best_weights))
        opt_tensors, opt_meta = _flatten_optimizer(self.optimizer)
        tensors.update({k: v.cpu() for k, v in opt_tensors.items()})
        meta = {"config": self.config, "epoch": self.epoch, "history": self.history, "best": self.best,
                "train_seconds": self.train_seconds, "optimizer": opt_meta}
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(run_dir / f"{STATE_TENSORS}.tmp"))
        (run_dir / f"{STATE_JSON}.tmp").write_text(json.dumps(meta, indent=1))
        os.replace(run_dir / f"{STATE_TENSORS}.tmp", run_dir / STATE_TENSORS)
        os.replace(run_dir / f"{STATE_JSON}.tmp", run_dir / STATE_JSON)

    def restore(self, meta: dict, tensors: dict[str, torch.Tensor]) -> None:
        """Load what :meth:`save` wrote (``meta``, ``tensors`` as :func:`read_state` returns them)."""
        self.model.load_state_dict(_unprefixed("model", tensors))
        if self.ema is not None:
            self.ema.module.load_state_dict(_unprefixed("ema", tensors))
        self.best_weights = _unprefixed("best", tensors) or None
        self.optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
        self.epoch, self.history, self.best = meta["epoch"], meta["history"], meta["best"]
        self.train_seconds = meta["train_seconds"]

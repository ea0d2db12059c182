"""Checkpoints: fp16 ``safetensors`` weights + a JSON card, validated on load.

Nothing here ever unpickles: a pickle (or any non-safetensors file) posing as a checkpoint is
refused with :class:`CheckpointError`. The card says everything needed to rebuild and trust the
model (arch, backbone, classes, input size, normalisation, split manifest hash, recipe, metrics).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from spermlib.data.datasets import DatasetSpec
from spermlib.errors import SpermlibError
from spermlib.models import build_model, check_arch
from spermlib.store.paths import default_checkpoints_dir

CARD_VERSION = 1
REQUIRED_CARD_KEYS = ("arch", "backbone", "classes", "input_size", "mean", "std", "dataset", "fold")


class CheckpointError(SpermlibError):
    """A checkpoint that is missing, not safetensors, or inconsistent with its card."""


def checkpoint_path(dataset: str | DatasetSpec, arch: str, fold: int, root: Path | None = None) -> Path:
    return arch_dir(dataset, arch, root) / f"fold{fold}.safetensors"


def arch_dir(dataset: str | DatasetSpec, arch: str, root: Path | None = None) -> Path:
    """``<checkpoints>/<dataset>/<arch>/``: where the fold checkpoints of one arch live."""
    return Path(root or default_checkpoints_dir()) / getattr(dataset, "name", dataset) / arch


def available_folds(dataset: str | DatasetSpec, arch: str, root: Path | None = None,
                    suffix: str = ".safetensors") -> list[int]:
    """Fold numbers with a ``fold<K><suffix>`` file (weights by default; ``.json`` lists cards)."""
    d = arch_dir(dataset, arch, root)
    return sorted(int(p.stem[4:]) for p in d.glob(f"fold*{suffix}") if p.stem[4:].isdigit())


def card_path(weights_path: Path) -> Path:
    return Path(weights_path).with_suffix(".json")


def fp16_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state with floating tensors in fp16 (what is shipped); integer buffers kept."""
    return {
        k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous().cpu()
        for k, v in model.state_dict().items()
    }


def round_to_fp16_(model: nn.Module) -> nn.Module:
    """Round a model's float weights through fp16 in place, so it computes exactly what ships."""
    with torch.no_grad():
        for v in model.state_dict().values():
            if v.is_floating_point():
                v.copy_(v.to(torch.float16).to(v.dtype))
    return model


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(model: nn.Module, card: dict, path: Path) -> Path:
    """Write ``path`` (.safetensors) and its ``.json`` card; returns the weights path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    missing = [k for k in REQUIRED_CARD_KEYS if k not in card]
    if missing:
        raise CheckpointError(f"card lacks {missing}")
    tmp = path.with_suffix(".safetensors.tmp")
    save_file(fp16_state(model), str(tmp), metadata={"format": "pt", "arch": card["arch"]})
    tmp.replace(path)
    full_card = {"card_version": CARD_VERSION, **card, "weights_sha256": _sha256(path)}
    card_path(path).write_text(json.dumps(full_card, indent=2, sort_keys=False) + "\n")
    return path


def fold_cards(dataset: str | DatasetSpec, arch: str, root: Path | None = None) -> dict[int, dict]:
    """Every fold card of one arch (cards only: a sweep may bring back cards without weights)."""
    folds = available_folds(dataset, arch, root, suffix=".json")
    return {k: read_card(checkpoint_path(dataset, arch, k, root)) for k in folds}


def trained_on(card: dict) -> str | None:
    """Device type a card's model was trained on (``"cpu"``, ``"cuda"``), or ``None`` if not recorded."""
    return str(card["device"]).split(":")[0] if card.get("device") else None


def read_card(path: Path) -> dict:
    cpath = card_path(path)
    if not cpath.is_file():
        raise CheckpointError(f"{cpath} (the checkpoint's card) is missing")
    try:
        card = json.loads(cpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{cpath} is not valid JSON ({err})") from None
    missing = [k for k in REQUIRED_CARD_KEYS if k not in card]
    if missing:
        raise CheckpointError(f"{cpath} lacks {missing}")
    try:
        check_arch(card["arch"])
    except ValueError as err:
        raise CheckpointError(f"{cpath}: {err}") from None
    if not isinstance(card["classes"], list) or len(card["classes"]) < 2:
        raise CheckpointError(f"{cpath}: 'classes' must list at least two class names")
    return card


def load_checkpoint(path: Path, verify_hash: bool = True) -> tuple[nn.Module, dict]:
    """Rebuild the model of a checkpoint (float32, eval mode) and return it with its card."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} not found")
    card = read_card(path)
    if verify_hash and card.get("weights_sha256") and card["weights_sha256"] != _sha256(path):
        raise CheckpointError(f"{path} does not match the sha256 in its card (file changed or corrupt)")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a safetensors file ({err}); pickled checkpoints are refused") from None
    model = build_model(card["arch"], len(card["classes"]), card["backbone"])
    expected = model.state_dict()
    bad = [k for k in expected if k not in state or state[k].shape != expected[k].shape]
    extra = [k for k in state if k not in expected]
    if bad or extra:
        raise CheckpointError(
            f"{path} does not fit arch {card['arch']} / backbone {card['backbone']} with "
            f"{len(card['classes'])} classes (mismatched: {(bad + extra)[:5]})"
        )
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    return model.eval(), card

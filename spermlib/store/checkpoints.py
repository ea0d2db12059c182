"""Checkpoints: fp16 ``safetensors`` weights + a JSON card, validated on load.

Nothing here ever unpickles: a pickle (or any non-safetensors file) posing as a checkpoint is
refused with :class:`CheckpointError`. The card says everything needed to rebuild and trust the
model (arch, backbone, classes, input size, normalisation, split manifest hash, recipe, metrics).
"""

from __future__ import annotations

import json
from pathlib import Path

import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from spermlib.fileio import atomic_path
from spermlib.models import build_model
from spermlib.store.card_schema import card_fault, card_label, file_fold, validate_card
from spermlib.store.cards import (
    CARD_VERSION,
    CheckpointError,
    arch_dir,
    available_folds,
    card_path,
    checkpoint_path,
    file_sha256,
    fold_cards,
    read_card,
    trained_on,
    write_card,
)

# Path and card helpers live in store.cards (torch-free); re-exported so one import serves loaders.
__all__ = ["CheckpointError", "arch_dir", "available_folds", "card_path", "checkpoint_path", "fold_cards",
           "read_card", "trained_on", "fp16_state", "round_to_fp16_", "save_checkpoint", "load_checkpoint"]


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


def save_checkpoint(model: nn.Module, card: dict, path: Path) -> Path:
    """Write ``path`` (.safetensors) and its ``.json`` card, each atomically; returns the weights path. A card
    the schema refuses is refused before anything is written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    unhashed = {"card_version": CARD_VERSION, **card, "weights_sha256": "0" * 64}
    validate_card(json.loads(json.dumps(unhashed)), card_label(card_path(path)), file_fold(path))
    with atomic_path(path) as tmp:
        save_file(fp16_state(model), str(tmp), metadata={"format": "pt", "arch": card["arch"]})
    write_card(card_path(path), {**unhashed, "weights_sha256": file_sha256(path)})
    return path


def load_checkpoint(path: Path, verify_hash: bool = True) -> tuple[nn.Module, dict]:
    """Rebuild the model of a checkpoint (float32, eval mode) and return it with its card: a card that passes
    the schema, vouches for these weights (sha256) and describes them (backbone, one head output per class)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} not found")
    card = read_card(path)
    if verify_hash and card["weights_sha256"] != file_sha256(path):
        raise CheckpointError(f"{path} does not match the weights_sha256 of its card {card_label(card_path(path))} "
                              "(file changed or corrupt)")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a safetensors file ({err}); pickled checkpoints are refused") from None
    model = _model_of(card, path)
    _check_head(model, state, card, path)
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


def _model_of(card: dict, path: Path) -> nn.Module:
    """The untrained model the card describes; a backbone the model factory does not know is the card's fault."""
    if card["arch"] != "simplecnn" and not timm.is_model(card["backbone"]):
        raise card_fault(card_path(path), "backbone", card["backbone"])
    return build_model(card["arch"], len(card["classes"]), card["backbone"])


def _check_head(model: nn.Module, state: dict[str, torch.Tensor], card: dict, path: Path) -> None:
    """The card's classes against the weights: the classifier has one output per class."""
    head = model.get_classifier()
    key = next((f"{name}.weight" for name, module in model.named_modules() if module is head), None)
    if key in state and state[key].ndim == 2 and state[key].shape[0] != len(card["classes"]):
        raise card_fault(card_path(path), "classes", card["classes"],
                         f"must name one class per output of the weights' head ({state[key].shape[0]} outputs, "
                         f"{len(card['classes'])} names)")

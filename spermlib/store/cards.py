"""Where checkpoints live and what their JSON cards must say: no torch import (pages list models with it).

A checkpoint is ``<checkpoints>/<dataset>/<arch>/fold<K>.safetensors`` (fp16 weights) plus
``fold<K>.json`` (the card: arch, backbone, classes, input size, normalisation, split manifest hash,
recipe, metrics). Loading and saving weights is :mod:`spermlib.store.checkpoints`. :func:`listed_datasets`:
the datasets the app offers (the built-in ones, and every registered own dataset with checkpoints).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from spermlib.archs import ARCHS, check_arch
from spermlib.data.datasets import DATASETS, DatasetSpec, registered_datasets
from spermlib.errors import SpermlibError
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


def archs_with_checkpoints(dataset: str | DatasetSpec, archs: list[str] | None = None,
                           root: Path | None = None) -> list[str]:
    """``archs``, or (``None``) every arch with a fold checkpoint; ``CheckpointError`` when that leaves none."""
    archs = [a for a in ARCHS if available_folds(dataset, a, root)] if archs is None else archs
    if not archs:
        name = getattr(dataset, "name", dataset)
        raise CheckpointError(f"no checkpoints for {name} in {root or default_checkpoints_dir()}; train first")
    return archs


def listed_datasets(checkpoints_dir: Path | None = None) -> dict[str, DatasetSpec]:
    """What the app offers: the built-in datasets, then every registered own dataset that has checkpoints."""
    own = {n: s for n, s in registered_datasets().items()
           if any(available_folds(s, arch, checkpoints_dir) for arch in ARCHS)}
    return {**DATASETS, **own}


def card_path(weights_path: Path) -> Path:
    return Path(weights_path).with_suffix(".json")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fold_cards(dataset: str | DatasetSpec, arch: str, root: Path | None = None) -> dict[int, dict]:
    """Every fold card of one arch (cards only: a sweep may bring back cards without weights)."""
    folds = available_folds(dataset, arch, root, suffix=".json")
    return {k: read_card(checkpoint_path(dataset, arch, k, root)) for k in folds}


def trained_on(card: dict) -> str | None:
    """Device type a card's model was trained on (``"cpu"``, ``"cuda"``), or ``None`` if not recorded."""
    return str(card["device"]).split(":")[0] if card.get("device") else None


def training_devices(cards) -> str | None:
    """Where fold models trained, every stage counted: ``"cuda"``, ``"cpu"``, or ``"cuda+cpu"`` when a first stage
    (``init_device``, see ``train --init-from``) or some folds ran elsewhere (first-seen order, first stages first)."""
    seen: list[str] = []
    for card in cards:
        for kind in (trained_on({"device": card.get("init_device")}), trained_on(card)):
            if kind and kind not in seen:
                seen.append(kind)
    return "+".join(seen) or None


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


def set_card_field(weights_path: Path, key: str, value: object) -> None:
    """Set (or, with ``None``, remove) one field of a checkpoint's card, e.g. a temperature fitted after
    training. The weights and their sha256 are untouched; a retrain rewrites the card without it."""
    cpath = card_path(weights_path)
    card = json.loads(cpath.read_text())
    if key in REQUIRED_CARD_KEYS:
        raise CheckpointError(f"{key!r} is part of what the checkpoint is; retrain instead of editing it")
    if value is None:
        card.pop(key, None)
    else:
        card[key] = value
    cpath.write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")

"""Where checkpoints live and what their JSON cards must say: no torch import (pages list models with it).

A checkpoint is ``<checkpoints>/<dataset>/<arch>/fold<K>.safetensors`` (fp16 weights) plus
``fold<K>.json`` (the card: arch, backbone, classes, input size, normalisation, split manifest hash,
recipe, metrics; its schema, checked on every read and write, is :mod:`spermlib.store.card_schema`).
Loading and saving weights is :mod:`spermlib.store.checkpoints`. :func:`listed_datasets`: the datasets the
app offers (the built-in ones, and every registered own dataset with checkpoints).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from spermlib.archs import ARCHS
from spermlib.data.datasets import DATASETS, DatasetSpec, registered_datasets
from spermlib.fileio import write_text
from spermlib.store.card_schema import (
    CARD_VERSION,
    REQUIRED_CARD_KEYS,
    CheckpointError,
    card_label,
    file_fold,
    read_card_file,
    validate_card,
)
from spermlib.store.paths import default_checkpoints_dir

__all__ = ["CARD_VERSION", "REQUIRED_CARD_KEYS", "CheckpointError", "checkpoint_path", "arch_dir", "available_folds",
           "archs_with_checkpoints", "listed_datasets", "card_path", "file_sha256", "fold_cards", "trained_on",
           "training_devices", "read_card", "set_card_field", "write_card"]


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
    """The card of checkpoint ``path`` (or the card file itself), as written, once it passes the schema
    (:mod:`spermlib.store.card_schema`); any violation is one ``CheckpointError`` naming the file and the field."""
    cpath = card_path(path)
    if not cpath.is_file():
        raise CheckpointError(f"{card_label(cpath)} (the checkpoint's card) is missing")
    return read_card_file(cpath)


def set_card_field(weights_path: Path, key: str, value: object) -> None:
    """Set (or, with ``None``, remove) one field of a checkpoint's card, e.g. a temperature fitted after
    training. The weights and their sha256 are untouched; a retrain rewrites the card without it. The card
    must pass the schema before and after (an out-of-range value is refused, never written)."""
    cpath = card_path(weights_path)
    if key in REQUIRED_CARD_KEYS:
        raise CheckpointError(f"{key!r} is part of what the checkpoint is; retrain instead of editing it")
    card = dict(read_card(cpath))
    if value is None:
        card.pop(key, None)
    else:
        card[key] = value
    write_card(cpath, card)


def write_card(cpath: Path, card: dict) -> None:
    """Write a card file atomically, as JSON exactly as it will be read back, once that passes the schema."""
    text = json.dumps(card, indent=2, sort_keys=False) + "\n"
    validate_card(json.loads(text), card_label(cpath), file_fold(cpath))
    write_text(cpath, text)

"""Where a fold model's out-of-domain detector lives, and its one reader/writer (torch-free).

A detector is fitted per fold checkpoint (``spermlib ood``) and stored beside it, in an
``ood/`` folder of the arch's checkpoint folder: ``<checkpoints>/<dataset>/<arch>/ood/fold<K>.safetensors``
(fp32 arrays: class means, a low-rank covariance, or a feature bank) and ``fold<K>.json`` (the
method, threshold, score scale, the ``weights_sha256`` of the checkpoint it was fitted on, and how).
A sub-folder, not ``fold<K>.ood.safetensors``: checkpoint listings and the shipped-size test glob
``fold*.safetensors`` in the arch folder. Safetensors + JSON only: nothing is ever unpickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from spermlib.data.datasets import DatasetSpec
from spermlib.errors import SpermlibError
from spermlib.fileio import atomic_path
from spermlib.store.cards import arch_dir

OOD_DIR = "ood"


class DetectorFileError(SpermlibError):
    """A detector file that exists but cannot be read (the message says how to refit it)."""


@dataclass
class StoredDetector:
    arrays: dict[str, np.ndarray]
    meta: dict


def detector_path(dataset: str | DatasetSpec, arch: str, fold: int, root: Path | None = None) -> Path:
    """``<checkpoints>/<dataset>/<arch>/ood/fold<K>.safetensors`` (its JSON beside it)."""
    return arch_dir(dataset, arch, root) / OOD_DIR / f"fold{fold}.safetensors"


def detector_meta_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def write_detector(path: Path, stored: StoredDetector) -> Path:
    """Write the arrays (as fp32) and the JSON; the arrays first, so a JSON always has its arrays."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in stored.arrays.items()}
    with atomic_path(path) as tmp:
        save_file(arrays, str(tmp), metadata={"format": "np"})
        tmp.chmod(0o644)  # a temporary file is owner-only; these files are shipped like the checkpoints
    with atomic_path(detector_meta_path(path)) as tmp:
        tmp.write_text(json.dumps(stored.meta, indent=1) + "\n")
        tmp.chmod(0o644)
    return path


def read_detector(path: Path) -> StoredDetector | None:
    """The stored detector, ``None`` when there is none, :class:`DetectorFileError` when it is unreadable."""
    path, meta_path = Path(path), detector_meta_path(path)
    if not meta_path.is_file():
        return None
    refit = "refit it with `spermlib ood --dataset D --refit`"
    try:
        meta = json.loads(meta_path.read_text())
        if not isinstance(meta, dict) or "method" not in meta:
            raise DetectorFileError(f"{meta_path} names no detector method; {refit}")
        arrays = load_file(str(path)) if path.is_file() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, SafetensorError) as err:
        raise DetectorFileError(f"{path}: the out-of-domain detector is unreadable ({err}); {refit}") from None
    return StoredDetector(arrays, meta)

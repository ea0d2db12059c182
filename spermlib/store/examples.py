"""The Overview's worked example on disk: ``<results>/<dataset>/worked_example.json`` + one PNG per panel.

Written by ``spermlib example`` (the maps need the fold model, so torch); read by the Overview
without torch, so a fresh server shows the example at once. An entry names the checkpoint it was made
with (the card's ``weights_sha256``): after a retrain :func:`is_current` is false and the page computes
the maps itself. Pixels are PNG and everything else JSON; nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from spermlib.fileio import atomic_path
from spermlib.store.cards import CheckpointError, checkpoint_path, read_card
from spermlib.store.results import ResultsError, dataset_results_dir, write_json

EXAMPLE_FILE = "worked_example.json"
EXAMPLE_PANELS_DIR = "worked_example"


@dataclass(frozen=True)
class Example:
    """One image and what the fold model of one arch that never saw it said about it."""

    dataset: str
    arch: str
    path: str  # relative to the dataset folder (a split-manifest path)
    fold: int
    label: str
    pred: str
    confidence: float


@dataclass
class StoredExample:
    """An example with its panels (file names under :data:`EXAMPLE_PANELS_DIR`) and provenance."""

    example: Example
    panels: list[tuple[str, str]]  # (PNG file name, caption), left to right
    weights_sha256: str
    inference: dict = field(default_factory=dict)
    folder: Path | None = None  # where the panels were read from

    def images(self) -> list[np.ndarray]:
        return [np.asarray(Image.open(self.folder / name).convert("RGB")) for name, _ in self.panels]


def example_path(dataset: str, results_dir: str | Path | None = None) -> Path:
    return dataset_results_dir(dataset, results_dir) / EXAMPLE_FILE


def write_example(example: Example, panels: list[tuple[str, np.ndarray]], weights_sha256: str, inference: dict,
                  results_dir: str | Path | None = None) -> Path:
    """Write the panels (caption → H×W×3 uint8) as PNGs and the JSON that names them; returns the JSON path.

    Each write's panels have names of their own (``panel0-<digest>.png``): the previous example's panels stay
    whole until the new JSON has replaced the old one, so a write that fails half-way leaves the previous
    example readable; the panels no JSON names any more are removed last."""
    target = example_path(example.dataset, results_dir)
    folder = target.parent / EXAMPLE_PANELS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    arrays = [np.ascontiguousarray(rgb, dtype=np.uint8) for _, rgb in panels]
    digest = hashlib.sha256(b"".join(str(a.shape).encode() + a.tobytes() for a in arrays)).hexdigest()[:12]
    names = []
    for i, ((caption, _), rgb) in enumerate(zip(panels, arrays)):
        name = f"panel{i}-{digest}.png"
        with atomic_path(folder / name) as tmp:  # the format by name: the temporary file has no .png
            Image.fromarray(rgb).save(tmp, format="PNG", optimize=True)
        names.append({"file": name, "caption": caption})
    written = write_json(target, {"example": asdict(example), "panels": names, "weights_sha256": weights_sha256,
                                  "inference": inference, "command": f"spermlib example --dataset "
                                                                     f"{example.dataset} --arch {example.arch}"})
    for old in set(folder.glob("*.png")) - {folder / n["file"] for n in names}:  # e.g. a CBAM example's third panel
        old.unlink(missing_ok=True)
    return written


def read_example(dataset: str, results_dir: str | Path | None = None) -> StoredExample | None:
    """The stored example of ``dataset``, or ``None`` when there is none; an unreadable one is a ResultsError."""
    path = example_path(dataset, results_dir)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        stored = StoredExample(Example(**data["example"]), [(p["file"], p["caption"]) for p in data["panels"]],
                               data["weights_sha256"], data.get("inference", {}), path.parent / EXAMPLE_PANELS_DIR)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ResultsError(f"{path} is unreadable ({err}); rewrite it with `spermlib example "
                           f"--dataset {dataset}`") from err
    if not all((stored.folder / name).is_file() for name, _ in stored.panels):
        raise ResultsError(f"{path} names panels missing from {stored.folder}; rewrite it with "
                           f"`spermlib example --dataset {dataset}`")
    return stored


def is_current(stored: StoredExample, checkpoints_dir: str | Path | None = None) -> bool:
    """Whether the fold checkpoint that made the maps is still the installed one (same weights digest)."""
    ex = stored.example
    weights = checkpoint_path(ex.dataset, ex.arch, ex.fold, checkpoints_dir)
    try:
        return read_card(weights).get("weights_sha256") == stored.weights_sha256
    except CheckpointError:  # no card (or an unreadable one): whatever loads the model reports it
        return False

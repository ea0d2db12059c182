"""Dataset registry and data-root resolution.

A dataset is a folder with one sub-folder per class (as in ``../shared/data``). The label of an
image is its folder, never its file name (SMIDS file-name prefixes contradict the folders).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from spermlib.errors import SpermlibError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DATA_ROOT = PROJECT_ROOT / "sample_data"
# Developers and CI have the full datasets beside the checkout.
SHARED_DATA_ROOT = PROJECT_ROOT.parent / "shared" / "data"
DATA_DIR_ENV = "SPERM_DATA_DIR"
IMAGE_SUFFIXES = {".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".webp"}


@dataclass(frozen=True)
class DatasetSpec:
    name: str  # registry key used on the command line
    folder: str  # folder name under a data root
    title: str
    class_dirs: tuple[str, ...]  # on-disk class folders == labels stored everywhere
    display_names: tuple[str, ...]
    input_size: int  # default model input (square); the native patch size is about this
    citation: str
    licence: str = "CC BY 4.0"

    @property
    def num_classes(self) -> int:
        return len(self.class_dirs)

    def display(self, label: str) -> str:
        return dict(zip(self.class_dirs, self.display_names)).get(label, label)


DATASETS: dict[str, DatasetSpec] = {
    "smids": DatasetSpec(
        name="smids",
        folder="SMIDS",
        title="SMIDS — Sperm Morphology Image Data Set",
        class_dirs=("Normal_Sperm", "Abnormal_Sperm", "Non-Sperm"),
        display_names=("Normal", "Abnormal", "Non-sperm"),
        input_size=160,
        citation=(
            "Ilhan HO, Serbes G, Aydin N. Automated sperm morphology analysis approach using a "
            "directional masking technique. Comput Biol Med 122 (2020) 103845. "
            "Data: Mendeley Data doi:10.17632/6xvdhc9fyb.1 (CC BY 4.0)."
        ),
    ),
    "hushem": DatasetSpec(
        name="hushem",
        folder="HuSHeM",
        title="HuSHeM — Human Sperm Head Morphology dataset",
        class_dirs=("01_Normal", "02_Tapered", "03_Pyriform", "04_Amorphous"),
        display_names=("Normal", "Tapered", "Pyriform", "Amorphous"),
        input_size=160,
        citation=(
            "Shaker F, Monadjemi SA, Alirezaie J, Naghsh-Nilchi AR. A dictionary learning approach "
            "for human sperm heads classification. Comput Biol Med 91 (2017) 181–190. "
            "Data: Mendeley Data doi:10.17632/tt3yj2pf38.3 (CC BY 4.0)."
        ),
    ),
}


class DataError(SpermlibError):
    """A data folder that is missing or not laid out as expected."""


def get_dataset(name: str) -> DatasetSpec:
    try:
        return DATASETS[name.lower()]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}") from None


def _has_dataset(base: Path, spec: DatasetSpec) -> bool:
    root = base / spec.folder
    return all((root / c).is_dir() for c in spec.class_dirs)


def resolve_data_root(spec: DatasetSpec, data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding ``spec``'s class folders.

    Order: ``data_dir`` argument, then ``$SPERM_DATA_DIR``, then the bundled sample. ``data_dir``
    may point at the dataset folder itself or at a parent holding ``SMIDS/``, ``HuSHeM/``.
    """
    for candidate in (data_dir, os.environ.get(DATA_DIR_ENV) or None):
        if candidate is None:
            continue
        base = Path(candidate).expanduser()
        if all((base / c).is_dir() for c in spec.class_dirs):
            return base
        if _has_dataset(base, spec):
            return base / spec.folder
        raise DataError(
            f"{base} holds neither the class folders of {spec.name} ({', '.join(spec.class_dirs)}) "
            f"nor a {spec.folder}/ folder with them"
        )
    return SAMPLE_DATA_ROOT / spec.folder


def is_full_dataset(root: Path) -> bool:
    """True when ``root`` is not the bundled sample."""
    return SAMPLE_DATA_ROOT.resolve() not in (Path(root).resolve(), *Path(root).resolve().parents)


def shared_data_root(spec: DatasetSpec) -> Path | None:
    """The full dataset beside the checkout (developers, CI), if present."""
    return SHARED_DATA_ROOT / spec.folder if _has_dataset(SHARED_DATA_ROOT, spec) else None


def list_images(spec: DatasetSpec, root: Path) -> pd.DataFrame:
    """One row per image file: ``path`` (relative, POSIX), ``label``; sorted by path."""
    rows = []
    for label in spec.class_dirs:
        folder = Path(root) / label
        if not folder.is_dir():
            raise DataError(f"{folder} is missing: expected one folder per class of {spec.name}")
        for f in sorted(folder.iterdir()):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                rows.append((f"{label}/{f.name}", label))
    if not rows:
        raise DataError(f"no images found under {root}")
    return pd.DataFrame(rows, columns=["path", "label"]).sort_values("path", ignore_index=True)

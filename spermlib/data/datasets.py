"""Dataset registry and data-root resolution.

A dataset is a folder with one sub-folder per class (as in ``../shared/data``: torchvision's
ImageFolder layout). The label of an image is its folder, never its file name (SMIDS file-name
prefixes contradict the folders). Two built-in datasets (SMIDS, HuSHeM) are described here; any
other folder of that layout is a user's *own dataset*: ``get_dataset`` turns its path into a
``DatasetSpec`` and ``spermlib splits`` records it (name, path, classes, display names,
citation) in the dataset registry file (:func:`dataset_registry_path`), so later commands
and the app know it by name. ``get_dataset`` is the one entry point every command resolves
``--dataset`` through.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from spermlib.errors import SpermlibError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DATA_ROOT = PROJECT_ROOT / "sample_data"
# Developers and CI have the full datasets beside the checkout.
SHARED_DATA_ROOT = PROJECT_ROOT.parent / "shared" / "data"
DATA_DIR_ENV = "SPERM_DATA_DIR"
DATASETS_ENV = "SPERMLIB_DATASETS"
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
    # An own dataset's folder (holding its class folders); None for the built-in datasets, whose data
    # root is found by ``resolve_data_root``'s search order.
    root: str | None = None

    @property
    def is_builtin(self) -> bool:
        return self.root is None

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


def get_dataset(name: str | os.PathLike) -> DatasetSpec:
    """A built-in dataset by name, an own dataset by its registered name, or a folder-per-class path."""
    key = str(name).lower()
    if key in DATASETS:
        return DATASETS[key]
    registered = registered_datasets()
    if key in registered:
        return registered[key]
    path = Path(name).expanduser()
    if path.is_dir():
        return next((s for s in registered.values() if Path(s.root).resolve() == path.resolve()), None) \
            or folder_dataset(path)
    raise DataError(f"unknown dataset {str(name)!r}; choose one of: {', '.join([*DATASETS, *registered])}, "
                    "or give a folder with one sub-folder of images per class")


# ------------------------------------------------------------------------------- own datasets

_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]*")
OWN_INPUT_SIZE = 160  # the built-in datasets' model input; train --input-size changes it


def _image_files(folder: Path) -> list[Path]:
    return [f for f in sorted(folder.iterdir()) if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]


def _class_folders(root: Path) -> list[Path]:
    return [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")]


def folder_dataset(path: str | os.PathLike, name: str | None = None, citation: str = "",
                   display_names: tuple[str, ...] | None = None) -> DatasetSpec:
    """The ``DatasetSpec`` of an ImageFolder-layout folder as it is now (classes = its sub-folders, sorted)."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"{path} is not a folder; an own dataset is a folder with one sub-folder of images per class")
    name = (name or root.name).lower()
    if not _NAME_PATTERN.fullmatch(name):
        raise DataError(f"dataset name {name!r} must be letters, digits, '_', '-' or '.'; name the folder "
                        f"with `spermlib splits --dataset {root} --name NAME`")
    if name in DATASETS:
        raise DataError(f"{name!r} is the name of a built-in dataset: use --dataset {name} --data-dir {root}, "
                        f"or name this folder with `spermlib splits --dataset {root} --name NAME`")
    classes = _class_folders(root)
    if len(classes) < 2:
        raise DataError(f"{root} has {len(classes)} class folder(s); a dataset needs at least two sub-folders of "
                        f"images, one per class (e.g. {root}/normal/*.png, {root}/abnormal/*.png)")
    empty = [d.name for d in classes if not _image_files(d)]
    if empty:
        raise DataError(f"class folder(s) {', '.join(empty)} under {root} hold no images "
                        f"({', '.join(sorted(IMAGE_SUFFIXES))}); add images or remove the folder")
    class_dirs = tuple(d.name for d in classes)
    if display_names is not None and len(display_names) != len(class_dirs):
        raise DataError(f"{len(display_names)} display names given for {len(class_dirs)} classes ({class_dirs})")
    return DatasetSpec(name=name, folder=root.name, title=f"{root.name} (own dataset)", class_dirs=class_dirs,
                       display_names=tuple(display_names or class_dirs), input_size=OWN_INPUT_SIZE,
                       citation=citation, licence="", root=str(root))


def dataset_registry_path() -> Path:
    """``$SPERMLIB_DATASETS`` or ``datasets.json``: the own datasets ``splits`` recorded (name, path, classes, …).

    Read at call time (not import time) so tests and the app can redirect it."""
    return Path(os.environ.get(DATASETS_ENV) or PROJECT_ROOT / "datasets.json")


def registered_datasets() -> dict[str, DatasetSpec]:
    """The own datasets recorded in the registry file, by name (none when the file is absent)."""
    path = dataset_registry_path()
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text())["datasets"]
        return {name: DatasetSpec(**{**e, "class_dirs": tuple(e["class_dirs"]),
                                     "display_names": tuple(e["display_names"])}) for name, e in entries.items()}
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise DataError(f"dataset registry {path} is not valid ({err}); fix or delete it") from None


def register_dataset(spec: DatasetSpec) -> Path:
    """Record (or update) an own dataset in the registry file; returns the file's path."""
    if spec.is_builtin:
        raise DataError(f"{spec.name} is built in; only own datasets are registered")
    path = dataset_registry_path()
    entries = {n: asdict(s) for n, s in registered_datasets().items()}
    entries[spec.name] = asdict(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"datasets": dict(sorted(entries.items()))}, indent=1, ensure_ascii=False) + "\n")
    return path


def _has_dataset(base: Path, spec: DatasetSpec) -> bool:
    root = base / spec.folder
    return all((root / c).is_dir() for c in spec.class_dirs)


def resolve_data_root(spec: DatasetSpec, data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding ``spec``'s class folders.

    Order: ``data_dir`` argument, then ``$SPERM_DATA_DIR``, then the bundled sample. ``data_dir``
    may point at the dataset folder itself or at a parent holding ``SMIDS/``, ``HuSHeM/``. An own
    dataset's folder is its recorded ``root`` unless ``data_dir`` names another copy.
    """
    if spec.root is not None and data_dir is None:
        return Path(spec.root)
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
        rows += [(f"{label}/{f.name}", label) for f in _image_files(folder)]
    if not spec.is_builtin:
        _refuse_new_classes(spec, Path(root))
    if not rows:
        raise DataError(f"no images found under {root}")
    return pd.DataFrame(rows, columns=["path", "label"]).sort_values("path", ignore_index=True)


def _refuse_new_classes(spec: DatasetSpec, root: Path) -> None:
    """An own dataset's class folders are fixed when its split is made: a new one has no fold and no output."""
    added = [d.name for d in _class_folders(root) if d.name not in spec.class_dirs and _image_files(d)]
    if added:
        raise DataError(f"class folder(s) {', '.join(added)} under {root} were added after the split of "
                        f"{spec.name} was made (its classes: {', '.join(spec.class_dirs)}); make a new split with "
                        f"`spermlib splits --dataset {root}` and retrain")


def non_image_files(spec: DatasetSpec, root: Path) -> list[str]:
    """Files in the class folders that are skipped because their suffix is not an image's (relative paths)."""
    return [f"{label}/{f.name}" for label in spec.class_dirs for f in sorted((Path(root) / label).iterdir())
            if f.is_file() and f.suffix.lower() not in IMAGE_SUFFIXES]


def dataset_for_split(dataset: str | os.PathLike, name: str | None = None, citation: str | None = None,
                      display_names: tuple[str, ...] | None = None) -> DatasetSpec:
    """What ``splits`` splits: a built-in dataset as is, an own dataset scanned afresh (a new split fixes its
    classes as they are now), keeping its recorded name and citation unless new ones are given."""
    spec = get_dataset(dataset)
    if spec.is_builtin:
        if name or citation or display_names:
            raise DataError(f"{spec.name} is built in: --name, --citation and --display-names are for own datasets")
        return spec
    return folder_dataset(spec.root, name=name or spec.name, citation=spec.citation if citation is None else citation,
                          display_names=display_names)


def expand_image_paths(paths: list[str | os.PathLike]) -> list[str]:
    """Files as given, folders replaced by the image files under them (recursively, sorted): what ``predict``
    classifies. A file named explicitly is kept whatever its suffix, so that a bad one gets its error row."""
    out: list[str] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(f"{p} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))}), at any depth")
            out += found
        else:
            out.append(str(p))
    return out

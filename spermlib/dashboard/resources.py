"""What the pages load: datasets, folders, fold models, results files and bundled samples.

Plain functions keyed by strings and file stamps, so that a page can wrap each in ``st.cache_resource``
(models) or ``st.cache_data`` (tables); the pages never reach into ``spermlib.store`` or ``spermlib.data``
themselves. Model code (``spermlib.inference``, which imports torch) is imported inside the functions that
load a model, so the pages that show no model start without torch.

The errors a page reports to the user (a missing checkpoint, an unreadable results file or data folder,
an undecodable image) are named here, beside the loaders that raise them.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from PIL import Image

from spermlib.archs import ARCHS, DEFAULT_ARCH
from spermlib.dashboard.compare import preferred_order
from spermlib.data.datasets import (
    DATA_DIR_ENV,
    DATASETS,
    SAMPLE_DATA_ROOT,
    DataError,
    DatasetSpec,
    get_dataset,
    list_images,
    resolve_data_root,
)
from spermlib.data.imageio import ImageError, load_rgb
from spermlib.errors import SpermlibError
from spermlib.store.cards import CheckpointError, available_folds, checkpoint_path, listed_datasets
from spermlib.store.embeddings import default_embeddings_dir
from spermlib.store.paths import default_checkpoints_dir, default_results_dir
from spermlib.store.results import (
    ResultsError,
    dataset_results_dir,
    load_faithfulness,
    load_metrics,
    load_oofs,
    load_robustness,
)

if TYPE_CHECKING:
    from spermlib.inference.predict import Predictor

__all__ = [  # the dataset registry, folders and errors the pages name, beside the loaders below
    "DATA_DIR_ENV", "DATASETS", "CheckpointError", "DataError", "DatasetSpec", "ImageError", "ResultsError",
    "default_checkpoints_dir", "default_embeddings_dir", "default_results_dir", "get_dataset", "listed_datasets",
    "load_rgb", "resolve_data_root",
]

# results file kind → its loader (``None`` when the file was not written yet; the OOF tables: ``{}``)
RESULTS_LOADERS = {"metrics": load_metrics, "faithfulness": load_faithfulness, "robustness": load_robustness,
                   "oofs": load_oofs}


# ----------------------------------------------------------------------------- models


def load_predictor(dataset: str, arch: str, checkpoints_dir: str, folds: Sequence[int] | None = None) -> Predictor:
    """The fold ensemble of ``arch`` (or only ``folds``) for ``dataset``; :class:`CheckpointError` if not installed."""
    from spermlib.inference.predict import Predictor  # torch: only the pages that show a model import it

    return Predictor.from_checkpoints(get_dataset(dataset), arch=arch, folds=None if folds is None else list(folds),
                                      checkpoints_dir=Path(checkpoints_dir))


def default_model() -> tuple[str, str]:
    """(dataset, arch) the app opens on: the first built-in dataset and the paper's model."""
    return next(iter(DATASETS)), DEFAULT_ARCH


def warm_up(predictor: Predictor) -> None:
    """Run every kernel a first prediction needs once, on a blank image: one Grad-CAM++ explanation (it imports
    the CAM libraries, ~2 s) and one test-time-augmented prediction (a stacked batch of 8 views, whose shape
    needs its kernels set up too), so that the user's first image pays for neither."""
    from spermlib.inference.explain import Explainer  # torch: the predictor has loaded it already

    blank = np.zeros((predictor.input_size,) * 2 + (3,), dtype=np.uint8)
    Explainer(predictor).explain(blank, folds=predictor.folds[:1])
    predictor.subset(predictor.folds[:1]).with_tta().predict_images([blank], keep_inputs=False)


def installed_archs(dataset: str) -> list[str]:
    """The archs with at least one installed fold model, in picker order (:func:`preferred_order`: the paper's
    model first, the weakest last)."""
    spec = get_dataset(dataset)
    return preferred_order([a for a in ARCHS if available_folds(spec, a, default_checkpoints_dir())])


def installed_folds(dataset: str | DatasetSpec, arch: str) -> list[int]:
    return available_folds(dataset, arch, default_checkpoints_dir())


def checkpoint_stamp(dataset: str | DatasetSpec, arch: str, fold: int) -> int:
    """Modification time of a fold checkpoint: a retrained model invalidates what was cached for it."""
    return checkpoint_path(dataset, arch, fold, default_checkpoints_dir()).stat().st_mtime_ns


# ----------------------------------------------------------------------------- results


def results_stamp(dataset: str) -> tuple:
    """Changes whenever ``evaluate`` rewrites a dataset's results, so cached tables refresh."""
    d = dataset_results_dir(dataset)
    return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in d.iterdir() if p.is_file())) if d.is_dir() else ()


def read_results(kind: str, dataset: str, results_dir: str) -> dict | None:
    """One results file of ``dataset`` (``kind``: a key of :data:`RESULTS_LOADERS`); :class:`ResultsError`
    when it is unreadable."""
    return RESULTS_LOADERS[kind](dataset, results_dir)


# ----------------------------------------------------------------------------- data


def sample_root(dataset: str) -> Path:
    """The folder of a dataset's bundled sample images (sample paths are relative to it)."""
    return SAMPLE_DATA_ROOT / get_dataset(dataset).folder


def bundled_samples(dataset: str) -> list[str]:
    """The bundled sample images of a dataset, as paths relative to :func:`sample_root` (= manifest paths)."""
    try:
        return list_images(get_dataset(dataset), sample_root(dataset))["path"].tolist()
    except DataError:
        return []


def file_stamps(paths: Sequence[Path]) -> tuple:
    """Modification times of the files a cached table depends on (``None``: absent)."""
    return tuple((str(p), p.stat().st_mtime) if p.is_file() else (str(p), None) for p in paths)


def shown_path(path: str | Path) -> str:
    """A server folder as a page may show it to a visitor: relative to the app's working directory when it lies
    below it (``sample_data/SMIDS``), else only its last part (``SMIDS``), never the server's absolute path."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (OSError, ValueError):
        return p.name or str(p)


# ----------------------------------------------------------------------------- caches bounded in bytes

PREDICTION_CACHE_ENV = "SPERMLIB_PREDICTION_CACHE_MB"
DEFAULT_PREDICTION_CACHE_MB = 256
Value = TypeVar("Value")


def held_bytes(value: object, seen: set[int] | None = None) -> int:
    """About how much memory ``value`` holds: arrays, bytes and decoded images by their size, containers and
    dataclasses by what they hold (each object counted once)."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, (bytes, bytearray, str)):
        return len(value)
    if isinstance(value, Image.Image):
        return value.width * value.height * len(value.getbands())
    if isinstance(value, dict):
        return sum(held_bytes(k, seen) + held_bytes(v, seen) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return sum(held_bytes(v, seen) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(held_bytes(getattr(value, f.name), seen) for f in dataclasses.fields(value))
    return sys.getsizeof(value)


class ByteBudgetCache:
    """A least-recently-used cache of computed values that holds at most ``budget_bytes`` (:func:`held_bytes`) in
    all: one process serves every session, so a cache capped by its number of entries grows with the size of
    each (150 uploads an entry). Thread-safe; a value is computed outside the lock, and one larger than the
    whole budget is returned without being kept. Values are shared, not copied: callers must not change them."""

    def __init__(self, budget_bytes: int):
        self.budget_bytes = int(budget_bytes)
        self.used_bytes = 0
        self._entries: OrderedDict[Hashable, tuple[object, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get_or_compute(self, key: Hashable, compute: Callable[[], Value]) -> Value:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key][0]  # type: ignore[return-value]
        value = compute()
        size = held_bytes(value)
        with self._lock:
            if size <= self.budget_bytes and key not in self._entries:
                self._entries[key] = (value, size)
                self.used_bytes += size
                while self.used_bytes > self.budget_bytes:
                    _, (_, dropped) = self._entries.popitem(last=False)
                    self.used_bytes -= dropped
        return value


def prediction_cache_budget() -> int:
    """Bytes the process's prediction cache may hold: ``$SPERMLIB_PREDICTION_CACHE_MB`` (default 256) MB."""
    text = os.environ.get(PREDICTION_CACHE_ENV, "").strip()
    try:
        mb = float(text) if text else DEFAULT_PREDICTION_CACHE_MB
    except ValueError:
        mb = -1.0
    if not mb >= 0:
        raise SpermlibError(f"${PREDICTION_CACHE_ENV} must be a number of megabytes (0 or more), got {text!r}")
    return int(mb * 1024 * 1024)


@functools.cache
def prediction_cache() -> ByteBudgetCache:
    """The one cache of predictions and explanations of this server process (every session shares it)."""
    return ByteBudgetCache(prediction_cache_budget())

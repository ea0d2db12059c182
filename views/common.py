"""Streamlit glue shared by the pages: cached resources and small widgets. No science here.

Caching rules: models via ``st.cache_resource`` (one Predictor per dataset × arch per process; it is
thread-safe because every forward pass and CAM holds ``Predictor.lock``, and CAM objects are built
per call inside ``with``); tables via ``st.cache_data``. Cache keys include the checkpoints/results
folders so tests (and users) can point the app elsewhere with $SPERMLIB_CHECKPOINTS/$SPERMLIB_RESULTS.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from spermlib.data.datasets import DATASETS, DatasetSpec, get_dataset
from spermlib.inference.predict import Predictor
from spermlib.models import ARCHS
from spermlib.store.checkpoints import CheckpointError, available_folds
from spermlib.store.paths import default_checkpoints_dir, default_results_dir

ARCH_TITLES = {"simplecnn": "SimpleCNN", "effnet": "EfficientNet", "effnet_cbam": "EfficientNet + CBAM"}


@st.cache_resource(show_spinner="Loading fold models …")
def _predictor(dataset: str, arch: str, checkpoints_dir: str) -> Predictor:
    return Predictor.from_checkpoints(get_dataset(dataset), arch=arch, checkpoints_dir=Path(checkpoints_dir))


def get_predictor(dataset: str, arch: str) -> Predictor | None:
    """The cached fold ensemble, or ``None`` (after an explanatory notice) when it is not installed."""
    try:
        return _predictor(dataset, arch, str(default_checkpoints_dir()))
    except CheckpointError as err:
        st.info(f"{ARCH_TITLES.get(arch, arch)} for {get_dataset(dataset).title}: {err}")
        return None


def installed_archs(dataset: str) -> list[str]:
    spec = get_dataset(dataset)
    return [a for a in ARCHS if available_folds(spec, a, default_checkpoints_dir())]


def dataset_picker(key: str = "dataset", label: str = "Dataset / task") -> DatasetSpec:
    names = list(DATASETS)
    choice = st.selectbox(label, names, format_func=lambda n: DATASETS[n].title, key=key)
    return get_dataset(choice)


def results_dir() -> Path:
    return default_results_dir()


# ---------------------------------------------------------------------------------------------
# Evaluation results and thumbnails (overview, comparison, misclassifications, embedding map)
# ---------------------------------------------------------------------------------------------


def results_stamp(dataset: str) -> tuple:
    """Changes whenever ``evaluate`` rewrites a dataset's results, so cached tables refresh."""
    from spermlib.store.results import dataset_results_dir

    d = dataset_results_dir(dataset)
    return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in d.iterdir() if p.is_file())) if d.is_dir() else ()


@st.cache_data(show_spinner=False, max_entries=16)
def _cached_metrics(dataset: str, results: str, stamp: tuple) -> dict | None:
    from spermlib.store.results import load_metrics

    return load_metrics(dataset, results)


@st.cache_data(show_spinner=False, max_entries=16)
def _cached_oofs(dataset: str, results: str, stamp: tuple) -> dict:
    from spermlib.store.results import load_oofs

    return load_oofs(dataset, results)


def _or_error(load, dataset: str, missing):
    """``load(dataset, results folder, stamp)``; an unreadable results file becomes one st.error and ``missing``."""
    from spermlib.store.results import ResultsError

    try:
        return load(dataset, str(default_results_dir()), results_stamp(dataset))
    except ResultsError as err:
        st.error(str(err))
        return missing


def cached_metrics(dataset: str) -> dict | None:
    """metrics.json of ``dataset`` (``None`` if not evaluated; an st.error if unreadable)."""
    return _or_error(_cached_metrics, dataset, None)


@st.cache_data(show_spinner=False, max_entries=16)
def _cached_faithfulness(dataset: str, results: str, stamp: tuple) -> dict | None:
    from spermlib.store.results import load_faithfulness

    return load_faithfulness(dataset, results)


def cached_faithfulness(dataset: str) -> dict | None:
    """faithfulness.json of ``dataset`` (``None`` if not scored; an st.error if unreadable)."""
    return _or_error(_cached_faithfulness, dataset, None)


def cached_oofs(dataset: str) -> dict:
    """Out-of-fold prediction tables by arch (empty if not evaluated; an st.error if unreadable)."""
    return _or_error(_cached_oofs, dataset, {})


@st.cache_data(show_spinner=False, max_entries=4000)
def image_thumbnail(path: str, size: int = 160):
    """A small RGB array of an image file, or ``None`` when it is missing or not decodable."""
    import numpy as np

    from spermlib.data.imageio import ImageError, load_rgb

    try:
        img = load_rgb(path)
    except (ImageError, OSError):
        return None
    img.thumbnail((size, size))
    return np.asarray(img)


def data_root_or_error(spec: DatasetSpec) -> Path | None:
    """The dataset's image folder, or ``None`` after an st.error (e.g. a wrong $SPERM_DATA_DIR)."""
    from spermlib.data.datasets import DataError, resolve_data_root

    try:
        return resolve_data_root(spec)
    except DataError as err:
        st.error(str(err))
        return None


MISTAKES_PRESET = "mistakes_preset"  # filters handed to the misclassification explorer by other pages

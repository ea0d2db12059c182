"""Streamlit glue shared by the pages: cached resources and small widgets. No science here.

Caching rules: models via ``st.cache_resource`` (one Predictor per dataset × arch per process; it is
thread-safe because every forward pass and CAM holds ``Predictor.lock``, and CAM objects are built
per call inside ``with``); tables via ``st.cache_data``. Cache keys include the checkpoints/results
folders so tests (and users) can point the app elsewhere with $SPERMLIB_CHECKPOINTS/$SPERMLIB_RESULTS.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from spermlib.checkpoints import CheckpointError
from spermlib.datasets import DATASETS, DatasetSpec, default_checkpoints_dir, default_results_dir, get_dataset
from spermlib.models import ARCHS
from spermlib.predict import Predictor, available_folds

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

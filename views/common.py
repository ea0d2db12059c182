"""Streamlit glue shared by the pages: cached resources, the page guard and small widgets. No science here.

Caching rules: models via ``st.cache_resource`` (one Predictor per dataset × arch per process; it is
thread-safe because every forward pass and CAM holds ``Predictor.lock``, and CAM objects are built
per call inside ``with``); tables and thumbnails via ``st.cache_data``. Cache keys include the
checkpoints/results folders (and file modification times) so tests (and users) can point the app
elsewhere with $SPERMLIB_CHECKPOINTS/$SPERMLIB_RESULTS.

What is loaded, and how, is :mod:`spermlib.dashboard.resources`' (it imports model code, which imports
torch, only inside the functions that load a model, so pages that show no model — Overview, Dataset
explorer, Model comparison — start without torch: importing it costs seconds); here it is only cached.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from spermlib.dashboard import provenance, resources
from spermlib.dashboard.images import thumbnail_bytes
from spermlib.dashboard.resources import CheckpointError, DataError, DatasetSpec, ImageError, ResultsError
from spermlib.dashboard.tables import arch_title
from spermlib.dashboard.text import md_code, md_escape
from spermlib.errors import SpermlibError

log = logging.getLogger("spermlib.app")

# Set to "1" (tests/app/conftest.py and the browser tests do) to let page exceptions propagate to the
# test harness instead of being turned into an st.error by run_guarded.
RAISE_ERRORS_ENV = "SPERMLIB_APP_RAISE_ERRORS"
GENERIC_ERROR = ("Something went wrong on this page. The details are in the server log; please report "
                 "what you did to the maintainers.")

WARM_UP_ENV = "SPERMLIB_WARM_UP"  # "0": no background model warm-up (see warm_up_models)

THUMB_SIDE = 160  # px: gallery thumbnails (shown TILE_WIDTH wide, sharp on high-density screens)
TILE_WIDTH = 104  # px: a gallery tile; three (with their gaps) fit side by side on a 390 px phone


# ---------------------------------------------------------------------------------------------
# The page guard (app.py runs every page inside it)
# ---------------------------------------------------------------------------------------------


def errors_propagate() -> bool:
    return os.environ.get(RAISE_ERRORS_ENV) == "1"


def run_guarded(run: Callable[[], None]) -> None:
    """Run a page: a :class:`SpermlibError` (bad input, missing file — something the user can fix)
    becomes one st.error with its message; any other exception is a bug: one generic st.error for the
    user, the traceback in the server log. With ``$SPERMLIB_APP_RAISE_ERRORS=1`` exceptions propagate.

    ``st.stop``/``st.rerun``/``st.switch_page`` raise ``BaseException`` subclasses and pass through; the
    footer is drawn in every case (a page that stops early still says whose data and models it shows).
    """
    try:
        _run_reporting_errors(run)
    finally:
        footer()


def _run_reporting_errors(run: Callable[[], None]) -> None:
    try:
        run()
    except SpermlibError as err:
        if errors_propagate():
            raise
        log.warning("page stopped by a user-facing error: %s", err)
        st.error(md_escape(err))  # its message may quote a file name or other user input
    except Exception:
        if errors_propagate():
            raise
        log.exception("page failed")
        st.error(GENERIC_ERROR)


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


@st.cache_resource(show_spinner="Loading fold models …")
def _predictor(dataset: str, arch: str, checkpoints_dir: str):
    return resources.load_predictor(dataset, arch, checkpoints_dir)


@st.cache_resource(show_spinner="Loading the fold model …", max_entries=16)
def _fold_predictor(dataset: str, arch: str, fold: int, checkpoints_dir: str):
    return resources.load_predictor(dataset, arch, checkpoints_dir, folds=[fold])


def get_fold_predictor(dataset: str, arch: str, fold: int):
    """The fold-``fold`` model of one arch alone (e.g. for an image the other folds trained on): a view of the
    cached ensemble, which the background warm-up has usually loaded already; that fold alone if the
    ensemble cannot be loaded (e.g. another fold's checkpoint is missing)."""
    checkpoints = str(resources.default_checkpoints_dir())
    try:
        return _predictor(dataset, arch, checkpoints).subset([fold])
    except CheckpointError:
        return _fold_predictor(dataset, arch, fold, checkpoints)


def get_predictor(dataset: str, arch: str):
    """The cached fold ensemble (a ``Predictor``), or ``None`` (after an explanatory notice) when it is not
    installed."""
    try:
        return _predictor(dataset, arch, str(resources.default_checkpoints_dir()))
    except CheckpointError as err:
        st.info(f"{arch_title(arch)} for {md_escape(resources.get_dataset(dataset).title)}: {md_escape(err)}")
        return None


def _warm_up(dataset: str, arch: str, checkpoints_dir: str) -> None:
    try:
        resources.warm_up(_predictor(dataset, arch, checkpoints_dir))  # the cached function the pages call
    except Exception:  # noqa: BLE001 — a page that needs the model reports the error itself
        log.info("model warm-up skipped", exc_info=True)


@st.cache_resource(show_spinner=False)
def _warm_up_thread() -> threading.Thread | None:
    """One daemon thread per server process (``st.cache_resource``: created once) that imports torch and
    loads the default model (first dataset, the paper's arch) while the user reads the Overview, so that
    Classify's first prediction does not wait for seconds of imports. ``$SPERMLIB_WARM_UP=0`` turns it off
    (the AppTest suites do: they check which pages import torch, and time the pages' own work)."""
    if os.environ.get(WARM_UP_ENV) == "0":
        return None
    thread = threading.Thread(target=_warm_up, args=(*resources.default_model(),
                                                     str(resources.default_checkpoints_dir())),
                              name="model-warm-up", daemon=True)
    thread.start()
    return thread


def warm_up_models() -> None:
    """Start the background model warm-up (once per process; later calls do nothing)."""
    _warm_up_thread()


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


def dataset_picker(key: str = "dataset", label: str = "Dataset / task") -> DatasetSpec:
    datasets = resources.listed_datasets()  # the built-in ones, then every own dataset (datasets.json) with checkpoints
    choice = st.selectbox(label, list(datasets), format_func=lambda n: datasets[n].title, key=key)
    return datasets[choice]


def data_root_or_error(spec: DatasetSpec) -> Path | None:
    """The dataset's image folder, or ``None`` after an st.error (e.g. a wrong $SPERM_DATA_DIR)."""
    try:
        return resources.resolve_data_root(spec)
    except DataError as err:
        st.error(md_escape(err))
        return None


@st.cache_data(show_spinner=False)
def bundled_samples(dataset: str) -> list[str]:
    """The bundled sample images of a dataset, as paths relative to ``resources.sample_root(dataset)``."""
    return resources.bundled_samples(dataset)


def page_picker(n_pages: int, key: str, label: str = "Page", where=st) -> int:
    """A page-number input (in ``where``: st or a column) that stays valid when a filter shrinks the list."""
    if st.session_state.get(key, 1) > n_pages:
        st.session_state[key] = n_pages
    return int(where.number_input(label, min_value=1, max_value=n_pages, step=1, key=key))


# ---------------------------------------------------------------------------------------------
# Evaluation results (overview, comparison, misclassifications)
# ---------------------------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=64)
def _cached_results(kind: str, dataset: str, results: str, stamp: tuple) -> dict | None:
    return resources.read_results(kind, dataset, results)


def _or_error(kind: str, dataset: str, missing):
    """One results file of ``dataset``, cached until ``evaluate`` rewrites it; an unreadable file becomes one
    st.error and ``missing``."""
    try:
        return _cached_results(kind, dataset, str(resources.default_results_dir()), resources.results_stamp(dataset))
    except ResultsError as err:
        st.error(md_escape(err))
        return missing


def cached_metrics(dataset: str) -> dict | None:
    """metrics.json of ``dataset`` (``None`` if not evaluated; an st.error if unreadable)."""
    return _or_error("metrics", dataset, None)


def cached_faithfulness(dataset: str) -> dict | None:
    """faithfulness.json of ``dataset`` (``None`` if not scored; an st.error if unreadable)."""
    return _or_error("faithfulness", dataset, None)


def cached_robustness(dataset: str) -> dict | None:
    """robustness.json of ``dataset`` (``None`` if not run; an st.error if unreadable)."""
    return _or_error("robustness", dataset, None)


def cached_oofs(dataset: str) -> dict:
    """Out-of-fold prediction tables by arch (empty if not evaluated; an st.error if unreadable)."""
    return _or_error("oofs", dataset, {})


# ---------------------------------------------------------------------------------------------
# Images: the one thumbnail helper and the one gallery
# ---------------------------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=8000)
def _thumbnail(path: str, side: int, square: bool, mtime_ns: int) -> bytes | None:
    try:
        return thumbnail_bytes(path, side, square=square)
    except (ImageError, OSError):  # a missing or undecodable file: its tile says so
        return None


def thumbnail(path: Path, side: int = THUMB_SIDE, square: bool = True) -> bytes | None:
    """JPEG of an image file fitted to ``side`` px (a padded square for grids), or ``None`` when it is
    missing or not decodable. Cached per file version, and made only for the images shown."""
    try:
        mtime_ns = Path(path).stat().st_mtime_ns
    except OSError:
        return None
    return _thumbnail(str(path), side, square, mtime_ns)


@dataclass(frozen=True)
class Tile:
    """One gallery image: ``path`` relative to the data root (the key in every table), its caption."""

    path: str
    caption: str


def gallery(root: Path, tiles: Sequence[Tile], tile_width: int = TILE_WIDTH,
            on_view: Callable[[str], None] | None = None) -> None:
    """Thumbnails ``tile_width`` px wide in rows that wrap (about 7 to a row on a desktop, 3 on a phone);
    an unreadable file is one st.error in its tile. With ``on_view``, each image gets a "View" button
    (key ``view::<path>``) calling ``on_view(path)``."""
    with st.container(horizontal=True, gap="small"):
        for tile in tiles:
            with st.container(width=tile_width):
                thumb = thumbnail(Path(root) / tile.path)
                if thumb is None:
                    st.error(f"{md_code(tile.path)}: not a readable image")
                else:
                    st.image(thumb, caption=tile.caption, width="stretch")
                if on_view is not None:
                    st.button("View", key=f"view::{tile.path}", on_click=on_view, args=(tile.path,), help=tile.path,
                              width="stretch")


# ---------------------------------------------------------------------------------------------
# Footer (run_guarded draws it under every page)
# ---------------------------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=4)
def _model_versions(checkpoints: str, stamp: tuple) -> list[provenance.ModelVersions]:
    return provenance.model_versions(Path(checkpoints))


def footer() -> None:
    """The datasets' citations and the versions of the installed models (from their checkpoint cards)."""
    checkpoints = resources.default_checkpoints_dir()
    versions = _model_versions(str(checkpoints), provenance.cards_stamp(checkpoints))
    st.divider()
    st.caption(provenance.citations())
    st.caption(f"{provenance.summary(versions)}. A research tool, not a diagnostic device.")
    if versions:
        with st.expander("Model versions (from the checkpoint cards)"):
            st.markdown("\n".join(f"- {md_escape(v.line())}" for v in versions))  # cards are files: untrusted

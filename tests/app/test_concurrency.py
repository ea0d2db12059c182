"""Eight users classify different images at the same time and each gets their own, correct result.

In the served app every browser session runs the page script in its own thread, and all sessions
share one cached ``Predictor`` per dataset × arch (``st.cache_resource``; for a bundled sample, the
cached fold model that never saw it). The risk is cross-talk:
Grad-CAM hooks of one session recording another session's forward pass, or a cache mixing results.

* ``test_eight_page_sessions_at_once`` runs the Classify page in 8 AppTest sessions concurrently
  (each picking a different bundled sample) and compares every session's verdict, table row and
  Grad-CAM++/CBAM image bytes with the same sessions run one after another, and with the library.
  AppTest itself is not thread-safe (each run swaps a global mock Runtime in and out and patches
  ``config.get_option``), so the harness installs *one* mock runtime and the config patch for the
  whole test; the page code under test runs unmodified, 8 script threads at once.
* ``test_shared_predictor_from_eight_threads`` does the same directly on one shared Predictor
  (predict + explain, the calls the page makes) and requires bit-identical results to a serial run.
"""

from __future__ import annotations

import contextlib
import re
import threading
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest.mock import MagicMock

import numpy as np
import pytest
import streamlit as st
from streamlit.runtime import Runtime
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1 import app_test as app_test_module

from spermlib.dashboard import triage
from spermlib.dashboard.samples import sample_folds
from spermlib.data.datasets import SAMPLE_DATA_ROOT, get_dataset
from spermlib.inference.explain import Explainer
from spermlib.inference.predict import Predictor

PAGE = str(Path(__file__).resolve().parents[2] / "views" / "classify.py")
SMIDS = get_dataset("smids")
N_SESSIONS = 8
SAMPLES = [
    "Normal_Sperm/Boya_11435.bmp", "Normal_Sperm/Boya_11575.bmp", "Normal_Sperm/Boya_11122.bmp",
    "Abnormal_Sperm/Acrosome_Abnormality (1).png", "Abnormal_Sperm/Acrosome_Abnormality (13).png",
    "Abnormal_Sperm/Acrosome_Abnormality (27).png", "Non-Sperm/Acrosome_Defect_584.bmp",
    "Non-Sperm/Acrosome_Defect_1106.bmp",
]
VERDICT = re.compile(r"(?P<fence>`+) (?P<name>.+?) (?P=fence) → \*\*(?P<display>[^*]+) \((?P<conf>[\d.]+)%\)\*\*")


@pytest.fixture
def threadsafe_apptest(monkeypatch):
    """One mock Runtime and one config patch for all AppTest sessions of the test (see module doc)."""
    if not (hasattr(app_test_module, "Runtime") and hasattr(app_test_module, "patch_config_options")):
        pytest.skip("this Streamlit's AppTest internals changed; the concurrent harness needs updating")
    from streamlit.components.v2.component_manager import BidiComponentManager
    from streamlit.runtime.caching.storage.dummy_cache_storage import MemoryCacheStorageManager
    from streamlit.runtime.dataframe_source_manager import DataframeSourceManager
    from streamlit.runtime.media_file_manager import MediaFileManager
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
    from streamlit.testing.v1.util import patch_config_options

    storage = MemoryMediaFileStorage("/mock/media")
    runtime = MagicMock(spec=Runtime)
    runtime.media_file_mgr = MediaFileManager(storage)
    # Every AppTest run uses the same session id ("test session id"): a run that starts clears that id's
    # media references and one that ends deletes the unreferenced files — another session's images,
    # before it has read them. In the served app each browser session has its own id; keep every file.
    runtime.media_file_mgr.remove_orphaned_files = lambda: None
    runtime.dataframe_source_mgr = DataframeSourceManager()
    runtime.cache_storage_manager = MemoryCacheStorageManager()
    bidi = BidiComponentManager()
    bidi.discover_and_register_components(start_file_watching=False)
    runtime.bidi_component_registry = bidi
    # AppTest._run assigns ``Runtime._instance`` before and ``None`` after each run: give it a
    # stand-in class to write to, and keep the real one pointing at the shared runtime.
    monkeypatch.setattr(app_test_module, "Runtime", types.SimpleNamespace(_instance=None))
    monkeypatch.setattr(app_test_module, "patch_config_options", lambda overrides: contextlib.nullcontext())
    monkeypatch.setattr(Runtime, "_instance", runtime)
    with patch_config_options({"global.appTest": True}):
        yield storage


def _session(sample: str, storage, start: threading.Barrier | None = None) -> dict:
    """One user: open Classify, pick ``sample``, read what the page shows."""
    at = AppTest.from_file(PAGE, default_timeout=300)
    at.session_state["classify_dataset"] = "smids"
    at.session_state["classify_arch"] = "effnet_cbam"
    at.run()
    if start is not None:
        start.wait(timeout=120)  # all sessions classify at the same moment
    at.multiselect(key="classify_samples").set_value([sample]).run()
    assert not at.exception, at.exception
    (verdict,) = [m.groupdict() for md in at.markdown if (m := VERDICT.search(md.value))]
    (table,) = [d.value for d in at.dataframe if "prediction" in d.value.columns]
    (images,) = at.image
    pixels = [storage.get_file(url.rsplit("/", 1)[1]).content for url in images.value]
    return {"verdict": verdict, "row": table.iloc[0].to_dict(), "captions": images.captions, "images": pixels}


def test_eight_page_sessions_at_once(app_env, threadsafe_apptest):
    assert len(set(SAMPLES)) == N_SESSIONS
    st.cache_data.clear()  # cold caches: the 8 sessions really compute at the same time
    barrier = threading.Barrier(N_SESSIONS)
    with ThreadPoolExecutor(N_SESSIONS) as pool:
        concurrent = list(pool.map(lambda s: _session(s, threadsafe_apptest, barrier), SAMPLES))

    st.cache_data.clear()
    serial = [_session(s, threadsafe_apptest) for s in SAMPLES]

    # Each bundled sample is classified by the fold model that never saw it (shared by the sessions whose
    # samples lie in the same fold).
    folds = sample_folds(SMIDS)
    assert len({folds[s] for s in SAMPLES}) > 1 and len({folds[s] for s in SAMPLES}) < N_SESSIONS
    expected = [Predictor.from_checkpoints(SMIDS, "effnet_cbam", folds=[folds[s]], tta=True).predict_sources(
        [SAMPLE_DATA_ROOT / "SMIDS" / s], [s])[0] for s in SAMPLES]
    for sample, got, ref, exp in zip(SAMPLES, concurrent, serial, expected):
        assert got["verdict"]["name"] == sample and got["row"]["file"] == sample  # its own image ...
        assert got["verdict"] == ref["verdict"] and got["row"] == ref["row"]  # ... the same result as alone
        assert got["captions"] == ref["captions"] and len(got["images"]) == 3  # input, Grad-CAM++, CBAM
        assert got["images"] == ref["images"], f"{sample}: explanation images differ under concurrency"
        assert got["verdict"]["display"] == exp.display  # ... and what the library computes
        assert got["verdict"]["conf"] == f"{100 * exp.confidence:.1f}"
    # different images give different outputs, so a mix-up between sessions could not go unnoticed
    assert len({tuple(r["row"][f"P({SMIDS.display(c)})"] for c in SMIDS.class_dirs) for r in concurrent}) > 1
    assert len({r["images"][1] for r in concurrent}) == N_SESSIONS


def test_shared_predictor_from_eight_threads(app_env):
    predictor = Predictor.from_checkpoints(SMIDS, "effnet_cbam")
    inputs = triage.decode_inputs([(s, (SAMPLE_DATA_ROOT / "SMIDS" / s).read_bytes()) for s in SAMPLES])

    def work(item: triage.ImageInput, start: threading.Barrier | None = None):
        if start is not None:
            start.wait(timeout=60)
        (result,) = triage.classify_inputs({"effnet_cbam": predictor}, [item], SMIDS)["effnet_cbam"]
        exp = Explainer(predictor).explain(item.image, class_idx=predictor.classes.index(result.prediction.label))
        return result.prediction, exp

    serial = [work(item) for item in inputs]
    barrier = threading.Barrier(N_SESSIONS)
    with ThreadPoolExecutor(N_SESSIONS) as pool:
        concurrent = list(pool.map(lambda item: work(item, barrier), inputs))
    for (p_ref, e_ref), (p, e) in zip(serial, concurrent):
        assert p.path == p_ref.path and p.probabilities == p_ref.probabilities
        assert p.fold_labels == p_ref.fold_labels
        assert np.array_equal(e.gradcam, e_ref.gradcam) and np.array_equal(e.cbam, e_ref.cbam)
        assert np.array_equal(e.rgb, e_ref.rgb)
    assert len({e.gradcam.tobytes() for _, e in serial}) == N_SESSIONS

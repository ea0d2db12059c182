"""Fixtures for dashboard tests: real (tiny) checkpoints and results for the bundled sample.

``app_env`` trains every arch on the bundled sample for one epoch at 64 px (all 5 folds, both
datasets; offline Lite0 backbones), evaluates them out of fold, and points the app at the outputs
through ``$SPERMLIB_CHECKPOINTS`` and ``$SPERMLIB_RESULTS``. The models are weak — the point is that
every page runs on genuine checkpoints, OOF CSVs and metrics.json of the real formats.

Every test here runs with ``$SPERMLIB_APP_RAISE_ERRORS=1``: app.py's page guard then lets exceptions
through to ``AppTest.exception`` instead of turning them into a generic st.error (test_guard.py
switches it off to test the guard itself), and with ``client.showErrorDetails = "full"`` so that the
exception's message and traceback are not redacted as .streamlit/config.toml has them for users.
"""

from __future__ import annotations

import pytest
from streamlit import config as streamlit_config

from spermlib.samples.db import DB_URL_ENV
from spermlib.store.embeddings import EMBEDDINGS_ENV
from spermlib.store.paths import CHECKPOINTS_ENV, RESULTS_ENV
from tools.make_app_artifacts import build
from views.common import RAISE_ERRORS_ENV, WARM_UP_ENV


@pytest.fixture(autouse=True)
def page_errors_propagate(monkeypatch, tmp_path):
    monkeypatch.setenv(RAISE_ERRORS_ENV, "1")
    monkeypatch.setenv(WARM_UP_ENV, "0")  # no background model loading: tests check which pages import torch
    monkeypatch.setenv(DB_URL_ENV, f"sqlite:///{tmp_path / 'samples.db'}")  # never the user's own samples database
    shown = streamlit_config.get_option("client.showErrorDetails")
    streamlit_config.set_option("client.showErrorDetails", "full")
    yield
    streamlit_config.set_option("client.showErrorDetails", shown)


@pytest.fixture(scope="session")
def app_artifacts(tmp_path_factory):
    return build(tmp_path_factory.mktemp("app_artifacts"))


@pytest.fixture
def app_env(app_artifacts, monkeypatch):
    """Environment in which the app finds the tiny checkpoints and results."""
    monkeypatch.setenv(CHECKPOINTS_ENV, str(app_artifacts["checkpoints"]))
    monkeypatch.setenv(RESULTS_ENV, str(app_artifacts["results"]))
    monkeypatch.setenv(EMBEDDINGS_ENV, str(app_artifacts["base"] / "embeddings"))  # not the project's runs/
    return app_artifacts


@pytest.fixture
def empty_env(tmp_path, monkeypatch):
    """Environment with no checkpoints and no results (a fresh clone before training)."""
    monkeypatch.setenv(CHECKPOINTS_ENV, str(tmp_path / "no_checkpoints"))
    monkeypatch.setenv(RESULTS_ENV, str(tmp_path / "no_results"))
    return tmp_path

"""app.py's page guard: an error the user can fix is one st.error with its message, a bug one generic
st.error (details only in the server log); tests see exceptions when $SPERMLIB_APP_RAISE_ERRORS=1."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from spermlib.dashboard import status
from spermlib.dashboard.text import md_escape
from spermlib.errors import SpermlibError
from views.common import GENERIC_ERROR, RAISE_ERRORS_ENV

APP = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture
def overview_raises(monkeypatch):
    """Make the Overview page (app.py's default page) raise ``error`` from the library call it makes first."""
    def install(error: Exception) -> None:
        def broken(*args, **kwargs):
            raise error

        monkeypatch.setattr(status, "installation_status", broken)
        st.cache_data.clear()  # the page caches the status table: make this run call the library

    return install


@pytest.fixture
def guard_on(monkeypatch):
    monkeypatch.delenv(RAISE_ERRORS_ENV, raising=False)


def test_a_user_facing_error_is_one_error_with_its_message(guard_on, empty_env, overview_raises):
    overview_raises(SpermlibError("/data/x.bmp is not an image: fix the data folder"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert [e.value for e in at.error] == [md_escape("/data/x.bmp is not an image: fix the data folder")]
    assert at.title[0].value == "Interpretable sperm-morphology classification"  # what ran before stays


def test_an_error_quoting_user_input_shows_it_as_text(guard_on, empty_env, overview_raises):
    # A message that echoes a crafted file name must not draw a link, an image or a badge.
    name = "x`](https://evil) ![t](https://evil/t.png) :red-background[OUT OF DOMAIN]"
    overview_raises(SpermlibError(f"`{name}` is not an image"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert [e.value for e in at.error] == [md_escape(f"`{name}` is not an image")]
    assert "](" not in at.error[0].value and ":" not in at.error[0].value.replace("\\:", "")


def test_a_bug_is_one_generic_error_and_a_logged_traceback(guard_on, empty_env, overview_raises, caplog):
    overview_raises(KeyError("internal detail"))
    with caplog.at_level(logging.ERROR, logger="spermlib.app"):
        at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert [e.value for e in at.error] == [GENERIC_ERROR]
    assert "internal detail" not in GENERIC_ERROR and "server log" in GENERIC_ERROR
    (record,) = [r for r in caplog.records if r.name == "spermlib.app"]
    assert record.exc_info and "internal detail" in str(record.exc_info[1])


def test_st_stop_and_page_switches_pass_through_the_guard(guard_on, empty_env):
    # The comparison page calls st.stop() without results: an info, no error.
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/compare.py").run()
    assert not at.exception and not at.error
    assert at.title[0].value == "Model comparison" and "spermlib evaluate" in at.info[0].value


def test_with_the_test_switch_exceptions_reach_the_harness(empty_env, overview_raises):
    overview_raises(KeyError("internal detail"))  # $SPERMLIB_APP_RAISE_ERRORS=1 (tests/app/conftest.py)
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert at.exception and "internal detail" in at.exception[0].message
    assert not at.error


def test_the_browser_is_not_shown_error_details():
    tomllib = pytest.importorskip("tomllib")  # Python ≥ 3.11
    config = tomllib.loads((Path(APP).parent / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] == "none"


def test_the_app_listens_on_loopback_only_by_default():
    tomllib = pytest.importorskip("tomllib")  # Python ≥ 3.11
    config = tomllib.loads((Path(APP).parent / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"  # not every interface: docs/security.md says how to serve
    script = (Path(APP).parent / "scripts" / "run_app.sh").read_text()
    assert "--server.address" not in script and "0.0.0.0" not in script  # the launcher does not override it
    for doc in ("README.md", "docs/getting-started.md"):
        text = (Path(APP).parent / doc).read_text()
        assert "http://127.0.0.1:8501" in text and "localhost:8501" not in text, doc

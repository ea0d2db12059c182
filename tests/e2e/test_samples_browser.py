"""End to end in Chromium: classify three bundled samples, save them as a sample, review one on the Samples
page, download the PDF report and read its text (pypdf): the share of normal forms, its CI and the reviewed
label. Same harness and skips as test_browser.py (Debian's chromium, Playwright, the tiny checkpoints)."""

from __future__ import annotations

import io
import re

import pytest
from pypdf import PdfReader

from spermlib.data.datasets import DATA_DIR_ENV, get_dataset
from spermlib.evaluation import browser as driver
from spermlib.samples.db import DB_URL_ENV
from spermlib.samples.report import build_report, share_text
from spermlib.samples.service import SampleStore
from spermlib.store.paths import CHECKPOINTS_ENV, RESULTS_ENV
from tests.e2e.test_browser import PAGE_LOAD_MS, SHOTS, _assert_no_exception, _open, artifacts, browser  # noqa: F401
from tools import screenshots as shots
from views.common import RAISE_ERRORS_ENV

pytestmark = pytest.mark.e2e

NAME = "e2e run"
REVIEWER = "E2E Reviewer"


@pytest.fixture
def server_with_db(artifacts, tmp_path):  # noqa: F811 - the fixture imported above
    url = f"sqlite:///{tmp_path / 'samples.db'}"
    env = {CHECKPOINTS_ENV: str(artifacts / "checkpoints"), RESULTS_ENV: str(artifacts / "results"),
           DATA_DIR_ENV: None, DB_URL_ENV: url, RAISE_ERRORS_ENV: "1", "STREAMLIT_CLIENT_SHOW_ERROR_DETAILS": "full"}
    with driver.streamlit_server(env, SHOTS / "server-samples.log") as base:
        yield base, url


def test_classify_save_review_and_download_the_report(server_with_db, browser, tmp_path):  # noqa: F811
    base, url = server_with_db
    context = browser.new_context(viewport={"width": 1400, "height": 2400}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(PAGE_LOAD_MS)
    try:
        _open(page, base, driver.classify_url(shots.three_samples(), arch="effnet_cbam"))
        page.get_by_label("Sample name").fill(NAME)
        page.get_by_role("button", name="Save as sample").click()
        page.get_by_text(f"Saved sample '{NAME}': 3 image(s).").wait_for()
        page.get_by_role("link", name="Review it on the Samples page").click()
        page.get_by_role("heading", name="Samples").first.wait_for()
        page.wait_for_selector(driver.IDLE)

        page.get_by_label("Your name").fill(REVIEWER)
        page.get_by_label("Your name").press("Enter")
        page.wait_for_selector(driver.IDLE)
        accept = page.get_by_role("button", name=re.compile(r"^Accept ")).first
        accept.wait_for()
        accept.click()  # the first image of the queue: the model's label accepted with one click
        page.get_by_text("1 of 3 images reviewed").wait_for()
        page.wait_for_selector(driver.IDLE)

        page.get_by_role("button", name="Prepare the report (PDF and HTML)").click()
        download_button = page.get_by_role("button", name="Download report (PDF)")
        try:
            download_button.wait_for()
        finally:
            page.screenshot(path=str(SHOTS / "samples_report.png"), full_page=True)
        with page.expect_download() as info:
            download_button.click()
        pdf = tmp_path / "report.pdf"
        info.value.save_as(pdf)
        page.screenshot(path=str(SHOTS / "samples_review.png"))
        _assert_no_exception(page, "samples")
    finally:
        context.close()

    store = SampleStore.open(url)
    detail = store.sample(NAME)
    (reviewed,) = [i for i in detail.images if i.reviews]
    display = get_dataset(detail.summary.dataset).display(reviewed.latest_review.label)
    expected_share = share_text(build_report(store, NAME, with_cams=False).share_reviewed)
    text = " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.read_bytes())).pages).split())
    assert f"After review: {expected_share}" in text  # the share and its 95 % CI
    assert re.search(r"95 % CI \d+\.\d % to \d+\.\d %, Wilson", text)
    assert f"{reviewed.file_name}: model" in text and f"reviewed {display} by {REVIEWER}" in text

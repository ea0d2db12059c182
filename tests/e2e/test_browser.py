"""End to end in a real browser: `streamlit run app.py` + Debian's Chromium driven by Playwright.

Every page must load without a Streamlit exception box; on Classify, an uploaded image must get its
prediction (the same as the library computes) and its Grad-CAM++ image, and a bad file next to it
one error. On what the repository ships (its checkpoints and results, the bundled sample), every Plotly
chart must be legible at desktop and phone width (``tools.screenshots.chart_problems``: no chart
narrower than 250 px, no clipped title, every class label on both axes of a heat map). Screenshots go
to ``test-artifacts/e2e/`` (gitignored).

Needs ``/usr/bin/chromium`` (Debian/Ubuntu package ``chromium``) and the ``playwright`` Python package;
skipped cleanly without them. Checkpoints: the tiny ones the app tests build in this pytest session
are reused when present, else built here (~1 min); ``SPERMLIB_E2E_ARTIFACTS=DIR`` (a folder made by
``python tools/make_app_artifacts.py DIR``) skips the build.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import pytest

from spermlib.data.datasets import DATA_DIR_ENV, SAMPLE_DATA_ROOT, get_dataset
from spermlib.evaluation import browser as driver
from spermlib.inference.predict import Predictor
from spermlib.samples.db import DB_URL_ENV
from spermlib.store.paths import CHECKPOINTS_ENV, RESULTS_ENV, default_checkpoints_dir, default_results_dir
from spermlib.store.results import load_metrics
from tools import screenshots as shots
from views.common import RAISE_ERRORS_ENV

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "e2e"
PAGES = [  # (url path, title shown by the page)
    ("", "Interpretable sperm-morphology classification"),
    ("explorer", "Dataset explorer"),
    ("classify", "Classify sperm images"),
    ("compare", "Model comparison"),
    ("mistakes", "Misclassification explorer"),
    ("embedding", "Embedding map"),
    ("samples", "Samples"),
]
UPLOAD = SAMPLE_DATA_ROOT / "SMIDS" / "Normal_Sperm" / "Boya_11435.bmp"
PAGE_LOAD_MS = 180_000

sync_api = pytest.importorskip("playwright.sync_api")
if not driver.CHROMIUM.is_file():
    pytest.skip(f"{driver.CHROMIUM} not found (apt-get install chromium)", allow_module_level=True)


def _complete_artifacts(base: Path) -> bool:
    """True when ``base`` holds a finished make_app_artifacts build (metrics.json is written last)."""
    return all((base / "results" / d / "metrics.json").is_file() for d in ("smids", "hushem"))


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    given = os.environ.get("SPERMLIB_E2E_ARTIFACTS")
    if given:
        if not _complete_artifacts(Path(given)):
            pytest.fail(f"SPERMLIB_E2E_ARTIFACTS={given} is not a finished make_app_artifacts folder")
        return Path(given)
    for earlier in sorted(tmp_path_factory.getbasetemp().glob("app_artifacts*")):  # built by tests/app
        if _complete_artifacts(earlier):
            return earlier
    from tools.make_app_artifacts import build

    return build(tmp_path_factory.mktemp("e2e_artifacts"))["base"]


@contextlib.contextmanager
def streamlit_server(artifacts: Path | None):
    """A headless `streamlit run app.py` on a free port: on ``artifacts`` (tiny checkpoints and results), or
    with ``None`` on what the repository ships (its checkpoints and results, the bundled sample)."""
    # RAISE_ERRORS_ENV: a page exception stays an exception box (which the tests look for) instead of the
    # page guard's generic st.error; with its message and traceback (users get them redacted).
    env = {CHECKPOINTS_ENV: str(artifacts / "checkpoints") if artifacts else None,
           RESULTS_ENV: str(artifacts / "results") if artifacts else None,
           DATA_DIR_ENV: None,  # the bundled sample, whatever the developer's shell says
           DB_URL_ENV: f"sqlite:///{SHOTS / 'samples.db'}",  # never the developer's own samples database
           RAISE_ERRORS_ENV: "1", "STREAMLIT_CLIENT_SHOW_ERROR_DETAILS": "full"}
    try:
        with driver.streamlit_server(env, SHOTS / f"server-{'tiny' if artifacts else 'shipped'}.log") as base:
            yield {"base": base, "artifacts": artifacts}
    except driver.ServerError as err:
        pytest.fail(str(err))


@pytest.fixture(scope="module")
def server(artifacts: Path):
    with streamlit_server(artifacts) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        b = driver.launch(pw)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 2400})
    p = context.new_page()
    p.set_default_timeout(PAGE_LOAD_MS)
    try:
        yield p
    finally:
        context.close()


def _open(page, base: str, path: str) -> None:
    """Load a page and wait until its script has finished running."""
    page.goto(f"{base}/{path}", wait_until="domcontentloaded", timeout=60_000)
    page.wait_for_selector(driver.IDLE, timeout=PAGE_LOAD_MS)


def _assert_no_exception(page, what: str) -> None:
    boxes = page.locator("[data-testid='stException']")
    assert boxes.count() == 0, f"{what}: {boxes.first.inner_text()[:2000]}"


@pytest.mark.parametrize("path,title", PAGES, ids=[p or "overview" for p, _ in PAGES])
def test_page_loads_without_exception(server, page, path, title):
    _open(page, server["base"], path)
    page.get_by_role("heading", name=title).first.wait_for(timeout=30_000)
    page.wait_for_timeout(1500)  # let charts and images paint for the screenshot
    page.screenshot(path=str(SHOTS / f"{path or 'overview'}.png"))
    _assert_no_exception(page, path or "overview")


def test_classify_upload_shows_prediction_and_cam(server, page, tmp_path):
    spec = get_dataset("smids")
    predictor = Predictor.from_checkpoints(spec, "effnet_cbam", checkpoints_dir=server["artifacts"] / "checkpoints",
                                           tta=True)  # the page's default
    (expected,) = predictor.predict_sources([UPLOAD], [UPLOAD.name])
    bad = tmp_path / "lab_notes.png"
    bad.write_text("not an image\n")

    _open(page, server["base"], "classify")
    page.set_input_files("[data-testid='stFileUploaderDropzoneInput']", [str(UPLOAD), str(bad)])
    verdict = f"{expected.display} ({100 * expected.confidence:.1f}%)"
    page.get_by_text(re.compile(re.escape(verdict))).first.wait_for(timeout=PAGE_LOAD_MS)
    cam = page.locator("[data-testid='stImageContainer']").filter(has_text="Grad-CAM++").first
    cam.wait_for(timeout=60_000)
    page.wait_for_selector(driver.IDLE, timeout=PAGE_LOAD_MS)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(SHOTS / "classify_upload.png"))

    _assert_no_exception(page, "classify after upload")
    assert UPLOAD.name in page.inner_text("[data-testid='stMain']")
    loaded = cam.locator("img").evaluate("img => img.complete && img.naturalWidth > 0")
    assert loaded, "the Grad-CAM++ image did not load"
    assert page.locator("[data-testid='stImageContainer']").filter(has_text="CBAM spatial attention").count() == 1
    errors = page.locator("[data-testid='stAlertContentError']")
    assert errors.count() == 1
    shown = errors.first.inner_text().replace("\u2060", "")  # the page's escaping leaves invisible word joiners
    assert "lab_notes.png: not a recognised image format" in shown


def test_deep_link_as_first_request_after_start(artifacts, page):
    """A bookmarked page URL opened first on a fresh server runs inside app.py's navigation.

    (With a folder named ``pages/`` beside app.py, Streamlit would run the page alone, as a legacy
    multipage app, until some session had loaded the main page.)
    """
    with streamlit_server(artifacts) as srv:
        _open(page, srv["base"], "classify")
        page.get_by_role("heading", name="Classify sperm images").first.wait_for(timeout=60_000)
        nav = page.locator("[data-testid='stSidebarNav']").inner_text()
        assert "Dataset explorer" in nav and "Embedding map" in nav
        assert "common" not in nav.lower()
        _assert_no_exception(page, "deep link")


# ---------------------------------------------------------------------------------------------- charts


def _ships_results() -> bool:
    return all(load_metrics(d, default_results_dir()) is not None for d in ("smids", "hushem")) and any(
        default_checkpoints_dir().glob("*/effnet_cbam/fold0.safetensors"))


@pytest.fixture(scope="module")
def shipped_server():
    """The app on the repository's own checkpoints and results (metrics.json with TTA entries: 6 models)."""
    if not _ships_results():
        pytest.skip("the repository's checkpoints/results are not installed")
    with streamlit_server(None) as srv:
        yield srv


# What a stakeholder opens: each page at its defaults, the comparison of both datasets (by default with the TTA
# scores: 6 entries, the layout that broke; and with them switched off), and Classify with one sample per class
# and all models side by side.
TTA_TOGGLE = "Charts: add the scores with test-time augmentation (TTA)"
CHART_VIEWS = [
    ("overview", "", None),
    ("explorer", "explorer", None),
    ("classify-all-models", driver.classify_url(shots.three_samples()), None),
    ("compare-smids", "compare", None),
    ("compare-smids-one-view", "compare", lambda page: shots.flip(page, TTA_TOGGLE)),
    ("compare-hushem", "compare",
     lambda page: shots.choose(page, "Dataset / task", "HuSHeM — Human Sperm Head Morphology dataset")),
    ("embedding", "embedding", None),
]


@pytest.mark.slow
@pytest.mark.parametrize("width", shots.WIDTHS, ids=["desktop", "phone"])
@pytest.mark.parametrize("name,path,action", CHART_VIEWS, ids=[v[0] for v in CHART_VIEWS])
def test_every_chart_is_legible(shipped_server, browser, name, path, action, width):
    context = browser.new_context(viewport={"width": width, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(PAGE_LOAD_MS)
    try:
        driver.open_page(page, shipped_server["base"], path)
        if action:
            action(page)
        shots.full_page_shot(page, SHOTS / f"charts-{name}-{width}.png", width)
        _assert_no_exception(page, name)
        n_charts = page.locator(".js-plotly-plot").count()
        assert n_charts > 0, f"{name}: no chart drawn"
        if name.startswith("compare-smids"):
            from spermlib.store.results import is_tta, load_robustness

            with_tta = name == "compare-smids"  # the TTA row is on by default, as Classify predicts with TTA
            robust = load_robustness("smids")  # the robustness panel: one heat map per entry it scored
            heat_maps = len([a for a in (robust["archs"] if robust else []) if with_tta or not is_tta(a)])
            # a confusion matrix per entry (with TTA: 3 models × one view and TTA), then the robustness heat maps
            assert page.locator(".js-plotly-plot .hm").count() == (6 if with_tta else 3) + heat_maps
        assert shots.chart_problems(page) == [], f"{name} at {width} px"
    finally:
        context.close()

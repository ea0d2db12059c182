"""Login end to end: `streamlit run app.py` with ``[auth]`` pointing at the test OpenID Connect provider
(tests/oidc_provider.py, on loopback), driven by Debian's Chromium through Playwright.

Logged out, every URL gives the login screen alone (no page, no navigation); "Log in" goes through the
provider's authorization-code flow and back, logged in as the provider's user with the role the
configuration gives them in the sidebar; "Log out" returns to the login screen. The user's display name is a
Markdown payload, which the sidebar must show as text. Screenshots go to ``test-artifacts/e2e/``.

Needs ``/usr/bin/chromium`` and the ``playwright`` package; skipped cleanly without them.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import pytest

from spermlib.dashboard.identity import LOGIN_TITLE
from spermlib.dashboard.text import WORD_JOINER
from spermlib.data.datasets import DATA_DIR_ENV
from spermlib.evaluation import browser as driver
from spermlib.samples.db import DB_URL_ENV
from tests.oidc_provider import secrets_toml
from views.common import WARM_UP_ENV

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "e2e"
TIMEOUT_MS = 120_000
PAYLOAD_NAME = "Dr Admin :red-background[OUT OF DOMAIN] **x** [y](https://evil.test) www.evil.test :material/lock:"

sync_api = pytest.importorskip("playwright.sync_api")
if not driver.CHROMIUM.is_file():
    pytest.skip(f"{driver.CHROMIUM} not found (apt-get install chromium)", allow_module_level=True)


@contextlib.contextmanager
def auth_server(secrets_file: Path, tmp_path: Path):
    """The dashboard on what the repository ships, reading ``secrets_file`` as its secrets.toml."""
    env = {"STREAMLIT_SECRETS_FILES": str(secrets_file), WARM_UP_ENV: "0", DATA_DIR_ENV: None,
           DB_URL_ENV: f"sqlite:///{tmp_path / 'samples.db'}"}
    try:
        with driver.streamlit_server(env, SHOTS / "server-login.log") as base:
            yield base
    except driver.ServerError as err:
        pytest.fail(str(err))


@pytest.fixture
def app_with_login(oidc_provider, oidc_secrets, tmp_path):
    secrets_file = tmp_path / "secrets.toml"
    secrets_file.write_text(secrets_toml(**oidc_secrets))
    with auth_server(secrets_file, tmp_path) as base:
        yield base


@pytest.fixture
def page():
    with sync_api.sync_playwright() as pw:
        browser = driver.launch(pw)
        try:
            p = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            p.set_default_timeout(TIMEOUT_MS)
            yield p
        finally:
            browser.close()


def _expect_login_screen(page) -> None:
    driver.settle(page, TIMEOUT_MS)
    assert page.locator("h1").all_inner_texts() == [LOGIN_TITLE]
    assert page.get_by_role("button", name="Log in").count() == 1
    assert page.locator("[data-testid='stSidebarNav']").count() == 0  # no navigation
    assert page.locator("[data-testid='stSidebar']").count() == 0
    assert page.locator("[data-testid='stException']").count() == 0


def test_login_through_the_provider_and_logout(app_with_login, oidc_provider, page):
    SHOTS.mkdir(parents=True, exist_ok=True)
    admin = dataclasses.replace(oidc_provider.user("u-admin"), name=PAYLOAD_NAME)
    oidc_provider.users[admin.sub] = oidc_provider.signed_in = admin  # the account /authorize signs in

    for path in ("", "samples", "classify"):  # logged out, every URL is the login screen
        driver.open_page(page, app_with_login, path, TIMEOUT_MS)
        _expect_login_screen(page)
    for width in (390, 1280):  # phone, then desktop (where the sidebar is open)
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(500)
        page.screenshot(path=str(SHOTS / f"login-screen-{width}.png"))

    page.get_by_role("button", name="Log in").click()  # → the provider → /oauth2callback → the app
    page.wait_for_selector("[data-testid='stSidebar']", timeout=TIMEOUT_MS)
    driver.settle(page, TIMEOUT_MS)
    sidebar = page.locator("[data-testid='stSidebar']")
    identity = sidebar.locator("[data-testid='stSidebarUserContent']")  # below the navigation
    text = sidebar.inner_text().replace(WORD_JOINER, "")  # invisible, where a link or badge would start
    assert PAYLOAD_NAME in text and admin.email in text  # the display name, as text
    assert identity.locator("[role='img'], span[style*='background']").count() == 0  # no icon, no badge
    assert f"{oidc_provider.issuer}|{admin.sub}" in text and "role: admin" in text
    assert identity.locator("a").count() == 0  # neither the link nor the bare URL or email became one
    assert [t.replace(WORD_JOINER, "") for t in identity.locator("strong").all_inner_texts()] == [
        f"{PAYLOAD_NAME} <{admin.email}>", "admin"]  # no bold, no badge drawn from the name
    assert page.locator("h1").first.inner_text() == "Interpretable sperm-morphology classification"
    assert page.locator("[data-testid='stSidebarNav'] a").count() == 7
    page.screenshot(path=str(SHOTS / "logged-in-1280.png"))

    page.get_by_role("button", name="Log out").click()
    page.wait_for_selector("[data-testid='stSidebar']", state="detached", timeout=TIMEOUT_MS)
    _expect_login_screen(page)
    driver.open_page(page, app_with_login, "", TIMEOUT_MS)  # the cookie is gone: still logged out
    _expect_login_screen(page)

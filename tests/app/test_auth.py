"""The login gate (app.py, views/auth.py) in AppTest, with identities from a real OIDC login on loopback.

A visitor who is not logged in gets the login screen alone — no page, no navigation, whatever page is asked
for; a user logged in through ``tests/oidc_provider.py`` (authorization code + PKCE, a verified RS256 ID
token; its claims are what Streamlit keeps as ``st.user``) gets the pages and their identity and role in the
sidebar. Without ``[auth]`` nothing changes for the single local user.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from spermlib.dashboard.identity import LOGIN_TITLE
from spermlib.dashboard.pages import PAGES, pages_for
from spermlib.dashboard.text import md_escape
from spermlib.samples.access import Actor, Role
from tests.conftest import OIDC_USERS

APP = str(Path(__file__).resolve().parents[2] / "app.py")
OVERVIEW_TITLE = "Interpretable sperm-morphology classification"


def _app(secrets: dict | None = None, user: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for key, value in (secrets or {}).items():
        at.secrets[key] = value
    if user is not None:
        at.user = user
    return at


def _sidebar_text(at: AppTest) -> str:
    return " ".join(e.value for e in [*at.sidebar.markdown, *at.sidebar.caption])


def _login_screen_only(at: AppTest) -> None:
    assert not at.exception
    assert [t.value for t in at.title] == [LOGIN_TITLE]
    assert [b.label for b in at.button] == ["Log in"]
    assert not at.sidebar.markdown and not at.sidebar.caption and not at.sidebar.button
    assert not at.metric and not at.dataframe and not at.subheader  # no page content


def test_without_auth_the_local_user_gets_the_pages_and_no_login(empty_env):
    at = _app().run()
    assert not at.exception
    assert at.title[0].value == OVERVIEW_TITLE
    assert "Log in" not in [b.label for b in at.button]
    assert not _sidebar_text(at) and "Log out" not in [b.label for b in at.button]


def test_logged_out_a_visitor_sees_only_the_login_screen(empty_env, oidc_secrets):
    at = _app(oidc_secrets, {"is_logged_in": False}).run()
    _login_screen_only(at)
    at.switch_page("views/compare.py").run()  # asking for another page changes nothing
    _login_screen_only(at)


def test_a_session_without_login_state_is_logged_out(empty_env, oidc_secrets):
    _login_screen_only(_app(oidc_secrets).run())  # AppTest's default user: an email, never logged in


@pytest.mark.parametrize(("who", "role"), [("viewer", "viewer"), ("reviewer", "reviewer"), ("admin", "admin")])
def test_a_user_logged_in_through_the_provider_gets_the_pages_and_their_role(empty_env, oidc_provider,
                                                                             oidc_secrets, who, role):
    account = OIDC_USERS[who]
    at = _app(oidc_secrets, oidc_provider.streamlit_user(account.email)).run()
    assert not at.exception
    assert at.title[0].value == OVERVIEW_TITLE
    sidebar = _sidebar_text(at)
    assert md_escape(f"{account.name} <{account.email}>") in sidebar
    assert f"{oidc_provider.issuer}|{account.sub}" in sidebar  # the stable subject, with its issuer
    assert f"role: **{role}**" in sidebar
    assert [b.label for b in at.sidebar.button] == ["Log out"]
    at.switch_page("views/compare.py").run()  # another page, the same identity
    assert not at.exception and at.title[0].value == "Model comparison" and "Dr" in _sidebar_text(at)


def test_every_role_is_offered_every_page_and_a_visitor_none():
    for role in Role:
        assert pages_for(Actor("s", role)) == list(PAGES)
    assert pages_for(None) == []


def test_log_out_returns_to_the_login_screen(empty_env, oidc_provider, oidc_secrets):
    at = _app(oidc_secrets, oidc_provider.streamlit_user("admin@clinic.test")).run()
    at.sidebar.button[0].click().run()
    _login_screen_only(at)


def test_a_provider_display_name_is_shown_as_text(empty_env, oidc_provider, oidc_secrets):
    user = {**oidc_provider.streamlit_user(), "name": "Dr A :red-background[ADMIN] [x](https://evil)"}
    at = _app(oidc_secrets, user).run()
    sidebar = at.sidebar.markdown[0].value
    assert sidebar == "**" + md_escape("Dr A :red-background[ADMIN] [x](https://evil) <viewer@clinic.test>") + "**"


@pytest.mark.parametrize(("claims", "message"), [
    ({"email": "x@clinic.test"}, "gave no subject"),
    ({"sub": "u-1"}, "unknown role 'superuser'"),
])
def test_a_login_the_configuration_refuses_is_one_message_and_no_page(empty_env, oidc_secrets, claims, message):
    secrets = {**oidc_secrets, "spermlib": {"default_role": "superuser"}}
    at = _app(secrets, {**claims, "is_logged_in": True}).run()
    assert not at.exception
    assert [t.value for t in at.title] == [LOGIN_TITLE]
    assert len(at.error) == 1 and md_escape(message) in at.error[0].value
    assert [b.label for b in at.button] == ["Log out"]

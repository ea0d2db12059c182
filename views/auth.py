"""Streamlit glue for who is using the app: whether authentication is configured, the session's actor, the
login screen and the sidebar's identity.

The decisions live in spermlib.dashboard.identity (who the actor is, what the role allows) and
spermlib.dashboard.pages (which pages they get); this module only reads ``st.secrets`` and ``st.user`` and
draws. Without an ``[auth]`` section nothing here shows: the app is a single-user local tool.
"""

from __future__ import annotations

import logging

import streamlit as st

from spermlib.dashboard.identity import LOGIN_PROMPT, LOGIN_TITLE, Actor, session_actor, signed_in
from spermlib.dashboard.text import md_code, md_escape
from spermlib.errors import SpermlibError

log = logging.getLogger("spermlib.app")


def auth_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets.toml at all: authentication is off
        return False


def _spermlib_settings() -> dict:
    try:
        return dict(st.secrets.get("spermlib", {}))
    except Exception:  # noqa: BLE001 - no secrets.toml
        return {}


def current_actor() -> Actor | None:
    """The acting user of this session (``None``: authentication is on and nobody is logged in)."""
    configured = auth_configured()
    user = st.user.to_dict() if configured else {}
    settings = _spermlib_settings()
    return session_actor(configured, bool(user.get("is_logged_in")), user,
                         roles={k: list(v) for k, v in dict(settings.get("roles", {})).items()},
                         default_role=str(settings.get("default_role", "viewer")))


def login_screen(problem: str | None = None) -> None:
    """The only thing a visitor who is not logged in sees: the title, why, and one "Log in" button (or, when
    a login could not be accepted, the reason and "Log out" to try another account)."""
    st.title(LOGIN_TITLE)
    st.markdown(LOGIN_PROMPT)
    # As callbacks: they run before the script, so the run that follows a click already sees the new state.
    if problem:
        st.error(md_escape(problem))
        st.button("Log out", key="auth_logout", on_click=st.logout)
    else:
        st.button("Log in", type="primary", key="auth_login", icon=":material/login:", on_click=st.login)


def gate() -> Actor | None:
    """The session's actor; ``None`` after drawing the login screen (nobody logged in, or a login the role
    configuration refuses, e.g. no subject or an unknown role name)."""
    try:
        actor = current_actor()
    except SpermlibError as err:
        log.warning("login refused: %s", err)
        login_screen(problem=str(err))
        return None
    if actor is None:
        login_screen()
    return actor


def sidebar_identity(actor: Actor) -> None:
    """Who is logged in (name and email, the stable subject), their role and "Log out" — with authentication
    only (the local user of an installation without it needs no reminder)."""
    if not auth_configured():
        return
    card = signed_in(actor)
    with st.sidebar:
        st.markdown(f"**{md_escape(card.display)}**")
        st.caption(f"{md_code(card.subject)} · role: **{card.role}** — may {card.allows}")
        st.button("Log out", key="auth_logout", icon=":material/logout:", on_click=st.logout)

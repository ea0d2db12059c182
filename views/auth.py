"""Streamlit glue for who is using the app: whether authentication is configured, and the session's actor.

The decision lives in spermlib.dashboard.identity; this module only reads ``st.secrets`` and ``st.user``.
"""

from __future__ import annotations

import streamlit as st

from spermlib.dashboard.identity import Actor, session_actor


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

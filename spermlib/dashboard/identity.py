"""The acting user of a dashboard session, from the login state and the role configuration (torch-free).

With authentication configured (an ``[auth]`` section in ``.streamlit/secrets.toml``, Streamlit's
``st.login``), a visitor who is not logged in is nobody (``None``: no page is shown), and a logged-in user
gets the role the ``[spermlib.roles]`` lists give their subject or verified email (else ``default_role``,
``viewer`` unless configured). Without authentication the app is a single-user local tool and its user is
the local admin. The role is enforced again by the samples service on every mutation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from spermlib.samples.access import ACTIONS, AccessDenied, Actor, Role, actor_from_claims, local_actor

__all__ = ["ACTIONS", "AccessDenied", "Actor", "Role", "session_actor"]


def session_actor(auth_configured: bool, logged_in: bool, claims: Mapping[str, object] | None,
                  roles: Mapping[str, Sequence[str]] | None = None, default_role: str = "viewer") -> Actor | None:
    """The actor of one session: the local admin without authentication, ``None`` when logged out."""
    if not auth_configured:
        return local_actor()
    if not logged_in or not claims:
        return None
    return actor_from_claims(claims, roles or {}, default_role)

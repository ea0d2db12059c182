"""The acting user of a dashboard session, from the login state and the role configuration (torch-free).

With authentication configured (an ``[auth]`` section in ``.streamlit/secrets.toml``, Streamlit's
``st.login``), a visitor who is not logged in is nobody (``None``: no page is shown), and a logged-in user
gets the role the ``[spermlib.roles]`` lists give their subject or verified email (else ``default_role``,
``viewer`` unless configured). Without authentication the app is a single-user local tool and its user is
the local admin. The role is enforced again by the samples service on every mutation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from spermlib.samples.access import ACTIONS, AccessDenied, Actor, Role, actor_from_claims, local_actor

__all__ = ["ACTIONS", "LOGIN_PROMPT", "LOGIN_TITLE", "AccessDenied", "Actor", "Role", "SignedIn", "session_actor",
           "signed_in"]

LOGIN_TITLE = "Sperm morphology — interpretable classification"
LOGIN_PROMPT = ("This dashboard shows patient-derived images and expert reviews, so it is open to signed-in users "
                "only. Log in with your organisation's account.")

# What each role may do, in the words the sidebar shows (the service layer enforces ACTIONS).
ROLE_ALLOWS = {
    Role.VIEWER: "look at every page and classify images",
    Role.REVIEWER: "also save samples, review and tag them",
    Role.ADMIN: "also delete, restore and export samples and read the audit log",
}


def session_actor(auth_configured: bool, logged_in: bool, claims: Mapping[str, object] | None,
                  roles: Mapping[str, Sequence[str]] | None = None, default_role: str = "viewer") -> Actor | None:
    """The actor of one session: the local admin without authentication, ``None`` when logged out."""
    if not auth_configured:
        return local_actor()
    if not logged_in or not claims:
        return None
    return actor_from_claims(claims, roles or {}, default_role)


@dataclass(frozen=True)
class SignedIn:
    """What the sidebar says about a logged-in user (plain strings; the page escapes them)."""

    display: str  # the provider's name and email, else the subject
    subject: str  # the stable identity every change is recorded under
    role: str  # "viewer", "reviewer" or "admin"
    allows: str  # what the role may do, in words


def signed_in(actor: Actor) -> SignedIn:
    return SignedIn(display=actor.display, subject=actor.subject, role=actor.role.name.lower(),
                    allows=ROLE_ALLOWS[actor.role])

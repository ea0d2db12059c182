"""Who may do what in the samples store: roles, the acting user, and the check every mutation runs.

Roles are ordered. A **viewer** looks and classifies; a **reviewer** also saves samples, reviews and tags; an
**admin** also deletes, restores, purges, exports and reads the audit log. :class:`~spermlib.samples.service.
SampleStore` calls :func:`require` before every mutation, so a hidden button is never the only guard.

Identity is the provider's stable subject (with its issuer), never a display name: two people called
"Dr A" stay two users, and a renamed user stays one. Without authentication the dashboard and the CLI are a
single-user local tool and act as :func:`local_actor`, an admin.
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum

from spermlib.errors import SpermlibError


class Role(IntEnum):
    VIEWER = 1
    REVIEWER = 2
    ADMIN = 3

    @classmethod
    def named(cls, name: str) -> Role:
        try:
            return cls[name.strip().upper()]
        except KeyError:
            raise SpermlibError(f"unknown role {name!r}: use one of {', '.join(r.name.lower() for r in cls)}") from None


# action → the least role that may do it (the service layer's vocabulary; the audit log records the action)
ACTIONS: dict[str, Role] = {
    "view": Role.VIEWER, "classify": Role.VIEWER,
    "save": Role.REVIEWER, "review": Role.REVIEWER, "tag": Role.REVIEWER, "untag": Role.REVIEWER,
    "delete": Role.ADMIN, "restore": Role.ADMIN, "purge": Role.ADMIN, "export": Role.ADMIN, "audit": Role.ADMIN,
    "manage_models": Role.ADMIN,
}


class AccessDenied(SpermlibError):
    """The acting user's role does not allow the action."""


@dataclass(frozen=True)
class Actor:
    """The user an action is done by: ``subject`` is the stable identity recorded with every change."""

    subject: str
    role: Role
    email: str | None = None
    name: str | None = None

    @property
    def display(self) -> str:
        """What a page shows beside the subject: the name and email the provider gave, else the subject."""
        parts = [p for p in (self.name, f"<{self.email}>" if self.email else None) if p]
        return " ".join(parts) or self.subject

    def can(self, action: str) -> bool:
        return self.role >= ACTIONS[action]


def require(actor: Actor, action: str) -> None:
    """Raise :class:`AccessDenied` unless ``actor`` may do ``action`` (a key of :data:`ACTIONS`)."""
    if action not in ACTIONS:
        raise KeyError(f"unknown action {action!r}")  # a programming error, not a user's
    if not actor.can(action):
        raise AccessDenied(f"{actor.display} ({actor.role.name.lower()}) may not {action.replace('_', ' ')}: "
                           f"that needs the {ACTIONS[action].name.lower()} role")


def local_actor(name: str | None = None) -> Actor:
    """The single local user of an installation without authentication (the CLI, the app without ``[auth]``)."""
    try:
        user = name or getpass.getuser()
    except (KeyError, OSError):  # no login name (e.g. a container without a passwd entry)
        user = name or "local"
    return Actor(subject=f"local:{user}", role=Role.ADMIN, name=user)


def actor_from_claims(claims: Mapping[str, object], roles: Mapping[str, Sequence[str]],
                      default_role: str = "viewer") -> Actor:
    """The actor of a logged-in user, from the provider's claims (``st.user``: ``sub``, ``iss``, ``email``,
    ``name``) and the configured role lists (``{"admin": [subject or email, …], "reviewer": […]}``).

    A user named in several lists gets the highest role; one named in none gets ``default_role``. Emails
    match case-insensitively, and only when the provider says the email is verified (``email_verified`` not
    false). A login without a subject is refused.
    """
    sub = str(claims.get("sub") or "").strip()
    if not sub:
        raise AccessDenied("the identity provider gave no subject (sub) for this login")
    iss = str(claims.get("iss") or "").strip()
    subject = f"{iss}|{sub}" if iss else sub
    email = str(claims.get("email") or "").strip() or None
    verified = claims.get("email_verified") is not False
    keys = {subject, sub} | ({email.lower()} if email and verified else set())
    role = Role.named(default_role)
    for name, members in roles.items():
        listed = {str(m).strip() for m in members} | {str(m).strip().lower() for m in members}
        if keys & listed:
            role = max(role, Role.named(name))
    name = str(claims.get("name") or "").strip() or None
    return Actor(subject=subject, role=role, email=email, name=name)

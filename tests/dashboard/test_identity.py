"""spermlib.dashboard.identity: who the session's user is and what the sidebar says about them."""

from __future__ import annotations

from spermlib.dashboard.identity import ROLE_ALLOWS, Role, session_actor, signed_in


def test_the_sidebar_names_the_subject_and_the_role():
    actor = session_actor(True, True, {"sub": "u-1", "iss": "https://idp", "email": "a@b.test", "name": "Dr A"},
                          roles={"reviewer": ["a@b.test"]})
    card = signed_in(actor)
    assert (card.display, card.subject, card.role) == ("Dr A <a@b.test>", "https://idp|u-1", "reviewer")
    assert card.allows == ROLE_ALLOWS[Role.REVIEWER]


def test_every_role_says_what_it_may_do():
    assert set(ROLE_ALLOWS) == set(Role) and all(ROLE_ALLOWS.values())
    assert session_actor(True, False, {}) is None and session_actor(False, False, {}).role is Role.ADMIN

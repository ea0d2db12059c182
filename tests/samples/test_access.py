"""Roles and identities of the samples store (spermlib.samples.access)."""

import pytest

from spermlib.samples.access import AccessDenied, Actor, Role, actor_from_claims, local_actor, require

ROLES = {"admin": ["https://idp|alice"], "reviewer": ["Bob@Lab.org"]}


def test_roles_are_ordered_and_enforced():
    viewer = Actor("s1", Role.VIEWER)
    require(viewer, "classify")
    for action in ("save", "review", "tag", "delete", "export", "audit"):
        with pytest.raises(AccessDenied, match=f"may not {action}"):
            require(viewer, action)
    require(Actor("s2", Role.REVIEWER), "review")
    with pytest.raises(AccessDenied, match="needs the admin role"):
        require(Actor("s2", Role.REVIEWER), "delete")
    require(Actor("s3", Role.ADMIN), "purge")
    with pytest.raises(KeyError):
        require(Actor("s3", Role.ADMIN), "launch")


def test_identity_is_the_stable_subject_not_the_display_name():
    alice = actor_from_claims({"iss": "https://idp", "sub": "alice", "name": "Dr A", "email": "a@lab.org"}, ROLES)
    impostor = actor_from_claims({"iss": "https://idp", "sub": "mallory", "name": "Dr A"}, ROLES)
    assert alice.subject == "https://idp|alice" and alice.role is Role.ADMIN
    assert impostor.subject != alice.subject and impostor.role is Role.VIEWER  # the same name is not the same user
    assert alice.display == "Dr A <a@lab.org>"


def test_emails_match_case_insensitively_only_when_verified():
    bob = {"iss": "https://idp", "sub": "b", "email": "bob@lab.org"}
    assert actor_from_claims(bob, ROLES).role is Role.REVIEWER
    assert actor_from_claims({**bob, "email_verified": False}, ROLES).role is Role.VIEWER


def test_a_login_without_subject_and_an_unknown_role_are_refused():
    with pytest.raises(AccessDenied, match="no subject"):
        actor_from_claims({"email": "x@lab.org"}, ROLES)
    with pytest.raises(ValueError, match="unknown role 'owner'"):
        actor_from_claims({"sub": "x"}, {"owner": ["x"]})


def test_the_local_user_is_a_single_admin():
    me = local_actor("ana")
    assert me.subject == "local:ana" and me.role is Role.ADMIN and me.display == "ana"

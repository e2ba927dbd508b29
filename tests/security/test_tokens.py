"""Token format, hashing, lifetimes and what a scoped token may do (pure functions)."""

from __future__ import annotations

import hashlib

import pytest

from mlplane.errors import InvalidInput
from mlplane.security import Permission, allowed
from mlplane.security.tokens import (
    check_role,
    digest,
    looks_like_token,
    new_secret,
    parse_duration_ms,
    scoped_principal,
)


def test_secrets_are_random_prefixed_and_stored_as_sha256() -> None:
    a, b = new_secret(), new_secret()
    assert a != b and a.startswith("mlp_") and len(a) == 4 + 43
    assert digest(a) == hashlib.sha256(a.encode()).hexdigest() and digest(a) != digest(b)
    assert looks_like_token(a)
    assert not looks_like_token("Bearer " + a) and not looks_like_token("mlp_" + "x" * 200)


@pytest.mark.parametrize(
    ("text", "ms"),
    [("30m", 1_800_000), ("12h", 43_200_000), ("90d", 7_776_000_000), ("2w", 1_209_600_000)],
)
def test_lifetimes(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


def test_never_and_bad_lifetimes() -> None:
    assert parse_duration_ms("never") is None
    for bad in ("0d", "10", "-1d", "1y", "soon"):
        with pytest.raises(InvalidInput, match="invalid token lifetime"):
            parse_duration_ms(bad)


def test_roles_and_scope_aliases() -> None:
    assert check_role("read") == "viewer" and check_role("write") == "contributor"
    assert check_role("approver") == "approver"
    with pytest.raises(InvalidInput, match="unknown role 'owner'"):
        check_role("owner")


def _p(admin: bool, roles: dict[str, str], project: str | None, cap: str | None):  # type: ignore[no-untyped-def]
    return scoped_principal(
        "u", is_platform_admin=admin, roles=roles, project=project, role_cap=cap, source="t"
    )


def test_an_unscoped_token_has_the_identitys_rights() -> None:
    p = _p(False, {"a": "contributor"}, None, None)
    assert p.roles == {"a": "contributor"} and not p.scoped and not p.is_platform_admin
    assert _p(True, {}, None, None).is_platform_admin


def test_a_role_cap_keeps_the_lower_role() -> None:
    p = _p(False, {"a": "admin", "b": "viewer"}, None, "read")
    assert p.roles == {"a": "viewer", "b": "viewer"} and p.scoped
    assert allowed(p, Permission.READ, "a") and not allowed(p, Permission.WRITE, "a")


def test_a_project_scope_drops_every_other_project() -> None:
    p = _p(False, {"a": "contributor", "b": "admin"}, "a", None)
    assert p.roles == {"a": "contributor"}
    assert not allowed(p, Permission.READ, "b")
    wildcard = _p(False, {"*": "contributor"}, "c", None)
    assert wildcard.roles == {"c": "contributor"} and not allowed(wildcard, Permission.READ, "d")
    assert _p(False, {"a": "viewer"}, "b", None).roles == {}


def test_a_scoped_platform_admin_token_is_an_ordinary_role() -> None:
    p = _p(True, {}, "a", "write")
    assert not p.is_platform_admin and p.roles == {"a": "contributor"}
    everywhere = _p(True, {}, None, "read")
    assert everywhere.roles == {"*": "viewer"} and not allowed(everywhere, Permission.WRITE, "x")


def test_the_predictor_role_predicts_and_reads_nothing() -> None:
    app = scoped_principal(
        "app",
        is_platform_admin=False,
        roles={"default": "predictor"},
        project=None,
        role_cap=None,
        source="t",
    )
    assert allowed(app, Permission.PREDICT, "default")
    assert not allowed(app, Permission.READ, "default")
    assert not allowed(app, Permission.PREDICT, "other")
    # A contributor's token capped at predictor can only predict ...
    capped = scoped_principal(
        "cora",
        is_platform_admin=False,
        roles={"default": "contributor"},
        project="default",
        role_cap="predictor",
        source="t",
    )
    assert capped.roles == {"default": "predictor"}
    assert not allowed(capped, Permission.WRITE, "default")
    # ... and a viewer's capped at predictor keeps nothing: a cap never adds a permission.
    viewer = scoped_principal(
        "vic",
        is_platform_admin=False,
        roles={"default": "viewer", "b": "admin"},
        project=None,
        role_cap="predictor",
        source="t",
    )
    assert viewer.roles == {"b": "predictor"}
    assert not allowed(viewer, Permission.PREDICT, "default")
    assert check_role("predictor") == "predictor"


def test_a_deployment_token_predicts_on_that_deployment_only() -> None:
    from mlplane.security import may_predict

    p = scoped_principal(
        "cora",
        is_platform_admin=False,
        roles={"default": "admin"},
        project="default",
        role_cap=None,
        source="t",
        deployment="fraud",
    )
    assert p.roles == {"default": "predictor"} and p.deployments == frozenset({"fraud"})
    assert may_predict(p, "default", "fraud")
    assert not may_predict(p, "default", "churn") and not may_predict(p, "other", "fraud")
    assert not allowed(p, Permission.READ, "default")
    boss = scoped_principal(
        "boss",
        is_platform_admin=True,
        roles={},
        project="default",
        role_cap=None,
        source="t",
        deployment="fraud",
    )
    assert not boss.is_platform_admin and not may_predict(boss, "default", "churn")
    everyone = scoped_principal(
        "cora",
        is_platform_admin=False,
        roles={"default": "contributor"},
        project=None,
        role_cap=None,
        source="t",
    )
    assert may_predict(everyone, "default", "churn")

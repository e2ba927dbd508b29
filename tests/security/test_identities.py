"""IdentityService on a real SQLite store: bootstrap, tokens, scopes, who may do what."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select, text

from mlplane.errors import AlreadyExists, InvalidInput, NotFound, PermissionDenied, Unauthenticated
from mlplane.security import Principal, local_admin
from mlplane.security.identities import LAST_USED_RESOLUTION_MS
from mlplane.security.tables import ApiTokenRow, AuditEventRow
from mlplane.services import Services

ROOT = local_admin("root")


def _login(svc: Services, secret: str) -> Principal:
    return svc.identities.authenticate(secret, source="test")


def test_bootstrap_runs_once_and_its_token_is_a_platform_admin(services: Services) -> None:
    ids = services.identities
    assert not ids.has_platform_admin()
    made = ids.bootstrap(ROOT, "boss")
    assert ids.has_platform_admin()
    who = _login(services, made.secret)
    assert who.name == "boss" and who.is_platform_admin and who.source == "test"
    assert made.secret not in repr(made)
    with pytest.raises(AlreadyExists, match="bootstrap runs once"):
        ids.bootstrap(ROOT, "second")
    # Only the hash is kept, and no secret reaches the audit log.
    with services.db.read() as s:
        stored = s.scalars(select(ApiTokenRow.token_sha256)).all()
        audit = " ".join(s.scalars(select(AuditEventRow.details)).all())
    assert made.secret not in stored and made.secret not in audit
    assert len(stored) == 1 and len(stored[0]) == 64


def test_bootstrap_is_allowed_again_when_every_admin_is_disabled(services: Services) -> None:
    ids = services.identities
    ids.bootstrap(ROOT, "first")
    ids.set_disabled(ROOT, "first")
    assert _login(services, ids.bootstrap(ROOT, "second").secret).name == "second"


@pytest.mark.parametrize("secret", ["", "nope", "mlp_" + "A" * 43, "Bearer mlp_x"])
def test_unknown_tokens_are_refused(services: Services, secret: str) -> None:
    services.identities.bootstrap(ROOT)
    with pytest.raises(Unauthenticated, match="invalid API token") as info:
        _login(services, secret)
    assert secret not in str(info.value) or not secret


def test_expired_revoked_and_disabled_tokens_are_refused(services: Services) -> None:
    ids = services.identities
    ids.create_identity(ROOT, "alice")
    short = ids.create_token(ROOT, "alice", expires_in_ms=1)
    time.sleep(0.005)
    with pytest.raises(Unauthenticated, match="expired"):
        _login(services, short.secret)
    revoked = ids.create_token(ROOT, "alice")
    assert _login(services, revoked.secret).name == "alice"
    ids.revoke_token(ROOT, revoked.info.token_id)
    with pytest.raises(Unauthenticated, match="revoked"):
        _login(services, revoked.secret)
    again = ids.revoke_token(ROOT, revoked.info.token_id)  # a no-op, not an error
    assert again.revoked_at is not None
    live = ids.create_token(ROOT, "alice", expires_in_ms=None)
    assert live.info.expires_at is None
    ids.set_disabled(ROOT, "alice")
    with pytest.raises(Unauthenticated, match="alice is disabled"):
        _login(services, live.secret)
    ids.set_disabled(ROOT, "alice", disabled=False)
    assert _login(services, live.secret).name == "alice"
    states = {t.token_id: t.state(time.time_ns() // 1_000_000) for t in ids.list_tokens(ROOT)}
    assert states == {
        short.info.token_id: "expired",
        revoked.info.token_id: "revoked",
        live.info.token_id: "active",
    }


def test_roles_are_read_at_each_call_and_narrowed_by_the_token(services: Services) -> None:
    ids = services.identities
    ids.create_identity(ROOT, "bob")
    ids.grant(ROOT, "bob", "vision", "contributor")
    ids.grant(ROOT, "bob", "nlp", "approver")
    full = ids.create_token(ROOT, "bob")
    read_only = ids.create_token(ROOT, "bob", role="read")
    vision = ids.create_token(ROOT, "bob", project="vision")
    assert _login(services, full.secret).roles == {"vision": "contributor", "nlp": "approver"}
    assert _login(services, read_only.secret).roles == {"vision": "viewer", "nlp": "viewer"}
    assert _login(services, vision.secret).roles == {"vision": "contributor"}
    ids.revoke_role(ROOT, "bob", "vision")
    assert _login(services, full.secret).roles == {"nlp": "approver"}
    assert _login(services, vision.secret).roles == {}
    with pytest.raises(NotFound, match="no role in project 'vision'"):
        ids.revoke_role(ROOT, "bob", "vision")


def test_last_used_is_recorded_coarsely(services: Services) -> None:
    ids = services.identities
    made = ids.bootstrap(ROOT)
    assert ids.list_tokens(ROOT)[0].last_used_at is None
    _login(services, made.secret)
    first = ids.list_tokens(ROOT)[0].last_used_at
    assert first is not None
    _login(services, made.secret)  # within the resolution: no write
    assert ids.list_tokens(ROOT)[0].last_used_at == first
    with services.db.write() as s:
        s.execute(
            text("UPDATE api_tokens SET last_used_at = :t"),
            {"t": first - LAST_USED_RESOLUTION_MS},
        )
    _login(services, made.secret)
    assert ids.list_tokens(ROOT)[0].last_used_at >= first  # type: ignore[operator]


def test_only_platform_admins_manage_identities(services: Services) -> None:
    ids = services.identities
    ids.create_identity(ROOT, "carol")
    ids.grant(ROOT, "carol", "vision", "admin")
    carol = _login(services, ids.create_token(ROOT, "carol").secret)
    for call in (
        lambda: ids.create_identity(carol, "mallory"),
        lambda: ids.list_identities(carol),
        lambda: ids.set_disabled(carol, "carol"),
        lambda: ids.grant(carol, "carol", "*", "admin"),
        lambda: ids.grant(carol, "carol", "nlp", "admin"),
        lambda: ids.create_token(carol, "admin"),
        lambda: ids.list_tokens(carol, "root"),
        lambda: ids.get_identity(carol, "root"),
    ):
        with pytest.raises(PermissionDenied):
            call()
    # A project admin may grant roles in that project.
    ids.create_identity(ROOT, "dave")
    assert ids.grant(carol, "dave", "vision", "viewer").roles == {"vision": "viewer"}
    assert ids.get_identity(carol, "carol").roles == {"vision": "admin"}
    with services.db.read() as s:
        denied = s.scalars(
            select(AuditEventRow.action).where(AuditEventRow.outcome == "denied")
        ).all()
    assert "create identities" in denied and len(denied) == 8


def test_users_mint_list_and_revoke_their_own_tokens_only(services: Services) -> None:
    ids = services.identities
    ids.bootstrap(ROOT, "boss")
    for name in ("erin", "frank"):
        ids.create_identity(ROOT, name)
    erin = _login(services, ids.create_token(ROOT, "erin").secret)
    frank_token = ids.create_token(ROOT, "frank")
    mine = ids.create_token(erin, name="laptop", project="vision", role="write")
    assert mine.info.identity == "erin" and mine.info.role == "contributor"
    assert {t.identity for t in ids.list_tokens(erin)} == {"erin"}
    assert len(ids.list_tokens(ROOT)) == 4  # an admin sees every token
    with pytest.raises(NotFound, match="no token"):
        ids.revoke_token(erin, frank_token.info.token_id)
    assert ids.revoke_token(erin, mine.info.token_id).revoked_at is not None
    # A scoped token cannot mint a broader one for itself.
    scoped = _login(services, ids.create_token(ROOT, "erin", role="read").secret)
    with pytest.raises(PermissionDenied):
        ids.create_token(scoped)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda ids: ids.create_identity(ROOT, "bad name"), "invalid identity name"),
        (lambda ids: ids.create_identity(ROOT, "x", kind="robot"), "unknown identity kind"),
        (lambda ids: ids.grant(ROOT, "x", "vision", "owner"), "unknown role"),
        (lambda ids: ids.grant(ROOT, "x", "", "viewer"), "invalid project name"),
        (lambda ids: ids.create_token(ROOT, "x", expires_in_ms=0), "lifetime must be positive"),
        (lambda ids: ids.set_disabled(ROOT, ROOT.name), "cannot disable yourself"),
    ],
)
def test_bad_input_says_what_to_change(services: Services, call, message: str) -> None:  # type: ignore[no-untyped-def]
    services.identities.create_identity(ROOT, "x")
    services.identities.create_identity(ROOT, ROOT.name)
    with pytest.raises(InvalidInput, match=message):
        call(services.identities)


def test_names_are_unique_and_must_exist(services: Services) -> None:
    ids = services.identities
    ids.create_identity(ROOT, "gina")
    with pytest.raises(AlreadyExists, match="'gina' exists already"):
        ids.create_identity(ROOT, "gina", kind="service")
    with pytest.raises(NotFound, match="no identity named 'hank'"):
        ids.create_token(ROOT, "hank")
    ids.set_disabled(ROOT, "gina")
    with pytest.raises(InvalidInput, match="gina is disabled"):
        ids.create_token(ROOT, "gina")


def test_deployment_tokens(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from mlplane.config import load_settings
    from mlplane.errors import InvalidInput
    from mlplane.security import local_admin, may_predict
    from mlplane.services import Services

    svc = Services.from_settings(load_settings(home=tmp_path / "h"))
    try:
        ids, root = svc.identities, local_admin("root")
        ids.create_identity(root, "app", kind="service")
        ids.grant(root, "app", "default", "contributor")
        made = ids.create_token(root, "app", project="default", deployment="fraud")
        assert made.info.deployment == "fraud" and made.info.role == "predictor"
        p = ids.authenticate(made.secret, source="127.0.0.1")
        assert may_predict(p, "default", "fraud") and not may_predict(p, "default", "churn")
        with pytest.raises(InvalidInput, match="--project"):
            ids.create_token(root, "app", deployment="fraud")
        with pytest.raises(InvalidInput, match="only predicts"):
            ids.create_token(root, "app", project="default", role="viewer", deployment="fraud")
        assert [t.deployment for t in ids.list_tokens(root, "app")] == ["fraud"]
    finally:
        svc.close()

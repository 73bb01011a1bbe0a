"""The conditions that pause a connection without ending it (docs/connection-lifecycle.md).

Client disabled, organization suspended, membership removed, organization dropped from the
client's allowlist: tokens are refused with the documented status and reason, the connection is
not ended, and everything works again, with the same tokens, once the condition is lifted.
"""

import pytest
from sqlalchemy import select

from idp.core.clock import shift
from idp.infra.extensions import db
from idp.store.models import AuditEvent
from idp.store.models import Connection
from tests import lifecycle_model as lm
from tests.lifecycle_env import LIFETIMES
from tests.lifecycle_env import lifecycle_world

#: condition -> (how to impose it, how to lift it) on a World.
SWITCHES = {
    "client disabled": (lambda w: w.set_client_enabled(False),
                        lambda w: w.set_client_enabled(True)),
    "org suspended": (lambda w: w.set_org_suspended(True), lambda w: w.set_org_suspended(False)),
    "membership removed": (lambda w: w.set_member(False), lambda w: w.set_member(True)),
    "org not allowlisted": (lambda w: w.set_allowlist("other"), lambda w: w.set_allowlist("ours")),
}

#: condition, bearer status and reason, refresh status and error, consent page status.
TABLE = [
    ("client disabled", 403, "client_disabled", 401, "invalid_client", 400),
    ("org suspended", 403, "org_unbound", 400, "invalid_grant", 403),
    ("membership removed", 403, "org_unbound", 400, "invalid_grant", 403),
    ("org not allowlisted", 403, "org_unbound", 400, "invalid_grant", 403),
]


@pytest.fixture
def world(make_app, monkeypatch):
    """A seeded app on the model's lifetimes, a frozen clock and a signed-in test client."""
    return lifecycle_world(make_app, monkeypatch, **LIFETIMES)


def connect(world) -> tuple[str, dict]:
    """Connect and redeem; return the connection id and the first token response."""
    status, code, verifier, public_id, scope = world.connect()
    assert status == 302
    pending = lm.Connection(public_id, scope, code, verifier, code_expires_at=lm.CODE_TTL)
    first = world.exchange(pending)
    assert first.status_code == 200, first.get_json()
    return public_id, first.get_json()


def refreshed(world, raw: str) -> dict:
    """Refresh, expecting success."""
    response = world.refresh(raw)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def end_state(world, public_id: str) -> tuple[str | None, list[str]]:
    """The connection's end reason and its audit event names."""
    with world.app.app_context():
        connection = db.session.scalar(select(Connection).where(Connection.public_id == public_id))
        events = list(db.session.scalars(
            select(AuditEvent.event).where(AuditEvent.subject == public_id)))
        return connection.end_reason, events


def assert_refused_bearer(world, access: str, status: int, reason: str) -> None:
    """Both judges refuse the access token with the §4 status and reason."""
    me = world.me(access)
    assert me.status_code == status and me.get_json()["error"]["reason"] == reason
    seen = world.introspect(access)
    assert seen["active"] is False
    assert seen["denial"] == {"status": status, "reason": reason,
                              "code": "UNAUTHORIZED" if status == 401 else "FORBIDDEN"}


@pytest.mark.parametrize(("condition", "status", "reason", "refresh_status", "refresh_error",
                          "consent_status"), TABLE)
def test_condition_pauses_and_lifting_resumes(world, condition, status, reason, refresh_status,
                                              refresh_error, consent_status):
    public_id, first = connect(world)
    second = refreshed(world, first["refresh_token"])
    impose, lift = SWITCHES[condition]
    impose(world)
    for access in (first["access_token"], second["access_token"]):
        assert_refused_bearer(world, access, status, reason)
    refused = world.refresh(second["refresh_token"])
    assert refused.status_code == refresh_status
    assert refused.get_json()["error"] == refresh_error
    assert world.connect()[0] == consent_status
    assert end_state(world, public_id) == (None, ["connection_created"])
    lift(world)
    # The same tokens simply work again: the earlier access token too, to its own expiry.
    for access in (first["access_token"], second["access_token"]):
        assert world.me(access).status_code == 200
        assert world.introspect(access)["active"] is True
    third = refreshed(world, second["refresh_token"])
    assert world.me(third["access_token"]).status_code == 200
    assert end_state(world, public_id) == (None, ["connection_created"])


@pytest.mark.parametrize(("condition", "refresh_status", "refresh_error"),
                         [(row[0], row[3], row[4]) for row in TABLE])
def test_grace_retry_refused_while_paused_works_when_lifted_in_time(world, condition,
                                                                     refresh_status,
                                                                     refresh_error):
    public_id, first = connect(world)
    second = refreshed(world, first["refresh_token"])
    impose, lift = SWITCHES[condition]
    impose(world)
    shift(lm.GRACE // 2)
    retry = world.refresh(first["refresh_token"])
    assert (retry.status_code, retry.get_json()["error"]) == (refresh_status, refresh_error)
    lift(world)
    again = refreshed(world, first["refresh_token"])
    assert again["refresh_token"] == second["refresh_token"]
    assert again["access_token"] == second["access_token"]
    assert end_state(world, public_id)[0] is None


@pytest.mark.parametrize(("condition", "refresh_status", "refresh_error"),
                         [(row[0], row[3], row[4]) for row in TABLE])
def test_reuse_while_paused_is_refused_then_caught_after_the_pause(world, condition,
                                                                    refresh_status,
                                                                    refresh_error):
    public_id, first = connect(world)
    second = refreshed(world, first["refresh_token"])
    shift(lm.GRACE + 1)
    impose, lift = SWITCHES[condition]
    impose(world)
    stale = world.refresh(first["refresh_token"])
    assert (stale.status_code, stale.get_json()["error"]) == (refresh_status, refresh_error)
    assert end_state(world, public_id)[0] is None
    lift(world)
    stale = world.refresh(first["refresh_token"])
    assert stale.status_code == 400 and stale.get_json()["error"] == "invalid_grant"
    reason, events = end_state(world, public_id)
    assert reason == "refresh_reuse"
    assert events.count("connection_ended") == 1 and events.count("refresh_token_reuse") == 1
    assert_refused_bearer(world, second["access_token"], 401, "token_revoked")


@pytest.mark.parametrize(("condition", "revoke_status", "ends"), [
    ("client disabled", 401, None),
    ("org suspended", 200, "revoked_by_client"),
    ("membership removed", 200, "revoked_by_client"),
    ("org not allowlisted", 200, "revoked_by_client"),
])
def test_revocation_while_paused(world, condition, revoke_status, ends):
    public_id, first = connect(world)
    SWITCHES[condition][0](world)
    response = world.revoke(first["refresh_token"])
    assert response.status_code == revoke_status
    if revoke_status != 200:
        assert response.get_json()["error"] == "invalid_client"
    assert end_state(world, public_id)[0] == ends


@pytest.mark.parametrize("condition", list(SWITCHES))
def test_code_redemption_while_paused_leaves_the_code_usable(world, condition):
    status, code, verifier, public_id, scope = world.connect()
    assert status == 302
    pending = lm.Connection(public_id, scope, code, verifier, code_expires_at=lm.CODE_TTL)
    impose, lift = SWITCHES[condition]
    impose(world)
    refused = world.exchange(pending)
    expected = (401, "invalid_client") if condition == "client disabled" else \
        (400, "invalid_grant")
    assert (refused.status_code, refused.get_json()["error"]) == expected
    lift(world)
    redeemed = world.exchange(pending)
    assert redeemed.status_code == 200, redeemed.get_json()
    assert end_state(world, public_id)[0] is None


@pytest.mark.parametrize("condition", list(SWITCHES))
def test_disconnect_while_paused_ends_the_connection(world, condition):
    public_id, first = connect(world)
    SWITCHES[condition][0](world)
    assert world.disconnect(public_id).status_code == 302
    SWITCHES[condition][1](world)
    assert end_state(world, public_id)[0] == "disconnected"
    assert_refused_bearer(world, first["access_token"], 401, "token_revoked")
    dead = world.refresh(first["refresh_token"])
    assert dead.status_code == 400 and dead.get_json()["error"] == "invalid_grant"

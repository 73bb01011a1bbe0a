"""The refresh grant in-process: scope, response shape, old access tokens, bindings, reuse."""

import pytest
from sqlalchemy import delete

from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.store import accounts
from idp.store.connections import end_connection
from idp.store.models import Membership
from tests.oauth_helpers import client_row
from tests.oauth_helpers import connect
from tests.oauth_helpers import ended_connection_events
from tests.oauth_helpers import me
from tests.oauth_helpers import oauth_error
from tests.oauth_helpers import only_connection
from tests.oauth_helpers import org_row
from tests.oauth_helpers import reason
from tests.oauth_helpers import refresh

GRANTED = "contacts:read leads:read leads:write"


def _scopes(client, access_token) -> list[str]:
    """Scopes /api/v1/me reports for an access token."""
    response = me(client, access_token)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["scopes"]


@pytest.mark.parametrize("asked", ["leads:read", "leads:read,contacts:read", "leads:write  "])
def test_narrower_scope_applies_to_the_new_access_token_only(client, demo, asked):
    first = connect(client, demo, scope=GRANTED)
    narrowed = refresh(client, demo, first["refresh_token"], scope=asked)
    assert narrowed.status_code == 200, narrowed.get_json()
    expected = sorted(s.strip() for s in asked.replace(",", " ").split())
    assert narrowed.get_json()["scope"] == " ".join(expected)
    assert _scopes(client, narrowed.get_json()["access_token"]) == expected
    # The refresh token keeps the granted scope (RFC 6749 §6).
    full = refresh(client, demo, narrowed.get_json()["refresh_token"])
    assert full.get_json()["scope"] == GRANTED
    assert _scopes(client, full.get_json()["access_token"]) == GRANTED.split()


@pytest.mark.parametrize("asked", ["tasks:read", "leads:read tasks:read", "admin", "leads"])
def test_wider_scope_is_invalid_scope(client, demo, asked):
    first = connect(client, demo, scope=GRANTED)
    response = refresh(client, demo, first["refresh_token"], scope=asked)
    assert response.status_code == 400 and oauth_error(response) == "invalid_scope"
    # The refused request spent nothing.
    assert refresh(client, demo, first["refresh_token"]).status_code == 200


def _assert_refresh_shape(response, clock_left=None):
    """Every refresh success carries the fields Zapier and Make rely on."""
    assert response.status_code == 200, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    for field in ("access_token", "token_type", "expires_in", "refresh_token",
                  "refresh_expires_in", "scope"):
        assert field in body, field
    assert body["token_type"] == "Bearer"
    assert isinstance(body["expires_in"], int) and body["expires_in"] > 0
    if clock_left is not None:
        assert body["expires_in"] == clock_left
    return body


def test_every_refresh_response_has_the_full_shape(client, demo, clock):
    first = connect(client, demo)
    rotated = _assert_refresh_shape(refresh(client, demo, first["refresh_token"]), 3600)
    assert rotated["refresh_token"] != first["refresh_token"]
    clock.shift(20)
    # A grace-window replay states the time left on the same tokens.
    replay = _assert_refresh_shape(refresh(client, demo, first["refresh_token"]), 3580)
    assert replay["refresh_token"] == rotated["refresh_token"]
    assert replay["access_token"] == rotated["access_token"]
    assert replay["refresh_expires_in"] == rotated["refresh_expires_in"] - 20


def test_access_tokens_issued_before_a_refresh_live_to_their_own_expiry(client, demo, clock):
    first = connect(client, demo)
    clock.shift(1800)
    second = refresh(client, demo, first["refresh_token"]).get_json()
    third = refresh(client, demo, second["refresh_token"]).get_json()
    for body in (first, second, third):
        assert me(client, body["access_token"]).status_code == 200
    clock.shift(1801)
    expired = me(client, first["access_token"])
    assert expired.status_code == 401 and reason(expired) == "token_expired"
    assert me(client, third["access_token"]).status_code == 200


def _membership_removed(app, demo):
    """Take the demo user out of the demo organization."""
    with app.app_context():
        db.session.execute(delete(Membership))
        db.session.commit()


def _membership_restored(app, demo):
    """Put the demo user back."""
    with app.app_context():
        accounts.set_membership(accounts.find_user(demo["user"]["email"]), org_row(demo), "owner")
        db.session.commit()


def _suspend(app, demo, on=True):
    """Suspend (or lift) the demo organization."""
    with app.app_context():
        org_row(demo).suspended = on
        db.session.commit()


def _allowlist(app, demo, on=True):
    """Drop the demo organization from the Zapier allowlist (or clear the list)."""
    with app.app_context():
        if on:
            elsewhere = accounts.create_org("Elsewhere")
            db.session.flush()
            client_row(demo).org_allowlist = [elsewhere.id]
        else:
            client_row(demo).org_allowlist = []
        db.session.commit()


UNBINDINGS = {
    "org suspended": (_suspend, lambda app, demo: _suspend(app, demo, on=False)),
    "membership removed": (_membership_removed, _membership_restored),
    "org not allowlisted": (_allowlist, lambda app, demo: _allowlist(app, demo, on=False)),
}


@pytest.mark.parametrize("case", list(UNBINDINGS))
def test_unbound_org_refuses_refresh_until_lifted(app, client, demo, case):
    first = connect(client, demo)
    unbind, rebind = UNBINDINGS[case]
    unbind(app, demo)
    response = refresh(client, demo, first["refresh_token"])
    assert response.status_code == 400 and oauth_error(response) == "invalid_grant"
    blocked = me(client, first["access_token"])
    assert blocked.status_code == 403 and reason(blocked) == "org_unbound"
    rebind(app, demo)
    assert refresh(client, demo, first["refresh_token"]).status_code == 200


def test_ended_connection_refuses_refresh(app, client, demo):
    first = connect(client, demo)
    with app.app_context():
        end_connection(db.session, only_connection(), "disconnected", utcnow(),
                       issuer=app.config["IDP_ISSUER"])
        db.session.commit()
    response = refresh(client, demo, first["refresh_token"])
    assert response.status_code == 400 and oauth_error(response) == "invalid_grant"


def test_refresh_token_of_another_client_is_invalid_grant(client, demo):
    first = connect(client, demo, "zapier")
    response = refresh(client, demo, first["refresh_token"], "make")
    assert response.status_code == 400 and oauth_error(response) == "invalid_grant"
    # The foreign attempt did not count as reuse.
    assert refresh(client, demo, first["refresh_token"], "zapier").status_code == 200


@pytest.mark.parametrize("token", [
    "fe_rt_" + "a" * 43, "fe_rt_short", "", "x" * 4000, "fe_at_" + "a" * 43,
])
def test_unknown_refresh_token_is_invalid_grant(client, demo, token):
    response = refresh(client, demo, token)
    assert response.status_code == 400 and oauth_error(response) == "invalid_grant"


def test_access_token_is_not_a_refresh_token(client, demo):
    first = connect(client, demo)
    response = refresh(client, demo, first["access_token"])
    assert response.status_code == 400 and oauth_error(response) == "invalid_grant"


def test_expired_refresh_token_is_invalid_grant(client, demo, clock):
    first = connect(client, demo)
    clock.shift(90 * 24 * 3600 + 1)
    response = refresh(client, demo, first["refresh_token"])
    assert response.status_code == 400 and oauth_error(response) == "invalid_grant"


def test_active_connection_never_expires(client, demo, clock):
    body = connect(client, demo)
    for _ in range(4):
        clock.shift(60 * 24 * 3600)
        response = refresh(client, demo, body["refresh_token"])
        assert response.status_code == 200, response.get_json()
        body = response.get_json()


def test_reuse_after_grace_ends_connection_with_audit(app, client, demo, clock):
    first = connect(client, demo)
    second = refresh(client, demo, first["refresh_token"]).get_json()
    clock.shift(61)
    reused = refresh(client, demo, first["refresh_token"])
    assert reused.status_code == 400 and oauth_error(reused) == "invalid_grant"
    for token in (first["access_token"], second["access_token"]):
        dead = me(client, token)
        assert dead.status_code == 401 and reason(dead) == "token_revoked"
    successor = refresh(client, demo, second["refresh_token"])
    assert successor.status_code == 400 and oauth_error(successor) == "invalid_grant"
    with app.app_context():
        events = ended_connection_events("refresh_reuse")
        assert events.count("refresh_token_reuse") == 1
        assert events.count("connection_ended") == 1

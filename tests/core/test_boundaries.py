"""Each time rule at its exact second, on a frozen clock (docs/connection-lifecycle.md).

The grace window holds while ``now - rotated_at`` equals it ("now − rotated ≤ 60 s"); an API
key and an access token are expired from the second ``expires_at`` is reached.
"""

from datetime import timedelta

import pytest
from sqlalchemy import select

from idp.cli.demo import seed_demo
from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.store import api_keys
from idp.store.models import AccessToken
from idp.store.models import Connection
from idp.store.models import Organization
from tests.lifecycle_env import freeze_clock
from tests.prod_support import flask_tokens
from tests.prod_support import token_form

GRACE = 60
ACCESS_TTL = 3600
KEY_LIFE = 100


@pytest.fixture
def frozen(monkeypatch, make_app, clock):
    """An app, its demo seed and a web client, on a clock that only ``clock.shift`` moves."""
    # Frozen before the app exists, so no reading of the database's clock is ever taken.
    freeze_clock(monkeypatch)
    app = make_app(IDP_REFRESH_GRACE_SECONDS=GRACE, IDP_ACCESS_TOKEN_TTL=ACCESS_TTL)
    with app.app_context():
        demo = seed_demo()
    return app, demo, app.test_client()


def _refresh(client, demo, refresh_token):
    """Present a refresh token with the demo Zapier client's credentials."""
    return client.post("/oauth/token", data=token_form(
        demo, grant_type="refresh_token", refresh_token=refresh_token))


def _me(client, bearer):
    """Call the API with a bearer."""
    return client.get("/api/v1/me", headers={"Authorization": f"Bearer {bearer}"})


def _ended(app) -> bool:
    """Whether the only connection has ended."""
    with app.app_context():
        return db.session.scalar(select(Connection.ended_at)) is not None


def test_a_retry_exactly_at_the_end_of_the_grace_window_gets_the_same_successor(frozen, clock):
    app, demo, client = frozen
    first = flask_tokens(client, demo)
    rotated = _refresh(client, demo, first["refresh_token"])
    assert rotated.status_code == 200
    clock.shift(GRACE)
    retry = _refresh(client, demo, first["refresh_token"])
    assert retry.status_code == 200, retry.get_json()
    assert retry.get_json()["refresh_token"] == rotated.get_json()["refresh_token"]
    assert retry.get_json()["access_token"] == rotated.get_json()["access_token"]
    assert not _ended(app)
    assert _me(client, rotated.get_json()["access_token"]).status_code == 200


def test_a_retry_one_second_past_the_grace_window_is_reuse_and_ends_the_connection(
        frozen, clock):
    app, demo, client = frozen
    first = flask_tokens(client, demo)
    rotated = _refresh(client, demo, first["refresh_token"])
    assert rotated.status_code == 200
    clock.shift(GRACE + 1)
    reused = _refresh(client, demo, first["refresh_token"])
    assert reused.status_code == 400
    assert reused.get_json()["error"] == "invalid_grant"
    assert _ended(app)
    dead = _me(client, rotated.get_json()["access_token"])
    assert dead.status_code == 401
    assert dead.get_json()["error"]["reason"] == "token_revoked"


def _api_key(app, demo, expires_at):
    """A key of the demo organization that expires at ``expires_at``."""
    with app.app_context():
        org = db.session.scalar(
            select(Organization).where(Organization.public_id == demo["organization"]["id"]))
        catalogue = app.config["IDP_SCOPES"]
        _, raw = api_keys.create_key(org, "Boundary", list(catalogue), catalogue,
                                    expires_at=expires_at)
        db.session.commit()
    return raw


@pytest.mark.parametrize(("offset", "status", "reason"), [
    (-1, 200, None),
    (0, 403, "key_expired"),
], ids=["one second before", "at expires_at"])
def test_an_api_key_expires_at_its_exact_second(frozen, clock, offset, status, reason):
    app, demo, client = frozen
    with app.app_context():
        expires_at = utcnow() + timedelta(seconds=KEY_LIFE)
    key = _api_key(app, demo, expires_at)
    clock.shift(KEY_LIFE + offset)
    with app.app_context():
        assert utcnow() - expires_at == timedelta(seconds=offset)
    response = _me(client, key)
    assert response.status_code == status
    if reason:
        assert response.get_json()["error"] == {
            "code": "FORBIDDEN", "reason": reason,
            "message": "This API key has passed its expiration date."}


@pytest.mark.parametrize(("offset", "status", "reason"), [
    (-1, 200, None),
    (0, 401, "token_expired"),
], ids=["one second before", "at expires_at"])
def test_an_access_token_expires_at_its_exact_second(frozen, clock, offset, status, reason):
    app, demo, client = frozen
    tokens = flask_tokens(client, demo)
    with app.app_context():
        issued = utcnow()
        expires_at = db.session.scalar(select(AccessToken.expires_at))
    assert expires_at - issued == timedelta(seconds=ACCESS_TTL)
    clock.shift(ACCESS_TTL + offset)
    response = _me(client, tokens["access_token"])
    assert response.status_code == status
    if reason:
        assert response.get_json()["error"]["code"] == "UNAUTHORIZED"
        assert response.get_json()["error"]["reason"] == reason
        assert response.headers["WWW-Authenticate"] == (
            'Bearer realm="FlowEstate", error="invalid_token"')

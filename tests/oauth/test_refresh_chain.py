"""Refresh chains: a grace-window retry of an older token answers the newest successor, and
a refresh that loses a race between its lookup and its claim is judged again under the lock."""

from tests.helpers import flask_connect
from tests.helpers import flask_sign_in
from tests.helpers import pkce_pair
from tests.helpers import query_of
from tests.helpers import token_request


def _first_pair(client, demo):
    """Connect the demo Zapier client and redeem the code."""
    flask_sign_in(client, demo)
    verifier, challenge = pkce_pair()
    code = query_of(flask_connect(client, demo, challenge=challenge).headers["Location"])["code"]
    return token_request(client, demo, {
        "grant_type": "authorization_code", "code": code,
        "redirect_uri": demo["clients"]["zapier"]["redirect_uris"][0], "code_verifier": verifier,
    }).get_json()


def _refresh(client, demo, token):
    """Present a refresh token; return the response."""
    return token_request(client, demo, {"grant_type": "refresh_token", "refresh_token": token})


def test_retry_of_older_token_in_grace_returns_live_successor(client, demo, clock):
    first = _first_pair(client, demo)
    second = _refresh(client, demo, first["refresh_token"]).get_json()
    clock.shift(5)
    third = _refresh(client, demo, second["refresh_token"]).get_json()
    clock.shift(5)
    retry = _refresh(client, demo, first["refresh_token"])
    assert retry.status_code == 200
    assert retry.get_json()["refresh_token"] == third["refresh_token"]
    # Long after every window, the newest token is still the one that works.
    clock.shift(3600)
    later = _refresh(client, demo, third["refresh_token"])
    assert later.status_code == 200, later.get_json()


def test_reuse_after_grace_ends_connection(client, demo, clock):
    first = _first_pair(client, demo)
    second = _refresh(client, demo, first["refresh_token"]).get_json()
    clock.shift(61)
    reused = _refresh(client, demo, first["refresh_token"])
    assert reused.status_code == 400 and reused.get_json()["error"] == "invalid_grant"
    dead = _refresh(client, demo, second["refresh_token"])
    assert dead.status_code == 400 and dead.get_json()["error"] == "invalid_grant"
    me = client.get("/api/v1/me", headers={"Authorization": "Bearer " + second["access_token"]})
    assert me.status_code == 401 and me.get_json()["error"]["reason"] == "token_revoked"


def _race_before_the_claim(monkeypatch, app, action):
    """Run ``action`` (committed on its own) after the refresh's lookup, before its claim."""
    from idp.oauth import refresh_token

    real_write_now = refresh_token.write_now

    def write_now_after(session):
        # Once only: a refresh made by the action itself runs unpatched.
        monkeypatch.setattr(refresh_token, "write_now", real_write_now)
        with app.app_context():
            action()
        real_write_now(session)

    monkeypatch.setattr(refresh_token, "write_now", write_now_after)


def test_a_disconnect_between_lookup_and_claim_refuses_the_refresh(app, client, demo, monkeypatch):
    from sqlalchemy import func
    from sqlalchemy import select

    from idp.core.clock import utcnow
    from idp.infra.extensions import db
    from idp.store.connections import end_connection
    from idp.store.models import AccessToken
    from idp.store.models import Connection

    first = _first_pair(client, demo)

    def disconnect():
        connection = db.session.scalar(select(Connection))
        end_connection(db.session, connection, "disconnected", utcnow(), actor="test",
                       issuer=app.config["IDP_ISSUER"])
        db.session.commit()

    _race_before_the_claim(monkeypatch, app, disconnect)
    refused = _refresh(client, demo, first["refresh_token"])
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_grant"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AccessToken)) == 1, \
            "no pair was issued for the ended connection"


def test_a_rotation_between_lookup_and_claim_answers_the_same_successor(
        app, client, demo, monkeypatch):
    first = _first_pair(client, demo)
    other = {}

    def concurrent_refresh():
        other["body"] = _refresh(app.test_client(), demo, first["refresh_token"]).get_json()

    _race_before_the_claim(monkeypatch, app, concurrent_refresh)
    answer = _refresh(client, demo, first["refresh_token"])
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["refresh_token"] == other["body"]["refresh_token"]

"""A grace-window retry of an older refresh token answers the newest successor."""

from tests.helpers import flask_connect
from tests.helpers import flask_sign_in
from tests.helpers import query_of
from tests.helpers import token_request


def _first_pair(client, demo):
    """Connect the demo Zapier client and redeem the code."""
    flask_sign_in(client, demo)
    code = query_of(flask_connect(client, demo).headers["Location"])["code"]
    return token_request(client, demo, {
        "grant_type": "authorization_code", "code": code,
        "redirect_uri": demo["clients"]["zapier"]["redirect_uris"][0],
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

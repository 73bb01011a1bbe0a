"""POST /oauth/introspect (SPEC §5.5): who may call, what is required, what inactive means."""

import base64

import pytest
from sqlalchemy import select

from idp.infra.extensions import db
from idp.infra.extensions import limiter
from idp.store.models import ApiKey
from idp.store.models import ResourceServer
from tests.bearer_world import build_world
from tests.bearer_world import new_resource_server
from tests.bearer_world import random_key


def basic(client_id: str, secret: str) -> dict:
    """An HTTP Basic Authorization header (RFC 7617)."""
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def rs_auth(demo) -> dict:
    """The demo resource server's credentials."""
    rs = demo["resource_server"]
    return basic(rs["client_id"], rs["client_secret"])


def test_a_resource_server_sees_a_key(client, demo):
    response = client.post("/oauth/introspect", data={"token": demo["api_key"]},
                           headers=rs_auth(demo))
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["active"] is True and body["token_type"] == "api_key"
    assert body["org_id"] == demo["organization"]["id"]


@pytest.mark.parametrize("case", ["none", "wrong secret", "unknown id", "connector basic",
                                  "connector in body", "bearer", "disabled", "empty secret",
                                  "garbled basic"])
def test_anyone_but_a_resource_server_gets_401(app, client, demo, case):
    rs = demo["resource_server"]
    zapier = demo["clients"]["zapier"]
    data = {"token": demo["api_key"]}
    headers = {}
    if case == "wrong secret":
        headers = basic(rs["client_id"], rs["client_secret"] + "x")
    elif case == "unknown id":
        headers = basic("rs_" + "0" * 20, rs["client_secret"])
    elif case == "connector basic":
        headers = basic(zapier["client_id"], zapier["client_secret"])
    elif case == "connector in body":
        data.update(client_id=zapier["client_id"], client_secret=zapier["client_secret"])
    elif case == "bearer":
        headers = {"Authorization": "Bearer " + demo["api_key"]}
    elif case == "empty secret":
        headers = basic(rs["client_id"], "")
    elif case == "garbled basic":
        headers = {"Authorization": "Basic !!!not-base64"}
    elif case == "disabled":
        with app.app_context():
            server = db.session.scalar(
                select(ResourceServer).where(ResourceServer.public_id == rs["client_id"]))
            server.enabled = False
            db.session.commit()
        headers = rs_auth(demo)
    response = client.post("/oauth/introspect", data=data, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"
    assert "active" not in response.get_json()


@pytest.mark.parametrize("data", [{}, {"token": ""}, {"token_type_hint": "api_key"}],
                         ids=["absent", "empty", "hint only"])
def test_token_missing_is_400_invalid_request(client, demo, data):
    response = client.post("/oauth/introspect", data=data, headers=rs_auth(demo))
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"


def test_unknown_token_is_inactive_with_the_401_denial(client, demo):
    response = client.post("/oauth/introspect", data={"token": random_key()},
                           headers=rs_auth(demo))
    assert response.status_code == 200
    assert response.get_json() == {"active": False, "denial": {
        "status": 401, "code": "UNAUTHORIZED", "reason": "unknown_token"}}


def test_refresh_tokens_are_never_active(app, client):
    with app.app_context():
        world = build_world(app)
    headers = basic(world.resource_server["client_id"], world.resource_server["client_secret"])
    for hint in (None, "refresh_token", "access_token"):
        data = {"token": world.refresh["good"]}
        if hint:
            data["token_type_hint"] = hint
        body = client.post("/oauth/introspect", data=data, headers=headers).get_json()
        assert body == {"active": False, "denial": {
            "status": 401, "code": "UNAUTHORIZED", "reason": "unknown_token"}}, hint


def test_introspection_is_post_only(client, demo):
    response = client.get("/oauth/introspect?token=" + demo["api_key"], headers=rs_auth(demo))
    assert response.status_code == 405


def test_introspection_records_the_time_of_use_but_no_address(app, client, demo):
    response = client.post("/oauth/introspect", data={"token": demo["api_key"]},
                           headers=rs_auth(demo), environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert response.get_json()["active"] is True
    with app.app_context():
        key = db.session.scalar(select(ApiKey).where(ApiKey.name == "Demo key"))
        assert key.last_used_at is not None
        assert key.last_used_ip is None, "the caller's address is the service's, not the user's"


def test_introspection_counts_against_the_resource_server_not_the_token(make_app):
    app = make_app(IDP_INTROSPECTION_RATE_LIMIT="3 per minute", IDP_API_RATE_LIMIT="2 per minute")
    from idp.cli.demo import seed_demo

    with app.app_context():
        limiter.reset()
        demo = seed_demo()
        second = new_resource_server("Second API")
    client = app.test_client()
    headers = rs_auth(demo)
    for _ in range(3):
        assert client.post("/oauth/introspect", data={"token": demo["api_key"]},
                           headers=headers).status_code == 200
    over = client.post("/oauth/introspect", data={"token": demo["api_key"]}, headers=headers)
    assert over.status_code == 429
    assert int(over.headers["Retry-After"]) > 0
    assert over.headers["X-RateLimit-Limit"] == "3"
    assert over.headers["X-RateLimit-Remaining"] == "0"
    assert over.get_json()["error"] == "rate_limited"
    other = client.post("/oauth/introspect", data={"token": demo["api_key"]},
                        headers=basic(second["client_id"], second["client_secret"]))
    assert other.status_code == 200, "another resource server has its own counter"
    me = client.get("/api/v1/me", headers={"Authorization": "Bearer " + demo["api_key"]})
    assert me.status_code == 200, "introspecting a key never spends the key's own quota"

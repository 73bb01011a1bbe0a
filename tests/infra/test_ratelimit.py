"""Rate limits (SPEC §10): per credential, after authentication, the same for both kinds;
429 with Retry-After and X-RateLimit-*; shared through Redis between processes."""

import os
import secrets
import time

import pytest
import requests

from idp.infra import ratelimit
from idp.infra.config import build_config
from idp.infra.extensions import limiter
from tests.bearer_world import SCOPED_PATH
from tests.bearer_world import add_scoped_route
from tests.bearer_world import build_world
from tests.bearer_world import random_access_token
from tests.bearer_world import random_key
from tests.helpers import LiveServer
from tests.helpers import free_port
from tests.kit_support import FlaskTransport
from tests.leads_app import create_leads_app

REDIS_URL = os.environ.get("IDP_TEST_REDIS_URL", "")
LIMIT = 3


@pytest.fixture
def limited(make_app):
    """An IdP allowing LIMIT API calls a minute per credential, and its world."""
    app = make_app(IDP_API_RATE_LIMIT=f"{LIMIT} per minute")
    with app.app_context():
        limiter.reset()
        world = build_world(app)
    return app, world


def auth(raw: str) -> dict:
    """A bearer header."""
    return {"Authorization": "Bearer " + raw}


def assert_429(response, limit: int) -> None:
    """The §4 429: body, Retry-After within the window, X-RateLimit-* at zero."""
    assert response.status_code == 429
    assert response.get_json() == {"error": {
        "code": "RATE_LIMITED", "reason": "rate_limited",
        "message": response.get_json()["error"]["message"]}}
    assert 0 < int(response.headers["Retry-After"]) <= 60
    assert response.headers["X-RateLimit-Limit"] == str(limit)
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert int(response.headers["X-RateLimit-Reset"]) >= int(time.time())


@pytest.mark.parametrize("kind", ["keys", "tokens"])
def test_request_n_plus_one_is_429_for_either_kind(limited, kind):
    app, world = limited
    client = app.test_client()
    header = auth(getattr(world, kind)["good"])
    for left in range(LIMIT - 1, -1, -1):
        response = client.get("/api/v1/me", headers=header)
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Limit"] == str(LIMIT)
        assert response.headers["X-RateLimit-Remaining"] == str(left)
    assert_429(client.get("/api/v1/me", headers=header), LIMIT)


def test_unknown_and_refused_bearers_spend_no_ones_quota(limited):
    app, world = limited
    client = app.test_client()
    for header in (auth(random_key()), auth(random_access_token()), auth("garbage"), {},
                   auth(world.keys["disabled"]), auth(world.tokens["revoked"])):
        for _ in range(LIMIT + 1):
            assert client.get("/api/v1/me", headers=header).status_code in (401, 403)
    for _ in range(LIMIT):
        assert client.get("/api/v1/me", headers=auth(world.keys["good"])).status_code == 200


def test_each_credential_has_its_own_counter(limited):
    app, world = limited
    client = app.test_client()
    for _ in range(LIMIT):
        client.get("/api/v1/me", headers=auth(world.keys["good"]))
    assert client.get("/api/v1/me", headers=auth(world.keys["good"])).status_code == 429
    assert client.get("/api/v1/me", headers=auth(world.keys["all scopes"])).status_code == 200
    assert client.get("/api/v1/me", headers=auth(world.tokens["good"])).status_code == 200


def test_a_scope_refusal_still_counts(limited):
    """A known credential hammering an endpoint it may not use meets its limit too."""
    app, world = limited
    add_scoped_route(app)
    client = app.test_client()
    header = auth(world.tokens["good"])
    for _ in range(LIMIT):
        response = client.get(SCOPED_PATH, headers=header)
        assert response.get_json()["error"]["reason"] == "insufficient_scope"
    assert_429(client.get(SCOPED_PATH, headers=header), LIMIT)
    assert client.get("/api/v1/me", headers=header).status_code == 429, "one counter per token"


def test_an_unreachable_counter_store_lets_requests_through(make_app):
    """Limits protect capacity, not secrets: a Redis outage must not fail every API call."""
    app = make_app(RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{free_port()}/0",
                   IDP_API_RATE_LIMIT="1 per minute")
    with app.app_context():
        world = build_world(app)
    client = app.test_client()
    for _ in range(3):
        response = client.get("/api/v1/me", headers=auth(world.keys["good"]))
        assert response.status_code == 200
        assert "X-RateLimit-Limit" not in response.headers


def test_the_kit_limits_per_credential_with_the_same_answer(app, client):
    with app.app_context():
        world = build_world(app)
    rs = world.resource_server
    leads = create_leads_app("https://idp.test/oauth/introspect", rs["client_id"],
                             rs["client_secret"], session=FlaskTransport(client),
                             rate_limit=f"{LIMIT} per minute").test_client()
    for _ in range(LIMIT + 2):
        assert leads.get("/api/v1/leads", headers=auth(random_key())).status_code == 401
    header = auth(world.keys["good"])
    for left in range(LIMIT - 1, -1, -1):
        response = leads.get("/api/v1/leads", headers=header)
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Remaining"] == str(left)
    assert_429(leads.get("/api/v1/leads", headers=header), LIMIT)
    assert leads.get("/api/v1/leads", headers=auth(world.tokens["good"])).status_code == 200


def idp_prefix(env: dict, tmp_path) -> str:
    """The counter prefix an IdP process started with ``env`` will use."""
    return build_config(str(tmp_path), environ=env).get("RATELIMIT_KEY_PREFIX", "")


@pytest.mark.redis
@pytest.mark.live
@pytest.mark.skipif(not REDIS_URL, reason="IDP_TEST_REDIS_URL is not set (CI sets it)")
def test_processes_and_the_kit_share_one_counter_through_redis(app, database_url, tmp_path):
    """Two IdP processes and a kit-protected API on one Redis count one credential once."""
    with app.app_context():
        world = build_world(app)
    env = {"RATELIMIT_STORAGE_URI": REDIS_URL, "IDP_API_RATE_LIMIT": "4 per minute",
           "RATELIMIT_KEY_PREFIX": "t" + secrets.token_hex(6)}
    first = LiveServer(database_url, tmp_path, extra_env=env)
    second = LiveServer(database_url, tmp_path, extra_env=env)
    first.start()
    try:
        second.start()
        rs = world.resource_server
        leads = create_leads_app(first.url + "/oauth/introspect", rs["client_id"],
                                 rs["client_secret"], storage_uri=REDIS_URL,
                                 rate_limit="4 per minute",
                                 key_prefix=idp_prefix(env, tmp_path))
        header = auth(world.keys["good"])

        def me(server):
            with requests.get(server.url + "/api/v1/me", headers=header, timeout=10) as r:
                return r.status_code, r.headers.get("X-RateLimit-Remaining")

        assert me(first) == (200, "3")
        assert me(second) == (200, "2")
        assert me(first) == (200, "1")
        response = leads.test_client().get("/api/v1/leads", headers=header)
        assert (response.status_code, response.headers["X-RateLimit-Remaining"]) == (200, "0")
        status, _ = me(second)
        assert status == 429
        assert leads.test_client().get("/api/v1/leads", headers=header).status_code == 429
        assert me(first)[0] == 429
        leads.extensions["protector"].session.close()
    finally:
        second.stop()
        first.stop()


class FailingStrategy:
    """A counter strategy whose store is down; counts how often it is asked."""

    def __init__(self):
        """A store object of its own, as a real strategy has."""
        self.storage = object()
        self.asked = 0

    def hit(self, *args, **kwargs):
        """The store times out."""
        self.asked += 1
        raise ConnectionError("redis timed out")


def test_a_failed_store_is_left_alone_for_a_few_seconds():
    from tests.kit_support import FakeClock

    clock = FakeClock()
    strategy = FailingStrategy()
    assert ratelimit.count(strategy, "5 per minute", "key_1", clock=clock) is None
    assert ratelimit.count(strategy, "5 per minute", "key_2", clock=clock) is None
    assert strategy.asked == 1, "the second request did not wait on the dead store"
    clock.advance(ratelimit.PAUSE_AFTER_FAILURE)
    ratelimit.count(strategy, "5 per minute", "key_1", clock=clock)
    assert strategy.asked == 2, "asked again once the pause is over"

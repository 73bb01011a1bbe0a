"""Break 2 of issue 11: OAuth limits are keyed on who authenticated, never on a claimed id.

Failed client or resource-server authentication is counted per source address (IPv6 by
/64) and answered 429 once over ``IDP_AUTH_FAILURE_RATE_LIMIT``, while a request that
authenticates passes from any address (connectors share egress addresses); authenticated
requests count per connection (token, revocation) or per resource server (introspection).
The IdP runs with the shipped limits behind one proxy hop; addresses come from
X-Forwarded-For. The flood tests run on this process's counters and on the shared Redis.
"""

import base64
import secrets

import pytest
import requests

from idp.cli.demo import seed_demo
from idp.infra import ratelimit
from tests.helpers import LiveServer
from tests.limit_support import STORES
from tests.limit_support import from_address
from tests.limit_support import production_app
from tests.limit_support import shipped_limits
from tests.prod_support import flask_tokens
from tests.prod_support import http_tokens
from tests.prod_support import token_form

ATTACKER = "203.0.113.66"
CUSTOMER = "198.51.100.20"
#: Past the old per-claimed-client default (300 a minute) and past the failure limit.
FLOOD = 301
#: IDP_AUTH_FAILURE_RATE_LIMIT's per-minute allowance as shipped.
FAILURES = 30


@pytest.fixture(params=STORES)
def prod(request, make_app, demo):
    """The IdP with shipped limits (a smaller introspection limit, see its test)."""
    return production_app(make_app, request.param,
                          IDP_INTROSPECTION_RATE_LIMIT="100 per minute")


def basic(client_id: str, secret: str) -> dict:
    """An HTTP Basic Authorization header."""
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def wrong_secret(demo, method: str, **form) -> dict:
    """Request options claiming Zapier's public client_id with a made-up secret."""
    client_id = demo["clients"]["zapier"]["client_id"]
    guess = "fe_cs_" + secrets.token_urlsafe(32)
    if method == "basic":
        return {"data": form, "headers": {**basic(client_id, guess), "X-Forwarded-For": ATTACKER}}
    return {"data": {**form, "client_id": client_id, "client_secret": guess},
            **from_address(ATTACKER)}


def assert_rate_limited(response) -> None:
    """The OAuth endpoints' 429: RFC 6749-style JSON, no-store, Retry-After."""
    assert response.status_code == 429
    assert response.get_json() == {"error": "rate_limited",
                                   "error_description": response.get_json()["error_description"]}
    assert response.headers["Cache-Control"] == "no-store"
    assert 0 < int(response.headers["Retry-After"]) <= 60


def flood(client, path: str, options) -> list[int]:
    """FLOOD requests from the attacker; their statuses."""
    return [client.post(path, **options()).status_code for _ in range(FLOOD)]


@pytest.mark.parametrize("method", ["post", "basic"])
def test_break2_a_wrong_secret_flood_leaves_every_zapier_refresh_working(prod, demo, method):
    tokens = flask_tokens(prod.test_client(), demo)
    attacker = prod.test_client()
    statuses = flood(attacker, "/oauth/token", lambda: wrong_secret(
        demo, method, grant_type="refresh_token", refresh_token=tokens["refresh_token"]))
    customer = prod.test_client().post("/oauth/token", data=token_form(
        demo, grant_type="refresh_token", refresh_token=tokens["refresh_token"]),
        **from_address(CUSTOMER))
    assert customer.status_code == 200, customer.get_json()
    assert customer.get_json()["refresh_token"] != tokens["refresh_token"]
    assert statuses == [401] * FAILURES + [429] * (FLOOD - FAILURES)
    # Zapier's egress is shared: a real refresh from the flooded address itself still works.
    shared = attacker.post("/oauth/token", data=token_form(
        demo, grant_type="refresh_token", refresh_token=customer.get_json()["refresh_token"]),
        **from_address(ATTACKER))
    assert shared.status_code == 200, shared.get_json()
    assert_rate_limited(attacker.post("/oauth/token", **wrong_secret(
        demo, method, grant_type="refresh_token",
        refresh_token=shared.get_json()["refresh_token"])))


def test_break2_a_wrong_secret_flood_leaves_revocation_working(prod, demo):
    tokens = flask_tokens(prod.test_client(), demo)
    statuses = flood(prod.test_client(), "/oauth/revoke", lambda: wrong_secret(
        demo, "post", token=tokens["refresh_token"]))
    client = prod.test_client()
    revoked = client.post("/oauth/revoke", data=token_form(
        demo, "zapier", token=tokens["refresh_token"]), **from_address(CUSTOMER))
    assert revoked.status_code == 200
    assert statuses == [401] * FAILURES + [429] * (FLOOD - FAILURES)
    refresh = client.post("/oauth/token", data=token_form(
        demo, grant_type="refresh_token", refresh_token=tokens["refresh_token"]),
        **from_address(CUSTOMER))
    assert (refresh.status_code, refresh.get_json()["error"]) == (400, "invalid_grant")


def test_break2_a_wrong_secret_flood_leaves_introspection_working(prod, demo):
    """The resource server's own limit is 100 a minute here: the flood claims its id 101
    times, yet only its authenticated calls count against it."""
    rs = demo["resource_server"]
    attacker = prod.test_client()
    statuses = [attacker.post("/oauth/introspect", data={"token": demo["api_key"]}, headers={
        **basic(rs["client_id"], "fe_rs_" + secrets.token_urlsafe(32)),
        "X-Forwarded-For": ATTACKER}).status_code for _ in range(101)]
    response = prod.test_client().post(
        "/oauth/introspect", data={"token": demo["api_key"]},
        headers={**basic(rs["client_id"], rs["client_secret"]), "X-Forwarded-For": "10.0.0.5"})
    assert response.status_code == 200
    assert response.get_json()["active"] is True
    assert statuses == [401] * FAILURES + [429] * (101 - FAILURES)


def test_an_ipv6_flood_is_one_source_for_its_whole_64(prod, demo):
    attacker = prod.test_client()
    zapier = demo["clients"]["zapier"]["client_id"]
    for n in range(FAILURES):
        response = attacker.post("/oauth/token", data={
            "grant_type": "refresh_token", "refresh_token": "fe_rt_" + "A" * 43,
            "client_id": zapier, "client_secret": "wrong"},
            headers={"X-Forwarded-For": f"2001:db8:77:1:{n:x}::1"})
        assert response.status_code == 401
    same_64 = attacker.post("/oauth/token", data={"grant_type": "refresh_token"},
                            headers={"X-Forwarded-For": "2001:db8:77:1:ffff::9"})
    assert_rate_limited(same_64)
    next_64 = attacker.post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": "fe_rt_" + "A" * 43,
        "client_id": zapier, "client_secret": "wrong"},
        headers={"X-Forwarded-For": "2001:db8:77:2::1"})
    assert next_64.status_code == 401


@pytest.fixture
def per_connection(make_app):
    """Three token or revocation requests a minute per connection."""
    app = make_app(IDP_TOKEN_RATE_LIMIT="3 per minute")
    with app.app_context():
        demo = seed_demo()
    return app, demo


def refresh(client, demo, token: str, client_key="zapier"):
    """One refresh with the client's right credentials."""
    return client.post("/oauth/token", data=token_form(
        demo, client_key, grant_type="refresh_token", refresh_token=token))


def test_each_connection_has_its_own_token_limit(per_connection):
    app, demo = per_connection
    client = app.test_client()
    first = flask_tokens(client, demo)  # the code exchange is the connection's first request
    second = flask_tokens(app.test_client(), demo)
    token = first["refresh_token"]
    for _ in range(2):
        response = refresh(client, demo, token)
        assert response.status_code == 200
        token = response.get_json()["refresh_token"]
    over = refresh(client, demo, token)
    assert_rate_limited(over)
    assert over.headers["X-RateLimit-Limit"] == "3"
    assert over.headers["X-RateLimit-Remaining"] == "0"
    assert refresh(client, demo, second["refresh_token"]).status_code == 200, "own counter"
    revoke = client.post("/oauth/revoke", data=token_form(demo, token=token))
    assert_rate_limited(revoke)  # revocation counts against the same connection


def test_the_connection_limit_refuses_before_rotating(per_connection):
    app, demo = per_connection
    client = app.test_client()
    token = flask_tokens(client, demo)["refresh_token"]
    for _ in range(2):
        token = refresh(client, demo, token).get_json()["refresh_token"]
    assert refresh(client, demo, token).status_code == 429
    with app.app_context():
        app.extensions["idp.local_counters"].reset()
    assert refresh(client, demo, token).status_code == 200, "the refused token was not spent"


def test_requests_naming_no_connection_spend_no_connections_quota(per_connection):
    app, demo = per_connection
    client = app.test_client()
    tokens = flask_tokens(client, demo)
    for _ in range(5):
        response = refresh(client, demo, "fe_rt_" + secrets.token_urlsafe(32))
        assert (response.status_code, response.get_json()["error"]) == (400, "invalid_grant")
        unknown = client.post("/oauth/revoke", data=token_form(demo, token="fe_rt_unknown"))
        assert unknown.status_code == 200
    assert refresh(client, demo, tokens["refresh_token"]).status_code == 200


def test_the_per_client_aggregate_is_off_by_default_and_counts_when_set(make_app):
    assert shipped_limits()["IDP_CLIENT_RATE_LIMIT"] == ""
    app = make_app(IDP_CLIENT_RATE_LIMIT="3 per minute")
    with app.app_context():
        demo = seed_demo()
    client = app.test_client()
    tokens = flask_tokens(client, demo)  # one
    assert refresh(client, demo, tokens["refresh_token"]).status_code == 200  # two
    other = flask_tokens(app.test_client(), demo)  # three: another connection, same client
    assert_rate_limited(refresh(client, demo, other["refresh_token"]))
    make = flask_tokens(app.test_client(), demo, "make")
    assert refresh(client, demo, make["refresh_token"], "make").status_code == 200


@pytest.mark.parametrize(("address", "key"), [
    ("203.0.113.9", "203.0.113.9"),
    ("::ffff:203.0.113.9", "203.0.113.9"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("2001:db8:1:2::", "2001:db8:1:2::/64"),
    ("fe80::1%eth0", "fe80::/64"),
    ("", "unknown"),
    (None, "unknown"),
    ("not-an-address", "unknown"),
])
def test_address_key(address, key):
    assert ratelimit.address_key(address) == key


@pytest.mark.live
def test_break2_live_a_flood_through_a_real_server_leaves_refreshes_working(
        app, demo, database_url, tmp_path):
    env = {**shipped_limits(), "IDP_PROXY_HOPS": "1"}
    server = LiveServer(database_url, tmp_path, extra_env=env, workers=1, threads=2)
    server.start()
    try:
        tokens = http_tokens(server.url, demo)
        zapier = demo["clients"]["zapier"]["client_id"]
        with requests.Session() as http:
            statuses = [http.post(server.url + "/oauth/token", timeout=10, headers={
                "X-Forwarded-For": ATTACKER}, data={
                "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
                "client_id": zapier, "client_secret": "wrong"}).status_code
                for _ in range(FAILURES + 10)]
        assert statuses == [401] * FAILURES + [429] * 10
        response = requests.post(server.url + "/oauth/token", timeout=10, data=token_form(
            demo, grant_type="refresh_token", refresh_token=tokens["refresh_token"]),
            headers={"X-Forwarded-For": CUSTOMER})
        assert response.status_code == 200, response.text
    finally:
        server.stop()

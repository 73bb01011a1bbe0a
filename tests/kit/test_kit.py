"""The resource-server kit: cache bounds, digest keys, the size bound, and 503 when the IdP is
away. The IdP answers in-process (tests/kit_support.py) so the clock can be faked."""

import re
import time

import pytest
import requests
from sqlalchemy import select

from flowestate_kit.answers import Denial
from flowestate_kit.flask import ResourceProtector
from flowestate_kit.judge import Bearer
from flowestate_kit.judge import IdpUnavailable
from idp.infra.extensions import db
from idp.store import api_keys
from idp.store.models import ApiKey
from tests.bearer_world import build_world
from tests.bearer_world import random_key
from tests.helpers import free_port
from tests.kit_support import UNREACHABLE
from tests.kit_support import CannedResponse
from tests.kit_support import FakeClock
from tests.kit_support import FlaskTransport
from tests.leads_app import create_leads_app

URL = "https://idp.test/oauth/introspect"


@pytest.fixture
def world(app):
    """Every kind of credential, on the test's database."""
    with app.app_context():
        return build_world(app)


@pytest.fixture
def transport(client):
    """Introspection served by the in-process IdP."""
    return FlaskTransport(client)


def protector(world, transport, **options) -> ResourceProtector:
    """A kit instance speaking to the in-process IdP as the demo resource server."""
    rs = world.resource_server
    return ResourceProtector(URL, rs["client_id"], rs["client_secret"], session=transport,
                             **options)


def set_active(app, name: str, active: bool) -> None:
    """Disable or enable one of the world's keys directly in the database."""
    with app.app_context():
        key = db.session.scalar(select(ApiKey).where(ApiKey.name == name))
        api_keys.set_active(key, active, issuer=app.config["IDP_ISSUER"])
        db.session.commit()


def test_a_disabled_key_stops_within_active_ttl_and_recovers_within_inactive_ttl(
        app, world, transport):
    clock = FakeClock()
    kit = protector(world, transport, clock=clock, active_ttl=30, inactive_ttl=5)
    header = "Bearer " + world.keys["good"]
    assert isinstance(kit.judge(header), Bearer)
    set_active(app, "good", False)
    clock.advance(29.9)
    assert isinstance(kit.judge(header), Bearer), "still inside the 30 s bound: cached"
    assert transport.calls == 1
    clock.advance(0.1)
    verdict = kit.judge(header)
    assert verdict == Denial(403, "key_inactive") and transport.calls == 2
    set_active(app, "good", True)
    clock.advance(4.9)
    assert kit.judge(header).reason == "key_inactive", "an inactive verdict is cached 5 s"
    clock.advance(0.1)
    assert isinstance(kit.judge(header), Bearer) and transport.calls == 3


def test_the_bounds_are_configurable(app, world, transport):
    clock = FakeClock()
    kit = protector(world, transport, clock=clock, active_ttl=2, inactive_ttl=0)
    header = "Bearer " + world.keys["good"]
    kit.judge(header)
    set_active(app, "good", False)
    clock.advance(2)
    assert kit.judge(header).reason == "key_inactive"
    kit.judge(header)
    assert transport.calls == 3, "inactive_ttl=0 caches no inactive verdict"


def test_an_active_token_is_cached_no_longer_than_its_expiry(world, transport):
    clock = FakeClock()
    # The world's tokens live an hour; this wall clock says ten seconds of it remain.
    kit = protector(world, transport, clock=clock, wall_clock=lambda: time.time() + 3590)
    header = "Bearer " + world.tokens["good"]
    assert isinstance(kit.judge(header), Bearer)
    clock.advance(8)
    kit.judge(header)
    assert transport.calls == 1
    clock.advance(3)
    kit.judge(header)
    assert transport.calls == 2, "cached for min(30 s, exp - now), here about 10 s"


def test_the_cache_never_grows_past_its_bound_and_drops_the_least_recent(world, transport):
    clock = FakeClock()
    kit = protector(world, transport, clock=clock, cache_size=5, inactive_cache_size=5)
    headers = ["Bearer " + random_key() for _ in range(20)]
    for header in headers:
        kit.judge(header)
        assert kit.cache_len() <= 5
    assert kit.cache_len() == 5
    calls = transport.calls
    kit.judge(headers[-1])
    assert transport.calls == calls, "the most recent verdicts are kept"
    kit.judge(headers[0])
    assert transport.calls == calls + 1, "the oldest was evicted"


def test_cache_keys_are_digests_never_tokens(world, transport):
    kit = protector(world, transport)
    raws = [world.keys["good"], world.tokens["good"], random_key()]
    for raw in raws:
        kit.judge("Bearer " + raw)
    keys = list(kit.verdicts.active) + list(kit.verdicts.inactive)
    assert len(keys) == 3
    for key in keys:
        assert re.fullmatch(r"[0-9a-f]{64}", key)
        assert not any(raw in key or key in raw for raw in raws)


def test_cache_size_zero_disables_caching(world, transport):
    kit = protector(world, transport, cache_size=0)
    for _ in range(3):
        kit.judge("Bearer " + world.keys["good"])
    assert transport.calls == 3 and kit.cache_len() == 0


@pytest.mark.parametrize("header", [None, "Basic abc", "Bearer", "Bearer fe_k_abc",
                                    "Bearer " + "x" * 10000])
def test_garbage_never_reaches_the_idp(world, transport, header):
    verdict = protector(world, transport).judge(header)
    assert isinstance(verdict, Denial) and verdict.status == 401
    assert transport.calls == 0


@pytest.mark.parametrize("options", [{"cache_size": -1}, {"active_ttl": -1},
                                     {"inactive_ttl": -0.5}])
def test_negative_bounds_are_refused(options):
    with pytest.raises(ValueError):
        ResourceProtector(URL, "rs_x", "secret", **options)


FAILURES = {
    "unreachable": UNREACHABLE,
    "timeout": requests.Timeout("read timed out"),
    "500": 500,
    "502": 502,
    "idp rate-limits the service": 429,
    "idp refuses the service": 401,
    "not json": CannedResponse(200, ValueError("not JSON")),
    "json but not an object": CannedResponse(200, ["active"]),
    "active without org": CannedResponse(200, {"active": True, "token_type": "api_key",
                                               "key_id": "key_1"}),
}


@pytest.mark.parametrize("failure", list(FAILURES), ids=list(FAILURES))
def test_when_the_idp_gives_no_usable_answer_the_api_says_503(world, transport, failure):
    rs = world.resource_server
    leads = create_leads_app(URL, rs["client_id"], rs["client_secret"], session=transport)
    transport.failure = FAILURES[failure]
    response = leads.test_client().get(
        "/api/v1/leads", headers={"Authorization": "Bearer " + world.keys["good"]})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.get_json()["error"] == {
        "code": "UNAVAILABLE", "reason": "temporarily_unavailable",
        "message": response.get_json()["error"]["message"]}
    assert "WWW-Authenticate" not in response.headers
    transport.failure = None
    again = leads.test_client().get(
        "/api/v1/leads", headers={"Authorization": "Bearer " + world.keys["good"]})
    assert again.status_code == 200, "a failed call is never cached"


def test_a_real_connection_refused_is_503(world):
    rs = world.resource_server
    url = f"http://127.0.0.1:{free_port()}/oauth/introspect"
    leads = create_leads_app(url, rs["client_id"], rs["client_secret"], timeout=2)
    try:
        response = leads.test_client().get(
            "/api/v1/leads", headers={"Authorization": "Bearer " + world.keys["good"]})
    finally:
        leads.extensions["protector"].session.close()
    assert response.status_code == 503


def test_judge_raises_idp_unavailable_for_callers_outside_a_view(world, transport):
    transport.failure = UNREACHABLE
    with pytest.raises(IdpUnavailable):
        protector(world, transport).judge("Bearer " + world.keys["good"])


def test_the_toy_api_answers_like_the_idp_for_a_cached_denial(app, world, transport):
    rs = world.resource_server
    clock = FakeClock()
    leads = create_leads_app(URL, rs["client_id"], rs["client_secret"], session=transport,
                             clock=clock).test_client()
    header = {"Authorization": "Bearer " + world.keys["disabled"]}
    first = leads.get("/api/v1/leads", headers=header)
    second = leads.get("/api/v1/leads", headers=header)
    idp = app.test_client().get("/api/v1/me", headers=header)
    assert first.status_code == second.status_code == idp.status_code == 403
    assert first.get_json() == second.get_json() == idp.get_json()
    assert transport.calls == 1


@pytest.mark.parametrize("url", [
    "http://idp.flowestate.example/oauth/introspect",
    "http://10.0.0.5:5000/oauth/introspect",
    "http://[2001:db8::1]/oauth/introspect",
    "http://localhost.evil.example/oauth/introspect",
    "http://user:secret@idp.internal/oauth/introspect",
    "ftp://127.0.0.1/oauth/introspect",
    "127.0.0.1:5000/oauth/introspect",
    "https:///oauth/introspect",
    "http://[::1/oauth/introspect",
])
def test_plain_http_introspection_off_this_machine_is_refused(url):
    with pytest.raises(ValueError, match="introspection_url must be an https URL") as refused:
        ResourceProtector(url, "rs_x", "secret")
    assert "secret" not in str(refused.value)  # never echo userinfo


@pytest.mark.parametrize("url", [
    "https://idp.flowestate.example/oauth/introspect",
    "https://10.0.0.5:8443/oauth/introspect",
    "http://127.0.0.1:5000/oauth/introspect",
    "http://127.8.9.10/oauth/introspect",
    "http://[::1]:5000/oauth/introspect",
    "http://localhost:5000/oauth/introspect",
    "http://LOCALHOST/oauth/introspect",
])
def test_https_anywhere_and_http_on_loopback_are_accepted(url):
    assert ResourceProtector(url, "rs_x", "secret").introspection_url == url

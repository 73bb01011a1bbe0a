"""The kit under a flood of made-up bearers: limited per caller before the IdP is asked, its
inactive answers remembered at most 5 s in a cache of their own, and no other caller's 503."""

import pytest

from flowestate_kit.answers import Denial
from flowestate_kit.flask import ResourceProtector
from flowestate_kit.judge import Bearer
from tests.bearer_world import build_world
from tests.bearer_world import random_key
from tests.kit_support import FakeClock
from tests.kit_support import FlaskTransport
from tests.leads_app import create_leads_app

URL = "https://idp.test/oauth/introspect"
FLOODER = {"REMOTE_ADDR": "203.0.113.5"}
CUSTOMER = {"REMOTE_ADDR": "198.51.100.9"}
#: The kit's shipped allowance of inactive answers per caller and minute.
UNKNOWN_ALLOWANCE = 30


@pytest.fixture
def idp(make_app):
    """An IdP whose resource server may introspect 35 times a minute, and its world."""
    app = make_app(IDP_INTROSPECTION_RATE_LIMIT="35 per minute")
    with app.app_context():
        world = build_world(app)
    return app, world


def leads_for(world, transport, **options):
    """The toy API's test client speaking to the in-process IdP."""
    rs = world.resource_server
    return create_leads_app(URL, rs["client_id"], rs["client_secret"], session=transport,
                            **options).test_client()


def get(leads, raw: str, environ: dict):
    """GET a protected view with a bearer, from the given caller address."""
    return leads.get("/api/v1/leads", headers={"Authorization": "Bearer " + raw},
                     environ_base=environ)


def test_an_unknown_bearer_flood_is_stopped_before_the_idp_and_spares_other_callers(idp):
    app, world = idp
    transport = FlaskTransport(app.test_client())
    leads = leads_for(world, transport)
    statuses = [get(leads, random_key(), FLOODER).status_code for _ in range(40)]
    assert statuses == [401] * UNKNOWN_ALLOWANCE + [429] * 10
    assert transport.calls == UNKNOWN_ALLOWANCE, "the last ten never reached the IdP"
    refused = get(leads, random_key(), FLOODER)
    assert refused.get_json()["error"]["reason"] == "rate_limited"
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    # The resource server's own budget (35) was not spent by the flood: another caller's
    # uncached bearer is still judged, not answered 503.
    response = get(leads, world.keys["good"], CUSTOMER)
    assert response.status_code == 200, response.get_json()
    assert get(leads, random_key(), CUSTOMER).status_code == 401
    assert get(leads, world.keys["good"], FLOODER).status_code == 200, "cached: never refused"


def test_a_caller_whose_bearers_are_active_is_never_limited(idp):
    app, world = idp
    transport = FlaskTransport(app.test_client())
    leads = leads_for(world, transport, active_ttl=0)  # every call asks the IdP
    for _ in range(UNKNOWN_ALLOWANCE + 3):
        assert get(leads, world.keys["good"], FLOODER).status_code == 200


def test_the_caller_limit_is_configurable_and_can_be_off(idp):
    app, world = idp
    transport = FlaskTransport(app.test_client())
    leads = leads_for(world, transport, unknown_rate_limit="2 per minute",
                      caller_key=lambda: "everyone")
    assert [get(leads, random_key(), FLOODER).status_code for _ in range(3)] == [401, 401, 429]
    assert get(leads, random_key(), CUSTOMER).status_code == 429, "keyed as configured"
    off = leads_for(world, transport, unknown_rate_limit=None)
    assert {get(off, random_key(), FLOODER).status_code for _ in range(5)} == {401}


def test_inactive_answers_are_remembered_at_most_five_seconds(idp):
    app, world = idp
    with pytest.raises(ValueError):
        ResourceProtector(URL, "rs_x", "secret", inactive_ttl=5.1)
    transport = FlaskTransport(app.test_client())
    clock = FakeClock()
    rs = world.resource_server
    kit = ResourceProtector(URL, rs["client_id"], rs["client_secret"], session=transport,
                            clock=clock)
    header = "Bearer " + random_key()
    assert kit.judge(header) == Denial(401, "unknown_token")
    clock.advance(4.9)
    kit.judge(header)
    assert transport.calls == 1, "remembered within 5 s"
    clock.advance(0.1)
    kit.judge(header)
    assert transport.calls == 2, "asked again at 5 s"


def test_a_flood_of_inactive_answers_never_evicts_active_verdicts(idp):
    app, world = idp
    transport = FlaskTransport(app.test_client())
    rs = world.resource_server
    kit = ResourceProtector(URL, rs["client_id"], rs["client_secret"], session=transport,
                            cache_size=5, inactive_cache_size=5)
    good = "Bearer " + world.keys["good"]
    assert isinstance(kit.judge(good), Bearer)
    for _ in range(20):
        kit.judge("Bearer " + random_key())
    assert kit.cache_len() == 6, "one active verdict and at most five inactive ones"
    calls = transport.calls
    assert isinstance(kit.judge(good), Bearer)
    assert transport.calls == calls, "the active verdict was still cached"


@pytest.mark.parametrize("options", [{"inactive_cache_size": -1},
                                     {"unknown_rate_limit": "often"}])
def test_bad_kit_limits_are_refused(options):
    with pytest.raises(ValueError):
        ResourceProtector(URL, "rs_x", "secret", **options)


@pytest.mark.parametrize("kind,name,reason", [
    ("tokens", "expired", "token_expired"), ("tokens", "revoked", "token_revoked"),
    ("keys", "disabled", "key_inactive"), ("keys", "expired", "key_expired"),
])
def test_a_connector_presenting_dead_credentials_is_never_limited(idp, kind, name, reason):
    """Zapier presents each customer's hour-old access token once before refreshing it, from a
    few shared addresses: known but dead credentials are ordinary traffic, not a flood."""
    app, world = idp
    transport = FlaskTransport(app.test_client())
    leads = leads_for(world, transport, unknown_rate_limit="2 per minute", inactive_ttl=0)
    raw = getattr(world, kind)[name]
    for _ in range(5):
        response = get(leads, raw, FLOODER)
        assert response.get_json()["error"]["reason"] == reason
    assert transport.calls == 5, "every presentation was judged by the IdP, none refused"

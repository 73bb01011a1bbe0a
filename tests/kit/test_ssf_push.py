"""Push delivery (RFC 8935) into the kit, and the stream wired into both adapters.

The fake transmitter (tests/kit/ssf_support.py) takes the stream's registration and posts
each queued SET to the kit's push endpoint, reached through werkzeug's test client.
"""

import json

import pytest
from flask import Flask
from flask import g
from werkzeug.test import Client

from flowestate_kit.flask import ResourceProtector
from flowestate_kit.ssf import PushEndpoint
from flowestate_kit.ssf import Receiver
from flowestate_kit.wsgi import ENVIRON_KEY
from flowestate_kit.wsgi import BearerMiddleware
from tests.kit.ssf_support import CAEP
from tests.kit.ssf_support import CLIENT_ID
from tests.kit.ssf_support import CLIENT_SECRET
from tests.kit.ssf_support import ScriptedIntrospection
from tests.kit.ssf_support import api_key
from tests.kit.ssf_support import complex_subject
from tests.kit.ssf_support import key_claims
from tests.kit.ssf_support import new_key
from tests.kit.ssf_support import opaque
from tests.kit.ssf_support import token_claims
from tests.kit.ssf_support import wait_for

URL = "https://idp.test/oauth/introspect"
PUSH_URL = "https://api.flowestate.example/ssf/push"
EPOCH = 1_800_000_000
SET_TYPE = "application/secevent+jwt"


@pytest.fixture
def receivers(transmitter, ticks):
    """Build push receivers driven by hand (closed after the test)."""
    made = []

    def build(**options) -> Receiver:
        options = {"delivery": "push", "push_url": PUSH_URL, "clock": ticks, "thread": False,
                   **options}
        receiver = Receiver(transmitter.issuer, CLIENT_ID, CLIENT_SECRET, **options)
        made.append(receiver)
        return receiver

    yield build
    for receiver in made:
        receiver.close(timeout=5)


@pytest.fixture
def idp():
    """Introspection answering for one API key of acme and one token of ann's."""
    idp = ScriptedIntrospection()
    idp.key, idp.token = api_key(), "fe_at_" + "t" * 43
    idp.claims[idp.key] = key_claims("key_a1", "org_acme")
    idp.claims[idp.token] = token_claims("con_1", "org_acme", "usr_ann", "zapier")
    return idp


def started(receiver, transmitter, client) -> Receiver:
    """Start a push receiver, create its stream and deliver the verification it asked for."""
    receiver.start()
    assert receiver.step() == 30, "waits for its verification no longer than the timeout"
    answers = transmitter.push_all(client)
    assert [a.status_code for a in answers] == [202]
    return receiver


def test_a_push_stream_registers_its_endpoint_with_a_random_authorization(
        receivers, transmitter):
    receiver = receivers()
    started(receiver, transmitter, Client(receiver.push_endpoint()))
    assert receiver.status()["healthy"]
    delivery = transmitter.stream.config["delivery"]
    assert delivery["method"] == "urn:ietf:rfc:8935"
    assert delivery["endpoint_url"] == PUSH_URL
    assert delivery["authorization_header"].startswith("Bearer ")
    assert len(delivery["authorization_header"]) > 40
    other = receivers()
    other.start()
    other.step()
    assert len(transmitter.streams) == 2
    values = {s.config["delivery"]["authorization_header"] for s in transmitter.streams.values()}
    assert len(values) == 2, "each stream its own secret"
    assert receiver.step() == 60, "healthy: sleeps until the next heartbeat"


def post(client, body, authorization, content_type=SET_TYPE, method="POST"):
    """A request to the push endpoint."""
    headers = {"Content-Type": content_type}
    if authorization is not None:
        headers["Authorization"] = authorization
    return client.open("/ssf/push", method=method, data=body, headers=headers)


#: name -> (request, status, err, whether the stream stays healthy: a request refused before
#: its SET is read says nothing about the stream; a SET refused may be an event lost)
ANSWERS = {
    "GET": (dict(method="GET"), 405, "invalid_request", True),
    "no Authorization": (dict(authorization=None), 401, "authentication_failed", True),
    "another Authorization": (dict(authorization="Bearer " + "A" * 43), 401,
                              "authentication_failed", True),
    "the resource server's Basic credentials": (
        dict(authorization="Basic cnNfa2l0cmVjZWl2ZXI6c2VjcmV0"), 401, "authentication_failed",
        True),
    "a JSON body": (dict(content_type="application/json"), 400, "invalid_request", True),
    "an empty body": (dict(body=b""), 400, "invalid_request", True),
    "a body too large": (dict(body=b"a" * 70000), 400, "invalid_request", True),
    "not a JWS": (dict(body=b"not.a.set"), 400, "invalid_request", False),
    "another audience": (dict(set={"aud": "rs_other"}), 400, "invalid_audience", False),
    "a stranger's key": (dict(set={"key": new_key("live")}), 400, "invalid_key", False),
    "another issuer": (dict(set={"iss": "https://elsewhere.example"}), 400, "invalid_issuer",
                       False),
}


@pytest.mark.parametrize("name", list(ANSWERS))
def test_the_push_endpoint_answers_rfc_8935_errors(receivers, transmitter, name):
    options, status, err, healthy = ANSWERS[name]
    receiver = receivers()
    client = Client(receiver.push_endpoint())
    started(receiver, transmitter, client)
    registered = transmitter.stream.config["delivery"]["authorization_header"]
    spoil = options.pop("set", {})
    delivery = transmitter.emit(CAEP + "credential-change", opaque("key_a1"), **spoil)
    request = {"body": transmitter.sign(delivery), "authorization": registered, **options}
    response = post(client, **request)
    assert response.status_code == status
    assert response.get_json()["err"] == err and response.get_json()["description"]
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"
    if status == 405:
        assert response.headers["Allow"] == "POST"
    assert receiver.status()["healthy"] is healthy
    assert receiver.status()["applied"] == 1


def test_a_pushed_event_is_applied_and_answered_202(receivers, transmitter, idp, ticks):
    receiver = receivers()
    protector = ResourceProtector(URL, CLIENT_ID, CLIENT_SECRET, session=idp, clock=ticks,
                                  stream=receiver)
    client = Client(receiver.push_endpoint())
    protector.judge("Bearer " + idp.key)
    started(receiver, transmitter, client)
    protector.judge("Bearer " + idp.token)
    transmitter.emit(CAEP + "session-revoked", complex_subject(
        session="con_1", user="usr_ann", tenant="org_acme", application="zapier"))
    (answer,) = transmitter.push_all(client)
    assert answer.status_code == 202 and answer.get_data() == b""
    assert len(protector.verdicts.active) == 1, "the connection's verdict is gone"
    protector.judge("Bearer " + idp.key)
    protector.judge("Bearer " + idp.token)
    assert idp.calls == 3


def test_a_push_whose_keys_cannot_be_checked_now_is_answered_503(receivers, transmitter):
    receiver = receivers()
    client = Client(receiver.push_endpoint())
    started(receiver, transmitter, client)
    transmitter.rotate()  # a key made just after the receiver fetched the JWKS
    transmitter.emit(CAEP + "credential-change", opaque("key_a1"))
    (answer,) = transmitter.push_all(client)
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
    assert len(transmitter.stream.queue) == 1, "kept for the transmitter's retry"
    receiver.clock.advance(30)
    assert [a.status_code for a in transmitter.push_all(client)] == [202]


def test_a_push_stream_needs_a_push_url_and_a_configured_one_its_authorization():
    with pytest.raises(ValueError, match="push_url"):
        Receiver("https://id.example", CLIENT_ID, CLIENT_SECRET, delivery="push")
    with pytest.raises(ValueError, match="push_url must be an https URL"):
        Receiver("https://id.example", CLIENT_ID, CLIENT_SECRET, delivery="push",
                 push_url="http://api.example/ssf/push")
    with pytest.raises(ValueError, match="push_authorization"):
        Receiver("https://id.example", CLIENT_ID, CLIENT_SECRET, delivery="push",
                 push_url=PUSH_URL, stream_id="str_1")
    with pytest.raises(ValueError, match="not a push stream"):
        PushEndpoint(Receiver("https://id.example", CLIENT_ID, CLIENT_SECRET))


# -- the adapters ----------------------------------------------------------------------------

def leads(environ, start_response):
    """A bare WSGI application reading the judged bearer."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ[ENVIRON_KEY].org_id.encode()]


def test_the_middleware_serves_the_push_endpoint_and_evicts(receivers, transmitter, idp, ticks):
    receiver = receivers()
    middleware = BearerMiddleware(leads, URL, CLIENT_ID, CLIENT_SECRET, rules={"/": ()},
                                  session=idp, clock=ticks, stream=receiver)
    client = Client(middleware)
    headers = {"Authorization": "Bearer " + idp.key}
    assert client.get("/leads", headers=headers).status_code == 200
    assert receiver.started, "started by the first bearer"
    assert receiver.step() == 30
    assert [a.status_code for a in transmitter.push_all(client)] == [202]
    assert middleware.stream_status()["healthy"]
    transmitter.emit(transmitter.own + "access-paused", opaque("key_a1"))
    assert [a.status_code for a in transmitter.push_all(client)] == [202]
    assert client.get("/leads", headers=headers).status_code == 200
    assert idp.calls == 2, "the key's verdict was evicted and asked again"
    refused = post(client, b"x", None)
    assert refused.status_code == 401, "the push path is the endpoint's, not a rule's"


def test_flask_mounts_the_push_endpoint_and_shows_the_stream(receivers, transmitter, idp,
                                                             ticks):
    receiver = receivers()
    protector = ResourceProtector(URL, CLIENT_ID, CLIENT_SECRET, session=idp, clock=ticks,
                                  stream=receiver)
    app = Flask("leads_api")
    protector.init_app(app)

    @app.get("/leads")
    @protector.require_scopes("leads:read")
    def read():
        return {"org_id": g.credential.org_id}

    @app.get("/health")
    def health():
        return protector.stream_status()

    client = app.test_client()
    headers = {"Authorization": "Bearer " + idp.key}
    assert client.get("/leads", headers=headers).status_code == 200
    receiver.step()
    assert [a.status_code for a in transmitter.push_all(client)] == [202]
    shown = client.get("/health").get_json()
    assert shown["healthy"] and shown["active_ttl"] == 300
    assert shown["stream"]["stream_id"] == transmitter.stream.stream_id
    assert transmitter.stream.config["delivery"]["authorization_header"] not in json.dumps(
        shown), "the health page shows no secret"
    transmitter.emit(transmitter.own + "access-paused", complex_subject(tenant="org_acme"))
    transmitter.push_all(client)
    client.get("/leads", headers=headers)
    assert idp.calls == 2


def test_a_protector_with_only_a_configuration_url_polls_by_itself(transmitter, idp):
    transmitter.long_poll = 0.2
    protector = ResourceProtector(URL, CLIENT_ID, CLIENT_SECRET, session=idp,
                                  ssf_configuration_url=transmitter.issuer)
    receiver = protector.stream
    try:
        assert isinstance(receiver, Receiver) and receiver.delivery == "poll"
        assert not receiver.started and transmitter.streams == {}
        protector.judge("Bearer " + idp.key)
        assert wait_for(lambda: protector.stream_status()["healthy"])
        transmitter.emit(transmitter.own + "access-paused", opaque("key_a1"))
        assert wait_for(lambda: len(protector.verdicts.active) == 0)
    finally:
        assert receiver.close() is True
    assert transmitter.streams == {}


def test_an_adapter_without_a_stream_behaves_as_before(idp):
    protector = ResourceProtector(URL, CLIENT_ID, CLIENT_SECRET, session=idp)
    app = Flask("leads_api")
    before = app.wsgi_app
    protector.init_app(app)
    assert app.wsgi_app == before
    middleware = BearerMiddleware(leads, URL, CLIENT_ID, CLIENT_SECRET, rules={"/": ()},
                                  session=idp)
    assert middleware.push is None and protector.stream is None
    assert Client(middleware).post("/ssf/push").status_code == 401, "just a protected path"

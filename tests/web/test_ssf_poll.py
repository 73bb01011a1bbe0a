"""RFC 8936 poll (docs/ssf.md): signed SETs that verify against /ssf/jwks, acknowledgements,
``moreAvailable``, long polling, and the stream-only events of status and verification."""

import threading
import time

import pytest
from sqlalchemy import select

from idp.core.clock import epoch
from idp.core.clock import utcnow
from idp.core.ssf_events import CREDENTIAL_CHANGE
from idp.core.ssf_events import STREAM_UPDATED
from idp.core.ssf_events import VERIFICATION
from idp.infra.extensions import db
from idp.store.models.ssf import SsfDelivery
from idp.store.models.ssf import SsfStream
from tests.ssf_support import PUSH
from tests.ssf_support import decode
from tests.ssf_support import emit
from tests.ssf_support import new_stream
from tests.ssf_support import receiver

ISSUER = "http://127.0.0.1:5000"
KEY_ID = "key_0123456789abcdef0123"


@pytest.fixture
def app(make_app):
    """The IdP with a short long poll, so waiting tests take a fraction of a second."""
    return make_app(IDP_SSF_LONG_POLL_SECONDS=0.4)


@pytest.fixture
def rs(factory) -> dict:
    """A resource server acting as receiver."""
    return receiver(factory)


@pytest.fixture
def stream(client, rs) -> str:
    """The id of a poll stream of ``rs`` asking for every event type."""
    return new_stream(client, rs)["stream_id"]


def poll(client, rs, stream_id, **body):
    """POST the poll request; the response."""
    return client.post(f"/ssf/poll/{stream_id}", json=body, headers=rs["auth"])


def sets_of(client, rs, stream_id, **body) -> dict:
    """The ``sets`` of a successful poll that returns immediately."""
    response = poll(client, rs, stream_id, returnImmediately=True, **body)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["sets"]


def test_a_poll_answers_sets_that_verify_against_the_jwks(app, client, rs, stream):
    before = epoch(utcnow())
    txn = emit(app, "api_key_revoked", api_key=KEY_ID)
    response = poll(client, rs, stream, returnImmediately=True)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["moreAvailable"] is False and len(body["sets"]) == 1
    jti, token = next(iter(body["sets"].items()))

    jwks = client.get("/ssf/jwks").get_json()
    assert [key["kty"] for key in jwks["keys"]] == ["EC"]
    assert all("d" not in key for key in jwks["keys"])
    verified = decode(token, jwks)
    assert verified.header == {"alg": "ES256", "typ": "secevent+jwt",
                               "kid": jwks["keys"][0]["kid"]}
    claims = verified.claims
    assert before <= claims.pop("iat") <= epoch(utcnow())
    assert claims == {
        "iss": ISSUER, "jti": jti, "aud": rs["client_id"], "txn": txn,
        "sub_id": {"format": "opaque", "id": KEY_ID},
        "events": {CREDENTIAL_CHANGE: {
            "event_timestamp": claims["events"][CREDENTIAL_CHANGE]["event_timestamp"],
            "initiating_entity": "admin", "reason_admin": {"en": "API key revoked"},
            "reason": "api_key_revoked", "credential_type": "api-key",
            "change_type": "delete"}},
        "stream_seq": 1,
    }
    with app.app_context():
        delivery = db.session.scalar(select(SsfDelivery).where(SsfDelivery.jti == jti))
        assert delivery.signed_kid == verified.header["kid"]
        assert delivery.delivered_at is not None and delivery.acked_at is None
        row = db.session.scalar(select(SsfStream).where(SsfStream.public_id == stream))
        assert row.last_polled_at is not None and row.last_delivery_at is not None


def test_unacknowledged_sets_come_again_and_acknowledged_ones_do_not(app, client, rs, stream):
    emit(app)
    first = sets_of(client, rs, stream)
    again = sets_of(client, rs, stream)
    assert list(again) == list(first)
    assert sets_of(client, rs, stream, ack=list(first)) == {}
    emit(app)
    later = sets_of(client, rs, stream)
    assert set(later).isdisjoint(first)
    assert [decode(token, client.get("/ssf/jwks").get_json()).claims["stream_seq"]
            for token in later.values()] == [2]


def test_more_available_says_the_queue_goes_on(app, client, rs, stream):
    for _ in range(3):
        emit(app)
    response = poll(client, rs, stream, returnImmediately=True, maxEvents=2)
    body = response.get_json()
    jwks = client.get("/ssf/jwks").get_json()
    assert body["moreAvailable"] is True
    assert sorted(decode(t, jwks).claims["stream_seq"] for t in body["sets"].values()) == [1, 2]
    rest = poll(client, rs, stream, returnImmediately=True, maxEvents=2,
                ack=list(body["sets"])).get_json()
    assert rest["moreAvailable"] is False
    assert [decode(t, jwks).claims["stream_seq"] for t in rest["sets"].values()] == [3]


def test_max_events_zero_only_acknowledges_and_answers_at_once(app, client, rs, stream):
    emit(app)
    jtis = list(sets_of(client, rs, stream))
    emit(app)
    started = time.monotonic()
    response = poll(client, rs, stream, maxEvents=0, ack=jtis)
    assert time.monotonic() - started < 0.3
    assert response.get_json() == {"sets": {}, "moreAvailable": False}
    assert len(sets_of(client, rs, stream)) == 1


def test_set_errors_are_kept_and_not_sent_again(app, client, rs, stream):
    emit(app)
    jti = next(iter(sets_of(client, rs, stream)))
    errs = {jti: {"err": "invalid_key", "description": "kid unknown"}}
    assert sets_of(client, rs, stream, setErrs=errs) == {}
    with app.app_context():
        delivery = db.session.scalar(select(SsfDelivery).where(SsfDelivery.jti == jti))
        assert delivery.acked_at is not None and delivery.error == "invalid_key: kid unknown"


def test_acks_of_another_stream_change_nothing(app, client, factory, rs, stream):
    other = receiver(factory, "Contacts API")
    theirs = new_stream(client, other)["stream_id"]
    emit(app)
    their_jtis = list(sets_of(client, other, theirs))
    assert sets_of(client, rs, stream, ack=their_jtis)
    assert list(sets_of(client, other, theirs)) == their_jtis


def test_a_long_poll_returns_as_soon_as_an_event_commits(make_app, factory):
    app = make_app(IDP_SSF_LONG_POLL_SECONDS=10)
    client = app.test_client()
    rs = receiver(type(factory)(app))
    stream = new_stream(client, rs)["stream_id"]
    emitter = threading.Timer(0.3, emit, args=(app,))
    started = time.monotonic()
    emitter.start()
    try:
        response = poll(client, rs, stream)
    finally:
        emitter.join()
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert len(response.get_json()["sets"]) == 1
    assert 0.3 <= elapsed < 3


def test_a_long_poll_answers_nothing_when_its_time_is_up(client, rs, stream):
    started = time.monotonic()
    response = poll(client, rs, stream)
    elapsed = time.monotonic() - started
    assert response.get_json() == {"sets": {}, "moreAvailable": False}
    assert 0.4 <= elapsed < 2


def test_return_immediately_does_not_wait(client, rs, stream):
    started = time.monotonic()
    assert poll(client, rs, stream, returnImmediately=True).get_json()["sets"] == {}
    assert time.monotonic() - started < 0.3


def test_a_status_change_is_told_on_the_stream_and_a_paused_stream_holds_events(app, client, rs,
                                                                              stream):
    paused = client.post("/ssf/status", headers=rs["auth"], json={
        "stream_id": stream, "status": "paused", "reason": "maintenance"})
    assert paused.status_code == 200
    assert paused.get_json() == {"stream_id": stream, "status": "paused",
                                 "reason": "maintenance"}
    assert client.get(f"/ssf/status?stream_id={stream}",
                      headers=rs["auth"]).get_json() == paused.get_json()
    emit(app)
    assert sets_of(client, rs, stream) == {}
    enabled = client.post("/ssf/status", headers=rs["auth"],
                          json={"stream_id": stream, "status": "enabled"})
    assert enabled.get_json() == {"stream_id": stream, "status": "enabled"}
    jwks = client.get("/ssf/jwks").get_json()
    claims = sorted((decode(token, jwks).claims for token in sets_of(client, rs, stream).values()),
                    key=lambda c: c["stream_seq"])
    assert [(c["stream_seq"], list(c["events"])) for c in claims] == [
        (1, [STREAM_UPDATED]), (2, [CREDENTIAL_CHANGE]), (3, [STREAM_UPDATED])]
    assert claims[0]["events"][STREAM_UPDATED] == {"status": "paused", "reason": "maintenance"}
    assert claims[2]["events"][STREAM_UPDATED] == {"status": "enabled"}
    assert claims[0]["sub_id"] == {"format": "opaque", "id": stream}


def test_setting_the_same_status_again_tells_nothing(client, rs, stream):
    client.post("/ssf/status", headers=rs["auth"], json={"stream_id": stream,
                                                         "status": "enabled"})
    assert sets_of(client, rs, stream) == {}


def test_verification_echoes_the_state_on_the_stream(client, rs, stream):
    response = client.post("/ssf/verify", headers=rs["auth"],
                           json={"stream_id": stream, "state": "VGhpcyBpcyBhbiBleGFtcGxl"})
    assert response.status_code == 204 and response.data == b""
    [token] = sets_of(client, rs, stream).values()
    claims = decode(token, client.get("/ssf/jwks").get_json()).claims
    assert claims["events"] == {VERIFICATION: {"state": "VGhpcyBpcyBhbiBleGFtcGxl"}}
    assert claims["sub_id"] == {"format": "opaque", "id": stream}
    assert claims["aud"] == rs["client_id"]


def test_a_disabled_stream_refuses_polls_and_verification(client, rs, stream):
    client.post("/ssf/status", headers=rs["auth"], json={"stream_id": stream,
                                                         "status": "disabled"})
    response = poll(client, rs, stream, returnImmediately=True)
    assert response.status_code == 400
    assert response.get_json()["err"] == "invalid_request"
    verify = client.post("/ssf/verify", headers=rs["auth"], json={"stream_id": stream})
    assert verify.status_code == 400 and verify.get_json()["error"] == "invalid_request"


@pytest.mark.parametrize("body", [
    {"status": "stopped"}, {"status": None}, {"status": "paused", "reason": 7},
    {"status": "paused", "reason": "x" * 201},
])
def test_a_bad_status_is_400(client, rs, stream, body):
    response = client.post("/ssf/status", headers=rs["auth"], json={"stream_id": stream, **body})
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"


def test_a_status_request_without_stream_id_is_400(client, rs):
    response = client.get("/ssf/status", headers=rs["auth"])
    assert response.status_code == 400


#: Poll bodies refused with 400 invalid_request, in RFC 8936's shape.
BAD_POLLS = {
    "invalid JSON": b"{",
    "not an object": b"[]",
    "negative maxEvents": {"maxEvents": -1},
    "maxEvents not a number": {"maxEvents": "10"},
    "maxEvents a boolean": {"maxEvents": True},
    "returnImmediately not a boolean": {"returnImmediately": "yes"},
    "ack not a list": {"ack": "abc"},
    "ack of numbers": {"ack": [1]},
    "setErrs not an object": {"setErrs": ["abc"]},
    "setErrs without err": {"setErrs": {"abc": {"description": "x"}}},
}


@pytest.mark.parametrize("case", list(BAD_POLLS))
def test_a_bad_poll_is_400_in_rfc_8936_shape(client, rs, stream, case):
    body = BAD_POLLS[case]
    if isinstance(body, bytes):
        response = client.post(f"/ssf/poll/{stream}", data=body, headers=rs["auth"],
                               content_type="application/json")
    else:
        response = poll(client, rs, stream, **body)
    assert response.status_code == 400
    assert response.get_json()["err"] == "invalid_request"
    assert response.get_json()["description"]


def test_an_empty_body_is_a_default_poll(client, rs, stream):
    response = client.post(f"/ssf/poll/{stream}?", headers=rs["auth"])
    assert response.status_code == 200
    assert response.get_json() == {"sets": {}, "moreAvailable": False}


def test_poll_refusals_name_the_error_as_rfc_8936_does(client, factory, rs, stream):
    other = receiver(factory, "Contacts API")
    theirs = new_stream(client, other)["stream_id"]
    for stream_id in (theirs, "str_unknown"):
        response = poll(client, rs, stream_id, returnImmediately=True)
        assert response.status_code == 404
        assert response.get_json() == {"err": "not_found",
                                       "description": "There is no stream with this id."}
    unauthenticated = client.post(f"/ssf/poll/{stream}", json={})
    assert unauthenticated.status_code == 401
    assert unauthenticated.get_json()["err"] == "invalid_client"
    assert unauthenticated.headers["WWW-Authenticate"].startswith("Basic")


def test_a_push_stream_is_not_polled(client, rs):
    pushed = new_stream(client, rs, delivery={"method": PUSH,
                                              "endpoint_url": "https://rs.example/events"})
    response = poll(client, rs, pushed["stream_id"], returnImmediately=True)
    assert response.status_code == 400 and response.get_json()["err"] == "invalid_request"
